"""``fast_list``: listings without a HEAD per object, and nothing lost when listed entries are
then changed (chmod, rename, writes read the object's headers first)."""

from __future__ import annotations

import os
import stat

import pytest

from mounting import unique_bucket

S3FS_META = {"mode": str(stat.S_IFREG | 0o600), "uid": "1234", "gid": "4321",
             "mtime": "1000000000", "custom": "keep me"}


@pytest.fixture(scope="module")
def fast(moto_server, tmp_path_factory):
    from mounting import OcifsMount
    bucket = unique_bucket("fl")
    moto_server.create_bucket(bucket)
    client = moto_server.client()
    for i in range(1100):  # more than one ListObjectsV2 page
        client.put_object(Bucket=bucket, Key=f"many/f{i:04}", Body=b"x" * (i % 7))
    for name in ("chmod", "rename", "append"):
        client.put_object(Bucket=bucket, Key=f"meta/{name}", Body=b"data", Metadata=S3FS_META,
                          ContentType="text/x-custom")
    base = tmp_path_factory.mktemp("fast")
    mount = OcifsMount(moto_server, bucket, base / "mnt", ["fast_list", "curldbg"]).mount()
    mount.client = client
    yield mount
    mount.umount()


def _heads(mount) -> int:
    return mount.log_text().count('"HEAD /')


def test_listing_needs_no_head_per_object(fast):
    before = _heads(fast)
    entries = {e.name: e.stat(follow_symlinks=False) for e in os.scandir(fast.mountpoint / "many")}
    assert len(entries) == 1100
    listing = {o["Key"][5:]: o for page in fast.client.get_paginator("list_objects_v2").paginate(
        Bucket=fast.bucket, Prefix="many/") for o in page["Contents"]}
    for name, st in entries.items():
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
        assert st.st_size == listing[name]["Size"]
        assert int(st.st_mtime) == int(listing[name]["LastModified"].timestamp())
    # lstat of every entry after the listing is answered without asking the bucket either
    for name in list(entries)[:200]:
        os.lstat(fast.mountpoint / "many" / name)
    assert _heads(fast) - before <= 3  # the directory's own lookup


def _meta(fast, key):
    head = fast.client.head_object(Bucket=fast.bucket, Key=key)
    return head["Metadata"], head["ContentType"]


def test_chmod_of_a_listed_entry_keeps_its_metadata(fast):
    os.listdir(fast.mountpoint / "meta")
    os.chmod(fast.mountpoint / "meta/chmod", 0o604)
    meta, content_type = _meta(fast, "meta/chmod")
    assert int(meta["mode"]) == stat.S_IFREG | 0o604
    assert (meta["uid"], meta["gid"], meta["custom"]) == ("1234", "4321", "keep me")
    assert content_type == "text/x-custom"
    assert float(meta["mtime"]) == 1000000000


def test_rename_of_a_listed_entry_keeps_its_metadata(fast):
    os.listdir(fast.mountpoint / "meta")
    os.rename(fast.mountpoint / "meta/rename", fast.mountpoint / "meta/renamed")
    meta, _ = _meta(fast, "meta/renamed")
    assert (meta["mode"], meta["uid"], meta["custom"]) == (S3FS_META["mode"], "1234", "keep me")


def test_write_to_a_listed_entry_keeps_its_metadata(fast):
    os.listdir(fast.mountpoint / "meta")
    with open(fast.mountpoint / "meta/append", "ab") as f:
        f.write(b" more")
    meta, _ = _meta(fast, "meta/append")
    assert (meta["mode"], meta["uid"], meta["gid"], meta["custom"]) == (
        S3FS_META["mode"], "1234", "4321", "keep me")
    body = fast.client.get_object(Bucket=fast.bucket, Key="meta/append")["Body"].read()
    assert body == b"data more"
