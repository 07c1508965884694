"""deploy/k8s: every rendered object is well formed, and its commands, probes, variables and
scalers match the project's real entry points, URLs and settings."""

import base64
import re
import shutil
import subprocess
from functools import cache
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings
from django.urls import Resolver404, resolve

from jobqueue_site.celery import QUEUES
from tests import servers
from tests.deploy import project
from tests.deploy.project import ROOT, check_command

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("base", "high-pool", "hpa")

API_VERSIONS = {
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "ScaledObject": "keda.sh/v1alpha1",
}
POD_FIELDS = {
    "containers",
    "initContainers",
    "volumes",
    "securityContext",
    "terminationGracePeriodSeconds",
    "restartPolicy",
}
CONTAINER_FIELDS = {
    "name",
    "image",
    "command",
    "args",
    "env",
    "envFrom",
    "ports",
    "startupProbe",
    "readinessProbe",
    "livenessProbe",
    "resources",
    "securityContext",
    "volumeMounts",
}
PROBE_FIELDS = {"initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold"}
PROBE_HANDLERS = {"httpGet", "tcpSocket", "exec"}
# Example values of the downward API fields the manifests use.
DOWNWARD_API = {"status.podIP": "10.1.2.3", "metadata.name": "web-7d9c6b5f4-x2x8k"}
# Container name -> the role its command must start.
ROLES = {
    "web": "web",
    "worker": "worker",
    "worker-high": "worker",
    "mover": "mover",
    "flower": "flower",
    "flower-gate": "flower-gate",
    "migrate": "migrate",
    "wait-for-migrations": "migrate",
}


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@cache
def render(overlay: str) -> tuple[dict, ...]:
    """The overlay as kustomize renders it; by hand (resources, namespace, deletions, images) without it."""
    command = kustomize_command()
    if command is None:
        return tuple(render_by_hand(overlay))
    done = subprocess.run([*command, str(K8S / overlay)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def render_by_hand(overlay: str) -> list[dict]:
    folder = K8S / overlay
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    objects: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = (folder / resource).resolve()
        if path.is_dir():
            objects += render_by_hand(str(path.relative_to(K8S)))
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in kustomization.get("patches", []):
        target = yaml.safe_load(patch["patch"])
        if target.get("$patch") == "delete":
            gone = (target["kind"], target["metadata"]["name"])
            objects = [o for o in objects if (o["kind"], o["metadata"]["name"]) != gone]
    for obj in objects:
        if "namespace" in kustomization:
            obj["metadata"]["namespace"] = kustomization["namespace"]
        for image in kustomization.get("images", []):
            for container in containers(obj):
                if container["image"] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return objects


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] in {"Deployment", "Job"}:
        return obj["spec"]["template"]["spec"]
    return None


def containers(obj: dict, *, init: bool = True) -> list[dict]:
    spec = pod_spec(obj) or {}
    return [*spec.get("containers", []), *(spec.get("initContainers", []) if init else [])]


def find(objects, kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def secret_data(secret: dict) -> dict[str, str]:
    data = {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
    return {**data, **(secret.get("stringData") or {})}


def container_env(objects, container: dict) -> dict[str, str]:
    """The environment the container gets, from its envFrom sources and env entries."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            values.update(secret_data(find(objects, "Secret", source["secretRef"]["name"])))
    for item in container.get("env", []):
        if "value" in item:
            # The kubelet expands $(NAME) from the variables defined before this one.
            values[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], item["value"])
        elif "fieldRef" in item["valueFrom"]:
            assert item["valueFrom"]["fieldRef"]["fieldPath"] in DOWNWARD_API, item
            values[item["name"]] = DOWNWARD_API[item["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            values[item["name"]] = secret_data(find(objects, "Secret", ref["name"]))[ref["key"]]
        else:
            ref = item["valueFrom"]["configMapKeyRef"]
            values[item["name"]] = find(objects, "ConfigMap", ref["name"])["data"][ref["key"]]
    return values


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def container_port(container: dict, port) -> int:
    if isinstance(port, int):
        assert port in [p["containerPort"] for p in container["ports"]], f"{container['name']}: no port {port}"
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert named, f"{container['name']}: no port named {port}"
    return named[0]


def workloads(overlay: str):
    """(object, container, role) for every container of every rendered Deployment and Job."""
    for obj in render(overlay):
        for container in containers(obj):
            yield obj, container, ROLES[container["name"]]


def test_kustomize_renders_every_overlay():
    if kustomize_command() is None:
        servers.unavailable("neither kustomize nor kubectl (kubectl kustomize) is installed")
    for overlay in OVERLAYS:
        rendered = {(o["kind"], o["metadata"]["name"]) for o in render(overlay)}
        assert rendered == {(o["kind"], o["metadata"]["name"]) for o in render_by_hand(overlay)}
        assert {o["metadata"].get("namespace") for o in render(overlay)} == {"jobqueue"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_has_the_basic_schema_of_its_kind(overlay):
    for obj in render(overlay):
        kind, name = obj.get("kind"), obj.get("metadata", {}).get("name")
        assert kind in API_VERSIONS and name, f"unexpected object {kind}/{name}"
        assert obj["apiVersion"] == API_VERSIONS[kind], f"{kind}/{name}: apiVersion {obj['apiVersion']}"
        if kind in {"ConfigMap", "Secret"}:
            values = obj.get("data", {}) if kind == "ConfigMap" else secret_data(obj)
            assert values and all(isinstance(v, str) for v in values.values()), f"{kind}/{name}: values must be strings"
        elif kind in {"Deployment", "Job"}:
            spec = pod_spec(obj)
            assert set(spec) <= POD_FIELDS, f"{kind}/{name}: unknown pod fields {set(spec) - POD_FIELDS}"
            assert spec["containers"], f"{kind}/{name} has no containers"
            for container in containers(obj):
                assert container["name"] and container["image"], f"{kind}/{name}: container needs name and image"
                assert set(container) <= CONTAINER_FIELDS, f"{name}: unknown fields {set(container) - CONTAINER_FIELDS}"
                for probe_kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                    probe = container.get(probe_kind)
                    if probe:
                        handlers = set(probe) & PROBE_HANDLERS
                        assert len(handlers) == 1 and set(probe) - handlers <= PROBE_FIELDS, f"{name}.{probe_kind}"
            if kind == "Deployment":
                labels = obj["spec"]["template"]["metadata"]["labels"]
                assert selects(obj["spec"]["selector"]["matchLabels"], labels), f"{name}: selector misses its pods"
            else:
                assert spec["restartPolicy"] in {"Never", "OnFailure"}
        elif kind == "Service":
            assert obj["spec"]["ports"] and all("port" in port for port in obj["spec"]["ports"])
        elif kind == "PodDisruptionBudget":
            assert len({"minAvailable", "maxUnavailable"} & set(obj["spec"])) == 1
            assert obj["spec"]["selector"]["matchLabels"]
        elif kind in {"ScaledObject", "HorizontalPodAutoscaler"}:
            target = obj["spec"]["scaleTargetRef"]
            assert target.get("kind", "Deployment") == "Deployment"
            find(render(overlay), "Deployment", target["name"])
            if kind == "ScaledObject":
                assert obj["spec"]["triggers"] and obj["spec"]["minReplicaCount"] <= obj["spec"]["maxReplicaCount"]
            else:
                assert obj["spec"]["metrics"] and obj["spec"]["minReplicas"] <= obj["spec"]["maxReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_a_real_entry_point_of_the_project(overlay):
    for _, container, role in workloads(overlay):
        entry = check_command(container["command"])
        assert entry.role == role, f"{container['name']} runs {entry.role}, expected {role}"
        assert "args" not in container
        if container["name"] == "wait-for-migrations":
            assert entry.args == ["--check"]
    worker = find(render(overlay), "Deployment", "worker")
    assert check_command(containers(worker, init=False)[0]["command"]).queues == list(QUEUES)
    if overlay == "high-pool":
        high = find(render(overlay), "Deployment", "worker-high")
        assert check_command(containers(high, init=False)[0]["command"]).queues == ["high"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_a_container_gets_is_read_by_the_app(overlay):
    objects = render(overlay)
    for _, container, role in workloads(overlay):
        unknown = project.unknown_env(container_env(objects, container), flower=role == "flower")
        assert not unknown, f"{container['name']} gets variables nothing reads: {unknown}"
        values = container_env(objects, container)
        assert values["DEBUG"] == "0" and values["SECRET_KEY"]
        assert urlsplit(values["DATABASE_URL"]).scheme == "postgres"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_http_probes_ask_real_routes_on_real_ports(overlay):
    objects = render(overlay)
    for _, container, role in workloads(overlay):
        values = container_env(objects, container)
        for probe_kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(probe_kind, {})
            if "httpGet" in probe:
                get = probe["httpGet"]
                port = container_port(container, get["port"])
                if role == "web":
                    try:
                        resolve(get["path"])
                    except Resolver404:
                        pytest.fail(f"{container['name']}.{probe_kind}: {get['path']} is no URL of the app")
                    assert port == check_command(container["command"]).port
                    allowed = set(values["ALLOWED_HOSTS"].split(","))
                    hosts = {h["value"] for h in get.get("httpHeaders", []) if h["name"] == "Host"}
                    assert hosts and hosts <= allowed, "Django refuses the probes' Host"
                    assert DOWNWARD_API["status.podIP"] in allowed, "Django refuses Prometheus scraping the pod"
                elif role == "worker":
                    assert get["path"] == "/healthz"
                    assert port == int(values["JOB_WORKER_METRICS_PORT"])
                    assert values["JOB_WORKER_METRICS_ADDR"] == "0.0.0.0", "the kubelet probes the pod IP"
                elif role == "flower":
                    from flower.urls import handlers

                    patterns = [h[0] if isinstance(h, tuple) else h.regex.pattern for h in handlers]
                    assert any(re.fullmatch(p, get["path"]) for p in patterns), f"Flower has no {get['path']}"
                    assert port == check_command(container["command"]).port
                elif role == "flower-gate":
                    from jobs.adapters.flower_gate import OPEN_PATHS

                    assert get["path"] in OPEN_PATHS, f"the gate asks a login for {get['path']}"
                    assert port == int(values["JOBQUEUE_FLOWER_GATE_PORT"])
                else:
                    pytest.fail(f"{container['name']} has an HTTP probe nobody serves")
            elif "exec" in probe:
                project.check_healthcheck_command(probe["exec"]["command"], role)
            elif "tcpSocket" in probe:
                container_port(container, probe["tcpSocket"]["port"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_long_running_containers_have_a_liveness_probe(overlay):
    for obj, container, _ in workloads(overlay):
        if obj["kind"] == "Deployment" and container in containers(obj, init=False):
            assert "livenessProbe" in container, f"{container['name']} has no liveness probe"
    web = containers(find(render(overlay), "Deployment", "web"), init=False)[0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_get_longer_to_stop_than_the_shutdown_grace(overlay):
    objects = render(overlay)
    for obj, container, role in workloads(overlay):
        if role == "worker":
            grace = float(container_env(objects, container).get("JOB_SHUTDOWN_GRACE") or settings.JOB_SHUTDOWN_GRACE)
            period = pod_spec(obj)["terminationGracePeriodSeconds"]
            assert period >= grace + 10, f"{obj['metadata']['name']}: SIGKILL after {period}s, grace is {grace}s"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_worker_deployment_has_a_disruption_budget(overlay):
    objects = render(overlay)
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for obj, _, role in workloads(overlay):
        if role == "worker":
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert any(selects(b["spec"]["selector"]["matchLabels"], labels) for b in budgets), obj["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_reach_pods_on_named_ports(overlay):
    objects = render(overlay)
    for service in (o for o in objects if o["kind"] == "Service"):
        pods = [o for o in objects if o["kind"] == "Deployment"]
        pods = [o for o in pods if selects(service["spec"]["selector"], o["spec"]["template"]["metadata"]["labels"])]
        assert len(pods) == 1, f"Service {service['metadata']['name']} selects {len(pods)} Deployments"
        container = containers(pods[0], init=False)[0]
        for port in service["spec"]["ports"]:
            container_port(container, port["targetPort"])


@pytest.mark.parametrize("overlay", ("base", "high-pool"))
def test_keda_scales_each_worker_pool_on_the_redis_lists_of_its_queues(overlay):
    objects = render(overlay)
    scalers = [o for o in objects if o["kind"] == "ScaledObject"]
    assert scalers
    for scaler in scalers:
        deployment = find(objects, "Deployment", scaler["spec"]["scaleTargetRef"]["name"])
        worker = containers(deployment, init=False)[0]
        broker = urlsplit(container_env(objects, worker)["REDIS_URL"])
        triggers = scaler["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"redis"}
        lists = [t["metadata"]["listName"] for t in triggers]
        assert lists == check_command(worker["command"]).queues, "one trigger per queue the pool takes"
        for trigger in triggers:
            meta = trigger["metadata"]
            assert meta["address"] == f"{broker.hostname}:{broker.port}", "KEDA must watch the broker's Redis"
            assert meta["databaseIndex"] == (broker.path.strip("/") or "0")
            assert int(meta["listLength"]) > 0
    # Every worker Deployment is scaled by exactly one ScaledObject.
    workers = {o["metadata"]["name"] for o, _, role in workloads(overlay) if role == "worker"}
    assert sorted(s["spec"]["scaleTargetRef"]["name"] for s in scalers) == sorted(workers)


def test_hpa_overlay_replaces_keda_with_a_horizontal_pod_autoscaler():
    objects = render("hpa")
    assert not [o for o in objects if o["kind"] == "ScaledObject"]
    hpa = find(objects, "HorizontalPodAutoscaler", "worker")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "worker"
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "jobqueue_waiting_jobs"
    assert "jobqueue_waiting_jobs" in (ROOT / "docs" / "operations.md").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_the_one_image_as_its_non_root_user(overlay):
    image = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["images"][0]
    own_images = yaml.safe_load((K8S / overlay / "kustomization.yaml").read_text()).get("images", [image])
    assert own_images == [image], "an overlay with objects of its own must name the same image"
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    dockerfile_user = next(line.split()[1] for line in dockerfile if line.startswith("USER "))
    for obj, container, _ in workloads(overlay):
        assert container["image"] == f"{image['newName']}:{image['newTag']}"
        pod = pod_spec(obj)["securityContext"]
        assert pod["runAsNonRoot"] is True and f"{pod['runAsUser']}:{pod['runAsGroup']}" == dockerfile_user
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scrape_annotations_name_the_metrics_ports(overlay):
    for obj, container, _ in workloads(overlay):
        annotations = obj["spec"]["template"]["metadata"].get("annotations", {})
        if container in containers(obj, init=False) and annotations.get("prometheus.io/scrape") == "true":
            port = int(annotations["prometheus.io/port"])
            assert port in [p["containerPort"] for p in container["ports"]]
            assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_flower_is_reached_only_through_its_gate_in_its_pod(overlay):
    objects = render(overlay)
    pod = {c["name"]: c for c in containers(find(objects, "Deployment", "flower"))}
    assert set(pod) == {"flower-gate", "flower"}
    gate, flower = container_env(objects, pod["flower-gate"]), container_env(objects, pod["flower"])
    # Flower listens on the pod's loopback only, where the gate (same pod) relays to it ...
    entry = check_command(pod["flower"]["command"])
    assert "--address=127.0.0.1" in entry.args and "ports" not in pod["flower"]
    assert gate["JOBQUEUE_FLOWER_UPSTREAM_HOST"] == "127.0.0.1"
    assert int(gate["JOBQUEUE_FLOWER_UPSTREAM_PORT"]) == entry.port
    # ... with the login only the two know; the operator's FLOWER_BASIC_AUTH is checked by the gate.
    assert gate["JOBQUEUE_FLOWER_UPSTREAM_LOGIN"] == flower["FLOWER_BASIC_AUTH"]
    assert gate["JOBQUEUE_FLOWER_LOGIN"] == secret_data(find(objects, "Secret", "jobqueue-flower"))["FLOWER_BASIC_AUTH"]
    assert gate["JOBQUEUE_FLOWER_LOGIN"] != gate["JOBQUEUE_FLOWER_UPSTREAM_LOGIN"]
    # The Service sends clients to the gate's port, on every interface of the pod.
    service = find(objects, "Service", "flower")
    assert [container_port(pod["flower-gate"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        int(gate["JOBQUEUE_FLOWER_GATE_PORT"])
    ]
    assert gate["JOBQUEUE_FLOWER_GATE_ADDR"] == "0.0.0.0"
    assert "JOB_TRUSTED_PROXIES" in gate, "behind an ingress every client would share one lockout"
