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
from ocifs.s3.requests import STORAGE_CLASSES

log = logging.getLogger(__name__)

DBG_LEVELS = {"crit": logging.CRITICAL, "critical": logging.CRITICAL, "err": logging.ERROR,
              "error": logging.ERROR, "warn": logging.WARNING, "warning": logging.WARNING,
              "info": logging.INFO, "dbg": logging.DEBUG, "debug": logging.DEBUG}

# Words mount(8) and fstab pass along that mean nothing to a FUSE filesystem.
FSTAB_WORDS = frozenset({"auto", "noauto", "user", "nouser", "users", "_netdev", "defaults",
                         "rw", "nofail", "dev", "nodev", "suid", "nosuid", "exec", "noexec",
                         "async", "atime"})

# s3fs options that are accepted for compatibility but have no effect in ocifs.
NO_EFFECT = {
    "nonempty": "FUSE 3 mounts over non-empty directories anyway",
    "sigv2": "ocifs always signs with SigV4",
    "sigv4": "ocifs always signs with SigV4",
    "default_acl": "ACLs are not sent (OCI has none)",
    "enable_content_md5": "uploads are not checksummed beyond what the store requires",
    "enable_noobj_cache": "the negative cache is always on",
    "notsup_compat_dir": "ocifs does not use _$folder$ objects",
    "complement_stat": "ocifs always fills in missing attributes",
    "norenameapi": "ocifs always renames with server-side copies",
    "streamupload": "ocifs always uploads big sequential writes while they are written",
    "multireq_max": "folded into max_thread_count (as in s3fs 1.96)",
    "listobjectsv2": "ocifs always lists with ListObjectsV2",
    "noxmlns": "obsolete in s3fs; listings are parsed with or without the namespace",
    "imdsv1only": "botocore asks IMDSv2 first and falls back to IMDSv1 by itself",
    "cipher_suites": "botocore cannot choose TLS cipher suites; Python's defaults are used",
    "nodnscache": "ocifs keeps no DNS cache of its own",
    "nosscache": "ocifs keeps no TLS session cache of its own",
    "ipresolve": "connections use whatever address family the resolver returns",
    "check_cache_dir_exist": "ocifs creates and checks its cache directory at every mount",
    "free_space_ratio": "use ensure_diskfree (MiB) for the space kept free on the cache disk",
    "set_check_cache_sigusr1": "ocifs checks each cached copy by ETag when it is used",
    "no_time_stamp_msg": "timestamps in the log come from logging's own format",
    "insecure_logging": "ocifs never logs secrets",
    # FUSE's own options, which s3fs hands to libfuse 2's high-level layer.
    "kernel_cache": "the kernel keeps a file's cached pages while its object's ETag is unchanged",
    "auto_cache": "the kernel keeps a file's cached pages while its object's ETag is unchanged",
    "big_writes": "FUSE 3 always sends big writes",
    "large_read": "FUSE 3 always sends big reads",
    "max_write": "FUSE 3 sends writes of up to 1 MiB",
    "max_read": "pyfuse3 cannot set it (libfuse wants it from init() too); reads come in up to 1 MiB",
    "max_readahead": "use read_ahead_kb for the kernel's read-ahead",
    "negative_timeout": "the kernel never caches a missing name; ocifs's negative cache does",
    "ac_attr_timeout": "ocifs sets attribute timeouts itself (attr_timeout)",
    "hard_remove": "an unlinked file that is still open keeps working in ocifs anyway",
    "use_ino": "ocifs always sets inode numbers",
    "readdir_ino": "ocifs always sets inode numbers",
    "intr": "requests are not interrupted",
    "async_read": "reads are always asynchronous in FUSE 3",
    "atomic_o_trunc": "O_TRUNC is always handled in open",
}

