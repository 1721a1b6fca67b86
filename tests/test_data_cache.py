"""The data cache (ocifs/data/datacache.py): ranges kept locally, ETag revalidation, disk bounds,
persistence across mounts with ``use_cache``; in units and through real mounts."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

import pytest
import trio

from mounting import unique_bucket
from ocifs.data.datacache import BLOCK, DataCache
from ocifs.ranges import ByteRanges
from ocifs.data.fill import FILL_RANGE, MISS
from ocifs.data import prefetch
from ocifs.data.prefetch import ObjectChanged, Prefetcher
from test_read_path import FakeStore, run_with_prefetcher

MiB = 1024 * 1024


# -- units ----------------------------------------------------------------------------------

def test_rangeset_merges_and_covers():
    ranges = ByteRanges()
    ranges.add(10, 20)
    ranges.add(30, 40)
    assert ranges.covers(12, 18) and not ranges.covers(15, 25) and not ranges.covers(20, 30)
    ranges.add(20, 30)  # touching ranges merge
    assert ranges.as_list() == [(10, 40)] and ranges.covers(10, 40)
    ranges.add(0, 5)
    ranges.add(3, 12)
    assert ranges.as_list() == [(0, 40)]
    ranges.add(50, 60)
    assert ranges.total() == 50 and not ranges.covers(39, 51) and ranges.covers(5, 5)


@pytest.fixture
def small_disk(tmpfs):
    """A 48 MiB tmpfs: free space that tests can exhaust."""
    return tmpfs(48)


def read_all(prefetcher: Prefetcher, key: str, size: int, etag: str, step: int = MiB) -> bytes:
    async def main():
        async with prefetcher.background.running() as nursery:
            stream = prefetcher.stream(key, size, etag)
            data = b"".join([await stream.read(o, step) for o in range(0, size, step)])
            stream.close()
            nursery.cancel_scope.cancel()
        return data
    return trio.run(main)


def test_persistent_cache_serves_a_new_mount_without_requests(tmp_path):
    data = random.Random(1).randbytes(20 * MiB + 77)
    store = FakeStore(data)
    cache = DataCache(tmp_path / "cache", min_free_bytes=1)
    assert read_all(Prefetcher(store, cache=cache), "k", len(data), store.etag) == data
    cache.close()
    assert store.gets
    before = len(store.gets)
    again = DataCache(tmp_path / "cache", min_free_bytes=1)  # a new mount of the same bucket
    assert read_all(Prefetcher(store, cache=again), "k", len(data), store.etag) == data
    assert len(store.gets) == before
    # another version of the object: the old copy is not used
    store.data = data[::-1]
    store.etag = '"v2"'
    assert read_all(Prefetcher(store, cache=again), "k", len(data), store.etag) == data[::-1]
    assert len(store.gets) > before


def test_crash_before_save_leaves_no_false_claims(tmp_path):
    data = random.Random(2).randbytes(3 * MiB)
    store = FakeStore(data)
    cache = DataCache(tmp_path / "cache", min_free_bytes=1)
    read_all(Prefetcher(store, cache=cache), "k", len(data), store.etag)
    # the mount dies (its lock goes with it) before it saved the sidecar
    os.close(cache._lock)
    entry_files = sorted(p for p in (tmp_path / "cache").iterdir() if p.name != ".lock")
    assert [p.suffix for p in entry_files] == [".data", ".json"]
    entry_files[1].unlink()
    again = DataCache(tmp_path / "cache", min_free_bytes=1)
    assert again.persistent
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".lock"]  # no data without a sidecar
    assert read_all(Prefetcher(store, cache=again), "k", len(data), store.etag) == data


def test_object_changing_under_a_reader_is_not_cached(tmp_path):
    data = random.Random(3).randbytes(4 * MiB)
    store = FakeStore(data)
    cache = DataCache(None, min_free_bytes=1, temp_dir=str(tmp_path))

    async def body(prefetcher):
        stream = prefetcher.stream("k", len(data), store.etag)
        assert await stream.read(3 * BLOCK + 5, 10) == data[3 * BLOCK + 5:3 * BLOCK + 15]
        store.etag = '"changed"'  # another client replaced it (same bytes, for the check)
        with pytest.raises(ObjectChanged):  # a read of another version fails, never mixes
            await stream.read(BLOCK // 2, 10)  # far enough to be another random read
        assert stream.entry is not None
        assert not stream.entry.ranges.covers(BLOCK // 2, BLOCK // 2 + 10)
        stream.close()
    run_with_prefetcher(store, body, cache=cache)
    assert cache.entries == {}  # a stale copy is dropped at release


def test_random_reader_of_a_file_too_big_for_the_cache_fetches_blocks_once(small_disk):
    """No room for the whole object above the floor: no fill, aligned BLOCKs kept instead."""
    data = random.Random(4).randbytes(40 * MiB)
    store = FakeStore(data)
    cache = DataCache(None, min_free_bytes=20 * MiB, temp_dir=str(small_disk))

    async def body(prefetcher):
        stream = prefetcher.stream("k", len(data), store.etag)
        rng = random.Random(5)
        last = 0
        for _ in range(400):
            offset = rng.randrange(0, 16 * MiB - 4096) // 4096 * 4096 + 4096
            if abs(offset - last) <= prefetch.SLACK:
                continue  # that would count as sequential
            assert await stream.read(offset, 4096) == data[offset:offset + 4096]
            last = offset + 4096
        assert list(prefetcher.fills.values()) == [None]
        stream.close()
    run_with_prefetcher(store, body, cache=cache)
    assert len(store.gets) <= 16 * MiB // BLOCK + 1
    assert all(start % BLOCK == 0 and length == BLOCK for start, length in store.gets)


def test_random_reader_of_a_file_that_fits_is_filled_then_local(tmp_path):
    """The first miss is one small GET; the fill then copies the rest in large ranges; once
    it is done, random reads send no request."""
    data = random.Random(6).randbytes(30 * MiB + 123)
    store = FakeStore(data)
    cache = DataCache(None, min_free_bytes=1, temp_dir=str(tmp_path))
    rng = random.Random(7)

    async def body(prefetcher):
        stream = prefetcher.stream("k", len(data), store.etag)
        first = rng.randrange(MiB, len(data) - MiB)
        assert await stream.read(first, 4096) == data[first:first + 4096]
        assert store.gets[0][1] == MISS  # answered at once by one small GET
        fill = prefetcher.fills[stream.entry]
        while fill.active:
            offset = rng.randrange(0, len(data) - 4096)
            assert await stream.read(offset, 4096) == data[offset:offset + 4096]
            await trio.sleep(0.0005)  # a hit does not yield: let the fill run
        assert fill.error is None and stream.entry.ranges.covers(0, len(data))
        before, hits = len(store.gets), cache.reads[0]
        for _ in range(300):
            offset = rng.randrange(0, len(data))
            assert await stream.read(offset, 5000) == data[offset:offset + 5000]
        assert len(store.gets) == before
        assert cache.reads[0] - hits >= 300 and cache.reads[1] >= 1  # what status shows
        stream.close()
    run_with_prefetcher(store, body, cache=cache)
    assert all(length in (MISS, FILL_RANGE) or start + length >= len(data)
               for start, length in store.gets)
    assert sum(length for _, length in store.gets if length == FILL_RANGE) <= len(data)


def test_closing_stops_the_fill(tmp_path):
    data = random.Random(8).randbytes(8 * FILL_RANGE)
    store = FakeStore(data)
    cache = DataCache(None, min_free_bytes=1, temp_dir=str(tmp_path))

    async def body(prefetcher):
        stream = prefetcher.stream("k", len(data), store.etag)
        await stream.read(10 * MiB, 4096)
        fill = prefetcher.fills[stream.entry]
        while not fill.in_flight:
            await trio.sleep(0.001)
        stream.close()
        asked = len(store.gets)
        await trio.sleep(0.2)
        assert not fill.active and len(store.gets) == asked
        assert asked < 1 + len(data) // FILL_RANGE
    run_with_prefetcher(store, body, cache=cache)
    assert cache.entries == {}


def test_eviction_keeps_the_floor_free(small_disk):
    cache = DataCache(small_disk / "cache", min_free_bytes=20 * MiB)
    datas = [random.Random(10 + i).randbytes(10 * MiB) for i in range(4)]
    for i, data in enumerate(datas):
        store = FakeStore(data)
        assert read_all(Prefetcher(store, cache=cache), f"k{i}", len(data), store.etag) == data
        free = cache.free_bytes()
        assert free >= 20 * MiB - MiB, f"{free} bytes free after object {i}"
    # the oldest were evicted, the newest is whole
    assert cache.held_bytes() <= 28 * MiB
    newest = cache.entries[DataCache._name("k3")]
    assert newest is not None and newest.ranges.covers(0, 10 * MiB)


# -- through a mount ------------------------------------------------------------------------

def _gets(log_text: str, bucket: str, key: str) -> int:
    return log_text.count(f'"GET /{bucket}/{key} HTTP/1.1" 206')


def test_use_cache_survives_remount_and_revalidates_by_etag(moto_server, mount_factory, tmp_path):
    bucket = unique_bucket("dc")
    moto_server.create_bucket(bucket)
    client = moto_server.client()
    data = random.Random(20).randbytes(12 * MiB + 5)
    client.put_object(Bucket=bucket, Key="f.bin", Body=data)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    options = [f"use_cache={cache_dir}", "curldbg", "stat_cache_expire=1"]

    mount = mount_factory(moto_server, bucket, options).mount()
    assert (mount.mountpoint / "f.bin").read_bytes() == data
    assert _gets(mount.log_text(), bucket, "f.bin") > 0
    mount.umount()
    kept = list(cache_dir.glob("ocifs-cache-*/*.data"))
    assert len(kept) == 1 and kept[0].stat().st_blocks * 512 >= len(data)

    mount = mount_factory(moto_server, bucket, options, name="again").mount()
    assert hashlib.sha256((mount.mountpoint / "f.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    assert _gets(mount.log_text(), bucket, "f.bin") == 0  # all from the cache file

    changed = data[:100] + b"X" * 100 + data[200:]  # same size, new ETag
    client.put_object(Bucket=bucket, Key="f.bin", Body=changed)
    time.sleep(2.5)  # stat_cache_expire=1 plus the kernel's 1 s
    with open(mount.mountpoint / "f.bin", "rb") as f:
        assert f.read(300) == changed[:300]
    mount.umount()


def test_del_cache_empties_the_cache(moto_server, mount_factory, tmp_path):
    bucket = unique_bucket("dc")
    moto_server.create_bucket(bucket)
    moto_server.client().put_object(Bucket=bucket, Key="f.bin", Body=b"x" * MiB)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    mount = mount_factory(moto_server, bucket, [f"use_cache={cache_dir}"]).mount()
    (mount.mountpoint / "f.bin").read_bytes()
    mount.umount()
    assert list(cache_dir.glob("ocifs-cache-*/*.data"))
    mount = mount_factory(moto_server, bucket, [f"use_cache={cache_dir}", "del_cache"], name="b").mount()
    assert not list(cache_dir.glob("ocifs-cache-*/*.data"))  # emptied at mount
    (mount.mountpoint / "f.bin").read_bytes()
    mount.umount()
    assert not list(cache_dir.glob("ocifs-cache-*/*.data"))  # and at unmount


def test_cache_on_a_small_disk_stays_bounded_and_gives_way_to_writes(moto_server, mount_factory,
                                                                     small_disk):
    bucket = unique_bucket("dc")
    moto_server.create_bucket(bucket)
    client = moto_server.client()
    datas = {f"r{i}.bin": random.Random(30 + i).randbytes(12 * MiB) for i in range(4)}
    for key, data in datas.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    mount = mount_factory(moto_server, bucket, [f"use_cache={small_disk}", "ensure_diskfree=16"]).mount()
    for key, data in datas.items():
        assert (mount.mountpoint / key).read_bytes() == data
        st = os.statvfs(small_disk)
        assert st.f_bavail * st.f_frsize >= 15 * MiB, f"cache filled the disk reading {key}"
    # A file being written needs the disk more than cached reads do: they make room.
    written = random.Random(40).randbytes(24 * MiB)
    with open(mount.mountpoint / "w.bin", "wb") as f:
        f.write(written)
    body = client.get_object(Bucket=bucket, Key="w.bin")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(written).digest()
    for key, data in datas.items():  # evicted copies are fetched again, byte-exact
        assert (mount.mountpoint / key).read_bytes() == data
    mount.umount()


def test_read_ahead_is_raised_for_the_mount(mounted):
    from ocifs.data.readahead import device_of
    device = device_of(str(Path(mounted.mountpoint).resolve()), "/proc/self/mountinfo")
    assert device is not None
    deadline = time.monotonic() + 10
    while Path(f"/sys/class/bdi/{device}/read_ahead_kb").read_text().strip() != "1024":
        assert time.monotonic() < deadline, "read_ahead_kb not raised to 1024"
        time.sleep(0.1)


def test_one_persistent_cache_directory_per_running_mount(tmp_path):
    first = DataCache(tmp_path / "cache", min_free_bytes=1)
    second = DataCache(tmp_path / "cache", min_free_bytes=1)
    assert first.persistent and not second.persistent  # the second caches in temp files
    first.close()
    third = DataCache(tmp_path / "cache", min_free_bytes=1)
    assert third.persistent
    third.close()
