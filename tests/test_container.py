"""The image entrypoint, ``ocifs container``, run on the host exactly as in the container.

The environment goes in as the efrecon/s3fs image's users set it (REFERENCE §1), with
AWS_S3_ROOTDIR/AWS_S3_MOUNT under a temporary directory; the mount is real, Redis writes its
snapshot through it, and a signal must upload, unmount and exit 0.  Everything that can be
decided without a network call (options from the environment) is checked as a unit.
"""

from __future__ import annotations

import errno
import os
import pwd
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import require_tool
from mounting import OCIFS, OcifsMount, is_mounted, unique_bucket
from ocifs.run import container
from relay import Relay
from test_redis import RedisProcess, bucket_object

ENTRYPOINT = [*OCIFS, "container"]
# Variables of the contract: none may leak in from the environment pytest runs in.
CONTRACT_PREFIXES = ("AWS_S3_", "S3FS_", "OCI_", "OCIFS_")


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(CONTRACT_PREFIXES) and k not in ("UID", "GID")}


def container_env(server, bucket: str, root: Path, **extra: str) -> dict[str, str]:
    """What a compose file would set, with the root directory under ``root``."""
    env = clean_environ()
    env.update({"AWS_S3_BUCKET": bucket, "AWS_S3_URL": server.endpoint_url,
                "AWS_S3_ACCESS_KEY_ID": server.access_key,
                "AWS_S3_SECRET_ACCESS_KEY": server.secret_key,
                "AWS_S3_ROOTDIR": str(root), "S3FS_ARGS": "use_path_request_style"})
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def stale_or_gone(path: Path) -> bool:
    """ENOTCONN: statfs, because stat may be answered from the kernel's attribute cache."""
    try:
        os.statvfs(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


class Entrypoint:
    """One ``ocifs container`` process, its stdout/stderr in a file."""

    def __init__(self, env: dict[str, str], command: list[str] | tuple = (), log: Path | None = None) -> None:
        self.env = env
        rootdir, self.mountpoint = container.rootdir_and_mountpoint(container.load_environment(env))
        self.logfile = log or rootdir.parent / f"entrypoint-{uuid.uuid4().hex[:6]}.log"
        with open(self.logfile, "wb") as out:
            self.process = subprocess.Popen([*ENTRYPOINT, *command], env=env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def wait_mounted(self, timeout: float = 60) -> "Entrypoint":
        deadline = time.monotonic() + timeout
        while not (is_mounted(self.mountpoint) and "Mounted bucket" in self.log()):
            if self.process.poll() is not None:
                raise AssertionError(f"entrypoint exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not mounted after {timeout} s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        if is_mounted(self.mountpoint) or stale_or_gone(self.mountpoint):
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], capture_output=True)


@pytest.fixture
def entrypoints():
    """Start entrypoints; each is killed and its mount detached at the end, whatever happened."""
    started: list[Entrypoint] = []

    def start(env: dict[str, str], command=(), log: Path | None = None) -> Entrypoint:
        entry = Entrypoint(env, command, log)
        started.append(entry)
        return entry

    yield start
    for entry in started:
        entry.cleanup()
    for entry in started:
        assert not is_mounted(entry.mountpoint)


def run_entrypoint(env: dict[str, str], *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*ENTRYPOINT, *command], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def healthcheck(mountpoint: Path, timeout: float = 5, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*OCIFS, "healthcheck", str(mountpoint), "--timeout", str(timeout)],
                          capture_output=True, text=True, timeout=timeout + 30, env=env)


def unused_id() -> int:
    """A uid (and gid) no account has: the entrypoint then only passes uid=/gid= options."""
    for candidate in range(42420, 43000):
        try:
            pwd.getpwuid(candidate)
        except KeyError:
            return candidate
    raise AssertionError("no free uid")


# -- units: the environment -> the mount command line ------------------------------------------


BASE = {"AWS_S3_BUCKET": "bkt", "AWS_S3_ACCESS_KEY_ID": "AKID", "AWS_S3_SECRET_ACCESS_KEY": "SECRET"}


