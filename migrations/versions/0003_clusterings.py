"""Clusterings: k-medoids runs and their members.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clusterings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("by", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128)),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("scheme", sa.String(16), nullable=False),
        sa.Column("loss", sa.Float(), nullable=False),
        sa.Column("silhouette", sa.Float()),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "cluster_members",
        sa.Column("clustering_id", sa.Integer(), sa.ForeignKey("clusterings.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id"), primary_key=True),
        sa.Column("cluster", sa.Integer(), nullable=False),
        sa.Column("distance", sa.Float(), nullable=False),
        sa.Column("is_medoid", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_cluster_members_cluster", "cluster_members", ["clustering_id", "cluster"])


def downgrade() -> None:
    op.drop_index("ix_cluster_members_cluster", "cluster_members")
    op.drop_table("cluster_members")
    op.drop_table("clusterings")
