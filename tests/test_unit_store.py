"""The boto3 store driven from trio (ocifs.s3.store), against moto's in-process mock."""

from __future__ import annotations

import datetime
import errno
import os
import tempfile
import time

import botocore.exceptions
import botocore.utils
import pytest
import trio
from moto import mock_aws

from concurrency import InFlight
from mock_s3 import URL, aws, client, client_for  # noqa: F401 (fixtures)
from ocifs.s3.credentials import Credentials
from ocifs.s3.errors import StoreError, to_store_error
from ocifs.s3.client import HEAD_THREADS, make_client, parse_timestamp
from ocifs.units import MiB
from ocifs.s3.store import Store
from ocifs.upload.journal import UploadJournal
from ocifs.upload.multipart import Multipart

BUCKET = "ocifs-unit-store"
@pytest.fixture
def store(client):
    return Store(client, BUCKET, multipart_threshold=5 * MiB, multipart_size=5 * MiB)


def run(fn, *args):
    return trio.run(fn, *args)


# -- client configuration ---------------------------------------------------------------------

def test_client_config_path_style():
    with mock_aws():
        c = client_for(path_style=True, retries=4)
        cfg = c.meta.config
        assert cfg.s3["addressing_style"] == "path"
        assert cfg.request_checksum_calculation == "when_required"
        assert cfg.response_checksum_validation == "when_required"
        assert cfg.retries["mode"] == "standard"
        assert cfg.retries["total_max_attempts"] == 5
        assert cfg.signature_version == "s3v4"
        assert cfg.region_name == "us-east-1"
        assert c.meta.endpoint_url == URL


def test_client_config_virtual_style():
    with mock_aws():
        assert client_for(path_style=False).meta.config.s3["addressing_style"] != "path"


def test_client_uses_given_credentials():
    with mock_aws():
        c = make_client(URL, "us-east-1", Credentials("AKIDX", "SECRETX", "TOKENX"), True, 1, 5, 5, 10)
        creds = c._request_signer._credentials
        assert (creds.access_key, creds.secret_key, creds.token) == ("AKIDX", "SECRETX", "TOKENX")


# -- keys ------------------------------------------------------------------------------------

def test_key_and_path_of_with_prefix(client):
    s = Store(client, BUCKET, prefix="/base/sub/")
    assert s.prefix == "base/sub/"
    assert s.key("a/b") == "base/sub/a/b"
    assert s.key("a", directory=True) == "base/sub/a/"
    assert s.path_of("base/sub/a/b") == "a/b"
    plain = Store(client, BUCKET)
    assert plain.prefix == ""
    assert plain.key("x", directory=True) == "x/"
    assert plain.key("", directory=True) == ""


# -- reads and writes -------------------------------------------------------------------------

def test_head_missing_is_none(store):
    assert run(store.head, "no/such/key") is None


def test_put_head_get(store):
    async def main():
        await store.put_bytes("dir/f.txt", b"0123456789", {"mode": "33188", "uid": "7"}, "text/plain")
        head = await store.head("dir/f.txt")
        assert head["ContentLength"] == 10
        assert head["ContentType"] == "text/plain"
        assert head["Metadata"] == {"mode": "33188", "uid": "7"}
        assert await store.get_bytes("dir/f.txt") == b"0123456789"
        assert await get_range(store, "dir/f.txt", 2, 3) == b"234"
        assert await get_range(store, "dir/f.txt", 8, 100) == b"89"
        assert await get_range(store, "dir/f.txt", 0, 0) == b""
        assert await get_range(store, "dir/f.txt", 10, 5) == b""  # InvalidRange -> empty
    run(main)


def test_get_missing_raises_enoent(store):
    with pytest.raises(StoreError) as info:
        run(store.get_bytes, "missing")
    assert info.value.errno == errno.ENOENT
    assert "missing" in str(info.value)


def test_download(store, tmp_path):
    async def main():
        await store.put_bytes("d.bin", b"x" * 1000, {}, "application/octet-stream")
        with open(tmp_path / "out", "wb") as f:
            await store.download("d.bin", f)
    run(main)
    assert (tmp_path / "out").read_bytes() == b"x" * 1000