def options_of(env: dict[str, str]):
    return container.mount_options(container.read_settings(env))


def test_defaults_follow_the_old_image():
    settings = container.read_settings(BASE)
    assert settings.mountpoint == Path("/opt/s3fs/bucket")
    assert settings.passwd_file == Path("/opt/s3fs/passwd-s3fs")
    argv = container.mount_argv(settings)
    assert argv[:3] == ["mount", "bkt", "/opt/s3fs/bucket"]
    items = argv[4].split(",")
    assert "url=https://s3.amazonaws.com" in items and "passwd_file=/opt/s3fs/passwd-s3fs" in items
    assert "SECRET" not in " ".join(argv) and "SECRET" not in repr(settings)
    rooted = container.read_settings({**BASE, "AWS_S3_ROOTDIR": "/srv/x/", "AWS_S3_BUCKET": "b:/p/q"})
    assert rooted.mountpoint == Path("/srv/x/bucket")
    spec = container.mount_spec(rooted)
    assert (spec.bucket, spec.prefix, spec.stop_timeout) == ("b", "p/q", 30.0)


def test_oci_namespace_and_region_give_the_oci_endpoint():
    opts = options_of({**BASE, "OCI_NAMESPACE": "axaxnpcrorw5", "OCI_REGION": "eu-frankfurt-1"})
    assert opts.url == "https://axaxnpcrorw5.compat.objectstorage.eu-frankfurt-1.oraclecloud.com"
    assert opts.endpoint == "eu-frankfurt-1"
    assert opts.use_path_request_style
    with pytest.raises(container.ContainerError, match="OCI_NAMESPACE and OCI_REGION go together"):
        container.read_settings({**BASE, "OCI_NAMESPACE": "ns"})


def test_region_uid_gid_debug_compat_and_timeout():
    opts = options_of({**BASE, "AWS_S3_REGION": "eu-west-3", "UID": "999", "GID": "998",
                       "S3FS_DEBUG": "1", "OCIFS_S3FS_COMPAT": "1"})
    assert (opts.endpoint, opts.uid, opts.gid, opts.dbglevel) == ("eu-west-3", 999, 998, "dbg")
    assert (opts.fsname, opts.subtype) == ("s3fs", "s3fs")
    assert options_of(BASE).dbglevel == "warn"
    assert container.read_settings({**BASE, "OCIFS_STOP_TIMEOUT": "7.5"}).stop_timeout == 7.5
    with pytest.raises(container.ContainerError, match="UID must be a number"):
        container.read_settings({**BASE, "UID": "redis"})


@pytest.mark.parametrize("args", ["allow_other,use_path_request_style,umask=022",
                                  "-o allow_other,use_path_request_style,umask=022",
                                  "-oallow_other -o use_path_request_style,umask=022",
                                  " -o allow_other , use_path_request_style,umask=022 "])
def test_s3fs_args_with_or_without_dash_o(args):
    opts = options_of({**BASE, "S3FS_ARGS": args})
    assert opts.allow_other and opts.use_path_request_style and opts.umask == 0o22


def test_s3fs_args_unknown_option_and_variables_winning():
    with pytest.raises(container.ContainerError, match="unknown option: bogus"):
        options_of({**BASE, "S3FS_ARGS": "bogus"})
    opts = options_of({**BASE, "S3FS_ARGS": "url=http://other:1,uid=5,dbglevel=info",
                       "AWS_S3_URL": "http://127.0.0.1:9", "UID": "7"})
    assert (opts.url, opts.uid, opts.dbglevel) == ("http://127.0.0.1:9", 7, "info")


