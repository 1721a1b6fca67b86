"""Shared fixtures: one local S3 server of each kind per session, one real mount per module.

Mount tests run against every kind in OCIFS_TEST_SERVERS (default: moto and SeaweedFS, a real
object store keeping data on disk).  Servers bind to 127.0.0.1 only.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from ocifs.run.localserver import LocalS3Server
from mounting import OcifsMount, is_mounted, unique_bucket
from fault_proxy import FaultyServer
from oci_proxy import ProxiedServer

DEV_FUSE_LOCK = "/tmp/ocifs-tests-dev-fuse.lock"

SERVER_KINDS = [k for k in os.environ.get("OCIFS_TEST_SERVERS", "moto,seaweedfs").split(",") if k]

_started: dict[str, LocalS3Server] = {}


def get_server(kind: str, tmp_path_factory: pytest.TempPathFactory) -> LocalS3Server:
    """The session's server of ``kind``, started on first use."""
    if kind not in _started:
        server = LocalS3Server(kind=kind, data_dir=tmp_path_factory.mktemp(f"{kind}-data"))
        server.start()
        _started[kind] = server
    return _oci_proxied(kind, _started[kind])


# -- pytest-xdist (scripts/test.sh: -n 2 --dist loadfile --no-loadscope-reorder) --------------
# A module's tests share its module fixtures (mounts, buckets, s3fs and Redis processes) and
# run in order, so a module runs whole on one worker (loadfile).  Each worker has its own
# session servers (moto, SeaweedFS) on free ports; machine-wide state (/dev/fuse's mode) is
# taken under a lock (dev_fuse_for_everyone).  (Not loadgroup: pytest-xdist 3.8 cannot rename
# pytest 9.2's node ids, so its groups are silently ignored.)

# The longest modules start first, so that no worker is left running one alone at the end;
# the others follow in collection order (unit tests, the quickest, come last).
SLOW_MODULES_FIRST = ("test_model.py", "test_s3fs_interop.py", "test_container.py",
                      "test_docker_e2e.py", "test_benchmarks_smoke.py", "test_aof.py",
                      "test_write_path.py", "test_s3fs_xattr_special.py", "test_read_path.py",
                      "test_s3fs_parity.py", "test_faults.py", "test_mount_ops.py")


