"""The errno boundary: every Operations method's failures become the errno its caller sees.

:class:`~ocifs.errors.FsError` (a filesystem rule) and its subclass
:class:`~ocifs.s3.errors.StoreError` (a failed request) carry their errno; a full or failing
staging disk passes its own; anything else is a bug, logged with its traceback once, and the
caller gets EIO: a bug costs one request, never the mount.

The wrapper also times each operation: an ``observer(op, outcome, seconds)`` set on the
Operations instance (the mount's statistics, :mod:`ocifs.run.stats`) is told of every one.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import time
from typing import Any, Awaitable, Callable, TypeVar

import pyfuse3

from ocifs.errors import FsError, first_leaf

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

# Errors of the local disk holding staged copies, passed to the caller as they are.
LOCAL_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def _describe(value: Any) -> str:
    """Short form of an operation argument for the debug line (data only by its size)."""
    if isinstance(value, bytes):
        return repr(os.fsdecode(value)) if len(value) <= 80 else f"<{len(value)} bytes>"
    if isinstance(value, (int, str)):
        return repr(value)
    return ""


def fuse_errors(method: F) -> F:
    """Turn filesystem and store failures into the errno the caller sees; log them once,
    without a traceback.

    At ``dbglevel=dbg`` each operation leaves one compact line:
    ``op(args) -> ok|ERRNO  1.2 ms``.
    """
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "ok"
        try:
            try:
                return await method(*args, **kwargs)
            except BaseExceptionGroup as group:  # concurrent requests: report the first failure
                raise first_leaf(group) from None
        except FsError as exc:
            level = logging.DEBUG if exc.errno in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST) else logging.WARNING
            log.log(level, "%s: %s", method.__name__, exc)
            outcome = errno.errorcode.get(exc.errno, str(exc.errno))
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except pyfuse3.FUSEError as exc:
            outcome = errno.errorcode.get(exc.errno, str(exc.errno))
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must cost one request, never the mount
            if isinstance(exc, OSError) and exc.errno in LOCAL_DISK_ERRORS:
                # The staging disk (use_cache) is full or failing: the caller must see why.
                log.warning("%s: staging disk: %s", method.__name__, exc.strerror)
                outcome = errno.errorcode[exc.errno]
                raise pyfuse3.FUSEError(exc.errno) from None
            log.exception("%s failed unexpectedly", method.__name__)
            outcome = "EIO"
            raise pyfuse3.FUSEError(errno.EIO) from None
        finally:
            elapsed = time.perf_counter() - started
            observer = getattr(args[0], "observer", None)
            if observer is not None:
                observer(method.__name__, outcome, elapsed)
            if log.isEnabledFor(logging.DEBUG):
                shown = ", ".join(filter(None, map(_describe, args[1:])))
                log.debug("%s(%s) -> %s  %.1f ms", method.__name__, shown, outcome,
                          elapsed * 1000)
    return wrapper  # type: ignore[return-value]
