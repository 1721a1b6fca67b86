"""Redis end to end: its RDB snapshots (SAVE and BGSAVE) written into an ocifs mount.

Redis writes ``temp-<pid>.rdb``, fsyncs it, renames it over ``dump.rdb`` and fsyncs the
directory: the pattern of most programs that save atomically.  The snapshot must land in
the bucket byte for byte, no temporary object may be left behind, and a second mount of the
same bucket must give a Redis that loads the data back.  Runs against every server kind.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import require_tool
from mounting import unique_bucket

KNOWN = {"known:alpha": b"first value", "known:beta": b"x" * 5000,
         "known:bin": bytes(range(256)) * 4, "known:utf8": "héllo wörld ✓".encode()}
POPULATED = 20000


class RespError(Exception):
    """An error reply (``-ERR ...``) from Redis."""


class Resp:
    """A minimal RESP2 client: enough for the commands this test sends."""

    def __init__(self, port: int, timeout: float = 60) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def __call__(self, *args: str | bytes | int):
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        out = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        self.sock.sendall(out)
        return self._reply()

    def _line(self) -> bytes:
        line = self.reader.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        return line[:-2]

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            data = self.reader.read(length + 2)
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise ConnectionError(f"bad RESP reply {line!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProcess:
    """``redis-server`` in the foreground with its data directory on a mount."""

    def __init__(self, binary: str, directory: Path, logfile: Path, extra: tuple = ()) -> None:
        self.port = free_port()
        self.logfile = logfile
        self.directory = directory
        with open(logfile, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
                 "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--logfile", "", "--enable-debug-command", "local",
                 *extra],  # later arguments win (e.g. --appendonly yes)
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.client = self._connect()

    def _connect(self, timeout: float = 60) -> Resp:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.process.returncode}:\n{self.log()}")
            try:
                client = Resp(self.port)
                client("PING")  # -LOADING while the snapshot loads: retry
                return client
            except (OSError, RespError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"redis-server did not come up:\n{self.log()}")
                time.sleep(0.1)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def info(self, section: str) -> dict[str, str]:
        text = self.client("INFO", section).decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def shutdown_nosave(self, timeout: float = 60) -> None:
        try:
            self.client("SHUTDOWN", "NOSAVE")
        except (ConnectionError, OSError):
            pass  # the expected answer: the connection closes
        self.process.wait(timeout=timeout)
        self.client.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - cleanup
            pass


@pytest.fixture
def start_redis(tmp_path, request):
    """Start redis-server on a directory; every one started is killed at the end of the test."""
    binary = require_tool("redis-server")
    started: list[RedisProcess] = []

    def start(directory: Path, *extra: str) -> RedisProcess:
        redis = RedisProcess(binary, directory, tmp_path / f"redis-{len(started)}.log", extra)
        started.append(redis)
        return redis

    yield start
    for redis in started:
        redis.kill()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bucket_object(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def bucket_keys(client, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def check_snapshot_in_bucket(client, bucket: str, mountpoint: Path) -> str:
    """dump.rdb in the bucket is exactly the file seen through the mount; returns its sha256."""
    seen = (mountpoint / "dump.rdb").read_bytes()
    assert os.stat(mountpoint / "dump.rdb").st_size == len(seen)
    assert seen[:5] == b"REDIS", "dump.rdb through the mount is not an RDB file"
    head = client.head_object(Bucket=bucket, Key="dump.rdb")
    assert head["ContentLength"] == len(seen)
    stored = bucket_object(client, bucket, "dump.rdb")
    assert sha256(stored) == sha256(seen)
    assert sorted(os.listdir(mountpoint)) == ["dump.rdb"]
    keys = bucket_keys(client, bucket)
    leftovers = [k for k in keys if k.startswith("temp-") and k.endswith(".rdb")]
    assert not leftovers, f"temporary snapshots left in the bucket: {leftovers}"
    return sha256(stored)


def wait_bgsave(redis: RedisProcess, timeout: float = 120) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        info = redis.info("persistence")
        if info["rdb_bgsave_in_progress"] == "0":
            return info
        assert time.monotonic() < deadline, f"BGSAVE still running after {timeout}s: {info}"
        time.sleep(0.1)


def test_redis_save_bgsave_and_reload(s3_server, mount_factory, start_redis):
    bucket = unique_bucket("redis")
    s3_server.create_bucket(bucket)
    client = s3_server.client()

    first = mount_factory(s3_server, bucket, name="first")
    first.mount()
    redis = start_redis(first.mountpoint)
    r = redis.client

    # -- SAVE ----------------------------------------------------------------------------
    assert r("DEBUG", "POPULATE", POPULATED, "key", 100) == "OK"
    for key, value in KNOWN.items():
        assert r("SET", key, value) == "OK"
    assert r("RPUSH", "known:list", "a", "b", "c") == 3
    assert r("HSET", "known:hash", "f1", "v1", "f2", "v2") == 2
    assert r("DBSIZE") == POPULATED + len(KNOWN) + 2
    assert r("SAVE") == "OK", redis.log()
    first_sha = check_snapshot_in_bucket(client, bucket, first.mountpoint)
    assert int(redis.info("persistence")["rdb_changes_since_last_save"]) == 0

    # -- BGSAVE (a forked child writes the snapshot) -------------------------------------
    KNOWN["known:alpha"] = b"second value"
    assert r("SET", "known:alpha", KNOWN["known:alpha"]) == "OK"
    KNOWN["known:after-save"] = os.urandom(3000)
    assert r("SET", "known:after-save", KNOWN["known:after-save"]) == "OK"
    assert r("DEL", "key:0", "key:1", "key:2") == 3
    expected_size = POPULATED - 3 + len(KNOWN) + 2
    assert r("DBSIZE") == expected_size
    assert r("BGSAVE") in ("Background saving started", "Background saving scheduled")
    info = wait_bgsave(redis)
    assert info["rdb_last_bgsave_status"] == "ok", redis.log()
    assert info["rdb_changes_since_last_save"] == "0", info
    second_sha = check_snapshot_in_bucket(client, bucket, first.mountpoint)
    assert second_sha != first_sha, "BGSAVE did not replace dump.rdb in the bucket"

    # -- stop, unmount, mount again elsewhere, load -------------------------------------
    redis.shutdown_nosave()
    assert redis.process.returncode == 0, redis.log()
    first.umount()

    second = mount_factory(s3_server, bucket, name="second")
    second.mount()
    assert sha256((second.mountpoint / "dump.rdb").read_bytes()) == second_sha
    again = start_redis(second.mountpoint)
    r2 = again.client
    assert r2("DBSIZE") == expected_size, again.log()
    for key, value in KNOWN.items():
        assert r2("GET", key) == value, key
    assert r2("GET", "key:0") is None
    assert r2("GET", "key:19999").startswith(b"value:19999")
    assert r2("LRANGE", "known:list", 0, -1) == [b"a", b"b", b"c"]
    assert r2("HGET", "known:hash", "f2") == b"v2"
    again.shutdown_nosave()
    second.umount()
