"""s3fs object format <-> attributes (ocifs.meta.objects), without any store."""

from __future__ import annotations

import datetime as dt
import stat
import urllib.parse

import pytest

from ocifs.meta import objects
from ocifs.meta.objects import ObjectAttrs, attrs_from_head, content_type_for, metadata_for

UID, GID = 1234, 5678
LAST_MODIFIED = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
LAST_MODIFIED_NS = int(LAST_MODIFIED.timestamp()) * 1_000_000_000


def head(size=0, metadata=None, content_type=None, etag='"abc"', last_modified=LAST_MODIFIED):
    h = {"ContentLength": size, "LastModified": last_modified, "ETag": etag,
         "Metadata": dict(metadata or {})}
    if content_type is not None:
        h["ContentType"] = content_type
    return h


# -- files and directories without metadata -------------------------------------------------

def test_file_without_metadata_gets_defaults():
    a = attrs_from_head("dir/file.txt", head(size=42, content_type="text/plain"), UID, GID)
    assert a.mode == stat.S_IFREG | 0o640
    assert stat.S_ISREG(a.mode) and not a.is_dir and not a.is_symlink
    assert a.size == 42
    assert (a.uid, a.gid) == (UID, GID)
    assert a.mtime_ns == LAST_MODIFIED_NS
    assert a.ctime_ns == LAST_MODIFIED_NS and a.atime_ns == LAST_MODIFIED_NS
    assert a.etag == '"abc"'
    assert a.content_type == "text/plain"
    assert a.extra_meta == {}
    assert a.has_marker


def test_dir_marker_without_metadata_gets_defaults():
    a = attrs_from_head("dir/", head(content_type=objects.DIR_CONTENT_TYPE), UID, GID)
    assert a.mode == stat.S_IFDIR | 0o750
    assert a.is_dir
    assert (a.uid, a.gid) == (UID, GID)
    assert a.size == 0


def test_zero_byte_slash_key_without_content_type_is_dir():
    a = attrs_from_head("x/", head(size=0), UID, GID)
    assert a.is_dir
    assert a.mode == stat.S_IFDIR | 0o750


def test_slash_key_with_octet_stream_content_type_is_dir():
    a = attrs_from_head("x/", head(size=0, content_type="binary/octet-stream"), UID, GID)
    assert a.is_dir


@pytest.mark.parametrize("ctype", ["application/x-directory",
                                   "application/x-directory; charset=UTF-8",
                                   "httpd/unix-directory"])
def test_key_without_slash_with_directory_content_type_is_dir(ctype):
    a = attrs_from_head("dir", head(size=0, content_type=ctype), UID, GID)
    assert a.is_dir
    assert a.mode == stat.S_IFDIR | 0o750


def test_key_without_slash_with_plain_content_type_is_file():
    a = attrs_from_head("dir", head(size=0, content_type="text/plain"), UID, GID)
    assert not a.is_dir
    assert stat.S_ISREG(a.mode)


def test_dir_size_is_zero_even_if_object_has_bytes():
    a = attrs_from_head("d/", head(size=10, metadata={"mode": str(stat.S_IFDIR | 0o755)}), UID, GID)
    assert a.is_dir
    assert a.size == 0


# -- mode --------------------------------------------------------------------------------------

def test_mode_33261_is_executable_regular_file():
    a = attrs_from_head("bin/tool", head(size=3, metadata={"mode": "33261"}), UID, GID)
    assert a.mode == 33261 == stat.S_IFREG | 0o755


def test_mode_without_type_bits_on_file_is_regular():
    a = attrs_from_head("f", head(size=3, metadata={"mode": "420"}), UID, GID)
    assert a.mode == stat.S_IFREG | 0o644


def test_mode_without_type_bits_on_slash_key_is_directory():
    # s3fs 1.90 wrote mkdir markers with mode 493 (0755) and no S_IFDIR bits.
    a = attrs_from_head("newdir/", head(size=0, metadata={"mode": "493"},
                                        content_type=objects.DIR_CONTENT_TYPE), UID, GID)
    assert a.mode == stat.S_IFDIR | 0o755
    assert a.is_dir


def test_file_mode_on_slash_key_becomes_directory_keeping_permissions():
    a = attrs_from_head("d/", head(size=0, metadata={"mode": str(stat.S_IFREG | 0o700)}), UID, GID)
    assert a.mode == stat.S_IFDIR | 0o700


def test_octal_mode_string():
    a = attrs_from_head("f", head(size=1, metadata={"mode": "0100644"}), UID, GID)
    assert a.mode == stat.S_IFREG | 0o644


