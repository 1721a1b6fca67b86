"""What the container's environment asks for: the efrecon/s3fs variables, checked, and
the ``ocifs mount`` options they become."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Mapping


from ocifs.run.mount import (MountError, MountSpec, parse_bucket)
from ocifs.run.options import MountOptions, OptionError, parse_options

log = logging.getLogger(__name__)

DEFAULT_URL = "https://s3.amazonaws.com"
DEFAULT_ROOTDIR = "/opt/s3fs"
DEFAULT_STOP_TIMEOUT = 30.0

# The old image's messages, word for word: scripts and people grep for them.
NO_CREDENTIALS = "You need to provide some credentials!!"
NO_BUCKET = "No bucket name provided!"

SECRET_VARIABLES = ("AWS_S3_ACCESS_KEY_ID", "AWS_S3_SECRET_ACCESS_KEY",
                    "AWS_S3_ACCESS_KEY_ID_FILE", "AWS_S3_SECRET_ACCESS_KEY_FILE")
_ENVFILE_LINE = re.compile(
    r"^\s*(?:export\s+)?(?P<name>(?:AWS_S3|S3FS|OCI|OCIFS)_[A-Z0-9_]+|UID|GID)=(?P<value>.*)$")


class ContainerError(Exception):
    """A reason the entrypoint cannot mount; its message is printed as is, on one line."""


# -- the environment -------------------------------------------------------------------------


def parse_envfile_value(raw: str) -> str:
    """``"x"``/``'x'`` lose their quotes; unquoted values lose a trailing `` # comment``."""
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return re.split(r"\s+#", value, maxsplit=1)[0].strip()


def read_envfile(path: str) -> dict[str, str]:
    """The variables an AWS_S3_ENVFILE sets; other lines (comments, anything else) are skipped,
    as the old image's ``grep`` did, so the file cannot set arbitrary variables."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ContainerError(f"cannot read AWS_S3_ENVFILE {path}: {exc.strerror}") from None
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _ENVFILE_LINE.match(line)
        if match:
            found[match["name"]] = parse_envfile_value(match["value"])
    return found


def load_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with AWS_S3_ENVFILE applied; the file wins, as in the old image."""
    env = dict(environ)
    if env.get("AWS_S3_ENVFILE"):
        env.update(read_envfile(env["AWS_S3_ENVFILE"]))
    return env


def _first_line(variable: str, path: str) -> str:
    """Docker secrets: the value is the first line of the file."""
    try:
        with open(path) as secret:
            line = secret.readline()
    except OSError as exc:
        raise ContainerError(f"cannot read {variable} {path}: {exc.strerror}") from None
    value = line.strip()
    if not value:
        raise ContainerError(f"{variable} {path} is empty")
    return value


