"""Mount lifecycle through the real command: signals, ``ocifs umount``, stale mounts.

What a user relies on: SIGTERM/SIGINT (systemd stop, Ctrl+C) upload everything written, even
through a descriptor still open, then unmount and exit 0, leaving a usable mountpoint (no
"Transport endpoint is not connected"); ``ocifs umount`` returns with the data in the bucket
and no process left; a mount whose process was killed is cleared by the next mount.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time

import pytest

from mounting import OCIFS, is_mounted, unique_bucket


def processes_mentioning(text: str) -> list[str]:
    result = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if line.strip()]


def wait_no_process(text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while processes_mentioning(text):
        assert time.monotonic() < deadline, f"processes left: {processes_mentioning(text)}"
        time.sleep(0.1)


def body(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture
def reaper():
    """Processes to kill at the end of a test, whatever happened."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_open_unflushed_file(s3_server, mount_factory, reaper, sig):
    bucket = unique_bucket("sig")
    s3_server.create_bucket(bucket)
    client = s3_server.client()
    mount = mount_factory(s3_server, bucket)
    proc = mount.start_foreground()
    reaper.append(proc)

    # One file written and closed, one still open for writing with data never flushed.
    (mount.mountpoint / "closed.txt").write_bytes(b"closed file\n")
    data = os.urandom(2 * 1024 * 1024 + 17)
    fd = os.open(mount.mountpoint / "open.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.write(fd, data[:1024 * 1024]) == 1024 * 1024
        assert os.write(fd, data[1024 * 1024:]) == len(data) - 1024 * 1024

        started = time.monotonic()
        status = mount.stop_foreground(sig, timeout=120)
        elapsed = time.monotonic() - started
        stdout, stderr = proc.communicate(timeout=10)
        log = mount.log_text()
        assert status == 0, f"exit {status}; stderr: {stderr!r}; log:\n{log}"
        assert "Traceback" not in stderr and "Traceback" not in log, f"{stderr}\n{log}"
        assert elapsed < 60, f"took {elapsed:.1f}s to stop"

        # Everything is in the bucket, including what was written through the open descriptor.
        assert body(client, bucket, "closed.txt") == b"closed file\n"
        assert body(client, bucket, "open.bin") == data

        # The mount is gone and the mountpoint is a plain, usable directory again.
        mount.wait_gone(timeout=10)
        os.stat(mount.mountpoint)
        assert os.listdir(mount.mountpoint) == []

        # The still-open descriptor is dead; using it fails cleanly instead of hanging.
        with pytest.raises(OSError) as info:
            os.write(fd, b"late")
        assert info.value.errno in (errno.ENOTCONN, errno.EIO, errno.ENODEV), info.value
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # ENOTCONN from the dead connection's flush is acceptable
    os.stat(mount.mountpoint)
    wait_no_process(str(mount.mountpoint), timeout=10)


def test_umount_daemonized(s3_server, mount_factory):
    bucket = unique_bucket("umount")
    s3_server.create_bucket(bucket)
    client = s3_server.client()
    mount = mount_factory(s3_server, bucket).mount()
    assert processes_mentioning(str(mount.mountpoint)), "no ocifs process behind the mount"

    files = {f"dir/file{i}.txt": f"content {i}\n".encode() for i in range(5)}
    files["big.bin"] = os.urandom(27 * 1024 * 1024)  # multipart
    (mount.mountpoint / "dir").mkdir()
    for name, content in files.items():
        (mount.mountpoint / name).write_bytes(content)

    result = subprocess.run([*OCIFS, "umount", str(mount.mountpoint)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    assert not is_mounted(mount.mountpoint)
    # Data is in the bucket as soon as `ocifs umount` returns.
    for name, content in files.items():
        assert body(client, bucket, name) == content, name
    wait_no_process(str(mount.mountpoint), timeout=10)
    os.stat(mount.mountpoint)
    assert "Traceback" not in mount.log_text()


def test_umount_waits_for_process_exit(s3_server, mount_factory):
    """After `ocifs umount` returns, the mount process is gone (a script may go on at once)."""
    bucket = unique_bucket("umountwait")
    s3_server.create_bucket(bucket)
    mount = mount_factory(s3_server, bucket).mount()
    (mount.mountpoint / "f.txt").write_bytes(b"x")
    result = subprocess.run([*OCIFS, "umount", str(mount.mountpoint)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    left = processes_mentioning(str(mount.mountpoint))
    assert not left, f"ocifs umount returned while the mount process still runs: {left}"


def test_umount_busy_mount_fails_cleanly(s3_server, mount_factory):
    """`ocifs umount` while a file is open: one line, non-zero, and the mount keeps working."""
    bucket = unique_bucket("busy")
    s3_server.create_bucket(bucket)
    client = s3_server.client()
    mount = mount_factory(s3_server, bucket).mount()
    path = mount.mountpoint / "held.txt"
    with open(path, "wb") as held:
        held.write(b"first\n")
        held.flush()
        result = subprocess.run([*OCIFS, "umount", str(mount.mountpoint)], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode != 0, "umount of a busy mount succeeded"
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("ocifs:"), result.stderr
        assert "busy" in lines[0].lower(), lines[0]
        assert is_mounted(mount.mountpoint)
        held.write(b"second\n")
    assert body(client, bucket, "held.txt") == b"first\nsecond\n"
    assert path.read_bytes() == b"first\nsecond\n"
    mount.umount()
    wait_no_process(str(mount.mountpoint), timeout=10)


def test_stale_mount_is_cleared_by_next_mount(s3_server, mount_factory, reaper):
    bucket = unique_bucket("stale")
    s3_server.create_bucket(bucket)
    client = s3_server.client()
    mount = mount_factory(s3_server, bucket)
    proc = mount.start_foreground()
    reaper.append(proc)
    (mount.mountpoint / "before.txt").write_bytes(b"before the crash\n")

    proc.kill()
    proc.wait(timeout=30)
    assert is_mounted(mount.mountpoint)
    with pytest.raises(OSError) as info:
        os.stat(mount.mountpoint)
    assert info.value.errno == errno.ENOTCONN

    result = subprocess.run(mount.argv(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"mount over a stale mount failed: {result.stderr!r}\n{mount.log_text()}"
    assert "Traceback" not in result.stderr
    assert all(line.startswith("ocifs:") for line in result.stderr.splitlines()), result.stderr
    assert is_mounted(mount.mountpoint)
    with open("/proc/mounts") as mounts:
        entries = [line for line in mounts if line.split()[1] == str(mount.mountpoint.resolve())]
    assert len(entries) == 1, f"the stale mount is still stacked under the new one: {entries}"

    assert (mount.mountpoint / "before.txt").read_bytes() == b"before the crash\n"
    (mount.mountpoint / "after.txt").write_bytes(b"after\n")
    assert body(client, bucket, "after.txt") == b"after\n"
    assert sorted(os.listdir(mount.mountpoint)) == ["after.txt", "before.txt"]
    mount.umount()
    wait_no_process(str(mount.mountpoint), timeout=10)
