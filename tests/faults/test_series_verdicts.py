"""Series verdicts in the distributed pipeline: 20 DICOM phantom series under shuffled keys (one
series' slices land in many tasks) and 2 NIfTI volumes, scored by two real workers against
real Redis, PostgreSQL and SeaweedFS with the demo slice network and series stage.

Checked: every series ends with exactly one ``final`` verdict; a run whose worker is SIGKILLed
mid-batch gives exactly the verdicts of an undisturbed run; no raw UID appears in any database
row, log line, Flower task or output key."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from hemoscan.settings import load_settings
from hemoscan.storage import open_store
from hybrid_model.metadata import DEMO_MODEL_PATH, DEMO_SERIES_MODEL_PATH
from schema.models import Job, Prediction, Series, Study
from tests.utils.archive import dicom_series_to_nifti, make_series
from tests.utils.stack import flower, run_cli, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DICOM_SERIES, VOLUMES = 20, 2


@pytest.fixture(scope="module")
def phantom_series(tmp_path_factory) -> tuple[dict[str, list[Path]], list[Path], set[str]]:
    """(DICOM series name -> files, NIfTI volume files, every UID in the DICOM files)."""
    import pydicom

    folder = tmp_path_factory.mktemp("series")
    records = make_series(folder / "src", DICOM_SERIES + VOLUMES, seed=1515, size=128)
    by_series: dict[str, list[Path]] = defaultdict(list)
    for r in records:
        by_series[r["series"]].append(Path(r["file"]))
    names = sorted(by_series)
    volumes = [
        dicom_series_to_nifti(by_series.pop(name), folder / f"volume-{i}.nii.gz")
        for i, name in enumerate(names[DICOM_SERIES:])
    ]
    uids: set[str] = set()
    for files in by_series.values():
        for f in files:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            uids.update(
                str(getattr(ds, k))
                for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
            )
    return dict(by_series), volumes, uids


def _upload(env: dict[str, str], series: dict[str, list[Path]], volumes: list[Path]) -> str:
    """The archive in the test bucket: every DICOM slice under a random-looking key in one flat
    folder, shuffled (as RSNA's ID_<sop>.dcm release), and the volumes; returns the source."""
    settings = load_settings(s3_endpoint_url=env["HEMOSCAN_S3_ENDPOINT_URL"])
    source = f"s3://{env['HEMOSCAN_TEST_BUCKET']}/archive"
    store = open_store(source, settings)
    files = [f for group in series.values() for f in group]
    random.Random(3).shuffle(files)
    for f in files:
        store.put(f"ID_{hashlib.sha256(f.name.encode()).hexdigest()[:12]}.dcm", f.read_bytes())
    for v in volumes:
        store.put(f"volumes/{v.name}", v.read_bytes())
    return source


def _verdicts(url: str, job: str) -> dict[str, tuple]:  # type: ignore[type-arg]
    """Series key -> (state, label, source, slices, positive slices, probability, method)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        job_id = conn.scalar(select(Job.id).where(Job.name == job))
        rows = conn.execute(
            select(
                Series.series_key,
                Series.state,
                Series.label,
                Series.source,
                Series.slice_count,
                Series.positive_slices,
                Series.probability,
                Series.method,
            ).where(Series.job_id == job_id)
        ).all()
        slices = conn.scalar(select(func.count()).where(Prediction.job_id == job_id))
        studies = conn.execute(select(Study.state).where(Study.job_id == job_id)).scalars().all()
    engine.dispose()
    out = {r[0]: (*r[1:6], round(float(r[6] or 0.0), 4), r[7]) for r in rows}
    assert len(out) == len(rows), "one row per series"
    assert sum(v[3] for v in out.values()) == slices, "every scored slice is in one series"
    assert studies and set(studies) == {"final"}
    return out


def _db_text(url: str) -> str:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [
            str(row)
            for table in ("jobs", "scans", "predictions", "failures", "series", "studies")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        ]
    engine.dispose()
    return "\n".join(rows)


def test_series_verdicts_are_final_exactly_once_and_survive_a_worker_kill(
    fault_env, phantom_series, tmp_path
):
    series, volumes, uids = phantom_series
    env = {
        **fault_env,
        "HEMOSCAN_MODEL_PATH": str(DEMO_MODEL_PATH),
        "HEMOSCAN_SERIES_MODEL_PATH": str(DEMO_SERIES_MODEL_PATH),
        "HEMOSCAN_BATCH_SIZE": "16",
        "HEMOSCAN_MODEL_BATCH": "8",
    }
    source = _upload(env, series, volumes)
    objects = sum(len(g) for g in series.values()) + len(volumes)
    marker = tmp_path / "killed"
    killed_env = {**env, "HEMOSCAN_FAULT_KILL_ONCE": str(marker)}

    with flower(env, tmp_path) as url, workers(env, tmp_path, 2, prefix="calm") as procs:
        calm = run_cli(["scan", source, "--job", "calm", "--wait"], env, timeout=600)
        status = run_cli(["status", "calm"], env)
        listed = run_cli(["results", "calm", "--series", "--csv"], env)
        auth = "Basic " + base64.b64encode(b"admin:flower-test-pw").decode()
        request = urllib.request.Request(f"{url}/api/tasks", headers={"Authorization": auth})
        tasks = urllib.request.urlopen(request, timeout=10).read().decode()
        calm_logs = "".join(w.log() for w in procs)
    with workers(killed_env, tmp_path, 2, prefix="kill") as procs:
        killed = run_cli(["scan", source, "--job", "killed", "--wait"], killed_env, timeout=600)
        killed_logs = "".join(w.log() for w in procs)
    assert marker.exists(), "the fault was not injected"
    assert "WorkerLostError" in killed_logs or "exited prematurely" in killed_logs

    url_db = env["HEMOSCAN_DATABASE_URL"]
    a, b = _verdicts(url_db, "calm"), _verdicts(url_db, "killed")
    assert len(a) == DICOM_SERIES + VOLUMES, sorted(a)
    assert sorted(v[2] for v in a.values()).count("volume") == VOLUMES
    assert {v[0] for v in a.values()} == {"final"}
    assert {v[6] for v in a.values()} == {"series_stage"}
    assert a == b, "a worker killed mid-job changed the verdicts"
    # (a == b also says the pseudonyms are keyed, not per job: one series, one key.)
    assert listed.stdout.count("\n") == len(a) + 1, "results --series: a header and a row each"
    assert "studies" in status.stdout and "final" in status.stdout

    settings = load_settings(s3_endpoint_url=env["HEMOSCAN_S3_ENDPOINT_URL"])
    out_keys = [
        o.key for o in open_store(f"s3://{env['HEMOSCAN_TEST_BUCKET']}/heatmaps", settings).list()
    ]
    # Each job's tasks (at most 16 objects each) packed their maps: the keys to search exist.
    packs = [k for k in out_keys if k.endswith(".maps.npz")]
    assert len(packs) >= 2 * -(-objects // 16) and len(out_keys) > len(packs)
    haystacks = {
        "worker logs": calm_logs + killed_logs,
        "command output": calm.stdout + calm.stderr + killed.stdout + killed.stderr
        + status.stdout + listed.stdout,
        "flower tasks": tasks,
        "database rows": _db_text(url_db),
        "output keys": "\n".join(out_keys),
    }  # fmt: skip
    assert json.loads(tasks), "Flower saw the tasks"
    for where, haystack in haystacks.items():
        leaked = [uid for uid in uids if uid in haystack]
        assert not leaked, f"{len(leaked)} raw UID(s) in {where}, e.g. {leaked[0]}"
