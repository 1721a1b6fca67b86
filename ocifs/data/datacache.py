"""Local copies of object data read from the bucket, bounded by the free space of their disk.

Each object version (key and ETag) read through the mount may have a *cache file*: a sparse
local file holding the byte ranges fetched so far, so that reading them again costs no request.
A random reader's misses are kept in it, and when the rest of the object fits the disk above
``min_free_bytes`` (:meth:`DataCache.reserve`) :mod:`ocifs.data.fill` copies the rest in the
background, so that later reads are local as with s3fs's local copy, without the first read
waiting for a whole download; a bigger object is read in aligned blocks (:data:`BLOCK`).

Two modes, as in s3fs:

* without ``use_cache``: cache files are unlinked temporary files in ``tmpdir``, kept while the
  object is open and holding only what random readers fetched and fills copied (a sequential
  reader's data is not worth a second copy: the kernel's page cache has it);
* with ``use_cache=DIR``: cache files live in ``DIR/ocifs-cache-<bucket tag>/``, hold everything
  read, and survive unmounts.  Each has a sidecar ``.json`` naming its key, ETag, size and the
  ranges it holds; the sidecar is written after the data is synced, so after a crash a cache
  file claims at most what it really holds.

A cache file is only used for the ETag it was filled from: the ETag comes from the attributes
the file was opened with (the stat cache, so a change by another client is noticed within
``stat_cache_expire``), and every GET's ETag is checked against it; a mismatch marks the copy
stale and nothing more is added to it.  The disk is never filled: before data is added, the
least recently used cache files nobody has open are removed until ``min_free_bytes`` would
stay free besides the space fills reserved; when that is not enough the data is served
without being kept.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from ocifs.units import MiB
from ocifs.ranges import ByteRanges
from ocifs.s3.store import same_etag  # noqa: F401 - the data layer's comparison too

log = logging.getLogger(__name__)

BLOCK = 1 * MiB          # what a random reader's miss fetches (aligned)
DEFAULT_FLOOR = 1024 * MiB  # free space kept without ensure_diskfree (at most 10% of the disk)


@dataclasses.dataclass(eq=False)
class CacheEntry:
    """The cache file of one object version.  ``users`` counts the read streams using it;
    ``stale`` says a GET saw another ETag (nothing more is added); ``unsaved`` that ranges
    were added since the sidecar was last written; ``filling`` that a background fill
    (:mod:`ocifs.data.fill`) has the disk space for the rest of it reserved."""

    name: str
    key: str
    etag: str
    size: int
    fd: int
    ranges: ByteRanges
    users: int = 0
    stale: bool = False
    unsaved: bool = False
    filling: bool = False
    reads: list[int] = dataclasses.field(default_factory=lambda: [0, 0])  # [answered, not]


    def missing(self) -> int:
        """Bytes of the object the cache file does not hold yet."""
        return self.size - self.ranges.total()

    def read(self, start: int, end: int) -> bytes | None:
        """Bytes ``[start, end)`` if the cache file holds them all, else None."""
        data = os.pread(self.fd, end - start, start) if self.ranges.covers(start, end) else b""
        if len(data) == end - start:
            self.reads[0] += 1
            return data
        self.reads[1] += 1
        return None


class DataCache:
    """Cache files of one mount (see the module docstring).

    ``directory`` is the persistent cache directory (``None``: temporary files in
    ``temp_dir``), ``min_free_bytes`` the free space always left on its disk.  ``entries``
    are in least-recently-used order; in the persistent mode it also lists, as ``None``,
    cache files on disk that no stream has opened since the mount began.
    """

    def __init__(self, directory: Path | None, min_free_bytes: int | None = None,
                 temp_dir: str | None = None) -> None:
        self.temp_dir = temp_dir
        self._lock: int | None = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            directory = self._lock_dir(directory)
        self.directory = directory
        self.persistent = directory is not None
        where = str(directory) if directory is not None else (temp_dir or tempfile.gettempdir())
        if min_free_bytes is None or min_free_bytes <= 0:
            st = os.statvfs(where)
            min_free_bytes = min(DEFAULT_FLOOR, st.f_blocks * st.f_frsize // 10)
        self.min_free_bytes = min_free_bytes
        # Reads of cache files answered from them and not, every entry's together (shown by
        # ``ocifs status`` and the cache metrics as the "data" cache).
        self.reads = [0, 0]
        self._where = where
        self.entries: collections.OrderedDict[str, CacheEntry | None] = collections.OrderedDict()
        if self.persistent:
            self._index_existing()

    def _lock_dir(self, directory: Path) -> Path | None:
        """Own ``directory`` for this mount (two mounts filling the same cache files would
        corrupt them); when another running mount owns it, cache in temporary files."""
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            log.warning("data cache %s is in use by another mount: this one caches in "
                        "temporary files", directory)
            return None
        self._lock = fd
        return directory

    @property
    def caches_sequential(self) -> bool:
        """Whether sequential readers' data is kept (only in the persistent mode)."""
        return self.persistent

    # -- entries --------------------------------------------------------------------------

    @staticmethod
    def _name(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()

    def _paths(self, name: str) -> tuple[Path, Path]:
        assert self.directory is not None
        return self.directory / f"{name}.data", self.directory / f"{name}.json"

    def _index_existing(self) -> None:
        """Know the cache files an earlier mount left (oldest first, for eviction); remove
        data files without a sidecar (a crash before the first save) and leftovers."""
        assert self.directory is not None
        found = []
        for path in self.directory.iterdir():
            if path.suffix == ".json":
                found.append((path.stat().st_mtime, path.stem))
            elif path.suffix == ".data" and not path.with_suffix(".json").exists():
                path.unlink(missing_ok=True)
            elif path.suffix not in (".data", ".json") and path.name != ".lock":
                path.unlink(missing_ok=True)
        for _, name in sorted(found):
            self.entries[name] = None

    def acquire(self, key: str, etag: str | None, size: int) -> CacheEntry | None:
        """The cache file for this version of ``key`` (created empty if needed), or None when
        the version is unknown (no ETag) or nothing can be stored."""
        if not etag or size <= 0:
            return None
        name = self._name(key)
        entry = self.entries.get(name)
        if entry is None and name in self.entries:
            entry = self._load(name)
        if entry is not None and (not same_etag(entry.etag, etag) or entry.size != size):
            if entry.users > 0:
                return None  # an older version still being read here; don't mix them
            self._remove(name)
            entry = None
        if entry is None:
            try:
                entry = self._create(name, key, etag, size)
            except OSError as exc:
                log.warning("data cache: cannot create a cache file for %s: %s", key, exc)
                return None
        self.entries[name] = entry
        self.entries.move_to_end(name)
        entry.users += 1
        return entry

    def release(self, entry: CacheEntry) -> None:
        """A stream stopped using ``entry``: save it (persistent) or drop it (temporary)."""
        entry.users -= 1
        if entry.users > 0:
            return
        if not self.persistent or entry.stale:
            self._remove(entry.name)
        else:
            self._save(entry)

    def _create(self, name: str, key: str, etag: str, size: int) -> CacheEntry:
        if self.persistent:
            data_path, _ = self._paths(name)
            fd = os.open(data_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        else:
            fd, path = tempfile.mkstemp(dir=self.temp_dir, prefix="ocifs-read-")
            os.unlink(path)
        return CacheEntry(name, key, etag, size, fd, ByteRanges(), reads=self.reads)

    def _load(self, name: str) -> CacheEntry | None:
        data_path, meta_path = self._paths(name)
        try:
            meta = json.loads(meta_path.read_text())
            fd = os.open(data_path, os.O_RDWR | os.O_CLOEXEC)
        except (OSError, ValueError) as exc:
            log.debug("data cache: dropping unreadable cache file %s: %s", name, exc)
            self._remove(name)
            return None
        entry = CacheEntry(name, meta["key"], meta["etag"], meta["size"], fd,
                           ByteRanges([tuple(r) for r in meta["ranges"]]), reads=self.reads)
        self.entries[name] = entry
        return entry

    def _save(self, entry: CacheEntry) -> None:
        """Write the sidecar (after syncing the data it describes)."""
        if not entry.unsaved:
            return
        _, meta_path = self._paths(entry.name)
        try:
            os.fdatasync(entry.fd)
            tmp = meta_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"key": entry.key, "etag": entry.etag, "size": entry.size,
                                       "ranges": entry.ranges.as_list()}))
            os.replace(tmp, meta_path)
            entry.unsaved = False
        except OSError as exc:
            log.warning("data cache: cannot save %s: %s", entry.key, exc)

    def _remove(self, name: str) -> None:
        entry = self.entries.pop(name, None)
        if entry is not None:
            os.close(entry.fd)
        if self.persistent:
            for path in self._paths(name):
                path.unlink(missing_ok=True)

    # -- data -----------------------------------------------------------------------------

    def store(self, entry: CacheEntry, start: int, data: bytes, etag: str | None) -> bool:
        """Keep ``data`` (bytes from ``start``, fetched with ``etag``) in ``entry``'s file;
        False when it is not kept (another version, or no room)."""
        if entry.stale or not data:
            return False
        if etag is not None and not same_etag(etag, entry.etag):
            log.info("data cache: %s changed in the bucket (ETag %s, cached %s); not caching it",
                     entry.key, etag, entry.etag)
            entry.stale = True
            return False
        if entry.ranges.covers(start, start + len(data)):
            return True
        if not self.make_room(len(data), entry):
            return False
        try:
            written = os.pwrite(entry.fd, data, start)
        except OSError as exc:
            log.warning("data cache: cannot write %s: %s", entry.key, exc)
            return False
        self.added(entry, start, written)  # a short write (disk full) claims no more
        return written == len(data)

    def added(self, entry: CacheEntry, start: int, length: int) -> None:
        """``length`` bytes from ``start`` were written to ``entry``'s file (of its version)."""
        if length > 0 and not entry.stale:
            entry.ranges.add(start, start + length)
            entry.unsaved = True

    # -- fills ----------------------------------------------------------------------------

    def reserved_bytes(self, but: CacheEntry | None = None) -> int:
        """Disk space promised to the fills in progress (of entries other than ``but``)."""
        return sum(entry.missing() for entry in self.entries.values()
                   if entry is not None and entry.filling and entry is not but)

    def reserve(self, entry: CacheEntry) -> bool:
        """Whether the rest of ``entry`` fits on the disk above ``min_free_bytes`` (unused
        cache files are evicted for it): it is then reserved for a fill until
        :meth:`fill_ended`.  This is the data cache's budget for a whole-file copy."""
        if entry.stale or entry.filling:
            return False
        needed = entry.missing()
        evictable = sum(self._disk_bytes(name, other) for name, other in self.entries.items()
                        if other is None or other.users == 0)
        if self.free_bytes() + evictable - needed - self.reserved_bytes(but=entry) \
                < self.min_free_bytes:
            return False  # would not fit even with every unused file gone: evict none
        if not self.make_room(needed, entry):
            return False
        entry.filling = True
        return True

    def fill_ended(self, entry: CacheEntry) -> None:
        entry.filling = False

    def free_bytes(self) -> int:
        st = os.statvfs(self._where)
        return st.f_bavail * st.f_frsize

    def make_room(self, needed: int, entry: CacheEntry | None = None) -> bool:
        """Remove unused cache files (least recently used first) until ``needed`` more bytes
        (for ``entry``) leave ``min_free_bytes`` free besides what fills of other entries
        have reserved; False when that cannot be reached."""
        reserved = self.reserved_bytes(but=entry)
        while self.free_bytes() - needed - reserved < self.min_free_bytes:
            victim = next((name for name, entry in self.entries.items()
                           if entry is None or entry.users == 0), None)
            if victim is None:
                return False
            log.debug("data cache: evicting %s", victim)
            self._remove(victim)
        return True

    def evict_unused(self) -> bool:
        """Remove every cache file nobody has open (the disk is needed for writes); whether
        there was any."""
        victims = [name for name, entry in self.entries.items() if entry is None or entry.users == 0]
        for name in victims:
            self._remove(name)
        return bool(victims)

    def held_bytes(self) -> int:
        """Bytes the cache files hold on disk (allocated blocks)."""
        return sum(self._disk_bytes(name, entry) for name, entry in self.entries.items())

    def _disk_bytes(self, name: str, entry: CacheEntry | None) -> int:
        try:
            if entry is not None:
                return os.fstat(entry.fd).st_blocks * 512
            if self.persistent:
                return self._paths(name)[0].stat().st_blocks * 512
        except OSError:
            pass
        return 0

    def close(self) -> None:
        """Unmount: save what the persistent cache holds, close every file."""
        for name, entry in list(self.entries.items()):
            if entry is None:
                continue
            if self.persistent and not entry.stale:
                self._save(entry)
                os.close(entry.fd)
                self.entries[name] = None
            else:
                self._remove(name)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def cache_dir(use_cache: str, tag: str) -> Path:
    """Where the persistent cache of one bucket lives inside ``use_cache``."""
    return Path(use_cache) / f"ocifs-cache-{tag}"


def delete_cache(use_cache: str, tag: str) -> None:
    """s3fs's ``del_cache``: remove this bucket's cache files (at mount and at unmount)."""
    shutil.rmtree(cache_dir(use_cache, tag), ignore_errors=True)
