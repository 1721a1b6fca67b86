"""What ``/proc/PID/stat`` says of a process, read in one place."""

from __future__ import annotations


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields after the command name (state, ppid, ...), or None when there is no such
    process.  The name is in parentheses and may hold spaces, so the split starts after it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()
    except OSError:
        return None


def is_zombie(pid: int | str) -> bool:
    """``pid`` exited and waits for its parent to collect it."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] == "Z"
