"""Fixtures for unit tests of the store layer: moto's in-process mock and one client per module.

A test module sets ``BUCKET`` and imports ``aws`` and ``client``; every test gets a fresh, empty
mock holding that bucket.
"""

from __future__ import annotations

import pytest
from moto import mock_aws

from ocifs.s3.credentials import Credentials
from ocifs.s3.client import make_client

URL = "https://s3.amazonaws.com"


def client_for(path_style: bool = True, retries: int = 2):
    return make_client(URL, "us-east-1", Credentials("k", "s"), path_style, retries, 5, 5, 10)


@pytest.fixture(scope="module")
def aws():
    """One in-process mock and client per module (making a client is the slow part)."""
    mock = mock_aws()
    mock.start()
    try:
        yield mock, client_for()
    finally:
        mock.stop()


@pytest.fixture
def client(aws, request):
    mock, c = aws
    mock.reset()  # a fresh, empty mock for every test
    c.create_bucket(Bucket=request.module.BUCKET)
    return c
