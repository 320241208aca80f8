"""simsearch: image similarity and duplicate search with a persistent index."""

from .errors import (
    DiskFull,
    ImageError,
    IndexBusy,
    IndexNotFound,
    IndexTooNew,
    InvalidArgument,
    SimsearchError,
)

_LAZY = {"Index": "index", "open_index": "index", "ImageRecord": "reads", "Match": "queries",
         "Member": "clusterings"}


def __getattr__(name: str):
    """The index API loads on first use (NumPy, SQLAlchemy), so ``import simsearch`` stays light."""
    if name in _LAZY:
        from importlib import import_module  # noqa: PLC0415

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'simsearch' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "DiskFull",
    "ImageError",
    "ImageRecord",
    "Index",
    "IndexBusy",
    "IndexNotFound",
    "IndexTooNew",
    "InvalidArgument",
    "Match",
    "Member",
    "SimsearchError",
    "open_index",
]