def test_envfile_parsing(tmp_path):
    envfile = tmp_path / "s3.env"
    envfile.write_text(
        "# comment\n\nAWS_S3_BUCKET=from-file\nexport AWS_S3_URL='http://127.0.0.1:1'\n"
        'S3FS_ARGS="use_path_request_style,allow_other"\nOCI_REGION=r # trailing comment\n'
        "UID=999\nGID=998\nPATH=/evil\nLD_PRELOAD=/evil.so\nAWS_S3_MOUNT = /spaces\n")
    env = container.load_environment({"AWS_S3_ENVFILE": str(envfile), "AWS_S3_BUCKET": "env",
                                      "PATH": "/usr/bin"})
    assert env["AWS_S3_BUCKET"] == "from-file"  # the file wins, as with the old image
    assert env["AWS_S3_URL"] == "http://127.0.0.1:1"
    assert env["S3FS_ARGS"] == "use_path_request_style,allow_other"
    assert env["OCI_REGION"] == "r" and env["UID"] == "999" and env["GID"] == "998"
    assert env["PATH"] == "/usr/bin" and "LD_PRELOAD" not in env and "AWS_S3_MOUNT" not in env


def test_secret_files_first_line_wins(tmp_path):
    (tmp_path / "key").write_text("KEYFROMFILE\nsecond line\n")
    (tmp_path / "secret").write_text("  SECRETFROMFILE  \r\nignored\n")
    settings = container.read_settings({
        "AWS_S3_BUCKET": "b", "AWS_S3_ACCESS_KEY_ID": "plain", "AWS_S3_SECRET_ACCESS_KEY": "plain",
        "AWS_S3_ACCESS_KEY_ID_FILE": str(tmp_path / "key"),
        "AWS_S3_SECRET_ACCESS_KEY_FILE": str(tmp_path / "secret")})
    assert (settings.access_key, settings.secret_key) == ("KEYFROMFILE", "SECRETFROMFILE")
    with pytest.raises(container.ContainerError, match="cannot read AWS_S3_SECRET_ACCESS_KEY_FILE"):
        container.read_settings({**BASE, "AWS_S3_SECRET_ACCESS_KEY_FILE": str(tmp_path / "none")})


def test_scrubbed_environment_has_no_secret(tmp_path):
    env = {**BASE, "AWS_S3_SECRET_ACCESS_KEY_FILE": "/run/secrets/s", "AWS_S3_ENVFILE": "/e",
           "AWS_S3_ROOTDIR": str(tmp_path), "OTHER": "kept"}
    clean = container.scrubbed_environment(env, container.read_settings({**BASE, "AWS_S3_ROOTDIR": str(tmp_path)}))
    assert not set(clean) & {*container.SECRET_VARIABLES, "AWS_S3_ENVFILE"}
    assert clean["AWS_S3_AUTHFILE"] == str(tmp_path / "passwd-s3fs") and clean["OTHER"] == "kept"


# -- the entrypoint, for real ------------------------------------------------------------------


def proc_environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def check_no_secret(entry: Entrypoint, *secrets: str) -> None:
    environ = proc_environ(entry.process.pid)
    text = entry.log()
    for secret in secrets:
        assert secret.encode() not in environ, "a secret is in /proc/PID/environ"
        assert secret not in text, "a secret is in the entrypoint's output"


def write_through_redis(mountpoint: Path, tmp_path: Path) -> bytes:
    """Redis SAVE into the mount; returns the snapshot as read back through the mount."""
    redis = RedisProcess(require_tool("redis-server"), mountpoint, tmp_path / "redis.log")
    try:
        r = redis.client
        assert r("DEBUG", "POPULATE", 5000, "key", 200) == "OK"
        assert r("SET", "container:check", "through the entrypoint") == "OK"
        assert r("SAVE") == "OK", redis.log()
        snapshot = (mountpoint / "dump.rdb").read_bytes()
        assert snapshot[:5] == b"REDIS"
        redis.shutdown_nosave()
    finally:
        redis.kill()
    return snapshot


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("kind", ["moto", "seaweedfs"])
def test_redis_through_entrypoint_then_signal(kind, sig, request, tmp_path, entrypoints):
    server = request.getfixturevalue("moto_server" if kind == "moto" else "seaweed_server")
    bucket = unique_bucket("ctr")
    server.create_bucket(bucket)
    root = tmp_path / "opt-s3fs"
    entry = entrypoints(container_env(server, bucket, root)).wait_mounted()
    assert entry.mountpoint == root / "bucket"
    passwd = root / "passwd-s3fs"
    assert passwd.stat().st_mode & 0o777 == 0o600
    assert passwd.read_text() == f"{server.access_key}:{server.secret_key}\n"
    check_no_secret(entry, server.secret_key, server.access_key)
    assert f"AWS_S3_AUTHFILE={passwd}".encode() in proc_environ(entry.process.pid)
    assert healthcheck(entry.mountpoint).returncode == 0

    snapshot = write_through_redis(entry.mountpoint, tmp_path)
    assert entry.stop(sig) == 0, entry.log()
    assert not is_mounted(entry.mountpoint)
    assert os.stat(entry.mountpoint)  # no "Transport endpoint is not connected"
    assert os.listdir(entry.mountpoint) == []
    assert bucket_object(server.client(), bucket, "dump.rdb") == snapshot
    assert server.secret_key not in entry.log()


