"""A real worker, checked the way deploy/ checks it: the container health check / Kubernetes
probe command against its own node name, and its Prometheus endpoint after a small real job."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hemoscan.settings import load_settings
from hemoscan.storage import open_store
from tests.deploy.manifests import worker_probe_command
from tests.utils.archive import make_phantoms, upload_archive
from tests.utils.stack import ROOT, free_port, run_cli, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_IMAGES = 20


def _probe(env: dict[str, str], worker_name: str) -> subprocess.CompletedProcess[str]:
    """Run the probe exactly as written in deploy/ (a shell command line) with WORKER_NAME set."""
    probe_env = dict(env, WORKER_NAME=worker_name)
    probe_env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["/bin/sh", "-c", worker_probe_command()],
        env=probe_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_health_check_pings_the_workers_own_node_name(dist_env, tmp_path):
    with workers(dist_env, tmp_path, 1, prefix="probe") as (worker,):
        ok = _probe(dist_env, worker.name)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "pong" in ok.stdout
        wrong = _probe(dist_env, f"nobody-{uuid.uuid4().hex[:6]}@hemoscan-test")
        assert wrong.returncode != 0, wrong.stdout + wrong.stderr


def test_metrics_endpoint_counts_a_real_job(dist_env, tmp_path):
    port = free_port()
    env = dict(dist_env, HEMOSCAN_METRICS_PORT=str(port))
    settings = load_settings(s3_endpoint_url=env["HEMOSCAN_S3_ENDPOINT_URL"], data_dir=tmp_path)
    source = f"s3://{env['HEMOSCAN_TEST_BUCKET']}/archive"
    store = open_store(source, settings)
    upload_archive(store, make_phantoms(tmp_path / "phantoms", N_IMAGES), bad=False)
    store.put("bad/empty.png", b"")

    with workers(env, tmp_path, 1, prefix="metrics"):
        job = f"metrics-{uuid.uuid4().hex[:6]}"
        out = run_cli(["scan", source, "--job", job, "--wait"], env, timeout=300)
        assert "job done" in out.stderr, out.stderr[-2000:]
        url = f"http://127.0.0.1:{port}/metrics"
        # The last task's postrun signal may land just after the producer sees the job done.
        deadline = time.monotonic() + 20
        while True:
            samples = _samples(url)
            scored = samples.get(("hemoscan_images_scored_total", frozenset()), 0.0)
            if scored >= N_IMAGES or time.monotonic() > deadline:
                break
            time.sleep(0.5)

    assert scored == N_IMAGES
    assert samples[("hemoscan_image_failures_total", frozenset({("reason", "empty")}))] == 1
    batches = -(-(N_IMAGES + 1) // int(env["HEMOSCAN_BATCH_SIZE"]))
    assert samples[("hemoscan_batch_seconds_count", frozenset())] == batches
    assert samples[("hemoscan_batches_total", frozenset({("outcome", "success")}))] == batches
    # The producer stamps each message, so every first delivery has a queue wait.
    assert samples[("hemoscan_queue_wait_seconds_count", frozenset())] == batches
