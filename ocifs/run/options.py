"""The ``-o`` option table: names, meanings, defaults and parsing, as s3fs spells them.

One dataclass field per option is the single source of truth: the parser, ``--help`` and the
README table are all derived from it.  Unknown options fail the mount with a message naming
them; fstab-only words are accepted and ignored, as s3fs does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Iterable

from ocifs.s3 import oci

log = logging.getLogger(__name__)

DBG_LEVELS = {"crit": logging.CRITICAL, "critical": logging.CRITICAL, "err": logging.ERROR,
              "error": logging.ERROR, "warn": logging.WARNING, "warning": logging.WARNING,
              "info": logging.INFO, "dbg": logging.DEBUG, "debug": logging.DEBUG}

# Words mount(8) and fstab pass along that mean nothing to a FUSE filesystem.
FSTAB_WORDS = frozenset({"auto", "noauto", "user", "nouser", "users", "_netdev", "defaults",
                         "rw", "nofail", "dev", "nodev", "suid", "nosuid", "exec", "noexec"})

# s3fs options that are accepted for compatibility but have no effect in ocifs.
NO_EFFECT = {
    "nonempty": "FUSE 3 mounts over non-empty directories anyway",
    "sigv2": "ocifs always signs with SigV4",
    "sigv4": "ocifs always signs with SigV4",
    "default_acl": "ACLs are not sent (OCI has none)",
    "nomixupload": "ocifs always copies unchanged ranges of an object server-side",
    "enable_content_md5": "uploads are not checksummed beyond what the store requires",
    "enable_noobj_cache": "the negative cache is always on",
    "notsup_compat_dir": "ocifs does not use _$folder$ objects",
    "complement_stat": "ocifs always fills in missing attributes",
    "nocopyapi": "ocifs always uses server-side copies",
    "norenameapi": "ocifs always renames with server-side copies",
    "streamupload": "ocifs always uploads big sequential writes while they are written",
    "use_xattr": "extended attributes are not supported",
}


class OptionError(ValueError):
    """A bad ``-o`` option; the message names it."""


def _opt(help: str, kind: str = "str", **extra: Any) -> dict[str, Any]:
    return {"help": help, "kind": kind, **extra}


@dataclasses.dataclass
class MountOptions:
    """Parsed mount options.  Field metadata holds the help text and the value kind."""

    url: str = dataclasses.field(default="https://s3.amazonaws.com", metadata=_opt(
        "endpoint URL of the S3 service (http:// or https://)"))
    endpoint: str = dataclasses.field(default="us-east-1", metadata=_opt(
        "region used to sign requests (SigV4); alias: region"))
    oci_namespace: str | None = dataclasses.field(default=None, metadata=_opt(
        "OCI Object Storage namespace; with oci_region sets url, path style and region"))
    oci_region: str | None = dataclasses.field(default=None, metadata=_opt(
        "OCI region, e.g. eu-frankfurt-1; with oci_namespace"))
    use_path_request_style: bool = dataclasses.field(default=False, metadata=_opt(
        "path-style requests (http://host/bucket/key), needed by OCI and most S3 clones", "flag"))
    passwd_file: str | None = dataclasses.field(default=None, metadata=_opt(
        "file with KEY:SECRET or BUCKET:KEY:SECRET lines; no group/other permissions"))
    profile: str = dataclasses.field(default="default", metadata=_opt(
        "profile in ~/.aws/credentials"))
    allow_other: bool = dataclasses.field(default=False, metadata=_opt(
        "let users other than the mounting one use the mount", "flag"))
    default_permissions: bool = dataclasses.field(default=True, metadata=_opt(
        "kernel enforces file modes (always on in ocifs)", "flag"))
    uid: int | None = dataclasses.field(default=None, metadata=_opt(
        "owner uid shown for every file", "int"))
    gid: int | None = dataclasses.field(default=None, metadata=_opt(
        "owner gid shown for every file", "int"))
    umask: int | None = dataclasses.field(default=None, metadata=_opt(
        "permission bits of every object become 0777 & ~umask (octal)", "octal"))
    mp_umask: int | None = dataclasses.field(default=None, metadata=_opt(
        "with allow_other, the mountpoint shows 0777 & ~mp_umask (else 0700) (octal)", "octal"))
    dbglevel: str = dataclasses.field(default="crit", metadata=_opt(
        "log level: crit, err, warn, info or dbg", "choice", choices=tuple(DBG_LEVELS)))
    logfile: str | None = dataclasses.field(default=None, metadata=_opt(
        "write the log to this file instead of syslog/stderr"))
    retries: int = dataclasses.field(default=5, metadata=_opt(
        "retries of a failed request (5xx, 429, timeouts) with backoff", "int"))
    connect_timeout: int = dataclasses.field(default=300, metadata=_opt(
        "seconds to wait for a connection", "int"))
    readwrite_timeout: int = dataclasses.field(default=120, metadata=_opt(
        "seconds to wait for data on a connection", "int"))
    parallel_count: int = dataclasses.field(default=5, metadata=_opt(
        "parts of one multipart upload or copy in flight", "int"))
    max_thread_count: int = dataclasses.field(default=10, metadata=_opt(
        "requests to the store in flight at once (worker threads)", "int"))
    multipart_size: int = dataclasses.field(default=10, metadata=_opt(
        "part size in MiB for multipart uploads (5..5120)", "int"))
    multipart_threshold: int = dataclasses.field(default=25, metadata=_opt(
        "files of at least this many MiB are uploaded as multipart", "int"))
    singlepart_copy_limit: int = dataclasses.field(default=512, metadata=_opt(
        "objects larger than this many MiB are copied (rename, chmod) with multipart copy", "int"))
    multipart_copy_size: int = dataclasses.field(default=512, metadata=_opt(
        "part size in MiB of multipart copies (5..5120)", "int"))
    nomultipart: bool = dataclasses.field(default=False, metadata=_opt(
        "never use multipart uploads (single PUT, objects up to 5 GiB)", "flag"))
    max_dirty_data: int = dataclasses.field(default=5120, metadata=_opt(
        "upload a file being written once this many MiB are unsaved (-1: only at flush)", "signed"))
    use_cache: str | None = dataclasses.field(default=None, metadata=_opt(
        "directory of the persistent data cache and of local copies of files being written"))
    del_cache: bool = dataclasses.field(default=False, metadata=_opt(
        "delete this bucket's files in the use_cache directory at mount and at unmount", "flag"))
    ensure_diskfree: int = dataclasses.field(default=0, metadata=_opt(
        "MiB to keep free on the cache disk: cached data is evicted, then writes get ENOSPC "
        "(0: min(1 GiB, 10% of the disk) for cached data)", "int"))
    read_ahead_kb: int = dataclasses.field(default=1024, metadata=_opt(
        "kernel read-ahead of the mount in KiB: bigger read requests (root only; 0: kernel default)",
        "int"))
    curldbg: bool = dataclasses.field(default=False, metadata=_opt(
        "log every HTTP request and response header (secrets redacted)", "flag"))
    stop_timeout: float | None = dataclasses.field(default=None, metadata=_opt(
        "seconds a stop (signal, umount) may spend uploading before it gives up, keeping the "
        "data in recovery copies (default: no limit)", "float"))
    stat_cache_expire: float = dataclasses.field(default=900.0, metadata=_opt(
        "seconds an object's attributes are cached", "float"))
    max_stat_cache_size: int = dataclasses.field(default=100000, metadata=_opt(
        "entries in the attribute cache", "int"))
    fast_list: bool = dataclasses.field(default=False, metadata=_opt(
        "listings take size and date from ListObjectsV2, without a HEAD per object "
        "(s3fs's mode, owner and mtime headers are not shown for listed entries)", "flag"))
    fsname: str | None = dataclasses.field(default=None, metadata=_opt(
        "filesystem name shown in /proc/mounts (default ocifs#BUCKET)"))
    subtype: str = dataclasses.field(default="ocifs", metadata=_opt(
        "filesystem subtype shown in /proc/mounts as fuse.SUBTYPE"))
    s3fs_mtab: bool = dataclasses.field(default=False, metadata=_opt(
        "show the mount as s3fs does (s3fs ... fuse.s3fs) for tools that look for it", "flag"))
    ignored: list[str] = dataclasses.field(default_factory=list, metadata={"internal": True})
    notices: list[str] = dataclasses.field(default_factory=list, metadata={"internal": True})

    @property
    def log_level(self) -> int:
        return DBG_LEVELS[self.dbglevel]

    @classmethod
    def specs(cls) -> list[dataclasses.Field]:
        """The user-visible options, in table order."""
        return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


ALIASES = {"region": "endpoint", "mount_uid": "uid", "mount_gid": "gid"}


def _convert(field: dataclasses.Field, value: str | None) -> Any:
    kind = field.metadata["kind"]
    name = field.name
    if kind == "flag":
        if value is None or value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise OptionError(f"option {name} takes no value or true/false, not {value!r}")
    if value is None or value == "":
        raise OptionError(f"option {name} needs a value ({name}=...)")
    try:
        if kind in ("int", "signed"):
            number = int(value, 10)
            if number < (-1 if kind == "signed" else 0):
                raise ValueError
            return number
        if kind == "octal":
            number = int(value, 8)
            if not 0 <= number <= 0o7777:
                raise ValueError
            return number
        if kind == "float":
            number = float(value)
            if number < 0:
                raise ValueError
            return number
    except ValueError:
        raise OptionError(f"option {name} has a bad value {value!r}") from None
    if kind == "choice" and value.lower() not in field.metadata["choices"]:
        raise OptionError(f"option {name}={value} is not one of {', '.join(field.metadata['choices'])}")
    return value.lower() if kind == "choice" else value


def split_option_string(text: str) -> list[str]:
    """Split ``a,b=c,d`` into items (values in this table never contain commas)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_options(option_strings: Iterable[str]) -> MountOptions:
    """Parse the ``-o`` strings (each ``a,b=c``) into :class:`MountOptions`."""
    fields = {f.name: f for f in MountOptions.specs()}
    values: dict[str, Any] = {}
    ignored: list[str] = []
    for text in option_strings:
        for item in split_option_string(text):
            name, sep, raw = item.partition("=")
            name = name.strip()
            name = ALIASES.get(name, name)
            value = raw if sep else None
            if name in FSTAB_WORDS:
                continue
            if name in NO_EFFECT:
                ignored.append(name)
                continue
            field = fields.get(name)
            if field is None:
                raise OptionError(f"unknown option: {name}")
            values[name] = _convert(field, value)
    options = MountOptions(**values)
    options.ignored = ignored
    _apply_oci(options, region_given="endpoint" in values)
    if options.s3fs_mtab:
        options.fsname, options.subtype = "s3fs", "s3fs"
    _validate(options)
    return options


