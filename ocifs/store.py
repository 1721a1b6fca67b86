"""The bucket: a boto3 client set up for S3-compatible stores, driven from trio.

Every boto3 call blocks, so each runs in a worker thread through ``trio.to_thread.run_sync``
with one shared ``CapacityLimiter``: the FUSE loop never waits on the network, and the number
of requests in flight is bounded by ``max_thread_count``.  Errors from the store become
:class:`StoreError` carrying an errno, so the FUSE layer never shows a traceback.
"""

from __future__ import annotations

import datetime
import email.utils
import errno
import logging
import re
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Callable, TypeVar

import boto3
import botocore.exceptions
import botocore.session
import botocore.utils
import trio
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from s3transfer.utils import ReadFileChunk

from .credentials import Credentials
from .listparse import install_fast_listing
from .parts import MAX_PARTS
from .retries import install_paced_retries

if TYPE_CHECKING:
    from .journal import UploadJournal

log = logging.getLogger(__name__)
T = TypeVar("T")
MiB = 1024 * 1024
# HEADs are small and mostly waiting for the round trip: a directory listing sends one per
# entry not in the stat cache, so they get more threads (and connections) than other requests.
HEAD_THREADS = 32
HEAD_BATCHES = 4  # listings sending their HEADs at once (HEAD_THREADS in flight among them)
MAX_SINGLE_COPY = 5 * 1024 * MiB  # CopyObject copies up to 5 GiB
LOST_CREATION_SLACK = 2.0  # seconds around a retried creation (Date has 1 s resolution)

# S3 error codes and the errno a program should see for them.
_ERRNO_BY_CODE = {
    "NoSuchKey": errno.ENOENT,
    "NotFound": errno.ENOENT,
    "404": errno.ENOENT,
    "NoSuchBucket": errno.ENOENT,
    "NoSuchUpload": errno.ENOENT,
    "AccessDenied": errno.EACCES,
    "403": errno.EACCES,
    "Forbidden": errno.EACCES,
    "InvalidAccessKeyId": errno.EACCES,
    "SignatureDoesNotMatch": errno.EACCES,
    "AllAccessDisabled": errno.EACCES,
    "KeyTooLongError": errno.ENAMETOOLONG,
    "EntityTooLarge": errno.EFBIG,
    "InvalidRange": errno.EINVAL,
    "416": errno.EINVAL,
    "InvalidArgument": errno.EINVAL,
    "400": errno.EINVAL,
    "BadRequest": errno.EINVAL,
    "InvalidObjectName": errno.EINVAL,
    # Throttling that outlasted the retries is an I/O error: EAGAIN would tell a program
    # that reads or writes a regular file to try again at once (Python's unbuffered write
    # even returns None for it, as if nothing had gone wrong).
    "SlowDown": errno.EIO,
    "ServiceUnavailable": errno.EIO,
    "QuotaExceeded": errno.ENOSPC,
}


class StoreError(Exception):
    """A failed store request: ``errno`` for the caller, a message without secrets for the log."""

    def __init__(self, err: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.errno = err
        self.code = code


def error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return exc.__class__.__name__


def to_store_error(exc: BaseException, what: str) -> StoreError:
    """Map a boto3/botocore exception to a :class:`StoreError` with a sensible errno."""
    if isinstance(exc, StoreError):
        return exc
    code = error_code(exc)
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        err = _ERRNO_BY_CODE.get(code) or _ERRNO_BY_CODE.get(str(status), errno.EIO)
        message = exc.response.get("Error", {}).get("Message") or code
        return StoreError(err, f"{what}: {code} ({message})", code)
    # Timeouts first: botocore's ConnectTimeoutError is also a ConnectionError.
    if isinstance(exc, (botocore.exceptions.ReadTimeoutError,
                        botocore.exceptions.ConnectTimeoutError)):
        return StoreError(errno.ETIMEDOUT, f"{what}: timed out", code)
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ConnectionError)):
        return StoreError(errno.EIO, f"{what}: cannot reach the endpoint ({code})", code)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return StoreError(errno.EACCES, f"{what}: no credentials", code)
    if isinstance(exc, OSError) and exc.errno:
        return StoreError(exc.errno, f"{what}: {exc.strerror}", code)
    return StoreError(errno.EIO, f"{what}: {code}: {exc}", code)


