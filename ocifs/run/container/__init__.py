"""``ocifs container``: the image entrypoint, a drop-in for the efrecon/s3fs sidecar's.

It reads the same environment (AWS_S3_BUCKET, AWS_S3_URL, AWS_S3_ACCESS_KEY_ID,
AWS_S3_SECRET_ACCESS_KEY and their ``*_FILE`` forms, AWS_S3_AUTHFILE, AWS_S3_ROOTDIR,
AWS_S3_MOUNT, AWS_S3_ENVFILE, UID, GID, S3FS_DEBUG, S3FS_ARGS) plus a few of its own
(AWS_S3_REGION, OCI_NAMESPACE/OCI_REGION, OCIFS_STOP_TIMEOUT, OCIFS_S3FS_COMPAT), and mounts
in its own process: it is PID 1 and must own SIGTERM/SIGINT, because a stop has to upload the
dirty files and unmount before the container goes away, else the host is left with
"Transport endpoint is not connected".

Two stages, one process: the first turns the keys into a passwd file (mode 600) and re-execs
itself without them, so neither the command nor /proc/1/environ carries a secret (removing
them from ``os.environ`` alone would not change /proc/PID/environ).  The second mounts, runs
COMMAND once the mount answers, and on the first signal stops COMMAND, uploads, unmounts and
exits 0; a second signal or OCIFS_STOP_TIMEOUT seconds give up, lazily unmount and exit 1
naming what was not uploaded.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Mapping, MutableMapping

from ocifs.run.logs import setup_logging
from ocifs.run.mount import (MountError, fusermount_unmount, is_stale_mount, prepare, run_mount)
from ocifs.run.container.accounts import (drop_privileges, give_state_directory, open_fuse_device,
                                          run_as)
from ocifs.run.container.healthcheck import run_healthcheck
from ocifs.run.container.settings import (SECRET_VARIABLES, ContainerError, Settings,
                                          load_environment, mount_argv, mount_spec, read_settings)
from ocifs.run.container.supervision import ContainerHooks, SignalLatch

# The entrypoint's vocabulary, for callers that name it from here.
from ocifs.run.container.settings import mount_options, rootdir_and_mountpoint  # noqa: F401,E402
from ocifs.run.container.supervision import BACKSTOP_SLACK  # noqa: F401,E402

log = logging.getLogger(__name__)


# -- stage 1: secrets into a passwd file, then re-exec without them ---------------------------


def write_passwd_file(path: Path, key: str, secret: str) -> None:
    """``KEY:SECRET`` with mode 600 from the first byte (s3fs refuses a readable one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"{key}:{secret}\n".encode())
    finally:
        os.close(fd)


def has_secrets(environ: Mapping[str, str]) -> bool:
    """Whether this process was started with something that must not outlive stage 1."""
    return any(environ.get(name) for name in SECRET_VARIABLES + ("AWS_S3_ENVFILE",))


def scrubbed_environment(env: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """The environment of stage 2: no keys, no envfile (already applied), the passwd file's path."""
    clean = {k: v for k, v in env.items() if k not in SECRET_VARIABLES and k != "AWS_S3_ENVFILE"}
    clean["AWS_S3_AUTHFILE"] = str(settings.passwd_file)
    return clean


def reexec_without_secrets(env: Mapping[str, str], settings: Settings) -> None:
    """Write the passwd file (unless AWS_S3_AUTHFILE) and replace this process, same PID."""
    if settings.authfile is None:
        try:
            write_passwd_file(settings.passwd_file, settings.access_key, settings.secret_key)
        except OSError as exc:
            raise ContainerError(f"cannot write {settings.passwd_file}: {exc.strerror}") from None
        log.info("wrote %s (mode 600)", settings.passwd_file)
    log.debug("restarting without the secret variables in the environment")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execve(sys.executable, sys.orig_argv, scrubbed_environment(env, settings))


def clear_stale_mount(path: Path) -> None:
    """A predecessor killed with SIGKILL leaves ENOTCONN at the mountpoint: detach it."""
    if is_stale_mount(str(path)):
        log.warning("clearing stale mount at %s (Transport endpoint is not connected)", path)
        result = fusermount_unmount(str(path), lazy=True)
        if result.returncode != 0:
            raise ContainerError(f"cannot clear the stale mount at {path}: {result.stderr.strip()}")


def serve(settings: Settings, command: list[str]) -> int:
    """Stage 2: mount at AWS_S3_MOUNT, run COMMAND, stop cleanly on a signal."""
    latch = SignalLatch()
    latch.install()
    clear_stale_mount(settings.mountpoint)
    try:
        settings.mountpoint.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ContainerError(f"cannot create {settings.mountpoint}: {exc.strerror}") from None
    owner = run_as(settings)
    if owner:
        try:
            os.chown(settings.mountpoint, *owner)  # fusermount3 wants the user to own it
        except OSError as exc:
            log.warning("cannot chown %s to %d:%d: %s", settings.mountpoint, *owner, exc.strerror)
    spec = mount_spec(settings)
    log.info("ocifs %s", " ".join(mount_argv(settings)))
    try:
        prepare(spec)  # as root: reads the passwd file, checks the bucket
    except MountError as exc:
        raise ContainerError(f"ocifs: {exc}") from None
    if latch.received is not None:
        log.info("stopped before mounting")
        return 0
    if owner:
        open_fuse_device()
        give_state_directory(settings.rootdir, *owner)
        drop_privileges(*owner)
    hooks = ContainerHooks(command, settings.bucket, latch, settings.stop_timeout)
    try:
        status = run_mount(spec, hooks=hooks)
    except MountError as exc:
        raise ContainerError(f"ocifs: {exc}") from None
    finally:
        hooks.finish()
    if status == 0 and hooks.exit_status is not None:
        return hooks.exit_status
    return status


# -- entry -----------------------------------------------------------------------------------


def _setup_logging(env: Mapping[str, str]) -> None:
    """Stderr; the entrypoint's own lines always show, the filesystem's with S3FS_DEBUG."""
    setup_logging(logging.DEBUG if env.get("S3FS_DEBUG", "").strip() == "1" else logging.WARNING)
    log.setLevel(logging.DEBUG if env.get("S3FS_DEBUG", "").strip() == "1" else logging.INFO)


def run_entrypoint(command: list[str], environ: MutableMapping[str, str]) -> int:
    env = load_environment(environ)
    _setup_logging(env)
    settings = read_settings(env)
    if has_secrets(environ):
        reexec_without_secrets(env, settings)  # does not return
    return serve(settings, command)


def main(args: argparse.Namespace) -> int:
    """``ocifs container [--healthcheck] [COMMAND...]`` and ``ocifs healthcheck [MOUNTPOINT]``."""
    try:
        if args.command == "healthcheck" or getattr(args, "healthcheck", False):
            return run_healthcheck(args, os.environ)
        return run_entrypoint(list(args.container_command), os.environ)
    except ContainerError as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
