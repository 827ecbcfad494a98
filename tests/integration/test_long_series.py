"""A series longer than ``HEMOSCAN_SERIES_MAX_SLICES`` gets its max-of-slices verdict from the
database (``workers.verdicts.long_verdict``): the verdict the in-Python max of slices gives for
the same rows (``verdicts_of`` with no stage), on PostgreSQL and SQLite, including ties of
probability (saturated and nearly equal logits, broken in z order), slices without z, rows no
verdict reads, and the thresholds 0 and 1; a series within the limit still goes through the
stage; the pipeline's commit applies the setting."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hybrid_model.series import SeriesStage, first_logit, sigmoid
from schema import results, series
from schema.models import Series
from schema.series import SeriesRef
from tests.utils.results import job_with_scans, migrated_sessions, prediction
from workers.pipeline import commit
from workers.verdicts import encode_embedding, recompute, verdicts_of

STAGE_THRESHOLD = 0.97  # a series stage's own threshold (the demo's: 0.98)


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.services), "sqlite"])
def sessions(request, tmp_path) -> sessionmaker[Session]:  # type: ignore[no-untyped-def]
    return migrated_sessions(request, tmp_path)


# (logit, z, instance, key) of each usable slice; the keys are in insertion order unless given.
Slice = tuple[float, float | None, int | None, str | None]


def _series(sessions: sessionmaker[Session], slices: list[Slice]) -> tuple[uuid.UUID, int]:
    """One folder series of these slices plus three rows no verdict reads, with the largest
    logits of all: another slice network's, one without a logit, one without a vector."""
    keys = [key or f"flat/{i:05d}.png" for i, (_, _, _, key) in enumerate(slices)]
    extra = ["flat/other.png", "flat/nologit.png", "flat/novector.png"]
    job, ids = job_with_scans(sessions, f"job-{uuid.uuid4().hex[:8]}", keys + extra)
    rows = []
    for key, (logit, z, instance, _) in zip(keys, slices, strict=True):
        row = prediction(ids[key], float(sigmoid(logit)))
        row.update(z_mm=z, instance_number=instance, logit=logit,
                   embedding=encode_embedding(np.zeros(4)), model_version="v")  # fmt: skip
        rows.append(row)
    unread: list[tuple[str, str, float | None, bytes | None]] = [
        ("flat/other.png", "other", 50.0, encode_embedding(np.zeros(4))),
        ("flat/nologit.png", "v", None, encode_embedding(np.zeros(4))),
        ("flat/novector.png", "v", 49.0, None),
    ]
    for key, version, unread_logit, vector in unread:
        row = prediction(ids[key], 0.99)
        row.update(z_mm=-1.0, instance_number=None, logit=unread_logit, embedding=vector,
                   model_version=version)  # fmt: skip
        rows.append(row)
    with sessions.begin() as session:
        sid = series.lock(session, job, [SeriesRef("s", "t", "folder")])["s"]
        for row in rows:
            row["series_id"] = sid
        results.record_batch(session, job, rows, [], 1)
    return job, sid


def _stored(sessions: sessionmaker[Session], sid: int) -> Series:
    with sessions() as session:
        row = session.scalars(select(Series).where(Series.id == sid)).one()
        session.expunge(row)
        return row


def _recompute(sessions, sid: int, threshold: float, max_slices: int) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        recompute(session, SeriesStage(None, STAGE_THRESHOLD), "v", [sid],
                  slice_threshold=threshold, max_slices=max_slices)  # fmt: skip


def _random(seed: int, mean: float) -> list[Slice]:
    rng = np.random.default_rng(seed)
    zs = rng.permutation(40) * 2.5
    return [(float(rng.normal(mean, 1.5)), float(z), None, None) for z in zs]


def _ties() -> list[Slice]:
    s = _random(1, -3.0)
    s[3] = (3.0, 90.0, None, None)  # tied with 31, earlier in key order, later in z order
    s[31] = (3.0, 70.0, None, None)
    s[8] = (2.0, None, 4, None)  # no z: after every slice with one, by instance, then key
    s[9] = (2.0, None, 2, None)
    s[10] = (1.5, None, None, "flat/B.png")  # no z, no instance: by key, by code point
    s[11] = (1.5, None, None, "flat/a.png")
    return s


def _saturated() -> list[Slice]:
    s = _random(2, -3.0)
    # 50 and 40 both round to probability 1.0: z order puts 40 (z 20) first.
    s[0] = (50.0, 30.0, None, None)
    s[1] = (40.0, 20.0, None, None)
    # Nearly equal logits, equal probabilities: the third key slice is the smaller logit's,
    # earlier in z order.
    s[2] = (30.0005, 5.0, None, None)
    s[3] = (30.0001, 0.0, None, None)
    return s


