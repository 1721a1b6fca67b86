"""Shared fixtures: one local S3 server of each kind per session, one real mount per module.

Mount tests run against every kind in OCIFS_TEST_SERVERS (default: moto and SeaweedFS, a real
object store keeping data on disk).  Servers bind to 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ocifs.localserver import LocalS3Server
from mounting import OcifsMount, is_mounted, unique_bucket

SERVER_KINDS = [k for k in os.environ.get("OCIFS_TEST_SERVERS", "moto,seaweedfs").split(",") if k]

_started: dict[str, LocalS3Server] = {}


def get_server(kind: str, tmp_path_factory: pytest.TempPathFactory) -> LocalS3Server:
    """The session's server of ``kind``, started on first use."""
    if kind not in _started:
        server = LocalS3Server(kind=kind, data_dir=tmp_path_factory.mktemp(f"{kind}-data"))
        server.start()
        _started[kind] = server
    return _started[kind]


def pytest_sessionfinish(session, exitstatus) -> None:
    for server in _started.values():
        server.stop()
    _started.clear()


def require_tool(name: str) -> str:
    """Path of an optional external program; the test is skipped (with the reason) without it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (CI installs it)")
    return path


@pytest.fixture(scope="session", params=SERVER_KINDS)
def s3_server(request, tmp_path_factory) -> LocalS3Server:
    """A local S3 server: each mount test runs once per kind."""
    return get_server(request.param, tmp_path_factory)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> LocalS3Server:
    return get_server("moto", tmp_path_factory)


@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory) -> LocalS3Server:
    return get_server("seaweedfs", tmp_path_factory)


@pytest.fixture(scope="module")
def mounted(s3_server, tmp_path_factory):
    """A fresh bucket mounted by ocifs (daemonized, as a user would), shared by a module."""
    bucket = unique_bucket()
    s3_server.create_bucket(bucket)
    base = tmp_path_factory.mktemp("mnt")
    mount = OcifsMount(s3_server, bucket, base / "mnt")
    mount.mount()
    mount.client = s3_server.client()
    yield mount
    mount.umount()
    assert not is_mounted(mount.mountpoint)


@pytest.fixture
def mount_factory(tmp_path):
    """Make extra mounts in a test; all are unmounted at the end, even when the test fails."""
    made: list[OcifsMount] = []

    def make(server: LocalS3Server, bucket: str, options=(), name: str = "mnt") -> OcifsMount:
        mount = OcifsMount(server, bucket, tmp_path / f"{name}{len(made)}", options)
        made.append(mount)
        return mount

    yield make
    for mount in made:
        mount.umount()
