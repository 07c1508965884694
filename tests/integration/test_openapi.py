"""The OpenAPI schema: valid, and every operation in it is answered as documented and has a test."""

import copy

import jsonschema
from django.core.management import call_command
from rest_framework.test import APIClient

from jobs import services
from jobs.models import JobArtifact, Schedule
from jobs.rules import states
from tests.api_coverage import COVERED
from tests.integration import (  # noqa: F401  (@covers)
    test_bulk_submit,
    test_client_api,
    test_dashboard,
    test_management_api,
    test_schedules_api,
    test_submit_api,
)

METHODS = {"get", "post", "put", "patch", "delete"}
# Request bodies for operations that need one to succeed.
BODIES = {
    ("POST", "/submit-job"): {"type": "noop", "payload": {}},
    ("POST", "/submit-jobs"): {"jobs": [{"type": "noop", "payload": {}}]},
    ("POST", "/api/schedules/"): {"name": "made", "job_type": "noop", "cron": "@hourly"},
    ("PATCH", "/api/schedules/{name}/"): {"payload": {"n": 1}},
}


def schema() -> dict:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def operations(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item if method in METHODS}


def test_the_schema_passes_drf_spectacular_validation_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    text = out.read_text()
    for path in ("/submit-job:", "/job-status/{job_id}:", "/api/jobs/{job_id}/retry/:", "/api/queues/{name}/pause/:"):
        assert path in text


def test_swagger_ui_is_served_from_our_own_static_files():
    response = APIClient().get("/api/docs/")

    page = response.content.decode()
    script = APIClient().get("/api/docs/", {"script": ""}).content.decode()
    assert response.status_code == 200
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page and "cdn." not in page
    # The start-up script is a file of its own (the page's policy refuses inline scripts).
    assert 'src="/api/docs/?script="' in page and "/api/schema/" in script


def test_every_operation_in_the_schema_has_a_test():
    documented = operations(schema())

    assert documented - COVERED == set(), "operations without a @covers test"
    assert COVERED - documented == set(), "@covers names operations the schema does not have"


def test_every_operation_answers_as_the_schema_documents(client_for, broker):
    document = schema()
    client = client_for("operator", staff=True)
    failures = []
    for method, path in sorted(operations(document)):
        if not Schedule.objects.filter(name="low").exists():  # what {name} stands for; a DELETE removes it
            services.schedule_create(name="low", job_type="noop", interval_seconds=60)
        url = (
            path.replace("{job_id}", str(_job_for(path, owner=client.user).id))
            .replace("{name}", "low")
            .replace("{type}", "test.limited")
        )
        body = BODIES.get((method, path))
        response = getattr(client, method.lower())(url, body, format="json" if body else None)
        documented = document["paths"][path][method.lower()]["responses"]
        if str(response.status_code) not in documented or not 200 <= response.status_code < 300:
            failures.append(f"{method} {url}: {response.status_code} {response.content[:200]!r}")
            continue
        content = documented[str(response.status_code)].get("content")
        if content and "application/json" in content:
            error = _schema_error(response.json(), content["application/json"]["schema"], document)
            if error:
                failures.append(f"{method} {url}: answer does not match the schema: {error}")
    assert not failures, "\n".join(failures)


def _job_for(path: str, *, owner):
    """A job of `owner` the operation applies to: a waiting one to cancel or run now, a dead one for
    everything else."""
    job, _ = services.job_submit(type="test.fail", payload={"fail": True}, max_retries=0, delay=60, owner=owner)
    JobArtifact.objects.create(job=job, name="low", content=b"a file", size=6)
    if path.endswith(("/cancel/", "/cancel", "/run-now/")):
        return job
    services.jobs_transition(states.BECOME_DUE, job_ids=[job.id])
    claim = services.job_claim(job_id=job.id, worker="w1")
    services.job_fail(job_id=job.id, serial=claim.serial, error_type="RuntimeError", message="boom")
    return job


def _schema_error(value, node: dict, document: dict) -> str | None:
    try:
        jsonschema.validate(value, _json_schema(node, document["components"]["schemas"]))
    except jsonschema.ValidationError as exc:
        return f"{exc.message} at {list(exc.absolute_path)}"
    return None


def _json_schema(node, components: dict):
    """OpenAPI 3.0 schema -> JSON Schema: refs inlined, `nullable` turned into a null type."""
    if isinstance(node, list):
        return [_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _json_schema(components[node["$ref"].rsplit("/", 1)[1]], components)
    node = {key: _json_schema(value, components) for key, value in copy.deepcopy(node).items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node
