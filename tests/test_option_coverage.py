"""Each option in README's table does what it says: a test here fails if the option is ignored.

Options whose effect is on the boto3 client are checked on the store ``ocifs`` builds from them;
options with a visible effect are checked on a real mount.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import subprocess
import sys
import time

import pytest

from mounting import OcifsMount, unique_bucket
from ocifs.s3.credentials import Credentials
from ocifs.run.mount import MountSpec, build_store
from ocifs.run.options import parse_options
from ocifs.units import MiB


def store_for(option_string: str):
    spec = MountSpec("bucket", "", "/mnt", parse_options([option_string]),
                     credentials=Credentials("key", "secret"))
    return build_store(spec)


def test_client_options_reach_the_store():
    store = store_for("url=http://127.0.0.1:9,endpoint=eu-frankfurt-1,use_path_request_style,"
                      "retries=7,connect_timeout=11,readwrite_timeout=13,max_thread_count=3,"
                      "parallel_count=4,multipart_size=6,multipart_threshold=30,"
                      "singlepart_copy_limit=100,multipart_copy_size=50")
    config = store.client.meta.config
    assert store.client.meta.endpoint_url == "http://127.0.0.1:9"
    assert store.client.meta.region_name == "eu-frankfurt-1"
    assert config.s3["addressing_style"] == "path"
    assert config.retries["total_max_attempts"] == 8
    assert (config.connect_timeout, config.read_timeout) == (11, 13)
    assert store.limiter.total_tokens == 3
    assert store.upload_config.max_request_concurrency == 4
    assert (store.upload_config.multipart_chunksize, store.upload_config.multipart_threshold) == (6 * MiB, 30 * MiB)
    assert (store.copy_config.multipart_threshold, store.copy_config.multipart_chunksize) == (100 * MiB, 50 * MiB)


def test_client_defaults_match_s3fs():
    store = store_for("")
    config = store.client.meta.config
    assert store.client.meta.endpoint_url == "https://s3.amazonaws.com"
    assert store.client.meta.region_name == "us-east-1"
    assert config.s3["addressing_style"] == "auto"
    assert config.retries["total_max_attempts"] == 6
    assert (config.connect_timeout, config.read_timeout) == (300, 120)
    assert (store.upload_config.multipart_chunksize, store.upload_config.multipart_threshold) == (10 * MiB, 25 * MiB)
    assert store.copy_config.multipart_threshold == 512 * MiB


@pytest.fixture(scope="module")
def bucket(moto_server):
    name = unique_bucket("cover")
    moto_server.create_bucket(name)
    return name


def test_stat_cache_expire(moto_server, bucket, mount_factory):
    client = moto_server.client()
    client.put_object(Bucket=bucket, Key="cached.txt", Body=b"one")
    cached = mount_factory(moto_server, bucket).mount()
    fresh = mount_factory(moto_server, bucket, ["stat_cache_expire=0"]).mount()
    assert (cached.mountpoint / "cached.txt").stat().st_size == 3
    assert (fresh.mountpoint / "cached.txt").stat().st_size == 3
    client.put_object(Bucket=bucket, Key="cached.txt", Body=b"three")
    time.sleep(1.5)  # past the kernel's own attribute timeout
    assert (cached.mountpoint / "cached.txt").stat().st_size == 3  # 900 s cache: not seen yet
    assert (fresh.mountpoint / "cached.txt").stat().st_size == 5
    assert (fresh.mountpoint / "cached.txt").read_bytes() == b"three"


def test_max_stat_cache_size(moto_server, bucket, mount_factory):
    client = moto_server.client()
    for name in ("a", "b", "c"):
        client.put_object(Bucket=bucket, Key=f"lru/{name}", Body=b"1")
    small = mount_factory(moto_server, bucket, ["max_stat_cache_size=1"]).mount()
    for name in ("a", "b", "c"):
        (small.mountpoint / "lru" / name).stat()
    client.put_object(Bucket=bucket, Key="lru/a", Body=b"22")
    time.sleep(1.5)
    assert (small.mountpoint / "lru" / "a").stat().st_size == 2  # evicted, so fetched again


@pytest.mark.parametrize("options,fsname,fstype", [
    (["fsname=s3fs", "subtype=s3fs"], "s3fs", "fuse.s3fs"),
    (["s3fs_mtab"], "s3fs", "fuse.s3fs"),
    (["fsname=mybackup"], "mybackup", "fuse.ocifs"),
])
def test_fsname_and_subtype(moto_server, bucket, mount_factory, options, fsname, fstype):
    mount = mount_factory(moto_server, bucket, options).mount()
    with open("/proc/mounts") as mounts:
        line = next(line for line in mounts if line.split()[1] == str(mount.mountpoint))
    assert (line.split()[0], line.split()[2]) == (fsname, fstype)


def test_multipart_copy_above_singlepart_copy_limit(moto_server, bucket, mount_factory):
    client = moto_server.client()
    mount = mount_factory(moto_server, bucket, ["singlepart_copy_limit=5", "multipart_copy_size=5"]).mount()
    data = os.urandom(11 * MiB)
    (mount.mountpoint / "big.bin").write_bytes(data)
    os.rename(mount.mountpoint / "big.bin", mount.mountpoint / "moved.bin")
    assert client.head_object(Bucket=bucket, Key="moved.bin")["ETag"].endswith('-3"')
    assert client.get_object(Bucket=bucket, Key="moved.bin")["Body"].read() == data
    meta = client.head_object(Bucket=bucket, Key="moved.bin")["Metadata"]
    assert "mode" in meta and "mtime" in meta  # s3fs metadata survives a multipart copy


def test_no_effect_options_are_accepted_with_a_warning(moto_server, bucket, mount_factory):
    mount = mount_factory(moto_server, bucket, ["sigv2", "nonempty", "default_acl=private", "dbglevel=warn"])
    mount.mount()
    log = mount.log_text()
    for name in ("sigv2", "nonempty", "default_acl"):
        assert f"option {name} has no effect" in log


def _run_mount(argv: list[str], env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "ocifs", *argv], capture_output=True, text=True,
                          env=env, timeout=60)


def test_dash_d_raises_the_log_level(moto_server, bucket, tmp_path):
    mount = OcifsMount(moto_server, bucket, tmp_path / "mnt")
    opts = (f"url={moto_server.endpoint_url},use_path_request_style,passwd_file={mount.passwd},"
            f"logfile={mount.logfile}")
    result = _run_mount([bucket, str(mount.mountpoint), "-o", opts, "-d"])  # s3fs's argv form
    try:
        assert result.returncode == 0, result.stderr
        (mount.mountpoint / "d.txt").write_text("d")
    finally:
        mount.umount()
    assert "uploaded d.txt" in mount.log_text()  # an info line; the default level is crit


def test_profile_from_aws_credentials_file(seaweed_server, tmp_path):
    bucket = unique_bucket("profile")
    seaweed_server.create_bucket(bucket)
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = nope\naws_secret_access_key = nope\n"
        f"[work]\naws_access_key_id = {seaweed_server.access_key}\n"
        f"aws_secret_access_key = {seaweed_server.secret_key}\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(home)
    opts = f"url={seaweed_server.endpoint_url},use_path_request_style"
    wrong = _run_mount(["mount", bucket, str(mnt), "-o", opts], env)
    assert wrong.returncode != 0  # [default] holds wrong keys: SeaweedFS refuses them
    right = _run_mount(["mount", bucket, str(mnt), "-o", opts + ",profile=work"], env)
    try:
        assert right.returncode == 0, right.stderr
        (mnt / "p.txt").write_text("p")
    finally:
        _run_mount(["umount", str(mnt)])
    assert seaweed_server.client().get_object(Bucket=bucket, Key="p.txt")["Body"].read() == b"p"


def test_help_lists_every_option_with_its_default():
    from ocifs.run.options import NO_EFFECT, MountOptions
    result = subprocess.run([sys.executable, "-m", "ocifs", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for field in MountOptions.specs():
        line = next((l for l in result.stdout.splitlines() if l.strip().startswith(field.name + " ")), None)
        assert line is not None, field.name
        assert "(default:" in line
    for name in NO_EFFECT:
        assert name in result.stdout


def test_readme_table_names_every_option():
    from pathlib import Path
    from ocifs.run.options import MountOptions
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for field in MountOptions.specs():
        assert f"`{field.name}`" in readme, field.name


def test_kernel_mount_flags_and_read_only(moto_server, bucket, mount_factory):
    """``ro`` and ``noatime`` reach the kernel as s3fs passes them: a read-only
    mount reads, refuses every change with EROFS and writes nothing to the bucket."""
    client = moto_server.client()
    client.put_object(Bucket=bucket, Key="ro/kept.txt", Body=b"kept")
    before = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    mount = mount_factory(moto_server, bucket, ["ro", "noatime"]).mount()
    with open("/proc/mounts") as mounts:
        line = next(line for line in mounts if line.split()[1] == str(mount.mountpoint))
    flags = line.split()[3].split(",")
    assert "ro" in flags and "noatime" in flags
    root = mount.mountpoint
    assert (root / "ro" / "kept.txt").read_bytes() == b"kept"
    for change in (lambda: (root / "ro" / "new").write_bytes(b"x"),
                   lambda: (root / "ro" / "kept.txt").write_bytes(b"y"),
                   lambda: os.mkdir(root / "ro" / "d"),
                   lambda: os.chmod(root / "ro" / "kept.txt", 0o600),
                   lambda: os.unlink(root / "ro" / "kept.txt")):
        with pytest.raises(OSError) as refused:
            change()
        assert refused.value.errno == errno.EROFS
    mount.umount()
    assert sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]) == before


@pytest.mark.parametrize("direct_io", [False, True], ids=["page-cache", "direct_io"])
def test_direct_io_bypasses_the_page_cache(moto_server, bucket, mount_factory, direct_io):
    """With ``direct_io`` file data skips the kernel's page cache, which the kernel shows by
    refusing a shared memory mapping (ENODEV); reads and writes work as before."""
    mount = mount_factory(moto_server, bucket, ["direct_io"] if direct_io else []).mount()
    path = mount.mountpoint / f"dio-{direct_io}.bin"
    data = os.urandom(300_001)
    path.write_bytes(data)
    assert path.read_bytes() == data
    with open(path, "r+b") as f:
        if direct_io:
            with pytest.raises(OSError) as refused:
                mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED)
            assert refused.value.errno == errno.ENODEV
        else:
            with mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED) as mapped:
                assert mapped[:100] == data[:100]


def test_attr_timeout_is_the_kernels(moto_server, bucket, mount_factory):
    """``attr_timeout=N`` lets the kernel keep attributes N seconds, over ocifs's own choice
    (with ``stat_cache_expire=0``: none): another mount's chmod is not seen until it ends."""
    fresh = mount_factory(moto_server, bucket, ["stat_cache_expire=0"]).mount()
    held = mount_factory(moto_server, bucket, ["stat_cache_expire=0", "attr_timeout=30",
                                               "entry_timeout=30"]).mount()
    writer = mount_factory(moto_server, bucket, ["stat_cache_expire=0"]).mount()
    (writer.mountpoint / "timeouts.txt").write_bytes(b"t")
    os.chmod(writer.mountpoint / "timeouts.txt", 0o644)
    for mount in (fresh, held):
        assert stat.S_IMODE(os.stat(mount.mountpoint / "timeouts.txt").st_mode) == 0o644
    os.chmod(writer.mountpoint / "timeouts.txt", 0o600)
    assert stat.S_IMODE(os.stat(fresh.mountpoint / "timeouts.txt").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(held.mountpoint / "timeouts.txt").st_mode) == 0o644
