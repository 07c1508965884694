"""The example of docs/howto/testing-job-types.md: its job types and its tests, run here as a
team would run them in its own suite (without Redis: the stub broker keeps the messages)."""

import importlib
import inspect
import sys
from pathlib import Path
from unittest import mock

import pytest

from jobs.rules import registry

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "testing"


@pytest.fixture(autouse=True)
def _services(db):
    """PostgreSQL only, no Redis: the stub broker takes the messages."""


@pytest.fixture(scope="module")
def example_tests():
    """The example's test module; its job types and schedule are gone again afterwards."""
    with (
        mock.patch.object(sys, "path", [str(EXAMPLE), *sys.path]),
        mock.patch.dict(registry._registry),
        mock.patch.dict(registry._schedules),
    ):
        yield importlib.import_module("test_billing_jobs")
    for name in ("test_billing_jobs", "billing_jobs"):
        sys.modules.pop(name, None)


NAMES = sorted(path.stem for path in EXAMPLE.glob("*.py"))
TESTS = [
    "test_an_invoice_is_charged_once",
    "test_a_bad_payload_is_refused_at_submit",
    "test_a_gateway_outage_is_retried_until_it_answers",
    "test_a_gateway_that_stays_down_leaves_a_dead_job",
    "test_a_closed_account_fails_at_once_without_retries",
    "test_the_month_is_closed_on_the_first_at_six",
]


def test_every_test_of_the_example_is_run_here(example_tests):
    assert NAMES == ["billing_jobs", "test_billing_jobs"]
    assert sorted(name for name in vars(example_tests) if name.startswith("test_")) == sorted(TESTS)


@pytest.mark.parametrize("name", TESTS)
def test_the_example(example_tests, name, monkeypatch):
    test = getattr(example_tests, name)
    test(**({"monkeypatch": monkeypatch} if "monkeypatch" in inspect.signature(test).parameters else {}))


def test_every_block_of_the_how_to_is_run_here_or_marked_as_a_sketch():
    lines = (EXAMPLE.parents[1] / "howto" / "testing-job-types.md").read_text().splitlines()
    openings = [i for i, line in enumerate(lines) if line.startswith("```") and line.strip() != "```"]
    assert len(openings) == 4
    for i in openings:
        marker = lines[i - 1]
        assert marker in ("<!-- sketch -->", f"<!-- run-by: tests/integration/{Path(__file__).name} -->"), lines[i]
        if marker == "<!-- sketch -->":
            compile("\n".join(lines[i + 1 : lines.index("```", i + 1)]), "sketch", "exec")
    includes = {line.split("/")[-1] for line in lines if line.startswith("```{literalinclude}")}
    assert includes == {f"{name}.py" for name in NAMES}
