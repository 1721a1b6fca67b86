"""The lean path's HTTP exchange (ocifs/s3/wire.py) against a server that answers with
scripted bytes: each way an HTTP/1.1 answer can be framed, connection reuse and its limits,
and each failure becoming the botocore error that boto3's own send would raise."""

from __future__ import annotations

import socket
import threading

import botocore.exceptions
import pytest
import urllib3
from botocore.awsrequest import AWSRequest

from ocifs.s3.client import make_client
from ocifs.s3.credentials import Credentials
from ocifs.s3.lean import DirectTransport
from ocifs.s3.wire import WireError, exchange


class ScriptedServer:
    """Answers each request it reads with the next of ``answers`` (bytes; None to close the
    connection without answering; (bytes, "close") to close after them); records requests
    and connections."""

    def __init__(self, answers: list) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while self.answers:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
                answer = self.answers.pop(0)
                if answer is None:
                    return
                if isinstance(answer, tuple):
                    conn.sendall(answer[0])
                    return
                conn.sendall(answer)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def serve():
    servers = []

    def start(*answers):
        server = ScriptedServer(list(answers))
        servers.append(server)
        pool = urllib3.HTTPConnectionPool("127.0.0.1", server.port, maxsize=1,
                                          timeout=urllib3.Timeout(connect=2, read=0.5))
        return server, pool
    yield start
    for server in servers:
        server.close()


def send(pool, method="GET", body=b"", headers=(("Host", "h"),)):
    return exchange(pool, method, "/b/k", iter(headers), body)


def test_a_content_length_body_is_read_and_the_connection_reused(serve):
    server, pool = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\nhello",
                         b"HTTP/1.1 204 No Content\r\n\r\n")
    first = send(pool)
    assert (first.status_code, first.content) == (200, b"hello")
    assert first.pairs == [("Content-Length", "5"), ("ETag", '"e"')]
    assert first.headers["etag"] == '"e"'  # case-insensitive, as botocore's
    second = send(pool, "DELETE")
    assert (second.status_code, second.content) == (204, b"")
    assert server.connections == 1
    assert server.requests[0].startswith(b"GET /b/k HTTP/1.1\r\nHost: h\r\n")
    assert b"Accept-Encoding: identity\r\n" in server.requests[0]


def test_a_head_answer_has_no_body_whatever_its_length_says(serve):
    server, pool = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
                         b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    assert send(pool, "HEAD").content == b""
    assert send(pool, "HEAD").status_code == 404
    assert server.connections == 1


def test_a_chunked_body_with_extensions_and_trailers(serve):
    server, pool = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5;x=y\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: t\r\n\r\n",
                         b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert send(pool).content == b"hello world"
    assert send(pool).content == b"ok"
    assert server.connections == 1


def test_a_body_without_length_runs_to_the_close(serve):
    server, pool = serve((b"HTTP/1.1 200 OK\r\n\r\nall of it", "close"),
                         b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert send(pool).content == b"all of it"
    assert send(pool).status_code == 200
    assert server.connections == 2


def test_connection_close_is_honoured(serve):
    server, pool = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                         b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    send(pool)
    send(pool)
    assert server.connections == 2


def test_an_answer_with_more_than_was_asked_for_is_not_reused(serve):
    server, pool = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
                         b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert send(pool).content == b"ok"
    send(pool)
    assert server.connections == 2


def test_an_interim_100_continue_is_skipped(serve):
    _, pool = serve(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
    answer = send(pool, "PUT", b"body")
    assert (answer.status_code, answer.content) == (200, b"x")


def test_repeated_headers_are_joined_as_urllib3_joins_them(serve):
    _, pool = serve(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\nx-a: 2\r\n\r\n")
    assert send(pool).pairs == [("X-A", "1, 2"), ("Content-Length", "0")]


def test_a_put_carries_its_length_and_body(serve):
    server, pool = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                         b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    send(pool, "PUT", b"abc")
    big = bytes(range(256)) * 1024  # past one send
    send(pool, "PUT", big)
    assert server.requests[0].endswith(b"Content-Length: 3\r\n\r\nabc")
    assert server.requests[1].endswith(b"\r\n\r\n" + big)


@pytest.mark.parametrize("answer", [b"SSH-2.0-not http\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
                                    b""])
def test_what_is_not_a_whole_answer_is_an_error_and_the_connection_dropped(serve, answer):
    server, pool = serve((answer, "close"), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(WireError):
        send(pool)
    assert pool.pool.qsize() == 1  # its slot is back, for a new connection
    assert send(pool).status_code == 200  # on a new connection
    assert server.connections == 2


# -- through DirectTransport: the errors botocore's own send raises --------------------------

def transport_for(port: int, read_timeout: float = 0.5) -> DirectTransport:
    client = make_client(f"http://127.0.0.1:{port}", "us-east-1", Credentials("AK", "SK"),
                         path_style=True, retries=0, connect_timeout=1,
                         read_timeout=read_timeout, max_pool=2)
    return DirectTransport(client._endpoint.http_session, f"http://127.0.0.1:{port}/b/")


def request_for(port: int) -> AWSRequest:
    return AWSRequest("HEAD", f"http://127.0.0.1:{port}/b/k", headers={"Host": "x"})


def test_the_host_header_is_what_botocore_would_sign():
    assert transport_for(9000).host == "127.0.0.1:9000"
    client = make_client("https://objects.example.com", "us-east-1", Credentials("AK", "SK"),
                         path_style=True, retries=0, connect_timeout=1, read_timeout=1,
                         max_pool=1)
    assert DirectTransport(client._endpoint.http_session,
                           "https://objects.example.com/b/").host == "objects.example.com"


def test_a_refused_connection_is_an_endpoint_connection_error():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        transport_for(port)(request_for(port))


def test_a_silent_server_is_a_read_timeout(serve):
    server, _ = serve()
    server.answers.append(b"never sent")  # keeps the server reading, never answering
    server.answers.insert(0, b"")
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        transport_for(server.port, read_timeout=0.3)(request_for(server.port))


def test_a_connection_closed_without_an_answer_is_connection_closed(serve):
    server, _ = serve(None)
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        transport_for(server.port)(request_for(server.port))


def test_a_good_answer_through_the_transport(serve):
    server, _ = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Amz-Request-Id: r\r\n\r\n")
    answer = transport_for(server.port)(request_for(server.port))
    assert answer.status_code == 200 and answer.headers["x-amz-request-id"] == "r"


def test_the_pool_is_kept_and_looked_up_again_once_dropped(serve):
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    server, _ = serve(ok, ok, ok)
    transport = transport_for(server.port)
    transport(request_for(server.port))
    kept = transport.pool()
    transport(request_for(server.port))
    assert transport.pool() is kept
    transport.http._manager.clear()  # botocore's close: the manager forgets its pools
    assert transport.pool() is not kept
    assert transport(request_for(server.port)).status_code == 200
