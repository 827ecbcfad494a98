"""SQLAlchemy 2.0 models: jobs, the objects they scan, and each object's prediction or failure.

A scan ends with exactly one of: a prediction row, or a failure row carrying a reason code.
Writes are idempotent upserts keyed by the scan (itself unique per job and object key), so a
batch delivered twice leaves the same rows. Works on PostgreSQL and SQLite.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Alembic naming convention: every constraint has a stable name, so migrations can drop it.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JOB_STATES = ("created", "running", "done", "cancelled")
FAILURE_REASONS = (
    "missing",
    "empty",
    "unreadable",
    "unsupported",
    "too_large",
    "not_ct",
    "internal",
)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
BigId = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Job(Base):
    """One screening run over a source (a bucket prefix, a folder or a manifest)."""

    __tablename__ = "jobs"
    __table_args__ = (CheckConstraint(f"state IN ({_in(JOB_STATES)})", name="state"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source_uri: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="created")
    model_version: Mapped[str | None] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    total_objects: Mapped[int] = mapped_column(BigInteger, default=0)
    scored_count: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    scans: Mapped[list[Scan]] = relationship(back_populates="job", passive_deletes=True)


class Scan(Base):
    """One object of a job. Unique per (job, object key): listing twice adds nothing."""

    __tablename__ = "scans"
    __table_args__ = (UniqueConstraint("job_id", "object_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    object_key: Mapped[str] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    etag: Mapped[str | None] = mapped_column(String(128))
    # Ground truth from a manifest's label column, when the user has it (for the report).
    true_label: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="scans")
    prediction: Mapped[Prediction | None] = relationship(back_populates="scan")
    failure: Mapped[Failure | None] = relationship(back_populates="scan")


class Prediction(Base):
    """The model's score for one scan (at most one per scan; re-scoring updates it)."""

    __tablename__ = "predictions"
    __table_args__ = (
        CheckConstraint("probability >= 0 AND probability <= 1", name="probability_range"),
        # "Positives of a job by probability": WHERE job_id = ? AND label ORDER BY probability DESC
        Index("ix_predictions_job_label_probability", "job_id", "label", "probability"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), unique=True)
    # Denormalised from the scan so progress and positives queries need no join.
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    probability: Mapped[float] = mapped_column(Float)
    label: Mapped[bool] = mapped_column(Boolean)
    threshold: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    overlay_uri: Mapped[str | None] = mapped_column(Text)
    raw_map_uri: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    worker_host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    scan: Mapped[Scan] = relationship(back_populates="prediction")


class Failure(Base):
    """Why a scan has no prediction (at most one per scan; ``attempts`` counts recurrences)."""

    __tablename__ = "failures"
    __table_args__ = (
        CheckConstraint(f"reason IN ({_in(FAILURE_REASONS)})", name="reason"),
        # "Progress of a job" and "failures by reason": WHERE job_id = ? GROUP BY reason
        Index("ix_failures_job_reason", "job_id", "reason"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), unique=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    scan: Mapped[Scan] = relationship(back_populates="failure")
