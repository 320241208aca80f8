"""Initial schema: meta, roots, images with perceptual hashes, failures.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "roots",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("path_raw", sa.LargeBinary(), nullable=False, unique=True),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("root_id", sa.Integer(), sa.ForeignKey("roots.id"), nullable=False),
        sa.Column("relpath", sa.Text(), nullable=False),
        sa.Column("relpath_raw", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("pixel_digest", sa.String(64)),
        sa.Column("width", sa.Integer()),
        sa.Column("height", sa.Integer()),
        sa.Column("format", sa.String(16)),
        sa.Column("mode", sa.String(16)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("phash", sa.BigInteger()),
        sa.Column("dhash", sa.BigInteger()),
        sa.Column("whash", sa.BigInteger()),
        sa.Column("ahash", sa.BigInteger()),
        sa.Column("indexed_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("root_id", "relpath_raw", name="uq_images_root_path"),
    )
    op.create_index("ix_images_status", "images", ["status"])
    op.create_index("ix_images_sha256", "images", ["sha256"])
    op.create_index("ix_images_pixel_digest", "images", ["pixel_digest"])
    op.create_table(
        "failures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("root_id", sa.Integer(), sa.ForeignKey("roots.id"), nullable=False),
        sa.Column("relpath", sa.Text(), nullable=False),
        sa.Column("relpath_raw", sa.LargeBinary(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("root_id", "relpath_raw", name="uq_failures_root_path"),
    )


def downgrade() -> None:
    op.drop_table("failures")
    op.drop_table("images")
    op.drop_table("roots")
    op.drop_table("meta")