def test_symlink_mode():
    a = attrs_from_head("link", head(size=6, metadata={"mode": str(objects.SYMLINK_MODE)}), UID, GID)
    assert a.is_symlink
    assert a.size == 6


def test_garbage_mode_falls_back_to_default():
    a = attrs_from_head("f", head(size=1, metadata={"mode": "rwxr-xr-x"}), UID, GID)
    assert a.mode == objects.DEFAULT_FILE_MODE


def test_metadata_keys_are_case_insensitive():
    a = attrs_from_head("f", head(size=1, metadata={"Mode": "33188", "UID": "7"}), UID, GID)
    assert a.mode == stat.S_IFREG | 0o644
    assert a.uid == 7


# -- times -------------------------------------------------------------------------------------

def test_mtime_whole_seconds():
    a = attrs_from_head("f", head(metadata={"mtime": "1700000000"}), UID, GID)
    assert a.mtime_ns == 1_700_000_000 * 1_000_000_000
    # ctime and atime follow mtime when absent
    assert a.ctime_ns == a.mtime_ns and a.atime_ns == a.mtime_ns


def test_mtime_with_nanoseconds():
    a = attrs_from_head("f", head(metadata={"mtime": "1700000000.123456789"}), UID, GID)
    assert a.mtime_ns == 1_700_000_000_123_456_789


def test_mtime_with_short_fraction():
    a = attrs_from_head("f", head(metadata={"mtime": "1700000000.5"}), UID, GID)
    assert a.mtime_ns == 1_700_000_000_500_000_000


def test_ctime_atime_separate():
    a = attrs_from_head("f", head(metadata={"mtime": "100", "ctime": "200", "atime": "300.000000001"}),
                        UID, GID)
    assert (a.mtime_ns, a.ctime_ns, a.atime_ns) == (100 * 10**9, 200 * 10**9, 300 * 10**9 + 1)


def test_absent_mtime_falls_back_to_last_modified():
    a = attrs_from_head("f", head(size=1, metadata={"mode": "33188"}), UID, GID)
    assert a.mtime_ns == LAST_MODIFIED_NS


def test_bad_mtime_falls_back_to_last_modified():
    a = attrs_from_head("f", head(size=1, metadata={"mtime": "yesterday"}), UID, GID)
    assert a.mtime_ns == LAST_MODIFIED_NS


# -- owner -------------------------------------------------------------------------------------

def test_uid_gid_parsed():
    a = attrs_from_head("f", head(metadata={"uid": "1000", "gid": "100"}), UID, GID)
    assert (a.uid, a.gid) == (1000, 100)


def test_uid_zero_is_kept_not_defaulted():
    a = attrs_from_head("f", head(metadata={"uid": "0", "gid": "0"}), UID, GID)
    assert (a.uid, a.gid) == (0, 0)


def test_bad_uid_falls_back_to_default():
    a = attrs_from_head("f", head(metadata={"uid": "bob", "gid": ""}), UID, GID)
    assert (a.uid, a.gid) == (UID, GID)


# -- extra metadata and metadata_for ----------------------------------------------------------

def test_extra_meta_kept_and_written_back():
    meta = {"mode": "33188", "uid": "1", "gid": "2", "mtime": "1700000000",
            "owner-app": "backup", "sha256": "deadbeef"}
    a = attrs_from_head("f", head(size=1, metadata=meta), UID, GID)
    assert a.extra_meta == {"owner-app": "backup", "sha256": "deadbeef"}
    out = metadata_for(a)
    assert out["owner-app"] == "backup"
    assert out["sha256"] == "deadbeef"
    assert out["mode"] == "33188"
    assert out["uid"] == "1" and out["gid"] == "2"
    assert out["mtime"] == "1700000000"


def test_metadata_for_own_values_override_extra():
    a = ObjectAttrs(mode=stat.S_IFREG | 0o600, uid=3, gid=4, mtime_ns=5 * 10**9 + 7,
                    ctime_ns=6 * 10**9, atime_ns=7 * 10**9, extra_meta={"mode": "0", "x": "y"})
    out = metadata_for(a)
    assert out == {"x": "y", "mode": str(stat.S_IFREG | 0o600), "uid": "3", "gid": "4",
                   "mtime": "5.000000007", "ctime": "6", "atime": "7"}
    assert all(isinstance(v, str) for v in out.values())


