"""Which parts make a new version of an object: uploaded bytes for what changed, server-side
copies (UploadPartCopy) of what did not.

The object under the key holds bytes ``[0, base)`` of the staged file except in the changed
ranges; everything else must be sent.  The plan covers ``[0, size)`` exactly once, in parts
numbered in byte order, within S3's limits (at most 10,000 parts of at most 5 GiB, every part
but the last at least 5 MiB), re-sending as few unchanged bytes as those limits allow:

* changed runs are uploaded, in pieces of about ``part_size`` (so they go up in parallel);
* unchanged runs are copied in as few parts as 5 GiB allows;
* an unchanged run too short to be a part (< 5 MiB, unless it is the last one) is sent with
  its neighbours; a changed run too short grows to 5 MiB into the unchanged bytes beside it,
  or swallows a neighbour: which copies to keep and how much each gives is chosen to send the
  fewest bytes (exactly, by dynamic programming over the copies, up to ``EXACT_COPIES`` of
  them in a span; beyond, greedily: grow from the side with more to spare, else swallow the
  shorter neighbour).

So an append to an object of at least 5 MiB is one copy of the old object and the new bytes
as the last part, whatever their size; a 4 KiB overwrite in the middle is one 5 MiB upload
between two copies.  Parts a sequential writer already sent (``held``, on the fixed grid of
:class:`~ocifs.upload.parts.PartLayout`) keep their numbers; the bytes between them are planned
the same way in the numbers left free, else on the grid itself.
"""

from __future__ import annotations

import dataclasses

from ocifs.upload.parts import MAX_PART, MAX_PARTS, MIN_PART, PartLayout
from ocifs.ranges import ByteRanges


@dataclasses.dataclass(frozen=True)
class Part:
    """Part ``number`` holds bytes ``[start, end)``: uploaded from the staged file, copied from
    the old object (``copy``), or already in the upload (``held``)."""

    number: int
    start: int
    end: int
    copy: bool = False
    held: bool = False

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclasses.dataclass
class _Run:
    start: int
    end: int
    copy: bool

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_parts(size: int, base: int, changed: ByteRanges, layout: PartLayout,
               held: dict[int, tuple[int, int]] | None = None) -> list[Part]:
    """The parts of a ``size``-byte object (``size`` > 0) whose bytes ``[0, base)`` are in the
    bucket except ``changed``; ``held`` maps part numbers already uploaded to their ranges (grid
    parts, still good).  ``base`` 0 means nothing can be copied."""
    if size <= 0:
        raise ValueError("an empty object is a PUT, not a multipart upload")
    kept = sorted((n, s, e) for n, (s, e) in (held or {}).items()
                  if e <= size and (e - s >= MIN_PART or e == size))
    plan: list[Part] = []
    number, offset = 0, 0
    for held_number, start, end in kept + [(MAX_PARTS + 1, size, size)]:
        if start > offset:
            plan += _plan_gap(offset, start, number + 1, held_number - 1, size, base, changed,
                              layout)
        if held_number <= MAX_PARTS:
            plan.append(Part(held_number, start, end, held=True))
        number, offset = held_number, end
    if len(plan) > MAX_PARTS:  # scattered small changes: the grid always fits
        return _grid(0, size, 1, size, base, changed, layout)
    return plan


def _plan_gap(start: int, end: int, first: int, last: int, size: int, base: int,
              changed: ByteRanges, layout: PartLayout) -> list[Part]:
    """Parts numbered ``first..last`` covering ``[start, end)`` (``end`` == ``size``: the
    object's last part is among them)."""
    runs = _runs(start, end, base, changed, is_tail=end == size)
    pieces = [piece for run in runs for piece in _split(run, layout.base)]
    if len(pieces) > last - first + 1:
        return _grid(start, end, layout.part_at(start), size, base, changed, layout)
    return [Part(first + i, p.start, p.end, p.copy) for i, p in enumerate(pieces)]


