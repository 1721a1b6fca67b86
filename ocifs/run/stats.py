"""What one mount has done so far: the counters behind ``ocifs status`` and ``-o metrics``.

:class:`MountStats` owns a per-mount ``prometheus_client`` registry whose metrics *are* the
counters (no second copy): S3 requests by operation and outcome, their durations and retries,
bytes up and down, FUSE operations by errno and their latency.  It also keeps what a
registry cannot hold: the uploads in flight, when each file written since the mount last
became durable, and the last errors.

Everything is counted where it already happens, at two boundaries, so the data path pays a
few microseconds per request at most: botocore's events on the mount's client (see
:meth:`MountStats.install`) and the FUSE errno wrapper (:meth:`MountStats.fuse_op`, called by
:func:`ocifs.fuse.errors.fuse_errors`).  botocore's events run in worker threads: the state
kept here beside the registry is guarded by one lock.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import errno as errno_module
import fnmatch
import functools
import logging
import threading
import time
import urllib.parse
from typing import Any, Callable, Iterable

from botocore.utils import determine_content_length
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

# FUSE operations take microseconds to seconds; S3 requests milliseconds to minutes.
FUSE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
S3_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
              300.0)
LAST_ERRORS = 10      # errors kept for ``ocifs status``
LARGE_UPLOAD = 64 * 1024 * 1024  # a single PutObject this big logs its start and end
_CONTEXT_KEY = "ocifs_stats"  # what a request's botocore context carries for us
_UPLOADING_OPS = ("PutObject", "UploadPart")


@dataclasses.dataclass
class Upload:
    """One upload in flight: a multipart upload (``upload_id``) or a single PutObject."""

    path: str
    started: float           # time.time()
    last_progress: float     # time.time() of its creation or its last completed part
    upload_id: str | None = None
    bytes_sent: int = 0
    parts_done: int = 0
    total: int | None = None  # a PutObject's size (a multipart's comes from the open file)


@dataclasses.dataclass(eq=False)  # a key of ``uploads``: hashed by identity
class _Call:
    """What one API call's context carries from its first event to its last."""

    op: str
    started: float            # perf_counter()
    key: str | None = None
    path: str | None = None
    upload_id: str | None = None
    length: int | None = None  # the request body's bytes (PutObject, UploadPart)
    upload: Upload | None = None


def _harmless(handler: Callable[..., None]) -> Callable[..., None]:
    """A botocore handler that can never fail the request it counts (a bug here is logged
    once, and that request is not counted)."""
    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:  # noqa: BLE001 - counting must never cost a request
            if not wrapper.failed:  # type: ignore[attr-defined]
                wrapper.failed = True  # type: ignore[attr-defined]
                log.exception("counting a request failed (counts may be off from now)")
    wrapper.failed = False  # type: ignore[attr-defined]
    return wrapper