def test_head_many_answers_each_key(client, store):
    for i in range(40):
        client.put_object(Bucket=BUCKET, Key=f"hm/{i}", Body=b"x" * i)
    keys = [f"hm/{i}" for i in range(40)] + ["hm/missing"]
    heads = run(store.head_many, keys)
    assert set(heads) == set(keys)
    assert [heads[f"hm/{i}"]["ContentLength"] for i in range(40)] == list(range(40))
    assert heads["hm/missing"] is None
    assert run(store.head_many, []) == {}
    assert run(store.head_many, ["hm/3"])["hm/3"]["ContentLength"] == 3


def test_concurrent_head_batches_share_one_bound(client, store, monkeypatch):
    counter = InFlight()

    def head(**kwargs):
        with counter:
            time.sleep(0.002)
        return {"ContentLength": 0}
    monkeypatch.setattr(client, "head_object", head)

    async def many():
        async with trio.open_nursery() as nursery:
            for batch in range(6):
                nursery.start_soon(store.head_many, [f"b{batch}/{i}" for i in range(60)])
    run(many)
    assert 1 < counter.most <= HEAD_THREADS


def test_head_many_raises_the_first_real_error(client, store, monkeypatch):
    real = client.head_object

    def head(**kwargs):
        if kwargs["Key"] == "hm/denied":
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "no"},
                 "ResponseMetadata": {"HTTPStatusCode": 403}}, "HeadObject")
        return real(**kwargs)
    monkeypatch.setattr(client, "head_object", head)
    client.put_object(Bucket=BUCKET, Key="hm/ok", Body=b"")
    with pytest.raises(StoreError) as info:
        run(store.head_many, ["hm/ok", "hm/denied", "hm/missing"])
    assert info.value.errno == errno.EACCES and "hm/denied" in str(info.value)


@pytest.mark.parametrize("text", [
    "2026-11-25T20:28:30.000Z", "2026-11-25T20:28:30Z", "2026-11-25T20:28:30.123456Z",
    "2026-11-25T20:28:30+01:00", "Wed, 25 Nov 2026 20:28:30 GMT", "1795638510",
    "2026-11-25 20:28:30",
])
def test_parse_timestamp_agrees_with_botocore(text):
    ours, theirs = parse_timestamp(text), botocore.utils.parse_timestamp(text)
    assert ours == theirs and ours.utcoffset() == theirs.utcoffset()


def test_http_dates_sliced_as_the_email_module_parses_them():
    import email.utils
    import random
    rng = random.Random(7)
    for _ in range(2000):
        when = rng.randrange(0, 2 ** 33)
        text = email.utils.formatdate(when, usegmt=True)  # what S3 sends: IMF-fixdate
        ours = parse_timestamp(text)
        assert ours == email.utils.parsedate_to_datetime(text) == botocore.utils.parse_timestamp(text)
        assert ours.utcoffset() == datetime.timedelta(0)
    for other in ("Sun, 6 Dec 2026 21:46:14 GMT", "Sun, 06 Dec 2026 21:46:14 +0100",
                  "Sunday, 06-Dec-26 21:46:14 GMT", "Sun, 06 Foo 2026 21:46:14 GMT"):
        try:
            expected = botocore.utils.parse_timestamp(other)
        except ValueError:
            continue
        assert parse_timestamp(other) == expected


def test_client_parses_timestamps_fast(client):
    """Clients made by make_client use parse_timestamp (the listing's dates come out right)."""
    with mock_aws():
        c = client_for(path_style=True)
        factory = c._endpoint._response_parser_factory  # noqa: SLF001 - what the client uses
        assert factory._defaults["timestamp_parser"] is parse_timestamp  # noqa: SLF001


def test_list_dir_paginates_and_splits_prefixes(client, store):
    count = 1005
    for i in range(count):
        client.put_object(Bucket=BUCKET, Key=f"big/k{i:05d}", Body=b"")
    client.put_object(Bucket=BUCKET, Key="big/", Body=b"", ContentType="application/x-directory")
    client.put_object(Bucket=BUCKET, Key="big/sub1/x", Body=b"1")
    client.put_object(Bucket=BUCKET, Key="big/sub2/deep/y", Body=b"2")
    client.put_object(Bucket=BUCKET, Key="bigger", Body=b"3")
    client.put_object(Bucket=BUCKET, Key="other/z", Body=b"4")

    async def main():
        objects, prefixes = await store.list_dir("big/")
        keys = [o["Key"] for o in objects]
        assert len(keys) == count + 1  # the keys and the marker, nothing from below or beside
        assert len(set(keys)) == len(keys)
        assert "big/" in keys and "big/k01004" in keys and "big/k00000" in keys
        assert not any(k.startswith(("big/sub", "bigger", "other")) for k in keys)
        assert sorted(prefixes) == ["big/sub1/", "big/sub2/"]

        one, _ = await store.list_dir("big/", max_keys=1)
        assert len(one) == 1

        top_objects, top_prefixes = await store.list_dir("")
        assert [o["Key"] for o in top_objects] == ["bigger"]
        assert sorted(top_prefixes) == ["big/", "other/"]

        everything = await store.list_recursive("big/")
        all_keys = {o["Key"] for o in everything}
        assert len(all_keys) == count + 3
        assert {"big/sub1/x", "big/sub2/deep/y", "big/"} <= all_keys
        assert "bigger" not in all_keys
    run(main)


