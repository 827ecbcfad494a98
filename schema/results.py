"""Bulk, idempotent writes and the progress queries, on PostgreSQL and SQLite alike.

Every write is an ``INSERT ... ON CONFLICT`` keyed by the scan (unique per job and object key),
so a batch delivered twice, or a job enqueued twice, leaves the same rows.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hemoscan.errors import ConfigurationError
from schema import rules
from schema.models import PERMANENT_REASONS, Failure, Job, Prediction, Scan, db_now, utcnow

# SQLite allows 32766 bound parameters per statement; stay far below on both databases.
_ROWS_PER_STATEMENT = 500


def chunks(values: Sequence[Any], size: int = _ROWS_PER_STATEMENT) -> Iterator[Sequence[Any]]:
    """``values`` in slices of at most ``size``: one statement's worth of bound parameters."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _core(model: Any) -> Table:
    """The Core table of a mapped class (declarative types it as a plain FromClause)."""
    return cast(Table, model.__table__)


def _insert(session: Session, table: Table) -> postgresql.Insert | sqlite.Insert:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ConfigurationError(f"unsupported database: {dialect} (use PostgreSQL or SQLite)")


def add_scans(session: Session, job_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Insert scan rows (``object_key``, ``size``, ``etag``, ``true_label``, ``series_key``,
    ``locator``); existing ones stay.

    Returns the keys that were new (inserted now), in no particular order. On PostgreSQL the
    rows travel by ``COPY`` (bench/README.md: producer), elsewhere as an executemany.
    """
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return _add_scans_copy(session, job_id, rows)
    return add_scans_executemany(session, job_id, rows)


def add_scans_executemany(
    session: Session, job_id: uuid.UUID, rows: Sequence[dict[str, Any]]
) -> list[str]:
    """``add_scans`` as one INSERT ... ON CONFLICT DO NOTHING RETURNING with a parameter list."""
    now = utcnow()
    values = [
        {
            "job_id": job_id,
            "object_key": r["object_key"],
            "size": r.get("size"),
            "etag": r.get("etag"),
            "true_label": r.get("true_label"),
            "series_key": r.get("series_key"),
            "locator": r.get("locator"),
            "created_at": now,
        }
        for r in rows
    ]
    # One statement with a parameter list and RETURNING: SQLAlchemy compiles it once (cached)
    # and sends it as multi-row VALUES pages ("insertmanyvalues"). Building ``.values(rows)``
    # compiled a fresh statement with a bind parameter per cell every time, and a parameter
    # list without RETURNING is a round trip per row on psycopg2 (bench/README.md).
    stmt = _insert(session, _core(Scan)).on_conflict_do_nothing(
        index_elements=["job_id", "object_key"]
    )
    return list(session.scalars(stmt.returning(Scan.object_key), values))


# COPY's text format: a backslash, tab, newline or carriage return inside a value is escaped;
# NULL is \N (PostgreSQL docs, "COPY", File Formats).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value).translate(_COPY_ESCAPES)


def _add_scans_copy(
    session: Session, job_id: uuid.UUID, rows: Sequence[dict[str, Any]]
) -> list[str]:
    """``add_scans`` on PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT.

    COPY streams the chunk as tab-separated text that the server parses in C; the executemany
    builds and parses a multi-row VALUES statement per page. Same rows, same conflict rule.
    """
    text = "".join(
        f"{_copy_field(r['object_key'])}\t{_copy_field(r.get('size'))}\t"
        f"{_copy_field(r.get('etag'))}\t{_copy_field(r.get('true_label'))}\t"
        f"{_copy_field(r.get('series_key'))}\t{_copy_field(r.get('locator'))}\n"
        for r in rows
    )
    scans = Scan.__tablename__
    cursor = session.connection().connection.cursor()
    try:
        # Session-local, emptied at commit; it outlives a transaction only on its connection.
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS hemoscan_scan_load "
            "(object_key text, size bigint, etag text, true_label integer, series_key text, "
            "locator text) "
            "ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE hemoscan_scan_load")  # an earlier call in this transaction
        cursor.copy_expert(
            "COPY hemoscan_scan_load (object_key, size, etag, true_label, series_key, locator) "
            "FROM STDIN",
            io.StringIO(text),
        )
        cursor.execute(
            f"INSERT INTO {scans} (job_id, object_key, size, etag, true_label, series_key, "
            "locator, created_at) "
            "SELECT %s, object_key, size, etag, true_label, series_key, locator, %s "
            "FROM hemoscan_scan_load "
            "ON CONFLICT (job_id, object_key) DO NOTHING RETURNING object_key",
            (str(job_id), utcnow()),
        )
        return [key for (key,) in cursor.fetchall()]
    finally:
        cursor.close()


def _scan_values(
    session: Session, job_id: uuid.UUID, keys: Sequence[str], column
) -> dict[str, str]:  # type: ignore[no-untyped-def]
    found: dict[str, str] = {}
    for part in chunks(keys):
        query = select(Scan.object_key, column).where(
            Scan.job_id == job_id, Scan.object_key.in_(part), column.is_not(None)
        )
        found.update({key: str(value) for key, value in session.execute(query)})
    return found


def series_hints(session: Session, job_id: uuid.UUID, keys: Sequence[str]) -> dict[str, str]:
    """Object key -> the series pseudonym a manifest gave it (keys without one are left out)."""
    return _scan_values(session, job_id, keys, Scan.series_key)


def locators(session: Session, job_id: uuid.UUID, keys: Sequence[str]) -> dict[str, str]:
    """Object key -> its sealed DICOMweb locator (``hemoscan.dicomweb``; keys without one are
    left out)."""
    return _scan_values(session, job_id, keys, Scan.locator)


def scan_ids(session: Session, job_id: uuid.UUID, keys: Sequence[str]) -> dict[str, int]:
    """Map object keys of a job to their scan ids."""
    found: dict[str, int] = {}
    for part in chunks(keys):
        query = select(Scan.object_key, Scan.id).where(
            Scan.job_id == job_id, Scan.object_key.in_(part)
        )
        found.update({key: sid for key, sid in session.execute(query)})
    return found


def _current_results(session: Session, scan_ids: Sequence[int]) -> dict[int, rules.Existing]:
    """What each scan holds now, read after a row lock on its scan (``FOR UPDATE``).

    The lock, taken in id order so two batches never deadlock, makes "read, decide, write" of
    two workers writing the same scan at once happen one after the other. The results are read
    by a statement of their own AFTER the locks are held: under READ COMMITTED a statement sees
    what committed before it began, so a locking SELECT that waited for another writer would
    return that writer's predictions and failures as they were before its commit (PostgreSQL
    re-reads only the locked rows). SQLite has no row locks (the clause is left out) and
    serialises writers on its own.
    """
    current: dict[int, rules.Existing] = {}
    ordered = sorted(set(scan_ids))
    for part in chunks(ordered):
        session.execute(
            select(Scan.id).where(Scan.id.in_(part)).order_by(Scan.id).with_for_update()
        ).all()
    for part in chunks(ordered):
        query = (
            select(
                Scan.id,
                Prediction.pass_number,
                Failure.pass_number,
                Failure.reason,
                Failure.attempts,
                Failure.attempt_key,
                Failure.retrying,
            )
            .outerjoin(Prediction, Prediction.scan_id == Scan.id)
            .outerjoin(Failure, Failure.scan_id == Scan.id)
            .where(Scan.id.in_(part))
        )
        for sid, p_pass, f_pass, reason, attempts, key, retrying in session.execute(query):
            current[sid] = rules.Existing(
                p_pass, f_pass, reason, attempts or 0, key, bool(retrying)
            )
    return current


def record_batch(
    session: Session,
    job_id: uuid.UUID,
    predictions: Sequence[dict[str, Any]],
    failures: Sequence[dict[str, Any]],
    pass_number: int = 1,
) -> rules.WritePlan:
    """Write the predictions and failures of one batch of ``pass_number`` (one transaction).

    A scan ends with a prediction or a failure, never both; which result wins follows
    ``schema.rules`` (a stale pass never overwrites a newer one, a failure never replaces a
    prediction of the same pass). ``updated_at`` is the database's clock. Returns the plan
    that was carried out (``stale`` counts the results not written).
    """
    ids = [r["scan_id"] for r in (*predictions, *failures)]
    plan = rules.plan_writes(pass_number, predictions, failures, _current_results(session, ids))
    if plan.predictions:
        rows = [{**p, "job_id": job_id} for p in plan.predictions]
        stmt = _insert(session, _core(Prediction)).values(created_at=db_now(), updated_at=db_now())
        updated: dict[str, Any] = {
            c: stmt.excluded[c] for c in rows[0] if c not in ("scan_id", "slice_index", "job_id")
        }
        updated["updated_at"] = db_now()
        updated["writes"] = _core(Prediction).c.writes + 1
        stmt = stmt.on_conflict_do_update(index_elements=["scan_id", "slice_index"], set_=updated)
        session.execute(stmt.returning(_core(Prediction).c.scan_id), rows)  # see add_scans
        scored = [p["scan_id"] for p in plan.predictions]
        session.execute(delete(Failure).where(Failure.scan_id.in_(scored)))
    if plan.failures:
        rows = [{**f, "job_id": job_id} for f in plan.failures]
        stmt = _insert(session, _core(Failure)).values(created_at=db_now(), updated_at=db_now())
        stmt = stmt.on_conflict_do_update(
            index_elements=["scan_id"],
            set_={
                "reason": stmt.excluded.reason,
                "message": stmt.excluded.message,
                "attempts": stmt.excluded.attempts,
                "attempt_key": stmt.excluded.attempt_key,
                "pass_number": stmt.excluded.pass_number,
                "retrying": False,
                "updated_at": db_now(),
            },
        )
        session.execute(stmt.returning(_core(Failure).c.scan_id), rows)  # see add_scans
        failed = [f["scan_id"] for f in plan.failures]
        session.execute(delete(Prediction).where(Prediction.scan_id.in_(failed)))
    return plan


def count_done(session: Session, job_id: uuid.UUID, pass_number: int, newly_done: int) -> None:
    """Add ``newly_done`` to the job's ``pass_done`` if ``pass_number`` is its current pass.

    Run as the LAST statement of a batch's transaction: it locks the job row, and every batch
    of the job passes through it, so the lock is held only until the commit."""
    if newly_done:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.pass_number == pass_number)
            .values(pass_done=Job.pass_done + newly_done)
        )


# A failure that counts (as failed, and as a result of its pass): not one a resume sent again,
# which is pending until its retry writes (``rules.is_done``, ``jobs.register_and_select``).
SETTLED = Failure.retrying.is_(False)


def has_result_of_pass(pass_number: int):  # type: ignore[no-untyped-def]
    """A condition on ``Scan``: it has a prediction or a failure of ``pass_number`` or newer
    (not a failure a resume sent again: ``rules.is_done``)."""
    return or_(
        select(Prediction.id)
        .where(Prediction.scan_id == Scan.id, Prediction.pass_number >= pass_number)
        .exists(),
        select(Failure.id)
        .where(
            Failure.scan_id == Scan.id,
            Failure.pass_number >= pass_number,
            SETTLED,
        )
        .exists(),
    )


def done_in_pass(
    session: Session, job_id: uuid.UUID, keys: Sequence[str], pass_number: int
) -> set[str]:
    """Keys of a job that already have a final result of ``pass_number`` (or newer).

    Final: a prediction, or a permanent failure. A batch delivered again skips these keys, so a
    redelivery costs no fetch and cannot disturb what is done.
    """
    done: set[str] = set()
    for part in chunks(keys):
        scored = (
            select(Scan.object_key)
            .join(Prediction, Prediction.scan_id == Scan.id)
            .where(Scan.job_id == job_id, Scan.object_key.in_(part))
            .where(Prediction.pass_number >= pass_number)
        )
        failed = (
            select(Scan.object_key)
            .join(Failure, Failure.scan_id == Scan.id)
            .where(Scan.job_id == job_id, Scan.object_key.in_(part))
            .where(Failure.pass_number >= pass_number, Failure.reason.in_(PERMANENT_REASONS))
        )
        done.update(session.scalars(scored.union_all(failed)))
    return done


def job_pass(session: Session, job_id: uuid.UUID) -> int:
    """The job's current pass (read fresh for every batch: ``--rescore`` changes it)."""
    value = session.scalar(select(Job.pass_number).where(Job.id == job_id))
    if value is None:
        raise LookupError(f"job {job_id} does not exist")
    return int(value)


