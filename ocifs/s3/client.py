"""The boto3 S3 client, set up once for S3-compatible stores (OCI first).

botocore's private hooks used here and in :mod:`ocifs.s3.retries` and
:mod:`ocifs.s3.listparse` are listed in :data:`PRIVATE_HOOKS`; pyproject.toml bounds
botocore's version and a test fails when one of them is gone.
"""

from __future__ import annotations

import datetime
import email.utils
from typing import Any

import boto3
from botocore.config import Config
import botocore.session
import botocore.utils

from ocifs.s3.credentials import Credentials
from ocifs.s3.listparse import install_fast_listing
from ocifs.s3.retries import install_paced_retries

# HEADs are small and mostly waiting for the round trip: a directory listing sends one per
# entry not in the stat cache, so they get more threads (and connections) than other requests.
HEAD_THREADS = 32

# What ocifs reaches inside botocore beyond its documented API, as (module, attribute): a
# release that renames one would silently change retries or parsing.  pyproject.toml bounds
# botocore's version; tests/test_unit_botocore_hooks.py fails when one of these is gone.
PRIVATE_HOOKS = (
    ("botocore.handlers", "_handle_200_error"),             # listparse: the 200-error check
    ("botocore.retries.standard", "StandardRetryConditions"),  # retries: the decision
    ("botocore.retries.standard", "RetryEventAdapter"),        # retries: its context
)
# The session component whose timestamp parser make_client sets.
PARSER_COMPONENT = "response_parser_factory"


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
            parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is not None:
            return parsed
    except (ValueError, TypeError):
        pass
    return botocore.utils.parse_timestamp(value)


def make_client(url: str, region: str, credentials: Credentials, path_style: bool,
                retries: int, connect_timeout: float, read_timeout: float,
                max_pool: int) -> Any:
    """A boto3 S3 client that S3-compatible stores (OCI first) accept.

    Path-style addressing when asked, SigV4 with the given region, checksums only when an
    operation requires one (OCI rejects botocore's default CRC32 and aws-chunked bodies),
    and retries as :mod:`ocifs.s3.retries` paces them (5xx, 409, 429 and throttling codes,
    timeouts, connection errors).  Timestamps take :func:`parse_timestamp`'s fast paths, and
    listings :mod:`ocifs.s3.listparse`'s compiled parse.
    """
    config = Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": "path" if path_style else "auto"},
        retries={"mode": "standard", "total_max_attempts": retries + 1},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool + HEAD_THREADS,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        tcp_keepalive=True,
    )
    core = botocore.session.get_session()
    core.get_component(PARSER_COMPONENT).set_parser_defaults(
        timestamp_parser=parse_timestamp)
    session = boto3.session.Session(
        botocore_session=core,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.session_token,
    )
    client = session.client("s3", endpoint_url=url, config=config)
    install_paced_retries(client, retries)
    install_fast_listing(client, parse_timestamp)
    return client


