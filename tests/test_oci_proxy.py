"""The OCI-refusal proxy (tests/oci_proxy.py) on its own, in front of moto.

Every rule is tried with the request shape a real client produces (boto3 where it can, raw
HTTP otherwise) and must answer OCI's status and error code and record the refusal; ocifs's
own client settings must go through untouched, byte for byte.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import socket
import threading
import xml.etree.ElementTree as ET
from contextlib import closing

import boto3
import botocore.exceptions
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from mounting import unique_bucket
from oci_proxy import OciProxy, ProxiedServer
from ocifs.s3.credentials import Credentials
from ocifs.s3.client import make_client

MiB = 1024 * 1024
REGION = "us-east-1"


# -- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend(moto_server):
    """The real moto server (not a session proxy around it, when run with --oci-proxy)."""
    return getattr(moto_server, "server", moto_server)


@pytest.fixture
def proxy(backend):
    with OciProxy(backend.endpoint_url) as p:
        yield p


@pytest.fixture
def bucket(backend):
    name = unique_bucket("oci")
    backend.create_bucket(name)
    return name


def ocifs_client(backend, url: str):
    """A client configured exactly as ocifs configures its own (path style, when_required)."""
    return make_client(url, REGION, Credentials(backend.access_key, backend.secret_key),
                       path_style=True, retries=0, connect_timeout=5, read_timeout=60,
                       max_pool=10)


def default_client(backend, url: str, **config):
    """A boto3 client with botocore's default checksum behaviour (CRC32 when supported)."""
    cfg = dict(s3={"addressing_style": "path"}, request_checksum_calculation="when_supported",
               response_checksum_validation="when_supported",
               retries={"mode": "standard", "total_max_attempts": 1})
    cfg.update(config)
    return boto3.session.Session().client(
        "s3", endpoint_url=url, region_name=REGION, aws_access_key_id=backend.access_key,
        aws_secret_access_key=backend.secret_key, config=Config(**cfg))


def refused(call, status: int, code: str | None = None) -> botocore.exceptions.ClientError:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    response = info.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    if code is not None:
        assert response["Error"]["Code"] == code
    return info.value


def rules(proxy: OciProxy) -> list[str]:
    return [rule for rule, _, _ in proxy.refusals]


def raw(proxy: OciProxy, method: str, path: str, headers: dict, body: bytes = b"",
        conn: http.client.HTTPConnection | None = None):
    """One raw HTTP request through the proxy: (status, headers, body, connection)."""
    conn = conn or http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response, response.read(), conn


def error_code(body: bytes) -> str:
    root = ET.fromstring(body)
    assert root.tag == "Error"
    assert root.findtext("Message")
    return root.findtext("Code") or ""


# -- what ocifs sends goes through unchanged ------------------------------------------------


