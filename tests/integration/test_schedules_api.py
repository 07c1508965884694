"""Recurring jobs in the management API (/api/schedules/) against real PostgreSQL and Redis."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Job, Schedule, ScheduleRun
from tests.api_coverage import covers

OPERATIONS = [
    ("get", "/api/schedules/"),
    ("post", "/api/schedules/"),
    ("get", "/api/schedules/nightly/"),
    ("patch", "/api/schedules/nightly/"),
    ("delete", "/api/schedules/nightly/"),
    ("post", "/api/schedules/nightly/pause/"),
    ("post", "/api/schedules/nightly/resume/"),
    ("post", "/api/schedules/nightly/trigger/"),
    ("get", "/api/schedules/nightly/runs/"),
]
NEW = {"name": "nightly", "job_type": "noop", "cron": "0 3 * * *", "timezone": "Europe/Berlin"}


def schedule(name: str = "nightly", **fields) -> Schedule:
    return services.schedule_create(**{"name": name, "job_type": "noop", "cron": "*/5 * * * *", **fields})


def code_defined(name: str = "from-code") -> Schedule:
    return schedule(name, source="code")


@pytest.fixture
def staff(client_for):
    return client_for("operator", staff=True)


@pytest.mark.parametrize(("method", "url"), OPERATIONS)
def test_anonymous_clients_get_401(method, url):
    schedule()

    response = getattr(APIClient(), method)(url, NEW, format="json")

    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(("method", "url"), OPERATIONS)
def test_non_staff_clients_and_staff_without_the_permission_get_403(client_for, method, url):
    original = schedule()
    client, viewer = client_for("someone"), client_for("viewer", staff=True, perms=("view_job",))

    answers = [getattr(who, method)(url, {**NEW, "name": "other"}, format="json") for who in (client, viewer)]

    assert [a.status_code for a in answers] == [403, 403], [a.content for a in answers]
    assert list(Schedule.objects.values_list("name", "enabled")) == [("nightly", True)]
    assert Schedule.objects.get().updated_at == original.updated_at
    assert not Job.objects.exists()


def test_staff_who_may_only_view_schedules_read_but_change_nothing(client_for):
    schedule()
    viewer = client_for("viewer", staff=True, perms=("view_schedule",))

    assert viewer.get("/api/schedules/").status_code == 200
    assert viewer.get("/api/schedules/nightly/runs/").status_code == 200
    assert viewer.post("/api/schedules/nightly/pause/").status_code == 403
    assert Schedule.objects.get().enabled


@covers("POST", "/api/schedules/")
def test_creating_a_schedule_answers_201_with_its_next_tick(staff):
    response = staff.post("/api/schedules/", {**NEW, "payload": {"n": 1}, "priority": "high"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["job_type"], body["cron"], body["timezone"]) == (
        "nightly",
        "noop",
        "0 3 * * *",
        "Europe/Berlin",
    )
    assert (body["payload"], body["priority"], body["source"], body["enabled"]) == ({"n": 1}, "high", "runtime", True)
    assert body["last_run"] is None and body["interval_seconds"] is None
    next_tick = datetime.fromisoformat(body["next_tick_at"])
    assert timezone.now() < next_tick <= timezone.now() + timedelta(days=1)
    assert next_tick.astimezone(ZoneInfo("Europe/Berlin")).hour == 3
    assert Schedule.objects.get(name="nightly").source == "runtime"


@covers("POST", "/api/schedules/")
def test_an_interval_schedule_with_its_policies(staff):
    body = {
        "name": "every-10s",
        "job_type": "noop",
        "interval_seconds": 10,
        "missed": "all_within",
        "catch_up_seconds": 600,
        "overlap": "skip",
        "max_retries": 0,
    }

    created = staff.post("/api/schedules/", body, format="json")

    assert created.status_code == 201, created.content
    answer = created.json()
    assert {key: answer[key] for key in body} == body
    assert answer["cron"] == ""


BAD = [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "every day"}, "cron"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"job_type": "no.such.type"}, "job_type"),
    ({"job_type": "email_welcome", "payload": {"email": "not-an-address"}}, "payload"),
    ({"payload": [1, 2]}, "payload"),
    ({"priority": "urgent"}, "priority"),
    ({"missed": "sometimes"}, "missed"),
    ({"overlap": "maybe"}, "overlap"),
    ({"missed": "all_within"}, "catch_up_seconds"),
    ({"cron": "", "interval_seconds": 0}, "interval_seconds"),
    ({"cron": "", "interval_seconds": 10**12}, "interval_seconds"),
    ({"missed": "all_within", "catch_up_seconds": 2**31}, "catch_up_seconds"),
    ({"max_retries": -1}, "max_retries"),
    ({"colour": "red"}, "colour"),
    ({"name": ""}, "name"),
    ({"name": "team/nightly"}, "name"),
    ({"name": "../nightly"}, "name"),
    ({"name": "nightly run"}, "name"),
]


@covers("POST", "/api/schedules/")
@pytest.mark.parametrize(("change", "field"), BAD)
def test_bad_input_on_create_is_a_400_naming_the_field(staff, change, field):
    response = staff.post("/api/schedules/", {**NEW, **change}, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not Schedule.objects.exists()


@covers("POST", "/api/schedules/")
def test_cron_and_interval_together_or_neither_are_refused(staff):
    both = staff.post("/api/schedules/", {**NEW, "interval_seconds": 60}, format="json")
    neither = staff.post("/api/schedules/", {"name": "x", "job_type": "noop"}, format="json")

    for response in (both, neither):
        assert response.status_code == 400, response.content
        assert set(response.json()) & {"cron", "interval_seconds"}, response.json()
    assert not Schedule.objects.exists()


@covers("POST", "/api/schedules/")
def test_a_name_already_taken_is_a_400_naming_it(staff):
    schedule()

    response = staff.post("/api/schedules/", NEW, format="json")

    assert response.status_code == 400, response.content
    assert "name" in response.json()
    assert Schedule.objects.get().cron == "*/5 * * * *"


@covers("GET", "/api/schedules/")
def test_schedules_are_listed_by_name_with_next_and_last_run(staff):
    quiet = schedule("b-quiet", interval_seconds=60, cron="")
    busy = schedule("a-busy")
    job = services.schedule_trigger(schedule=busy)
    code_defined("c-code")

    response = staff.get("/api/schedules/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 3
    rows = {row["name"]: row for row in body["results"]}
    assert [row["name"] for row in body["results"]] == ["a-busy", "b-quiet", "c-code"]
    assert rows["a-busy"]["last_run"]["outcome"] == "fired"
    assert rows["a-busy"]["last_run"]["job"] == str(job.pk)
    assert rows["a-busy"]["last_run"]["job_status"] == Job.objects.get(pk=job.pk).status
    assert rows["b-quiet"]["last_run"] is None and rows["b-quiet"]["interval_seconds"] == 60
    assert rows["c-code"]["source"] == "code"
    assert rows["b-quiet"]["next_tick_at"] is not None and quiet.pk


@covers("GET", "/api/schedules/")
def test_the_schedule_list_is_paginated_and_refuses_unknown_parameters(staff):
    for n in range(5):
        schedule(f"s{n}")

    page = staff.get("/api/schedules/", {"page_size": 2, "page": 3}).json()
    unknown = staff.get("/api/schedules/", {"colour": "red"})

    assert (page["count"], [row["name"] for row in page["results"]], page["next"]) == (5, ["s4"], None)
    assert unknown.status_code == 400 and "colour" in unknown.json()


@covers("GET", "/api/schedules/{name}/")
def test_a_schedule_is_shown_and_an_unknown_name_is_a_404(staff):
    schedule(payload={"a": 1})

    shown = staff.get("/api/schedules/nightly/")
    missing = [getattr(staff, method)(f"/api/schedules/nope/{suffix}") for method, suffix in _ONE_SCHEDULE]

    assert shown.status_code == 200 and shown.json()["payload"] == {"a": 1}
    assert [response.status_code for response in missing] == [404] * len(_ONE_SCHEDULE)
    assert missing[0].json() == {"detail": "no schedule named 'nope'"}


_ONE_SCHEDULE = [
    ("get", ""),
    ("patch", ""),
    ("delete", ""),
    ("post", "pause/"),
    ("post", "resume/"),
    ("post", "trigger/"),
    ("get", "runs/"),
]


@covers("PATCH", "/api/schedules/{name}/")
def test_updating_changes_only_the_fields_given_and_recomputes_the_next_tick(staff):
    before = schedule(timezone="UTC")

    response = staff.patch("/api/schedules/nightly/", {"cron": "", "interval_seconds": 3600}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["cron"], body["interval_seconds"], body["job_type"], body["timezone"]) == ("", 3600, "noop", "UTC")
    after = Schedule.objects.get()
    assert after.next_tick_at != before.next_tick_at
    assert after.next_tick_at <= timezone.now() + timedelta(seconds=3601)


@covers("PATCH", "/api/schedules/{name}/")
@pytest.mark.parametrize(("change", "field"), [pair for pair in BAD if pair[1] not in {"name", "catch_up_seconds"}])
def test_bad_input_on_update_is_a_400_naming_the_field_and_changes_nothing(staff, change, field):
    schedule()

    response = staff.patch("/api/schedules/nightly/", change, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    after = Schedule.objects.get()
    assert (after.cron, after.job_type, after.timezone, after.payload) == ("*/5 * * * *", "noop", "UTC", {})


@covers("PATCH", "/api/schedules/{name}/")
def test_a_schedule_keeps_its_name(staff):
    schedule()

    response = staff.patch("/api/schedules/nightly/", {"name": "renamed"}, format="json")

    assert response.status_code == 400 and "name" in response.json()
    assert Schedule.objects.get().name == "nightly"


@covers("PATCH", "/api/schedules/{name}/")
@covers("DELETE", "/api/schedules/{name}/")
def test_a_code_defined_schedule_cannot_be_edited_or_deleted_but_can_be_paused(staff):
    code_defined()

    edit = staff.patch("/api/schedules/from-code/", {"cron": "0 * * * *"}, format="json")
    delete = staff.delete("/api/schedules/from-code/")
    pause = staff.patch("/api/schedules/from-code/", {"enabled": False}, format="json")
    paused = staff.post("/api/schedules/from-code/resume/")

    assert edit.status_code == 409, edit.content
    assert "defined in code" in edit.json()["source"][0]
    assert delete.status_code == 409 and "defined in code" in delete.json()["source"][0]
    assert pause.status_code == 200 and pause.json()["enabled"] is False
    assert paused.status_code == 200 and paused.json()["enabled"] is True
    assert Schedule.objects.get().cron == "*/5 * * * *"


@covers("DELETE", "/api/schedules/{name}/")
def test_deleting_a_schedule_removes_it_and_its_runs_but_keeps_their_jobs(staff):
    job = services.schedule_trigger(schedule=schedule())

    response = staff.delete("/api/schedules/nightly/")

    assert response.status_code == 204
    assert not Schedule.objects.exists() and not ScheduleRun.objects.exists()
    assert Job.objects.filter(pk=job.pk).exists()
    assert staff.get("/api/schedules/nightly/").status_code == 404


@covers("POST", "/api/schedules/{name}/pause/")
@covers("POST", "/api/schedules/{name}/resume/")
def test_pausing_and_resuming_a_schedule(staff):
    original = schedule(interval_seconds=60, cron="")
    Schedule.objects.filter(pk=original.pk).update(next_tick_at=timezone.now() - timedelta(hours=1))

    paused = staff.post("/api/schedules/nightly/pause/")
    resumed = staff.post("/api/schedules/nightly/resume/")

    assert paused.status_code == 200 and paused.json()["enabled"] is False
    assert resumed.status_code == 200 and resumed.json()["enabled"] is True
    # Resumed from now on: the ticks that fell while paused are not due at once.
    assert Schedule.objects.get().next_tick_at > timezone.now() - timedelta(seconds=1)


@covers("POST", "/api/schedules/{name}/trigger/")
def test_run_now_answers_201_with_an_ordinary_job_and_records_a_run(staff, broker):
    original = schedule(job_type="test.sleep", payload={"ms": 1}, priority="low")

    response = staff.post("/api/schedules/nightly/trigger/")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["type"], body["payload"], body["priority"]) == ("test.sleep", {"ms": 1}, "low")
    assert body["status"] == "queued"
    run = ScheduleRun.objects.get()
    assert (str(run.job_id), run.outcome) == (body["id"], "fired")
    assert Schedule.objects.get().next_tick_at == original.next_tick_at
    assert broker.llen("low") == 1


@covers("GET", "/api/schedules/{name}/runs/")
def test_the_runs_of_a_schedule_newest_first_with_their_jobs(staff):
    nightly = schedule()
    now = timezone.now()
    ScheduleRun.objects.create(
        schedule=nightly, tick_at=now - timedelta(hours=2), outcome="missed", recorded_at=now - timedelta(hours=1)
    )
    job = services.schedule_trigger(schedule=nightly)
    schedule("other")

    response = staff.get("/api/schedules/nightly/runs/", {"page_size": 10})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 2
    fired, missed = body["results"]
    assert (fired["outcome"], fired["job"], fired["job_status"]) == ("fired", str(job.pk), "queued")
    assert (missed["outcome"], missed["job"], missed["job_status"]) == ("missed", None, None)


def test_every_schedule_change_is_in_the_admin_history_with_its_actor(staff):
    assert staff.post("/api/schedules/", NEW, format="json").status_code == 201
    assert staff.patch("/api/schedules/nightly/", {"payload": {"x": 1}}, format="json").status_code == 200
    assert staff.post("/api/schedules/nightly/pause/").status_code == 200
    assert staff.post("/api/schedules/nightly/resume/").status_code == 200
    assert staff.post("/api/schedules/nightly/trigger/").status_code == 201
    assert staff.delete("/api/schedules/nightly/").status_code == 204

    entries = [(e.user.username, e.get_change_message()) for e in LogEntry.objects.order_by("pk")]
    assert [user for user, _ in entries] == ["operator"] * 6
    messages = [message for _, message in entries]
    assert messages[:4] == [
        "Created through the API",
        "Changed payload through the API",
        "Paused through the API",
        "Resumed through the API",
    ]
    assert messages[4].startswith("Run now through the API as job ") and messages[5] == "Deleted through the API"


def test_a_schedule_named_before_names_were_restricted_is_left_alone_and_can_still_be_changed(staff):
    old = schedule()
    Schedule.objects.filter(pk=old.pk).update(name="team/nightly")  # as made by an earlier version
    old.refresh_from_db()

    old = services.schedule_update(schedule=old, cron="0 4 * * *")
    services.schedule_pause(schedule=old)

    stored = Schedule.objects.get(pk=old.pk)
    assert stored.name == "team/nightly" and stored.cron == "0 4 * * *" and not stored.enabled
    services.schedule_delete(schedule=old)
    assert not Schedule.objects.exists()
