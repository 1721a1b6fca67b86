"""``ocifs healthcheck``: the mount answers a real operation in time, from a child that is
killed when it does not."""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import signal
import sys
import time
from typing import Mapping


from ocifs.run.mount import is_fuse_mounted

from ocifs.run.container.settings import _int, load_environment, rootdir_and_mountpoint
from ocifs.run.container.supervision import probe

log = logging.getLogger(__name__)

# -- healthcheck -----------------------------------------------------------------------------


def _probe_child(mountpoint: str, owner: tuple[int, int] | None) -> str | None:
    """In a forked child: everything that may touch the mount (even realpath) happens here."""
    try:
        if owner:  # the FUSE mount of another user refuses even root without allow_other
            os.setgroups([owner[1]])
            os.setgid(owner[1])
            os.setuid(owner[0])
        real = os.path.realpath(mountpoint)
        if not is_fuse_mounted(real):
            return f"{mountpoint} is not mounted"
        probe(real)
        return None
    except OSError as exc:
        return f"{mountpoint}: {exc.strerror}"


def probe_mount(mountpoint: str, timeout: float, owner: tuple[int, int] | None = None) -> str | None:
    """None if the mount answers statfs and a listing within ``timeout`` s, else why not.  The
    probe runs in a child that is killed on timeout: a hung mount must make us unhealthy, not
    hang us."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        problem: str | None = "the probe failed"
        try:
            problem = _probe_child(mountpoint, owner)
        finally:
            os.write(write_fd, (problem or "").encode())
            os._exit(1 if problem else 0)
    os.close(write_fd)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                message = os.read(read_fd, 4096).decode(errors="replace")
                if os.waitstatus_to_exitcode(status) == 0:
                    return None
                return message or f"{mountpoint}: the probe failed"
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return f"{mountpoint}: no answer within {timeout:g} s"
    finally:
        os.close(read_fd)


def healthcheck(mountpoint: str, timeout: float, owner: tuple[int, int] | None = None) -> int:
    """0 if the mount answers statfs and a listing within ``timeout`` s, else 1 (and why)."""
    problem = probe_mount(mountpoint, timeout, owner)
    if problem:
        print(f"ocifs healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


def healthcheck_owner(env: Mapping[str, str]) -> tuple[int, int] | None:
    """The user the entrypoint dropped to (it did if root and an account has UID)."""
    uid, gid = _int(env, "UID"), _int(env, "GID")
    if os.geteuid() != 0 or not uid:
        return None
    try:
        account = pwd.getpwuid(uid)
    except KeyError:
        return None
    return uid, gid if gid is not None else account.pw_gid



def run_healthcheck(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``ocifs healthcheck``: ``ocifs status --check`` of the container's mount, its limits
    from the environment: ``OCIFS_HEALTH_MAX_AGE`` (``GLOB=SECONDS``, several separated by
    spaces or commas) and ``OCIFS_HEALTH_STUCK_AFTER`` (seconds, default 300)."""
    from ocifs.run.status import DEFAULT_STUCK_AFTER, StatusError, check, parse_max_ages

    env = load_environment(environ)
    mountpoint = getattr(args, "mountpoint", None) or str(rootdir_and_mountpoint(env)[1])
    timeout = getattr(args, "timeout", None) or float(env.get("OCIFS_HEALTHCHECK_TIMEOUT") or 5)
    try:
        max_ages = parse_max_ages([env.get("OCIFS_HEALTH_MAX_AGE") or ""])
        stuck_after = float(env.get("OCIFS_HEALTH_STUCK_AFTER") or DEFAULT_STUCK_AFTER)
    except (StatusError, ValueError) as exc:
        print(f"ocifs healthcheck: OCIFS_HEALTH_MAX_AGE/OCIFS_HEALTH_STUCK_AFTER: {exc}",
              file=sys.stderr)
        return 1
    problem = check(mountpoint, stuck_after, max_ages, timeout, healthcheck_owner(env))
    if problem:
        print(f"ocifs healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0
