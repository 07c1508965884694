"""`make run` as a new user meets it: the stack `manage.py run_dev` starts, the CLI page's
commands (docs/howto/cli.md, the README's among them) run as written in another shell (no
environment but the checkout's var/), and the
60-second demonstration (`jobs demo`) seen in the admin in a real Chromium: a retry, dead
letters, a running job's progress and the mail the development SMTP sink kept.

The stack runs on its own var/ directory (JOBQUEUE_VAR_DIR) and free ports, so it never touches
a developer's own var/ or a `make run` already running.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import servers
from tests.servers import ROOT

from .test_admin_browser import launch_browser, shot  # noqa: F401  (the browser fixture)

README = ROOT / "README.md"
CLI_PAGE = ROOT / "docs/howto/cli.md"
# What a shell on a developer's machine has; nothing of the tests' own configuration.
KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER")


def plain_env(var_dir: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in KEPT if name in os.environ}
    return {**env, "JOBQUEUE_VAR_DIR": str(var_dir)}


def readme_cli_commands() -> list[str]:
    """The command lines of the CLI page's first block, in order; the README's are among them."""
    block = re.search(r"```bash\n(.*?)```", CLI_PAGE.read_text(), re.S).group(1)
    prefix = ".venv/bin/python manage.py jobs "
    commands = [line for line in block.splitlines() if line.startswith(prefix)]
    marked = re.findall(r"<!-- run-by: tests/e2e/test_dev_stack.py -->\n```bash\n(.*?)```", README.read_text(), re.S)
    in_readme = [line for block in marked for line in block.splitlines()]
    assert in_readme and set(in_readme) <= set(commands), "the README's commands run here too"
    return commands


class DevStack:
    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self.web_port = servers.free_port()
        self.log = var_dir / "run_dev.log"
        self.process: subprocess.Popen | None = None

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        ports = {
            "WEB_PORT": self.web_port,
            "FLOWER_PORT": servers.free_port(),
            "JOBQUEUE_DEV_REDIS_PORT": servers.free_port(),
            "JOBQUEUE_DEV_SMTP_PORT": servers.free_port(),
            "JOB_WORKER_METRICS_PORT": servers.free_port(),
            "JOB_MOVER_METRICS_PORT": servers.free_port(),
        }
        # As `make run` starts it: DEBUG=1 and nothing else configured.
        env = {**plain_env(self.var_dir), "DEBUG": "1", **{name: str(port) for name, port in ports.items()}}
        python = str(ROOT / ".venv" / "bin" / "python")
        python = python if os.path.exists(python) else sys.executable
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [python, "manage.py", "run_dev"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            servers.wait_for(self.ready, timeout=120, what="run_dev's banner")
        except TimeoutError:
            self.stop()
            raise AssertionError(f"run_dev did not come up:\n{self.log.read_text()[-4000:]}") from None

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"run_dev exited ({self.process.returncode}):\n{self.log.read_text()[-4000:]}")
        return "jobqueue is running." in self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def shell(self, line: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """`line` run by bash from the checkout, as a user types it in another terminal."""
        return subprocess.run(
            ["bash", "-c", line], cwd=ROOT, env=plain_env(self.var_dir), capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def jobs(self, *args: str) -> list | dict:
        done = self.shell(".venv/bin/python manage.py jobs --json " + " ".join(shlex.quote(a) for a in args))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def dev_stack(tmp_path_factory):
    if not (ROOT / ".venv" / "bin" / "python").exists():
        servers.unavailable("no .venv: the README's commands run .venv/bin/python (make venv)")
    stack = DevStack(tmp_path_factory.mktemp("dev-var"))
    stack.start()
    yield stack
    stack.stop()


def wait_for_status(stack: DevStack, job_id: str, status: str, timeout: float = 90) -> dict:
    found = {}

    def reached() -> bool:
        found.update(stack.jobs("status", job_id))
        return found["status"] == status

    servers.wait_for(reached, timeout=timeout, what=f"job {job_id} to be {status}", interval=0.5)
    return found


def a_job(stack: DevStack, **filters: str) -> str:
    args = [f"--{name.replace('_', '-')}={value}" for name, value in filters.items()]
    jobs = stack.jobs("list", *args)
    assert jobs, f"no job with {filters}"
    return jobs[0]["id"]


@pytest.mark.timeout(600)
def test_the_readme_cli_section_runs_as_written_against_make_run(dev_stack):
    commands = readme_cli_commands()
    assert len(commands) >= 15, commands
    # The subcommands taking an <id>, and the job each needs, found as a user would (jobs list).
    targets = {
        "status": lambda: a_job(dev_stack),
        "retry": lambda: a_job(dev_stack, status="dead", type="demo.flaky"),
        "resubmit": lambda: a_job(dev_stack, status="succeeded"),
        "run-now": lambda: a_job(dev_stack, status="scheduled"),
        "cancel": lambda: a_job(dev_stack, status="scheduled"),
        "delete": lambda: a_job(dev_stack, status="succeeded"),
    }
    for line in commands:
        subcommand = line.split()[3]
        if "<id>" in line:
            if subcommand == "retry":  # the demonstration's always-failing job, dead by now
                dead = ("list", "--status=dead", "--type=demo.flaky")
                servers.wait_for(lambda q=dead: dev_stack.jobs(*q), timeout=90, what="a dead demo.flaky", interval=0.5)
            line = line.replace("<id>", targets[subcommand]())
        done = dev_stack.shell(line)
        assert done.returncode == 0, f"{line}\nexit {done.returncode}\n{done.stderr}"
        assert "Traceback" not in done.stderr and " INFO " not in done.stderr, f"{line}\n{done.stderr}"
        assert "None" not in done.stdout.split() and "{'" not in done.stdout, f"{line}: a Python repr\n{done.stdout}"

    stats = dev_stack.shell(".venv/bin/python manage.py jobs stats")
    assert "workers online: 1" in stats.stdout, stats.stdout


@pytest.mark.timeout(600)
def test_the_60_second_demo_shows_a_retry_dead_letters_progress_and_mail_in_the_admin(dev_stack, launch_browser):  # noqa: F811
    submitted = {(j["type"], json.dumps(j["payload"], sort_keys=True)): j["id"] for j in dev_stack.jobs("demo")}
    flaky = submitted[("demo.flaky", '{"failures": 2}')]
    doomed = submitted[("demo.flaky", '{"failures": 10}')]
    slow = submitted[("demo.slow", '{"seconds": 30}')]
    bounced = submitted[("email_welcome", '{"email": "bounce@example.com"}')]
    greylisted = submitted[("email_welcome", '{"email": "greylist@example.com"}')]

    assert [a["outcome"] for a in wait_for_status(dev_stack, flaky, "succeeded")["history"]] == [
        "failed",
        "failed",
        "succeeded",
    ]
    assert "451" in wait_for_status(dev_stack, greylisted, "succeeded")["history"][0]["error"]["message"]
    assert "550" in wait_for_status(dev_stack, bounced, "dead")["reason"]
    running = wait_for_status(dev_stack, slow, "running")
    servers.wait_for(
        lambda: 0 < dev_stack.jobs("status", slow)["progress"]["percent"] < 100, timeout=30, what="progress"
    )
    assert running["worker"]

    with launch_browser() as page:
        page.goto(f"{dev_stack.web}/admin/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "admin")
        page.click("input[type=submit]")
        page.wait_for_selector("text=Open the overview")

        page.goto(f"{dev_stack.web}/admin/jobs/job/?status__exact=running")
        row = page.locator("#result_list tbody tr", has_text=slow[:8])
        row.wait_for()
        width = row.locator(".jq-progress span").evaluate("bar => bar.style.width")
        assert 0 < int(width.rstrip("%")) < 100, width
        shot(page, "demo-01-running-with-progress")

        page.goto(f"{dev_stack.web}/admin/jobs/job/{flaky}/change/")
        history = page.locator("#content").inner_text()
        assert history.count("failed") >= 2 and "demo failure 1 of 2" in history
        shot(page, "demo-02-retried-then-succeeded")

        wait_for_status(dev_stack, doomed, "dead")
        page.goto(f"{dev_stack.web}/admin/jobs/deadjob/")
        letters = page.locator("#result_list").inner_text()
        assert doomed[:8] in letters and bounced[:8] in letters
        shot(page, "demo-03-dead-letters")

        page.click("nav.jq-nav >> text=Mail (dev)")
        page.wait_for_selector("#dev-mailbox")
        mail = page.locator("#dev-mailbox").inner_text()
        assert "greylist@example.com" in mail and "Welcome aboard" in mail
        assert "bounce@example.com" not in mail
        shot(page, "demo-04-mailbox")
