"""Interoperability with the real s3fs: one bucket mounted by s3fs and by ocifs at once.

Whatever one side writes (data, directories, modes, owners, mtimes, symlinks, renames, deletes)
the other must show identically, and both must read buckets laid out by other tools (implicit
directories) the same way.  One s3fs mount and one ocifs mount of one bucket are shared by the
module; every test works in its own fresh top-level directory so no cached entry of an earlier
test can matter.

Caches: ocifs runs with ``stat_cache_expire=0``; s3fs with ``stat_cache_expire=1`` and the
kernel's entry/attribute caching off.  ocifs still lets the kernel cache attributes for one
second, so a check of a *change* to a path the other side has already looked at polls briefly
(:func:`eventually`) and then asserts on the last value seen.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import require_tool
from mounting import OcifsMount, S3fsMount, is_mounted, unique_bucket

SIDES = ("s3fs", "ocifs")
OTHER = {"s3fs": "ocifs", "ocifs": "s3fs"}
DIR_CONTENT_TYPE = "application/x-directory"
MiB = 1024 * 1024


# -- fixtures ------------------------------------------------------------------------------------


@dataclass
class Pair:
    """One bucket mounted by s3fs and by ocifs, plus a boto3 client on it."""

    server: Any
    bucket: str
    client: Any
    s3fs: S3fsMount
    ocifs: OcifsMount

    @property
    def kind(self) -> str:
        return self.server.kind

    def head(self, key: str) -> dict:
        return self.client.head_object(Bucket=self.bucket, Key=key)

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
            return True
        except self.client.exceptions.ClientError:
            return False


@pytest.fixture(scope="module")
def pair(s3_server, tmp_path_factory):
    s3fs_binary = require_tool("s3fs")
    require_tool("fusermount3")
    bucket = unique_bucket("interop")
    s3_server.create_bucket(bucket)
    base = tmp_path_factory.mktemp("interop")
    s3fs = S3fsMount(s3fs_binary, s3_server, bucket, base / "s3fs",
                     ["stat_cache_expire=1", "attr_timeout=0", "entry_timeout=0",
                      "negative_timeout=0"])
    ocifs = OcifsMount(s3_server, bucket, base / "ocifs", ["stat_cache_expire=0"])
    try:
        s3fs.mount()
        ocifs.mount()
        yield Pair(s3_server, bucket, s3_server.client(), s3fs, ocifs)
    finally:
        try:
            ocifs.umount()
        finally:
            s3fs.umount()
    assert not is_mounted(ocifs.mountpoint) and not is_mounted(s3fs.mountpoint)


@dataclass
class Area:
    """A fresh top-level directory of the bucket, as each side shows it."""

    key: str  # its key prefix without the trailing "/"
    paths: dict[str, Path]

    @property
    def s(self) -> Path:
        return self.paths["s3fs"]

    @property
    def o(self) -> Path:
        return self.paths["ocifs"]

    def side(self, name: str) -> Path:
        return self.paths[name]


@pytest.fixture
def area(pair) -> Area:
    """A new directory (an s3fs-style marker put with boto3, so neither side made it)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    now = str(int(time.time()))
    pair.client.put_object(
        Bucket=pair.bucket, Key=f"{name}/", Body=b"", ContentType=DIR_CONTENT_TYPE,
        Metadata={"mode": str(stat.S_IFDIR | 0o755), "uid": str(os.getuid()),
                  "gid": str(os.getgid()), "mtime": now, "ctime": now, "atime": now})
    return Area(name, {"s3fs": pair.s3fs.mountpoint / name, "ocifs": pair.ocifs.mountpoint / name})


# -- helpers -------------------------------------------------------------------------------------


def eventually(probe: Callable[[], Any], expected: Any, timeout: float = 6.0) -> Any:
    """Poll ``probe`` until it returns ``expected`` (or time runs out); return the last value.

    An ``OSError`` is returned as ``("OSError", errno-name)`` so "gone" can be waited for.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except OSError as exc:
            value = ("OSError", errno.errorcode.get(exc.errno, exc.errno))
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


GONE = ("OSError", "ENOENT")


def fields(path: Path, mtime: bool = True) -> dict[str, Any]:
    """The attributes both mounts must agree on (``lstat``: symlinks are not followed)."""
    st = os.lstat(path)
    result = {"st_mode": oct(st.st_mode), "st_uid": st.st_uid, "st_gid": st.st_gid,
              "st_size": st.st_size}
    if mtime:
        result["st_mtime_ns"] = st.st_mtime_ns
    return result


def tree_of(root: Path) -> dict[str, str]:
    """Every path under ``root`` (relative) -> "dir" / "link:TARGET" / "file:SHA256"."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                result[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                result[rel] = "dir"
            else:
                result[rel] = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def dir_meta_kept(pair: Pair) -> bool:
    """Whether the server keeps ``x-amz-meta-*`` headers on ``dir/`` marker objects.

    SeaweedFS drops them (a marker PUT with metadata reads back with none) and refuses
    CopyObject of a ``dir/`` key (NoSuchKey), so on it neither s3fs nor ocifs can store a
    directory's mode, owner or mtime: s3fs's own chmod/chown/utime of a directory fails with
    ENOENT there.  Only those directory-attribute assertions are restricted by server kind.
    """
    return pair.kind.split("+")[0] != "seaweedfs"  # "seaweedfs+oci-proxy" under --oci-proxy


