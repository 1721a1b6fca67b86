"""Client CPU per HEAD when a batch's requests in flight are threads, or one thread's sockets.

A cold ``ls -l`` sends a HEAD per entry, several in flight; in the mount each request in
flight is a thread (``ocifs.s3.inflight.HeadThreads``), and the threads take turns at the
interpreter.  This measures what that costs against one thread that keeps the same number of
connections busy with non-blocking sockets and a selector.  Both variants sign each HEAD with
botocore's ``S3SigV4Auth`` and parse the answer's head as the mount does (``ocifs.s3.wire``),
over plain sockets to a local SeaweedFS (``weed mini``, whose CPU is not counted), alternating
for ``--rounds``; the figures are this process's CPU time (user + system, all threads) per
HEAD and the wall time of each batch, medians.

    python -m benchmarks.head_mux --keys 500 --width 8 --rounds 8
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import queue
import selectors
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ocifs.run.localserver import LocalS3Server
from ocifs.s3.wire import _parse_head

BUCKET = "head-mux"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Heads:
    """Signed HEAD requests for the keys of one bucket, and the parse of their answers."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str) -> None:
        self.endpoint = endpoint
        self.host, port = endpoint.rsplit("/", 1)[1].split(":")
        self.port = int(port)
        self.auth = S3SigV4Auth(Credentials(access_key, secret_key), "s3", "us-east-1")

    def request(self, key: str) -> bytes:
        r = AWSRequest("HEAD", f"{self.endpoint}/{BUCKET}/{key}",
                       headers={"x-amz-content-sha256": EMPTY_SHA256})
        self.auth.add_auth(r)
        lines = [f"HEAD /{BUCKET}/{key} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in r.headers.items()]
        lines.append("Accept-Encoding: identity")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    @staticmethod
    def parse(head: bytes) -> list[tuple[str, str]]:
        """The answer's headers, parsed as the mount parses them (ocifs.s3.wire)."""
        status, pairs, _ = _parse_head(head)
        if status != 200:
            raise RuntimeError(f"HEAD answered {status}")
        return pairs

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def _answers(buffer: bytearray) -> Iterator[bytes]:
    """The complete answer heads in ``buffer`` (taken out of it)."""
    while (end := buffer.find(b"\r\n\r\n")) >= 0:
        head = bytes(buffer[:end])
        del buffer[:end + 4]
        yield head


def with_threads(heads: Heads, keys: list[str], width: int) -> int:
    """``width`` threads, each sending one HEAD at a time on its own connection."""
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for key in keys:
        todo.put(key)
    done: list[list[tuple[str, str]]] = []

    def work() -> None:
        sock, buffer = heads.connect(), bytearray()
        try:
            while True:
                try:
                    key = todo.get_nowait()
                except queue.Empty:
                    return
                sock.sendall(heads.request(key))
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise RuntimeError("the server closed a connection")
                    buffer += chunk
                done.extend(heads.parse(h) for h in _answers(buffer))
        finally:
            sock.close()

    threads = [threading.Thread(target=work) for _ in range(width)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(done)


def with_selector(heads: Heads, keys: list[str], width: int) -> int:
    """One thread keeping ``width`` connections busy: send the next key on a connection as
    soon as its answer is in."""
    todo = iter(keys)
    done: list[list[tuple[str, str]]] = []
    selector = selectors.DefaultSelector()

    def send_next(sock: socket.socket) -> bool:
        key = next(todo, None)
        if key is None:
            return False
        sock.setblocking(True)
        sock.sendall(heads.request(key))
        sock.setblocking(False)
        return True

    for _ in range(width):
        sock = heads.connect()
        if not send_next(sock):
            sock.close()
            break
        selector.register(sock, selectors.EVENT_READ, bytearray())
    while selector.get_map():
        for ready, _ in selector.select(30):
            sock, buffer = ready.fileobj, ready.data
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed a connection")
            buffer += chunk
            for head in _answers(buffer):
                done.append(heads.parse(head))
                if not send_next(sock):
                    selector.unregister(sock)
                    sock.close()
                    break
    selector.close()
    return len(done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--width", type=int, default=8, help="HEADs in flight")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    keys = [f"f{i:05d}" for i in range(args.keys)]
    variants: dict[str, Callable[[Heads, list[str], int], int]] = {
        "threads": with_threads, "selector": with_selector}
    with tempfile.TemporaryDirectory() as scratch, \
            LocalS3Server(kind="seaweedfs", data_dir=Path(scratch) / "s") as server:
        server.create_bucket(BUCKET)
        client = boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1",
                              aws_access_key_id=server.access_key,
                              aws_secret_access_key=server.secret_key)
        with cf.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: client.put_object(Bucket=BUCKET, Key=k, Body=b"x"), keys))
        heads = Heads(server.endpoint_url, server.access_key, server.secret_key)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for name in order:
                cpu, wall = time.process_time(), time.perf_counter()
                answered = variants[name](heads, keys, args.width)
                if answered != len(keys):
                    raise SystemExit(f"head_mux: {name} answered {answered} of {len(keys)}")
                results[name].append(((time.process_time() - cpu) / len(keys) * 1e3,
                                      (time.perf_counter() - wall) * 1e3))
    print(f"{args.keys} HEADs, {args.width} in flight, medians of {args.rounds} rounds:")
    for name, runs in results.items():
        print(f"  {name:8} {statistics.median(r[0] for r in runs):.3f} ms CPU a HEAD, "
              f"{statistics.median(r[1] for r in runs):.0f} ms a batch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