def test_envfile_only(moto_server, tmp_path, entrypoints):
    bucket = unique_bucket("ctr")
    moto_server.create_bucket(bucket)
    root = tmp_path / "root"
    envfile = tmp_path / "s3fs.env"
    envfile.write_text(
        f"# the sidecar's settings\nAWS_S3_BUCKET={bucket}\nAWS_S3_URL=\"{moto_server.endpoint_url}\"\n"
        f"AWS_S3_ACCESS_KEY_ID='{moto_server.access_key}'\n"
        f"AWS_S3_SECRET_ACCESS_KEY={moto_server.secret_key}\n"
        f"AWS_S3_ROOTDIR={root}\nS3FS_ARGS=-o use_path_request_style\n")
    env = {**clean_environ(), "AWS_S3_ENVFILE": str(envfile)}
    entry = entrypoints(env, log=tmp_path / "entry.log").wait_mounted()
    environ = proc_environ(entry.process.pid)
    assert b"AWS_S3_ENVFILE" not in environ and moto_server.secret_key.encode() not in environ
    (entry.mountpoint / "hello.txt").write_text("from the envfile mount")
    assert entry.stop() == 0, entry.log()
    assert bucket_object(moto_server.client(), bucket, "hello.txt") == b"from the envfile mount"


def test_secret_files(moto_server, tmp_path, entrypoints):
    bucket = unique_bucket("ctr")
    moto_server.create_bucket(bucket)
    (tmp_path / "key").write_text(f"{moto_server.access_key}\n")
    (tmp_path / "secret").write_text(f"{moto_server.secret_key}\nnot this line\n")
    env = container_env(moto_server, bucket, tmp_path / "root",
                        AWS_S3_ACCESS_KEY_ID="wrong-key", AWS_S3_SECRET_ACCESS_KEY=None,
                        AWS_S3_ACCESS_KEY_ID_FILE=str(tmp_path / "key"),
                        AWS_S3_SECRET_ACCESS_KEY_FILE=str(tmp_path / "secret"))
    entry = entrypoints(env).wait_mounted()
    environ = proc_environ(entry.process.pid)
    assert b"AWS_S3_SECRET_ACCESS_KEY_FILE" not in environ and b"wrong-key" not in environ
    assert b"AWS_S3_ACCESS_KEY_ID_FILE" not in environ
    (entry.mountpoint / "f").write_bytes(b"secret files")
    assert entry.stop() == 0, entry.log()
    assert bucket_object(moto_server.client(), bucket, "f") == b"secret files"


def test_authfile_used_as_is(moto_server, tmp_path, entrypoints):
    bucket = unique_bucket("ctr")
    moto_server.create_bucket(bucket)
    authfile = tmp_path / "my-passwd"
    authfile.write_text(f"{bucket}:{moto_server.access_key}:{moto_server.secret_key}\n")
    authfile.chmod(0o600)
    root = tmp_path / "root"
    env = container_env(moto_server, bucket, root, AWS_S3_ACCESS_KEY_ID=None,
                        AWS_S3_SECRET_ACCESS_KEY=None, AWS_S3_AUTHFILE=str(authfile))
    entry = entrypoints(env).wait_mounted()
    assert not (root / "passwd-s3fs").exists(), "nothing is generated with AWS_S3_AUTHFILE"
    assert f"passwd_file={authfile}" in entry.log() or "passwd_file" not in entry.log()
    assert entry.stop() == 0, entry.log()


