"""A test-only HTTP proxy that injects faults between an S3 client (ocifs) and a local S3 server.

Every request is forwarded unchanged (tests/oci_proxy.py's forwarding: headers, signatures and
streamed bodies intact) unless a **rule** matches it.  A rule names what it does to a request
and which requests it takes:

* ``error``: answer ``status`` with an S3 XML error ``code`` (500 InternalError, 503 SlowDown,
  429 TooManyRequests...) without forwarding;
* ``delay``: wait ``seconds``, then forward;
* ``reset``: cut the connection (TCP RST) before forwarding: the store never sees the request;
* ``lose``: forward (the store carries the request out), then cut the connection instead of
  answering: the client does not know it succeeded;
* ``stall``: forward, send the response's headers and ``after_bytes`` bytes of its body (with
  ``after_bytes=None``, or a response without a body: nothing at all), then hang for
  ``seconds`` (None: until :meth:`FaultProxy.release` or :meth:`FaultProxy.clear`), then cut.

Which requests: ``op`` (the S3 operation: ``GetObject``, ``HeadObject``, ``PutObject``,
``UploadPart``, ``UploadPartCopy``, ``CopyObject``, ``CreateMultipartUpload``,
``CompleteMultipartUpload``, ``AbortMultipartUpload``, ``DeleteObject``, ``ListObjectsV2``,
``ListMultipartUploads``, ``ListParts``...), ``method`` and ``key`` (a regular expression
searched in the object key), all optional; ``skip`` lets that many matching requests through
first, ``times`` is how many it takes (None: every one until cleared).  Rules are tried in the
order they were added; ``hits`` counts the requests each one took, so a test can prove its
fault really happened.

Besides rules, the whole store can go **down**: the listening socket is closed (connections
are refused, open ones are cut) for ``seconds`` or until ``up``.

The proxy runs in a child process (:class:`FaultProxyProcess`), controlled through JSON lines
on its stdin/stdout: a test holding a file open on a mount while it starts a subprocess must
not depend on a proxy thread of its own (blocked) process.  :class:`FaultyServer` wraps a local
S3 server the way tests use one: mounts get the proxy's URL, ``client()`` talks to the real
server (what is checked is the bucket itself, not what the proxy shows).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import socket
import struct
import subprocess
import sys
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

from oci_proxy import ProxiedServer, _BodyReader, _error_xml, _Handler, _ProxyHTTPServer, _query

log = logging.getLogger("ocifs.tests.fault_proxy")

ACTIONS = ("error", "delay", "reset", "lose", "stall")
LOG_LIMIT = 10_000  # requests kept in the log


@dataclasses.dataclass
class Rule:
    """One fault: what it does (``action`` and its parameters), which requests it takes
    (``op``, ``method``, ``key``, ``skip``, ``times``), and ``hits`` so far."""

    action: str
    op: str | None = None
    method: str | None = None
    key: str | None = None
    skip: int = 0
    times: int | None = 1
    status: int = 500
    code: str = "InternalError"
    message: str = "injected fault"
    seconds: float | None = None
    after_bytes: int | None = None
    id: int = 0
    hits: int = 0
    seen: int = 0  # matching requests, the skipped ones included

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}")

    def matches(self, op: str, method: str, key: str) -> bool:
        return ((self.op is None or self.op == op)
                and (self.method is None or self.method == method)
                and (self.key is None or re.search(self.key, key) is not None))

    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


def operation(method: str, target: str, headers: Any) -> tuple[str, str]:
    """The S3 operation name and object key of a path-style request."""
    path, _, _ = target.partition("?")
    query = _query(target)
    segments = path.split("/", 2)  # "", bucket, key
    key = unquote(segments[2]) if len(segments) == 3 else ""
    copy = headers.get("x-amz-copy-source") is not None
    if not key:
        bucket_ops = {"GET": "ListMultipartUploads" if "uploads" in query else
                      "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects",
                      "HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket",
                      "POST": "DeleteObjects" if "delete" in query else "PostBucket"}
        return bucket_ops.get(method, method), key
    if method == "GET":
        return ("ListParts" if "uploadId" in query else "GetObject"), key
    if method == "HEAD":
        return "HeadObject", key
    if method == "PUT":
        if "partNumber" in query:
            return ("UploadPartCopy" if copy else "UploadPart"), key
        return ("CopyObject" if copy else "PutObject"), key
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload", key
        return ("CompleteMultipartUpload" if "uploadId" in query else "PostObject"), key
    if method == "DELETE":
        return ("AbortMultipartUpload" if "uploadId" in query else "DeleteObject"), key
    return method, key


class _FaultHandler(_Handler):
    """oci_proxy's forwarding handler, with the rule that took the request applied."""

    server: _ProxyHTTPServer

    def _proxy_request(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[assignment]
        op, key = operation(self.command, self.path, self.headers)
        length = self.headers.get("x-amz-decoded-content-length") or self.headers.get("Content-Length")
        rule = proxy.take(op, self.command, key, int(length or 0))
        self.fault = rule
        if rule is None or rule.action == "delay":
            if rule is not None:
                proxy.wait_release(rule.seconds or 0)
            return super()._proxy_request()
        if rule.action == "reset":
            self._reset()
        elif rule.action == "error":
            self._answer_error(rule)
        else:  # lose, stall: forwarded, the answer is what goes wrong
            super()._proxy_request()

    def _answer_error(self, rule: Rule) -> None:
        """The error answer; the request body is read away (or, when the client waits for
        100-continue, never asked for: the connection is then closed)."""
        close = self.expect_pending
        if not close:
            length = self.headers.get("Content-Length")
            chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            _BodyReader(self.rfile, int(length) if length else None, chunked).drain()
        request_id = f"FAULT{rule.id:04d}{rule.hits:06d}"
        payload = _error_xml(rule.code, rule.message, self.path.split("?", 1)[0], request_id)
        head = [f"HTTP/1.1 {rule.status} Injected", "Content-Type: application/xml",
                f"Content-Length: {len(payload)}", f"x-amz-request-id: {request_id}",
                f"Date: {self.date_time_string()}"]
        if close:
            head.append("Connection: close")
            self.close_connection = True
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += payload
        with contextlib.suppress(OSError):
            self.wfile.write(data)

    def _relay_response(self, method: str, response: Any) -> None:
        rule = getattr(self, "fault", None)
        if rule is None or rule.action not in ("lose", "stall"):
            return super()._relay_response(method, response)
        proxy: FaultProxy = self.server.proxy  # type: ignore[assignment]
        if rule.action == "stall":
            no_body = method == "HEAD" or response.getheader("Content-Length") in ("0", None)
            if rule.after_bytes is not None and not no_body:
                head = [f"HTTP/1.1 {response.status} {response.reason}\r\n"]
                head += [f"{name}: {value}\r\n" for name, value in response.getheaders()
                         if name.lower() not in ("connection", "keep-alive", "transfer-encoding")]
                with contextlib.suppress(OSError):
                    self.wfile.write("".join(head + ["\r\n"]).encode("latin-1"))
                    self.wfile.write(response.read(rule.after_bytes))
            self._close_backend()  # the rest of the backend's answer is never relayed
            proxy.wait_release(rule.seconds)
        self._close_backend()
        self._reset()

    def _reset(self) -> None:
        """Cut the client's connection with a TCP RST (SO_LINGER 0), no answer."""
        self.close_connection = True
        self.expect_pending = False
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.rfile.close()  # the socket really closes only once its file objects are
        with contextlib.suppress(OSError):
            self.connection.close()


class FaultProxy:
    """The proxy itself (in the child process): rules, the request log, down/up, stalls.

    ``rules`` are tried in order, the first that matches a request and is not exhausted
    takes it; ``requests`` logs ``(op, method, key, action)`` for each request (action
    ``"pass"`` when forwarded untouched); ``released`` wakes stalled and delayed requests.
    """

    def __init__(self, backend_url: str, host: str = "127.0.0.1") -> None:
        parts = urlsplit(backend_url)
        self.backend_url = backend_url
        self.backend_host = parts.hostname
        self.backend_port = parts.port or 80
        self.backend_timeout = 300.0
        self.host = host
        self.port = 0
        self.rules: list[Rule] = []
        self.requests: list[tuple[str, str, str, str]] = []
        self.lengths: list[int] = []  # the body bytes of each logged request
        self.released = threading.Event()
        self._next_id = 1
        self._lock = threading.Lock()
        self._server: _ProxyHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._up_timer: threading.Timer | None = None

    # -- what _Handler expects of its proxy -----------------------------------------------

    def _track(self, sock: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._connections.add if alive else self._connections.discard)(sock)

    def _count_request(self) -> None:
        pass

    def check(self, method: str, target: str, headers: Any) -> None:
        return None  # forwarded as is (no OCI rules here)

    def check_complete_multipart(self, body: bytes) -> None:
        return None

    def _record(self, *args: Any) -> None:
        pass

    # -- rules ------------------------------------------------------------------------------

    def add(self, **fields: Any) -> int:
        rule = Rule(**fields)
        with self._lock:
            rule.id = self._next_id
            self._next_id += 1
            self.rules.append(rule)
        log.info("rule %d: %s", rule.id, rule)
        return rule.id

    def take(self, op: str, method: str, key: str, length: int = 0) -> Rule | None:
        """The rule that takes this request (counted), or None to forward it."""
        with self._lock:
            taken = None
            for rule in self.rules:
                if rule.exhausted() or not rule.matches(op, method, key):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                rule.hits += 1
                taken = rule
                break
            if len(self.requests) < LOG_LIMIT:
                self.requests.append((op, method, key, taken.action if taken else "pass"))
                self.lengths.append(length)
        if taken is not None:
            log.info("rule %d (%s) takes %s %s", taken.id, taken.action, op, key)
        return taken

    def clear(self) -> None:
        """Forget every rule and the request log; wake every stalled request."""
        with self._lock:
            self.rules.clear()
            self.requests.clear()
            self.lengths.clear()
        self.release()

    def release(self) -> None:
        """Wake the requests stalled or delayed until now (later ones stall again)."""
        released, self.released = self.released, threading.Event()
        released.set()

    def wait_release(self, seconds: float | None) -> None:
        self.released.wait(seconds)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"rules": [dataclasses.asdict(r) for r in self.rules],
                    "requests": list(self.requests),
                    "lengths": list(self.lengths), "down": self._server is None}

    # -- up and down ------------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        """Listen (on the same port as before, after a :meth:`down`)."""
        with self._lock:
            if self._up_timer is not None:
                self._up_timer.cancel()
                self._up_timer = None
            if self._server is not None:
                return self
            server = _ProxyHTTPServer((self.host, self.port), _FaultHandler)
            server.proxy = self  # type: ignore[assignment]
            self._server = server
            self.port = server.server_address[1]
            self._thread = threading.Thread(target=server.serve_forever,
                                            kwargs={"poll_interval": 0.05}, daemon=True)
            self._thread.start()
        log.info("fault proxy on 127.0.0.1:%d in front of %s", self.port, self.backend_url)
        return self

    up = start

    def down(self, seconds: float | None = None) -> None:
        """Refuse connections (and cut the open ones) for ``seconds``, or until :meth:`up`."""
        with self._lock:
            server, self._server = self._server, None
            connections = list(self._connections)
        if server is not None:
            server.shutdown()
            server.server_close()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
        self.release()
        log.info("fault proxy down%s", f" for {seconds:g} s" if seconds is not None else "")
        if seconds is not None:
            timer = threading.Timer(seconds, self.start)
            timer.daemon = True
            with self._lock:
                self._up_timer = timer
            timer.start()

    def stop(self) -> None:
        self.down()
        with self._lock:
            if self._up_timer is not None:
                self._up_timer.cancel()

    def serve_control(self, commands: Any, answers: Any) -> None:
        """Run JSON-line commands (``{"cmd": NAME, ...}``) until ``commands`` ends."""
        for line in commands:
            try:
                request = json.loads(line)
                name = request.pop("cmd")
                if name == "add":
                    result: Any = self.add(**request)
                elif name in ("clear", "release", "up"):
                    getattr(self, name)()
                    result = None
                elif name == "down":
                    self.down(request.get("seconds"))
                    result = None
                elif name == "stats":
                    result = self.stats()
                else:
                    raise ValueError(f"unknown command {name!r}")
                answer = {"ok": True, "result": result}
            except Exception as exc:  # noqa: BLE001 - reported to the test, which raises it
                answer = {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}
            answers.write(json.dumps(answer) + "\n")
            answers.flush()


