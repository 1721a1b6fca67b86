"""Mount options a user sees the effect of: uid/gid, umask, mp_umask, allow_other, dbglevel."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from mounting import OcifsMount, unique_bucket


@pytest.fixture(scope="module")
def bucket(moto_server):
    name = unique_bucket("opts")
    moto_server.create_bucket(name)
    client = moto_server.client()
    client.put_object(Bucket=name, Key="plain.txt", Body=b"no metadata")
    client.put_object(Bucket=name, Key="owned.txt", Body=b"x",
                      Metadata={"mode": str(stat.S_IFREG | 0o600), "uid": "1234", "gid": "5678"})
    client.put_object(Bucket=name, Key="dir/", Body=b"", ContentType="application/x-directory",
                      Metadata={"mode": str(stat.S_IFDIR | 0o700)})
    return name


def mount_with(moto_server, bucket, where: Path, options: list[str]) -> OcifsMount:
    return OcifsMount(moto_server, bucket, where / "mnt", options, passwd_dir=where)


def modes(root: Path) -> dict[str, int]:
    return {name: stat.S_IMODE((root / name).stat().st_mode) for name in ("plain.txt", "owned.txt", "dir")}


def test_defaults_follow_s3fs(moto_server, bucket, public_dir):
    with mount_with(moto_server, bucket, public_dir, []) as mount:
        assert modes(mount.mountpoint) == {"plain.txt": 0o640, "owned.txt": 0o600, "dir": 0o700}
        owned = (mount.mountpoint / "owned.txt").stat()
        assert (owned.st_uid, owned.st_gid) == (1234, 5678)
        assert (mount.mountpoint / "plain.txt").stat().st_uid == os.getuid()
        root = mount.mountpoint.stat()
        assert stat.S_IMODE(root.st_mode) == 0o700
        assert root.st_uid == os.getuid()


def test_uid_gid_override_every_owner(moto_server, bucket, public_dir):
    with mount_with(moto_server, bucket, public_dir, ["uid=1000", "gid=1001"]) as mount:
        for name in ("", "plain.txt", "owned.txt", "dir"):
            st = (mount.mountpoint / name).stat()
            assert (st.st_uid, st.st_gid) == (1000, 1001), name
        # Display only: what is stored keeps the real owner.
        (mount.mountpoint / "new.txt").write_text("n")
        meta = moto_server.client().head_object(Bucket=bucket, Key="new.txt")["Metadata"]
        assert meta["uid"] == str(os.getuid())


def test_umask_replaces_permission_bits(moto_server, bucket, public_dir):
    with mount_with(moto_server, bucket, public_dir, ["umask=022"]) as mount:
        assert modes(mount.mountpoint) == {"plain.txt": 0o755, "owned.txt": 0o755, "dir": 0o755}
        assert stat.S_IMODE(mount.mountpoint.stat().st_mode) == 0o755
        assert stat.S_ISDIR((mount.mountpoint / "dir").stat().st_mode)
    with mount_with(moto_server, bucket, public_dir, ["umask=0077"]) as mount:
        assert modes(mount.mountpoint) == {"plain.txt": 0o700, "owned.txt": 0o700, "dir": 0o700}


def test_mp_umask_sets_mountpoint_mode_with_allow_other(moto_server, bucket, public_dir):
    with mount_with(moto_server, bucket, public_dir, ["allow_other", "mp_umask=027"]) as mount:
        assert stat.S_IMODE(mount.mountpoint.stat().st_mode) == 0o750
        assert modes(mount.mountpoint)["plain.txt"] == 0o640  # objects unaffected
    with mount_with(moto_server, bucket, public_dir, ["allow_other"]) as mount:
        assert stat.S_IMODE(mount.mountpoint.stat().st_mode) == 0o777


def _as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True, text=True)


def test_allow_other_lets_other_users_in(moto_server, bucket, public_dir):
    if shutil.which("runuser") is None:
        pytest.skip("runuser (util-linux) is not installed")
    with mount_with(moto_server, bucket, public_dir, ["umask=0"]) as mount:
        denied = _as_nobody("ls", str(mount.mountpoint))
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
    with mount_with(moto_server, bucket, public_dir, ["allow_other", "umask=0"]) as mount:
        allowed = _as_nobody("ls", str(mount.mountpoint))
        assert allowed.returncode == 0, allowed.stderr
        assert "plain.txt" in allowed.stdout
    with mount_with(moto_server, bucket, public_dir, ["allow_other", "mp_umask=077"]) as mount:
        # default_permissions: the kernel enforces the 0700 mountpoint against other users.
        assert _as_nobody("ls", str(mount.mountpoint)).returncode != 0


def test_dbglevel_controls_the_log(moto_server, bucket, public_dir):
    quiet = OcifsMount(moto_server, bucket, public_dir / "quiet", ["dbglevel=err"], passwd_dir=public_dir)
    with quiet:
        (quiet.mountpoint / "q.txt").write_text("q")
    assert "uploaded q.txt" not in quiet.log_text()
    loud = OcifsMount(moto_server, bucket, public_dir / "loud", ["dbglevel=info"], passwd_dir=public_dir)
    with loud:
        (loud.mountpoint / "l.txt").write_text("l")
    assert "uploaded l.txt" in loud.log_text()
    assert moto_server.secret_key not in quiet.log_text() + loud.log_text()


def test_curldbg_logs_http_without_secrets(moto_server, bucket, public_dir):
    mount = OcifsMount(moto_server, bucket, public_dir / "curl", ["curldbg"], passwd_dir=public_dir)
    with mount:
        (mount.mountpoint / "c.txt").write_text("c")
    log = mount.log_text()
    assert "Sending http request" in log and "Authorization" in log
    assert moto_server.secret_key not in log
    assert "AWS4-HMAC-SHA256 Credential" not in log


def test_max_dirty_data_uploads_while_still_open(moto_server, bucket, public_dir):
    client = moto_server.client()
    with mount_with(moto_server, bucket, public_dir, ["max_dirty_data=1"]) as mount:
        with open(mount.mountpoint / "dirty.bin", "wb") as f:
            f.write(b"x" * (1024 * 1024 + 10))
            f.flush()  # Python's buffer to the kernel; no close, no fsync
            uploaded = client.head_object(Bucket=bucket, Key="dirty.bin")["ContentLength"]
            assert 1024 * 1024 <= uploaded <= 1024 * 1024 + 10
    assert client.head_object(Bucket=bucket, Key="dirty.bin")["ContentLength"] == 1024 * 1024 + 10


def test_nomultipart_uploads_in_one_put(moto_server, bucket, public_dir):
    client = moto_server.client()
    with mount_with(moto_server, bucket, public_dir, ["nomultipart", "multipart_threshold=5"]) as mount:
        (mount.mountpoint / "single.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    assert "-" not in client.head_object(Bucket=bucket, Key="single.bin")["ETag"]
    with mount_with(moto_server, bucket, public_dir, ["multipart_threshold=5", "multipart_size=5"]) as mount:
        (mount.mountpoint / "multi.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    assert client.head_object(Bucket=bucket, Key="multi.bin")["ETag"].endswith('-2"')


def test_use_cache_and_ensure_diskfree(moto_server, bucket, public_dir):
    cache = public_dir / "cache"
    cache.mkdir()
    options = [f"use_cache={cache}"]
    with mount_with(moto_server, bucket, public_dir, options) as mount:
        from ocifs.run.mount import pidfile_path
        pid = int(pidfile_path(str(mount.mountpoint)).read_text())
        with open(mount.mountpoint / "staged.bin", "wb") as f:
            f.write(b"s")
            f.flush()
            staged = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            assert any(target.startswith(str(cache)) for target in staged), staged
    free_mib = shutil.disk_usage(cache).free // (1024 * 1024)
    with mount_with(moto_server, bucket, public_dir, options + [f"ensure_diskfree={free_mib + 1024}"]) as mount:
        with pytest.raises(OSError) as info:
            with open(mount.mountpoint / "nospace.bin", "wb") as f:
                f.write(b"n")
        assert info.value.errno == 28  # ENOSPC
    stored = moto_server.client().get_object(Bucket=bucket, Key="nospace.bin")["Body"].read()
    assert stored == b""  # the file was created; the refused write left nothing in it


def test_dbg_level_logs_one_line_per_operation(moto_server, bucket, public_dir):
    mount = OcifsMount(moto_server, bucket, public_dir / "dbg", ["dbglevel=dbg"], passwd_dir=public_dir)
    with mount:
        (mount.mountpoint / "op.txt").write_text("op")
        with pytest.raises(FileNotFoundError):
            (mount.mountpoint / "absent.txt").stat()
    log = mount.log_text()
    assert re.search(r"create\(1, 'op.txt', \d+, \d+\) -> ok  [\d.]+ ms", log), log[-2000:]
    assert re.search(r"write\(\d+, 0, 'op'\) -> ok", log)
    assert re.search(r"lookup\(1, 'absent.txt'\) -> ENOENT", log)
    assert moto_server.secret_key not in log


def test_sighup_reopens_the_log_after_rotation(moto_server, bucket, public_dir):
    from ocifs.run.mount import pidfile_path
    mount = OcifsMount(moto_server, bucket, public_dir / "hup", ["dbglevel=info"], passwd_dir=public_dir)
    with mount:
        pid = int(pidfile_path(str(mount.mountpoint)).read_text())
        rotated = mount.logfile.with_suffix(".log.1")
        mount.logfile.rename(rotated)
        os.kill(pid, signal.SIGHUP)
        (mount.mountpoint / "after.txt").write_text("a")
        assert os.path.exists(f"/proc/{pid}")  # SIGHUP does not stop the mount
    assert "uploaded after.txt" in mount.log_text()
    assert "uploaded after.txt" not in rotated.read_text()
