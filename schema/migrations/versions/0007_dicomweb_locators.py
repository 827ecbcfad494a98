"""a scan may carry the sealed locator of a DICOMweb instance

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 11:30:00

``scans`` gains ``locator``: for a job whose source is a DICOMweb service, the Study, Series
and SOP Instance UIDs a WADO-RS retrieval needs, encrypted and bound to the row's object key
(``hemoscan.privacy.seal_locator``). Other scans keep NULL. Downgrade drops the column: the
DICOMweb jobs' objects can no longer be retrieved (the older code cannot read such a source).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scans") as batch_op:
        batch_op.add_column(sa.Column("locator", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scans") as batch_op:
        batch_op.drop_column("locator")
