"""Telling the kernel that attributes it caches may be stale.

The kernel keeps entries and attributes for as long as ocifs's stat cache would answer the
same (``entry_timeout``/``attr_timeout``), so a stat or an ``ls -l`` again is answered without
waking the daemon.  What the kernel did not see change (a parent's mtime moved by
``update_parent_dir_stat``, the times an upload stored, what a HEAD or listing learned that
differs from what was cached) is sent here as the path changes; the inodes the kernel knows
are invalidated in batches from a worker thread, never from a request handler (libfuse: a
notification sent from within an operation may deadlock the kernel on that operation's locks).
"""

from __future__ import annotations

import errno
import logging
from typing import Callable

import pyfuse3
import trio

log = logging.getLogger(__name__)


class KernelInvalidations:
    """Inodes whose kernel attributes must be dropped, sent while :meth:`run` runs (serving)."""

    def __init__(self, inode_of: Callable[[str], int | None]) -> None:
        self._inode_of = inode_of
        self._pending: set[int] = set()
        self._wake = trio.Event()
        self._running = False

    def path_changed(self, path: str) -> None:
        """``path``'s attributes changed: the kernel's copy goes (when it has one)."""
        if not self._running:
            return  # not serving: the kernel holds nothing to invalidate
        inode = self._inode_of(path)
        if inode is not None:
            self._pending.add(inode)
            self._wake.set()

    async def run(self) -> None:
        """Send invalidations until cancelled (the mount runs this while serving)."""
        self._running = True
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                batch, self._pending = self._pending, set()
                await trio.to_thread.run_sync(_invalidate, batch)
        finally:
            self._running = False


def _invalidate(inodes: set[int]) -> None:
    for inode in inodes:
        try:
            pyfuse3.invalidate_inode(inode, attr_only=True)
        except OSError as exc:  # ENOENT: the kernel has forgotten it already
            if exc.errno != errno.ENOENT:
                log.debug("invalidating inode %d: %s", inode, exc)
