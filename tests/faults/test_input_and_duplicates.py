"""Hostile input, and the same work arriving twice."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from hemoscan.settings import load_settings
from hemoscan.storage import open_store
from tests.utils.hostile import SCORED, hostile_objects
from tests.utils.stack import HEMOSCAN, ROOT, run_cli, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_hostile_and_odd_inputs(dist_env, archive, db, tmp_path):
    """Fault: one batch mixes eleven hostile or odd objects with good slices (0 bytes, truncated
    DICOM, random bytes named .dcm, DICOM without pixel data, MR instead of CT, a PNG header
    claiming 100000 x 100000 pixels, an object over HEMOSCAN_MAX_OBJECT_BYTES, a key with
    unicode and spaces, a multi-frame DICOM, an RGB JPEG, a chest CT slice). Checked: each bad
    object ends as a failure row with its reason and a message, the odd-but-valid ones are
    scored, and so is every good slice of the same batch."""
    limit = 1_000_000
    env = {**dist_env, "HEMOSCAN_MAX_OBJECT_BYTES": str(limit), "HEMOSCAN_BATCH_SIZE": "32"}
    source, keys = archive(12)
    phantoms = sorted((tmp_path / "phantoms-archive").glob("*"))
    dcm = next(p for p in phantoms if p.suffix == ".dcm")
    png = next(p for p in phantoms if p.suffix == ".png")
    objects = hostile_objects(dcm, png, limit)
    store = open_store(source, load_settings(s3_endpoint_url=dist_env["HEMOSCAN_S3_ENDPOINT_URL"]))
    for key, (data, _) in objects.items():
        store.put(key, data)
    with workers(env, tmp_path, 1):
        run_cli(["scan", source, "--job", "hostile", "--wait"], env)
    failures = db.failures("hostile")
    expected_failures = {k: o for k, (_, o) in objects.items() if o != SCORED}
    assert {k: f[0] for k, f in failures.items()} == expected_failures
    assert all(f[1] and f[2] == 1 for f in failures.values()), "a message, and no retries"
    scored = set(db.predictions("hostile"))
    assert scored == set(keys) | {k for k, (_, o) in objects.items() if o == SCORED}


def test_same_archive_enqueued_twice_at_once(dist_env, archive, db, tmp_path):
    """Fault: two producers enqueue the same archive under the same job at the same moment,
    then one batch is delivered a second time by hand. Checked: one scan row and one
    prediction per image, the heatmap objects of one scoring (a pack per task, an overlay per
    flagged image; no duplicates), and the batch
    delivered again skips its 16 images, already done in this pass, leaving their rows as
    they were."""
    source, keys = archive(48)
    with workers(dist_env, tmp_path, 1) as (worker,):
        producers = [
            subprocess.Popen(
                [*HEMOSCAN, "scan", source, "--job", "twice"],
                env=dist_env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        for proc in producers:
            assert proc.wait(120) == 0, proc.stderr.read() if proc.stderr else ""
        db.wait_done("twice", len(keys))
        # The same batch once more, as a redelivery would bring it.
        from workers.celery_app import SCORE_BATCH, make_celery

        app = make_celery(load_settings(broker_url=dist_env["HEMOSCAN_BROKER_URL"]))
        job_id = str(db.job_id("twice"))
        before = db.updated_at("twice")
        by_hand = f"by-hand-{uuid.uuid4().hex}"  # task ids are unique (delivery counts)
        app.send_task(
            SCORE_BATCH,
            args=[job_id, keys[:16], 1],
            queue=dist_env["HEMOSCAN_QUEUE"],
            task_id=by_hand,
        )
        worker.wait_for_log(f"score_batch[{by_hand}] succeeded", timeout=120)
        assert "'skipped': 16" in worker.log().split(f"score_batch[{by_hand}] succeeded")[1]
        assert db.updated_at("twice") == before, "a row was rewritten by the second delivery"
        result = run_cli(["scan", source, "--job", "twice", "--wait"], dist_env)
        assert "sent 0 of 48" in result.stderr
    assert db.count_scans("twice") == len(keys)
    assert db.writes("twice") == {k: 1 for k in keys}, "each image scored once"
    out = open_store(
        f"s3://{dist_env['HEMOSCAN_TEST_BUCKET']}/heatmaps/{job_id}",
        load_settings(s3_endpoint_url=dist_env["HEMOSCAN_S3_ENDPOINT_URL"]),
    )
    heatmaps = [o.key for o in out.list()]
    # HEMOSCAN_HEATMAPS=maps (the default): the maps of each task in one pack, an overlay per
    # flagged image; the second delivery wrote no other object.
    flagged = db.flagged("twice")
    packs = [k for k in heatmaps if k.endswith(".maps.npz")]
    assert sum(k.endswith(".overlay.png") for k in heatmaps) == flagged
    assert len(heatmaps) == len(packs) + flagged and len(set(heatmaps)) == len(heatmaps)
    assert 1 <= len(packs) <= -(-len(keys) // 16)
