"""Turn a results JSON into a Markdown table and PNG charts (matplotlib, Agg backend).

    python -m benchmarks.report benchmarks/results/latest.json

Every figure is the median over the repetitions.  Ratios are *speed* ratios, so > 1 always
means faster than the reference: throughput / reference throughput, or reference time / time.
Peak RSS is given in MiB with its plain ratio to s3fs (> 1 = more memory).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.targets import FS_TARGETS  # noqa: E402
from benchmarks.workloads import CPU_LABELS, METRICS, RSS_METRICS  # noqa: E402

ORDER = ("ocifs", "ocifs-ref", "ocifs-fl", "ocifs-metrics", "s3fs", "rclone", "rclone-new",
         "boto3", "local")
COLORS = {"ocifs": "#1f77b4", "ocifs-ref": "#aec7e8", "ocifs-fl": "#17becf",
          "ocifs-metrics": "#9edae5", "s3fs": "#ff7f0e", "rclone": "#2ca02c",
          "rclone-new": "#98df8a", "boto3": "#7f7f7f", "local": "#9467bd"}


def median_of(reps: list[dict], metric: str) -> float | None:
    values = [r["metrics"].get(metric) for r in reps if not r.get("error")]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(run: dict) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """(workload, metric) → target → {value, verified, n, error}."""
    out: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for (wl, metric) in list(METRICS) + list(RSS_METRICS):
        per_target = run["results"].get(wl, {})
        for target, reps in per_target.items():
            cell = out.setdefault((wl, metric), {})
            cell[target] = {"value": median_of(reps, metric),
                            "verified": all(r.get("verified") for r in reps),
                            "errors": [r["error"] for r in reps if r.get("error")],
                            "n": len(reps)}
    return out


# The row label of a workload's first measured window where its first metric's label does not
# say it (the CPU and request tables give that window).
def _window_label(wl: str, label: str) -> str:
    """The name of a workload's measured window (CPU, requests)."""
    return CPU_LABELS.get(wl) or RSS_METRICS.get((wl, "rss_MiB"), label)


def median_cpu(reps: list[dict], who: str) -> float | None:
    """Median CPU seconds of ``who`` ("fs" or "server") in each repetition's first measured
    window (Redis: the BGSAVE)."""
    values = [r["cpu_s"][0].get(who) for r in reps if not r.get("error") and r.get("cpu_s")]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def cpu_rows(run: dict) -> list[tuple[str, dict[str, tuple[float | None, float | None]]]]:
    """(workload label, target → (filesystem CPU s, server CPU s)) for workloads that have them."""
    rows = []
    for wl, label, results in _workloads(run):
        cells = {t: (median_cpu(reps, "fs"), median_cpu(reps, "server"))
                 for t, reps in results.items()}
        if any(v is not None for pair in cells.values() for v in pair):
            rows.append((_window_label(wl, label), cells))
    return rows


def _workloads(run: dict) -> list[tuple[str, str, dict]]:
    """(workload, its first metric's label, its results by target), each workload once."""
    found: dict[str, tuple[str, str, dict]] = {}
    for (wl, _metric), (label, _unit, _better) in METRICS.items():
        if wl not in found and wl in run["results"]:
            found[wl] = (wl, label, run["results"][wl])
    return list(found.values())


def _first_windows(reps: list[dict]) -> list[dict]:
    return [r["cpu_s"][0] for r in reps if not r.get("error") and r.get("cpu_s")]


def median_requests(reps: list[dict]) -> tuple[float | None, dict[str, int]]:
    """Median HTTP requests the target sent in each repetition's first measured window (the
    same window as the CPU table), and their kinds in the repetition nearest that median."""
    windows = [w for w in _first_windows(reps) if w.get("requests") is not None]
    if not windows:
        return None, {}
    med = statistics.median(w["requests"] for w in windows)
    nearest = min(windows, key=lambda w: abs(w["requests"] - med))
    return med, nearest.get("kinds") or {}


def median_cpu_per_request_ms(reps: list[dict]) -> float | None:
    """Median over repetitions of the filesystem process's CPU ms per HTTP request sent."""
    values = [1000 * w["fs"] / w["requests"] for w in _first_windows(reps)
              if w.get("fs") is not None and w.get("requests")]
    return statistics.median(values) if values else None


def request_rows(run: dict) -> list[tuple[str, dict[str, tuple[float | None, dict, float | None]]]]:
    """(workload label, target → (requests, kinds, client CPU ms per request)), for workloads
    whose requests were counted."""
    rows = []
    for wl, label, results in _workloads(run):
        cells = {}
        for t, reps in results.items():
            n, kinds = median_requests(reps)
            cells[t] = (n, kinds, median_cpu_per_request_ms(reps))
        if any(c[0] is not None for c in cells.values()):
            rows.append((_window_label(wl, label), cells))
    return rows


