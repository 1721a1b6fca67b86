"""A passive HTTP/1.1 tap for the latency proxy: each request's method, target, status and times.

The proxy feeds it the bytes of each connection in both directions as they arrive (before the
delay), so for every request it knows when the client started and finished sending it, when the
store's answer (and a ``100 Continue``) came back, and when it was complete.  Times are
``time.monotonic()`` at the proxy: the store sees a request ``delay`` after ``sent`` and the
client sees the answer ``delay`` after ``answered``.

Used to profile what a file system sends per fsync (``benchmarks/aof_trace.py``); only what is
needed to find request boundaries is parsed (Content-Length, chunked bodies, HEAD, 1xx, 204).
"""

from __future__ import annotations

import dataclasses
import threading


@dataclasses.dataclass
class Request:
    conn: int
    method: str
    target: str
    sent: float                       # first byte of the request from the client
    sent_done: float | None = None    # last byte of the request from the client
    continued: float | None = None    # "100 Continue" from the store
    answered: float | None = None     # first byte of the final answer from the store
    done: float | None = None         # last byte of the answer
    status: int | None = None
    body_bytes: int = 0
    copy: str = ""                    # UploadPartCopy: the copy source's range ("whole": none)

    @property
    def kind(self) -> str:
        """The S3 operation, as far as method and query tell."""
        query = self.target.partition("?")[2]
        params = {p.partition("=")[0] for p in query.split("&") if p}
        if self.method == "POST" and "uploads" in params:
            return "CreateMultipartUpload"
        if self.method == "POST" and "uploadId" in params:
            return "CompleteMultipartUpload"
        if self.method == "PUT" and "uploadId" in params:
            return "UploadPartCopy" if self.copy else "UploadPart"
        if self.method == "DELETE" and "uploadId" in params:
            return "AbortMultipartUpload"
        if self.method == "GET" and "uploadId" in params:
            return "ListParts"
        if self.method == "GET" and ("list-type" in params or "prefix" in params
                                     or "delimiter" in params):
            return "ListObjects"
        return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject",
                "DELETE": "DeleteObject"}.get(self.method, self.method)


class Tracer:
    """Collects :class:`Request` records of every connection the proxy carries."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._conns = 0

    def connection(self) -> "Connection":
        with self.lock:
            self._conns += 1
            return Connection(self, self._conns)

    def between(self, start: float, end: float) -> list[Request]:
        """Requests whose first byte was sent within ``[start, end]``."""
        with self.lock:
            return sorted((r for r in self.requests if start <= r.sent <= end),
                          key=lambda r: r.sent)


class Connection:
    """Both directions of one connection; requests are answered in order (no pipelining)."""

    def __init__(self, tracer: Tracer, number: int) -> None:
        self.tracer = tracer
        self.number = number
        self.pending: list[Request] = []
        self.up = _Stream(self._request_head, self._request_done, request=True)
        self.down = _Stream(self._answer_head, self._answer_done, request=False)
        self.current: Request | None = None

    def client_bytes(self, data: bytes, now: float) -> None:
        self.up.feed(data, now)

    def store_bytes(self, data: bytes, now: float) -> None:
        self.down.feed(data, now)

    # request direction
    def _request_head(self, line: str, headers: dict[str, str], now: float) -> int | None:
        method, _, rest = line.partition(" ")
        target = rest.rpartition(" ")[0]
        request = Request(self.number, method, target, now)
        request.copy = headers.get("x-amz-copy-source-range") or (
            "whole" if "x-amz-copy-source" in headers else "")
        self.current = request
        self.pending.append(request)
        with self.tracer.lock:
            self.tracer.requests.append(request)
        return _body_length(headers)

    def _request_done(self, now: float, body: int) -> None:
        if self.current is not None:
            self.current.sent_done = now
            self.current.body_bytes = body

    # answer direction
    def _answer_head(self, line: str, headers: dict[str, str], now: float) -> int | None:
        parts = line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        request = self.pending[0] if self.pending else None
        if 100 <= status < 200:
            if request is not None:
                request.continued = now
            return 0
        if request is not None:
            request.answered, request.status = now, status
        if status in (204, 304) or (request is not None and request.method == "HEAD"):
            return 0
        return _body_length(headers)

    def _answer_done(self, now: float, body: int) -> None:
        if self.pending and self.pending[0].status is not None:
            self.pending.pop(0).done = now


def _body_length(headers: dict[str, str]) -> int | None:
    """Content-Length, or None for a chunked body."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None
    return int(headers.get("content-length", "0") or 0)


class _Stream:
    """One direction: message heads and bodies (Content-Length or chunked)."""

    def __init__(self, on_head, on_done, request: bool) -> None:
        self.on_head, self.on_done = on_head, on_done
        self.buffer = bytearray()
        self.remaining: int | None = -1  # -1: reading a head; None: chunked; n: body bytes left
        self.body = 0
        self.chunk_left = 0
        self.request = request

    def feed(self, data: bytes, now: float) -> None:
        view = memoryview(data)
        while view:
            if self.remaining == -1:
                self.buffer += view
                view = memoryview(b"")
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buffer[:end]).decode("latin-1")
                rest = bytes(self.buffer[end + 4:])
                self.buffer.clear()
                lines = head.split("\r\n")
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = self.on_head(lines[0], headers, now)
                self.body = 0
                if length == 0:
                    self.on_done(now, 0)
                    self.remaining = -1
                else:
                    self.remaining = length
                    self.chunk_left = 0
                view = memoryview(rest)
            elif self.remaining is None:  # chunked: parse sizes in the buffer
                self.buffer += view
                view = memoryview(b"")
                if not self._chunked(now):
                    return
                view = memoryview(bytes(self.buffer))
                self.buffer.clear()
            else:
                take = min(self.remaining, len(view))
                self.remaining -= take
                self.body += take
                view = view[take:]
                if self.remaining == 0:
                    self.on_done(now, self.body)
                    self.remaining = -1

    def _chunked(self, now: float) -> bool:
        """Consume chunks from the buffer; True once the body ended (leftover stays)."""
        while True:
            if self.chunk_left:
                take = min(self.chunk_left, len(self.buffer))
                del self.buffer[:take]
                self.chunk_left -= take
                self.body += take
                if self.chunk_left:
                    return False
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return False
            line = bytes(self.buffer[:end]).split(b";")[0].strip()
            if not line:  # the CRLF after a chunk's data
                del self.buffer[:end + 2]
                continue
            size = int(line, 16)
            if size == 0:
                trailer = self.buffer.find(b"\r\n\r\n", end)
                if trailer < 0:
                    return False
                del self.buffer[:trailer + 4]
                self.on_done(now, self.body)
                self.remaining = -1
                return True
            del self.buffer[:end + 2]
            self.chunk_left = size
