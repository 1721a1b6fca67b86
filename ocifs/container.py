"""``ocifs container``: the image entrypoint, a drop-in for the efrecon/s3fs sidecar's.

It reads the same environment (AWS_S3_BUCKET, AWS_S3_URL, AWS_S3_ACCESS_KEY_ID,
AWS_S3_SECRET_ACCESS_KEY and their ``*_FILE`` forms, AWS_S3_AUTHFILE, AWS_S3_ROOTDIR,
AWS_S3_MOUNT, AWS_S3_ENVFILE, UID, GID, S3FS_DEBUG, S3FS_ARGS) plus a few of its own
(AWS_S3_REGION, OCI_NAMESPACE/OCI_REGION, OCIFS_STOP_TIMEOUT, OCIFS_S3FS_COMPAT), and mounts
in its own process: it is PID 1 and must own SIGTERM/SIGINT, because a stop has to upload the
dirty files and unmount before the container goes away, else the host is left with
"Transport endpoint is not connected".

Two stages, one process: the first turns the keys into a passwd file (mode 600) and re-execs
itself without them, so neither the command nor /proc/1/environ carries a secret (removing
them from ``os.environ`` alone would not change /proc/PID/environ).  The second mounts, runs
COMMAND once the mount answers, and on the first signal stops COMMAND, uploads, unmounts and
exits 0; a second signal or OCIFS_STOP_TIMEOUT seconds give up, lazily unmount and exit 1
naming what was not uploaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import grp
import logging
import os
import pwd
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, MutableMapping

import trio

from .logs import setup_logging
from .mount import (Mount, MountError, MountHooks, MountSpec, fusermount_unmount,
                    is_fuse_mounted, is_stale_mount, parse_bucket, prepare, run_mount)
from .options import MountOptions, OptionError, parse_options

log = logging.getLogger(__name__)

DEFAULT_URL = "https://s3.amazonaws.com"
DEFAULT_ROOTDIR = "/opt/s3fs"
DEFAULT_STOP_TIMEOUT = 30.0
# Seconds past OCIFS_STOP_TIMEOUT before a stop stuck in a store request (a thread trio
# cannot cancel) is cut short: lazy unmount and exit.
BACKSTOP_SLACK = 5.0
GIVE_UP_GRACE = 2.0  # after a second signal, before that same cut

# The old image's messages, word for word: scripts and people grep for them.
NO_CREDENTIALS = "You need to provide some credentials!!"
NO_BUCKET = "No bucket name provided!"

SECRET_VARIABLES = ("AWS_S3_ACCESS_KEY_ID", "AWS_S3_SECRET_ACCESS_KEY",
                    "AWS_S3_ACCESS_KEY_ID_FILE", "AWS_S3_SECRET_ACCESS_KEY_FILE")
_ENVFILE_LINE = re.compile(
    r"^\s*(?:export\s+)?(?P<name>(?:AWS_S3|S3FS|OCI|OCIFS)_[A-Z0-9_]+|UID|GID)=(?P<value>.*)$")


class ContainerError(Exception):
    """A reason the entrypoint cannot mount; its message is printed as is, on one line."""


# -- the environment -------------------------------------------------------------------------


def parse_envfile_value(raw: str) -> str:
    """``"x"``/``'x'`` lose their quotes; unquoted values lose a trailing `` # comment``."""
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return re.split(r"\s+#", value, maxsplit=1)[0].strip()


def read_envfile(path: str) -> dict[str, str]:
    """The variables an AWS_S3_ENVFILE sets; other lines (comments, anything else) are skipped,
    as the old image's ``grep`` did, so the file cannot set arbitrary variables."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ContainerError(f"cannot read AWS_S3_ENVFILE {path}: {exc.strerror}") from None
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _ENVFILE_LINE.match(line)
        if match:
            found[match["name"]] = parse_envfile_value(match["value"])
    return found


def load_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with AWS_S3_ENVFILE applied; the file wins, as in the old image."""
    env = dict(environ)
    if env.get("AWS_S3_ENVFILE"):
        env.update(read_envfile(env["AWS_S3_ENVFILE"]))
    return env