def parse_timestamp(value: str) -> datetime.datetime:
    """botocore's timestamp parser, with fast paths for the two forms S3 sends.

    botocore parses every timestamp with dateutil, about 30 µs each: half of the CPU of
    parsing a 1,000-key listing and a quarter of a HEAD's.  ListObjectsV2 sends ISO 8601
    (``2026-11-25T20:28:30.000Z``), HEAD an RFC 1123 date; anything else goes to botocore.
    """
    try:
        if value[:1].isdigit():
            parsed = datetime.datetime.fromisoformat(value)
        else:
            parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is not None:
            return parsed
    except (ValueError, TypeError):
        pass
    return botocore.utils.parse_timestamp(value)


def make_client(url: str, region: str, credentials: Credentials, path_style: bool,
                retries: int, connect_timeout: float, read_timeout: float,
                max_pool: int) -> Any:
    """A boto3 S3 client that S3-compatible stores (OCI first) accept.

    Path-style addressing when asked, SigV4 with the given region, checksums only when an
    operation requires one (OCI rejects botocore's default CRC32 and aws-chunked bodies),
    and retries as :mod:`ocifs.retries` paces them (5xx, 409, 429 and throttling codes,
    timeouts, connection errors).  Timestamps take :func:`parse_timestamp`'s fast paths, and
    listings :mod:`ocifs.listparse`'s compiled parse.
    """
    config = Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": "path" if path_style else "auto"},
        retries={"mode": "standard", "total_max_attempts": retries + 1},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool + HEAD_THREADS,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        tcp_keepalive=True,
    )
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp)
    session = boto3.session.Session(
        botocore_session=core,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.session_token,
    )
    client = session.client("s3", endpoint_url=url, config=config)
    install_paced_retries(client, retries)
    install_fast_listing(client, parse_timestamp)
    return client


