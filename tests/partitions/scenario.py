"""What the partition tests share: a load of `test.history` jobs through the web, the counters of
every node, and the system's final state read into `history.Final` for the checker.

The test process reads the database through its own Django connection (unix socket, never cut),
the worker nodes' and the mover's /metrics from inside their namespaces, and the web's /metrics
through its unix socket. Counters are read as deltas against a snapshot taken when the test began
(the cluster lives for a whole module), summed over labels, for job type `test.history` only.
"""

import json
import random
import shutil
import threading
import time
from collections import Counter, defaultdict

from django.db import close_old_connections, connection
from prometheus_client.parser import text_string_to_metric_families

from tests import servers

from . import history, netns

# The partition tests' cluster: a short lease and grace, so fences play out within a test.
LEASE, FENCE_GRACE = 4, 2.0
FENCED_SETTINGS = {
    "JOB_LEASE_SECONDS": str(LEASE),
    "JOB_LEASE_RENEW_SECONDS": "1",
    "JOB_LOST_CHECK_SECONDS": "0.5",
    "JOB_FENCE_GRACE": str(FENCE_GRACE),
    "JOB_CANCEL_GRACE": "2",
    "JOB_FENCE_CHECK_SECONDS": "0.5",
    "JOB_RETRY_BACKOFF_BASE": "0.5",
    "JOB_RETRY_BACKOFF_MAX": "4",
}

TYPE = "test.history"
USER = "partitions"  # the `partitions` fixture's user: who cancels, in the history
COUNTERS = (
    "jobs_submitted_total",
    "jobs_processed_total",
    "jobs_failed_total",
    "jobs_retried_total",
    "jobs_dead_lettered_total",
    "jobs_cancelled_total",
    "job_attempts_fenced_total",
    "job_attempts_killed_total",
    "job_results_refused_total",
)
METRIC_NODES = ("web", "mover", *netns.WORKERS)
SUBMIT_TIMEOUT = 40  # longer than gunicorn's timeout (30 s): every submit gets an answer


def parse_metrics(text: str) -> dict[str, float]:
    """COUNTERS summed over their labels; those labelled with a type only for `test.history`."""
    sums: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in COUNTERS and sample.labels.get("type", TYPE) == TYPE:
                sums[sample.name] += sample.value
    return dict(sums)


def node_metrics(cluster: netns.Cluster, node: str) -> dict[str, float]:
    """One node's counters; the web's through its unix socket (/metrics is open unless METRICS_ACCESS=token)."""
    if node == "web":
        connection_ = netns.UnixHTTPConnection(cluster.web_socket, timeout=20)
        try:
            connection_.request("GET", "/metrics", headers={"Host": "localhost"})
            answer = connection_.getresponse()
            text = answer.read().decode()
        finally:
            connection_.close()
        if answer.status != 200:
            raise RuntimeError(f"the web's /metrics answered {answer.status}: {text[:300]}")
        return parse_metrics(text)
    return parse_metrics(cluster.metrics(node))


def snapshot(cluster: netns.Cluster, nodes=METRIC_NODES) -> dict[str, dict[str, float]]:
    """The nodes' counters now (taken with no cut: every node answers). A node started later has
    none yet: `{}` for it in a snapshot counts all of its counters."""
    return {node: node_metrics(cluster, node) for node in nodes}


def deltas(cluster: netns.Cluster, before: dict[str, dict[str, float]], nodes=None) -> dict[str, dict[str, float]]:
    """Per node (those of `before` unless `nodes`): how much each counter grew since `before`."""
    now = snapshot(cluster, nodes or tuple(before))
    return {node: {name: now[node].get(name, 0) - before[node].get(name, 0) for name in COUNTERS} for node in now}


def collect_final(cluster: netns.Cluster, job_ids, before: dict[str, dict[str, float]]) -> history.Final:
    """The system's final state for the checker: `job_ids` (None: every test.history job in the
    database, which the `db` fixture empties before each test) from the database, dead letters (jobs
    that ended dead), and the counters' growth summed over every node."""
    from jobs.models import Job, JobAttempt

    close_old_connections()
    rows = Job.objects.filter(type=TYPE) if job_ids is None else Job.objects.filter(pk__in=list(job_ids))
    jobs = {
        str(pk): history.JobFinal(status=status, finished_at=finished.timestamp() if finished else None)
        for pk, status, finished in rows.values_list("pk", "status", "finished_at")
    }
    attempts = JobAttempt.objects.filter(job_id__in=list(jobs)).values_list("job_id", "number", "outcome")
    for job_id, number, outcome in attempts:
        final = jobs[str(job_id)]
        final.outcomes[number] = outcome
        if final.status == "succeeded" and outcome == "succeeded":
            final.succeeded_serial = number
    grown = deltas(cluster, before)
    metrics = {name: sum(node[name] for node in grown.values()) for name in COUNTERS}
    dead = {job for job, final in jobs.items() if final.status == "dead"}
    return history.Final(jobs=jobs, dead=dead, metrics=metrics)


