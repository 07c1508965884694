"""`make run` installs requirements-run.txt (the application's requirements.txt and the development
stack's servers); `make test` adds requirements-dev.txt. The image installs requirements.txt alone."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TEST_TOOLS = re.compile(r"^(pytest.*|coverage|playwright|schemathesis|ruff|import-linter|grimp|hypothesis|sybil)$")


def pins(name: str) -> tuple[list[str], set[str]]:
    """The files a requirements file includes (-r) and the packages it names itself."""
    included, names = [], set()
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            included.append(line[3:].strip())
        elif line:
            names.add(re.split(r"[\[=<>~!; ]", line, maxsplit=1)[0].lower())
    return included, names


def test_each_requirements_file_adds_to_the_one_below_it():
    assert pins("requirements.txt")[0] == []
    assert pins("requirements-run.txt")[0] == ["requirements.txt"]
    assert pins("requirements-dev.txt")[0] == ["requirements-run.txt"]


def test_the_application_and_make_run_install_no_test_tool():
    _, dev = pins("requirements-dev.txt")
    assert {name for name in dev if TEST_TOOLS.match(name)} >= {"pytest", "pytest-xdist", "playwright", "ruff"}
    for name in ("requirements.txt", "requirements-run.txt"):
        _, names = pins(name)
        assert not {n for n in names if TEST_TOOLS.match(n)}, f"{name} installs test tools"
        assert not names & dev, f"{name} and requirements-dev.txt both pin {sorted(names & dev)}"