class MountStats:
    """The counters of one mount; ``path_of`` turns an object key into the mount's path,
    ``watch`` is ``-o watch``'s glob (files whose last upload time is a metric)."""

    def __init__(self, path_of: Callable[[str], str] = lambda key: key,
                 watch: str | None = None) -> None:
        self.path_of = path_of
        self.watch = watch
        self.started = time.time()
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.s3_requests = Counter("ocifs_s3_requests", "S3 requests sent (every attempt), by "
                                   "operation and HTTP status or error", ["op", "status"],
                                   registry=reg)
        self.s3_seconds = Histogram("ocifs_s3_request_seconds", "Duration of S3 calls, "
                                    "retries included", ["op"], buckets=S3_BUCKETS, registry=reg)
        self.s3_retries = Counter("ocifs_s3_retries", "S3 attempts that were retried", ["op"],
                                  registry=reg)
        self.uploaded = Counter("ocifs_uploaded_bytes", "Bytes the store accepted "
                                "(PutObject and UploadPart)", registry=reg)
        self.downloaded = Counter("ocifs_downloaded_bytes", "Bytes of GetObject answers",
                                  registry=reg)
        self.fuse = FuseCounts(FUSE_BUCKETS)
        reg.register(self.fuse)
        self.fuse_ops = self.fuse_seconds = self.fuse  # what status reads: both families
        self.dirty_bytes = Gauge("ocifs_dirty_bytes", "Bytes written and not yet in the bucket",
                                 registry=reg)
        self.dirty_files = Gauge("ocifs_dirty_files", "Files with data not yet in the bucket",
                                 registry=reg)
        self.in_flight = Gauge("ocifs_uploads_in_flight", "Uploads under way", registry=reg)
        self.cache_hits = Counter("ocifs_cache_hits", "Cache lookups answered", ["cache"],
                                  registry=reg)
        self.cache_misses = Counter("ocifs_cache_misses", "Cache lookups not answered",
                                    ["cache"], registry=reg)
        self.last_upload = Gauge("ocifs_last_upload_timestamp_seconds", "When a file matching "
                                 "-o watch last became durable in the bucket", ["path"],
                                 registry=reg)
        self.in_flight.set_function(lambda: len(self.uploads))
        for cache in ("stat", "listing", "data"):  # shown from the start, at 0
            self.cache_hits.labels(cache)
            self.cache_misses.labels(cache)
        self._lock = threading.Lock()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.uploads: dict[object, Upload] = {}   # upload id, or the call, -> Upload
        self.durable: dict[str, tuple[float, int]] = {}  # path -> (time, size)
        self._sizes: dict[str, int] = {}  # key -> size of what this mount stored there
        self.errors: collections.deque[dict[str, Any]] = collections.deque(maxlen=LAST_ERRORS)
        self.last_answer: float | None = None  # time.time() of the store's last answer
        self._cache_synced: dict[tuple[Any, str], int] = {}  # what the counters hold

    # -- FUSE ---------------------------------------------------------------------------

    def fuse_op(self, op: str, outcome: str, seconds: float) -> None:
        """One FUSE operation finished (``outcome``: ``ok`` or the errno's name)."""
        self.fuse.add(op, outcome, seconds)

    # -- botocore events ------------------------------------------------------------------

    def install(self, client: Any) -> None:
        """Count every request of ``client`` (a boto3 S3 client) through botocore's events."""
        events = client.meta.events
        events.register("before-parameter-build.s3", self._parameters)
        events.register("before-call.s3", self._before_call)
        events.register("response-received.s3", self._attempt)
        events.register("after-call.s3", self._after_call)
        events.register("after-call-error.s3", self._after_error)

    @_harmless
    def _parameters(self, params: dict, model: Any, context: dict, **_: Any) -> None:
        key = params.get("Key")
        key = key if isinstance(key, str) else None
        call = _Call(model.name, time.perf_counter(), key,
                     self.path_of(key) if key is not None else None, params.get("UploadId"))
        context[_CONTEXT_KEY] = call
        if model.name == "UploadPartCopy":
            call.length = _range_length(params.get("CopySourceRange"))
        elif model.name == "CopyObject":
            call.length = self._sizes.get(_source_key(params.get("CopySource")) or "")

    @_harmless
    def _before_call(self, params: dict, model: Any, context: dict, **_: Any) -> None:
        call = context.get(_CONTEXT_KEY)
        if call is None:
            return
        call.started = time.perf_counter()
        if model.name in _UPLOADING_OPS:
            try:
                call.length = determine_content_length(params.get("body"))
            except Exception:  # noqa: BLE001 - an unknown body is just not counted
                call.length = None
        if model.name == "PutObject" and call.path is not None:
            now = time.time()
            call.upload = Upload(call.path, now, now, total=call.length)
            with self._lock:
                self.uploads[call] = call.upload
            if (call.length or 0) >= LARGE_UPLOAD:
                log.info("%s: uploading %d bytes", call.path, call.length)

    @_harmless
    def _attempt(self, context: dict, exception: Exception | None = None,
                 response_dict: dict | None = None, **_: Any) -> None:
        """One attempt answered (or failed to): what the store saw."""
        call = context.get(_CONTEXT_KEY)
        if call is None:
            return
        if response_dict is not None:
            status = response_dict.get("status_code", 0)
            label = str(status)
            if status < 500:
                self.last_answer = time.time()
            if 200 <= status < 300:
                if call.op in _UPLOADING_OPS and call.length:
                    self.uploaded.inc(call.length)
                elif call.op == "GetObject":
                    length = response_dict.get("headers", {}).get("content-length")
                    if length and length.isdigit():
                        self.downloaded.inc(int(length))
            elif status >= 500 or status in (409, 429):
                self.error(call.op, call.path, f"{status} {_error_code(response_dict)}".strip())
        else:
            label = exception.__class__.__name__ if exception is not None else "unknown"
            self.error(call.op, call.path, f"{label}: {exception}")
        self._child(self.s3_requests, call.op, label).inc()

    @_harmless
    def _after_call(self, http_response: Any, parsed: dict, model: Any, context: dict,
                    **_: Any) -> None:
        call = context.get(_CONTEXT_KEY)
        if call is None:
            return
        self._finished(call, context)
        if http_response.status_code < 300:
            self._succeeded(call, parsed)
        elif (http_response.status_code < 500 and call.op != "HeadObject"
              and http_response.status_code not in (304, 404, 409, 412, 429)):
            # A refusal (403, 400...); 5xx, 409 and 429 were noted at each attempt.
            self.error(call.op, call.path, _describe(parsed, http_response.status_code))

    @_harmless
    def _after_error(self, exception: Exception, context: dict, **_: Any) -> None:
        call = context.get(_CONTEXT_KEY)
        if call is not None:
            self._finished(call, context)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once (prometheus_client checks and joins the
        labels on every call: 5% of a cold ``find``'s daemon samples)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    @_harmless
    def lean_attempt(self, op: str, key: str, started: float, length: int, response: Any,
                     parsed: dict | None, exception: BaseException | None,
                     retried: bool) -> None:
        """One request of :mod:`ocifs.s3.lean` (no botocore events), counted as they are;
        ``retried``: boto3 sends it again, and counts that call itself."""
        call = _Call(op, started, key, self.path_of(key))
        call.length = length if op in _UPLOADING_OPS else None
        context = {_CONTEXT_KEY: call}
        answer = None if response is None else {  # headers: only a GET's length is read
            "status_code": response.status_code,
            "headers": response.headers if op == "GetObject" else {},
            "body": response.content if response.status_code >= 300 else b""}
        self._attempt(context, exception=exception, response_dict=answer)
        if retried:
            self._child(self.s3_retries, op).inc()
        elif response is not None:
            self._after_call(response, parsed or {}, None, context)
        else:
            self._after_error(exception, context)

    def _finished(self, call: _Call, context: dict) -> None:
        self._child(self.s3_seconds, call.op).observe(time.perf_counter() - call.started)
        attempts = context.get("retries", {}).get("attempt", 1)
        if attempts > 1:
            self._child(self.s3_retries, call.op).inc(attempts - 1)
        if call.upload is not None or call.op == "AbortMultipartUpload":
            with self._lock:  # an upload being aborted is given up, whatever the answer
                self.uploads.pop(call if call.upload is not None else call.upload_id, None)

    def _succeeded(self, call: _Call, parsed: dict) -> None:
        op, now = call.op, time.time()
        key = call.key
        if op == "PutObject" and call.path is not None:
            if (call.length or 0) >= LARGE_UPLOAD:
                log.info("%s: upload of %d bytes completed", call.path, call.length)
            self._became_durable(key, call.path, call.length or 0, now)
        elif op == "CopyObject" and call.path is not None and call.length is not None:
            self._became_durable(key, call.path, call.length, now)
        elif op == "DeleteObject" and call.path is not None:
            with self._lock:  # renamed or removed: no longer a file of the mount
                self.durable.pop(call.path, None)
                self._sizes.pop(key or "", None)
        elif op == "CreateMultipartUpload" and call.path is not None:
            upload_id = parsed.get("UploadId")
            with self._lock:
                self.uploads[upload_id] = Upload(call.path, now, now, upload_id=upload_id)
        elif op in ("UploadPart", "UploadPartCopy"):
            with self._lock:
                upload = self.uploads.get(call.upload_id)
                if upload is not None:
                    upload.parts_done += 1
                    upload.bytes_sent += call.length or 0
                    upload.last_progress = now
        elif op == "CompleteMultipartUpload":
            with self._lock:
                upload = self.uploads.pop(call.upload_id, None)
            if upload is not None:
                self._became_durable(key, upload.path, upload.bytes_sent, now)

    def _became_durable(self, key: str | None, path: str, size: int, when: float) -> None:
        with self._lock:
            self.durable[path] = (when, size)
            if key is not None:
                self._sizes[key] = size
        if self.watch and self.watched(path):
            self.last_upload.labels(path).set(when)

    def watched(self, path: str) -> bool:
        """``path`` matches ``-o watch`` (the whole path, or its name alone)."""
        assert self.watch is not None
        return any(fnmatch.fnmatchcase(path, glob) or fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], glob)
                   for glob in self.watch.split(":"))

    def error(self, op: str, path: str | None, message: str) -> None:
        """Remember a failed request (its message never holds a secret: botocore's do not)."""
        entry = {"time": time.time(), "op": op, "path": path, "error": " ".join(message.split())}
        with self._lock:
            self.errors.append(entry)

    # -- what is read out -----------------------------------------------------------------

    def uploads_now(self) -> list[Upload]:
        with self._lock:
            return [dataclasses.replace(u) for u in self.uploads.values()]

    def durable_now(self) -> dict[str, tuple[float, int]]:
        with self._lock:
            return dict(self.durable)

    def errors_now(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.errors)

    def set_cache_counts(self, cache: str, hits: int, misses: int) -> None:
        """Bring the cache counters up to the cache's own counts (read when asked)."""
        for counter, value in ((self.cache_hits, hits), (self.cache_misses, misses)):
            synced = self._cache_synced.get((counter, cache), 0)
            if value > synced:
                counter.labels(cache).inc(value - synced)
                self._cache_synced[(counter, cache)] = value


