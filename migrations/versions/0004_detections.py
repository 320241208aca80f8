"""Detections: objects found by taggers, and which images each tagger has looked at.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "detections",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id"), nullable=False),
        sa.Column("tagger", sa.String(64), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False),
        sa.Column("y2", sa.Float(), nullable=False),
    )
    op.create_index("ix_detections_label", "detections", ["tagger", "label"])
    op.create_index("ix_detections_image", "detections", ["image_id"])
    op.create_table(
        "tagged",
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id"), primary_key=True),
        sa.Column("tagger", sa.String(64), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("tagged")
    op.drop_index("ix_detections_image", "detections")
    op.drop_index("ix_detections_label", "detections")
    op.drop_table("detections")
