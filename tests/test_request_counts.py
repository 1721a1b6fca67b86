"""Requests per operation, counted on a real mount by tests/fault_proxy.py's request log.

A lookup asks the bucket at most a HEAD of the name and one LIST under ``name/`` (sent at
once), plus a HEAD of the ``name/`` marker only when the LIST shows one (its headers hold the
directory's mode, owner and times); nothing already known is asked again: not a file this
mount just wrote, nor a name it just looked up.  Names never looked up are still asked from
the bucket (another client's new object is seen at once).
"""

from __future__ import annotations

import collections
import os
import stat
import subprocess

import pytest

from mounting import unique_bucket


@pytest.fixture
def mount(faulty_moto_module, mount_factory):
    bucket = unique_bucket("count")
    faulty_moto_module.create_bucket(bucket)
    mount = mount_factory(faulty_moto_module, bucket).mount()
    mount.client = faulty_moto_module.client()
    mount.bucket = bucket
    os.mkdir(mount.mountpoint / "warm")  # the first mkdir's one-time check is not counted
    faulty_moto_module.proxy.clear()
    return mount


def requests(mount) -> list[tuple[str, str]]:
    """(operation, key) of every request since the last look, then forget them."""
    seen = [(op, key) for op, _method, key, _action in mount.server.proxy.requests()]
    mount.server.proxy.clear()
    return seen


def ops(seen: list[tuple[str, str]]) -> collections.Counter:
    return collections.Counter(op for op, _ in seen)


def put(mount, key: str, body: bytes = b"", **kwargs) -> None:
    mount.client.put_object(Bucket=mount.bucket, Key=key, Body=body, **kwargs)


def test_lookup_of_a_file_is_a_head_and_a_list(mount):
    put(mount, "f.txt", b"hello")
    assert os.stat(mount.mountpoint / "f.txt").st_size == 5
    seen = requests(mount)
    assert ops(seen) == {"HeadObject": 1, "ListObjectsV2": 1}
    assert ("HeadObject", "f.txt") in seen
    os.stat(mount.mountpoint / "f.txt")
    assert requests(mount) == []  # known now


def test_lookup_of_a_marker_dir_reads_the_marker_s_attributes(mount):
    put(mount, "md/", ContentType="application/x-directory",
        Metadata={"mode": str(stat.S_IFDIR | 0o711), "uid": "1234", "gid": "4321"})
    st = os.stat(mount.mountpoint / "md")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o711
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    seen = requests(mount)
    assert sorted(seen) == [("HeadObject", "md"), ("HeadObject", "md/"), ("ListObjectsV2", "")]


def test_lookup_of_an_implicit_dir_is_a_head_and_a_list(mount):
    put(mount, "imp/x", b"1")
    assert stat.S_ISDIR(os.stat(mount.mountpoint / "imp").st_mode)
    seen = requests(mount)
    assert sorted(seen) == [("HeadObject", "imp"), ("ListObjectsV2", "")]
    # the lookup's LIST seeds the listing: ls costs nothing more
    assert os.listdir(mount.mountpoint / "imp") == ["x"]
    assert ops(requests(mount))["ListObjectsV2"] == 0


def test_lookup_of_a_missing_name_is_a_head_and_a_list_then_nothing(mount):
    assert not os.path.exists(mount.mountpoint / "nothing")
    assert sorted(requests(mount)) == [("HeadObject", "nothing"), ("ListObjectsV2", "")]
    assert not os.path.exists(mount.mountpoint / "nothing")
    assert requests(mount) == []  # the negative cache answers


def test_a_name_never_looked_up_is_asked_even_in_a_listed_directory(mount):
    os.listdir(mount.mountpoint / "warm")
    requests(mount)
    put(mount, "warm/other", b"from another client")
    assert (mount.mountpoint / "warm" / "other").read_bytes() == b"from another client"
    assert ("HeadObject", "warm/other") in requests(mount)


def test_create_in_a_new_dir_costs_its_puts_and_one_lookup(mount):
    os.mkdir(mount.mountpoint / "new")
    seen = requests(mount)
    assert ("PutObject", "new/") in seen
    assert ("HeadObject", "new/") not in seen  # what it just wrote is known
    (mount.mountpoint / "new" / "f").write_bytes(b"data")
    seen = requests(mount)
    # the new name is asked once (never inferred from a listing), then written once
    assert sorted(seen) == [("HeadObject", "new/f"), ("ListObjectsV2", ""), ("PutObject", "new/f")]


def test_stat_after_write_asks_nothing(mount):
    path = mount.mountpoint / "warm" / "written"
    path.write_bytes(b"x" * 1000)
    requests(mount)
    assert os.stat(path).st_size == 1000
    with open(path, "rb") as f:
        assert f.read() == b"x" * 1000
    seen = requests(mount)
    assert ops(seen)["HeadObject"] == 0 and ops(seen)["ListObjectsV2"] == 0


def test_chmod_and_rename_of_a_file_just_written_copy_without_a_head(mount):
    path = mount.mountpoint / "warm" / "mine"
    path.write_bytes(b"y" * 100)
    requests(mount)
    os.chmod(path, 0o600)
    assert requests(mount) == [("CopyObject", "warm/mine")]
    os.rename(path, mount.mountpoint / "warm" / "moved")
    seen = requests(mount)
    assert ops(seen)["HeadObject"] == 1 and ("HeadObject", "warm/moved") in seen  # the new name
    assert ("CopyObject", "warm/moved") in seen and ("DeleteObject", "warm/mine") in seen
    head = mount.client.head_object(Bucket=mount.bucket, Key="warm/moved")
    assert head["ContentLength"] == 100 and head["Metadata"]["mode"] == str(stat.S_IFREG | 0o600)


def test_files_closed_by_different_threads_upload_at_once(mount):
    """Four writers close at once: their four PUTs are all in flight together (each is held
    by the proxy until all four have arrived, which a mount sending one at a time never
    reaches)."""
    import threading
    from test_write_path import wait_for

    proxy = mount.server.proxy
    held = proxy.delay(600, times=4, op="PutObject")

    def write(i: int) -> None:
        (mount.mountpoint / "warm" / f"t{i}").write_bytes(b"%d" % i * 1000)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: proxy.hits(held) == 4, what="four PUTs in flight at once")
    finally:
        proxy.release()
        for thread in threads:
            thread.join()
    for i in range(4):
        body = mount.client.get_object(Bucket=mount.bucket, Key=f"warm/t{i}")["Body"].read()
        assert body == b"%d" % i * 1000


def test_ls_l_again_right_after_a_slow_cold_one_asks_nothing(mount):
    """The listing is kept from when the cold ``ls -l`` had all its attributes (here one HEAD
    is held 1.5 s, longer than a listing is kept), so the warm one is served from memory."""
    for i in range(20):
        put(mount, f"many/o{i:03d}", b"z")
    os.stat(mount.mountpoint / "many")
    requests(mount)
    mount.server.proxy.delay(1.5, times=1, op="HeadObject")
    cold = subprocess.run(["ls", "-l", str(mount.mountpoint / "many")], capture_output=True,
                          text=True, check=True).stdout
    assert ops(requests(mount))["HeadObject"] == 20
    warm = subprocess.run(["ls", "-l", str(mount.mountpoint / "many")], capture_output=True,
                          text=True, check=True).stdout
    assert warm == cold and len(warm.splitlines()) == 21
    assert requests(mount) == []