def _apply_oci(options: MountOptions, region_given: bool) -> None:
    """OCI's S3 Compatibility API: path-style requests signed with the OCI region."""
    if (options.oci_namespace is None) != (options.oci_region is None):
        raise OptionError("options oci_namespace and oci_region go together")
    if options.oci_namespace and options.oci_region:
        options.url = oci.compat_url(options.oci_namespace, options.oci_region)
        options.endpoint = options.oci_region
        options.use_path_request_style = True
        return
    region = oci.region_of(options.url)
    if region:
        options.use_path_request_style = True
        if not region_given:
            options.endpoint = region
        options.notices.append(
            f"OCI Object Storage endpoint: path-style requests, signing region {options.endpoint}")


def _validate(options: MountOptions) -> None:
    if not options.url.startswith(("http://", "https://")):
        raise OptionError(f"option url={options.url} must start with http:// or https://")
    for name in ("multipart_size", "multipart_copy_size"):
        if not 5 <= getattr(options, name) <= 5120:
            raise OptionError(f"option {name} must be between 5 and 5120 (MiB)")
    if options.use_cache is not None and not os.path.isdir(options.use_cache):
        raise OptionError(f"option use_cache={options.use_cache} is not a directory")
    for name in ("parallel_count", "max_thread_count"):
        if getattr(options, name) < 1:
            raise OptionError(f"option {name} must be at least 1")


def options_help() -> str:
    """The option table for ``ocifs --help``."""
    lines = []
    for f in MountOptions.specs():
        default = f.default if f.default is not None else "-"
        if f.metadata["kind"] == "flag":
            default = "on" if f.default else "off"
        elif f.metadata["kind"] == "octal" and f.default is not None:
            default = oct(f.default)
        lines.append(f"  {f.name:<24} {f.metadata['help']} (default: {default})")
    lines.append("  region=...               alias of endpoint")
    lines.append("  " + ", ".join(sorted(NO_EFFECT)) + ": accepted, no effect (a warning says so)")
    lines.append("  " + ", ".join(sorted(FSTAB_WORDS)) + ": fstab words, ignored")
    return "\n".join(lines)
