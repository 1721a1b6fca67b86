"""Reads of objects nobody on this mount writes: sequential prefetch, small direct ranges.

Each read handle has a :class:`ReadStream`.  A reader that starts at offset 0, or keeps reading
where it stopped, is *sequential*: several ranged GETs (chunks) are kept in flight ahead of
it, in a window growing from one chunk to :data:`WINDOW_MAX` as it consumes them, and its reads
are served from completed chunks.  Chunks start at :data:`CHUNK` bytes (the first read waits
for the whole first chunk) and grow with the window to half of it, up to :data:`CHUNK_MAX`:
fewer requests than s3fs's 10 MiB ranges, and a full window still has four in flight.  Any
other reader is *random*: without a cache file each read is one small ranged GET (at least
:data:`DIRECT_MIN`); with one, see below.

Prefetched bytes are bounded for the whole mount by a :class:`ByteBudget`: a chunk is only
requested when the budget has room, and a sequential reader that finds none reads directly
(ranges of :data:`DIRECT_SEQUENTIAL`) until room comes back.  Chunk GETs run as tasks of the
mount's background nursery (the one that runs part uploads), at most :data:`MAX_REQUESTS` at
once (fewer with a small ``max_thread_count``: two threads stay for other requests), and a
failed chunk is reported to the reader that needs it, never to the nursery.

With a :class:`~ocifs.data.datacache.DataCache`, a stream first looks in its object version's cache
file: ranges held there are read locally.  A random reader's first miss fetches the aligned
:data:`~ocifs.data.fill.MISS` around it into the cache file and, when the object fits the
cache's budget, starts its background :class:`~ocifs.data.fill.Fill`; an object too big for it
is read in aligned blocks (:data:`~ocifs.data.datacache.BLOCK`) kept there.  In the persistent
mode prefetched chunks are kept there too.
"""

from __future__ import annotations

import dataclasses
import errno
import logging

import trio

from ocifs.data.datacache import BLOCK, CacheEntry, DataCache, same_etag
from ocifs.data.fill import MISS, Fill, ObjectChanged, Timings
from ocifs.s3.errors import StoreError
from ocifs.s3.store import ObjectStore
from ocifs.tasks import Background
from ocifs.units import KiB, MiB

log = logging.getLogger(__name__)

CHUNK = 8 * MiB
CHUNK_MAX = 16 * MiB
WINDOW_MAX = 64 * MiB
BUDGET = 128 * MiB          # prefetched bytes held or in flight, all handles together
MAX_REQUESTS = 8            # chunk GETs in flight, all handles together (see Prefetcher)
SLACK = 2 * MiB             # how far from where it stopped a read still counts as sequential
DIRECT_MIN = 128 * KiB      # smallest direct range (one kernel readahead unit)
DIRECT_SEQUENTIAL = 1 * MiB  # direct range of a sequential reader the budget turned away


