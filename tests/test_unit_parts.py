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
