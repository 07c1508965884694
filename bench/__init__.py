"""Benchmarks: `make bench`, or `python -m bench <scenario> [--flags]` for one scenario."""
