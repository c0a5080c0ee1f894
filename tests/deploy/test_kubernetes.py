"""deploy/k8s/: every manifest against the Kubernetes 1.30 schemas (kubernetes-validate,
strict: unknown fields fail), stable API versions only, references that resolve, and the
settings, commands, ports and secrets the service, PostgreSQL, Redis and coturn must agree
on."""

from __future__ import annotations

import posixpath
import re
import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest

from server.app import running_service
from server.settings import Settings

from ._deploy import (
    CONTAINER_DEPLOY,
    DEPLOY,
    HEALTH_PATH,
    K8S,
    PLACEHOLDER,
    REFUSED,
    REQUIRE_SECRETS,
    TURN_CONF,
    TURN_START,
    check_settings,
    fake_turnserver,
    k8s_resources,
    parse_command,
    port_range,
    run_script,
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


def _statefulset_container(name: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = _pod(_find("StatefulSet", name))["containers"]
    assert len(containers) == 1
    return containers[0]


def _option(argv: list[str], flag: str) -> str:
    """The value after ``flag`` in ``argv``."""
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


#: The postgres user of the official images: uid and gid 70 on Alpine, 999 on Debian.
POSTGRES_UID = {"alpine": 70, "debian": 999}


def test_postgres_is_a_stateful_set_the_nodes_reach_with_its_password() -> None:
    postgres = _find("StatefulSet", "postgres")
    assert postgres["spec"]["replicas"] == 1
    service = _find("Service", postgres["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None", "headless: the name resolves to the pod"
    container = _statefulset_container("postgres")
    environment = _environment(container)
    (port,) = service["spec"]["ports"]
    (target,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    assert target["containerPort"] == 5432

    inspectd = _container("inspectd")
    settings = settings_of(_environment(inspectd), "Deployment inspectd")
    url = urlsplit(settings.database_url)
    assert url.scheme == "postgresql"
    meta = service["metadata"]
    assert url.hostname == f"{meta['name']}.{meta['namespace']}.svc.cluster.local", url
    assert url.port == port["port"]
    assert url.username == environment["POSTGRES_USER"]
    assert url.path == "/" + environment["POSTGRES_DB"]
    # The URL is built from the Secret, never a copy of it; the kubelet expands $(VAR) only
    # for a variable defined earlier in the list.
    (item,) = [item for item in inspectd["env"] if item["name"] == "INSPECT_DATABASE_URL"]
    assert "$(POSTGRES_PASSWORD)" in item["value"]
    names = [item["name"] for item in inspectd["env"]]
    assert names.index("POSTGRES_PASSWORD") < names.index("INSPECT_DATABASE_URL")
    assert _environment(inspectd)["INSPECT_DATABASE_URL"].count(PLACEHOLDER) == 1
    key = _secret_keys(container)["POSTGRES_PASSWORD"]
    assert _secret_keys(inspectd)["POSTGRES_PASSWORD"] == key, "one Secret key for both"
    built = urlsplit(_environment(inspectd)["INSPECT_DATABASE_URL"])
    assert built.password == environment["POSTGRES_PASSWORD"]
    # The GPU workers never touch the database: they get neither its URL nor its password.
    worker = _container("inspectd-worker")
    assert not settings_of(_environment(worker), "worker").database_url
    assert key not in _secret_keys(worker).values()


def test_postgres_runs_as_the_image_user_with_its_data_in_a_subdirectory() -> None:
    postgres = _find("StatefulSet", "postgres")
    container = _statefulset_container("postgres")
    image = container["image"]
    assert image.startswith("postgres:1"), image
    uid = POSTGRES_UID["alpine" if image.endswith("-alpine") else "debian"]
    context = _pod(postgres)["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (uid,) * 3
    assert context["runAsNonRoot"] is True
    (claim,) = postgres["spec"]["volumeClaimTemplates"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    pgdata = _environment(container)["PGDATA"]
    data = posixpath.dirname(pgdata)
    assert mounts.get(data) == claim["metadata"]["name"], (
        "PGDATA is a subdirectory of the claim's mount: the volume root may hold lost+found"
    )
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    emptydirs = {v["name"] for v in _pod(postgres)["volumes"] if "emptyDir" in v}
    # The root filesystem is read-only: the socket directory and /dev/shm (dynamic shared
    # memory, 64 MB by default) are volumes of their own.
    for path in ("/var/run/postgresql", "/dev/shm"):
        assert mounts.get(path) in emptydirs, f"{path} must be writable"
    environment = _environment(container)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[0] == "pg_isready", probe
        # Over TCP: the temporary server of the first start listens on the Unix socket only.
        assert _option(command, "-h") == "127.0.0.1", probe
        assert _option(command, "-U") == environment["POSTGRES_USER"], probe
        assert _option(command, "-d") == environment["POSTGRES_DB"], probe
    checked = container["command"]
    assert checked[checked.index("--") + 1 :] == ["docker-entrypoint.sh", "postgres"]


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
    assert coturn["command"] == ["/bin/sh", f"{CONTAINER_DEPLOY}/coturn/start.sh"]
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


CHECKER = ["/bin/sh", f"{CONTAINER_DEPLOY}/require-secrets.sh"]


def _containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(w, c) for w in _workloads() for c in _pod(w)["containers"]]


def _secret_keys(container: dict[str, Any]) -> dict[str, str]:
    """Variable -> Secret key, for each variable the container reads from a Secret."""
    return {
        item["name"]: item["valueFrom"]["secretKeyRef"]["key"]
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }


def _config_map_files(source: dict[str, Any]) -> dict[str, str]:
    data: dict[str, str] = _find("ConfigMap", source["name"])["data"]
    if "items" not in source:
        return dict(data)
    return {item["path"]: data[item["key"]] for item in source["items"]}


def _mounted_files(workload: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """Container path -> content of every file the container's ConfigMap volumes provide."""
    volumes = {volume["name"]: volume for volume in _pod(workload).get("volumes", [])}
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})  # a volumeClaimTemplate has no entry here
        if "configMap" in volume:
            sources = [volume["configMap"]]
        elif "projected" in volume:
            sources = [s["configMap"] for s in volume["projected"]["sources"] if "configMap" in s]
        else:
            continue
        for source in sources:
            for path, content in _config_map_files(source).items():
                files[f"{mount['mountPath']}/{path}"] = content
    return files


def _start(
    workload: dict[str, Any],
    container: dict[str, Any],
    environ: Mapping[str, str],
    tmp_path: Path,
) -> subprocess.CompletedProcess[str]:
    """The container's command, from the files its ConfigMaps mount (written under tmp_path),
    with ``environ``. What follows `--` is replaced by a command that says it ran; a
    stand-in turnserver comes first on PATH, so that no relay starts."""
    root = tmp_path / "root"
    for path, content in _mounted_files(workload, container).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    command: list[str] = container["command"]
    if "--" in command:
        command = [*command[: command.index("--") + 1], "sh", "-c", "echo started"]
    argv = [str(root) + arg if arg.startswith(CONTAINER_DEPLOY + "/") else arg for arg in command]
    fake = fake_turnserver(tmp_path / "bin")
    environ = {**environ, "TMPDIR": str(tmp_path)}
    return run_script(argv, environ, path=f"{fake}:/usr/bin:/bin")


def test_the_require_secrets_config_map_holds_the_script() -> None:
    data = _find("ConfigMap", "require-secrets")["data"]
    assert data == {"require-secrets.sh": REQUIRE_SECRETS.read_text(encoding="utf-8")}, (
        "copy deploy/require-secrets.sh into deploy/k8s/12-require-secrets.yaml"
    )


def test_every_container_that_reads_a_secret_checks_it_before_it_starts() -> None:
    readers = {c["name"] for _, c in _containers() if _secret_keys(c)}
    assert readers == {"inspectd", "coturn", "postgres", "redis", "worker"}
    for workload, container in _containers():
        keys = _secret_keys(container)
        if not keys:
            continue
        name = container["name"]
        files = _mounted_files(workload, container)
        if name == "coturn":
            # start.sh checks TURN_SECRET itself, with require-secrets.sh one folder up.
            assert container["command"] == ["/bin/sh", f"{CONTAINER_DEPLOY}/coturn/start.sh"]
            assert set(keys) == {"TURN_SECRET"}
        else:
            command = container["command"]
            assert command[:2] == CHECKER, name
            checked = command[2 : command.index("--")]
            assert {keys[v] for v in checked} == set(keys.values()), (
                f"{name}: require-secrets.sh must check every Secret key it reads"
            )
        # Every mounted script is the repository's file at the same place under deploy/.
        scripts = {p: c for p, c in files.items() if p.startswith(CONTAINER_DEPLOY + "/")}
        assert f"{CONTAINER_DEPLOY}/require-secrets.sh" in scripts, name
        for path, content in scripts.items():
            local = DEPLOY / path[len(CONTAINER_DEPLOY) + 1 :]
            assert content == local.read_text(encoding="utf-8"), (name, path)
    workers = _find("Deployment", "inspectd-worker")
    (worker,) = _pod(workers)["containers"]
    command = worker["command"]
    parse_command([*command[command.index("--") + 2 :], *worker["args"]], "worker")


@pytest.mark.parametrize(
    "container_name", ["inspectd", "worker", "postgres", "redis", "coturn"], ids=lambda name: name
)
def test_the_secret_placeholders_stop_the_container(container_name: str, tmp_path: Path) -> None:
    ((workload, container),) = [(w, c) for w, c in _containers() if c["name"] == container_name]
    result = _start(workload, container, _environment(container), tmp_path)
    assert result.returncode == REFUSED, result
    assert "started" not in result.stdout
    assert not (tmp_path / "bin" / "argv").exists(), "turnserver must not run"
    keys = _secret_keys(container)
    named = {
        v for v in keys if f"refusing to start: {v} still holds a placeholder" in result.stderr
    }
    assert {keys[v] for v in named} == set(keys.values()), result.stderr


@pytest.mark.parametrize(
    "container_name", ["inspectd", "worker", "postgres", "redis", "coturn"], ids=lambda name: name
)
def test_generated_secrets_start_the_container(container_name: str, tmp_path: Path) -> None:
    ((workload, container),) = [(w, c) for w, c in _containers() if c["name"] == container_name]
    stored = _find("Secret", "inspectd-secrets")["stringData"]
    generated = {key: secrets.token_hex(32) for key in stored}
    keys = _secret_keys(container)
    environ = {**_environment(container), **{var: generated[key] for var, key in keys.items()}}
    result = _start(workload, container, environ, tmp_path)
    assert result.returncode == 0, result
    if container_name == "coturn":
        argv = (tmp_path / "bin" / "argv").read_text(encoding="utf-8").splitlines()
        assert argv == ["-c", str(tmp_path / "turnserver.conf")]
        written = (tmp_path / "bin" / "written.conf").read_text(encoding="utf-8")
        assert f"static-auth-secret={generated['INSPECT_TURN_SECRET']}\n" in written
    else:
        assert (result.stdout, result.stderr) == ("started\n", "")


PRIVATE_PATHS = ("/metrics", "/healthz")
LINK_PATHS = ("/join", "/camera")
ACCESS_LOG = "nginx.ingress.kubernetes.io/enable-access-log"


def _ingress_for(path: str) -> dict[str, Any] | None:
    """The Ingress whose rule serves ``path`` (Kubernetes path semantics: the longest
    matching path wins, Exact before Prefix), or None when no rule does (404)."""
    best: tuple[int, int, dict[str, Any]] | None = None
    for _, ingress in RESOURCES:
        if ingress["kind"] != "Ingress":
            continue
        for rule in ingress["spec"]["rules"]:
            for item in rule["http"]["paths"]:
                value, kind = item["path"], item["pathType"]
                if kind == "Exact":
                    matched = path == value
                else:
                    prefix = value.rstrip("/")
                    matched = prefix == "" or path == prefix or path.startswith(prefix + "/")
                if matched:
                    rank = (len(value), kind == "Exact", ingress)
                    if best is None or rank[:2] > best[:2]:
                        best = rank
    return None if best is None else best[2]


def test_metrics_and_healthz_are_not_routed_to_the_public() -> None:
    for path in PRIVATE_PATHS:
        for spelling in (path, path + "/", path + "/x"):
            assert _ingress_for(spelling) is None, f"an Ingress routes {spelling}"


def test_link_paths_are_served_without_an_access_log() -> None:
    for path in LINK_PATHS:
        ingress = _ingress_for(f"{path}/token")
        assert ingress is not None, path
        assert ingress["metadata"]["annotations"][ACCESS_LOG] == "false", path
    main = _find("Ingress", "inspectd")
    assert ACCESS_LOG not in main["metadata"]["annotations"], "the rest keeps its access log"
    ingresses = [doc for _, doc in RESOURCES if doc["kind"] == "Ingress"]
    tls = {repr(doc["spec"]["tls"]) for doc in ingresses}
    assert len(tls) == 1, "every Ingress serves the host with the same certificate"
    issuers = [
        d for d in ingresses if "cert-manager.io/cluster-issuer" in d["metadata"]["annotations"]
    ]
    assert issuers == [main], "one Certificate manages the shared Secret"


async def test_every_route_of_the_service_is_public_or_private_on_purpose(
    tmp_path: Path,
) -> None:
    # A new route is not reachable through the Ingress until it is listed there: this keeps
    # the list complete, and private routes (metrics, health) off it.
    settings = Settings(data_dir=tmp_path / "var", port=0, shutdown_timeout_s=2.0, grading=False)
    async with running_service(settings) as running:
        routes = {resource.canonical for resource in running.app.router.resources()}
    assert set(PRIVATE_PATHS) <= routes
    for route in sorted(routes):
        sample = re.sub(r"\{[^}]+\}", "sample", route)
        ingress = _ingress_for(sample)
        if route in PRIVATE_PATHS:
            assert ingress is None, route
            continue
        assert ingress is not None, f"{route} is not routed by deploy/k8s: add it to an Ingress"
        in_link = any(sample == path or sample.startswith(path + "/") for path in LINK_PATHS)
        expected = "inspectd-links" if in_link else "inspectd"
        assert ingress["metadata"]["name"] == expected, route
