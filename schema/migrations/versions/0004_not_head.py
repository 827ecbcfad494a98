"""failures.reason gains not_head (CT, but not of a head: the out-of-scope gate)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:00:00

The CHECK constraint is dropped and created again in batch mode (SQLite cannot alter a
constraint; the batch recreates the table), as 0002 did. Downgrade: ``not_head`` rows become
``unsupported`` ("a valid file hemoscan does not score", permanent like not_head), the reason
the vocabulary before 0004 has for such a file.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_REASONS = (
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
NEW_REASONS = OLD_REASONS[:6] + ("not_head",) + OLD_REASONS[6:]


def _in(values: Sequence[str]) -> str:
    return "reason IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _constraint(reasons: Sequence[str]) -> None:
    with op.batch_alter_table("failures") as batch_op:
        batch_op.drop_constraint(op.f("ck_failures_reason"), type_="check")
    with op.batch_alter_table("failures") as batch_op:
        batch_op.create_check_constraint(op.f("ck_failures_reason"), _in(reasons))


def upgrade() -> None:
    _constraint(NEW_REASONS)


def downgrade() -> None:
    failures = sa.table("failures", sa.column("reason", sa.String))
    op.execute(
        failures.update().where(failures.c.reason == "not_head").values(reason="unsupported")
    )
    _constraint(OLD_REASONS)
