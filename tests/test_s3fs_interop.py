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
