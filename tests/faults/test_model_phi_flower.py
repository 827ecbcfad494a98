"""An unusable model file, patient identifiers, and Flower's authentication."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import pytest
import redis
from sqlalchemy import create_engine, text

from hemoscan.settings import load_settings
from hemoscan.storage import open_store
from tests.utils.archive import make_phantoms
from tests.utils.stack import Worker, flower, flower_tasks, run_cli, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PHI = {
    "PatientName": "Grimshaw^Eleanor^Q",
    "PatientID": "MRN-55512034",
    "PatientBirthDate": "19380214",
    "AccessionNumber": "ACC-99127731",
}


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_worker_refuses_to_consume_without_a_usable_model(dist_env, tmp_path, problem):
    """Fault: HEMOSCAN_MODEL_PATH names a missing file, or a file of random bytes. Checked: the
    worker exits non-zero, says why, and leaves the queued batch in the queue."""
    path = tmp_path / "model.keras"
    if problem == "corrupt":
        path.write_bytes(b"PK\x03\x04 certainly not a keras model" * 50)
    env = {**dist_env, "HEMOSCAN_MODEL_PATH": str(path)}
    from workers.celery_app import SCORE_BATCH, make_celery

    app = make_celery(load_settings(broker_url=env["HEMOSCAN_BROKER_URL"]))
    app.send_task(SCORE_BATCH, args=["00000000-0000-0000-0000-000000000000", ["k"]],
                  queue=env["HEMOSCAN_QUEUE"])  # fmt: skip
    worker = Worker(f"nomodel-{problem}@hemoscan-test", env, tmp_path)
    assert worker.proc.wait(120) != 0
    log = worker.log()
    assert "refusing to consume" in log
    assert ("not found" if problem == "missing" else "corrupt") in log
    queued = redis.Redis.from_url(env["HEMOSCAN_BROKER_URL"]).llen(env["HEMOSCAN_QUEUE"])
    assert queued == 1, "the batch must stay queued for a worker that can score it"


def _phi_archive(folder, store) -> list[str]:  # type: ignore[no-untyped-def]
    import pydicom

    keys = []
    for i, path in enumerate(p for p in make_phantoms(folder, 16) if p.suffix == ".dcm"):
        ds = pydicom.dcmread(path)
        for tag, value in PHI.items():
            setattr(ds, tag, value)
        if i == 0:
            ds.Modality = "MR"  # a failure path must not leak either
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        data = buf.getvalue()
        if i == 1:
            data = data[: len(data) // 2]  # truncated: another failure path
        key = f"ct/slice-{i:03d}.dcm"
        store.put(key, data)
        keys.append(key)
    return keys


def test_no_phi_in_logs_task_arguments_flower_rows_or_keys(dist_env, tmp_path, db):
    """Fault: DICOM files carry a patient name, ID, birth date and accession number (some of
    them also fail: wrong modality, truncated). Checked: none of those values appears in the
    worker and producer output, in the task arguments and results Flower shows, in any
    database row, or in any output object key."""
    settings = load_settings(s3_endpoint_url=dist_env["HEMOSCAN_S3_ENDPOINT_URL"])
    bucket = dist_env["HEMOSCAN_TEST_BUCKET"]
    keys = _phi_archive(tmp_path / "phantoms", open_store(f"s3://{bucket}/phi", settings))
    env = {**dist_env, "HEMOSCAN_BATCH_SIZE": "4"}
    with flower(env, tmp_path) as url, workers(env, tmp_path, 1) as (worker,):
        scan = run_cli(["scan", f"s3://{bucket}/phi", "--job", "phi", "--wait"], env)
        status = run_cli(["status", "phi"], env)
        results = run_cli(["results", "phi", "--csv"], env)
        tasks, details = flower_tasks(url)
        log = worker.log()
    assert len(tasks) == 2 and len(db.predictions("phi")) + len(db.failures("phi")) == len(keys)
    assert set(db.failures("phi")) == {keys[0], keys[1]}
    engine = create_engine(env["HEMOSCAN_DATABASE_URL"])
    with engine.connect() as conn:
        rows = [
            str(row)
            for table in ("jobs", "scans", "predictions", "failures")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        ]
    engine.dispose()
    out_keys = [o.key for o in open_store(f"s3://{bucket}/heatmaps", settings).list()]
    assert out_keys, "heatmaps were written"
    haystacks = {
        "worker log": log,
        "producer output": scan.stdout + scan.stderr + status.stdout + results.stdout,
        "flower tasks": json.dumps(tasks) + "".join(details),
        "database rows": "\n".join(rows),
        "output keys": "\n".join(out_keys),
    }
    for where, haystack in haystacks.items():
        for tag, value in PHI.items():
            for needle in {value, value.replace("^", " "), value.split("^")[0]}:
                assert needle not in haystack, f"{tag} found in {where}"


def test_flower_refuses_unauthenticated_requests(dist_env, tmp_path):
    """Fault: requests to Flower's UI and API without credentials, or with a wrong password.
    Checked: every one is refused with 401; the right credentials get in."""
    with flower(dist_env, tmp_path) as url:
        for path in ("/", "/workers", "/tasks", "/api/workers", "/api/tasks"):
            for auth in (None, "admin:wrong-password"):
                request = urllib.request.Request(f"{url}{path}")
                if auth:
                    token = base64.b64encode(auth.encode()).decode()
                    request.add_header("Authorization", f"Basic {token}")
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(request, timeout=10)
                assert refused.value.code == 401, (path, auth)
        good = urllib.request.Request(f"{url}/api/workers")
        good.add_header(
            "Authorization", "Basic " + base64.b64encode(b"admin:flower-test-pw").decode()
        )
        assert urllib.request.urlopen(good, timeout=10).status == 200
