"""Background fill: the rest of an object copied into its cache file while it is read at random.

A random reader's first miss is answered by one small aligned GET (:data:`MISS` bytes, the
lowest latency a request has).  When the rest of the object fits the data cache's budget
(:meth:`~ocifs.data.datacache.DataCache.reserve`: the free disk above ``ensure_diskfree``,
less what other fills reserved), a :class:`Fill` then fetches it in the background, in ranges
of :data:`FILL_RANGE` bytes, :data:`FILL_WORKERS` at once, the ones nearest to the last read
first, into the object version's sparse cache file; once it is done every read is local.

Meanwhile a read that misses waits for the fill only when the range covering it is in flight
and should land sooner than the reader's own GET would (:meth:`Fill.wait_for`, from the
moving averages in :class:`Timings`); otherwise it sends its own small GET.

Bounds: fill GETs take the prefetcher's request limiter and hold it until their bytes are on
disk; each streams its range into the cache file (:meth:`ObjectStore.get_range_into`), so the
memory they hold is at most the limiter's size times one streamed chunk for the whole mount;
the disk they use was reserved before the fill began.  Every GET's ETag must be the
entry's: another version stops the fill, marks the entry stale and fails the readers waiting
for it (:class:`ObjectChanged`).  A fill runs in the mount's background nursery and is
stopped (:meth:`Fill.stop`) when the last handle using the entry is released and at unmount.
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import logging
import os

import trio

from ocifs.data.datacache import CacheEntry, DataCache
from ocifs.s3.errors import StoreError, VersionChanged
from ocifs.s3.store import ObjectStore
from ocifs.tasks import Background
from ocifs.units import KiB, MiB

log = logging.getLogger(__name__)

MISS = 128 * KiB       # a random reader's own GET (aligned) for a file that is being filled
FILL_RANGE = 16 * MiB  # each background GET of a fill (streamed: 1 MiB in memory at a time)
FILL_WORKERS = 4       # GETs in flight per fill (the prefetcher's limiter bounds all of them)
_WEIGHT = 0.3          # of a new sample in the moving averages


class ObjectChanged(StoreError):
    """A GET answered with another version of the object than the one being read."""

    def __init__(self, key: str, expected: str, got: str) -> None:
        super().__init__(errno.EIO, f"GET {key}: the object changed since it was opened "
                                    f"(ETag {got}, was {expected}); open it again to read it",
                         "ObjectChanged")


@dataclasses.dataclass
class Timings:
    """Moving averages (seconds) of a reader's own GET (``miss``) and of one fill range, GET
    and write (``fill``), for the mount: None until measured."""

    miss: float | None = None
    fill: float | None = None

    @staticmethod
    def _mix(old: float | None, new: float) -> float:
        return new if old is None else old + _WEIGHT * (new - old)

    def note_miss(self, seconds: float) -> None:
        self.miss = self._mix(self.miss, seconds)

    def note_fill(self, seconds: float) -> None:
        self.fill = self._mix(self.fill, seconds)


@dataclasses.dataclass(eq=False)
class InFlight:
    """A fill range being fetched: since ``started``; ``done`` once it is written (or failed)."""

    started: float
    done: trio.Event = dataclasses.field(default_factory=trio.Event)


class Fill:
    """Copies the parts of ``entry``'s object it lacks into its cache file (see the module).

    ``todo`` are the indexes of the :data:`FILL_RANGE` ranges not yet asked for, sorted;
    ``in_flight`` those being fetched; ``hint`` the range of the last read.  ``error`` is what
    stopped it early (None: it ran to the end, or was stopped).  The fill writes through a
    descriptor of its own, so that a write still running in a worker thread never meets a
    descriptor the cache closed and reused.
    """

    def __init__(self, cache: DataCache, entry: CacheEntry, store: ObjectStore, key: str,
                 limiter: trio.CapacityLimiter, timings: Timings) -> None:
        self.cache = cache
        self.entry = entry
        self.store = store
        self.key = key
        self.limiter = limiter
        self.timings = timings
        self.todo = [i for i in range(-(-entry.size // FILL_RANGE)) if not self._held(i)]
        self.in_flight: dict[int, InFlight] = {}
        self.hint = 0
        self.error: StoreError | None = None
        self.started = False
        self.ended = False
        self._scope = trio.CancelScope()
        self._fd = os.dup(entry.fd)

    def _bounds(self, index: int) -> tuple[int, int]:
        start = index * FILL_RANGE
        return start, min(self.entry.size, start + FILL_RANGE)

    def _held(self, index: int) -> bool:
        return self.entry.ranges.covers(*self._bounds(index))

    @property
    def active(self) -> bool:
        return not self.ended

    def note(self, offset: int) -> None:
        """A read at ``offset``: the fill continues nearest to it."""
        self.hint = offset // FILL_RANGE

    # -- running --------------------------------------------------------------------------

    def start(self, background: Background) -> None:
        """Run in ``background`` (the mount's nursery)."""
        if self.ended:
            return
        self.started = True
        background.start_soon(self.run)

    def stop(self) -> None:
        """No more GETs: the entry is released or the mount stops.  A GET in flight is
        abandoned (its answer is dropped); a write in flight ends first.  The list of ranges
        to do is emptied too: a worker resuming from the limiter's (shielded) checkpoint
        would otherwise start one more GET before it meets the cancellation."""
        self.todo = []
        self._scope.cancel()
        if not self.started:
            self._end()

    async def run(self) -> None:
        workers = max(1, min(FILL_WORKERS, int(self.limiter.total_tokens)))
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    for _ in range(workers):
                        nursery.start_soon(self._worker)
        except Exception:  # noqa: BLE001 - a failed fill must never stop the mount
            log.exception("filling the cache file of %s failed", self.key)
        finally:
            if self.error is None and not self._scope.cancel_called and not self.todo:
                log.info("filled the cache file of %s (%d bytes)", self.key, self.entry.size)
            elif self.error is None:
                log.info("stopped filling the cache file of %s (%d of %d bytes held)",
                         self.key, self.entry.ranges.total(), self.entry.size)
            self._end()

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.todo = []
        for flight in self.in_flight.values():
            flight.done.set()
        self.cache.fill_ended(self.entry)
        os.close(self._fd)

    def _next(self) -> int | None:
        """The range not yet asked for nearest to :attr:`hint` (ahead of it on a tie); None
        when all are done.  Ranges a reader's own GETs filled meanwhile are skipped."""
        while self.todo:
            i = bisect.bisect_left(self.todo, self.hint)
            if i == len(self.todo) or (i > 0 and self.hint - self.todo[i - 1] < self.todo[i] - self.hint):
                i -= 1
            index = self.todo.pop(i)
            if not self._held(index):
                return index
        return None

    def _stop_with(self, error: StoreError) -> None:
        if self.error is None:
            self.error = error
        self.todo = []
        self._scope.cancel()

    async def _worker(self) -> None:
        while True:
            async with self.limiter:
                index = self._next()
                if index is None:
                    return
                start, end = self._bounds(index)
                flight = self.in_flight[index] = InFlight(trio.current_time())
                try:
                    await self._fetch(start, end, flight.started)
                except StoreError as exc:
                    log.info("stopped filling the cache file of %s: %s", self.key, exc)
                    self._stop_with(exc)
                    return
                finally:
                    del self.in_flight[index]
                    flight.done.set()

    async def _fetch(self, start: int, end: int, started: float) -> None:
        """One fill range, streamed into the cache file; its bytes count as held once all
        of them are there."""
        entry = self.entry
        if not self.cache.make_room(end - start, entry):
            raise StoreError(errno.ENOSPC, "no room left above ensure_diskfree")
        try:
            written = await self.store.get_range_into(self.key, start, end - start, self._fd,
                                                      entry.etag)
        except VersionChanged as exc:
            entry.stale = True
            raise ObjectChanged(self.key, entry.etag, exc.got) from None
        if written != end - start:
            raise StoreError(errno.EIO, f"GET {self.key}: short read (object changed?)")
        self.cache.added(entry, start, written)
        self.timings.note_fill(trio.current_time() - started)

    # -- readers --------------------------------------------------------------------------

    async def wait_for(self, start: int, end: int) -> bytes | None:
        """Bytes ``[start, end)`` once the fill ranges in flight that cover them are written,
        when that should be sooner than the reader's own GET; None: send that GET.  Raises
        :class:`ObjectChanged` when the fill found another version meanwhile."""
        flights = []
        for index in range(start // FILL_RANGE, (end - 1) // FILL_RANGE + 1):
            lo, hi = self._bounds(index)
            if self.entry.ranges.covers(max(lo, start), min(hi, end)):
                continue
            flight = self.in_flight.get(index)
            if flight is None:
                return None
            flights.append(flight)
        own, fill = self.timings.miss, self.timings.fill
        if flights:
            if own is None or fill is None:
                return None
            now = trio.current_time()
            if max(flight.started + fill - now for flight in flights) > own:
                return None
            for flight in flights:
                await flight.done.wait()
        if isinstance(self.error, ObjectChanged):
            raise self.error
        return self.entry.read(start, end)