class FaultProxyProcess:
    """A :class:`FaultProxy` in a child process, driven from the test.

    Each method sends one command and waits for its answer; :meth:`error`, :meth:`delay`,
    :meth:`reset`, :meth:`lose` and :meth:`stall` add a rule and return its id, :meth:`hits`
    tells how many requests it took.
    """

    def __init__(self, backend_url: str) -> None:
        self.backend_url = backend_url
        self._process: subprocess.Popen | None = None
        self._port: int | None = None
        self._lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the fault proxy process is not started")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> "FaultProxyProcess":
        if self._process is None:
            self._process = subprocess.Popen(
                [sys.executable, __file__, self.backend_url], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, start_new_session=True)
            line = self._process.stdout.readline().strip()
            if not line.isdigit():
                self.stop()
                raise RuntimeError(f"the fault proxy process did not start ({line!r})")
            self._port = int(line)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the child exits at the end of its commands
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def command(self, cmd: str, **args: Any) -> Any:
        assert self._process is not None, "the fault proxy process is not started"
        with self._lock:
            self._process.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
            self._process.stdin.flush()
            answer = json.loads(self._process.stdout.readline())
        if not answer["ok"]:
            raise RuntimeError(f"fault proxy: {answer['error']}")
        return answer["result"]

    # -- faults -----------------------------------------------------------------------------

    def error(self, status: int = 500, code: str = "InternalError", times: int | None = 1,
              **match: Any) -> int:
        return self.command("add", action="error", status=status, code=code, times=times, **match)

    def delay(self, seconds: float, times: int | None = 1, **match: Any) -> int:
        return self.command("add", action="delay", seconds=seconds, times=times, **match)

    def reset(self, times: int | None = 1, **match: Any) -> int:
        return self.command("add", action="reset", times=times, **match)

    def lose(self, times: int | None = 1, **match: Any) -> int:
        return self.command("add", action="lose", times=times, **match)

    def stall(self, seconds: float | None = None, after_bytes: int | None = None,
              times: int | None = 1, **match: Any) -> int:
        return self.command("add", action="stall", seconds=seconds, after_bytes=after_bytes,
                            times=times, **match)

    def down(self, seconds: float | None = None) -> None:
        self.command("down", seconds=seconds)

    def up(self) -> None:
        self.command("up")

    def release(self) -> None:
        self.command("release")

    def clear(self) -> None:
        self.command("clear")

    # -- what happened ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return self.command("stats")

    def hits(self, rule_id: int) -> int:
        """How many requests rule ``rule_id`` took (a cleared rule is gone: KeyError)."""
        for rule in self.stats()["rules"]:
            if rule["id"] == rule_id:
                return rule["hits"]
        raise KeyError(f"no rule {rule_id} (cleared?)")

    def requests(self, op: str | None = None) -> list[tuple[str, str, str, str]]:
        """The requests seen since the last :meth:`clear`: ``(op, method, key, action)``."""
        return [tuple(r) for r in self.stats()["requests"] if op is None or r[0] == op]

    def sent(self) -> list[tuple[str, str, int]]:
        """``(op, key, body bytes)`` of each request since the last :meth:`clear`."""
        stats = self.stats()
        return [(r[0], r[2], n) for r, n in zip(stats["requests"], stats["lengths"])]

    def __enter__(self) -> "FaultProxyProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class FaultyServer(ProxiedServer):
    """A local S3 server seen through a :class:`FaultProxyProcess`.

    Mounts use ``endpoint_url`` (the proxy's); ``client()`` and ``create_bucket`` go to the
    real server, so a test checks the bucket itself.  ``proxy`` controls the faults.
    """

    def __init__(self, server: Any) -> None:
        # In front of the server itself, not of --oci-proxy's proxy around it: SigV4 signs the
        # Host header, which the OCI proxy checks is its own.
        server = getattr(server, "server", server)
        super().__init__(server, FaultProxyProcess(server.endpoint_url))
        self.kind = f"{server.kind}+faults"

    def __repr__(self) -> str:
        return f"<FaultyServer {self.proxy.endpoint_url} -> {self.server!r}>"


if __name__ == "__main__":
    # The child of FaultProxyProcess: print the port once listening, obey stdin, exit at EOF.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    proxy = FaultProxy(sys.argv[1]).start()
    print(proxy.port, flush=True)
    proxy.serve_control(sys.stdin, sys.stdout)
    proxy.stop()