def _int(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ContainerError(f"{name} must be a number, not {text!r}") from None
    if value < 0:
        raise ContainerError(f"{name} must not be negative")
    return value


def split_s3fs_args(text: str) -> tuple[list[str], bool]:
    """S3FS_ARGS as option items, with or without ``-o`` (``-o a,b -o c``, ``-oa``, ``a,b``);
    returns (items, debug) where ``-d`` asks for debug output as it does for s3fs."""
    items: list[str] = []
    debug = False
    for token in text.split():
        if token == "-o":
            continue
        if token.startswith("-o"):
            token = token[2:]
        elif token in ("-d", "-f"):
            debug = debug or token == "-d"  # -f: always in the foreground here
            continue
        elif token.startswith("-"):
            raise ContainerError(f"S3FS_ARGS: {token} is not supported (give -o options)")
        items.extend(item.strip() for item in token.split(",") if item.strip())
    return items, debug


@dataclasses.dataclass
class Settings:
    """What the environment asks for, checked; the secret never shows in a repr."""

    bucket: str
    url: str | None
    rootdir: Path
    mountpoint: Path
    authfile: Path | None
    access_key: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    uid: int | None = None
    gid: int | None = None
    debug: bool = False
    s3fs_args: list[str] = dataclasses.field(default_factory=list)
    region: str | None = None
    oci_namespace: str | None = None
    oci_region: str | None = None
    s3fs_compat: bool = False
    stop_timeout: float = DEFAULT_STOP_TIMEOUT

    @property
    def passwd_file(self) -> Path:
        """The user's AWS_S3_AUTHFILE, else the file this entrypoint generates."""
        return self.authfile or self.rootdir / "passwd-s3fs"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def rootdir_and_mountpoint(env: Mapping[str, str]) -> tuple[Path, Path]:
    rootdir = Path(env.get("AWS_S3_ROOTDIR") or DEFAULT_ROOTDIR)
    return rootdir, Path(env.get("AWS_S3_MOUNT") or rootdir / "bucket")


def _check_required(env: Mapping[str, str]) -> None:
    """The old image's two checks, in its order: some credentials, then a bucket."""
    if not any(env.get(name) for name in SECRET_VARIABLES + ("AWS_S3_AUTHFILE",)):
        raise ContainerError(NO_CREDENTIALS)
    if not env.get("AWS_S3_BUCKET"):
        raise ContainerError(NO_BUCKET)


def _credentials(env: Mapping[str, str]) -> tuple[Path | None, str, str]:
    """(authfile, key, secret): AWS_S3_AUTHFILE, when set, is used as is; a ``*_FILE`` beats
    the plain variable."""
    if env.get("AWS_S3_AUTHFILE"):
        return Path(env["AWS_S3_AUTHFILE"]), "", ""
    values = {}
    for name in ("AWS_S3_ACCESS_KEY_ID", "AWS_S3_SECRET_ACCESS_KEY"):
        path = env.get(f"{name}_FILE")
        values[name] = _first_line(f"{name}_FILE", path) if path else env.get(name, "")
        if not values[name]:
            raise ContainerError(f"{name} (or {name}_FILE) is not set")
    return None, values["AWS_S3_ACCESS_KEY_ID"], values["AWS_S3_SECRET_ACCESS_KEY"]


def read_settings(env: Mapping[str, str]) -> Settings:
    """Check the environment (after the envfile) and read secret files; no other I/O."""
    _check_required(env)
    authfile, key, secret = _credentials(env)
    rootdir, mountpoint = rootdir_and_mountpoint(env)
    args, dash_d = split_s3fs_args(env.get("S3FS_ARGS", ""))
    namespace, oci_region = env.get("OCI_NAMESPACE") or None, env.get("OCI_REGION") or None
    if (namespace is None) != (oci_region is None):
        raise ContainerError("OCI_NAMESPACE and OCI_REGION go together")
    try:
        stop_timeout = float(env.get("OCIFS_STOP_TIMEOUT") or DEFAULT_STOP_TIMEOUT)
    except ValueError:
        raise ContainerError("OCIFS_STOP_TIMEOUT must be a number of seconds") from None
    return Settings(
        bucket=env["AWS_S3_BUCKET"], url=env.get("AWS_S3_URL") or None, rootdir=rootdir,
        mountpoint=mountpoint, authfile=authfile, access_key=key, secret_key=secret,
        uid=_int(env, "UID"), gid=_int(env, "GID"),
        debug=env.get("S3FS_DEBUG", "").strip() == "1" or dash_d, s3fs_args=args,
        region=env.get("AWS_S3_REGION") or None, oci_namespace=namespace, oci_region=oci_region,
        s3fs_compat=_truthy(env.get("OCIFS_S3FS_COMPAT")), stop_timeout=stop_timeout)


def option_items(settings: Settings) -> list[str]:
    """The ``-o`` items, in the old image's order: S3FS_ARGS first, then what the variables
    set (so AWS_S3_URL, UID and GID win over the same option in S3FS_ARGS)."""
    items = ["dbglevel=warn"] + settings.s3fs_args  # docker logs show warnings unless S3FS_ARGS says
    items.append(f"passwd_file={settings.passwd_file}")
    if settings.url or not settings.oci_namespace:
        items.append(f"url={settings.url or DEFAULT_URL}")
    if settings.uid is not None:
        items.append(f"uid={settings.uid}")
    if settings.gid is not None:
        items.append(f"gid={settings.gid}")
    if settings.region:
        items.append(f"endpoint={settings.region}")
    if settings.oci_namespace:
        items += [f"oci_namespace={settings.oci_namespace}", f"oci_region={settings.oci_region}"]
    if settings.s3fs_compat:
        items += ["fsname=s3fs", "subtype=s3fs"]
    if settings.debug:
        items.append("dbglevel=dbg")
    return items


def mount_argv(settings: Settings) -> list[str]:
    """The equivalent ``ocifs mount`` command line (logged, and what a test can compare)."""
    return ["mount", settings.bucket, str(settings.mountpoint), "-o", ",".join(option_items(settings))]


def mount_options(settings: Settings) -> MountOptions:
    try:
        return parse_options([",".join(option_items(settings))])
    except OptionError as exc:
        raise ContainerError(f"ocifs: {exc}") from None


def mount_spec(settings: Settings) -> MountSpec:
    """What to mount, without touching the network or the mountpoint."""
    try:
        bucket, prefix = parse_bucket(settings.bucket)
    except MountError as exc:
        raise ContainerError(f"ocifs: {exc}") from None
    return MountSpec(bucket, prefix, str(settings.mountpoint), mount_options(settings),
                     foreground=True, stop_timeout=settings.stop_timeout)
