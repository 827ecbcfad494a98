"""SQLAlchemy 2.0 models: jobs, the objects they scan, and each object's prediction or failure.

A scan ends with exactly one of: a prediction row, or a failure row carrying a reason code.
Writes are idempotent upserts keyed by the scan (itself unique per job and object key), so a
batch delivered twice leaves the same rows. Every result row carries the job's *pass* it was
computed in (``hemoscan scan --rescore`` starts a new pass), and ``schema.rules`` decides which
write wins. Row timestamps come from the database's clock, never a worker's. Works on
PostgreSQL and SQLite.
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
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    func,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.functions import FunctionElement

# Alembic naming convention: every constraint has a stable name, so migrations can drop it.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JOB_STATES = ("created", "running", "done", "cancelled")
# A series or study verdict is ``provisional`` while slices of its job are still pending, and
# ``final`` once every object of the job has its result (``schema.series``).
VERDICT_STATES = ("provisional", "final")
# Why an image has no prediction. Permanent reasons describe the input (or a key that can never
# be read) and are never retried; a rerun of the job (``hemoscan scan JOB``) resends only the
# retryable ones. README, "Reliability", has what each means and the test that shows it.
PERMANENT_REASONS = (
    "missing",  # the object no longer exists in the store
    "empty",  # zero bytes
    "unreadable",  # truncated, corrupt, inconsistent header, a decoder crashed on it
    "unsupported",  # a valid file hemoscan does not score (colour, multi-frame, unknown format)
    "too_large",  # over HEMOSCAN_MAX_OBJECT_BYTES or HEMOSCAN_MAX_PIXELS
    "not_ct",  # DICOM of another modality
    "not_head",  # CT, but not of a head (chest, abdomen, spine, a scout): hybrid_model.scope
    "bad_key",  # a key this store can never read (e.g. it escapes the source folder)
    "poison",  # killed its worker process HEMOSCAN_MAX_DELIVERIES times
)
RETRYABLE_REASONS = (
    "gave_up",  # transient errors (object store, database) outlasted HEMOSCAN_MAX_RETRIES
    "config",  # the store refused the job's configuration (e.g. no such bucket): fix, rerun
    "internal",  # a bug in hemoscan (the message names it): upgrade, rerun
)
FAILURE_REASONS = PERMANENT_REASONS + RETRYABLE_REASONS

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
BigId = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class db_now(FunctionElement[datetime]):  # noqa: N801 (reads like the SQL function it is)
    """The database's clock: ``now()`` on PostgreSQL (the transaction's start), and on SQLite
    ``strftime(... %f ...)``: milliseconds, where its ``CURRENT_TIMESTAMP`` has whole seconds.
    Result rows take their timestamps from here, never from a worker's clock."""

    type = DateTime(timezone=True)
    inherit_cache = True


@compiles(db_now)
def _db_now(element: db_now, compiler: Any, **kw: Any) -> str:
    return "now()"


@compiles(db_now, "sqlite")
def _db_now_sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    return "strftime('%Y-%m-%d %H:%M:%f', 'now')"


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
    # The objects of the job as of its last complete listing; 0 while a listing runs, so no
    # verdict is made final before the producer has registered every object.
    total_objects: Mapped[int] = mapped_column(BigInteger, default=0)
    scored_count: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Incremented by ``hemoscan scan --rescore``: rows of an older pass never overwrite newer.
    pass_number: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Objects with a result (prediction or failure) of the current pass, kept by the writers
    # in the transaction of their rows: ``pass_done >= total_objects`` is the O(1) test that
    # makes the job's series verdicts final (``schema.series.finalise``).
    pass_done: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
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
    # The series a manifest's series column names (or the image's own with scan --series-by
    # image), as its keyed pseudonym (objects that are neither DICOM with a SeriesInstanceUID
    # nor a volume are grouped by it, not by folder).
    series_key: Mapped[str | None] = mapped_column(String(64))
    # A DICOMweb source's instance: the UIDs its retrieval needs, sealed (AES-GCM under a key
    # derived from the pseudonym secret, bound to object_key: hemoscan.privacy.seal_locator).
    locator: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="scans")
    predictions: Mapped[list[Prediction]] = relationship(back_populates="scan")
    failure: Mapped[Failure | None] = relationship(back_populates="scan")


