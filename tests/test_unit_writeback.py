"""Write-back of a staged file (ocifs.upload.writeback) and the upload journal (ocifs.upload.journal),
driven directly against moto's in-process mock: no kernel, no mount."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import trio

from mock_s3 import aws, client  # noqa: F401 (fixtures)
from ocifs.upload.journal import UploadJournal
from ocifs.tasks import Background
from ocifs.upload.multipart import Multipart
from ocifs.s3.errors import StoreError
from ocifs.units import MiB
from ocifs.s3.store import Store
from ocifs.upload.writeback import FileWriteback, Target, Uploader

BUCKET = "ocifs-unit-writeback"


@pytest.fixture
def store(client):
    return Store(client, BUCKET, multipart_threshold=5 * MiB, multipart_size=5 * MiB,
                 parallel_count=2)


@pytest.fixture
def journal(tmp_path):
    return UploadJournal(tmp_path, "https://s3.amazonaws.com", BUCKET, "")


def target(key: str) -> Target:
    return Target(key, {"mode": "33188"}, "application/octet-stream", key)


def uploads(client) -> list[dict]:
    return client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def parts_count(client, key: str) -> int:
    return client.head_object(Bucket=BUCKET, Key=key, PartNumber=1).get("PartsCount", 1)


def test_streamed_parts_then_finish(client, store, journal):
    data = os.urandom(12 * MiB + 7)
    seen: dict = {}

    async def main():
        background = Background()
        async with background.running():
            uploader = Uploader.for_store(store, Multipart(store, journal), background)
            with tempfile.TemporaryFile() as staged:
                wb = FileWriteback(uploader, staged.fileno(), 0)
                os.pwrite(staged.fileno(), data, 0)
                wb.changed(0, len(data))
                await wb.stream(len(data), len(data), lambda: target("s.bin"))
                await wb.wait_in_flight()
                seen["parts"] = sorted(wb.done)
                assert journal.sync(10)
                seen["journal"] = json.loads(journal.path.read_text())["uploads"]
                await wb.finish(len(data), target("s.bin"))

    trio.run(main)
    assert seen["parts"] == [1, 2]  # the complete parts went up before finish
    assert list(seen["journal"].values()) == ["s.bin"]
    assert client.get_object(Bucket=BUCKET, Key="s.bin")["Body"].read() == data
    assert parts_count(client, "s.bin") == 3
    assert journal.sync(10)
    assert uploads(client) == [] and not journal.path.exists()


def test_unchanged_ranges_are_copied_and_small_files_are_one_put(client, store):
    original = os.urandom(16 * MiB)
    client.put_object(Bucket=BUCKET, Key="c.bin", Body=original)
    changed = bytearray(original)
    changed[6 * MiB:6 * MiB + 3] = b"new"

    async def main():
        uploader = Uploader.for_store(store, Multipart(store, UploadJournal.in_memory()))
        with tempfile.TemporaryFile() as staged:
            os.pwrite(staged.fileno(), bytes(changed), 0)
            wb = FileWriteback(uploader, staged.fileno(), len(original))
            wb.changed(6 * MiB, 6 * MiB + 3)
            await wb.finish(len(changed), target("c.bin"))
            assert wb.sent_bytes == 0  # reset once stored
            # Shrunk below the threshold: the multipart path is left for a single PUT.
            staged.truncate(MiB)
            wb.truncated(len(changed), MiB)
            await wb.finish(MiB, target("c.bin"))

    trio.run(main)
    assert client.get_object(Bucket=BUCKET, Key="c.bin")["Body"].read() == bytes(changed[:MiB])
    assert parts_count(client, "c.bin") == 1


def test_zero_byte_file_is_a_plain_put(client, store):
    async def main():
        with tempfile.TemporaryFile() as staged:
            await FileWriteback(Uploader.for_store(store, Multipart(store, UploadJournal.in_memory())), staged.fileno(), 0).finish(0, target("z"))
    trio.run(main)
    assert client.head_object(Bucket=BUCKET, Key="z")["ContentLength"] == 0


def test_failure_aborts_and_keeps_a_recovery_copy(client, store, journal, tmp_path):
    data = os.urandom(11 * MiB)

    async def failing():
        uploader = Uploader.for_store(store, Multipart(store, journal))
        with tempfile.TemporaryFile() as staged:
            os.pwrite(staged.fileno(), data, 0)
            wb = FileWriteback(uploader, staged.fileno(), 0)
            wb.changed(0, len(data))
            wb.upload_id = (await store.create_multipart("f.bin", {}, "x"))["UploadId"]
            wb.upload_key = "f.bin"
            journal.add("f.bin", wb.upload_id)
            await wb.fail("f.bin", StoreError(5, "simulated"))
            await wb.fail("f.bin", StoreError(5, "again"))  # same data: no second copy

    trio.run(failing)
    copies = list((tmp_path / "recovery").iterdir())
    assert len(copies) == 1 and copies[0].read_bytes() == data
    assert journal.sync(10)
    assert uploads(client) == [] and not journal.path.exists()


def test_the_journal_is_written_while_the_upload_goes_on(journal, monkeypatch):
    """Recording an upload does not wait for the disk (an fsync on a busy disk takes
    100 ms and more, and an AOF's every fsync(2) is one upload): the writer thread saves the
    newest content, changes made meanwhile together."""
    disk = threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd):
        assert disk.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    started = time.monotonic()
    journal.add("a.bin", "upload-a")
    journal.add("b.bin", "upload-b")
    journal.remove("upload-a")
    assert time.monotonic() - started < 1 and not journal.sync(0.2)
    disk.set()
    assert journal.sync(10)
    assert json.loads(journal.path.read_text())["uploads"] == {"upload-b": "b.bin"}
    journal.remove("upload-b")
    assert journal.sync(10) and not journal.path.exists()


def test_next_mount_aborts_only_uploads_of_dead_mounts(client, store, journal, tmp_path):
    orphan = client.create_multipart_upload(Bucket=BUCKET, Key="o.bin")["UploadId"]
    foreign = client.create_multipart_upload(Bucket=BUCKET, Key="other.bin")["UploadId"]
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = tmp_path / f"uploads-{journal.tag}-{dead.pid}-1.json"
    gone.write_text(json.dumps({"uploads": {orphan: "o.bin"}}))
    # A running mount's journal (a process whose command line names ocifs) is left alone.
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "ocifs-mount"])
    try:
        live = tmp_path / f"uploads-{journal.tag}-{running.pid}-2.json"
        live.write_text(json.dumps({"uploads": {foreign: "other.bin"}}))
        assert trio.run(journal.abort_orphans, store) == 1
    finally:
        running.kill()
        running.wait()
    assert [u["UploadId"] for u in uploads(client)] == [foreign]
    assert live.exists() and not gone.exists()


def test_dirty_file_forgotten_by_the_kernel_is_uploaded_at_unmount(client, store, monkeypatch):
    """The upload at the last close fails: the file stays dirty with no handle.  The kernel
    then forgets the inode (at unmount it always does); uploading everything at unmount must
    still find the file's path (it raised KeyError and the mount process died, data lost)."""
    import stat
    from ocifs.meta.inodes import InodeTable
    from ocifs.meta.objects import ObjectAttrs
    from ocifs.data.openfiles import OpenFiles
    from ocifs.meta.tree import Tree

    inodes = InodeTable()
    multipart = Multipart(store, UploadJournal.in_memory())
    files = OpenFiles(Tree(store, default_uid=0, default_gid=0, multipart=multipart), inodes,
                      store, multipart)
    real_put = store.put_file
    failures = []

    async def put_fails_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise StoreError(5, "PUT f.txt: InternalError")
        return await real_put(*args, **kwargs)
    monkeypatch.setattr(store, "put_file", put_fails_once)

    async def main():
        inode = inodes.lookup("f.txt")
        fh = await files.new_file(inode, ObjectAttrs(mode=stat.S_IFREG | 0o644))
        await files.write(fh, 0, b"kept")
        with pytest.raises(StoreError):
            await files.release(fh)
        inodes.forget(inode, 1)  # what the kernel does at unmount
        assert await files.upload_all() == []

    trio.run(main)
    assert client.get_object(Bucket=BUCKET, Key="f.txt")["Body"].read() == b"kept"


def test_each_finish_of_a_growing_file_copies_what_the_previous_one_stored(client, store):
    """An AOF's pattern: append, finish, append, finish.  Every version is the stored prefix
    copied server-side plus the new bytes as the last part (two parts), never a grid part."""
    data = bytearray(os.urandom(6 * MiB))
    client.put_object(Bucket=BUCKET, Key="a.aof", Body=bytes(data))
    seen = []

    async def main():
        uploader = Uploader.for_store(store, Multipart(store, UploadJournal.in_memory()))
        with tempfile.TemporaryFile() as staged:
            os.pwrite(staged.fileno(), bytes(data), 0)
            wb = FileWriteback(uploader, staged.fileno(), len(data))
            for _ in range(3):
                more = os.urandom(100_000)
                os.pwrite(staged.fileno(), more, len(data))
                wb.changed(len(data), len(data) + len(more))
                data.extend(more)
                await wb.finish(len(data), target("a.aof"))
                assert not wb.changes and wb.base_size == len(data)
                seen.append((parts_count(client, "a.aof"),
                             client.get_object(Bucket=BUCKET, Key="a.aof")["Body"].read() == data))

    trio.run(main)
    assert seen == [(2, True)] * 3
    assert uploads(client) == []
