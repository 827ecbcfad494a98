"""passes, the failure vocabulary of round 2, attempt keys, flags, database timestamps

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 23:00:00

- jobs.pass_number, predictions.pass_number, failures.pass_number (existing rows: pass 1).
- failures.reason gains bad_key, poison, gave_up and config; existing ``internal`` rows are
  re-labelled by what their message says they were: a worker killed N times -> poison,
  retries exhausted -> gave_up, a decoder exception -> unreadable; the rest stay internal.
- failures.attempt_key (which task recorded the failure), predictions.flags (decode notes).
- created_at / updated_at of predictions and failures default to the database's clock.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_REASONS = ("missing", "empty", "unreadable", "unsupported", "too_large", "not_ct", "internal")
NEW_REASONS = (
    "missing",
    "empty",
    "unreadable",
    "unsupported",
    "too_large",
    "not_ct",
    "bad_key",
    "poison",
    "gave_up",
    "config",
    "internal",
)
# (new reason, how the round-1 worker worded the message of such an ``internal`` row)
RELABEL = (
    ("poison", "scoring this image killed the worker process%"),
    ("gave_up", "gave up after %"),
    ("unreadable", "decoder failed: %"),
)


def _in(values: Sequence[str]) -> str:
    return "reason IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _timestamps(batch_op: object, server_default: object) -> None:
    for column in ("created_at", "updated_at"):
        batch_op.alter_column(  # type: ignore[attr-defined]
            column,
            existing_type=sa.DateTime(timezone=True),
            existing_nullable=False,
            server_default=server_default,
        )


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(
            sa.Column("pass_number", sa.Integer(), server_default="1", nullable=False)
        )
    with op.batch_alter_table("predictions") as batch_op:
        batch_op.add_column(
            sa.Column("pass_number", sa.Integer(), server_default="1", nullable=False)
        )
        batch_op.add_column(sa.Column("flags", sa.JSON(), nullable=True))
        _timestamps(batch_op, sa.func.now())
    with op.batch_alter_table("failures") as batch_op:
        batch_op.drop_constraint(op.f("ck_failures_reason"), type_="check")
        batch_op.add_column(
            sa.Column("pass_number", sa.Integer(), server_default="1", nullable=False)
        )
        batch_op.add_column(sa.Column("attempt_key", sa.String(length=64), nullable=True))
        _timestamps(batch_op, sa.func.now())
    with op.batch_alter_table("failures") as batch_op:
        batch_op.create_check_constraint(op.f("ck_failures_reason"), _in(NEW_REASONS))
    failures = sa.table("failures", sa.column("reason", sa.String), sa.column("message", sa.Text))
    for reason, pattern in RELABEL:
        op.execute(
            failures.update()
            .where(failures.c.reason == "internal", failures.c.message.like(pattern))
            .values(reason=reason)
        )


def downgrade() -> None:
    failures = sa.table("failures", sa.column("reason", sa.String))
    # Round 1 knew one word for everything that was not bad input.
    op.execute(
        failures.update()
        .where(failures.c.reason.in_(("bad_key", "poison", "gave_up", "config")))
        .values(reason="internal")
    )
    with op.batch_alter_table("failures") as batch_op:
        batch_op.drop_constraint(op.f("ck_failures_reason"), type_="check")
        batch_op.drop_column("attempt_key")
        batch_op.drop_column("pass_number")
        _timestamps(batch_op, None)
    with op.batch_alter_table("failures") as batch_op:
        batch_op.create_check_constraint(op.f("ck_failures_reason"), _in(OLD_REASONS))
    with op.batch_alter_table("predictions") as batch_op:
        batch_op.drop_column("flags")
        batch_op.drop_column("pass_number")
        _timestamps(batch_op, None)
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("pass_number")
