"""Object keys no file system would make, already in the bucket: each is shown by a documented
mapping (docs/SEMANTICS.md, "Keys that are not plain paths") or refused with a clear errno,
and the mount stays alive and serves other files after each.

Runs on moto, which keeps keys verbatim as AWS and OCI do; SeaweedFS stores objects as filer
paths, so it collapses ``//``, strips a leading ``/`` and refuses ``.``/``..`` segments and
names over 255 bytes before they could reach a mount.  The mount caches nothing
(``stat_cache_expire=0``): every lookup below is answered from the bucket, not from an
earlier listing.
"""

from __future__ import annotations

import errno
import os
import stat
import unicodedata
from pathlib import Path

import pytest

from mounting import OcifsMount, unique_bucket

NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")
LONG = "L" * 300  # one segment above NAME_MAX (255 bytes), below FUSE's 1,024
KEYS = {
    "ok.txt": b"ok",
    "with space.txt": b"space",
    f"uni/{NFC}": b"composed",
    f"uni/{NFD}": b"decomposed",
    "dbl//x.txt": b"double slash",
    "/lead.txt": b"leading slash",
    "dots/./x": b"dot",
    "dots/../y": b"dotdot",
    "dots/.": b"just a dot",
    f"long/{LONG}": b"long name",
    "clash": b"the file",
    "clash/b": b"under the file",
    "body/": b"a directory key with content",
    "ctl/bell\x07name": b"control character",
}


@pytest.fixture(scope="module")
def weird(moto_server, tmp_path_factory):
    bucket = unique_bucket("weird")
    moto_server.create_bucket(bucket)
    client = moto_server.client()
    for key, body in KEYS.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    mount = OcifsMount(moto_server, bucket, tmp_path_factory.mktemp("weird") / "mnt",
                       ["stat_cache_expire=0"])
    mount.mount()
    mount.client = client
    yield mount
    mount.umount()
    log = mount.log_text()
    assert "Traceback" not in log and "failed unexpectedly" not in log, log[-3000:]


@pytest.fixture(autouse=True)
def still_alive(weird):
    """After every case the mount serves other files: read one, write one."""
    yield
    root = weird.mountpoint
    assert (root / "ok.txt").read_bytes() == b"ok"
    (root / "alive.txt").write_bytes(b"alive")
    assert weird.client.get_object(Bucket=weird.bucket, Key="alive.txt")["Body"].read() == b"alive"


def errno_of(fn, *args) -> int:
    with pytest.raises(OSError) as info:
        fn(*args)
    return info.value.errno


def test_spaces_are_plain_names(weird):
    assert "with space.txt" in os.listdir(weird.mountpoint)
    assert (weird.mountpoint / "with space.txt").read_bytes() == b"space"


def test_nfc_and_nfd_are_two_names(weird):
    """Names are bytes: the composed and decomposed spellings are two files, as in the bucket."""
    uni = weird.mountpoint / "uni"
    assert sorted(os.listdir(uni)) == sorted([NFC, NFD])
    assert (uni / NFC).read_bytes() == b"composed"
    assert (uni / NFD).read_bytes() == b"decomposed"
    (uni / NFD).write_bytes(b"rewritten")  # the key keeps the bytes it was given
    assert weird.client.get_object(Bucket=weird.bucket, Key=f"uni/{NFD}")["Body"].read() == b"rewritten"
    assert (uni / NFC).read_bytes() == b"composed"


def test_empty_segment_is_hidden(weird):
    """``dbl//x.txt``: an empty name cannot be looked up; ``dbl`` is listed empty but keeps it."""
    dbl = weird.mountpoint / "dbl"
    assert stat.S_ISDIR(dbl.stat().st_mode)
    assert os.listdir(dbl) == []
    assert errno_of(os.stat, dbl / "x.txt") == errno.ENOENT
    assert errno_of(os.rmdir, dbl) == errno.ENOTEMPTY


def test_leading_slash_is_hidden(weird):
    assert "" not in os.listdir(weird.mountpoint)
    assert "lead.txt" not in os.listdir(weird.mountpoint)
    assert errno_of(os.stat, weird.mountpoint / "lead.txt") == errno.ENOENT


def test_dot_segments_are_hidden(weird):
    """``.`` and ``..`` are the kernel's own: never listed twice, the keys stay unreachable."""
    dots = weird.mountpoint / "dots"
    assert os.listdir(dots) == []
    names = os.popen(f"ls -a '{dots}'").read().split()
    assert names.count(".") <= 1 and names.count("..") <= 1, names
    assert errno_of(os.stat, dots / "x") == errno.ENOENT
    assert errno_of(os.rmdir, dots) == errno.ENOTEMPTY


def test_name_longer_than_name_max(weird):
    """FUSE takes names up to 1,024 bytes: a 300-byte name lists, stats and reads."""
    long_dir = weird.mountpoint / "long"
    assert os.listdir(long_dir) == [LONG]
    assert (long_dir / LONG).stat().st_size == len(b"long name")
    assert (long_dir / LONG).read_bytes() == b"long name"
    assert os.statvfs(weird.mountpoint).f_namemax == 255  # what s3fs reports too


def test_file_and_directory_of_the_same_name(weird):
    """``clash`` and ``clash/b``: the file wins, what is below it is unreachable."""
    assert stat.S_ISREG((weird.mountpoint / "clash").stat().st_mode)
    assert os.listdir(weird.mountpoint).count("clash") == 1
    assert (weird.mountpoint / "clash").read_bytes() == b"the file"
    assert errno_of(os.stat, weird.mountpoint / "clash" / "b") == errno.ENOTDIR


def test_directory_key_with_content(weird):
    """``body/`` holding bytes is a directory (as in s3fs); its bytes are not a file."""
    body = weird.mountpoint / "body"
    assert stat.S_ISDIR(body.stat().st_mode)
    assert os.listdir(body) == []
    assert errno_of(open, body, "rb") == errno.EISDIR


def test_control_characters_listed_and_found(weird):
    """Listed, and found by a lookup that no listing preceded (nothing is cached here)."""
    name = "bell\x07name"
    assert (weird.mountpoint / "ctl" / name).read_bytes() == b"control character"
    assert os.listdir(weird.mountpoint / "ctl") == [name]
    (weird.mountpoint / "ctl" / "new\x07name").write_bytes(b"made here")  # not OCI: taken
    assert sorted(os.listdir(weird.mountpoint / "ctl")) == [name, "new\x07name"]


def test_every_key_still_in_the_bucket(weird):
    """Showing a key differently never changes it."""
    stored = {obj["Key"] for obj in weird.client.list_objects_v2(Bucket=weird.bucket)["Contents"]}
    assert set(KEYS) - {f"uni/{NFD}"} <= stored