def _runs(start: int, end: int, base: int, changed: ByteRanges, is_tail: bool) -> list[_Run]:
    """``[start, end)`` as alternating runs to upload and to copy, every run but the tail's last
    at least :data:`MIN_PART` long."""
    runs: list[_Run] = []
    offset = start
    for run_start, run_end in list(changed.within(start, min(end, base))) + [(min(max(base, start), end), end)]:
        if run_start > offset:
            runs.append(_Run(offset, run_start, copy=True))
        if run_end > run_start:
            runs.append(_Run(run_start, run_end, copy=False))
        offset = max(offset, run_end)
    runs = _merge([_Run(r.start, r.end, False) if r.copy and _too_short(r, runs, is_tail) else r
                   for r in runs])
    if sum(r.copy for r in runs) <= EXACT_COPIES:
        return _fewest_bytes(runs, start, end, is_tail)
    return _grow_uploads(runs, is_tail)


EXACT_COPIES = 64  # up to this many copy runs the plan is exact; beyond, greedy


@dataclasses.dataclass
class _Choice:
    """A way to plan up to a kept copy: ``cost`` bytes uploaded so far, ``spare`` bytes the
    copy can still give the upload after it; ``gave_left`` what it gave the upload before it,
    ``prior_gave`` what the previous kept copy gave that upload."""

    cost: int
    spare: int
    copy: int | None  # index in runs (None: the start)
    prior: "_Choice | None" = None
    gave_left: int = 0
    prior_gave: int = 0


def _fewest_bytes(runs: list[_Run], start: int, end: int, is_tail: bool) -> list[_Run]:
    """Which copies to keep and how much of them to send, so that the fewest bytes are uploaded.

    Every copy kept is a part of at least 5 MiB (the object's last may be shorter); the
    uploads between kept copies are sent whole, each grown to 5 MiB from the copy before it
    first (the one after keeps more for the next).  Choices dominated in both bytes sent and
    spare left are dropped."""
    copies = [i for i, r in enumerate(runs) if r.copy]
    last = len(runs) - 1

    def spare(i: int) -> int:
        return runs[i].length - (1 if is_tail and i == last else MIN_PART)

    def offset_after(choice: _Choice) -> int:
        return start if choice.copy is None else runs[choice.copy].end

    frontier: dict[int | None, list[_Choice]] = {None: [_Choice(0, 0, None)]}
    best_end: _Choice | None = None
    for j in copies + [None]:  # None: the end of the span
        options = []
        for key, choices in list(frontier.items()):
            for choice in choices:
                gap_start = offset_after(choice)
                gap_end = end if j is None else runs[j].start
                if gap_end < gap_start or (j is not None and gap_end == gap_start
                                           and choice.copy is not None):
                    continue
                length = gap_end - gap_start
                final_upload = j is None and is_tail
                need = 0 if length == 0 or final_upload else max(0, MIN_PART - length)
                from_prior = min(need, choice.spare)
                from_next = need - from_prior
                if j is None:
                    if from_next:
                        continue
                    options.append(_Choice(choice.cost + length + need, 0, None, choice, 0,
                                           from_prior))
                elif from_next <= spare(j):
                    options.append(_Choice(choice.cost + length + need, spare(j) - from_next,
                                           j, choice, from_next, from_prior))
        if j is None:
            best_end = min(options, key=lambda c: c.cost)
        else:
            frontier[j] = _pareto(options)
    assert best_end is not None
    return _build(runs, start, end, best_end)


def _pareto(options: list[_Choice]) -> list[_Choice]:
    kept: list[_Choice] = []
    for option in sorted(options, key=lambda c: (c.cost, -c.spare)):
        if not kept or option.spare > kept[-1].spare:
            kept.append(option)
    return kept


def _build(runs: list[_Run], start: int, end: int, final: _Choice) -> list[_Run]:
    """The runs of the chosen plan: kept copies trimmed by what they gave, uploads between."""
    kept: list[tuple[int, int]] = []  # (copy start, copy end) after trimming, right to left
    choice, gave_right = final, final.prior_gave
    choice = final.prior
    while choice is not None and choice.copy is not None:
        run = runs[choice.copy]
        kept.append((run.start + choice.gave_left, run.end - gave_right))
        gave_right = choice.prior_gave
        choice = choice.prior
    result: list[_Run] = []
    offset = start
    for copy_start, copy_end in reversed(kept):
        if copy_start > offset:
            result.append(_Run(offset, copy_start, False))
        result.append(_Run(copy_start, copy_end, True))
        offset = copy_end
    if end > offset:
        result.append(_Run(offset, end, False))
    return result