def agree(probe_a: Callable[[], Any], probe_b: Callable[[], Any], timeout: float = 6.0) -> tuple[Any, Any]:
    """Poll until both probes return the same value (or time runs out); return both values."""
    deadline = time.monotonic() + timeout
    while True:
        a, b = probe_a(), probe_b()
        if a == b or time.monotonic() > deadline:
            return a, b
        time.sleep(0.1)


def meta(pair: Pair, key: str) -> dict[str, str]:
    return {k.lower(): v for k, v in pair.head(key)["Metadata"].items()}


# -- data ----------------------------------------------------------------------------------------


def _payloads() -> dict[str, bytes]:
    return {
        "empty": b"",
        "small.txt": b"hello from one side\n",
        "random.bin": os.urandom(3 * MiB + 7),
        "large.bin": os.urandom(26 * MiB + 3),  # above both tools' multipart thresholds
    }


@pytest.mark.parametrize("writer", SIDES)
def test_files_read_byte_exact_by_the_other_side(pair, area, writer):
    reader = OTHER[writer]
    payloads = _payloads()
    for name, data in payloads.items():
        (area.side(writer) / name).write_bytes(data)
    assert sorted(os.listdir(area.side(reader))) == sorted(payloads)
    for name, data in payloads.items():
        path = area.side(reader) / name
        assert path.stat().st_size == len(data), name
        got = path.read_bytes()
        assert len(got) == len(data) and hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), name
    # Random access through the reader.
    data = payloads["large.bin"]
    with open(area.side(reader) / "large.bin", "rb") as f:
        for offset, size in ((0, 17), (10 * MiB - 5, 4096), (25 * MiB + 11, MiB), (len(data) - 3, 10)):
            f.seek(offset)
            assert f.read(size) == data[offset:offset + size], (offset, size)


@pytest.mark.parametrize("writer", SIDES)
def test_rewritten_file_is_reread_by_the_other_side(pair, area, writer):
    reader = OTHER[writer]
    w, r = area.side(writer) / "changing.txt", area.side(reader) / "changing.txt"
    w.write_bytes(b"first version, rather long\n")
    assert r.read_bytes() == b"first version, rather long\n"
    w.write_bytes(b"second\n")  # shorter
    assert eventually(r.read_bytes, b"second\n") == b"second\n"
    w.write_bytes(b"the third version\n")  # longer
    assert eventually(r.read_bytes, b"the third version\n") == b"the third version\n"
    with open(w, "ab") as f:  # append through the writer
        f.write(b"more\n")
    assert eventually(r.read_bytes, b"the third version\nmore\n") == b"the third version\nmore\n"


@pytest.mark.parametrize("writer", SIDES)
def test_same_size_same_mtime_rewrite_is_reread_by_the_other_side(pair, area, writer):
    """New bytes with the same size and mtime (``cp -p``, ``rsync -t``, or two writes within
    one second through s3fs, whose mtimes are whole seconds): only the object (its ETag) says
    the data changed, and the reader must not serve the old bytes from a cache."""
    reader = OTHER[writer]
    w, r = area.side(writer) / "same.txt", area.side(reader) / "same.txt"
    times = (1_600_000_000_000_000_000, 1_600_000_001_000_000_000)
    w.write_bytes(b"version one\n")
    os.utime(w, ns=times)
    assert r.read_bytes() == b"version one\n"
    w.write_bytes(b"VERSION TWO\n")
    os.utime(w, ns=times)
    assert eventually(lambda: os.lstat(r).st_mtime_ns, times[1]) == times[1]
    assert eventually(r.read_bytes, b"VERSION TWO\n") == b"VERSION TWO\n"