@dataclass(frozen=True)
class Progress:
    total: int  # objects
    scored: int  # objects with a prediction
    failed: int  # objects with a failure
    positives: int  # images called positive

    @property
    def done(self) -> int:
        return self.scored + self.failed

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.done >= self.total


def progress(session: Session, job_id: uuid.UUID) -> Progress:
    """Counts for a job from the indexed tables (cheap enough to poll every second)."""
    total = session.scalar(select(func.count()).where(Scan.job_id == job_id)) or 0
    # Objects with a prediction (a volume has one per slice), and positive images.
    scored = (
        session.scalar(
            select(func.count(Prediction.scan_id.distinct())).where(Prediction.job_id == job_id)
        )
        or 0
    )
    positives = (
        session.scalar(
            select(func.count()).where(Prediction.job_id == job_id, Prediction.label.is_(True))
        )
        or 0
    )
    failed = session.scalar(select(func.count()).where(Failure.job_id == job_id, SETTLED)) or 0
    return Progress(total=total, scored=scored, failed=failed, positives=positives)


def failures_by_reason(session: Session, job_id: uuid.UUID) -> dict[str, int]:
    query = (
        select(Failure.reason, func.count())
        .where(Failure.job_id == job_id, SETTLED)
        .group_by(Failure.reason)
        .order_by(func.count().desc())
    )
    return {reason: count for reason, count in session.execute(query)}


def refresh_job(session: Session, job: Job) -> Progress:
    """Store the current counters on the job row and mark it done when every scan ended."""
    state = progress(session, job.id)
    job.total_objects, job.scored_count, job.failed_count = state.total, state.scored, state.failed
    if state.complete and job.state != "done":
        job.state = "done"
        job.finished_at = utcnow()
    return state