def _first_line(variable: str, path: str) -> str:
    """Docker secrets: the value is the first line of the file."""
    try:
        with open(path) as secret:
            line = secret.readline()
    except OSError as exc:
        raise ContainerError(f"cannot read {variable} {path}: {exc.strerror}") from None
    value = line.strip()
    if not value:
        raise ContainerError(f"{variable} {path} is empty")
    return value


def _int(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ContainerError(f"{name} must be a number, not {text!r}") from None
    if value < 0:
        raise ContainerError(f"{name} must not be negative")
    return value


def split_s3fs_args(text: str) -> tuple[list[str], bool]:
    """S3FS_ARGS as option items, with or without ``-o`` (``-o a,b -o c``, ``-oa``, ``a,b``);
    returns (items, debug) where ``-d`` asks for debug output as it does for s3fs."""
    items: list[str] = []
    debug = False
    for token in text.split():
        if token == "-o":
            continue
        if token.startswith("-o"):
            token = token[2:]
        elif token in ("-d", "-f"):
            debug = debug or token == "-d"  # -f: always in the foreground here
            continue
        elif token.startswith("-"):
            raise ContainerError(f"S3FS_ARGS: {token} is not supported (give -o options)")
        items.extend(item.strip() for item in token.split(",") if item.strip())
    return items, debug


@dataclasses.dataclass
class Settings:
    """What the environment asks for, checked; the secret never shows in a repr."""

    bucket: str
    url: str | None
    rootdir: Path
    mountpoint: Path
    authfile: Path | None
    access_key: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    uid: int | None = None
    gid: int | None = None
    debug: bool = False
    s3fs_args: list[str] = dataclasses.field(default_factory=list)
    region: str | None = None
    oci_namespace: str | None = None
    oci_region: str | None = None
    s3fs_compat: bool = False
    stop_timeout: float = DEFAULT_STOP_TIMEOUT

    @property
    def passwd_file(self) -> Path:
        """The user's AWS_S3_AUTHFILE, else the file this entrypoint generates."""
        return self.authfile or self.rootdir / "passwd-s3fs"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def rootdir_and_mountpoint(env: Mapping[str, str]) -> tuple[Path, Path]:
    rootdir = Path(env.get("AWS_S3_ROOTDIR") or DEFAULT_ROOTDIR)
    return rootdir, Path(env.get("AWS_S3_MOUNT") or rootdir / "bucket")


def _check_required(env: Mapping[str, str]) -> None:
    """The old image's two checks, in its order: some credentials, then a bucket."""
    if not any(env.get(name) for name in SECRET_VARIABLES + ("AWS_S3_AUTHFILE",)):
        raise ContainerError(NO_CREDENTIALS)
    if not env.get("AWS_S3_BUCKET"):
        raise ContainerError(NO_BUCKET)


def _credentials(env: Mapping[str, str]) -> tuple[Path | None, str, str]:
    """(authfile, key, secret): AWS_S3_AUTHFILE, when set, is used as is; a ``*_FILE`` beats
    the plain variable."""
    if env.get("AWS_S3_AUTHFILE"):
        return Path(env["AWS_S3_AUTHFILE"]), "", ""
    values = {}
    for name in ("AWS_S3_ACCESS_KEY_ID", "AWS_S3_SECRET_ACCESS_KEY"):
        path = env.get(f"{name}_FILE")
        values[name] = _first_line(f"{name}_FILE", path) if path else env.get(name, "")
        if not values[name]:
            raise ContainerError(f"{name} (or {name}_FILE) is not set")
    return None, values["AWS_S3_ACCESS_KEY_ID"], values["AWS_S3_SECRET_ACCESS_KEY"]


def read_settings(env: Mapping[str, str]) -> Settings:
    """Check the environment (after the envfile) and read secret files; no other I/O."""
    _check_required(env)
    authfile, key, secret = _credentials(env)
    rootdir, mountpoint = rootdir_and_mountpoint(env)
    args, dash_d = split_s3fs_args(env.get("S3FS_ARGS", ""))
    namespace, oci_region = env.get("OCI_NAMESPACE") or None, env.get("OCI_REGION") or None
    if (namespace is None) != (oci_region is None):
        raise ContainerError("OCI_NAMESPACE and OCI_REGION go together")
    try:
        stop_timeout = float(env.get("OCIFS_STOP_TIMEOUT") or DEFAULT_STOP_TIMEOUT)
    except ValueError:
        raise ContainerError("OCIFS_STOP_TIMEOUT must be a number of seconds") from None
    return Settings(
        bucket=env["AWS_S3_BUCKET"], url=env.get("AWS_S3_URL") or None, rootdir=rootdir,
        mountpoint=mountpoint, authfile=authfile, access_key=key, secret_key=secret,
        uid=_int(env, "UID"), gid=_int(env, "GID"),
        debug=env.get("S3FS_DEBUG", "").strip() == "1" or dash_d, s3fs_args=args,
        region=env.get("AWS_S3_REGION") or None, oci_namespace=namespace, oci_region=oci_region,
        s3fs_compat=_truthy(env.get("OCIFS_S3FS_COMPAT")), stop_timeout=stop_timeout)


def option_items(settings: Settings) -> list[str]:
    """The ``-o`` items, in the old image's order: S3FS_ARGS first, then what the variables
    set (so AWS_S3_URL, UID and GID win over the same option in S3FS_ARGS)."""
    items = ["dbglevel=warn"] + settings.s3fs_args  # docker logs show warnings unless S3FS_ARGS says
    items.append(f"passwd_file={settings.passwd_file}")
    if settings.url or not settings.oci_namespace:
        items.append(f"url={settings.url or DEFAULT_URL}")
    if settings.uid is not None:
        items.append(f"uid={settings.uid}")
    if settings.gid is not None:
        items.append(f"gid={settings.gid}")
    if settings.region:
        items.append(f"endpoint={settings.region}")
    if settings.oci_namespace:
        items += [f"oci_namespace={settings.oci_namespace}", f"oci_region={settings.oci_region}"]
    if settings.s3fs_compat:
        items += ["fsname=s3fs", "subtype=s3fs"]
    if settings.debug:
        items.append("dbglevel=dbg")
    return items


def mount_argv(settings: Settings) -> list[str]:
    """The equivalent ``ocifs mount`` command line (logged, and what a test can compare)."""
    return ["mount", settings.bucket, str(settings.mountpoint), "-o", ",".join(option_items(settings))]


def mount_options(settings: Settings) -> MountOptions:
    try:
        return parse_options([",".join(option_items(settings))])
    except OptionError as exc:
        raise ContainerError(f"ocifs: {exc}") from None


def mount_spec(settings: Settings) -> MountSpec:
    """What to mount, without touching the network or the mountpoint."""
    try:
        bucket, prefix = parse_bucket(settings.bucket)
    except MountError as exc:
        raise ContainerError(f"ocifs: {exc}") from None
    return MountSpec(bucket, prefix, str(settings.mountpoint), mount_options(settings),
                     foreground=True, stop_timeout=settings.stop_timeout)


# -- stage 1: secrets into a passwd file, then re-exec without them ---------------------------


def write_passwd_file(path: Path, key: str, secret: str) -> None:
    """``KEY:SECRET`` with mode 600 from the first byte (s3fs refuses a readable one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"{key}:{secret}\n".encode())
    finally:
        os.close(fd)


def has_secrets(environ: Mapping[str, str]) -> bool:
    """Whether this process was started with something that must not outlive stage 1."""
    return any(environ.get(name) for name in SECRET_VARIABLES + ("AWS_S3_ENVFILE",))


def scrubbed_environment(env: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """The environment of stage 2: no keys, no envfile (already applied), the passwd file's path."""
    clean = {k: v for k, v in env.items() if k not in SECRET_VARIABLES and k != "AWS_S3_ENVFILE"}
    clean["AWS_S3_AUTHFILE"] = str(settings.passwd_file)
    return clean


def reexec_without_secrets(env: Mapping[str, str], settings: Settings) -> None:
    """Write the passwd file (unless AWS_S3_AUTHFILE) and replace this process, same PID."""
    if settings.authfile is None:
        try:
            write_passwd_file(settings.passwd_file, settings.access_key, settings.secret_key)
        except OSError as exc:
            raise ContainerError(f"cannot write {settings.passwd_file}: {exc.strerror}") from None
        log.info("wrote %s (mode 600)", settings.passwd_file)
    log.debug("restarting without the secret variables in the environment")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execve(sys.executable, sys.orig_argv, scrubbed_environment(env, settings))


# -- stage 2: mount and serve ----------------------------------------------------------------


def clear_stale_mount(path: Path) -> None:
    """A predecessor killed with SIGKILL leaves ENOTCONN at the mountpoint: detach it."""
    if is_stale_mount(str(path)):
        log.warning("clearing stale mount at %s (Transport endpoint is not connected)", path)
        result = fusermount_unmount(str(path), lazy=True)
        if result.returncode != 0:
            raise ContainerError(f"cannot clear the stale mount at {path}: {result.stderr.strip()}")


def in_container_init() -> bool:
    """PID 1 is where the image runs us; only there may /etc/passwd be edited."""
    return os.getpid() == 1


def run_as(settings: Settings) -> tuple[int, int] | None:
    """(uid, gid) to drop to: UID > 0 while root, if an account has that uid (created when we
    are the container's PID 1, as the old image did: fusermount3 needs a user name)."""
    if os.geteuid() != 0 or not settings.uid:
        return None
    try:
        account = pwd.getpwuid(settings.uid)
    except KeyError:
        if not in_container_init():
            log.info("no account has uid %d: files show uid %d, the filesystem runs as root",
                     settings.uid, settings.uid)
            return None
        gid = settings.gid or 0
        create_account(settings.uid, gid)
        return settings.uid, gid
    return settings.uid, settings.gid if settings.gid is not None else account.pw_gid


def create_account(uid: int, gid: int) -> None:
    """Append a group and a user named after the ids (no useradd in every base image)."""
    if gid > 0:
        try:
            grp.getgrgid(gid)
        except KeyError:
            with open("/etc/group", "a") as groups:
                groups.write(f"ocifs{gid}:x:{gid}:\n")
    with open("/etc/passwd", "a") as users:
        users.write(f"ocifs{uid}:x:{uid}:{gid}:ocifs:/nonexistent:/usr/sbin/nologin\n")
    log.info("created user ocifs%d (uid %d, gid %d)", uid, uid, gid)


def open_fuse_device() -> None:
    """libfuse opens /dev/fuse as the user before it calls fusermount3; docker copies the host's
    mode into the container, and some hosts have 0600.  Only our own container's node changes."""
    try:
        mode = os.stat("/dev/fuse").st_mode
    except OSError:
        return
    if mode & 0o006 == 0o006:
        return
    if not in_container_init():
        log.warning("/dev/fuse is mode %04o: an unprivileged user cannot mount", mode & 0o7777)
        return
    os.chmod("/dev/fuse", 0o666)
    log.info("/dev/fuse was mode %04o: made it 0666 (in this container only)", mode & 0o7777)


def give_state_directory(rootdir: Path, uid: int, gid: int) -> None:
    """The upload journal lives under $XDG_STATE_HOME for a non-root user; HOME is still root's
    after the drop, so give the user a directory of its own beside the passwd file."""
    if os.environ.get("XDG_STATE_HOME"):
        return
    state = rootdir / "state"
    try:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(state, uid, gid)
    except OSError as exc:
        log.warning("cannot prepare %s: %s", state, exc.strerror)
        return
    os.environ["XDG_STATE_HOME"] = str(state)


def drop_privileges(uid: int, gid: int) -> None:
    """Become the unprivileged owner for good (fusermount3 then mounts for us)."""
    os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    log.info("running as uid %d, gid %d", uid, gid)


def probe(mountpoint: str) -> None:
    """A cheap real operation: the filesystem answers statfs and a listing of its root."""
    os.statvfs(mountpoint)
    os.listdir(mountpoint)


class SignalLatch:
    """SIGTERM/SIGINT before the mount serves: PID 1 ignores SIGTERM without a handler, and a
    KeyboardInterrupt mid-mount would leave it dead.  Latched, then handed to the mount."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.mount: Mount | None = None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum
        if self.mount is not None:
            self.mount.request_stop(f"signal {signal.Signals(signum).name}")

    def attach(self, mount: Mount) -> None:
        self.mount = mount
        if self.received is not None:
            mount.request_stop(f"signal {signal.Signals(self.received).name}")


def _exit_status(returncode: int) -> int:
    """A shell's convention: killed by signal N → 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class ContainerHooks(MountHooks):
    """Runs COMMAND once the mount answers; stops it first when the mount stops."""

    def __init__(self, command: list[str], bucket: str, latch: SignalLatch, stop_timeout: float) -> None:
        self.command = command
        self.bucket = bucket
        self.latch = latch
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None
        self.exit_status: int | None = None  # set when COMMAND (or the mount check) ends the run
        self.mount: Mount | None = None
        self.finished = threading.Event()

    def live(self, mount: Mount) -> None:
        self.mount = mount
        self.latch.attach(mount)
        threading.Thread(target=self._start_command, name="command", daemon=True).start()
        if in_container_init():
            threading.Thread(target=self._reap_orphans, name="reaper", daemon=True).start()

    def _end(self, status: int, reason: str) -> None:
        assert self.mount is not None
        if not self.mount.stopping:
            self.exit_status = status
            self.mount.request_stop(reason)

    def _start_command(self) -> None:
        """In a thread: the mount must answer before COMMAND runs (the old image's stat)."""
        assert self.mount is not None
        mountpoint = self.mount.spec.mountpoint
        try:
            probe(mountpoint)
        except OSError as exc:
            log.error("Mount failure: %s: %s", mountpoint, exc.strerror)
            self._end(1, "mount check failed")
            return
        log.info("Mounted bucket %s onto %s", self.bucket, mountpoint)
        if not self.command or self.mount.stopping:
            return
        try:
            self.process = subprocess.Popen(self.command)
        except OSError as exc:
            log.error("cannot run %s: %s", self.command[0], exc.strerror)
            self._end(126 if exc.errno == errno.EACCES else 127, "command failed to start")
            return
        status = _exit_status(self.process.wait())
        log.info("command exited with status %d", status)
        self._end(status, "command exited")

    def _reap_orphans(self) -> None:
        """PID 1's duty: collect zombies COMMAND left behind (not COMMAND itself)."""
        assert self.mount is not None
        while not self.mount.stopping:
            time.sleep(1.0)
            for pid in _zombie_children():
                if self.process is None or pid != self.process.pid:
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass

    async def stopping(self, reason: str) -> None:
        log.info("stopping (%s): uploading dirty files, then unmounting", reason)
        threading.Thread(target=self._backstop, name="backstop", daemon=True).start()
        process = self.process
        if process is None or process.poll() is not None:
            return
        log.info("sending SIGTERM to the command (pid %d)", process.pid)
        process.send_signal(signal.SIGTERM)
        while process.poll() is None:
            await trio.sleep(0.05)

    def _backstop(self) -> None:
        """Giving up (second signal, timeout) cannot interrupt a store request stuck in a worker
        thread, and trio waits for it: past a short grace, exit without it."""
        assert self.mount is not None
        deadline = time.monotonic() + self.stop_timeout + BACKSTOP_SLACK
        while not self.finished.wait(0.1):
            if self.mount.giving_up:
                deadline = min(deadline, time.monotonic() + GIVE_UP_GRACE)
            if time.monotonic() > deadline:
                self._hard_stop()

    def _hard_stop(self) -> None:
        """The stop is stuck (a store request that does not return): detach and exit."""
        assert self.mount is not None
        unsaved = self.mount.dirty_paths()
        log.error("the stop is stuck in a store request: lazy unmount and exit")
        if unsaved:
            print(f"ocifs: not uploaded: {', '.join(unsaved)}", file=sys.stderr, flush=True)
        fusermount_unmount(self.mount.spec.mountpoint, lazy=True)
        os._exit(1)

    def finish(self) -> None:
        """After unmounting: COMMAND must not outlive us (it would be killed with PID 1 anyway)."""
        self.finished.set()
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _zombie_children() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] == "Z" and fields[1] == me:
            found.append(int(entry))
    return found


