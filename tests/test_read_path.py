"""The read path: prefetch for sequential readers, small ranges for random ones, caches.

First the prefetcher alone (ocifs.data.prefetch with a fake store: no server, no kernel), then
through real mounts: byte-exact sequential and random reads of objects written with boto3,
the mount's memory bounded while a big file is read, and a change made by another client (or
another mount) seen once ``stat_cache_expire`` (plus the kernel's own cache) has passed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import time

import pytest
import trio

from mounting import unique_bucket
from ocifs.data import prefetch
from ocifs.fuse.operations import kernel_timeout
from ocifs.run.mount import pidfile_path
from ocifs.data.prefetch import CHUNK, CHUNK_MAX, Prefetcher
from ocifs.s3.errors import StoreError
from ocifs.s3.store import ObjectStore

MiB = 1024 * 1024


# -- the prefetcher alone ------------------------------------------------------------------

class FakeStore(ObjectStore):
    """A store holding one object in memory, recording every ranged GET (the reads of the
    ObjectStore protocol; any other request raises)."""

    def __init__(self, data: bytes, fail_at: int | None = None) -> None:
        self.data = data
        self.etag = '"v1"'
        self.fail_at = fail_at
        self.limiter = trio.CapacityLimiter(10)
        self.gets: list[tuple[int, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def get_range_tagged(self, key: str, start: int, length: int) -> tuple[bytes, str]:
        self.gets.append((start, length))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.sleep(0.001)
            if self.fail_at is not None and start <= self.fail_at < start + length:
                raise StoreError(5, "GET failed")
            return self.data[start:start + length], self.etag
        finally:
            self.in_flight -= 1


def run_with_prefetcher(store: FakeStore, body, budget: int = prefetch.BUDGET, cache=None):
    async def main():
        prefetcher = Prefetcher(store, budget=budget, cache=cache)
        async with prefetcher.background.running() as nursery:
            result = await body(prefetcher)
            nursery.cancel_scope.cancel()
        return prefetcher, result
    return trio.run(main)


def test_sequential_reads_are_prefetched_in_chunks_and_exact():
    data = random.Random(1).randbytes(100 * MiB + 12345)
    store = FakeStore(data)

    async def body(prefetcher):
        stream = prefetcher.stream("k", len(data))
        out = [await stream.read(offset, 128 * 1024) for offset in range(0, len(data), 128 * 1024)]
        held = prefetcher.budget.used
        stream.close()
        await trio.sleep(0.1)  # chunks still in flight give their budget back when done
        return b"".join(out), held

    prefetcher, (read, held) = run_with_prefetcher(store, body)
    assert read == data
    assert held <= prefetch.WINDOW_MAX + CHUNK
    assert prefetcher.budget.used == 0
    assert all(length <= CHUNK_MAX for _, length in store.gets)
    assert max(length for _, length in store.gets) == CHUNK_MAX  # chunks grow with the window
    assert len(store.gets) < -(-len(data) // (10 * MiB))  # fewer than s3fs's 10 MiB ranges
    assert store.max_in_flight > 1  # several chunks at once


def test_random_reads_use_small_ranges_and_no_prefetch():
    data = random.Random(2).randbytes(64 * MiB)
    store = FakeStore(data)
    offsets = random.Random(3).sample(range(0, len(data) - 4096, 4096), 50)

    async def body(prefetcher):
        stream = prefetcher.stream("k", len(data))
        return [(offset, await stream.read(offset, 4096)) for offset in offsets]

    _, results = run_with_prefetcher(store, body)
    for offset, got in results:
        assert got == data[offset:offset + 4096]
    assert sum(length for _, length in store.gets) <= 50 * prefetch.DIRECT_MIN


def test_budget_bounds_prefetch_across_streams():
    data = random.Random(4).randbytes(40 * MiB)
    store = FakeStore(data)
    budget = 2 * CHUNK

    async def body(prefetcher):
        streams = [prefetcher.stream(f"k{i}", len(data)) for i in range(3)]
        peak = 0
        outputs = [[] for _ in streams]
        for offset in range(0, len(data), MiB):
            for stream, out in zip(streams, outputs):
                out.append(await stream.read(offset, MiB))
                peak = max(peak, prefetcher.budget.used)
        for stream in streams:
            stream.close()
        await trio.sleep(0.1)
        return [b"".join(out) for out in outputs], peak

    prefetcher, (outputs, peak) = run_with_prefetcher(store, body, budget=budget)
    assert all(out == data for out in outputs)  # readers without budget read directly
    assert peak <= budget
    assert prefetcher.budget.used == 0


def test_failed_chunk_reaches_the_reader_only():
    data = random.Random(5).randbytes(20 * MiB)
    store = FakeStore(data, fail_at=CHUNK + 10)

    async def body(prefetcher):
        stream = prefetcher.stream("k", len(data))
        first = await stream.read(0, MiB)
        with pytest.raises(StoreError):
            for offset in range(MiB, len(data), MiB):
                await stream.read(offset, MiB)
        stream.close()
        await trio.sleep(0.1)
        return first

    prefetcher, first = run_with_prefetcher(store, body)
    assert first == data[:MiB]
    assert prefetcher.budget.used == 0


def test_reads_without_nursery_are_direct():
    data = random.Random(6).randbytes(3 * MiB)
    store = FakeStore(data)

    async def main():
        stream = Prefetcher(store).stream("k", len(data))  # type: ignore[arg-type]
        return b"".join([await stream.read(o, 100_000) for o in range(0, len(data), 100_000)])

    assert trio.run(main) == data


@pytest.mark.parametrize("known", [True, False])
def test_a_stream_never_mixes_two_versions(known):
    """An object replaced (same size) while a handle reads it: the reads after the change fail
    with EIO instead of returning the new version's bytes after the old one's."""
    old, new = random.Random(7).randbytes(20 * MiB), random.Random(8).randbytes(20 * MiB)
    store = FakeStore(old)

    async def body(prefetcher):
        stream = prefetcher.stream("k", len(old), store.etag if known else None)
        first = await stream.read(0, MiB)
        await trio.sleep(0.1)  # the first chunk's neighbours are fetched meanwhile
        store.data, store.etag = new, '"v2"'
        read = [first]
        with pytest.raises(StoreError) as failure:
            for offset in range(MiB, len(old), MiB):
                read.append(await stream.read(offset, MiB))
        stream.close()
        await trio.sleep(0.1)
        return b"".join(read), failure.value

    _, (read, error) = run_with_prefetcher(store, body)
    assert error.errno == errno.EIO and isinstance(error, prefetch.ObjectChanged)
    assert read == old[:len(read)]  # all of one version, up to the change


def test_kernel_timeout_follows_stat_cache():
    assert kernel_timeout(0) == 0
    assert kernel_timeout(0.5) == 0.5
    assert kernel_timeout(900) == 900  # each reply: what is left of its stat cache entry


# -- through a mount ----------------------------------------------------------------------

def test_sequential_read_of_boto3_object_byte_exact(mounted):
    data = random.Random(10).randbytes(40 * MiB + 4321)
    mounted.client.put_object(Bucket=mounted.bucket, Key="rp/seq.bin", Body=data)
    digest = hashlib.sha256()
    with open(mounted.mountpoint / "rp/seq.bin", "rb", buffering=0) as f:
        while block := f.read(MiB):
            digest.update(block)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_random_and_mixed_reads_match(mounted):
    data = random.Random(11).randbytes(24 * MiB)
    mounted.client.put_object(Bucket=mounted.bucket, Key="rp/rand.bin", Body=data)
    rng = random.Random(12)
    fd = os.open(mounted.mountpoint / "rp/rand.bin", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for _ in range(60):
            offset = rng.randrange(0, len(data))
            size = rng.choice([1, 4096, 65536, 300_000])
            assert os.pread(fd, size, offset) == data[offset:offset + size]
        # across a chunk boundary, then sequentially from the middle, then past the end
        assert os.pread(fd, 200_000, CHUNK - 100_000) == data[CHUNK - 100_000:CHUNK + 100_000]
        start = 5 * MiB + 17
        got = b"".join(os.pread(fd, MiB, start + i * MiB) for i in range(12))
        assert got == data[start:start + 12 * MiB]
        assert os.pread(fd, 100, len(data) + 10) == b""
    finally:
        os.close(fd)


def test_two_handles_read_independently(mounted):
    data = random.Random(13).randbytes(20 * MiB)
    mounted.client.put_object(Bucket=mounted.bucket, Key="rp/two.bin", Body=data)
    path = mounted.mountpoint / "rp/two.bin"
    with open(path, "rb", buffering=0) as a, open(path, "rb", buffering=0) as b:
        parts_a, parts_b = [], []
        for i in range(20):
            parts_a.append(a.read(MiB))
            b.seek((19 - i) * MiB)
            parts_b.append(b.read(MiB))
    assert b"".join(parts_a) == data
    assert b"".join(reversed(parts_b)) == data


def test_prefetch_memory_is_bounded(seaweed_server, mount_factory):
    bucket = unique_bucket("rp")
    seaweed_server.create_bucket(bucket)
    client = seaweed_server.client()
    size = 512 * MiB
    block = random.Random(14).randbytes(MiB)
    upload = client.create_multipart_upload(Bucket=bucket, Key="big.bin")["UploadId"]
    parts = []
    for number in range(1, size // (64 * MiB) + 1):
        body = b"".join(number.to_bytes(4, "big") + i.to_bytes(4, "big") + block[8:]
                        for i in range(64))
        etag = client.upload_part(Bucket=bucket, Key="big.bin", UploadId=upload,
                                  PartNumber=number, Body=body)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    client.complete_multipart_upload(Bucket=bucket, Key="big.bin", UploadId=upload,
                                     MultipartUpload={"Parts": parts})
    mount = mount_factory(seaweed_server, bucket).mount()
    pid = int(pidfile_path(str(mount.mountpoint)).read_text())
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")
    total = 0
    with open(mount.mountpoint / "big.bin", "rb", buffering=0) as f:
        while chunk := f.read(MiB):
            assert chunk[:8] == (total // (64 * MiB) + 1).to_bytes(4, "big") + (
                total // MiB % 64).to_bytes(4, "big")
            total += len(chunk)
    assert total == size
    with open(f"/proc/{pid}/status") as status:
        hwm = int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) // 1024
    assert hwm < 256, f"VmHWM {hwm} MiB while reading a {size // MiB} MiB file"


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _wait_until(predicate, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "change not seen in time"
        time.sleep(0.2)
    return time.monotonic() - started


@pytest.mark.parametrize("expire", [0, 2])
def test_change_by_another_client_seen_after_stat_cache_expire(s3_server, mount_factory, expire):
    bucket = unique_bucket("rp")
    s3_server.create_bucket(bucket)
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="f.txt", Body=b"version one")
    mount = mount_factory(s3_server, bucket, [f"stat_cache_expire={expire}"]).mount()
    path = mount.mountpoint / "f.txt"
    assert _read(path) == b"version one"
    client.put_object(Bucket=bucket, Key="f.txt", Body=b"version two, longer")
    if expire == 0:
        assert _read(path) == b"version two, longer"
    else:
        bound = expire + kernel_timeout(expire) + 1
        _wait_until(lambda: _read_or_eio(path) == b"version two, longer", bound)


def _read_or_eio(path) -> bytes | None:
    """An open made on the cached old version whose first GET finds the new one fails with EIO
    (a handle never mixes two versions, see README); the next open sees the new version."""
    try:
        return _read(path)
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        return None


@pytest.mark.parametrize("expire", [0, 2])
def test_two_mounts_see_each_others_changes(s3_server, mount_factory, expire):
    bucket = unique_bucket("rp")
    s3_server.create_bucket(bucket)
    options = [f"stat_cache_expire={expire}"]
    first = mount_factory(s3_server, bucket, options, name="a").mount()
    second = mount_factory(s3_server, bucket, options, name="b").mount()
    (first.mountpoint / "shared.txt").write_bytes(b"from a")
    bound = expire + kernel_timeout(expire) + 1
    if expire == 0:
        assert _read(second.mountpoint / "shared.txt") == b"from a"
    else:
        _wait_until(lambda: (second.mountpoint / "shared.txt").exists()
                    and _read(second.mountpoint / "shared.txt") == b"from a", bound)
    (second.mountpoint / "shared.txt").write_bytes(b"rewritten by b")
    (second.mountpoint / "new.txt").write_bytes(b"new")
    if expire == 0:
        assert _read(first.mountpoint / "shared.txt") == b"rewritten by b"
        assert (first.mountpoint / "new.txt").exists()
    else:
        _wait_until(lambda: _read(first.mountpoint / "shared.txt") == b"rewritten by b"
                    and (first.mountpoint / "new.txt").exists(), bound)
    (first.mountpoint / "new.txt").unlink()
    if expire == 0:
        assert not (second.mountpoint / "new.txt").exists()
    else:
        _wait_until(lambda: not (second.mountpoint / "new.txt").exists(), bound)


def test_object_replaced_by_another_client_is_never_mixed_with_kept_pages(s3_server, mount_factory):
    """The mount read a file (its pages stay in the kernel's cache, its attributes in the
    stat cache); another client replaces it with as many bytes; some pages are evicted.  The
    next read must not combine the kept old pages with new bytes fetched for the evicted ones:
    it fails (EIO), and the file opened again reads the new version whole."""
    bucket = unique_bucket("rp")
    s3_server.create_bucket(bucket)
    client = s3_server.client()
    old, new = random.Random(11).randbytes(4 * MiB), random.Random(12).randbytes(4 * MiB)
    client.put_object(Bucket=bucket, Key="f.bin", Body=old)
    mount = mount_factory(s3_server, bucket).mount()
    path = mount.mountpoint / "f.bin"
    assert _read(path) == old
    client.put_object(Bucket=bucket, Key="f.bin", Body=new)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, MiB, MiB, os.POSIX_FADV_DONTNEED)  # evict the second MiB
    finally:
        os.close(fd)
    try:
        got = _read(path)
    except OSError as exc:
        assert exc.errno == errno.EIO
    else:
        assert got in (old, new), "old and new bytes mixed in one read of the file"
    assert _read(path) == new