def test_list_recursive_empty(store):
    assert run(store.list_recursive, "nothing/") == []
    assert run(store.list_dir, "nothing/") == ([], [])


def test_put_file_reads_the_fd_without_moving_it(client, store, tmp_path):
    size = 3 * MiB + 123
    data = os.urandom(size)
    path = tmp_path / "file.bin"
    path.write_bytes(data + b"tail not sent")
    meta = {"mode": "33188", "uid": "1", "gid": "2", "mtime": "1700000000", "keep": "me"}
    with open(path, "rb") as f:
        f.seek(17)
        run(store.put_file, "up/file.bin", f.fileno(), size, meta, "application/x-test")
        assert f.tell() == 17  # the caller's file position is untouched
        assert not f.closed
    head = client.head_object(Bucket=BUCKET, Key="up/file.bin")
    assert head["ContentLength"] == size
    assert head["Metadata"] == meta
    assert head["ContentType"] == "application/x-test"
    assert "-" not in head["ETag"]  # one PutObject
    assert client.get_object(Bucket=BUCKET, Key="up/file.bin")["Body"].read() == data


def test_put_file_of_zero_bytes(client, store):
    with tempfile.TemporaryFile() as f:
        run(store.put_file, "up/empty", f.fileno(), 0, {"mode": "33188"}, "text/plain")
    assert client.get_object(Bucket=BUCKET, Key="up/empty")["Body"].read() == b""


async def get_range(store, key, start, length):
    return (await store.get_range_tagged(key, start, length))[0]


def copier(store, journal=None):
    """Server-side copies as the mount makes them (ocifs.upload.multipart)."""
    return Multipart(store, journal or UploadJournal.in_memory())


def test_copy_replaces_metadata(client, store):
    client.put_object(Bucket=BUCKET, Key="src", Body=b"payload", Metadata={"mode": "33188", "old": "x"},
                      ContentType="text/plain")

    async def main():
        await copier(store).copy("src", "dst", {"mode": "33261", "new": "y"}, "application/x-sh")
        head = await store.head("dst")
        assert head["Metadata"] == {"mode": "33261", "new": "y"}
        assert head["ContentType"] == "application/x-sh"
        assert await store.get_bytes("dst") == b"payload"
        # the source is untouched
        assert (await store.head("src"))["Metadata"] == {"mode": "33188", "old": "x"}
        # a self-copy changes metadata in place (chmod/chown on a file)
        await copier(store).copy("src", "src", {"mode": "33216"}, "text/plain")
        assert (await store.head("src"))["Metadata"] == {"mode": "33216"}
        assert await store.get_bytes("src") == b"payload"
    run(main)


