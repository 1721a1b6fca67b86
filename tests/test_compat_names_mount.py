"""s3fs's compat_dir and use_wtf8 through real mounts on moto."""

from __future__ import annotations

import errno
import os

import pytest

from tests.mounting import unique_bucket


def test_folder_object_is_a_directory_with_compat_dir(moto_server, mount_factory):
    bucket = unique_bucket("compatdir")
    moto_server.create_bucket(bucket)
    client = moto_server.client()
    client.put_object(Bucket=bucket, Key="old_$folder$", Body=b"")
    client.put_object(Bucket=bucket, Key="old/inside.txt", Body=b"hi")
    client.put_object(Bucket=bucket, Key="lone_$folder$", Body=b"")

    plain = mount_factory(moto_server, bucket, name="plain").mount()
    assert "lone_$folder$" in os.listdir(plain.mountpoint)
    assert not (plain.mountpoint / "lone").exists()

    mount = mount_factory(moto_server, bucket, ["compat_dir"], name="compat").mount()
    root = mount.mountpoint
    assert sorted(os.listdir(root)) == ["lone", "old"]
    assert (root / "lone").is_dir() and (root / "old").is_dir()
    assert (root / "old" / "inside.txt").read_text() == "hi"
    os.rmdir(root / "lone")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert "lone_$folder$" not in keys


def test_invalid_utf8_name_through_use_wtf8_mount(moto_server, mount_factory):
    bucket = unique_bucket("wtf8")
    moto_server.create_bucket(bucket)
    mount = mount_factory(moto_server, bucket, ["use_wtf8"]).mount()
    root = os.fsencode(mount.mountpoint)
    with open(root + b"/caf\xff.txt", "wb") as f:
        f.write(b"latin-1 name")
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["caf\ue0ff.txt"]  # s3fs's mapping: U+E000 + byte
    assert os.listdir(root) == [b"caf\xff.txt"]
    with open(root + b"/caf\xff.txt", "rb") as f:
        assert f.read() == b"latin-1 name"


def test_invalid_utf8_name_refused_without_use_wtf8(moto_server, mount_factory):
    bucket = unique_bucket("nowtf8")
    moto_server.create_bucket(bucket)
    mount = mount_factory(moto_server, bucket).mount()
    with pytest.raises(OSError) as info:
        open(os.fsencode(mount.mountpoint) + b"/caf\xff.txt", "wb").close()
    assert info.value.errno == errno.EILSEQ
