"""Oracle Cloud Object Storage presets: its S3 Compatibility API endpoint and its rules.

OCI's ``compat.`` endpoint only takes path-style requests signed for the OCI region, so a
namespace and region (or an endpoint URL of that shape) are enough to mount a bucket.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_COMPAT_HOST = re.compile(
    r"^(?P<namespace>[a-z0-9-]+)\.compat\.objectstorage\.(?P<region>[a-z0-9-]+)\.oraclecloud\.com$")


def compat_url(namespace: str, region: str) -> str:
    """The S3 Compatibility API endpoint of ``namespace`` in ``region``."""
    return f"https://{namespace}.compat.objectstorage.{region}.oraclecloud.com"


def region_of(url: str) -> str | None:
    """The OCI region when ``url`` is an OCI S3 Compatibility endpoint, else None."""
    host = (urlsplit(url).hostname or "").lower()
    match = _COMPAT_HOST.match(host)
    return match.group("region") if match else None


def answered_like_oci(headers: dict[str, str]) -> bool:
    """Whether a response came from OCI Object Storage (every answer of it carries an
    ``opc-request-id``), also behind a custom domain or a proxy."""
    return "opc-request-id" in headers


def has_control_characters(name: str) -> bool:
    """OCI refuses object names with control characters (CR, LF, NUL, ...)."""
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)
