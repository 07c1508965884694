"""A list of hostile values sent into every field and parameter a client or an operator controls:
no answer may be a 5xx, and every job accepted stays readable everywhere (status, management
API, admin).

The list is the one an attacker tries first: text the database or JSON cannot carry (lone
surrogates, NUL), numbers past every limit, deep nesting, injections (SQL, header, template,
path), control and direction characters, wrong types, and raw bodies that are not JSON.
"""

import json
from urllib.parse import quote, urlencode

import pytest
from django.test import Client

from jobs.models import Job
from jobs.rules.exceptions import JobQueueError, error_detail

HOSTILE_TEXT = [
    "\ud800",
    "x\udfffy",
    "\u0000",
    "nul\u0000inside",
    "\x1b[31mred",
    "\u202eevil\u202c",
    "\ufeffbom",
    "\r\nX-Injected: 1",
    "' OR '1'='1'; DROP TABLE jobs_job; --",
    "../../../../etc/passwd",
    "<script>alert(1)</script>",
    "{{ settings.SECRET_KEY }}",
    "%s%n%x{0}{}",
    "🧨" * 300,
    "a" * 100_000,
    "",
    " ",
]
HOSTILE_NUMBERS = [-1, 0, 2**63, -(2**63) - 1, 10**400, 1e308, -1e308, 0.5, True]
HOSTILE_SHAPES = [None, [], {}, [1, 2], {"a": {"b": {"c": None}}}, "1", "null", "true"]


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"d": value}
    return value


HOSTILE = [*HOSTILE_TEXT, *HOSTILE_NUMBERS, *HOSTILE_SHAPES, deep(40), deep(200)]
TOO_DEEP = 5000
# Raw bodies (JSON has no NaN or Infinity; some are not JSON at all or not UTF-8).
RAW_BODIES = [
    b'{"type": "noop", "payload": {"x": NaN}}',
    b'{"type": "noop", "payload": {"x": Infinity}}',
    b'{"type": "noop", "payload": {"x": 1e999999}}',
    b'{"type": "noop", "type": "email_welcome", "payload": {}}',
    b'{"type": "noop", "payload": {"x": "\\ud800"}}',
    b'{"type": "noop", "payload": {"x": "\\u0000"}}',
    b'{"type": "noop", "payload": {"\\u0000": 1}}',
    b"\xff\xfe{not utf-8}",
    b"\xef\xbb\xbf{}",
    b"[" * 100_000,
    b'{"type": "noop", "payload": ' + b'{"d": ' * TOO_DEEP + b"{}" + b"}" * TOO_DEEP + b"}",
    b'{"type": ',
    b"",
    b"null",
    b"[]",
]
SUBMIT_FIELDS = ("type", "payload", "priority", "delay", "run_at", "max_retries", "idempotency_key")


def post(client, path: str, body):
    """POST `body` as JSON with \\u escapes (what a client sends for a lone surrogate)."""
    return client.generic("POST", path, json.dumps(body), content_type="application/json")


def server_errors(answers: list[tuple[str, int]]) -> list[str]:
    return [what for what, status in answers if status >= 500]


def bodies():
    """(what, body) for submit-job: each hostile value in each field, and inside the payload."""
    for field in SUBMIT_FIELDS:
        for value in HOSTILE:
            yield f"{field}={value!r:.40}", {"type": "noop", "payload": {}, field: value}
    for value in HOSTILE:
        yield f"payload.x={value!r:.40}", {"type": "noop", "payload": {"x": value}}
        if isinstance(value, str):
            yield f"payload key {value!r:.40}", {"type": "noop", "payload": {value: 1}}
    for value in HOSTILE_TEXT:
        yield f"email {value!r:.40}", {"type": "email_welcome", "payload": {"email": value}}
        yield f"report {value!r:.40}", {"type": "report", "payload": {"since": value, "until": value}}


def test_no_hostile_submission_is_a_server_error_and_every_accepted_job_is_readable(client_for):
    client = client_for()
    client.raise_request_exception = False
    answers, accepted = [], []
    for what, body in bodies():
        one = post(client, "/submit-job", body)
        many = post(client, "/submit-jobs", {"jobs": [body]})
        answers += [(f"/submit-job {what}", one.status_code), (f"/submit-jobs {what}", many.status_code)]
        if one.status_code == 201:
            accepted.append(one.json()["id"])
        if many.status_code == 201:
            accepted += [job["id"] for job in many.json()["jobs"]]
    for raw in RAW_BODIES:
        for path in ("/submit-job", "/submit-jobs"):
            response = client.generic("POST", path, raw, content_type="application/json")
            answers.append((f"{path} raw {raw[:40]!r}", response.status_code))

    assert not server_errors(answers), server_errors(answers)
    assert accepted, "no hostile submission was accepted at all: the list tests nothing readable"
    assert_readable_everywhere(accepted, client)


