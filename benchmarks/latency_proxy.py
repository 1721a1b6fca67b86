"""A TCP proxy on 127.0.0.1 that delays every byte by a fixed time in each direction.

It mimics the round trip to a cloud endpoint in front of a local S3 server: with ``delay_ms=10``
a request reaches the server 10 ms after the client sent it and the answer reaches the client
10 ms after the server sent it, so every HTTP request costs at least 20 ms more, whatever its
size.  Bandwidth is not limited: data is forwarded as a pipeline (each chunk is held until its
own arrival time + delay), not one chunk after another.  A new connection also waits one round
trip (``2 * delay``) before it is usable, like a TCP handshake.

Runs an asyncio loop in a daemon thread::

    with LatencyProxy("127.0.0.1", 8333, delay_ms=10) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.url, ...)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from types import TracebackType

HOST = "127.0.0.1"
CHUNK = 256 * 1024


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
        self.tracer = tracer  # a benchmarks.http_trace.Tracer: every request's times
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("LatencyProxy is not started")
        return f"http://{HOST}:{self.port}"

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
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, HOST, self.listen_port, backlog=512))
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
            up = self._spawn(self._pipe(c_reader, s_writer, count=True,
                                        tap=conn.client_bytes if conn else None))
            down = self._spawn(self._pipe(s_reader, c_writer,
                                          tap=conn.store_bytes if conn else None))
            await asyncio.gather(up, down, return_exceptions=True)
        finally:
            with contextlib.suppress(Exception):
                c_writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    count: bool = False, tap=None) -> None:
        """Copy reader → writer, each chunk delivered ``delay`` after it arrived (``count``:
        added to ``upstream_bytes``; ``tap(data, arrival)``: the tracer's parser)."""
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
                if count:
                    self.upstream_bytes += len(data)
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