def test_ocifs_client_traffic_passes_unchanged(backend, proxy, bucket, tmp_path):
    c = ocifs_client(backend, proxy.endpoint_url)
    direct = backend.client()
    key = "dir/é ü+%?&=#.txt"  # UTF-8 and characters that need percent-encoding
    c.put_object(Bucket=bucket, Key=key, Body=b"0123456789", ContentType="text/plain",
                 Metadata={"mode": "33188", "mtime": "1700000000"})
    assert direct.get_object(Bucket=bucket, Key=key)["Body"].read() == b"0123456789"
    c.put_object(Bucket=bucket, Key="dir/", Body=b"")  # a directory marker
    c.put_object(Bucket=bucket, Key="private", Body=b"p", ACL="private")  # OCI accepts private

    head = c.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == 10
    assert head["Metadata"] == {"mode": "33188", "mtime": "1700000000"}
    got = c.get_object(Bucket=bucket, Key=key, Range="bytes=2-5")
    assert got["Body"].read() == b"2345"
    assert got["ContentRange"] == "bytes 2-5/10"
    assert c.get_object(Bucket=bucket, Key=key)["Body"].read() == b"0123456789"

    listing = c.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert {o["Key"] for o in listing["Contents"]} == {"dir/", key}

    c.copy_object(Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": key},
                  MetadataDirective="REPLACE", Metadata={"mode": "33261"})
    assert direct.get_object(Bucket=bucket, Key="copy.txt")["Body"].read() == b"0123456789"
    c.copy(CopySource={"Bucket": bucket, "Key": key}, Bucket=bucket, Key="copy2.txt")

    data = os.urandom(12 * MiB + 12345)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                           max_concurrency=3)
    c.upload_file(str(src), bucket, "big.bin", Config=parts)  # 3 UploadParts with 100-continue
    assert direct.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == data
    streamed = c.get_object(Bucket=bucket, Key="big.bin")
    assert streamed["ContentLength"] == len(data)
    digest = hashlib.sha256()
    for chunk in streamed["Body"].iter_chunks(64 * 1024):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    dst = tmp_path / "back.bin"
    c.download_file(bucket, "big.bin", str(dst), Config=parts)  # ranged GETs in parallel
    assert dst.read_bytes() == data
    # A multipart copy (UploadPartCopy with partNumber in range).
    c.copy(CopySource={"Bucket": bucket, "Key": "big.bin"}, Bucket=bucket, Key="big2.bin",
           Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    assert direct.head_object(Bucket=bucket, Key="big2.bin")["ContentLength"] == len(data)

    c.delete_object(Bucket=bucket, Key="copy.txt")
    c.delete_objects(Bucket=bucket, ChecksumAlgorithm="SHA256",
                     Delete={"Objects": [{"Key": "copy2.txt"}, {"Key": "big2.bin"}]})
    left = {o["Key"] for o in direct.list_objects_v2(Bucket=bucket)["Contents"]}
    assert left == {"dir/", key, "private", "big.bin"}

    with pytest.raises(botocore.exceptions.ClientError) as info:  # backend errors pass through
        c.head_object(Bucket=bucket, Key="missing")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    assert proxy.refusals == []
    assert proxy.requests >= 20


def presigned(client, operation: str, **params) -> str:
    """The path and query of a presigned URL: a signed request raw HTTP can send."""
    url = client.generate_presigned_url(operation, Params=params, ExpiresIn=300)
    return url.split("/", 3)[3].join(["/", ""])


def test_keep_alive_connection_serves_many_requests(backend, proxy, bucket):
    c = ocifs_client(backend, proxy.endpoint_url)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    with closing(conn):
        host = {"Host": f"127.0.0.1:{proxy.port}"}
        for i in range(5):
            put = presigned(c, "put_object", Bucket=bucket, Key=f"k{i}")
            status, _, _, _ = raw(proxy, "PUT", put, host, b"x" * i, conn=conn)
            assert status == 200
            head = presigned(c, "head_object", Bucket=bucket, Key=f"k{i}")
            status, response, body, _ = raw(proxy, "HEAD", head, host, conn=conn)
            assert (status, body) == (200, b"")
            assert response.getheader("Content-Length") == str(i)
            get = presigned(c, "get_object", Bucket=bucket, Key=f"k{i}")
            status, _, body, _ = raw(proxy, "GET", get, host, conn=conn)
            assert (status, body) == (200, b"x" * i)
    assert proxy.refusals == []


# -- rule: checksums ---------------------------------------------------------------------------


def test_default_botocore_checksums_are_refused(backend, proxy, bucket):
    c = default_client(backend, proxy.endpoint_url)
    err = refused(lambda: c.put_object(Bucket=bucket, Key="a", Body=b"data"), 400,
                  "InvalidRequest")
    assert "crc32" in str(err).lower()
    upload = backend.client().create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    refused(lambda: c.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1,
                                  Body=b"part"), 400, "InvalidRequest")
    assert rules(proxy) == ["crc-checksum"] * 2
    assert proxy.refusals[0][1:] == ("PUT", f"/{bucket}/a")
    assert proxy.refusals[1][2].startswith(f"/{bucket}/mp?")
    detail = proxy.refusal_details[0]
    assert ("x-amz-sdk-checksum-algorithm", "CRC32") in detail["headers"]
    auth = dict(detail["headers"])["Authorization"]
    assert auth.endswith("Signature=...")  # the signature is not kept
    # SHA256 is one of the checksums OCI takes.
    c.put_object(Bucket=bucket, Key="c", Body=b"x", ChecksumAlgorithm="SHA256")
    assert len(proxy.refusals) == 2
    with pytest.raises(botocore.exceptions.ClientError):
        backend.client().head_object(Bucket=bucket, Key="a")  # never reached the backend


