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
from ocifs.upload.parts import PartLayout

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

    @classmethod
    def for_store(cls, store: Store, multipart: Multipart,
                  background: Background | None = None) -> "Uploader":
        config = store.upload_config
        return cls(store, PartLayout(config.multipart_chunksize), config.multipart_threshold,
                   config.max_request_concurrency, multipart, background or Background())


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
    * ``base_size``/``touched``: bytes ``[0, base_size)`` of the staged file are the object now
      under the key, except in the ``touched`` parts; untouched parts inside it are copied
      server-side instead of being uploaded.
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
        self.touched: set[int] = set()
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
        for part in self.layout.parts_touching(start, end):
            self.versions[part] = self.versions.get(part, 0) + 1
            self.touched.add(part)

    def truncated(self, old_size: int, new_size: int) -> None:
        """The staged file was cut or extended to ``new_size``."""
        # The parts between the two sizes changed (the one holding the new end included).
        self.changed(min(old_size, new_size), max(old_size, new_size))
        if new_size < old_size:
            self.base_size = min(self.base_size, new_size)
            self.stream_from = min(self.stream_from, self.layout.part_at(new_size) if new_size else 1)

    def check(self) -> None:
        """Raise the failure of a background part (then handled by :meth:`fail`)."""
        if self.error is not None:
            raise self.error

    def _good(self, part: int) -> bool:
        done = self.done.get(part)
        return done is not None and done[1] == self.versions.get(part, 0)

    def _copyable(self, part: int, size: int) -> bool:
        start, end = self.layout.span(part)
        return part not in self.touched and min(end, size) <= self.base_size

    # -- streaming ------------------------------------------------------------------------

    async def stream(self, head: int, size: int, target: Callable[[], Target]) -> None:
        """A sequential writer reached ``head``: send every complete part behind it.

        Waits (back-pressure) while ``parallel_count`` parts of this file are in flight.
        """
        if not self.uploader.background.active or size < self.uploader.threshold:
            return
        part = self.stream_from
        while True:
            start, end = self.layout.span(part)
            if end > head:
                break
            if not self._good(part) and part not in self.in_flight and not self._copyable(part, size):
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

    async def finish(self, size: int, target: Target) -> dict[str, str]:
        """Make the object hold the staged file's ``size`` bytes; returns the metadata stored.

        The caller holds the file's lock, so no write changes the staged file meanwhile.
        """
        await self.wait_in_flight()
        self.check()
        stored = target.metadata
        if size < self.uploader.threshold or (self.upload_id is None and size <= self.layout.base):
            await self.abandon()
            await self.store.put_file(target.key, self.fd, size, target.metadata, target.content_type)
        else:
            if self.upload_id is not None and self.upload_key != target.key:
                await self.abandon()  # renamed meanwhile: start again under the new key
            if self.upload_id is None:
                await self._create(target)
            stored = self.upload_meta
            if self.uploader.background.active:
                await self._send_missing(size, self.uploader.background.start_soon)
            else:  # no mount running: the parts go up from here
                async with trio.open_nursery() as nursery:
                    await self._send_missing(size, nursery.start_soon)
            self.check()
            count = self.layout.count(size)
            etags = {part: self.done[part][0] for part in range(1, count + 1)}
            assert self.upload_id is not None
            await self._complete(target.key, size, etags)
            self.uploader.multipart.completed(self.upload_id)
            log.info("%s: multipart upload completed (%d parts)", target.path, count)
            self.upload_id = None
        self.done.clear()
        self.base_size, self.touched, self.stream_from, self.sent_bytes = size, set(), 1, 0
        return stored

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

    async def _send_missing(self, size: int, start_soon: Callable[..., None]) -> None:
        """Send every part of a ``size``-byte file this upload does not hold yet, in parallel
        (tasks started by ``start_soon``), and wait for them."""
        count = self.layout.count(size)
        copied = 0
        for part in range(1, count + 1):
            if self._good(part):
                continue
            start, end = self.layout.span(part)
            length = min(end, size) - start
            copy = self._copyable(part, size)
            copied += length if copy else 0
            self.in_flight[part] = self.versions.get(part, 0)
            await self.slots.acquire()
            start_soon(self._send, part, start, length, self.in_flight[part], copy)
        await self.wait_in_flight()
        if copied:
            log.info("%s: %d unchanged bytes copied server-side (UploadPartCopy)",
                     self.upload_key, copied)

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
        count = self.layout.count(size) if size else 0
        pending = 0
        for part in range(1, count + 1):
            if not self._good(part) and not self._copyable(part, size):
                start, end = self.layout.span(part)
                pending += min(end, size) - start
        return pending
