"""series and studies with their verdicts; one object holds many images (NIfTI volumes)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 08:00:00

``studies`` and ``series`` are new. ``predictions`` gains the image's index in its object
(``slice_index``, 0 for every existing row: round 1 scored one image per object), its series,
z and InstanceNumber, and the slice network's logit and evidence vector; its unique key moves
from ``scan_id`` to ``(scan_id, slice_index)``. Existing rows are kept as they are, with no
series (their objects were scored before series were read); ``scans`` gains the series
pseudonym a manifest's series column gives an object, and ``jobs`` the count of objects done in
the current pass: ``hemoscan scan JOB --rescore``
gives them one. Downgrade: the rows of a volume's other slices (``slice_index`` > 0) are
deleted, since the older schema holds one prediction per object, then the columns and tables go.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STATE = "state IN ('provisional', 'final')"


def _id() -> sa.Column:
    return sa.Column("id", BIG_ID, autoincrement=True, nullable=False)


def _job(table: str) -> list:
    return [
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f(f"fk_{table}_job_id_jobs"), ondelete="CASCADE"
        ),
    ]


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(
            sa.Column("pass_done", sa.BigInteger(), server_default="0", nullable=False)
        )
    # Existing jobs start with their true count, objects with a result of the current pass: a
    # rerun that adds objects then reaches the listing's total (schema.series.finalise).
    op.execute(
        "UPDATE jobs SET pass_done = (SELECT count(*) FROM scans WHERE scans.job_id = jobs.id "
        "AND (EXISTS (SELECT 1 FROM predictions p WHERE p.scan_id = scans.id "
        "AND p.pass_number >= jobs.pass_number) OR EXISTS (SELECT 1 FROM failures f "
        "WHERE f.scan_id = scans.id AND f.pass_number >= jobs.pass_number)))"
    )
    with op.batch_alter_table("scans") as batch_op:
        batch_op.add_column(sa.Column("series_key", sa.String(length=64), nullable=True))
    op.create_table(
        "studies",
        _id(),
        *_job("studies"),
        sa.Column("study_key", sa.String(length=64), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("label", sa.Boolean(), nullable=True),
        sa.Column("series_count", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(STATE, name=op.f("ck_studies_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("job_id", "study_key", name=op.f("uq_studies_job_id_study_key")),
    )
    op.create_table(
        "series",
        _id(),
        *_job("series"),
        sa.Column("study_id", BIG_ID, nullable=False),
        sa.Column("series_key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("label", sa.Boolean(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("max_slice_probability", sa.Float(), nullable=True),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("slice_count", sa.Integer(), nullable=False),
        sa.Column("positive_slices", sa.Integer(), nullable=False),
        sa.Column("key_slices", sa.JSON(), nullable=False),
        sa.Column("key_z_min", sa.Float(), nullable=True),
        sa.Column("key_z_max", sa.Float(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(STATE, name=op.f("ck_series_state")),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_series_study_id_studies"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint("job_id", "series_key", name=op.f("uq_series_job_id_series_key")),
    )
    op.create_index("ix_series_job_probability", "series", ["job_id", "probability"])
    op.create_index(op.f("ix_series_study_id"), "series", ["study_id"])
    with op.batch_alter_table("predictions") as batch_op:
        batch_op.add_column(
            sa.Column("slice_index", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("series_id", BIG_ID, nullable=True))
        batch_op.add_column(sa.Column("z_mm", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("instance_number", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("logit", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("embedding", sa.LargeBinary(), nullable=True))
        batch_op.drop_constraint(op.f("uq_predictions_scan_id"), type_="unique")
        batch_op.create_unique_constraint(
            op.f("uq_predictions_scan_id_slice_index"), ["scan_id", "slice_index"]
        )
        batch_op.create_foreign_key(
            op.f("fk_predictions_series_id_series"), "series", ["series_id"], ["id"],
            ondelete="SET NULL",
        )  # fmt: skip
        batch_op.create_index(op.f("ix_predictions_series_id"), ["series_id"])


def downgrade() -> None:
    predictions = sa.table("predictions", sa.column("slice_index", sa.Integer))
    op.execute(predictions.delete().where(predictions.c.slice_index > 0))
    with op.batch_alter_table("predictions") as batch_op:
        batch_op.drop_index(op.f("ix_predictions_series_id"))
        batch_op.drop_constraint(op.f("fk_predictions_series_id_series"), type_="foreignkey")
        batch_op.drop_constraint(op.f("uq_predictions_scan_id_slice_index"), type_="unique")
        batch_op.create_unique_constraint(op.f("uq_predictions_scan_id"), ["scan_id"])
        for column in ("embedding", "logit", "instance_number", "z_mm", "series_id"):
            batch_op.drop_column(column)
        batch_op.drop_column("slice_index")
    op.drop_index(op.f("ix_series_study_id"), table_name="series")
    op.drop_index("ix_series_job_probability", table_name="series")
    op.drop_table("series")
    op.drop_table("studies")
    with op.batch_alter_table("scans") as batch_op:
        batch_op.drop_column("series_key")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("pass_done")
