"""deploy/k8s/: every manifest against the Kubernetes 1.30 schemas (kubernetes-validate,
strict: unknown fields fail), stable API versions only, references that resolve, and the
settings, commands, ports and secrets the service and coturn must agree on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from ._deploy import (
    HEALTH_PATH,
    K8S,
    PLACEHOLDER,
    TURN_CONF,
    TURN_START,
    check_settings,
    k8s_resources,
    parse_command,
    port_range,
    settings_of,
    turn_conf,
)

KUBERNETES_VERSION = "1.30.0"
STABLE_API_VERSIONS = {"v1", "apps/v1", "networking.k8s.io/v1", "policy/v1"}
NODE_ADDRESS = "192.0.2.10"  # stands in for status.podIP (the node's address: hostNetwork)

RESOURCES = k8s_resources()


def _id(resource: tuple[Path, dict[str, Any]]) -> str:
    path, document = resource
    return f"{path.name}:{document['kind']}/{document['metadata']['name']}"


def _find(kind: str, name: str) -> dict[str, Any]:
    for _, document in RESOURCES:
        if document["kind"] == kind and document["metadata"]["name"] == name:
            return document
    raise AssertionError(f"deploy/k8s has no {kind} named {name}")


def _workloads() -> list[dict[str, Any]]:
    return [doc for _, doc in RESOURCES if doc["kind"] in ("Deployment", "StatefulSet")]


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = workload["spec"]["template"]["spec"]
    return pod


def _container(workload_name: str) -> dict[str, Any]:
    workload = _find("Deployment", workload_name)
    containers: list[dict[str, Any]] = _pod(workload)["containers"]
    assert len(containers) == 1
    return containers[0]


def _secret_value(name: str, key: str) -> str:
    secret = _find("Secret", name)
    data: dict[str, str] = secret.get("stringData", {})
    assert key in data, f"Secret {name} has no key {key}"
    return data[key]


def _environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it (Secrets: their placeholders)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_find("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            env.update(_find("Secret", source["secretRef"]["name"])["stringData"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(
                r"\$\((\w+)\)", lambda match: env.get(match[1], match[0]), item["value"]
            )
            continue
        source = item["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[item["name"]] = _secret_value(ref["name"], ref["key"])
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[item["name"]] = _find("ConfigMap", ref["name"])["data"][ref["key"]]
        elif source.get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[item["name"]] = NODE_ADDRESS
        else:
            raise AssertionError(f"unexpected env source {source}")
    return env


@pytest.mark.parametrize("resource", RESOURCES, ids=_id)
def test_manifest_validates_strictly_against_the_kubernetes_schema(
    resource: tuple[Path, dict[str, Any]],
) -> None:
    path, document = resource
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path)
        raise AssertionError(f"{path.name}: {where}: {exc.message}") from None
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise AssertionError(f"{path.name}: {exc.message}") from None


def test_every_manifest_uses_a_stable_api_and_the_namespace() -> None:
    files = sorted(K8S.glob("*.yaml"))
    assert files and {path.name for path, _ in RESOURCES} == {path.name for path in files}
    kinds = {doc["kind"] for _, doc in RESOURCES}
    assert {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "StatefulSet",
        "Service",
        "Ingress",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
    } <= kinds
    for path, document in RESOURCES:
        assert document["apiVersion"] in STABLE_API_VERSIONS, (path.name, document["apiVersion"])
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "inspectd", (path.name, document["kind"])


def test_references_resolve() -> None:
    for workload in _workloads():
        pod = _pod(workload)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                _find("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
            if "configMap" in volume:
                _find("ConfigMap", volume["configMap"]["name"])
        for container in pod["containers"]:
            _environment(container)  # every Secret, ConfigMap and key exists
            port_names = {port["name"] for port in container.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                action = container.get(probe, {})
                for kind in ("httpGet", "tcpSocket"):
                    port = action.get(kind, {}).get("port")
                    if isinstance(port, str):
                        assert port in port_names, (workload["metadata"]["name"], probe, port)
    for _, service in RESOURCES:
        if service["kind"] != "Service":
            continue
        selector = service["spec"]["selector"]
        targets = [
            w
            for w in _workloads()
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert targets, f"Service {service['metadata']['name']} selects no pods"
        names = {
            port["name"]
            for w in targets
            for c in _pod(w)["containers"]
            for port in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, (service["metadata"]["name"], port)
    ingress = _find("Ingress", "inspectd")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            service = _find("Service", backend["name"])
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    budget = _find("PodDisruptionBudget", "inspectd")
    deployment = _find("Deployment", "inspectd")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]


@pytest.mark.parametrize("name", ["inspectd", "inspectd-worker"])
def test_inspectd_containers_use_only_settings_the_service_accepts(name: str) -> None:
    check_settings(_environment(_container(name)), f"deploy/k8s Deployment {name}")


def test_commands_workers_and_cpu_agree() -> None:
    serve = parse_command(_container("inspectd")["args"], "Deployment inspectd")
    assert serve.command == "serve"
    cpu = _container("inspectd")["resources"]["requests"]["cpu"]
    assert int(serve.workers) == int(cpu), "one media worker per requested core"
    worker = parse_command(_container("inspectd-worker")["args"], "Deployment inspectd-worker")
    assert worker.command == "worker"


def test_http_port_probes_and_ingress_agree_with_the_settings() -> None:
    container = _container("inspectd")
    settings = settings_of(_environment(container), "Deployment inspectd")
    ports = {port["name"]: port for port in container["ports"]}
    assert ports["http"]["containerPort"] == settings.port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": HEALTH_PATH, "port": "http"}, probe
    assert settings.host == NODE_ADDRESS, "HTTP listens on the node address (hostNetwork)"
    ingress = _find("Ingress", "inspectd")
    host = ingress["spec"]["rules"][0]["host"]
    assert ingress["spec"]["tls"][0]["hosts"] == [host]
    assert settings.public_url == f"https://{host}"


def test_media_and_turn_pods_use_host_networking() -> None:
    for name in ("inspectd", "coturn"):
        pod = _pod(_find("Deployment", name))
        assert pod["hostNetwork"] is True, name
        assert pod["dnsPolicy"] == "ClusterFirstWithHostNet", name
    affinity = _pod(_find("Deployment", "inspectd"))["affinity"]["podAntiAffinity"]
    (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname", "one media pod per node"
    settings = settings_of(_environment(_container("inspectd")), "Deployment inspectd")
    media = port_range(_find("ConfigMap", "inspectd-config")["data"]["INSPECT_MEDIA_PORTS"])
    options = dict(turn_conf(TURN_CONF.read_text(encoding="utf-8")))
    relay = range(int(options["min-port"]), int(options["max-port"]) + 1)
    assert not set(media) & set(relay)
    assert settings.remote_inference is False or settings.redis_url


def test_every_pod_runs_as_non_root_without_privilege_escalation() -> None:
    for workload in _workloads():
        pod = _pod(workload)
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "privileged" not in context, name
            assert container["resources"]["requests"], name


def test_redis_is_a_stateful_set_with_a_password_the_nodes_use() -> None:
    redis = _find("StatefulSet", "redis")
    assert redis["spec"]["serviceName"] == "redis"
    _find("Service", "redis")
    (container,) = _pod(redis)["containers"]
    assert "$(REDIS_PASSWORD)" in container["args"]
    password = _environment(container)["REDIS_PASSWORD"]
    for name in ("inspectd", "inspectd-worker"):
        url = _environment(_container(name))["INSPECT_REDIS_URL"]
        assert url == f"redis://:{password}@redis.inspectd.svc.cluster.local:6379/0", name
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_worker_requests_a_gpu() -> None:
    container = _container("inspectd-worker")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    settings = settings_of(_environment(container), "Deployment inspectd-worker")
    assert settings.inference_provider == "cuda" and settings.redis_url
    assert container["image"].endswith("-gpu")


def test_coturn_reads_the_turn_secret_inspectd_signs_with() -> None:
    def secret_ref(container: dict[str, Any], variable: str) -> dict[str, str]:
        (item,) = [item for item in container["env"] if item["name"] == variable]
        ref: dict[str, str] = item["valueFrom"]["secretKeyRef"]
        return ref

    coturn = _container("coturn")
    assert secret_ref(coturn, "TURN_SECRET") == secret_ref(
        _container("inspectd"), "INSPECT_TURN_SECRET"
    )
    files = _find("ConfigMap", "coturn")["data"]
    for key, path in (("turnserver.conf", TURN_CONF), ("start.sh", TURN_START)):
        assert files[key] == path.read_text(encoding="utf-8"), (
            f"ConfigMap coturn {key} differs from {path.relative_to(K8S.parent.parent)}:"
            " copy the file into deploy/k8s/40-coturn.yaml"
        )
    assert coturn["command"] == ["/bin/sh", "/etc/inspectd-coturn/start.sh"]
    settings = settings_of(_environment(_container("inspectd")), "Deployment inspectd")
    listening = dict(turn_conf(TURN_CONF.read_text(encoding="utf-8")))["listening-port"]
    assert {port["containerPort"] for port in coturn["ports"]} == {int(listening)}
    for url in settings.ice_servers:
        assert url.split("?")[0].endswith(f":{listening}"), url
    assert (
        _environment(coturn)["TURN_REALM"]
        == _find("Ingress", "inspectd")["spec"]["rules"][0]["host"]
    )


def test_secrets_are_placeholders() -> None:
    for _, document in RESOURCES:
        if document["kind"] == "Secret":
            assert "data" not in document, "base64 data hides what is in it: use stringData"
            for key, value in document["stringData"].items():
                assert PLACEHOLDER in value, f"Secret {document['metadata']['name']}: {key}"