# -- directories ---------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", SIDES)
def test_directories_made_by_one_side_are_directories_on_the_other(pair, area, writer):
    reader = OTHER[writer]
    w, r = area.side(writer), area.side(reader)
    (w / "empty").mkdir(mode=0o755)
    (w / "deep" / "er" / "est").mkdir(parents=True)
    (w / "full").mkdir()
    (w / "full" / "f.txt").write_bytes(b"x")
    # Every directory has its marker, in s3fs's format.
    for key in ("empty/", "deep/", "deep/er/", "deep/er/est/", "full/"):
        head = pair.head(f"{area.key}/{key}")
        assert head["ContentLength"] == 0, key
        assert head["ContentType"].split(";")[0] == DIR_CONTENT_TYPE, key

    assert sorted(os.listdir(r)) == ["deep", "empty", "full"]
    for rel in ("empty", "deep", "deep/er", "deep/er/est", "full"):
        assert (r / rel).is_dir(), rel
        if dir_meta_kept(pair):  # SeaweedFS keeps no mode on markers: see dir_meta_kept
            assert stat.S_IMODE((r / rel).stat().st_mode) == 0o755, rel
    assert os.listdir(r / "empty") == []
    assert os.listdir(r / "deep/er/est") == []
    assert os.listdir(r / "deep") == ["er"]
    assert os.listdir(r / "full") == ["f.txt"]
    assert tree_of(r) == tree_of(w)
    # The reader can use them: a file made there shows up on the writer.
    (r / "empty" / "from-reader").write_bytes(b"hi")
    assert eventually(lambda: (w / "empty" / "from-reader").read_bytes(), b"hi") == b"hi"


# -- attributes ----------------------------------------------------------------------------------


def _file_and_dir(path: Path) -> tuple[Path, Path]:
    f, d = path / "file.txt", path / "dir"
    f.write_bytes(b"some data\n")
    d.mkdir()
    return f, d


@pytest.mark.parametrize("mode", [0o600, 0o751])
@pytest.mark.parametrize("writer", SIDES)
def test_chmod_seen_by_the_other_side(pair, area, writer, mode):
    reader = OTHER[writer]
    _file_and_dir(area.side(writer))
    targets = [("file.txt", stat.S_IFREG, "file.txt")]
    if dir_meta_kept(pair):  # directory modes cannot be stored on SeaweedFS: see dir_meta_kept
        targets.append(("dir", stat.S_IFDIR, "dir/"))
    for name, kind, key in targets:
        os.chmod(area.side(writer) / name, mode)
        expected = oct(kind | mode)
        assert oct(os.lstat(area.side(writer) / name).st_mode) == expected, (writer, name)
        assert eventually(lambda: oct(os.lstat(area.side(reader) / name).st_mode), expected) == expected, (reader, name)
        assert stat.S_IMODE(int(meta(pair, f"{area.key}/{key}")["mode"], 0)) == mode, key


@pytest.mark.parametrize("writer", SIDES)
def test_chown_seen_by_the_other_side(pair, area, writer):
    reader = OTHER[writer]
    _file_and_dir(area.side(writer))
    targets = [("file.txt", "file.txt")]
    if dir_meta_kept(pair):  # directory owners cannot be stored on SeaweedFS: see dir_meta_kept
        targets.append(("dir", "dir/"))
    for name, key in targets:
        os.chown(area.side(writer) / name, 1234, 5678)

        def owner(side: str) -> tuple[int, int]:
            st = os.lstat(area.side(side) / name)
            return st.st_uid, st.st_gid

        assert owner(writer) == (1234, 5678), (writer, name)
        assert eventually(lambda: owner(reader), (1234, 5678)) == (1234, 5678), (reader, name)
        m = meta(pair, f"{area.key}/{key}")
        assert (m["uid"], m["gid"]) == ("1234", "5678"), key


@pytest.mark.parametrize("atime_ns, mtime_ns, header", [
    (1_600_000_000_000_000_000, 1_600_000_001_000_000_000, "1600000001"),
    (1_600_000_000_123_456_789, 1_600_000_003_987_654_321, "1600000003.987654321"),
    (1_600_000_000_000_000_000, 1_600_000_004_000_000_500, "1600000004.000000500"),
], ids=["whole-seconds", "nanoseconds", "small-fraction"])
@pytest.mark.parametrize("writer", SIDES)
def test_utime_seen_by_the_other_side(pair, area, writer, atime_ns, mtime_ns, header):
    """Both sides show the exact mtime; the header is s3fs's ``sec`` or ``sec.nnnnnnnnn``."""
    reader = OTHER[writer]
    _file_and_dir(area.side(writer))
    targets = [("file.txt", "file.txt")]
    if dir_meta_kept(pair):  # directory mtimes cannot be stored on SeaweedFS: see dir_meta_kept
        targets.append(("dir", "dir/"))
    for name, key in targets:
        os.utime(area.side(writer) / name, ns=(atime_ns, mtime_ns))
        assert os.lstat(area.side(writer) / name).st_mtime_ns == mtime_ns, (writer, name)
        got = eventually(lambda: os.lstat(area.side(reader) / name).st_mtime_ns, mtime_ns)
        assert got == mtime_ns, (reader, name)
        assert meta(pair, f"{area.key}/{key}")["mtime"] == header, key


