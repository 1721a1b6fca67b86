"""A set of byte ranges: which bytes of a staged file changed since its object was stored
(writes add ranges, a truncate cuts them), or which bytes a cache file holds.

Ranges are kept sorted, disjoint and not touching (adjacent ranges merge), so the upload
planner sees each changed run once and a cache lookup is one bisection.
"""

from __future__ import annotations

import bisect
from typing import Iterator


class ByteRanges:
    """Sorted, disjoint half-open ranges ``[start, end)``; ``starts``/``ends`` hold them."""

    def __init__(self, ranges: list[tuple[int, int]] | None = None) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        for start, end in ranges or []:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        """Bytes ``[start, end)`` changed (empty ranges are ignored)."""
        if end <= start:
            return
        # Every range touching [start, end) merges into one.
        first = bisect.bisect_left(self.ends, start)
        last = bisect.bisect_right(self.starts, end)
        if first < last:
            start = min(start, self.starts[first])
            end = max(end, self.ends[last - 1])
        self.starts[first:last] = [start]
        self.ends[first:last] = [end]

    def update(self, other: "ByteRanges") -> None:
        for start, end in other:
            self.add(start, end)

    def cut(self, size: int) -> None:
        """Forget every byte at or past ``size`` (the file was truncated)."""
        index = bisect.bisect_left(self.ends, size)
        del self.starts[index + 1:], self.ends[index + 1:]
        if index < len(self.starts):
            if self.starts[index] >= size:
                del self.starts[index], self.ends[index]
            else:
                self.ends[index] = size

    def covers(self, start: int, end: int) -> bool:
        """Whether every byte of ``[start, end)`` is in the set (an empty range always is)."""
        if start >= end:
            return True
        index = bisect.bisect_right(self.starts, start) - 1
        return index >= 0 and self.ends[index] >= end

    def as_list(self) -> list[tuple[int, int]]:
        return list(self)

    def overlaps(self, start: int, end: int) -> bool:
        """Whether any byte of ``[start, end)`` is in the set."""
        index = bisect.bisect_right(self.ends, start)
        return index < len(self.starts) and self.starts[index] < end

    def within(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """The ranges clipped to ``[start, end)``, in order."""
        index = bisect.bisect_right(self.ends, start)
        while index < len(self.starts) and self.starts[index] < end:
            yield max(self.starts[index], start), min(self.ends[index], end)
            index += 1

    def copy(self) -> "ByteRanges":
        clone = ByteRanges()
        clone.starts, clone.ends = list(self.starts), list(self.ends)
        return clone

    def clear(self) -> None:
        self.starts.clear()
        self.ends.clear()

    def total(self) -> int:
        return sum(self.ends) - sum(self.starts)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self.starts, self.ends))

    def __bool__(self) -> bool:
        return bool(self.starts)

    def __repr__(self) -> str:
        return f"ByteRanges({list(self)})"