def _fmt_count(n: float) -> str:
    return f"{int(n):,}" if n == int(n) else f"{n:,.1f}"


def _fmt_kinds(kinds: dict[str, int]) -> str:
    order = ("GET", "HEAD", "LIST", "PUT", "COPY", "POST", "DELETE")
    keys = sorted(kinds, key=lambda k: (order.index(k) if k in order else len(order), k))
    return ", ".join(f"{k} {kinds[k]:,}" for k in keys)


def speed_ratio(value: float | None, ref: float | None, better: str) -> float | None:
    if value is None or ref is None or value <= 0 or ref <= 0:
        return None
    return value / ref if better == "higher" else ref / value


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "–"
    if v == 0:
        s = "0"
    elif abs(v) < 0.01:
        s = f"{v:.2g}"
    elif abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    elif abs(v) >= 1:
        s = f"{v:.2f}"
    else:
        s = f"{v:.3f}"
    return f"{s} {unit}".strip()


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "–"
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def _targets(run: dict) -> list[str]:
    seen = {t for per in run["results"].values() for t in per}
    return [t for t in ORDER if t in seen]


def markdown(data: dict, chart_names: dict[float, list[str]] | None = None) -> str:
    meta = data["meta"]
    sz = meta["sizes"]
    lines = [
        "# ocifs vs s3fs-fuse vs rclone mount: benchmark results",
        "",
        f"{meta['date']} · {meta['host']['cpus']} CPUs ({meta['host']['cpu']}), "
        f"{meta['host']['mem_MiB']} MiB RAM, Linux {meta['host']['kernel']} · S3 server: "
        f"{meta['server']} on 127.0.0.1 · medians of {meta['reps']} repetitions · "
        f"{meta.get('elapsed_s', 0) / 60:.0f} min in all",
        "",
        f"Sizes: sequential/random/rename file {sz['size']}; big write {sz['big_size']} "
        f"({', '.join(meta['big_targets'])}{_big_lat(meta)}); {sz['files']} small files of {sz['small_size']} and "
        f"{sz['files']} objects for `ls -l`; `find` over {sz['tree_entries']} entries; Redis "
        f"dataset {sz['redis_size']} (`rdbcompression no`).",
        "",
        "Versions: " + "; ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
        f"Command: `{meta['command']}`",
        "",
        "Each cell: median value, then its speed ratio to s3fs and to direct boto3 "
        "(**> 1 = faster** than that reference). Peak RSS rows: MiB of the filesystem process "
        "(VmHWM, reset before each measurement) and its ratio to s3fs (> 1 = more memory). "
        "✗ = a repetition failed its byte-exact check; ERR = a repetition failed.",
    ]
    if meta.get("skipped_targets"):
        lines += ["", "Skipped: " + ", ".join(f"{t} ({why})" for t, why in
                                              meta["skipped_targets"].items())]
    if meta.get("notes"):
        lines += ["", "Notes: " + "; ".join(meta["notes"])]
    for run in data["runs"]:
        lat = run["latency_ms"]
        title = ("no added latency" if not lat else
                 f"+{lat:g} ms each way through the latency proxy ({2 * lat:g} ms per round trip)")
        targets = _targets(run)
        summary = summarize(run)
        lines += ["", f"## {title}", "",
                  "| workload | " + " | ".join(targets) + " |",
                  "|---|" + "---|" * len(targets)]
        for key, (label, unit, better) in METRICS.items():
            if key not in summary:
                continue
            cells = summary[key]
            ref_s3fs = cells.get("s3fs", {}).get("value")
            ref_boto3 = cells.get("boto3", {}).get("value")
            row = [f"{_label(label, data)} ({unit})"]
            for t in targets:
                c = cells.get(t)
                if c is None:
                    row.append("")
                    continue
                text = _fmt(c["value"])
                if c["value"] is not None:
                    rs = speed_ratio(c["value"], ref_s3fs, better) if t != "s3fs" else None
                    rb = speed_ratio(c["value"], ref_boto3, better) if t != "boto3" else None
                    parts = []
                    if rs is not None:
                        parts.append(f"{_fmt_ratio(rs)} s3fs")
                    if rb is not None:
                        parts.append(f"{_fmt_ratio(rb)} boto3")
                    if parts:
                        text += " (" + ", ".join(parts) + ")"
                text += _flags(c)
                row.append(text)
            lines.append("| " + " | ".join(row) + " |")
        fs_targets = [t for t in targets if t in FS_TARGETS]
        if fs_targets:
            lines += ["", "Peak RSS of the filesystem process (MiB):", "",
                      "| during | " + " | ".join(fs_targets) + " |",
                      "|---|" + "---|" * len(fs_targets)]
            for key, label in RSS_METRICS.items():
                if key not in summary:
                    continue
                cells = summary[key]
                ref = cells.get("s3fs", {}).get("value")
                row = [label]
                for t in fs_targets:
                    c = cells.get(t)
                    if c is None:
                        row.append("")
                        continue
                    text = _fmt(c["value"])
                    if t != "s3fs" and c["value"] and ref:
                        text += f" ({c['value'] / ref:.2f}× s3fs)"
                    row.append(text + _flags(c))
                lines.append("| " + " | ".join(row) + " |")
        cpu = cpu_rows(run)
        if cpu:
            cpus = meta["host"]["cpus"]
            lines += ["", "CPU seconds during the measured part (median): the filesystem process, "
                          f"then the S3 server ({cpus} CPUs give at most {cpus}× the wall time):",
                      "",
                      "| during | " + " | ".join(targets) + " |",
                      "|---|" + "---|" * len(targets)]
            for label, cells in cpu:
                row = [label]
                for t in targets:
                    fs_s, server_s = cells.get(t, (None, None))
                    row.append("" if fs_s is None and server_s is None
                               else f"{_fmt(fs_s)} / {_fmt(server_s)}")
                lines.append("| " + " | ".join(row) + " |")
        req = request_rows(run)
        if req:
            counted = [t for t in targets if any(cells.get(t, (None,))[0] is not None
                                                 for _l, cells in req)]
            lines += ["", "HTTP requests per workload, in the same measured part (median; as the "
                          "target's counting proxy saw them: by method, `LIST` = GET of a bucket, "
                          "`COPY` = PUT with a copy source; Redis: the BGSAVE):", "",
                      "| requests per workload | " + " | ".join(counted) + " |",
                      "|---|" + "---|" * len(counted)]
            for label, cells in req:
                row = [label]
                for t in counted:
                    n, kinds, _ms = cells.get(t, (None, {}, None))
                    row.append("" if n is None else
                               _fmt_count(n) + (f" ({_fmt_kinds(kinds)})" if kinds else ""))
                lines.append("| " + " | ".join(row) + " |")
            per = [t for t in counted if t in FS_TARGETS]
            if per:
                lines += ["", "Client CPU per request (ms): the filesystem process's CPU seconds "
                              "above ÷ its requests (median):", "",
                          "| client CPU per request (ms) | " + " | ".join(per) + " |",
                          "|---|" + "---|" * len(per)]
                for label, cells in req:
                    row = [label] + [_fmt(cells.get(t, (None, {}, None))[2]) if t in cells else ""
                                     for t in per]
                    lines.append("| " + " | ".join(row) + " |")
        total = sum(len(reps) for per in run["results"].values() for reps in per.values())
        ok = sum(bool(r.get("verified")) for per in run["results"].values()
                 for reps in per.values() for r in reps)
        lines += ["", f"Byte-exact verification: {ok} of {total} measurements passed."]
        for e in run.get("errors", []):
            lines.append(f"- ERR {e['workload']} / {e['target']} (rep {e['rep'] + 1}): {e['error']}")
        for name in (chart_names or {}).get(lat, []):
            lines += ["", f"![{name}]({name})"]
    return "\n".join(lines) + "\n"


