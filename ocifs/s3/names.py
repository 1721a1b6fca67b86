"""s3fs's ``use_wtf8`` name mapping, so that objects named through ocifs and s3fs agree.

S3 takes only valid UTF-8 keys, while a Linux name is any bytes.  s3fs (``string_util.cpp``)
maps each byte that is not part of a valid UTF-8 sequence to the private-use code point
U+E000 + byte, and maps U+E000..U+E0FF back to the byte when listing.  ocifs paths are
``str`` decoded with ``surrogateescape``, where such a byte is the lone surrogate
U+DC80..U+DCFF, so the mapping is one code point for another.
"""
from __future__ import annotations

import re

ESCAPE_BASE = 0xE000  # s3fs's escape_base: the start of the BMP private-use area
_SURROGATE_BASE = 0xDC00  # surrogateescape: byte b is U+DC00 + b

_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_MAPPED_BYTE = re.compile("[\ue000-\ue0ff]+")


def has_invalid_utf8(path: str) -> bool:
    """Whether ``path`` came from bytes that are not valid UTF-8 (S3 refuses such keys)."""
    return _ESCAPED_BYTE.search(path) is not None


def wtf8_encode(path: str) -> str:
    """The key name s3fs's ``use_wtf8`` gives ``path``: each invalid byte as U+E000 + byte."""
    return _ESCAPED_BYTE.sub(lambda m: chr(ESCAPE_BASE + ord(m.group()) - _SURROGATE_BASE), path)


def _decode_run(match: re.Match[str]) -> str:
    # The bytes back, decoded as a path is (a run may rebuild a valid sequence, as in s3fs).
    raw = bytes(ord(ch) - ESCAPE_BASE for ch in match.group())
    return raw.decode("utf-8", "surrogateescape")


def wtf8_decode(name: str) -> str:
    """The path a listed key name stands for: U+E000..U+E0FF back to their bytes (as s3fs
    does for every such code point, a name really holding one included)."""
    return _MAPPED_BYTE.sub(_decode_run, name)