SCENARIOS = {
    "positives and ties": (_ties, 0.6),
    "no positive": (lambda: _random(3, -5.0), 0.6),
    "saturated logits": (_saturated, 0.6),
    "threshold 0": (lambda: _random(4, -2.0), 0.0),
    "threshold 1": (_saturated, 1.0),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_long_series_gets_the_in_python_max_of_slices_verdict(sessions, scenario):
    make, threshold = SCENARIOS[scenario]
    slices = make()
    _, sid = _series(sessions, slices)
    _recompute(sessions, sid, threshold, max_slices=len(slices) - 1)
    got = _stored(sessions, sid)
    with sessions() as session:
        rows = series.slices_of(session, [sid], "v")
    (want,) = verdicts_of(SeriesStage(None, threshold), "v", rows)
    assert got.method == "max_of_slices" and got.threshold == threshold
    assert got.slice_count == len(slices) == want.slice_count
    assert got.positive_slices == want.positive_slices
    assert got.probability == pytest.approx(want.probability, rel=1e-12)
    assert got.label == want.label
    assert [k["prediction_id"] for k in got.key_slices] == [
        k["prediction_id"] for k in want.key_slices
    ]
    assert [k["probability"] for k in got.key_slices] == [k["probability"] for k in want.key_slices]
    assert (got.key_z_min, got.key_z_max) == (want.key_z_min, want.key_z_max)
    assert all(k["position"] is None for k in got.key_slices)


def test_the_scenarios_exercise_what_they_name(sessions):
    """The comparisons above are only as good as their data: ties, positives, none."""
    _, sid = _series(sessions, _saturated())
    _recompute(sessions, sid, 0.6, max_slices=10)
    got = _stored(sessions, sid)
    # Not the largest logits first: z order decides among equal probabilities.
    assert [k["z_mm"] for k in got.key_slices] == [20.0, 30.0, 0.0]
    assert got.positive_slices == sum(sigmoid(lg) >= 0.6 for lg, *_ in _saturated()) >= 4
    _, sid = _series(sessions, _random(3, -5.0))
    _recompute(sessions, sid, 0.6, max_slices=10)
    assert _stored(sessions, sid).positive_slices == 0


def test_first_logit_is_the_exact_cut_of_the_sigmoid():
    rng = np.random.default_rng(0)
    for t in [*rng.random(200), 0.5, 1.0, 1e-30, float(sigmoid(30.0001)), float(sigmoid(-60.0))]:
        x = first_logit(float(t))
        if np.isfinite(x):
            assert sigmoid(x) >= t > sigmoid(np.nextafter(x, -np.inf))
        else:
            assert x == -np.inf and sigmoid(-1e9) >= t
    assert first_logit(0.0) == -np.inf and first_logit(1.0 + 1e-9) == np.inf


def test_a_series_within_the_limit_still_goes_through_the_stage(sessions):
    _, sid = _series(sessions, [(-3.0, 0.0, None, None), (1.0, 5.0, None, None), (2.0, 10.0, None, None)])  # fmt: skip
    _recompute(sessions, sid, 0.6, max_slices=3)
    got = _stored(sessions, sid)
    # The stage's own threshold: the stage, not the long-series path, made this verdict.
    assert got.threshold == STAGE_THRESHOLD and got.slice_count == 3 and not got.label
    _recompute(sessions, sid, 0.6, max_slices=2)
    got = _stored(sessions, sid)
    assert got.threshold == 0.6 and got.slice_count == 3 and got.label
    assert got.positive_slices == 2 and (got.key_z_min, got.key_z_max) == (5.0, 10.0)


def test_the_pipelines_commit_applies_the_settings_limit(sessions):
    """``workers.pipeline.commit`` passes ``HEMOSCAN_SERIES_MAX_SLICES`` and the slice
    threshold: with a limit of 1 a two-slice series is a long one."""
    job, ids = job_with_scans(sessions, f"job-{uuid.uuid4().hex[:8]}", ["f/a.png", "f/b.png"])
    ref = SeriesRef("f", "f", "folder")
    rows = [
        dict(prediction(ids[k], p), z_mm=None, instance_number=None,
             logit=float(np.log(p / (1 - p))), embedding=encode_embedding(np.zeros(2)))
        for k, p in (("f/a.png", 0.7), ("f/b.png", 0.2))
    ]  # fmt: skip
    for pass_number, (limit, threshold) in enumerate(((1, 0.6), (2, STAGE_THRESHOLD)), 1):
        rt = SimpleNamespace(
            series_stage=SeriesStage(None, STAGE_THRESHOLD),
            model_version="v",
            threshold=0.6,
            settings=SimpleNamespace(series_max_slices=limit),
        )
        with sessions.begin() as session:
            commit(rt, session, job, [dict(r) for r in rows], [ref, ref], [], pass_number)
        with sessions() as session:
            got = session.scalars(
                select(Series).where(Series.job_id == job, Series.series_key == "f")
            ).one()
            assert (got.threshold, got.slice_count) == (threshold, 2)
            assert got.label == (threshold == 0.6)  # 0.7: over 0.6, under 0.97