# -- symlinks ------------------------------------------------------------------------------------


TARGETS = {
    "rel": "target/one",
    "up": "../elsewhere/file.txt",
    "abs": "/etc/hostname",
    "spaces": "a name with spaces",
    "unicode": "d\u00e9j\u00e0-vu/\u2603",
    "dangling": "does-not-exist",
}


@pytest.mark.parametrize("writer", SIDES)
def test_symlinks_read_by_the_other_side(pair, area, writer):
    reader = OTHER[writer]
    for name, target in TARGETS.items():
        os.symlink(target, area.side(writer) / name)
    assert sorted(os.listdir(area.side(reader))) == sorted(TARGETS)
    for name, target in TARGETS.items():
        path = area.side(reader) / name
        st = os.lstat(path)
        assert stat.S_ISLNK(st.st_mode), name
        assert stat.S_IMODE(st.st_mode) == 0o777, name
        assert st.st_size == len(target.encode()), name
        assert os.readlink(path) == target, name
        assert pair.head(f"{area.key}/{name}")["ContentLength"] == len(target.encode()), name
    # A symlink to a file in the bucket resolves through the reader.
    (area.side(writer) / "real.txt").write_bytes(b"pointed at\n")
    os.symlink("real.txt", area.side(writer) / "to-real")
    assert (area.side(reader) / "to-real").read_bytes() == b"pointed at\n"


# -- renames and deletes -------------------------------------------------------------------------


@pytest.mark.parametrize("writer", SIDES)
def test_file_rename_seen_by_the_other_side(pair, area, writer):
    reader = OTHER[writer]
    w, r = area.side(writer), area.side(reader)
    data = os.urandom(100_000)
    (w / "old.bin").write_bytes(data)
    os.chmod(w / "old.bin", 0o751)
    os.chown(w / "old.bin", 1234, 5678)
    os.utime(w / "old.bin", ns=(1_600_000_000_000_000_000, 1_600_000_002_500_000_000))
    (w / "sub").mkdir()
    before = eventually(lambda: fields(r / "old.bin"), fields(w / "old.bin"))
    assert before == fields(w / "old.bin")

    os.rename(w / "old.bin", w / "new.bin")
    assert eventually(lambda: os.lstat(r / "old.bin"), GONE) == GONE
    assert sorted(os.listdir(r)) == ["new.bin", "sub"]
    assert (r / "new.bin").read_bytes() == data
    assert fields(r / "new.bin") == before  # mode, owner, size and mtime travel with it
    assert not pair.exists(f"{area.key}/old.bin")

    os.rename(w / "new.bin", w / "sub" / "moved.bin")  # into another directory
    assert eventually(lambda: os.lstat(r / "new.bin"), GONE) == GONE
    assert os.listdir(r / "sub") == ["moved.bin"]
    assert (r / "sub" / "moved.bin").read_bytes() == data


@pytest.mark.parametrize("writer", SIDES)
def test_directory_rename_seen_by_the_other_side(pair, area, writer):
    reader = OTHER[writer]
    w, r = area.side(writer), area.side(reader)
    (w / "src" / "sub" / "empty").mkdir(parents=True)
    (w / "src" / "a.txt").write_bytes(b"a")
    (w / "src" / "sub" / "b.bin").write_bytes(os.urandom(5000))
    os.symlink("../a.txt", w / "src" / "sub" / "link")
    expected = tree_of(w / "src")
    assert tree_of(r / "src") == expected

    os.rename(w / "src", w / "dst")
    assert eventually(lambda: os.lstat(r / "src"), GONE) == GONE
    assert os.listdir(r) == ["dst"]
    assert (r / "dst" / "sub" / "empty").is_dir()
    assert tree_of(r / "dst") == expected
    keys = [o["Key"] for o in pair.client.list_objects_v2(
        Bucket=pair.bucket, Prefix=f"{area.key}/src").get("Contents", [])]
    assert keys == []


