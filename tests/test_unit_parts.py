"""The part layout of multipart uploads (ocifs.upload.parts): sizes grow so 10,000 parts always do."""

from __future__ import annotations

import pytest

from ocifs.upload.parts import MAX_PART, MAX_PARTS, MiB, PartLayout


def test_first_thousand_parts_have_the_configured_size():
    layout = PartLayout(10 * MiB)
    assert layout.span(1) == (0, 10 * MiB)
    assert layout.span(1000) == (9990 * MiB, 10000 * MiB)
    assert layout.span(1001) == (10000 * MiB, 10020 * MiB)  # the next tier doubles
    assert layout.count(2048 * MiB) == 205


def test_part_at_inverts_span_across_tiers():
    layout = PartLayout(5 * MiB)
    for part in (1, 2, 999, 1000, 1001, 2500, 9999, MAX_PARTS):
        start, end = layout.span(part)
        assert layout.part_at(start) == part
        assert layout.part_at(end - 1) == part


def test_ten_thousand_parts_hold_terabytes_and_never_exceed_5_gib():
    layout = PartLayout(10 * MiB)
    assert layout.capacity >= 5 * 1024 * 1024 * MiB  # S3's 5 TiB object limit
    assert max(end - start for start, end in map(layout.span, range(1, MAX_PARTS + 1))) <= MAX_PART
    with pytest.raises(ValueError):
        layout.part_at(layout.capacity)
    with pytest.raises(ValueError):
        layout.span(MAX_PARTS + 1)


def test_parts_touching_a_range():
    layout = PartLayout(5 * MiB)
    assert list(layout.parts_touching(0, 1)) == [1]
    assert list(layout.parts_touching(5 * MiB - 1, 5 * MiB + 1)) == [1, 2]
    assert list(layout.parts_touching(7, 7)) == []
    assert layout.count(0) == 1 and layout.count(5 * MiB) == 1 and layout.count(5 * MiB + 1) == 2


def test_part_size_must_be_allowed_by_s3():
    with pytest.raises(ValueError):
        PartLayout(4 * MiB)


# -- the part planner (ocifs.upload.plan) ------------------------------------------------------

import functools

from hypothesis import given, settings, strategies as st

from ocifs.upload.parts import MIN_PART
from ocifs.upload.plan import Part, copied_bytes, plan_parts, uploaded_bytes
from ocifs.ranges import ByteRanges

LAYOUT = PartLayout(10 * MiB)


def check_valid(plan: list[Part], size: int, base: int, changed: ByteRanges) -> None:
    """Every byte once, in numbered order, within S3's limits; copies only of unchanged bytes."""
    assert plan[0].start == 0 and plan[-1].end == size
    for before, after in zip(plan, plan[1:]):
        assert before.end == after.start and before.number < after.number
    assert 1 <= plan[0].number and plan[-1].number <= MAX_PARTS
    for part in plan:
        assert 0 < part.length <= MAX_PART
        assert part is plan[-1] or part.length >= MIN_PART, (part, plan)
        if part.copy:
            assert part.end <= base and not changed.overlaps(part.start, part.end)


def must_send(size: int, base: int, changed: ByteRanges) -> int:
    return changed.total() + max(0, size - base) - sum(max(0, e - max(s, base)) for s, e in changed)


def test_append_copies_the_old_object_and_uploads_only_the_new_bytes():
    base, size = 55 * 1000 * 1000, 55 * 1000 * 1000 + 267_000
    changed = ByteRanges([(base, size)])
    plan = plan_parts(size, base, changed, LAYOUT)
    assert plan == [Part(1, 0, base, copy=True), Part(2, base, size)]


def test_append_to_a_big_object_copies_in_5_gib_parts():
    base = 12 * 1024 * MiB
    plan = plan_parts(base + 1, base, ByteRanges([(base, base + 1)]), LAYOUT)
    assert [p.copy for p in plan] == [True, True, True, False]
    assert uploaded_bytes(plan) == 1


def test_small_overwrite_in_the_middle_is_one_5_mib_upload_between_copies():
    size = 20 * MiB
    changed = ByteRanges([(8 * MiB, 8 * MiB + 4096)])
    plan = plan_parts(size, size, changed, LAYOUT)
    check_valid(plan, size, size, changed)
    assert [p.copy for p in plan] == [True, False, True]
    assert uploaded_bytes(plan) == MIN_PART


def test_overwrite_near_the_start_takes_bytes_after_it():
    size = 20 * MiB
    changed = ByteRanges([(MiB, MiB + 10)])
    plan = plan_parts(size, size, changed, LAYOUT)
    check_valid(plan, size, size, changed)
    assert plan[0] == Part(1, 0, MIN_PART) and uploaded_bytes(plan) == MIN_PART


