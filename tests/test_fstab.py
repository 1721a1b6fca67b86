"""/etc/fstab forms, through mount(8) and mount.fuse3 with a temporary fstab (``mount -T``)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mounting import is_mounted, unique_bucket, write_passwd

SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def fstab_env(moto_server, tmp_path):
    if shutil.which("ocifs", path=SECURE_PATH) is None:
        pytest.skip("ocifs is not on mount's PATH (scripts/setup.sh links it into /usr/local/bin)")
    bucket = unique_bucket("fstab")
    moto_server.create_bucket(bucket)
    moto_server.client().put_object(Bucket=bucket, Key="hello.txt", Body=b"from fstab")
    passwd = write_passwd(tmp_path, moto_server.access_key, moto_server.secret_key)
    opts = f"url={moto_server.endpoint_url},use_path_request_style,passwd_file={passwd}"
    mounts = [tmp_path / name for name in ("legacy", "typed", "skipped")]
    for path in mounts:
        path.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# s3fs-style lines with ocifs\n"
        f"ocifs#{bucket} {mounts[0]} fuse _netdev,allow_other,{opts} 0 0\n"
        f"{bucket} {mounts[1]} fuse.ocifs _netdev,allow_other,nofail,{opts} 0 0\n"
        f"{bucket} {mounts[2]} fuse.ocifs noauto,_netdev,{opts} 0 0\n")
    yield fstab, mounts
    for path in mounts:
        if is_mounted(path):
            subprocess.run(["umount", str(path)], capture_output=True)


def test_mount_all_from_fstab(fstab_env):
    fstab, (legacy, typed, skipped) = fstab_env
    result = subprocess.run(["mount", "-a", "-T", str(fstab)], capture_output=True, text=True,
                            env={"PATH": SECURE_PATH})
    assert result.returncode == 0, result.stderr
    assert is_mounted(legacy) and is_mounted(typed)
    assert not is_mounted(skipped)  # noauto
    assert (legacy / "hello.txt").read_bytes() == b"from fstab"
    assert (typed / "hello.txt").read_bytes() == b"from fstab"
    with open("/proc/mounts") as mounts:
        line = next(line for line in mounts if line.split()[1] == str(typed))
    assert "fuse.ocifs" in line and "allow_other" in line


def test_mount_one_line_by_mountpoint(fstab_env):
    fstab, (_, _, skipped) = fstab_env
    result = subprocess.run(["mount", "-T", str(fstab), str(skipped)], capture_output=True, text=True,
                            env={"PATH": SECURE_PATH})
    assert result.returncode == 0, result.stderr
    assert (skipped / "hello.txt").read_bytes() == b"from fstab"
    subprocess.run(["umount", str(skipped)], check=True)
    assert not is_mounted(skipped)
