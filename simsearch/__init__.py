"""simsearch: image similarity and duplicate search with a persistent index."""

from .errors import ImageError, IndexNotFound, IndexTooNew, InvalidArgument, SimsearchError
from .clusterings import Member
from .index import Index, open_index
from .queries import Match
from .reads import ImageRecord

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