@pytest.hookimpl(trylast=True)  # after pytest's reordering by parametrized fixtures
def pytest_collection_modifyitems(config, items) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the order its controller schedules
        rank = {name: i for i, name in enumerate(SLOW_MODULES_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept


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


@pytest.fixture
def dev_fuse_for_everyone():
    """Debian's /dev/fuse is 0666; some sandboxes make it 0600, which forbids every
    unprivileged FUSE mount (s3fs's too).  Give it Debian's mode for the test, then put it back.

    /dev/fuse is one for the machine: a test holding it takes an exclusive lock, so that a test
    of another pytest-xdist worker does not read the widened mode as the one to restore, or
    put 0600 back while this one still needs 0666 (the kernel drops the lock if a worker dies)."""
    with open(DEV_FUSE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
        os.chmod("/dev/fuse", mode | 0o666)
        try:
            yield
        finally:
            os.chmod("/dev/fuse", mode)


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


# -- --oci-proxy: every server seen through tests/oci_proxy.py, failing on what OCI refuses ----

_oci_proxy_on = False
_oci_proxies: dict[str, ProxiedServer] = {}
_oci_reported: dict[str, int] = {}  # refusals already reported, per proxy


def pytest_addoption(parser) -> None:
    parser.addoption("--oci-proxy", action="store_true", default=False,
                     help="put the OCI-refusal proxy (tests/oci_proxy.py) in front of every local "
                          "S3 server; a test fails if OCI would refuse a request (also "
                          "OCIFS_TEST_OCI_PROXY=1)")


def pytest_configure(config) -> None:
    global _oci_proxy_on
    _oci_proxy_on = bool(config.getoption("--oci-proxy")) or os.environ.get(
        "OCIFS_TEST_OCI_PROXY", "").lower() in ("1", "true", "yes")


def _oci_proxied(kind: str, server: LocalS3Server):
    """The server, or with --oci-proxy the session's ProxiedServer around it."""
    if not _oci_proxy_on:
        return server
    if kind not in _oci_proxies or _oci_proxies[kind].server is not server:
        _oci_proxies[kind] = ProxiedServer(server).start()
        _oci_reported[kind] = 0
    return _oci_proxies[kind]


def _oci_unreported() -> str:
    """The refusals not reported yet, one per line (and mark them reported)."""
    lines = []
    for kind, wrapped in _oci_proxies.items():
        details = wrapped.proxy.refusal_details
        for d in details[_oci_reported.get(kind, 0):]:
            headers = "; ".join(f"{k}: {v}" for k, v in d["headers"])
            lines.append(f"  [{wrapped.kind}] {d['method']} {d['path']} -> rule {d['rule']}: "
                         f"{d['status']} {d['code']} ({d['message']})\n      headers: {headers}")
        _oci_reported[kind] = len(details)
    return "\n".join(lines)


@pytest.fixture(autouse=True)
def _oci_proxy_no_refusals(request):
    """With --oci-proxy, fail the test during which OCI's S3 API would have refused a request."""
    if not _oci_proxy_on:
        yield
        return
    earlier = _oci_unreported()
    if earlier:
        pytest.fail("OCI's S3 API would refuse requests sent outside a test body (module fixture "
                    f"set-up or an earlier teardown) before {request.node.nodeid}:\n{earlier}",
                    pytrace=False)
    yield
    refused = _oci_unreported()
    if refused:
        pytest.fail(f"OCI's S3 API would refuse requests of {request.node.nodeid}:\n{refused}",
                    pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _oci_proxy_session():
    """Stop the proxies at the end, failing on refusals no test was blamed for."""
    yield
    refused = _oci_unreported()
    for wrapped in _oci_proxies.values():
        wrapped.stop()
    _oci_proxies.clear()
    if refused:
        pytest.fail(f"OCI's S3 API would refuse requests (after the last test):\n{refused}",
                    pytrace=False)


@pytest.fixture
def oci_rules() -> bool:
    """Whether this run's mounts talk to OCI's rules (the OCI-refusal proxy answers as OCI)."""
    return _oci_proxy_on


@pytest.fixture
def public_dir():
    """A directory other users can traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="ocifs-pub-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tmpfs(tmp_path):
    """Makes small tmpfs mounts (``tmpfs(size_mib, name)``; root): free space a test can
    exhaust.  They are unmounted after the test."""
    made = []

    def make(size_mib: int, name: str = "disk"):
        where = tmp_path / name
        where.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(where)],
                       check=True)
        made.append(where)
        return where
    yield make
    for where in made:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def faulty_moto(moto_server):
    """moto behind tests/fault_proxy.py (a fresh proxy per test: its faults and counts)."""
    server = FaultyServer(moto_server).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def faulty_moto_module(moto_server):
    """moto behind tests/fault_proxy.py, one proxy for a whole module (``fault_proxy`` gives a
    test that proxy without faults or counts from the tests before)."""
    server = FaultyServer(moto_server).start()
    yield server
    server.stop()


@pytest.fixture
def fault_proxy(faulty_moto_module):
    """The module's fault proxy, cleared before and after the test."""
    faulty_moto_module.proxy.clear()
    yield faulty_moto_module.proxy
    faulty_moto_module.proxy.clear()


@pytest.fixture
def faulty_seaweed(seaweed_server):
    """SeaweedFS behind tests/fault_proxy.py (a fresh proxy per test)."""
    server = FaultyServer(seaweed_server).start()
    yield server
    server.stop()
