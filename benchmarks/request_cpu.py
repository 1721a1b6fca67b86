"""Client CPU per S3 request: boto3's calls against ocifs's lean path, side by side.

Each operation a small-file workload is made of (HEAD, ranged GET of 4 KiB, PUT of 4 KiB,
DELETE, a ListObjectsV2 page of 100 keys) is sent ``--count`` times one after another from
this process, through a boto3 client set up as a mount sets it up (``make_client``),
through :class:`ocifs.s3.lean.LeanRequests` on that same client, and through a boto3 client
as shipped (``boto3.client``: botocore's own listing parse and dateutil timestamps, none of
ocifs's hooks), alternating in rounds; the figure is this process's CPU time
(``time.process_time``: user + system, all threads) per request, the median over
``--rounds``.  The server is a local SeaweedFS (``weed mini``),
whose CPU is not counted.

    python -m benchmarks.request_cpu --count 500 --rounds 9 --out benchmarks/results/request-cpu.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import boto3
from botocore.config import Config

from ocifs.run.localserver import LocalS3Server
from ocifs.s3.client import make_client, parse_timestamp
from ocifs.s3.credentials import Credentials
from ocifs.s3.lean import LeanRequests

BUCKET = "request-cpu"
META = {"mode": "33188", "uid": "1000", "gid": "1000", "mtime": "1700000000"}
BODY = b"x" * 4096
LISTED = 100


def boto_calls(client) -> dict[str, Callable[[int], object]]:
    """name -> the boto3 call, taking the request's number."""
    def get(i: int) -> bytes:
        return client.get_object(Bucket=BUCKET, Key=f"o{i % LISTED}",
                                 Range="bytes=0-4095")["Body"].read()
    return {
        "HEAD": lambda i: client.head_object(Bucket=BUCKET, Key=f"o{i % LISTED}"),
        "GET 4 KiB": get,
        "PUT 4 KiB": lambda i: client.put_object(Bucket=BUCKET, Key=f"p{i}", Body=BODY,
                                                 Metadata=META, ContentType="text/plain"),
        "DELETE": lambda i: client.delete_object(Bucket=BUCKET, Key=f"p{i}"),
        "LIST 100 keys": lambda i: client.list_objects_v2(Bucket=BUCKET, Prefix="o"),
    }


def lean_calls(lean: LeanRequests) -> dict[str, Callable[[int], object]]:
    """The same operations on the lean path."""
    return {
        "HEAD": lambda i: lean.head(f"o{i % LISTED}"),
        "GET 4 KiB": lambda i: lean.get(f"o{i % LISTED}", "bytes=0-4095"),
        "PUT 4 KiB": lambda i: lean.put(f"p{i}", BODY, META, "text/plain"),
        "DELETE": lambda i: lean.delete(f"p{i}"),
        "LIST 100 keys": lambda i: lean.list("o"),
    }


def cpu_ms_per_call(call: Callable[[int], object], count: int) -> float:
    started = time.process_time()
    for i in range(count):
        call(i)
    return (time.process_time() - started) / count * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=500, help="requests per operation per round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (medians are quoted)")
    ap.add_argument("--out", type=Path, default=None, help="write the table here (Markdown)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch, \
            LocalS3Server(kind="seaweedfs", data_dir=Path(scratch)) as server:
        server.create_bucket(BUCKET)
        client = make_client(server.endpoint_url, "us-east-1",
                             Credentials(server.access_key, server.secret_key), path_style=True,
                             retries=5, connect_timeout=10, read_timeout=30, max_pool=4)
        lean = LeanRequests.for_client(client, BUCKET, 5, parse_timestamp)
        assert lean is not None
        shipped = boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1",
                               aws_access_key_id=server.access_key,
                               aws_secret_access_key=server.secret_key,
                               config=Config(s3={"addressing_style": "path"}))
        for i in range(LISTED):
            client.put_object(Bucket=BUCKET, Key=f"o{i}", Body=BODY, Metadata=META)
        paths = {"shipped": boto_calls(shipped), "boto3": boto_calls(client),
                 "lean": lean_calls(lean)}
        names = list(paths["lean"])
        samples = {name: {label: [] for label in paths} for name in names}
        for calls in paths.values():  # warm every path (connections, caches)
            for call in calls.values():
                cpu_ms_per_call(call, 20)
        for round_ in range(args.rounds):
            for name in names:
                order = list(paths) if round_ % 2 == 0 else list(reversed(paths))
                for label in order:
                    samples[name][label].append(cpu_ms_per_call(paths[label][name], args.count))
    lines = ["| request | boto3 as shipped (ms CPU) | boto3 as a mount sets it up | lean "
             "| lean ÷ as shipped | lean ÷ as set up |", "|---|---|---|---|---|---|"]
    for name, by in samples.items():
        shipped_ms, boto, fast = (statistics.median(by[label])
                                  for label in ("shipped", "boto3", "lean"))
        lines.append(f"| {name} | {shipped_ms:.3f} | {boto:.3f} | {fast:.3f} "
                     f"| {fast / shipped_ms:.2f} | {fast / boto:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.out is not None:
        args.out.write_text(
            "# Client CPU per request: boto3 against the lean path\n\n"
            f"`python -m benchmarks.request_cpu --count {args.count} --rounds {args.rounds}`"
            f" · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · medians of "
            f"{args.rounds} alternating rounds of {args.count} requests each, one after "
            "another, against a local SeaweedFS (its CPU not counted). \"As shipped\": "
            "`boto3.client` with path-style addressing and nothing else; \"as a mount sets it "
            "up\": `make_client` (ocifs's listing parse, timestamp parser and retry pacing).\n\n"
            + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