@pytest.mark.parametrize("writer", SIDES)
def test_deletes_seen_by_the_other_side(pair, area, writer):
    reader = OTHER[writer]
    w, r = area.side(writer), area.side(reader)
    (w / "file.txt").write_bytes(b"doomed")
    (w / "emptydir").mkdir()
    os.symlink("file.txt", w / "link")
    (w / "keep").write_bytes(b"stays")
    assert sorted(os.listdir(r)) == ["emptydir", "file.txt", "keep", "link"]
    assert (r / "file.txt").read_bytes() == b"doomed"  # the reader has looked at all of them
    assert (r / "emptydir").is_dir() and (r / "link").is_symlink()

    (w / "file.txt").unlink()
    (w / "link").unlink()
    (w / "emptydir").rmdir()
    for name in ("file.txt", "link", "emptydir"):
        assert eventually(lambda: os.lstat(r / name), GONE) == GONE, name
    assert os.listdir(r) == ["keep"]
    for key in ("file.txt", "link", "emptydir/"):
        assert not pair.exists(f"{area.key}/{key}"), key


# -- buckets written by other tools ---------------------------------------------------------------


def test_implicit_directories_listed_identically(pair, area):
    """Keys put with boto3 without any marker or metadata: both sides show the same tree."""
    keys = {
        "imp/a.txt": b"a",
        "imp/sub/b.bin": b"bb",
        "imp/sub/deeper/c.txt": b"ccc",
        "imp/other/d": b"",
        "imp/marked/e.txt": b"eeee",
    }
    for key, data in keys.items():
        pair.client.put_object(Bucket=pair.bucket, Key=f"{area.key}/{key}", Body=data)
    # One marker without metadata, as other tools make them, under an implicit directory.
    pair.client.put_object(Bucket=pair.bucket, Key=f"{area.key}/imp/marked/", Body=b"")

    s_tree, o_tree = tree_of(area.s), tree_of(area.o)
    assert o_tree == s_tree
    for rel in ("imp", "imp/sub", "imp/sub/deeper", "imp/other", "imp/marked"):
        assert (area.s / rel).is_dir() and (area.o / rel).is_dir(), rel
        assert sorted(os.listdir(area.o / rel)) == sorted(os.listdir(area.s / rel)), rel
        # Implicit dirs show mtime -1 in s3fs and the mount time in ocifs: not compared.
        assert fields(area.o / rel, mtime=False) == fields(area.s / rel, mtime=False), rel
        assert stat.S_IMODE(os.lstat(area.o / rel).st_mode) == 0o750, rel
    for key, data in keys.items():
        rel = key
        assert (area.o / rel).read_bytes() == data == (area.s / rel).read_bytes(), rel
        assert fields(area.o / rel) == fields(area.s / rel), rel
        assert oct(os.lstat(area.o / rel).st_mode) == oct(stat.S_IFREG | 0o640), rel


# -- field-by-field comparison -------------------------------------------------------------------


def _populate(root: Path, dir_attrs: bool) -> None:
    """The same objects made the same way; ``dir_attrs``: also chmod/chown/utime directories."""
    (root / "plain.txt").write_bytes(b"plain text\n")
    (root / "empty").write_bytes(b"")
    (root / "data.bin").write_bytes(os.urandom(70_001))
    (root / "tuned.bin").write_bytes(b"tuned")
    os.chmod(root / "tuned.bin", 0o600)
    os.chown(root / "tuned.bin", 1234, 5678)
    os.utime(root / "tuned.bin", ns=(1_600_000_000_000_000_000, 1_600_000_009_123456789))
    (root / "whole.bin").write_bytes(b"whole")
    os.utime(root / "whole.bin", (1_500_000_000, 1_500_000_001))
    (root / "dir").mkdir()
    (root / "dir751").mkdir()
    (root / "owned").mkdir()
    (root / "timed").mkdir()
    if dir_attrs:
        os.chmod(root / "dir751", 0o751)
        os.chown(root / "owned", 1234, 5678)
        os.utime(root / "timed", ns=(1_600_000_000_000_000_000, 1_600_000_007_000000001))
    os.symlink("plain.txt", root / "link")
    os.symlink("/nowhere/at/all", root / "dangling")


NAMES = sorted(["data.bin", "dangling", "dir", "dir751", "empty", "link", "owned", "plain.txt",
                "timed", "tuned.bin", "whole.bin"])


