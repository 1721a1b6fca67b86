"""The boto3 S3 client, set up once for S3-compatible stores (OCI first).

botocore's private hooks used here and in :mod:`ocifs.s3.retries` and
:mod:`ocifs.s3.listparse` are listed in :data:`PRIVATE_HOOKS`; pyproject.toml bounds
botocore's version and a test fails when one of them is gone.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import logging
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import CredentialResolver
import botocore.session
import botocore.utils
import urllib3

from ocifs.s3.credentials import Credentials
from ocifs.s3.listparse import install_fast_listing
from ocifs.s3.requests import RequestParams
from ocifs.s3.retries import install_paced_retries

log = logging.getLogger(__name__)

# HEADs are small and mostly waiting for the round trip: a directory listing sends one per
# entry not in the stat cache, so they get more threads (and connections) than other requests.
# The most HEADs in flight: a listing's batch sends as many as the round trip needs
# (ocifs.s3.inflight: 8 next to the store, about 90 at 20 ms).  With 128 at most, a cold
# `ls -l` of 500 objects at +10 ms each way took 0.30 s against 0.33 with 64, and without
# added latency the same (benchmarks/results/heads128-adaptive.md).
HEAD_THREADS = 128

# What ocifs reaches inside botocore beyond its documented API, as (module, attribute) (the
# lean path's own, on objects: ocifs.s3.lean.PRIVATE_ATTRIBUTES): a
# release that renames one would silently change retries or parsing.  pyproject.toml bounds
# botocore's version; tests/test_unit_botocore_hooks.py fails when one of these is gone.
PRIVATE_HOOKS = (
    ("botocore.handlers", "_handle_200_error"),             # listparse: the 200-error check
    ("botocore.retries.standard", "StandardRetryConditions"),  # retries: the decision
    ("botocore.retries.standard", "RetryEventAdapter"),        # retries: its context
)
# The session component whose timestamp parser make_client sets.
PARSER_COMPONENT = "response_parser_factory"


MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def _http_date(value: str) -> datetime.datetime:
    """An HTTP date as S3 sends it (``Sun, 06 Dec 2026 21:46:14 GMT``, RFC 9110's IMF-fixdate)
    sliced at its fixed places (a fifth of what the email module's general parse costs);
    any other form is the email module's."""
    if len(value) == 29 and value.endswith(" GMT") and value[3:5] == ", ":
        month = MONTHS.get(value[8:11])
        if month is not None:
            return datetime.datetime(int(value[12:16]), month, int(value[5:7]),
                                     int(value[17:19]), int(value[20:22]), int(value[23:25]),
                                     tzinfo=datetime.timezone.utc)
    return email.utils.parsedate_to_datetime(value)


def parse_timestamp(value: str) -> datetime.datetime:
    """botocore's timestamp parser, with fast paths for the two forms S3 sends.

    botocore parses every timestamp with dateutil, about 30 µs each: half of the CPU of
    parsing a 1,000-key listing and a quarter of a HEAD's.  ListObjectsV2 sends ISO 8601
    (``2026-11-25T20:28:30.000Z``), HEAD an RFC 1123 date; anything else goes to botocore.
    """
    try:
        if value[:1].isdigit():
            parsed = datetime.datetime.fromisoformat(value)
        else:
            parsed = _http_date(value)
        if parsed.tzinfo is not None:
            return parsed
    except (ValueError, TypeError):
        pass
    return botocore.utils.parse_timestamp(value)


@dataclasses.dataclass
class Connection:
    """How requests travel (s3fs's TLS, proxy and header options), in botocore's terms.

    ``verify`` is botocore's: True, False (``no_check_certificate``) or a CA bundle path;
    ``proxy`` may hold ``user:pass@`` (from ``proxy_cred_file``) and is never logged.
    """

    verify: bool | str = True
    client_cert: str | tuple[str, str] | None = None
    proxy: str | None = dataclasses.field(default=None, repr=False)
    unsigned: bool = False          # public_bucket: anonymous requests
    unsigned_payload: bool = False  # enable_unsigned_payload: UNSIGNED-PAYLOAD bodies
    user_agent_extra: str | None = None
    no_user_agent: bool = False
    request_params: RequestParams | None = None


def _drop_user_agent(request: Any, **_: Any) -> None:
    """``noua``: send no User-Agent header (s3fs's option for stores that reject ours)."""
    request.headers.pop("User-Agent", None)


def make_client(url: str, region: str, credentials: Credentials, path_style: bool,
                retries: int, connect_timeout: float, read_timeout: float,
                max_pool: int, connection: Connection | None = None) -> Any:
    """A boto3 S3 client that S3-compatible stores (OCI first) accept.

    Path-style addressing when asked, SigV4 with the given region, checksums only when an
    operation requires one (OCI rejects botocore's default CRC32 and aws-chunked bodies),
    and retries as :mod:`ocifs.s3.retries` paces them (5xx, 409, 429 and throttling codes,
    timeouts, connection errors).  Timestamps take :func:`parse_timestamp`'s fast paths, and
    listings :mod:`ocifs.s3.listparse`'s compiled parse.
    """
    conn = connection or Connection()
    s3_config: dict[str, Any] = {"addressing_style": "path" if path_style else "auto"}
    if conn.unsigned_payload:
        # Explicit False wins over botocore's "sign bodies on http" rule, so this holds on
        # http:// endpoints too.
        s3_config["payload_signing_enabled"] = False
    extra: dict[str, Any] = {}
    if conn.proxy:
        extra["proxies"] = {"http": conn.proxy, "https": conn.proxy}
    if conn.client_cert:
        extra["client_cert"] = conn.client_cert
    if conn.user_agent_extra:
        extra["user_agent_extra"] = conn.user_agent_extra
    config = Config(
        region_name=region,
        signature_version=UNSIGNED if conn.unsigned else "s3v4",
        s3=s3_config,
        retries={"mode": "standard", "total_max_attempts": retries + 1},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool + HEAD_THREADS,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        tcp_keepalive=True,
        **extra,
    )
    core = botocore.session.get_session()
    core.get_component(PARSER_COMPONENT).set_parser_defaults(
        timestamp_parser=parse_timestamp)
    if credentials.provider is not None:
        # Instance or container metadata: botocore's provider refreshes the keys itself.
        core.register_component("credential_provider", CredentialResolver([credentials.provider]))
        session = boto3.session.Session(botocore_session=core)
    else:
        session = boto3.session.Session(
            botocore_session=core,
            aws_access_key_id=credentials.access_key or None,
            aws_secret_access_key=credentials.secret_key or None,
            aws_session_token=credentials.session_token,
        )
    if conn.verify is False:
        # One line at mount instead of urllib3's warning on every request.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        log.warning("TLS certificates of %s are not checked (no_check_certificate)", url)
    client = session.client("s3", endpoint_url=url, config=config, verify=conn.verify)
    if conn.no_user_agent:
        client.meta.events.register_last("before-send.s3", _drop_user_agent)
    if conn.request_params is not None:
        conn.request_params.install(client)
    install_paced_retries(client, retries)
    install_fast_listing(client, parse_timestamp)
    return client


