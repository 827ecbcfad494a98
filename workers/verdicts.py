"""Which series a scored slice belongs to, and the series verdicts a batch recomputes.

A slice's series, as a keyed pseudonym (``hemoscan.privacy.pseudonym``: the raw UIDs never
leave the worker's memory):

- DICOM with a SeriesInstanceUID: that series, in its StudyInstanceUID's study;
- a NIfTI volume: the object is the series (and its own study);
- anything else (PNG, JPEG, DICOM without the UID): the series a manifest's series column
  names, or the image alone with ``hemoscan scan --series-by image`` (``hint``, already a
  pseudonym: the producer computed it, ``series-`` or ``image-``), else the object's folder;
  each is its own study, ordered by object key.

``recompute`` runs inside the batch's transaction, after its rows are written
(``schema.series`` has why that makes the verdicts order-free and exactly-once).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
from sqlalchemy.orm import Session

from hemoscan.privacy import pseudonym
from hybrid_model.preprocess import Placement
from hybrid_model.series import SeriesStage, first_logit, sigmoid
from schema import series
from schema.series import IMAGE_SERIES, KEY_SLICES, SeriesRef, SliceRow, Verdict


def series_ref(
    object_key: str, placement: Placement, secret: bytes, hint: str | None = None
) -> SeriesRef:
    """The pseudonymous series and study of one slice (see the module docstring)."""
    if hint and not placement.volume and not placement.series_uid:
        kind, dash, digits = hint.partition("-")
        source = "image" if kind == IMAGE_SERIES else "manifest"
        return SeriesRef(hint, "study-" + (digits if dash else hint), source)
    if placement.volume:
        value, source = f"object:{object_key}", "volume"
    elif placement.series_uid:
        study = placement.study_uid and pseudonym("study", placement.study_uid, secret)
        ref = pseudonym("series", placement.series_uid, secret)
        return SeriesRef(
            ref, study or pseudonym("study", f"series:{placement.series_uid}", secret), "dicom"
        )
    else:
        folder = object_key.rsplit("/", 1)[0] if "/" in object_key else ""
        value, source = f"folder:{folder}", "folder"
    return SeriesRef(pseudonym("series", value, secret), pseudonym("study", value, secret), source)


def encode_embedding(vector: np.ndarray) -> bytes:
    """The evidence vector as stored (float32 bytes): the series stage reads it back exactly."""
    return np.asarray(vector, np.float32).tobytes()


def empty_verdict(series_id: int, stage: SeriesStage, model_version: str) -> Verdict:
    """A series none of whose slices is left (they failed in a newer pass, or moved)."""
    return Verdict(series_id, None, None, stage.threshold, None, stage.method, model_version, 0, 0)


def verdicts_of(
    stage: SeriesStage, model_version: str, slices: dict[int, list[SliceRow]]
) -> list[Verdict]:
    """The verdict of each series from its usable slices in z order
    (``schema.series.slices_of`` with ``model_version``: with a logit and an evidence vector,
    of this slice network; after a ``--rescore`` with another model its slices not yet
    rescored are left out), one stage call; an ``empty_verdict`` for a series with none."""
    usable = dict(sorted(slices.items()))
    ids = [sid for sid, rows in usable.items() if rows]
    empty = [empty_verdict(sid, stage, model_version) for sid, rows in usable.items() if not rows]
    inputs = []
    for sid in ids:
        rows = usable[sid]
        embeddings = np.stack([np.frombuffer(r.embedding or b"", np.float32) for r in rows])
        logits = np.array([r.logit for r in rows], np.float64)
        z = np.array([np.nan if r.z_mm is None else r.z_mm for r in rows], np.float64)
        inputs.append((embeddings, logits, z))
    out = empty
    for sid, verdict in zip(ids, stage(inputs), strict=True):
        rows = usable[sid]
        probs = verdict.slice_probabilities
        top = np.argsort(-probs, kind="stable")[:KEY_SLICES]
        positive = probs >= verdict.threshold
        ranged = [rows[i] for i in (np.flatnonzero(positive) if positive.any() else top)]
        zs = [r.z_mm for r in ranged if r.z_mm is not None]
        out.append(
            Verdict(
                series_id=sid,
                probability=float(np.clip(verdict.probability, 0.0, 1.0)),
                label=bool(verdict.probability >= verdict.threshold),
                threshold=verdict.threshold,
                max_slice_probability=verdict.max_slice_probability,
                method=verdict.method,
                model_version=model_version,
                slice_count=len(rows),
                positive_slices=int(positive.sum()),
                key_slices=[
                    {
                        "prediction_id": rows[i].prediction_id,
                        "slice_index": rows[i].slice_index,
                        "z_mm": rows[i].z_mm,
                        "instance": rows[i].instance,
                        "position": int(i),
                        "probability": round(float(probs[i]), 6),
                        "slice_probability": round(float(rows[i].probability), 6),
                    }
                    for i in top
                ],
                key_z_min=min(zs) if zs else None,
                key_z_max=max(zs) if zs else None,
            )
        )
    return out


def long_verdict(
    session: Session,
    series_id: int,
    model_version: str,
    slice_threshold: float,
) -> Verdict:
    """The max-of-slices verdict of a series too long for the series stage: the verdict
    ``verdicts_of`` gives with ``SeriesStage(None, slice_threshold)`` for the same rows, from
    the database's aggregates and the few slices that can be key slices, without reading the
    series' evidence vectors or all of its rows into Python.

    Key slices are ranked by ``sigmoid(logit)`` as in ``verdicts_of`` (its ties broken in z
    order): every slice whose probability reaches the third largest is read (``first_logit``
    gives the smallest logit with that probability) and ranked here; positives are the slices
    with ``sigmoid(logit) >= slice_threshold``, counted by the database from the exact logit
    cut."""
    threshold = float(slice_threshold)
    counts = series.series_counts(session, series_id, model_version, first_logit(threshold))
    kth = series.kth_logit(session, series_id, model_version, KEY_SLICES)
    if kth is None:  # not a long series any more (it cannot be, under the study's lock)
        return Verdict(series_id, None, None, threshold, None, "max_of_slices", model_version, 0, 0)
    candidates = series.slices_from(
        session, series_id, model_version, first_logit(float(sigmoid(np.float64(kth))))
    )
    probs = sigmoid(np.array([float(r.logit or 0.0) for r in candidates], np.float64))
    # A stable sort of rows already in z order: equal probabilities stay in z order.
    order = np.argsort(-probs, kind="stable")[:KEY_SLICES]
    top = [(candidates[i], float(probs[i])) for i in order]
    if counts.positive_slices:
        z_min, z_max = counts.positive_z
    else:
        zs = [r.z_mm for r, _ in top if r.z_mm is not None]
        z_min, z_max = (min(zs), max(zs)) if zs else (None, None)
    best = top[0][1]
    return Verdict(
        series_id=series_id,
        probability=best,
        label=best >= threshold,
        threshold=threshold,
        max_slice_probability=best,
        method="max_of_slices",
        model_version=model_version,
        slice_count=counts.slice_count,
        positive_slices=counts.positive_slices,
        key_slices=[
            {
                "prediction_id": r.prediction_id,
                "slice_index": r.slice_index,
                "z_mm": r.z_mm,
                "instance": r.instance,
                "position": None,  # its place in z order is not computed for a long series
                "probability": round(p, 6),
                "slice_probability": round(float(r.probability), 6),
            }
            for r, p in top
        ],
        key_z_min=z_min,
        key_z_max=z_max,
    )


def recompute(
    session: Session,
    stage: SeriesStage,
    model_version: str,
    series_ids: Sequence[int],
    *,
    slice_threshold: float | None = None,
    max_slices: int | None = None,
) -> int:
    """Recompute and store the verdicts of ``series_ids`` (already locked by
    ``schema.series.lock`` in this transaction); returns how many.

    A series with more than ``max_slices`` usable slices (``HEMOSCAN_SERIES_MAX_SLICES``) gets
    ``long_verdict``, max of slices at ``slice_threshold``: no head CT acquisition is that
    long, while a flat folder of exports is one series by folder, and rereading all of it
    through the stage on every batch would cost each batch in proportion to what the job has
    scored so far (quadratic over the job; docs/architecture.md, "Long series", has the figures)."""
    if not series_ids:
        return 0
    long: list[Verdict] = []
    if max_slices is not None and slice_threshold is not None:
        long = [
            long_verdict(session, sid, model_version, slice_threshold)
            for sid in sorted(series.long_series(session, series_ids, model_version, max_slices))
        ]
    done = {v.series_id for v in long}
    short = [sid for sid in series_ids if sid not in done]
    verdicts = (
        verdicts_of(stage, model_version, series.slices_of(session, short, model_version))
        if short
        else []
    )
    verdicts += long
    series.store_verdicts(session, verdicts)
    return len(verdicts)


def finalise(sessions, job_id: uuid.UUID) -> bool:  # type: ignore[no-untyped-def]
    """After a commit: the job's verdicts become final once every object has its result."""
    with sessions.begin() as session:
        return series.finalise(session, job_id)