@pytest.mark.parametrize("args", ["use_path_request_style,dbglevel=info",
                                  "-o use_path_request_style,dbglevel=info"])
def test_s3fs_args_forms_mount(moto_server, tmp_path, entrypoints, args):
    bucket = unique_bucket("ctr")
    moto_server.create_bucket(bucket)
    root = tmp_path / "root"
    mnt = tmp_path / "elsewhere" / "mnt"
    env = container_env(moto_server, bucket, root, S3FS_ARGS=args, AWS_S3_MOUNT=str(mnt),
                        OCIFS_S3FS_COMPAT="1")
    entry = entrypoints(env).wait_mounted()
    assert entry.mountpoint == mnt and mnt.is_dir()
    line = next(l for l in Path("/proc/mounts").read_text().splitlines() if l.split()[1] == str(mnt))
    assert line.split()[:3] == ["s3fs", str(mnt), "fuse.s3fs"]  # old /proc/mounts healthchecks
    assert " I ocifs" in entry.log(), "dbglevel=info from S3FS_ARGS did not apply"
    assert entry.stop() == 0, entry.log()


def test_uid_gid_options_without_an_account(moto_server, tmp_path, entrypoints):
    bucket = unique_bucket("ctr")
    moto_server.create_bucket(bucket)
    moto_server.client().put_object(Bucket=bucket, Key="plain", Body=b"x")
    ident = unused_id()
    env = container_env(moto_server, bucket, tmp_path / "root", UID=str(ident), GID=str(ident))
    entry = entrypoints(env).wait_mounted()
    st = os.stat(entry.mountpoint / "plain")
    assert (st.st_uid, st.st_gid) == (ident, ident)
    status = Path(f"/proc/{entry.process.pid}/status").read_text()
    assert f"Uid:\t{os.geteuid()}" in status, "no account for UID: the process keeps its user"
    assert entry.stop() == 0, entry.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to UID needs root")
def test_drops_to_an_existing_account(moto_server, entrypoints, dev_fuse_for_everyone):
    """UID of an existing account while root: the filesystem runs as that user (fusermount3)."""
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' account")
    if not os.stat("/usr/bin/fusermount3").st_mode & 0o4000:
        pytest.skip("fusermount3 is not setuid root")
    bucket = unique_bucket("ctr")
    moto_server.create_bucket(bucket)
    base = Path(tempfile.mkdtemp(prefix="ocifs-ctr-", dir="/tmp"))
    base.chmod(0o755)  # the user must reach the mountpoint
    try:
        env = container_env(moto_server, bucket, base / "root", UID=str(nobody.pw_uid),
                            GID=str(nobody.pw_gid))
        entry = entrypoints(env, log=base / "entry.log").wait_mounted()
        status = Path(f"/proc/{entry.process.pid}/status").read_text()
        assert f"Uid:\t{nobody.pw_uid}\t{nobody.pw_uid}" in status
        line = next(l for l in Path("/proc/mounts").read_text().splitlines()
                    if l.split()[1] == str(entry.mountpoint))
        assert f"user_id={nobody.pw_uid}" in line
        assert (base / "root" / "passwd-s3fs").stat().st_uid == 0, "the key stays root's"
        # root may not enter another user's mount without allow_other; the healthcheck probes
        # as UID, as the entrypoint runs.
        assert healthcheck(entry.mountpoint, env=env).returncode == 0
        assert entry.stop() == 0, entry.log()
        assert not is_mounted(entry.mountpoint)
    finally:
        subprocess.run(["rm", "-rf", str(base)])


