"""Counting what runs at once, for tests of bounds on threads and requests in flight."""

from __future__ import annotations

import threading


class InFlight:
    """``with counter:`` around each call: :attr:`most` is the most ever inside at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> "InFlight":
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1
