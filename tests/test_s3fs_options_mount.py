"""s3fs's request and TLS options through real mounts on moto: SSE-C, unsigned payload, and an
https endpoint with a self-signed certificate (``no_check_certificate``)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
from pathlib import Path

import botocore.exceptions
import pytest

from mounting import OCIFS, OcifsMount, is_mounted, unique_bucket
from relay import Relay


def _keyfile(directory: Path) -> tuple[Path, bytes]:
    key = os.urandom(32)
    path = directory / "sse-c.keys"
    import base64
    path.write_text(base64.b64encode(key).decode() + "\n")
    path.chmod(0o600)
    return path, key


def test_sse_c_write_and_read_through_a_mount(seaweed_server, mount_factory, tmp_path):
    """On SeaweedFS, which enforces SSE-C (moto 5 stores such objects but ignores the key)."""
    moto_server = seaweed_server
    bucket = unique_bucket("ssec")
    moto_server.create_bucket(bucket)
    keyfile, key = _keyfile(tmp_path)
    mount = mount_factory(moto_server, bucket, [f"use_sse=custom:{keyfile}"]).mount()
    data = os.urandom(300_000)
    (mount.mountpoint / "d").mkdir()
    (mount.mountpoint / "d" / "secret.bin").write_bytes(data)
    os.rename(mount.mountpoint / "d" / "secret.bin", mount.mountpoint / "d" / "moved.bin")
    assert (mount.mountpoint / "d" / "moved.bin").read_bytes() == data
    client = moto_server.client()
    with pytest.raises(botocore.exceptions.ClientError):
        client.get_object(Bucket=bucket, Key="d/moved.bin")  # no key: refused
    with pytest.raises(botocore.exceptions.ClientError):
        client.get_object(Bucket=bucket, Key="d/moved.bin", SSECustomerAlgorithm="AES256",
                          SSECustomerKey=os.urandom(32))  # another key: refused
    got = client.get_object(Bucket=bucket, Key="d/moved.bin", SSECustomerAlgorithm="AES256",
                            SSECustomerKey=key)
    assert got["Body"].read() == data
    assert "SECRET" not in mount.log_text() and key.hex() not in mount.log_text()
    mount.umount()
    again = mount_factory(moto_server, bucket, [f"use_sse=custom:{keyfile}"], name="again").mount()
    assert (again.mountpoint / "d" / "moved.bin").read_bytes() == data


def test_unsigned_payload_mount(moto_server, mount_factory):
    bucket = unique_bucket("unsigned")
    moto_server.create_bucket(bucket)
    mount = mount_factory(moto_server, bucket, ["enable_unsigned_payload"]).mount()
    (mount.mountpoint / "f.txt").write_text("unsigned body\n")
    assert (mount.mountpoint / "f.txt").read_text() == "unsigned body\n"
    body = moto_server.client().get_object(Bucket=bucket, Key="f.txt")["Body"].read()
    assert body == b"unsigned body\n"


class TlsFront(Relay):
    """A TLS listener with a self-signed certificate in front of a plain http server."""

    def __init__(self, target: tuple[str, int], directory: Path) -> None:
        cert, key = directory / "cert.pem", directory / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        super().__init__(target)

    def accepted(self, client: socket.socket) -> socket.socket | None:
        try:
            return self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()
            return None


class Https:
    """The moto server as seen through a :class:`TlsFront` (what OcifsMount needs of a server)."""

    def __init__(self, server, port: int) -> None:
        self.endpoint_url = f"https://127.0.0.1:{port}"
        self.access_key, self.secret_key = server.access_key, server.secret_key


def test_self_signed_endpoint_needs_no_check_certificate(moto_server, mount_factory, tmp_path):
    bucket = unique_bucket("tls")
    moto_server.create_bucket(bucket)
    host, port = moto_server.endpoint_url.removeprefix("http://").rsplit(":", 1)
    front = TlsFront((host, int(port)), tmp_path)
    try:
        https = Https(moto_server, front.port)
        refused = OcifsMount(https, bucket, tmp_path / "refused", ["retries=0"])
        result = subprocess.run(refused.argv(), capture_output=True, text=True, timeout=120)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ocifs: ") and "certificate" in lines[0].lower()
        assert not is_mounted(refused.mountpoint)
        mount = mount_factory(https, bucket, ["no_check_certificate"]).mount()
        (mount.mountpoint / "over-tls.txt").write_text("hello\n")
        assert (mount.mountpoint / "over-tls.txt").read_text() == "hello\n"
        mount.umount()
    finally:
        front.close()
    assert moto_server.client().get_object(Bucket=bucket, Key="over-tls.txt")["Body"].read() == b"hello\n"


def test_bucket_given_as_an_option(moto_server, tmp_path):
    """s3fs's ``s3fs MOUNTPOINT -o bucket=NAME:/PATH``."""
    bucket = unique_bucket("optbucket")
    moto_server.create_bucket(bucket)
    moto_server.client().put_object(Bucket=bucket, Key="sub/inside.txt", Body=b"in\n")
    mount = OcifsMount(moto_server, bucket, tmp_path / "mnt")
    argv = mount.argv()
    opts = argv[argv.index("-o") + 1] + f",bucket={bucket}:/sub"
    result = subprocess.run([*OCIFS, str(mount.mountpoint), "-o", opts], capture_output=True,
                            text=True, timeout=120)
    try:
        assert result.returncode == 0, result.stderr
        assert (mount.mountpoint / "inside.txt").read_text() == "in\n"
    finally:
        mount.umount()
    twice = subprocess.run([*OCIFS, "mount", bucket, str(mount.mountpoint), "-o", opts],
                           capture_output=True, text=True, timeout=120)
    assert twice.returncode == 1 and twice.stderr.startswith("ocifs: the bucket is given twice")
    assert not is_mounted(mount.mountpoint)