def fresh_history(cluster: netns.Cluster) -> None:
    """An empty history directory for this test (the cluster, and so the directory, is the module's)."""
    for path in cluster.history_dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def statuses(job_ids=None) -> Counter:
    from jobs.models import Job

    close_old_connections()
    rows = Job.objects.filter(type=TYPE) if job_ids is None else Job.objects.filter(pk__in=list(job_ids))
    return Counter(rows.values_list("status", flat=True))


def wait_terminal(timeout: float = 60) -> Counter:
    """Waits until every test.history job in the database has a terminal status; their statuses."""
    found: dict[str, Counter] = {}

    def done() -> bool:
        found["now"] = statuses()
        return set(found["now"]) <= history.TERMINAL

    try:
        servers.wait_for(done, timeout=timeout, what="every job to reach a terminal status", interval=0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {dict(found.get('now', {}))}") from None
    return found["now"]


def submit(cluster: netns.Cluster, token: str, payload: dict, **fields) -> tuple[int, dict | str]:
    """One submit through the web; records `accepted` when it answered 201 (only those count)."""
    body = {"type": TYPE, "payload": payload, **fields}
    connection_ = netns.UnixHTTPConnection(cluster.web_socket, timeout=SUBMIT_TIMEOUT)
    sent = {"Host": "localhost", "Accept": "application/json", "Content-Type": "application/json"}
    sent["Authorization"] = f"Token {token}"
    try:
        connection_.request("POST", "/submit-job", body=json.dumps(body).encode(), headers=sent)
        answer = connection_.getresponse()
        text = answer.read().decode(errors="replace")
    finally:
        connection_.close()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = text
    if answer.status == 201:
        cluster.record("accepted", job=parsed["id"])
    return answer.status, parsed


def cancel(cluster: netns.Cluster, token: str, job_id: str) -> int:
    """Cancels a job through the owner's API; records `cancel` (time of the answer) when it answered 200."""
    status, _ = cluster.api("POST", f"/jobs/{job_id}/cancel", token=token)
    if status == 200:
        cluster.record("cancel", job=job_id, by=USER)
    return status


class Load(threading.Thread):
    """Steady load: a `test.history` job every `interval` seconds (1-4 s of work, 10 s for
    `long_share` of them; most call
    ctx.check(), some do not; a few fail, with max_retries 0 or 1, so some retry and some go dead),
    and every `cancel_every`-th submit cancels one running job through the API."""

    def __init__(
        self,
        cluster: netns.Cluster,
        token: str,
        *,
        interval: float = 0.4,
        cancel_every: int = 8,
        seed: int = 0,
        long_share: float = 0.0,
    ) -> None:
        super().__init__(name="partition-load", daemon=True)
        self.cluster, self.token, self.interval, self.cancel_every = cluster, token, interval, cancel_every
        self.random = random.Random(seed)
        self.long_share = long_share  # this share of the jobs runs 10 s: longer than the lease
        self.answers: Counter = Counter()  # submit answers by status
        self.cancels: Counter = Counter()  # cancel answers by status
        self.accepted: list[str] = []
        self.failure: BaseException | None = None
        self.stopping = threading.Event()

    def job(self) -> tuple[dict, dict]:
        pick = self.random.random()
        seconds = 10 if self.random.random() < self.long_share else round(self.random.uniform(1, 4) / 0.2) * 0.2
        payload = {"seconds": seconds, "check": pick >= 0.2, "fail": False}
        fields = {}
        if pick > 0.92:
            payload["fail"] = True
            fields["max_retries"] = self.random.choice((0, 1))
        return payload, fields

    def run(self) -> None:
        try:
            submitted = 0
            while not self.stopping.is_set():
                started = time.monotonic()
                payload, fields = self.job()
                try:
                    status, body = submit(self.cluster, self.token, payload, **fields)
                except OSError as exc:  # no answer: not accepted
                    self.answers[type(exc).__name__] += 1
                else:
                    self.answers[status] += 1
                    if status == 201:
                        self.accepted.append(body["id"])
                submitted += 1
                if self.cancel_every and submitted % self.cancel_every == 0:
                    self.cancel_one()
                self.stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))
        except BaseException as exc:
            self.failure = exc
            raise
        finally:
            connection.close()

    def cancel_one(self) -> None:
        from jobs.models import Job

        running = Job.objects.filter(pk__in=self.accepted[-30:], status="running").values_list("pk", flat=True)
        if running:
            self.cancels[cancel(self.cluster, self.token, str(running[0]))] += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=SUBMIT_TIMEOUT + 5)
        if self.failure is not None:
            raise RuntimeError("the load driver failed") from self.failure


def check(cluster: netns.Cluster, before, *, overlap_bound: float, job_ids=None):
    """Loads the history, reads the final state, runs the checker: (history, final, anomalies)."""
    found = history.load(cluster.history_dir)
    final = collect_final(cluster, job_ids, before)
    anomalies = history.check(found, final, overlap_bound=overlap_bound)
    print("\n" + history.summary(found, anomalies))
    return found, final, anomalies
