"""An index on images.size: a run looks up the indexed files of each new file's size, to take the
features of identical bytes (a folder moved, a file copied) instead of decoding again.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_images_size", "images", ["size"])


def downgrade() -> None:
    op.drop_index("ix_images_size", table_name="images")