@pytest.mark.parametrize("writer", SIDES)
def test_stat_identical_through_both_mounts(pair, area, writer):
    # On SeaweedFS directories keep no attributes of their own: see dir_meta_kept.
    _populate(area.side(writer), dir_attrs=dir_meta_kept(pair))
    assert sorted(os.listdir(area.s)) == sorted(os.listdir(area.o)) == NAMES
    for name in NAMES:
        s_fields, o_fields = agree(lambda: fields(area.s / name), lambda: fields(area.o / name))
        assert o_fields == s_fields, name
    assert tree_of(area.s) == tree_of(area.o)


def test_objects_written_alike_by_both(pair, area):
    """The same operations on each side leave objects with the same headers (s3fs's format)."""
    (area.s / "by-s3fs").mkdir()
    (area.o / "by-ocifs").mkdir()
    _populate(area.s / "by-s3fs", dir_attrs=dir_meta_kept(pair))
    _populate(area.o / "by-ocifs", dir_attrs=dir_meta_kept(pair))
    listing = {}
    for side in ("by-s3fs", "by-ocifs"):
        prefix = f"{area.key}/{side}/"
        listing[side] = sorted(o["Key"][len(prefix):] for o in pair.client.list_objects_v2(
            Bucket=pair.bucket, Prefix=prefix)["Contents"] if o["Key"] != prefix)
    assert listing["by-ocifs"] == listing["by-s3fs"]
    for rel in listing["by-s3fs"]:
        s_head = pair.head(f"{area.key}/by-s3fs/{rel}")
        o_head = pair.head(f"{area.key}/by-ocifs/{rel}")
        s_meta = {k.lower(): v for k, v in s_head["Metadata"].items()}
        o_meta = {k.lower(): v for k, v in o_head["Metadata"].items()}
        assert o_head["ContentType"] == s_head["ContentType"], rel
        assert o_head["ContentLength"] == s_head["ContentLength"], rel
        assert sorted(o_meta) == sorted(s_meta), rel
        if not s_meta and rel.endswith("/") and not dir_meta_kept(pair):
            continue  # SeaweedFS dropped the marker's headers (both sides alike): see dir_meta_kept
        assert (o_meta["uid"], o_meta["gid"]) == (s_meta["uid"], s_meta["gid"]), rel
        s_mode, o_mode = int(s_meta["mode"]), int(o_meta["mode"])
        assert stat.S_IMODE(o_mode) == stat.S_IMODE(s_mode), rel
        if rel.endswith("/"):
            # s3fs writes a new directory's mode without S_IFDIR ("493") and a chmod'ed one
            # with it ("16873"); readers accept both.
            assert stat.S_IFMT(o_mode) in (0, stat.S_IFDIR), rel
        else:
            assert stat.S_IFMT(o_mode) == stat.S_IFMT(s_mode), rel
        if rel in ("tuned.bin", "whole.bin", "timed/"):
            assert o_meta["mtime"] == s_meta["mtime"], rel


# -- other writers: what the bucket holds, once the stat cache allows ----------------------------


@pytest.fixture(scope="module")
def cached(pair, tmp_path_factory) -> Path:
    """A third view of the bucket: ocifs with a real stat cache (1 s), as most mounts run."""
    mount = OcifsMount(pair.server, pair.bucket, tmp_path_factory.mktemp("cached") / "mnt",
                       ["stat_cache_expire=1"])
    mount.mount()
    try:
        yield mount.mountpoint
    finally:
        mount.umount()


def _rewrite_metadata(pair: Pair, key: str, **changes: str) -> None:
    """What another client does to an object's attributes: CopyObject onto itself, REPLACE."""
    head = pair.head(key)
    metadata = {k.lower(): v for k, v in head["Metadata"].items()} | changes
    pair.client.copy_object(Bucket=pair.bucket, Key=key, MetadataDirective="REPLACE",
                            CopySource={"Bucket": pair.bucket, "Key": key},
                            Metadata=metadata, ContentType=head["ContentType"])


def test_metadata_another_client_rewrote_is_shown_once_the_cache_allows(pair, area, cached):
    (area.s / "f").write_bytes(b"eleven byte")
    views = {"s3fs": area.s / "f", "ocifs": area.o / "f", "cached": cached / area.key / "f"}
    for path in views.values():
        assert os.stat(path).st_size == 11  # every view has it cached now
    _rewrite_metadata(pair, f"{area.key}/f", mode=str(stat.S_IFREG | 0o640), uid="4321",
                      gid="8765", mtime="1500000000")
    expected = {"st_mode": oct(stat.S_IFREG | 0o640), "st_uid": 4321, "st_gid": 8765,
                "st_size": 11, "st_mtime_ns": 1_500_000_000 * 10**9}
    for name, path in views.items():
        assert eventually(lambda: fields(path), expected) == expected, name


