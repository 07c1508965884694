"""Recurring jobs in the admin over Django's test client: the list, the form, the actions, the runs."""

import re
from datetime import timedelta

from django.contrib.admin.models import LogEntry
from django.test import Client
from django.utils import timezone

from jobs import services
from jobs.models import Job, Schedule, ScheduleRun

CHANGELIST = "/admin/jobs/schedule/"
FORM = {
    "name": "nightly",
    "job_type": "noop",
    "payload": "{}",
    "priority": "medium",
    "max_retries": "",
    "cron": "0 3 * * *",
    "interval_seconds": "",
    "timezone": "Europe/Berlin",
    "enabled": "on",
    "missed": "skip",
    "catch_up_seconds": "",
    "overlap": "allow",
}


def schedule(name: str = "nightly", **fields) -> Schedule:
    return services.schedule_create(**{"name": name, "job_type": "noop", "cron": "*/5 * * * *", **fields})


def html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def page(schedule: Schedule) -> str:
    return f"{CHANGELIST}{schedule.pk}/change/"


def errors(response) -> list[str]:
    return re.findall(r'<ul class="errorlist[^>]*>.*?</ul>', response.content.decode(), re.S)


def history(schedule: Schedule) -> list[str]:
    return [e.get_change_message() for e in LogEntry.objects.filter(object_id=str(schedule.pk)).order_by("pk")]


def test_the_list_shows_type_timing_next_and_last_run_with_its_outcome(operator):
    busy = schedule("busy", timezone="Europe/Berlin")
    job = services.schedule_trigger(schedule=busy)
    services.schedule_pause(schedule=schedule("resting", cron="", interval_seconds=90))
    Schedule.objects.filter(pk=busy.pk).update(next_tick_at=timezone.now() + timedelta(minutes=10, seconds=30))

    text = html(operator.get(CHANGELIST))

    assert "*/5 * * * * (Europe/Berlin)" in text and "90s (UTC)" in text
    assert 'style="background:#198754">fired<' in text
    assert f'href="/admin/jobs/job/{job.pk}/change/"' in text
    assert "paused" in text and ">in 10m<" in text
    for column in ("job_type", "every", "next_run", "last_run", "last_outcome", "enabled"):
        assert f"column-{column}" in text, column


def test_a_run_time_schedule_is_created_through_the_form(operator):
    response = operator.post(f"{CHANGELIST}add/", FORM)

    assert response.status_code == 302, response.content.decode()[:2000]
    created = Schedule.objects.get()
    assert (created.cron, created.timezone, created.source) == ("0 3 * * *", "Europe/Berlin", "runtime")
    assert created.next_tick_at is not None
    assert history(created) == ["Added."]


def test_bad_input_in_the_form_is_shown_on_its_field_and_nothing_is_stored(operator):
    cases = [
        ({"cron": "61 * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"job_type": "email_welcome", "payload": '{"email": "nope"}'}, "payload"),
        ({"cron": "", "interval_seconds": ""}, "cron"),
        ({"missed": "all_within"}, "catch_up_seconds"),
        ({"cron": "", "interval_seconds": str(10**12)}, "interval_seconds"),
        ({"name": "team/nightly"}, "name"),
    ]
    for change, field in cases:
        response = operator.post(f"{CHANGELIST}add/", {**FORM, **change})

        assert f'id="id_{field}_error"' in response.content.decode(), (field, errors(response))
    assert not Schedule.objects.exists()


def test_a_run_time_schedule_is_edited_through_the_services(operator):
    original = schedule()

    response = operator.post(page(original), {**FORM, "cron": "", "interval_seconds": "120"})
    refused = operator.post(page(original), {**FORM, "cron": "not cron"})

    assert response.status_code == 302
    edited = Schedule.objects.get()
    assert (edited.cron, edited.interval_seconds, edited.name) == ("", 120, "nightly")
    assert edited.next_tick_at != original.next_tick_at
    assert refused.status_code == 200 and 'id="id_cron_error"' in refused.content.decode(), errors(refused)
    assert Schedule.objects.get().interval_seconds == 120


def test_a_code_defined_schedule_is_read_only_but_can_be_paused(operator):
    from_code = schedule("from-code", source="code")

    text = html(operator.get(page(from_code)))
    edit = operator.post(page(from_code), {**FORM, "name": "from-code", "cron": "0 * * * *"})
    delete = operator.post(f"{page(from_code)[: -len('change/')]}delete/", {"post": "yes"})
    pause = operator.post(f"{CHANGELIST}{from_code.pk}/operate/pause/")

    assert "Defined in code" in text and 'name="cron"' not in text and ">Pause<" in text
    assert edit.status_code == 403 and delete.status_code == 403
    after = Schedule.objects.get()
    assert (after.cron, after.enabled) == ("*/5 * * * *", False)
    assert pause.status_code == 302 and history(from_code) == ["Paused from the admin"]


def test_the_actions_pause_resume_and_run_now_go_through_the_services(operator, broker):
    first, second = schedule("first"), schedule("second", cron="", interval_seconds=60)
    Schedule.objects.filter(pk=second.pk).update(next_tick_at=timezone.now() - timedelta(days=1))
    selected = {"_selected_action": [first.pk, second.pk]}

    operator.post(CHANGELIST, {"action": "pause", **selected})
    paused = sorted(Schedule.objects.values_list("enabled", flat=True))
    operator.post(CHANGELIST, {"action": "resume", **selected})
    response = operator.post(CHANGELIST, {"action": "run_now", **selected}, follow=True)

    assert paused == [False, False]
    assert all(Schedule.objects.values_list("enabled", flat=True))
    assert Schedule.objects.get(pk=second.pk).next_tick_at > timezone.now()  # resumed from now on
    assert ScheduleRun.objects.filter(outcome="fired").count() == Job.objects.count() == 2
    assert "Run now: first, second." in response.content.decode()
    assert history(first) == ["Paused from the admin", "Resumed from the admin", history(first)[2]]
    assert history(first)[2].startswith("Run now from the admin as job ")


def test_a_schedules_page_lists_its_runs_with_links_to_their_jobs(operator):
    nightly = schedule()
    now = timezone.now()
    ScheduleRun.objects.create(schedule=nightly, tick_at=now - timedelta(hours=3), outcome="missed", recorded_at=now)
    job = services.schedule_trigger(schedule=nightly)

    text = html(operator.get(page(nightly)))
    runs = html(operator.get("/admin/jobs/schedulerun/", {"schedule__id__exact": nightly.pk}))

    assert 'class="jq-runs"' in text and ">missed<" in text and ">fired<" in text
    assert f'href="/admin/jobs/job/{job.pk}/change/"' in text
    assert f"/admin/jobs/schedulerun/?schedule__id__exact={nightly.pk}" in text
    assert f'href="/admin/jobs/job/{job.pk}/change/"' in runs and ">missed<" in runs


def test_the_page_buttons_need_post_and_the_change_permission(operator, make_user):
    nightly = schedule()
    viewer, _ = make_user("viewer", staff=True, perms=("view_schedule", "view_schedulerun"))
    client = Client()
    client.force_login(viewer)

    assert operator.get(f"{CHANGELIST}{nightly.pk}/operate/pause/").status_code == 405
    assert client.post(f"{CHANGELIST}{nightly.pk}/operate/pause/").status_code == 403
    assert ">Pause<" not in html(client.get(page(nightly)))
    assert operator.post(f"{CHANGELIST}999999/operate/pause/").status_code == 404
    assert Schedule.objects.get().enabled
