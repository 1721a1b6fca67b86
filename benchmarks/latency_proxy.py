"""A TCP proxy on 127.0.0.1 that delays every byte by a fixed time in each direction, and counts
the HTTP requests that go through it.

It mimics the round trip to a cloud endpoint in front of a local S3 server: with ``delay_ms=10``
a request reaches the server 10 ms after the client sent it and the answer reaches the client
10 ms after the server sent it, so every HTTP request costs at least 20 ms more, whatever its
size.  Bandwidth is not limited: data is forwarded as a pipeline (each chunk is held until its
own arrival time + delay), not one chunk after another.  A new connection also waits one round
trip (``2 * delay``) before it is usable, like a TCP handshake.

With ``delay_ms=0`` it is a plain pass-through that only counts: the two sockets of a
connection are relayed by asyncio protocols (a ``data_received`` callback writes straight to the
other transport, no queue or task per chunk), so that it costs as little CPU as a relay in
Python can.

Counting: :class:`RequestCounter` follows each connection's client→server bytes as HTTP/1.1
(request line and headers, then a ``Content-Length`` body or a chunked one, pipelined requests
too) and counts requests by kind: the HTTP method, except ``LIST`` (a path-style GET of a bucket,
``/BUCKET`` or ``/BUCKET/`` with a query) and ``COPY`` (a PUT with ``x-amz-copy-source``).  Only
headers are parsed; body bytes are skipped by count, whatever their size.  ``stats()`` gives the
totals so far (bytes sent by clients, requests, by kind).

Runs an asyncio loop in a daemon thread::

    with LatencyProxy("127.0.0.1", 8333, delay_ms=10) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.url, ...)
        before = proxy.stats()
        ...
        requests = proxy.stats()["requests"] - before["requests"]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from types import TracebackType

HOST = "127.0.0.1"
CHUNK = 256 * 1024
MAX_HEAD = 1024 * 1024  # request headers longer than this: not HTTP, the connection is not counted


class RequestCounter:
    """The HTTP/1.x requests in one connection's client→server byte stream.

    ``feed(data)`` returns the kinds of the requests whose headers ended in ``data`` (see the
    module docstring).  Bodies cost O(1) per chunk fed: only headers and chunk-size lines are
    looked at.  Something that is not HTTP (or a head over ``MAX_HEAD``) stops the counting of
    this connection (``broken``); the bytes still go through.
    """

    _HEAD, _BODY, _CHUNK_LINE, _CHUNK_DATA, _TRAILER, _BROKEN = range(6)

    def __init__(self) -> None:
        self.state = self._HEAD
        self.remaining = 0
        self.buf = bytearray()

    @property
    def broken(self) -> bool:
        return self.state == self._BROKEN

    def feed(self, data: bytes | bytearray | memoryview) -> list[str]:
        started: list[str] = []
        mv = memoryview(data)
        i, n = 0, len(mv)
        while i < n and self.state != self._BROKEN:
            if self.state in (self._BODY, self._CHUNK_DATA):
                take = min(self.remaining, n - i)
                i += take
                self.remaining -= take
                if self.remaining == 0:
                    self.state = self._HEAD if self.state == self._BODY else self._CHUNK_LINE
                continue
            # A line-oriented state: find where it ends in what is buffered plus this chunk.
            old = len(self.buf)
            self.buf += mv[i:]
            i = n
            if self.state == self._CHUNK_LINE:
                end, sep = self.buf.find(b"\r\n", max(0, old - 1)), 2
            elif self.state == self._TRAILER and self.buf[:2] == b"\r\n":
                end, sep = 0, 2  # no trailers
            else:  # a request's head, or trailers: up to an empty line
                end, sep = self.buf.find(b"\r\n\r\n", max(0, old - 3)), 4
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._break()
                continue
            line = bytes(self.buf[:end])
            # What follows the line (a body, the next request) is gone through from the start.
            mv, i, n = memoryview(bytes(self.buf[end + sep:])), 0, len(self.buf) - end - sep
            self.buf = bytearray()
            if self.state == self._HEAD:
                if line.strip(b"\r\n"):  # (empty lines between requests are allowed)
                    kind = self._head(line.lstrip(b"\r\n"))
                    if kind is not None:
                        started.append(kind)
            elif self.state == self._CHUNK_LINE:
                try:
                    size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                except ValueError:
                    self._break()
                    continue
                if size == 0:
                    self.state = self._TRAILER
                else:
                    self.state = self._CHUNK_DATA
                    self.remaining = size + 2  # the data and its CRLF
            else:
                self.state = self._HEAD
        return started

    def _break(self) -> None:
        self.state = self._BROKEN
        self.buf = bytearray()

    def _head(self, head: bytes) -> str | None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            self._break()
            return None
        method = parts[0].decode("ascii", "replace").upper()
        length, chunked, copy = 0, False, False
        for h in lines[1:]:
            name, _, value = h.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    self._break()
                    return None
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"x-amz-copy-source":
                copy = True
        if chunked:
            self.state = self._CHUNK_LINE
        elif length > 0:
            self.state, self.remaining = self._BODY, length
        else:
            self.state = self._HEAD
        if method == "PUT" and copy:
            return "COPY"
        if method == "GET":
            path = parts[1].split(b"?", 1)[0]
            if path.count(b"/") == 1 or (path.count(b"/") == 2 and path.endswith(b"/")):
                return "LIST"
        return method


class _Relay(asyncio.Protocol):
    """One side of a zero-delay connection: what arrives is written to the peer's transport at
    once; back-pressure by pausing the reading side while the peer's buffer is full."""

    def __init__(self, proxy: LatencyProxy, counter: RequestCounter | None) -> None:
        self.proxy = proxy
        self.counter = counter
        self.transport: asyncio.Transport | None = None
        self.peer: _Relay | None = None
        self.eof = False
        self.pending: list[bytes] = []  # what arrived before the peer was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proxy._relays.add(self)

    def data_received(self, data: bytes) -> None:
        if self.counter is not None:
            self.proxy._count(self.counter, data)
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:  # the server side is not connected yet: hold it (and read no more)
            self.pending.append(data)
            assert self.transport is not None
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None:
            return True  # passed on once the server side is up
        if peer.transport is not None:
            if peer.eof or not peer.transport.can_write_eof():
                peer.transport.close()
                return False
            peer.transport.write_eof()  # the half-close, passed on
        return True  # keep the other direction open

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy._relays.discard(self)
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _ClientSide(_Relay):
    """The accepted connection of a zero-delay proxy: it opens the one to the server."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.proxy.connections += 1
        # (Pausing the reading here would not hold: Python 3.11's transport adds its reader
        # right after this call whatever its state.  data_received holds what comes early.)
        self.proxy._spawn(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            _t, server = await loop.create_connection(lambda: _Relay(self.proxy, None),
                                                      *self.proxy.upstream)
        except OSError:
            self.transport.close()
            return
        server.peer, self.peer = self, server
        assert server.transport is not None
        if self.transport.is_closing():
            server.transport.close()
            return
        for data in self.pending:
            server.transport.write(data)
        self.pending.clear()
        if self.eof:
            server.transport.write_eof()
        else:
            self.transport.resume_reading()


class LatencyProxy:
    """Forward 127.0.0.1:<port> to ``upstream_host:upstream_port`` with ``delay_ms`` each way."""

    def __init__(self, upstream_host: str, upstream_port: int, delay_ms: float,
                 listen_port: int = 0, tracer=None) -> None:
        self.upstream = (upstream_host, int(upstream_port))
        self.delay = max(0.0, float(delay_ms)) / 1000.0
        self.listen_port = int(listen_port)
        self.port: int | None = None
        self.connections = 0
        self.upstream_bytes = 0  # bytes clients sent (requests, headers included)
        self.requests = 0        # HTTP requests clients sent (their headers complete)
        self.kinds: dict[str, int] = {}  # ... by kind: GET, PUT, HEAD, LIST, COPY, POST, DELETE
        self.uncounted_connections = 0   # connections whose bytes were not HTTP/1.x
        self._lock = threading.Lock()
        self.tracer = tracer  # a benchmarks.http_trace.Tracer: every request's times
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()
        self._relays: set[_Relay] = set()  # the zero-delay connections' sides
        self._tid: int | None = None  # the loop thread's id, for its CPU time

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("LatencyProxy is not started")
        return f"http://{HOST}:{self.port}"

    def stats(self) -> dict:
        """The totals so far: ``{"bytes", "requests", "kinds": {kind: n}, "uncounted", "cpu_s"}``
        (``cpu_s``: CPU seconds of the proxy's own thread, None where /proc does not say)."""
        with self._lock:
            return {"bytes": self.upstream_bytes, "requests": self.requests,
                    "kinds": dict(self.kinds), "uncounted": self.uncounted_connections,
                    "cpu_s": self.cpu_s()}

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of the proxy's thread so far (what relaying costs)."""
        try:
            with open(f"/proc/self/task/{self._tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, TypeError):
            return None

    def _count(self, counter: RequestCounter, data: bytes) -> None:
        self.upstream_bytes += len(data)
        if counter.broken:
            return
        kinds = counter.feed(data)
        if kinds or counter.broken:
            with self._lock:
                for k in kinds:
                    self.requests += 1
                    self.kinds[k] = self.kinds.get(k, 0) + 1
                if counter.broken:
                    self.uncounted_connections += 1

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LatencyProxy:
        self._thread = threading.Thread(target=self._run, name="latency-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"latency proxy failed to start: {self._error}")
        if self.port is None:
            raise RuntimeError("latency proxy did not start within 10 s")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._shutdown)
        thread.join(10)
        self._loop = self._thread = None
        self.port = None

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        self._tid = threading.get_native_id()
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            if self.delay or self.tracer is not None:  # the delay line (a tracer taps it)
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, HOST, self.listen_port, backlog=512))
            else:  # a pass-through that counts: protocols, no delay line
                self._server = loop.run_until_complete(loop.create_server(
                    lambda: _ClientSide(self, RequestCounter()), HOST, self.listen_port,
                    backlog=512))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as e:  # report to start()
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.gather(*self._tasks, return_exceptions=True))
            loop.close()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for relay in list(self._relays):
            if relay.transport is not None:
                relay.transport.close()
        assert self._loop is not None
        self._loop.call_later(0.2, self._loop.stop)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._serve(c_reader, c_writer)
        except asyncio.CancelledError:  # shutting down: end quietly
            pass

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            if self.delay:
                await asyncio.sleep(2 * self.delay)  # the handshake's round trip
            try:
                s_reader, s_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                c_writer.close()
                return
            conn = self.tracer.connection() if self.tracer is not None else None
            up = self._spawn(self._pipe(c_reader, s_writer, counter=RequestCounter(),
                                        tap=conn.client_bytes if conn else None))
            down = self._spawn(self._pipe(s_reader, c_writer,
                                          tap=conn.store_bytes if conn else None))
            await asyncio.gather(up, down, return_exceptions=True)
        finally:
            with contextlib.suppress(Exception):
                c_writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    counter: RequestCounter | None = None, tap=None) -> None:
        """Copy reader → writer, each chunk delivered ``delay`` after it arrived (``counter``:
        the client's direction, whose bytes and requests are counted; ``tap(data, arrival)``:
        the tracer's parser)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            try:
                await _deliver()
            except (ConnectionError, OSError):  # the receiving side went away
                pass

        async def _deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            # EOF from the sender: pass the half-close on, after the same delay.
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()

        sender = self._spawn(deliver())
        try:
            while True:
                try:
                    data = await reader.read(CHUNK)
                except (ConnectionError, OSError):
                    data = b""
                now = time.monotonic()
                queue.put_nowait((now + self.delay, data))
                if tap is not None and data:
                    try:
                        tap(data, now)
                    except Exception:  # noqa: BLE001 - a parse error must not stop the bytes
                        tap = None
                if counter is not None:
                    self._count(counter, data)
                if not data:
                    break
                # Back-pressure: do not buffer more than a few MiB ahead of the delay line.
                while queue.qsize() > 64:
                    await asyncio.sleep(self.delay / 4 or 0.001)
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            if not sender.done():
                sender.cancel()
            with contextlib.suppress(Exception):
                writer.close()