def assert_readable_everywhere(ids: list[str], client) -> None:
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_superuser("reader", "reader@example.com", "pw")
    admin = Client(raise_request_exception=False)
    admin.force_login(staff)
    client.force_authenticate(staff)
    unreadable = []
    for job_id in ids:
        for path, reader in (
            (f"/job-status/{job_id}", client),
            (f"/api/jobs/{job_id}/", client),
            (f"/admin/jobs/job/{job_id}/change/", admin),
        ):
            response = reader.get(path)
            if response.status_code != 200:
                unreadable.append(f"{path}: {response.status_code}")
    listing = [client.get("/api/jobs/", {"page_size": 500}), admin.get("/admin/jobs/job/")]
    assert not unreadable and [r.status_code for r in listing] == [200, 200], unreadable
    assert Job.objects.count() >= len(ids)


def test_no_hostile_query_or_path_of_the_management_api_or_admin_is_a_server_error(client_for):
    from django.contrib.auth import get_user_model

    client = client_for("operator", staff=True)
    client.raise_request_exception = False
    admin = Client(raise_request_exception=False)
    admin.force_login(get_user_model().objects.create_superuser("op", "op@example.com", "pw"))
    texts = [value for value in HOSTILE_TEXT if len(value) < 1000] + ["-1", "0", "99999999999999999999", "1e999"]
    answers = []

    def get(reader, path: str, **params: str) -> None:
        # Percent-encoded as a client would send them; a lone surrogate becomes bytes that are not UTF-8.
        query = urlencode(params, encoding="utf-8", errors="surrogatepass")
        answers.append((f"GET {path}?{query}"[:90], reader.get(f"{path}?{query}" if query else path).status_code))

    for value in texts:
        segment = quote(value, safe="", errors="surrogatepass")
        for name in ("status", "type", "priority", "search", "created_after", "created_before", "page", "page_size"):
            get(client, "/api/jobs/", **{name: value})
        get(client, "/api/dead-letter/", type=value)
        for path in (f"/api/jobs/{segment}/", f"/job-status/{segment}", f"/api/queues/{segment}/pause/"):
            get(client, path)
        for path in (f"/api/jobs/{segment}/retry/", f"/api/queues/{segment}/pause/"):
            answers.append((f"POST {path}"[:90], client.post(path, {}, format="json").status_code))
        purge = post(client, "/api/dead-letter/purge/", {"older_than_days": value})
        answers.append((f"purge {value!r:.30}", purge.status_code))
        for query in ("q", "status__exact", "priority__exact", "created_at__gte", "payload__contains", "o", "p"):
            get(admin, "/admin/jobs/job/", **{query: value})
        get(admin, f"/admin/jobs/job/{segment}/change/")
    for raw in ("%FF", "%ED%A0%80", "%00", "%C0%AF"):
        get(client, f"/api/jobs/{raw}/")
        get(client, f"/job-status/{raw}")
        get(admin, f"/admin/jobs/job/{raw}/change/")
        answers.append((f"GET /api/jobs/?search={raw}", client.get(f"/api/jobs/?search={raw}").status_code))
    for value in HOSTILE:
        body = {"payload": value}
        job = post(client, "/submit-job", {"type": "noop", "payload": {}}).json()["id"]
        for action in ("retry", "resubmit"):
            answers.append(
                (f"{action} payload {value!r:.30}", post(client, f"/api/jobs/{job}/{action}/", body).status_code)
            )

    assert not server_errors(answers), server_errors(answers)


# JSON text that no store keeps faithfully, as an operator types it into a form or a shell.
UNSTORABLE_TEXT = {
    "nested 100,000 deep": "[" * 100_000,
    "lone surrogate": '{"x": "\\ud800"}',
    "overflowing number": '{"x": 1e999}',
    "NaN": '{"x": NaN}',
    "Infinity": '{"x": -Infinity}',
    "NUL": '{"x": "a\\u0000b"}',
    "NUL in a key": '{"\\u0000": 1}',
}
# The same as Python values, as code submits them.
UNSTORABLE_VALUES = {
    "nested 5,000 deep": deep(5000),
    "lone surrogate": {"x": ["\ud800"]},
    "infinite number": {"x": float("inf")},
    "NaN": {"x": {"y": float("nan")}},
    "NUL": {"x": "a\x00b"},
    "NUL in a key": {"\x00": 1},
    "NaN in a tuple": {"x": (1, float("nan"))},
    "not JSON at all": {"x": {1, 2}},
}


