#!/usr/bin/env bash
# Set up everything the tests need (fuse3, s3fs, redis-server, the package with its test
# extras), then run the whole suite on real FUSE mounts.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test

run() {
    set +e
    .venv/bin/python -m pytest -ra "$@"
    local status=$?
    set -e
    if [ $status -eq 5 ]; then
        echo "test: pytest collected no tests; that is a failure" >&2
        return 1
    fi
    return $status
}

if [ $# -gt 0 ]; then
    run "$@"
    exit $?
fi
# The whole suite, then the core, multipart and Redis tests again through tests/oci_proxy.py,
# which fails any test during which ocifs sent a request OCI's S3 API would refuse.  Both on
# two pytest-xdist workers (OCIFS_TEST_WORKERS), each module whole on one worker, the longest
# modules first (tests/conftest.py); the 25 slowest tests are listed at the end of each.
workers=(-n "${OCIFS_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder --durations=25)
run "${workers[@]}"
run "${workers[@]}" --oci-proxy tests/test_oci_proxy.py tests/test_mount_ops.py tests/test_redis.py \
    tests/test_lifecycle.py tests/test_write_path.py
