"""The fault proxy (tests/fault_proxy.py) on its own, in front of moto: each fault does what
tests/test_faults.py relies on, as a boto3 client (configured as ocifs's, without retries)
sees it, and what the store itself saw is checked on the store directly."""

from __future__ import annotations

import time

import botocore.exceptions
import pytest

from fault_proxy import operation
from mounting import unique_bucket
from ocifs.s3.credentials import Credentials
from ocifs.s3.client import make_client


@pytest.fixture(scope="module")
def bucket(faulty_moto_module):
    name = unique_bucket("proxy")
    faulty_moto_module.create_bucket(name)
    return name


@pytest.fixture(scope="module")
def client(faulty_moto_module):
    """Through the proxy, no retries, 1 s timeouts."""
    return make_client(faulty_moto_module.endpoint_url, "us-east-1",
                       Credentials(faulty_moto_module.access_key, faulty_moto_module.secret_key), path_style=True,
                       retries=0, connect_timeout=1, read_timeout=1, max_pool=4)


def code_of(call) -> tuple[int, str]:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    response = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_operations_are_named_as_s3_names_them():
    class Headers(dict):
        def get(self, name, default=None):
            return super().get(name.lower(), default)

    plain, copy = Headers(), Headers({"x-amz-copy-source": "/b/src"})
    cases = [("GET", "/b/k%20x", plain, ("GetObject", "k x")),
             ("HEAD", "/b/d/k", plain, ("HeadObject", "d/k")),
             ("PUT", "/b/k", plain, ("PutObject", "k")),
             ("PUT", "/b/k", copy, ("CopyObject", "k")),
             ("PUT", "/b/k?partNumber=2&uploadId=u", plain, ("UploadPart", "k")),
             ("PUT", "/b/k?partNumber=2&uploadId=u", copy, ("UploadPartCopy", "k")),
             ("POST", "/b/k?uploads", plain, ("CreateMultipartUpload", "k")),
             ("POST", "/b/k?uploadId=u", plain, ("CompleteMultipartUpload", "k")),
             ("DELETE", "/b/k?uploadId=u", plain, ("AbortMultipartUpload", "k")),
             ("DELETE", "/b/k", plain, ("DeleteObject", "k")),
             ("GET", "/b/k?uploadId=u", plain, ("ListParts", "k")),
             ("GET", "/b?list-type=2&prefix=d%2F", plain, ("ListObjectsV2", "")),
             ("GET", "/b?uploads&prefix=k", plain, ("ListMultipartUploads", ""))]
    for method, target, headers, expected in cases:
        assert operation(method, target, headers) == expected, (method, target)


def test_errors_are_s3_errors_for_the_matching_requests_only(fault_proxy, client, bucket, faulty_moto_module):
    client.put_object(Bucket=bucket, Key="a/one", Body=b"1")
    rule = fault_proxy.error(503, "SlowDown", times=2, skip=1, key=r"^a/", op="GetObject")
    assert client.get_object(Bucket=bucket, Key="a/one")["Body"].read() == b"1"  # skipped
    assert code_of(lambda: client.get_object(Bucket=bucket, Key="a/one")) == (503, "SlowDown")
    assert client.head_object(Bucket=bucket, Key="a/one")["ContentLength"] == 1  # other op
    assert code_of(lambda: client.get_object(Bucket=bucket, Key="a/one")) == (503, "SlowDown")
    assert client.get_object(Bucket=bucket, Key="a/one")["Body"].read() == b"1"  # times=2 used
    assert fault_proxy.hits(rule) == 2
    fault_proxy.error(429, "TooManyRequests", op="PutObject")
    assert code_of(lambda: client.put_object(Bucket=bucket, Key="a/two", Body=b"2" * 100_000)) \
        == (429, "TooManyRequests")
    assert faulty_moto_module.client().list_objects_v2(Bucket=bucket, Prefix="a/two").get("KeyCount") == 0
    client.put_object(Bucket=bucket, Key="a/two", Body=b"2")  # the connection is still usable


def test_reset_never_reaches_the_store_and_lose_does(fault_proxy, client, bucket, faulty_moto_module):
    fault_proxy.reset(op="PutObject")
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        client.put_object(Bucket=bucket, Key="reset", Body=b"r")
    fault_proxy.lose(op="PutObject")
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        client.put_object(Bucket=bucket, Key="lost", Body=b"l")
    real = faulty_moto_module.client()
    assert real.list_objects_v2(Bucket=bucket, Prefix="reset").get("KeyCount") == 0
    assert real.get_object(Bucket=bucket, Key="lost")["Body"].read() == b"l"
    assert [r[3] for r in fault_proxy.requests("PutObject")] == ["reset", "lose"]


def test_stall_sends_part_of_the_body_then_hangs_until_released(fault_proxy, client, bucket, faulty_moto_module):
    faulty_moto_module.client().put_object(Bucket=bucket, Key="body", Body=b"0123456789" * 1000)
    fault_proxy.stall(after_bytes=10, op="GetObject")
    response = client.get_object(Bucket=bucket, Key="body")  # the headers arrive
    assert response["ContentLength"] == 10_000
    assert response["Body"].read(10) == b"0123456789"  # and the first bytes
    started = time.monotonic()
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        response["Body"].read()
    assert 1 <= time.monotonic() - started < 10
    fault_proxy.stall(seconds=None, op="HeadObject")  # no body: nothing is sent at all
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client.head_object(Bucket=bucket, Key="body")
    fault_proxy.release()  # the stalled requests end (their connections are cut)
    fault_proxy.delay(1.5, op="HeadObject")
    started = time.monotonic()
    slow = make_client(faulty_moto_module.endpoint_url, "us-east-1",
                       Credentials(faulty_moto_module.access_key, faulty_moto_module.secret_key), path_style=True,
                       retries=0, connect_timeout=1, read_timeout=5, max_pool=1)
    assert slow.head_object(Bucket=bucket, Key="body")["ContentLength"] == 10_000
    assert time.monotonic() - started >= 1.5


def test_down_refuses_connections_then_comes_back_on_the_same_port(fault_proxy, client, bucket, faulty_moto_module):
    url = faulty_moto_module.endpoint_url
    fault_proxy.down(seconds=1.5)
    assert fault_proxy.stats()["down"]
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        client.list_objects_v2(Bucket=bucket)
    deadline = time.monotonic() + 10
    while fault_proxy.stats()["down"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert faulty_moto_module.endpoint_url == url
    client.list_objects_v2(Bucket=bucket)
    fault_proxy.down()
    fault_proxy.up()
    client.list_objects_v2(Bucket=bucket)
