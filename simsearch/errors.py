"""Exceptions raised by simsearch. Each message says how to fix the problem."""


class SimsearchError(Exception):
    """Base class of every error simsearch raises on purpose."""


class InvalidArgument(SimsearchError, ValueError):
    """An argument is out of range or of the wrong kind."""


class IndexNotFound(SimsearchError):
    """No index exists at the given location."""


class IndexTooNew(SimsearchError):
    """The index was written by a newer simsearch than this one."""


class DiskFull(SimsearchError):
    """The disk holding the index (or a file being written) is full."""


class IndexBusy(SimsearchError):
    """Another process is writing the index."""


class ImageError(SimsearchError):
    """An image could not be read or decoded. ``kind`` classifies the failure."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class WeightsNotFound(SimsearchError):
    """A model's pretrained weights are not on this machine."""
