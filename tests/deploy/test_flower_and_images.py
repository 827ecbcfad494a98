"""Flower started exactly as deploy/ starts it refuses anonymous requests; the slim image's
commands run without the packages Dockerfile.slim leaves out."""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import pytest

from tests.deploy.manifests import DEPLOY, compose
from tests.utils.stack import HEMOSCAN, ROOT, free_port

pytestmark = [pytest.mark.integration]


# Import names of the distributions deploy/requirements.py leaves out of the slim image.
MODEL_ONLY_MODULES = ["tensorflow", "keras"]

BLOCKER = textwrap.dedent(
    """
    import sys
    BLOCKED = set(sys.argv.pop(1).split(","))

    class Missing:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (not in the slim image)")

    sys.meta_path.insert(0, Missing())
    from hemoscan.cli import main
    sys.exit(main())
    """
)


def _status(url: str, credentials: str | None) -> int:
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _with_option(argv: list[str], option: str, value: str) -> list[str]:
    index = argv.index(option)
    return [*argv[: index + 1], value, *argv[index + 2 :]]


def test_flower_as_deployed_requires_basic_auth(dist_env, tmp_path):
    command = compose()["services"]["flower"]["command"]
    assert command[:2] == ["hemoscan", "flower"]
    # Same arguments, but a free port and the loopback address on the test machine.
    port = free_port()
    argv = _with_option(_with_option(command[1:], "--port", str(port)), "--address", "127.0.0.1")
    env = dict(dist_env, HEMOSCAN_FLOWER_USER="ops", HEMOSCAN_FLOWER_PASSWORD="s3cret-Flower")
    log = (tmp_path / "flower.log").open("w")
    # Under the blocker: Flower must run in the slim image, which has no TensorFlow.
    slim = [sys.executable, "-c", BLOCKER, ",".join(MODEL_ONLY_MODULES)]
    proc = subprocess.Popen([*slim, *argv], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            if proc.poll() is not None:
                pytest.fail("flower exited:\n" + (tmp_path / "flower.log").read_text())
            try:
                urllib.request.urlopen(base, timeout=1)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                subprocess.run(["sleep", "0.2"])
        for path in ("/", "/api/workers"):
            assert _status(base + path, None) == 401, path
            assert _status(base + path, "ops:wrong-password") == 401, path
            assert _status(base + path, "ops:s3cret-Flower") == 200, path
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_flower_refuses_to_start_without_a_password(base_env):
    command = compose()["services"]["flower"]["command"]
    env = dict(base_env, HEMOSCAN_BROKER_URL="redis://127.0.0.1:6379/0")
    env.pop("HEMOSCAN_FLOWER_PASSWORD", None)
    out = subprocess.run(
        [*HEMOSCAN, *command[1:]], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0 and "HEMOSCAN_FLOWER_PASSWORD" in out.stderr


def test_slim_requirements_leave_out_only_model_packages():
    spec = importlib.util.spec_from_file_location("deploy_requirements", DEPLOY / "requirements.py")
    assert spec and spec.loader
    requirements = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(requirements)
    slim = {requirements._name(r) for r in requirements.requirements("slim")}
    assert slim.isdisjoint(requirements.MODEL_ONLY)
    assert {"celery", "flower", "sqlalchemy", "boto3", "prometheus-client"} <= slim
    gpu = requirements.requirements("gpu")
    assert any(r.startswith("tensorflow[and-cuda]") for r in gpu)
    assert not any(r.startswith("tensorflow>") for r in gpu)


@pytest.mark.parametrize(
    "args",
    [["--help"], ["scan", "--help"], ["db", "upgrade"], ["status"], ["flower", "--help"]],
    ids=lambda a: " ".join(a),
)
def test_slim_image_commands_run_without_the_model_packages(args, base_env, tmp_path):
    env = dict(base_env, HEMOSCAN_DATA_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(MODEL_ONLY_MODULES), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "not in the slim image" not in out.stderr