def test_metadata_round_trip():
    a = ObjectAttrs(mode=stat.S_IFREG | 0o751, size=9, uid=11, gid=22,
                    mtime_ns=1_700_000_000_123_456_789, ctime_ns=1_700_000_001_000_000_000,
                    atime_ns=1_700_000_002_000_000_001, extra_meta={"k": "v"})
    b = attrs_from_head("f", head(size=9, metadata=metadata_for(a)), 0, 0)
    assert (b.mode, b.size, b.uid, b.gid, b.mtime_ns, b.ctime_ns, b.atime_ns, b.extra_meta) == \
        (a.mode, a.size, a.uid, a.gid, a.mtime_ns, a.ctime_ns, a.atime_ns, a.extra_meta)


# -- content types -----------------------------------------------------------------------------

def test_content_type_by_extension():
    a = ObjectAttrs(mode=objects.DEFAULT_FILE_MODE)
    assert content_type_for("notes.txt", a) == "text/plain"
    assert content_type_for("dir/page.html", a) == "text/html"
    assert content_type_for("image.png", a) == "image/png"


def test_content_type_unknown_extension_is_octet_stream():
    a = ObjectAttrs(mode=objects.DEFAULT_FILE_MODE)
    assert content_type_for("data.nosuchext", a) == "application/octet-stream"
    assert content_type_for("noext", a) == "application/octet-stream"


def test_content_type_kept_when_known():
    a = ObjectAttrs(mode=objects.DEFAULT_FILE_MODE, content_type="application/x-custom")
    assert content_type_for("notes.txt", a) == "application/x-custom"


def test_content_type_kept_from_head():
    a = attrs_from_head("f.txt", head(size=1, content_type="application/json"), UID, GID)
    assert content_type_for("renamed.bin", a) == "application/json"


def test_content_type_for_dir():
    a = ObjectAttrs(mode=objects.DEFAULT_DIR_MODE, content_type="text/plain")
    assert content_type_for("d", a) == "application/x-directory"


# -- listing and implicit dirs -----------------------------------------------------------------

def test_attrs_from_listing():
    a = objects.attrs_from_listing({"Key": "a/b.bin", "Size": 77, "LastModified": LAST_MODIFIED,
                                    "ETag": '"e"'}, UID, GID)
    assert a.size == 77 and a.mode == objects.DEFAULT_FILE_MODE
    assert a.mtime_ns == LAST_MODIFIED_NS and a.etag == '"e"'
    d = objects.attrs_from_listing({"Key": "a/", "Size": 0, "LastModified": LAST_MODIFIED}, UID, GID)
    assert d.is_dir


def test_attrs_from_listing_is_a_head_without_headers():
    for entry in ({"Key": "a/b.bin", "Size": 77, "LastModified": LAST_MODIFIED, "ETag": '"e"'},
                  {"Key": "a/", "Size": 0, "LastModified": LAST_MODIFIED, "ETag": '"d"'},
                  {"Key": "a/dir-with-data/", "Size": 5, "LastModified": LAST_MODIFIED},
                  {"Key": "empty", "Size": 0}):
        head = {"ContentLength": entry["Size"], "LastModified": entry.get("LastModified"),
                "ETag": entry.get("ETag")}
        expected = objects.attrs_from_head(entry["Key"], head, UID, GID)
        expected.from_listing = True
        assert objects.attrs_from_listing(entry, UID, GID) == expected, entry


def test_implicit_dir_attrs():
    a = objects.implicit_dir_attrs(UID, GID, 123)
    assert a.is_dir and a.mode == stat.S_IFDIR | 0o750
    assert not a.has_marker
    assert (a.uid, a.gid, a.mtime_ns) == (UID, GID, 123)


# -- time formatting ---------------------------------------------------------------------------

@pytest.mark.parametrize("ns,text", [
    (0, "0"),
    (1_700_000_000 * 10**9, "1700000000"),
    (1_700_000_000_123_456_789, "1700000000.123456789"),
    (1_700_000_000_000_000_001, "1700000000.000000001"),
    (1_500_000_000, "1.500000000"),
])
def test_format_time_ns(ns, text):
    assert objects.format_time_ns(ns) == text
    assert objects.parse_time_ns(text) == ns


@pytest.mark.parametrize("ns", [1, 999_999_999, 10**9, 1_234_567_890_987_654_321])
def test_time_round_trip(ns):
    assert objects.parse_time_ns(objects.format_time_ns(ns)) == ns


@pytest.mark.parametrize("value", [None, "", "abc", "1.x", "x.1"])
def test_parse_time_ns_rejects_garbage(value):
    assert objects.parse_time_ns(value) is None


