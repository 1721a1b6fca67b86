"""A running mount, seen from outside: the status snapshot, the control channel, the metrics
endpoint and the progress lines of a long stop.

:class:`MountObserver` reads the mount's own state (open files, caches, the counters of
:mod:`ocifs.run.stats`) only when asked, or once a second for the gauges: nothing here is on
the data path.  The snapshot's keys are documented in README ("Status and metrics").
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

import prometheus_client
import trio

from ocifs.run import control
from ocifs.run.options import MountOptions
from ocifs.run.stats import MountStats, samples
from ocifs.units import human_size

if TYPE_CHECKING:
    from ocifs.run.mount import Mount

log = logging.getLogger(__name__)

SAMPLE_INTERVAL = 1.0    # seconds between two updates of the gauges
PROGRESS_INTERVAL = 3.0  # seconds between two progress lines of a stop
RECENT_ANSWER = 10.0     # seconds: a store that answered this recently needs no probe
QUANTILES = (0.5, 0.9, 0.99)
_USERINFO = re.compile(r"//[^/@]*@")


def parse_metrics_address(text: str) -> tuple[str, int]:
    """``[ADDR:]PORT`` -> (address, port); 127.0.0.1 unless an address is given."""
    addr, _, port = text.rpartition(":")
    addr = addr.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"option metrics={text}: expected [ADDR:]PORT")
    return addr, int(port)


@dataclasses.dataclass
class Dirty:
    files: int = 0
    bytes: int = 0
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)  # path -> size


class MountObserver:
    """What ``ocifs status``, ``-o metrics`` and the stop's progress lines see of ``mount``."""

    def __init__(self, mount: "Mount") -> None:
        self.mount = mount
        opts = mount.spec.options
        self.stats = MountStats(mount.store.path_of, opts.watch)
        self.stats.install(mount.store.client)
        if mount.store.lean is not None:
            mount.store.lean.observer = self.stats.lean_attempt
        mount.operations.observer = self.stats.fuse_op
        self.flushing = False  # set while a stop or an unmount uploads what is left
        self._probe_store: Any = None
        self._http: Any = None
        if opts.metrics:
            addr, port = parse_metrics_address(opts.metrics)
            prometheus_client.disable_created_metrics()  # no *_created series: noise here
            try:
                self._http, _ = prometheus_client.start_http_server(
                    port, addr=addr, registry=self.stats.registry)
            except OSError as exc:
                raise ValueError(f"option metrics={opts.metrics}: cannot listen on "
                                 f"{addr}:{port}: {exc.strerror}") from None
            log.info("metrics at http://%s:%d/metrics", addr, port)

    # -- the open files -------------------------------------------------------------------

    def dirty(self) -> Dirty:
        """Dirty files now, and the bytes of theirs not yet in the bucket."""
        files = self.mount.operations.files
        found = Dirty()
        for file in list(files.by_inode.values()):
            if not file.dirty:
                continue
            path = files.inodes.path(file.inode)
            size = file.attrs.size
            found.files += 1
            found.sizes[path] = size
            wb = file.writeback
            found.bytes += wb.pending_bytes(size) if wb is not None else size
        return found

    def sample(self) -> Dirty:
        """Bring the gauges and the cache counters up to date."""
        dirty = self.dirty()
        self.stats.dirty_files.set(dirty.files)
        self.stats.dirty_bytes.set(dirty.bytes)
        cache = self.mount.tree.cache
        for name in cache.hits:
            self.stats.set_cache_counts(name, cache.hits[name], cache.misses[name])
        self.stats.set_cache_counts("data", *self.mount.cache.reads)
        return dirty

    # -- the snapshot ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything ``ocifs status --json`` shows (keys: README, "Status and metrics")."""
        now = time.time()
        stats, spec = self.stats, self.mount.spec
        dirty = self.sample()
        in_flight = []
        for upload in sorted(stats.uploads_now(), key=lambda u: u.started):
            total = upload.total if upload.total is not None else dirty.sizes.get(upload.path)
            in_flight.append({
                "path": upload.path, "kind": "multipart" if upload.upload_id else "single",
                "bytes_sent": upload.bytes_sent, "bytes_total": total,
                "parts_done": upload.parts_done, "started": upload.started,
                "seconds_since_progress": round(now - upload.last_progress, 3)})
        uploading = {u["path"] for u in in_flight}
        return {
            "version": 1,
            "pid": os.getpid(),
            "mountpoint": spec.mountpoint,
            "bucket": spec.bucket,
            "prefix": spec.prefix,
            "endpoint": _USERINFO.sub("//", spec.options.url),
            "started": stats.started,
            "uptime_seconds": round(now - stats.started, 3),
            "stopping": self.mount.stopping or self.flushing,
            "options": options_in_force(spec.options),
            "dirty": {"files": dirty.files, "bytes": dirty.bytes},
            "uploads": {"in_flight": in_flight,
                        "queued": sum(1 for p in dirty.sizes if p not in uploading)},
            "durable": {path: {"time": when, "size": size}
                        for path, (when, size) in sorted(stats.durable_now().items())},
            "s3": self._s3_section(now),
            "errors": stats.errors_now(),
            "fuse": _by_op(stats.fuse_ops, stats.fuse_seconds, "errno"),
            "caches": self._caches(),
        }

    def _s3_section(self, now: float) -> dict[str, Any]:
        stats = self.stats
        section = _by_op(stats.s3_requests, stats.s3_seconds, "status")
        retries = {labels["op"]: int(value) for name, labels, value in samples(stats.s3_retries)
                   if name.endswith("_total")}
        answered = stats.last_answer
        return {"requests": section, "retries": retries,
                "uploaded_bytes": int(_total(stats.uploaded)),
                "downloaded_bytes": int(_total(stats.downloaded)),
                "last_answer": answered,
                "seconds_since_answer": None if answered is None else round(now - answered, 3)}

    def _caches(self) -> dict[str, Any]:
        cache = self.mount.tree.cache
        result: dict[str, Any] = {}
        sizes = {"stat": cache.attrs_count(), "listing": cache.listings_count()}
        for name in cache.hits:
            hits, misses = cache.hits[name], cache.misses[name]
            result[name] = {"entries": sizes.get(name), "hits": hits, "misses": misses,
                            "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None}
        data = self.mount.cache
        hits, misses = data.reads
        result["data"] = {"entries": len(data.entries), "bytes": data.held_bytes(), "hits": hits,
                          "misses": misses,
                          "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None}
        return result

    # -- requests on the control channel --------------------------------------------------

    async def answer(self, request: dict) -> dict:
        """``{"probe": SECONDS}`` also asks the store, unless it answered just now."""
        reply = self.snapshot()
        probe = request.get("probe")
        if probe is not None:
            reply["probe"] = await self.probe_store(float(probe))
        return reply

    async def probe_store(self, timeout: float) -> dict[str, Any]:
        """Whether the store answers: a recent answer, else one listing request without
        retries (on a client of its own: the mount's may be busy retrying)."""
        answered = self.stats.last_answer
        if answered is not None and time.time() - answered < RECENT_ANSWER:
            return {"ok": True, "error": None}
        if self._probe_store is None:
            from ocifs.run.mount import build_store
            self._probe_store = build_store(self.mount.spec, retries=0)
        error = f"no answer within {timeout:g} s"
        with trio.move_on_after(timeout):
            try:
                await trio.to_thread.run_sync(self._probe_store.check_bucket_sync,
                                              abandon_on_cancel=True)
                self.stats.last_answer = time.time()
                return {"ok": True, "error": None}
            except Exception as exc:  # noqa: BLE001 - a StoreError's message is clean
                error = " ".join(str(exc).split())
        return {"ok": False, "error": error}

    # -- running --------------------------------------------------------------------------

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The control channel and the sampler, until cancelled."""
        async with trio.open_nursery() as nursery:
            path = control.socket_path(self.mount.spec.mountpoint)
            try:
                await nursery.start(control.serve, path, self.answer)
            except OSError as exc:
                log.warning("no control channel (ocifs status) at %s: %s", path, exc)
            nursery.start_soon(self._sample_forever)
            task_status.started()

    async def _sample_forever(self) -> None:
        last_line = rate_from = time.monotonic()
        sent_from = _total(self.stats.uploaded)
        while True:
            await trio.sleep(SAMPLE_INTERVAL)
            dirty = self.sample()
            now = time.monotonic()
            if not (self.flushing or self.mount.stopping):
                rate_from, sent_from = now, _total(self.stats.uploaded)
                continue
            if dirty.bytes and now - last_line >= PROGRESS_INTERVAL:
                last_line = now
                sent = _total(self.stats.uploaded)
                rate = (sent - sent_from) / max(now - rate_from, 1e-9)
                log.warning("stopping: %s left in %d file(s), %s/s%s", human_size(dirty.bytes),
                            dirty.files, human_size(rate),
                            f", about {dirty.bytes / rate:.0f} s left" if rate > 0 else "")

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


def options_in_force(options: MountOptions) -> dict[str, Any]:
    """The options that differ from their defaults (a URL's user:password never shown)."""
    result = {}
    for field in dataclasses.fields(options):
        if field.name in ("ignored", "notices") or not field.metadata.get("help"):
            continue
        value = getattr(options, field.name)
        default = field.default if field.default is not dataclasses.MISSING else None
        if value != default:
            result[field.name] = _USERINFO.sub("//", value) if isinstance(value, str) else value
    if "proxy" in result:
        result["proxy"] = re.sub(r"^[^/@]*@", "", _USERINFO.sub("//", str(options.proxy)))
    return result


def _total(metric: Any) -> float:
    return sum(value for name, _, value in samples(metric) if name.endswith("_total"))


def _by_op(counter: Any, histogram: Any, outcome: str) -> dict[str, Any]:
    """{op: {"count", outcome+"s": {..: n}, "seconds_sum", "p50"/"p90"/"p99" (seconds)}}."""
    ops: dict[str, dict[str, Any]] = {}
    for name, labels, value in samples(counter):
        if name.endswith("_total") and value:
            entry = ops.setdefault(labels["op"], {"count": 0, outcome: {}})
            entry["count"] += int(value)
            entry[outcome][labels[outcome]] = int(value)
    buckets: dict[str, list[tuple[float, float]]] = {}
    for name, labels, value in samples(histogram):
        if name.endswith("_bucket"):
            buckets.setdefault(labels["op"], []).append((float(labels["le"]), value))
        elif name.endswith("_sum") and labels["op"] in ops:
            ops[labels["op"]]["seconds_sum"] = round(value, 6)
    for op, points in buckets.items():
        if op in ops:
            for q in QUANTILES:
                ops[op][f"p{round(q * 100)}"] = _quantile(q, points)
    return ops


def _quantile(q: float, points: list[tuple[float, float]]) -> float | None:
    """The q-quantile from cumulative histogram buckets, interpolated within a bucket (as
    PromQL's histogram_quantile does)."""
    points = sorted(points)
    total = points[-1][1] if points else 0
    if not total:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in points:
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return round(lower + (bound - lower) * ((rank - below) / inside if inside else 1), 6)
        lower, below = bound, count
    return lower