# s3fs options refused with their reason: accepting them would mislead.
REFUSED = {
    "credlib": "ocifs cannot load s3fs's credential libraries; use passwd_file, the "
               "environment, iam_role or ecs",
    "credlib_opts": "goes with credlib, which ocifs cannot load",
    "ibm_iam_auth": "IBM IAM tokens are not supported; use HMAC keys (passwd_file)",
    "ibm_iam_endpoint": "goes with ibm_iam_auth, which is not supported",
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
    allow_root: bool = dataclasses.field(default=False, metadata=_opt(
        "let root use the mount too (FUSE's own option)", "flag"))
    ro: bool = dataclasses.field(default=False, metadata=_opt(
        "mount read-only: the kernel refuses every change with EROFS", "flag"))
    noatime: bool = dataclasses.field(default=False, metadata=_opt(
        "the kernel's noatime mount flag", "flag"))
    sync: bool = dataclasses.field(default=False, metadata=_opt(
        "the kernel's sync mount flag (passed to the kernel, as s3fs does)", "flag"))
    dirsync: bool = dataclasses.field(default=False, metadata=_opt(
        "the kernel's dirsync mount flag (passed to the kernel, as s3fs does)", "flag"))
    direct_io: bool = dataclasses.field(default=False, metadata=_opt(
        "bypass the kernel's page cache: every read and write reaches ocifs", "flag"))
    attr_timeout: float | None = dataclasses.field(default=None, metadata=_opt(
        "seconds the kernel may cache attributes (default: ocifs chooses from stat_cache_expire)",
        "float"))
    entry_timeout: float | None = dataclasses.field(default=None, metadata=_opt(
        "seconds the kernel may cache names (default: ocifs chooses from stat_cache_expire)",
        "float"))
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
    nomixupload: bool = dataclasses.field(default=False, metadata=_opt(
        "re-upload unchanged ranges of a changed file instead of copying them (UploadPartCopy)",
        "flag"))
    nocopyapi: bool = dataclasses.field(default=False, metadata=_opt(
        "as nomixupload for uploads (renames still copy server-side)", "flag"))
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
    metrics: str | None = dataclasses.field(default=None, metadata=_opt(
        "serve Prometheus metrics at http://[ADDR:]PORT/metrics (address 127.0.0.1 unless "
        "given; default: off)"))
    watch: str | None = dataclasses.field(default=None, metadata=_opt(
        "files (GLOB, e.g. *.rdb; several joined by ':') whose last upload time is the metric "
        "ocifs_last_upload_timestamp_seconds{path}"))
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
    bucket: str | None = dataclasses.field(default=None, metadata=_opt(
        "BUCKET[:/PATH] given as an option instead of on the command line"))
    host: str | None = dataclasses.field(default=None, metadata=_opt(
        "older form of url (https:// is added when no scheme is given)"))
    servicepath: str = dataclasses.field(default="/", metadata=_opt(
        "path prefix of the service on the endpoint, appended to url"))
    no_check_certificate: bool = dataclasses.field(default=False, metadata=_opt(
        "do not check the endpoint's TLS certificate", "flag"))
    ssl_verify_hostname: int = dataclasses.field(default=2, metadata=_opt(
        "0: do not check the certificate's host name (ocifs then skips the whole certificate "
        "check)", "int"))
    ssl_client_cert: str | None = dataclasses.field(default=None, metadata=_opt(
        "client certificate CERT[:TYPE[:KEY[:KEYTYPE]]] (PEM files) for TLS"))
    proxy: str | None = dataclasses.field(default=None, metadata=_opt(
        "HTTP(S) proxy [SCHEME://]HOST[:PORT]"))
    proxy_cred_file: str | None = dataclasses.field(default=None, metadata=_opt(
        "file with the proxy's USER:PASS (no group/other permissions)"))
    iam_role: str | None = dataclasses.field(default=None, metadata=_opt(
        "credentials from the instance metadata service (auto or the role's name)", "optstr",
        bare="auto"))
    ecs: bool = dataclasses.field(default=False, metadata=_opt(
        "credentials from the container credentials endpoint (ECS/EKS)", "flag"))
    use_session_token: bool = dataclasses.field(default=False, metadata=_opt(
        "refuse credentials without a session token", "flag"))
    public_bucket: bool = dataclasses.field(default=False, metadata=_opt(
        "anonymous, unsigned requests (no credentials needed)", "flag"))
    enable_unsigned_payload: bool = dataclasses.field(default=False, metadata=_opt(
        "send UNSIGNED-PAYLOAD instead of hashing request bodies", "flag"))
    use_sse: str | None = dataclasses.field(default=None, metadata=_opt(
        "server-side encryption: 1 (SSE-S3), kmsid[:ID]/k (SSE-KMS), custom[:FILE]/c (SSE-C)",
        "optstr", bare="1"))
    load_sse_c: str | None = dataclasses.field(default=None, metadata=_opt(
        "file of SSE-C keys (one per line) for use_sse=custom"))
    storage_class: str = dataclasses.field(default="standard", metadata=_opt(
        "storage class of new objects", "choice", choices=STORAGE_CLASSES))
    use_rrs: bool = dataclasses.field(default=False, metadata=_opt(
        "older form of storage_class=reduced_redundancy", "flag"))
    requester_pays: bool = dataclasses.field(default=False, metadata=_opt(
        "send x-amz-request-payer: requester", "flag"))
    list_object_max_keys: int = dataclasses.field(default=1000, metadata=_opt(
        "keys asked per listing request", "int"))
    noua: bool = dataclasses.field(default=False, metadata=_opt(
        "send no User-Agent header", "flag"))
    instance_name: str | None = dataclasses.field(default=None, metadata=_opt(
        "name added to the User-Agent (ocifs-instance/NAME)"))
    mime: str | None = dataclasses.field(default=None, metadata=_opt(
        "mime.types file giving Content-Type by extension (default: the system's, /etc/mime.types)"))
    ahbe_conf: str | None = dataclasses.field(default=None, metadata=_opt(
        "file of extra upload headers by name suffix or reg:REGEX (s3fs's format)"))
    bucket_size: str | None = dataclasses.field(default=None, metadata=_opt(
        "size statfs (df) reports, e.g. 1TiB, 500GB (default: 16 EiB, as s3fs)"))
    tmpdir: str | None = dataclasses.field(default=None, metadata=_opt(
        "directory of staging files without use_cache (default: $TMPDIR or /tmp)"))
    enable_negative_cache: bool = dataclasses.field(default=True, metadata=_opt(
        "cache \"no such object\" answers for names asked for (on by default)", "flag"))
    disable_negative_cache: bool = dataclasses.field(default=False, metadata=_opt(
        "do not cache \"no such object\" answers: every lookup of a missing name asks", "flag"))
    stat_cache_interval_expire: float | None = dataclasses.field(default=None, metadata=_opt(
        "seconds an attribute stays cached after its last use; excludes stat_cache_expire",
        "float"))
    update_parent_dir_stat: bool = dataclasses.field(default=False, metadata=_opt(
        "update a directory's mtime and ctime when an entry is created or removed in it",
        "flag"))
    compat_dir: bool = dataclasses.field(default=False, metadata=_opt(
        "also recognise old-style dir_$folder$ directory objects: looked up (one HEAD more), "
        "listed as dir, removed by rmdir, moved to a dir/ marker by rename", "flag"))
    use_wtf8: bool = dataclasses.field(default=False, metadata=_opt(
        "names that are not valid UTF-8 stored as s3fs stores them (each bad byte as U+E000+byte), "
        "mapped back in listings; without it such names fail with EILSEQ", "flag"))
    use_xattr: bool = dataclasses.field(default=False, metadata=_opt(
        "extended attributes, stored in x-amz-meta-xattr as s3fs stores them", "flag"))
    ignored: list[str] = dataclasses.field(default_factory=list, metadata={"internal": True})
    notices: list[str] = dataclasses.field(default_factory=list, metadata={"internal": True})

    @property
    def log_level(self) -> int:
        return DBG_LEVELS[self.dbglevel]

    @classmethod
    def specs(cls) -> list[dataclasses.Field]:
        """The user-visible options, in table order."""
        return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


# s3fs's two ways to count the stat cache's expiry: from the entry's making, or its last use.
EXPIRY_KINDS = {"stat_cache_expire": "stat_cache_interval_expire",
                "stat_cache_interval_expire": "stat_cache_expire"}

ALIASES = {"region": "endpoint", "mount_uid": "uid", "mount_gid": "gid"}


def _convert(field: dataclasses.Field, value: str | None) -> Any:
    kind = field.metadata["kind"]
    name = field.name
    if kind == "optstr":
        return field.metadata["bare"] if value is None or value == "" else value
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
            if name in REFUSED:
                raise OptionError(f"option {name} is not supported: {REFUSED[name]}")
            if name in NO_EFFECT:
                ignored.append(name)
                continue
            field = fields.get(name)
            if field is None:
                raise OptionError(f"unknown option: {name}")
            values[name] = _convert(field, value)
            if name in EXPIRY_KINDS:  # as in s3fs, the last of the two decides
                values.pop(EXPIRY_KINDS[name], None)
    options = MountOptions(**values)
    options.ignored = ignored
    _apply_s3fs_forms(options, values)
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


SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024 ** 2, "mb": 1000 ** 2,
              "mib": 1024 ** 2, "g": 1024 ** 3, "gb": 1000 ** 3, "gib": 1024 ** 3,
              "t": 1024 ** 4, "tb": 1000 ** 4, "tib": 1024 ** 4, "p": 1024 ** 5,
              "pb": 1000 ** 5, "pib": 1024 ** 5, "e": 1024 ** 6, "eb": 1000 ** 6, "eib": 1024 ** 6}


