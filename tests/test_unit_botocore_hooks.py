"""botocore and urllib3 internals that ocifs relies on are still there (ocifs.s3.client.PRIVATE_HOOKS,
ocifs.s3.lean and ocifs.s3.wire PRIVATE_ATTRIBUTES).

A botocore release that renamed one would change retries or parsing without an error: this
test fails first, and pyproject.toml's upper bound keeps untested releases out meanwhile.
"""

from __future__ import annotations

import importlib

import botocore.session
import pytest

from mock_s3 import client_for
from ocifs.s3.client import PARSER_COMPONENT, PRIVATE_HOOKS
from ocifs.s3.lean import PRIVATE_ATTRIBUTES as LEAN_PRIVATE
from ocifs.s3.retries import RETRY_HANDLER_ID
from ocifs.s3.wire import PRIVATE_ATTRIBUTES as WIRE_PRIVATE


@pytest.mark.parametrize("module, name", PRIVATE_HOOKS)
def test_private_attribute_exists(module, name):
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone"


def test_parser_component_takes_a_timestamp_parser():
    factory = botocore.session.get_session().get_component(PARSER_COMPONENT)
    assert callable(getattr(factory, "set_parser_defaults", None))


def _handler_ids(client) -> set[str]:
    return set(client.meta.events._emitter._unique_id_handlers)


def test_botocore_registers_the_retry_handler_ocifs_replaces():
    import boto3
    plain = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k",
                         aws_secret_access_key="s")
    assert RETRY_HANDLER_ID in _handler_ids(plain)
    ours = client_for()
    ids = _handler_ids(ours)
    assert RETRY_HANDLER_ID not in ids and "ocifs-paced-retry" in ids
    assert "ocifs-fast-listing" in ids and "ocifs-200-error-check" in ids


def _objects_of(client) -> dict:
    from botocore.parsers import RestXMLParser
    return {"client": client, "http": client._endpoint.http_session, "parser": RestXMLParser(),
            "signer": client._request_signer}


@pytest.mark.parametrize("owner, name", LEAN_PRIVATE)
def test_lean_path_attribute_exists(owner, name):
    objects = _objects_of(client_for())
    assert hasattr(objects[owner], name), f"{owner}.{name} is gone"


def test_the_endpoint_has_an_http_session_with_a_urllib3_pool():
    import urllib3
    http = client_for()._endpoint.http_session
    assert isinstance(http._manager, urllib3.PoolManager)
    assert callable(http.send) and callable(http._proxy_config.proxy_url_for)


@pytest.mark.parametrize("owner, name", WIRE_PRIVATE)
def test_wire_exchange_attribute_exists(owner, name):
    http = client_for()._endpoint.http_session
    pool = http._manager.connection_from_host("127.0.0.1", 9, "http")
    objects = {"pool": pool, "conn": pool._new_conn()}
    assert hasattr(objects[owner], name), f"{owner}.{name} is gone"