class _OpCounts:
    __slots__ = ("buckets", "total", "outcomes")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.total = 0.0
        self.outcomes: dict[str, int] = {}


class FuseCounts:
    """``ocifs_fuse_ops_total{op,errno}`` and ``ocifs_fuse_op_seconds{op}``, kept as plain
    integers and handed to prometheus_client as a custom collector.

    A FUSE operation is the hot path (a 128 KiB write takes a fraction of a millisecond):
    prometheus_client's Histogram takes a lock and scans its buckets for each observation,
    this is one bisect and three additions.  Every operation runs in the trio thread, so no
    lock is needed; a scrape (another thread) reads copies.
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.by_op: dict[str, _OpCounts] = {}

    def add(self, op: str, outcome: str, seconds: float) -> None:
        counts = self.by_op.get(op)
        if counts is None:
            counts = self.by_op[op] = _OpCounts(len(self.bounds) + 1)
        counts.buckets[bisect.bisect_left(self.bounds, seconds)] += 1
        counts.total += seconds
        counts.outcomes[outcome] = counts.outcomes.get(outcome, 0) + 1

    def collect(self) -> Iterable[Any]:
        ops = CounterMetricFamily("ocifs_fuse_ops", "FUSE operations, by errno (ok: none)",
                                  labels=["op", "errno"])
        seconds = HistogramMetricFamily("ocifs_fuse_op_seconds", "Duration of FUSE operations",
                                        labels=["op"])
        for op, counts in list(self.by_op.items()):
            for outcome, n in list(counts.outcomes.items()):
                ops.add_metric([op, outcome], n)
            running, cumulative = 0, []
            for bound, n in zip(self.bounds + (float("inf"),), list(counts.buckets)):
                running += n
                cumulative.append((floatToGoString(bound), running))
            seconds.add_metric([op], cumulative, counts.total)
        yield ops
        yield seconds


def samples(metric: Any) -> Iterable[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample of a prometheus_client metric."""
    for family in metric.collect():
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


def _range_length(text: Any) -> int | None:
    """``bytes=A-B`` -> B - A + 1."""
    if not isinstance(text, str) or not text.startswith("bytes="):
        return None
    start, _, end = text[len("bytes="):].partition("-")
    try:
        return int(end) - int(start) + 1
    except ValueError:
        return None


def _source_key(source: Any) -> str | None:
    """The key of a CopySource: a dict, or the ``bucket/key`` string botocore makes of it."""
    if isinstance(source, dict):
        return source.get("Key")
    if isinstance(source, str):
        path = urllib.parse.unquote(source.split("?versionId=", 1)[0]).lstrip("/")
        return path.split("/", 1)[1] if "/" in path else None
    return None


def _error_code(response_dict: dict) -> str:
    body = response_dict.get("body") or b""
    if isinstance(body, bytes) and b"<Code>" in body:
        return body.split(b"<Code>", 1)[1].split(b"</Code>", 1)[0].decode(errors="replace")
    return ""


def _describe(parsed: dict, status: int) -> str:
    error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
    code, message = error.get("Code", ""), error.get("Message", "")
    return " ".join(filter(None, (str(status), code, message)))


def errno_name(number: int) -> str:
    return errno_module.errorcode.get(number, str(number))
