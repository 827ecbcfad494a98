"""A result is never undone: batches delivered again, and messages of an older pass."""

from __future__ import annotations

import uuid

import pytest

from hemoscan.settings import load_settings
from tests.utils.stack import Worker, free_port, run_cli, workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _send(env: dict[str, str], args: list[object], worker: Worker, task_id: str) -> str:
    """One score_batch message, by hand, as a redelivery or a late message brings it; returns
    the summary the worker logged for it."""
    from workers.celery_app import SCORE_BATCH, make_celery

    app = make_celery(load_settings(broker_url=env["HEMOSCAN_BROKER_URL"]))
    # Celery task ids are unique; delivery counts live in Redis for days, keyed by them.
    task_id = f"{task_id}-{uuid.uuid4().hex}"
    app.send_task(SCORE_BATCH, args=args, queue=env["HEMOSCAN_QUEUE"], task_id=task_id)
    done = f"score_batch[{task_id}] succeeded"
    worker.wait_for_log(done, timeout=120)
    return worker.log().split(done, 1)[1].splitlines()[0]


def test_scored_batch_delivered_again_to_a_worker_that_cannot_reach_the_store(
    fault_env, archive, db, tmp_path
):
    """Fault: a job scored to completion; one of its 16-key batches is delivered again (the
    same task arguments, as a visibility-timeout redelivery or a lost acknowledgement brings
    it) to a worker whose object store is unreachable and that has no retries left. Round 1
    replaced all 16 predictions by failures. Checked: every prediction survives, untouched
    (same row timestamp), and no failure is recorded. Two layers hold this: the worker skips
    keys already done in the pass, and schema.rules never lets a failure replace a prediction
    of its pass; the test fails only if both break."""
    env = {**fault_env, "HEMOSCAN_BATCH_SIZE": "16"}
    source, keys = archive(32)
    with workers(env, tmp_path, 1):
        run_cli(["scan", source, "--job", "redeliver", "--wait"], env, timeout=300)
    before = db.updated_at("redeliver")
    assert set(before) == set(keys)
    cut_off = {
        **env,
        "HEMOSCAN_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens
        "HEMOSCAN_S3_MAX_ATTEMPTS": "1",
        "HEMOSCAN_S3_CONNECT_TIMEOUT": "1",
        "HEMOSCAN_MAX_RETRIES": "0",
    }
    worker = Worker("cutoff@hemoscan-test", cut_off, tmp_path)
    try:
        worker.wait_ready()
        summary = _send(env, [str(db.job_id("redeliver")), keys[:16], 1], worker, "again-1")
    finally:
        worker.stop()
    assert "'skipped': 16" in summary, summary
    assert db.updated_at("redeliver") == before, "a prediction was rewritten"
    assert db.failures("redeliver") == {}


def test_a_message_of_an_older_pass_does_not_overwrite_the_rescored_rows(
    fault_env, archive, db, tmp_path
):
    """Fault: a job is scored (pass 1) and rescored (`scan --rescore --wait`: pass 2); then a
    batch message of pass 1 arrives late, and one without a pass (as round 1 sent them).
    Checked: the pass-1 message is dropped as stale, the message without a pass counts as the
    job's current pass and skips what is done, and every row stays as pass 2 wrote it."""
    env = {**fault_env, "HEMOSCAN_BATCH_SIZE": "8"}
    source, keys = archive(16)
    with workers(env, tmp_path, 1) as (worker,):
        run_cli(["scan", source, "--job", "passes", "--wait"], env, timeout=300)
        first = db.updated_at("passes")
        result = run_cli(["scan", source, "--job", "passes", "--rescore", "--wait"], env)
        assert "pass 2" in result.stderr + result.stdout
        second = db.updated_at("passes")
        assert all(second[k] > first[k] for k in keys), "the rescore rewrote every row"
        job = str(db.job_id("passes"))
        assert "'stale': True" in _send(env, [job, keys[:8], 1], worker, "late-1")
        assert "'skipped': 8" in _send(env, [job, keys[8:]], worker, "round-1")
    assert db.updated_at("passes") == second
    assert db.writes("passes") == {k: 2 for k in keys}, "scored once in each pass, no more"
    assert set(db.passes("passes").values()) == {2}