class Study(Base):
    """A study of a job (DICOM StudyInstanceUID as its keyed pseudonym; for a folder of PNGs
    or a NIfTI volume, the study of its one series) and its verdict over its series."""

    __tablename__ = "studies"
    __table_args__ = (
        UniqueConstraint("job_id", "study_key"),
        CheckConstraint(f"state IN ({_in(VERDICT_STATES)})", name="state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    study_key: Mapped[str] = mapped_column(String(64))  # a pseudonym: never a UID
    probability: Mapped[float | None] = mapped_column(Float)  # its most suspicious series'
    label: Mapped[bool | None] = mapped_column(Boolean)
    series_count: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="provisional")
    model_version: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Series(Base):
    """A series of a job and its verdict, recomputed from its slices' stored embeddings by
    every batch that commits slices of it (``schema.series``): idempotent and order-free."""

    __tablename__ = "series"
    __table_args__ = (
        UniqueConstraint("job_id", "series_key"),
        CheckConstraint(f"state IN ({_in(VERDICT_STATES)})", name="state"),
        # "Series of a job, most suspicious first"
        Index("ix_series_job_probability", "job_id", "probability"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_key: Mapped[str] = mapped_column(String(64))  # a pseudonym: never a UID
    # What makes it a series: "dicom" (SeriesInstanceUID), "volume" (one NIfTI object),
    # "manifest" (a manifest's series column), "image" (one image alone: scan --series-by
    # image), "folder" (the objects' folder).
    source: Mapped[str] = mapped_column(String(16))
    probability: Mapped[float | None] = mapped_column(Float)
    label: Mapped[bool | None] = mapped_column(Boolean)
    threshold: Mapped[float | None] = mapped_column(Float)
    # The baseline, side by side: the largest slice probability of the slice network alone.
    max_slice_probability: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str | None] = mapped_column(String(32))  # series_stage | max_of_slices
    slice_count: Mapped[int] = mapped_column(Integer, default=0)
    positive_slices: Mapped[int] = mapped_column(Integer, default=0)
    # The top slices by context-refined probability: prediction id, slice index, z, instance,
    # both probabilities; and the z range of the slices called positive (else of the top ones).
    key_slices: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    key_z_min: Mapped[float | None] = mapped_column(Float)
    key_z_max: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default="provisional")
    model_version: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Prediction(Base):
    """The model's score for one image of a scan: one row per slice (a DICOM or PNG object
    has one, slice 0; a NIfTI volume one per axial slice); re-scoring updates them."""

    __tablename__ = "predictions"
    __table_args__ = (
        CheckConstraint("probability >= 0 AND probability <= 1", name="probability_range"),
        UniqueConstraint("scan_id", "slice_index"),
        # "Positives of a job by probability": WHERE job_id = ? AND label ORDER BY probability DESC
        Index("ix_predictions_job_label_probability", "job_id", "label", "probability"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    # The image's index in its object (0 for a single-slice object; a volume's axial slices
    # count from the most inferior).
    slice_index: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    series_id: Mapped[int | None] = mapped_column(
        ForeignKey("series.id", ondelete="SET NULL"), index=True
    )
    # Position along the slice normal in mm (DICOM: ImagePositionPatient on the normal of
    # ImageOrientationPatient; NIfTI: the affine) and InstanceNumber: the series' z order.
    z_mm: Mapped[float | None] = mapped_column(Float)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    # The slice network's calibrated logit and evidence vector (float16 bytes): what the
    # series stage reads, so a series verdict is recomputed without the pixels.
    logit: Mapped[float | None] = mapped_column(Float)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Denormalised from the scan so progress and positives queries need no join.
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    probability: Mapped[float] = mapped_column(Float)
    label: Mapped[bool] = mapped_column(Boolean)
    threshold: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    overlay_uri: Mapped[str | None] = mapped_column(Text)
    raw_map_uri: Mapped[str | None] = mapped_column(Text)
    # Set when ``raw_map_uri`` is a task's packed maps (``.maps.npz``): the image's row in its
    # ``maps`` array. NULL: ``raw_map_uri`` is a one-image ``.npy`` (rows before 0006).
    raw_map_index: Mapped[int | None] = mapped_column(Integer)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    worker_host: Mapped[str | None] = mapped_column(String(255))
    # Decode notes a reader should know, e.g. ["no_rescale"] (hybrid_model.preprocess.Decoded).
    flags: Mapped[list[str] | None] = mapped_column(JSON, default=list)
    pass_number: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # How many times this row was written: 1 when each image was scored exactly once; a
    # redelivered batch that scored again, or a rescore, makes it larger (tests read it).
    writes: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    scan: Mapped[Scan] = relationship(back_populates="predictions")


class Failure(Base):
    """Why a scan has no prediction (at most one per scan); ``reason`` is in FAILURE_REASONS."""

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
    # Real attempts at this image in this pass: a redelivery of the same message is not one.
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    # The Celery task id that recorded it: a second record from the same task is the same
    # attempt delivered again (schema.rules).
    attempt_key: Mapped[str | None] = mapped_column(String(64))
    pass_number: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Sent again by a resume (a retryable reason): pending until the new attempt's result is
    # written, so it counts neither as failed nor as done (``schema.jobs.register_and_select``).
    retrying: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    scan: Mapped[Scan] = relationship(back_populates="failure")
