"""Multipart uploads and server-side copies as the mount makes them: recorded in the journal.

Writes (:mod:`ocifs.upload.writeback`) and copies (rename, chmod of big objects) share this:
an upload is recorded as soon as it is created (the journal's thread writes it while the parts
are sent) and forgotten once completed or aborted, so a crash leaves nothing the next mount
does not abort (:mod:`ocifs.upload.journal`).  A retried CreateMultipartUpload whose first answer was lost has created an upload nobody knows
the id of: those are found and aborted here too.
"""

from __future__ import annotations

import datetime
import email.utils
import errno
import logging
import time

import trio

from ocifs.errors import first_leaf
from ocifs.s3.errors import StoreError
from ocifs.s3.store import MAX_SINGLE_COPY, Store
from ocifs.upload.journal import UploadJournal
from ocifs.upload.parts import MAX_PARTS

log = logging.getLogger(__name__)

LOST_CREATION_SLACK = 2.0  # seconds around a retried creation (Date has 1 s resolution)


class Multipart:
    """The mount's multipart uploads: ``store`` sends the requests, ``journal`` records them."""

    def __init__(self, store: Store, journal: UploadJournal) -> None:
        self.store = store
        self.journal = journal

    async def create(self, key: str, metadata: dict[str, str], content_type: str) -> str:
        """CreateMultipartUpload, recorded in the journal; returns the upload id."""
        started = time.monotonic()
        response = await self.store.create_multipart(key, metadata, content_type)
        upload_id = response["UploadId"]
        self.journal.add(key, upload_id)
        if response.get("ResponseMetadata", {}).get("RetryAttempts"):
            await self._abort_lost_creations(key, upload_id, response, time.monotonic() - started)
        return upload_id

    def completed(self, upload_id: str) -> None:
        """The upload was completed: nothing left to abort after a crash."""
        self.journal.remove(upload_id)

    async def abort(self, key: str, upload_id: str) -> bool:
        """Abort ``upload_id`` and forget it; if the store cannot be reached, warn and leave it
        in the journal (the next mount retries).  Returns whether it is gone."""
        try:
            await self.store.abort_multipart(key, upload_id)
        except StoreError as exc:
            log.warning("cannot abort multipart upload %s of %s (the next mount will): %s",
                        upload_id, self.store.path_of(key), exc)
            return False
        self.journal.remove(upload_id)
        return True

    async def abort_given_up(self) -> None:
        """At unmount, abort the uploads the journal still lists: every one was given up (its
        file could not be uploaded, or an earlier abort failed while the store was down).
        Those that cannot be aborted now stay listed for the next mount."""
        for upload_id, key in list(self.journal.uploads.items()):
            if await self.abort(key, upload_id):
                log.info("aborted multipart upload %s of %s, given up earlier", upload_id,
                         self.store.path_of(key))

    async def _abort_lost_creations(self, key: str, upload_id: str, response: dict,
                                    elapsed: float) -> None:
        """Uploads of ``key`` created by attempts whose answers were lost (a reset or a timeout
        after the store acted) are the ones the store says were initiated during this call (by
        its own clock: the answer's Date, less the call's duration)."""
        date = response["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
        if not date:
            return
        try:
            end = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return
        start = end - datetime.timedelta(seconds=elapsed + LOST_CREATION_SLACK)
        end += datetime.timedelta(seconds=LOST_CREATION_SLACK)
        try:
            for upload in await self.store.multipart_uploads(key):
                initiated = upload.get("Initiated")
                if (upload["Key"] == key and upload["UploadId"] != upload_id
                        and initiated is not None and start <= initiated <= end):
                    await self.store.abort_multipart(key, upload["UploadId"])
                    log.info("aborted multipart upload %s of %s, created by an attempt whose "
                             "answer was lost", upload["UploadId"], self.store.path_of(key))
        except StoreError as exc:
            log.warning("cannot look for uploads of %s left by a lost answer: %s", key, exc)

    # -- server-side copies -----------------------------------------------------------------

    async def copy(self, src: str, dst: str, metadata: dict[str, str], content_type: str,
                   size: int | None = None) -> None:
        """Server-side copy with new metadata; multipart copy above ``singlepart_copy_limit``.

        The source's size is asked first (the caller's may be stale: a copy planned from it
        would be cut short), unless the caller's ``size`` says one CopyObject will do: that
        copies the whole source whatever its size, up to 5 GiB; a source grown past that
        is refused by the store, and then its size is asked.
        """
        config = self.store.copy_config
        if size is not None and size <= min(config.multipart_threshold, MAX_SINGLE_COPY):
            try:
                await self.store.copy_object(src, dst, metadata, content_type)
                return
            except StoreError as exc:
                if exc.code not in ("InvalidRequest", "EntityTooLarge"):
                    raise
        head = await self.store.head(src)
        if head is None:
            raise StoreError(errno.ENOENT, f"COPY {src} -> {dst}: no such object", "NoSuchKey")
        size = head["ContentLength"]
        if size <= min(config.multipart_threshold, MAX_SINGLE_COPY):
            await self.store.copy_object(src, dst, metadata, content_type)
            return
        await self._copy_multipart(src, dst, size, metadata, content_type)

    async def _copy_multipart(self, src: str, dst: str, size: int, metadata: dict[str, str],
                              content_type: str) -> None:
        """UploadPartCopy of ``multipart_copy_size`` parts (more when 10,000 would not hold
        ``size``), ``parallel_count`` at once; aborted if any part fails.

        A failed part does not cancel the others: a cancelled call's thread goes on alone, and
        its part could land after the abort.  The parts in flight are waited for, no new one
        is started, and the upload is aborted once none is left.
        """
        config = self.store.copy_config
        part_size = max(config.multipart_chunksize, -(-size // MAX_PARTS))
        upload_id = await self.create(dst, metadata, content_type)
        etags: dict[int, str] = {}
        failures: list[StoreError] = []
        slots = trio.Semaphore(config.max_request_concurrency)

        async def copy_part(part: int, start: int) -> None:
            try:
                length = min(part_size, size - start)
                etags[part] = await self.store.upload_part_copy(dst, upload_id, part, src, start,
                                                                length)
            except StoreError as exc:
                failures.append(exc)
            finally:
                slots.release()

        try:
            async with trio.open_nursery() as nursery:
                for part, start in enumerate(range(0, size, part_size), start=1):
                    await slots.acquire()
                    if failures:
                        slots.release()
                        break
                    nursery.start_soon(copy_part, part, start)
            if failures:
                raise failures[0]
            await self.store.complete_multipart(dst, upload_id, etags)
        except Exception as exc:  # not on cancellation: a mount giving up leaves it to the journal
            await self.abort(dst, upload_id)
            raise (first_leaf(exc) if isinstance(exc, ExceptionGroup) else exc) from None
        self.completed(upload_id)
