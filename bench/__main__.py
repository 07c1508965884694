import argparse

from . import throughput

SCENARIOS = {"throughput": throughput.run}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description="jobqueue benchmarks")
    sub = parser.add_subparsers(dest="scenario", required=True)
    one = sub.add_parser("throughput", help="scenario 1: end-to-end jobs/s against bare Celery")
    one.add_argument("--jobs", type=int, default=20_000)
    one.add_argument("--concurrency", type=int, default=2)
    one.add_argument("--repeats", type=int, default=3)
    args = vars(parser.parse_args())
    SCENARIOS[args.pop("scenario")](**args)


if __name__ == "__main__":
    main()
