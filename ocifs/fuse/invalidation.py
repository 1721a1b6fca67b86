"""Telling the kernel that attributes it caches may be stale.

The kernel keeps entries and attributes for as long as ocifs's stat cache would answer the
same (``entry_timeout``/``attr_timeout``), so a stat or an ``ls -l`` again is answered without
waking the daemon.  What the kernel did not see change (headers read after a ``fast_list``
listing, a file found replaced by a read, what a HEAD learned that differs from what was
cached, a parent's times moved by ``update_parent_dir_stat``) is sent here as the path
changes, and the inode's attributes are invalidated at once, before the request that learned
it is answered.  pyfuse3's ``invalidate_inode`` blocks only with the writeback cache (not
used here), so it is called in place; ``invalidate_entry``, which libfuse says may deadlock
from within a request, is not used.
"""

from __future__ import annotations

import errno
import logging
from typing import Callable

import pyfuse3
import trio

log = logging.getLogger(__name__)


class KernelInvalidations:
    """Drops the kernel's attributes of changed paths while :meth:`run` runs (serving)."""

    def __init__(self, inode_of: Callable[[str], int | None]) -> None:
        self._inode_of = inode_of
        self._serving = False

    def path_changed(self, path: str) -> None:
        """``path``'s attributes changed: the kernel's copy goes (when it has one)."""
        if not self._serving:
            return  # no session: nothing to invalidate (nor a channel to do it with)
        inode = self._inode_of(path)
        if inode is None:
            return
        try:
            pyfuse3.invalidate_inode(inode, attr_only=True)
        except OSError as exc:  # ENOENT: the kernel has forgotten it already
            if exc.errno != errno.ENOENT:
                log.debug("invalidating inode %d: %s", inode, exc)

    async def run(self) -> None:
        """Mark the time the session serves requests (the mount runs this beside
        ``pyfuse3.main``, cancelled when serving ends)."""
        self._serving = True
        try:
            await trio.sleep_forever()
        finally:
            self._serving = False
