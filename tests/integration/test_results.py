"""Bulk scan registration on a real PostgreSQL (COPY) and on SQLite (executemany) alike."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from schema import jobs, results
from schema.db import session_factory, upgrade
from schema.models import Scan
from tests.utils.results import failure, job_with_scans, migrated_sessions, prediction

# Keys that COPY's text format must escape, plus ordinary and non-ASCII ones.
AWKWARD = ["a\tb.dcm", "line\nbreak.dcm", "back\\slash.dcm", "cr\r.dcm", "\\N", "ü/ct 1.png"]


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.services), "sqlite"])
def sessions(request, tmp_path):  # type: ignore[no-untyped-def]
    return migrated_sessions(request, tmp_path)


def test_add_scans_returns_only_new_keys_and_keeps_every_field(sessions):
    rows = [
        {"object_key": k, "size": i * 10 or None, "etag": f"e{i}" if i % 2 else None}
        for i, k in enumerate(AWKWARD)
    ]
    rows[1]["true_label"] = 1
    rows[2]["true_label"] = False
    with sessions.begin() as session:
        job, _ = jobs.open_job(session, "copy", "s3://b/p", {}, "v")
        job_id = job.id
        first = results.add_scans(session, job_id, rows + rows[:2])  # a key listed twice
        # A second call in the same transaction sees only what it sends.
        second = results.add_scans(session, job_id, [*rows[:3], {"object_key": "new.dcm"}])
    assert sorted(first) == sorted(AWKWARD)
    assert second == ["new.dcm"]
    with sessions() as session:
        stored = {
            s.object_key: (s.size, s.etag, s.true_label)
            for s in session.scalars(select(Scan).where(Scan.job_id == job_id))
        }
    expected = {r["object_key"]: (r["size"], r["etag"], r.get("true_label")) for r in rows}
    expected[AWKWARD[2]] = (20, None, 0)
    assert stored == {**expected, "new.dcm": (None, None, None)}


def _rows(sessions, job_id):  # type: ignore[no-untyped-def]
    from schema.models import Failure, Prediction

    with sessions() as session:
        preds = {
            p.scan_id: (p.pass_number, p.probability)
            for p in session.scalars(select(Prediction).where(Prediction.job_id == job_id))
        }
        fails = {
            f.scan_id: (f.pass_number, f.reason, f.attempts)
            for f in session.scalars(select(Failure).where(Failure.job_id == job_id))
        }
    return preds, fails


def test_a_redelivery_that_gives_up_does_not_undo_scores(sessions):
    """The round-1 bug: a scored batch delivered again to a worker that cannot reach the store
    recorded 'gave up' failures and deleted the predictions. Now the predictions stay."""
    job_id, ids = job_with_scans(sessions, "redelivery", ["a", "b", "c"])
    with sessions.begin() as session:
        results.record_batch(session, job_id, [prediction(i) for i in ids.values()], [], 1)
    with sessions.begin() as session:
        plan = results.record_batch(
            session, job_id, [], [failure(i, "gave_up", 6) for i in ids.values()], 1
        )
    assert plan.stale == 3
    preds, fails = _rows(sessions, job_id)
    assert preds == {i: (1, 0.25) for i in ids.values()} and fails == {}


def test_a_stale_pass_does_not_overwrite_the_new_one(sessions):
    """A message sent before --rescore arrives after the new pass scored the images."""
    job_id, ids = job_with_scans(sessions, "stale", ["a", "b"])
    a, b = ids["a"], ids["b"]
    with sessions.begin() as session:
        results.record_batch(session, job_id, [prediction(a, 0.9)], [failure(b, "missing")], 2)
    with sessions.begin() as session:  # the old pass: other scores, other outcomes
        results.record_batch(session, job_id, [prediction(b, 0.1)], [failure(a, "empty")], 1)
        results.record_batch(session, job_id, [prediction(a, 0.1)], [], 1)
    assert _rows(sessions, job_id) == ({a: (2, 0.9)}, {b: (2, "missing", 1)})
    with sessions.begin() as session:  # the new pass itself may update its rows
        results.record_batch(session, job_id, [prediction(b, 0.7)], [], 2)
    assert _rows(sessions, job_id) == ({a: (2, 0.9), b: (2, 0.7)}, {})


def test_attempts_grow_with_reruns_not_with_redeliveries(sessions):
    job_id, ids = job_with_scans(sessions, "attempts", ["a"])
    a = ids["a"]
    for task in ("t1", "t1", "t2"):  # t1 delivered twice, then a rerun's task t2
        with sessions.begin() as session:
            results.record_batch(session, job_id, [], [failure(a, "gave_up", 6, task)], 1)
    assert _rows(sessions, job_id)[1] == {a: (1, "gave_up", 12)}
    with sessions.begin() as session:  # the rerun after that scores it
        results.record_batch(session, job_id, [prediction(a)], [], 1)
    assert _rows(sessions, job_id) == ({a: (1, 0.25)}, {})


def test_timestamps_come_from_the_database(sessions):
    """updated_at is the server's clock: rewriting a row in a later transaction moves it on
    even though no worker clock was sent."""
    from sqlalchemy import func as sqlfunc

    from schema.models import Prediction

    job_id, ids = job_with_scans(sessions, "clock", ["a"])
    with sessions.begin() as session:
        results.record_batch(session, job_id, [prediction(ids["a"])], [], 1)
        stamped = session.scalar(select(Prediction.updated_at).where(Prediction.job_id == job_id))
        now = session.scalar(select(sqlfunc.now()))
    assert stamped is not None and now is not None
    assert abs((now.replace(tzinfo=None) - stamped.replace(tzinfo=None)).total_seconds()) < 5


def test_done_in_pass_counts_scores_and_permanent_failures_only(sessions):
    job_id, ids = job_with_scans(sessions, "done", ["a", "b", "c", "d"])
    with sessions.begin() as session:
        results.record_batch(
            session,
            job_id,
            [prediction(ids["a"])],
            [failure(ids["b"], "unreadable"), failure(ids["c"], "gave_up")],
            1,
        )
        assert results.done_in_pass(session, job_id, ["a", "b", "c", "d"], 1) == {"a", "b"}
        assert results.done_in_pass(session, job_id, ["a", "b", "c", "d"], 2) == set()


def test_writes_counts_every_time_a_prediction_row_is_written(sessions):
    """The exactly-once checks read this: a second scoring of the same image shows as 2."""
    from schema.models import Prediction

    job_id, ids = job_with_scans(sessions, "writes", ["a", "b"])
    with sessions.begin() as session:
        results.record_batch(session, job_id, [prediction(i) for i in ids.values()], [], 1)
    with sessions.begin() as session:
        results.record_batch(session, job_id, [prediction(ids["a"], 0.75)], [], 1)
    with sessions() as session:
        writes = dict(session.execute(select(Prediction.scan_id, Prediction.writes)).all())
    assert writes[ids["a"]] == 2 and writes[ids["b"]] == 1


def _scored_job(sessions, name, rows):  # type: ignore[no-untyped-def]
    """A job with a scan per row, each scored in pass 1: (job id, key -> scan id)."""
    with sessions.begin() as session:
        job, _ = jobs.open_job(session, name, "s3://b/p", {}, "v")
        results.add_scans(session, job.id, rows)
        ids = results.scan_ids(session, job.id, [r["object_key"] for r in rows])
        results.record_batch(session, job.id, [prediction(i) for i in ids.values()], [], 1)
    return job.id, ids


def test_a_changed_object_is_scored_again(sessions):
    """An object listed with another ETag than when it was scored: its result is dropped and
    the key is pending again; unchanged and manifest keys (no ETag) keep theirs."""
    rows = [
        {"object_key": "same", "etag": "e1", "size": 10},
        {"object_key": "changed", "etag": "e1", "size": 10},
        {"object_key": "manifest"},
    ]
    job_id, ids = _scored_job(sessions, "etag", rows)
    relisted = [
        {"object_key": "same", "etag": "e1", "size": 10},
        {"object_key": "changed", "etag": "e2", "size": 12},
        {"object_key": "manifest"},
    ]
    with sessions.begin() as session:
        pending = jobs.register_and_select(session, job_id, relisted, rescore=False)
    assert pending == ["changed"]
    with sessions() as session:
        stored = dict(
            session.execute(select(Scan.object_key, Scan.etag).where(Scan.job_id == job_id)).all()
        )
    assert stored == {"same": "e1", "changed": "e2", "manifest": None}
    assert set(_rows(sessions, job_id)[0]) == {ids["same"], ids["manifest"]}


def test_a_resume_makes_retryable_failures_pending_until_their_retry_ends(sessions):
    """A resume sends a key with a retryable failure ('config') again: until the retry's result
    is written the job is not complete (``--wait`` and ``final`` verdicts wait), the failure is
    not counted, ``pass_done`` drops by one; a permanent failure and a prediction stay done.
    The retry's failure adds its attempt and makes the job complete again."""
    from schema.models import Failure, Job

    keys = ["scored", "corrupt", "config"]
    job_id, ids = job_with_scans(sessions, "resume-retry", keys)
    with sessions.begin() as session:
        plan = results.record_batch(
            session,
            job_id,
            [prediction(ids["scored"])],
            [
                failure(ids["corrupt"], "unreadable", task="t1"),
                failure(ids["config"], "config", task="t1"),
            ],
            1,
        )
        results.count_done(session, job_id, 1, plan.newly_done)
        session.get(Job, job_id).total_objects = 3
    with sessions.begin() as session:
        assert results.progress(session, job_id).complete
        assert session.get(Job, job_id).pass_done == 3
    rows = [{"object_key": k} for k in keys]
    for _ in range(2):  # a second resume before the retry ran changes nothing more
        with sessions.begin() as session:
            assert jobs.register_and_select(session, job_id, rows, rescore=False) == ["config"]
        with sessions.begin() as session:
            state = results.progress(session, job_id)
            assert (state.scored, state.failed, state.complete) == (1, 1, False)
            assert session.get(Job, job_id).pass_done == 2
            assert results.failures_by_reason(session, job_id) == {"unreadable": 1}
    with sessions.begin() as session:  # the old task's record, delivered late: still pending
        plan = results.record_batch(
            session, job_id, [], [failure(ids["config"], "config", task="t1")], 1
        )
        results.count_done(session, job_id, 1, plan.newly_done)
        assert not results.progress(session, job_id).complete
    with sessions.begin() as session:  # the retry fails again: done, with 2 attempts
        plan = results.record_batch(
            session, job_id, [], [failure(ids["config"], "config", task="t2")], 1
        )
        results.count_done(session, job_id, 1, plan.newly_done)
    with sessions.begin() as session:
        assert results.progress(session, job_id).complete
        assert session.get(Job, job_id).pass_done == 3
        row = session.scalar(select(Failure).where(Failure.scan_id == ids["config"]))
        assert (row.attempts, row.retrying) == (2, False)


