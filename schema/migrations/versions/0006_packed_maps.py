"""a scored image's raw map may be one entry of a task's packed maps object

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 16:00:00

``predictions`` gains ``raw_map_index``: where ``raw_map_uri`` is a packed ``.maps.npz`` (every
raw map of one task in one object, ``workers.pipeline``), the image's row in its ``maps``
array. Existing rows keep NULL: their ``raw_map_uri`` is a one-image ``.npy``, read as before.
Downgrade drops the column; the rows that pointed into a pack lose their map (the older code
would read the whole pack as one image's map), so their ``raw_map_uri`` is cleared.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch_op:
        batch_op.add_column(sa.Column("raw_map_index", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.execute("UPDATE predictions SET raw_map_uri = NULL WHERE raw_map_index IS NOT NULL")
    with op.batch_alter_table("predictions") as batch_op:
        batch_op.drop_column("raw_map_index")
