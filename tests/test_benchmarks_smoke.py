"""The benchmark suite (benchmarks/) at a tiny scale: it runs, verifies every byte, reports.

Not a speed test: it checks that every workload completes on every target (ocifs, s3fs, direct
boto3, a local directory, and rclone when it is installed) through the 5 ms latency proxy, that
every measurement passed its byte-exact check, and that the Markdown table and PNG charts are
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

    require_tool("rclone")
    targets = ["ocifs", "ocifs-fl", "s3fs", "rclone", "boto3", "local"]
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
            "--rclone-args=--vfs-write-back 1s",
            "--workdir", str(tmp_path / "work"), "--out", str(out), "--name", "smoke", "--quiet"]
    t0 = time.monotonic()
    assert bench_run.main(argv) == 0
    elapsed = time.monotonic() - t0

    data = json.loads((out / "smoke.json").read_text())
    assert data["meta"]["skipped_targets"] == {}
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
            if target in ("ocifs", "ocifs-fl", "s3fs", "rclone"):
                rss = [v for k, v in rep["metrics"].items() if k.startswith("rss")]
                assert rss and all(v and v > 0 for v in rss), (wl, target, rep["metrics"])
            # CPU seconds of each measured window: the filesystem's and the server's.
            assert rep["cpu_s"] and all(w["server"] is not None and w["server"] >= 0
                                        for w in rep["cpu_s"]), (wl, target, rep["cpu_s"])
            if target in ("ocifs", "ocifs-fl", "s3fs", "rclone"):
                assert all(w["fs"] is not None and w["fs"] >= 0 for w in rep["cpu_s"]), \
                    (wl, target, rep["cpu_s"])
    writes = run["results"]["seq_write"]
    assert writes["ocifs"][0]["cpu_s"][0]["server"] > 0  # it stored 4 MiB

    md = (out / "smoke.md").read_text()
    assert "| workload | ocifs | ocifs-fl | s3fs |" in md
    assert "s3fs, " in md and "boto3)" in md  # ratios to both references
    assert "CPU seconds during the measured part" in md
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
    assert elapsed < 60, f"the smoke run took {elapsed:.0f} s"


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
