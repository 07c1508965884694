"""docker-compose.yml: valid Compose, and every command, variable, port and file it names is real."""

import copy
import json
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from django.conf import settings

from jobqueue_site.celery import QUEUES
from tests.deploy import project
from tests.deploy.project import ROOT, check_command, interpolate

SCHEMA = json.loads((ROOT / "deploy" / "schema" / "compose-spec.json").read_text())
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
# Service -> the role its command must start.
APP_ROLES = {
    "migrate": "migrate",
    "web": "web",
    "worker": "worker",
    "worker-high": "worker",
    "mover": "mover",
    "flower": "flower",
    "flower-gate": "flower-gate",
}


def app_services() -> dict[str, dict]:
    """Services that run the jobqueue image."""
    return {name: s for name, s in SERVICES.items() if "build" in s or s.get("image") == SERVICES["web"]["image"]}


def env(service: str) -> dict[str, str]:
    return {key: interpolate(value) for key, value in (SERVICES[service].get("environment") or {}).items()}


def test_compose_file_is_valid_against_the_compose_specification():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(COMPOSE)


def test_the_schema_refuses_what_compose_refuses():
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["worker"]["stop_grace"] = "45s"
    with pytest.raises(jsonschema.ValidationError, match="stop_grace"):
        jsonschema.Draft7Validator(SCHEMA).validate(broken)
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["web"]["depends_on"]["migrate"]["condition"] = "service_done"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(broken)


def test_every_app_service_runs_a_real_entry_point_of_the_project():
    assert set(app_services()) == set(APP_ROLES)
    for name, role in APP_ROLES.items():
        entry = check_command(SERVICES[name]["command"])
        assert entry.role == role, f"{name} runs {entry.role}, expected {role}"
        assert "entrypoint" not in SERVICES[name]


def test_workers_take_every_queue_by_priority_and_the_high_pool_only_high():
    assert check_command(SERVICES["worker"]["command"]).queues == list(QUEUES)
    assert check_command(SERVICES["worker-high"]["command"]).queues == ["high"]
    assert SERVICES["worker-high"]["profiles"] == ["high-pool"]
    # Scalable with --scale: no fixed container name, no published host port.
    for name in ("worker", "worker-high"):
        assert "container_name" not in SERVICES[name] and "ports" not in SERVICES[name]


def test_every_variable_a_service_sets_is_read_by_the_app_or_its_tool():
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "JOB_SHUTDOWN_GRACE", "EMAIL_HOST"} <= project.env_vars_read()
    for name, service in SERVICES.items():
        names = list(service.get("environment") or {})
        if name in app_services():
            unknown = project.unknown_env(names, flower=check_command(service["command"]).role == "flower")
        else:
            unknown = project.unknown_third_party_env(names)
        assert not unknown, f"{name} sets variables nothing reads: {unknown}"


def test_app_services_reach_postgres_and_redis_of_the_stack():
    for name in app_services():
        values = env(name)
        database, broker = urlsplit(values["DATABASE_URL"]), urlsplit(values["REDIS_URL"])
        assert database.scheme == "postgres" and database.hostname == "postgres" and database.port == 5432
        assert database.path == "/" + SERVICES["postgres"]["environment"]["POSTGRES_DB"]
        assert broker.scheme == "redis" and broker.hostname == "redis" and broker.port == 6379
        assert values["DEBUG"] == "0" and values["SECRET_KEY"] == "required"


def test_email_jobs_go_to_the_smtp_sink():
    for name in ("worker", "worker-high"):
        values = env(name)
        assert values["EMAIL_HOST"] == "mailpit" and values["EMAIL_PORT"] == "1025"
        assert SERVICES[name]["depends_on"]["mailpit"]["condition"] == "service_healthy"
    assert SERVICES["mailpit"]["image"].startswith("axllent/mailpit:")


def test_the_stack_starts_in_order_and_migrates_once():
    for name, service in SERVICES.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{name} waits for {dependency}'s health, it has none"
    migrating = [name for name in app_services() if check_command(SERVICES[name]["command"]).role == "migrate"]
    assert migrating == ["migrate"]
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in set(APP_ROLES) - {"migrate"}:
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy", name