def test_delete_objects_needs_sha256(backend, proxy, bucket):
    backend.client().put_object(Bucket=bucket, Key="a", Body=b"1")
    backend.client().put_object(Bucket=bucket, Key="b", Body=b"2")
    c = ocifs_client(backend, proxy.endpoint_url)
    refused(lambda: c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}]}),
            400, "InvalidRequest")
    assert proxy.refusals == [("crc-checksum", "POST", f"/{bucket}?delete")]
    c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]},
                     ChecksumAlgorithm="SHA256")
    assert "Contents" not in backend.client().list_objects_v2(Bucket=bucket)
    assert len(proxy.refusals) == 1


def test_checksum_algorithm_header_refused(proxy, bucket):
    host = {"Host": f"127.0.0.1:{proxy.port}"}
    status, _, body, _ = raw(proxy, "POST", f"/{bucket}/k?uploads",
                             {**host, "x-amz-checksum-algorithm": "crc32"})
    assert (status, error_code(body)) == (400, "InvalidRequest")
    status, _, body, _ = raw(proxy, "PUT", f"/{bucket}/k",
                             {**host, "x-amz-checksum-crc64nvme": "AAAAAAAAAAA="}, b"x")
    assert (status, error_code(body)) == (400, "InvalidRequest")
    assert rules(proxy) == ["crc-checksum"] * 2


# -- rule: aws-chunked / streaming bodies -------------------------------------------------------


def aws_chunked(data: bytes, trailer: bytes = b"") -> bytes:
    return b"%x;chunk-signature=%s\r\n%s\r\n0;chunk-signature=%s\r\n%s\r\n" % (
        len(data), b"0" * 64, data, b"0" * 64, trailer)


