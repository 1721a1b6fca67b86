"""Faults between ocifs and the store, and of ocifs itself, on real mounts.

The store is seen through tests/fault_proxy.py, which answers chosen requests with 500, 503
SlowDown or 429, resets or stalls connections, loses answers, or goes down altogether.  What a
user relies on (docs/SEMANTICS.md, "Failures"): transient faults are retried without the
caller noticing; a fault that lasts reaches the caller as an error (EIO, ETIMEDOUT) at write,
fsync or close, never as silent loss: the data stays staged, a recovery copy is logged, and
once the store answers again everything written and fsync'd is in the bucket byte for byte;
no object ever appears half-written under its name; the mount stays alive through all of it.
Each test checks that its fault really happened (the proxy counts the requests it took).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import subprocess
import time

import pytest

from mounting import is_mounted, unique_bucket
from test_write_path import SMALL_PARTS, exists, pattern_bytes, stored_sha256, uploads, wait_for

MiB = 1024 * 1024


def new_bucket(server) -> str:
    name = unique_bucket("fault")
    server.create_bucket(name)
    return name


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def alive(mount) -> None:
    """The mount answers (no "Transport endpoint is not connected")."""
    os.statvfs(mount.mountpoint)
    os.listdir(mount.mountpoint)
    assert is_mounted(mount.mountpoint)


# -- transient faults: retried, invisible ---------------------------------------------------------

def test_transient_faults_are_retried_invisibly(faulty_moto, mount_factory):
    """One fault of each kind on each kind of request: every call succeeds, nothing is logged
    above INFO, the data is byte-exact (each request fails once, so one retry suffices)."""
    server = faulty_moto
    bucket = new_bucket(server)
    client = server.client()
    mount = mount_factory(server, bucket, SMALL_PARTS).mount()
    proxy = server.proxy
    rules = [proxy.error(500, "InternalError", op="PutObject"),
             proxy.reset(op="CreateMultipartUpload"),
             proxy.error(503, "SlowDown", op="UploadPart"),
             proxy.error(429, "TooManyRequests", op="CompleteMultipartUpload")]
    small, big = pattern_bytes(1, 300_000), pattern_bytes(2, 12 * MiB + 5)
    (mount.mountpoint / "small.bin").write_bytes(small)
    with open(mount.mountpoint / "big.bin", "wb") as f:
        f.write(big)
        os.fsync(f.fileno())
    assert [proxy.hits(r) for r in rules] == [1, 1, 1, 1]
    assert stored_sha256(client, bucket, "small.bin") == sha(small)
    assert stored_sha256(client, bucket, "big.bin") == sha(big)
    assert uploads(client, bucket) == []

    rules = [proxy.error(503, "SlowDown", op="HeadObject"), proxy.reset(op="ListObjectsV2"),
             proxy.error(500, "InternalError", op="GetObject")]
    other = mount_factory(server, bucket, name="reader").mount()  # nothing cached
    assert sorted(os.listdir(other.mountpoint)) == ["big.bin", "small.bin"]
    assert sha((other.mountpoint / "big.bin").read_bytes()) == sha(big)
    assert (other.mountpoint / "small.bin").read_bytes() == small
    assert [proxy.hits(r) for r in rules] == [1, 1, 1]
    log = mount.log_text() + other.log_text()
    assert "retrying in" in log
    assert not re.search(r" [WE] ocifs", log), log


# -- faults that last: loud errors, data kept --------------------------------------------------------

def recovery_copies(state) -> list:
    directory = state / "recovery"
    return sorted(directory.iterdir()) if directory.exists() else []


def test_lasting_put_failure_is_eio_at_close_and_the_data_is_kept(faulty_moto, mount_factory, tmp_path):
    """fsync and close fail with EIO (503 SlowDown too: EAGAIN would tell the program to try
    again at once), nothing is stored, the data is in a recovery copy named in the log; the
    unmount after the store recovered uploads it."""
    server = faulty_moto
    bucket = new_bucket(server)
    client = server.client()
    state = tmp_path / "state"
    state.mkdir()
    mount = mount_factory(server, bucket, ["retries=1", f"use_cache={state}"]).mount()
    rule = server.proxy.error(503, "SlowDown", times=None, op="PutObject")
    data = pattern_bytes(3, 200_000)
    f = open(mount.mountpoint / "doc.txt", "wb", buffering=0)
    f.write(data)
    with pytest.raises(OSError) as info:
        os.fsync(f.fileno())
    assert info.value.errno == errno.EIO
    with pytest.raises(OSError) as info:
        f.close()
    assert info.value.errno == errno.EIO
    assert server.proxy.hits(rule) >= 4
    assert not exists(client, bucket, "doc.txt")
    copies = recovery_copies(state)
    assert len(copies) == 1 and copies[0].read_bytes() == data
    assert str(copies[0]) in mount.log_text()
    alive(mount)
    server.proxy.clear()
    mount.umount()  # the store answers again: the staged data goes up
    assert stored_sha256(client, bucket, "doc.txt") == sha(data)


@pytest.mark.parametrize("op", ["UploadPart", "CompleteMultipartUpload"])
def test_lasting_multipart_failure_is_eio_and_the_upload_is_aborted(faulty_moto, mount_factory, tmp_path, op):
    """A part or the completion fails for good: EIO at a write, the fsync and the close; the
    upload is aborted (no parts left, no object); the data is kept and later stored whole."""
    server = faulty_moto
    bucket = new_bucket(server)
    client = server.client()
    state = tmp_path / "state"
    state.mkdir()
    mount = mount_factory(server, bucket, SMALL_PARTS + ["retries=1", f"use_cache={state}"]).mount()
    rule = server.proxy.error(500, times=None, op=op)
    data = pattern_bytes(4, 17 * MiB)
    f = open(mount.mountpoint / "big.bin", "wb", buffering=0)
    try:  # the first failed part is reported by a write or by the fsync
        for offset in range(0, len(data), MiB):
            f.write(data[offset:offset + MiB])
        os.fsync(f.fileno())
    except OSError as exc:
        assert exc.errno == errno.EIO
    else:
        raise AssertionError("the upload failed, the writer must hear of it")
    with pytest.raises(OSError) as info:
        f.close()
    assert info.value.errno == errno.EIO
    assert server.proxy.hits(rule) >= 2
    # The kernel sends the release after close returned: its own try fails and aborts too.
    wait_for(lambda: "release: " in mount.log_text(), what="the release of big.bin")
    assert not exists(client, bucket, "big.bin")
    assert uploads(client, bucket) == []
    copies = recovery_copies(state)
    assert len(copies) == 1
    assert copies[0].read_bytes() == data[:copies[0].stat().st_size]
    alive(mount)
    server.proxy.clear()
    mount.umount()
    assert stored_sha256(client, bucket, "big.bin") == sha(data)
    assert uploads(client, bucket) == []


def test_lost_answers_are_harmless(faulty_moto, mount_factory):
    """The store did the request, the answer never came: the repeat is harmless.  A PUT or a
    part is sent again whole; a repeated CompleteMultipartUpload answered NoSuchUpload (OCI,
    MinIO: the upload is gone because it was completed) counts as done."""
    server = faulty_moto
    bucket = new_bucket(server)
    client = server.client()
    mount = mount_factory(server, bucket, SMALL_PARTS).mount()
    ops = ("PutObject", "UploadPart", "CompleteMultipartUpload")
    rules = [server.proxy.lose(op=op) for op in ops]
    small, big = pattern_bytes(1, 300_000), pattern_bytes(2, 12 * MiB + 5)
    (mount.mountpoint / "small.bin").write_bytes(small)
    with open(mount.mountpoint / "big.bin", "wb") as f:
        f.write(big)
    assert [server.proxy.hits(r) for r in rules] == [1, 1, 1]
    assert stored_sha256(client, bucket, "small.bin") == sha(small)
    assert stored_sha256(client, bucket, "big.bin") == sha(big)

    lost = server.proxy.lose(op="CompleteMultipartUpload")
    gone = server.proxy.error(404, "NoSuchUpload", op="CompleteMultipartUpload")
    other = pattern_bytes(5, 11 * MiB)
    with open(mount.mountpoint / "other.bin", "wb") as f:
        f.write(other)  # its close failed with ENOENT
    assert (server.proxy.hits(lost), server.proxy.hits(gone)) == (1, 1)
    assert stored_sha256(client, bucket, "other.bin") == sha(other)
    assert uploads(client, bucket) == []
    assert "Traceback" not in mount.log_text()


# -- reads under faults ---------------------------------------------------------------------------

def test_lasting_read_faults_are_eio_and_the_mount_stays_alive(faulty_moto, mount_factory):
    """GET, HEAD and LIST failing for good: read, stat and listdir fail with EIO, the mount
    answers meanwhile, and everything works again once the store does (same handle too)."""
    server = faulty_moto
    bucket = new_bucket(server)
    client = server.client()
    data = pattern_bytes(6, 3 * MiB)
    client.put_object(Bucket=bucket, Key="dir/data.bin", Body=data)
    mount = mount_factory(server, bucket, ["retries=1", "stat_cache_expire=0"]).mount()
    proxy = server.proxy
    path = mount.mountpoint / "dir" / "data.bin"
    assert path.stat().st_size == len(data)

    rule = proxy.error(500, times=None, op="GetObject")
    with open(path, "rb") as f:
        with pytest.raises(OSError) as info:
            f.read()
        assert info.value.errno == errno.EIO
        assert proxy.hits(rule) >= 2
        alive(mount)
        proxy.clear()
        f.seek(0)
        assert f.read() == data  # the same handle reads again once the store answers
    rule = proxy.error(503, "SlowDown", times=None, op="HeadObject")
    with pytest.raises(OSError) as info:
        path.stat()
    assert info.value.errno == errno.EIO
    assert proxy.hits(rule) >= 2
    proxy.clear()
    rule = proxy.reset(times=None, op="ListObjectsV2")
    with pytest.raises(OSError) as info:
        os.listdir(mount.mountpoint / "dir")
    assert info.value.errno == errno.EIO
    assert proxy.hits(rule) >= 2
    proxy.clear()
    assert os.listdir(mount.mountpoint / "dir") == ["data.bin"]
    assert path.read_bytes() == data
    alive(mount)


def test_stalled_read_ends_within_the_timeout(faulty_moto, mount_factory):
    """The store sends the headers and 1000 bytes, then nothing: the read fails with
    ETIMEDOUT after readwrite_timeout (a body is not retried), it does not hang."""
    server = faulty_moto
    bucket = new_bucket(server)
    client = server.client()
    data = pattern_bytes(7, 2 * MiB)
    client.put_object(Bucket=bucket, Key="data.bin", Body=data)
    mount = mount_factory(server, bucket, ["readwrite_timeout=1"]).mount()
    path = mount.mountpoint / "data.bin"
    assert path.stat().st_size == len(data)
    rule = server.proxy.stall(times=None, after_bytes=1000, op="GetObject")
    started = time.monotonic()
    with open(path, "rb") as f:
        with pytest.raises(OSError) as info:
            f.read()
    elapsed = time.monotonic() - started
    assert info.value.errno == errno.ETIMEDOUT
    assert server.proxy.hits(rule) >= 1
    assert elapsed < 30, elapsed
    alive(mount)
    server.proxy.clear()
    assert path.read_bytes() == data


def test_stalled_upload_is_retried_or_fails_within_the_timeout(faulty_moto, mount_factory, tmp_path):
    """An answer that never comes ends after readwrite_timeout: retried (and then stored), or,
    when every attempt hangs, ETIMEDOUT at close with the data kept."""
    server = faulty_moto
    bucket = new_bucket(server)
    client = server.client()
    state = tmp_path / "state"
    state.mkdir()
    mount = mount_factory(server, bucket, ["readwrite_timeout=1", "retries=1",
                                           f"use_cache={state}"]).mount()
    once = server.proxy.stall(op="PutObject")  # the store took it, the answer never comes
    (mount.mountpoint / "once.txt").write_bytes(b"retried after the timeout")
    assert server.proxy.hits(once) == 1
    assert client.get_object(Bucket=bucket, Key="once.txt")["Body"].read() == b"retried after the timeout"

    always = server.proxy.stall(times=None, op="PutObject")
    started = time.monotonic()
    with pytest.raises(OSError) as info:
        with open(mount.mountpoint / "never.txt", "wb") as f:
            f.write(b"x" * 1000)
    assert info.value.errno == errno.ETIMEDOUT
    assert time.monotonic() - started < 30
    assert server.proxy.hits(always) >= 2
    assert len(recovery_copies(state)) == 1
    alive(mount)
    server.proxy.clear()
    mount.umount()  # the store answers again: the staged data goes up
    assert client.get_object(Bucket=bucket, Key="never.txt")["Body"].read() == b"x" * 1000


# -- the store down for a while -------------------------------------------------------------------

@pytest.mark.parametrize("retries", [5, 1], ids=["ridden-out", "outlasting-retries"])
def test_store_down_during_a_write(faulty_moto, mount_factory, tmp_path, retries):
    """Down for 2.5 s: the default retries (waits of 0.5-1, 1-2, 2-4... s) ride it out and the
    write completes; one retry does not, and the writer hears of it (EIO at write or fsync),
    with the data kept.  Either way, once the store is back, everything is stored."""
    server = faulty_moto
    bucket = new_bucket(server)
    client = server.client()
    state = tmp_path / "state"
    state.mkdir()
    mount = mount_factory(server, bucket, SMALL_PARTS + [f"retries={retries}", f"use_cache={state}"]).mount()
    before = pattern_bytes(8, 1 * MiB)
    (mount.mountpoint / "before.bin").write_bytes(before)
    during = pattern_bytes(9, 12 * MiB)
    f = open(mount.mountpoint / "during.bin", "wb", buffering=0)
    f.write(during[:6 * MiB])
    server.proxy.down(seconds=2.5)
    try:
        f.write(during[6 * MiB:])
        os.fsync(f.fileno())
        outcome = "stored"
    except OSError as exc:
        outcome = errno.errorcode[exc.errno]
    assert outcome == ("stored" if retries == 5 else "EIO")
    if outcome == "stored":
        assert stored_sha256(client, bucket, "during.bin") == sha(during)
    else:
        copies = recovery_copies(state)
        assert len(copies) == 1 and str(copies[0]) in mount.log_text()
        assert not exists(client, bucket, "during.bin")
    wait_for(lambda: not server.proxy.stats()["down"], timeout=30, what="the store to come back")
    after = pattern_bytes(10, 7 * MiB)
    with open(mount.mountpoint / "after.bin", "wb") as g:
        g.write(after)
        os.fsync(g.fileno())
    assert stored_sha256(client, bucket, "after.bin") == sha(after)
    f.close()  # uploads the file again, if the fsync failed
    mount.umount()
    assert stored_sha256(client, bucket, "before.bin") == sha(before)
    assert stored_sha256(client, bucket, "during.bin") == sha(during)
    assert uploads(client, bucket) == []  # an abort that failed during the outage was redone


# -- the ocifs process itself -----------------------------------------------------------------------

def test_kill_9_mid_rename_leaves_one_whole_object_and_no_upload(faulty_seaweed, mount_factory, tmp_path):
    """A big rename is a multipart copy, then a delete of the source.  Killed in the copy: the
    source is whole, the destination absent; the next mount clears the stale mount (saying so)
    and aborts the copy's upload, which the killed mount had journaled."""
    server = faulty_seaweed
    bucket = new_bucket(server)
    client = server.client()
    state = tmp_path / "state"
    state.mkdir()
    data = pattern_bytes(11, 23 * MiB)
    client.put_object(Bucket=bucket, Key="big.bin", Body=data)
    options = ["singlepart_copy_limit=5", "multipart_copy_size=5", f"use_cache={state}"]
    first = mount_factory(server, bucket, options)
    proc = first.start_foreground()
    stuck = server.proxy.stall(skip=2, times=None, op="UploadPartCopy")  # parts 3.. hang
    mv = subprocess.Popen(["mv", str(first.mountpoint / "big.bin"), str(first.mountpoint / "moved.bin")],
                          stderr=subprocess.PIPE, text=True)
    copying = wait_for(lambda: [u for u in uploads(client, bucket) if u["Key"] == "moved.bin"],
                       what="the multipart copy to start")
    wait_for(lambda: server.proxy.hits(stuck) >= 1, what="a part copy in flight")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert mv.wait(timeout=30) != 0  # the rename failed (ENOTCONN), it did not half-happen
    server.proxy.clear()
    assert stored_sha256(client, bucket, "big.bin") == sha(data)
    assert not exists(client, bucket, "moved.bin")

    second = type(first)(server, bucket, first.mountpoint, options)  # the same mountpoint
    result = subprocess.run(second.argv(), capture_output=True, text=True, timeout=120)
    try:
        assert result.returncode == 0, result.stderr
        assert f"clearing stale mount at {first.mountpoint}" in result.stderr
        wait_for(lambda: "aborted multipart upload" in second.log_text(), what="the abort")
        assert copying[0]["UploadId"] in second.log_text()
        assert [u for u in uploads(client, bucket) if u["Key"] == "moved.bin"] == []
        assert sorted(os.listdir(second.mountpoint)) == ["big.bin"]
        os.rename(second.mountpoint / "big.bin", second.mountpoint / "moved.bin")  # now it can
        assert stored_sha256(client, bucket, "moved.bin") == sha(data)
        assert not exists(client, bucket, "big.bin")
        assert uploads(client, bucket) == []
    finally:
        second.umount()


