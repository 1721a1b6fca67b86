"""Random reads through a real mount: one small GET for the first miss, then the object filled
into a local sparse file in the background (ocifs/data/fill.py), after which reads are local.

GETs are counted (and held back when a test needs a fill in flight) by tests/fault_proxy.py
between the mount and SeaweedFS; the module shares one server, one proxy and one mount.
"""

from __future__ import annotations

import errno
import os
import random
import time

import pytest

from fault_proxy import FaultyServer
from mounting import OcifsMount, unique_bucket

MiB = 1024 * 1024
WAIT = 120.0  # seconds a test waits for the mount to get somewhere before it fails


@pytest.fixture(scope="module")
def faulty(seaweed_server):
    server = FaultyServer(seaweed_server).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mounted(faulty, tmp_path_factory):
    bucket = unique_bucket("rr")
    faulty.create_bucket(bucket)
    mount = OcifsMount(faulty, bucket, tmp_path_factory.mktemp("rr") / "mnt")
    mount.mount()
    mount.client = faulty.client()
    mount.proxy = faulty.proxy
    yield mount
    mount.umount()


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def gets(mount, key: str) -> int:
    return sum(1 for _, _, k, _ in mount.proxy.requests("GetObject") if k == key)


def filled(mount, key: str) -> bool:
    return f"filled the cache file of {key} " in mount.log_text()


def open_random(path) -> int:
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    return fd


def put(mount, key: str, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    mount.client.put_object(Bucket=mount.bucket, Key=key, Body=data)
    return data


def test_random_reads_are_exact_and_local_once_filled(mounted):
    key = "rr/filled.bin"
    data = put(mounted, key, 40 * MiB + 5, 1)
    rng = random.Random(2)
    mounted.proxy.clear()
    fd = open_random(mounted.mountpoint / key)
    try:
        reads = 0
        while not filled(mounted, key):
            offset = rng.randrange(0, len(data) // 4096) * 4096
            assert os.pread(fd, 4096, offset) == data[offset:offset + 4096]
            reads += 1
            assert reads < 1_000_000, "the fill never ended"
        # every fill range is one GET of a part of the object, no whole-object download
        assert gets(mounted, key) <= reads + -(-len(data) // (4 * MiB))
        mounted.proxy.clear()
        for _ in range(500):
            offset = rng.randrange(0, len(data))
            assert os.pread(fd, 4096, offset) == data[offset:offset + 4096]
        assert gets(mounted, key) == 0, "reads after the fill went to the bucket"
    finally:
        os.close(fd)


def test_closing_stops_the_fill(mounted):
    key = "rr/closed.bin"
    data = put(mounted, key, 48 * MiB, 3)
    mounted.proxy.clear()
    mounted.proxy.delay(60, times=None, op="GetObject", key=key, skip=1)  # hold the fill back
    fd = open_random(mounted.mountpoint / key)
    try:
        assert os.pread(fd, 4096, 30 * MiB) == data[30 * MiB:30 * MiB + 4096]
        wait_for(lambda: gets(mounted, key) >= 2, "the fill's first GETs")
    finally:
        os.close(fd)
    wait_for(lambda: f"stopped filling the cache file of {key}" in mounted.log_text(),
             "the fill to stop")
    mounted.proxy.clear()  # the held GETs go through now; a fill still running would go on
    time.sleep(1.0)
    assert gets(mounted, key) == 0, "GETs sent after the file was closed"
    assert not filled(mounted, key)


def test_object_replaced_mid_fill_fails_with_eio_never_mixes(mounted):
    key = "rr/replaced.bin"
    old = put(mounted, key, 32 * MiB, 4)
    new = random.Random(5).randbytes(len(old))
    mounted.proxy.clear()
    mounted.proxy.delay(60, times=None, op="GetObject", key=key, skip=1)
    path = mounted.mountpoint / key
    fd = open_random(path)
    try:
        assert os.pread(fd, 4096, 7 * MiB) == old[7 * MiB:7 * MiB + 4096]
        wait_for(lambda: gets(mounted, key) >= 2, "the fill's first GETs")
        mounted.client.put_object(Bucket=mounted.bucket, Key=key, Body=new)
        mounted.proxy.clear()  # the fill's GETs now meet the new version
        failed = 0
        offsets = list(range(0, len(old), MiB))
        random.Random(6).shuffle(offsets)
        for offset in offsets:
            try:
                got = os.pread(fd, 4096, offset + 100)
            except OSError as exc:
                assert exc.errno == errno.EIO
                failed += 1
            else:
                # (short when a page the kernel kept was followed by one that failed)
                assert got == old[offset + 100:offset + 100 + len(got)], "new bytes read"
        assert failed > 0
    finally:
        os.close(fd)
    assert not filled(mounted, key)
    with open(path, "rb") as again:
        assert again.read() == new


def free_bytes(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_budget_is_the_disk_above_ensure_diskfree(faulty, tmpfs, mount_factory):
    """Without use_cache the copy is a temporary file in tmpdir: a file too big for the disk
    above ensure_diskfree is read block by block (bounded), one that fits is filled."""
    disk = tmpfs(64)
    floor = 24 * MiB
    bucket = unique_bucket("rr")
    faulty.create_bucket(bucket)
    client = faulty.client()
    big = random.Random(7).randbytes(48 * MiB)
    small = random.Random(8).randbytes(24 * MiB)
    client.put_object(Bucket=bucket, Key="big.bin", Body=big)
    client.put_object(Bucket=bucket, Key="small.bin", Body=small)
    mount = mount_factory(faulty, bucket, [f"tmpdir={disk}", "ensure_diskfree=24"]).mount()
    rng = random.Random(9)

    fd = open_random(mount.mountpoint / "big.bin")
    try:
        lowest = free_bytes(disk)
        for _ in range(400):
            offset = rng.randrange(0, len(big) - 4096)
            assert os.pread(fd, 4096, offset) == big[offset:offset + 4096]
            lowest = min(lowest, free_bytes(disk))
        assert lowest >= floor, f"{lowest} bytes free, below ensure_diskfree"
        assert lowest < 60 * MiB  # blocks were kept there meanwhile
    finally:
        os.close(fd)
    assert not filled(mount, "big.bin")
    wait_for(lambda: free_bytes(disk) > 60 * MiB, "the temporary copy to go at close")

    fd = open_random(mount.mountpoint / "small.bin")
    try:
        while not filled(mount, "small.bin"):
            offset = rng.randrange(0, len(small) - 4096)
            assert os.pread(fd, 4096, offset) == small[offset:offset + 4096]
            assert free_bytes(disk) >= floor
        assert free_bytes(disk) <= 64 * MiB - len(small)  # the whole copy is in tmpdir
    finally:
        os.close(fd)
