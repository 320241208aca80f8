"""simsearch's write side: the bulk indexing pipeline."""

from .pipeline import RunSummary, run

__all__ = ["RunSummary", "run"]
