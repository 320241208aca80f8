"""simsearch: image similarity and duplicate search with a persistent index."""

from .errors import ImageError, IndexNotFound, IndexTooNew, InvalidArgument, SimsearchError
from .index import Index, ImageRecord, Match, Member, open_index

__version__ = "0.1.0"

__all__ = [
    "ImageError",
    "ImageRecord",
    "Index",
    "IndexNotFound",
    "IndexTooNew",
    "InvalidArgument",
    "Match",
    "Member",
    "SimsearchError",
    "open_index",
]
