"""SQLAlchemy models of the index database. Alembic migrations in
``migrations/`` create and upgrade them; keep the two in step."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .names import FAILED, HASH_METHODS, OK, REMOVED  # noqa: F401 - re-exported


class Base(DeclarativeBase):
    # the migrations' type for Python floats (SQLAlchemy's own default is Double): a new index made from
    # these models has exactly the schema the migrations build (tests/test_schema.py)
    type_annotation_map = {float: Float}


class Meta(Base):
    """Key-value settings of the index (decode mode, data version, ...)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Root(Base):
    """A folder given to ``simsearch index``; image paths are relative to it."""

    __tablename__ = "roots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text)  # for display (undecodable bytes escaped)
    path_raw: Mapped[bytes] = mapped_column(LargeBinary, unique=True)  # os.fsencode


class Image(Base):
    """One file seen under a root: decoded (ok), undecodable (failed) or gone (removed)."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("root_id", "relpath_raw", name="uq_images_root_path"),
        Index("ix_images_status", "status"),
        Index("ix_images_sha256", "sha256"),
        Index("ix_images_pixel_digest", "pixel_digest"),
        Index("ix_images_size", "size"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("roots.id"))
    relpath: Mapped[str] = mapped_column(Text)
    relpath_raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    pixel_digest: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16))
    mode: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    # perceptual hashes: 64-bit, stored as signed integers
    phash: Mapped[int | None] = mapped_column(BigInteger)
    dhash: Mapped[int | None] = mapped_column(BigInteger)
    whash: Mapped[int | None] = mapped_column(BigInteger)
    ahash: Mapped[int | None] = mapped_column(BigInteger)
    indexed_at: Mapped[float] = mapped_column()
    # pHash of the 8 rotations and flips (see hashing.DIHEDRAL), 8 x 8 bytes little-endian (added last)
    phash_dihedral: Mapped[bytes | None] = mapped_column(LargeBinary)
    # the picture's size without uniform margins (a frame, letterbox: see simsearch.margins), in pixels
    picture_width: Mapped[int | None] = mapped_column(Integer)
    picture_height: Mapped[int | None] = mapped_column(Integer)


class Failure(Base):
    """The latest failure for a path: an undecodable file or an unreadable entry."""

    __tablename__ = "failures"
    __table_args__ = (UniqueConstraint("root_id", "relpath_raw", name="uq_failures_root_path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("roots.id"))
    relpath: Mapped[str] = mapped_column(Text)
    relpath_raw: Mapped[bytes] = mapped_column(LargeBinary)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[float] = mapped_column()


class Embedder(Base):
    """The spec (JSON) of each embedder whose vectors the index holds, fixed when first used,
    so that queries are encoded the way the index was."""

    __tablename__ = "embedders"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    spec: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column()


class Embedding(Base):
    """One image's L2-normalised embedding by one embedder: float32 little-endian bytes.
    The source of truth; FAISS vector indexes are derived from these rows."""

    __table_args__ = (Index("ix_embeddings_model", "model"),)
    __tablename__ = "embeddings"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    model: Mapped[str] = mapped_column(ForeignKey("embedders.name"), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class ClusteringRun(Base):
    """One k-medoids run: its name, what it clustered, how, and its settings (JSON)."""

    __tablename__ = "clusterings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    by: Mapped[str] = mapped_column(String(32))  # embedding or a hash method
    model: Mapped[str | None] = mapped_column(String(128))  # the embedder, for by=embedding
    k: Mapped[int] = mapped_column(Integer)
    scheme: Mapped[str] = mapped_column(String(16))  # exact or clara
    loss: Mapped[float] = mapped_column()
    silhouette: Mapped[float | None] = mapped_column()
    params: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column()


class ClusterMember(Base):
    """An image's cluster in a run, its distance to the cluster's medoid, and whether it is the medoid."""

    __tablename__ = "cluster_members"
    __table_args__ = (Index("ix_cluster_members_cluster", "clustering_id", "cluster"),)
    clustering_id: Mapped[int] = mapped_column(ForeignKey("clusterings.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    cluster: Mapped[int] = mapped_column(Integer)
    distance: Mapped[float] = mapped_column()
    is_medoid: Mapped[bool] = mapped_column()


class Detection(Base):
    """An object a tagger found in an image: label, score and box (x1, y1, x2, y2 normalised to 0-1)."""

    __tablename__ = "detections"
    __table_args__ = (Index("ix_detections_label", "tagger", "label"), Index("ix_detections_image", "image_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    tagger: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column()
    x1: Mapped[float] = mapped_column()
    y1: Mapped[float] = mapped_column()
    x2: Mapped[float] = mapped_column()
    y2: Mapped[float] = mapped_column()


class Tagged(Base):
    """That a tagger has looked at an image (so an image where it found nothing is not tagged again)."""

    __tablename__ = "tagged"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), primary_key=True)
    tagger: Mapped[str] = mapped_column(String(64), primary_key=True)


class Tagger(Base):
    """A tagger that wrote into the index: its spec with the weights' SHA-256 (JSON)."""

    __tablename__ = "taggers"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column()
