"""The mount's background tasks: part uploads, prefetched chunks, lookups' subtree pages.

One :class:`Background` is made with the mount and handed to everything that starts such tasks
when it is made.  Tasks run only while :meth:`Background.running` is entered (the mount enters
it around serving and the final uploads, so those can still use it); outside it, ``active`` is
False and callers do the work inline instead (a store used on its own, unit tests).
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable

import trio


class Background:
    """Owner of the nursery background tasks run in (``None`` while not running)."""

    def __init__(self) -> None:
        self._nursery: trio.Nursery | None = None

    @property
    def active(self) -> bool:
        return self._nursery is not None

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._nursery is None:
            raise RuntimeError("background tasks are not running")
        self._nursery.start_soon(fn, *args)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[trio.Nursery]:
        """Run background tasks until the block ends (its nursery waits for them)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                yield nursery
            finally:
                self._nursery = None
