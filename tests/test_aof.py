"""Appends and small overwrites of big files upload what changed, copying the rest server-side
(ocifs.upload.plan), counted request by request at a proxy in front of the store; and Redis's
append-only file end to end on the mount (Redis 7's multi-part AOF in ``appendonlydir/``)."""

from __future__ import annotations

import hashlib
import os
import signal
import threading

import pytest

from mounting import unique_bucket
from test_redis import start_redis  # noqa: F401 (fixture)
from test_write_path import pattern_bytes, stored_sha256, uploads, wait_for

MiB = 1024 * 1024


def new_bucket(server) -> str:
    name = unique_bucket("aof")
    server.create_bucket(name)
    return name


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sent(proxy, op: str) -> list[int]:
    """Body bytes of each ``op`` request the proxy saw since it was last cleared."""
    return [n for o, _, n in proxy.sent() if o == op]


def test_appends_to_a_big_object_upload_only_the_appended_bytes(faulty_moto, mount_factory):
    server, proxy = faulty_moto, faulty_moto.proxy
    bucket = new_bucket(server)
    client = server.client()
    data = bytearray(pattern_bytes(1, 20 * MiB))
    client.put_object(Bucket=bucket, Key="incr.aof", Body=bytes(data))
    mount = mount_factory(server, bucket).mount()
    fd = os.open(mount.mountpoint / "incr.aof", os.O_WRONLY | os.O_APPEND)
    try:
        for seed in (2, 3, 4):  # each fsync copies what the previous one completed
            more = pattern_bytes(seed, 300_000)
            proxy.clear()
            os.write(fd, more)
            os.fsync(fd)
            data += more
            assert sent(proxy, "UploadPart") == [len(more)]
            assert len(sent(proxy, "UploadPartCopy")) == 1
            assert sent(proxy, "PutObject") == []
            assert stored_sha256(client, bucket, "incr.aof") == sha(data)
    finally:
        os.close(fd)
    assert uploads(client, bucket) == []
    other = mount_factory(server, bucket, name="again").mount()
    assert sha((other.mountpoint / "incr.aof").read_bytes()) == sha(data)


def test_appends_past_a_part_boundary_do_not_upload_the_stored_bytes_again(faulty_moto,
                                                                           mount_factory):
    """A grid part that fills up behind an appender is not streamed when most of it is in the
    object already: the fsync copies it (an AOF crossing each 10 MiB would send every byte
    twice)."""
    server, proxy = faulty_moto, faulty_moto.proxy
    bucket = new_bucket(server)
    client = server.client()
    data = bytearray(pattern_bytes(12, 28 * MiB))  # above multipart_threshold (25 MiB)
    client.put_object(Bucket=bucket, Key="incr.aof", Body=bytes(data))
    mount = mount_factory(server, bucket).mount()
    fd = os.open(mount.mountpoint / "incr.aof", os.O_WRONLY | os.O_APPEND)
    try:
        for seed, length in ((13, MiB), (14, 2 * MiB), (15, 2 * MiB)):  # 29, 31, 33 MiB
            more = pattern_bytes(seed, length)
            proxy.clear()
            for offset in range(0, length, 256 * 1024):
                os.write(fd, more[offset:offset + 256 * 1024])
            os.fsync(fd)
            data += more
            assert sum(sent(proxy, "UploadPart")) == length, sent(proxy, "UploadPart")
            assert stored_sha256(client, bucket, "incr.aof") == sha(data)
    finally:
        os.close(fd)
    assert uploads(client, bucket) == []


def test_small_overwrite_uploads_one_5_mib_part_and_copies_the_rest(faulty_moto, mount_factory):
    server, proxy = faulty_moto, faulty_moto.proxy
    bucket = new_bucket(server)
    client = server.client()
    data = bytearray(pattern_bytes(5, 20 * MiB))
    client.put_object(Bucket=bucket, Key="db.bin", Body=bytes(data))
    mount = mount_factory(server, bucket).mount()  # 20 MiB: below multipart_threshold (25)
    proxy.clear()
    patch = os.urandom(4096)
    with open(mount.mountpoint / "db.bin", "r+b") as f:
        f.seek(9 * MiB)
        f.write(patch)
    data[9 * MiB:9 * MiB + 4096] = patch
    assert sent(proxy, "UploadPart") == [5 * MiB]
    assert len(sent(proxy, "UploadPartCopy")) == 2
    assert sent(proxy, "PutObject") == []
    assert stored_sha256(client, bucket, "db.bin") == sha(data)
    other = mount_factory(server, bucket, name="again").mount()
    assert sha((other.mountpoint / "db.bin").read_bytes()) == sha(data)


