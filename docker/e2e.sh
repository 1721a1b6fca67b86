#!/usr/bin/env bash
# End to end with a real container engine: build the image, run docker/compose.yaml (Redis and
# the ocifs sidecar, the efrecon/s3fs stanza) against an S3 server on 127.0.0.1, BGSAVE through
# the sidecar, restart the stack and check that Redis loads its data back from the bucket.
#
#   bash docker/e2e.sh            (as root; tests/test_docker_e2e.py runs it)
#
# Exit 0: passed.  Exit 77: this machine cannot run it; the reason is the last line on stderr.
# Anything else: failed.  Nothing stays mounted or running afterwards; dockerd, when this script
# started it, is stopped too (E2E_KEEP_DOCKERD=1 keeps it and prints its pid).
#
# Environment: AWS_S3_URL/AWS_S3_ACCESS_KEY_ID/AWS_S3_SECRET_ACCESS_KEY/AWS_S3_BUCKET of an
# existing server and bucket (else a SeaweedFS is started with PYTHON, which needs the package
# and its [server] extra); PYTHON (default: python3); E2E_BASE_IMAGE (default
# local/bookworm-python, built with mmdebstrap when missing: no image registry is needed).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
PYTHON="${PYTHON:-python3}"
BASE_IMAGE="${E2E_BASE_IMAGE:-local/bookworm-python}"
OCIFS_IMAGE="ocifs:e2e"
REDIS_IMAGE="ocifs-e2e/redis:7"
PROJECT="ocifse2e"
WORK="$(mktemp -d /tmp/ocifs-e2e.XXXXXX)"
HOST_DIR="$WORK/nolocal"
DOCKERD_PID=""
SERVER_PID=""
T0=$SECONDS

