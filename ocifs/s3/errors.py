"""Errors from the store, mapped to the errno a program should see (one table)."""

from __future__ import annotations

import errno

import botocore.exceptions

from ocifs.errors import FsError

# S3 error codes and the errno a program should see for them.
_ERRNO_BY_CODE = {
    "NoSuchKey": errno.ENOENT,
    "NotFound": errno.ENOENT,
    "404": errno.ENOENT,
    "NoSuchBucket": errno.ENOENT,
    "NoSuchUpload": errno.ENOENT,
    "AccessDenied": errno.EACCES,
    "403": errno.EACCES,
    "Forbidden": errno.EACCES,
    "InvalidAccessKeyId": errno.EACCES,
    "SignatureDoesNotMatch": errno.EACCES,
    "AllAccessDisabled": errno.EACCES,
    "KeyTooLongError": errno.ENAMETOOLONG,
    "EntityTooLarge": errno.EFBIG,
    "InvalidRange": errno.EINVAL,
    "416": errno.EINVAL,
    "InvalidArgument": errno.EINVAL,
    "400": errno.EINVAL,
    "BadRequest": errno.EINVAL,
    "InvalidObjectName": errno.EINVAL,
    # Throttling that outlasted the retries is an I/O error: EAGAIN would tell a program
    # that reads or writes a regular file to try again at once (Python's unbuffered write
    # even returns None for it, as if nothing had gone wrong).
    "SlowDown": errno.EIO,
    "ServiceUnavailable": errno.EIO,
    "QuotaExceeded": errno.ENOSPC,
}


class StoreError(FsError):
    """A failed store request: ``errno`` for the caller, the S3 error ``code``, a message
    without secrets for the log."""

    source = "store"

    def __init__(self, err: int, message: str, code: str = "") -> None:
        super().__init__(err, message)
        self.code = code


class VersionChanged(StoreError):
    """A GET answered from another version of the object (ETag ``got``) than ``expected``."""

    def __init__(self, key: str, expected: str, got: str) -> None:
        super().__init__(errno.EIO, f"GET {key}: the object changed (ETag {got}, was "
                                    f"{expected})", "ETagChanged")
        self.expected = expected
        self.got = got


def error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return exc.__class__.__name__


def to_store_error(exc: BaseException, what: str) -> StoreError:
    """Map a boto3/botocore exception to a :class:`StoreError` with a sensible errno."""
    if isinstance(exc, StoreError):
        return exc
    code = error_code(exc)
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        err = _ERRNO_BY_CODE.get(code) or _ERRNO_BY_CODE.get(str(status), errno.EIO)
        message = exc.response.get("Error", {}).get("Message") or code
        return StoreError(err, f"{what}: {code} ({message})", code)
    # Timeouts first: botocore's ConnectTimeoutError is also a ConnectionError.
    if isinstance(exc, (botocore.exceptions.ReadTimeoutError,
                        botocore.exceptions.ConnectTimeoutError)):
        return StoreError(errno.ETIMEDOUT, f"{what}: timed out", code)
    if isinstance(exc, botocore.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return StoreError(errno.EIO, f"{what}: the endpoint's TLS certificate cannot be "
                          "verified (-o no_check_certificate skips the check)", code)
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ConnectionError)):
        return StoreError(errno.EIO, f"{what}: cannot reach the endpoint ({code})", code)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return StoreError(errno.EACCES, f"{what}: no credentials", code)
    if isinstance(exc, OSError) and exc.errno:
        return StoreError(exc.errno, f"{what}: {exc.strerror}", code)
    return StoreError(errno.EIO, f"{what}: {code}: {exc}", code)