# -- extended attributes and special files (s3fs's headers, checked against s3fs 1.90) -----------

# What s3fs 1.90 stored after `setfattr -n user.a -v hello; -n user.b -v 0x00ff80; -n "user.c d" -v ü`.
S3FS_XATTR = ("%7B%22user.a%22%3A%22aGVsbG8%3D%22%2C%22user.b%22%3A%22AP%2BA%22%2C"
              "%22user.c%20d%22%3A%22w7w%3D%22%7D")
S3FS_XATTRS = {"user.a": b"hello", "user.b": b"\x00\xff\x80", "user.c d": "ü".encode()}


def test_xattr_header_is_byte_for_byte_what_s3fs_writes():
    assert objects.encode_xattrs(S3FS_XATTRS) == S3FS_XATTR


def test_xattr_header_written_by_s3fs_reads_back():
    assert objects.decode_xattrs(S3FS_XATTR) == S3FS_XATTRS
    # s3fs keeps "/" unencoded (base64 of 0xffffff is "////") and writes UTF-8 names raw.
    assert objects.decode_xattrs("%7B%22user.s%22%3A%22////%2B%2B8%3D%22%2C%22user.%C3%B1%22"
                                 "%3A%22dg%3D%3D%22%7D") == {"user.s": b"\xff\xff\xff\xfb\xef",
                                                             "user.ñ": b"v"}


@pytest.mark.parametrize("name", ['user.a:b', 'user.q"x', "user.k,l", "user.back\\slash",
                                  "user.\x01ctl", "user.\udcffbytes", "security.capability"])
def test_xattr_names_s3fs_cannot_parse_round_trip_escaped(name):
    """s3fs cuts pairs at "," and ":", so those (and quotes) are written as \\uXXXX escapes."""
    xattrs = {name: b"value", "user.other": b"kept"}
    header = objects.encode_xattrs(xattrs)
    assert objects.decode_xattrs(header) == xattrs
    raw = urllib.parse.unquote(header)
    assert raw.count(",") == 1 and raw.count(":") == 2  # s3fs's cuts still fall between pairs


def test_xattr_empty_value_and_garbage():
    assert objects.decode_xattrs(objects.encode_xattrs({"user.e": b""})) == {"user.e": b""}
    assert objects.decode_xattrs("") == {}
    assert objects.decode_xattrs("not json") == {}
    assert objects.decode_xattrs("%7B%7D") == {}


def test_xattrs_parsed_from_head_and_written_by_metadata_for():
    attrs = attrs_from_head("f", head(metadata={"mode": "33188", "xattr": S3FS_XATTR, "other": "x"}), 0, 0)
    assert attrs.xattrs == S3FS_XATTRS
    assert "xattr" not in attrs.extra_meta and attrs.extra_meta == {"other": "x"}
    meta = metadata_for(attrs)
    assert meta["xattr"] == S3FS_XATTR and meta["other"] == "x"
    attrs.xattrs = None
    assert "xattr" not in metadata_for(attrs)
    attrs.xattrs = {}
    assert "xattr" not in metadata_for(attrs)  # the last one removed: the header goes, as in s3fs
    assert attrs_from_head("f", head(metadata={"mode": "33188"}), 0, 0).xattrs is None


@pytest.mark.parametrize("mode", [stat.S_IFIFO | 0o644, stat.S_IFSOCK | 0o755])
def test_fifo_and_socket_modes_as_s3fs_writes_them(mode):
    attrs = attrs_from_head("p", head(metadata={"mode": str(mode)}), 0, 0)
    assert attrs.mode == mode and attrs.rdev == 0
    assert "rdev" not in metadata_for(attrs)


def test_device_number_in_rdev_header():
    dev = 259  # makedev(1, 3)
    attrs = attrs_from_head("c", head(metadata={"mode": str(stat.S_IFCHR | 0o600), "rdev": str(dev)}), 0, 0)
    assert stat.S_ISCHR(attrs.mode) and attrs.rdev == dev and "rdev" not in attrs.extra_meta
    assert metadata_for(attrs)["rdev"] == "259"
    # s3fs 1.90 writes no rdev: its devices read as 0; a stray rdev on a file is ignored.
    assert attrs_from_head("c", head(metadata={"mode": str(stat.S_IFBLK | 0o600)}), 0, 0).rdev == 0
    assert attrs_from_head("f", head(metadata={"mode": "33188", "rdev": "5"}), 0, 0).rdev == 0