def parse_size(name: str, text: str) -> int:
    """``1TiB``, ``500GB``, ``1T``, ``1048576``: bytes (s3fs's ``bucket_size`` forms)."""
    number = text.rstrip("bBkKmMgGtTpPeEiI")
    unit = text[len(number):].lower()
    try:
        value = int(number, 10)
    except ValueError:
        raise OptionError(f"option {name} has a bad value {text!r}") from None
    if unit not in SIZE_UNITS or value <= 0:
        raise OptionError(f"option {name} has a bad value {text!r}")
    return value * SIZE_UNITS[unit]


def _apply_s3fs_forms(options: MountOptions, values: dict[str, Any]) -> None:
    """s3fs's older spellings, folded into the options ocifs acts on."""
    if options.host:
        if "url" in values:
            raise OptionError("options host and url cannot both be given")
        host = options.host
        options.url = host if host.startswith(("http://", "https://")) else "https://" + host
    if options.servicepath.strip("/"):
        options.url = options.url.rstrip("/") + "/" + options.servicepath.strip("/")
    if options.use_rrs:
        if "storage_class" in values and options.storage_class != "reduced_redundancy":
            raise OptionError("options use_rrs and storage_class cannot both be given")
        options.storage_class = "reduced_redundancy"
    if options.ssl_verify_hostname == 0 and not options.no_check_certificate:
        options.no_check_certificate = True
        options.notices.append("ssl_verify_hostname=0: the certificate is not checked at all "
                               "(botocore cannot skip only the host name check)")
    if options.public_bucket and (options.iam_role or options.ecs):
        raise OptionError("option public_bucket sends unsigned requests: no iam_role or ecs")
    if options.bucket_size is not None:
        parse_size("bucket_size", options.bucket_size)
    if options.metrics is not None:
        _check_metrics_address(options.metrics)
    if options.tmpdir is not None and not os.path.isdir(options.tmpdir):
        raise OptionError(f"option tmpdir={options.tmpdir} is not a directory")


def _check_metrics_address(text: str) -> None:
    """``metrics=[ADDR:]PORT``: a port from 1 to 65535."""
    port = text.rpartition(":")[2]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionError(f"option metrics={text}: expected [ADDR:]PORT (a port from 1 to 65535)")


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
    for name, reason in sorted(NO_EFFECT.items()):
        lines.append(f"  {name:<24} accepted, no effect: {reason}")
    for name, reason in sorted(REFUSED.items()):
        lines.append(f"  {name:<24} refused: {reason}")
    lines.append("  " + ", ".join(sorted(FSTAB_WORDS)) + ": fstab words, ignored")
    return "\n".join(lines)
