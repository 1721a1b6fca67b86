"""Bad invocations of the real command: one ``ocifs:`` line on stderr, a non-zero exit,
no traceback, nothing mounted and no process left behind.

Every case runs the daemonizing form (no ``-f``), as a user or fstab would.
"""

from __future__ import annotations

import errno
import http.server
import os
import socket
import subprocess
import threading
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


@pytest.mark.parametrize("name", ["bad name", "bad/name", "ünïcode", "tab\there", "a" * 256],
                         ids=["space", "slash", "non-ascii", "control", "256-chars"])
def test_bucket_name_no_s3_api_takes(moto_server, place, name):
    """Refused before any request, naming the rule (boto3's own message spans lines)."""
    result = run(mount_argv(name, place.mountpoint, place.options(moto_server)))
    assert_one_line_failure(result, "bad bucket name")
    assert_nothing_left(place.mountpoint)


@pytest.mark.parametrize("name", ["UpperCase", "under_score", "ab", "a" * 64],
                         ids=["uppercase", "underscore", "too-short", "too-long-for-aws"])
def test_bucket_name_the_store_decides(seaweed_server, place, name):
    """AWS forbids these, OCI allows upper case, underscores and long names: the store
    answers, and its answer is the one line (here: no such bucket)."""
    result = run(mount_argv(name, place.mountpoint, place.options(seaweed_server)))
    line = assert_one_line_failure(result, name)
    assert any(word in line.lower() for word in ("nosuchbucket", "does not exist", "invalid")), line
    assert_nothing_left(place.mountpoint)


def test_unresolvable_endpoint(place):
    server = _Unreachable()
    server.endpoint_url = "http://no-such-host.invalid"
    result = run(mount_argv("somebucket", place.mountpoint, place.options(server, "retries=1")))
    line = assert_one_line_failure(result, "no-such-host.invalid")
    assert "reach" in line.lower(), line
    assert_nothing_left(place.mountpoint)


class _NotS3:
    """An HTTP server that is not an S3 service (every path: 404 with an HTML page)."""

    access_key = "AKIANOTS3"
    secret_key = "not-s3-secret"

    def __enter__(self) -> "_NotS3":
        handler = type("Handler", (http.server.BaseHTTPRequestHandler,), {
            "do_GET": lambda self: (self.send_error(404), None)[1],
            "log_message": lambda self, *args: None})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.endpoint_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_endpoint_that_is_not_s3(place):
    with _NotS3() as server:
        result = run(mount_argv("somebucket", place.mountpoint, place.options(server, "retries=1")))
    assert_one_line_failure(result, server.endpoint_url, "404")
    assert_nothing_left(place.mountpoint)


def test_https_to_a_plain_http_endpoint(moto_server, place):
    url = moto_server.endpoint_url.replace("http://", "https://")
    options = [f"url={url}", "use_path_request_style", "retries=1",
               f"passwd_file={write_passwd(place.mountpoint.parent, 'k', 's')}"]
    result = run(mount_argv("somebucket", place.mountpoint, options))
    line = assert_one_line_failure(result, url)
    assert "reach" in line.lower() and "ssl" in line.lower(), line
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


def test_mountpoint_longer_than_path_max(moto_server, place):
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    too_long = place.mountpoint / (("d" * 250 + "/") * 20)  # 5,000 characters
    result = run(mount_argv(bucket, too_long, place.options(moto_server)))
    assert_one_line_failure(result, "mountpoint", "too long")
    assert_nothing_left(place.mountpoint)


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


