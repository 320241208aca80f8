"""simsearch's write side: the bulk indexing pipeline (and tagging an existing index with it)."""

__all__ = ["RunSummary", "run", "tag_indexed"]


def __getattr__(name: str):
    # the pipeline, and SQLAlchemy with it, loads on first use: worker processes and Ray actors, which import
    # this package to reach the per-file stage, need neither (0.4 s of a Ray actor's start)
    if name in __all__:
        from . import pipeline  # noqa: PLC0415

        globals()[name] = value = getattr(pipeline, name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
