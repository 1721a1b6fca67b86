"""The compiled ListObjectsV2 parse (ocifs.s3.listparse) returns exactly what botocore's does."""

from __future__ import annotations

import contextlib
from xml.etree import ElementTree

from botocore.parsers import ResponseParserFactory

from mock_s3 import aws, client  # noqa: F401 (fixtures)
from ocifs.s3.listparse import OPERATION, compile_shape, install_fast_listing
from ocifs.s3.client import parse_timestamp

BUCKET = "ocifs-unit-listparse"
NS = "http://s3.amazonaws.com/doc/2006-03-01/"

# Every member a store may send, including the ones moto leaves out.
FULL_BODY = f"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="{NS}">
  <Name>bkt</Name><Prefix>a%2Fb%20c/</Prefix><StartAfter>a/0</StartAfter>
  <KeyCount>3</KeyCount><MaxKeys>3</MaxKeys><Delimiter>/</Delimiter>
  <IsTruncated>true</IsTruncated><EncodingType>url</EncodingType>
  <ContinuationToken>tok1</ContinuationToken><NextContinuationToken>tok2</NextContinuationToken>
  <Contents>
    <Key>a/b%20c/x%2By</Key><LastModified>2026-11-25T20:28:30.123Z</LastModified>
    <ETag>"0123abcd"</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm>
    <ChecksumAlgorithm>SHA256</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType>
    <Size>12345678901</Size><StorageClass>STANDARD</StorageClass>
    <Owner><ID>owner-id</ID><DisplayName>me</DisplayName></Owner>
    <RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress>
      <RestoreExpiryDate>2026-12-01T00:00:00Z</RestoreExpiryDate></RestoreStatus>
    <SomethingNew>ignored by both</SomethingNew>
  </Contents>
  <Contents><Key>a/b%20c/empty</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>
    <ETag></ETag><Size>0</Size></Contents>
  <CommonPrefixes><Prefix>a/b%20c/d/</Prefix></CommonPrefixes>
  <CommonPrefixes><Prefix>a/b%20c/e/</Prefix></CommonPrefixes>
</ListBucketResult>""".encode()


def botocore_parse(client, body: bytes) -> dict:
    factory = ResponseParserFactory()
    factory.set_parser_defaults(timestamp_parser=parse_timestamp)
    shape = client.meta.service_model.operation_model(OPERATION).output_shape
    parsed = factory.create_parser("rest-xml").parse(
        {"body": body, "headers": {}, "status_code": 200}, shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


def fast_parse(client, body: bytes) -> dict:
    shape = client.meta.service_model.operation_model(OPERATION).output_shape
    return compile_shape(shape, parse_timestamp)(ElementTree.fromstring(body))


def test_every_member_parses_as_botocore_does(client):
    expected = botocore_parse(client, FULL_BODY)
    assert expected["Contents"][0]["Owner"] == {"ID": "owner-id", "DisplayName": "me"}
    assert expected["Contents"][0]["ChecksumAlgorithm"] == ["CRC32", "SHA256"]
    assert fast_parse(client, FULL_BODY) == expected


def test_one_item_flattened_lists_and_empty_listing(client):
    one = FULL_BODY.replace(b"<CommonPrefixes><Prefix>a/b%20c/e/</Prefix></CommonPrefixes>", b"")
    assert fast_parse(client, one)["CommonPrefixes"] == [{"Prefix": "a/b%20c/d/"}]
    assert fast_parse(client, one) == botocore_parse(client, one)
    empty = f'<ListBucketResult xmlns="{NS}"><Name>bkt</Name><KeyCount>0</KeyCount>' \
            f'<IsTruncated>false</IsTruncated></ListBucketResult>'.encode()
    assert fast_parse(client, empty) == botocore_parse(client, empty) == \
        {"Name": "bkt", "KeyCount": 0, "IsTruncated": False}


def test_installing_twice_is_one_handler(client):
    assert install_fast_listing(client, parse_timestamp) is True  # unique_id: replaces itself
    client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    assert [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["k"]


KEYS = ["plain", "dir/a", "dir/b c", "dir/sub/x", "dir/sub/y", "dir/ü+&<>\"'%", "dir/~tilde",
        "dir/sp ace/z", "zz"]


@contextlib.contextmanager
def botocore_only(client):
    """The same client with the fast parse taken out: botocore's own result, for comparison."""
    client.meta.events.unregister(f"before-parse.s3.{OPERATION}", unique_id="ocifs-fast-listing")
    try:
        yield client
    finally:
        assert install_fast_listing(client, parse_timestamp)


def listings(c) -> list[dict]:
    out = []
    for kwargs in ({}, {"Prefix": "dir/", "Delimiter": "/"}, {"Prefix": "dir/", "MaxKeys": 2},
                   {"Prefix": "dir/", "StartAfter": "dir/b c"}, {"FetchOwner": True},
                   {"Prefix": "nothing/"}):
        page = c.list_objects_v2(Bucket=BUCKET, **kwargs)
        page.pop("ResponseMetadata")
        out.append(page)
        if page.get("NextContinuationToken"):
            rest = c.list_objects_v2(Bucket=BUCKET, ContinuationToken=page["NextContinuationToken"],
                                     **kwargs)
            rest.pop("ResponseMetadata")
            out.append(rest)
    return out


def test_real_responses_match_botocore(client):
    for key in KEYS:
        client.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    fast = listings(client)
    assert fast[1]["CommonPrefixes"] == [{"Prefix": "dir/sp ace/"}, {"Prefix": "dir/sub/"}]
    assert [o["Key"] for o in fast[0]["Contents"]] == sorted(KEYS)  # URL-decoded by botocore
    assert fast[2]["IsTruncated"] is True and len(fast[2]["Contents"]) == 2
    assert "Owner" in fast[-2]["Contents"][0]
    with botocore_only(client):
        assert listings(client) == fast


def emit_before_parse(client, operation: str, body: bytes) -> tuple[dict, dict]:
    response = {"status_code": 200, "headers": {}, "body": body}
    custom: dict = {}
    client.meta.events.emit(f"before-parse.s3.{operation}", response_dict=response,
                            customized_response_dict=custom,
                            operation_model=client.meta.service_model.operation_model(operation))
    return response, custom


def test_errors_sent_with_200_become_500_once(client):
    error = b"<Error><Code>InternalError</Code><Message>x</Message></Error>"
    for operation in (OPERATION, "CopyObject", "CompleteMultipartUpload"):
        response, custom = emit_before_parse(client, operation, error)
        assert (response["status_code"], response["body"], custom) == (500, error, {}), operation
        response, custom = emit_before_parse(client, operation, FULL_BODY[:200])  # cut short
        assert (response["status_code"], custom) == (500, {}), operation
    response, custom = emit_before_parse(client, OPERATION, FULL_BODY)
    assert response["status_code"] == 200 and custom["KeyCount"] == 3 and response["body"] == b""


def test_a_200_error_on_a_listing_is_retried(client, monkeypatch):
    """The store's retries see a listing that came back as a 200 <Error> and ask again."""
    client.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    calls = []

    def error_first(response_dict, **_):
        calls.append(1)
        if len(calls) == 1:
            response_dict["body"] = b"<Error><Code>InternalError</Code></Error>"
    client.meta.events.register_first("before-parse.s3.*", error_first, unique_id="test-error-first")
    try:
        page = client.list_objects_v2(Bucket=BUCKET)
    finally:
        client.meta.events.unregister("before-parse.s3.*", unique_id="test-error-first")
    assert len(calls) == 2 and [o["Key"] for o in page["Contents"]] == ["k"]
