"""A user without privileges mounts and unmounts where FUSE allows it (fusermount3 is setuid)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mounting import is_mounted, unique_bucket


def as_user(user: str, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True,
                          timeout=60, **kwargs)


@pytest.fixture
def user_home(dev_fuse_for_everyone):
    if shutil.which("runuser") is None:
        pytest.skip("runuser (util-linux) is not installed")
    probe = as_user("nobody", sys.executable, "-c", "import ocifs, pyfuse3")
    if probe.returncode != 0:
        pytest.skip(f"this interpreter is not usable by other users ({sys.executable}); "
                    "scripts/setup.sh builds .venv from Debian's /usr/bin/python3, which is")
    home = Path(tempfile.mkdtemp(prefix="ocifs-nonroot-"))
    home.chmod(0o755)
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    yield home, nobody
    shutil.rmtree(home, ignore_errors=True)


def test_unprivileged_mount_and_umount(moto_server, user_home):
    home, nobody = user_home
    bucket = unique_bucket("nonroot")
    moto_server.create_bucket(bucket)
    mnt = home / "mnt"
    passwd = home / "passwd"
    for path in (mnt,):
        path.mkdir()
    passwd.write_text(f"{moto_server.access_key}:{moto_server.secret_key}\n")
    passwd.chmod(0o600)
    for path in (mnt, passwd):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    opts = f"url={moto_server.endpoint_url},use_path_request_style,passwd_file={passwd}"
    mounted = as_user("nobody", sys.executable, "-m", "ocifs", "mount", bucket, str(mnt), "-o", opts, env=env)
    try:
        assert mounted.returncode == 0, mounted.stderr
        assert is_mounted(mnt)
        wrote = as_user("nobody", "sh", "-c", f"echo mine > {mnt}/mine.txt && ls -ln {mnt}", env=env)
        assert wrote.returncode == 0, wrote.stderr
        assert f" {nobody.pw_uid} " in wrote.stdout
        meta = moto_server.client().head_object(Bucket=bucket, Key="mine.txt")["Metadata"]
        assert meta["uid"] == str(nobody.pw_uid)
        unmounted = as_user("nobody", sys.executable, "-m", "ocifs", "umount", str(mnt), env=env)
        assert unmounted.returncode == 0, unmounted.stderr
        assert not is_mounted(mnt)
    finally:
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
