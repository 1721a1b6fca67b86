"""Logging set-up: s3fs's ``dbglevel``/``-d``/``logfile`` mapped onto the logging module.

Foreground mounts log to stderr; daemonized ones to ``logfile=`` or, like s3fs, to syslog when
the machine has one.  Only ocifs's own loggers are raised to the chosen level: botocore's debug
output carries request headers, so it is never turned on by these options.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"


def setup_logging(level: int, logfile: str | None = None, foreground: bool = True) -> logging.Handler:
    """Configure the ``ocifs`` logger; returns the handler (SIGHUP reopens a log file)."""
    handler: logging.Handler
    if logfile:
        handler = logging.handlers.WatchedFileHandler(logfile)
        handler.setFormatter(logging.Formatter(FORMAT))
    elif foreground:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
    elif os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter("ocifs[%(process)d]: %(levelname).1s %(name)s: %(message)s"))
    else:
        handler = logging.NullHandler()
    logger = logging.getLogger("ocifs")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler


def reopen_logs() -> None:
    """SIGHUP: reopen the log file (after logrotate moved it)."""
    for handler in logging.getLogger("ocifs").handlers:
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            handler.reopenIfNeeded()
