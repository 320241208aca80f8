"""The picture's size without uniform margins (a frame, a letterbox) or a turned picture's filled corners,
which the keeper of a duplicate group counts (simsearch.margins): rows indexed before it hold none, and the
next run decodes them again to fill it in.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("picture_width", sa.Integer()))
        batch.add_column(sa.Column("picture_height", sa.Integer()))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("picture_height")
        batch.drop_column("picture_width")
