"""The kernel's entry and attribute cache, on a real mount.

Replies let the kernel keep entries and attributes for what is left of their stat cache
entry's life (not a fixed second), so what this mount learns that the kernel did not see
must drop the kernel's copy (ocifs/fuse/invalidation.py).
"""

from __future__ import annotations

import errno
import os

import pytest

from mounting import unique_bucket


@pytest.fixture
def bucket(moto_server):
    name = unique_bucket("kc")
    moto_server.create_bucket(name)
    return name


def test_a_replacement_found_by_a_read_shows_in_stat_at_once(moto_server, bucket, mount_factory):
    client = moto_server.client()
    client.put_object(Bucket=bucket, Key="f.txt", Body=b"version one")
    mount = mount_factory(moto_server, bucket).mount()
    path = mount.mountpoint / "f.txt"
    assert os.stat(path).st_size == len(b"version one")  # kept by the kernel from now on
    client.put_object(Bucket=bucket, Key="f.txt", Body=b"version two, longer")
    with pytest.raises(OSError) as caught:  # the open was of the version the mount knew
        with open(path, "rb") as f:
            f.read()
    assert caught.value.errno == errno.EIO
    # the read learned of the new version: the kernel's size of the old one is gone
    assert os.stat(path).st_size == len(b"version two, longer")
    assert path.read_bytes() == b"version two, longer"


def test_stat_cache_expire_zero_still_asks_every_time(moto_server, bucket, mount_factory):
    client = moto_server.client()
    client.put_object(Bucket=bucket, Key="g.txt", Body=b"1")
    mount = mount_factory(moto_server, bucket, ["stat_cache_expire=0"]).mount()
    path = mount.mountpoint / "g.txt"
    assert os.stat(path).st_size == 1
    client.put_object(Bucket=bucket, Key="g.txt", Body=b"22")
    assert os.stat(path).st_size == 2
    client.delete_object(Bucket=bucket, Key="g.txt")
    assert not path.exists()


def test_headers_read_after_a_fast_list_listing_show_in_stat_at_once(moto_server, bucket,
                                                                     mount_factory):
    """fast_list shows a listed file with default attributes; when something reads its headers
    (here an xattr read), the kernel drops the listing's attributes it was given."""
    client = moto_server.client()
    client.put_object(Bucket=bucket, Key="d/h.txt", Body=b"1",
                      Metadata={"mode": str(0o100600), "uid": "4242"})
    mount = mount_factory(moto_server, bucket, ["fast_list", "use_xattr"]).mount()
    path = mount.mountpoint / "d" / "h.txt"
    assert [e.name for e in os.scandir(path.parent)] == ["h.txt"]
    assert os.stat(path).st_mode & 0o777 == 0o640  # the listing's default
    assert os.listxattr(path) == []  # reads the object's headers
    st = os.stat(path)
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, 4242)
