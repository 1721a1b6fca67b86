"""Open files: reads by byte range, writes staged in a local file and uploaded on flush/fsync.

Reads of a file nobody writes go straight to the store as ranged GETs, with a read-ahead
window that grows while the reader is sequential.  The first write stages the file in a local
temporary file (downloading the current object when the write keeps some of it); flush (every
close), fsync and the last release upload the staged copy as a whole, so an object never
appears under its name half-written (a PUT or a completed multipart upload is atomic).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import tempfile
import time
from typing import IO

import trio

from . import objects
from .inodes import InodeTable
from .objects import ObjectAttrs
from .store import StoreError
from .tree import Tree

log = logging.getLogger(__name__)

MiB = 1024 * 1024
READAHEAD_MIN = 1 * MiB
READAHEAD_MAX = 16 * MiB


@dataclasses.dataclass(frozen=True)
class StagingLimits:
    """Where local copies live and how much they may hold (s3fs's ``use_cache``,
    ``max_dirty_data`` and ``ensure_diskfree``)."""

    directory: str | None = None
    max_dirty_bytes: int | None = 5120 * MiB
    min_free_bytes: int = 0


@dataclasses.dataclass
class OpenFile:
    """One inode while at least one handle on it is open.

    ``attrs`` is authoritative while the file is open (size grows with writes).  ``staged`` is
    the local copy, created by the first write or truncate; ``dirty`` says it holds changes
    not yet in the bucket, ``dirty_bytes`` how many bytes were written since the last upload.  ``lock`` serialises staging, writes and uploads, so an upload
    never reads a half-applied write.  ``handles`` counts open handles.
    """

    inode: int
    attrs: ObjectAttrs
    handles: int = 0
    staged: IO[bytes] | None = None
    dirty: bool = False
    dirty_bytes: int = 0
    lock: trio.Lock = dataclasses.field(default_factory=trio.Lock)


@dataclasses.dataclass
class Handle:
    """One open() of a file: the shared :class:`OpenFile` plus this reader's read-ahead."""

    file: OpenFile
    buffer_start: int = 0
    buffer: bytes = b""
    next_offset: int = 0
    window: int = READAHEAD_MIN


