"""What a mount remembers of the bucket's metadata, kept consistent by one call.

Three bounded caches live here and nowhere else: attributes by path (``None`` is a cached "no
such path", the negative cache: only for names actually asked for, never inferred from a
listing, so another client's new object is seen at once), raw directory listings, and subtree
pages on their way to a listing.  A change made through this mount is
one :meth:`MetaCache.changed` call, which updates or drops whatever it affects; the generation it
bumps lets a listing that was asked for before a change be used once but not kept.
"""

from __future__ import annotations

import errno
import posixpath
import time
from typing import Callable, Final

import cachetools
import trio

from ocifs.meta.objects import ObjectAttrs
from ocifs.s3.errors import StoreError

# Listings are kept only this long: long enough for ``ls`` then ``ls -l`` or ``find`` to ask
# once, short enough that another client's new names show at the next listing.
LISTING_EXPIRE_MAX = 1.0
MAX_PAGES = 64  # subtree pages kept for a listing to come (each up to 1,000 keys)
Listing = tuple[list[dict], list[str]]  # (objects, common prefixes), as ListObjectsV2 gives them


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()  # a path changed in a way this mount does not know: ask again


class SharedPage:
    """One subtree page (ListObjectsV2 without delimiter), for every caller that asks for it
    while it is in flight or kept; ``generation`` is the cache's when it was asked for."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.done = trio.Event()
        self.result: tuple[list[dict], bool] | None = None
        self.error: StoreError | None = None

    async def wait(self) -> tuple[list[dict], bool]:
        await self.done.wait()
        if self.error is not None:
            raise StoreError(self.error.errno, str(self.error), self.error.code)
        assert self.result is not None
        return self.result

    def interrupted(self, path: str) -> None:
        """The request was cancelled: whoever waits must not wait forever."""
        self.error = StoreError(errno.EIO, f"LIST {path}/: interrupted")


class _TellingTTLCache(cachetools.TTLCache):
    """A TTLCache that says which key it evicted to make room (cachetools' ``popitem``)."""

    def __init__(self, maxsize: int, ttl: float, evicted: Callable[[str], None]) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl)
        self._evicted = evicted

    def popitem(self) -> tuple[str, object]:
        key, value = super().popitem()
        self._evicted(key)
        return key, value


def _expiring(maxsize: int, ttl: float,
              evicted: Callable[[str], None] | None = None) -> cachetools.Cache:
    """A cache whose entries expire after ``ttl`` seconds (none kept with ``ttl`` 0);
    ``evicted`` is told of each entry dropped early to make room."""
    if ttl <= 0:
        return cachetools.Cache(maxsize=0)
    if evicted is None:
        return cachetools.TTLCache(maxsize=maxsize, ttl=ttl)
    return _TellingTTLCache(maxsize, ttl, evicted)


def _keep(cache: cachetools.Cache, key: str, value: object) -> None:
    """``cache[key] = value``, where a zero-size cache (an expiry of 0) keeps nothing."""
    try:
        cache[key] = value
    except ValueError:  # cachetools: the value is larger than the cache
        pass


def _purge(cache: cachetools.Cache, path: str) -> None:
    cache.pop(path, None)
    for cached in [p for p in list(cache.keys()) if p.startswith(path + "/")]:
        cache.pop(cached, None)