def close_quietly(f) -> None:
    """A file open on a mount that is gone: its close fails, as it should."""
    try:
        f.close()
    except OSError:
        pass


def test_sigterm_uploads_through_a_short_outage(faulty_moto, mount_factory):
    """The store is down when the stop begins: the upload waits for it (retries), the process
    exits 0 once the data is in the bucket."""
    server = faulty_moto
    bucket = new_bucket(server)
    client = server.client()
    mount = mount_factory(server, bucket)
    proc = mount.start_foreground()
    data = pattern_bytes(12, 2 * MiB)
    f = open(mount.mountpoint / "dirty.bin", "wb", buffering=0)
    try:
        f.write(data)  # staged, dirty: only a close, an fsync or the stop uploads it
        server.proxy.down(seconds=2)
        assert mount.stop_foreground(signal.SIGTERM, timeout=60) == 0, proc.communicate()
    finally:
        close_quietly(f)
    assert stored_sha256(client, bucket, "dirty.bin") == sha(data)
    assert "retrying in" in mount.log_text()


@pytest.mark.parametrize("fault", ["down", "hanging"])
def test_sigterm_gives_up_after_stop_timeout_and_keeps_the_data(faulty_moto, mount_factory, tmp_path, fault):
    """The store is down (refused connections, retried for 15 s and more), or hangs (a request
    never answered, default readwrite_timeout of 120 s): the stop gives up after stop_timeout,
    names the file and where its data is kept, exits 1."""
    server = faulty_moto
    bucket = new_bucket(server)
    client = server.client()
    state = tmp_path / "state"
    state.mkdir()
    mount = mount_factory(server, bucket, ["stop_timeout=3", f"use_cache={state}"])
    proc = mount.start_foreground()
    data = pattern_bytes(13, 3 * MiB + 7)
    f = open(mount.mountpoint / "unsaved.bin", "wb", buffering=0)
    try:
        f.write(data)
        if fault == "down":
            server.proxy.down()
        else:
            hang = server.proxy.stall(times=None, op="PutObject")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()  # else closing f below would wait on the hung mount forever
            raise
        elapsed = time.monotonic() - started
    finally:
        close_quietly(f)
    assert proc.returncode == 1, stderr
    if fault == "hanging":
        assert server.proxy.hits(hang) >= 1
    else:
        server.proxy.up()
    # Not 120 s per hung attempt, nor the 15.5 s (at least) of retries against a store down.
    assert 3 <= elapsed < 3 + 10, elapsed
    assert "ocifs: not uploaded: unsaved.bin" in stderr
    kept = re.search(r"ocifs: unsaved\.bin: its data is kept in (\S+)", stderr)
    assert kept, stderr
    assert open(kept.group(1), "rb").read() == data
    assert "stop not finished within 3 s (stop_timeout)" in mount.log_text()
    mount.wait_gone()
    # The store may have taken the PUT whose answer never came: then the object is whole.
    if exists(client, bucket, "unsaved.bin"):
        assert stored_sha256(client, bucket, "unsaved.bin") == sha(data)


