"""The read-only queries behind `hemoscan status`, `results`, `report` and `scan --wait`.

Nothing here writes: a reader of a job never changes it (the job row's counters are kept by
``results.refresh_job``, which only the producer calls).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schema import results
from schema.models import Failure, Job, Prediction, Scan


@dataclass(frozen=True)
class JobStatus:
    job: Job
    progress: results.Progress
    throughput: float | None  # images per second between the first and the last result

    @property
    def state(self) -> str:
        """The stored state, or ``done`` once every scan has a result (derived, not stored)."""
        if self.progress.complete and self.job.state in ("created", "running"):
            return "done"
        return self.job.state


def throughput(session: Session, job_id: uuid.UUID) -> float | None:
    first, last, count = session.execute(
        select(
            func.min(Prediction.created_at), func.max(Prediction.updated_at), func.count()
        ).where(Prediction.job_id == job_id)
    ).one()
    if not count or first is None or last is None:
        return None
    seconds = (last - first).total_seconds()
    return count / seconds if seconds > 0 else None


def job_status(session: Session, job: Job) -> JobStatus:
    return JobStatus(job, results.progress(session, job.id), throughput(session, job.id))


def all_jobs(session: Session) -> list[Job]:
    return list(session.scalars(select(Job).order_by(Job.created_at)))


def labelled_scores(session: Session, job_id: uuid.UUID) -> list[tuple[int, float, float]]:
    """(manifest label, probability, threshold) of every scored scan that has a label."""
    rows = session.execute(
        select(Scan.true_label, Prediction.probability, Prediction.threshold)
        .join(Prediction, Prediction.scan_id == Scan.id)
        .where(Scan.job_id == job_id, Scan.true_label.is_not(None))
    ).all()
    return [(int(r[0] or 0), float(r[1]), float(r[2])) for r in rows]


def probabilities(session: Session, job_id: uuid.UUID) -> list[float]:
    """Every scored scan's probability (the report's histogram)."""
    rows = session.execute(
        select(Prediction.probability).where(Prediction.job_id == job_id)
    ).scalars()
    return [float(p) for p in rows]


def threshold_of(session: Session, job_id: uuid.UUID) -> float:
    """The threshold the job's latest prediction was labelled with (0.5 without any)."""
    value = session.execute(
        select(Prediction.threshold)
        .where(Prediction.job_id == job_id)
        .order_by(Prediction.id.desc())
        .limit(1)
    ).scalar()
    return float(value) if value is not None else 0.5


def failure_examples(session: Session, job_id: uuid.UUID) -> list[tuple[str, int, str, str]]:
    """(reason, count, one example's object key, its message) per failure reason."""
    rows = []
    for reason, count in results.failures_by_reason(session, job_id).items():
        key, message = session.execute(
            select(Scan.object_key, Failure.message)
            .join(Failure, Failure.scan_id == Scan.id)
            .where(Failure.job_id == job_id, Failure.reason == reason)
            .limit(1)
        ).one()
        rows.append((reason, count, key, message))
    return rows


def result_rows(session: Session, job_id: uuid.UUID, positives_only: bool) -> Iterator[Any]:
    """(object key, slice index, probability, label, overlay URI, raw map URI, flags, the raw
    map's row in its pack or None), most suspicious first, streamed."""
    query = (
        select(
            Scan.object_key,
            Prediction.slice_index,
            Prediction.probability,
            Prediction.label,
            Prediction.overlay_uri,
            Prediction.raw_map_uri,
            Prediction.flags,
            Prediction.raw_map_index,
        )
        .join(Prediction, Prediction.scan_id == Scan.id)
        .where(Prediction.job_id == job_id)
        .order_by(Prediction.probability.desc(), Scan.object_key, Prediction.slice_index)
    )
    if positives_only:
        query = query.where(Prediction.label.is_(True))
    yield from session.execute(query.execution_options(yield_per=1000))


def flagged(session: Session, job_id: uuid.UUID, limit: int) -> list[tuple[str, float, str | None]]:
    """(object key, probability, overlay URI) of the ``limit`` most suspicious flagged images."""
    rows = session.execute(
        select(Scan.object_key, Prediction.probability, Prediction.overlay_uri)
        .join(Prediction, Prediction.scan_id == Scan.id)
        .where(Prediction.job_id == job_id, Prediction.label.is_(True))
        .order_by(Prediction.probability.desc(), Scan.object_key)
        .limit(limit)
    ).all()
    return [(str(r[0]), float(r[1]), r[2]) for r in rows]


def pass_progress(session: Session, job: Job, expected: int) -> results.Progress:
    """Progress of the job's current pass (a ``--rescore``): rows of that pass, of ``expected``.

    Rows carry the pass they were computed in, so no clock is compared: neither the producer's
    nor the workers'.
    """
    scored, positives = session.execute(
        select(
            func.count(Prediction.scan_id.distinct()),
            func.count().filter(Prediction.label.is_(True)),
        ).where(Prediction.job_id == job.id, Prediction.pass_number >= job.pass_number)
    ).one()
    failed = session.scalar(
        select(func.count()).where(
            Failure.job_id == job.id,
            Failure.pass_number >= job.pass_number,
            results.SETTLED,
        )
    )
    return results.Progress(
        total=expected, scored=int(scored), failed=int(failed or 0), positives=int(positives)
    )


@dataclass(frozen=True)
class JobRun:
    """A job's run as a benchmark reads it: from its creation to its last committed row."""

    job_id: uuid.UUID
    created_at: Any
    last_result_at: Any
    scored: int
    failed: int
    timings: list[dict[str, float]]  # each prediction's stage timings (predictions.timings)


def job_run(session: Session, name: str) -> JobRun:
    job_id, created = session.execute(select(Job.id, Job.created_at).where(Job.name == name)).one()
    scored, last = session.execute(
        select(func.count(), func.max(Prediction.updated_at)).where(Prediction.job_id == job_id)
    ).one()
    failed = session.scalar(select(func.count()).where(Failure.job_id == job_id))
    timings = session.scalars(select(Prediction.timings).where(Prediction.job_id == job_id)).all()
    return JobRun(job_id, created, last, int(scored), int(failed or 0), [t or {} for t in timings])
