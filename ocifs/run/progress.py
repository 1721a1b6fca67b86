"""What ``ocifs umount`` shows while the unmounted process uploads what is still dirty.

The bytes left come from the mount's control channel (:mod:`ocifs.run.control`): a progress
bar (``rich``) on a terminal, a plain line every few seconds otherwise, nothing at all when
nothing is dirty.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ocifs.run import control
from ocifs.units import human_size

POLL_INTERVAL = 0.5   # seconds between two questions to the mount
LINE_INTERVAL = 3.0   # seconds between two plain lines


class UploadProgress:
    """Called over and over while waiting (:meth:`tick`); :meth:`close` at the end."""

    def __init__(self, mountpoint: str, stream: TextIO = sys.stderr) -> None:
        self.socket = control.socket_path(mountpoint)
        self.stream = stream
        self.terminal = stream.isatty()
        self._next_poll = 0.0
        self._next_line = 0.0
        self._total = 0
        self._bar: Any = None
        self._task: Any = None

    def _left(self) -> tuple[int, int] | None:
        try:
            reply = control.ask(self.socket, {}, timeout=2)
        except OSError:
            return None  # gone (finished) or busy: the next tick asks again
        dirty = reply.get("dirty") or {}
        return dirty.get("bytes", 0), dirty.get("files", 0)

    def tick(self) -> None:
        now = time.monotonic()
        if now < self._next_poll:
            return
        self._next_poll = now + POLL_INTERVAL
        left = self._left()
        if left is None or (not left[0] and self._bar is None):
            return
        left_bytes, files = left
        self._total = max(self._total, left_bytes)
        if self.terminal:
            self._show_bar(left_bytes, files)
        elif now >= self._next_line and left_bytes:
            self._next_line = now + LINE_INTERVAL
            print(f"ocifs: uploading before exit: {human_size(left_bytes)} left in {files} file(s)",
                  file=self.stream, flush=True)

    def _show_bar(self, left: int, files: int) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)
        if self._bar is None:
            self._bar = Progress(TextColumn("uploading before exit"), BarColumn(),
                                 DownloadColumn(binary_units=True), TransferSpeedColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[files]} file(s)"),
                                 console=Console(file=self.stream), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("upload", total=self._total, files=files)
        self._bar.update(self._task, total=self._total, completed=self._total - left, files=files)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
