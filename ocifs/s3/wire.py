"""One HTTP/1.1 exchange on a connection of the client's own urllib3 pool, read without
http.client.

After the lean path (:mod:`ocifs.s3.lean`) had taken botocore's per-request pipeline out of a
HEAD, about 40% of what was left was http.client and urllib3: ``http.client`` parses every
answer's headers with the ``email`` package, and urllib3 wraps each exchange in a Timeout,
a Retry, a response object and a case-insensitive header dict.  An S3 answer needs none of
that: a status line, ``name: value`` lines and a body framed by Content-Length (or chunked).

:func:`exchange` writes the request in one ``sendall`` and reads the answer with ``recv`` on
a connection taken from the pool and given back to it, so the connection's TLS settings
(verification, CA bundle, client certificate), its socket options and the connect and read
timeouts all stay botocore's and urllib3's; boto3's own calls share the same connections.
Streamed bodies (big ranged GETs) still go through urllib3, where its CPU per byte is small.
"""

from __future__ import annotations

import socket
from typing import Any, Iterator

from botocore.awsrequest import HeadersDict
from urllib3.util.timeout import Timeout

# urllib3 internals used here, as (object, attribute) with object "pool" (an
# HTTPConnectionPool) or "conn" (its HTTPConnection); tests/test_unit_botocore_hooks.py fails
# when one is gone and pyproject.toml bounds urllib3's version.
PRIVATE_ATTRIBUTES = (
    ("pool", "_get_conn"),  # a pooled connection (a dropped one reset), or a new one
    ("pool", "_put_conn"),  # back into the pool (None: a slot for a new one)
    ("pool", "timeout"),    # the pool's connect and read timeouts
    ("conn", "sock"),       # None until connected
)
RECV = 65536
# a head bigger than this is not an S3 answer (S3 caps request headers at 8 KiB; user
# metadata at 2 KiB)
MAX_HEAD = 64 * 1024
NO_BODY = frozenset((204, 304))


class WireError(Exception):
    """The connection failed or the answer was not HTTP/1.x (the connection is closed)."""


class ConnectFailed(WireError):
    """The connection could not be made: ``__cause__`` is urllib3's or the socket's error."""


class WireAnswer:
    """A whole answer: status, headers as (name, value) pairs in the order sent (a repeated
    header's values joined by ", "), the body; ``headers`` as botocore's case-insensitive
    dict, made only when asked for (error answers, debug logging)."""

    __slots__ = ("status_code", "pairs", "content", "_headers")

    def __init__(self, status: int, pairs: list[tuple[str, str]], content: bytes) -> None:
        self.status_code = status
        self.pairs = pairs
        self.content = content
        self._headers: HeadersDict | None = None

    @property
    def headers(self) -> HeadersDict:
        if self._headers is None:
            self._headers = HeadersDict(self.pairs)
        return self._headers


