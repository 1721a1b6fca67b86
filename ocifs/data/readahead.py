"""The kernel's read-ahead for a FUSE mount, which decides how big its read requests are.

A FUSE mount starts with the kernel's default read-ahead of 128 KiB, so a sequential reader's
data arrives in 128 KiB requests: one trip through Python per 128 KiB.  libfuse negotiates
requests of up to 1 MiB, and a read-ahead of 1 MiB lets the kernel use them, which more than
doubles what one Python process can serve.  The setting lives in sysfs (root only), keyed by
the mount's device number, which ``/proc/self/mountinfo`` gives without touching the mount
itself (the process serving it must not stat it before it serves requests).  The kernel
lowers the value again when it processes libfuse's reply to its INIT request, so it is set
once the mount serves requests (:func:`keep_read_ahead`).
"""

from __future__ import annotations

import logging
import os
import re

import trio

log = logging.getLogger(__name__)

_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def device_of(mountpoint: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """``major:minor`` of the newest mount at ``mountpoint`` (an absolute path without
    symlinks: resolving it here would stat the mount), or None when it is not mounted."""
    device = None
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as lines:
        for line in lines:
            fields = line.split(" ")
            if len(fields) > 4 and _unescape(fields[4]) == mountpoint:
                device = fields[2]  # later lines are mounts stacked on top: keep the last
    return device


def set_read_ahead(mountpoint: str, kib: int, sysfs: str = "/sys/class/bdi") -> bool:
    """Set the read-ahead of the mount at ``mountpoint`` (resolved, see :func:`device_of`) to
    ``kib`` KiB (0: leave the kernel's default).

    Returns whether it was set; failing (not root, no sysfs) only costs speed, so it is logged
    at debug level and never raised.
    """
    if kib <= 0:
        return False
    try:
        device = device_of(mountpoint)
        if device is None:
            log.debug("read-ahead: %s not found in mountinfo", mountpoint)
            return False
        knob = os.path.join(sysfs, device, "read_ahead_kb")
        with open(knob, encoding="ascii") as current:
            if int(current.read()) == kib:
                return True
        with open(knob, "w", encoding="ascii") as setting:
            setting.write(str(kib))
    except (OSError, ValueError) as exc:
        log.debug("read-ahead of %s left at the kernel default: %s", mountpoint, exc)
        return False
    log.debug("read-ahead of %s (device %s) set to %d KiB", mountpoint, device, kib)
    return True


async def keep_read_ahead(mountpoint: str, kib: int) -> None:
    """Set the read-ahead once the kernel has had libfuse's INIT reply (which resets it), and
    check again a little later; runs in the mount's nursery."""
    for delay in (0.05, 0.5, 5.0):
        await trio.sleep(delay)
        await trio.to_thread.run_sync(set_read_ahead, mountpoint, kib)
