"""Load: many readers and writers at once, threads and processes, on different files and on the
same file.  Everything must be byte-exact afterwards (through the mount and, by sha256, in the
bucket with boto3), the mount alive, and its log free of errors.

One SeaweedFS bucket (a real object store), one mount with a 5 MiB multipart threshold so that
the bigger files go up as multipart uploads while being written, and a second mount that
caches nothing (another client) for readers that watch a file being rewritten.
"""

from __future__ import annotations

import collections
import hashlib
import os
import random
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mounting import OcifsMount, unique_bucket

MiB = 1024 * 1024
OPTIONS = ["multipart_threshold=5", "multipart_size=5", "parallel_count=3"]
# Written by a process: ``python -c WRITER path seed size``, the same bytes as data(seed, size).
WRITER = """
import random, sys
path, seed, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = random.Random(seed).randbytes(size)
with open(path, "wb") as f:
    for at in range(0, size, 1 << 20):
        f.write(data[at:at + (1 << 20)])
"""
APPENDER = """
import os, sys
path, who, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(count):
    os.write(fd, f"{who} line {i:05d} {'x' * (i % 50)}\\n".encode())
os.close(fd)
"""


def data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


@pytest.fixture(scope="module")
def load(seaweed_server, tmp_path_factory):
    bucket = unique_bucket("load")
    seaweed_server.create_bucket(bucket)
    base = tmp_path_factory.mktemp("load")
    main = OcifsMount(seaweed_server, bucket, base / "mnt", OPTIONS)
    other = OcifsMount(seaweed_server, bucket, base / "other", ["stat_cache_expire=0"])
    main.mount()
    other.mount()
    main.other = other
    main.client = seaweed_server.client()
    yield main
    main.umount()
    other.umount()


@pytest.fixture(autouse=True)
def alive_and_clean(load):
    """After each test: the mount answers, and its log holds no error and no traceback."""
    yield
    root = load.mountpoint
    os.statvfs(root)
    (root / "probe.txt").write_bytes(b"alive")
    assert (root / "probe.txt").read_bytes() == b"alive"
    for mount in (load, load.other):
        log = mount.log_text()
        errors = [line for line in log.splitlines() if re.match(r"\S+ \S+ E ", line)]
        assert not errors and "Traceback" not in log, "\n".join(errors) or log[-3000:]


def bucket_sha(load, key: str) -> str:
    return sha(load.client.get_object(Bucket=load.bucket, Key=key)["Body"].read())


def test_eight_writer_threads_on_different_files(load):
    """Sizes from a few bytes to 12 MiB (multipart while written), odd chunk sizes."""
    folder = load.mountpoint / "threads"
    folder.mkdir()
    sizes = [7, 4096, 100_000, 3 * MiB + 1, 6 * MiB, 9 * MiB + 12345, 12 * MiB, 5 * MiB]

    def write(i: int) -> str:
        blob = data(i, sizes[i])
        chunk = random.Random(i).choice([1000, 4096, 65536, 1 << 20, 3 * MiB + 7])
        with open(folder / f"f{i}", "wb") as f:
            for at in range(0, len(blob), chunk):
                f.write(blob[at:at + chunk])
        return sha(blob)

    with ThreadPoolExecutor(8) as pool:
        expected = list(pool.map(write, range(8)))
    for i, digest in enumerate(expected):
        assert sha((folder / f"f{i}").read_bytes()) == digest
        assert bucket_sha(load, f"threads/f{i}") == digest


def test_writer_processes_on_different_files(load):
    folder = load.mountpoint / "procs"
    folder.mkdir()
    sizes = [1, 200_000, 6 * MiB + 3, 11 * MiB, 2 * MiB, 7 * MiB + 1]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(folder / f"p{i}"), str(100 + i),
                               str(size)]) for i, size in enumerate(sizes)]
    assert [p.wait(timeout=120) for p in procs] == [0] * len(sizes)
    for i, size in enumerate(sizes):
        digest = sha(data(100 + i, size))
        assert bucket_sha(load, f"procs/p{i}") == digest
        assert sha((folder / f"p{i}").read_bytes()) == digest


