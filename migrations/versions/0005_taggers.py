"""Taggers: the spec (with the weights' SHA-256) of every tagger that wrote into the index;
YOLOv3-tiny's labels renamed from Darknet's spelling to COCO's.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DARKNET_TO_COCO = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
                   "pottedplant": "potted plant", "diningtable": "dining table", "tvmonitor": "tv"}


def upgrade() -> None:
    op.create_table(
        "taggers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    detections = sa.table("detections", sa.column("tagger", sa.String), sa.column("label", sa.String))
    for old, new in DARKNET_TO_COCO.items():
        op.execute(detections.update().where(detections.c.tagger == "yolov3-tiny", detections.c.label == old)
                   .values(label=new))


def downgrade() -> None:
    op.drop_table("taggers")
