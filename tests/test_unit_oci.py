"""OCI presets: namespace+region or an OCI endpoint URL give path style and the OCI region."""

from __future__ import annotations

import pytest

from ocifs.s3 import oci
from ocifs.run.options import OptionError, parse_options


def test_namespace_and_region_build_the_compat_endpoint():
    opts = parse_options(["oci_namespace=axaxnpcrorw5,oci_region=eu-frankfurt-1"])
    assert opts.url == "https://axaxnpcrorw5.compat.objectstorage.eu-frankfurt-1.oraclecloud.com"
    assert opts.endpoint == "eu-frankfurt-1"
    assert opts.use_path_request_style is True


def test_oci_url_alone_turns_on_path_style_and_region_with_a_notice():
    opts = parse_options(["url=https://ns1.compat.objectstorage.us-ashburn-1.oraclecloud.com"])
    assert opts.use_path_request_style is True
    assert opts.endpoint == "us-ashburn-1"
    assert any("OCI" in notice for notice in opts.notices)


def test_explicit_region_wins_over_the_url():
    opts = parse_options(["url=https://ns1.compat.objectstorage.us-ashburn-1.oraclecloud.com,endpoint=x-1"])
    assert opts.endpoint == "x-1"


def test_other_urls_are_left_alone():
    opts = parse_options(["url=http://127.0.0.1:9000"])
    assert opts.use_path_request_style is False
    assert opts.endpoint == "us-east-1"
    assert opts.notices == []


def test_namespace_without_region_is_refused():
    with pytest.raises(OptionError, match="oci_namespace and oci_region"):
        parse_options(["oci_namespace=ns"])


@pytest.mark.parametrize("url,region", [
    ("https://ns.compat.objectstorage.eu-frankfurt-1.oraclecloud.com", "eu-frankfurt-1"),
    ("https://ns.compat.objectstorage.eu-frankfurt-1.oraclecloud.com/", "eu-frankfurt-1"),
    ("https://objectstorage.eu-frankfurt-1.oraclecloud.com", None),
    ("https://s3.amazonaws.com", None),
])
def test_region_of(url, region):
    assert oci.region_of(url) == region


@pytest.mark.parametrize("name,bad", [("a\nb", True), ("nul\0", True), ("del\x7f", True),
                                      ("tab\there", True), ("ok name ünicode", False)])
def test_control_characters(name, bad):
    assert oci.has_control_characters(name) is bad