def serve(settings: Settings, command: list[str]) -> int:
    """Stage 2: mount at AWS_S3_MOUNT, run COMMAND, stop cleanly on a signal."""
    latch = SignalLatch()
    latch.install()
    clear_stale_mount(settings.mountpoint)
    try:
        settings.mountpoint.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ContainerError(f"cannot create {settings.mountpoint}: {exc.strerror}") from None
    owner = run_as(settings)
    if owner:
        try:
            os.chown(settings.mountpoint, *owner)  # fusermount3 wants the user to own it
        except OSError as exc:
            log.warning("cannot chown %s to %d:%d: %s", settings.mountpoint, *owner, exc.strerror)
    spec = mount_spec(settings)
    log.info("ocifs %s", " ".join(mount_argv(settings)))
    try:
        prepare(spec)  # as root: reads the passwd file, checks the bucket
    except MountError as exc:
        raise ContainerError(f"ocifs: {exc}") from None
    if latch.received is not None:
        log.info("stopped before mounting")
        return 0
    if owner:
        open_fuse_device()
        give_state_directory(settings.rootdir, *owner)
        drop_privileges(*owner)
    hooks = ContainerHooks(command, settings.bucket, latch, settings.stop_timeout)
    try:
        status = run_mount(spec, hooks=hooks)
    except MountError as exc:
        raise ContainerError(f"ocifs: {exc}") from None
    finally:
        hooks.finish()
    if status == 0 and hooks.exit_status is not None:
        return hooks.exit_status
    return status


