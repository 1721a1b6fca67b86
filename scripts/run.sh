#!/usr/bin/env bash
# Set up and mount.  With no arguments: start an embedded local S3 server (SeaweedFS, data in
# ./ocifs-demo/data) and mount its bucket "demo" at ./ocifs-demo/mnt, in the foreground (Ctrl+C
# unmounts).  With arguments: the same as `ocifs mount BUCKET[:/PREFIX] MOUNTPOINT -o ...`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -eq 0 ]; then
    exec .venv/bin/ocifs demo
fi
exec .venv/bin/ocifs mount "$@"
