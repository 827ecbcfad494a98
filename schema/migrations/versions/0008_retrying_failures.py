"""a retryable failure that a resume has sent again is pending, not done

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 18:20:00

``failures`` gains ``retrying``: a resume (``hemoscan scan`` again on a job) sends the keys whose
failure a rerun may fix (``RETRYABLE_REASONS``) again and marks their failure rows ``retrying``;
until the new attempt writes its result, such a row counts neither as failed nor as done, so
``--wait``, the job's ``done`` state and the verdicts' ``final`` state wait for it. The row keeps
its reason, message and attempts (the new attempt adds to them). Existing rows are not
retrying. Downgrade drops the column: retrying rows count as failures again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("failures") as batch_op:
        batch_op.add_column(
            sa.Column("retrying", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("failures") as batch_op:
        batch_op.drop_column("retrying")
