"""Logging set-up: s3fs's ``dbglevel``/``-d``/``logfile`` mapped onto the logging module.

Foreground mounts log to stderr; daemonized ones to ``logfile=`` or, like s3fs, to syslog when
the machine has one.  Only ocifs's own loggers are raised to the chosen level: botocore's debug
output carries request headers, so it is never turned on by these options.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys

# botocore's loggers that show each HTTP request and response (with headers).
HTTP_LOGGERS = ("botocore.endpoint", "botocore.parsers", "urllib3.connectionpool")

FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"


class RedactSecrets(logging.Filter):
    """Blank request signatures and tokens out of HTTP debug lines (``curldbg``)."""

    _PATTERNS = [
        # header dicts as botocore prints them: 'Authorization': b'AWS4-HMAC-SHA256 ...'
        re.compile(r"((?:Authorization|X-Amz-Security-Token)['\"]?\s*[:=]\s*b?['\"])[^'\"]*", re.I),
        # presigned query strings
        re.compile(r"((?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=)[^&\s'\"]+", re.I),
    ]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for pattern in self._PATTERNS:
            message = pattern.sub(r"\1<redacted>", message)
        record.msg, record.args = message, None
        return True


def setup_logging(level: int, logfile: str | None = None, foreground: bool = True,
                  http_debug: bool = False) -> logging.Handler:
    """Configure the ``ocifs`` logger; returns the handler (SIGHUP reopens a log file).

    ``http_debug`` (s3fs's ``curldbg``) adds botocore's request/response lines, redacted.
    """
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
    for name in HTTP_LOGGERS:
        http_logger = logging.getLogger(name)
        for old in list(http_logger.handlers):
            http_logger.removeHandler(old)
        if http_debug:
            http_logger.addHandler(handler)
            http_logger.setLevel(logging.DEBUG)
            http_logger.propagate = False
    if http_debug:
        handler.addFilter(RedactSecrets())
    return handler


def reopen_logs() -> None:
    """SIGHUP: reopen the log file (after logrotate moved it)."""
    for handler in logging.getLogger("ocifs").handlers:
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            handler.reopenIfNeeded()
