"""Bad invocations of the real command: one ``ocifs:`` line on stderr, a non-zero exit,
no traceback, nothing mounted and no process left behind.

Every case runs the daemonizing form (no ``-f``), as a user or fstab would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from mounting import OCIFS, is_mounted, unique_bucket, write_passwd

TIMEOUT = 180


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes (other than pgrep) whose argv contains ``text``."""
    result = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if line.strip()]


def assert_one_line_failure(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, exactly one stderr line starting with ``ocifs:`` containing every needle."""
    assert result.returncode != 0, f"exit 0 for a bad invocation; stderr: {result.stderr!r}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {result.stderr!r}"
    line = lines[0]
    assert line.startswith("ocifs:"), line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    return line


def assert_nothing_left(mountpoint: Path, timeout: float = 10) -> None:
    assert not is_mounted(mountpoint), f"{mountpoint} is mounted after a failed mount"
    deadline = time.monotonic() + timeout
    while processes_mentioning(str(mountpoint)):
        assert time.monotonic() < deadline, \
            f"processes left behind: {processes_mentioning(str(mountpoint))}"
        time.sleep(0.1)


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                          stdin=subprocess.DEVNULL)


def mount_argv(bucket: str, mountpoint: Path, options: list[str], form: str = "mount") -> list[str]:
    head = [*OCIFS, "mount"] if form == "mount" else [*OCIFS]
    return [*head, bucket, str(mountpoint), "-o", ",".join(options)]


@pytest.fixture
def place(tmp_path):
    """A fresh mountpoint directory and a private passwd file for ``server``."""

    class Place:
        def __init__(self) -> None:
            self.mountpoint = tmp_path / "mnt"
            self.mountpoint.mkdir()

        def options(self, server, *extra: str, passwd: Path | None = None) -> list[str]:
            passwd = passwd or write_passwd(tmp_path, server.access_key, server.secret_key)
            return [f"url={server.endpoint_url}", "use_path_request_style",
                    f"passwd_file={passwd}", *extra]

    place = Place()
    yield place
    if is_mounted(place.mountpoint):  # a failing test must not leave a mount behind
        subprocess.run(["fusermount3", "-uz", str(place.mountpoint)], capture_output=True)


# -- the store: bucket, keys, endpoint -------------------------------------------------------


def test_nonexistent_bucket(s3_server, place):
    bucket = unique_bucket("missing")
    result = run(mount_argv(bucket, place.mountpoint, place.options(s3_server)))
    line = assert_one_line_failure(result, bucket)
    assert any(word in line.lower() for word in ("nosuchbucket", "does not exist", "no such bucket")), line
    assert_nothing_left(place.mountpoint)


@pytest.mark.parametrize("which", ["secret", "access_key"])
def test_wrong_keys(seaweed_server, place, tmp_path, which):
    bucket = unique_bucket("keys")
    seaweed_server.create_bucket(bucket)
    secret = "WrongSecret" + os.urandom(8).hex()
    if which == "secret":
        passwd = write_passwd(tmp_path, seaweed_server.access_key, secret)
    else:
        passwd = write_passwd(tmp_path, "NOSUCHACCESSKEY0" + os.urandom(2).hex().upper(), secret)
    result = run(mount_argv(bucket, place.mountpoint, place.options(seaweed_server, passwd=passwd)))
    line = assert_one_line_failure(result, bucket)
    assert any(word in line.lower() for word in (
        "accessdenied", "access denied", "signaturedoesnotmatch", "invalidaccesskeyid", "forbidden",
        "403")), line
    assert secret not in result.stderr and secret not in result.stdout
    assert seaweed_server.secret_key not in result.stderr
    assert_nothing_left(place.mountpoint)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


class _Unreachable:
    access_key = "AKIAUNREACHABLE"
    secret_key = "unreachable-secret"

    def __init__(self) -> None:
        self.endpoint_url = f"http://127.0.0.1:{closed_port()}"


def test_unreachable_endpoint_default_retries(place, capsys):
    """With the default retries: must fail reasonably fast (connection refused is immediate)."""
    server = _Unreachable()
    started = time.monotonic()
    result = run(mount_argv("somebucket", place.mountpoint, place.options(server)))
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\n[unreachable endpoint, default retries: failed after {elapsed:.1f}s]")
    line = assert_one_line_failure(result, server.endpoint_url)
    assert "reach" in line.lower() or "connect" in line.lower(), line
    assert elapsed < 60, f"an unreachable endpoint took {elapsed:.0f}s to report"
    assert_nothing_left(place.mountpoint)


def test_unreachable_endpoint_retries_1(place):
    server = _Unreachable()
    started = time.monotonic()
    result = run(mount_argv("somebucket", place.mountpoint, place.options(server, "retries=1")))
    line = assert_one_line_failure(result, server.endpoint_url)
    assert "reach" in line.lower() or "connect" in line.lower(), line
    assert time.monotonic() - started < 30
    assert_nothing_left(place.mountpoint)


# -- the mountpoint --------------------------------------------------------------------------


def test_missing_mountpoint(moto_server, place, tmp_path):
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    missing = tmp_path / "no-such-dir"
    result = run(mount_argv(bucket, missing, place.options(moto_server)))
    assert_one_line_failure(result, str(missing), "does not exist")
    assert not missing.exists()
    assert_nothing_left(missing)


def test_mountpoint_is_a_file(moto_server, place, tmp_path):
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    afile = tmp_path / "a-file"
    afile.write_text("not a directory\n")
    result = run(mount_argv(bucket, afile, place.options(moto_server)))
    assert_one_line_failure(result, str(afile), "not a directory")
    assert afile.read_text() == "not a directory\n"
    assert_nothing_left(afile)


# -- credentials -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode, who", [(0o644, "others"), (0o604, "others"), (0o640, "group"),
                                       (0o660, "group")],
                         ids=["0644", "0604", "0640", "0660"])
def test_passwd_file_permissions(moto_server, place, tmp_path, mode, who):
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    passwd = write_passwd(tmp_path, moto_server.access_key, moto_server.secret_key, mode=mode)
    result = run(mount_argv(bucket, place.mountpoint, place.options(moto_server, passwd=passwd)))
    line = assert_one_line_failure(result, str(passwd), who)
    assert moto_server.secret_key not in result.stderr
    assert "chmod 600" in line or "0600" in line or "600" in line, line
    assert_nothing_left(place.mountpoint)


def test_missing_passwd_file(moto_server, place, tmp_path):
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    missing = tmp_path / "no-such-passwd"
    result = run(mount_argv(bucket, place.mountpoint, place.options(moto_server, passwd=missing)))
    assert_one_line_failure(result, str(missing), "does not exist")
    assert_nothing_left(place.mountpoint)


def test_no_credentials_at_all(moto_server, place, tmp_path):
    if Path("/etc/passwd-s3fs").exists():
        pytest.skip("/etc/passwd-s3fs exists on this machine")
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    home = tmp_path / "empty-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(home)
    options = [f"url={moto_server.endpoint_url}", "use_path_request_style"]
    result = run(mount_argv(bucket, place.mountpoint, options), env=env)
    assert_one_line_failure(result, "credentials")
    assert_nothing_left(place.mountpoint)


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["mount", "s3fs"])
def test_unknown_option(moto_server, place, form):
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    result = run(mount_argv(bucket, place.mountpoint, place.options(moto_server, "foo_bar"), form=form))
    assert_one_line_failure(result, "foo_bar")
    assert_nothing_left(place.mountpoint)


@pytest.mark.parametrize("form", ["mount", "s3fs"])
def test_unknown_option_with_value(moto_server, place, form):
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    result = run(mount_argv(bucket, place.mountpoint,
                            place.options(moto_server, "foo_bar=1"), form=form))
    assert_one_line_failure(result, "foo_bar")
    assert_nothing_left(place.mountpoint)


def test_bad_option_value(moto_server, place):
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    result = run(mount_argv(bucket, place.mountpoint, place.options(moto_server, "uid=abc")))
    assert_one_line_failure(result, "uid", "abc")
    assert_nothing_left(place.mountpoint)


def test_empty_bucket_name(moto_server, place):
    result = run(mount_argv(":/prefix", place.mountpoint, place.options(moto_server)))
    assert_one_line_failure(result, "bucket")
    assert_nothing_left(place.mountpoint)


# -- umount ----------------------------------------------------------------------------------


def test_umount_not_mounted(tmp_path):
    target = tmp_path / "plain-dir"
    target.mkdir()
    result = run([*OCIFS, "umount", str(target)])
    assert_one_line_failure(result, str(target), "not mounted")


def test_umount_missing_directory(tmp_path):
    target = tmp_path / "no-such-dir"
    result = run([*OCIFS, "umount", str(target)])
    assert_one_line_failure(result, str(target))