def test_new_file_goes_up_in_part_size_pieces():
    size = 35 * MiB
    plan = plan_parts(size, 0, ByteRanges(), LAYOUT)
    assert len(plan) == 3 and all(10 * MiB <= p.length < 12 * MiB for p in plan)
    assert copied_bytes(plan) == 0


def test_parts_already_sent_keep_their_numbers():
    size = 32 * MiB
    held = {1: LAYOUT.span(1), 2: LAYOUT.span(2)}
    plan = plan_parts(size, 0, ByteRanges([(0, size)]), LAYOUT, held)
    assert plan[:2] == [Part(1, 0, 10 * MiB, held=True), Part(2, 10 * MiB, 20 * MiB, held=True)]
    assert plan[2:] == [Part(3, 20 * MiB, size)]


def test_a_gap_between_held_parts_with_too_few_numbers_falls_back_to_the_grid():
    size = 40 * MiB
    changed = ByteRanges([(0, 10 * MiB), (11 * MiB, 11 * MiB + 1), (17 * MiB, 17 * MiB + 1),
                          (30 * MiB, 40 * MiB)])
    held = {1: LAYOUT.span(1), 4: LAYOUT.span(4)}
    plan = plan_parts(size, 30 * MiB, changed, LAYOUT, held)
    check_valid(plan, size, 30 * MiB, changed)
    assert [p.number for p in plan] == [1, 2, 3, 4]


def test_scattered_changes_past_ten_thousand_parts_use_the_grid():
    size = 200_000 * MiB
    changed = ByteRanges([(i * 19 * MiB, i * 19 * MiB + 1) for i in range(10_500)])
    plan = plan_parts(size, size, changed, LAYOUT)
    check_valid(plan, size, size, changed)
    assert len(plan) <= MAX_PARTS


def test_byte_ranges_merge_and_cut():
    ranges = ByteRanges([(10, 20), (30, 40)])
    ranges.add(20, 30)
    assert list(ranges) == [(10, 40)]
    ranges.add(50, 60)
    ranges.cut(55)
    assert list(ranges) == [(10, 40), (50, 55)]
    assert ranges.overlaps(39, 45) and not ranges.overlaps(40, 50)
    ranges.cut(10)
    assert not ranges


# Property tests, in units of 1 MiB (so an exact optimum can be computed by brute force).
UNIT = MiB
MIN_UNITS = MIN_PART // UNIT


def optimum(size_units: int, base_units: int, changed_units: set[int]) -> int:
    """The fewest units any valid plan uploads (parts on unit boundaries)."""
    @functools.lru_cache(maxsize=None)
    def best(end: int) -> int:
        if end == 0:
            return 0
        result = float("inf")
        for start in range(end):
            length = end - start
            if length < MIN_UNITS and end != size_units:
                continue
            prior = best(start)
            copyable = end <= base_units and not changed_units & set(range(start, end))
            result = min(result, prior + (0 if copyable else length))
        return result
    return best(size_units)


@st.composite
def objects(draw):
    size = draw(st.integers(1, 48))
    base = draw(st.integers(0, 48))
    writes = draw(st.lists(st.tuples(st.integers(0, 47), st.integers(1, 6)), max_size=6))
    changed_units = {u for start, length in writes for u in range(start, start + length) if u < size}
    return size, base, changed_units


@settings(max_examples=400, deadline=None)
@given(objects())
def test_every_plan_is_valid_and_sends_the_fewest_bytes_possible(case):
    size_units, base_units, changed_units = case
    size, base = size_units * UNIT, min(base_units, size_units) * UNIT
    changed = ByteRanges([(u * UNIT, (u + 1) * UNIT) for u in changed_units])
    plan = plan_parts(size, base, changed, LAYOUT)
    check_valid(plan, size, base, changed)
    sent = uploaded_bytes(plan)
    assert sent >= must_send(size, base, changed)
    best = optimum(size_units, min(base_units, size_units), frozenset(changed_units)) * UNIT
    assert sent == best, (plan, best)


@settings(max_examples=300, deadline=None)
@given(st.integers(MIN_PART, 40 * MiB), st.integers(1, 30 * MiB))
def test_an_append_sends_exactly_the_appended_bytes(base, appended):
    size = base + appended
    changed = ByteRanges([(base, size)])
    plan = plan_parts(size, base, changed, LAYOUT)
    check_valid(plan, size, base, changed)
    assert uploaded_bytes(plan) == appended
    assert [p.copy for p in plan][0] and sum(p.copy for p in plan) == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 3)), min_size=70, max_size=120))
def test_many_scattered_changes_use_the_greedy_plan_and_stay_valid(writes):
    size = 2000 * UNIT
    changed = ByteRanges([(s * UNIT, min(size, (s + n) * UNIT)) for s, n in writes])
    plan = plan_parts(size, size, changed, LAYOUT)
    check_valid(plan, size, size, changed)
    assert uploaded_bytes(plan) >= changed.total()
