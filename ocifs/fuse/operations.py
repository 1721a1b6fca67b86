"""The pyfuse3 Operations: a thin layer from kernel requests to the tree and open files.

Each method maps inodes to paths and calls :mod:`ocifs.meta.tree` (namespace) or
:mod:`ocifs.data.openfiles` (data); :func:`ocifs.fuse.errors.fuse_errors` turns their failures
into the errno the caller sees.  Attributes shown to the kernel are derived in one place (:class:`AttrView`),
which applies the ``uid``/``gid``/``umask`` options the way s3fs does.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import stat
import time

import pyfuse3

from ocifs.data.openfiles import OpenFiles
from ocifs.fuse.errors import fuse_errors
from ocifs.meta.inodes import ROOT_INODE, InodeTable
from ocifs.meta.objects import SYMLINK_MODE, ObjectAttrs
from ocifs.meta.tree import Tree, join
from ocifs.units import MiB

log = logging.getLogger(__name__)

# st_blksize: the I/O size programs pick from stat() (cp: 1 MiB requests instead of 128 KiB;
# stdio: 8 KiB buffers, its maximum, instead of 4 KiB).  Every request is a round trip through
# Python, so fewer, bigger ones are faster; 1 MiB is the most the kernel sends in one.
IO_BLOCK = MiB


def kernel_timeout(stat_cache_expire: float) -> float:
    """The longest the kernel may cache entries and attributes: ocifs's own stat cache's
    expiry (each reply gives what is left of its entry's, so the kernel never shows what the
    stat cache would no longer answer); with ``stat_cache_expire=0`` not at all, so every
    stat reaches the bucket."""
    return max(0.0, stat_cache_expire)


@dataclasses.dataclass
class AttrView:
    """How stored attributes are shown: s3fs's ``uid``/``gid``/``umask`` overrides.

    As in s3fs, ``uid``/``gid`` replace the owner of every entry (root included) and ``umask``
    replaces the permission bits of every entry (symlinks too) with ``0777 & ~umask``; both
    only change what is shown, never what is stored.  Directories report one link, the
    "count unknown" value that tells find(1) not to guess subdirectories from it.  ``root`` is the mountpoint's own attributes.
    ``timeout`` is the longest the kernel may cache entries and attributes (:func:`kernel_timeout`),
    unless ``entry_timeout``/``attr_timeout`` were given as options.
    """

    root: ObjectAttrs
    uid: int | None = None
    gid: int | None = None
    umask: int | None = None
    timeout: float = 1.0
    entry_timeout: float | None = None  # -o entry_timeout / attr_timeout: fixed by the user
    attr_timeout: float | None = None
    capacity: int | None = None  # bucket_size: bytes statfs reports (None: s3fs's 16 EiB)

    def entry(self, inode: int, attrs: ObjectAttrs,
              timeout: float | None = None) -> pyfuse3.EntryAttributes:
        entry = pyfuse3.EntryAttributes()
        mode = attrs.mode
        if self.umask is not None:
            mode = stat.S_IFMT(mode) | (0o777 & ~self.umask)
        entry.st_ino = inode
        entry.generation = 0
        chosen = self.timeout if timeout is None else timeout
        entry.entry_timeout = chosen if self.entry_timeout is None else self.entry_timeout
        entry.attr_timeout = chosen if self.attr_timeout is None else self.attr_timeout
        entry.st_mode = mode
        entry.st_nlink = 1
        entry.st_uid = attrs.uid if self.uid is None else self.uid
        entry.st_gid = attrs.gid if self.gid is None else self.gid
        entry.st_rdev = attrs.rdev
        entry.st_size = attrs.size
        entry.st_blksize = IO_BLOCK
        entry.st_blocks = (attrs.size + 511) // 512
        entry.st_atime_ns = attrs.atime_ns
        entry.st_mtime_ns = attrs.mtime_ns
        entry.st_ctime_ns = attrs.ctime_ns
        return entry


@dataclasses.dataclass
class DirHandle:
    """An open directory: its inode and the listing being returned to the kernel."""

    inode: int
    listing: list[tuple[str, ObjectAttrs]] | None = None


_MKNOD_TYPES = (stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK)


def _name(raw: bytes) -> str:
    return os.fsdecode(raw)


class Operations(pyfuse3.Operations):
    """pyfuse3 request handlers for one mounted bucket."""

    enable_writeback_cache = False

    def __init__(self, tree: Tree, view: AttrView, files: OpenFiles, inodes: InodeTable,
                 use_xattr: bool = False, direct_io: bool = False) -> None:
        super().__init__()
        self.use_xattr = use_xattr
        self.direct_io = direct_io  # -o direct_io: no page cache for file data
        self.tree = tree
        self.view = view
        self.inodes = inodes
        self.files = files
        self._dirs: dict[int, DirHandle] = {}
        # inode -> ETag of the object version whose pages the kernel may hold (None: unknown).
        self._cached_etags: dict[int, str | None] = {}
        self._next_dir_fh = 1

    # -- helpers --------------------------------------------------------------------------

    def _path(self, inode: int) -> str:
        try:
            return self.inodes.path(inode)
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _child(self, parent_inode: int, name: bytes) -> str:
        path = join(self._path(parent_inode), _name(name))
        if self.tree.key_too_long(path):
            raise pyfuse3.FUSEError(errno.ENAMETOOLONG)
        return path

    def _new_child(self, parent_inode: int, name: bytes) -> str:
        """A path about to be created: refused now if the store would refuse its key later."""
        path = self._child(parent_inode, name)
        if self.tree.refuses_new_name(path):
            raise pyfuse3.FUSEError(errno.EINVAL)
        return path

    async def _attrs(self, path: str, inode: int | None = None) -> ObjectAttrs | None:
        """Current attributes: the open file's if it is open, else the tree's."""
        if path == "":
            return self.view.root
        inode = self.inodes.inode_of(path) if inode is None else inode
        if inode is not None:
            open_attrs = self.files.attrs_of(inode)
            if open_attrs is not None:
                return open_attrs
        return await self.tree.stat(path)

    async def _existing(self, path: str, inode: int | None = None) -> ObjectAttrs:
        attrs = await self._attrs(path, inode)
        if attrs is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return attrs

    def _new_attrs(self, mode: int, ctx: pyfuse3.RequestContext) -> ObjectAttrs:
        now = time.time_ns()
        return ObjectAttrs(mode=mode, uid=ctx.uid, gid=ctx.gid,
                           mtime_ns=now, ctime_ns=now, atime_ns=now)

    def _entry(self, path: str, attrs: ObjectAttrs) -> pyfuse3.EntryAttributes:
        inode = self.inodes.lookup(path)
        return self.view.entry(inode, attrs, self._timeout(path, inode))

    def _timeout(self, path: str, inode: int) -> float:
        """How long the kernel may keep ``path``'s entry and attributes: what is left of its
        stat cache entry's life, or the whole of it for the root and open files (whose
        attributes this mount keeps itself); 0 when not cached (evicted, not kept)."""
        if not path or self.files.attrs_of(inode) is not None:
            return self.view.timeout
        return min(self.view.timeout, self.tree.cache.seconds_left(path))

    async def _ensure_absent(self, path: str) -> None:
        if await self._attrs(path) is not None:
            raise pyfuse3.FUSEError(errno.EEXIST)

    # -- lookups --------------------------------------------------------------------------

    @fuse_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self._child(parent_inode, name)
        return self._entry(path, await self._existing(path))

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self._path(inode)
        return self.view.entry(inode, await self._existing(path, inode), self._timeout(path, inode))

    def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            self.inodes.forget(inode, count)
            if inode not in self.inodes:
                self._cached_etags.pop(inode, None)

    @fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return os.fsencode(await self.tree.readlink(self._path(inode)))

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        """A bucket has no size limit: the same huge, empty filesystem s3fs reports, or the
        ``bucket_size`` asked for (df then shows that size, all free)."""
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 16 * 1024 * 1024
        blocks = (1 << 40) - 1
        if self.view.capacity is not None:
            blocks = max(1, self.view.capacity // data.f_frsize)
        data.f_blocks = data.f_bfree = data.f_bavail = blocks
        data.f_files = data.f_ffree = data.f_favail = 0
        data.f_namemax = 255
        return data

    # -- directories ----------------------------------------------------------------------

    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        attrs = await self._existing(self._path(inode), inode)
        if not attrs.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        fh = self._next_dir_fh
        self._next_dir_fh += 1
        self._dirs[fh] = DirHandle(inode)
        return fh

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        """Entries in name order; ``start_id`` is the index after the last entry returned.

        The listing is taken when reading starts (offset 0) and kept for the handle, so a
        directory read in several calls is a consistent snapshot.
        """
        handle = self._dirs[fh]
        path = self._path(handle.inode)
        if handle.listing is None or start_id == 0:
            handle.listing = await self.tree.listdir(path)
        for index in range(start_id, len(handle.listing)):
            name, attrs = handle.listing[index]
            child = join(path, name)
            child_inode = self.inodes.inode_of(child)
            if child_inode is not None:
                attrs = self.files.attrs_of(child_inode) or attrs
            inode = self.inodes.lookup(child)
            entry = self.view.entry(inode, attrs, self._timeout(child, inode))
            if not pyfuse3.readdir_reply(token, os.fsencode(name), entry, index + 1):
                self.inodes.forget(inode, 1)
                return

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        """Directory entries are durable as soon as each call returns; nothing to do."""

    @fuse_errors
    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self._new_child(parent_inode, name)
        await self._ensure_absent(path)
        attrs = self._new_attrs(stat.S_IFDIR | stat.S_IMODE(mode), ctx)
        await self.tree.mkdir(path, attrs)
        return self._entry(path, attrs)

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self._child(parent_inode, name)
        attrs = await self._existing(path)
        if not attrs.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        await self.tree.remove_dir(path, attrs)
        self.inodes.unlink(path)

    # -- names ----------------------------------------------------------------------------

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self._child(parent_inode, name)
        attrs = await self._existing(path)
        if attrs.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        await self.tree.remove_file(path)
        self.inodes.unlink(path)

    @fuse_errors
    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self._new_child(parent_inode, name)
        await self._ensure_absent(path)
        attrs = self._new_attrs(SYMLINK_MODE, ctx)
        await self.tree.symlink(path, os.fsdecode(target), attrs)
        return self._entry(path, attrs)

    @fuse_errors
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        """Regular files, FIFOs, sockets and devices: an empty object with the type in its mode
        (s3fs's way).  The kernel itself serves opens of FIFOs, sockets and devices; they never
        reach :meth:`open`."""
        path = self._new_child(parent_inode, name)
        await self._ensure_absent(path)
        kind = stat.S_IFMT(mode) or stat.S_IFREG
        if kind not in _MKNOD_TYPES:
            raise pyfuse3.FUSEError(errno.EINVAL)
        attrs = self._new_attrs(kind | stat.S_IMODE(mode), ctx)
        if kind in (stat.S_IFCHR, stat.S_IFBLK):
            attrs.rdev = rdev
        await self.tree.mknod(path, attrs)
        return self._entry(path, attrs)

    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        """Objects cannot share data: no hard links (as s3fs)."""
        raise pyfuse3.FUSEError(errno.ENOTSUP)

    @fuse_errors
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old = self._child(parent_inode_old, name_old)
        new = self._new_child(parent_inode_new, name_new)
        attrs = await self.tree.exact(old, await self._existing(old))
        target = await self._attrs(new)
        if flags & pyfuse3.RENAME_NOREPLACE and target is not None:
            raise pyfuse3.FUSEError(errno.EEXIST)
        if old == new:
            return
        if new.startswith(old + "/"):
            raise pyfuse3.FUSEError(errno.EINVAL)
        inode = self.inodes.inode_of(old)
        open_file = self.files.file_of(inode) if inode is not None else None
        # Land open files' data under the old names first (an upload in progress targets the
        # old key); the server-side copies then move it.
        moved = [open_file] if open_file is not None else []
        if attrs.is_dir:
            moved += self.files.open_under(old)
        for file in moved:
            await self.files.upload(file)
        if target is not None and not target.is_dir and not attrs.is_dir:
            # The file being replaced stops owning its name before the copy lands there:
            # its readers get ESTALE, never the bytes of the file that replaces it.
            self.inodes.unlink(new)
        await self.tree.rename(old, new, dataclasses.replace(attrs))
        self.inodes.rename(old, new)
        for file in moved:
            self.files.renamed(file)
        if open_file is not None:
            open_file.attrs.ctime_ns = time.time_ns()

    # -- attributes -----------------------------------------------------------------------

    @fuse_errors
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: int | None, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self._path(inode)
        current = await self._existing(path, inode)
        if inode == ROOT_INODE:  # the mountpoint has no object: kept for the mount's life
            self._set_times_and_owner(self.view.root, attr, fields)
            return self.view.entry(inode, self.view.root)
        if fields.update_size:
            if current.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            await self._truncate(inode, current, attr.st_size)
            current = await self._existing(path, inode)
        meta_changed = any((fields.update_mode, fields.update_uid, fields.update_gid,
                            fields.update_mtime, fields.update_atime))
        if not meta_changed:
            return self.view.entry(inode, current, self._timeout(path, inode))
        current = await self.tree.exact(path, current)
        new = dataclasses.replace(current)
        self._set_times_and_owner(new, attr, fields)
        await self._store_attrs(inode, path, new)
        return self.view.entry(inode, new, self._timeout(path, inode))

    async def _store_attrs(self, inode: int, path: str, new: ObjectAttrs) -> None:
        """New metadata: an open, dirty file takes it with its upload; else it is stored now."""
        open_file = self.files.file_of(inode)
        if open_file is None or not await self.files.set_attrs(open_file, new):
            await self.tree.put_attrs(path, dataclasses.replace(new))

    @staticmethod
    def _set_times_and_owner(attrs: ObjectAttrs, attr: pyfuse3.EntryAttributes,
                             fields: pyfuse3.SetattrFields) -> None:
        """chmod/chown/utimensat as s3fs 1.97 keeps them: exactly the fields asked for (the
        kernel has resolved UTIME_NOW and left out UTIME_OMIT), and ctime now."""
        if fields.update_mode:
            attrs.mode = stat.S_IFMT(attrs.mode) | stat.S_IMODE(attr.st_mode)
        if fields.update_uid:
            attrs.uid = attr.st_uid
        if fields.update_gid:
            attrs.gid = attr.st_gid
        if fields.update_mtime:
            attrs.mtime_ns = attr.st_mtime_ns
        if fields.update_atime:
            attrs.atime_ns = attr.st_atime_ns
        attrs.ctime_ns = time.time_ns()

    async def _truncate(self, inode: int, attrs: ObjectAttrs, size: int) -> None:
        open_file = self.files.file_of(inode)
        if open_file is not None:
            await self.files.truncate(open_file, size)
            return
        fh = self.files.open(inode, attrs)
        try:
            await self.files.truncate(self.files.handle(fh).file, size)
        finally:
            await self.files.release(fh)

    # -- extended attributes (use_xattr) --------------------------------------------------
    #
    # Without use_xattr every call answers ENOSYS, which the kernel turns into EOPNOTSUPP and
    # remembers, never asking again: what s3fs answers without the option.  With it, reads
    # come from the attributes already known (an open file's, or the stat cache), so the
    # security.capability lookup the kernel makes before every write costs no request.

    async def _xattrs_of(self, inode: int) -> dict[str, bytes]:
        if not self.use_xattr:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        path = self._path(inode)
        attrs = await self._existing(path, inode)
        if attrs.from_listing and path:
            attrs = await self.tree.exact(path, attrs)
        return attrs.xattrs or {}

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        value = (await self._xattrs_of(inode)).get(os.fsdecode(name))
        if value is None:
            raise pyfuse3.FUSEError(errno.ENODATA)
        return value

    @fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return [os.fsencode(name) for name in sorted(await self._xattrs_of(inode))]

    @fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        """XATTR_CREATE / XATTR_REPLACE are checked by pyfuse3 through :meth:`getxattr`."""
        await self._change_xattrs(inode, os.fsdecode(name), bytes(value))

    @fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self._change_xattrs(inode, os.fsdecode(name), None)

    async def _change_xattrs(self, inode: int, name: str, value: bytes | None) -> None:
        """One attribute set (``value``) or removed (None): the whole header is rewritten with
        the metadata (a self-copy, a marker, or the open file's upload); ctime only changes."""
        if not self.use_xattr:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        path = self._path(inode)
        current = await self._existing(path, inode)
        if inode == ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTSUP)  # the mountpoint has no object to hold them
        current = await self.tree.exact(path, current)
        xattrs = dict(current.xattrs or {})
        if value is None:
            if name not in xattrs:
                raise pyfuse3.FUSEError(errno.ENODATA)
            del xattrs[name]
        else:
            xattrs[name] = value
        new = dataclasses.replace(current, xattrs=xattrs or None, ctime_ns=time.time_ns())
        await self._store_attrs(inode, path, new)

    # -- files ----------------------------------------------------------------------------

    @fuse_errors
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        path = self._new_child(parent_inode, name)
        existing = await self._attrs(path)
        if existing is not None and existing.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        self.inodes.unlink(path)
        self.tree.invalidate(path)
        attrs = self._new_attrs(stat.S_IFREG | stat.S_IMODE(mode), ctx)
        inode = self.inodes.lookup(path)
        fh = await self.files.new_file(inode, attrs)
        self._cached_etags.pop(inode, None)
        await self.tree.touch_parent(path)
        return pyfuse3.FileInfo(fh=fh, keep_cache=False, direct_io=self.direct_io), self.view.entry(inode, self.files.attrs_of(inode) or attrs)

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        path = self._path(inode)
        attrs = await self._existing(path, inode)
        if attrs.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        fh = self.files.open(inode, attrs)
        if flags & os.O_TRUNC and flags & (os.O_WRONLY | os.O_RDWR):
            await self.files.truncate(self.files.handle(fh).file, 0)
        # The kernel may keep this file's cached pages only if they came from the same object
        # version: the same size and mtime do not prove the content unchanged (s3fs rewrites).
        open_file = self.files.handle(fh).file
        keep = attrs.etag is not None and self._cached_etags.get(inode) == attrs.etag and not open_file.dirty
        self._cached_etags[inode] = attrs.etag if not open_file.dirty else None
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep, direct_io=self.direct_io)

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        return await self.files.read(fh, off, size)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.files.write(fh, off, buf)

    @fuse_errors
    async def flush(self, fh: int) -> None:
        await self.files.upload(self.files.handle(fh).file)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.files.upload(self.files.handle(fh).file)

    @fuse_errors
    async def release(self, fh: int) -> None:
        await self.files.release(fh)
