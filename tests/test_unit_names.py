"""s3fs's use_wtf8 mapping (ocifs.s3.names): invalid UTF-8 bytes ⇄ U+E000 + byte."""

from __future__ import annotations

import os

import pytest

from ocifs.s3.names import has_invalid_utf8, wtf8_decode, wtf8_encode


@pytest.mark.parametrize("raw", [b"plain", "caf\u00e9 \u2603 \U0001F600".encode(), b""])
def test_valid_utf8_unchanged(raw):
    path = os.fsdecode(raw)
    assert not has_invalid_utf8(path)
    assert wtf8_encode(path) == path
    assert wtf8_decode(path) == path


def test_encode_maps_each_invalid_byte_to_private_code_point():
    path = os.fsdecode(b"a\xffb\x80")  # surrogateescape: U+DCFF, U+DC80
    assert has_invalid_utf8(path)
    assert wtf8_encode(path) == "a\ue0ffb\ue080"
    assert wtf8_encode(path).encode("utf-8") == b"a\xee\x83\xbfb\xee\x82\x80"  # valid UTF-8


def test_encode_truncated_sequence_byte_by_byte():
    # A cut 3-byte sequence: each of its bytes is escaped on its own (s3fs retries per byte).
    assert wtf8_encode(os.fsdecode(b"\xe2\x82z")) == "\ue0e2\ue082z"


def test_decode_maps_back():
    assert wtf8_decode("a\ue0ffb") == os.fsdecode(b"a\xffb")
    assert os.fsencode(wtf8_decode("x\ue0fe")) == b"x\xfe"


def test_decode_rebuilds_valid_sequences_as_s3fs():
    # s3fs turns U+E0C3 U+E0A9 back into bytes C3 A9, which is "é".
    assert wtf8_decode("\ue0c3\ue0a9") == "\u00e9"


@pytest.mark.parametrize("raw", [b"\xff", b"a\xc3(b", b"\xed\xa0\x80", b"x\xf8\x88\x80\x80\x80y",
                                 bytes(range(0x80, 0x100)), "ok \u00e9".encode() + b"\xfe"])
def test_round_trip(raw):
    path = os.fsdecode(raw)
    key = wtf8_encode(path)
    key.encode("utf-8")  # S3 takes it
    assert not has_invalid_utf8(key)
    assert os.fsencode(wtf8_decode(key)) == raw