class RecordingJournal:
    """What the store tells an UploadJournal: uploads added, uploads removed."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str]] = []
        self.removed: list[str] = []

    def add(self, key: str, upload_id: str) -> None:
        self.added.append((key, upload_id))

    def remove(self, upload_id: str) -> None:
        self.removed.append(upload_id)


def test_multipart_copy_is_journaled_and_byte_exact(client):
    store = Store(client, BUCKET, copy_threshold=5 * MiB, copy_part_size=5 * MiB)
    journal = RecordingJournal()
    data = os.urandom(12 * MiB + 3)
    client.put_object(Bucket=BUCKET, Key="big", Body=data)
    run(copier(store, journal).copy, "big", "moved", {"mode": "33188"}, "application/octet-stream")
    assert client.get_object(Bucket=BUCKET, Key="moved")["Body"].read() == data
    assert client.head_object(Bucket=BUCKET, Key="moved", PartNumber=1)["PartsCount"] == 3
    assert client.head_object(Bucket=BUCKET, Key="moved")["Metadata"] == {"mode": "33188"}
    [(key, upload_id)] = journal.added
    assert key == "moved" and journal.removed == [upload_id]
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_failed_multipart_copy_is_aborted(client, monkeypatch):
    store = Store(client, BUCKET, copy_threshold=5 * MiB, copy_part_size=5 * MiB)
    journal = RecordingJournal()
    client.put_object(Bucket=BUCKET, Key="big", Body=os.urandom(11 * MiB))
    real = store.upload_part_copy

    async def third_part_fails(key, upload_id, part, *args):
        if part == 3:
            raise StoreError(errno.EIO, "COPY PART 3: InternalError")
        return await real(key, upload_id, part, *args)
    monkeypatch.setattr(store, "upload_part_copy", third_part_fails)
    with pytest.raises(StoreError) as info:
        run(copier(store, journal).copy, "big", "moved", {}, "application/octet-stream")
    assert info.value.errno == errno.EIO
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert journal.removed == [journal.added[0][1]]
    with pytest.raises(botocore.exceptions.ClientError):
        client.head_object(Bucket=BUCKET, Key="moved")


def test_failed_multipart_copy_waits_for_parts_in_flight(client, monkeypatch):
    """A part failing while others are in flight: they end before the abort (a part landing
    after it would leave its bytes in an upload nobody completes)."""
    store = Store(client, BUCKET, copy_threshold=5 * MiB, copy_part_size=5 * MiB)
    client.put_object(Bucket=BUCKET, Key="big", Body=os.urandom(11 * MiB))
    real_copy, real_abort = store.upload_part_copy, store.abort_multipart
    events = []

    async def slow_parts_then_third_fails(key, upload_id, part, *args):
        if part == 3:
            events.append("part 3 failed")
            raise StoreError(errno.EIO, "COPY PART 3: InternalError")
        await trio.sleep(0.3)
        etag = await real_copy(key, upload_id, part, *args)
        events.append(f"part {part} landed")
        return etag

    async def abort(key, upload_id):
        events.append("abort")
        await real_abort(key, upload_id)
    monkeypatch.setattr(store, "upload_part_copy", slow_parts_then_third_fails)
    monkeypatch.setattr(store, "abort_multipart", abort)
    with pytest.raises(StoreError) as info:
        run(copier(store).copy, "big", "moved", {}, "application/octet-stream")
    assert info.value.errno == errno.EIO
    assert events[0] == "part 3 failed" and events[-1] == "abort"
    assert sorted(events[1:-1]) == ["part 1 landed", "part 2 landed"]
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_copy_missing_source_enoent(store):
    with pytest.raises(StoreError) as info:
        run(copier(store).copy, "nope", "dst", {}, "text/plain")
    assert info.value.errno == errno.ENOENT


def test_delete(store):
    async def main():
        await store.put_bytes("gone", b"1", {}, "text/plain")
        assert await store.head("gone") is not None
        await store.delete("gone")
        assert await store.head("gone") is None
        await store.delete("gone")  # deleting a missing key is not an error in S3
    run(main)


def test_concurrent_requests_through_limiter(store):
    async def main():
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(store.put_bytes, f"c/{i}", str(i).encode(), {}, "text/plain")
        objects, _ = await store.list_dir("c/")
        assert len(objects) == 20
    run(main)


def test_check_bucket_sync_ok(store):
    store.check_bucket_sync()


def test_check_bucket_sync_missing_bucket(client):
    s = Store(client, "ocifs-no-such-bucket")
    with pytest.raises(StoreError) as info:
        s.check_bucket_sync()
    assert info.value.errno == errno.ENOENT
    assert "ocifs-no-such-bucket" in str(info.value)


def test_store_error_on_missing_bucket_from_trio(client):
    s = Store(client, "ocifs-no-such-bucket")
    with pytest.raises(StoreError) as info:
        run(s.list_dir, "")
    assert info.value.errno == errno.ENOENT


# -- error mapping ----------------------------------------------------------------------------

def client_error(code: str, status: int, message: str = "msg", op: str = "GetObject"):
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


@pytest.mark.parametrize("code,status,err", [
    ("NoSuchKey", 404, errno.ENOENT),
    ("404", 404, errno.ENOENT),
    ("NoSuchBucket", 404, errno.ENOENT),
    ("AccessDenied", 403, errno.EACCES),
    ("403", 403, errno.EACCES),
    ("SignatureDoesNotMatch", 403, errno.EACCES),
    ("SlowDown", 503, errno.EIO),          # never EAGAIN: a file's reader or writer would spin
    ("TooManyRequests", 429, errno.EIO),
    ("ServiceUnavailable", 503, errno.EIO),
    ("QuotaExceeded", 403, errno.ENOSPC),
    ("InvalidRange", 416, errno.EINVAL),
    ("EntityTooLarge", 400, errno.EFBIG),
    ("KeyTooLongError", 400, errno.ENAMETOOLONG),
    ("SomethingNew", 404, errno.ENOENT),   # unknown code: fall back on the status
    ("SomethingNew", 403, errno.EACCES),
    ("InternalError", 500, errno.EIO),
])
def test_to_store_error_client_errors(code, status, err):
    e = to_store_error(client_error(code, status), "GET k")
    assert isinstance(e, StoreError)
    assert e.errno == err
    assert e.code == code
    assert str(e).startswith("GET k")
    assert code in str(e)


def test_to_store_error_message_included():
    e = to_store_error(client_error("AccessDenied", 403, "Access Denied"), "HEAD x")
    assert "Access Denied" in str(e)


def test_to_store_error_endpoint_connection():
    exc = botocore.exceptions.EndpointConnectionError(endpoint_url="https://nowhere.invalid")
    e = to_store_error(exc, "LIST ")
    assert e.errno == errno.EIO
    assert e.code == "EndpointConnectionError"


def test_to_store_error_read_timeout():
    exc = botocore.exceptions.ReadTimeoutError(endpoint_url="https://x")
    assert to_store_error(exc, "GET").errno == errno.ETIMEDOUT


def test_to_store_error_connect_timeout():
    # ConnectTimeoutError subclasses botocore's ConnectionError: the timeout must still win.
    exc = botocore.exceptions.ConnectTimeoutError(endpoint_url="https://x")
    assert to_store_error(exc, "GET").errno == errno.ETIMEDOUT


def test_to_store_error_no_credentials():
    assert to_store_error(botocore.exceptions.NoCredentialsError(), "GET").errno == errno.EACCES


def test_to_store_error_oserror_and_other():
    assert to_store_error(OSError(errno.ENOSPC, "No space left"), "PUT").errno == errno.ENOSPC
    assert to_store_error(RuntimeError("boom"), "PUT").errno == errno.EIO


def test_to_store_error_passes_store_error_through():
    original = StoreError(errno.ENOTEMPTY, "not empty")
    assert to_store_error(original, "x") is original


# -- ranged GETs are checked to be the bytes asked for ----------------------------------------

class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


class _RangeIgnoringClient:
    """A server that answers ranged GETs with whatever ``answer`` says (ContentRange or none)."""

    def __init__(self, data: bytes, answer) -> None:
        self.data = data
        self.answer = answer

    def get_object(self, Bucket, Key, Range):
        start, end = (int(x) for x in Range[len("bytes="):].split("-"))
        body, content_range = self.answer(self.data, start, end)
        response = {"Body": _Body(body), "ETag": '"e"'}
        if content_range is not None:
            response["ContentRange"] = content_range
        return response


@pytest.mark.parametrize("answer", [
    lambda d, s, e: (d, None),                                   # 200: the whole object
    lambda d, s, e: (d[0:e - s + 1], f"bytes 0-{e - s}/{len(d)}"),  # another range
    lambda d, s, e: (d[s:e], f"bytes {s}-{e}/{len(d)}"),           # body shorter than it says
])
def test_get_range_refuses_bytes_of_another_offset(answer):
    data = bytes(range(256)) * 64
    store = Store(_RangeIgnoringClient(data, answer), BUCKET)
    with pytest.raises(StoreError) as failure:
        run(get_range, store, "k", 1000, 100)
    assert failure.value.errno == errno.EIO


def test_get_range_accepts_exact_answers():
    data = bytes(range(256)) * 64
    exact = Store(_RangeIgnoringClient(data, lambda d, s, e: (d[s:e + 1], f"bytes {s}-{e}/{len(d)}")),
                  BUCKET)
    assert run(get_range, exact, "k", 1000, 100) == data[1000:1100]
    whole = Store(_RangeIgnoringClient(data, lambda d, s, e: (d, None)), BUCKET)
    assert run(get_range, whole, "k", 0, 100) == data[:100]  # from 0, a 200 is still right
