"""Embeddings: embedder specs, one vector per image and embedder, and the pHash of
each image's rotations and flips.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("phash_dihedral", sa.LargeBinary()))
    op.create_table(
        "embedders",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "embeddings",
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id"), primary_key=True),
        sa.Column("model", sa.String(128), sa.ForeignKey("embedders.name"), primary_key=True),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_embeddings_model", "embeddings", ["model"])


def downgrade() -> None:
    op.drop_index("ix_embeddings_model", "embeddings")
    op.drop_table("embeddings")
    op.drop_table("embedders")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("phash_dihedral")