@pytest.mark.parametrize("value", UNSTORABLE_VALUES.values(), ids=list(UNSTORABLE_VALUES))
def test_every_python_entry_point_refuses_an_unstorable_payload_naming_it(value):
    from jobs import services

    dead_job, _ = services.job_submit(type="noop", payload={})
    Job.objects.filter(pk=dead_job.pk).update(status="dead")
    calls = {
        "job_submit": lambda: services.job_submit(type="noop", payload=value),
        "jobs_submit_many": lambda: services.jobs_submit_many(submissions=[{"type": "noop", "payload": value}]),
        "job_retry": lambda: services.job_retry(job_id=dead_job.pk, payload=value),
        "schedule_create": lambda: services.schedule_create(name="s", job_type="noop", cron="@daily", payload=value),
    }
    for name, call in calls.items():
        with pytest.raises(JobQueueError) as refused:
            call()
        detail = getattr(refused.value, "details", None) if name == "jobs_submit_many" else error_detail(refused.value)
        assert "payload" in str(detail), name
    assert Job.objects.count() == 1 and Job.objects.get().payload == {}


@pytest.mark.parametrize("text", UNSTORABLE_TEXT.values(), ids=list(UNSTORABLE_TEXT))
def test_the_cli_refuses_an_unstorable_payload_as_bad_input_not_an_outage(text):
    from django.core.management import CommandError, call_command

    for args in (("submit", "noop"), ("schedules", "create", "s", "--type", "noop", "--cron", "@daily")):
        with pytest.raises(CommandError) as refused:
            call_command("jobs", *args, "--payload", text)
        assert refused.value.returncode == 1 and "payload" in str(refused.value), (args, str(refused.value))
    assert not Job.objects.exists()


@pytest.mark.parametrize("text", UNSTORABLE_TEXT.values(), ids=list(UNSTORABLE_TEXT))
def test_the_admin_forms_refuse_unstorable_json_on_the_payload_field(operator, text):
    from jobs import services
    from jobs.models import Schedule

    job, _ = services.job_submit(type="noop", payload={"keep": 1})
    Job.objects.filter(pk=job.pk).update(status="dead")
    kept = services.schedule_create(name="kept", job_type="noop", cron="@daily")
    form = {"name": "new", "job_type": "noop", "payload": text, "priority": "medium", "cron": "@daily"}
    form |= {"timezone": "UTC", "enabled": "on", "missed": "skip", "overlap": "allow"}
    answers = {
        "edit and retry": operator.post(f"/admin/jobs/job/{job.pk}/edit-retry/", {"payload": text}),
        "schedule add": operator.post("/admin/jobs/schedule/add/", form),
        "schedule change": operator.post(f"/admin/jobs/schedule/{kept.pk}/change/", {**form, "name": "kept"}),
    }

    for where, answer in answers.items():
        assert answer.status_code == 200, where
        assert 'class="errorlist' in answer.content.decode(), where
    assert Job.objects.get(pk=job.pk).status == "dead" and Job.objects.get(pk=job.pk).payload == {"keep": 1}
    assert list(Schedule.objects.values_list("name", "payload")) == [("kept", {})]


@pytest.mark.parametrize("text", ['{"x": 1e999}', '{"x": "a\\u0000b"}', '{"\\u0000": 1}', '{"x": "\\ud800"}'])
def test_the_api_refuses_an_unstorable_payload_naming_the_field(client_for, text):
    client = client_for("ops", staff=True, perms=("change_job", "view_job", "add_schedule", "view_schedule"))
    dead_job = post(client, "/submit-job", {"type": "noop", "payload": {}}).json()["id"]
    Job.objects.filter(pk=dead_job).update(status="dead")
    answers = {
        path: client.generic("POST", path, body.replace("PAYLOAD", text), content_type="application/json")
        for path, body in (
            ("/submit-job", '{"type": "noop", "payload": PAYLOAD}'),
            ("/submit-jobs", '{"jobs": [{"type": "noop", "payload": PAYLOAD}]}'),
            (f"/api/jobs/{dead_job}/retry/", '{"payload": PAYLOAD}'),
            ("/api/schedules/", '{"name": "s", "job_type": "noop", "cron": "@daily", "payload": PAYLOAD}'),
        )
    }

    for path, answer in answers.items():
        assert answer.status_code == 400, (path, answer.content)
        assert "payload" in answer.content.decode() and "could not be stored" not in answer.content.decode(), path
    assert Job.objects.count() == 1