def _ls_modes(directory: Path) -> dict[str, str]:
    """``ls -ln``'s mode column by name: what a user looking at the directory sees."""
    out = subprocess.run(["ls", "-ln", str(directory)], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[-1]: line.split()[0] for line in out.splitlines()[1:]}


def test_directory_listed_before_a_chmod_shows_the_new_modes(pair, area, cached):
    for name in ("a", "b"):
        (area.s / name).write_bytes(name.encode())
        os.chmod(area.s / name, 0o644)
    listed = cached / area.key
    assert _ls_modes(listed) == {"a": "-rw-r--r--", "b": "-rw-r--r--"}  # listed: now cached
    os.chmod(area.s / "a", 0o600)  # another mount's chmod
    _rewrite_metadata(pair, f"{area.key}/b", mode=str(stat.S_IFREG | 0o751))  # another client's
    expected = {"a": "-rw-------", "b": "-rwxr-x--x"}
    assert eventually(lambda: _ls_modes(listed), expected) == expected
    assert eventually(lambda: _ls_modes(area.s), expected) == expected


def test_directory_object_without_the_trailing_slash(pair, area):
    """An old-style directory: the object ``old`` (no ``/``), typed as a directory, with a child."""
    pair.client.put_object(Bucket=pair.bucket, Key=f"{area.key}/old", Body=b"",
                           ContentType=DIR_CONTENT_TYPE,
                           Metadata={"mode": str(stat.S_IFDIR | 0o750), "uid": str(os.getuid()),
                                     "gid": str(os.getgid()), "mtime": "1600000000"})
    pair.client.put_object(Bucket=pair.bucket, Key=f"{area.key}/old/child", Body=b"inside")
    for side in SIDES:
        root = area.side(side)
        assert os.listdir(root) == ["old"], side
        assert stat.S_ISDIR(os.stat(root / "old").st_mode), side
        assert os.listdir(root / "old") == ["child"], side
        assert (root / "old" / "child").read_bytes() == b"inside", side
    s_fields, o_fields = agree(lambda: fields(area.s / "old"), lambda: fields(area.o / "old"))
    assert o_fields == s_fields


def test_truncate_of_a_file_that_is_not_open_keeps_its_data(pair, area):
    """truncate(2) by path, nothing open: the kept bytes stay (s3fs up to 1.97 uploads zeros
    for them, s3fs-fuse PR #2931: README, "Where ocifs differs")."""
    data = os.urandom(100)
    pair.client.put_object(Bucket=pair.bucket, Key=f"{area.key}/t", Body=data)
    os.truncate(area.o / "t", 10)
    assert pair.client.get_object(Bucket=pair.bucket, Key=f"{area.key}/t")["Body"].read() == data[:10]
    assert eventually(lambda: (area.s / "t").read_bytes(), data[:10]) == data[:10]
    os.truncate(area.o / "t", 50)
    grown = data[:10] + bytes(40)
    assert (area.o / "t").read_bytes() == grown
    assert eventually(lambda: (area.s / "t").read_bytes(), grown) == grown


def test_truncate_by_s3fs_is_read_as_the_bucket_holds_it(pair, area):
    pair.client.put_object(Bucket=pair.bucket, Key=f"{area.key}/t", Body=os.urandom(100))
    (area.o / "t").read_bytes()  # cached on this side before the other changes it
    os.truncate(area.s / "t", 10)
    held = pair.client.get_object(Bucket=pair.bucket, Key=f"{area.key}/t")["Body"].read()
    assert len(held) == 10
    assert eventually(lambda: (area.o / "t").read_bytes(), held) == held


# -- timestamps, operation by operation ----------------------------------------------------------

SET_ATIME_NS, SET_MTIME_NS = 1_000_000_000 * 10**9, 1_100_000_000 * 10**9