class MetaCache:
    """The metadata caches of one mount.

    Attributes expire after ``stat_expire`` seconds, counted from when they were learned or,
    with ``expire_from_use`` (s3fs's ``stat_cache_interval_expire``), from their last use;
    ``negative`` says whether "no such path" is kept too.  Listings and pages expire after
    ``listing_expire`` (so ``ls`` then ``ls -l``, or a ``find`` walking back up, ask once).
    """

    def __init__(self, stat_expire: float = 900.0, max_stats: int = 100000,
                 listing_expire: float = 1.0, max_listings: int = 1000,
                 negative: bool = True, expire_from_use: bool = False,
                 on_change: Callable[[str], None] | None = None) -> None:
        self._stat_expire = stat_expire
        # path -> (attrs, when it expires).  An entry evicted early (max_stat_cache_size) is
        # also dropped from the kernel, whose timeout was what this entry had left.
        self._stats = _expiring(max_stats, stat_expire, evicted=lambda path: self._on_change(path))
        self._listings = _expiring(max_listings, listing_expire)
        self._pages = _expiring(min(max_listings, MAX_PAGES), listing_expire)
        self._negative = negative
        self._expire_from_use = expire_from_use
        self._generation = 0
        # Lookups answered and not, by cache ("stat", "listing"): read by ``ocifs status``.
        self.hits = {"stat": 0, "listing": 0}
        self.misses = {"stat": 0, "listing": 0}
        # Told of every path whose attributes may now differ from what was shown (the FUSE
        # layer drops the kernel's copy).
        self._on_change: Callable[[str], None] = on_change or (lambda path: None)

    @property
    def generation(self) -> int:
        """Changes made through this mount so far: compare before and after a request to tell
        whether what it answered may predate one."""
        return self._generation

    # -- the one call for a change -------------------------------------------------------

    def changed(self, path: str, attrs: ObjectAttrs | None | _Unknown = UNKNOWN,
                subtree: bool = False) -> None:
        """``path`` was created, removed or replaced through this mount.

        ``attrs`` is what it is now (``None``: gone; :data:`UNKNOWN`: ask the bucket again).
        Its directory's listing is dropped; with ``subtree``, all that was cached below
        ``path`` goes too (a directory removed or renamed).
        """
        self._generation += 1
        self._listings.pop(posixpath.dirname(path), None)
        self._on_change(path)
        if subtree:
            for cache in (self._stats, self._listings):
                _purge(cache, path)
        if attrs is UNKNOWN:
            self._stats.pop(path, None)
        else:
            self.learned(path, attrs)

    # -- attributes ----------------------------------------------------------------------

    def attrs(self, path: str) -> ObjectAttrs | None | _Unknown:
        """What is known of ``path``: its attributes, None (known absent) or UNKNOWN."""
        known = self._stats.get(path)
        if known is None:
            self.misses["stat"] += 1
            return UNKNOWN
        self.hits["stat"] += 1
        if self._expire_from_use:
            self._keep_attrs(path, known[0])  # a TTLCache entry set again starts a new TTL
        return known[0]

    def shown_stale(self, path: str) -> None:
        """What was shown of ``path`` (from a listing) is not what is now known: the
        kernel's copy goes."""
        self._on_change(path)

    def seconds_left(self, path: str) -> float:
        """How long ``path``'s cached attributes stay valid (0: not cached): how long the
        kernel may keep them without showing more than this cache would."""
        known = self._stats.get(path)
        return max(0.0, known[1] - time.monotonic()) if known is not None else 0.0

    def learned(self, path: str, attrs: ObjectAttrs | None) -> None:
        """What the bucket said ``path`` is (or a metadata-only change made here)."""
        before = self._stats.get(path)
        if attrs is None and not self._negative:
            self._stats.pop(path, None)
        else:
            self._keep_attrs(path, attrs)
        if before is not None and before[0] != attrs:
            self._on_change(path)  # what was shown (and may still be, by the kernel) is stale

    def _keep_attrs(self, path: str, attrs: ObjectAttrs | None) -> None:
        _keep(self._stats, path, (attrs, time.monotonic() + self._stat_expire))

    def attrs_count(self) -> int:
        return len(self._stats)

    # -- listings ------------------------------------------------------------------------

    def listing(self, path: str) -> Listing | None:
        listing = self._listings.get(path)
        if listing is None:
            self.misses["listing"] += 1
        else:
            self.hits["listing"] += 1
        return listing

    def keep_listing(self, path: str, listing: Listing, since: int) -> None:
        """Keep directory ``path``'s listing, asked for at generation ``since``, unless a change
        came meanwhile (the listing may predate it)."""
        if since == self._generation:
            _keep(self._listings, path, listing)

    def listings_count(self) -> int:
        return len(self._listings)

    # -- subtree pages -------------------------------------------------------------------

    @property
    def keeps_pages(self) -> bool:
        """Whether a page can be kept for a listing to come (not with ``listing_expire`` 0)."""
        return bool(self._pages.maxsize)

    def page(self, path: str) -> tuple[SharedPage, bool]:
        """The subtree page of ``path`` asked for since the last change, or a new one (and
        True: the caller must fill it)."""
        page = self._pages.get(path)
        if page is not None and page.generation == self._generation and page.error is None:
            return page, False
        page = SharedPage(self._generation)
        _keep(self._pages, path, page)  # with listing_expire 0: not shared
        return page, True

    def page_used(self, path: str) -> None:
        """A listing was made of ``path``'s page: the listing is kept instead."""
        self._pages.pop(path, None)
