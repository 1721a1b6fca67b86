"""Open files: reads by byte range, writes staged in a local file and written back to the bucket.

Reads of a file nobody writes go straight to the store as ranged GETs: chunks prefetched in
parallel for a sequential reader, small direct ranges for a random one (:mod:`ocifs.data.prefetch`).
The first write stages the file in a local temporary file (downloading the current object
when the write keeps some of it).  How the staged bytes reach the bucket is
:mod:`ocifs.upload.writeback`'s job: big files written sequentially are uploaded part by part while
they are written; flush (every close), fsync and the last release send what is left and make
the object whole, so an object never appears under its name half-written (a PUT or a
completed multipart upload is atomic).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
from pathlib import Path
import tempfile
import time
from typing import IO

import trio

from ocifs.data.datacache import DataCache, same_etag
from ocifs.data.prefetch import ObjectChanged, Prefetcher, ReadStream
from ocifs.errors import FsError
from ocifs.meta import objects
from ocifs.meta.inodes import InodeTable
from ocifs.meta.objects import ObjectAttrs
from ocifs.meta.tree import Tree
from ocifs.s3.errors import StoreError
from ocifs.s3.store import ObjectStore
from ocifs.tasks import Background
from ocifs.units import MiB
from ocifs.upload.multipart import Multipart
from ocifs.upload.writeback import FileWriteback, Target, Uploader

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 5.0  # seconds between "bytes left" lines while unmounting
_TIME_KEYS = ("mtime", "ctime", "atime")


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
    the local copy, created by the first write or truncate, and ``writeback`` its upload state;
    ``dirty`` says it holds changes not yet in the bucket, ``dirty_bytes`` how many bytes were
    written since the last upload.  ``write_end`` is where the last write ended (a write there,
    or at the end of the file, is sequential).  ``meta_set`` says mode, owner or times were set
    while dirty (an upload created earlier must then store them afterwards).  ``lock``
    serialises staging, writes and the finishing of uploads, so an upload never reads a
    half-applied write.  ``handles`` counts open handles.
    """

    inode: int
    attrs: ObjectAttrs
    handles: int = 0
    staged: IO[bytes] | None = None
    writeback: FileWriteback | None = None
    dirty: bool = False
    dirty_bytes: int = 0
    write_end: int = 0
    meta_set: bool = False
    lock: trio.Lock = dataclasses.field(default_factory=trio.Lock)


@dataclasses.dataclass
class Handle:
    """One open() of a file: the shared :class:`OpenFile` plus this reader's stream of reads
    from the bucket (made by the first read that goes to the bucket, closed at release).
    ``changed`` says the object was replaced in the bucket while this handle read it: its
    reads fail from then on (EIO) rather than mix two versions.  ``etag`` is the version it
    opened: another handle's discovery of a new version must not switch it over."""

    file: OpenFile
    stream: ReadStream | None = None
    changed: bool = False
    etag: str | None = None  # the object version this handle opened (None: the first GET's)


