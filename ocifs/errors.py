"""The one exception a program's errno comes from, and where it came from.

:class:`FsError` is a filesystem rule (ENOTEMPTY, EISDIR, ESTALE, a full staging disk);
:class:`ocifs.s3.errors.StoreError`, its subclass, a failed request to the store.  The FUSE
boundary (:mod:`ocifs.fuse.errors`) turns either into the errno the caller sees.
"""

from __future__ import annotations


class FsError(Exception):
    """A failure the caller sees as ``errno``; the message (never a secret) is for the log."""

    source = "filesystem"

    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err


def first_leaf(group: BaseExceptionGroup) -> BaseException:
    """The first exception in a (nested) group raised by a trio nursery."""
    first = group.exceptions[0]
    return first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
