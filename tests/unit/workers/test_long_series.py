"""A series longer than ``HEMOSCAN_SERIES_MAX_SLICES`` gets its max-of-slices verdict from the
database's aggregates (``workers.verdicts.long_verdict``), the verdict the in-Python max of
slices gives for the same rows; a series within the limit still goes through the stage. On
SQLite (no services); the pipeline calls ``recompute`` with the settings' limit."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hybrid_model.series import SeriesStage
from schema import results, series
from schema.db import session_factory, upgrade
from schema.models import Series
from schema.series import SeriesRef
from tests.utils.results import job_with_scans, prediction
from workers.verdicts import encode_embedding, recompute, verdicts_of

SLICE_THRESHOLD = 0.6
STAGE_THRESHOLD = 0.97  # what a series stage's own threshold looks like (the demo's: 0.98)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> sessionmaker[Session]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path_factory.mktemp('long')}/long.db"
    upgrade(url)
    return session_factory(url)


def _series(sessions: sessionmaker[Session], logits: list[float], zs: list[float | None],
            unusable: int = 0) -> tuple[uuid.UUID, int]:  # fmt: skip
    """One folder series of slices with these logits and z; ``unusable`` more rows of another
    slice network (which no verdict reads), with the largest logits of all."""
    keys = [f"flat/{i:05d}.png" for i in range(len(logits) + unusable)]
    job, ids = job_with_scans(sessions, f"job-{uuid.uuid4().hex[:8]}", keys)
    with sessions.begin() as session:
        sid = series.lock(session, job, [SeriesRef("s", "t", "folder")])["s"]
        rows = []
        for i, key in enumerate(keys):
            logit = logits[i] if i < len(logits) else 50.0
            row = prediction(ids[key], float(1 / (1 + np.exp(-logit))))
            row.update(series_id=sid, z_mm=zs[i] if i < len(zs) else 1.0, logit=logit,
                       embedding=encode_embedding(np.full(4, i, np.float32)),
                       model_version="v" if i < len(logits) else "other")  # fmt: skip
            rows.append(row)
        results.record_batch(session, job, rows, [], 1)
    return job, sid


def _stored(sessions: sessionmaker[Session], sid: int) -> Series:
    with sessions() as session:
        row = session.scalars(select(Series).where(Series.id == sid)).one()
        session.expunge(row)
        return row


def _recompute(sessions: sessionmaker[Session], sid: int, max_slices: int) -> None:
    with sessions.begin() as session:
        recompute(session, SeriesStage(None, STAGE_THRESHOLD), "v", [sid],
                  slice_threshold=SLICE_THRESHOLD, max_slices=max_slices)  # fmt: skip


@pytest.mark.parametrize("positives", [True, False])
def test_a_long_series_gets_the_max_of_slices_verdict_from_the_database(sessions, positives):
    rng = np.random.default_rng(3 if positives else 4)
    n = 40
    logits = list(rng.normal(-2.0 if positives else -4.0, 1.5, n))
    if positives:
        logits[7] = logits[31] = 3.0  # a tie: the slice earlier in z order comes first
    zs: list[float | None] = [float(z) for z in rng.permutation(n) * 2.5]
    zs[5] = None
    _, sid = _series(sessions, logits, zs, unusable=3)
    _recompute(sessions, sid, max_slices=n - 1)
    got = _stored(sessions, sid)
    with sessions() as session:
        rows = series.slices_of(session, [sid])
    (want,) = verdicts_of(SeriesStage(None, SLICE_THRESHOLD), "v", rows)
    assert got.method == "max_of_slices" and got.threshold == SLICE_THRESHOLD
    assert got.slice_count == n == want.slice_count
    assert got.positive_slices == want.positive_slices and (got.positive_slices > 0) == positives
    assert got.probability == pytest.approx(want.probability) and got.label == want.label
    assert [k["prediction_id"] for k in got.key_slices] == [
        k["prediction_id"] for k in want.key_slices
    ]
    assert [k["probability"] for k in got.key_slices] == pytest.approx(
        [k["probability"] for k in want.key_slices]
    )
    assert (got.key_z_min, got.key_z_max) == (want.key_z_min, want.key_z_max)


def test_a_series_within_the_limit_still_goes_through_the_stage(sessions):
    _, sid = _series(sessions, [-3.0, 1.0, 2.0], [0.0, 5.0, 10.0], unusable=1)
    _recompute(sessions, sid, max_slices=3)
    got = _stored(sessions, sid)
    # The stage's own threshold: the stage, not the long-series path, made this verdict.
    assert got.threshold == STAGE_THRESHOLD and got.slice_count == 3
    assert got.positive_slices == 0 and not got.label  # 2.0's 0.88 is under the stage's 0.97
    _recompute(sessions, sid, max_slices=2)
    got = _stored(sessions, sid)
    assert got.threshold == SLICE_THRESHOLD and got.slice_count == 3 and got.label
    assert got.positive_slices == 2 and (got.key_z_min, got.key_z_max) == (5.0, 10.0)


def test_the_pipelines_commit_applies_the_settings_limit(sessions):
    """``workers.pipeline.commit`` passes ``HEMOSCAN_SERIES_MAX_SLICES`` and the slice
    threshold: with a limit of 1 a two-slice series is a long one."""
    from types import SimpleNamespace

    from workers.pipeline import commit

    job, ids = job_with_scans(sessions, f"job-{uuid.uuid4().hex[:8]}", ["f/a.png", "f/b.png"])
    ref = SeriesRef("f", "f", "folder")
    rows = [
        dict(prediction(ids[k], p), z_mm=None, instance_number=None,
             logit=float(np.log(p / (1 - p))), embedding=encode_embedding(np.zeros(2)))
        for k, p in (("f/a.png", 0.7), ("f/b.png", 0.2))
    ]  # fmt: skip
    for limit, threshold in ((1, SLICE_THRESHOLD), (2, STAGE_THRESHOLD)):
        rt = SimpleNamespace(
            series_stage=SeriesStage(None, STAGE_THRESHOLD),
            model_version="v",
            threshold=SLICE_THRESHOLD,
            settings=SimpleNamespace(series_max_slices=limit),
        )
        with sessions.begin() as session:
            commit(rt, session, job, [dict(r) for r in rows], [ref, ref], [], limit)
        with sessions() as session:
            got = session.scalars(
                select(Series).where(Series.job_id == job, Series.series_key == "f")
            ).one()
            assert (got.threshold, got.slice_count) == (threshold, 2)
            assert got.label == (threshold == SLICE_THRESHOLD)  # 0.7: over 0.6, under 0.97
