"""A test-only HTTP proxy that refuses what OCI Object Storage's S3 Compatibility API refuses.

It sits between an S3 client (ocifs, boto3, s3fs) and a local S3 server (moto or SeaweedFS)
and forwards every request unchanged -- method, path and query, headers (Authorization and
Host included, so SigV4 signatures still verify on the backend), streamed bodies -- except the
request shapes OCI's ``compat.`` endpoint rejects (see REFERENCE.md section 5).  Those get an
OCI-like status and an S3-style XML error, are logged, and are recorded in
:attr:`OciProxy.refusals`, so a test run through the proxy proves ocifs only sends what OCI
accepts.

Rules (name in ``refusals``: what is refused -> status, error code):

* ``virtual-host``: a Host header other than the proxy's own ``127.0.0.1:PORT`` /
  ``localhost:PORT`` (virtual-hosted-style addressing) -> 400 InvalidRequest;
* ``aws-chunked``: ``x-amz-content-sha256: STREAMING-*``, ``Content-Encoding: aws-chunked``
  or an ``x-amz-trailer`` header -> 400 NotImplemented;
* ``crc-checksum``: ``x-amz-checksum-crc32``/``-crc64nvme`` headers, or CRC32/CRC64NVME in
  ``x-amz-sdk-checksum-algorithm``/``x-amz-checksum-algorithm`` -> 400 InvalidRequest
  (OCI takes Content-MD5, SHA256 and CRC32C);
* ``acl``: an ``?acl`` sub-resource, ``x-amz-acl`` other than ``private``, any
  ``x-amz-grant-*`` header -> 501 NotImplemented;
* ``tagging``: a ``?tagging`` sub-resource or an ``x-amz-tagging`` header -> 501 NotImplemented;
* ``empty-multipart-complete``: CompleteMultipartUpload whose XML lists no ``<Part>``
  -> 400 MalformedXML;
* ``part-number``: UploadPart/UploadPartCopy with ``partNumber`` outside 1..10000
  -> 400 InvalidArgument;
* ``object-name``: an object key (URL-decoded) with a control character (0x00-0x1F, 0x7F)
  -> 400 InvalidObjectName, or longer than 1024 bytes of UTF-8 -> 400 KeyTooLongError.

Example::

    with OciProxy(server.endpoint_url) as proxy:
        client = make_client(proxy.endpoint_url, ...)
        ...
        assert proxy.refusals == []

Standard library only: a ``ThreadingHTTPServer`` (one thread per client connection, each with
its own kept-alive backend connection) in a daemon thread, bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import select
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

log = logging.getLogger("ocifs.tests.oci_proxy")

BLOCK = 1024 * 1024  # bodies are streamed in blocks of this size
MAX_XML_BODY = 16 * 1024 * 1024  # CompleteMultipartUpload lists at most 10,000 parts
MAX_KEY_BYTES = 1024
MIN_PART, MAX_PART = 1, 10_000
CRC_ALGORITHMS = {"CRC32", "CRC64NVME"}
CRC_HEADERS = {"x-amz-checksum-crc32", "x-amz-checksum-crc64nvme"}

# Per-connection headers: never forwarded as such (the proxy frames each hop itself).
# ``Expect`` is answered by the proxy; botocore does not sign it (nor Transfer-Encoding).
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te",
               "trailer", "transfer-encoding", "upgrade", "expect"}


@dataclass(frozen=True)
class Refusal:
    """One refused request: the rule and what the proxy answered."""

    rule: str
    status: int
    code: str
    message: str


class _BodyReader:
    """Reads a request body framed by Content-Length or chunked transfer coding, block by block."""

    def __init__(self, rfile: Any, length: int | None, chunked: bool) -> None:
        self.rfile = rfile
        self.remaining = length or 0
        self.chunked = chunked
        self.chunk_left = 0
        self.done = not chunked and not self.remaining
        self.trailers: list[bytes] = []

    def read(self) -> bytes:
        """The next block (b"" at the end of the body)."""
        if self.done:
            return b""
        if not self.chunked:
            data = self.rfile.read(min(BLOCK, self.remaining))
            if not data:
                raise ConnectionError("client closed the connection in the middle of a body")
            self.remaining -= len(data)
            self.done = self.remaining == 0
            return data
        if self.chunk_left == 0:
            line = self.rfile.readline(65537)
            if not line:
                raise ConnectionError("client closed the connection in the middle of a body")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailer section, up to the empty line
                    line = self.rfile.readline(65537)
                    if line in (b"\r\n", b"\n", b""):
                        break
                    self.trailers.append(line)
                self.done = True
                return b""
            self.chunk_left = size
        data = self.rfile.read(min(BLOCK, self.chunk_left))
        if not data:
            raise ConnectionError("client closed the connection in the middle of a body")
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            self.rfile.readline(3)  # the CRLF after the chunk data
        return data

    def read_all(self, limit: int) -> bytes:
        parts, size = [], 0
        while block := self.read():
            parts.append(block)
            size += len(block)
            if size > limit:
                raise ValueError(f"request body over {limit} bytes")
        return b"".join(parts)

    def drain(self) -> None:
        while self.read():
            pass


def _error_xml(code: str, message: str, resource: str, request_id: str) -> bytes:
    def esc(text: str) -> str:
        return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                .replace('"', "&quot;"))

    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{esc(code)}</Code><Message>{esc(message)}</Message>"
            f"<Resource>{esc(resource)}</Resource><RequestId>{request_id}</RequestId></Error>"
            ).encode()


def _has_part_element(body: bytes) -> bool:
    """Whether a CompleteMultipartUpload document lists a Part (namespace or not)."""
    root = ET.fromstring(body)  # ET.ParseError for anything that is not XML
    return any(el.tag == "Part" or el.tag.endswith("}Part") for el in root.iter())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyHTTPServer

    # -- connection lifecycle -----------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.backend: http.client.HTTPConnection | None = None
        self.expect_pending = False
        self.server.proxy._track(self.connection, True)

    def finish(self) -> None:
        self._close_backend()
        self.server.proxy._track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def handle_expect_100(self) -> bool:
        # Answered later: not for a request the proxy refuses (the client then never sends
        # the body), and only once the body is about to be read.
        self.expect_pending = True
        return True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s - %s", self.address_string(), format % args)

    def _close_backend(self) -> None:
        if self.backend is not None:
            with contextlib.suppress(OSError):
                self.backend.close()
            self.backend = None

    def _backend_connection(self) -> http.client.HTTPConnection:
        """This client connection's kept-alive backend connection, reopened if the backend
        closed it while idle (a readable idle socket means EOF or garbage)."""
        conn = self.backend
        if conn is not None and conn.sock is not None:
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if readable:
                self._close_backend()
        if self.backend is None:
            proxy = self.server.proxy
            self.backend = http.client.HTTPConnection(proxy.backend_host, proxy.backend_port,
                                                      timeout=proxy.backend_timeout)
        return self.backend

    def _continue(self) -> None:
        if self.expect_pending:
            self.expect_pending = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- dispatch -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        try:
            self._proxy_request()
        except (OSError, ValueError) as e:  # the client broke off, or sent a garbled body
            log.debug("connection from %s dropped: %s", self.address_string(), e)
            self.close_connection = True
        finally:
            self.expect_pending = False  # set anew by the next request's Expect header

    do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_PATCH = do_GET

    def _proxy_request(self) -> None:
        proxy = self.server.proxy
        proxy._count_request()
        method = self.command
        target = self.path
        if not target.startswith("/") and "://" in target:  # absolute-form (client via proxy)
            parts = urlsplit(target)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = list(self.headers.items())
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length: int | None = None
        if not chunked and self.headers.get("Content-Length") is not None:
            try:
                length = int(self.headers["Content-Length"])
                if length < 0:
                    raise ValueError(length)
            except ValueError:
                self._send_error(Refusal("bad-request", 400, "BadRequest", "invalid Content-Length"),
                                 target, close=True)
                return
        body = _BodyReader(self.rfile, length, chunked)

        refusal = proxy.check(method, target, self.headers)
        buffered: bytes | None = None
        if refusal is None and method == "POST" and "uploadId" in _query(target):
            self._continue()
            try:
                buffered = body.read_all(MAX_XML_BODY)
            except ValueError as e:
                self._send_error(Refusal("bad-request", 400, "EntityTooLarge", str(e)), target,
                                 close=True)
                return
            refusal = proxy.check_complete_multipart(buffered)
        if refusal is not None:
            proxy._record(refusal, method, target, headers)
            # A client waiting on 100-continue never sends the body: answer and close.
            # Otherwise read the body away so the connection stays usable.
            close = self.expect_pending
            if not close:
                body.drain()
            self._send_error(refusal, target, close=close)
            return
        self._forward(method, target, headers, body, buffered, chunked)

    # -- forwarding ----------------------------------------------------------------------------

    def _forward(self, method: str, target: str, headers: list[tuple[str, str]],
                 body: _BodyReader, buffered: bytes | None, chunked: bool) -> None:
        try:
            conn = self._backend_connection()
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                lower = name.lower()
                if lower not in _HOP_BY_HOP and not (chunked and lower == "content-length"):
                    conn.putheader(name, value)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
        except OSError as e:
            self._close_backend()
            if not self.expect_pending:
                body.drain()
            self._send_error(Refusal("backend", 502, "BadGateway", f"backend unreachable: {e}"),
                             target, close=self.expect_pending)
            return
        try:
            self._continue()
            if buffered is not None:
                blocks: Any = iter([buffered] if buffered else [])
            else:
                blocks = iter(body.read, b"")
            for block in blocks:
                conn.send(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            if chunked:
                conn.send(b"0\r\n" + b"".join(body.trailers) + b"\r\n")
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            # The client's body may be half read: this connection cannot be reused.
            self._close_backend()
            self._send_error(Refusal("backend", 502, "BadGateway", f"backend failed: {e}"),
                             target, close=True)
            return
        self._relay_response(method, response)

    def _relay_response(self, method: str, response: http.client.HTTPResponse) -> None:
        status = response.status
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        out = [f"HTTP/1.1 {status} {response.reason}\r\n"]
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                out.append(f"{name}: {value}\r\n")
        out.append(f"opc-request-id: {uuid.uuid4().hex[:16].upper()}\r\n")  # as OCI answers
        has_length = response.getheader("Content-Length") is not None
        rechunk = not no_body and response.chunked
        until_close = not no_body and not response.chunked and not has_length
        if rechunk:
            out.append("Transfer-Encoding: chunked\r\n")
        if until_close:
            out.append("Connection: close\r\n")
            self.close_connection = True
        out.append("\r\n")
        try:
            self.wfile.write("".join(out).encode("latin-1"))
            if not no_body:
                while block := response.read1(BLOCK):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if rechunk else block)
                if rechunk:
                    self.wfile.write(b"0\r\n\r\n")
            response.close()
        except (OSError, http.client.HTTPException):
            # The client went away (or the backend broke off) mid-body: drop both sides.
            self._close_backend()
            self.close_connection = True
            return
        if response.will_close:
            self._close_backend()

    def _send_error(self, refusal: Refusal, target: str, close: bool) -> None:
        """An S3-style XML error (the refusals, and the proxy's own 400/502 answers)."""
        request_id = uuid.uuid4().hex[:16].upper()
        payload = _error_xml(refusal.code, refusal.message, target.split("?", 1)[0], request_id)
        head = [f"HTTP/1.1 {refusal.status} {http.client.responses.get(refusal.status, 'Error')}",
                "Content-Type: application/xml",
                f"Content-Length: {len(payload)}",
                f"x-amz-request-id: {request_id}",
                f"opc-request-id: {request_id}",
                f"Date: {self.date_time_string()}"]
        if close:
            head.append("Connection: close")
            self.close_connection = True
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += payload
        with contextlib.suppress(OSError):
            self.wfile.write(data)


class _ProxyHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    proxy: OciProxy


def _query(target: str) -> dict[str, list[str]]:
    return parse_qs(target.partition("?")[2], keep_blank_values=True)


class OciProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``backend_url`` refusing what OCI refuses.

    ``refusals`` lists ``(rule, method, path)`` for every refused request (``path`` with its
    query); ``refusal_details`` has the same entries as dicts with the status, error code and
    the request's headers (the Authorization signature left out).  ``requests`` counts every
    request received.
    """

    def __init__(self, backend_url: str, host: str = "127.0.0.1",
                 backend_timeout: float = 300.0, record_file: str | None = None) -> None:
        parts = urlsplit(backend_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"backend must be an http:// URL, not {backend_url!r}")
        self.backend_url = backend_url
        self.backend_host = parts.hostname
        self.backend_port = parts.port or 80
        self.backend_timeout = backend_timeout
        self.host = host
        self.refusals: list[tuple[str, str, str]] = []
        self.refusal_details: list[dict[str, Any]] = []
        self.requests = 0
        self.record_file = record_file  # refusals also appended here, one JSON object a line
        self._lock = threading.Lock()
        self._server: _ProxyHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._own_hosts: set[str] = set()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("OciProxy is not started; call start() first")
        return self._server.server_address[1]

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> OciProxy:
        if self._server is not None:
            return self
        server = _ProxyHTTPServer((self.host, 0), _Handler)
        server.proxy = self
        self._server = server
        port = server.server_address[1]
        self._own_hosts = {f"{self.host}:{port}", f"127.0.0.1:{port}", f"localhost:{port}",
                           f"[::1]:{port}"}
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"oci-proxy-{port}", daemon=True)
        self._thread.start()
        log.info("OCI proxy on %s in front of %s", self.endpoint_url, self.backend_url)
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection.  Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> OciProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.endpoint_url if self._server is not None else "stopped"
        return f"<OciProxy {where} -> {self.backend_url}, {len(self.refusals)} refusals>"

    def clear(self) -> None:
        """Forget the recorded refusals (and the request count)."""
        with self._lock:
            self.refusals.clear()
            self.refusal_details.clear()
            self.requests = 0

    def _track(self, sock: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._connections.add if alive else self._connections.discard)(sock)

    def _count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def _record(self, refusal: Refusal, method: str, target: str,
                headers: list[tuple[str, str]]) -> None:
        shown = [(k, v.split("Signature=")[0] + "Signature=..." if k.lower() == "authorization"
                  else v) for k, v in headers]
        detail = {"rule": refusal.rule, "method": method, "path": target, "status": refusal.status,
                  "code": refusal.code, "message": refusal.message, "headers": shown}
        with self._lock:
            self.refusals.append((refusal.rule, method, target))
            self.refusal_details.append(detail)
            if self.record_file:
                with open(self.record_file, "a") as record:
                    record.write(json.dumps(detail) + "\n")
        log.warning("OCI proxy refused %s %s: rule %s -> %d %s (%s); headers: %s", method,
                    target, refusal.rule, refusal.status, refusal.code, refusal.message, shown)

    # -- the rules ------------------------------------------------------------------------------

    def check(self, method: str, target: str, headers: Any) -> Refusal | None:
        """The refusal for a request's line and headers, or None to forward it.

        ``headers`` is an ``email.message.Message``-like mapping (case-insensitive ``get``,
        ``get_all``, ``keys``).
        """
        path, _, _ = target.partition("?")
        query = _query(target)
        names = {name.lower() for name in headers.keys()}

        host = headers.get("Host")
        if host is not None and host.strip().lower() not in self._own_hosts:
            return Refusal("virtual-host", 400, "InvalidRequest",
                           f"virtual-hosted-style request (Host: {host.strip()}) is not "
                           "supported: the compatibility endpoint is path-style only")

        sha = (headers.get("x-amz-content-sha256") or "").strip().upper()
        encodings = {e.strip().lower() for v in headers.get_all("Content-Encoding") or []
                     for e in v.split(",")}
        if sha.startswith("STREAMING-") or "aws-chunked" in encodings or "x-amz-trailer" in names:
            shape = (f"x-amz-content-sha256: {sha}" if sha.startswith("STREAMING-")
                     else "Content-Encoding: aws-chunked" if "aws-chunked" in encodings
                     else f"x-amz-trailer: {headers.get('x-amz-trailer')}")
            return Refusal("aws-chunked", 400, "NotImplemented",
                           f"chunked/streaming payloads are not supported ({shape})")

        crc = sorted(names & CRC_HEADERS)
        for name in ("x-amz-sdk-checksum-algorithm", "x-amz-checksum-algorithm"):
            value = (headers.get(name) or "").strip().upper()
            if value in CRC_ALGORITHMS:
                crc.append(f"{name}: {value}")
        if crc:
            return Refusal("crc-checksum", 400, "InvalidRequest",
                           f"unsupported checksum ({', '.join(crc)}); use Content-MD5, "
                           "SHA256 or CRC32C")

        acl = (headers.get("x-amz-acl") or "").strip().lower()
        grants = sorted(n for n in names if n.startswith("x-amz-grant-"))
        if "acl" in query or (acl and acl != "private") or grants:
            what = ("the ?acl sub-resource" if "acl" in query
                    else f"x-amz-acl: {acl}" if acl and acl != "private" else ", ".join(grants))
            return Refusal("acl", 501, "NotImplemented", f"ACLs are not supported ({what})")

        if "tagging" in query or "x-amz-tagging" in names:
            what = "the ?tagging sub-resource" if "tagging" in query else "x-amz-tagging"
            return Refusal("tagging", 501, "NotImplemented",
                           f"object tagging is not supported ({what})")

        if method == "PUT" and "uploadId" in query and "partNumber" in query:
            raw = query["partNumber"][0]
            try:
                number = int(raw)
            except ValueError:
                number = 0
            if not MIN_PART <= number <= MAX_PART:
                return Refusal("part-number", 400, "InvalidArgument",
                               f"part number {raw!r} must be an integer between "
                               f"{MIN_PART} and {MAX_PART}")

        segments = path.split("/", 2)  # "", bucket, key
        key = unquote_to_bytes(segments[2]) if len(segments) == 3 else b""
        if key:
            bad = sorted({b for b in key if b < 0x20 or b == 0x7F})
            if bad:
                return Refusal("object-name", 400, "InvalidObjectName",
                               "object name contains control characters "
                               f"({', '.join(f'0x{b:02X}' for b in bad)})")
            if len(key) > MAX_KEY_BYTES:
                return Refusal("object-name", 400, "KeyTooLongError",
                               f"object name is {len(key)} bytes; at most {MAX_KEY_BYTES}")
        return None

    def check_complete_multipart(self, body: bytes) -> Refusal | None:
        """The refusal for a CompleteMultipartUpload document, or None."""
        try:
            if _has_part_element(body):
                return None
        except ET.ParseError as e:
            return Refusal("empty-multipart-complete", 400, "MalformedXML",
                           f"the CompleteMultipartUpload document is not XML ({e})")
        return Refusal("empty-multipart-complete", 400, "MalformedXML",
                       "CompleteMultipartUpload lists no parts")


class ProxyProcess:
    """An :class:`OciProxy` run in a child process, with the same ``endpoint_url``,
    ``refusals``, ``refusal_details``, ``start``/``stop``.

    Mount tests need it out of this process: a test holding a file open on a mount while it
    starts a subprocess makes the kernel flush that file during the subprocess's start, and the
    upload must not depend on a proxy thread of the (then blocked) test process.
    """

    def __init__(self, backend_url: str) -> None:
        self.backend_url = backend_url
        self._record = Path(tempfile.mkdtemp(prefix="oci-proxy-")) / "refusals.jsonl"
        self._process: subprocess.Popen | None = None
        self._port: int | None = None

    @property
    def endpoint_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the proxy process is not started")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> "ProxyProcess":
        if self._process is not None:
            return self
        self._record.touch()
        self._process = subprocess.Popen(
            [sys.executable, __file__, self.backend_url, str(self._record)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
        line = self._process.stdout.readline().decode().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"the OCI proxy process did not start ({line!r})")
        self._port = int(line)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        self._port = None
        if process is not None:
            process.terminate()
            process.wait(timeout=10)

    @property
    def refusal_details(self) -> list[dict[str, Any]]:
        text = self._record.read_text() if self._record.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    @property
    def refusals(self) -> list[tuple[str, str, str]]:
        return [(d["rule"], d["method"], d["path"]) for d in self.refusal_details]

    def __repr__(self) -> str:
        return f"<ProxyProcess {self.backend_url}, {len(self.refusals)} refusals>"


class ProxiedServer:
    """A local S3 server seen through an :class:`OciProxy`.

    Offers what tests use of a ``LocalS3Server``: ``endpoint_url`` (the proxy's), ``access_key``,
    ``secret_key``, ``kind`` (e.g. ``"moto+oci-proxy"``), and ``create_bucket``/``client`` going
    to the real server directly (set-up and checks are not what is under test).  ``server`` is
    the wrapped server, ``proxy`` the proxy; other attributes are the server's.
    """

    def __init__(self, server: Any, proxy: Any = None) -> None:
        """``proxy``: any proxy with ``start``/``stop``/``endpoint_url`` (default: a
        :class:`ProxyProcess` in front of ``server``)."""
        self.server = server
        self.proxy = proxy if proxy is not None else ProxyProcess(server.endpoint_url)
        self.kind = f"{server.kind}+oci-proxy"
        self.backend_kind = server.kind
        self.access_key = server.access_key
        self.secret_key = server.secret_key

    @property
    def endpoint_url(self) -> str:
        return self.proxy.endpoint_url

    def start(self) -> ProxiedServer:
        self.proxy.start()
        return self

    def stop(self) -> None:
        """Stop the proxy (the wrapped server is left to whoever started it)."""
        self.proxy.stop()

    def create_bucket(self, name: str) -> None:
        self.server.create_bucket(name)

    def client(self, **config_overrides: Any) -> Any:
        return self.server.client(**config_overrides)

    def __getattr__(self, name: str) -> Any:
        if name in ("server", "proxy"):  # not set yet: no recursion during __init__
            raise AttributeError(name)
        return getattr(self.server, name)

    def __enter__(self) -> ProxiedServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ProxiedServer {self.proxy!r} around {self.server!r}>"


if __name__ == "__main__":
    # The child of ProxyProcess: serve until terminated; print the port once listening.
    proxy = OciProxy(sys.argv[1], record_file=sys.argv[2]).start()
    print(proxy.port, flush=True)
    threading.Event().wait()
