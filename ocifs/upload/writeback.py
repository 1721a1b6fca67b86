"""Write-back of one open file into its object: multipart, while the file is still written.

A file is staged in a local file (see :mod:`ocifs.data.openfiles`); this module decides how the
staged bytes reach the bucket.  Below ``multipart_threshold`` a file goes up as one PutObject at
flush/fsync/close.  Above it, a multipart upload is created as soon as a sequential writer has
filled the first part, and each completed part is sent in a background task while the writer
goes on, so close and fsync only wait for the tail.  Parts are read from the staged file (never
kept in memory), at most ``parallel_count`` per file are in flight, and a writer that gets
ahead of the network waits for a free slot (back-pressure): the data not yet sent stays bounded.

Ranges of the existing object that were not written since it was last stored are not sent
again: at completion they become UploadPartCopy requests (a server-side copy of that range),
so a small change to a big file, or an fsync followed by more appends, costs only the parts
that changed.  An object never appears half-written under its name: it changes only when a
PutObject or CompleteMultipartUpload succeeds.

Failures: botocore retries each request with backoff; when it gives up, the upload is aborted,
the staged data is copied to a recovery file (its path logged at ERROR), and the writer gets
the error at its next write, fsync or close.  The file stays dirty, so a later flush retries.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
from pathlib import Path
from typing import Callable

import trio

from ocifs.s3.errors import StoreError
from ocifs.s3.store import Store
from ocifs.tasks import Background
from ocifs.upload.multipart import Multipart
from ocifs.upload.parts import MIN_PART, PartLayout
from ocifs.upload.plan import Part, copied_bytes, plan_parts, uploaded_bytes
from ocifs.ranges import ByteRanges

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Uploader:
    """What every file's write-back shares: the store, the part layout and the mount's nursery.

    ``background`` runs the part uploads; it is the Mount's and outlives every file (while it
    is not running, parts go up at flush only).
    ``multipart`` creates, aborts and journals the multipart uploads.
    """

    store: Store
    layout: PartLayout
    threshold: int
    parallel_count: int
    multipart: Multipart
    background: Background = dataclasses.field(default_factory=Background)
    copy_parts: bool = True  # False: nomixupload / nocopyapi, or the store refused a copy

    def copy_refused(self, key: str, exc: StoreError) -> None:
        """The store does not do UploadPartCopy: unchanged bytes are uploaded again from now
        on (logged once per mount)."""
        if self.copy_parts:
            self.copy_parts = False
            log.warning("the store refuses UploadPartCopy (%s, for %s): unchanged ranges of "
                        "files are uploaded again from now on", exc.code or exc, key)

    @classmethod
    def for_store(cls, store: Store, multipart: Multipart, background: Background | None = None,
                  copy_parts: bool = True) -> "Uploader":
        config = store.upload_config
        return cls(store, PartLayout(config.multipart_chunksize), config.multipart_threshold,
                   config.max_request_concurrency, multipart, background or Background(),
                   copy_parts)


@dataclasses.dataclass
class Target:
    """Where and how the file is stored: its key, metadata and content type."""

    key: str
    metadata: dict[str, str]
    content_type: str
    path: str  # for messages


class FileWriteback:
    """The upload state of one staged file.

    * ``fd``: the staged local file (owned by the OpenFile; read here, never written).
    * ``upload_id``/``upload_key``/``upload_meta``: the multipart upload in progress (None when
      there is none) and the key and metadata it was created with.
    * ``versions``: part -> number of writes that touched it; a part sent at version *v* is
      still good only while ``versions[part] == v``.
    * ``done``: part -> (ETag, version) of the parts this upload already holds.
    * ``in_flight``: part -> version of the parts being sent by background tasks; a part is
      never sent twice at once.  Each holds one of ``slots`` (``parallel_count`` of them).
    * ``base_size``/``changes``: bytes ``[0, base_size)`` of the staged file are the object now
      under the key, except the ``changes`` byte ranges; the rest of it is copied server-side
      (:mod:`ocifs.upload.plan`) instead of being uploaded.
    * ``sealed``: while a finish sends ``[0, sealed)`` without the file's lock, the size it
      stores (None otherwise); writes below it wait for ``sealed_done``, appends go on.
    * ``stream_from``: first part a sequential writer has not yet had sent.
    * ``error``: the first failure of a background part, raised at the next write/flush.
    * ``sent_bytes``: bytes of good parts sent since the object was last stored.
    * ``saved_version``: the ``writes`` count when the last recovery copy was made, and
      ``recovery_copy`` its path (None: none could be made).
    """

    def __init__(self, uploader: Uploader, fd: int, base_size: int) -> None:
        self.uploader = uploader
        self.fd = fd
        self.upload_id: str | None = None
        self.upload_key = ""
        self.upload_meta: dict[str, str] = {}
        self.versions: dict[int, int] = {}
        self.done: dict[int, tuple[str, int]] = {}
        self.in_flight: dict[int, int] = {}
        self.slots = trio.Semaphore(uploader.parallel_count)
        self.base_size = base_size
        self.changes = ByteRanges()
        self.sealed: int | None = None
        self.sealed_done = trio.Event()
        self.sealed_done.set()
        self.stream_from = 1
        self.error: StoreError | None = None
        self.sent_bytes = 0
        self.writes = 0
        self.saved_version = -1
        self.recovery_copy: Path | None = None

    @property
    def store(self) -> Store:
        return self.uploader.store

    @property
    def layout(self) -> PartLayout:
        return self.uploader.layout

    # -- what writes change -----------------------------------------------------------------

    def changed(self, start: int, end: int) -> None:
        """Bytes ``[start, end)`` of the staged file changed (a write, or a truncate's tail)."""
        self.writes += 1
        self.changes.add(start, end)
        for part in self.layout.parts_touching(start, end):
            self.versions[part] = self.versions.get(part, 0) + 1

    def truncated(self, old_size: int, new_size: int) -> None:
        """The staged file was cut or extended to ``new_size``."""
        # The parts between the two sizes changed (the one holding the new end included).
        self.changed(min(old_size, new_size), max(old_size, new_size))
        if new_size < old_size:
            self.changes.cut(new_size)
            self.base_size = min(self.base_size, new_size)
            self.stream_from = min(self.stream_from, self.layout.part_at(new_size) if new_size else 1)

    def check(self) -> None:
        """Raise the failure of a background part (then handled by :meth:`fail`)."""
        if self.error is not None:
            raise self.error

    def _good(self, part: int) -> bool:
        done = self.done.get(part)
        return done is not None and done[1] == self.versions.get(part, 0)

    def _holds_stored(self, part: int) -> bool:
        """Whether some bytes of ``part`` are in the object and unchanged: the finish copies
        them server-side, so the part is not streamed (an appender crossing a part boundary
        would send the whole part again, for a few new bytes)."""
        start, end = self.layout.span(part)
        end = min(end, self.base_size)
        return start < end and not self.changes.covers(start, end)

    # -- streaming ------------------------------------------------------------------------

    async def stream(self, head: int, size: int, target: Callable[[], Target]) -> None:
        """A sequential writer reached ``head``: send every complete part behind it.

        Waits (back-pressure) while ``parallel_count`` parts of this file are in flight.
        """
        if (not self.uploader.background.active or size < self.uploader.threshold
                or self.sealed is not None):  # a finish owns the upload meanwhile
            return
        part = self.stream_from
        while True:
            start, end = self.layout.span(part)
            if end > head:
                break
            if not self._good(part) and part not in self.in_flight and not self._holds_stored(part):
                if self.upload_id is None:
                    await self._create(target())
                await self._send_soon(part, start, end - start)
            part += 1
        self.stream_from = part

    async def _create(self, target: Target) -> None:
        self.upload_id = await self.uploader.multipart.create(target.key, target.metadata,
                                                              target.content_type)
        self.upload_key, self.upload_meta = target.key, dict(target.metadata)
        log.info("%s: multipart upload started (parts of %d MiB)", target.path,
                 self.layout.base // (1024 * 1024))

    async def _send_soon(self, part: int, start: int, length: int) -> None:
        """Send one part in the background, once a slot is free."""
        version = self.versions.get(part, 0)
        self.in_flight[part] = version
        try:
            await self.slots.acquire()
        except BaseException:
            del self.in_flight[part]
            raise
        self.uploader.background.start_soon(self._send, part, start, length, version, False)

    async def _send(self, part: int, start: int, length: int, version: int, copy: bool) -> None:
        """Upload (or copy) one part; runs as a task holding a slot, never raises."""
        upload_id, key = self.upload_id, self.upload_key
        assert upload_id is not None
        try:
            if copy:
                try:
                    etag = await self.store.upload_part_copy(key, upload_id, part, key, start, length)
                except StoreError as exc:
                    log.info("copy of part %d of %s failed (%s), uploading it instead", part, key, exc)
                    etag = await self.store.upload_part(key, upload_id, part, self.fd, start, length)
            else:
                etag = await self.store.upload_part(key, upload_id, part, self.fd, start, length)
            if self.upload_id == upload_id and self.versions.get(part, 0) == version:
                self.done[part] = (etag, version)
                if not copy:
                    self.sent_bytes += length
        except StoreError as exc:
            if self.error is None:
                self.error = exc
        except Exception as exc:  # noqa: BLE001 - a bug must fail this file, not the mount
            log.exception("sending part %d of %s failed unexpectedly", part, key)
            if self.error is None:
                self.error = StoreError(errno.EIO, f"part {part} of {key}: {exc}")
        finally:
            self.in_flight.pop(part, None)
            self.slots.release()

    async def wait_in_flight(self) -> None:
        """Wait until no part of this file is being sent (by taking every slot in turn)."""
        for _ in range(self.uploader.parallel_count):
            await self.slots.acquire()
        for _ in range(self.uploader.parallel_count):
            self.slots.release()

    # -- finishing ------------------------------------------------------------------------

    async def wait_sealed(self, lock: trio.Lock, start: int = 0) -> None:
        """Wait (``lock`` released meanwhile) until no finish is sending bytes at or past
        ``start``: a write there must not change a part being read."""
        while self.sealed is not None and start < self.sealed:
            done = self.sealed_done
            lock.release()
            try:
                await done.wait()
            finally:
                with trio.CancelScope(shield=True):
                    await lock.acquire()

    async def finish(self, size: int, target: Target,
                     lock: trio.Lock | None = None) -> dict[str, str]:
        """Make the object hold the staged file's first ``size`` bytes; returns the metadata
        stored.

        The caller holds the file's ``lock`` (and waited for :meth:`wait_sealed`); it is
        released while the requests are made, so that appends go on meanwhile (they stay in
        ``changes`` for the next finish), and taken again before this returns.
        """
        await self.wait_in_flight()
        self.check()
        if self.upload_id is not None and self.upload_key != target.key:
            await self.abandon()  # renamed meanwhile: start again under the new key
        plan = self._plan(size)
        if plan is None:
            await self.abandon()
            stored = target.metadata
            await self._sealed(lock, size, self.store.put_file(target.key, self.fd, size,
                                                               target.metadata,
                                                               target.content_type))
        else:
            stored = await self._sealed(lock, size, self._multipart(size, target, plan))
        self.done.clear()
        self.changes = ByteRanges(list(self.changes.within(size, 1 << 62)))
        self.base_size, self.stream_from, self.sent_bytes = size, 1, 0
        return stored

    def _plan(self, size: int) -> list[Part] | None:
        """The parts of the new version, or None when one PutObject is better: under 5 MiB, or
        under ``multipart_threshold`` with less than 5 MiB to copy and nothing streamed."""
        if size < MIN_PART:
            return None
        held = {part: self.layout.span(part) for part in self.done
                if self.upload_id is not None and self._good(part)}
        base = self.base_size if self.uploader.copy_parts else 0
        plan = plan_parts(size, base, self.changes, self.layout, held)
        if size < self.uploader.threshold and not held and copied_bytes(plan) < MIN_PART:
            return None
        return plan

    async def _sealed(self, lock: trio.Lock | None, size: int, requests):
        """Await ``requests`` with ``[0, size)`` sealed and ``lock`` released."""
        self.sealed, self.sealed_done = size, trio.Event()
        if lock is not None:
            lock.release()
        try:
            return await requests
        finally:
            if lock is not None:
                with trio.CancelScope(shield=True):
                    await lock.acquire()
            self.sealed = None
            self.sealed_done.set()

    async def _multipart(self, size: int, target: Target, plan: list[Part]) -> dict[str, str]:
        """Send the plan's parts (``parallel_count`` at once) and complete the upload."""
        if self.upload_id is None:
            await self._create(target)
        upload_id, stored = self.upload_id, self.upload_meta
        assert upload_id is not None
        etags = {p.number: self.done[p.number][0] for p in plan if p.held}
        async with trio.open_nursery() as nursery:
            for part in plan:
                if not part.held:
                    await self.slots.acquire()
                    nursery.start_soon(self._send_planned, part, etags)
        self.check()
        await self._complete(target.key, size, etags)
        self.uploader.multipart.completed(upload_id)
        self.upload_id = None
        log.info("%s: multipart upload completed (%d parts, %d bytes sent, %d copied "
                 "server-side)", target.path, len(plan), uploaded_bytes(plan),
                 copied_bytes(plan))
        return stored

    async def _send_planned(self, part: Part, etags: dict[int, str]) -> None:
        """Upload or copy one planned part into ``etags``; holds a slot; failures go to
        ``error`` (raised by the caller once every part is done)."""
        key, upload_id = self.upload_key, self.upload_id
        assert upload_id is not None
        try:
            if part.copy and self.uploader.copy_parts:
                try:
                    etags[part.number] = await self.store.upload_part_copy(
                        key, upload_id, part.number, key, part.start, part.length)
                    return
                except StoreError as exc:
                    if exc.code in ("NotImplemented", "NotSupported"):
                        self.uploader.copy_refused(key, exc)
                    else:
                        log.info("copy of part %d of %s failed (%s), uploading it instead",
                                 part.number, key, exc)
            etags[part.number] = await self.store.upload_part(key, upload_id, part.number,
                                                              self.fd, part.start, part.length)
        except StoreError as exc:
            self.error = self.error or exc
        except Exception as exc:  # noqa: BLE001 - a bug must fail this file, not the mount
            log.exception("sending part %d of %s failed unexpectedly", part.number, key)
            self.error = self.error or StoreError(errno.EIO, f"part {part.number} of {key}: {exc}")
        finally:
            self.slots.release()

    async def _complete(self, key: str, size: int, etags: dict[int, str]) -> None:
        """CompleteMultipartUpload.  When botocore repeats it because the answer to the first
        one was lost, some stores (OCI, MinIO) answer NoSuchUpload: the upload is gone because
        it was completed.  The object then holds this upload's size and metadata (its mtime
        in nanoseconds included), which no other writer's object has."""
        assert self.upload_id is not None
        try:
            await self.store.complete_multipart(key, self.upload_id, etags)
        except StoreError as exc:
            if exc.code != "NoSuchUpload":
                raise
            head = await self.store.head(key)
            if (head is None or head.get("ContentLength") != size
                    or head.get("Metadata") != self.upload_meta):
                raise
            log.info("%s: completion repeated after a lost answer; the first one had completed "
                     "the object", key)

    async def abandon(self) -> None:
        """Abort the multipart upload in progress, if any (its parts are discarded)."""
        await self.wait_in_flight()
        upload_id, self.upload_id = self.upload_id, None
        self.done.clear()
        self.stream_from = 1
        if upload_id is not None:
            await self.uploader.multipart.abort(self.upload_key, upload_id)

    async def fail(self, path: str, exc: StoreError) -> None:
        """An upload failed for good: abort it, keep the data in a recovery copy, log where."""
        self.error = None
        if self.saved_version == self.writes:
            await self.abandon()
            log.error("upload of %s failed: %s (the data stays staged; its recovery copy was "
                      "made earlier)", path, exc)
            return
        copy = await trio.to_thread.run_sync(self.keep, path)  # first: the abort may take long
        await self.abandon()
        if copy is not None:
            log.error("upload of %s failed: %s; its data is kept in %s and stays staged, a later "
                      "fsync or close retries", path, exc, copy)
        else:
            log.error("upload of %s failed: %s; the data stays staged, a later fsync or close "
                      "retries", path, exc)

    def keep(self, path: str) -> Path | None:
        """A recovery copy of the staged data: the one made earlier if nothing was written
        since, else a new one (None when it cannot be written)."""
        if self.saved_version == self.writes and self.recovery_copy is not None:
            return self.recovery_copy
        copy = self.uploader.multipart.journal.save_recovery_copy(self.fd, path)
        self.saved_version, self.recovery_copy = self.writes, copy
        return copy

    def pending_bytes(self, size: int) -> int:
        """Bytes of a ``size``-byte file not yet in the bucket nor in this upload (estimate)."""
        if size <= 0:
            return 0
        held = {p: self.layout.span(p) for p in self.done if self._good(p)}
        base = self.base_size if self.uploader.copy_parts else 0
        return uploaded_bytes(plan_parts(size, base, self.changes, self.layout, held), held=False)