def test_command_runs_once_mounted_and_its_status_is_ours(moto_server, tmp_path, entrypoints):
    bucket = unique_bucket("ctr")
    moto_server.create_bucket(bucket)
    env = container_env(moto_server, bucket, tmp_path / "root")
    mnt = tmp_path / "root" / "bucket"
    script = f"echo written-by-command > {mnt}/cmd.txt && ls {mnt} && exit 3"
    result = run_entrypoint(env, "sh", "-c", script)
    assert result.returncode == 3, result.stderr
    assert "cmd.txt" in result.stdout
    assert not is_mounted(mnt)
    assert bucket_object(moto_server.client(), bucket, "cmd.txt") == b"written-by-command\n"


def test_signal_stops_the_command_first(moto_server, tmp_path, entrypoints):
    """SIGTERM reaches COMMAND, which writes its last words to the mount; they are uploaded."""
    bucket = unique_bucket("ctr")
    moto_server.create_bucket(bucket)
    mnt = tmp_path / "root" / "bucket"
    script = (f"trap 'echo bye > {mnt}/last-words; exit 0' TERM; "
              "while true; do sleep 0.1; done")
    entry = entrypoints(container_env(moto_server, bucket, tmp_path / "root"),
                        ["sh", "-c", script]).wait_mounted()
    time.sleep(0.5)  # the shell installs its trap
    assert entry.stop() == 0, entry.log()
    assert bucket_object(moto_server.client(), bucket, "last-words") == b"bye\n"


def test_missing_bucket(tmp_path):
    root = tmp_path / "root"
    env = {**clean_environ(), "AWS_S3_ACCESS_KEY_ID": "k", "AWS_S3_SECRET_ACCESS_KEY": "s",
           "AWS_S3_ROOTDIR": str(root)}
    result = run_entrypoint(env)
    assert (result.returncode, result.stderr, result.stdout) == (1, "No bucket name provided!\n", "")
    assert not root.exists(), "nothing is created or mounted before the checks pass"


@pytest.mark.parametrize("extra", [{}, {"AWS_S3_BUCKET": "b"}, {"AWS_S3_SECRET_ACCESS_KEY": ""}])
def test_missing_credentials(tmp_path, extra):
    root = tmp_path / "root"
    env = {**clean_environ(), "AWS_S3_ROOTDIR": str(root), **extra}
    result = run_entrypoint(env)
    assert (result.returncode, result.stderr, result.stdout) == (
        1, "You need to provide some credentials!!\n", "")
    assert not root.exists()