@pytest.mark.parametrize("headers", [
    {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
     "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "5"},
    {"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
     "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "5",
     "x-amz-trailer": "x-amz-checksum-crc32"},
    {"Content-Encoding": "gzip, aws-chunked", "x-amz-decoded-content-length": "5"},
    {"x-amz-trailer": "x-amz-checksum-crc32c"},
], ids=["streaming-signed", "streaming-trailer", "content-encoding", "trailer-only"])
def test_aws_chunked_bodies_refused(proxy, bucket, headers):
    body = aws_chunked(b"hello", b"x-amz-checksum-crc32:NhCmhg==\r\n")
    status, _, reply, conn = raw(proxy, "PUT", f"/{bucket}/chunky",
                                 {"Host": f"127.0.0.1:{proxy.port}", **headers}, body)
    with closing(conn):
        assert (status, error_code(reply)) == (400, "NotImplemented")
        assert proxy.refusals == [("aws-chunked", "PUT", f"/{bucket}/chunky")]
        # The refused body was read away: the connection still works.
        status, _, _, _ = raw(proxy, "GET", f"/{bucket}?list-type=2",
                              {"Host": f"127.0.0.1:{proxy.port}"}, conn=conn)
        assert status == 200


def test_aws_chunked_with_transfer_encoding_chunked(proxy, bucket):
    """botocore over https sends aws-chunked inside HTTP chunked framing, without a length."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    with closing(conn):
        conn.putrequest("PUT", f"/{bucket}/chunky", skip_accept_encoding=True)
        for name, value in {"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                            "Content-Encoding": "aws-chunked", "Transfer-Encoding": "chunked",
                            "x-amz-trailer": "x-amz-checksum-crc32"}.items():
            conn.putheader(name, value)
        conn.endheaders()
        payload = aws_chunked(b"hello", b"x-amz-checksum-crc32:NhCmhg==\r\n")
        conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))
        response = conn.getresponse()
        assert (response.status, error_code(response.read())) == (400, "NotImplemented")
    assert rules(proxy) == ["aws-chunked"]


# -- rule: ACLs and tagging --------------------------------------------------------------------


def test_acls_refused(backend, proxy, bucket):
    backend.client().put_object(Bucket=bucket, Key="k", Body=b"x")
    c = ocifs_client(backend, proxy.endpoint_url)
    # PutObjectAcl requires a checksum: without SHA256 it is refused for CRC32 first.
    refused(lambda: c.put_object_acl(Bucket=bucket, Key="k", ACL="private"), 400,
            "InvalidRequest")
    assert rules(proxy) == ["crc-checksum"]
    proxy.clear()
    refused(lambda: c.put_object_acl(Bucket=bucket, Key="k", ACL="private",
                                     ChecksumAlgorithm="SHA256"), 501, "NotImplemented")
    refused(lambda: c.get_object_acl(Bucket=bucket, Key="k"), 501, "NotImplemented")
    refused(lambda: c.get_bucket_acl(Bucket=bucket), 501, "NotImplemented")
    refused(lambda: c.put_object(Bucket=bucket, Key="pub", Body=b"x", ACL="public-read"), 501,
            "NotImplemented")
    refused(lambda: c.put_object(Bucket=bucket, Key="g", Body=b"x",
                                 GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"'),
            501, "NotImplemented")
    refused(lambda: c.copy_object(Bucket=bucket, Key="k2", CopySource=f"{bucket}/k",
                                  ACL="bucket-owner-full-control"), 501, "NotImplemented")
    assert rules(proxy) == ["acl"] * 6
    assert proxy.refusals[0] == ("acl", "PUT", f"/{bucket}/k?acl")
    c.put_object(Bucket=bucket, Key="priv", Body=b"x", ACL="private")
    assert len(proxy.refusals) == 6


def test_tagging_refused(backend, proxy, bucket):
    backend.client().put_object(Bucket=bucket, Key="k", Body=b"x")
    c = ocifs_client(backend, proxy.endpoint_url)
    refused(lambda: c.get_object_tagging(Bucket=bucket, Key="k"), 501, "NotImplemented")
    refused(lambda: c.put_object_tagging(Bucket=bucket, Key="k",
                                         Tagging={"TagSet": [{"Key": "a", "Value": "b"}]},
                                         ChecksumAlgorithm="SHA256"), 501, "NotImplemented")
    refused(lambda: c.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=b"), 501,
            "NotImplemented")
    assert rules(proxy) == ["tagging"] * 3
    assert proxy.refusals[0] == ("tagging", "GET", f"/{bucket}/k?tagging")


# -- rule: virtual-hosted style ----------------------------------------------------------------


def test_virtual_host_addressing_refused(backend, proxy, bucket):
    # boto3 in virtual-host style on http://localhost:PORT, sent through the proxy as an HTTP
    # proxy so "BUCKET.localhost" needs no DNS: the request carries Host: BUCKET.localhost:PORT.
    c = default_client(backend, f"http://localhost:{proxy.port}",
                       s3={"addressing_style": "virtual"},
                       request_checksum_calculation="when_required",
                       proxies={"http": proxy.endpoint_url})
    refused(lambda: c.get_object(Bucket=bucket, Key="k"), 400, "InvalidRequest")
    assert proxy.refusals == [("virtual-host", "GET", "/k")]
    assert dict(proxy.refusal_details[0]["headers"])["Host"] == f"{bucket}.localhost:{proxy.port}"

    status, _, body, _ = raw(proxy, "GET", "/?list-type=2",
                             {"Host": f"{bucket}.127.0.0.1:{proxy.port}"})
    assert (status, error_code(body)) == (400, "InvalidRequest")
    # The proxy's own names are path style.
    for host in (f"127.0.0.1:{proxy.port}", f"localhost:{proxy.port}", f"LOCALHOST:{proxy.port}"):
        status, _, _, _ = raw(proxy, "GET", f"/{bucket}?list-type=2", {"Host": host})
        assert status == 200
    assert rules(proxy) == ["virtual-host"] * 2


# -- rule: multipart -------------------------------------------------------------------------


def test_complete_multipart_without_parts_refused(backend, proxy, bucket):
    c = ocifs_client(backend, proxy.endpoint_url)
    upload = c.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    refused(lambda: c.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                                MultipartUpload={"Parts": []}),
            400, "MalformedXML")
    assert rules(proxy) == ["empty-multipart-complete"]
    assert proxy.refusals[0][1] == "POST"
    # The same upload completes once it lists a part (the buffered body is forwarded as is).
    etag = c.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1,
                         Body=b"only part")["ETag"]
    c.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert backend.client().get_object(Bucket=bucket, Key="mp")["Body"].read() == b"only part"
    assert len(proxy.refusals) == 1


def test_part_numbers_outside_range_refused(backend, proxy, bucket):
    c = ocifs_client(backend, proxy.endpoint_url)
    backend.client().put_object(Bucket=bucket, Key="src", Body=b"source")
    upload = c.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    refused(lambda: c.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=10001,
                                  Body=b"x"), 400, "InvalidArgument")
    refused(lambda: c.upload_part_copy(Bucket=bucket, Key="mp", UploadId=upload,
                                       PartNumber=10001,
                                       CopySource={"Bucket": bucket, "Key": "src"}),
            400, "InvalidArgument")
    status, _, body, _ = raw(proxy, "PUT", f"/{bucket}/mp?partNumber=0&uploadId={upload}",
                             {"Host": f"127.0.0.1:{proxy.port}"}, b"x")
    assert (status, error_code(body)) == (400, "InvalidArgument")
    assert rules(proxy) == ["part-number"] * 3
    c.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=10000, Body=b"x")
    c.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"x")
    c.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)
    assert len(proxy.refusals) == 3


def test_large_refused_upload_part_with_expect_continue(backend, proxy, bucket):
    """boto3 sends Expect: 100-continue for bodies over 1 MiB: the refusal comes first."""
    c = ocifs_client(backend, proxy.endpoint_url)
    upload = c.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    refused(lambda: c.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=10001,
                                  Body=b"x" * (8 * MiB)), 400, "InvalidArgument")
    # The pool's next request (on a new connection: the refused one was closed) works.
    c.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"y" * (6 * MiB))
    assert rules(proxy) == ["part-number"]


def test_expect_continue_raw(proxy, bucket):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        head = (f"PUT /{bucket}/k?partNumber=20000&uploadId=u HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{proxy.port}\r\nContent-Length: 5\r\n"
                "Expect: 100-continue\r\n\r\n")
        sock.sendall(head.encode())
        reply = sock.makefile("rb").read()  # refused without the body, then closed
        assert reply.startswith(b"HTTP/1.1 400 ")
        assert b"Connection: close" in reply and b"<Code>InvalidArgument</Code>" in reply
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        head = (f"PUT /{bucket}/fine HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n"
                "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        sock.sendall(head.encode())
        f = sock.makefile("rb")
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert f.readline() == b"\r\n"
        sock.sendall(b"hello")
        assert f.readline().startswith(b"HTTP/1.1 200 ")
    assert rules(proxy) == ["part-number"]


# -- rule: object names --------------------------------------------------------------------------


def test_bad_object_names_refused(backend, proxy, bucket):
    c = ocifs_client(backend, proxy.endpoint_url)
    refused(lambda: c.put_object(Bucket=bucket, Key="line\nbreak", Body=b"x"), 400,
            "InvalidObjectName")
    refused(lambda: c.put_object(Bucket=bucket, Key="nul\x00", Body=b"x"), 400,
            "InvalidObjectName")
    refused(lambda: c.put_object(Bucket=bucket, Key="del\x7f", Body=b"x"), 400,
            "InvalidObjectName")
    refused(lambda: c.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x"), 400,
            "KeyTooLongError")
    refused(lambda: c.put_object(Bucket=bucket, Key="é" * 513, Body=b"x"), 400,  # 1026 bytes
            "KeyTooLongError")
    assert rules(proxy) == ["object-name"] * 5
    assert proxy.refusals[0] == ("object-name", "PUT", f"/{bucket}/line%0Abreak")
    # HEAD: no error body (botocore's S3 region redirector may send it a second time).
    refused(lambda: c.head_object(Bucket=bucket, Key="cr\r"), 400)
    assert set(proxy.refusals[5:]) == {("object-name", "HEAD", f"/{bucket}/cr%0D")}
    count = len(proxy.refusals)
    c.put_object(Bucket=bucket, Key="k" * 1024, Body=b"x")
    c.put_object(Bucket=bucket, Key="names/ünï cödé ✓", Body=b"x")
    assert len(proxy.refusals) == count


# -- framing the backend chooses ---------------------------------------------------------------


class _OddBackend(http.server.BaseHTTPRequestHandler):
    """Answers with a chunked body, or a body delimited by closing the connection."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("x-amz-meta-odd", "yes")
            self.end_headers()
            for piece in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True


def test_chunked_and_close_delimited_backend_responses():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OddBackend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with OciProxy(f"http://127.0.0.1:{server.server_address[1]}") as proxy:
            host = {"Host": f"127.0.0.1:{proxy.port}"}
            status, response, body, conn = raw(proxy, "GET", "/chunked", host)
            with closing(conn):
                assert (status, body) == (200, b"hello chunked world")
                assert response.getheader("x-amz-meta-odd") == "yes"
                assert response.chunked
                status, _, body, _ = raw(proxy, "GET", "/chunked", host, conn=conn)  # kept alive
                assert body == b"hello chunked world"
            status, response, body, conn = raw(proxy, "GET", "/close", host)
            conn.close()
            assert (status, body) == (200, b"until close")
            assert response.will_close
            assert proxy.refusals == [] and proxy.requests == 3
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_backend_is_502_not_refusal():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with OciProxy(f"http://127.0.0.1:{port}") as proxy:
        status, _, body, conn = raw(proxy, "GET", "/b/k", {"Host": f"127.0.0.1:{proxy.port}"})
        conn.close()
        assert (status, error_code(body)) == (502, "BadGateway")
        assert proxy.refusals == []


# -- ProxiedServer ---------------------------------------------------------------------------------


def test_proxied_server(backend, bucket):
    with ProxiedServer(backend) as wrapped:
        assert wrapped.kind == f"{backend.kind}+oci-proxy"
        assert wrapped.server is backend
        assert wrapped.endpoint_url == wrapped.proxy.endpoint_url != backend.endpoint_url
        assert (wrapped.access_key, wrapped.secret_key) == (backend.access_key, backend.secret_key)
        other = unique_bucket("oci")
        wrapped.create_bucket(other)  # direct, not through the proxy
        wrapped.client().put_object(Bucket=other, Key="direct", Body=b"d", ACL="public-read")
        assert wrapped.proxy.refusals == []  # not through the proxy
        c = ocifs_client(wrapped, wrapped.endpoint_url)
        c.put_object(Bucket=other, Key="via-proxy", Body=b"p")
        assert wrapped.client().get_object(Bucket=other, Key="via-proxy")["Body"].read() == b"p"
        assert wrapped.proxy.refusals == []
        with pytest.raises(Exception):
            c.put_object(Bucket=other, Key="acl", Body=b"a", ACL="public-read")
        # The proxy runs in a child process; its refusals reach this one.
        assert [rule for rule, _, _ in wrapped.proxy.refusals] == ["acl"]
        url = wrapped.endpoint_url
    with pytest.raises(RuntimeError):
        wrapped.endpoint_url  # noqa: B018 (stopped)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=2).close()
