"""Exceptions raised by simsearch. Each message says how to fix the problem."""


class SimsearchError(Exception):
    """Base class of every error simsearch raises on purpose. ``cli_message``: the same message in
    command-line terms where the fix is an option (``--weights PATH`` rather than ``weights=PATH``)."""

    cli_message: str | None = None

    @classmethod
    def hinted(cls, template: str, api: str, cli: str, *args, **kwargs) -> "SimsearchError":
        """An error whose message names the fix ``api`` in Python, and ``cli`` on the command line:
        ``template`` holds one ``{}`` for it; ``args`` come first (``ImageError``'s kind), ``kwargs`` last."""
        error = cls(*args, template.format(api), **kwargs)
        error.cli_message = template.format(cli)
        return error


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
    """An image could not be read or decoded. ``kind`` classifies the failure; ``size`` is (width, height)
    where the header was read (an image refused as too large)."""

    def __init__(self, kind: str, message: str, size: tuple[int, int] | None = None):
        super().__init__(message)
        self.kind = kind
        self.size = size


class WeightsNotFound(SimsearchError):
    """A model's pretrained weights are not on this machine."""


class SimsearchWarning(UserWarning):
    """Something a result depends on that the user should know of (the command line prints it as a note)."""
