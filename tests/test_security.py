"""Security: without ``allow_other`` a mount serves its user alone (root included); with it the
kernel enforces file modes against other users; the keys never show in a log, on stderr, or in
the mount process's command line, even at the most verbose settings and when requests fail;
copies of data kept after a failed upload are readable by the mount's user alone.

Already proven elsewhere, not repeated here: another user cannot list root's mount made
without ``allow_other`` (``tests/test_mount_options.py::test_allow_other_lets_other_users_in``),
passwd files readable by group or others are refused (``tests/test_bad_input.py::
test_passwd_file_permissions``), the container entrypoint keeps secrets out of
``/proc/PID/environ`` (``tests/test_container.py``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from mounting import OCIFS, OcifsMount, is_mounted, unique_bucket, write_passwd
from ocifs.run.mount import pidfile_path
from test_nonroot import as_user, user_home  # noqa: F401 (fixture)


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    if shutil.which("runuser") is None:
        pytest.skip("runuser (util-linux) is not installed")
    return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True,
                          text=True, timeout=60)


def test_kernel_enforces_modes_for_other_users(moto_server, public_dir):
    """``-o allow_other,default_permissions``: nobody reads a 0644 file but not a 0600 one,
    cannot write root's files or create in root's 0755 directory, can in a 0777 one."""
    bucket = unique_bucket("perms")
    moto_server.create_bucket(bucket)
    mount = OcifsMount(moto_server, bucket, public_dir / "mnt",
                       ["allow_other", "default_permissions"], passwd_dir=public_dir)
    with mount:
        root = mount.mountpoint
        for name, mode in (("public.txt", 0o644), ("secret.txt", 0o600)):
            (root / name).write_text(f"{name}\n")
            os.chmod(root / name, mode)
        for name, mode in (("shared", 0o755), ("private", 0o700), ("open", 0o777)):
            (root / name).mkdir()
            os.chmod(root / name, mode)
        (root / "private" / "inside.txt").write_text("inside\n")
        os.chmod(root / "private" / "inside.txt", 0o644)

        assert as_nobody("cat", str(root / "public.txt")).stdout == "public.txt\n"
        for argv in (["cat", str(root / "secret.txt")],
                     ["cat", str(root / "private" / "inside.txt")],
                     ["ls", str(root / "private")],
                     ["sh", "-c", f"echo x >> '{root / 'public.txt'}'"],
                     ["touch", str(root / "shared" / "new.txt")],
                     ["chmod", "666", str(root / "public.txt")]):
            denied = as_nobody(*argv)
            assert denied.returncode != 0, argv
            assert "Permission denied" in denied.stderr or "not permitted" in denied.stderr, \
                (argv, denied.stderr)
        made = as_nobody("sh", "-c", f"echo mine > '{root / 'open' / 'mine.txt'}'")
        assert made.returncode == 0, made.stderr
        assert (root / "public.txt").read_text() == "public.txt\n"
        assert not (root / "shared" / "new.txt").exists()
    meta = moto_server.client().head_object(Bucket=bucket, Key="open/mine.txt")["Metadata"]
    assert meta["uid"] == str(pwd.getpwnam("nobody").pw_uid)
    assert int(moto_server.client().head_object(
        Bucket=bucket, Key="public.txt")["Metadata"]["mode"]) & 0o777 == 0o644


class _Keys:
    """The session's server seen with keys of this test alone, so a leak is unambiguous (moto
    accepts any key pair)."""

    def __init__(self, server) -> None:
        self.endpoint_url = server.endpoint_url
        self.access_key = "AKIA" + uuid.uuid4().hex[:16].upper()
        self.secret_key = "Secret/" + uuid.uuid4().hex + "+Key"


def workload(mountpoint: Path, name: str, client, bucket: str) -> None:
    """Every kind of request, including failing ones: a file removed behind the mount's back
    (its GET fails with 404), names that do not exist, a directory that is not empty."""
    root = mountpoint / name
    root.mkdir()
    (root / "dir").mkdir()
    (root / "dir" / "a.txt").write_bytes(b"a" * 5000)
    os.rename(root / "dir" / "a.txt", root / "dir" / "b.txt")
    os.chmod(root / "dir" / "b.txt", 0o600)
    os.symlink("b.txt", root / "dir" / "link")
    assert sorted(os.listdir(root / "dir")) == ["b.txt", "link"]
    assert (root / "dir" / "b.txt").read_bytes() == b"a" * 5000
    (root / "gone.txt").write_bytes(b"soon gone")
    os.stat(root / "gone.txt")
    client.delete_object(Bucket=bucket, Key=f"{name}/gone.txt")
    with pytest.raises(OSError):
        (root / "gone.txt").read_bytes()
    with pytest.raises(OSError):
        os.stat(root / "no" / "such" / "file")
    with pytest.raises(OSError):
        os.rmdir(root / "dir")


def assert_no_keys(keys: _Keys, *texts: str) -> None:
    for text in texts:
        for key in (keys.secret_key, keys.access_key):
            at = text.find(key)
            assert at < 0, f"a key leaked: ...{text[max(0, at - 200):at + 60]}..."


def test_keys_never_in_debug_logs_or_command_line(moto_server, tmp_path):
    """``dbglevel=dbg`` and ``curldbg`` with a log file (daemon), and ``-f -d -d`` with the log
    on stderr: neither key in the log, on stderr, or in ``/proc/PID/cmdline``; and the
    request logging really was on (signatures redacted, not absent)."""
    keys = _Keys(moto_server)
    bucket = unique_bucket("keys")
    moto_server.create_bucket(bucket)
    client = moto_server.client()

    daemon = OcifsMount(keys, bucket, tmp_path / "daemon", ["dbglevel=dbg", "curldbg"])
    started = subprocess.run(daemon.argv(), capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        pid = int(pidfile_path(str(daemon.mountpoint)).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        workload(daemon.mountpoint, "daemon", client, bucket)
    finally:
        daemon.umount()
    log = daemon.log_text()
    assert_no_keys(keys, log, started.stdout, started.stderr, cmdline, environ)
    assert "Authorization" in log and "<redacted>" in log and "404" in log

    mountpoint = tmp_path / "foreground"
    mountpoint.mkdir()
    passwd = write_passwd(tmp_path, keys.access_key, keys.secret_key)
    stderr_path = tmp_path / "foreground.stderr"
    opts = f"url={keys.endpoint_url},use_path_request_style,passwd_file={passwd},curldbg"
    with open(stderr_path, "w") as stderr:  # a file: a full pipe would block the mount
        proc = subprocess.Popen([*OCIFS, "mount", bucket, str(mountpoint), "-o", opts,
                                 "-f", "-d", "-d"], stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 60
            while not is_mounted(mountpoint):
                assert proc.poll() is None and time.monotonic() < deadline, \
                    stderr_path.read_text()[-2000:]
                time.sleep(0.05)
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
            workload(mountpoint, "foreground", client, bucket)
        finally:
            subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
            proc.wait(timeout=60)
    err = stderr_path.read_text()
    assert_no_keys(keys, err, cmdline)
    assert "Sending http request" in err and "<redacted>" in err


def test_recovery_copies_and_journals_are_private(tmp_path):
    """A failed upload's data is copied to ``recovery/``: 0600 files in a 0700 directory,
    whatever the umask, and an existing directory is tightened (they were 0644 in 0755: any
    local user could read the data of a file the mount had kept private)."""
    from ocifs.upload.journal import UploadJournal

    (tmp_path / "state" / "recovery").mkdir(parents=True, mode=0o755)
    (tmp_path / "data").write_bytes(b"private data")
    old_umask = os.umask(0)
    try:
        journal = UploadJournal(tmp_path / "state", "http://127.0.0.1:1", "bucket", "")
        with open(tmp_path / "data", "rb") as staged:
            copy = journal.save_recovery_copy(staged.fileno(), "dir/secret.txt")
        journal.add("dir/big.bin", "upload-id-1")
        assert journal.sync(10)
    finally:
        os.umask(old_umask)
    assert copy is not None and copy.read_bytes() == b"private data"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    assert journal.path is not None and stat.S_IMODE(journal.path.stat().st_mode) == 0o600


def test_without_allow_other_not_even_root_gets_in(moto_server, user_home):
    """allow_other is off by default: a mount made by ``nobody`` serves ``nobody`` alone;
    root, and every other user, is refused by the kernel (EACCES) before ocifs sees a request."""
    home, nobody = user_home
    bucket = unique_bucket("private")
    moto_server.create_bucket(bucket)
    moto_server.client().put_object(Bucket=bucket, Key="inside.txt", Body=b"inside")
    mnt = home / "mnt"
    mnt.mkdir()
    passwd = write_passwd(home, moto_server.access_key, moto_server.secret_key)
    for path in (mnt, passwd):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    opts = f"url={moto_server.endpoint_url},use_path_request_style,passwd_file={passwd}"
    mounted = as_user("nobody", sys.executable, "-m", "ocifs", "mount", bucket, str(mnt),
                      "-o", opts, env=env)
    try:
        assert mounted.returncode == 0, mounted.stderr
        assert as_user("nobody", "cat", str(mnt / "inside.txt"), env=env).stdout == "inside"
        for attempt in (lambda: os.listdir(mnt), lambda: (mnt / "inside.txt").read_bytes()):
            with pytest.raises(PermissionError):
                attempt()
    finally:
        as_user("nobody", sys.executable, "-m", "ocifs", "umount", str(mnt), env=env)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
