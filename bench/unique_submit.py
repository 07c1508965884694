"""Scenario: the cost of unique jobs on the submit API, against plain submits measured in the same run.

Three loads, in alternating rounds on one gunicorn: plain submits (a new payload each), unique
submits that each make a job (a new key each: the key's INSERT), and unique submits of one job
(every request but the first answered with the existing job: the key's INSERT and the holder's
read). For reference, a repeated idempotency key: the older way to be answered with an existing job.
"""

import itertools
import json
import statistics

from .measure import ms
from .report import save
from .stack import running_stack
from .submit_api import WORKERS, have_wrk, python_single, start_web, token, wrk_single

# (name, body with {round}, {thread} and {n} to fill, or None for one fixed body)
LOADS = (
    ("plain", '{{"type":"noop","payload":{{"r":{round},"t":{thread},"n":{n}}}}}'),
    ("unique, new key each", '{{"type":"noop","payload":{{"r":{round},"t":{thread},"n":{n}}},"unique_for":60}}'),
    ("unique, one key (answered 200)", None),
    ("reference: one idempotency key (answered 200)", None),
)
SAME = {
    "unique, one key (answered 200)": json.dumps(
        {"type": "noop", "payload": {"report": "monthly"}, "unique_for": 3600}
    ),
    "reference: one idempotency key (answered 200)": json.dumps(
        {"type": "noop", "payload": {"report": "daily"}, "idempotency_key": "bench-once"}
    ),
}


def _lua(template: str, round: int) -> str:
    """wrk's script for a new body per request: each wrk thread numbers its own requests."""
    body = template.format(round=round, thread="%d", n="%d")
    return (
        "local threads = 0\n"
        "function setup(thread) thread:set('tid', threads); threads = threads + 1 end\n"
        "function request()\n  n = (n or 0) + 1\n"
        f"  return wrk.format(nil, nil, nil, string.format({json.dumps(body)}, tid, n))\nend\n"
    )


def _measure(address: str, key: str, load: str, round: int, seconds: int, connections: int) -> dict:
    template = dict(LOADS)[load]
    if have_wrk():
        if template is None:
            return wrk_single(address, key, seconds, connections, body=SAME[load])
        return wrk_single(address, key, seconds, connections, lua=_lua(template, round))
    if template is None:
        return python_single(address, key, seconds, connections, body=SAME[load])
    bodies = map(lambda n: template.format(round=round, thread=0, n=n), itertools.count())
    return python_single(address, key, seconds, connections, bodies=bodies)


def run(*, seconds: int = 10, connections: int = WORKERS, rounds: int = 3) -> dict:
    """`rounds` of each load, `seconds` each, from `connections` clients (one per gunicorn worker
    by default: the shape the submit target is set for); medians over the rounds."""
    with running_stack() as stack:
        address = start_web(stack, workers=WORKERS)
        key = token()
        runs: dict[str, list[dict]] = {name: [] for name, _ in LOADS}
        for round in range(rounds):
            for name, _ in LOADS:
                runs[name].append(_measure(address, key, name, round, seconds, connections))
    medians = {
        name: {measure: statistics.median(one[measure] for one in each) for measure in ("requests_per_s", "p50", "p99")}
        for name, each in runs.items()
    }
    # The ratio of each round (its loads ran back to back), then their median: on a shared machine the
    # load of other processes drifts between rounds more than within one.
    ratios = {
        name: statistics.median(
            one["requests_per_s"] / base["requests_per_s"] for one, base in zip(each, runs["plain"], strict=True)
        )
        for name, each in runs.items()
    }
    result = {"runs": runs, "medians": medians, "ratios": ratios}
    tool, errors = runs["plain"][0]["tool"], sum(one["errors"] for each in runs.values() for one in each)
    rows = [
        (
            f"{name}: POST /submit-job, {WORKERS} gunicorn workers, {connections} connections",
            f"{m['requests_per_s']:.0f} requests/s ({ratios[name]:.2f}x plain, median of the rounds' ratios), "
            f"p50 {ms(m['p50'])}, p99 {ms(m['p99'])}",
        )
        for name, m in medians.items()
    ]
    rows.append(("rounds, tool, errors", f"{rounds} of {seconds} s each, alternating; {tool}; {errors} non-2xx"))
    headline = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items() if name != "plain")
    save("unique-submit", result, rows, headline=f"unique submits against plain ones: {headline}")
    return result
