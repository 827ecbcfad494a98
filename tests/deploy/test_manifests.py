"""deploy/ checked offline: Kubernetes manifests against the Kubernetes schemas (the
kubernetes-validate package ships them), KEDA objects structurally (their CRDs are not in
those schemas), the compose file's security rules, and every HEMOSCAN_ name against Settings."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest

from hemoscan.settings import ENV_PREFIX, Settings
from tests.deploy.manifests import DEPLOY, K8S, compose, containers, k8s_documents

KUBERNETES_VERSION = "1.30"
SETTING_NAMES = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
# Kinds with no schema in kubernetes-validate; each gets its own structural test below.
NOT_IN_K8S_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication"), ("kustomize.config.k8s.io/v1beta1", "Kustomization")}  # fmt: skip
SECRET_KEY = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|AUTH|BROKER_URL|DATABASE_URL|PSEUDONYM_KEY")


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def _one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in _by_kind(kind) if d["metadata"]["name"] == name]
    return doc


# --- Kubernetes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,doc",
    [
        pytest.param(p, d, id=f"{p.name}:{d['kind']}/{d['metadata']['name']}")
        for p, d in k8s_documents()
        if (d["apiVersion"], d["kind"]) not in NOT_IN_K8S_SCHEMAS
    ],
)
def test_manifest_is_valid_against_the_kubernetes_schema(path, doc):
    # strict: unknown fields (a typo, a field at the wrong level) fail too.
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert doc["metadata"].get("namespace", "hemoscan") == "hemoscan"


def test_the_schema_validator_really_rejects_a_bad_manifest():
    """Guards the test above: an offline validator that accepts anything would prove nothing."""
    bad = _one("Deployment", "hemoscan-worker")
    bad = {**bad, "spec": {**bad["spec"], "replicaz": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_every_manifest_kind_is_checked():
    kinds = {(d["apiVersion"], d["kind"]) for _, d in k8s_documents()}
    assert kinds & NOT_IN_K8S_SCHEMAS == NOT_IN_K8S_SCHEMAS  # each has a test of its own


def test_keda_scaledobject_scales_the_workers_on_the_queue_list():
    (scaled,) = _by_kind("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    _one("Deployment", target["name"])  # names the worker Deployment that exists
    assert target["name"] == "hemoscan-worker"
    assert spec["minReplicaCount"] == 0 < spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    meta = trigger["metadata"]
    queue = _one("ConfigMap", "hemoscan-config")["data"]["HEMOSCAN_QUEUE"]
    assert meta["listName"] == queue
    assert int(meta["listLength"]) >= 1
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"
    # The password comes from the Secret, through a TriggerAuthentication.
    auth = _one("TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "password"
    assert ref["key"] in _one("Secret", ref["name"])["stringData"]


def test_kustomization_lists_existing_files_and_leaves_out_the_templates():
    (kustomization,) = _by_kind("Kustomization")
    listed = set(kustomization["resources"])
    assert all((K8S / name).is_file() for name in listed)
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk - listed == {"secret.example.yaml", "producer-job.yaml"}


def test_worker_deployment_asks_for_one_gpu_and_shuts_down_warm():
    worker = _one("Deployment", "hemoscan-worker")
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    # Longer than any batch (seconds on a GPU, minutes at worst), so SIGTERM lets it finish.
    assert pod["terminationGracePeriodSeconds"] >= 600
    assert "replicas" not in worker["spec"], "KEDA owns the replica count"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "$(POD_NAME)" in env["WORKER_NAME"]["value"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_pods_take_secrets_only_from_the_secret():
    secret_keys = set(_one("Secret", "hemoscan-secrets")["stringData"])
    config = _one("ConfigMap", "hemoscan-config")["data"]
    assert not {k for k in config if SECRET_KEY.search(k) and k != "HEMOSCAN_FLOWER_USER"}
    assert {
        "HEMOSCAN_BROKER_URL",
        "HEMOSCAN_DATABASE_URL",
        "HEMOSCAN_FLOWER_PASSWORD",
        "HEMOSCAN_PSEUDONYM_KEY",
    } <= secret_keys
    for _, doc in k8s_documents():
        for container in containers(doc):
            for env in container.get("env", []):
                assert "value" not in env or not SECRET_KEY.search(env["name"]), env


# --- settings ----------------------------------------------------------------------------


def _k8s_variables() -> set[str]:
    names: set[str] = set()
    for _, doc in k8s_documents():
        if doc["kind"] in ("ConfigMap", "Secret"):
            names |= set(doc.get("data", {})) | set(doc.get("stringData", {}))
        for container in containers(doc):
            names |= {e["name"] for e in container.get("env", [])}
    return names


def _compose_variables() -> set[str]:
    names: set[str] = set()
    for service in compose()["services"].values():
        env = service.get("environment") or {}
        names |= set(env) if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}
    return names


def test_every_hemoscan_variable_set_in_compose_and_k8s_is_a_setting():
    for where, names in (("compose", _compose_variables()), ("k8s", _k8s_variables())):
        hemoscan = {n for n in names if n.startswith(ENV_PREFIX)}
        assert hemoscan, where
        assert hemoscan <= SETTING_NAMES, f"{where}: not settings: {hemoscan - SETTING_NAMES}"


def test_every_hemoscan_name_anywhere_in_deploy_is_a_setting():
    """Dockerfiles, scripts, README and comments too: a misspelt name is silently ignored."""
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            found = set(re.findall(r"\bHEMOSCAN_[A-Z0-9_]+", path.read_text()))
            assert found <= SETTING_NAMES, f"{path.name}: {found - SETTING_NAMES}"


# --- compose -----------------------------------------------------------------------------


def test_compose_secrets_are_required_variables():
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key):
                assert re.search(r"\$\{[A-Z0-9_]+:\?[^}]+\}", str(value)), (name, key)


def test_compose_publishes_only_flower_and_the_object_store_console():
    services = compose()["services"]
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"flower", "s3"}
    (console,) = services["s3"]["ports"]
    assert str(console).endswith(":9333"), "the console, never the S3 API port (8333)"
    assert str(console).startswith("127.0.0.1:")


def test_compose_keeps_everything_on_the_internal_network():
    spec = compose()
    assert spec["networks"]["backend"]["internal"] is True
    for name, service in spec["services"].items():
        networks = set(service["networks"])
        assert "backend" in networks, name
        # Docker publishes nothing from an internal network: the published two need `edge`.
        assert ("edge" in networks) == (name in {"flower", "s3"}), name


def test_compose_reserves_one_distinct_gpu_per_worker():
    services = compose()["services"]
    workers = {n: s for n, s in services.items() if "hemoscan-worker" in s.get("image", "")}
    assert len(workers) >= 2
    seen: list[str] = []
    for name, service in workers.items():
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"], name
        assert len(device["device_ids"]) == 1, name
        seen += device["device_ids"]
        assert service["environment"]["WORKER_NAME"].endswith("@" + service["hostname"])
        assert service["environment"]["HEMOSCAN_METRICS_PORT"]
    assert len(set(seen)) == len(seen), "two workers on one GPU"
    targets = (DEPLOY / "prometheus.yml").read_text()
    assert all(f"{name}:9808" in targets for name in workers), "Prometheus scrapes every worker"


def test_compose_broker_never_evicts_and_persists():
    command = " ".join(compose()["services"]["redis"]["command"])
    assert "--maxmemory-policy noeviction" in command
    assert "--appendonly yes" in command


def test_compose_runs_migrations_before_workers():
    services = compose()["services"]
    assert services["migrate"]["command"] == ["hemoscan", "db", "upgrade"]
    for name in ("worker-gpu0", "worker-gpu1", "flower"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    assert services["postgres"]["healthcheck"]["test"]


def test_flower_runs_the_same_command_in_compose_and_k8s():
    flower = _one("Deployment", "hemoscan-flower")
    (container,) = flower["spec"]["template"]["spec"]["containers"]
    assert container["args"] == compose()["services"]["flower"]["command"]
