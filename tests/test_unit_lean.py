"""The lean request path (ocifs/s3/lean.py) answers exactly as boto3 does, against moto over
real HTTP: the same parsed members, the same errors, the same keys on the wire, and the same
number of attempts when the store fails (the lean attempt counts as botocore's first)."""

from __future__ import annotations

import datetime
import errno

import botocore.exceptions
import pytest
import trio

from mounting import unique_bucket
from ocifs.s3.client import make_client, parse_timestamp
from ocifs.s3.credentials import Credentials
from ocifs.s3.errors import StoreError
from ocifs.s3.lean import LeanRequests
from ocifs.s3.requests import HeaderRule, RequestParams, request_params
from ocifs.s3.store import Store
from ocifs.s3.wire import WireAnswer

META = {"mode": "33188", "uid": "1000", "gid": "1000", "mtime": "1700000000"}
WEIRD_KEYS = ["a b", "dir/ü ö", "x+y", "100%", "q?#&=", "~tilde/", "semi;colon", "a//b",
              "tab\tin", "é" * 40]


def client_for(server, retries: int = 2):
    return make_client(server.endpoint_url, "us-east-1",
                       Credentials(server.access_key, server.secret_key), path_style=True,
                       retries=retries, connect_timeout=2, read_timeout=5, max_pool=4)


def lean_for(client, bucket, retries: int = 2) -> LeanRequests:
    lean = LeanRequests.for_client(client, bucket, retries, parse_timestamp)
    assert lean is not None
    return lean


@pytest.fixture(scope="module")
def setup(moto_server):
    server = getattr(moto_server, "server", moto_server)
    bucket = unique_bucket("lean")
    server.create_bucket(bucket)
    client = client_for(server)
    return client, lean_for(client, bucket), bucket


def without_metadata(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "ResponseMetadata"}


def test_head_parses_every_header_as_botocore_does(setup):
    client, lean, bucket = setup
    client.put_object(Bucket=bucket, Key="h", Body=b"x" * 100, Metadata=META,
                      ContentType="text/x-test", CacheControl="no-cache",
                      ContentEncoding="identity", ContentDisposition="inline")
    boto = client.head_object(Bucket=bucket, Key="h")
    ours = lean.head("h")
    assert without_metadata(ours) == without_metadata(boto)
    assert ours["Metadata"] == META and ours["ContentLength"] == 100
    assert isinstance(ours["LastModified"], datetime.datetime)
    meta = ours["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 200 and meta["RetryAttempts"] == 0
    assert set(meta) == set(boto["ResponseMetadata"])
    assert set(meta["HTTPHeaders"]) == set(boto["ResponseMetadata"]["HTTPHeaders"])


def test_head_of_a_missing_key_is_none(setup):
    _, lean, _ = setup
    assert lean.head("no/such/key") is None


def test_ranged_get_matches_botocore(setup):
    client, lean, bucket = setup
    data = bytes(range(256)) * 64
    client.put_object(Bucket=bucket, Key="g", Body=data, Metadata=META)
    boto = client.get_object(Bucket=bucket, Key="g", Range="bytes=100-4195")
    boto["Body"] = boto["Body"].read()
    ours = lean.get("g", "bytes=100-4195")
    assert ours["Body"] == data[100:4196]
    assert without_metadata(ours) == without_metadata(boto)


def test_get_of_a_missing_key_raises_what_boto3_raises(setup):
    client, lean, bucket = setup
    with pytest.raises(botocore.exceptions.ClientError) as boto:
        client.get_object(Bucket=bucket, Key="missing", Range="bytes=0-9")
    with pytest.raises(client.exceptions.NoSuchKey) as ours:
        lean.get("missing", "bytes=0-9")
    assert ours.value.response["Error"]["Code"] == boto.value.response["Error"]["Code"]
    assert ours.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_delete_removes_and_a_missing_key_is_no_error(setup):
    client, lean, bucket = setup
    client.put_object(Bucket=bucket, Key="d", Body=b"1")
    assert lean.delete("d")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lean.head("d") is None
    lean.delete("d")


def test_put_stores_body_metadata_and_type(setup):
    client, lean, bucket = setup
    answer = lean.put("p", b"hello", META, "application/x-ocifs")
    head = client.head_object(Bucket=bucket, Key="p")
    assert answer["ETag"] == head["ETag"]
    assert head["Metadata"] == META and head["ContentType"] == "application/x-ocifs"
    assert client.get_object(Bucket=bucket, Key="p")["Body"].read() == b"hello"


@pytest.mark.parametrize("key", WEIRD_KEYS)
def test_keys_reach_the_store_as_boto3_sends_them(setup, key):
    client, lean, bucket = setup
    lean.put(key, key.encode(), {}, "application/octet-stream")
    listed = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=key)["Contents"]]
    assert key in listed
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    assert lean.head(key)["ContentLength"] == len(key.encode())
    client.delete_object(Bucket=bucket, Key=key)


