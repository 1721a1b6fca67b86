#!/usr/bin/env bash
# Set up everything the tests need (fuse3, s3fs, redis-server, the package with its test
# extras), then run the whole suite on real FUSE mounts.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
set +e
.venv/bin/python -m pytest -ra "$@"
status=$?
set -e
if [ $status -eq 5 ]; then
    echo "test: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit $status