def _times(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns


def _moved(before: tuple[int, int, int], after: tuple[int, int, int]) -> dict[str, Any]:
    """For atime, mtime, ctime: "kept", "now" (moved to about now) or the exact new value."""
    result = {}
    for name, old, new in zip(("atime", "mtime", "ctime"), before, after):
        if new == old:
            result[name] = "kept"
        elif abs(new / 1e9 - time.time()) < 60:
            result[name] = "now"
        else:
            result[name] = new
    return result


TIME_OPERATIONS: dict[str, Callable[[Path], Path]] = {
    "chmod": lambda p: (os.chmod(p, 0o600), p)[1],
    "chown": lambda p: (os.chown(p, 1234, 5678), p)[1],
    "write": lambda p: (p.open("ab").write(b"more"), p)[1],
    "truncate": lambda p: (os.truncate(p, 2), p)[1],
    "touch -m": lambda p: (subprocess.run(["touch", "-m", "-d", "@300", str(p)], check=True), p)[1],
    "touch -a": lambda p: (subprocess.run(["touch", "-a", "-d", "@400", str(p)], check=True), p)[1],
    "mv": lambda p: (subprocess.run(["mv", str(p), str(p) + ".moved"], check=True),
                     Path(str(p) + ".moved"))[1],
    "cp -p": lambda p: (subprocess.run(["cp", "-p", str(p), str(p) + ".copy"], check=True),
                        Path(str(p) + ".copy"))[1],
}


# What each operation does to (atime, mtime, ctime) in s3fs 1.97, which ocifs follows.
S3FS_TIMES = {
    "chmod": {"atime": "kept", "mtime": "kept", "ctime": "now"},
    "chown": {"atime": "kept", "mtime": "kept", "ctime": "now"},
    "write": {"atime": "kept", "mtime": "now", "ctime": "now"},
    "truncate": {"atime": "kept", "mtime": "now", "ctime": "now"},
    "touch -m": {"atime": "kept", "mtime": 300 * 10**9, "ctime": "now"},
    "touch -a": {"atime": 400 * 10**9, "mtime": "kept", "ctime": "now"},
    "mv": {"atime": "kept", "mtime": "kept", "ctime": "now"},
    "cp -p": {"atime": "kept", "mtime": "kept", "ctime": "now"},
}
# Where Debian 12's s3fs 1.90, which the tests run, still differs from 1.97: it ignores
# utimensat's UTIME_OMIT (handled from 1.91, s3fs-fuse PR #1868), and its truncate(2) of a file
# nobody has open leaves mtime (and uploads zeros: PR #2931).
S3FS_1_90_DIFFERS = {
    "truncate": {"mtime": "kept"},
    "touch -m": {"mtime": "kept", "ctime": "kept"},
    "touch -a": {"atime": "kept", "ctime": "kept"},
}


@pytest.mark.parametrize("operation", TIME_OPERATIONS)
def test_timestamps_after_each_operation_as_s3fs(pair, area, operation):
    """Which of atime, mtime and ctime each operation moves, and to what: s3fs 1.97's rules,
    and the same as the s3fs on this machine except where 1.90 is known to differ."""
    results = {}
    for side in SIDES:
        path = area.side(side) / "timed"
        path.write_bytes(b"payload")
        os.utime(path, ns=(SET_ATIME_NS, SET_MTIME_NS))
        before = _times(path)
        time.sleep(1.1)  # s3fs keeps whole seconds of ctime: let "now" differ from before
        after = _times(TIME_OPERATIONS[operation](path))
        results[side] = _moved(before, after)
    assert results["ocifs"] == S3FS_TIMES[operation]
    assert results["s3fs"] == S3FS_TIMES[operation] | S3FS_1_90_DIFFERS.get(operation, {})


def test_a_new_entry_and_its_removal_move_the_directory_as_s3fs(pair, area):
    """What creating and removing an entry does to its directory's times: the same on both
    (neither rewrites the directory's marker by default; ``update_parent_dir_stat`` does).
    On SeaweedFS no directory time can be set (see dir_meta_kept): the directory keeps what
    its marker shows."""
    results = {}
    for side in SIDES:
        directory = area.side(side) / f"parent-{side}"
        directory.mkdir()
        moved = []
        for change in (lambda: (directory / "child").write_bytes(b"c"),
                       lambda: (directory / "child").unlink()):
            if dir_meta_kept(pair):
                os.utime(directory, ns=(SET_ATIME_NS, SET_MTIME_NS))
            before = _times(directory)
            time.sleep(1.1)
            change()
            moved.append(_moved(before, _times(directory)))
        results[side] = moved
    assert results["ocifs"] == results["s3fs"]


def test_objects_another_client_puts_are_seen_at_once_by_both(pair, area):
    """Right after each side made and listed a directory, an object put there with boto3 is
    there at once: neither infers "no such name" from what it listed."""
    for side in SIDES:
        directory = area.side(side) / f"made-by-{side}"
        directory.mkdir()
        assert os.listdir(directory) == []
        key = f"{area.key}/made-by-{side}/theirs"
        pair.client.put_object(Bucket=pair.bucket, Key=key, Body=b"put by boto3")
        for reader in SIDES:
            assert (area.side(reader) / f"made-by-{side}" / "theirs").read_bytes() == b"put by boto3", (side, reader)
