"""Test helpers: run the real ``ocifs`` command against a local S3 server and a real mountpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

OCIFS = [sys.executable, "-m", "ocifs"]


def is_mounted(path: str | Path) -> bool:
    real = os.path.realpath(path)
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == real for line in mounts)


def unique_bucket(stem: str = "t") -> str:
    return f"{stem}-{uuid.uuid4().hex[:12]}"


def write_passwd(directory: Path, access_key: str, secret_key: str, mode: int = 0o600) -> Path:
    path = directory / f"passwd-{uuid.uuid4().hex[:6]}"
    path.write_text(f"{access_key}:{secret_key}\n")
    path.chmod(mode)
    return path


class OcifsMount:
    """One ``ocifs`` mount of ``bucket`` on ``server`` at ``mountpoint``, driven as a user would.

    ``mount()`` runs the daemonizing command (it returns once the mount is live);
    ``start_foreground()`` keeps the process (``-f``) so tests can signal it.
    """

    def __init__(self, server, bucket: str, mountpoint: Path, options: list[str] | tuple = (),
                 passwd_dir: Path | None = None) -> None:
        self.server = server
        self.bucket = bucket
        self.mountpoint = Path(mountpoint)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.passwd = write_passwd(passwd_dir or self.mountpoint.parent,
                                   server.access_key, server.secret_key)
        self.options = list(options)
        self.process: subprocess.Popen | None = None
        self.logfile = self.mountpoint.parent / f"{self.mountpoint.name}.log"

    def argv(self, foreground: bool = False) -> list[str]:
        opts = [f"url={self.server.endpoint_url}", "use_path_request_style",
                f"passwd_file={self.passwd}", f"logfile={self.logfile}", "dbglevel=info",
                *self.options]
        return [*OCIFS, "mount", self.bucket, str(self.mountpoint), "-o", ",".join(opts)] + (
            ["-f"] if foreground else [])

    def mount(self) -> "OcifsMount":
        result = subprocess.run(self.argv(), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"mount failed: {result.stderr}"
        assert is_mounted(self.mountpoint)
        return self

    def start_foreground(self) -> subprocess.Popen:
        self.process = subprocess.Popen(self.argv(foreground=True), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not is_mounted(self.mountpoint):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"foreground mount did not come up: {self.process.communicate()}")
            time.sleep(0.05)
        return self.process

    def stop_foreground(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def umount(self) -> None:
        if is_mounted(self.mountpoint):
            result = subprocess.run([*OCIFS, "umount", str(self.mountpoint)],
                                    capture_output=True, text=True, timeout=120)
            if result.returncode != 0:  # leave nothing behind even if a test failed badly
                subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], capture_output=True)
        if self.process is not None and self.process.poll() is None:
            self.process.wait(timeout=60)
        self.wait_gone()

    def wait_gone(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while is_mounted(self.mountpoint) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_mounted(self.mountpoint)

    def log_text(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""

    def __enter__(self) -> "OcifsMount":
        return self.mount()

    def __exit__(self, *exc) -> None:
        self.umount()


def _s3fs_pids(mountpoint: Path) -> list[int]:
    """Processes of s3fs serving ``mountpoint`` (found by their command line)."""
    wanted = os.fsencode(str(mountpoint))
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"s3fs" and wanted in argv:
            pids.append(int(entry))
    return pids


class S3fsMount:
    """The real s3fs (daemonized, as a user runs it) mounting ``bucket`` at ``mountpoint``."""

    def __init__(self, binary: str, server, bucket: str, mountpoint: Path,
                 options: list[str] | tuple = ()) -> None:
        self.binary = binary
        self.server = server
        self.bucket = bucket
        self.mountpoint = Path(mountpoint)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.passwd = write_passwd(self.mountpoint.parent, server.access_key, server.secret_key)
        self.logfile = self.mountpoint.parent / f"{self.mountpoint.name}-s3fs.log"
        self.options = list(options)
        self.pids: list[int] = []

    def argv(self) -> list[str]:
        opts = [f"url={self.server.endpoint_url}", "use_path_request_style",
                f"passwd_file={self.passwd}", f"logfile={self.logfile}", "dbglevel=warn",
                *self.options]
        return [self.binary, self.bucket, str(self.mountpoint), "-o", ",".join(opts)]

    def log_text(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def mount(self) -> "S3fsMount":
        result = subprocess.run(self.argv(), capture_output=True, text=True, timeout=60)
        deadline = time.monotonic() + 30
        while not is_mounted(self.mountpoint) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not is_mounted(self.mountpoint):
            raise AssertionError(
                f"s3fs did not mount (exit {result.returncode}): {result.stderr}\n{self.log_text()}")
        self.pids = _s3fs_pids(self.mountpoint)
        return self

    def umount(self) -> None:
        for _ in range(50):  # EBUSY while a straggling request finishes: retry
            if not is_mounted(self.mountpoint):
                break
            result = subprocess.run(["fusermount3", "-u", str(self.mountpoint)],
                                    capture_output=True, text=True, timeout=60)
            if result.returncode == 0:
                break
            time.sleep(0.1)
        else:  # leave nothing mounted even if a test failed badly
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], capture_output=True)
        deadline = time.monotonic() + 30
        while is_mounted(self.mountpoint) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_mounted(self.mountpoint), "s3fs mount did not go away"
        # Let the daemon finish its own shutdown (it may still be closing connections).
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in self.pids):
            time.sleep(0.05)