def _big_lat(meta: dict) -> str:
    lats = meta.get("big_latency_ms")
    if lats is None:
        return ""
    return "; only " + " and ".join("without added latency" if not x else f"at +{x:g} ms"
                                    for x in lats)


def _label(label: str, data: dict) -> str:
    return label.replace(" N ", f" {data['meta']['sizes']['files']:,} ")


def _flags(c: dict) -> str:
    if c["errors"]:
        return " ERR"
    return "" if c["verified"] else " ✗"


def charts(data: dict, out: Path, name: str) -> dict[float, list[str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[float, list[str]] = {}
    for run in data["runs"]:
        lat = run["latency_ms"]
        tag = f"{lat:g}ms"
        summary = summarize(run)
        targets = _targets(run)
        files = []
        for ref in ("s3fs", "boto3"):
            shown = [t for t in targets if t != ref and any(
                (summary.get(k) or {}).get(t, {}).get("value") is not None for k in METRICS)]
            rows = []
            for key, (label, unit, better) in METRICS.items():
                cells = summary.get(key)
                if not cells or ref not in cells:
                    continue
                rv = cells[ref]["value"]
                rows.append((label, {t: speed_ratio(cells.get(t, {}).get("value"), rv, better)
                                     for t in shown}))
            if not rows or not shown:
                continue
            n_bars = len(rows) * len(shown)
            fig, ax = plt.subplots(figsize=(10, 0.16 * n_bars + 0.25 * len(rows) + 1.2))
            height = 0.8 / len(shown)
            for i, t in enumerate(shown):
                ys = [len(rows) - 1 - r - (i - (len(shown) - 1) / 2) * height for r in range(len(rows))]
                xs = [row[1][t] for row in rows]
                # Bars start at 1× (same speed) and go right (faster) or left (slower).
                ax.barh([y for y, x in zip(ys, xs) if x], [x - 1 for x in xs if x], left=1,
                        height=height * 0.95, color=COLORS.get(t), label=t)
                if t == "ocifs":
                    for y, x in zip(ys, xs):
                        if x:
                            ax.annotate(_fmt_ratio(x), (x, y), xytext=(3 if x >= 1 else -3, 0),
                                        textcoords="offset points", va="center", fontsize=7,
                                        ha="left" if x >= 1 else "right")
            ax.axvline(1.0, color="black", linewidth=1)
            ax.set_xscale("log")
            ax.set_yticks(range(len(rows)))
            ax.set_yticklabels([_label(row[0], data) for row in reversed(rows)], fontsize=8)
            lo = min([x for row in rows for x in row[1].values() if x] + [0.5])
            hi = max([x for row in rows for x in row[1].values() if x] + [2])
            ax.set_xlim(lo / 2, hi * 2)
            ax.set_xlabel(f"speed relative to {ref} (log scale; > 1 = faster than {ref})")
            lat_text = "no added latency" if not lat else f"+{lat:g} ms each way"
            ax.set_title(f"Speed relative to {ref} — {lat_text}, medians of {data['meta']['reps']}")
            ax.legend(loc="best", fontsize=8)
            ax.grid(axis="x", which="both", alpha=0.3)
            fig.tight_layout()
            fname = f"{name}-vs-{ref}-{tag}.png"
            fig.savefig(out / fname, dpi=110)
            plt.close(fig)
            files.append(fname)
        fs_targets = [t for t in targets if t in FS_TARGETS and any(
            (summary.get(k) or {}).get(t, {}).get("value") is not None for k in RSS_METRICS)]
        rss_rows = [(label, summary[key]) for key, label in RSS_METRICS.items() if key in summary]
        if fs_targets and rss_rows:
            fig, ax = plt.subplots(figsize=(10, 0.45 * len(rss_rows) * len(fs_targets) / 2 + 1.8))
            height = 0.8 / len(fs_targets)
            for i, t in enumerate(fs_targets):
                ys = [len(rss_rows) - 1 - r + (i - (len(fs_targets) - 1) / 2) * height
                      for r in range(len(rss_rows))]
                xs = [(row[1].get(t, {}).get("value") or 0) for row in rss_rows]
                ax.barh(ys, xs, height=height, color=COLORS.get(t), label=t)
            ax.set_yticks(range(len(rss_rows)))
            ax.set_yticklabels([row[0] for row in reversed(rss_rows)], fontsize=8)
            ax.set_xlabel("peak RSS of the filesystem process (MiB, lower is better)")
            ax.set_title(f"Peak RSS — {'no added latency' if not lat else f'+{lat:g} ms each way'}")
            ax.legend(loc="lower right", fontsize=8)
            ax.grid(axis="x", alpha=0.3)
            fig.tight_layout()
            fname = f"{name}-rss-{tag}.png"
            fig.savefig(out / fname, dpi=110)
            plt.close(fig)
            files.append(fname)
        made[lat] = files
    return made


def generate(json_path: Path, out: Path, name: str) -> tuple[Path, list[Path]]:
    data = json.loads(Path(json_path).read_text())
    out.mkdir(parents=True, exist_ok=True)
    made = charts(data, out, name)
    md = out / f"{name}.md"
    md.write_text(markdown(data, made))
    return md, [out / f for files in made.values() for f in files]


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    ap.add_argument("json", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="default: the JSON file's directory")
    ap.add_argument("--name", default=None, help="default: the JSON file's stem")
    args = ap.parse_args(argv)
    md, pngs = generate(args.json, args.out or args.json.parent, args.name or args.json.stem)
    print(md)
    for p in pngs:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
