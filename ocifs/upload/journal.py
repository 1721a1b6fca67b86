"""What a crash may leave behind: the journal of multipart uploads in progress, and where data
that could not be uploaded is kept.

An upload in progress lives in the bucket as parts nobody sees; if the mount dies (kill -9,
power loss) they stay there, invisible and billed, until someone aborts them.  So every
multipart upload a mount starts is written to a small journal file (fsync'd) as soon as it is
created; it is removed again when the upload is completed or aborted.  A writer thread does the
writing while the upload's parts are sent: an fsync of even a small file can take 50–200 ms on
a busy disk (ext4 commits its journal, writing out other files' new data with it), and every
fsync(2) of a big appended file (an AOF) is one multipart upload, which would wait for it.  So
an upload is on disk one write (plus its fsyncs) after its creation, not before its first part:
a crash within those milliseconds leaves it, with whatever part was sent, for the store's
lifecycle rules, as a crash between its creation and the write always could.  Its removal needs
no hurry: a journal that still lists a completed upload makes the next mount look for it, find
it gone and drop the journal.  The next mount of
the same bucket and prefix finds the journals of mounts that are no longer running and aborts
the uploads they list, but only those (uploads of other clients are left alone).

Each mount writes its own journal (named after the bucket, prefix, its pid and start time), in the state
directory: the ``use_cache`` directory when given, else ``/var/lib/ocifs`` for root or
``$XDG_STATE_HOME/ocifs`` (``~/.local/state/ocifs``) for other users.  Recovery copies of files
whose upload failed are written to ``recovery/`` in the same directory, readable by the mount's
user alone (mode 0600 in a 0700 directory): they hold data of files other users may not read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
import re
import shutil
import threading
import time

from ocifs.procfs import is_zombie, stat_fields
from ocifs.s3.errors import StoreError
from ocifs.s3.store import Store

log = logging.getLogger(__name__)


def state_dir(use_cache: str | None) -> Path:
    """Where journals and recovery copies live (see the module docstring)."""
    if use_cache:
        return Path(use_cache)
    if os.geteuid() == 0:
        return Path("/var/lib/ocifs")
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "ocifs"


def _tag(endpoint: str, bucket: str, prefix: str) -> str:
    """A file-name-safe name for one bucket and prefix at one endpoint."""
    digest = hashlib.sha1(f"{endpoint}\0{bucket}\0{prefix}".encode()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', bucket)[:60]}-{digest}"


def _mount_running(pid: int) -> bool:
    """Whether ``pid`` is a running ocifs process (a pid reused by another program, e.g.
    after a reboot, does not count).  An empty command line is a process in the middle of
    exec (a mount starting) or a zombie: only the zombie is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        if not cmdline:
            return stat_fields(pid) is not None and not is_zombie(pid)
        return b"ocifs" in cmdline
    except OSError:
        return False


def _private(path: Path, mode: int = 0o600) -> int:
    """A new file only its owner can read or write (an existing one is truncated)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)


def _private_dir(directory: Path) -> None:
    """``directory`` (made if needed) with owner-only permissions: it holds copies of users'
    data (and names of their files), which other local users must not read."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o077:
        directory.chmod(0o700)