class OpenFiles:
    """All open files and handles of the mount.

    ``by_inode`` shares one :class:`OpenFile` among every handle of an inode, so that a second
    open sees the first one's writes; ``handles`` maps FUSE file handles to :class:`Handle`.
    ``limits`` says where local copies live (unlinked temporary files) and how much they hold;
    ``cache`` keeps data read from the bucket (:mod:`ocifs.data.datacache`; None: nothing kept).
    ``uploader`` is what every file's write-back shares (store, part layout, the mount's
    ``background`` tasks that send parts); ``prefetcher`` is what every handle's reads share
    (byte budget, chunk requests in flight, the same background tasks).
    """

    def __init__(self, tree: Tree, inodes: InodeTable, store: ObjectStore, multipart: Multipart,
                 limits: StagingLimits = StagingLimits(), cache: DataCache | None = None,
                 background: Background | None = None, copy_parts: bool = True) -> None:
        self.tree = tree
        self.inodes = inodes
        self.store = store
        self.limits = limits
        background = background or Background()
        self.uploader = Uploader.for_store(store, multipart, background, copy_parts)
        self.prefetcher = Prefetcher(store, cache=cache, background=background)
        self.by_inode: dict[int, OpenFile] = {}
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1

    def start(self) -> None:
        """The mount's background tasks run: abort the multipart uploads a crashed mount of the
        same bucket left behind."""
        self.uploader.background.start_soon(self._abort_orphans)

    async def _abort_orphans(self) -> None:
        try:
            count = await self.uploader.multipart.journal.abort_orphans(self.store)
        except Exception:  # noqa: BLE001 - housekeeping must never stop the mount
            log.exception("looking for multipart uploads left by a crash failed")
            return
        if count:
            log.warning("aborted %d multipart upload(s) left by an earlier mount", count)

    # -- open / close ---------------------------------------------------------------------

    def open(self, inode: int, attrs: ObjectAttrs) -> int:
        file = self.by_inode.get(inode)
        if file is None:
            file = self.by_inode[inode] = OpenFile(inode, dataclasses.replace(attrs))
            self.inodes.hold(inode)  # until dropped: dirty data outlives the last close
        file.handles += 1
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = Handle(file, etag=file.attrs.etag)
        return fh

    def stop_reads(self) -> None:
        """The mount stops serving: no more background fills of cache files."""
        self.prefetcher.stop()

    def file_of(self, inode: int) -> OpenFile | None:
        """The open file of ``inode``, if any handle on it is open (or it is still dirty)."""
        return self.by_inode.get(inode)

    async def set_attrs(self, file: OpenFile, new: ObjectAttrs) -> bool:
        """Mode, owner or times set on an open file (chmod, chown, touch); returns whether the
        file is dirty, in which case its upload stores them.  They change in place, under the
        file's lock, so that work in flight on the file (an upload's metadata) sees them."""
        async with file.lock:
            for field in dataclasses.fields(new):
                setattr(file.attrs, field.name, getattr(new, field.name))
            file.meta_set = file.meta_set or file.dirty
            return file.dirty

    def dirty_paths(self) -> list[str]:
        return [self.inodes.path(f.inode) for f in self.by_inode.values() if f.dirty]

    def keep_unsaved(self) -> dict[str, Path | None]:
        """Recovery copies of the dirty files (one made earlier of the same data is reused):
        their staged copies are unlinked files, gone when the process exits."""
        kept = {}
        for file in list(self.by_inode.values()):
            writeback = file.writeback
            if not file.dirty or writeback is None or self.inodes.is_unlinked(file.inode):
                continue
            path = self.inodes.path(file.inode)
            kept[path] = writeback.keep(path)
        return kept

    def attrs_of(self, inode: int) -> ObjectAttrs | None:
        file = self.by_inode.get(inode)
        return file.attrs if file else None

    def handle(self, fh: int) -> Handle:
        return self.handles[fh]

    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh)
        if handle.stream is not None:
            handle.stream.close()
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
            self.inodes.release(file.inode)

    # -- staging --------------------------------------------------------------------------

    async def _stage(self, file: OpenFile, keep: int) -> IO[bytes]:
        """The local copy of ``file``, holding the first ``keep`` bytes of the object."""
        if file.staged is None:
            keep = min(keep, file.attrs.size)
            if keep > 0:
                self._check_linked(file)
            staged = tempfile.TemporaryFile(dir=self.limits.directory, prefix="ocifs-")
            path = self.inodes.path(file.inode)
            # The upload rewrites the metadata: it must carry what the object has.
            await self.tree.exact(path, file.attrs)
            if keep > 0 and not self.tree.is_pending(path):
                try:
                    # boto3 gets a descriptor of its own: it may close what it is given.
                    with os.fdopen(os.dup(staged.fileno()), "r+b") as target:
                        await self.store.download(self.store.key(path), target)
                except BaseException:
                    staged.close()
                    raise
            staged.truncate(keep)
            file.staged = staged
            base = keep if not self.tree.is_pending(path) else 0
            file.writeback = FileWriteback(self.uploader, staged.fileno(), base)
        return file.staged

    def renamed(self, file: OpenFile) -> None:
        """``file``'s object was copied under a new key, which may carry another ETag
        (multipart sources do): its handles read the copy as the first GET finds it."""
        file.attrs.etag = None
        for handle in self.handles.values():
            if handle.file is file:
                handle.etag = None
                if handle.stream is not None:
                    handle.stream.close()
                    handle.stream = None

    def _check_linked(self, file: OpenFile) -> None:
        """ESTALE for the bytes of a file removed or replaced through this mount while open,
        when nothing staged them: the object under its old key is gone or another file's
        (POSIX would still read the old data; ocifs keeps no copy of files it only reads)."""
        if self.inodes.is_unlinked(file.inode):
            raise FsError(errno.ESTALE, f"{self.inodes.path(file.inode)} was removed or "
                                           "replaced on this mount while open")

    async def new_file(self, inode: int, attrs: ObjectAttrs) -> int:
        """A file just created: staged empty and dirty, visible on this mount until uploaded."""
        fh = self.open(inode, attrs)
        file = self.by_inode[inode]
        async with file.lock:
            await self._stage(file, 0)
            file.dirty = True
        path = self.inodes.path(inode)
        self.tree.add_pending(path, file.attrs)
        return fh

    # -- data -----------------------------------------------------------------------------

    async def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        handle = self.handles[fh]
        file = handle.file
        if file.staged is not None:
            return os.pread(file.staged.fileno(), size, offset)
        self._check_linked(file)
        stream = handle.stream
        version = handle.etag or (stream.etag if stream is not None else None)
        if version is not None and file.attrs.etag is not None \
                and not same_etag(version, file.attrs.etag):
            # Another handle found the object replaced: this one opened the old version, whose
            # bytes must neither continue with the new one's nor reach the page cache that
            # the new version's readers share.
            handle.changed = True
        if handle.changed:
            raise FsError(errno.EIO, f"{self.inodes.path(file.inode)} was replaced in the "
                                        "bucket while open; open it again")
        key = self.store.key(self.inodes.path(file.inode))
        if stream is None or stream.size != file.attrs.size or stream.key != key:
            if stream is not None:  # renamed or rewritten on this mount since: start afresh
                stream.close()
            stream = handle.stream = self.prefetcher.stream(key, file.attrs.size, version)
        try:
            data = await stream.read(offset, size)
        except ObjectChanged:
            handle.changed = True
            await self._refresh(file)
            raise
        self._check_linked(file)  # replaced on this mount while the range was being fetched
        return data

    async def _refresh(self, file: OpenFile) -> None:
        """The object was replaced by another client since ``file`` was opened: forget its old
        attributes, so that the next open reads the new version whole (and the kernel, seeing
        another ETag, drops the pages it kept of the old one)."""
        path = self.inodes.path(file.inode)
        log.warning("%s was replaced in the bucket while open here; reads of this open fail "
                    "with EIO, open it again", path)
        self.tree.invalidate(path)
        fresh = await self.tree.stat(path)
        if fresh is not None and file.staged is None and not file.dirty:
            file.attrs = dataclasses.replace(fresh)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        """Write into the staged copy; a sequential writer's completed parts go up meanwhile
        (this waits while too many of them are in flight).  A failed upload is reported here."""
        file = self.handles[fh].file
        async with file.lock:
            staged = await self._stage(file, file.attrs.size)
            writeback = file.writeback
            assert writeback is not None
            await writeback.wait_sealed(file.lock, offset)  # appends never wait for an upload
            await self._raise_failure(file, writeback)
            self._check_free_space(staged, len(data))
            written = os.pwrite(staged.fileno(), data, offset)
            writeback.changed(offset, offset + written)
            file.dirty = True
            file.dirty_bytes += written
            now = time.time_ns()
            sequential = offset in (file.write_end, file.attrs.size)
            file.attrs.size = max(file.attrs.size, offset + written)
            file.attrs.mtime_ns = file.attrs.ctime_ns = now
            file.write_end = offset + written
            if sequential:
                try:
                    await writeback.stream(file.write_end, file.attrs.size, lambda: self._target(file))
                except StoreError as exc:  # reported at the next write, fsync or close
                    writeback.error = writeback.error or exc
        limit = self.limits.max_dirty_bytes
        unsaved = file.dirty_bytes - writeback.sent_bytes
        if limit is not None and unsaved >= limit:
            log.info("%s: %d bytes unsaved (max_dirty_data), uploading",
                     self.inodes.path(file.inode), unsaved)
            await self.upload(file)
        return written

    async def _raise_failure(self, file: OpenFile, writeback: FileWriteback) -> None:
        """If a background part failed: abort, keep a recovery copy, raise (EIO) to the caller."""
        try:
            writeback.check()
        except StoreError as exc:
            await writeback.fail(self.inodes.path(file.inode), exc)
            raise

    def _target(self, file: OpenFile) -> Target:
        path = self.inodes.path(file.inode)
        return Target(self.store.key(path), objects.metadata_for(file.attrs),
                      objects.content_type_for(path, file.attrs), path)

    def _check_free_space(self, staged: IO[bytes], needed: int) -> None:
        """ENOSPC before the staging disk drops below ``ensure_diskfree``."""
        if self.limits.min_free_bytes <= 0:
            return
        for attempt in range(2):
            st = os.fstatvfs(staged.fileno())
            if st.f_bavail * st.f_frsize - needed >= self.limits.min_free_bytes:
                return
            cache = self.prefetcher.cache
            if attempt or cache is None or not cache.evict_unused():
                break  # data being written comes first: cached reads make room if they can
        raise FsError(errno.ENOSPC, "staging disk below ensure_diskfree")

    async def truncate(self, file: OpenFile, size: int) -> None:
        async with file.lock:
            staged = await self._stage(file, size)
            assert file.writeback is not None
            if size < file.attrs.size:
                await file.writeback.wait_sealed(file.lock, size)
                # A part being sent reads the staged file: cut under it, its request body
                # would end short of its length and hang until it timed out (each retry too).
                await file.writeback.wait_in_flight()
            staged.truncate(size)
            file.writeback.truncated(file.attrs.size, size)
            file.attrs.size = size
            file.attrs.mtime_ns = file.attrs.ctime_ns = time.time_ns()  # as a write does
            file.dirty = True

    # -- upload ---------------------------------------------------------------------------

    async def upload(self, file: OpenFile) -> None:
        """Make the object hold the staged copy if it has changes (flush, fsync, release):
        returns once the data is durable in the bucket."""
        async with file.lock:
            writeback = file.writeback
            if writeback is not None:  # an earlier fsync still sending: it goes first
                await writeback.wait_sealed(file.lock)
            if not file.dirty or file.staged is None or writeback is None:
                return
            if self.inodes.is_unlinked(file.inode):
                await writeback.abandon()
                file.dirty = False  # removed while open: nothing to keep
                return
            path = self.inodes.path(file.inode)
            target = self._target(file)
            size = file.attrs.size
            try:
                writeback.check()
                # The lock is released while the requests are made: appends go on meanwhile.
                stored = await writeback.finish(size, target, file.lock)
            except StoreError as exc:
                await writeback.fail(path, exc)
                raise
            file.dirty = bool(writeback.changes)  # appended while the upload was sent
            file.dirty_bytes = writeback.changes.total()
            file.attrs.etag = None
            self.tree.pending_uploaded(path, dataclasses.replace(file.attrs, size=size))
            if stored != target.metadata:
                await self._store_late_metadata(file, path, stored, target.metadata)
            self.tree.remember(path, dataclasses.replace(file.attrs, size=size))
            log.info("uploaded %s (%d bytes)", path, size)

    async def _store_late_metadata(self, file: OpenFile, path: str, stored: dict[str, str],
                                   wanted: dict[str, str]) -> None:
        """An upload created while the file was written carries the metadata of that moment.

        Mode, owner or times set explicitly since (chmod, cp -p, touch) are stored with a
        self-copy; times that only moved because of writes are not worth one: the file takes
        the stored times, so this mount and every other client agree.
        """
        others_differ = any(stored.get(k) != wanted.get(k) for k in set(stored) | set(wanted)
                            if k not in _TIME_KEYS)
        if file.meta_set or others_differ:
            await self.tree.put_attrs(path, dataclasses.replace(file.attrs))
        else:
            for key in ("mtime", "ctime"):
                stored_ns = objects.parse_time_ns(stored.get(key))
                if stored_ns is not None:
                    setattr(file.attrs, f"{key}_ns", stored_ns)
        file.meta_set = False

    async def upload_all(self) -> list[str]:
        """Upload every dirty file (unmount), logging what is left for big ones; returns the
        paths that could not be uploaded."""
        failed: list[str] = []
        for file in list(self.by_inode.values()):
            if not file.dirty:
                continue
            path = self.inodes.path(file.inode)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._log_progress, file, path)
                try:
                    await self.upload(file)
                except FsError:
                    failed.append(path)
                nursery.cancel_scope.cancel()
        return failed

    async def _log_progress(self, file: OpenFile, path: str) -> None:
        """While a big ``file`` is being uploaded at unmount, log how many bytes are left."""
        while file.attrs.size >= self.uploader.threshold:
            writeback = file.writeback
            if writeback is not None:
                left = writeback.pending_bytes(file.attrs.size)
                log.warning("unmounting: uploading %s, %d of %d bytes left", path, left,
                            file.attrs.size)
            await trio.sleep(PROGRESS_INTERVAL)

    def open_under(self, directory: str) -> list[OpenFile]:
        """Open files below ``directory`` (whose keys a directory rename changes)."""
        return [f for f in self.by_inode.values()
                if not self.inodes.is_unlinked(f.inode)
                and self.inodes.path(f.inode).startswith(directory + "/")]

    def dirty_count(self) -> int:
        return sum(1 for f in self.by_inode.values() if f.dirty)

