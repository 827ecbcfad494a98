"""predictions.writes: how many times each prediction row was written

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:40:00

1 for an image scored exactly once. Existing rows start at 1 (what round 1 wrote is unknown).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch_op:
        batch_op.add_column(sa.Column("writes", sa.Integer(), server_default="1", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch_op:
        batch_op.drop_column("writes")