def test_operations_that_options_add_to_go_through_boto3(setup):
    client, _, bucket = setup
    storage = LeanRequests.for_client(client, bucket, 2, parse_timestamp,
                                      request_params(storage_class="standard_ia"))
    assert not storage.serves("PutObject")
    assert all(storage.serves(op) for op in ("HeadObject", "GetObject", "ListObjectsV2"))
    headers = LeanRequests.for_client(client, bucket, 2, parse_timestamp,
                                      RequestParams({}, [HeaderRule("Cache-Control", "x")]))
    assert not headers.serves("PutObject") and headers.serves("HeadObject")
    paged = LeanRequests.for_client(client, bucket, 2, parse_timestamp,
                                    request_params(list_max_keys=50))
    assert not paged.serves("ListObjectsV2") and paged.serves("PutObject")
    payer = request_params(requester_pays=True)
    assert LeanRequests.for_client(client, bucket, 2, parse_timestamp, payer) is None


def test_listings_match_botocore(setup):
    client, lean, bucket = setup
    keys = ["l/a", "l/b b", "l/c+d", "l/sub/x", "l/sub/y", "l/ü", "l/%41", "l/z?"]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"1", Metadata=META)
    cases = [dict(prefix="l/"), dict(prefix="l/", delimiter="/"),
             dict(prefix="l/", delimiter="/", max_keys=2),
             dict(prefix="l/", start_after="l/b b"), dict(prefix="l/s")]
    for case in cases:
        boto_args = {"Bucket": bucket, "Prefix": case["prefix"]}
        for ours, theirs in (("delimiter", "Delimiter"), ("max_keys", "MaxKeys"),
                             ("start_after", "StartAfter")):
            if ours in case:
                boto_args[theirs] = case[ours]
        assert without_metadata(lean.list(**case)) == \
            without_metadata(client.list_objects_v2(**boto_args)), case


def test_listing_pages_follow_the_continuation_token(setup):
    client, lean, bucket = setup
    seen, token = [], None
    while True:
        page = lean.list("l/", max_keys=3, token=token)
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    everything = client.list_objects_v2(Bucket=bucket, Prefix="l/")["Contents"]
    assert seen == [o["Key"] for o in everything] and len(seen) > 3


def test_no_user_agent_sends_none(setup):
    client, _, bucket = setup
    lean = LeanRequests.for_client(client, bucket, 2, parse_timestamp, user_agent=False)
    assert lean.user_agent is None
    assert lean.head("p")["ContentLength"] == 5


# -- failures: the attempts are the same as boto3's alone -----------------------------------

@pytest.fixture(scope="module")
def faulty_bucket(faulty_moto_module):
    bucket = unique_bucket("leanfault")
    faulty_moto_module.create_bucket(bucket)
    return bucket


def store_for(faulty, bucket, retries: int) -> Store:
    client = client_for(faulty, retries)
    return Store(client, bucket, lean=lean_for(client, bucket, retries))


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr("ocifs.s3.retries.BASE_DELAY", 0.01)


def test_a_retryable_failure_is_retried_through_boto3_once(faulty_moto_module, fault_proxy, faulty_bucket):
    store = store_for(faulty_moto_module, faulty_bucket, retries=2)
    rule = fault_proxy.error(503, "SlowDown", times=1, op="PutObject")
    trio.run(store.put_bytes, "r", b"data", META, "text/plain")
    assert fault_proxy.hits(rule) == 1
    assert len(fault_proxy.requests("PutObject")) == 2  # the lean attempt, then boto3's
    assert trio.run(store.head, "r")["Metadata"] == META


def test_attempts_stop_at_retries_plus_one(faulty_moto_module, fault_proxy, faulty_bucket):
    store = store_for(faulty_moto_module, faulty_bucket, retries=2)
    fault_proxy.error(503, "SlowDown", times=None, op="HeadObject")
    with pytest.raises(StoreError) as info:
        trio.run(store.head, "r")
    assert info.value.errno == errno.EIO
    assert len(fault_proxy.requests("HeadObject")) == 3