# -- healthcheck -----------------------------------------------------------------------------


def _probe_child(mountpoint: str, owner: tuple[int, int] | None) -> int:
    """In a forked child: everything that may touch the mount (even realpath) happens here."""
    try:
        if owner:  # the FUSE mount of another user refuses even root without allow_other
            os.setgroups([owner[1]])
            os.setgid(owner[1])
            os.setuid(owner[0])
        real = os.path.realpath(mountpoint)
        if not is_fuse_mounted(real):
            print(f"ocifs healthcheck: {mountpoint} is not mounted", file=sys.stderr)
            return 1
        probe(real)
        return 0
    except OSError as exc:
        print(f"ocifs healthcheck: {mountpoint}: {exc.strerror}", file=sys.stderr)
        return 1


def healthcheck(mountpoint: str, timeout: float, owner: tuple[int, int] | None = None) -> int:
    """0 if the mount answers statfs and a listing within ``timeout`` s, else 1.  The probe runs
    in a child that is killed on timeout: a hung mount must make us unhealthy, not hang us."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _probe_child(mountpoint, owner)
        finally:
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return 0 if os.waitstatus_to_exitcode(status) == 0 else 1
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print(f"ocifs healthcheck: {mountpoint}: no answer within {timeout:g} s", file=sys.stderr)
    return 1


def healthcheck_owner(env: Mapping[str, str]) -> tuple[int, int] | None:
    """The user the entrypoint dropped to (it did if root and an account has UID)."""
    uid, gid = _int(env, "UID"), _int(env, "GID")
    if os.geteuid() != 0 or not uid:
        return None
    try:
        account = pwd.getpwuid(uid)
    except KeyError:
        return None
    return uid, gid if gid is not None else account.pw_gid


# -- entry -----------------------------------------------------------------------------------


def _setup_logging(env: Mapping[str, str]) -> None:
    """Stderr; the entrypoint's own lines always show, the filesystem's with S3FS_DEBUG."""
    setup_logging(logging.DEBUG if env.get("S3FS_DEBUG", "").strip() == "1" else logging.WARNING)
    log.setLevel(logging.DEBUG if env.get("S3FS_DEBUG", "").strip() == "1" else logging.INFO)


def run_healthcheck(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    env = load_environment(environ)
    mountpoint = getattr(args, "mountpoint", None) or str(rootdir_and_mountpoint(env)[1])
    timeout = getattr(args, "timeout", None) or float(env.get("OCIFS_HEALTHCHECK_TIMEOUT") or 5)
    return healthcheck(mountpoint, timeout, healthcheck_owner(env))


def run_entrypoint(command: list[str], environ: MutableMapping[str, str]) -> int:
    env = load_environment(environ)
    _setup_logging(env)
    settings = read_settings(env)
    if has_secrets(environ):
        reexec_without_secrets(env, settings)  # does not return
    return serve(settings, command)


def main(args: argparse.Namespace) -> int:
    """``ocifs container [--healthcheck] [COMMAND...]`` and ``ocifs healthcheck [MOUNTPOINT]``."""
    try:
        if args.command == "healthcheck" or getattr(args, "healthcheck", False):
            return run_healthcheck(args, os.environ)
        return run_entrypoint(list(args.container_command), os.environ)
    except ContainerError as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