def test_appends_go_on_while_a_flush_is_being_sent(faulty_moto, mount_factory):
    """An upload held at the store does not hold the writer: a close(2) of another descriptor
    uploads (flush) while appends through the first one complete, and the next fsync stores
    them too.  (An fsync(2) itself holds the inode's lock in the kernel, so writes through
    any descriptor wait for it there: Redis postpones its writes while its fsync runs.)"""
    server, proxy = faulty_moto, faulty_moto.proxy
    bucket = new_bucket(server)
    client = server.client()
    data = bytearray(pattern_bytes(6, 8 * MiB))
    client.put_object(Bucket=bucket, Key="incr.aof", Body=bytes(data))
    mount = mount_factory(server, bucket).mount()
    fd = os.open(mount.mountpoint / "incr.aof", os.O_WRONLY | os.O_APPEND)
    other = os.open(mount.mountpoint / "incr.aof", os.O_RDONLY)
    try:
        first = pattern_bytes(7, 100_000)
        os.write(fd, first)
        data += first
        proxy.clear()
        held = proxy.delay(300, op="CompleteMultipartUpload")  # until released
        closing = threading.Thread(target=os.close, args=(other,))
        closing.start()
        wait_for(lambda: proxy.hits(held) == 1, what="the flush's completion at the store")
        second = pattern_bytes(8, 200_000)
        appending = threading.Thread(target=os.write, args=(fd, second))
        appending.start()
        appending.join(60)
        assert not appending.is_alive(), "the append waited for the upload in flight"
        assert closing.is_alive()
        proxy.release()
        closing.join(60)
        assert stored_sha256(client, bucket, "incr.aof") == sha(data)  # the flush's bytes
        data += second
        proxy.clear()
        os.fsync(fd)
        assert sent(proxy, "UploadPart") == [len(second)]
        assert stored_sha256(client, bucket, "incr.aof") == sha(data)
    finally:
        proxy.clear()
        os.close(fd)


@pytest.mark.parametrize("how", ["refused", "nomixupload"])
def test_without_upload_part_copy_the_bytes_are_sent_again(faulty_moto, mount_factory, how):
    server, proxy = faulty_moto, faulty_moto.proxy
    bucket = new_bucket(server)
    client = server.client()
    data = bytearray(pattern_bytes(9, 12 * MiB))
    client.put_object(Bucket=bucket, Key="incr.aof", Body=bytes(data))
    mount = mount_factory(server, bucket, ["nomixupload"] if how == "nomixupload" else []).mount()
    proxy.clear()
    if how == "refused":
        proxy.error(501, "NotImplemented", times=None, op="UploadPartCopy")
    with open(mount.mountpoint / "incr.aof", "ab") as f:
        for seed in (10, 11):
            more = pattern_bytes(seed, 50_000)
            f.write(more)
            f.flush()
            os.fsync(f.fileno())
            data += more
            assert stored_sha256(client, bucket, "incr.aof") == sha(data)
    copies = len(sent(proxy, "UploadPartCopy"))
    assert copies == (1 if how == "refused" else 0)  # refused once, then not asked again
    assert sum(sent(proxy, "UploadPart")) + sum(sent(proxy, "PutObject")) >= 2 * 12 * MiB
    log = mount.log_text()
    assert log.count("refuses UploadPartCopy") == (1 if how == "refused" else 0), log
    proxy.clear()


# -- Redis's append-only file ----------------------------------------------------------------

AOF = ("--appendonly", "yes", "--appenddirname", "appendonlydir", "--aof-use-rdb-preamble", "yes")


def aof_files(mountpoint) -> list[str]:
    return sorted(os.listdir(mountpoint / "appendonlydir"))


def fill(r, start: int, count: int) -> None:
    for i in range(start, start + count):
        assert r("SET", f"k:{i}", os.urandom(64).hex()) == "OK"


@pytest.mark.parametrize("fsync", ["everysec", "always"])
def test_redis_aof_rewrite_crash_and_restart_on_a_fresh_mount(faulty_moto, mount_factory,
                                                              start_redis, fsync):
    """Redis 7 keeps a base (RDB preamble), an incr AOF and a manifest.  With ``always`` every
    acknowledged write is in the bucket, so a kill -9 of the mount loses nothing; with
    ``everysec`` the test shuts Redis down cleanly instead (its last second is the risk)."""
    server = faulty_moto
    bucket = new_bucket(server)
    first = mount_factory(server, bucket, name="first")
    mount_process = first.start_foreground()
    redis = start_redis(first.mountpoint, *AOF, "--appendfsync", fsync)
    r = redis.client
    fill(r, 0, 3000)
    assert r("BGREWRITEAOF").startswith("Background append only file rewriting")
    wait_for(lambda: redis.info("persistence")["aof_rewrite_in_progress"] == "0"
             and redis.info("persistence")["aof_rewrite_scheduled"] == "0", what="the rewrite")
    assert redis.info("persistence")["aof_last_bgrewrite_status"] == "ok", redis.log()
    fill(r, 3000, 2000)
    assert r("DEL", "k:1", "k:2") == 2
    names = aof_files(first.mountpoint)
    assert any(n.endswith(".base.rdb") for n in names) and any(".incr.aof" in n for n in names)
    assert any(n.endswith(".manifest") for n in names), names
    size, digest = r("DBSIZE"), r("DEBUG", "DIGEST")
    assert size == 4998
    if fsync == "always":
        mount_process.send_signal(signal.SIGKILL)  # between fsyncs: every reply was one
        mount_process.wait(timeout=30)
        redis.kill()
    else:
        redis.shutdown_nosave()
        assert first.stop_foreground() == 0
    second = mount_factory(server, bucket, name="second").mount()
    again = start_redis(second.mountpoint, *AOF, "--appendfsync", fsync)
    assert again.client("DBSIZE") == size, again.log()
    assert again.client("DEBUG", "DIGEST") == digest
    again.shutdown_nosave()