def test_health_checks_ask_the_process_each_container_runs():
    for name, role in APP_ROLES.items():
        if role == "migrate":
            continue
        project.check_healthcheck_command(SERVICES[name]["healthcheck"]["test"][1:], role)
    import importlib.util

    spec = importlib.util.spec_from_file_location("hc", project.HEALTHCHECK_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name in app_services():
        allowed = env(name)["ALLOWED_HOSTS"].split(",")
        assert script.HOST_HEADER in allowed, f"{name}: the health check's Host is refused by ALLOWED_HOSTS"
    web = check_command(SERVICES["web"]["command"])
    assert SERVICES["web"]["ports"] == [f"{web.port}:{web.port}"]
    assert check_command(SERVICES["flower"]["command"]).port == 5555


def test_worker_stop_grace_outlasts_the_shutdown_grace():
    for name in ("worker", "worker-high"):
        grace = float(env(name).get("JOB_SHUTDOWN_GRACE") or settings.JOB_SHUTDOWN_GRACE)
        stop = project.duration_seconds(SERVICES[name]["stop_grace_period"])
        assert stop >= grace + 10, f"{name}: docker kills it after {stop}s, jobs may take {grace}s + requeue"


def test_redis_and_postgres_keep_their_data():
    redis_command = SERVICES["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in SERVICES["redis"]["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    named = {volume.split(":")[0] for service in SERVICES.values() for volume in service.get("volumes", [])}
    assert {v for v in named if not v.startswith(".")} <= set(COMPOSE["volumes"])


def test_files_mounted_from_the_repository_exist():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
    assert (
        "./deploy/prometheus/prometheus-compose.yml:/etc/prometheus/prometheus.yml:ro"
        in (SERVICES["prometheus"]["volumes"])
    )


def test_flower_has_a_login():
    assert env("flower")["FLOWER_BASIC_AUTH"] == "required"
    assert "flower" in check_command(SERVICES["flower"]["command"]).role


def published(service: dict) -> list[int]:
    """The host ports a service publishes (`[ip:]host:container` or the long syntax)."""
    ports = []
    for port in service.get("ports", []):
        ports.append(int(port["published"]) if isinstance(port, dict) else int(str(port).split(":")[-2]))
    return ports


def test_flower_is_published_only_through_its_gate_which_relays_with_a_login_only_they_share():
    gate, raw = env("flower-gate"), SERVICES["flower-gate"]["environment"]
    flower_port = check_command(SERVICES["flower"]["command"]).port
    # Flower publishes nothing; the gate is the only service on the host's 5555.
    assert "ports" not in SERVICES["flower"] and SERVICES["flower"]["expose"] == [str(flower_port)]
    assert [name for name, service in SERVICES.items() if 5555 in published(service)] == ["flower-gate"]
    assert SERVICES["flower-gate"]["ports"] == [f"5555:{gate['JOBQUEUE_FLOWER_GATE_PORT']}"]
    assert gate["JOBQUEUE_FLOWER_GATE_ADDR"] == "0.0.0.0", "the host's port reaches the container's interface"
    # It relays to Flower over the compose network ...
    assert gate["JOBQUEUE_FLOWER_UPSTREAM_HOST"] == "flower"
    assert int(gate["JOBQUEUE_FLOWER_UPSTREAM_PORT"]) == flower_port
    assert SERVICES["flower-gate"]["depends_on"]["flower"] == {"condition": "service_started"}
    # ... with the login Flower is started with; the operator's FLOWER_BASIC_AUTH is the gate's.
    assert raw["JOBQUEUE_FLOWER_LOGIN"].startswith("${FLOWER_BASIC_AUTH:?")
    assert raw["JOBQUEUE_FLOWER_UPSTREAM_LOGIN"] == SERVICES["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    assert raw["JOBQUEUE_FLOWER_UPSTREAM_LOGIN"].startswith("${JOBQUEUE_FLOWER_UPSTREAM_LOGIN:?")
    assert not any("FLOWER_BASIC_AUTH" in str(value) for name, value in raw.items() if name != "JOBQUEUE_FLOWER_LOGIN")
    # Behind the operator's proxy the lockout counts per client (docs/operations.md).
    assert gate["JOB_TRUSTED_PROXIES"] == "0"


def _prometheus_config() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus-compose.yml").read_text())


def test_prometheus_scrapes_web_and_every_worker_and_loads_the_alerts():
    config = _prometheus_config()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    web_port = check_command(SERVICES["web"]["command"]).port
    assert jobs["web"]["static_configs"][0]["targets"] == [f"web:{web_port}"]
    assert "web" in env("web")["ALLOWED_HOSTS"].split(","), "Django would answer Prometheus' Host: web with 400"
    workers = [n for n in app_services() if check_command(SERVICES[n]["command"]).role == "worker"]
    discovered = {name: sd["port"] for sd in jobs["worker"]["dns_sd_configs"] for name in sd["names"]}
    assert set(discovered) == set(workers)
    for name in workers:
        assert discovered[name] == int(env(name)["JOB_WORKER_METRICS_PORT"])
        assert env(name)["JOB_WORKER_METRICS_ADDR"] == "0.0.0.0"
        assert SERVICES[name]["expose"] == [env(name)["JOB_WORKER_METRICS_PORT"]]
    assert jobs["mover"]["dns_sd_configs"][0]["port"] == int(env("mover")["JOB_MOVER_METRICS_PORT"])
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]
    # rule_files are relative to the config file; both are mounted into /etc/prometheus.
    assert config["rule_files"] == ["alerts.yml"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in SERVICES["prometheus"]["volumes"]


def test_grafana_gets_the_datasource_and_the_dashboards():
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    mounts = dict(volume.split(":")[:2] for volume in SERVICES["grafana"]["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    url = urlsplit(datasource["url"])
    assert datasource["type"] == "prometheus" and url.hostname == "prometheus" and url.port == 9090
    assert datasource["uid"] == "prometheus" and datasource["isDefault"] is True
    assert any("--config.file=/etc/prometheus/prometheus.yml" == arg for arg in SERVICES["prometheus"]["command"])
    provider = yaml.safe_load((provisioning / "dashboards" / "jobqueue.yml").read_text())["providers"][0]
    assert provider["type"] == "file"
    assert mounts["./deploy/grafana"] == provider["options"]["path"]
    assert SERVICES["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def _datasource_refs(node):
    """Every `datasource` value in a dashboard's JSON."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item)


def test_dashboards_use_the_provisioned_datasource():
    """Provisioning does not resolve a shared dashboard's ${DS_...} inputs: refer to the uid."""
    provisioned = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"
    uids = {d["uid"] for f in provisioned.glob("*.yml") for d in yaml.safe_load(f.read_text())["datasources"]}
    for path in (ROOT / "deploy" / "grafana").rglob("*.json"):
        dashboard = json.loads(path.read_text())
        variables = {
            v["name"] for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "datasource"
        }
        allowed = uids | {"-- Grafana --", "grafana", "-- Mixed --", "-- Dashboard --"}
        allowed |= {f"${name}" for name in variables} | {f"${{{name}}}" for name in variables}
        for ref in _datasource_refs(dashboard):
            uid = ref.get("uid") if isinstance(ref, dict) else ref
            assert uid is None or uid in allowed, f"{path.name}: datasource {uid!r} is not provisioned"
