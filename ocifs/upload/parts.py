"""Where each part of a multipart upload starts and ends, for files of any size.

S3 and OCI allow at most 10,000 parts of at most 5 GiB, and every part but the last must hold
at least 5 MiB.  A file being written has no known final size, so the layout cannot be chosen
from it; instead part sizes grow with the part number: parts 1..1000 are ``base`` bytes, parts
1001..2000 twice that, and so on (each tier doubles, capped at 5 GiB).  With the default
10 MiB base, 10,000 parts hold about 10 TiB, and a file of up to 10 GB keeps its 10 MiB parts.
The layout only depends on offsets, so a part keeps its byte range whatever is written later.
"""

from __future__ import annotations

import bisect

from ocifs.units import MiB

MIN_PART = 5 * MiB
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
PARTS_PER_TIER = 1000


class PartLayout:
    """Part numbers (1-based) ⇄ byte ranges for parts of ``base`` bytes growing by tiers."""

    def __init__(self, base: int) -> None:
        if not MIN_PART <= base <= MAX_PART:
            raise ValueError(f"part size {base} outside {MIN_PART}..{MAX_PART}")
        self.base = base
        self.tier_sizes = [min(base << tier, MAX_PART) for tier in range(MAX_PARTS // PARTS_PER_TIER)]
        self.tier_starts = [0]
        for size in self.tier_sizes:
            self.tier_starts.append(self.tier_starts[-1] + size * PARTS_PER_TIER)
        self.capacity = self.tier_starts[-1]

    def span(self, part: int) -> tuple[int, int]:
        """``(start, end)`` of ``part`` when the file extends past it."""
        if not 1 <= part <= MAX_PARTS:
            raise ValueError(f"part number {part} outside 1..{MAX_PARTS}")
        tier, index = divmod(part - 1, PARTS_PER_TIER)
        start = self.tier_starts[tier] + index * self.tier_sizes[tier]
        return start, start + self.tier_sizes[tier]

    def part_at(self, offset: int) -> int:
        """The part holding byte ``offset``."""
        if not 0 <= offset < self.capacity:
            raise ValueError(f"offset {offset} beyond what {MAX_PARTS} parts can hold")
        tier = bisect.bisect_right(self.tier_starts, offset) - 1  # (called on every write)
        return tier * PARTS_PER_TIER + (offset - self.tier_starts[tier]) // self.tier_sizes[tier] + 1

    def count(self, size: int) -> int:
        """How many parts a file of ``size`` bytes has (at least one)."""
        return self.part_at(size - 1) if size > 0 else 1

    def parts_touching(self, start: int, end: int) -> range:
        """The parts that hold any byte of ``[start, end)``."""
        if end <= start:
            return range(0)
        return range(self.part_at(start), self.part_at(min(end, self.capacity) - 1) + 1)
