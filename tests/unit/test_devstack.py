"""The development stack's supervisor: a stop that takes a while says what it waits for."""

import io
import sys

from jobs.devstack.processes import ProcessSpec, Supervisor
from tests import servers

# A child that shuts down slowly (as a worker finishing its running jobs) or at once.
SLOW = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1.5), sys.exit(0)))"
CHILD = "{}; print('up', flush=True); time.sleep(60)"


def start(supervisor: Supervisor, name: str, code: str, **fields) -> None:
    supervisor.start(ProcessSpec(name, [sys.executable, "-c", code], **fields), env={})
    servers.wait_for(lambda: f"{name:<7}| up" in supervisor.out.getvalue(), timeout=20, what=f"{name} to start")


def test_a_slow_stop_says_what_it_waits_for_and_a_quick_one_says_nothing():
    supervisor = Supervisor(cwd=".", out=io.StringIO())
    start(supervisor, "quick", CHILD.format("import time"))
    start(supervisor, "slow", CHILD.format(SLOW), stopping=": its running jobs finish")

    supervisor.stop(grace=10)

    said = [line for line in supervisor.out.getvalue().splitlines() if "|" not in line]
    assert said == ["waiting up to 9s for slow to stop: its running jobs finish"]
    assert [child.process.returncode for child in supervisor.children] == [-15, 0]
