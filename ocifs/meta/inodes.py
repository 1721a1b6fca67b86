"""Inode numbers the kernel holds, mapped to paths in the bucket.

S3 has no inodes, so ocifs hands out numbers as paths are looked up and keeps them while the
kernel still counts a lookup for them (``forget`` drops the count).  Numbers are never reused,
so the generation is always 0.
"""

from __future__ import annotations

import dataclasses

ROOT_INODE = 1  # pyfuse3.ROOT_INODE


@dataclasses.dataclass
class InodeEntry:
    """One inode: ``path`` relative to the mount root, ``lookups`` the kernel's count.

    ``unlinked`` is set when the path was removed or replaced while the kernel (or an open
    file) still held the inode: the inode then no longer owns its path.  ``held`` says ocifs
    itself still needs it: a file with data not yet uploaded outlives its last close, and the
    kernel may forget the inode meanwhile (at unmount it always does).
    """

    path: str
    lookups: int = 0
    unlinked: bool = False
    held: bool = False


class InodeTable:
    """Inode <-> path map with lookup counts.  The root ("") is inode 1 and never forgotten."""

    def __init__(self) -> None:
        self._entries: dict[int, InodeEntry] = {ROOT_INODE: InodeEntry("", lookups=1)}
        self._by_path: dict[str, int] = {"": ROOT_INODE}
        self._next = ROOT_INODE + 1

    def __contains__(self, inode: int) -> bool:
        return inode in self._entries

    def path(self, inode: int) -> str:
        """Path of ``inode``; KeyError if the kernel names an inode we never gave out."""
        return self._entries[inode].path

    def is_unlinked(self, inode: int) -> bool:
        entry = self._entries.get(inode)
        return entry is None or entry.unlinked

    def inode_of(self, path: str) -> int | None:
        return self._by_path.get(path)

    def lookup(self, path: str) -> int:
        """Inode for ``path`` (allocated on first sight), counting one kernel lookup."""
        inode = self._by_path.get(path)
        if inode is None:
            inode = self._next
            self._next += 1
            self._entries[inode] = InodeEntry(path)
            self._by_path[path] = inode
        self._entries[inode].lookups += 1
        return inode

    def forget(self, inode: int, count: int) -> None:
        entry = self._entries.get(inode)
        if entry is None or inode == ROOT_INODE:
            return
        entry.lookups -= count
        self._drop_unused(inode, entry)

    def hold(self, inode: int) -> None:
        """Keep ``inode`` (and its path) while ocifs has it open, whatever the kernel forgets."""
        entry = self._entries.get(inode)
        if entry is not None:
            entry.held = True

    def release(self, inode: int) -> None:
        """The opposite of :meth:`hold`: the inode goes once the kernel forgot it too."""
        entry = self._entries.get(inode)
        if entry is not None:
            entry.held = False
            self._drop_unused(inode, entry)

    def _drop_unused(self, inode: int, entry: InodeEntry) -> None:
        if entry.lookups <= 0 and not entry.held and inode != ROOT_INODE:
            del self._entries[inode]
            if self._by_path.get(entry.path) == inode:
                del self._by_path[entry.path]

    def unlink(self, path: str) -> None:
        """``path`` is gone from the bucket: its inode (if any) stops owning it."""
        inode = self._by_path.pop(path, None)
        if inode is not None:
            self._entries[inode].unlinked = True

    def rename(self, old: str, new: str) -> None:
        """Move ``old`` and everything below it to ``new``; what was at ``new`` is unlinked."""
        self.unlink(new)
        moved = [(p, i) for p, i in self._by_path.items()
                 if p == old or p.startswith(old + "/")]
        for path, _ in moved:
            del self._by_path[path]
        for path, inode in moved:
            new_path = new + path[len(old):]
            self.unlink(new_path)
            self._entries[inode].path = new_path
            self._by_path[new_path] = inode

    def __len__(self) -> int:
        return len(self._entries)
