"""The bucket's requests, driven from trio: one method per S3 request, no policy.

Every boto3 call blocks, so each runs in a worker thread through ``trio.to_thread.run_sync``
with one shared ``CapacityLimiter``: the FUSE loop never waits on the network, and the number
of requests in flight is bounded by ``max_thread_count``.  Errors from the store become
:class:`~ocifs.s3.errors.StoreError` carrying an errno, so the FUSE layer never shows a
traceback.  What to do with the requests (multipart copies, the journal, cleaning up after
lost answers) is :mod:`ocifs.upload`'s.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
from typing import IO, Any, Callable, Iterable, Iterator, Protocol, TypeVar

from boto3.s3.transfer import TransferConfig
import botocore.exceptions
from s3transfer.utils import ReadFileChunk
import trio

from ocifs.errors import FsError
from ocifs.s3.client import HEAD_THREADS
from ocifs.s3.errors import StoreError, VersionChanged, to_store_error
from ocifs.s3.inflight import HeadThreads, InFlightGoal
from ocifs.s3.lean import MAX_BODY, LeanRequests, with_lean_attempt
from ocifs.s3.names import has_invalid_utf8, wtf8_decode, wtf8_encode
from ocifs.units import MiB

log = logging.getLogger(__name__)
T = TypeVar("T")
HEAD_BATCHES = 4  # listings sending their HEADs at once (HEAD_THREADS in flight among them)
MIN_HEAD_THREADS = 8  # threads a HEAD batch starts with (more as the round trip asks: inflight)
MAX_SINGLE_COPY = 5 * 1024 * MiB  # CopyObject copies up to 5 GiB
STREAM_CHUNK = 1 * MiB  # what a streamed GET holds in memory at a time


class ObjectStore(Protocol):
    """What the layers above need of a bucket: one method per S3 request, errors as
    :class:`~ocifs.s3.errors.StoreError`.  :class:`Store` is the boto3 implementation; a test
    fake subclasses this protocol and implements what it serves (the rest raise)."""

    prefix: str
    limiter: trio.CapacityLimiter  # bounds the requests in flight (worker threads)
    use_wtf8: bool = False  # s3fs's option: names that are not UTF-8 mapped (ocifs.s3.names)

    def key(self, path: str, directory: bool = False) -> str: raise NotImplementedError
    def path_of(self, key: str) -> str: raise NotImplementedError
    def name_of(self, listed: str) -> str: return listed
    async def head(self, key: str) -> dict | None: raise NotImplementedError
    async def head_many(self, keys: list[str]) -> dict[str, dict | None]: raise NotImplementedError
    async def list_dir(self, prefix: str, max_keys: int | None = None,
                       start_after: str | None = None) -> tuple[list[dict], list[str]]:
        raise NotImplementedError
    async def list_subtree_page(self, prefix: str) -> tuple[list[dict], bool]: raise NotImplementedError
    async def list_recursive(self, prefix: str) -> list[dict]: raise NotImplementedError
    async def get_range_tagged(self, key: str, start: int,
                               length: int) -> tuple[bytes, str | None]: raise NotImplementedError
    async def get_bytes(self, key: str) -> bytes: raise NotImplementedError

    async def get_range_into(self, key: str, start: int, length: int, fd: int,
                             etag: str | None) -> int:
        """Bytes ``[start, start+length)`` of ``key`` written to ``fd`` at their own offsets;
        how many.  Nothing is written from another version than ``etag`` (None: any): that
        raises :class:`~ocifs.s3.errors.VersionChanged`.  This default holds the range in
        memory; :class:`Store` streams it."""
        data, got = await self.get_range_tagged(key, start, length)
        check_etag(key, got, etag)
        return await trio.to_thread.run_sync(os.pwrite, fd, data, start)

    async def download(self, key: str, fileobj: IO[bytes]) -> None: raise NotImplementedError
    async def put_bytes(self, key: str, data: bytes, metadata: dict[str, str],
                        content_type: str) -> dict: raise NotImplementedError
    async def put_file(self, key: str, fd: int, size: int, metadata: dict[str, str],
                       content_type: str) -> dict: raise NotImplementedError
    async def copy_object(self, src: str, dst: str, metadata: dict[str, str],
                          content_type: str) -> None: raise NotImplementedError
    async def delete(self, key: str) -> None: raise NotImplementedError
    async def create_multipart(self, key: str, metadata: dict[str, str],
                               content_type: str) -> dict: raise NotImplementedError
    async def upload_part(self, key: str, upload_id: str, part: int, fd: int, start: int,
                          length: int) -> str: raise NotImplementedError
    async def upload_part_copy(self, key: str, upload_id: str, part: int, source_key: str,
                               start: int, length: int) -> str: raise NotImplementedError
    async def complete_multipart(self, key: str, upload_id: str,
                                 etags: dict[int, str]) -> dict: raise NotImplementedError
    async def abort_multipart(self, key: str, upload_id: str) -> None: raise NotImplementedError
    async def multipart_uploads(self, key_prefix: str) -> list[dict]: raise NotImplementedError


class Store(ObjectStore):
    """One bucket (and key prefix) seen through a boto3 client: the :class:`ObjectStore`.

    ``limiter`` bounds the worker threads doing requests, ``head_limiter`` those doing single
    HEADs (lookups: at least :data:`HEAD_THREADS`), ``batch_limiter`` the HEAD batches of
    listings (:meth:`head_many`, so ``ls -l`` of a big directory is not
    ``entries / max_thread_count`` round trips long); ``upload_config``/``copy_config`` are
    the transfer settings (multipart threshold, part size, parts in flight) for uploads and
    for server-side copies.  ``journal`` records multipart copies in progress (None: not
    recorded), as :class:`~ocifs.upload.writeback.FileWriteback` records multipart uploads.
    ``lean`` sends HEADs, ranged GETs, small PUTs, DELETEs and listing pages without
    botocore's per-request pipeline (:mod:`ocifs.s3.lean`; None: everything through boto3).
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "", max_threads: int = 10,
                 multipart_size: int = 10 * MiB, multipart_threshold: int = 25 * MiB,
                 copy_threshold: int = 512 * MiB, copy_part_size: int = 512 * MiB,
                 parallel_count: int = 5, use_wtf8: bool = False,
                 lean: LeanRequests | None = None) -> None:
        self.client = client
        self.lean = lean
        self.use_wtf8 = use_wtf8  # s3fs's option: invalid UTF-8 bytes as private code points
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.limiter = trio.CapacityLimiter(max_threads)
        self.head_limiter = trio.CapacityLimiter(max(max_threads, HEAD_THREADS))
        self.batch_limiter = trio.CapacityLimiter(HEAD_BATCHES)
        self.head_goal = InFlightGoal(MIN_HEAD_THREADS, HEAD_THREADS)
        self.head_threads = HeadThreads(HEAD_THREADS)
        self.upload_config = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_size,
            max_concurrency=parallel_count, use_threads=True)
        self.copy_config = TransferConfig(
            multipart_threshold=copy_threshold, multipart_chunksize=copy_part_size,
            max_concurrency=parallel_count, use_threads=True)

    def key(self, path: str, directory: bool = False) -> str:
        """The object key of a path relative to the mount root ("" is the root).

        A name that is not valid UTF-8 (lone surrogates from ``surrogateescape``) is mapped
        as s3fs's ``use_wtf8`` does, or refused with EILSEQ without it: S3 cannot hold it,
        and boto3 could not even encode the request."""
        if has_invalid_utf8(path):
            if not self.use_wtf8:
                raise FsError(errno.EILSEQ, f"{path!r} is not valid UTF-8 (see use_wtf8)")
            path = wtf8_encode(path)
        key = self.prefix + path
        return key + "/" if directory and key and not key.endswith("/") else key

    def path_of(self, key: str) -> str:
        return self.name_of(key[len(self.prefix):])

    def name_of(self, listed: str) -> str:
        """The path (part) a listed key (part) stands for: ``key``'s inverse."""
        return wtf8_decode(listed) if self.use_wtf8 else listed

    async def _run(self, what: str, fn: Callable[..., T], *args: Any,
                   limiter: trio.CapacityLimiter | None = None, **kwargs: Any) -> T:
        def call() -> T:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a StoreError
                raise to_store_error(exc, what) from None
        # A cancelled call (a stop giving up) returns at once; its thread finishes alone.
        return await trio.to_thread.run_sync(call, limiter=limiter or self.limiter,
                                             abandon_on_cancel=True)

    def _lean(self, op: str) -> LeanRequests | None:
        """The lean path, when it serves ``op`` on this mount."""
        return self.lean if self.lean is not None and self.lean.serves(op) else None

    # -- checks ---------------------------------------------------------------------------

    def check_bucket_sync(self) -> dict[str, str]:
        """Fail early (before daemonizing) when the bucket, keys or endpoint are wrong; the
        answer's HTTP headers (lower-case names) tell what kind of store this is."""
        try:
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except Exception as exc:  # noqa: BLE001
            raise to_store_error(exc, f"bucket {self.bucket}") from None
        return page.get("ResponseMetadata", {}).get("HTTPHeaders", {})

    # -- reads ----------------------------------------------------------------------------

    def _head_sync(self, key: str) -> dict | None:
        """HeadObject, or None when there is no such object (blocking: in a worker thread).
        Its round trip feeds :attr:`head_goal`."""
        started = time.perf_counter()
        try:
            lean = self._lean("HeadObject")
            if lean is not None:
                head = with_lean_attempt(
                    lambda: lean.head(key),
                    lambda: self.client.head_object(Bucket=self.bucket, Key=key))
            else:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a StoreError
            error = to_store_error(exc, f"HEAD {key}")
            if error.errno != errno.ENOENT:
                raise error from None
            head = None
        self.head_goal.observe(time.perf_counter() - started)
        return head

    async def head(self, key: str) -> dict | None:
        """HeadObject, or None when there is no such object."""
        return await self._run(f"HEAD {key}", self._head_sync, key, limiter=self.head_limiter)

    async def head_many(self, keys: list[str]) -> dict[str, dict | None]:
        """HeadObject of every key (None: no such object), as many at a time as the round
        trip needs (:mod:`ocifs.s3.inflight`, :data:`HEAD_THREADS` at most).

        One trio worker thread runs the batch on the store's :attr:`head_threads`: a trio
        thread call per HEAD (hand-off, result delivery, GIL hand-offs with the FUSE loop)
        cost as much CPU as boto3's request itself, and ``ls -l`` of a big directory is
        1,000s of HEADs.  The batch starts with :data:`MIN_HEAD_THREADS` workers and each
        answer may start more, up to :attr:`head_goal`'s goal.  At most
        :data:`HEAD_BATCHES` batches run at once, sharing the :data:`HEAD_THREADS` kept
        threads (a batch of one key is sent from its own trio thread).
        """
        if not keys:
            return {}

        def head_all() -> dict[str, dict | None]:
            if len(keys) == 1:  # on this thread, no hand-off
                return {keys[0]: self._head_sync(keys[0])}
            results: dict[str, dict | None] = {}
            errors: list[StoreError] = []
            todo = iter(keys)
            left = len(keys)  # keys not yet taken by a worker
            started = running = 0  # workers
            lock = threading.Condition()

            def grow() -> None:
                """Start workers up to the goal (``lock`` held)."""
                nonlocal started, running
                wanted = min(self.head_goal.goal(), started + left)
                while started < wanted:
                    try:
                        self.head_threads.submit(worker)
                    except RuntimeError:  # no thread can be started: those running go on
                        if not running:
                            raise
                        return
                    started += 1
                    running += 1

            def finished() -> None:
                nonlocal running
                with lock:
                    running -= 1
                    lock.notify_all()

            def worker() -> Callable[[], None]:
                """HEAD keys until none is left or one failed; returns what tells the batch
                this worker is done (called by the pool once its thread is free)."""
                nonlocal left
                try:
                    while not errors:
                        with lock:
                            key = next(todo, None)
                            if key is None:
                                break
                            left -= 1
                        try:
                            results[key] = self._head_sync(key)
                        except StoreError as exc:
                            errors.append(exc)
                            break
                        except Exception as exc:  # noqa: BLE001 - a bug fails this batch only
                            log.exception("HEAD %s failed unexpectedly", key)
                            errors.append(StoreError(errno.EIO, f"HEAD {key}: {exc}"))
                            break
                        if left and started < self.head_goal.highest:
                            with lock:
                                grow()
                except Exception as exc:  # noqa: BLE001 - a bug fails this batch only
                    log.exception("a HEAD of %d objects failed unexpectedly", len(keys))
                    errors.append(StoreError(errno.EIO, f"HEAD {len(keys)} objects: {exc}"))
                return finished

            with lock:
                grow()
                while running:
                    lock.wait()
            if errors:
                raise errors[0]
            return results

        return await self._run(f"HEAD {len(keys)} objects", head_all, limiter=self.batch_limiter)

    def _list_page(self, prefix: str, delimiter: str | None = None, max_keys: int | None = None,
                   start_after: str | None = None, token: str | None = None) -> dict:
        """One ListObjectsV2 page (blocking: in a worker thread)."""
        def boto_list() -> dict:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            for name, value in (("Delimiter", delimiter), ("MaxKeys", max_keys),
                                ("StartAfter", start_after), ("ContinuationToken", token)):
                if value is not None:
                    kwargs[name] = value
            return self.client.list_objects_v2(**kwargs)
        lean = self._lean("ListObjectsV2")
        if lean is None:
            return boto_list()
        return with_lean_attempt(
            lambda: lean.list(prefix, delimiter, max_keys, start_after, token), boto_list)

    def _list_all(self, prefix: str, delimiter: str | None = None,
                  start_after: str | None = None) -> tuple[list[dict], list[str]]:
        """Every page: (objects, common prefixes)."""
        objects: list[dict] = []
        prefixes: list[str] = []
        token = None
        while True:
            page = self._list_page(prefix, delimiter, start_after=start_after, token=token)
            objects.extend(page.get("Contents", []))
            prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
            if not page.get("IsTruncated"):
                return objects, prefixes
            token = page["NextContinuationToken"]

    async def list_dir(self, prefix: str, max_keys: int | None = None,
                       start_after: str | None = None) -> tuple[list[dict], list[str]]:
        """ListObjectsV2 with delimiter "/", all pages: (objects, common prefixes); only keys
        after ``start_after`` when given; only the first page of ``max_keys`` when given."""
        def list_all() -> tuple[list[dict], list[str]]:
            if max_keys:
                page = self._list_page(prefix, "/", max_keys, start_after)
                return (page.get("Contents", []),
                        [p["Prefix"] for p in page.get("CommonPrefixes", [])])
            return self._list_all(prefix, "/", start_after)
        return await self._run(f"LIST {prefix}", list_all)

    async def list_subtree_page(self, prefix: str) -> tuple[list[dict], bool]:
        """The first page of every key under ``prefix`` (no delimiter): (objects, whether
        there are more)."""
        def list_page() -> tuple[list[dict], bool]:
            page = self._list_page(prefix)
            return page.get("Contents", []), bool(page.get("IsTruncated"))
        return await self._run(f"LIST {prefix}", list_page)

    async def list_recursive(self, prefix: str) -> list[dict]:
        """Every object under ``prefix`` (no delimiter), all pages."""
        return await self._run(f"LIST {prefix}", lambda: self._list_all(prefix)[0])

    async def get_range_tagged(self, key: str, start: int, length: int) -> tuple[bytes, str | None]:
        """Bytes ``[start, start+length)`` of ``key`` (fewer at its end) and the ETag of the
        version they came from (None for an empty range)."""
        if length <= 0:
            return b"", None
        try:
            return await self._run(f"GET {key}", self._get_sync, key, start, length)
        except StoreError as exc:
            if exc.code == "InvalidRange":
                return b"", None
            raise

    def _get_sync(self, key: str, start: int, length: int) -> tuple[bytes, str | None]:
        """One ranged GET, its body read (blocking: in a worker thread)."""
        wanted = f"bytes={start}-{start + length - 1}"

        def boto_get() -> dict:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=wanted)
            response["Body"] = response["Body"].read()
            return response

        lean = self._lean("GetObject")
        if lean is not None:
            response = with_lean_attempt(lambda: lean.get(key, wanted), boto_get)
        else:
            response = boto_get()
        data = response["Body"]
        return (_ranged_body(key, start, length, data, response.get("ContentRange")),
                response.get("ETag"))

    async def get_range_into(self, key: str, start: int, length: int, fd: int,
                             etag: str | None) -> int:
        """:meth:`ObjectStore.get_range_into`, streamed: :data:`STREAM_CHUNK` bytes in
        memory at a time.  A stream cut on the way is fetched again whole, with retries."""
        if length <= 0:
            return 0
        wanted = f"bytes={start}-{start + length - 1}"

        def boto_get() -> tuple[dict, Iterator[bytes]]:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=wanted)
            return response, response["Body"].iter_chunks(STREAM_CHUNK)

        def get() -> int:
            lean = self._lean("GetObject")
            if lean is not None:
                response, pieces = with_lean_attempt(
                    lambda: lean.get_stream(key, wanted, STREAM_CHUNK), boto_get)
            else:
                response, pieces = boto_get()
            try:
                check_etag(key, response.get("ETag"), etag)
                _check_range_start(key, start, response.get("ContentRange"))
                return _write_pieces(fd, start, length, pieces)
            except (botocore.exceptions.BotoCoreError, OSError) as exc:
                if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
                    raise  # the local file: not the store's
                log.info("GET %s: the answer was cut (%s); asking again", key, exc)
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()
            data, got = self._get_sync(key, start, length)
            check_etag(key, got, etag)
            return os.pwrite(fd, data, start)
        return await self._run(f"GET {key}", get)

    async def get_bytes(self, key: str) -> bytes:
        def get() -> bytes:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return await self._run(f"GET {key}", get)

    async def download(self, key: str, fileobj: IO[bytes]) -> None:
        await self._run(f"GET {key}", self.client.download_fileobj, self.bucket, key, fileobj,
                        Config=self.upload_config)

    # -- writes ---------------------------------------------------------------------------

    async def put_bytes(self, key: str, data: bytes, metadata: dict[str, str], content_type: str) -> dict:
        return await self._run(f"PUT {key}", self._put_sync, key, data, metadata, content_type)

    def _put_sync(self, key: str, body: Any, metadata: dict[str, str],
                  content_type: str) -> dict:
        def boto_put() -> dict:
            return self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                          Metadata=metadata, ContentType=content_type)
        lean = self._lean("PutObject")
        if lean is not None and isinstance(body, bytes) and len(body) <= MAX_BODY:
            return with_lean_attempt(lambda: lean.put(key, body, metadata, content_type),
                                     boto_put)
        return boto_put()

    async def copy_object(self, src: str, dst: str, metadata: dict[str, str],
                          content_type: str) -> None:
        """CopyObject with new metadata (up to :data:`MAX_SINGLE_COPY` bytes)."""
        await self._run(f"COPY {src} -> {dst}", self.client.copy_object, Bucket=self.bucket,
                        Key=dst, CopySource={"Bucket": self.bucket, "Key": src},
                        Metadata=metadata, ContentType=content_type,
                        MetadataDirective="REPLACE")

    async def delete(self, key: str) -> None:
        """DeleteObject (one at a time: DeleteObjects needs a checksum OCI may refuse)."""
        def delete() -> None:
            def boto_delete() -> dict:
                return self.client.delete_object(Bucket=self.bucket, Key=key)
            lean = self._lean("DeleteObject")
            if lean is None:
                boto_delete()
            else:
                with_lean_attempt(lambda: lean.delete(key), boto_delete)
        await self._run(f"DELETE {key}", delete)

    # -- multipart uploads ----------------------------------------------------------------
    # The write-back path (ocifs.upload.writeback) drives these one part at a time, so it can upload
    # parts while a file is still being written and copy unchanged ranges server-side.

    async def put_file(self, key: str, fd: int, size: int, metadata: dict[str, str],
                       content_type: str) -> dict:
        """One PutObject of the first ``size`` bytes of local file ``fd`` (read in chunks)."""
        def put() -> dict:
            if self._lean("PutObject") is not None and size <= MAX_BODY:
                return self._put_sync(key, _read_range(fd, size), metadata, content_type)
            with _file_range(fd, 0, size) as body:
                return self._put_sync(key, body, metadata, content_type)
        return await self._run(f"PUT {key}", put)

    async def create_multipart(self, key: str, metadata: dict[str, str],
                               content_type: str) -> dict:
        """CreateMultipartUpload; the whole answer (``UploadId``, and ``ResponseMetadata``,
        whose retry count and Date tell :mod:`ocifs.upload.multipart` whether an answer was
        lost on the way)."""
        return await self._run(f"CREATE MULTIPART {key}", self.client.create_multipart_upload,
                               Bucket=self.bucket, Key=key, Metadata=metadata,
                               ContentType=content_type)

    async def upload_part(self, key: str, upload_id: str, part: int, fd: int, start: int,
                          length: int) -> str:
        """UploadPart of bytes ``[start, start+length)`` of local file ``fd``; returns the ETag.

        The part is read through a descriptor of its own (``/proc/self/fd``), in chunks, so
        memory never holds a whole part and the caller's file position is untouched.
        """
        def upload() -> str:
            with _file_range(fd, start, length) as body:
                return self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                               PartNumber=part, Body=body)["ETag"]
        return await self._run(f"UPLOAD PART {part} of {key}", upload)

    async def upload_part_copy(self, key: str, upload_id: str, part: int, source_key: str,
                               start: int, length: int) -> str:
        """UploadPartCopy of bytes ``[start, start+length)`` of ``source_key``; returns the ETag."""
        response = await self._run(
            f"COPY PART {part} of {key}", self.client.upload_part_copy, Bucket=self.bucket,
            Key=key, UploadId=upload_id, PartNumber=part,
            CopySource={"Bucket": self.bucket, "Key": source_key},
            CopySourceRange=f"bytes={start}-{start + length - 1}")
        return response["CopyPartResult"]["ETag"]

    async def complete_multipart(self, key: str, upload_id: str, etags: dict[int, str]) -> dict:
        """CompleteMultipartUpload with ``etags`` (part number -> ETag); never empty (OCI
        refuses an empty part list: a zero-byte file is a plain PUT)."""
        if not etags:
            raise ValueError("a multipart upload needs at least one part")
        parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
        return await self._run(f"COMPLETE MULTIPART {key}", self.client.complete_multipart_upload,
                               Bucket=self.bucket, Key=key, UploadId=upload_id,
                               MultipartUpload={"Parts": parts})

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """AbortMultipartUpload; an upload already gone is not an error."""
        try:
            await self._run(f"ABORT MULTIPART {key}", self.client.abort_multipart_upload,
                            Bucket=self.bucket, Key=key, UploadId=upload_id)
        except StoreError as exc:
            if exc.errno != errno.ENOENT:
                raise

    async def multipart_uploads(self, key_prefix: str) -> list[dict]:
        """ListMultipartUploads under ``key_prefix``: every upload not completed nor aborted."""
        return await self._run(f"LIST MULTIPART {key_prefix}", self._all_pages,
                               "list_multipart_uploads", key_prefix, "Uploads")

    def _all_pages(self, operation: str, prefix: str, member: str) -> list[dict]:
        """Every item of ``member`` in every page of a paginated listing (blocking)."""
        paginator = self.client.get_paginator(operation)
        return [item for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                for item in page.get(member, [])]


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def same_etag(a: str, b: str) -> bool:
    """ETags compared without their quotes (some stores and listings drop them)."""
    return a.strip().strip('"') == b.strip().strip('"')


