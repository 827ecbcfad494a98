"""``schema.series`` on SQLite: series and studies registered once, slices read back in z
order, study verdicts from their series, and verdicts made final by the job's counters (no
services). The pipeline around them, with real workers: tests/faults/test_series_verdicts.py."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from schema import jobs, results, series
from schema.db import session_factory, upgrade
from schema.models import Job, Series, Study
from schema.series import SeriesRef, Verdict
from tests.utils.results import failure, job_with_scans, prediction


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> sessionmaker[Session]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path_factory.mktemp('series')}/series.db"
    upgrade(url)
    return session_factory(url)


def _job(sessions: sessionmaker[Session], keys: list[str]) -> tuple[uuid.UUID, dict[str, int]]:
    return job_with_scans(sessions, f"job-{uuid.uuid4().hex[:8]}", keys)


def _slice(scan_id: int, series_id: int, z: float | None, instance: int | None,
           index: int = 0, p: float = 0.25) -> dict:  # fmt: skip
    row = prediction(scan_id, p)
    row.update(slice_index=index, series_id=series_id, z_mm=z, instance_number=instance,
               logit=0.0, embedding=b"\x00" * 8)  # fmt: skip
    return row


def test_series_and_studies_are_registered_once(sessions):
    job, _ = _job(sessions, ["a"])
    refs = [SeriesRef("series-1", "study-1", "dicom"), SeriesRef("series-2", "study-1", "dicom")]
    with sessions.begin() as session:
        first = series.lock(session, job, refs)
    with sessions.begin() as session:
        again = series.lock(session, job, [refs[1], SeriesRef("series-3", "study-2", "folder")])
    assert again["series-2"] == first["series-2"] and len(set(first.values())) == 2
    with sessions() as session:
        studies = session.scalars(select(Study.study_key).where(Study.job_id == job)).all()
        states = session.scalars(select(Series.state).where(Series.job_id == job)).all()
    assert sorted(studies) == ["study-1", "study-2"] and set(states) == {"provisional"}


def test_slices_come_back_in_z_order_then_instance_then_key(sessions):
    keys = ["k/c.dcm", "k/a.dcm", "k/b.dcm", "k/d.png", "k/e.png"]
    job, ids = _job(sessions, keys)
    with sessions.begin() as session:
        sid = series.lock(session, job, [SeriesRef("s", "t", "dicom")])["s"]
        rows = [
            _slice(ids["k/c.dcm"], sid, 10.0, 1),
            _slice(ids["k/a.dcm"], sid, -5.0, 9),
            _slice(ids["k/b.dcm"], sid, None, 2),
            _slice(ids["k/e.png"], sid, None, None),
            _slice(ids["k/d.png"], sid, None, None),
        ]
        results.record_batch(session, job, rows, [], 1)
    with sessions() as session:
        got = series.slices_of(session, [sid])[sid]
    assert [r.object_key for r in got] == ["k/a.dcm", "k/c.dcm", "k/b.dcm", "k/d.png", "k/e.png"]


def test_a_verdict_reads_only_slices_with_a_logit_and_a_vector_of_its_network(sessions):
    """Rows of round 1 (no logit, no evidence vector) and rows of another slice network (a
    rescore not yet done) are left out of ``slices_of(..., model_version)``."""
    keys = ["k/ok.png", "k/nologit.png", "k/novector.png", "k/other.png"]
    job, ids = _job(sessions, keys)
    with sessions.begin() as session:
        sid = series.lock(session, job, [SeriesRef("s", "t", "folder")])["s"]
        rows = [_slice(ids[k], sid, float(i), None) for i, k in enumerate(keys)]
        rows[1]["logit"] = None
        rows[2]["embedding"] = None
        rows[3]["model_version"] = "another"
        results.record_batch(session, job, rows, [], 1)
    with sessions() as session:
        everything = series.slices_of(session, [sid])[sid]
        usable = series.slices_of(session, [sid], "v")[sid]
    assert len(everything) == 4 and [r.object_key for r in usable] == ["k/ok.png"]


def _verdict(series_id: int, p: float, label: bool) -> Verdict:
    return Verdict(series_id, p, label, 0.5, p, "max_of_slices", "v", 3, int(label))


def test_a_study_takes_its_most_suspicious_series(sessions):
    job, _ = _job(sessions, ["a"])
    refs = [SeriesRef("s1", "st", "dicom"), SeriesRef("s2", "st", "dicom")]
    with sessions.begin() as session:
        ids = series.lock(session, job, refs)
        series.store_verdicts(session, [_verdict(ids["s1"], 0.2, False)])
    with sessions.begin() as session:
        series.store_verdicts(session, [_verdict(ids["s2"], 0.9, True)])
    with sessions() as session:
        study = session.scalars(select(Study).where(Study.job_id == job)).one()
        counts = series.counts(session, job)
    assert (study.probability, study.label, study.series_count) == (0.9, True, 2)
    assert (counts.studies, counts.studies_flagged, counts.series, counts.series_flagged) == (
        1, 1, 2, 1,
    )  # fmt: skip


def test_record_batch_counts_each_object_done_once_per_pass(sessions):
    """``newly_done``: an object's first result in a pass counts once, a volume's many slices
    once, a redelivery or a score after a failure of the same pass not again."""
    job, ids = _job(sessions, ["vol", "x"])
    with sessions.begin() as session:
        slices = [dict(prediction(ids["vol"]), slice_index=i) for i in range(3)]
        assert results.record_batch(session, job, slices, [], 1).newly_done == 1
        assert results.record_batch(session, job, slices, [], 1).newly_done == 0
        fail = [failure(ids["x"], "gave_up")]
        assert results.record_batch(session, job, [], fail, 1).newly_done == 1
        assert results.record_batch(session, job, [prediction(ids["x"])], [], 1).newly_done == 0
        assert results.record_batch(session, job, [prediction(ids["x"])], [], 2).newly_done == 1


def test_verdicts_become_final_when_the_counter_reaches_the_listing(sessions):
    job, ids = _job(sessions, ["a", "b"])
    with sessions.begin() as session:
        sid = series.lock(session, job, [SeriesRef("s", "t", "dicom")])["s"]
        plan = results.record_batch(session, job, [_slice(ids["a"], sid, 0.0, 1)], [], 1)
        results.count_done(session, job, 1, plan.newly_done)
        job_row = session.get(Job, job)
        assert job_row is not None
        job_row.total_objects = 0  # the listing is still running: never final
    with sessions.begin() as session:
        assert not series.finalise(session, job)
        session.get(Job, job).total_objects = 2  # type: ignore[union-attr]
    with sessions.begin() as session:
        assert not series.finalise(session, job), "one of two objects is done"
        assert not series.finalise(session, job, exact=True)
        plan = results.record_batch(session, job, [], [failure(ids["b"], "unreadable")], 1)
        results.count_done(session, job, 1, plan.newly_done)
    with sessions.begin() as session:
        assert series.finalise(session, job) and series.finalise(session, job, exact=True)
    with sessions() as session:
        assert series.counts(session, job).final == 1
        assert session.get(Job, job).pass_done == 2  # type: ignore[union-attr]
    with sessions.begin() as session:  # --rescore: a new pass, provisional until it is done
        jobs.start_pass(session, session.get(Job, job))  # type: ignore[arg-type]
    with sessions.begin() as session:
        assert series.counts(session, job).provisional == 1
        assert not series.finalise(session, job)