# -- the local staging disk full -----------------------------------------------------------------

@pytest.fixture
def small_disk(tmpfs):
    """A 20 MiB tmpfs for the staged copies (and the state directory)."""
    return tmpfs(20, "small-disk")


def write_until_error(path, data: bytes) -> tuple[int, OSError | None]:
    """Write ``data`` in 1 MiB calls; returns the bytes the calls reported written and the error."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    written = 0
    try:
        while written < len(data):
            written += os.write(fd, data[written:written + MiB])
    except OSError as exc:
        return written, exc
    finally:
        try:
            os.close(fd)
        except OSError as exc:
            return written, exc
    return written, None


@pytest.mark.parametrize("diskfree", [0, 12], ids=["disk-full", "ensure_diskfree"])
def test_full_staging_disk_is_enospc_and_corrupts_nothing(faulty_moto, mount_factory, small_disk, diskfree):
    """The staging disk fills up (or goes below ensure_diskfree): the write fails with ENOSPC;
    the file holds exactly the bytes the writes reported, and no other file suffers."""
    server = faulty_moto
    bucket = new_bucket(server)
    client = server.client()
    mount = mount_factory(server, bucket, [f"use_cache={small_disk}", f"ensure_diskfree={diskfree}"]).mount()
    first = pattern_bytes(14, 5 * MiB)
    (mount.mountpoint / "first.bin").write_bytes(first)  # uploaded at close, its staged copy freed

    data = pattern_bytes(15, 30 * MiB)
    written, error = write_until_error(mount.mountpoint / "kept.bin", data)
    assert error is not None and error.errno == errno.ENOSPC, error
    assert 0 < written <= 20 * MiB
    # The file holds exactly what the writes reported (close uploaded it): nothing torn.
    assert stored_sha256(client, bucket, "kept.bin") == sha(data[:written])

    # The usual pattern, a temporary name renamed once complete, leaves nothing behind.
    written, error = write_until_error(mount.mountpoint / "new.tmp", data)
    assert error is not None and error.errno == errno.ENOSPC, error
    os.unlink(mount.mountpoint / "new.tmp")
    assert not exists(client, bucket, "new.tmp")
    assert uploads(client, bucket) == []

    alive(mount)
    assert (mount.mountpoint / "first.bin").read_bytes() == first
    assert stored_sha256(client, bucket, "first.bin") == sha(first)
    (mount.mountpoint / "later.txt").write_bytes(b"room again")
    assert client.get_object(Bucket=bucket, Key="later.txt")["Body"].read() == b"room again"
    assert "Traceback" not in mount.log_text()


def test_lost_creation_answer_leaves_no_upload(faulty_seaweed, mount_factory):
    """The store created an upload but its answer was lost: the retry creates another one, and
    the first, whose id nobody learnt, is found and aborted (SeaweedFS: moto's upload times
    are not real ones)."""
    server = faulty_seaweed
    bucket = new_bucket(server)
    client = server.client()
    mount = mount_factory(server, bucket, SMALL_PARTS).mount()
    lost = server.proxy.lose(op="CreateMultipartUpload")
    big = pattern_bytes(16, 12 * MiB + 5)
    with open(mount.mountpoint / "big.bin", "wb") as f:
        f.write(big)
    assert server.proxy.hits(lost) == 1
    assert stored_sha256(client, bucket, "big.bin") == sha(big)
    assert uploads(client, bucket) == []
    assert "created by an attempt whose answer was lost" in mount.log_text()
