"""The control channel of a running mount: a Unix socket only its owner and root can open.

Each mount has a state directory, ``/run/ocifs/<id>/`` for root and
``$XDG_RUNTIME_DIR/ocifs/<id>/`` (else ``/tmp/ocifs-<uid>/<id>/``) for other users, where
``<id>`` is a digest of the mountpoint's path.  The directory is 0700 and the socket in it,
``control.sock``, 0600: the kernel refuses anyone else before a byte is read.  A client sends
one JSON object on one line and reads one JSON object back; the mount answers in its trio
loop, so what it says is one consistent moment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
import socket
import stat
from typing import Any, Awaitable, Callable, Iterator

import trio

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_REQUEST = 64 * 1024
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request


def runtime_dir(uid: int | None = None) -> Path:
    """Where this user's mounts keep their state directories."""
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return Path("/run/ocifs")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "ocifs" if xdg else Path(f"/tmp/ocifs-{uid}")


def mount_id(mountpoint: str) -> str:
    # No realpath here: resolving the path would stat the mountpoint being served.
    return hashlib.sha1(os.path.abspath(mountpoint).encode()).hexdigest()[:16]


def socket_path(mountpoint: str, uid: int | None = None) -> Path:
    return runtime_dir(uid) / mount_id(mountpoint) / SOCKET_NAME


def _private_dir(path: Path) -> None:
    """Make ``path`` (and its parent) a directory of ours that nobody else can enter."""
    for directory in (path.parent, path):
        directory.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise OSError(f"{directory} is not a directory of this user")
    os.chmod(path, 0o700)


async def serve(path: Path, answer: Callable[[dict], Awaitable[dict]],
                task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Answer requests on the socket at ``path`` until cancelled; the socket is removed then."""
    _private_dir(path.parent)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a mount that died
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    log.info("control channel at %s", path)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started()
            listeners = [trio.SocketListener(sock)]
            nursery.start_soon(trio.serve_listeners, lambda s: _handle(s, answer), listeners)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
            path.parent.rmdir()  # nothing left behind once unmounted


async def _handle(stream: trio.SocketStream, answer: Callable[[dict], Awaitable[dict]]) -> None:
    async with stream:
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                data = b""
                while b"\n" not in data and len(data) < MAX_REQUEST:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    data += chunk
            request = json.loads(data.decode() or "{}")
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            reply = await answer(request)
        except (trio.TooSlowError, ValueError) as exc:
            reply = {"error": f"bad request: {exc}"}
        except trio.BrokenResourceError:
            return
        try:
            await stream.send_all(json.dumps(reply).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def ask(path: Path, request: dict, timeout: float) -> dict:
    """One request to the mount whose socket is ``path`` (raises OSError when it cannot)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        return json.loads(data)
    except ValueError:
        raise OSError(f"the mount answered no JSON on {path}") from None


def known_sockets() -> Iterator[Path]:
    """Every control socket this user (root: every user) may have: live or left behind."""
    dirs = [runtime_dir()]
    if os.geteuid() == 0:
        dirs += sorted(Path("/run/user").glob("*/ocifs")) + sorted(Path("/tmp").glob("ocifs-*"))
    seen = set()
    for directory in dirs:
        for path in sorted(directory.glob(f"*/{SOCKET_NAME}")):
            if path not in seen:
                seen.add(path)
                yield path
