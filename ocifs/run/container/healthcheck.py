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


def _probe_child(mountpoint: str, owner: tuple[int, int] | None) -> int:
    """In a forked child: everything that may touch the mount (even realpath) happens here."""
    try:
        if owner:  # the FUSE mount of another user refuses even root without allow_other
            os.setgroups([owner[1]])
            os.setgid(owner[1])
            os.setuid(owner[0])
        real = os.path.realpath(mountpoint)
        if not is_fuse_mounted(real):
            print(f"ocifs healthcheck: {mountpoint} is not mounted", file=sys.stderr)
            return 1
        probe(real)
        return 0
    except OSError as exc:
        print(f"ocifs healthcheck: {mountpoint}: {exc.strerror}", file=sys.stderr)
        return 1


def healthcheck(mountpoint: str, timeout: float, owner: tuple[int, int] | None = None) -> int:
    """0 if the mount answers statfs and a listing within ``timeout`` s, else 1.  The probe runs
    in a child that is killed on timeout: a hung mount must make us unhealthy, not hang us."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _probe_child(mountpoint, owner)
        finally:
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return 0 if os.waitstatus_to_exitcode(status) == 0 else 1
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print(f"ocifs healthcheck: {mountpoint}: no answer within {timeout:g} s", file=sys.stderr)
    return 1


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
    env = load_environment(environ)
    mountpoint = getattr(args, "mountpoint", None) or str(rootdir_and_mountpoint(env)[1])
    timeout = getattr(args, "timeout", None) or float(env.get("OCIFS_HEALTHCHECK_TIMEOUT") or 5)
    return healthcheck(mountpoint, timeout, healthcheck_owner(env))