def _too_short(run: _Run, runs: list[_Run], is_tail: bool) -> bool:
    """A copy too short to be a part of its own: under 5 MiB and not the object's last part."""
    return run.length < MIN_PART and not (is_tail and run is runs[-1])


def _merge(runs: list[_Run]) -> list[_Run]:
    """Adjacent runs of the same kind become one."""
    merged: list[_Run] = []
    for run in runs:
        if merged and merged[-1].copy == run.copy:
            merged[-1] = _Run(merged[-1].start, run.end, run.copy)
        else:
            merged.append(run)
    return merged


def _grow_uploads(runs: list[_Run], is_tail: bool) -> list[_Run]:
    """Uploads shorter than 5 MiB (but the last part) take unchanged bytes from their
    neighbours; a neighbour that cannot spare enough is uploaded whole instead."""
    index = 0
    while index < len(runs):
        run = runs[index]
        if run.copy or run.length >= MIN_PART or (is_tail and index == len(runs) - 1):
            index += 1
            continue
        left = runs[index - 1] if index > 0 else None
        right = runs[index + 1] if index + 1 < len(runs) else None
        need = MIN_PART - run.length
        spare_left = _spare(left, last=False)
        right_is_last = is_tail and index + 1 == len(runs) - 1
        spare_right = _spare(right, last=right_is_last)
        if right is not None and right_is_last and right.length <= need:
            right.copy = False  # cheaper to send the short last copy: the upload ends the object
            runs = _merge(runs)
            continue
        if spare_left + spare_right >= need:
            # From the side with more to spare first: its copy stays one part.
            take_right = min(need, spare_right) if spare_right >= spare_left else need - min(need, spare_left)
            take_left = need - take_right
            if left is not None:
                left.end -= take_left
            run.start -= take_left
            run.end += take_right
            if right is not None:
                right.start += take_right
            index += 1
            continue
        # Swallow the shorter neighbour (then look at the merged run again).
        candidates = [r for r in (left, right) if r is not None]
        if not candidates:  # the whole span: callers give spans of at least 5 MiB
            index += 1
            continue
        swallowed = min(candidates, key=lambda r: r.length)
        swallowed.copy = False
        runs = _merge(runs)
        index = max(0, index - 1)
    return runs


def _spare(run: _Run | None, last: bool) -> int:
    """Bytes a copy can give a neighbour and remain a valid part (the last part may shrink to
    one byte)."""
    if run is None:
        return 0
    return max(0, run.length - (1 if last else MIN_PART))


def _split(run: _Run, part_size: int) -> list[_Run]:
    """A run as parts: copies in as few parts as 5 GiB allows, uploads in pieces of about
    ``part_size`` (at least that, so none falls under 5 MiB)."""
    count = -(-run.length // MAX_PART)
    if not run.copy:
        count = max(count, run.length // part_size, 1)
    bounds = [run.start + run.length * i // count for i in range(count + 1)]
    return [_Run(a, b, run.copy) for a, b in zip(bounds, bounds[1:])]


def _grid(start: int, end: int, first: int, size: int, base: int, changed: ByteRanges,
          layout: PartLayout) -> list[Part]:
    """``[start, end)`` (grid-aligned) on the fixed grid: each part copied when none of it
    changed and the old object holds it all, else uploaded."""
    parts = []
    number = first
    while True:
        part_start, part_end = layout.span(number)
        part_end = min(part_end, size)
        if part_start >= end:
            return parts
        copy = part_end <= base and not changed.overlaps(part_start, part_end)
        parts.append(Part(number, part_start, part_end, copy))
        number += 1


def uploaded_bytes(plan: list[Part], held: bool = True) -> int:
    """Bytes the plan sends from the staged file (``held``: counting those already sent)."""
    return sum(p.length for p in plan if not p.copy and (held or not p.held))


def copied_bytes(plan: list[Part]) -> int:
    return sum(p.length for p in plan if p.copy)