@pytest.mark.parametrize("content, needle", [
    ("JUSTONEWORD\n", "line 1 is not KEY:SECRET"),
    ("", "no KEY:SECRET line"),
    ("otherbucket:KEY:SECRETVALUE\n", "no KEY:SECRET line for bucket"),
], ids=["no-colon", "empty", "other-bucket-only"])
def test_malformed_passwd_file(moto_server, place, tmp_path, content, needle):
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    passwd = tmp_path / "passwd-bad"
    passwd.write_text(content)
    passwd.chmod(0o600)
    result = run(mount_argv(bucket, place.mountpoint, place.options(moto_server, passwd=passwd)))
    assert_one_line_failure(result, str(passwd), needle)
    assert "SECRETVALUE" not in result.stderr and "JUSTONEWORD" not in result.stderr
    assert_nothing_left(place.mountpoint)


def test_passwd_file_is_a_directory(moto_server, place, tmp_path):
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    result = run(mount_argv(bucket, place.mountpoint, place.options(moto_server, passwd=tmp_path)))
    assert_one_line_failure(result, str(tmp_path), "directory")
    assert_nothing_left(place.mountpoint)


def test_only_one_key_variable(moto_server, place, tmp_path):
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_ACCESS_KEY_ID=moto_server.access_key)
    options = [f"url={moto_server.endpoint_url}", "use_path_request_style"]
    result = run(mount_argv(bucket, place.mountpoint, options), env=env)
    assert_one_line_failure(result, "AWS_SECRET_ACCESS_KEY")
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


@pytest.mark.parametrize("option", [
    "multipart_size=1", "dbglevel=loud", "umask=999", "url=ftp://example.com", "retries=-1",
    "stat_cache_expire=soon", "oci_namespace=ns", "use_cache=/no/such/dir", "passwd_file=",
    "allow_other=maybe", "parallel_count=0"])
def test_bad_option_values(moto_server, place, option):
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    result = run(mount_argv(bucket, place.mountpoint, place.options(moto_server, option)))
    assert_one_line_failure(result, option.split("=")[0])
    assert_nothing_left(place.mountpoint)


@pytest.mark.parametrize("argv, needle", [
    (["mount", "only-a-bucket"], "mountpoint"),
    (["mount", "b", "/tmp", "--bogus"], "--bogus"),
    (["mount", "b", "/tmp", "-o"], "-o"),
    (["mount", "-dash", "/tmp"], "-d"),
], ids=["missing-mountpoint", "unknown-flag", "o-without-value", "dash-bucket"])
def test_usage_errors(argv, needle):
    """argparse's mistakes too: one ``ocifs:`` line and exit 1 (not its usage and exit 2)."""
    result = run([*OCIFS, *argv])
    assert result.returncode == 1
    assert_one_line_failure(result, needle)


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


# -- paths a mount cannot take -----------------------------------------------------------------


def test_paths_too_long_for_a_mount(mounted):
    """Longer than PATH_MAX, a component over FUSE's 1,024 bytes, a key over S3's 1,024:
    ENAMETOOLONG each time, and the mount goes on serving."""
    root = mounted.mountpoint
    deep = root / "/".join(["p" * 200] * 25)  # 5,000 bytes: the kernel refuses it
    long_component = root / ("c" * 1100)  # the FUSE kernel module refuses it
    parent = root / "/".join(["k" * 200] * 4)  # segments SeaweedFS takes (at most 255 bytes)
    parent.mkdir(parents=True)
    long_key = parent / ("k" * 250)  # a 1,054-byte key: ocifs refuses it
    for path, make in ((deep, lambda p: p.write_bytes(b"x")), (long_component, os.mkdir),
                       (long_component, lambda p: p.write_bytes(b"x")),
                       (long_key, lambda p: p.write_bytes(b"x")), (long_key, os.mkdir)):
        with pytest.raises(OSError) as info:
            make(path)
        assert info.value.errno == errno.ENAMETOOLONG, (str(path)[:80], info.value)
        (root / "still-alive.txt").write_bytes(b"yes")
        assert (root / "still-alive.txt").read_bytes() == b"yes"
    keys = [o["Key"] for o in mounted.client.list_objects_v2(Bucket=mounted.bucket)["Contents"]]
    assert not any(len(key.encode()) > 1024 for key in keys)