def exchange(pool: Any, method: str, target: str, headers: Iterator[tuple[str, str]],
             body: bytes) -> WireAnswer:
    """Send ``method target`` with ``headers`` (Host among them) and ``body`` on a
    connection of urllib3 ``pool``; the whole answer.  Raises :class:`ConnectFailed` when
    no connection could be made, :class:`WireError` (cause: the socket's error, or None for
    an answer that is not HTTP) when it failed on the way, ``TimeoutError`` when the read
    timed out."""
    conn = pool._get_conn()
    reusable = False
    try:
        if conn.sock is None:
            conn.timeout = Timeout.resolve_default_timeout(pool.timeout.connect_timeout)
            try:
                conn.connect()
            except Exception as exc:  # urllib3's, ssl's or the socket's: the caller maps it
                raise ConnectFailed(str(exc)) from exc
        sock = conn.sock
        sock.settimeout(Timeout.resolve_default_timeout(pool.timeout.read_timeout))
        lines = [f"{method} {target} HTTP/1.1"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append("Accept-Encoding: identity")  # as http.client asks: no compressed answer
        if body or method in ("PUT", "POST"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if len(body) <= RECV:
                sock.sendall(head + body)
            else:
                sock.sendall(head)
                sock.sendall(body)
            answer, reusable = _read_answer(sock, method == "HEAD")
        except (socket.timeout, TimeoutError):
            raise
        except OSError as exc:
            raise WireError(str(exc)) from exc
        return answer
    finally:
        if reusable:
            pool._put_conn(conn)
        else:
            conn.close()
            pool._put_conn(None)  # as urllib3 does: the next _get_conn makes a new one


def _read_answer(sock: socket.socket, head_only: bool) -> tuple[WireAnswer, bool]:
    """The answer on ``sock`` and whether the connection can carry another request."""
    buffer = bytearray()
    while True:  # skip interim answers (100 Continue that was not asked for)
        end = _fill_until(sock, buffer, b"\r\n\r\n", MAX_HEAD)
        status, pairs, close = _parse_head(bytes(buffer[:end]))
        del buffer[:end + 4]
        if status >= 200 or status == 101:
            break
    if head_only or status in NO_BODY:
        body = b""
    else:
        framing = {name.lower(): value for name, value in pairs
                   if name.lower() in ("content-length", "transfer-encoding")}
        if "chunked" in framing.get("transfer-encoding", "").lower():
            body = _read_chunked(sock, buffer)
        elif "content-length" in framing:
            try:
                length = int(framing["content-length"])
            except ValueError:
                raise WireError(f"bad Content-Length {framing['content-length']!r}") from None
            _fill_to(sock, buffer, length)
            body = bytes(buffer[:length])
            del buffer[:length]
        else:  # the body runs until the server closes the connection
            while chunk := sock.recv(RECV):
                buffer += chunk
            body, close = bytes(buffer), True
            buffer.clear()
    # anything after the answer was not asked for: do not reuse the connection
    return WireAnswer(status, pairs, body), not close and not buffer


def _parse_head(head: bytes) -> tuple[int, list[tuple[str, str]], bool]:
    """(status, merged header pairs, whether the server closes the connection after)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise WireError(f"not an HTTP answer: {lines[0][:80]!r}")
    status = int(parts[1])
    merged: dict[str, tuple[str, str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise WireError(f"bad header line {line[:80]!r}")
        name, value = name.strip(), value.strip()
        lower = name.lower()
        seen = merged.get(lower)
        merged[lower] = (name, value) if seen is None else (seen[0], f"{seen[1]}, {value}")
    connection = merged.get("connection", ("", ""))[1].lower()
    close = "close" in connection or (parts[0] == "HTTP/1.0" and "keep-alive" not in connection)
    return status, list(merged.values()), close


def _fill_until(sock: socket.socket, buffer: bytearray, marker: bytes, limit: int) -> int:
    """Receive until ``marker`` is in ``buffer``; its index."""
    start = 0
    while (end := buffer.find(marker, start)) < 0:
        if len(buffer) > limit:
            raise WireError(f"no end of the answer's head in {limit} bytes")
        start = max(0, len(buffer) - len(marker) + 1)
        chunk = sock.recv(RECV)
        if not chunk:
            raise WireError("the connection was closed before the answer was complete")
        buffer += chunk
    return end


def _fill_to(sock: socket.socket, buffer: bytearray, length: int) -> None:
    while len(buffer) < length:
        chunk = sock.recv(max(RECV, length - len(buffer)))
        if not chunk:
            raise WireError("the connection was closed before the answer was complete")
        buffer += chunk


def _read_chunked(sock: socket.socket, buffer: bytearray) -> bytes:
    body = bytearray()
    while True:
        end = _fill_until(sock, buffer, b"\r\n", MAX_HEAD)
        size_field = bytes(buffer[:end]).split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            raise WireError(f"bad chunk size {size_field[:20]!r}") from None
        del buffer[:end + 2]
        if size == 0:
            break
        _fill_to(sock, buffer, size + 2)
        body += buffer[:size]
        del buffer[:size + 2]
    while True:  # trailers, up to the empty line
        end = _fill_until(sock, buffer, b"\r\n", MAX_HEAD)
        del buffer[:end + 2]
        if end == 0:
            return bytes(body)
