"""Retries as the store sees them: 409 Conflict (OCI) and throttling are repeated, not surfaced."""

from __future__ import annotations

import http.server
import threading

import pytest

from ocifs.credentials import Credentials
from ocifs.store import make_client


class FlakyStore(http.server.BaseHTTPRequestHandler):
    """Answers the first ``failures`` PUTs with ``status``, then 200."""

    protocol_version = "HTTP/1.1"
    failures = 0
    status = 409
    code = "ConcurrentObjectUpdate"
    seen: list[int] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        cls = type(self)
        if len(cls.seen) < cls.failures:
            cls.seen.append(cls.status)
            body = f"<Error><Code>{cls.code}</Code><Message>busy</Message></Error>".encode()
            self.send_response(cls.status)
        else:
            cls.seen.append(200)
            body = b""
            self.send_response(200)
            self.send_header("ETag", '"0"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyStore)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FlakyStore.seen = []
    yield server
    server.shutdown()
    server.server_close()


def client_for(server, retries: int = 3):
    return make_client(f"http://127.0.0.1:{server.server_address[1]}", "us-east-1",
                       Credentials("k", "s"), path_style=True, retries=retries,
                       connect_timeout=5, read_timeout=5, max_pool=4)


@pytest.mark.parametrize("status,code", [(409, "ConcurrentObjectUpdate"), (429, "TooManyRequests"),
                                         (503, "SlowDown")])
def test_transient_answers_are_retried(flaky, status, code):
    FlakyStore.failures, FlakyStore.status, FlakyStore.code = 2, status, code
    client_for(flaky).put_object(Bucket="bucket", Key="k", Body=b"x")
    assert FlakyStore.seen == [status, status, 200]


def test_retries_are_bounded(flaky):
    FlakyStore.failures, FlakyStore.status, FlakyStore.code = 10, 409, "ConcurrentObjectUpdate"
    with pytest.raises(Exception) as info:
        client_for(flaky, retries=2).put_object(Bucket="bucket", Key="k", Body=b"x")
    assert "ConcurrentObjectUpdate" in str(info.value)
    assert FlakyStore.seen == [409, 409, 409]
