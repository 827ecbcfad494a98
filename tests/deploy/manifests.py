"""Read deploy/: the compose file, the Kubernetes manifests and the Dockerfiles' probe."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers of a Deployment or Job (empty for other kinds)."""
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))


def dockerfile_healthcheck() -> str:
    """The shell command line of Dockerfile.worker's HEALTHCHECK (shell form: run by sh -c)."""
    text = (DEPLOY / "Dockerfile.worker").read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(.+)$", text, re.MULTILINE)
    assert match, "Dockerfile.worker has no HEALTHCHECK ... CMD"
    return match.group(1).strip()


def k8s_worker_probes() -> dict[str, list[str]]:
    worker = next(
        d
        for _, d in k8s_documents()
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "hemoscan-worker"
    )
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    return {
        kind: container[kind]["exec"]["command"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }


def worker_probe_command() -> str:
    """The one worker health check that the image and every Kubernetes probe run."""
    command = dockerfile_healthcheck()
    for kind, argv in k8s_worker_probes().items():
        assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3, kind
        assert argv[2] == command, f"{kind} differs from the Dockerfile HEALTHCHECK"
    return command
