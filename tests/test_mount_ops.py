"""Every core operation through a real mount, checked in the bucket with boto3 (both servers)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest


def body(mounted, key: str) -> bytes:
    return mounted.client.get_object(Bucket=mounted.bucket, Key=key)["Body"].read()


def head(mounted, key: str) -> dict:
    return mounted.client.head_object(Bucket=mounted.bucket, Key=key)


def exists(mounted, key: str) -> bool:
    try:
        head(mounted, key)
        return True
    except mounted.client.exceptions.ClientError:
        return False


def test_write_read_roundtrip(mounted):
    path = mounted.mountpoint / "hello.txt"
    path.write_bytes(b"hello world\n")
    assert path.read_bytes() == b"hello world\n"
    assert body(mounted, "hello.txt") == b"hello world\n"
    meta = head(mounted, "hello.txt")
    assert meta["ContentType"] == "text/plain"
    assert int(meta["Metadata"]["mode"]) == stat.S_IFREG | 0o644
    assert meta["Metadata"]["uid"] == str(os.getuid())
    assert "mtime" in meta["Metadata"]


def test_large_file_multipart_byte_exact(mounted):
    data = os.urandom(30 * 1024 * 1024 + 123)  # above the 25 MiB multipart threshold
    path = mounted.mountpoint / "large.bin"
    path.write_bytes(data)
    assert hashlib.sha256(body(mounted, "large.bin")).digest() == hashlib.sha256(data).digest()
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_read_object_written_by_boto3(mounted):
    data = os.urandom(3 * 1024 * 1024 + 7)
    mounted.client.put_object(Bucket=mounted.bucket, Key="external/blob.bin", Body=data)
    path = mounted.mountpoint / "external" / "blob.bin"
    assert path.stat().st_size == len(data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # s3fs's default without metadata
    assert path.read_bytes() == data
    with open(path, "rb") as f:  # random access
        f.seek(2 * 1024 * 1024 + 5)
        assert f.read(1000) == data[2 * 1024 * 1024 + 5:2 * 1024 * 1024 + 1005]
        f.seek(10)
        assert f.read(10) == data[10:20]


def test_write_at_offsets_and_append(mounted):
    path = mounted.mountpoint / "offsets.bin"
    path.write_bytes(b"A" * 100)
    with open(path, "r+b") as f:
        f.seek(10)
        f.write(b"BBBB")
        f.seek(200)  # past the end: a hole of zeros
        f.write(b"C")
    with open(path, "ab") as f:
        f.write(b"tail")
    expected = b"A" * 10 + b"BBBB" + b"A" * 86 + b"\0" * 100 + b"C" + b"tail"
    assert path.read_bytes() == expected
    assert body(mounted, "offsets.bin") == expected


def test_truncate_shrink_and_grow(mounted):
    path = mounted.mountpoint / "trunc.txt"
    path.write_bytes(b"0123456789")
    os.truncate(path, 4)
    assert body(mounted, "trunc.txt") == b"0123"
    os.truncate(path, 6)
    assert body(mounted, "trunc.txt") == b"0123\0\0"
    with open(path, "w") as f:  # O_TRUNC
        f.write("new")
    assert body(mounted, "trunc.txt") == b"new"


def test_fsync_makes_data_durable_before_close(mounted):
    path = mounted.mountpoint / "fsynced.bin"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"durable")
        os.fsync(fd)
        assert body(mounted, "fsynced.bin") == b"durable"
        os.write(fd, b"+more")
        os.fdatasync(fd)
        assert body(mounted, "fsynced.bin") == b"durable+more"
    finally:
        os.close(fd)


def test_mkdir_rmdir_and_marker_format(mounted):
    d = mounted.mountpoint / "newdir"
    d.mkdir(mode=0o755)
    marker = head(mounted, "newdir/")
    assert marker["ContentType"] == "application/x-directory"
    assert marker["ContentLength"] == 0
    assert d.is_dir()
    (d / "inner.txt").write_text("x")
    with pytest.raises(OSError) as info:
        d.rmdir()
    assert info.value.errno == errno.ENOTEMPTY
    (d / "inner.txt").unlink()
    d.rmdir()
    assert not exists(mounted, "newdir/")
    assert not d.exists()


def test_unlink(mounted):
    path = mounted.mountpoint / "gone.txt"
    path.write_text("bye")
    assert exists(mounted, "gone.txt")
    path.unlink()
    assert not exists(mounted, "gone.txt")
    assert not path.exists()
    with pytest.raises(FileNotFoundError):
        path.unlink()


def test_rename_file_keeps_data_and_metadata(mounted):
    src = mounted.mountpoint / "src.txt"
    src.write_text("payload")
    os.chmod(src, 0o600)
    dst = mounted.mountpoint / "dst.txt"
    src.rename(dst)
    assert not exists(mounted, "src.txt")
    assert body(mounted, "dst.txt") == b"payload"
    assert int(head(mounted, "dst.txt")["Metadata"]["mode"]) == stat.S_IFREG | 0o600
    assert dst.read_text() == "payload"
    assert not src.exists()


def test_rename_over_existing_file(mounted):
    (mounted.mountpoint / "old.txt").write_text("old")
    (mounted.mountpoint / "new.tmp").write_text("new contents")
    os.rename(mounted.mountpoint / "new.tmp", mounted.mountpoint / "old.txt")
    assert (mounted.mountpoint / "old.txt").read_text() == "new contents"
    assert body(mounted, "old.txt") == b"new contents"
    assert not exists(mounted, "new.tmp")


def test_rename_directory_tree(mounted):
    top = mounted.mountpoint / "tree"
    (top / "sub").mkdir(parents=True)
    (top / "a.txt").write_text("a")
    (top / "sub" / "b.txt").write_text("b")
    os.rename(top, mounted.mountpoint / "moved")
    moved = mounted.mountpoint / "moved"
    assert (moved / "a.txt").read_text() == "a"
    assert (moved / "sub" / "b.txt").read_text() == "b"
    assert not top.exists()
    keys = {o["Key"] for o in mounted.client.list_objects_v2(
        Bucket=mounted.bucket, Prefix="moved/").get("Contents", [])}
    assert {"moved/a.txt", "moved/sub/b.txt"} <= keys
    assert not mounted.client.list_objects_v2(Bucket=mounted.bucket, Prefix="tree/").get("Contents")


def test_rename_directory_onto_nonempty_directory_fails(mounted):
    (mounted.mountpoint / "r1").mkdir()
    (mounted.mountpoint / "r2").mkdir()
    (mounted.mountpoint / "r2" / "keep").write_text("k")
    with pytest.raises(OSError) as info:
        os.rename(mounted.mountpoint / "r1", mounted.mountpoint / "r2")
    assert info.value.errno == errno.ENOTEMPTY


def test_chmod_chown_utimens_stored_as_s3fs_headers(mounted):
    path = mounted.mountpoint / "meta.txt"
    path.write_text("m")
    os.chmod(path, 0o751)
    os.chown(path, 1234, 5678)
    os.utime(path, ns=(1_500_000_000_000_000_000, 1_600_000_000_500_000_000))
    meta = head(mounted, "meta.txt")["Metadata"]
    assert int(meta["mode"]) == stat.S_IFREG | 0o751
    assert (meta["uid"], meta["gid"]) == ("1234", "5678")
    assert meta["mtime"] == "1600000000.500000000"
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o751
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_mtime_ns == 1_600_000_000_500_000_000
    assert body(mounted, "meta.txt") == b"m"


def test_symlink_and_readlink(mounted):
    link = mounted.mountpoint / "link"
    os.symlink("hello.target", link)
    assert os.readlink(link) == "hello.target"
    assert body(mounted, "link") == b"hello.target"
    assert int(head(mounted, "link")["Metadata"]["mode"]) == stat.S_IFLNK | 0o777
    assert stat.S_ISLNK(os.lstat(link).st_mode)


def test_hard_link_not_supported(mounted):
    path = mounted.mountpoint / "nolink.txt"
    path.write_text("x")
    with pytest.raises(OSError) as info:
        os.link(path, mounted.mountpoint / "hard")
    assert info.value.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)


def test_implicit_directories_are_listed(mounted):
    mounted.client.put_object(Bucket=mounted.bucket, Key="imp/a/b/c.txt", Body=b"deep")
    assert "imp" in os.listdir(mounted.mountpoint)
    assert (mounted.mountpoint / "imp").is_dir()
    assert os.listdir(mounted.mountpoint / "imp" / "a") == ["b"]
    assert (mounted.mountpoint / "imp" / "a" / "b" / "c.txt").read_bytes() == b"deep"


def test_listing_paginates_past_1000_entries(mounted):
    names = [f"f{i:05d}" for i in range(1050)]

    def put(name: str) -> None:
        mounted.client.put_object(Bucket=mounted.bucket, Key=f"many/{name}", Body=b"")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, names))
    assert sorted(os.listdir(mounted.mountpoint / "many")) == names


def test_statfs_and_fsyncdir(mounted):
    st = os.statvfs(mounted.mountpoint)
    assert st.f_bavail > 0 and st.f_namemax == 255
    fd = os.open(mounted.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)  # Redis fsyncs the directory after renaming its snapshot
    finally:
        os.close(fd)


def test_real_programs_cp_mv_ls_dd(mounted, tmp_path):
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(1024 * 1024))
    mnt = mounted.mountpoint
    subprocess.run(["cp", str(local), str(mnt / "cp.bin")], check=True)
    subprocess.run(["mv", str(mnt / "cp.bin"), str(mnt / "mv.bin")], check=True)
    subprocess.run(["dd", f"if={local}", f"of={mnt / 'dd.bin'}", "bs=64k", "status=none"], check=True)
    listing = subprocess.run(["ls", "-l", str(mnt)], check=True, capture_output=True, text=True).stdout
    assert "mv.bin" in listing and "dd.bin" in listing and "cp.bin" not in listing
    assert body(mounted, "mv.bin") == local.read_bytes()
    assert body(mounted, "dd.bin") == local.read_bytes()


def test_missing_paths_give_enoent(mounted):
    with pytest.raises(FileNotFoundError):
        (mounted.mountpoint / "no" / "such").stat()
    with pytest.raises(FileNotFoundError):
        open(mounted.mountpoint / "nothing.txt")


def test_unlinked_open_file_is_not_resurrected(mounted):
    path = mounted.mountpoint / "ghost.txt"
    with open(path, "w") as f:
        f.write("first")
        f.flush()
        os.unlink(path)
        f.write("second")
    assert not exists(mounted, "ghost.txt")
    assert not path.exists()


def test_two_handles_see_each_others_writes(mounted):
    path = mounted.mountpoint / "shared.txt"
    with open(path, "w") as writer, open(path, "r") as reader:
        writer.write("seen")
        writer.flush()
        assert reader.read() == "seen"


@pytest.mark.parametrize("name", ["cr\rname", "bell\x07name"])
def test_control_characters_refused_at_create_only_on_oci(mounted, name, oci_rules):
    """OCI refuses control characters in object names: say so at create, not at upload.
    Other stores take them, as s3fs lets them (moto's server cannot route a key with LF, so
    LF is not among the names tried; OCI refuses it like the others)."""
    makers = {"file": lambda p: p.write_text("x"), "dir": os.mkdir,
              "link": lambda p: os.symlink("t", p)}
    for kind, make in makers.items():
        path = mounted.mountpoint / f"{kind}-{name}"
        if oci_rules:
            with pytest.raises(OSError) as info:
                make(path)
            assert info.value.errno == errno.EINVAL
        else:
            make(path)
            assert os.path.lexists(path) and f"{kind}-{name}" in os.listdir(mounted.mountpoint)
    (mounted.mountpoint / "okname").write_text("x")
    if oci_rules:
        with pytest.raises(OSError) as info:
            os.rename(mounted.mountpoint / "okname", mounted.mountpoint / name)
        assert info.value.errno == errno.EINVAL
        assert (mounted.mountpoint / "okname").read_text() == "x"
    else:
        os.rename(mounted.mountpoint / "okname", mounted.mountpoint / name)
        assert (mounted.mountpoint / name).read_text() == "x"


def test_keys_longer_than_1024_bytes_are_refused(mounted):
    deep = mounted.mountpoint
    for i in range(5):
        deep = deep / (f"{i}" * 200)
    deep.mkdir(parents=True)  # 1,004 bytes of key: allowed
    with pytest.raises(OSError) as info:
        (deep / ("x" * 30)).mkdir()
    assert info.value.errno == errno.ENAMETOOLONG


def test_another_writers_object_is_seen_at_once_after_mkdir_and_ls(mounted):
    """A name this mount never looked up is asked from the bucket, even right after this mount
    made or listed its directory (s3fs asks too)."""
    d = mounted.mountpoint / "other-writer"
    d.mkdir()
    mounted.client.put_object(Bucket=mounted.bucket, Key="other-writer/f", Body=b"theirs")
    assert (d / "f").read_bytes() == b"theirs"
    assert os.listdir(d) == ["f"]
    mounted.client.put_object(Bucket=mounted.bucket, Key="other-writer/g", Body=b"also")
    assert (d / "g").stat().st_size == 4


def test_timestamps_follow_s3fs(mounted):
    """chmod and chown move ctime only; write and truncate move mtime and ctime; touch sets
    exactly what it is asked (touch -m leaves atime: UTIME_OMIT)."""
    path = mounted.mountpoint / "times.txt"
    path.write_text("twelve bytes")
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    before = path.stat()
    os.chmod(path, 0o600)
    os.chown(path, 0, 0)
    after = path.stat()
    assert (after.st_atime_ns, after.st_mtime_ns) == (1_000_000_000, 2_000_000_000)
    assert after.st_ctime_ns >= before.st_ctime_ns and after.st_ctime > time.time() - 60
    subprocess.run(["touch", "-m", "-d", "@300", str(path)], check=True)
    touched = path.stat()
    assert (touched.st_atime_ns, touched.st_mtime_ns) == (1_000_000_000, 300_000_000_000)
    os.truncate(path, 3)
    cut = path.stat()
    assert cut.st_size == 3 and cut.st_mtime > time.time() - 60 and cut.st_ctime > time.time() - 60
    assert cut.st_atime_ns == 1_000_000_000


def test_the_mountpoint_takes_chmod_chown_and_touch(mounted):
    root = mounted.mountpoint
    original = root.stat()
    try:
        os.chmod(root, 0o711)
        os.utime(root, ns=(5_000_000_000, 6_000_000_000))
        os.chown(root, 123, 456)
        now = root.stat()
        assert stat.S_IMODE(now.st_mode) == 0o711 and stat.S_ISDIR(now.st_mode)
        assert (now.st_atime_ns, now.st_mtime_ns) == (5_000_000_000, 6_000_000_000)
        assert (now.st_uid, now.st_gid) == (123, 456)
    finally:
        os.chown(root, original.st_uid, original.st_gid)
        os.chmod(root, stat.S_IMODE(original.st_mode))
