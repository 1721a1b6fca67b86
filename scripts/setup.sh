#!/usr/bin/env bash
# Install what ocifs needs on a fresh Debian 12 machine, then a virtualenv with the package.
#   scripts/setup.sh          runtime + embedded local S3 server (for `ocifs demo`)
#   scripts/setup.sh test     the same plus the test tools (s3fs, redis-server, pytest)
set -euo pipefail
cd "$(dirname "$0")/.."

extras="server"
packages=(fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv ca-certificates)
if [ "${1:-}" = "test" ]; then
    extras="test"
    packages+=(s3fs redis-server rclone rsync attr)  # rsync, attr (setfattr): the xattr round trips
fi

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's own Python (python3-venv): every user can run it, which non-root mounts need.
python=${PYTHON:-/usr/bin/python3}
[ -x "$python" ] || python=python3
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e ".[${extras}]" 2>&1 | grep -v "^WARNING: Location" >&2 || true
.venv/bin/python -c "import pyfuse3, ocifs" || { echo "setup: the ocifs package did not install" >&2; exit 1; }

# mount(8) and mount.fuse3 run helpers with a fixed PATH: put `ocifs` on it so that fstab lines
# (`ocifs#bucket /mnt fuse ...` or `bucket /mnt fuse.ocifs ...`) work.
if [ "$(id -u)" -eq 0 ] && [ "${OCIFS_NO_SYSTEM_LINK:-}" != 1 ]; then
    ln -sf "$PWD/.venv/bin/ocifs" /usr/local/bin/ocifs
fi