class OpenFiles:
    """All open files and handles of the mount.

    ``by_inode`` shares one :class:`OpenFile` among every handle of an inode, so that a second
    open sees the first one's writes; ``handles`` maps FUSE file handles to :class:`Handle`.
    ``limits`` says where local copies live (unlinked temporary files) and how much they hold.
    """

    def __init__(self, tree: Tree, inodes: InodeTable, limits: StagingLimits = StagingLimits()) -> None:
        self.tree = tree
        self.inodes = inodes
        self.limits = limits
        self.by_inode: dict[int, OpenFile] = {}
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1

    # -- open / close ---------------------------------------------------------------------

    def open(self, inode: int, attrs: ObjectAttrs) -> int:
        file = self.by_inode.get(inode)
        if file is None:
            file = self.by_inode[inode] = OpenFile(inode, dataclasses.replace(attrs))
        file.handles += 1
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = Handle(file)
        return fh

    def attrs_of(self, inode: int) -> ObjectAttrs | None:
        file = self.by_inode.get(inode)
        return file.attrs if file else None

    def handle(self, fh: int) -> Handle:
        return self.handles[fh]

    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh)
        file = handle.file
        file.handles -= 1
        if file.handles > 0:
            return
        try:
            await self.upload(file)
        finally:
            if file.handles == 0 and not file.dirty:
                self._drop(file)

    def _drop(self, file: OpenFile) -> None:
        if file.staged is not None:
            file.staged.close()
            file.staged = None
        if self.by_inode.get(file.inode) is file:
            del self.by_inode[file.inode]

    # -- staging --------------------------------------------------------------------------

    async def _stage(self, file: OpenFile, keep: int) -> IO[bytes]:
        """The local copy of ``file``, holding the first ``keep`` bytes of the object."""
        if file.staged is None:
            staged = tempfile.TemporaryFile(dir=self.limits.directory, prefix="ocifs-")
            keep = min(keep, file.attrs.size)
            path = self.inodes.path(file.inode)
            if keep > 0 and path not in self.tree.pending:
                try:
                    # boto3 gets a descriptor of its own: it may close what it is given.
                    with os.fdopen(os.dup(staged.fileno()), "r+b") as target:
                        await self.tree.store.download(self.tree.store.key(path), target)
                except BaseException:
                    staged.close()
                    raise
            staged.truncate(keep)
            file.staged = staged
        return file.staged

    async def new_file(self, inode: int, attrs: ObjectAttrs) -> int:
        """A file just created: staged empty and dirty, visible on this mount until uploaded."""
        fh = self.open(inode, attrs)
        file = self.by_inode[inode]
        async with file.lock:
            await self._stage(file, 0)
            file.dirty = True
        self.tree.pending[self.inodes.path(inode)] = file.attrs
        return fh

    # -- data -----------------------------------------------------------------------------

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        handle = self.handles[fh]
        file = handle.file
        if file.staged is not None:
            return os.pread(file.staged.fileno(), size, offset)
        end = min(offset + size, file.attrs.size)
        if offset >= end:
            return b""
        buffer_end = handle.buffer_start + len(handle.buffer)
        if not (handle.buffer_start <= offset and end <= buffer_end):
            sequential = offset == handle.next_offset
            handle.window = min(handle.window * 2, READAHEAD_MAX) if sequential else READAHEAD_MIN
            length = min(max(size, handle.window), file.attrs.size - offset)
            key = self.tree.store.key(self.inodes.path(file.inode))
            handle.buffer = await self.tree.store.get_range(key, offset, length)
            handle.buffer_start = offset
        handle.next_offset = end
        start = offset - handle.buffer_start
        return handle.buffer[start:start + (end - offset)]

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        file = self.handles[fh].file
        async with file.lock:
            staged = await self._stage(file, file.attrs.size)
            self._check_free_space(staged, len(data))
            written = os.pwrite(staged.fileno(), data, offset)
            file.dirty = True
            file.dirty_bytes += written
            now = time.time_ns()
            file.attrs.size = max(file.attrs.size, offset + written)
            file.attrs.mtime_ns = file.attrs.ctime_ns = now
        limit = self.limits.max_dirty_bytes
        if limit is not None and file.dirty_bytes >= limit:
            log.info("%s: %d bytes unsaved (max_dirty_data), uploading",
                     self.inodes.path(file.inode), file.dirty_bytes)
            await self.upload(file)
        return written

    def _check_free_space(self, staged: IO[bytes], needed: int) -> None:
        """ENOSPC before the staging disk drops below ``ensure_diskfree``."""
        if self.limits.min_free_bytes <= 0:
            return
        st = os.fstatvfs(staged.fileno())
        if st.f_bavail * st.f_frsize - needed < self.limits.min_free_bytes:
            raise StoreError(errno.ENOSPC, "staging disk below ensure_diskfree")

    async def truncate(self, file: OpenFile, size: int) -> None:
        async with file.lock:
            staged = await self._stage(file, size)
            staged.truncate(size)
            file.attrs.size = size
            file.dirty = True

    # -- upload ---------------------------------------------------------------------------

    async def upload(self, file: OpenFile) -> None:
        """Put the staged copy into the bucket if it has changes (flush, fsync, release)."""
        async with file.lock:
            if not file.dirty or file.staged is None:
                return
            if self.inodes.is_unlinked(file.inode):
                file.dirty = False  # removed while open: nothing to keep
                return
            path = self.inodes.path(file.inode)
            attrs = file.attrs
            try:
                await self.tree.store.upload(self.tree.store.key(path), file.staged.fileno(),
                                             objects.metadata_for(attrs),
                                             objects.content_type_for(path, attrs))
            except StoreError as exc:
                log.error("upload of %s failed, the data stays staged locally: %s", path, exc)
                raise
            file.dirty = False
            file.dirty_bytes = 0
            file.attrs.etag = None
            self.tree.pending.pop(path, None)
            self.tree.remember(path, dataclasses.replace(attrs))
            log.info("uploaded %s (%d bytes)", path, attrs.size)

    async def upload_all(self) -> list[str]:
        """Upload every dirty file (unmount); returns the paths that could not be uploaded."""
        failed: list[str] = []
        for file in list(self.by_inode.values()):
            try:
                await self.upload(file)
            except StoreError:
                failed.append(self.inodes.path(file.inode))
        return failed

    def dirty_count(self) -> int:
        return sum(1 for f in self.by_inode.values() if f.dirty)

