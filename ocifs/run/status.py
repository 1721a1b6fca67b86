"""``ocifs status [MOUNTPOINT] [--json] [--check]``: what a running mount is doing, and whether
it is healthy, asked over its control channel (:mod:`ocifs.run.control`).

``--check`` exits 0 only when the mount answers a real operation in time (statfs and a
listing, in a child that is killed when it hangs), the store answered recently (the mount
asks it when it has not), no upload has gone ``--stuck-after`` seconds without progress, and
each ``--max-age GLOB=SECONDS`` found a matching file that became durable within SECONDS
(a mount younger than SECONDS is not judged yet); otherwise it prints one line saying why.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import sys
import time
from typing import Any

from ocifs.run import control
from ocifs.units import human_size

DEFAULT_STUCK_AFTER = 300.0
DEFAULT_TIMEOUT = 5.0


class StatusError(Exception):
    """The one line ``ocifs status`` prints when it cannot answer."""


def add_arguments(commands: Any) -> None:
    status = commands.add_parser("status", help="what a running mount is doing (--check: health)")
    status.add_argument("mountpoint", nargs="?", help="default: every ocifs mount of this user")
    status.add_argument("--json", action="store_true", help="machine-readable (keys: README)")
    status.add_argument("--check", action="store_true",
                        help="exit 0 only if MOUNTPOINT is healthy, else print why and exit 1")
    status.add_argument("--stuck-after", type=float, default=DEFAULT_STUCK_AFTER, metavar="SECONDS",
                        help="--check: an upload without progress this long is stuck (default 300)")
    status.add_argument("--max-age", action="append", default=[], metavar="GLOB=SECONDS",
                        help="--check: a file matching GLOB must have become durable within "
                             "SECONDS (repeatable)")
    status.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds the mount and the store may take to answer (default 5)")


def parse_max_ages(items: list[str]) -> list[tuple[str, float]]:
    """``GLOB=SECONDS`` items (a comma or space also separates several in one item)."""
    result = []
    for item in (part for text in items for part in text.replace(",", " ").split()):
        glob, sep, seconds = item.rpartition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = -1
        if not sep or not glob or value <= 0:
            raise StatusError(f"bad --max-age {item!r}: expected GLOB=SECONDS")
        result.append((glob, value))
    return result


# -- finding the mounts -------------------------------------------------------------------


def ask_mount(mountpoint: str, request: dict, timeout: float) -> dict:
    """The mount at ``mountpoint`` answers ``request`` (StatusError when it cannot)."""
    wanted = os.path.abspath(mountpoint)
    candidates = [control.socket_path(wanted)] + [p for p in control.known_sockets()
                                                  if p != control.socket_path(wanted)]
    last: OSError | None = None
    for index, path in enumerate(candidates):
        if not path.exists():
            continue
        try:
            reply = control.ask(path, request, timeout)
        except TimeoutError:
            raise StatusError(f"{wanted}: no answer within {timeout:g} s") from None
        except PermissionError:
            raise StatusError(f"{wanted}: not allowed to ask this mount (only its owner and "
                              "root may)") from None
        except OSError as exc:
            last = exc
            continue
        if index == 0 or reply.get("mountpoint") == wanted:
            return reply
    reason = f" ({last.strerror or last})" if last is not None else ""
    raise StatusError(f"{wanted}: no running ocifs mount answers there{reason}")


def all_mounts(request: dict, timeout: float) -> list[dict]:
    """Every mount of this user (root: of every user) that answers."""
    replies = []
    for path in control.known_sockets():
        try:
            replies.append(control.ask(path, request, timeout))
        except OSError:
            continue  # left by a mount that died, or another user's
    return replies


# -- the check -----------------------------------------------------------------------------


def check(mountpoint: str, stuck_after: float, max_ages: list[tuple[str, float]],
          timeout: float, owner: tuple[int, int] | None = None) -> str | None:
    """None when the mount is healthy, else why not (one line)."""
    from ocifs.run.container.healthcheck import probe_mount
    try:  # first the store: a store that is down also hangs the mount, but says less
        reply = ask_mount(mountpoint, {"probe": timeout * 0.8}, timeout)
    except StatusError as exc:
        return str(exc)
    probe = reply.get("probe") or {}
    if not probe.get("ok"):
        return f"{mountpoint}: the store does not answer: {probe.get('error')}"
    for upload in reply["uploads"]["in_flight"]:
        if upload["seconds_since_progress"] > stuck_after:
            return (f"{mountpoint}: the upload of {upload['path']} is stuck: no progress for "
                    f"{upload['seconds_since_progress']:.0f} s")
    now = time.time()
    for glob, seconds in max_ages:
        times = [entry["time"] for path, entry in reply["durable"].items()
                 if fnmatch.fnmatchcase(path, glob) or fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], glob)]
        newest = max(times, default=None)
        if newest is not None and now - newest <= seconds:
            continue
        if newest is None and reply["uptime_seconds"] <= seconds:
            continue  # too young to tell
        when = f"last {now - newest:.0f} s ago" if newest is not None else "none since the mount"
        return f"{mountpoint}: no file matching {glob} became durable in the last {seconds:g} s ({when})"
    return probe_mount(mountpoint, timeout, owner)


# -- the human form -------------------------------------------------------------------------


def _when(epoch: float | None, now: float) -> str:
    if epoch is None:
        return "never"
    stamp = datetime.datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"{stamp} ({_ago(now - epoch)} ago)"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    return "".join(parts + [f"{secs}s"]) if not days else "".join(parts)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def render(s: dict) -> str:
    """``ocifs status`` for a person."""
    now = time.time()
    where = s["bucket"] + (":/" + s["prefix"] if s["prefix"] else "")
    lines = [f"{s['mountpoint']}: {where} at {s['endpoint']} (pid {s['pid']}, up "
             f"{_ago(s['uptime_seconds'])}{', stopping' if s['stopping'] else ''})"]
    if s["options"]:
        lines.append("  options: " + ",".join(k if v is True else f"{k}={v}"
                                              for k, v in s["options"].items()))
    uploads = s["uploads"]
    lines.append(f"  dirty: {s['dirty']['files']} file(s), {human_size(s['dirty']['bytes'])} not yet "
                 f"in the bucket; uploads: {len(uploads['in_flight'])} in flight, "
                 f"{uploads['queued']} queued")
    for u in uploads["in_flight"]:
        total = u["bytes_total"]
        share = f" ({100 * u['bytes_sent'] / total:.0f}%)" if total else ""
        lines.append(f"    {u['path']}: {human_size(u['bytes_sent'])} of {human_size(total)}{share}, "
                     f"{u['parts_done']} part(s) done, last progress "
                     f"{_ago(u['seconds_since_progress'])} ago")
    if s["durable"]:
        lines.append("  last upload completed (durable):")
        for path, entry in s["durable"].items():
            lines.append(f"    {path}: {_when(entry['time'], now)}, {human_size(entry['size'])}")
    s3 = s["s3"]
    lines.append(f"  store: last answer {_when(s3['last_answer'], now)}; "
                 f"{human_size(s3['uploaded_bytes'])} up, {human_size(s3['downloaded_bytes'])} down; "
                 f"{sum(s3['retries'].values())} retries")
    if s3["requests"]:
        lines.append(f"    {'request':<24} {'count':>7}  {'p50 ms':>8} {'p99 ms':>8}  outcomes")
        for op, e in sorted(s3["requests"].items()):
            outcomes = " ".join(f"{k}:{v}" for k, v in sorted(e["status"].items()))
            retried = f" retries:{s3['retries'][op]}" if s3["retries"].get(op) else ""
            lines.append(f"    {op:<24} {e['count']:>7}  {_ms(e.get('p50')):>8} "
                         f"{_ms(e.get('p99')):>8}  {outcomes}{retried}")
    if s["errors"]:
        lines.append("  last errors:")
        for e in s["errors"][-5:]:
            lines.append(f"    {_when(e['time'], now)}: {e['op']}"
                         f"{' ' + e['path'] if e['path'] else ''}: {e['error']}")
    caches = s["caches"]
    parts = []
    for name in ("stat", "listing"):
        c = caches.get(name)
        if c:
            rate = f"{100 * c['hit_rate']:.0f}% hits" if c["hit_rate"] is not None else "unused"
            parts.append(f"{name} {c['entries']} entries, {rate}")
    data = caches.get("data")
    if data:
        rate = data.get("hit_rate")
        shown = f"{100 * rate:.0f}% hits" if rate is not None else "unused"
        parts.append(f"data {data['entries']} file(s), {human_size(data['bytes'])}, {shown}")
    lines.append("  caches: " + "; ".join(parts))
    if s["fuse"]:
        lines.append(f"    {'fuse op':<24} {'count':>7}  {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}  errors")
        for op, e in sorted(s["fuse"].items(), key=lambda item: -item[1]["count"]):
            errors = " ".join(f"{k}:{v}" for k, v in sorted(e["errno"].items()) if k != "ok")
            lines.append(f"    {op:<24} {e['count']:>7}  {_ms(e.get('p50')):>8} "
                         f"{_ms(e.get('p90')):>8} {_ms(e.get('p99')):>8}  {errors}")
    return "\n".join(lines)


# -- the command ----------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    try:
        if args.check:
            if not args.mountpoint:
                raise StatusError("status --check needs a MOUNTPOINT")
            problem = check(args.mountpoint, args.stuck_after, parse_max_ages(args.max_age),
                            args.timeout)
            if problem:
                print(f"ocifs: unhealthy: {problem}", file=sys.stderr)
                return 1
            print(f"{os.path.abspath(args.mountpoint)}: healthy")
            return 0
        if args.mountpoint:
            replies = [ask_mount(args.mountpoint, {}, args.timeout)]
        else:
            replies = all_mounts({}, args.timeout)
    except StatusError as exc:
        print(f"ocifs: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(replies[0] if args.mountpoint else replies, indent=2))
    elif not replies:
        print("no ocifs mounts are running", file=sys.stderr)
    else:
        print("\n\n".join(render(reply) for reply in replies))
    return 0
