"""Mount lifecycle: check everything, daemonize once the mount is live, unmount cleanly.

Everything a user can get wrong (options, credentials, mountpoint, bucket, keys, endpoint) is
checked before the mount exists and before the process detaches, so a bad invocation prints
one line and exits non-zero with nothing left mounted.  A daemonized mount reports readiness
to the waiting parent through a pipe only after ``pyfuse3.init`` succeeded.  SIGTERM/SIGINT
upload every dirty file, then unmount; a second signal (or ``stop_timeout``) gives up on the
uploads.  :class:`MountHooks` lets a program serve alongside the mount (the container entrypoint).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import mimetypes
import os
from pathlib import Path
import re
import signal
import stat
import subprocess
import sys
import time
from typing import Any, Callable

import pyfuse3
import trio

from ocifs.data.datacache import DataCache, cache_dir, delete_cache
from ocifs.data.openfiles import OpenFiles, StagingLimits
from ocifs.data.readahead import keep_read_ahead
from ocifs.fuse.invalidation import KernelInvalidations
from ocifs.fuse.operations import AttrView, Operations, kernel_timeout
from ocifs.meta import objects
from ocifs.meta.cache import LISTING_EXPIRE_MAX, MetaCache
from ocifs.meta.inodes import InodeTable
from ocifs.meta.tree import Tree
from ocifs.procfs import is_zombie, stat_fields
from ocifs.run.logs import reopen_logs, setup_logging
from ocifs.run.observe import MountObserver
from ocifs.run.options import NO_EFFECT, MountOptions, parse_size
from ocifs.s3.client import Connection, make_client, parse_timestamp
from ocifs.s3.lean import LeanRequests
from ocifs.s3.credentials import (ANONYMOUS, Credentials, check_private, find_credentials,
                                  metadata_credentials, require_session_token)
from ocifs.s3.requests import RequestParams, request_params
from ocifs.s3 import oci
from ocifs.s3.store import Store
from ocifs.tasks import Background
from ocifs.units import MiB
from ocifs.upload.journal import UploadJournal, state_dir
from ocifs.upload.multipart import Multipart

log = logging.getLogger(__name__)

NO_MULTIPART = 5 * 1024 * MiB  # a single PUT takes up to 5 GiB
# Retries of the check before mounting: a wrong URL, or a store that is down, is reported in
# seconds (a mount's own requests ride out longer outages, see ocifs.s3.retries).
CHECK_RETRIES = 2


class MountError(Exception):
    """A reason the mount cannot be made; its message is the one line the user sees."""


@dataclasses.dataclass
class MountSpec:
    """What to mount where, after parsing and checking."""

    bucket: str
    prefix: str
    mountpoint: str
    options: MountOptions
    foreground: bool = False
    credentials: Credentials | None = dataclasses.field(default=None, repr=False)
    stop_timeout: float | None = None  # seconds a graceful stop may take before giving up
    oci_rules: bool = False  # the endpoint is OCI's (by its URL or its answers): its name rules


# Characters an S3 API takes in a bucket name (boto3's own check).  Case, underscores and
# length are left to the store: OCI allows upper case and underscores, AWS does not.
_BUCKET_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")


def parse_bucket(text: str) -> tuple[str, str]:
    """``bucket`` or ``bucket:/prefix`` (s3fs's form) -> (bucket, prefix without slashes)."""
    bucket, _, prefix = text.partition(":")
    if not bucket:
        raise MountError(f"bad bucket {text!r}: expected BUCKET or BUCKET:/PREFIX")
    if not _BUCKET_NAME.fullmatch(bucket):
        raise MountError(f"bad bucket name {bucket!r}: letters, digits, '.', '-' and '_' only, "
                         "at most 255 of them")
    return bucket, prefix.strip("/")


def is_stale_mount(path: str) -> bool:
    """ENOTCONN from a dead FUSE daemon.  ``stat`` alone can be answered from the kernel's
    attribute cache for a while after the daemon died; ``statfs`` always asks the daemon."""
    try:
        os.stat(path)
        if is_fuse_mounted(path):
            os.statvfs(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def is_mounted(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == real for line in mounts if len(line.split()) > 1)


def is_fuse_mounted(path: str) -> bool:
    """A FUSE filesystem is mounted at ``path`` (a bind mount there is fine to mount over: in a
    container the mountpoint is the rshared bind that shares the bucket with the host)."""
    real = os.path.realpath(path)
    with open("/proc/mounts") as mounts:
        return any(len(fields) > 2 and fields[1] == real and fields[2].startswith("fuse")
                   for fields in (line.split() for line in mounts))


def fusermount_unmount(path: str, lazy: bool = False) -> subprocess.CompletedProcess:
    args = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [path]
    return subprocess.run(args, capture_output=True, text=True)


def check_mountpoint(path: str) -> str:
    """The resolved path of an existing, unmounted directory; a stale FUSE mount is cleared."""
    path = os.path.abspath(path)
    if is_stale_mount(path):
        print(f"ocifs: clearing stale mount at {path} (Transport endpoint is not connected)",
              file=sys.stderr)
        fusermount_unmount(path, lazy=True)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MountError(f"mountpoint {path} does not exist") from None
    except OSError as exc:
        raise MountError(f"mountpoint {path} cannot be used: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise MountError(f"mountpoint {path} is not a directory")
    if is_fuse_mounted(path):
        raise MountError(f"mountpoint {path} is already mounted")
    return os.path.realpath(path)


def _proxy_url(opts: MountOptions) -> str | None:
    """``proxy`` with ``proxy_cred_file``'s USER:PASS put in, as botocore takes it."""
    if not opts.proxy:
        if opts.proxy_cred_file:
            raise MountError("option proxy_cred_file needs proxy=")
        return None
    url = opts.proxy if "://" in opts.proxy else "http://" + opts.proxy
    if not opts.proxy_cred_file:
        return url
    path = Path(opts.proxy_cred_file).expanduser()
    try:
        check_private(path)
        line = next((l.strip() for l in path.read_text().splitlines()
                     if l.strip() and not l.startswith("#")), "")
    except OSError as exc:
        raise MountError(f"option proxy_cred_file={path} cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise MountError(f"option proxy_cred_file: {exc}") from None
    if ":" not in line:
        raise MountError(f"option proxy_cred_file={path} holds no USER:PASS line")
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{line}@{rest}"  # s3fs's file holds them URL-encoded already


def _client_cert(text: str | None) -> str | tuple[str, str] | None:
    """``ssl_client_cert=CERT[:TYPE[:KEY[:KEYTYPE[:PASS]]]]``: PEM files only (botocore's)."""
    if not text:
        return None
    cert, ctype, key, ktype, *password = (text.split(":") + [""] * 4)[:5]
    for kind in (ctype, ktype):
        if kind and kind.upper() != "PEM":
            raise MountError(f"option ssl_client_cert: type {kind} is not supported (PEM only)")
    if any(password):
        raise MountError("option ssl_client_cert: encrypted keys are not supported")
    for path in filter(None, (cert, key)):
        if not os.path.isfile(path):
            raise MountError(f"option ssl_client_cert: {path} does not exist")
    return (cert, key) if key else cert


def connection_for(opts: MountOptions, params: RequestParams | None = None) -> Connection:
    """The TLS, proxy, signing and header options of a mount, as :mod:`ocifs.s3.client` takes them."""
    return Connection(
        verify=not opts.no_check_certificate, client_cert=_client_cert(opts.ssl_client_cert),
        proxy=_proxy_url(opts), unsigned=opts.public_bucket,
        unsigned_payload=opts.enable_unsigned_payload,
        user_agent_extra=f"ocifs-instance/{opts.instance_name}" if opts.instance_name else None,
        no_user_agent=opts.noua, request_params=params)


def request_params_for(opts: MountOptions) -> RequestParams:
    try:
        return request_params(opts.use_sse, opts.load_sse_c, opts.storage_class,
                              opts.requester_pays, opts.list_object_max_keys, opts.ahbe_conf)
    except ValueError as exc:
        raise MountError(str(exc)) from None


def build_store(spec: MountSpec, retries: int | None = None) -> Store:
    opts = spec.options
    assert spec.credentials is not None
    params = request_params_for(opts)
    retries = opts.retries if retries is None else retries
    client = make_client(opts.url, opts.endpoint, spec.credentials, opts.use_path_request_style,
                         retries, opts.connect_timeout, opts.readwrite_timeout,
                         max_pool=opts.max_thread_count + opts.parallel_count,
                         connection=connection_for(opts, params))
    lean = LeanRequests.for_client(client, spec.bucket, retries, parse_timestamp, params,
                                   user_agent=not opts.noua)
    return Store(client, spec.bucket, spec.prefix, max_threads=opts.max_thread_count,
                 multipart_size=opts.multipart_size * MiB,
                 multipart_threshold=NO_MULTIPART if opts.nomultipart else opts.multipart_threshold * MiB,
                 copy_threshold=opts.singlepart_copy_limit * MiB,
                 copy_part_size=opts.multipart_copy_size * MiB,
                 parallel_count=opts.parallel_count, use_wtf8=opts.use_wtf8, lean=lean)


def prepare(spec: MountSpec) -> MountSpec:
    """Every check that can fail, before anything is mounted or forked."""
    spec.mountpoint = check_mountpoint(spec.mountpoint)
    spec.credentials = credentials_for(spec)
    load_mime_types(spec.options.mime)
    try:
        answer = build_store(spec, min(spec.options.retries, CHECK_RETRIES)).check_bucket_sync()
    except Exception as exc:  # noqa: BLE001 - StoreError already carries a clean message
        raise MountError(f"cannot use bucket {spec.bucket} at {spec.options.url}: {exc}") from None
    spec.oci_rules = oci.region_of(spec.options.url) is not None or oci.answered_like_oci(answer)
    return spec


def credentials_for(spec: MountSpec) -> Credentials:
    """s3fs's credential options: public_bucket, iam_role / ecs, else its usual order."""
    opts = spec.options
    try:
        if opts.public_bucket:
            return ANONYMOUS
        if opts.iam_role or opts.ecs:
            found = metadata_credentials(opts.iam_role, opts.ecs)
        else:
            found = find_credentials(spec.bucket, opts.passwd_file, opts.profile)
        return require_session_token(found) if opts.use_session_token else found
    except ValueError as exc:
        raise MountError(str(exc)) from None


def load_mime_types(path: str | None) -> None:
    """``mime=FILE``: its types win over the system's (/etc/mime.types and the rest, which
    :func:`ocifs.meta.objects.content_type_for` reads anyway, as s3fs does)."""
    if path is None:
        return
    if not os.path.isfile(path):
        raise MountError(f"option mime={path} is not a file")
    mimetypes.init([path])


def _root_attrs(options: MountOptions) -> objects.ObjectAttrs:
    """The mountpoint's attributes, by s3fs's rule: 0700 and the mounting user's, or
    ``0777 & ~mp_umask`` with ``allow_other`` (``umask``/``uid``/``gid`` apply on top)."""
    perms = 0o777 & ~(options.mp_umask or 0) if options.allow_other else 0o700
    now = time.time_ns()
    return objects.ObjectAttrs(mode=stat.S_IFDIR | perms, uid=os.getuid(), gid=os.getgid(),
                               mtime_ns=now, ctime_ns=now, atime_ns=now)


def fuse_options(spec: MountSpec) -> set[str]:
    opts = spec.options
    result = set(pyfuse3.default_options)
    result.discard("default_permissions")
    result.add(f"fsname={opts.fsname or 'ocifs#' + spec.bucket}")
    result.add(f"subtype={opts.subtype}")
    if opts.allow_other:
        result.add("allow_other")
    if opts.default_permissions:
        result.add("default_permissions")
    result.update(name for name in ("allow_root", "ro", "noatime", "sync", "dirsync")
                  if getattr(opts, name))
    return result


def _data_cache(opts: MountOptions, tag: str) -> DataCache:
    """The mount's data cache: persistent in ``use_cache`` (emptied first with ``del_cache``),
    else temporary files in the staging directory."""
    floor = opts.ensure_diskfree * MiB or None
    if not opts.use_cache:
        return DataCache(None, floor, temp_dir=opts.tmpdir)
    if opts.del_cache:
        delete_cache(opts.use_cache, tag)
    return DataCache(cache_dir(opts.use_cache, tag), floor)


class MountHooks:
    """Callbacks for a program that runs alongside a mount in the same process.

    The container entrypoint is PID 1 and must own the signals, so it cannot daemonize: it
    starts its command from :meth:`live` and stops it from :meth:`stopping`.  The defaults do
    nothing (a plain ``ocifs mount``).
    """

    def live(self, mount: "Mount") -> None:
        """The kernel sees the mount; requests are served right after this returns, so this
        must not touch the mount itself (start a thread or a process for that)."""

    async def stopping(self, reason: str) -> None:
        """A graceful stop began; awaited before the dirty files are uploaded."""


def _meta_cache(opts: MountOptions, on_change: Callable[[str], None] | None = None) -> MetaCache:
    """s3fs's stat cache options: expiry from caching or from last use, the negative cache;
    ``on_change`` drops the kernel's copy of what changed."""
    from_use = opts.stat_cache_interval_expire is not None
    expire = opts.stat_cache_interval_expire if from_use else opts.stat_cache_expire
    return MetaCache(stat_expire=expire, max_stats=opts.max_stat_cache_size,
                     listing_expire=min(expire, LISTING_EXPIRE_MAX), expire_from_use=from_use,
                     negative=opts.enable_negative_cache and not opts.disable_negative_cache,
                     on_change=on_change)


class Mount:
    """A live mount: the Operations, the trio main loop and its shutdown.

    ``stopping`` is set by the first SIGTERM/SIGINT (or :meth:`request_stop`): dirty files are
    being uploaded before unmounting.  ``unsaved`` lists paths that could not be uploaded
    (reported at exit).
    """

    def __init__(self, spec: MountSpec, hooks: MountHooks | None = None) -> None:
        self.spec = spec
        self.hooks = hooks or MountHooks()
        self.store = build_store(spec)
        opts = spec.options
        self.journal = UploadJournal(state_dir(opts.use_cache), opts.url, spec.bucket, spec.prefix)
        self.multipart = Multipart(self.store, self.journal)  # writes and copies alike
        self.background = Background()  # part uploads, prefetched chunks, lookups' pages
        inodes = InodeTable()
        # What changes without the kernel seeing it drops the kernel's copy (while serving).
        self.invalidations = KernelInvalidations(inodes.inode_of)
        self.tree = Tree(self.store, default_uid=opts.uid if opts.uid is not None else os.getuid(),
                         default_gid=opts.gid if opts.gid is not None else os.getgid(),
                         cache=_meta_cache(opts, self.invalidations.path_changed),
                         fast_list=opts.fast_list, multipart=self.multipart,
                         background=self.background, control_chars_refused=spec.oci_rules,
                         touch_parents=opts.update_parent_dir_stat, compat_dir=opts.compat_dir)
        view = AttrView(root=_root_attrs(opts), uid=opts.uid, gid=opts.gid, umask=opts.umask,
                        timeout=kernel_timeout(opts.stat_cache_expire),
                        entry_timeout=opts.entry_timeout, attr_timeout=opts.attr_timeout,
                        capacity=parse_size("bucket_size", opts.bucket_size) if opts.bucket_size else None)
        limits = StagingLimits(
            directory=opts.use_cache or opts.tmpdir,
            max_dirty_bytes=opts.max_dirty_data * MiB if opts.max_dirty_data >= 0 else None,
            min_free_bytes=opts.ensure_diskfree * MiB)
        self.cache = _data_cache(opts, self.journal.tag)
        files = OpenFiles(self.tree, inodes, self.store, self.multipart, limits, self.cache,
                          self.background, copy_parts=not (opts.nomixupload or opts.nocopyapi))
        self.operations = Operations(self.tree, view, files, inodes, use_xattr=opts.use_xattr,
                                     direct_io=opts.direct_io)
        try:
            self.observer = MountObserver(self)  # ocifs status, -o metrics, a stop's progress
        except ValueError as exc:
            raise MountError(str(exc)) from None
        self.stopping = False
        self.giving_up = False  # second signal or stop_timeout: unmounting without the uploads
        self.unsaved: list[str] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._drain_scope = trio.CancelScope()
        self._pending_stop: str | None = None
        self._resolved = os.path.realpath(spec.mountpoint)  # before mounting: see ocifs.data.readahead

    def start(self) -> None:
        """Mount (the kernel sees it from here on)."""
        try:
            pyfuse3.init(self.operations, self.spec.mountpoint, fuse_options(self.spec))
        except RuntimeError as exc:
            raise MountError(f"cannot mount at {self.spec.mountpoint}: {exc}") from None
        log.info("mounted %s%s at %s", self.spec.bucket,
                 ":/" + self.spec.prefix if self.spec.prefix else "", self.spec.mountpoint)

    def run(self) -> int:
        """Serve requests until unmounted or signalled; returns the exit status."""
        try:
            self.hooks.live(self)
            trio.run(self._main)
        finally:
            pyfuse3.close(unmount=True)
        if self.unsaved:
            kept = self.keep_unsaved()
            log.error("exiting with data not uploaded: %s", ", ".join(self.unsaved))
            print(f"ocifs: not uploaded: {', '.join(self.unsaved)}", file=sys.stderr)
            for path, copy in kept.items():
                where = f"its data is kept in {copy}" if copy else "no recovery copy could be made"
                log.error("%s: %s", path, where)
                print(f"ocifs: {path}: {where}", file=sys.stderr)
            return 1
        log.info("unmounted %s", self.spec.mountpoint)
        return 0

    async def _main(self) -> None:
        # The control channel and the sampler outlive serving: a stop's uploads are watched too.
        async with trio.open_nursery() as observing:
            await observing.start(self.observer.run)
            await self._serve_and_flush()
            observing.cancel_scope.cancel()
        self.journal.sync(10)  # the uploads left (given up) are on disk for the next mount
        self.observer.close()
        self.cache.close()
        opts = self.spec.options
        if opts.use_cache and opts.del_cache:
            delete_cache(opts.use_cache, self.journal.tag)

    async def _serve_and_flush(self) -> None:
        # Background part uploads live in a nursery of their own that outlives serving, so
        # the final uploads below can still use (and wait for) them.
        async with self.background.running() as uploads:
            self.operations.files.start()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._token = trio.lowlevel.current_trio_token()
                if self._pending_stop is not None:
                    self.begin_stop(self._pending_stop)
                nursery.start_soon(self._watch_signals)
                nursery.start_soon(keep_read_ahead, self._resolved, self.spec.options.read_ahead_kb)
                nursery.start_soon(self.invalidations.run)
                await pyfuse3.main()
                nursery.cancel_scope.cancel()
            self.operations.files.stop_reads()  # background fills of cache files end here
            # Unmounted from outside (fusermount -u): anything still dirty goes up now.
            self.observer.flushing = True
            if not self.unsaved and not self.giving_up:
                timeout = self.spec.stop_timeout
                with trio.move_on_after(float("inf") if timeout is None else timeout) as limit:
                    self.unsaved = await self.operations.files.upload_all()
                if limit.cancelled_caught:
                    self.give_up(f"uploads not finished within {timeout:g} s (stop_timeout)")
            if not self.giving_up:
                await self.multipart.abort_given_up()
            uploads.cancel_scope.cancel()  # gave up: uploads left are aborted by the next mount

    def request_stop(self, reason: str) -> None:
        """Begin the graceful stop, as a first signal does; safe from any thread or a signal
        handler, and before serving has started (the stop then begins as soon as it does)."""
        self._pending_stop = reason  # read by _main if serving has not started yet
        token = self._token
        if token is not None:
            try:
                token.run_sync_soon(self.begin_stop, reason)
            except trio.RunFinishedError:
                pass

    def begin_stop(self, reason: str) -> None:
        """Upload every dirty file, then unmount (in the trio thread; idempotent)."""
        if self.stopping or self._nursery is None:
            return
        self.stopping = True
        log.warning("%s: uploading %d dirty file(s), then unmounting",
                    reason, self.operations.files.dirty_count())
        self._nursery.start_soon(self._drain_and_terminate, reason)

    def dirty_paths(self) -> list[str]:
        return self.operations.files.dirty_paths()

    def give_up(self, reason: str) -> None:
        """Unmount now; whatever is still dirty is kept in recovery copies (made here, before
        anything else can go wrong) and reported as not uploaded."""
        self.giving_up = True
        self.unsaved = self.dirty_paths()
        log.error("%s: unmounting without waiting for uploads", reason)
        self.keep_unsaved()
        pyfuse3.terminate()
        self._drain_scope.cancel()

    def keep_unsaved(self) -> dict[str, Path | None]:
        return self.operations.files.keep_unsaved()

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    reopen_logs()
                elif not self.stopping:
                    self.begin_stop(f"signal {signal.Signals(signum).name}")
                elif not self.giving_up:
                    self.give_up("second signal")

    async def _drain_and_terminate(self, reason: str) -> None:
        timeout = self.spec.stop_timeout
        with self._drain_scope:
            with trio.move_on_after(timeout if timeout is not None else float("inf")) as limit:
                await self.hooks.stopping(reason)
                self.unsaved = await self.operations.files.upload_all()
            if limit.cancelled_caught:
                self.give_up(f"stop not finished within {timeout:g} s (stop_timeout)")
                return
            pyfuse3.terminate()


def run_mount(spec: MountSpec, notify: Callable[[str], Any] | None = None,
              hooks: MountHooks | None = None) -> int:
    """Mount ``spec`` and serve it; ``notify("ok")`` once live, ``notify("error: ...")`` if not."""
    opts = spec.options
    setup_logging(opts.log_level, opts.logfile, spec.foreground, http_debug=opts.curldbg)
    for name in opts.ignored:
        log.warning("option %s has no effect in ocifs: %s", name, NO_EFFECT[name])
    for notice in opts.notices:
        log.info("%s", notice)
    if spec.credentials is not None:
        log.info("credentials from %s", spec.credentials.source)
    try:
        mount = Mount(spec, hooks)
        mount.start()
    except MountError as exc:
        if notify:
            notify(f"error: {exc}")
        raise
    if notify:
        notify("ok")
    pidfile = pidfile_path(spec.mountpoint)
    try:
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{os.getpid()}\n")
    except OSError as exc:
        log.warning("cannot write %s: %s", pidfile, exc.strerror)
    try:
        return mount.run()
    finally:
        pidfile.unlink(missing_ok=True)


def pidfile_path(mountpoint: str) -> Path:
    """Where the serving process of ``mountpoint`` records its pid (``ocifs umount`` waits on it)."""
    runtime = Path("/run") if os.geteuid() == 0 else Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp")
    # No realpath here: resolving the path would stat the mountpoint we may be serving.
    digest = hashlib.sha1(os.path.abspath(mountpoint).encode()).hexdigest()[:16]
    return runtime / "ocifs" / f"{digest}.pid"


def wait_for_exit(mountpoint: str, timeout: float, tick: Callable[[], Any] | None = None) -> bool:
    """Wait until the process that served ``mountpoint`` has finished its uploads and exited
    (``tick`` is called while waiting: the progress of those uploads)."""
    try:
        pid = int(pidfile_path(mountpoint).read_text())
    except (OSError, ValueError):
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stat_fields(pid) is None or is_zombie(pid):
            return True  # exited (a zombie: not yet collected by its parent)
        if tick is not None:
            tick()
        time.sleep(0.05)
    return False


def daemonize_and_mount(spec: MountSpec) -> int:
    """Fork; the parent returns 0 once the child reports the mount live, 1 if it failed."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            message = pipe.read().strip()
        if message == "ok":
            return 0
        if message.startswith("error: "):
            print(f"ocifs: {message[len('error: '):]}", file=sys.stderr)
        else:
            _, status = os.waitpid(pid, 0)
            print(f"ocifs: the mount process exited before the mount was ready (status {status})",
                  file=sys.stderr)
        return 1
    # Child: a session of its own, no terminal, stdio to /dev/null once mounted.
    os.close(read_fd)
    os.setsid()
    os.chdir("/")
    pipe = os.fdopen(write_fd, "w")

    def notify(message: str) -> None:
        pipe.write(message + "\n")
        pipe.close()
        if message == "ok":
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)

    try:
        status = run_mount(spec, notify)
    except MountError:
        status = 1
    except BaseException as exc:  # noqa: BLE001 - report, never leave the parent hanging
        log.exception("the mount process failed")  # once daemonized, the log is all there is
        if not pipe.closed:
            notify(f"error: {exc.__class__.__name__}: {exc}")
        status = 1
    os._exit(status)