class ByteBudget:
    """Bytes the prefetcher may hold: ``used`` of ``capacity`` (chunks held or in flight)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.capacity:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        self.used -= size
        assert self.used >= 0


@dataclasses.dataclass(eq=False)
class Chunk:
    """Bytes ``[start, end)`` of an object, fetched ahead of a reader.

    ``done`` is set once ``data`` or ``error`` is there.  ``dropped`` says no reader wants it
    any more: its budget is given back as soon as it is not in flight.
    """

    start: int
    end: int
    data: bytes | None = None
    etag: str | None = None
    error: StoreError | None = None
    dropped: bool = False
    done: trio.Event = dataclasses.field(default_factory=trio.Event)


class Prefetcher:
    """What every :class:`ReadStream` of the mount shares: the store, the byte budget, the
    limit on chunk requests in flight (``request_limiter``: chunk GETs also take one of the
    store's threads, so two of those are always left to other requests), the mount's
    ``background`` tasks the chunk fetches run in (while it is not running, reads are all
    direct), and the data cache (``None``: none).

    ``fills`` are the background fills of the cache entries in use (:mod:`ocifs.data.fill`;
    None: the entry's object did not fit the cache's budget), ``timings`` what their readers
    measured."""

    def __init__(self, store: ObjectStore, budget: int = BUDGET,
                 max_requests: int = MAX_REQUESTS, cache: DataCache | None = None,
                 background: Background | None = None) -> None:
        self.store = store
        self.cache = cache
        self.budget = ByteBudget(budget)
        threads = int(store.limiter.total_tokens)
        self.request_limiter = trio.CapacityLimiter(max(1, min(max_requests, threads - 2)))
        self.background = background or Background()
        self.fills: dict[CacheEntry, Fill | None] = {}
        self.timings = Timings()

    def stream(self, key: str, size: int, etag: str | None = None) -> "ReadStream":
        """A stream of reads of ``key`` as it was when opened: ``etag`` (if known) picks the
        cache file and is the version every GET must answer with (None: the first GET's)."""
        entry = self.cache.acquire(key, etag, size) if self.cache is not None else None
        return ReadStream(self, key, size, entry, etag)

    def new_fill(self, entry: CacheEntry, key: str) -> Fill | None:
        """A fill of ``entry`` (not started yet) when the rest of its object fits the data
        cache's budget, else None; asked once per use of the entry (see :meth:`end_fill`)."""
        fill = None
        if self.cache is not None and self.background.active and self.cache.reserve(entry):
            fill = Fill(self.cache, entry, self.store, key, self.request_limiter, self.timings)
        else:
            log.debug("%s (%d bytes) is read at random without a fill: it does not fit the "
                      "data cache's budget", key, entry.size)
        self.fills[entry] = fill
        return fill

    def end_fill(self, entry: CacheEntry) -> None:
        """The last stream using ``entry`` stops: so does its fill."""
        fill = self.fills.pop(entry, None)
        if fill is not None:
            fill.stop()

    def stop(self) -> None:
        """The mount stops serving: every fill stops."""
        for entry in list(self.fills):
            self.end_fill(entry)


class ReadStream:
    """One handle's reads of the object ``key`` of ``size`` bytes.

    ``chunks`` are the prefetched ranges in offset order (held or in flight), ``ahead`` the end
    of the last one requested; ``window`` how far ahead of the reader chunks are requested.
    ``next_offset`` is where the last read ended and ``streak`` how many reads in a row were
    sequential.  ``direct``/``direct_start`` keep the last direct range (the kernel often reads
    the rest of it next).  ``entry`` is the object version's cache file, if any.

    ``etag`` is the version the stream reads: every GET must answer with it (the first GET
    sets it when it was not known), else :class:`ObjectChanged` (EIO) is raised and nothing
    of that answer is used.  Ranged GETs of an object replaced meanwhile would otherwise mix
    two versions in one file, silently, and also with the pages of the old version the
    kernel kept.
    """

    def __init__(self, prefetcher: Prefetcher, key: str, size: int,
                 entry: CacheEntry | None = None, etag: str | None = None) -> None:
        self.prefetcher = prefetcher
        self.key = key
        self.size = size
        self.entry = entry
        self.etag = etag
        self.chunks: list[Chunk] = []
        self.ahead = 0
        self.window = CHUNK
        self.next_offset = 0
        self.streak = 0
        self.direct = b""
        self.direct_start = 0
        self.closed = False

    # -- reads ----------------------------------------------------------------------------

    async def read(self, offset: int, size: int) -> bytes | memoryview:
        """Bytes ``[offset, offset+size)`` (fewer at the end).  A read served by one chunk is
        a view of it, not a copy: pyfuse3 replies from any buffer, and a copy per read cost
        about 5% of a sequential read's CPU."""
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        sequential = self._is_sequential(offset)
        self.streak = self.streak + 1 if sequential else 0
        self.next_offset = end
        if sequential and (offset == 0 or self.streak >= 2):
            self._drop_behind(offset)
            self._fill_window(offset)
        elif not sequential:
            self._drop_all()
        if self.entry is not None:
            fill = self.prefetcher.fills.get(self.entry)
            if fill is not None:
                fill.note(offset)
            cached = self.entry.read(offset, end)
            if cached is not None:
                return cached
        pieces: list[bytes | memoryview] = []
        position = offset
        while position < end:
            chunk = self._chunk_at(position)
            if chunk is None:
                pieces.append(await self._read_direct(position, end, sequential))
                break
            await chunk.done.wait()
            if chunk.error is not None:
                if chunk in self.chunks:  # forgotten: the next read asks the store again
                    self.chunks.remove(chunk)
                    self._drop(chunk)
                raise chunk.error
            if chunk.data is None:  # dropped meanwhile by a concurrent read that jumped away
                pieces.append(await self._read_direct(position, end, sequential))
                break
            stop = min(end, chunk.end)
            pieces.append(memoryview(chunk.data)[position - chunk.start:stop - chunk.start])
            position = stop
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _is_sequential(self, offset: int) -> bool:
        if offset == 0 or self._chunk_at(offset) is not None:
            return True
        return self.next_offset > 0 and abs(offset - self.next_offset) <= SLACK

    def _chunk_at(self, offset: int) -> Chunk | None:
        for chunk in self.chunks:
            if chunk.start <= offset < chunk.end:
                return chunk
        return None

    async def _read_direct(self, start: int, end: int, sequential: bool) -> bytes:
        if self.direct_start <= start and end <= self.direct_start + len(self.direct):
            return self.direct[start - self.direct_start:end - self.direct_start]
        entry = self.entry
        if entry is not None and not entry.stale and not sequential:
            return await self._read_random(entry, start, end)
        length = max(end - start, DIRECT_SEQUENTIAL if sequential else DIRECT_MIN)
        length = min(length, self.size - start)
        data, etag = await self.prefetcher.store.get_range_tagged(self.key, start, length)
        self._check_version(etag)
        if sequential:
            self._keep(start, data, etag, sequential=True)
        self.direct, self.direct_start = data, start
        return data[:end - start]

    async def _read_random(self, entry: CacheEntry, start: int, end: int) -> bytes:
        """A random reader's miss.  The first one is answered by a small GET, after which
        the rest of the object is filled in the background when it fits the cache; while it
        fills, a miss waits for the fill range covering it or sends its own small GET,
        whichever should be sooner.  A file too big for the cache is read in aligned
        :data:`BLOCK`s kept in the cache file (evicted as the disk needs)."""
        prefetcher = self.prefetcher
        if entry not in prefetcher.fills:
            fill = prefetcher.new_fill(entry, self.key)
            if fill is not None:
                fill.note(start)
                try:
                    data = await self._get_aligned(start, end, MISS)
                except BaseException:
                    fill.stop()
                    raise
                fill.start(prefetcher.background)  # after the first answer: latency first
                return data
        fill = prefetcher.fills.get(entry)
        if fill is not None and fill.active:
            got = await fill.wait_for(start, end)
            if got is not None:
                return got
            return await self._get_aligned(start, end, MISS)
        return await self._get_aligned(start, end, BLOCK)

    async def _get_aligned(self, start: int, end: int, unit: int) -> bytes:
        """The aligned ``unit``s around ``[start, end)`` in one GET, kept in the cache file."""
        first = start - start % unit
        last = min(self.size, -(-end // unit) * unit)
        began = trio.current_time()
        data, etag = await self.prefetcher.store.get_range_tagged(self.key, first, last - first)
        if unit == MISS:
            self.prefetcher.timings.note_miss(trio.current_time() - began)
        self._check_version(etag)
        self._keep(first, data, etag)
        self.direct, self.direct_start = data, first
        return data[start - first:end - first]

    def _check_version(self, etag: str | None) -> None:
        """Refuse an answer from another version than the stream's (see the class docstring)."""
        if etag is None:
            return
        if self.etag is None:
            self.etag = etag
        elif not same_etag(etag, self.etag):
            raise ObjectChanged(self.key, self.etag, etag)

    def _keep(self, start: int, data: bytes, etag: str | None, sequential: bool = False) -> None:
        """Put fetched bytes in the cache file (a sequential reader's only when the cache is
        persistent: otherwise the kernel's page cache is copy enough)."""
        cache, entry = self.prefetcher.cache, self.entry
        if cache is None or entry is None or self.closed:
            return
        if sequential and not cache.caches_sequential:
            return
        cache.store(entry, start, data, etag)

    # -- prefetch -------------------------------------------------------------------------

    def _fill_window(self, offset: int) -> None:
        """Request chunks up to ``window`` bytes past ``offset``, as the budget allows."""
        prefetcher = self.prefetcher
        if not prefetcher.background.active or self.closed:
            return
        if not self.chunks or self.ahead < offset:
            self.ahead = offset
        target = min(self.size, offset + self.window)
        while self.ahead < target:
            length = min(max(CHUNK, min(CHUNK_MAX, self.window // 2)), self.size - self.ahead)
            if self.entry is not None and self.entry.ranges.covers(self.ahead, self.ahead + length):
                self.ahead += length  # already in the cache file
                continue
            if not prefetcher.budget.take(length):
                break
            chunk = Chunk(self.ahead, self.ahead + length)
            self.chunks.append(chunk)
            self.ahead = chunk.end
            prefetcher.background.start_soon(self._fetch, chunk)

    async def _fetch(self, chunk: Chunk) -> None:
        prefetcher = self.prefetcher
        try:
            async with prefetcher.request_limiter:
                if not chunk.dropped:
                    chunk.data, chunk.etag = await prefetcher.store.get_range_tagged(
                        self.key, chunk.start, chunk.end - chunk.start)
                    self._check_version(chunk.etag)
                    if len(chunk.data) != chunk.end - chunk.start:
                        raise StoreError(errno.EIO, f"GET {self.key}: short read (object changed?)")
                    self._keep(chunk.start, chunk.data, chunk.etag, sequential=True)
        except StoreError as exc:
            chunk.error = exc
        except Exception as exc:  # noqa: BLE001 - a failed chunk must never stop the mount
            log.exception("prefetching %s failed", self.key)
            chunk.error = StoreError(errno.EIO, f"GET {self.key}: {exc}")
        finally:
            chunk.done.set()
            if chunk.dropped:
                chunk.data = None
                prefetcher.budget.give_back(chunk.end - chunk.start)

    def _drop(self, chunk: Chunk) -> None:
        chunk.dropped = True
        if chunk.done.is_set():
            chunk.data = None
            self.prefetcher.budget.give_back(chunk.end - chunk.start)
        # else: _fetch gives the budget back when the request ends

    def _drop_behind(self, offset: int) -> None:
        """Forget chunks the reader is done with; each one consumed widens the window."""
        keep = []
        for chunk in self.chunks:
            if chunk.end <= offset - SLACK:
                self._drop(chunk)
                self.window = min(self.window * 2, WINDOW_MAX)
            else:
                keep.append(chunk)
        self.chunks = keep

    def _drop_all(self) -> None:
        for chunk in self.chunks:
            self._drop(chunk)
        self.chunks = []
        self.window = CHUNK

    def close(self) -> None:
        """The handle is released: give everything back (chunks in flight when they end)."""
        self.closed = True
        self._drop_all()
        self.direct = b""
        if self.entry is not None and self.prefetcher.cache is not None:
            if self.entry.users == 1:
                self.prefetcher.end_fill(self.entry)
            self.prefetcher.cache.release(self.entry)
            self.entry = None
