"""The container's user: an account for UID/GID, /dev/fuse for it, dropping privileges."""

from __future__ import annotations

import grp
import logging
import os
import pwd
from pathlib import Path



from ocifs.run.container.settings import Settings

log = logging.getLogger(__name__)

def in_container_init() -> bool:
    """PID 1 is where the image runs us; only there may /etc/passwd be edited."""
    return os.getpid() == 1


def run_as(settings: Settings) -> tuple[int, int] | None:
    """(uid, gid) to drop to: UID > 0 while root, if an account has that uid (created when we
    are the container's PID 1, as the old image did: fusermount3 needs a user name)."""
    if os.geteuid() != 0 or not settings.uid:
        return None
    try:
        account = pwd.getpwuid(settings.uid)
    except KeyError:
        if not in_container_init():
            log.info("no account has uid %d: files show uid %d, the filesystem runs as root",
                     settings.uid, settings.uid)
            return None
        gid = settings.gid or 0
        create_account(settings.uid, gid)
        return settings.uid, gid
    return settings.uid, settings.gid if settings.gid is not None else account.pw_gid


def create_account(uid: int, gid: int) -> None:
    """Append a group and a user named after the ids (no useradd in every base image)."""
    if gid > 0:
        try:
            grp.getgrgid(gid)
        except KeyError:
            with open("/etc/group", "a") as groups:
                groups.write(f"ocifs{gid}:x:{gid}:\n")
    with open("/etc/passwd", "a") as users:
        users.write(f"ocifs{uid}:x:{uid}:{gid}:ocifs:/nonexistent:/usr/sbin/nologin\n")
    log.info("created user ocifs%d (uid %d, gid %d)", uid, uid, gid)


def open_fuse_device() -> None:
    """libfuse opens /dev/fuse as the user before it calls fusermount3; docker copies the host's
    mode into the container, and some hosts have 0600.  Only our own container's node changes."""
    try:
        mode = os.stat("/dev/fuse").st_mode
    except OSError:
        return
    if mode & 0o006 == 0o006:
        return
    if not in_container_init():
        log.warning("/dev/fuse is mode %04o: an unprivileged user cannot mount", mode & 0o7777)
        return
    os.chmod("/dev/fuse", 0o666)
    log.info("/dev/fuse was mode %04o: made it 0666 (in this container only)", mode & 0o7777)


def give_state_directory(rootdir: Path, uid: int, gid: int) -> None:
    """The upload journal lives under $XDG_STATE_HOME for a non-root user; HOME is still root's
    after the drop, so give the user a directory of its own beside the passwd file."""
    if os.environ.get("XDG_STATE_HOME"):
        return
    state = rootdir / "state"
    try:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(state, uid, gid)
    except OSError as exc:
        log.warning("cannot prepare %s: %s", state, exc.strerror)
        return
    os.environ["XDG_STATE_HOME"] = str(state)


def drop_privileges(uid: int, gid: int) -> None:
    """Become the unprivileged owner for good (fusermount3 then mounts for us)."""
    os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    log.info("running as uid %d, gid %d", uid, gid)
