"""Property-based fuzzing of the live API from its own OpenAPI schema (schemathesis)."""

import shutil
from pathlib import Path

import pytest

from tests import servers

from .conftest import jobs_cli  # noqa: F401  (e2e fixtures share this module)

MAX_EXAMPLES = 40
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


def schemathesis_binary() -> str:
    found = shutil.which("schemathesis") or str(Path(servers.python()).parent / "schemathesis")
    if not Path(found).exists():
        servers.unavailable("schemathesis is not installed (pip install -r requirements-dev.txt)")
    return found


@pytest.mark.timeout(400)
def test_the_live_api_answers_every_generated_request_without_server_errors_or_schema_violations(
    start_web, start_worker, make_user
):
    url = start_web({"JOB_THROTTLE_USER": "1000000/second"})
    start_worker("fuzz", concurrency=2)
    _, token = make_user("fuzzer", staff=True)
    command = [
        schemathesis_binary(),
        "run",
        f"{url}/api/schema/",
        "--url",
        url,
        "--checks",
        CHECKS,
        "--header",
        f"Authorization: Token {token}",
        # Each operation's examples and boundary cases, then up to this many generated requests
        # per operation; no time budget (with one, fuzzing repeats until it is spent).
        "--max-examples",
        str(MAX_EXAMPLES),
        # One worker: schemathesis's threads parse sources at once, which CPython 3.11.7 can fail
        # with a spurious "AST constructor recursion depth mismatch" (python/cpython#106905).
        "--workers",
        "1",
        "--seed",
        "20261128",
        "--suppress-health-check",
        "all",
    ]
    process = servers.Process("schemathesis", command, {})
    process.process.wait(timeout=360)
    output = process.output()
    print(output[-4000:])
    assert process.process.returncode == 0, output[-6000:]
