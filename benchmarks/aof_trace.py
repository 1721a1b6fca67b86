"""What a file system sends to the store for each fsync of an appended file, and when.

    python -m benchmarks.aof_trace --targets ocifs,s3fs --size 64MB --seconds 10 --latency-ms 10

Starts a local SeaweedFS behind the latency proxy with its HTTP tap
(:mod:`benchmarks.http_trace`), mounts each target in turn, writes an incr file of ``--size``,
then appends ``--rate`` bytes a second in 100 writes with an fsync each second (the ``aof``
workload), and prints every fsync's requests: when each was sent relative to the fsync's start,
how long the store took over it (from the request's last byte reaching it to its answer's
first byte) and when the client had the answer.  ``--json`` keeps the raw records.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.http_trace import Tracer  # noqa: E402
from benchmarks.latency_proxy import LatencyProxy  # noqa: E402
from benchmarks.targets import Endpoint, make_target  # noqa: E402
from benchmarks.run import parse_size  # noqa: E402

WRITES = 100


def run_target(name: str, endpoint: Endpoint, client, tracer: Tracer, delay: float,
               args: argparse.Namespace, workdir: Path) -> dict:
    bucket = f"trace-{uuid.uuid4().hex[:8]}-{name}"
    client.create_bucket(Bucket=bucket)
    extra = {"ocifs": args.ocifs_options, "s3fs": args.s3fs_options}.get(name, [])
    target = make_target(name, endpoint, bucket, workdir / name, extra)
    target.mount()
    fsyncs = []
    try:
        path = target.root / "incr.aof"
        path.write_bytes(os.urandom(args.size))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if client.head_object(Bucket=bucket, Key="incr.aof")["ContentLength"] == args.size:
                    break
            except Exception:  # noqa: BLE001 - not there yet
                pass
            time.sleep(0.1)
        time.sleep(1)
        chunk = args.rate // WRITES
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            for _ in range(args.seconds):
                second = time.monotonic()
                for _ in range(WRITES):
                    os.write(fd, os.urandom(chunk))
                t0 = time.monotonic()
                os.fsync(fd)
                t1 = time.monotonic()
                fsyncs.append((t0, t1))
                time.sleep(max(0.0, 1.0 - (time.monotonic() - second)))
        finally:
            os.close(fd)
    finally:
        target.umount()
    out = []
    for i, (t0, t1) in enumerate(fsyncs):
        # Requests sent between the previous fsync's end and this one's: what this one made.
        start = fsyncs[i - 1][1] if i else t0
        reqs = tracer.between(start, t1)
        out.append({"fsync_ms": round((t1 - t0) * 1000, 1), "requests": [
            {"kind": r.kind + (f" {r.copy}" if r.copy else ""),
             "conn": r.conn,
             "status": r.status,
             "body": r.body_bytes,
             "sent_ms": round((r.sent - t0) * 1000, 1),
             "sent_done_ms": round(((r.sent_done or r.sent) - t0) * 1000, 1),
             "continue_ms": round((r.continued + delay - t0) * 1000, 1) if r.continued else None,
             # the store's time: from the request's last byte reaching it to its answer
             "store_ms": round(((r.answered or 0) - ((r.sent_done or r.sent) + delay)) * 1000, 1)
             if r.answered else None,
             "client_done_ms": round(((r.done or 0) + delay - t0) * 1000, 1) if r.done else None}
            for r in reqs]})
    return {"target": name, "fsyncs": out}


COMPONENTS = (
    ("fsync", "fsync(2)"),
    ("before_create", "fsync start → CreateMultipartUpload sent"),
    ("after_create", "its answer → first part sent"),
    ("copy_store", "UploadPartCopy: the store's time"),
    ("copy_rt", "UploadPartCopy: sent → answered"),
    ("part_rt", "UploadPart: sent → answered"),
    ("before_complete", "last part answered → CompleteMultipartUpload sent"),
    ("after_complete", "its answer → fsync returns"),
)


def components(fsync: dict) -> dict | None:
    """Where one fsync's time went (ms), for the usual four requests; None otherwise."""
    by_kind = {r["kind"].split()[0]: r for r in fsync["requests"]}
    kinds = ("CreateMultipartUpload", "UploadPartCopy", "UploadPart", "CompleteMultipartUpload")
    if len(fsync["requests"]) != 4 or set(by_kind) != set(kinds):
        return None
    create, copy, part, complete = (by_kind[k] for k in kinds)
    return {"fsync": fsync["fsync_ms"], "before_create": create["sent_ms"],
            "after_create": min(copy["sent_ms"], part["sent_ms"]) - create["client_done_ms"],
            "copy_store": copy["store_ms"], "copy_rt": copy["client_done_ms"] - copy["sent_ms"],
            "part_rt": part["client_done_ms"] - part["sent_ms"],
            "before_complete": complete["sent_ms"] - max(copy["client_done_ms"],
                                                         part["client_done_ms"]),
            "after_complete": fsync["fsync_ms"] - complete["client_done_ms"]}


