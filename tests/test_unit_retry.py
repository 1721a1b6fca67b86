"""Retries as the store sees them: 409 Conflict (OCI), throttling, 5xx and unreachable stores
are repeated, not surfaced, with waits long enough to ride out a short outage."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import botocore.exceptions
import pytest

from ocifs.s3 import retries
from ocifs.s3.credentials import Credentials
from ocifs.s3.client import make_client


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    """Waits 20 times shorter than a mount's (the pacing itself is tested below)."""
    monkeypatch.setattr(retries, "BASE_DELAY", 0.05)


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
                                         (503, "SlowDown"), (500, "InternalError")])
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


def free_port() -> int:
    """A port nobody listens on (connections to it are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_waits_double_with_jitter_up_to_a_cap(monkeypatch):
    monkeypatch.setattr(retries, "BASE_DELAY", 1.0)
    low, high = retries.PacedRetry(5, rand=lambda: 0.0), retries.PacedRetry(5, rand=lambda: 1.0)
    assert [low.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 8, 10]
    assert [high.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 16, 20]
    assert sum(low.delay(n) for n in range(1, 6)) == 15.5  # what the default 5 retries span


def test_unreachable_store_is_retried_with_paced_waits(monkeypatch):
    """botocore alone waits at most 50, 100, 200 ms after refused connections (0.35 s for
    three retries); the client ocifs makes waits its own pacing: here 0.1, 0.2, 0.4 s at least."""
    monkeypatch.setattr(retries, "BASE_DELAY", 0.2)
    client = make_client(f"http://127.0.0.1:{free_port()}", "us-east-1", Credentials("k", "s"),
                         path_style=True, retries=3, connect_timeout=1, read_timeout=1, max_pool=2)
    started = time.monotonic()
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        client.head_object(Bucket="bucket", Key="k")
    assert time.monotonic() - started >= 0.1 + 0.2 + 0.4


def test_no_retry_quota_runs_out(monkeypatch):
    """botocore's standard mode shares a quota of retries among all requests (35 retries of
    errors other than throttling, then none until successes refill it): a mount riding out an
    outage would soon stop retrying at all.  ocifs retries every request, however many failed."""
    monkeypatch.setattr(retries, "BASE_DELAY", 0.001)
    client = make_client(f"http://127.0.0.1:{free_port()}", "us-east-1", Credentials("k", "s"),
                         path_style=True, retries=1, connect_timeout=1, read_timeout=1, max_pool=2)
    attempts = []
    client.meta.events.register("before-send.s3", lambda **kwargs: attempts.append(1))
    for _ in range(60):
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            client.head_object(Bucket="bucket", Key="k")
    assert len(attempts) == 120  # every request was tried twice
