"""Jobs: create or resume one, register its scans in bulk, and find what is left to score."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from hemoscan.errors import HemoscanError
from schema import results, series
from schema.models import RETRYABLE_REASONS, Failure, Job, Prediction, Scan, utcnow


class JobError(HemoscanError):
    """A job cannot be created or found."""


def _by_name(session: Session, name: str) -> Job | None:
    return session.scalar(select(Job).where(Job.name == name))


def series_by(parameters: dict[str, Any] | None) -> str:
    """What makes a series of a job's images that carry none (``ScanPlan.series_by``; jobs
    from before the option group by folder)."""
    return str((parameters or {}).get("series_by") or "folder")


def open_job(
    session: Session,
    name: str,
    source_uri: str,
    parameters: dict[str, Any],
    model_version: str | None,
    legacy_name: str | None = None,
) -> tuple[Job, bool]:
    """The job called ``name`` (resumed) or a new one; returns (job, created).
    ``legacy_name``: an older default name of the same job, resumed when no job has ``name``."""
    job = _by_name(session, name)
    if job is None and legacy_name:
        job = _by_name(session, legacy_name)
    if job is not None:
        name = job.name
        if job.source_uri != source_uri:
            raise JobError(
                f"job {name!r} already exists for {job.source_uri}; "
                "choose another --job name for this source"
            )
        before, now = series_by(job.parameters), series_by(parameters)
        if before != now:
            # Scan rows keep the series they were registered with: a resumed job that changed
            # its grouping would hold both, silently.
            raise JobError(
                f"job {name!r} groups images into series by {before}, not by {now}; "
                "choose another --job name to group them otherwise"
            )
        return job, False
    job = Job(
        id=uuid.uuid4(),
        name=name,
        source_uri=source_uri,
        state="created",
        parameters=parameters,
        model_version=model_version,
    )
    session.add(job)
    session.flush()
    return job, True


def find_job(session: Session, name_or_id: str) -> Job:
    job = _by_name(session, name_or_id)
    if job is None:
        try:
            job = session.get(Job, uuid.UUID(name_or_id))
        except ValueError:
            job = None
    if job is None:
        raise JobError(f"no job called {name_or_id!r}; 'hemoscan status' lists the jobs")
    return job


def register_and_select(
    session: Session,
    job_id: uuid.UUID,
    rows: Sequence[dict[str, Any]],
    rescore: bool,
) -> list[str]:
    """Insert scan rows for a chunk of the listing; return the keys that still need scoring.

    An object whose ETag (or size) changed since it was listed is new content: its stored
    result describes bytes that no longer exist, so it is dropped and the key is pending again.
    A key whose failure a rerun may fix (``RETRYABLE_REASONS``) is sent again, and its failure
    row is marked ``retrying``: pending, not done, until the new attempt writes its result (so
    ``--wait``, the job's ``done`` state and ``final`` verdicts wait for it). It keeps its
    reason and attempts meanwhile; the new attempt adds to them (``schema.rules``).
    """
    results.add_scans(session, job_id, rows)
    keys = [r["object_key"] for r in rows]
    changed = _changed(session, job_id, rows)
    if rescore:
        _reopen(session, job_id, changed, set())
        return keys
    pending: set[str] = {listed.key for listed in changed.values()}
    retry: set[int] = set()
    for part in results.chunks(keys):
        query = (
            select(Scan.id, Scan.object_key, Failure.id, Failure.retrying)
            .outerjoin(Prediction, Prediction.scan_id == Scan.id)
            .outerjoin(Failure, Failure.scan_id == Scan.id)
            .where(Scan.job_id == job_id, Scan.object_key.in_(part), Prediction.id.is_(None))
            .where(or_(Failure.id.is_(None), Failure.reason.in_(RETRYABLE_REASONS)))
        )
        for sid, key, failure, retrying in session.execute(query):
            pending.add(key)
            if failure is not None and not retrying and sid not in changed:
                retry.add(sid)
    _reopen(session, job_id, changed, retry)
    order = {k: i for i, k in enumerate(keys)}
    return sorted(pending, key=order.__getitem__)


class Listed(NamedTuple):
    """What the listing says of a scan's object now."""

    key: str
    etag: str | None
    size: int | None


def _changed(
    session: Session, job_id: uuid.UUID, rows: Sequence[dict[str, Any]]
) -> dict[int, Listed]:
    """Scans of ``rows`` whose listed ETag or size differs from the stored one (id -> the
    listing's key, ETag and size; ``_reopen`` stores them under its locks). Rows the listing
    gives no ETag and no size for (a manifest) are never taken as changed. Reads only: an
    update here would lock scans outside the commit's lock order."""
    listed = {
        r["object_key"]: (r.get("etag"), r.get("size"))
        for r in rows
        if r.get("etag") is not None or r.get("size") is not None
    }
    changed: dict[int, Listed] = {}
    for part in results.chunks(list(listed)):
        query = select(Scan.id, Scan.object_key, Scan.etag, Scan.size).where(
            Scan.job_id == job_id, Scan.object_key.in_(part)
        )
        for sid, key, etag, size in session.execute(query):
            new_etag, new_size = listed[key]
            if (new_etag is not None and etag is not None and new_etag != etag) or (
                new_size is not None and size is not None and new_size != size
            ):
                changed[sid] = Listed(key, new_etag, new_size)
    return changed


def _reopen(
    session: Session, job_id: uuid.UUID, changed: dict[int, Listed], retry: set[int]
) -> None:
    """Make scans pending again in the job's current pass: ``changed`` ones take the listing's
    ETag and size and lose their results, ``retry`` ones have their (retryable) failure marked
    ``retrying``; ``pass_done`` drops by those that counted as done, and the job's verdicts are
    provisional again.

    Studies, then the scans in id order, are locked before anything is counted, and the job row
    is written last: the lock order of a worker's commit, so a resume and a batch committing the
    same scans cannot deadlock."""
    ids = sorted({*changed, *retry})
    if not ids:
        return
    series.reopen(session, job_id)  # finalise makes them final again once the job is complete
    for part in results.chunks(ids):
        session.execute(
            select(Scan.id).where(Scan.id.in_(part)).order_by(Scan.id).with_for_update()
        ).all()
    for sid in sorted(changed):
        listed = changed[sid]
        session.execute(
            update(Scan).where(Scan.id == sid).values(etag=listed.etag, size=listed.size)
        )
    current = session.scalar(select(Job.pass_number).where(Job.id == job_id)) or 1
    done = 0
    for part in results.chunks(sorted(changed)):
        done += (
            session.scalar(
                select(func.count())
                .select_from(Scan)
                .where(Scan.id.in_(part), results.has_result_of_pass(current))
            )
            or 0
        )
        session.execute(delete(Prediction).where(Prediction.scan_id.in_(part)))
        session.execute(delete(Failure).where(Failure.scan_id.in_(part)))
    for part in results.chunks(sorted(retry)):
        # Read again under the locks: a batch may have written these scans since they were
        # selected (a prediction now, or a permanent failure), and only what is still a
        # retryable failure goes back to pending.
        waiting = and_(
            Failure.scan_id.in_(part), Failure.reason.in_(RETRYABLE_REASONS), results.SETTLED
        )
        done += (
            session.scalar(select(func.count()).where(waiting, Failure.pass_number >= current)) or 0
        )
        session.execute(update(Failure).where(waiting).values(retrying=True))
    if done:  # they are pending again in this pass
        session.execute(update(Job).where(Job.id == job_id).values(pass_done=Job.pass_done - done))


def start_pass(session: Session, job: Job) -> int:
    """Begin a new pass of ``job`` (``--rescore``): every result written from now on carries it,
    and results of earlier passes still in flight can no longer overwrite them."""
    # The series rows before the job row: the lock order of a worker's commit (studies, scans,
    # series, job), so a rescore started while batches commit cannot deadlock with them.
    series.reopen(session, job.id)
    job.pass_number = (job.pass_number or 1) + 1
    job.pass_done = 0
    session.flush()
    return job.pass_number


def mark_running(session: Session, job: Job) -> None:
    job.state = "running"
    job.total_objects = 0  # a listing runs: no verdict is final before it ends
    job.finished_at = None
    job.started_at = job.started_at or utcnow()


def delete_jobs(session: Session, names: Sequence[str]) -> list[uuid.UUID]:
    """Delete the jobs called ``names`` with all their rows (they cascade); returns their ids."""
    ids = list(session.scalars(select(Job.id).where(Job.name.in_(names))))
    session.execute(delete(Job).where(Job.name.in_(names)))
    return ids
