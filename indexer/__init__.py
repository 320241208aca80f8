"""simsearch's write side: the bulk indexing pipeline (and tagging an existing index with it)."""

from .pipeline import RunSummary, run, tag_indexed

__all__ = ["RunSummary", "run", "tag_indexed"]