@pytest.mark.services
def test_a_changed_object_locks_no_scan_before_the_commit_order(pg_database):
    """A worker's commit locks a job's scans in id order. A resume that finds changed objects
    must not lock any of them before it takes its own locks in that order: here a worker holds
    the lowest scan, the resume waits for it, and the other changed scan must still be free
    (locked first, the two would deadlock once the worker reached it). The keys sort against
    their ids and the resume meets them through the (job, key) index, as on a large table, so a
    statement that locked scans as it met them would take the highest first."""
    import queue
    import threading
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    upgrade(pg_database)
    sessions = session_factory(pg_database)
    rows = [{"object_key": k, "etag": "e1", "size": 10} for k in ("zz.dcm", "mm.dcm", "aa.dcm")]
    job_id, ids = _scored_job(sessions, "locks", rows)
    lowest, highest = min(ids.values()), max(ids.values())
    assert (lowest, highest) == (ids["zz.dcm"], ids["aa.dcm"])
    relisted = [{**r, "etag": "e2"} for r in rows]
    pids: queue.Queue[int] = queue.Queue()
    outcome: list[object] = []

    def resume() -> None:
        try:
            with sessions.begin() as session:
                # As on a large table: the scans met through the (job, key) index, by key.
                session.execute(text("SET LOCAL enable_seqscan = off"))
                session.execute(text("SET LOCAL enable_bitmapscan = off"))
                pids.put(session.scalar(text("SELECT pg_backend_pid()")))
                outcome.append(jobs.register_and_select(session, job_id, relisted, False))
        except Exception as exc:  # reported below, on the test's thread
            outcome.append(exc)

    worker = sessions()
    worker.begin()
    worker.execute(select(Scan.id).where(Scan.id == lowest).with_for_update()).all()
    thread = threading.Thread(target=resume)
    thread.start()
    try:
        pid = pids.get(timeout=30)
        with sessions() as watch:  # until the resume waits on the worker's lock
            waiting = text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid")
            deadline = time.monotonic() + 60
            while watch.execute(waiting, {"pid": pid}).scalar() != "Lock":
                watch.rollback()
                time.sleep(0.005)  # a poll's pause, not a wait for the race
                if time.monotonic() > deadline or not thread.is_alive():
                    pytest.fail(f"the resume never waited for the worker's lock: {outcome}")
        try:
            worker.execute(
                select(Scan.id).where(Scan.id == highest).with_for_update(nowait=True)
            ).all()
        except OperationalError:
            pytest.fail("the resume locked a scan before the lowest one: a deadlock in waiting")
    finally:
        worker.rollback()
        worker.close()
        thread.join(timeout=60)
    assert outcome and sorted(outcome[0]) == ["aa.dcm", "mm.dcm", "zz.dcm"]  # type: ignore[arg-type]
