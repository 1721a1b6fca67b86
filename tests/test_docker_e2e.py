"""The image, for real: docker/e2e.sh builds it and runs docker/compose.yaml (Redis and the
ocifs sidecar with the efrecon/s3fs stanza) against the session's SeaweedFS on 127.0.0.1.

Redis BGSAVEs through the sidecar, the stack stops (both containers must exit 0 and leave no
mount on the host), starts again, and Redis must load every key back from the bucket.  The
script installs Docker from Debian's packages and builds its base image with mmdebstrap when
they are missing (no image registry is needed).  Where no container engine can run, the test
is skipped with the script's reason; OCIFS_SKIP_DOCKER_E2E=1 skips it on purpose.  Slow: about
a minute with the images cached, four to five on a fresh machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mounting import unique_bucket

SCRIPT = Path(__file__).resolve().parent.parent / "docker" / "e2e.sh"
SKIP = 77  # the script's "cannot run here"


@pytest.mark.timeout(1800)
def test_compose_stack_keeps_redis_data_across_a_restart(seaweed_server):
    if os.environ.get("OCIFS_SKIP_DOCKER_E2E") == "1":
        pytest.skip("OCIFS_SKIP_DOCKER_E2E=1")
    bucket = unique_bucket("e2e")
    seaweed_server.create_bucket(bucket)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_S3_", "S3FS_", "OCI_"))}
    env.update({"PYTHON": sys.executable, "AWS_S3_URL": seaweed_server.endpoint_url,
                "AWS_S3_ACCESS_KEY_ID": seaweed_server.access_key,
                "AWS_S3_SECRET_ACCESS_KEY": seaweed_server.secret_key, "AWS_S3_BUCKET": bucket})
    started = time.monotonic()
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                            timeout=1700, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    print(result.stdout)  # the script's timings: shown with -s or -rA
    print(f"docker e2e: {elapsed:.0f} s in all")
    if result.returncode == SKIP:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        pytest.skip(f"docker/e2e.sh cannot run here: {reason}")
    assert result.returncode == 0, (f"docker/e2e.sh failed ({result.returncode}) after {elapsed:.0f} s\n"
                                    f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    assert "PASSED" in result.stdout
