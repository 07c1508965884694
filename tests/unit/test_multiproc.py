import os
import subprocess
import sys

from jobs.adapters import multiproc


def a_dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_prepare_gives_an_empty_directory_and_removes_those_of_processes_that_are_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("JOB_METRICS_DIR", str(tmp_path))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # restored (unset) after the test
    own = tmp_path / f"worker-{os.getpid()}"
    own.mkdir()
    (own / "counter_1.db").write_bytes(b"stale")
    abandoned = tmp_path / f"worker-{a_dead_pid()}"
    abandoned.mkdir()
    other_kind = tmp_path / f"web-{a_dead_pid()}"
    other_kind.mkdir()

    path = multiproc.prepare("worker")

    assert path == own and list(path.iterdir()) == []
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
    assert not abandoned.exists()
    assert other_kind.exists()  # a web master's directory is for gunicorn to clean


def test_the_base_directory_defaults_to_metrics_under_the_var_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("JOB_METRICS_DIR", raising=False)
    monkeypatch.setenv("JOBQUEUE_VAR_DIR", str(tmp_path))

    assert multiproc.base_dir() == tmp_path / "metrics"