say() { printf '[e2e %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
skip() { printf 'SKIP: %s\n' "$*" >&2; exit 77; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# -- cleanup: nothing mounted, running or bind-mounted afterwards --------------------------
compose() {
    docker-compose -p "$PROJECT" -f "$HERE/compose.yaml" -f "$HERE/compose.e2e.yaml" "$@"
}

cleanup() {
    local status=$?
    set +e
    if [ -n "$DOCKERD_PID" ] || docker info >/dev/null 2>&1; then
        compose down --timeout 60 >/dev/null 2>&1
    fi
    if [ -d "$HOST_DIR" ]; then
        # docker kill leaves a dead FUSE mount on the host; then the shared bind itself.
        for _ in 1 2 3 4; do
            mountpoint -q "$HOST_DIR" || break
            fusermount3 -uz "$HOST_DIR" 2>/dev/null || umount -l "$HOST_DIR" 2>/dev/null
        done
    fi
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    if [ -n "$DOCKERD_PID" ]; then
        if [ "${E2E_KEEP_DOCKERD:-0}" = 1 ]; then
            say "dockerd keeps running, pid $DOCKERD_PID"
        else
            kill "$DOCKERD_PID" 2>/dev/null
            for _ in $(seq 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
        fi
    fi
    # Superseded builds of the image (dangling), not anyone else's images.
    docker image prune -f --filter "label=org.opencontainers.image.title=ocifs" >/dev/null 2>&1
    rm -rf "$WORK"
    say "total $((SECONDS - T0)) s, exit $status"
    exit $status
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || skip "needs root (dockerd, mount --make-shared)"
[ -e /dev/fuse ] || skip "no /dev/fuse on this machine"

# -- the engine --------------------------------------------------------------------------
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
    say "installing docker.io and docker-compose"
    command -v apt-get >/dev/null || skip "no dockerd/docker-compose and no apt-get to install them"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose >/dev/null; } \
        || skip "apt-get could not install docker.io docker-compose"
fi
# Debian's docker (20.10) has BuildKit built in; a newer CLI earlier in PATH may lack buildx.
if [ -x /usr/bin/docker ]; then docker() { /usr/bin/docker "$@"; }; fi
export DOCKER_BUILDKIT=1

if ! docker info >/dev/null 2>&1; then
    say "starting dockerd"
    dockerd >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    if ! docker info >/dev/null 2>&1; then
        kill "$DOCKERD_PID" 2>/dev/null; wait "$DOCKERD_PID" 2>/dev/null
        say "dockerd failed with the defaults; trying vfs storage without iptables"
        dockerd --storage-driver vfs --iptables=false --bridge=none >"$WORK/dockerd.log" 2>&1 &
        DOCKERD_PID=$!
        for _ in $(seq 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
        docker info >/dev/null 2>&1 || skip "dockerd does not start here: $(tail -n 1 "$WORK/dockerd.log")"
    fi
fi
say "engine: $(docker version --format '{{.Server.Version}}'), compose $(docker-compose version --short)"

# -- a base image without a registry -------------------------------------------------------
build_base_image() {
    command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null \
        || skip "no base image $BASE_IMAGE and mmdebstrap cannot be installed"
    local sources
    sources="$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
    [ -n "$sources" ] || sources=/etc/apt/sources.list
    [ -e "$sources" ] || skip "no apt sources on this machine to build a base image from"
    say "building $BASE_IMAGE with mmdebstrap from $sources"
    # The host's own CA certificates and apt options, so that apt and pip work in later builds.
    mmdebstrap --quiet --variant=apt \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"' \
        --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"' \
        --customize-hook='for c in /usr/local/share/ca-certificates/*.crt; do [ -e "$c" ] && cp "$c" "$1/usr/local/share/ca-certificates/"; done; true' \
        --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
        --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"' \
        --customize-hook='printf "%s\n" "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true\"; };" "APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true\"; };" "Dir::Cache::pkgcache \"\";" "Dir::Cache::srcpkgcache \"\";" > "$1/etc/apt/apt.conf.d/docker-clean"' \
        --customize-hook='rm -rf "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*' \
        bookworm "$WORK/base.tar" "$sources"
    docker import "$WORK/base.tar" "$BASE_IMAGE" >/dev/null
    rm -f "$WORK/base.tar"
}
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || build_base_image
docker run --rm --device /dev/fuse --cap-add SYS_ADMIN --network host "$BASE_IMAGE" true \
    || skip "a container with --device /dev/fuse --cap-add SYS_ADMIN cannot run here"

# -- the images --------------------------------------------------------------------------
started=$SECONDS
docker build --quiet --network host --build-arg "BASE=$BASE_IMAGE" -f "$HERE/Dockerfile" \
    -t "$OCIFS_IMAGE" "$ROOT" >/dev/null
say "built $OCIFS_IMAGE in $((SECONDS - started)) s ($(docker image inspect -f '{{.Size}}' "$OCIFS_IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
if docker run --rm --entrypoint sh "$OCIFS_IMAGE" -c 'command -v gcc || command -v cc || command -v x86_64-linux-gnu-gcc-12'; then
    fail "a compiler is left in the final image"
fi
# Stand-in for the official redis image (no registry): the same command, run as 999:999.
started=$SECONDS
printf 'FROM %s\nRUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*\nCMD ["redis-server"]\n' "$BASE_IMAGE" \
    | docker build --quiet --network host -t "$REDIS_IMAGE" - >/dev/null
say "built $REDIS_IMAGE in $((SECONDS - started)) s"

# -- the S3 server -------------------------------------------------------------------------
if [ -z "${AWS_S3_URL:-}" ]; then
    say "starting SeaweedFS on 127.0.0.1"
    "$PYTHON" - "$WORK/server.env" <<'EOF' &
import signal, sys, time
from ocifs.run.localserver import LocalS3Server
server = LocalS3Server(kind="seaweedfs").start()
server.create_bucket("redis-e2e")
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(f"AWS_S3_URL={server.endpoint_url}\nAWS_S3_ACCESS_KEY_ID={server.access_key}\n"
              f"AWS_S3_SECRET_ACCESS_KEY={server.secret_key}\nAWS_S3_BUCKET=redis-e2e\n")
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
signal.signal(signal.SIGTERM, lambda *a: (server.stop(), sys.exit(0)))
while True:
    time.sleep(3600)
EOF
    SERVER_PID=$!
    for _ in $(seq 300); do [ -e "$WORK/server.env" ] && break; kill -0 "$SERVER_PID" || fail "the S3 server did not start"; sleep 0.1; done
    set -a; . "$WORK/server.env"; set +a
fi
: "${AWS_S3_BUCKET:?}" "${AWS_S3_ACCESS_KEY_ID:?}" "${AWS_S3_SECRET_ACCESS_KEY:?}"
export AWS_S3_URL AWS_S3_BUCKET AWS_S3_ACCESS_KEY_ID AWS_S3_SECRET_ACCESS_KEY

# -- the stack -----------------------------------------------------------------------------
mkdir -p "$HOST_DIR"
mount --bind "$HOST_DIR" "$HOST_DIR"
mount --make-shared "$HOST_DIR"
REDIS_PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export OCIFS_IMAGE REDIS_IMAGE REDIS_PORT OCIFS_HOST_DIR="$HOST_DIR"

rcli() { compose exec -T redis redis-cli -p "$REDIS_PORT" "$@"; }

up() {
    local started=$SECONDS
    compose up -d --no-build >/dev/null 2>"$WORK/up.log" || { cat "$WORK/up.log" >&2; compose logs >&2; fail "compose up"; }
    for _ in $(seq 300); do
        [ "$(rcli PING 2>/dev/null | tr -d '\r')" = PONG ] && break
        sleep 0.1
    done
    [ "$(rcli PING | tr -d '\r')" = PONG ] || { compose logs >&2; fail "redis does not answer"; }
    say "up (sidecar healthy, redis answering) in $((SECONDS - started)) s"
}

stop_and_check() {
    local started=$SECONDS
    compose logs s3fs 2>&1 | grep -q Traceback && { compose logs s3fs >&2; fail "a traceback in the sidecar's log"; }
    compose stop --timeout 60 >/dev/null 2>&1
    say "stopped in $((SECONDS - started)) s"
    local id
    for service in redis s3fs; do
        id="$(compose ps -q "$service")"
        [ "$(docker inspect -f '{{.State.ExitCode}}' "$id")" = 0 ] \
            || { compose logs "$service" >&2; fail "$service exited with $(docker inspect -f '{{.State.ExitCode}}' "$id")"; }
    done
    grep -q " $HOST_DIR fuse" /proc/mounts && fail "the FUSE mount is still on the host after stop"
    stat "$HOST_DIR" >/dev/null || fail "$HOST_DIR cannot be stat'ed after stop"
    compose down --timeout 60 >/dev/null 2>&1
}

up
sidecar="$(compose ps -q s3fs)"
[ "$(docker inspect -f '{{.State.Health.Status}}' "$sidecar")" = healthy ] || fail "sidecar not healthy"
docker exec "$sidecar" cat /proc/1/environ | tr '\0' '\n' | grep -q "$AWS_S3_SECRET_ACCESS_KEY" \
    && fail "the secret key is in the sidecar's /proc/1/environ"
docker exec "$sidecar" grep -q "^Uid:[[:space:]]*999[[:space:]]" /proc/1/status || fail "the filesystem does not run as 999"
docker logs "$sidecar" 2>&1 | grep -q "$AWS_S3_SECRET_ACCESS_KEY" && fail "the secret key is in the sidecar's log"

rcli EVAL "for i=1,20000 do redis.call('SET', 'key:' .. i, string.rep('v', 100) .. i) end return 1" 0 >/dev/null
rcli SET e2e:marker "written before the restart" >/dev/null
expected="$(rcli DBSIZE | tr -d '\r')"
started=$SECONDS
rcli BGSAVE >/dev/null
for _ in $(seq 600); do
    rcli INFO persistence | grep -q '^rdb_bgsave_in_progress:0' && break
    sleep 0.1
done
rcli INFO persistence | grep -q '^rdb_last_bgsave_status:ok' || { compose logs >&2; fail "BGSAVE failed"; }
say "BGSAVE of $expected keys done in $((SECONDS - started)) s"
[ -s "$HOST_DIR/dump.rdb" ] || fail "the host does not see dump.rdb through the shared mount"
"$PYTHON" - <<'EOF' || fail "dump.rdb is not in the bucket as the host sees it"
import os, boto3, hashlib
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_S3_URL"], region_name="us-east-1",
                  aws_access_key_id=os.environ["AWS_S3_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["AWS_S3_SECRET_ACCESS_KEY"],
                  config=Config(s3={"addressing_style": "path"}))
body = s3.get_object(Bucket=os.environ["AWS_S3_BUCKET"], Key="dump.rdb")["Body"].read()
seen = open(os.path.join(os.environ["OCIFS_HOST_DIR"], "dump.rdb"), "rb").read()
assert body[:5] == b"REDIS" and body == seen, (len(body), len(seen))
EOF
say "dump.rdb is in the bucket, byte for byte what the host reads"
stop_and_check

say "restarting the stack"
up
got="$(rcli DBSIZE | tr -d '\r')"
[ "$got" = "$expected" ] || fail "after the restart redis has $got keys, not $expected"
[ "$(rcli GET e2e:marker | tr -d '\r')" = "written before the restart" ] || fail "marker lost"
[ "$(rcli GET key:12345 | tr -d '\r')" = "$(printf 'v%.0s' $(seq 100))12345" ] || fail "key:12345 wrong"
say "redis loaded $got keys back from the bucket"
stop_and_check
say "PASSED"