class Store:
    """One bucket (and key prefix) seen through a boto3 client.

    ``limiter`` bounds the worker threads doing requests, ``head_limiter`` those doing single
    HEADs (lookups: at least :data:`HEAD_THREADS`), ``batch_limiter`` the HEAD batches of
    listings (:meth:`head_many`, so ``ls -l`` of a big directory is not
    ``entries / max_thread_count`` round trips long); ``upload_config``/``copy_config`` are
    the transfer settings (multipart threshold, part size, parts in flight) for uploads and
    for server-side copies.  ``journal`` records multipart copies in progress (None: not
    recorded), as :class:`~ocifs.writeback.FileWriteback` records multipart uploads.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "", max_threads: int = 10,
                 multipart_size: int = 10 * MiB, multipart_threshold: int = 25 * MiB,
                 copy_threshold: int = 512 * MiB, copy_part_size: int = 512 * MiB,
                 parallel_count: int = 5) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.limiter = trio.CapacityLimiter(max_threads)
        self.head_limiter = trio.CapacityLimiter(max(max_threads, HEAD_THREADS))
        self.batch_limiter = trio.CapacityLimiter(HEAD_BATCHES)
        self._heads_in_flight = threading.BoundedSemaphore(HEAD_THREADS)
        self.upload_config = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_size,
            max_concurrency=parallel_count, use_threads=True)
        self.copy_config = TransferConfig(
            multipart_threshold=copy_threshold, multipart_chunksize=copy_part_size,
            max_concurrency=parallel_count, use_threads=True)
        self.journal: UploadJournal | None = None

    def key(self, path: str, directory: bool = False) -> str:
        """The object key of a path relative to the mount root ("" is the root)."""
        key = self.prefix + path
        return key + "/" if directory and key and not key.endswith("/") else key

    def path_of(self, key: str) -> str:
        return key[len(self.prefix):]

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

    # -- checks ---------------------------------------------------------------------------

    def check_bucket_sync(self) -> None:
        """Fail early (before daemonizing) when the bucket, keys or endpoint are wrong."""
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except Exception as exc:  # noqa: BLE001
            raise to_store_error(exc, f"bucket {self.bucket}") from None

    # -- reads ----------------------------------------------------------------------------

    def _head_sync(self, key: str) -> dict | None:
        """HeadObject, or None when there is no such object (blocking: in a worker thread)."""
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a StoreError
            error = to_store_error(exc, f"HEAD {key}")
            if error.errno == errno.ENOENT:
                return None
            raise error from None

    async def head(self, key: str) -> dict | None:
        """HeadObject, or None when there is no such object."""
        return await self._run(f"HEAD {key}", self._head_sync, key, limiter=self.head_limiter)

    async def head_many(self, keys: list[str]) -> dict[str, dict | None]:
        """HeadObject of every key (None: no such object), :data:`HEAD_THREADS` at a time.

        One trio worker thread runs the batch on threads of its own: a trio thread call per
        HEAD (hand-off, result delivery, GIL hand-offs with the FUSE loop) cost as much CPU
        as boto3's request itself, and ``ls -l`` of a big directory is 1,000s of HEADs.  The
        threads are daemons, like trio's, so a stop never waits for a HEAD that hangs.  At
        most :data:`HEAD_BATCHES` batches run at once, with :data:`HEAD_THREADS` HEADs in
        flight among them.
        """
        if not keys:
            return {}

        def head_one(key: str) -> dict | None:
            with self._heads_in_flight:
                return self._head_sync(key)

        def head_all() -> dict[str, dict | None]:
            if len(keys) == 1:
                return {keys[0]: head_one(keys[0])}
            results: dict[str, dict | None] = {}
            errors: list[StoreError] = []
            todo = iter(keys)
            lock = threading.Lock()

            def worker() -> None:
                while not errors:
                    with lock:
                        key = next(todo, None)
                    if key is None:
                        return
                    try:
                        results[key] = head_one(key)
                    except StoreError as exc:
                        errors.append(exc)

            threads = [threading.Thread(target=worker, name="ocifs-head", daemon=True)
                       for _ in range(min(len(keys), HEAD_THREADS))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
            return results

        return await self._run(f"HEAD {len(keys)} objects", head_all, limiter=self.batch_limiter)

    async def list_dir(self, prefix: str, max_keys: int | None = None,
                       start_after: str | None = None) -> tuple[list[dict], list[str]]:
        """ListObjectsV2 with delimiter "/", all pages: (objects, common prefixes); only keys
        after ``start_after`` when given."""
        def list_all() -> tuple[list[dict], list[str]]:
            objects: list[dict] = []
            prefixes: list[str] = []
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
            if max_keys:
                kwargs["MaxKeys"] = max_keys
            if start_after:
                kwargs["StartAfter"] = start_after
            while True:
                page = self.client.list_objects_v2(**kwargs)
                objects.extend(page.get("Contents", []))
                prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
                if max_keys or not page.get("IsTruncated"):
                    return objects, prefixes
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        return await self._run(f"LIST {prefix}", list_all)

    async def list_subtree_page(self, prefix: str) -> tuple[list[dict], bool]:
        """The first page of every key under ``prefix`` (no delimiter): (objects, whether
        there are more)."""
        def list_page() -> tuple[list[dict], bool]:
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
            return page.get("Contents", []), bool(page.get("IsTruncated"))
        return await self._run(f"LIST {prefix}", list_page)

    async def list_recursive(self, prefix: str) -> list[dict]:
        """Every object under ``prefix`` (no delimiter), all pages."""
        def list_all() -> list[dict]:
            paginator = self.client.get_paginator("list_objects_v2")
            return [obj for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                    for obj in page.get("Contents", [])]
        return await self._run(f"LIST {prefix}", list_all)

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        return (await self.get_range_tagged(key, start, length))[0]

    async def get_range_tagged(self, key: str, start: int, length: int) -> tuple[bytes, str | None]:
        """Bytes ``[start, start+length)`` of ``key`` (fewer at its end) and the ETag of the
        version they came from (None for an empty range)."""
        if length <= 0:
            return b"", None
        def get() -> tuple[bytes, str | None]:
            response = self.client.get_object(Bucket=self.bucket, Key=key,
                                              Range=f"bytes={start}-{start + length - 1}")
            data = response["Body"].read()
            return _ranged_body(key, start, length, data, response.get("ContentRange")), \
                response.get("ETag")
        try:
            return await self._run(f"GET {key}", get)
        except StoreError as exc:
            if exc.code == "InvalidRange":
                return b"", None
            raise

    async def get_bytes(self, key: str) -> bytes:
        def get() -> bytes:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return await self._run(f"GET {key}", get)

    async def download(self, key: str, fileobj: IO[bytes]) -> None:
        await self._run(f"GET {key}", self.client.download_fileobj, self.bucket, key, fileobj,
                        Config=self.upload_config)

    # -- writes ---------------------------------------------------------------------------

    async def put_bytes(self, key: str, data: bytes, metadata: dict[str, str], content_type: str) -> dict:
        return await self._run(f"PUT {key}", self.client.put_object, Bucket=self.bucket, Key=key,
                               Body=data, Metadata=metadata, ContentType=content_type)

    async def copy(self, src: str, dst: str, metadata: dict[str, str], content_type: str) -> None:
        """Server-side copy with new metadata; multipart copy above ``singlepart_copy_limit``.

        The source's size is asked first (the caller's may be stale: a copy planned from it
        would be cut short).  A multipart copy is recorded in ``journal`` like the uploads of
        the write path, so a mount killed in the middle of a big rename leaves nothing the
        next mount does not abort.
        """
        head = await self.head(src)
        if head is None:
            raise StoreError(errno.ENOENT, f"COPY {src} -> {dst}: no such object", "NoSuchKey")
        size = head["ContentLength"]
        if size <= min(self.copy_config.multipart_threshold, MAX_SINGLE_COPY):
            await self._run(f"COPY {src} -> {dst}", self.client.copy_object, Bucket=self.bucket,
                            Key=dst, CopySource={"Bucket": self.bucket, "Key": src},
                            Metadata=metadata, ContentType=content_type,
                            MetadataDirective="REPLACE")
            return
        await self._copy_multipart(src, dst, size, metadata, content_type)

    async def _copy_multipart(self, src: str, dst: str, size: int, metadata: dict[str, str],
                              content_type: str) -> None:
        """UploadPartCopy of ``multipart_copy_size`` parts (more when 10,000 would not hold
        ``size``), ``parallel_count`` at once; aborted if any part fails."""
        part_size = max(self.copy_config.multipart_chunksize, -(-size // MAX_PARTS))
        upload_id = await self.create_multipart(dst, metadata, content_type)
        if self.journal is not None:
            self.journal.add(dst, upload_id)
        etags: dict[int, str] = {}
        slots = trio.Semaphore(self.copy_config.max_request_concurrency)

        async def copy_part(part: int, start: int) -> None:
            async with slots:
                length = min(part_size, size - start)
                etags[part] = await self.upload_part_copy(dst, upload_id, part, src, start, length)

        try:
            async with trio.open_nursery() as nursery:
                for part, start in enumerate(range(0, size, part_size), start=1):
                    nursery.start_soon(copy_part, part, start)
            await self.complete_multipart(dst, upload_id, etags)
        except Exception as exc:  # not on cancellation: a mount giving up leaves it to the journal
            await self._abort_quietly(dst, upload_id)
            while isinstance(exc, ExceptionGroup):  # parts fail in a nursery: the first one
                exc = exc.exceptions[0]
            raise exc from None
        if self.journal is not None:
            self.journal.remove(upload_id)

    async def _abort_quietly(self, key: str, upload_id: str) -> None:
        try:
            await self.abort_multipart(key, upload_id)
        except StoreError as exc:
            log.warning("cannot abort multipart copy %s to %s (the next mount will): %s",
                        upload_id, key, exc)
            return
        if self.journal is not None:
            self.journal.remove(upload_id)

    async def delete(self, key: str) -> None:
        """DeleteObject (one at a time: DeleteObjects needs a checksum OCI may refuse)."""
        await self._run(f"DELETE {key}", self.client.delete_object, Bucket=self.bucket, Key=key)

    # -- multipart uploads ----------------------------------------------------------------
    # The write-back path (ocifs.writeback) drives these one part at a time, so it can upload
    # parts while a file is still being written and copy unchanged ranges server-side.

    async def put_file(self, key: str, fd: int, size: int, metadata: dict[str, str],
                       content_type: str) -> dict:
        """One PutObject of the first ``size`` bytes of local file ``fd`` (read in chunks)."""
        def put() -> dict:
            with _file_range(fd, 0, size) as body:
                return self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                              Metadata=metadata, ContentType=content_type)
        return await self._run(f"PUT {key}", put)

    async def create_multipart(self, key: str, metadata: dict[str, str], content_type: str) -> str:
        """CreateMultipartUpload; returns the upload id."""
        started = time.monotonic()
        response = await self._run(f"CREATE MULTIPART {key}", self.client.create_multipart_upload,
                                   Bucket=self.bucket, Key=key, Metadata=metadata,
                                   ContentType=content_type)
        upload_id = response["UploadId"]
        if response.get("ResponseMetadata", {}).get("RetryAttempts"):
            await self._abort_lost_creations(key, upload_id, response, time.monotonic() - started)
        return upload_id

    async def _abort_lost_creations(self, key: str, upload_id: str, response: dict,
                                    elapsed: float) -> None:
        """A retried CreateMultipartUpload may have created uploads whose answers were lost
        (a reset or a timeout after the store acted): nobody knows their ids, so nobody would
        ever abort them.  They are the uploads of ``key`` the store says were initiated during
        this call (by its own clock: the answer's Date, less the call's duration)."""
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
            for upload in await self.multipart_uploads(key):
                initiated = upload.get("Initiated")
                if (upload["Key"] == key and upload["UploadId"] != upload_id
                        and initiated is not None and start <= initiated <= end):
                    await self.abort_multipart(key, upload["UploadId"])
                    log.info("aborted multipart upload %s of %s, created by an attempt whose "
                             "answer was lost", upload["UploadId"], self.path_of(key))
        except StoreError as exc:
            log.warning("cannot look for uploads of %s left by a lost answer: %s", key, exc)

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
        def list_all() -> list[dict]:
            paginator = self.client.get_paginator("list_multipart_uploads")
            return [upload for page in paginator.paginate(Bucket=self.bucket, Prefix=key_prefix)
                    for upload in page.get("Uploads", [])]
        return await self._run(f"LIST MULTIPART {key_prefix}", list_all)


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


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


def _file_range(fd: int, start: int, length: int) -> ReadFileChunk:
    """A file object over ``[start, start+length)`` of ``fd``, through a new descriptor.

    s3transfer's ReadFileChunk is what boto3's own multipart uploads send: botocore can seek it
    back to retry and learn its length, and reads it in chunks.
    """
    return ReadFileChunk.from_filename(f"/proc/self/fd/{fd}", start, length,
                                       enable_callbacks=False)