def test_without_retries_a_failure_is_not_sent_again(faulty_moto_module, fault_proxy, faulty_bucket):
    store = store_for(faulty_moto_module, faulty_bucket, retries=0)
    fault_proxy.error(500, "InternalError", times=None, op="GetObject")
    with pytest.raises(StoreError):
        trio.run(store.get_range_tagged, "r", 0, 4)
    assert len(fault_proxy.requests("GetObject")) == 1


def test_a_refusal_is_not_retried(faulty_moto_module, fault_proxy, faulty_bucket):
    store = store_for(faulty_moto_module, faulty_bucket, retries=2)
    fault_proxy.error(403, "AccessDenied", times=None, op="PutObject")
    with pytest.raises(StoreError) as info:
        trio.run(store.put_bytes, "denied", b"x", {}, "text/plain")
    assert info.value.errno == errno.EACCES and info.value.code == "AccessDenied"
    assert len(fault_proxy.requests("PutObject")) == 1


def test_a_cut_connection_is_retried(faulty_moto_module, fault_proxy, faulty_bucket):
    store = store_for(faulty_moto_module, faulty_bucket, retries=1)
    trio.run(store.put_bytes, "cut", b"abcd", {}, "text/plain")
    fault_proxy.reset(times=1, op="GetObject")
    assert trio.run(store.get_range_tagged, "cut", 0, 4)[0] == b"abcd"
    assert len(fault_proxy.requests("GetObject")) == 2


def test_the_lean_path_is_used(faulty_moto_module, fault_proxy, faulty_bucket):
    """A user agent other than boto3's would show it; here: no retry-info header, which
    botocore adds to every request it sends itself."""
    store = store_for(faulty_moto_module, faulty_bucket, retries=1)
    calls = []
    store.client.meta.events.register("before-send.s3", lambda **kw: calls.append(kw))
    trio.run(store.put_bytes, "lean", b"x", {}, "text/plain")
    trio.run(store.head, "lean")
    trio.run(store.get_range_tagged, "lean", 0, 1)
    trio.run(store.list_dir, "")
    trio.run(store.delete, "lean")
    assert calls == []
    assert trio.run(store.head, "lean") is None


def test_a_proxied_client_sends_through_botocore_s_session(moto_server):
    from ocifs.s3.client import Connection
    from ocifs.s3.lean import DirectTransport
    server = getattr(moto_server, "server", moto_server)
    proxied = make_client(server.endpoint_url, "us-east-1",
                          Credentials(server.access_key, server.secret_key), path_style=True,
                          retries=1, connect_timeout=1, read_timeout=1, max_pool=2,
                          connection=Connection(proxy="http://127.0.0.1:9"))
    lean = lean_for(proxied, "b")
    assert not isinstance(lean.transport, DirectTransport)
    direct = lean_for(client_for(server), "b")
    assert isinstance(direct.transport, DirectTransport)


def test_a_listing_answered_200_with_an_error_is_sent_again_through_boto3(faulty_moto_module, fault_proxy,
                                                                          faulty_bucket):
    store = store_for(faulty_moto_module, faulty_bucket, retries=2)
    trio.run(store.put_bytes, "listed", b"x", {}, "text/plain")
    real = store.lean.transport
    cut = b"<?xml version='1.0'?><Error><Code>InternalError</Code>"
    answers = []

    def first_cut(request):
        answer = real(request)
        answers.append(answer)
        return WireAnswer(200, answer.pairs, cut) if len(answers) == 1 else answer

    store.lean.transport = first_cut
    objects, _ = trio.run(store.list_dir, "")
    assert "listed" in [o["Key"] for o in objects]
    assert len(answers) == 1  # then boto3's own request
    assert len(fault_proxy.requests("ListObjectsV2")) == 2


def _recorded(lean):
    """The headers of each request the lean path sends."""
    sent = []
    real = lean.transport

    def record(request):
        sent.append(dict(request.headers.items()))
        return real(request)
    lean.transport = record
    return sent


def _client(server, credentials, **connection):
    from ocifs.s3.client import Connection
    return make_client(server.endpoint_url, "us-east-1", credentials, path_style=True,
                       retries=1, connect_timeout=2, read_timeout=5, max_pool=2,
                       connection=Connection(**connection))


