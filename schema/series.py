"""Series and studies: register them, lock them, read their slices, store their verdicts.

A batch that commits slices of a series recomputes that series' verdict in the same
transaction, from every stored slice of it (embeddings and logits, never pixels): slices may
arrive in any order, in any task, on any worker, and the last commit always sees them all.
Two batches touching one study serialise on the study's row lock (``lock``), taken in id
order before the scans' locks (docs/architecture.md has the whole order), so they never
deadlock; a redelivered batch recomputes the same
verdict from the same rows. Verdicts are ``provisional`` until every object of the job has a
result of its current pass, then ``finalise`` (run after each batch's commit, and by the
producer) makes them ``final``.

Keys are pseudonyms (``hemoscan.privacy.pseudonym``) computed by the worker: nothing here sees
a UID.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Integer, bindparam, case, false, func, null, select, true, update
from sqlalchemy.orm import Session

from schema.models import Job, Prediction, Scan, Series, Study
from schema.results import _core, _insert, chunks, has_result_of_pass

# The top slices a series verdict names (by context-refined probability).
KEY_SLICES = 3


# The pseudonym kind of a series that is one image alone (``hemoscan scan --series-by image``):
# the producer names each such image's series ``image-<hex>``, and the worker knows it by that.
IMAGE_SERIES = "image"


@dataclass(frozen=True)
class SeriesRef:
    """Which series (and study) a slice belongs to: pseudonyms and how the series is made."""

    series_key: str
    study_key: str
    source: str  # dicom | volume | manifest | image | folder


@dataclass
class SliceRow:
    """One stored slice of a series, as the series stage reads it."""

    prediction_id: int
    slice_index: int
    z_mm: float | None
    instance: int | None
    object_key: str
    probability: float
    logit: float | None
    embedding: bytes | None
    model_version: str | None = None


@dataclass
class Verdict:
    """What the worker computed for one series (``store_verdicts`` writes it)."""

    series_id: int
    probability: float | None  # None: no slice of it is left (``empty``)
    label: bool | None
    threshold: float
    max_slice_probability: float | None
    method: str
    model_version: str
    slice_count: int
    positive_slices: int
    key_slices: list[dict[str, Any]] = field(default_factory=list)
    key_z_min: float | None = None
    key_z_max: float | None = None


def lock(
    session: Session,
    job_id: uuid.UUID,
    refs: Sequence[SeriesRef],
    also: Sequence[int] = (),
) -> dict[str, int]:
    """Register the series and studies of ``refs`` (existing ones stay), then lock the study
    of every series among them and in ``also`` (series ids), the study each series row really
    belongs to, in id order (``FOR NO KEY UPDATE``: recomputes of one study take turns, the
    foreign-key checks of new rows are not held up); return series key -> series id.

    Every insert comes before the locks, in key order, so a transaction that waits on another's
    new row holds no lock the other needs."""
    by_series = {r.series_key: r for r in refs}
    ids: dict[str, int] = {}
    if by_series:
        studies = sorted({r.study_key for r in refs})
        stmt = _insert(session, _core(Study)).on_conflict_do_nothing(
            index_elements=["job_id", "study_key"]
        )
        session.execute(
            stmt,
            [{"job_id": job_id, "study_key": k, "series_count": 0, "state": "provisional"}
             for k in studies],
        )  # fmt: skip
        study_ids = dict(
            session.execute(
                select(Study.study_key, Study.id).where(
                    Study.job_id == job_id, Study.study_key.in_(studies)
                )
            ).all()
        )
        rows = [
            {
                "job_id": job_id,
                "study_id": study_ids[by_series[k].study_key],
                "series_key": k,
                "source": by_series[k].source,
                "slice_count": 0,
                "positive_slices": 0,
                "key_slices": [],
                "state": "provisional",
            }
            for k in sorted(by_series)
        ]
        stmt = _insert(session, _core(Series)).on_conflict_do_nothing(
            index_elements=["job_id", "series_key"]
        )
        session.execute(stmt, rows)
        ids = dict(
            session.execute(
                select(Series.series_key, Series.id).where(
                    Series.job_id == job_id, Series.series_key.in_(list(by_series))
                )
            ).all()
        )
    members = sorted({*ids.values(), *also})
    if members:
        owners = select(Series.study_id).where(Series.id.in_(members))
        session.execute(
            select(Study.id)
            .where(Study.id.in_(owners))
            .order_by(Study.id)
            .with_for_update(key_share=True)
        ).all()
    return ids


def series_of_scans(session: Session, scan_ids: Sequence[int]) -> set[int]:
    """The series that slices of these scans belong to now (a batch that rewrites or fails
    them recomputes those too: a slice may leave a series)."""
    found: set[int] = set()
    for part in chunks(sorted(set(scan_ids))):
        found.update(
            session.scalars(
                select(Prediction.series_id)
                .where(Prediction.scan_id.in_(part), Prediction.series_id.is_not(None))
                .distinct()
            )
        )
    return found


def _slice_columns(with_embedding: bool) -> tuple[Any, ...]:
    """The columns of a ``SliceRow``, in its order (the evidence vector as NULL without it)."""
    embedding = Prediction.embedding if with_embedding else null().label("embedding")
    return (
        Prediction.id,
        Prediction.slice_index,
        Prediction.z_mm,
        Prediction.instance_number,
        Scan.object_key,
        Prediction.probability,
        Prediction.logit,
        embedding,
        Prediction.model_version,
    )


def slices_of(
    session: Session, series_ids: Sequence[int], model_version: str | None = None
) -> dict[int, list[SliceRow]]:
    """Every stored slice of each series, in z order (position along the normal, then
    InstanceNumber, then object key and slice index: a folder of PNGs in key order); with
    ``model_version``, only those a verdict of it reads (``_usable``)."""
    usable = _usable(model_version) if model_version is not None else ()
    out: dict[int, list[SliceRow]] = {sid: [] for sid in series_ids}
    ids = sorted(set(series_ids))
    for part in chunks(ids):
        query = (
            select(Prediction.series_id, *_slice_columns(with_embedding=True))
            .join(Scan, Scan.id == Prediction.scan_id)
            .where(Prediction.series_id.in_(part), *usable)
        )
        for sid, *values in session.execute(query):
            out[sid or 0].append(SliceRow(*values))
    for rows in out.values():
        rows.sort(key=z_order)
    return out


def z_order(row: SliceRow) -> tuple[Any, ...]:
    """A slice's place in its series: position along the normal, then InstanceNumber, then
    object key (by code point, whatever the database's collation) and slice index."""
    return (
        row.z_mm is None,
        row.z_mm or 0.0,
        row.instance is None,
        row.instance or 0,
        row.object_key,
        row.slice_index,
    )


def _usable(model_version: str) -> tuple[Any, ...]:
    """The slices a series verdict of slice network ``model_version`` reads: with a logit and
    an evidence vector (rows of round 1 have neither), of that network (after a ``--rescore``
    with another model, its slices not yet rescored are left out)."""
    return (
        Prediction.logit.is_not(None),
        Prediction.embedding.is_not(None),
        Prediction.model_version == model_version,
    )


def long_series(
    session: Session, series_ids: Sequence[int], model_version: str, max_slices: int
) -> set[int]:
    """Those of ``series_ids`` with more than ``max_slices`` usable slices (one grouped count
    per chunk, on the predictions' series index)."""
    found: set[int] = set()
    for part in chunks(sorted(set(series_ids))):
        found.update(
            session.scalars(
                select(Prediction.series_id)
                .where(Prediction.series_id.in_(part), *_usable(model_version))
                .group_by(Prediction.series_id)
                .having(func.count() > max_slices)
            )
        )
    return found


@dataclass
class SeriesCounts:
    """What a max-of-slices verdict needs of a series besides its top slices, aggregated by
    the database."""

    slice_count: int
    positive_slices: int
    positive_z: tuple[float | None, float | None]  # z range of the positive slices


def series_counts(
    session: Session, series_id: int, model_version: str, positive_from: float
) -> SeriesCounts:
    """The usable slices of one series, those with ``logit >= positive_from`` (the positive
    ones; -inf: all, +inf: none) and their z range, in one aggregate query."""
    if positive_from == float("inf"):
        positive: Any = false()
    elif positive_from == float("-inf"):
        positive = true()
    else:
        positive = Prediction.logit >= positive_from
    count, positives, z_min, z_max = session.execute(
        select(
            func.count(),
            func.count().filter(positive),
            func.min(Prediction.z_mm).filter(positive),
            func.max(Prediction.z_mm).filter(positive),
        ).where(Prediction.series_id == series_id, *_usable(model_version))
    ).one()
    return SeriesCounts(int(count), int(positives or 0), (z_min, z_max))


def kth_logit(session: Session, series_id: int, model_version: str, k: int) -> float | None:
    """The ``k``-th largest logit of the series' usable slices (its smallest when it has
    fewer; None when it has none)."""
    usable = (Prediction.series_id == series_id, *_usable(model_version))
    found = session.scalars(
        select(Prediction.logit).where(*usable).order_by(Prediction.logit.desc()).limit(k)
    ).all()
    return None if not found or found[-1] is None else float(found[-1])


def slices_from(
    session: Session, series_id: int, model_version: str, min_logit: float
) -> list[SliceRow]:
    """The series' usable slices with ``logit >= min_logit``, in z order (``z_order``),
    without their evidence vectors."""
    rows = [
        SliceRow(*r)
        for r in session.execute(
            select(*_slice_columns(with_embedding=False))
            .join(Scan, Scan.id == Prediction.scan_id)
            .where(
                Prediction.series_id == series_id,
                *_usable(model_version),
                Prediction.logit >= min_logit,
            )
        )
    ]
    rows.sort(key=z_order)
    return rows


_VERDICT_COLUMNS = (
    "probability",
    "label",
    "threshold",
    "max_slice_probability",
    "method",
    "model_version",
    "slice_count",
    "positive_slices",
    "key_slices",
    "key_z_min",
    "key_z_max",
)
_STUDY_COLUMNS = ("probability", "label", "series_count", "model_version")


def _update_by_id(model: Any, columns: Sequence[str]):  # type: ignore[no-untyped-def]
    """One UPDATE of ``columns`` by id for many rows (executemany): state provisional, the
    database's clock. Parameters: ``row_id`` and ``v_<column>``."""
    table = _core(model)
    values = {c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns}
    return (
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(**values, state="provisional", updated_at=func.now())
    )


def store_verdicts(session: Session, verdicts: Sequence[Verdict]) -> None:
    """Write series verdicts (``provisional``: ``finalise`` decides when they are final) and
    recompute their studies: the most suspicious series' probability, flagged when one is.

    A statement for all the series and one for all their studies (executemany), however many
    series the batch touched: a batch of single-slice series touches a hundred."""
    if not verdicts:
        return
    rows = [
        {"row_id": v.series_id, **{f"v_{c}": getattr(v, c) for c in _VERDICT_COLUMNS}}
        for v in sorted(verdicts, key=lambda v: v.series_id)
    ]
    session.execute(_update_by_id(Series, _VERDICT_COLUMNS), rows)
    study_ids = select(Series.study_id).where(Series.id.in_([v.series_id for v in verdicts]))
    studies = session.execute(
        select(
            Series.study_id,
            func.max(Series.probability),
            func.max(_label_int()),
            func.count(),
            func.max(Series.model_version),
        )
        .where(Series.study_id.in_(study_ids))
        .group_by(Series.study_id)
        .order_by(Series.study_id)
    ).all()
    if studies:
        session.execute(
            _update_by_id(Study, _STUDY_COLUMNS),
            [
                {
                    "row_id": study_id,
                    "v_probability": prob,
                    "v_label": bool(flagged),
                    "v_series_count": count,
                    "v_model_version": version,
                }
                for study_id, prob, flagged, count, version in studies
            ],
        )


def _label_int():  # type: ignore[no-untyped-def]
    """A series' label as 0/1 (max over a study's series: flagged when any is)."""
    return case((Series.label.is_(True), 1), else_=0).cast(Integer)


def complete_in_pass(session: Session, job_id: uuid.UUID, pass_number: int) -> bool:
    """Whether every object of the job has a result (a prediction or a failure) of this pass
    or a newer one: exact, and a scan of the job's objects (the producer asks once a listing
    ends; workers read the job's counter)."""
    total = session.scalar(select(func.count()).where(Scan.job_id == job_id)) or 0
    done = session.scalar(
        select(func.count())
        .select_from(Scan)
        .where(Scan.job_id == job_id, has_result_of_pass(pass_number))
    )
    return bool(total) and done == total


def finalise(session: Session, job_id: uuid.UUID, exact: bool = False) -> bool:
    """Make the job's verdicts ``final`` when every object has its result of the current pass;
    returns whether they are. A worker runs it after each commit and reads the counters
    (``pass_done >= total_objects``, both on the job row: O(1)); the producer runs it with
    ``exact`` once its listing ended. Idempotent; the last commit's check sees all the others
    (each batch's counter update commits with its rows)."""
    row = session.execute(
        select(Job.pass_number, Job.total_objects, Job.pass_done).where(Job.id == job_id)
    ).one_or_none()
    if row is None or not row.total_objects:
        return False  # no such job, or its listing is still running
    if exact:
        complete = complete_in_pass(session, job_id, int(row.pass_number))
    else:
        complete = int(row.pass_done) >= int(row.total_objects)
    if not complete:
        return False
    _lock_studies(session, job_id)
    for model in (Study, Series):
        session.execute(
            update(model)
            .where(model.job_id == job_id, model.state == "provisional")
            .values(state="final")
        )
    return True


def _lock_studies(session: Session, job_id: uuid.UUID) -> None:
    """Lock the job's studies in id order, as a worker's commit does (``lock``), before a
    statement that updates many of them (in whatever order it meets them)."""
    session.execute(
        select(Study.id)
        .where(Study.job_id == job_id)
        .order_by(Study.id)
        .with_for_update(key_share=True)
    ).all()


def reopen(session: Session, job_id: uuid.UUID) -> None:
    """A new pass (``--rescore``) begins: the job's verdicts are provisional again. Studies
    before series, as everywhere (the lock order of ``lock`` and ``store_verdicts``)."""
    _lock_studies(session, job_id)
    for model in (Study, Series):
        session.execute(update(model).where(model.job_id == job_id).values(state="provisional"))


@dataclass(frozen=True)
class VerdictCounts:
    studies: int
    studies_flagged: int
    series: int
    series_flagged: int
    provisional: int  # series
    final: int  # series


def counts(session: Session, job_id: uuid.UUID) -> VerdictCounts:
    """Studies and series of a job: how many, how many flagged, provisional and final."""
    s_total, s_flagged, s_final = session.execute(
        select(
            func.count(),
            func.count().filter(Series.label.is_(True)),
            func.count().filter(Series.state == "final"),
        ).where(Series.job_id == job_id)
    ).one()
    st_total, st_flagged = session.execute(
        select(func.count(), func.count().filter(Study.label.is_(True))).where(
            Study.job_id == job_id
        )
    ).one()
    return VerdictCounts(st_total, st_flagged, s_total, s_flagged, s_total - s_final, s_final)


def series_rows(
    session: Session, job_id: uuid.UUID, positives: bool = False, limit: int | None = None
) -> list[tuple[Series, str]]:
    """(series, its study's key) of a job, most suspicious first (flagged only with
    ``positives``)."""
    query = (
        select(Series, Study.study_key)
        .join(Study, Study.id == Series.study_id)
        .where(Series.job_id == job_id)
        .order_by(Series.probability.desc().nulls_last(), Series.series_key)
    )
    if positives:
        query = query.where(Series.label.is_(True))
    if limit is not None:
        query = query.limit(limit)
    return [(s, key) for s, key in session.execute(query).all()]


class KeySlice(NamedTuple):
    """Where a key slice's image and heatmaps are."""

    object_key: str
    slice_index: int
    overlay_uri: str | None
    raw_map_uri: str | None = None
    raw_map_index: int | None = None  # its row when raw_map_uri is a task's packed maps


def key_slice_locations(session: Session, prediction_ids: Sequence[int]) -> dict[int, KeySlice]:
    """Prediction id -> ``KeySlice`` of key slices."""
    out: dict[int, KeySlice] = {}
    ids = sorted(set(prediction_ids))
    for part in chunks(ids):
        query = (
            select(
                Prediction.id,
                Scan.object_key,
                Prediction.slice_index,
                Prediction.overlay_uri,
                Prediction.raw_map_uri,
                Prediction.raw_map_index,
            )
            .join(Scan, Scan.id == Prediction.scan_id)
            .where(Prediction.id.in_(part))
        )
        out.update({row[0]: KeySlice(*row[1:]) for row in session.execute(query)})
    return out


def labelled_series(session: Session, job_id: uuid.UUID) -> list[tuple[int, float, float, float]]:
    """(label, probability, max-of-slices probability, threshold) of every series with a
    verdict and at least one labelled slice; a series is labelled positive when one of its
    slices is (the manifest's labels are per object)."""
    label = func.max(Scan.true_label)
    query = (
        select(label, Series.probability, Series.max_slice_probability, Series.threshold)
        .join(Prediction, Prediction.series_id == Series.id)
        .join(Scan, Scan.id == Prediction.scan_id)
        .where(Series.job_id == job_id, Series.probability.is_not(None))
        .where(Scan.true_label.is_not(None))
        .group_by(Series.id, Series.probability, Series.max_slice_probability, Series.threshold)
    )
    return [
        (
            int((y or 0) > 0),
            float(p or 0.0),
            float(p or 0.0) if m is None else m,
            0.5 if t is None else t,
        )
        for y, p, m, t in session.execute(query)
    ]


def flagged_studies(
    session: Session, job_id: uuid.UUID, limit: int
) -> list[tuple[Study, list[Series]]]:
    """The ``limit`` most suspicious flagged studies, each with its series (most suspicious
    first)."""
    studies = session.scalars(
        select(Study)
        .where(Study.job_id == job_id, Study.label.is_(True))
        .order_by(Study.probability.desc(), Study.study_key)
        .limit(limit)
    ).all()
    out = []
    for study in studies:
        members = session.scalars(
            select(Series)
            .where(Series.study_id == study.id)
            .order_by(Series.probability.desc().nulls_last(), Series.series_key)
        ).all()
        out.append((study, list(members)))
    return out


__all__ = [
    "KEY_SLICES",
    "SeriesRef",
    "SliceRow",
    "Verdict",
    "complete_in_pass",
    "counts",
    "finalise",
    "flagged_studies",
    "KeySlice",
    "key_slice_locations",
    "labelled_series",
    "lock",
    "reopen",
    "series_rows",
    "slices_of",
    "store_verdicts",
]