def test_bad_key_reported_before_mounting(moto_server, tmp_path):
    bucket = unique_bucket("ctr")
    moto_server.create_bucket(bucket)
    env = container_env(moto_server, bucket, tmp_path / "root")
    env["AWS_S3_BUCKET"] = "no-such-bucket-" + uuid.uuid4().hex[:6]
    result = run_entrypoint(env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("ocifs: cannot use bucket")
    assert moto_server.secret_key not in result.stderr
    assert not is_mounted(tmp_path / "root" / "bucket")


def test_stale_mount_cleared_on_start(moto_server, tmp_path, entrypoints):
    bucket = unique_bucket("ctr")
    moto_server.create_bucket(bucket)
    root = tmp_path / "root"
    killed = OcifsMount(moto_server, bucket, root / "bucket")
    process = killed.start_foreground()
    (root / "bucket" / "before-the-crash").write_bytes(b"x")
    process.kill()
    process.wait(timeout=30)
    try:
        assert stale_or_gone(root / "bucket"), "SIGKILL should leave ENOTCONN behind"
        started = time.monotonic()
        assert healthcheck(root / "bucket", timeout=5).returncode == 1
        assert time.monotonic() - started < 5
        entry = entrypoints(container_env(moto_server, bucket, root)).wait_mounted()
        assert "clearing stale mount at" in entry.log()
        assert healthcheck(entry.mountpoint).returncode == 0
        assert entry.stop() == 0, entry.log()
    finally:
        subprocess.run(["fusermount3", "-uz", str(root / "bucket")], capture_output=True)


def test_healthcheck(moto_server, tmp_path, entrypoints):
    bucket = unique_bucket("ctr")
    moto_server.create_bucket(bucket)
    root = tmp_path / "root"
    plain = tmp_path / "plain-dir"
    plain.mkdir()
    assert healthcheck(plain).returncode == 1  # a directory is not a mount
    env = container_env(moto_server, bucket, root)
    entry = entrypoints(env).wait_mounted()
    assert healthcheck(entry.mountpoint).returncode == 0
    # The image's form: the mountpoint from the environment.
    health_env = {**clean_environ(), "AWS_S3_ROOTDIR": str(root)}
    result = subprocess.run([*ENTRYPOINT, "--healthcheck"], env=health_env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    # A hung filesystem: unhealthy within the timeout, not hung with it.
    os.kill(entry.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = healthcheck(entry.mountpoint, timeout=2)
        elapsed = time.monotonic() - started
    finally:
        os.kill(entry.process.pid, signal.SIGCONT)
    assert result.returncode == 1 and "no answer within 2 s" in result.stderr
    assert elapsed < 4, elapsed
    assert healthcheck(entry.mountpoint).returncode == 0
    assert entry.stop() == 0, entry.log()
    assert healthcheck(entry.mountpoint).returncode == 1  # unmounted


# -- stops that cannot upload ------------------------------------------------------------------


class FreezableProxy(Relay):
    """A TCP relay to a server that a test can freeze: requests then hang, as on a dead
    network, with the connections open (boto's pooled ones included)."""

    def __init__(self, server) -> None:
        self.server = server
        self.thawed = threading.Event()
        self.thawed.set()
        host, port = server.endpoint_url.rsplit("/", 1)[-1].split(":")
        super().__init__((host, int(port)))
        self.access_key, self.secret_key = server.access_key, server.secret_key
        self.endpoint_url = f"http://127.0.0.1:{self.port}"

    def create_bucket(self, name: str) -> None:
        self.server.create_bucket(name)

    def client(self):
        return self.server.client()

    def freeze(self) -> None:
        self.thawed.clear()

    def forward(self, data: bytes, sink: socket.socket) -> None:
        self.thawed.wait()
        sink.sendall(data)

    def close(self) -> None:
        self.thawed.set()
        super().close()


@pytest.fixture
def frozen_server(moto_server):
    """moto behind a relay the test can freeze."""
    proxy = FreezableProxy(moto_server)
    yield proxy
    proxy.close()


def _start_with_dirty_file(server, tmp_path, entrypoints, **extra):
    bucket = unique_bucket("ctr")
    server.create_bucket(bucket)
    entry = entrypoints(container_env(server, bucket, tmp_path / "root", **extra)).wait_mounted()
    handle = open(entry.mountpoint / "unsaved.bin", "wb")
    handle.write(os.urandom(100_000))
    handle.flush()  # in the staging file, dirty: only a close/fsync or the stop uploads it
    server.freeze()
    return entry, handle


def test_second_signal_gives_up(frozen_server, tmp_path, entrypoints):
    entry, handle = _start_with_dirty_file(frozen_server, tmp_path, entrypoints)
    started = time.monotonic()
    entry.process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert entry.process.poll() is None, "the upload hangs, the first signal must wait"
    status = entry.stop(signal.SIGTERM, timeout=30)
    elapsed = time.monotonic() - started
    close_quietly(handle)
    assert status == 1, entry.log()
    assert "ocifs: not uploaded: unsaved.bin" in entry.log()
    assert elapsed < 10, elapsed
    assert not is_mounted(entry.mountpoint)


def test_stop_timeout_gives_up(frozen_server, tmp_path, entrypoints):
    entry, handle = _start_with_dirty_file(frozen_server, tmp_path, entrypoints,
                                           OCIFS_STOP_TIMEOUT="2")
    started = time.monotonic()
    status = entry.stop(signal.SIGTERM, timeout=30)
    elapsed = time.monotonic() - started
    assert status == 1, entry.log()
    close_quietly(handle)
    assert "ocifs: not uploaded: unsaved.bin" in entry.log()
    assert 2 <= elapsed < 2 + container.BACKSTOP_SLACK + 3, elapsed
    assert not is_mounted(entry.mountpoint)


def close_quietly(handle) -> None:
    """The file was open on a mount that is gone: its close fails, as it should."""
    try:
        handle.close()
    except OSError:
        pass