def test_signing_follows_the_client_s_settings(moto_server, setup):
    """The client's signer decides: session tokens, unsigned payloads, anonymous requests."""
    from ocifs.s3.credentials import ANONYMOUS
    server = getattr(moto_server, "server", moto_server)
    _, _, bucket = setup
    token = lean_for(_client(server, Credentials(server.access_key, server.secret_key,
                                                 session_token="TOKEN")), bucket)
    sent = _recorded(token)
    token.put("signed", b"abc", {}, "text/plain")
    assert sent[-1]["X-Amz-Security-Token"] == "TOKEN"
    assert sent[-1]["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert sent[-1]["X-Amz-Content-SHA256"] != "UNSIGNED-PAYLOAD"  # http: bodies are signed

    unsigned = lean_for(_client(server, Credentials(server.access_key, server.secret_key),
                                unsigned_payload=True), bucket)
    sent = _recorded(unsigned)
    unsigned.put("unsigned", b"abc", {}, "text/plain")
    assert sent[-1]["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"

    plain = _client(server, ANONYMOUS, unsigned=True)
    anonymous = lean_for(plain, bucket)
    sent = _recorded(anonymous)
    with pytest.raises(botocore.exceptions.ClientError) as ours:  # moto: a private bucket
        anonymous.head("signed")
    with pytest.raises(botocore.exceptions.ClientError) as boto:
        plain.head_object(Bucket=bucket, Key="signed")
    assert ours.value.response["Error"] == boto.value.response["Error"]
    assert "Authorization" not in sent[-1]


def test_metadata_that_is_not_ascii_goes_through_boto3(faulty_moto_module, fault_proxy, faulty_bucket):
    def outcome(store):
        try:
            trio.run(store.put_bytes, "meta", b"x", {"name": "\u00e9"}, "text/plain")
            return "stored"
        except StoreError as exc:
            return exc.errno
    lean_store = store_for(faulty_moto_module, faulty_bucket, retries=1)
    sent = _recorded(lean_store.lean)
    plain = Store(client_for(faulty_moto_module, 1), faulty_bucket)
    assert outcome(lean_store) == outcome(plain)
    assert sent == []


# -- streamed ranges (the fill's GETs) --------------------------------------------------

def test_get_range_into_streams_the_range_to_its_offsets(faulty_moto_module, fault_proxy,
                                                        faulty_bucket, tmp_path):
    import os
    from ocifs.s3 import store as store_module
    data = os.urandom(3 * 1024 * 1024 + 5)
    store = store_for(faulty_moto_module, faulty_bucket, retries=1)
    faulty_moto_module.client().put_object(Bucket=faulty_bucket, Key="s", Body=data)
    etag = faulty_moto_module.client().head_object(Bucket=faulty_bucket, Key="s")["ETag"]
    fd = os.open(tmp_path / "cache", os.O_RDWR | os.O_CREAT)
    try:
        start, length = 1000, 2 * 1024 * 1024 + 17
        store_module.STREAM_CHUNK, chunk = 64 * 1024, store_module.STREAM_CHUNK
        try:
            assert trio.run(store.get_range_into, "s", start, length, fd, etag) == length
        finally:
            store_module.STREAM_CHUNK = chunk
        assert os.pread(fd, length, start) == data[start:start + length]
        with pytest.raises(StoreError) as info:  # another version: nothing written
            trio.run(store.get_range_into, "s", 0, 10, fd, '"not-this-one"')
        assert info.value.code == "ETagChanged"
        assert os.pread(fd, 10, 0) == b"\0" * 10
        assert len(fault_proxy.requests("GetObject")) == 2
    finally:
        os.close(fd)


def test_a_stream_cut_on_the_way_is_fetched_again(faulty_moto_module, fault_proxy,
                                                  faulty_bucket, tmp_path):
    import os
    data = os.urandom(512 * 1024)
    faulty_moto_module.client().put_object(Bucket=faulty_bucket, Key="cut-stream", Body=data)
    store = store_for(faulty_moto_module, faulty_bucket, retries=1)
    fd = os.open(tmp_path / "cache", os.O_RDWR | os.O_CREAT)
    try:
        fault_proxy.stall(seconds=0.2, after_bytes=1000, op="GetObject")  # then cut
        assert trio.run(store.get_range_into, "cut-stream", 0, len(data), fd, None) == len(data)
        assert os.pread(fd, len(data), 0) == data
        assert len(fault_proxy.requests("GetObject")) == 2
    finally:
        os.close(fd)


def test_a_put_of_a_few_mib_is_sent_at_once_without_waiting_for_100_continue(setup):
    import os
    from ocifs.s3.lean import MAX_BODY
    client, lean, bucket = setup
    sent = _recorded(lean)
    body = os.urandom(MAX_BODY)
    lean.put("big-put", body, META, "application/octet-stream")
    assert "Expect" not in sent[-1]
    assert client.get_object(Bucket=bucket, Key="big-put")["Body"].read() == body


def test_whole_answers_are_read_by_the_wire_exchange_and_big_gets_by_urllib3(setup, monkeypatch):
    import os
    import ocifs.s3.lean as lean_module
    from ocifs.s3.lean import WIRE_BODY
    client, lean, bucket = setup
    body = os.urandom(WIRE_BODY + 4096)
    client.put_object(Bucket=bucket, Key="by-wire", Body=body)
    exchanged = []
    real = lean_module.exchange

    def counted(pool, method, target, headers, data):
        exchanged.append(method)
        return real(pool, method, target, headers, data)
    monkeypatch.setattr(lean_module, "exchange", counted)
    assert lean.head("by-wire")["ContentLength"] == len(body)
    assert lean.get("by-wire", "bytes=0-4095")["Body"] == body[:4096]
    assert exchanged == ["HEAD", "GET"]
    whole = lean.get("by-wire", f"bytes=0-{len(body) - 1}")["Body"]
    assert whole == body and exchanged == ["HEAD", "GET"]  # urllib3 read it


def test_a_bytes_request_body_is_what_prepare_gives():
    """The lean path's requests read their body without prepare(), to the same bytes."""
    from botocore.awsrequest import AWSRequest
    from ocifs.s3.lean import _BytesRequest
    for data in (b"", b"x" * 10):
        lean = _BytesRequest("PUT", "http://h/b/k", headers={}, data=data)
        assert lean.body == AWSRequest("PUT", "http://h/b/k", headers={}, data=data).body


@pytest.mark.parametrize("connection", [{}, {"unsigned_payload": True}])
@pytest.mark.parametrize("op, method, data", [("HeadObject", "HEAD", b""),
                                              ("PutObject", "PUT", b"body"),
                                              ("ListObjectsV2", "GET", b"")])
def test_signing_without_the_events_signs_as_the_client_s_signer(monkeypatch, connection, op,
                                                                  method, data):
    """The lean path signs with the signer's own auth but without its events: the same
    headers, byte for byte, as RequestSigner.sign at the same instant."""
    import botocore.auth
    from ocifs.s3.client import Connection
    from ocifs.s3.lean import _BytesRequest
    now = datetime.datetime(2026, 12, 6, 21, 30, 5)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now)
    client = make_client("http://127.0.0.1:9", "eu-frankfurt-1",
                         Credentials("AK", "SK", session_token="T"), path_style=True,
                         retries=1, connect_timeout=1, read_timeout=1, max_pool=1,
                         connection=Connection(**connection))
    lean = LeanRequests.for_client(client, "b", 1, lambda value: value)
    assert set(lean.auth_args) == set(lean.operations)  # the shortcut is taken

    def signed(sign):
        request = _BytesRequest(method, "http://127.0.0.1:9/b/some%20key",
                                headers={"Host": "127.0.0.1:9", "Content-Type": "text/plain"},
                                data=data)
        request.context["client_config"] = client.meta.config
        if op == "PutObject":
            request.context["has_streaming_input"] = True
        sign(request)
        return list(request.headers.items())
    ours = signed(lambda request: lean._sign(op, request))
    assert ours == signed(lambda request: client._request_signer.sign(op, request))
    assert dict(ours)["X-Amz-Security-Token"] == "T"


def test_unknown_before_sign_handlers_send_signing_through_the_signer():
    client = make_client("http://127.0.0.1:9", "us-east-1", Credentials("AK", "SK"),
                         path_style=True, retries=1, connect_timeout=1, read_timeout=1,
                         max_pool=1)
    client.meta.events.register("before-sign.s3.HeadObject", lambda **kwargs: None)
    lean = LeanRequests.for_client(client, "b", 1, lambda value: value)
    assert "HeadObject" not in lean.auth_args and "PutObject" in lean.auth_args