def markdown(results: list[dict], command: str) -> str:
    """Medians of each fsync's components per target and round, and one fsync of each."""
    lines = ["# What ocifs and s3fs send per fsync of an appended file", "",
             f"Command: `{command}`", "",
             "Times in ms at the latency proxy (+10 ms each way unless the command says "
             "otherwise), medians over each run's fsyncs that made the usual four requests.", ""]
    names = [f"{r['target']} (run {i + 1})" for i, r in enumerate(results)]
    lines += ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(results)]
    rows = [[c for c in map(components, r["fsyncs"]) if c] for r in results]
    lines.append("| fsyncs with 4 requests / all | " + " | ".join(
        f"{len(rows[i])} / {len(r['fsyncs'])}" for i, r in enumerate(results)) + " |")
    for key, label in COMPONENTS:
        lines.append(f"| {label} | " + " | ".join(
            f"{statistics.median(c[key] for c in row):.1f}" if row else "–" for row in rows) + " |")
    lines.append("| fsync(2), slowest | " + " | ".join(
        f"{max(f['fsync_ms'] for f in r['fsyncs']):.0f}" for r in results) + " |")
    lines += ["", "One fsync of each target (the middle one of its first run):", ""]
    seen = set()
    for r in results:
        if r["target"] in seen:
            continue
        seen.add(r["target"])
        f = r["fsyncs"][len(r["fsyncs"]) // 2]
        lines += [f"{r['target']}: fsync {f['fsync_ms']:.0f} ms", "",
                  "| request | body bytes | sent | 100-continue | store's time | answered |",
                  "|---|---|---|---|---|---|"]
        for q in f["requests"]:
            lines.append(f"| {q['kind']} | {q['body']:,} | {q['sent_ms']} | "
                         f"{q['continue_ms'] if q['continue_ms'] is not None else ''} | "
                         f"{q['store_ms']} | {q['client_done_ms']} |")
        lines.append("")
    return "\n".join(lines)


def show(result: dict) -> None:
    print(f"== {result['target']}")
    lat = sorted(f["fsync_ms"] for f in result["fsyncs"])
    print(f"fsync ms: p50 {statistics.median(lat):.0f}  max {lat[-1]:.0f}  "
          f"requests per fsync: {statistics.median(len(f['requests']) for f in result['fsyncs'])}")
    for i, f in enumerate(result["fsyncs"]):
        print(f"fsync {i}: {f['fsync_ms']:.0f} ms")
        for r in f["requests"]:
            cont = f" 100-continue@{r['continue_ms']}" if r["continue_ms"] is not None else ""
            print(f"   conn {r['conn']:>3} {r['kind']:<48} {r['status']} body {r['body']:>9}  "
                  f"sent {r['sent_ms']:>7}..{r['sent_done_ms']:>7}{cont}  store {r['store_ms']}  "
                  f"answer@{r['client_done_ms']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="ocifs,s3fs")
    ap.add_argument("--size", type=parse_size, default=parse_size("64MB"))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rate", type=int, default=267_000)
    ap.add_argument("--latency-ms", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=1, help="targets in turn, this many times")
    ap.add_argument("--ocifs-options", action="append", default=[])
    ap.add_argument("--s3fs-options", action="append", default=[])
    ap.add_argument("--json", type=Path, help="write the raw records here")
    ap.add_argument("--markdown", type=Path, help="write the summary table here")
    ap.add_argument("--report", type=Path, help="no run: summarize this --json file")
    args = ap.parse_args(argv)
    command = "python -m benchmarks.aof_trace " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.report:
        results = json.loads(args.report.read_text())
        text = markdown(results, command)
        if args.markdown:
            args.markdown.write_text(text)
        else:
            print(text)
        return 0
    from ocifs.run.localserver import LocalS3Server

    results = []
    with tempfile.TemporaryDirectory(prefix="aof-trace-") as tmp:
        workdir = Path(tmp)
        with LocalS3Server(kind="seaweedfs", data_dir=workdir / "server") as server:
            direct = Endpoint(server.endpoint_url, server.access_key, server.secret_key)
            client = direct.client()
            u = urlparse(direct.url)
            tracer = Tracer()
            with LatencyProxy(u.hostname, u.port, args.latency_ms, tracer=tracer) as proxy:
                endpoint = Endpoint(proxy.url, direct.access_key, direct.secret_key, direct.region)
                for _ in range(args.rounds):
                    for name in args.targets.split(","):
                        result = run_target(name, endpoint, client, tracer,
                                            args.latency_ms / 1000, args, workdir)
                        show(result)
                        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(results, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