def test_readers_of_one_big_file(load):
    """8 sequential reader threads, 4 random-range reader threads and 4 sha256sum processes
    on one 24 MiB file (written by another client), all at once."""
    size = 24 * MiB + 99
    blob = data(7, size)
    load.client.put_object(Bucket=load.bucket, Key="big.bin", Body=blob)
    path = load.mountpoint / "big.bin"
    digest = sha(blob)
    failures: list[str] = []

    def sequential(i: int) -> None:
        with open(path, "rb") as f:
            # Drop the kernel's pages of the file (the others' too): reads reach ocifs.
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            got = hashlib.sha256()
            while chunk := f.read(random.Random(i).choice([4096, 128 * 1024, MiB])):
                got.update(chunk)
        if got.hexdigest() != digest:
            failures.append(f"sequential reader {i}")

    def ranges(i: int) -> None:
        rng = random.Random(1000 + i)
        with open(path, "rb", buffering=0) as f:
            for _ in range(60):
                start, length = rng.randrange(size), rng.choice([1, 4096, 100_000, MiB])
                if os.pread(f.fileno(), length, start) != blob[start:start + length]:
                    failures.append(f"range reader {i} at {start}+{length}")

    procs = [subprocess.Popen(["sha256sum", str(path)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    threads = [threading.Thread(target=sequential, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=ranges, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert not failures, failures
    assert all(out.split()[0] == digest for out in outputs), outputs


@pytest.mark.parametrize("how", ["in place, read by another mount", "renamed over, same mount"])
def test_readers_while_a_writer_rewrites(load, how):
    """Readers see one whole version per read, never a mix.  Another client reading a file
    rewritten in place may meet a new version mid-read: refused with EIO, it opens again.  On
    the writing mount, a file replaced by rename while a reader has it open gives that reader
    ESTALE (no copy of read-only files is kept): it opens again.  Both documented."""
    size = 3 * MiB
    versions = {sha(bytes([v]) * size): v for v in range(1, 9)}
    name = "rewritten.bin" if how.startswith("in place") else "renamed.bin"
    path = load.mountpoint / name
    path.write_bytes(bytes([1]) * size)
    read_from = (load.other.mountpoint if how.startswith("in place") else load.mountpoint) / name
    retry = 5 if how.startswith("in place") else 116  # EIO / ESTALE
    seen: list[int] = []
    bad: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                blob = read_from.read_bytes()
            except OSError as exc:
                if exc.errno != retry:
                    bad.append(f"errno {exc.errno}")
                continue
            if sha(blob) not in versions:
                bad.append(f"a read of {len(blob)} bytes is no whole version: "
                           f"{sorted(collections.Counter(blob).items())}")
            else:
                seen.append(versions[sha(blob)])

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for v in range(2, 9):
            target = path if how.startswith("in place") else path.with_suffix(".tmp")
            with open(target, "r+b" if target.exists() else "wb") as f:
                for at in range(0, size, 256 * 1024):
                    f.write(bytes([v]) * 256 * 1024)
            if target != path:
                os.rename(target, path)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert not bad, bad[:5]
    assert seen and max(seen) >= 2, seen
    assert bucket_sha(load, name) == sha(bytes([8]) * size)


@pytest.mark.parametrize("how", ["threads", "processes"])
def test_appenders_on_one_file(load, how):
    """8 appenders (O_APPEND) on one file: every line lands whole, none is lost."""
    path = load.mountpoint / f"append-{how}.log"
    count = 500
    if how == "threads":
        def append(who: int) -> None:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                for i in range(count):
                    os.write(fd, f"t{who} line {i:05d} {'x' * (i % 50)}\n".encode())
            finally:
                os.close(fd)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(append, range(8)))
        prefix = "t"
    else:
        procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(path), f"p{who}", str(count)])
                 for who in range(8)]
        assert [p.wait(timeout=120) for p in procs] == [0] * 8
        prefix = "p"
    expected = sorted(f"{prefix}{who} line {i:05d} {'x' * (i % 50)}"
                      for who in range(8) for i in range(count))
    key = path.name
    stored = load.client.get_object(Bucket=load.bucket, Key=key)["Body"].read().decode()
    assert sorted(stored.splitlines()) == expected
    assert sorted(path.read_text().splitlines()) == expected


def test_namespace_churn_in_parallel(load):
    """8 threads create, rename and remove files and directories in folders of their own."""
    root = load.mountpoint / "churn"
    root.mkdir()

    def churn(who: int) -> set[str]:
        mine = root / f"w{who}"
        mine.mkdir()
        kept = set()
        for i in range(25):
            (mine / f"tmp{i}").write_bytes(data(who * 100 + i, 1000 + i))
            os.rename(mine / f"tmp{i}", mine / f"f{i}")
            if i % 3 == 0:
                os.unlink(mine / f"f{i}")
            else:
                kept.add(f"churn/w{who}/f{i}")
        (mine / "sub").mkdir()
        os.rename(mine / "f1", mine / "sub" / "f1")
        kept.discard(f"churn/w{who}/f1")
        kept.add(f"churn/w{who}/sub/f1")
        return kept

    with ThreadPoolExecutor(8) as pool:
        expected = set().union(*pool.map(churn, range(8)))
    paginator = load.client.get_paginator("list_objects_v2")
    stored = {o["Key"] for page in paginator.paginate(Bucket=load.bucket, Prefix="churn/")
              for o in page.get("Contents", []) if not o["Key"].endswith("/")}
    assert stored == expected
    for key in sorted(expected)[:20]:
        who, i = re.match(r"churn/w(\d+)/(?:sub/)?f(\d+)", key).groups()
        assert (load.mountpoint / key).read_bytes() == data(int(who) * 100 + int(i), 1000 + int(i))


def test_truncate_while_parts_are_uploading(seaweed_server, mount_factory):
    """A file cut short while its parts go up in the background (found by the model test):
    the parts in flight finish first, so none is sent short of its length (that request hung
    until it timed out, each retry too: 12 minutes by default, then EIO and a recovery copy).
    Short timeouts here make a regression fail in seconds."""
    bucket = unique_bucket("trunc")
    seaweed_server.create_bucket(bucket)
    mount = mount_factory(seaweed_server, bucket, OPTIONS + ["readwrite_timeout=5", "retries=1"])
    mount.mount()
    client = seaweed_server.client()
    for i, cut in enumerate([1000, 0, 7 * MiB + 3]):
        path = mount.mountpoint / f"cut{i}.bin"
        blob = data(i, 25 * MiB)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            for at in range(0, len(blob), MiB):
                os.write(fd, blob[at:at + MiB])
            os.ftruncate(fd, cut)  # parts of the first 25 MiB are still in flight
        finally:
            os.close(fd)
        assert client.get_object(Bucket=bucket, Key=path.name)["Body"].read() == blob[:cut]
    errors = [line for line in mount.log_text().splitlines() if re.match(r"\S+ \S+ [EW] ", line)]
    assert not errors, errors