def check_etag(key: str, got: str | None, expected: str | None) -> None:
    """Refuse an answer from another version than ``expected`` (None: any version)."""
    if got is not None and expected is not None and not same_etag(got, expected):
        raise VersionChanged(key, expected, got)


def _check_range_start(key: str, start: int, content_range: str | None) -> None:
    """A streamed ranged answer begins where it was asked to (see :func:`_ranged_body`)."""
    if content_range is None:
        if start != 0:
            raise StoreError(errno.EIO, f"GET {key}: the server ignored the Range header "
                                        f"(asked bytes from {start})")
        return
    match = _CONTENT_RANGE.fullmatch(content_range.strip())
    if match is None or int(match.group(1)) != start:
        raise StoreError(errno.EIO, f"GET {key}: asked bytes from {start}, got range "
                                    f"{content_range!r}")


def _write_pieces(fd: int, start: int, length: int, pieces: Iterable[bytes]) -> int:
    """Write ``pieces`` to ``fd`` from ``start``, at most ``length`` bytes; how many."""
    written = 0
    for piece in pieces:
        piece = piece[:length - written]
        view = memoryview(piece)
        while view:
            n = os.pwrite(fd, view, start + written)
            written += n
            view = view[n:]
        if written >= length:
            break
    return written


def _ranged_body(key: str, start: int, length: int, data: bytes, content_range: str | None) -> bytes:
    """The body of a ranged GET, checked to be the bytes asked for.

    A server that ignores the Range header answers 200 with the whole object: slicing that as
    if it began at ``start`` would hand a reader bytes of another offset, so it is refused
    (unless the range began at 0, where the whole object's first bytes are the right ones).
    A Content-Range that names other bytes than the body's is refused too.
    """
    if content_range is None:
        if start != 0:
            raise StoreError(errno.EIO, f"GET {key}: the server ignored the Range header "
                                        f"(asked bytes from {start})")
        return data[:length]
    match = _CONTENT_RANGE.fullmatch(content_range.strip())
    if match is None or int(match.group(1)) != start \
            or int(match.group(2)) - start + 1 != len(data):
        raise StoreError(errno.EIO, f"GET {key}: asked bytes {start}-{start + length - 1}, "
                                    f"got {len(data)} bytes for range {content_range!r}")
    return data


def _read_range(fd: int, size: int) -> bytes:
    """The first ``size`` bytes of ``fd`` (a small file: one read, the position untouched)."""
    data = os.pread(fd, size, 0)
    while len(data) < size:
        more = os.pread(fd, size - len(data), len(data))
        if not more:
            raise StoreError(errno.EIO, f"the local copy is {len(data)} bytes, not {size}")
        data += more
    return data


def _file_range(fd: int, start: int, length: int) -> ReadFileChunk:
    """A file object over ``[start, start+length)`` of ``fd``, through a new descriptor.

    s3transfer's ReadFileChunk is what boto3's own multipart uploads send: botocore can seek it
    back to retry and learn its length, and reads it in chunks.
    """
    return ReadFileChunk.from_filename(f"/proc/self/fd/{fd}", start, length,
                                       enable_callbacks=False)
