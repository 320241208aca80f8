"""simsearch: image similarity and duplicate search with a persistent index."""

from .errors import ImageError, IndexNotFound, IndexTooNew, InvalidArgument, SimsearchError
from .index import Index, ImageRecord, Match, open_index

__version__ = "0.1.0"

__all__ = [
    "ImageError",
    "ImageRecord",
    "Index",
    "IndexNotFound",
    "IndexTooNew",
    "InvalidArgument",
    "Match",
    "SimsearchError",
    "open_index",
]
