"""PID 1's jobs while the mount serves: run COMMAND, reap orphans, latch signals, cut a stuck stop."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import trio

from ocifs.procfs import stat_fields
from ocifs.run.mount import (Mount, MountHooks, fusermount_unmount)

log = logging.getLogger(__name__)

# Seconds past OCIFS_STOP_TIMEOUT before a stop stuck in a store request (a thread trio
# cannot cancel) is cut short: lazy unmount and exit.
BACKSTOP_SLACK = 5.0
GIVE_UP_GRACE = 2.0  # after a second signal, before that same cut

from ocifs.run.container.accounts import in_container_init  # noqa: E402

def probe(mountpoint: str) -> None:
    """A cheap real operation: the filesystem answers statfs and a listing of its root."""
    os.statvfs(mountpoint)
    os.listdir(mountpoint)


class SignalLatch:
    """SIGTERM/SIGINT before the mount serves: PID 1 ignores SIGTERM without a handler, and a
    KeyboardInterrupt mid-mount would leave it dead.  Latched, then handed to the mount."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.mount: Mount | None = None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum
        if self.mount is not None:
            self.mount.request_stop(f"signal {signal.Signals(signum).name}")

    def attach(self, mount: Mount) -> None:
        self.mount = mount
        if self.received is not None:
            mount.request_stop(f"signal {signal.Signals(self.received).name}")


def _exit_status(returncode: int) -> int:
    """A shell's convention: killed by signal N → 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class ContainerHooks(MountHooks):
    """Runs COMMAND once the mount answers; stops it first when the mount stops."""

    def __init__(self, command: list[str], bucket: str, latch: SignalLatch, stop_timeout: float) -> None:
        self.command = command
        self.bucket = bucket
        self.latch = latch
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None
        self.exit_status: int | None = None  # set when COMMAND (or the mount check) ends the run
        self.mount: Mount | None = None
        self.finished = threading.Event()

    def live(self, mount: Mount) -> None:
        self.mount = mount
        self.latch.attach(mount)
        threading.Thread(target=self._start_command, name="command", daemon=True).start()
        if in_container_init():
            threading.Thread(target=self._reap_orphans, name="reaper", daemon=True).start()

    def _end(self, status: int, reason: str) -> None:
        assert self.mount is not None
        if not self.mount.stopping:
            self.exit_status = status
            self.mount.request_stop(reason)

    def _start_command(self) -> None:
        """In a thread: the mount must answer before COMMAND runs (the old image's stat)."""
        assert self.mount is not None
        mountpoint = self.mount.spec.mountpoint
        try:
            probe(mountpoint)
        except OSError as exc:
            log.error("Mount failure: %s: %s", mountpoint, exc.strerror)
            self._end(1, "mount check failed")
            return
        log.info("Mounted bucket %s onto %s", self.bucket, mountpoint)
        if not self.command or self.mount.stopping:
            return
        try:
            self.process = subprocess.Popen(self.command)
        except OSError as exc:
            log.error("cannot run %s: %s", self.command[0], exc.strerror)
            self._end(126 if exc.errno == errno.EACCES else 127, "command failed to start")
            return
        status = _exit_status(self.process.wait())
        log.info("command exited with status %d", status)
        self._end(status, "command exited")

    def _reap_orphans(self) -> None:
        """PID 1's duty: collect zombies COMMAND left behind (not COMMAND itself)."""
        assert self.mount is not None
        while not self.mount.stopping:
            time.sleep(1.0)
            for pid in _zombie_children():
                if self.process is None or pid != self.process.pid:
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass

    async def stopping(self, reason: str) -> None:
        log.info("stopping (%s): uploading dirty files, then unmounting", reason)
        threading.Thread(target=self._backstop, name="backstop", daemon=True).start()
        process = self.process
        if process is None or process.poll() is not None:
            return
        log.info("sending SIGTERM to the command (pid %d)", process.pid)
        process.send_signal(signal.SIGTERM)
        while process.poll() is None:
            await trio.sleep(0.05)

    def _backstop(self) -> None:
        """Giving up (second signal, timeout) cannot interrupt a store request stuck in a worker
        thread, and trio waits for it: past a short grace, exit without it."""
        assert self.mount is not None
        deadline = time.monotonic() + self.stop_timeout + BACKSTOP_SLACK
        while not self.finished.wait(0.1):
            if self.mount.giving_up:
                deadline = min(deadline, time.monotonic() + GIVE_UP_GRACE)
            if time.monotonic() > deadline:
                self._hard_stop()

    def _hard_stop(self) -> None:
        """The stop is stuck (a store request that does not return): detach and exit."""
        assert self.mount is not None
        unsaved = self.mount.dirty_paths()
        log.error("the stop is stuck in a store request: lazy unmount and exit")
        if unsaved:
            print(f"ocifs: not uploaded: {', '.join(unsaved)}", file=sys.stderr, flush=True)
        fusermount_unmount(self.mount.spec.mountpoint, lazy=True)
        os._exit(1)

    def finish(self) -> None:
        """After unmounting: COMMAND must not outlive us (it would be killed with PID 1 anyway)."""
        self.finished.set()
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _zombie_children() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(entry)
        if fields is not None and fields[0] == "Z" and fields[1] == me:
            found.append(int(entry))
    return found
