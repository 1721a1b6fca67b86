"""The workloads: each measures one thing on one target and verifies the data it touched.

A workload is run as ``run(ctx)`` where ``ctx`` (:class:`Ctx`) holds the target, the *checker*
(a direct view of the target's bucket or directory that bypasses the target and any latency
proxy, used for set-up, durability polling and verification) and the parameters.  It returns a
dict of metrics plus ``verified`` (every byte checked) and ``checks`` (what was checked).

The target is mounted fresh (new process, empty caches) by the workload itself right before
the measured part, and the page cache is dropped first, so every "cold" figure is cold.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import os
import random
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .targets import Target, cpu_seconds

KiB = 1024
MiB = 1024 * KiB
BLOCK = 1 * MiB
MB = 1_000_000


# -- deterministic data --------------------------------------------------------------------------


class Pattern:
    """Pseudo-random bytes where any range is cheap to compute: ``byte[i] = buf[i % period]``.

    The period (4 MiB + 4099 bytes) is coprime with every power of two, so blocks at different
    offsets differ, and far longer than any compressor's window.
    """

    def __init__(self, seed: int = 20240601, period: int = 4 * MiB + 4099) -> None:
        self.period = period
        buf = random.Random(seed).randbytes(period)
        self._double = memoryview(buf + buf + buf[: 2 * BLOCK])
        self._sha: dict[int, str] = {}

    def chunk(self, offset: int, length: int) -> bytes:
        out = bytearray()
        while length > 0:
            start = offset % self.period
            n = min(length, len(self._double) - start)
            out += self._double[start:start + n]
            offset += n
            length -= n
        return bytes(out)

    def blocks(self, size: int, block: int = BLOCK):
        """The first ``size`` bytes, as memoryviews of at most ``block`` bytes (no copying)."""
        assert block <= 2 * BLOCK
        offset = 0
        while offset < size:
            n = min(block, size - offset)
            start = offset % self.period
            yield self._double[start:start + n]
            offset += n

    def sha256(self, size: int) -> str:
        if size not in self._sha:
            h = hashlib.sha256()
            for b in self.blocks(size):
                h.update(b)
            self._sha[size] = h.hexdigest()
        return self._sha[size]

    def write_file(self, path: Path, size: int) -> None:
        if path.exists() and path.stat().st_size == size:
            return
        with open(path, "wb") as f:
            for b in self.blocks(size):
                f.write(b)

    def small(self, index: int, size: int) -> bytes:
        return self.chunk(index * 7919, size)


# -- the checker: the bucket (or directory) seen directly ---------------------------------------


class S3Checker:
    """The target's bucket through a direct boto3 client (no proxy, no filesystem)."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def put(self, key: str, data: bytes, metadata: dict | None = None,
            content_type: str | None = None) -> None:
        extra: dict[str, Any] = {}
        if metadata:
            extra["Metadata"] = metadata
        if content_type:
            extra["ContentType"] = content_type
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)

    def upload_file(self, path: Path, key: str) -> None:
        from boto3.s3.transfer import TransferConfig

        self.client.upload_file(str(path), self.bucket, key, Config=TransferConfig(
            multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB, max_concurrency=8))

    def size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except self.client.exceptions.ClientError:
            return None

    def head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError:
            return None

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def sha256(self, key: str) -> tuple[str, int]:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        h = hashlib.sha256()
        n = 0
        for chunk in body.iter_chunks(8 * MiB):
            h.update(chunk)
            n += len(chunk)
        return h.hexdigest(), n

    def list(self, prefix: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"]] = int(o["Size"])
        return out

    def delete_prefix(self, prefix: str) -> None:
        keys = list(self.list(prefix))
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def mkdir_marker(self, key: str) -> None:
        now = str(int(time.time()))
        self.put(key.rstrip("/") + "/", b"", content_type="application/x-directory",
                 metadata={"mode": str(stat.S_IFDIR | 0o755), "uid": str(os.getuid()),
                           "gid": str(os.getgid()), "mtime": now, "ctime": now, "atime": now})

    def file_meta(self) -> dict:
        now = str(int(time.time()))
        return {"mode": str(stat.S_IFREG | 0o644), "uid": str(os.getuid()),
                "gid": str(os.getgid()), "mtime": now, "ctime": now, "atime": now}


class LocalChecker:
    """The ``local`` target's directory, with the same interface as :class:`S3Checker`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _p(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes, metadata: dict | None = None,
            content_type: str | None = None) -> None:
        p = self._p(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def upload_file(self, path: Path, key: str) -> None:
        p = self._p(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, p)

    def size(self, key: str) -> int | None:
        try:
            return self._p(key).stat().st_size
        except OSError:
            return None

    def head(self, key: str) -> dict | None:
        s = self.size(key)
        return None if s is None else {"ContentLength": s, "ETag": ""}

    def get(self, key: str) -> bytes:
        return self._p(key).read_bytes()

    def sha256(self, key: str) -> tuple[str, int]:
        h = hashlib.sha256()
        n = 0
        with open(self._p(key), "rb") as f:
            while chunk := f.read(8 * MiB):
                h.update(chunk)
                n += len(chunk)
        return h.hexdigest(), n

    def list(self, prefix: str) -> dict[str, int]:
        out: dict[str, int] = {}
        base = self._p(prefix.rstrip("/")) if prefix else self.root
        if not base.exists():
            return out
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                p = Path(dirpath) / f
                out[str(p.relative_to(self.root))] = p.stat().st_size
        return out

    def delete_prefix(self, prefix: str) -> None:
        p = self._p(prefix.rstrip("/"))
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._p(key).unlink()

    def mkdir_marker(self, key: str) -> None:
        self._p(key.rstrip("/")).mkdir(parents=True, exist_ok=True)

    def file_meta(self) -> dict:
        return {}


# -- context -----------------------------------------------------------------------------------


@dataclass
class Params:
    size: int = 1024 * MiB          # sequential write/read, random reads, rename
    big_size: int = 4096 * MiB      # the big write (peak RSS)
    files: int = 1000               # small files created; objects listed by ls -l
    small_size: int = 4 * KiB
    rand_ops: int = 2000            # random 4 KiB reads (at most)
    rand_seconds: float = 20.0      # ... or this long, whichever comes first
    tree_fanout: int = 5            # find: fanout^3 directories of fanout files
    redis_size: int = 1024 * MiB    # the Redis dataset (rdbcompression no: dump.rdb ≈ this)
    aof_sizes: tuple = (2 * MB, 64 * MB)  # the AOF's incr file when the appends start
    aof_seconds: int = 20           # seconds of appends (one fsync each)
    aof_rate: int = 267_000         # bytes appended per second (Redis, 2,000 SETs/s)
    timeout: float = 1800.0         # waiting for data to become durable in the bucket
    drop_caches: bool = True
    fresh_mounts: bool = True       # False: keep each target mounted (smoke tests only)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Ctx:
    target: Target
    checker: Any
    params: Params
    pattern: Pattern
    scratch: Path                    # local disk space for the boto3 target and Redis
    pattern_file: Path               # ``params.size`` bytes of the pattern, on local disk
    notes: list[str] = field(default_factory=list)
    server_pid: int | None = None    # the local S3 server, whose CPU time is counted too
    cpu: list[dict] = field(default_factory=list)  # CPU seconds of each measured window
    _cpu_mark: dict = field(default_factory=dict)
    proxy: Any = None                # the target's proxy to the store (delays; counts requests)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def is_boto3(self) -> bool:
        return self.target.name == "boto3"

    @property
    def is_local(self) -> bool:
        return self.target.name == "local"


def drop_caches(ctx: Ctx) -> None:
    """Flush dirty pages and drop the page cache, dentries and inodes (root only)."""
    if not ctx.params.drop_caches:
        return
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        ctx.params.drop_caches = False
        ctx.notes.append("page cache not dropped (needs root)")


@contextlib.contextmanager
def fresh_mount(ctx: Ctx):
    """Mount the target (a new process, empty caches) and unmount it afterwards.

    With ``fresh_mounts`` off the target stays mounted between workloads (faster, but then
    "cold" figures are not cold: for smoke tests only); run.py unmounts it at the end.
    """
    drop_caches(ctx)
    if not ctx.params.fresh_mounts and ctx.target.is_up():
        yield ctx.target.root
        return
    ctx.target.mount()
    try:
        yield ctx.target.root
    finally:
        if ctx.params.fresh_mounts:
            ctx.target.umount()


def _cpu_now(ctx: Ctx) -> dict:
    return {"fs": ctx.target.cpu_s(),
            "server": cpu_seconds(ctx.server_pid) if ctx.server_pid else None,
            "proxy": ctx.proxy.stats() if ctx.proxy is not None else None}


def measure_rss(ctx: Ctx) -> None:
    """The measured window starts: peak RSS reset, CPU times and request counts noted."""
    ctx.target.reset_peak_rss()
    ctx._cpu_mark = _cpu_now(ctx)


def peak_rss(ctx: Ctx) -> float | None:
    """The measured window ends: its CPU seconds (filesystem process, S3 server) and the HTTP
    requests the target sent through its proxy (``requests``, ``kinds``: by method, LIST and
    COPY apart) are added to ``ctx.cpu``, and the peak RSS is returned.  On a small machine the
    server's CPU bounds every client's throughput: these show how much of the window it took."""
    now = _cpu_now(ctx)
    mark = ctx._cpu_mark
    window: dict[str, Any] = {k: round(now[k] - mark[k], 3)
                              if now[k] is not None and mark.get(k) is not None else None
                              for k in ("fs", "server")}
    window["requests"] = window["kinds"] = None
    if now["proxy"] is not None and mark.get("proxy") is not None:
        before, after = mark["proxy"], now["proxy"]
        window["requests"] = after["requests"] - before["requests"]
        window["kinds"] = {k: n - before["kinds"].get(k, 0)
                           for k, n in sorted(after["kinds"].items())
                           if n - before["kinds"].get(k, 0)}
        window["sent_bytes"] = after["bytes"] - before["bytes"]
        if after.get("cpu_s") is not None and before.get("cpu_s") is not None:
            window["proxy"] = round(after["cpu_s"] - before["cpu_s"], 3)  # relaying's CPU
        if after["uncounted"] != before["uncounted"]:
            lost = after["uncounted"] - before["uncounted"]
            ctx.notes.append(f"{ctx.name}: {lost} connection(s) the proxy could not follow as "
                             "HTTP/1.1: its request count is low")
    ctx.cpu.append(window)
    return ctx.target.peak_rss_mib()


def wait_until(probe: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _mbps(size: int, seconds: float) -> float:
    return round(size / MB / max(seconds, 1e-9), 2)


def _write_pattern(path: Path, pattern: Pattern, size: int) -> None:
    with open(path, "wb") as f:
        for b in pattern.blocks(size):
            f.write(b)


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(BLOCK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


# -- sequential write ---------------------------------------------------------------------------


def _seq_write(ctx: Ctx, key: str, size: int) -> dict:
    c = ctx.checker
    c.delete_prefix(key)
    expected = ctx.pattern.sha256(size)
    with fresh_mount(ctx) as root:
        measure_rss(ctx)
        t0 = time.monotonic()
        if ctx.is_boto3:
            path = ctx.scratch / "upload.bin"
            if size == ctx.params.size:
                path = ctx.pattern_file
            else:
                _write_pattern(path, ctx.pattern, size)
                drop_caches(ctx)
                t0 = time.monotonic()
            t = ctx.target
            t.client.upload_file(str(path), t.bucket, key, Config=t.transfer_config())
            t_close = t_durable = time.monotonic() - t0
            if path != ctx.pattern_file:
                path.unlink()
        else:
            with open(root / key, "wb") as f:
                for b in ctx.pattern.blocks(size):
                    f.write(b)
                if ctx.is_local:
                    f.flush()
                    t_close = time.monotonic() - t0
                    os.fsync(f.fileno())
            if not ctx.is_local:
                t_close = time.monotonic() - t0
                wait_until(lambda: c.size(key) == size, ctx.params.timeout,
                           f"{key} ({size} bytes) in the bucket")
            t_durable = time.monotonic() - t0
        rss = peak_rss(ctx)
    digest, n = c.sha256(key)
    c.delete(key)
    return {"metrics": {"write_MBps": _mbps(size, t_close), "durable_MBps": _mbps(size, t_durable),
                        "rss_MiB": rss},
            "verified": digest == expected and n == size,
            "checks": f"sha256 of the object ({n} bytes) == written data"}


def seq_write(ctx: Ctx) -> dict:
    return _seq_write(ctx, "seqw.bin", ctx.params.size)


def big_write(ctx: Ctx) -> dict:
    return _seq_write(ctx, "bigw.bin", ctx.params.big_size)


# -- the big object: sequential read, random reads, rename ---------------------------------------

BIG_KEY = "data/big.bin"


def ensure_big(ctx: Ctx) -> None:
    c = ctx.checker
    if c.size(BIG_KEY) != ctx.params.size:
        if not ctx.is_local:
            c.mkdir_marker("data/")
        c.upload_file(ctx.pattern_file, BIG_KEY)


def seq_read(ctx: Ctx) -> dict:
    ensure_big(ctx)
    size = ctx.params.size
    with fresh_mount(ctx) as root:
        measure_rss(ctx)
        t0 = time.monotonic()
        if ctx.is_boto3:
            t = ctx.target
            dest = ctx.scratch / "download.bin"
            t.client.download_file(t.bucket, BIG_KEY, str(dest), Config=t.transfer_config())
            elapsed = time.monotonic() - t0
            digest, n = _hash_file(dest)
            dest.unlink()
        else:
            h = hashlib.sha256()
            n = 0
            with open(root / BIG_KEY, "rb", buffering=0) as f:
                buf = bytearray(BLOCK)
                while k := f.readinto(buf):
                    h.update(memoryview(buf)[:k])
                    n += k
            elapsed = time.monotonic() - t0
            digest = h.hexdigest()
        rss = peak_rss(ctx)
    return {"metrics": {"read_MBps": _mbps(size, elapsed), "rss_MiB": rss},
            "verified": digest == ctx.pattern.sha256(size) and n == size,
            "checks": "sha256 of every byte read == the object's data"}


def rand_read(ctx: Ctx) -> dict:
    ensure_big(ctx)
    size, p = ctx.params.size, ctx.params
    rng = random.Random(4242)
    offsets = [rng.randrange(0, size // (4 * KiB)) * 4 * KiB for _ in range(p.rand_ops)]
    bad = done = 0
    with fresh_mount(ctx) as root:
        measure_rss(ctx)
        t0 = time.monotonic()
        deadline = t0 + p.rand_seconds
        first = None  # seconds from the open to the end of the first read
        if ctx.is_boto3:
            t = ctx.target
            for off in offsets:
                data = t.client.get_object(Bucket=t.bucket, Key=BIG_KEY,
                                           Range=f"bytes={off}-{off + 4 * KiB - 1}")["Body"].read()
                first = time.monotonic() - t0 if first is None else first
                bad += data != ctx.pattern.chunk(off, 4 * KiB)
                done += 1
                if time.monotonic() > deadline:
                    break
        else:
            fd = os.open(root / BIG_KEY, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
                for off in offsets:
                    data = os.pread(fd, 4 * KiB, off)
                    first = time.monotonic() - t0 if first is None else first
                    bad += data != ctx.pattern.chunk(off, 4 * KiB)
                    done += 1
                    if time.monotonic() > deadline:
                        break
            finally:
                os.close(fd)
        elapsed = time.monotonic() - t0
        rss = peak_rss(ctx)
    return {"metrics": {"ops_per_s": round(done / elapsed, 1),
                        "first_read_ms": round(1000 * (first or 0.0), 1), "rss_MiB": rss},
            "verified": bad == 0 and done > 0,
            "checks": f"{done} reads of 4 KiB (of {p.rand_ops} planned, {p.rand_seconds:.0f} s cap), "
                      "each compared with the expected bytes"}


def rename(ctx: Ctx) -> dict:
    ensure_big(ctx)
    c = ctx.checker
    new_key = "data/renamed.bin"
    c.delete_prefix(new_key)
    size = ctx.params.size
    with fresh_mount(ctx) as root:
        measure_rss(ctx)
        t0 = time.monotonic()
        if ctx.is_boto3:
            t = ctx.target
            t.client.copy({"Bucket": t.bucket, "Key": BIG_KEY}, t.bucket, new_key,
                          Config=t.copy_config())
            t.client.delete_object(Bucket=t.bucket, Key=BIG_KEY)
            t_rename = time.monotonic() - t0
        else:
            os.rename(root / BIG_KEY, root / new_key)
            t_rename = time.monotonic() - t0
            if ctx.is_local:
                fd = os.open(root / "data", os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
        wait_until(lambda: c.size(new_key) == size and c.size(BIG_KEY) is None,
                   ctx.params.timeout, "the renamed object in the bucket")
        t_durable = time.monotonic() - t0
        rss = peak_rss(ctx)
    digest, n = c.sha256(new_key)
    c.delete(new_key)
    return {"metrics": {"rename_s": round(t_rename, 6), "durable_s": round(t_durable, 6),
                        "rss_MiB": rss},
            "verified": digest == ctx.pattern.sha256(size) and n == size,
            "checks": "old name gone; sha256 of the new object == the original data"}


# -- many small files ---------------------------------------------------------------------------


def create_small(ctx: Ctx) -> dict:
    c, p = ctx.checker, ctx.params
    prefix = "small/"
    c.delete_prefix(prefix)
    names = [f"f{i:06d}" for i in range(p.files)]
    with fresh_mount(ctx) as root:
        measure_rss(ctx)
        t0 = time.monotonic()
        if ctx.is_boto3:
            t = ctx.target
            with cf.ThreadPoolExecutor(10) as pool:
                list(pool.map(lambda i: t.client.put_object(
                    Bucket=t.bucket, Key=prefix + names[i],
                    Body=ctx.pattern.small(i, p.small_size)), range(p.files)))
            t_create = t_durable = time.monotonic() - t0
        else:
            d = root / "small"
            d.mkdir(exist_ok=True)  # SeaweedFS keeps the emptied folder of an earlier repetition
            for i, name in enumerate(names):
                with open(d / name, "wb") as f:
                    f.write(ctx.pattern.small(i, p.small_size))
            t_create = time.monotonic() - t0
            if ctx.is_local:
                os.sync()
            else:
                want = {prefix + n for n in names}
                wait_until(lambda: want <= {k for k, s in c.list(prefix).items()
                                            if s == p.small_size},
                           p.timeout, f"{p.files} small objects in the bucket", interval=0.2)
            t_durable = time.monotonic() - t0
        rss = peak_rss(ctx)
    with cf.ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda n: c.get(prefix + n), names))
    bad = sum(g != ctx.pattern.small(i, p.small_size) for i, g in enumerate(got))
    c.delete_prefix(prefix)
    return {"metrics": {"create_s": round(t_create, 6), "durable_s": round(t_durable, 6),
                        "rss_MiB": rss},
            "verified": bad == 0,
            "checks": f"all {p.files} objects read back byte for byte"}


# -- listings: ls -l and find over objects made beforehand in s3fs's format ----------------------


def _ls_size(i: int) -> int:
    return (i * 37) % 2000


def prepare_listing(ctx: Ctx) -> None:
    """``ls/`` with ``files`` objects and ``tree/`` with fanout³ dirs × fanout files.

    Made once per bucket through the checker, in s3fs's format (directory markers, mode/uid/
    gid/mtime metadata), so every filesystem lists exactly the same objects.
    """
    c, p = ctx.checker, ctx.params
    c.delete_prefix("ls/")
    c.delete_prefix("tree/")
    meta = c.file_meta()
    jobs: list[tuple[str, bytes | None]] = [("ls/", None)]
    jobs += [(f"ls/o{i:06d}", ctx.pattern.small(i, _ls_size(i))) for i in range(p.files)]
    jobs.append(("tree/", None))
    for a in _tree_dirs(p.tree_fanout):
        jobs.append((f"tree/{a}/", None))
    for f in _tree_files(p.tree_fanout):
        jobs.append((f"tree/{f}", b"x" * (len(f) % 100)))

    def put(job: tuple[str, bytes | None]) -> None:
        key, data = job
        if data is None:
            c.mkdir_marker(key)
        else:
            c.put(key, data, metadata=meta or None)

    # Directory markers first, parents before children: SeaweedFS does not list a marker that
    # is PUT after (or while) objects below it were created.
    with cf.ThreadPoolExecutor(16) as pool:
        for depth in range(5):
            level = [j for j in jobs if j[1] is None and j[0].count("/") == depth + 1]
            list(pool.map(put, level))
        list(pool.map(put, [j for j in jobs if j[1] is not None]))
    _mark_ready(ctx)  # outside the listed directories


def _mark_ready(ctx: Ctx) -> None:
    ctx.checker.put("ready-listing", str(ctx.params.files).encode() + b"/" +
                    str(ctx.params.tree_fanout).encode())


def listing_ready(ctx: Ctx) -> bool:
    c = ctx.checker
    try:
        return c.get("ready-listing") == (str(ctx.params.files).encode() + b"/" +
                                          str(ctx.params.tree_fanout).encode())
    except Exception:
        return False


def _tree_dirs(fanout: int) -> list[str]:
    out = []
    for a in range(fanout):
        out.append(f"a{a}")
        for b in range(fanout):
            out.append(f"a{a}/b{b}")
            for c in range(fanout):
                out.append(f"a{a}/b{b}/c{c}")
    return out


def _tree_files(fanout: int) -> list[str]:
    return [f"a{a}/b{b}/c{c}/f{f}" for a in range(fanout) for b in range(fanout)
            for c in range(fanout) for f in range(fanout)]


def ensure_listing(ctx: Ctx) -> None:
    if not listing_ready(ctx):
        prepare_listing(ctx)


def load_program(argv: list[str]) -> None:
    """Run a program once on a local path, so that the timed run that follows measures the
    filesystem and not the loading of the program and its libraries from a dropped cache
    (about 20 ms for ``ls``, the same for every target)."""
    subprocess.run(argv, capture_output=True, check=True, timeout=60)


def ls_l(ctx: Ctx) -> dict:
    ensure_listing(ctx)
    p = ctx.params
    expected = {f"o{i:06d}": _ls_size(i) for i in range(p.files)}

    def run_ls(root: Path) -> tuple[float, dict[str, int]]:
        t0 = time.monotonic()
        out = subprocess.run(["ls", "-l", str(root / "ls")], capture_output=True, text=True,
                             check=True, timeout=p.timeout).stdout
        elapsed = time.monotonic() - t0
        seen = {}
        for line in out.splitlines():
            parts = line.split(None, 8)
            if len(parts) == 9:
                seen[parts[8]] = int(parts[4])
        return elapsed, seen

    def run_list(t: Any) -> tuple[float, dict[str, int]]:
        t0 = time.monotonic()
        seen = {}
        for page in t.client.get_paginator("list_objects_v2").paginate(
                Bucket=t.bucket, Prefix="ls/", Delimiter="/"):
            for o in page.get("Contents", []):
                if o["Key"] != "ls/":
                    seen[o["Key"][3:]] = int(o["Size"])
        return time.monotonic() - t0, seen

    with fresh_mount(ctx) as root:
        load_program(["ls", "-l", "/"])
        measure_rss(ctx)
        if ctx.is_boto3:
            cold, seen_cold = run_list(ctx.target)
            warm, seen_warm = run_list(ctx.target)
        else:
            cold, seen_cold = run_ls(root)
            warm, seen_warm = run_ls(root)
        rss = peak_rss(ctx)
    return {"metrics": {"cold_s": round(cold, 6), "warm_s": round(warm, 6), "rss_MiB": rss},
            "verified": seen_cold == expected and seen_warm == expected,
            "checks": f"both listings show exactly the {p.files} names with their sizes"
                      + ("" if seen_cold == expected and seen_warm == expected else
                         f"; cold listing: {len(seen_cold)} entries, warm: {len(seen_warm)}")}


def find_tree(ctx: Ctx) -> dict:
    ensure_listing(ctx)
    p = ctx.params
    expected = set(_tree_dirs(p.tree_fanout)) | set(_tree_files(p.tree_fanout))
    with fresh_mount(ctx) as root:
        load_program(["find", "/", "-maxdepth", "1"])
        measure_rss(ctx)
        t0 = time.monotonic()
        if ctx.is_boto3:
            t = ctx.target
            seen = set()
            for page in t.client.get_paginator("list_objects_v2").paginate(
                    Bucket=t.bucket, Prefix="tree/"):
                for o in page.get("Contents", []):
                    k = o["Key"][len("tree/"):].rstrip("/")
                    parts = k.split("/") if k else []
                    # Every prefix of a key is a directory, as a filesystem shows it.
                    seen.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
            elapsed = time.monotonic() - t0
        else:
            out = subprocess.run(["find", str(root / "tree")], capture_output=True, text=True,
                                 check=True, timeout=p.timeout).stdout
            elapsed = time.monotonic() - t0
            base = str(root / "tree") + "/"
            seen = {line[len(base):] for line in out.splitlines() if line.startswith(base)}
        rss = peak_rss(ctx)
    return {"metrics": {"find_s": round(elapsed, 6), "rss_MiB": rss},
            "verified": seen == expected,
            "checks": f"find printed exactly the {len(expected)} expected paths"
                      + ("" if seen == expected else f"; missing {sorted(expected - seen)[:5]}, "
                                                     f"unexpected {sorted(seen - expected)[:5]}")}


# -- Redis --------------------------------------------------------------------------------------


class Resp:
    """A minimal Redis client (RESP2) over a TCP socket."""

    def __init__(self, port: int, timeout: float = 600) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.f.close()
            self.sock.close()

    def call(self, *args: str | bytes | int) -> Any:
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self) -> Any:
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"bad RESP line {line!r}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, directory: Path, logfile: Path) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(directory), "--dbfilename", "dump.rdb", "--save", "",
             "--appendonly", "no", "--rdbcompression", "no", "--daemonize", "no",
             "--enable-debug-command", "local", "--logfile", str(logfile)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conn: Resp | None = None

    def wait_ready(self, timeout: float) -> None:
        """Until PING answers PONG (not LOADING)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                if self.conn is None:
                    self.conn = Resp(self.port)
                if self.conn.call("PING") == "PONG":
                    return
            except (OSError, ConnectionError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
            except RuntimeError:  # -LOADING
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not become ready")
            time.sleep(0.005)

    def info(self, section: str) -> dict[str, str]:
        assert self.conn is not None
        text = self.conn.call("INFO", section).decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.conn is not None:
                self.conn.call("SHUTDOWN", "NOSAVE")
        with contextlib.suppress(Exception):
            if self.conn is not None:
                self.conn.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


REDIS_VALUE = 1000


def redis(ctx: Ctx) -> dict:
    """BGSAVE of ~redis_size until durable in the bucket, then a restart loading it back."""
    c, p = ctx.checker, ctx.params
    c.delete_prefix("redis/")
    count = max(1, p.redis_size // (REDIS_VALUE + 40))
    logs = ctx.scratch
    rng = random.Random(7)
    sample = [f"key:{rng.randrange(count)}" for _ in range(200)]
    local_dir = ctx.scratch / "redis-data"
    shutil.rmtree(local_dir, ignore_errors=True)
    local_dir.mkdir(parents=True)
    metrics: dict[str, Any] = {}

    # -- BGSAVE ------------------------------------------------------------------------------
    with fresh_mount(ctx) as root:
        if ctx.is_boto3:
            data_dir = local_dir
        else:
            data_dir = root / "redis"
            data_dir.mkdir(exist_ok=True)
        srv = RedisServer(data_dir, logs / "redis-save.log")
        try:
            srv.wait_ready(60)
            assert srv.conn is not None
            srv.conn.call("DEBUG", "POPULATE", count, "key", REDIS_VALUE)
            want = {k: hashlib.sha256(srv.conn.call("GET", k) or b"").hexdigest() for k in sample}
            measure_rss(ctx)
            t0 = time.monotonic()
            srv.conn.call("BGSAVE")
            wait_until(lambda: srv.info("persistence").get("rdb_bgsave_in_progress") == "0",
                       p.timeout, "BGSAVE", interval=0.005)
            t_save = time.monotonic() - t0
            status = srv.info("persistence").get("rdb_last_bgsave_status")
            if status != "ok":
                raise RuntimeError(f"BGSAVE failed ({status}); see {logs / 'redis-save.log'}")
            final = (data_dir / "dump.rdb").stat().st_size
            if ctx.is_boto3:
                t = ctx.target
                t.client.upload_file(str(local_dir / "dump.rdb"), t.bucket, "redis/dump.rdb",
                                     Config=t.transfer_config())
            elif not ctx.is_local:
                wait_until(lambda: c.size("redis/dump.rdb") == final, p.timeout,
                           "dump.rdb in the bucket")
            t_durable = time.monotonic() - t0
            metrics["rss_save_MiB"] = peak_rss(ctx)
        finally:
            srv.stop()
    metrics.update({"bgsave_s": round(t_save, 6), "durable_s": round(t_durable, 6),
                    "rdb_MiB": round(final / MiB, 1)})
    stored_ok = c.size("redis/dump.rdb") == final

    # -- restart: load dump.rdb from the (fresh) mount -----------------------------------------
    if ctx.is_boto3:
        shutil.rmtree(local_dir)
        local_dir.mkdir()
    with fresh_mount(ctx) as root:
        measure_rss(ctx)
        t0 = time.monotonic()
        if ctx.is_boto3:
            t = ctx.target
            t.client.download_file(t.bucket, "redis/dump.rdb", str(local_dir / "dump.rdb"),
                                   Config=t.transfer_config())
            data_dir = local_dir
        else:
            data_dir = root / "redis"
        srv = RedisServer(data_dir, logs / "redis-load.log")
        try:
            srv.wait_ready(p.timeout)
            t_load = time.monotonic() - t0
            metrics["rss_load_MiB"] = peak_rss(ctx)
            assert srv.conn is not None
            dbsize = srv.conn.call("DBSIZE")
            got = {k: hashlib.sha256(srv.conn.call("GET", k) or b"").hexdigest() for k in sample}
        finally:
            srv.stop()
    metrics["reload_s"] = round(t_load, 6)
    c.delete_prefix("redis/")
    shutil.rmtree(local_dir, ignore_errors=True)
    return {"metrics": metrics,
            "verified": stored_ok and dbsize == count and got == want,
            "checks": f"dump.rdb in the bucket has the saved size; after the restart DBSIZE == "
                      f"{count} and {len(sample)} sampled values are identical"}


AOF_WRITES = 100  # writes per second of appends, as Redis's event loop batches them


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def aof(ctx: Ctx) -> dict:
    """Redis's AOF with appendfsync everysec, as the filesystem sees it: an incr file of each
    of ``aof_sizes`` is appended ``aof_rate`` bytes a second (in ``AOF_WRITES`` writes) and
    fsynced once a second.  Measured: bytes the client sent to the store per byte appended
    (requests at the proxy, headers included, until the bucket holds the whole file), the fsync
    latency percentiles, and the share of fsyncs after which the object in the bucket already
    held everything written (a filesystem whose fsync does not upload, e.g. rclone's VFS cache,
    scores low there: what Redis was told is on disk is not yet in the bucket)."""
    c, p = ctx.checker, ctx.params
    if ctx.proxy is None or not ctx.target.mounted_kind:
        raise RuntimeError("aof needs a mounted target behind the counting proxy")
    metrics: dict[str, Any] = {}
    verified = True
    chunk = p.aof_rate // AOF_WRITES
    for size in p.aof_sizes:
        label = f"{size // MB}MB"
        key = f"aof/incr-{label}.aof"
        c.delete_prefix("aof/")
        digest = hashlib.sha256()
        with fresh_mount(ctx) as root:
            path = root / key
            path.parent.mkdir(exist_ok=True)
            start = os.urandom(size)
            path.write_bytes(start)  # uploaded at close: the incr file so far
            digest.update(start)
            wait_until(lambda: c.size(key) == size, p.timeout, f"{key} in the bucket")
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            latencies = []
            durable = 0
            written = size
            try:
                measure_rss(ctx)
                sent0 = ctx.proxy.upstream_bytes
                for _ in range(p.aof_seconds):
                    second = time.monotonic()
                    for _ in range(AOF_WRITES):
                        data = os.urandom(chunk)
                        os.write(fd, data)
                        digest.update(data)
                    written += chunk * AOF_WRITES
                    t0 = time.monotonic()
                    os.fsync(fd)
                    latencies.append(time.monotonic() - t0)
                    durable += c.size(key) == written  # (the checker is not behind the proxy)
                    time.sleep(max(0.0, 1.0 - (time.monotonic() - second)))
                metrics[f"rss_MiB_{label}"] = peak_rss(ctx)
            finally:
                os.close(fd)
            # Still mounted: a filesystem that uploads after close (rclone) gets the time to.
            wait_until(lambda: c.size(key) == written, p.timeout, f"{key} in the bucket")
            sent = ctx.proxy.upstream_bytes - sent0
        appended = written - size
        metrics[f"amplification_{label}"] = round(sent / appended, 3)
        metrics[f"fsync_p50_ms_{label}"] = round(_percentile(latencies, 0.5) * 1000, 1)
        metrics[f"fsync_p99_ms_{label}"] = round(_percentile(latencies, 0.99) * 1000, 1)
        metrics[f"durable_pct_{label}"] = round(100 * durable / len(latencies), 1)
        verified = verified and c.sha256(key)[0] == digest.hexdigest()
    c.delete_prefix("aof/")
    return {"metrics": metrics, "verified": verified,
            "checks": "each incr file in the bucket has the sha256 of everything appended"}


WORKLOADS: dict[str, Callable[[Ctx], dict]] = {
    "aof": aof,
    "seq_write": seq_write,
    "seq_read": seq_read,
    "rand_read": rand_read,
    "rename": rename,
    "create_small": create_small,
    "ls_l": ls_l,
    "find_tree": find_tree,
    "redis": redis,
    "big_write": big_write,
}

# (workload, metric) → (label, unit, which way is better)
METRICS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("seq_write", "write_MBps"): ("sequential write, until close()", "MB/s", "higher"),
    ("seq_write", "durable_MBps"): ("sequential write, until durable in the bucket", "MB/s", "higher"),
    ("seq_read", "read_MBps"): ("sequential read, fresh mount, page cache dropped", "MB/s", "higher"),
    ("rand_read", "ops_per_s"): ("random 4 KiB reads (POSIX_FADV_RANDOM)", "ops/s", "higher"),
    ("rand_read", "first_read_ms"): ("random reads: open and first 4 KiB read", "ms", "lower"),
    ("rename", "rename_s"): ("rename of the big file", "s", "lower"),
    ("rename", "durable_s"): ("rename, until durable in the bucket", "s", "lower"),
    ("create_small", "create_s"): ("create N small files", "s", "lower"),
    ("create_small", "durable_s"): ("create N small files, until all durable", "s", "lower"),
    ("ls_l", "cold_s"): ("ls -l of N objects, cold (fresh mount)", "s", "lower"),
    ("ls_l", "warm_s"): ("ls -l of N objects, warm (again)", "s", "lower"),
    ("find_tree", "find_s"): ("find over a 3-level tree, cold", "s", "lower"),
    ("redis", "bgsave_s"): ("Redis BGSAVE (until the child exits)", "s", "lower"),
    ("redis", "durable_s"): ("Redis BGSAVE until dump.rdb durable in the bucket", "s", "lower"),
    ("redis", "reload_s"): ("Redis restart, load dump.rdb from the mount", "s", "lower"),
    ("big_write", "write_MBps"): ("big sequential write, until close()", "MB/s", "higher"),
    ("big_write", "durable_MBps"): ("big sequential write, until durable", "MB/s", "higher"),
    ("aof", "amplification_2MB"): ("AOF everysec, 2 MB incr: bytes sent per byte appended", "×", "lower"),
    ("aof", "amplification_64MB"): ("AOF everysec, 64 MB incr: bytes sent per byte appended", "×", "lower"),
    ("aof", "fsync_p50_ms_2MB"): ("AOF everysec, 2 MB incr: fsync p50", "ms", "lower"),
    ("aof", "fsync_p50_ms_64MB"): ("AOF everysec, 64 MB incr: fsync p50", "ms", "lower"),
    ("aof", "fsync_p99_ms_2MB"): ("AOF everysec, 2 MB incr: fsync p99", "ms", "lower"),
    ("aof", "fsync_p99_ms_64MB"): ("AOF everysec, 64 MB incr: fsync p99", "ms", "lower"),
    ("aof", "durable_pct_2MB"): ("AOF everysec, 2 MB incr: fsyncs after which the bucket held every byte", "%", "higher"),
    ("aof", "durable_pct_64MB"): ("AOF everysec, 64 MB incr: fsyncs after which the bucket held every byte", "%", "higher"),
}

# Workloads whose CPU row is not named by their first metric (the window measured is another).
CPU_LABELS: dict[str, str] = {
    "aof": "AOF appends, the first of --aof-sizes",
}

RSS_METRICS: dict[tuple[str, str], str] = {
    ("seq_write", "rss_MiB"): "sequential write",
    ("seq_read", "rss_MiB"): "sequential read",
    ("rand_read", "rss_MiB"): "random reads",
    ("rename", "rss_MiB"): "rename",
    ("create_small", "rss_MiB"): "create small files",
    ("ls_l", "rss_MiB"): "ls -l",
    ("find_tree", "rss_MiB"): "find",
    ("redis", "rss_save_MiB"): "Redis BGSAVE",
    ("redis", "rss_load_MiB"): "Redis reload",
    ("big_write", "rss_MiB"): "big write",
    ("aof", "rss_MiB_64MB"): "AOF appends, 64 MB incr",
}
