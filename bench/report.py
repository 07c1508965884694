"""Results: JSON under bench/results/ and a Markdown table appended to docs/explanation/benchmarks.md."""

import json
import statistics
import time

from .stack import ROOT, machine

RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "explanation" / "benchmarks.md"


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    p99_index = max(0, int(round(0.99 * len(ordered))) - 1)
    return {"p50": statistics.median(ordered), "p99": ordered[p99_index], "max": ordered[-1]}


def save(scenario: str, result: dict, rows: list[tuple[str, str]], headline: str | None = None) -> None:
    """Write the JSON and append a table: `rows` are (measure, value) pairs."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    env = machine()
    payload = {"scenario": scenario, "machine": env, **result}
    (RESULTS / f"{scenario}-{stamp}.json").write_text(json.dumps(payload, indent=2, default=str))
    DOC.parent.mkdir(parents=True, exist_ok=True)
    if not DOC.exists():
        DOC.write_text("# Benchmarks\n\nAppended by `make bench` (see bench/). Newest last.\n")
    lines = ["", f"## {scenario} ({env['when']})", ""]
    if headline:  # the section's first line
        lines += [headline, ""]
    lines += [
        f"{env['cores']} cores, {env['memory_gib']} GiB, Python {env['python']}, Django {env['django']}, "
        f"Celery {env['celery']}.",
        "",
    ]
    lines += ["| measure | value |", "| --- | --- |", *[f"| {name} | {value} |" for name, value in rows], ""]
    with DOC.open("a") as out:
        out.write("\n".join(lines))
    print("\n".join(lines))
