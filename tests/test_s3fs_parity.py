"""Parity with the real s3fs: the same ``-o`` option string, the same bucket, the same view.

One bucket (made with boto3, so neither tool wrote it) holds every kind of object s3fs knows:
files with and without ``x-amz-meta-*`` headers, directory markers with and without metadata,
an implicit directory, a symlink object and nested files.  For each option string of
:data:`OPTION_STRINGS` the bucket is mounted once by s3fs and once by ocifs with exactly that
string, and every path (the root included) must look the same through both: type, mode,
owner, size, file mtimes, contents, symlink targets and directory listings.  The only
differences allowed are the documented ones (README, "Where ocifs differs from s3fs-fuse"),
and those are asserted explicitly.

Bad invocations get the same treatment: the same arguments to both commands, both must fail
and leave nothing mounted.  Nothing is written through the mounts, so no cache option is
needed on either side.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import require_tool
from mounting import (OCIFS, OcifsMount, S3fsMount, _s3fs_pids, is_mounted, unique_bucket,
                      write_passwd)

DIR_CONTENT_TYPE = "application/x-directory"
SEC = 1_000_000_000

# The option strings run against both tools (the connection options are added to each).
OPTION_STRINGS = [
    "",
    "uid=1000,gid=1000",
    "umask=022",
    "umask=0077",
    "umask=0",
    "allow_other",
    "allow_other,mp_umask=022",
    "allow_other,mp_umask=077",
    "uid=1000,umask=027",
    "gid=2000",
    "allow_other,uid=1000,gid=1000,umask=002,mp_umask=002",
    # A compose file's S3FS_ARGS: every option Debian's s3fs 1.90 also takes that works on a
    # local server (1.90 refuses the newer ones: compat_dir, bucket_size, free_space_ratio,
    # update_parent_dir_stat, enable_unsigned_payload, insecure_logging, list_object_max_keys
    # below 1000, ...; tests/test_unit_s3fs_options.py covers those).  Not notsup_compat_dir:
    # in 1.90 it hides directories that have no object, which 1.91 made the default's opposite.
    "allow_other,mp_umask=022,umask=022,nonempty,multipart_size=10,parallel_count=5,"
    "multireq_max=5,max_stat_cache_size=1000,stat_cache_expire=60,stat_cache_interval_expire=60,"
    "enable_noobj_cache,retries=3,connect_timeout=10,readwrite_timeout=30,"
    "list_object_max_keys=1000,max_dirty_data=-1,nosscache,nodnscache,norenameapi,"
    "complement_stat,enable_content_md5,storage_class=STANDARD,noua,"
    "instance_name=parity,multipart_copy_size=512,singlepart_copy_limit=512,"
    "mime=/etc/mime.types,kernel_cache,nomixupload,dbglevel=warn,multipart_threshold=25,sigv4,"
    "listobjectsv2,requester_pays,no_time_stamp_msg,endpoint=us-east-1,"
    "default_acl=private,ensure_diskfree=100,use_xattr,use_wtf8,tmpdir=/tmp,"
    "cipher_suites=DEFAULT,big_writes",
]

# key -> (body, x-amz-meta-* headers or None, Content-Type or None)
OBJECTS: dict[str, tuple[bytes, dict[str, str] | None, str | None]] = {
    "plain.txt": (b"plain text, no metadata\n", None, None),
    "empty": (b"", None, None),
    "meta.txt": (b"with s3fs metadata\n",
                 {"mode": str(stat.S_IFREG | 0o604), "uid": "1234", "gid": "5678",
                  "mtime": "1600000000"}, None),
    "dir/": (b"", {"mode": str(stat.S_IFDIR | 0o751), "uid": "1234", "gid": "5678",
                   "mtime": "1600000001"}, DIR_CONTENT_TYPE),
    "dir/inner.txt": (b"inner\n", None, None),
    "dir/sub/deep.bin": (bytes(range(256)) * 3,
                         {"mode": str(stat.S_IFREG | 0o600), "uid": "42", "gid": "43",
                          "mtime": "1600000003.123456789"}, None),
    "bare/": (b"", None, None),  # a marker without metadata or content type, as other tools make
    "bare/x.txt": (b"xx", None, None),
    "imp/a/b.txt": (b"implicit parents\n", None, None),  # "imp/" and "imp/a/" have no marker
    "link": (b"plain.txt", {"mode": str(stat.S_IFLNK | 0o777), "mtime": "1600000002"}, None),
}

# What the bucket must look like through s3fs (so a broken setup cannot pass by being empty).
EXPECTED_PATHS = sorted(["", "plain.txt", "empty", "meta.txt", "dir", "dir/inner.txt", "dir/sub",
                         "dir/sub/deep.bin", "bare", "bare/x.txt", "imp", "imp/a", "imp/a/b.txt",
                         "link"])
# Directories with no marker object: their mtime differs on purpose (see test_mtimes).
IMPLICIT_DIRS = ("imp", "imp/a", "dir/sub")


# -- what a user sees ----------------------------------------------------------------------------


@dataclass
class Entry:
    """One path as ``lstat``/``readlink``/``read``/``listdir`` show it."""

    st_mode: str
    st_uid: int
    st_gid: int
    st_size: int
    st_mtime_ns: int
    kind: str  # "dir", "link" or "file"
    readlink: str | None = None
    content: bytes | None = None
    listing: list[str] | None = None

    def attrs(self) -> dict[str, Any]:
        return {"kind": self.kind, "st_mode": self.st_mode, "st_uid": self.st_uid,
                "st_gid": self.st_gid, "st_size": self.st_size}


def _entry(path: Path) -> Entry:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        kind = "dir"
    elif stat.S_ISLNK(st.st_mode):
        kind = "link"
    else:
        kind = "file"
    entry = Entry(oct(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, kind)
    if kind == "dir":
        entry.listing = sorted(os.listdir(path))
    elif kind == "link":
        entry.readlink = os.readlink(path)
    else:
        entry.content = path.read_bytes()
    return entry


def snapshot(root: Path) -> dict[str, Entry]:
    """Every path under ``root`` ("" is the root itself) -> what ``lstat`` & co. show."""
    result: dict[str, Entry] = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        entry = _entry(root / rel if rel else root)
        result[rel] = entry
        for name in entry.listing or ():
            pending.append(f"{rel}/{name}" if rel else name)
    return result


def differences(s3fs: dict[str, Entry], ocifs: dict[str, Entry], what) -> list[str]:
    """``path: {s3fs's values} != {ocifs's values}`` for every path where ``what`` differs."""
    lines = []
    for rel in sorted(set(s3fs) | set(ocifs)):
        if rel not in s3fs or rel not in ocifs:
            lines.append(f"{rel or '/'}: only through {'s3fs' if rel in s3fs else 'ocifs'}")
            continue
        a, b = what(rel, s3fs[rel]), what(rel, ocifs[rel])
        if a != b:
            keys = [k for k in a if a.get(k) != b.get(k)] if isinstance(a, dict) else None
            if keys:
                a, b = {k: a[k] for k in keys}, {k: b.get(k) for k in keys}
            lines.append(f"{rel or '/'}: s3fs {a} != ocifs {b}")
    return lines


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parity_bucket(moto_server) -> str:
    """One bucket laid out by boto3 (neither tool wrote it), shared by every test here."""
    bucket = unique_bucket("parity")
    moto_server.create_bucket(bucket)
    client = moto_server.client()
    for key, (body, meta, content_type) in OBJECTS.items():
        extra: dict[str, Any] = {}
        if meta is not None:
            extra["Metadata"] = meta
        if content_type is not None:
            extra["ContentType"] = content_type
        client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
    return bucket


@dataclass
class Views:
    """The bucket mounted by s3fs and by ocifs with the same option string."""

    options: str
    s3fs: S3fsMount
    ocifs: OcifsMount
    mounted_from_ns: int  # the clock just before ocifs was started ...
    mounted_until_ns: int  # ... and just after it returned
    _snaps: dict[str, dict[str, Entry]] = field(default_factory=dict, repr=False)

    def snap(self, side: str) -> dict[str, Entry]:
        if side not in self._snaps:
            self._snaps[side] = snapshot(getattr(self, side).mountpoint)
        return self._snaps[side]


def split(options: str) -> list[str]:
    return [o for o in options.split(",") if o]


@pytest.fixture(scope="module", params=OPTION_STRINGS, ids=lambda s: "compose-file" if len(s) > 80 else s or "defaults")
def views(request, moto_server, parity_bucket, tmp_path_factory) -> Views:
    """One s3fs mount and one ocifs mount per option string, shared by the tests of that string."""
    s3fs_binary = require_tool("s3fs")
    require_tool("fusermount3")
    options = split(request.param)
    base = tmp_path_factory.mktemp("parity")
    s3fs = S3fsMount(s3fs_binary, moto_server, parity_bucket, base / "s3fs", options)
    ocifs = OcifsMount(moto_server, parity_bucket, base / "ocifs", options)
    try:
        s3fs.mount()
        before = time.time_ns()
        ocifs.mount()
        after = time.time_ns()
        yield Views(request.param, s3fs, ocifs, before, after)
    finally:
        try:
            ocifs.umount()
        finally:
            s3fs.umount()
    assert not is_mounted(s3fs.mountpoint) and not is_mounted(ocifs.mountpoint)


# -- the same view through both ------------------------------------------------------------------


def test_same_paths_and_listings(views):
    """The same paths, and ``sorted(os.listdir())`` of every directory, root included."""
    s, o = views.snap("s3fs"), views.snap("ocifs")
    assert sorted(s) == EXPECTED_PATHS, "s3fs does not show the bucket as laid out"
    assert not differences(s, o, lambda rel, e: e.listing), \
        "\n".join(differences(s, o, lambda rel, e: e.listing))


def test_same_attributes(views):
    """Type (S_ISDIR/S_ISLNK), st_mode, st_uid, st_gid and st_size of every path, root included."""
    s, o = views.snap("s3fs"), views.snap("ocifs")
    diffs = differences(s, o, lambda rel, e: e.attrs())
    assert not diffs, f"-o {views.options or '(defaults)'}:\n" + "\n".join(diffs)


def test_same_contents_and_symlink_targets(views):
    """File contents (read through the mount) and ``readlink`` of symlinks."""
    s, o = views.snap("s3fs"), views.snap("ocifs")
    diffs = differences(s, o, lambda rel, e: {"content": e.content, "readlink": e.readlink})
    assert not diffs, "\n".join(diffs)
    assert s["link"].readlink == "plain.txt"
    # The symlink resolves to the same file through both.
    for side in ("s3fs", "ocifs"):
        mnt = getattr(views, side).mountpoint
        assert (mnt / "link").read_bytes() == OBJECTS["plain.txt"][0], side


def test_mtimes(views):
    """Files, symlinks and directories with a marker: the same mtime through both (to the ns).

    The root and implicit directories (no marker object) differ on purpose, README "Where ocifs
    differs from s3fs-fuse", row "mtime of implicit directories and of the mountpoint": s3fs
    shows -1 / 0 (1969/1970), ocifs the time of the mount.
    """
    s, o = views.snap("s3fs"), views.snap("ocifs")
    undocumented = [rel for rel in s if rel not in ("", *IMPLICIT_DIRS)]
    diffs = differences({r: s[r] for r in undocumented}, {r: o[r] for r in undocumented if r in o},
                        lambda rel, e: e.st_mtime_ns)
    assert not diffs, "\n".join(diffs)
    assert s["meta.txt"].st_mtime_ns == 1_600_000_000 * SEC
    assert s["dir/sub/deep.bin"].st_mtime_ns == 1_600_000_003_123_456_789
    # The documented difference, asserted as documented.
    slack = 2 * SEC
    for rel in ("", *IMPLICIT_DIRS):
        assert s[rel].st_mtime_ns <= 0, (rel or "/", s[rel].st_mtime_ns)
        assert views.mounted_from_ns - slack <= o[rel].st_mtime_ns <= views.mounted_until_ns + slack, \
            (rel or "/", o[rel].st_mtime_ns, views.mounted_from_ns, views.mounted_until_ns)


# -- the s3fs argv form of ocifs -----------------------------------------------------------------


@pytest.mark.parametrize("flags", [["-f", "-d"], ["-d", "-d"]], ids=["foreground-d", "daemon-dd"])
def test_s3fs_argv_form_same_as_mount(moto_server, parity_bucket, tmp_path, flags):
    """``python -m ocifs BUCKET MNT -o a,b -o c -o d -f -d`` mounts what ``ocifs mount`` mounts:
    every ``-o`` counts (the last one carries uid/umask) and ``-d`` is accepted."""
    require_tool("fusermount3")
    reference = OcifsMount(moto_server, parity_bucket, tmp_path / "reference",
                           ["uid=1000", "umask=027"])
    mountpoint = tmp_path / "argv-form"
    mountpoint.mkdir()
    passwd = write_passwd(tmp_path, moto_server.access_key, moto_server.secret_key)
    argv = [*OCIFS, parity_bucket, str(mountpoint),
            "-o", f"url={moto_server.endpoint_url},use_path_request_style",
            "-o", f"passwd_file={passwd}",
            "-o", "uid=1000,umask=027", *flags]
    errlog = tmp_path / "argv-form.stderr"
    proc: subprocess.Popen | None = None
    try:
        reference.mount()
        with open(errlog, "w") as err:
            if "-f" in flags:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=err)
                deadline = time.monotonic() + 60
                while not is_mounted(mountpoint):
                    assert proc.poll() is None and time.monotonic() < deadline, \
                        f"the s3fs form did not mount: {errlog.read_text()}"
                    time.sleep(0.05)
            else:
                result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=err, timeout=120)
                assert result.returncode == 0, errlog.read_text()
                assert is_mounted(mountpoint)
        want, got = snapshot(reference.mountpoint), snapshot(mountpoint)
        # Both are ocifs mounts, made at different times: root/implicit mtimes are mount times.
        comparable = [rel for rel in want if rel not in ("", *IMPLICIT_DIRS)]
        diffs = differences(want, got, lambda rel, e: (
            {**e.attrs(), "listing": e.listing, "readlink": e.readlink, "content": e.content,
             "mtime": e.st_mtime_ns if rel in comparable else None}))
        assert not diffs, "\n".join(diffs)
        assert sorted(got) == EXPECTED_PATHS
        assert {e.st_uid for e in got.values()} == {1000}
        assert {stat.S_IMODE(int(e.st_mode, 8)) for e in got.values() if e.kind != "link"} == {0o750}
        if "-f" in flags:
            # -d in the foreground logs at info level to stderr.
            assert errlog.read_text().strip(), "-f -d logged nothing to stderr"
            unmount = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True,
                                     text=True, timeout=60)
            assert unmount.returncode == 0, unmount.stderr
            assert proc.wait(timeout=60) == 0, errlog.read_text()
    finally:
        if is_mounted(mountpoint):
            subprocess.run([*OCIFS, "umount", str(mountpoint)], capture_output=True, timeout=120)
        if is_mounted(mountpoint):
            subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)
        if proc is not None and proc.poll() is None:
            proc.wait(timeout=60)
        reference.umount()
    assert not is_mounted(mountpoint)


# -- bad invocations: the same arguments to both -------------------------------------------------


def _processes_for(mountpoint: Path) -> list[str]:
    """Live processes (s3fs or ocifs) whose command line names ``mountpoint``."""
    wanted = os.fsencode(str(mountpoint))
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if wanted in argv:
            found.append(f"{pid}: {b' '.join(argv).decode(errors='replace')}")
    return found


def _nothing_left(mountpoint: Path, timeout: float = 10) -> list[str]:
    """Wait until nothing is mounted at ``mountpoint`` and no process serves it; what is left."""
    deadline = time.monotonic() + timeout
    while True:
        left = (["mounted"] if is_mounted(mountpoint) else []) + _processes_for(mountpoint)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@dataclass
class Outcome:
    tool: str
    returncode: int
    stderr: str
    left: list[str]  # what remained after the command (mount, processes)

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


class BadMount:
    """Runs the same bucket/mountpoint/``-o`` arguments through s3fs and through ocifs."""

    def __init__(self, server, tmp_path: Path) -> None:
        self.server = server
        self.tmp_path = tmp_path
        self.bucket = unique_bucket("bad")
        server.create_bucket(self.bucket)
        self.touched: list[Path] = []

    def passwd(self, mode: int = 0o600, secret: str | None = None) -> Path:
        return write_passwd(self.tmp_path, self.server.access_key,
                            secret or self.server.secret_key, mode=mode)

    def mountpoint(self, name: str) -> Path:
        path = self.tmp_path / name
        path.mkdir(exist_ok=True)
        return path

    def connection(self, passwd: Path | None) -> str:
        opts = [f"url={self.server.endpoint_url}", "use_path_request_style"]
        if passwd is not None:
            opts.append(f"passwd_file={passwd}")
        return ",".join(opts)

    def run(self, tool: str, mountpoint: Path, options: str, bucket: str | None = None,
            env: dict[str, str] | None = None, settle: float = 10) -> Outcome:
        self.touched.append(mountpoint)
        head = [require_tool("s3fs")] if tool == "s3fs" else [*OCIFS]
        argv = [*head, bucket or self.bucket, str(mountpoint), "-o", options]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env,
                                stdin=subprocess.DEVNULL)
        return Outcome(tool, result.returncode, result.stderr, _nothing_left(mountpoint, settle))

    def both(self, mountpoints: dict[str, Path], options: str, **kw) -> dict[str, Outcome]:
        return {tool: self.run(tool, mountpoints[tool], options, **kw) for tool in ("s3fs", "ocifs")}

    def cleanup(self) -> None:
        for mountpoint in self.touched:
            if is_mounted(mountpoint):
                subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)
        for mountpoint in self.touched:
            for pid in _s3fs_pids(mountpoint):  # an s3fs daemon this test started
                subprocess.run(["kill", str(pid)], capture_output=True)


@pytest.fixture
def bad(moto_server, tmp_path):
    require_tool("s3fs")
    require_tool("fusermount3")
    runner = BadMount(moto_server, tmp_path)
    yield runner
    runner.cleanup()


def _assert_failed(outcome: Outcome, *needles: str) -> str:
    """Non-zero exit, nothing left, one line on stderr containing every needle (any case)."""
    where = f"{outcome.tool}: exit {outcome.returncode}, stderr {outcome.stderr!r}"
    assert outcome.returncode != 0, where
    assert not outcome.left, f"{where}; left behind: {outcome.left}"
    assert len(outcome.lines) == 1, where
    line = outcome.lines[0]
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {where}"
    if outcome.tool == "ocifs":
        assert line.startswith("ocifs:"), where
    return line


def _pair_of_dirs(bad: BadMount) -> dict[str, Path]:
    return {"s3fs": bad.mountpoint("mnt-s3fs"), "ocifs": bad.mountpoint("mnt-ocifs")}


def test_unknown_option(bad):
    out = bad.both(_pair_of_dirs(bad), bad.connection(bad.passwd()) + ",foo_bar")
    # README "Where ocifs differs", row "unknown option message": fuse's words vs ocifs's.
    assert _assert_failed(out["s3fs"], "foo_bar") == "fuse: unknown option `foo_bar'"
    assert _assert_failed(out["ocifs"], "foo_bar") == "ocifs: unknown option: foo_bar"


@pytest.mark.parametrize("mode, who", [(0o644, "others"), (0o640, "group")], ids=["0644", "0640"])
def test_passwd_file_permissions(bad, mode, who):
    passwd = bad.passwd(mode=mode)
    out = bad.both(_pair_of_dirs(bad), bad.connection(passwd))
    for tool in ("s3fs", "ocifs"):
        line = _assert_failed(out[tool], str(passwd), who)
        assert bad.server.secret_key not in out[tool].stderr
        assert line.startswith(f"{tool}:"), line


def test_missing_mountpoint(bad):
    missing = bad.tmp_path / "no-such-dir"
    out = bad.both({"s3fs": missing, "ocifs": missing}, bad.connection(bad.passwd()))
    for tool in ("s3fs", "ocifs"):
        _assert_failed(out[tool], str(missing))
    assert not missing.exists()


def test_mountpoint_is_a_file(bad):
    afile = bad.tmp_path / "a-file"
    afile.write_text("not a directory\n")
    out = bad.both({"s3fs": afile, "ocifs": afile}, bad.connection(bad.passwd()))
    for tool in ("s3fs", "ocifs"):
        _assert_failed(out[tool], str(afile), "not a directory")
    assert afile.read_text() == "not a directory\n"


def test_missing_passwd_file(bad):
    missing = bad.tmp_path / "no-such-passwd"
    out = bad.both(_pair_of_dirs(bad), bad.connection(missing))
    for tool in ("s3fs", "ocifs"):
        _assert_failed(out[tool], "passwd")


def test_no_credentials_at_all(bad):
    if Path("/etc/passwd-s3fs").exists():
        pytest.skip("/etc/passwd-s3fs exists on this machine")
    home = bad.tmp_path / "empty-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(home)
    out = bad.both(_pair_of_dirs(bad), bad.connection(None), env=env)
    for tool in ("s3fs", "ocifs"):
        _assert_failed(out[tool], "credentials")


# README "Where ocifs differs", row "nonexistent bucket, wrong keys, unreachable endpoint": s3fs
# exits 0 and its mount disappears later; ocifs checks first, prints one line and exits 1.


def _assert_s3fs_gives_up_later(outcome: Outcome) -> None:
    assert outcome.returncode == 0, f"s3fs 1.90 exits 0 here (README); got {outcome}"
    assert not outcome.left, f"s3fs left {outcome.left} behind"


def test_nonexistent_bucket(bad):
    missing = unique_bucket("missing")
    out = bad.both(_pair_of_dirs(bad), bad.connection(bad.passwd()), bucket=missing)
    _assert_s3fs_gives_up_later(out["s3fs"])
    line = _assert_failed(out["ocifs"], missing)
    assert "nosuchbucket" in line.lower() or "does not exist" in line.lower(), line


def test_wrong_keys(seaweed_server, tmp_path):
    """moto accepts any keys; SeaweedFS checks them."""
    require_tool("s3fs")
    require_tool("fusermount3")
    runner = BadMount(seaweed_server, tmp_path)
    try:
        secret = "WrongSecret" + os.urandom(8).hex()
        out = runner.both(_pair_of_dirs(runner), runner.connection(runner.passwd(secret=secret)))
        _assert_s3fs_gives_up_later(out["s3fs"])
        line = _assert_failed(out["ocifs"], runner.bucket)
        assert any(word in line.lower() for word in (
            "signaturedoesnotmatch", "accessdenied", "invalidaccesskeyid", "forbidden", "403")), line
        assert secret not in out["ocifs"].stderr
    finally:
        runner.cleanup()