def _write_durably(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves the old or the new content."""
    tmp = path.with_name(path.name + ".tmp")
    with open(_private(tmp), "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class UploadJournal:
    """This mount's multipart uploads in progress, kept on disk.

    ``uploads`` maps upload id -> key, mirrored in ``path`` (JSON) after every change by a
    writer thread (:meth:`sync` waits for it): ``version`` counts the changes, ``saved`` is the
    version on disk, ``snapshot`` the newest content to write (changes made while a write is
    going on are written together by the next one).
    ``path`` is None when the state directory cannot be written: uploads still work, but a
    crash would leave them for the store's lifecycle rules (a warning says so once).
    """

    def __init__(self, directory: Path | None, endpoint: str, bucket: str, prefix: str) -> None:
        self.directory = directory
        self.tag = _tag(endpoint, bucket, prefix)
        self.uploads: dict[str, str] = {}
        self.path: Path | None = None
        self.version = self.saved = 0
        self.snapshot: dict[str, str] = {}
        self._changes = threading.Condition()
        self._writer: threading.Thread | None = None
        if directory is None:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("cannot use state directory %s (%s): multipart uploads left by a crash "
                        "will not be found by the next mount", directory, exc.strerror)
            return
        self.path = directory / f"uploads-{self.tag}-{os.getpid()}-{time.time_ns()}.json"

    @classmethod
    def in_memory(cls) -> "UploadJournal":
        """A journal with no file: nothing survives a crash, no recovery copy is made (a store
        used on its own, without a mount)."""
        return cls(None, "", "", "")

    def add(self, key: str, upload_id: str) -> None:
        """Record an upload just created; returns at once (the writer thread saves it)."""
        self.uploads[upload_id] = key
        self._changed()

    def remove(self, upload_id: str) -> None:
        if self.uploads.pop(upload_id, None) is not None:
            self._changed()

    def sync(self, timeout: float | None = None) -> bool:
        """Wait (blocking) until the file holds every change made so far; False on timeout."""
        with self._changes:
            return self._changes.wait_for(lambda: self.saved >= self.version, timeout)

    def _changed(self) -> None:
        if self.path is None:
            return
        with self._changes:
            self.version += 1
            self.snapshot = dict(self.uploads)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_changes, daemon=True,
                                                name="ocifs-journal")
                self._writer.start()
            self._changes.notify_all()

    def _write_changes(self) -> None:
        """The writer thread: saves the newest snapshot whenever there are changes."""
        while True:
            with self._changes:
                self._changes.wait_for(lambda: self.saved < self.version)
                version, uploads = self.version, self.snapshot
            self._save(uploads)
            with self._changes:
                self.saved = version
                self._changes.notify_all()

    def _save(self, uploads: dict[str, str]) -> None:
        assert self.path is not None
        try:
            if uploads:
                _write_durably(self.path, json.dumps({"pid": os.getpid(), "uploads": uploads}))
            else:
                self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot write upload journal %s: %s", self.path, exc.strerror)

    def orphan_journals(self) -> list[Path]:
        """Journals of earlier mounts of this bucket and prefix whose process is gone."""
        found: list[Path] = []
        if self.directory is None:
            return found
        for path in self.directory.glob(f"uploads-{self.tag}-*-*.json"):
            pid = path.stem.rsplit("-", 2)[-2]
            if path != self.path and pid.isdigit() and not _mount_running(int(pid)):
                found.append(path)
        return found

    async def abort_orphans(self, store: Store) -> int:
        """Abort the uploads left by dead mounts that the store still lists; returns how many."""
        aborted = 0
        for path in self.orphan_journals():
            try:
                uploads = json.loads(path.read_text()).get("uploads", {})
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable upload journal %s: %s", path, exc)
                continue
            try:
                for upload_id, key in uploads.items():
                    listed = await store.multipart_uploads(key)
                    if any(u["UploadId"] == upload_id and u["Key"] == key for u in listed):
                        await store.abort_multipart(key, upload_id)
                        aborted += 1
                        log.warning("aborted multipart upload %s of %s left by a mount that "
                                    "stopped without finishing it", upload_id, store.path_of(key))
            except StoreError as exc:
                log.warning("cannot abort uploads listed in %s (will retry at the next mount): %s",
                            path, exc)
                continue
            path.unlink(missing_ok=True)
        return aborted

    def save_recovery_copy(self, fd: int, path: str) -> Path | None:
        """Copy local file ``fd`` (whose upload failed) to ``recovery/`` and return the copy."""
        if self.directory is None:
            return None
        directory = self.directory / "recovery"
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{path.replace('/', '%2F')}"[:255]
        target = directory / name
        try:
            _private_dir(directory)
            with open(f"/proc/self/fd/{fd}", "rb") as source, open(_private(target), "wb") as copy:
                shutil.copyfileobj(source, copy, 1024 * 1024)
                copy.flush()
                os.fsync(copy.fileno())
        except OSError as exc:
            log.error("cannot save a recovery copy of %s to %s: %s", path, target, exc.strerror)
            with contextlib.suppress(OSError):
                target.unlink()
            return None
        return target
