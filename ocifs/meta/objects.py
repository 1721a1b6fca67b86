"""s3fs-fuse's object format, both ways: S3 object metadata <-> file attributes.

A bucket written by s3fs must read correctly through ocifs and the reverse, so this module is the
single place that knows the format (REFERENCE §2):

- a directory is a zero-byte object ``dir/`` with ``Content-Type: application/x-directory``;
  any zero-size key ending in ``/``, a ``dir`` object with a directory content type, and a common
  prefix with no marker (an *implicit* directory) are directories too;
- ``x-amz-meta-mode`` holds the decimal ``st_mode`` including the type bits, ``-uid``/``-gid``
  the owner, ``-mtime``/``-ctime``/``-atime`` ``sec`` or ``sec.nnnnnnnnn``;
- a symlink is an object whose body is the target, mode ``S_IFLNK|0777``;
- FIFOs, sockets and devices are empty objects whose mode carries their type; a device's number
  is kept in ``x-amz-meta-rdev`` (decimal; s3fs itself stores none and shows 0);
- extended attributes (``use_xattr``) are one header, ``x-amz-meta-xattr``: URL-encoded JSON
  ``{"name":"base64(value)",...}`` (see :func:`encode_xattrs`);
- objects without metadata are files 0640 / directories 0750, owned by the mounting user.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import mimetypes
import re
import stat
import urllib.parse
from typing import Any, Mapping

DIR_CONTENT_TYPE = "application/x-directory"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_FILE_MODE = stat.S_IFREG | 0o640
DEFAULT_DIR_MODE = stat.S_IFDIR | 0o750
SYMLINK_MODE = stat.S_IFLNK | 0o777

_OWN_META = frozenset({"mode", "uid", "gid", "mtime", "ctime", "atime", "xattr", "rdev"})

# Content types s3fs and other tools have used to mark a directory object without a trailing "/".
_DIR_CONTENT_TYPES = (DIR_CONTENT_TYPE, "httpd/unix-directory")


@dataclasses.dataclass
class ObjectAttrs:
    """What ocifs knows about one path in the bucket.

    ``mode`` always carries the file-type bits.  ``has_marker`` says whether a directory has its
    own ``dir/`` object (False for implicit directories), which decides whether chmod/chown on it
    must create one.  ``etag`` identifies the stored version of a file.  ``content_type`` and
    ``extra_meta`` (``x-amz-meta-*`` keys other tools wrote) are kept across chmod and rename,
    as s3fs keeps them.  ``from_listing`` says the object's headers were not read (attributes
    from a ListObjectsV2 entry): mode, owner and times are defaults, so anything that rewrites
    the metadata must read the headers first (:func:`with_headers_of`).  ``xattrs`` are the
    extended attributes (name -> value; None: the object has no ``x-amz-meta-xattr`` header),
    ``rdev`` a device's number.
    """

    mode: int
    size: int = 0
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    atime_ns: int = 0
    etag: str | None = None
    has_marker: bool = True
    content_type: str | None = None
    extra_meta: dict[str, str] = dataclasses.field(default_factory=dict)
    from_listing: bool = False
    xattrs: dict[str, bytes] | None = None
    rdev: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


def parse_time_ns(value: str | None) -> int | None:
    """Parse s3fs's ``sec`` or ``sec.nnnnnnnnn`` time header into nanoseconds."""
    if not value:
        return None
    try:
        if "." in value:
            sec, frac = value.split(".", 1)
            frac = (frac + "000000000")[:9]
            return int(sec) * 1_000_000_000 + int(frac)
        return int(value) * 1_000_000_000
    except ValueError:
        return None


def format_time_ns(ns: int) -> str:
    """Format nanoseconds the way s3fs writes them: whole seconds unless there is a fraction."""
    sec, frac = divmod(ns, 1_000_000_000)
    return f"{sec}.{frac:09d}" if frac else str(sec)


def _parse_int(value: str | None) -> int | None:
    """Parse an integer header the way s3fs does (C ``strtol`` with base 0)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if text.lower().startswith("0x"):
            return int(text, 16)
        if len(text) > 1 and text.startswith("0"):
            return int(text, 8)
        return int(text)
    except ValueError:
        return None


def _datetime_ns(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1_000_000_000)
    return 0


def attrs_from_head(
    key: str,
    head: Mapping[str, Any],
    default_uid: int,
    default_gid: int,
) -> ObjectAttrs:
    """Build attributes from a HeadObject/GetObject response of the object at ``key``."""
    meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    size = int(head.get("ContentLength", 0) or 0)
    content_type = (head.get("ContentType") or "").strip()
    base_type = content_type.split(";")[0].strip().lower()
    last_modified_ns = _datetime_ns(head.get("LastModified"))

    mode = _parse_int(meta.get("mode"))
    looks_like_dir = key.endswith("/") or (size == 0 and base_type in _DIR_CONTENT_TYPES)
    if mode is None or stat.S_IFMT(mode) == 0:
        perms = stat.S_IMODE(mode) if mode is not None else None
        if looks_like_dir:
            mode = stat.S_IFDIR | (perms if perms is not None else 0o750)
        else:
            mode = stat.S_IFREG | (perms if perms is not None else 0o640)
    elif looks_like_dir and not stat.S_ISDIR(mode):
        mode = stat.S_IFDIR | stat.S_IMODE(mode)

    mtime = parse_time_ns(meta.get("mtime")) or last_modified_ns
    ctime = parse_time_ns(meta.get("ctime")) or mtime
    atime = parse_time_ns(meta.get("atime")) or mtime
    uid = _parse_int(meta.get("uid"))
    gid = _parse_int(meta.get("gid"))
    is_device = stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
    return ObjectAttrs(
        mode=mode,
        size=0 if stat.S_ISDIR(mode) else size,
        uid=default_uid if uid is None else uid,
        gid=default_gid if gid is None else gid,
        mtime_ns=mtime,
        ctime_ns=ctime,
        atime_ns=atime,
        etag=head.get("ETag"),
        has_marker=True,
        content_type=content_type or None,
        extra_meta={k: v for k, v in meta.items() if k not in _OWN_META},
        xattrs=decode_xattrs(meta["xattr"]) if "xattr" in meta else None,
        rdev=(_parse_int(meta.get("rdev")) or 0) if is_device else 0,
    )


def attrs_from_listing(entry: Mapping[str, Any], default_uid: int, default_gid: int) -> ObjectAttrs:
    """Attributes from a ListObjectsV2 ``Contents`` entry: size and date, no s3fs headers.

    What :func:`attrs_from_head` gives for an object without metadata or content type, built
    directly: a listing holds a thousand of them.
    """
    is_dir = entry["Key"].endswith("/")
    mtime = _datetime_ns(entry.get("LastModified"))
    return ObjectAttrs(
        mode=DEFAULT_DIR_MODE if is_dir else DEFAULT_FILE_MODE,
        size=0 if is_dir else int(entry.get("Size") or 0),
        uid=default_uid, gid=default_gid,
        mtime_ns=mtime, ctime_ns=mtime, atime_ns=mtime,
        etag=entry.get("ETag"),
        from_listing=True,
    )


def with_headers_of(attrs: ObjectAttrs, full: ObjectAttrs) -> None:
    """Give ``attrs`` (from a listing) the metadata ``full`` read from the object's headers,
    keeping what describes the data (size, ETag), so that rewriting the metadata keeps it."""
    attrs.mode, attrs.uid, attrs.gid = full.mode, full.uid, full.gid
    attrs.mtime_ns, attrs.ctime_ns, attrs.atime_ns = full.mtime_ns, full.ctime_ns, full.atime_ns
    attrs.has_marker, attrs.content_type = full.has_marker, full.content_type
    attrs.extra_meta = dict(full.extra_meta)
    attrs.xattrs = None if full.xattrs is None else dict(full.xattrs)
    attrs.rdev = full.rdev
    attrs.from_listing = False


def implicit_dir_attrs(uid: int, gid: int, mtime_ns: int = 0) -> ObjectAttrs:
    """A directory that exists only because keys live under it (no ``dir/`` object)."""
    return ObjectAttrs(mode=DEFAULT_DIR_MODE, uid=uid, gid=gid, mtime_ns=mtime_ns,
                       ctime_ns=mtime_ns, atime_ns=mtime_ns, has_marker=False)


def metadata_for(attrs: ObjectAttrs) -> dict[str, str]:
    """The ``x-amz-meta-*`` headers (without the prefix, as boto3 wants them) for ``attrs``.

    The xattr header goes with every copy and upload, so rename, chmod and writes keep it; it is
    left out when no attribute is left (as s3fs removes it).
    """
    meta = {
        **attrs.extra_meta,
        "mode": str(attrs.mode),
        "uid": str(attrs.uid),
        "gid": str(attrs.gid),
        "mtime": format_time_ns(attrs.mtime_ns),
        "ctime": format_time_ns(attrs.ctime_ns),
        "atime": format_time_ns(attrs.atime_ns),
    }
    if attrs.xattrs:
        meta["xattr"] = encode_xattrs(attrs.xattrs)
    if attrs.rdev and (stat.S_ISCHR(attrs.mode) or stat.S_ISBLK(attrs.mode)):
        meta["rdev"] = str(attrs.rdev)
    return meta


# -- extended attributes: s3fs's x-amz-meta-xattr ---------------------------------------------
#
# s3fs writes {"name":"base64","name2":"base64"} (names in byte order, no spaces), URL-encodes
# the whole (every byte but letters, digits and "-_.~/" as %XX), and parses it back by cutting
# at "," and at each pair's first ":", then stripping the quotes: a name holding '"', "," or
# ":" breaks its parser.  Such characters (and "\\" and control characters) are written here
# as JSON \uXXXX escapes, which s3fs keeps as part of the name without harm to the others; they
# are decoded when read.

_NAME_ESCAPES = frozenset('"\\,:') | frozenset(chr(c) for c in range(0x20)) | {"\x7f"}
_PAIR = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*"([^"]*)"')
_ESCAPED = re.compile(r"\\u([0-9a-fA-F]{4})")


def _escape_name(name: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if c in _NAME_ESCAPES else c for c in name)


def encode_xattrs(xattrs: Mapping[str, bytes]) -> str:
    """The ``x-amz-meta-xattr`` value for ``xattrs`` (names are str with surrogate escapes for
    bytes that are not UTF-8, as :func:`os.fsdecode` gives them)."""
    items = sorted((name.encode("utf-8", "surrogateescape"), value) for name, value in xattrs.items())
    body = ",".join(
        '"%s":"%s"' % (_escape_name(name.decode("utf-8", "surrogateescape")),
                       base64.b64encode(value).decode("ascii"))
        for name, value in items)
    raw = ("{" + body + "}").encode("utf-8", "surrogateescape")
    return urllib.parse.quote_from_bytes(raw, safe="/")


def decode_xattrs(header: str) -> dict[str, bytes]:
    """Extended attributes from an ``x-amz-meta-xattr`` value written by s3fs or ocifs; a pair
    that does not parse is skipped (as s3fs skips it), never an error."""
    text = urllib.parse.unquote_to_bytes(header).decode("utf-8", "surrogateescape")
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return {}
    result: dict[str, bytes] = {}
    for match in _PAIR.finditer(text[start + 1:end]):
        name = _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), match.group(1))
        try:
            result[name] = base64.b64decode(match.group(2), validate=False)
        except (binascii.Error, ValueError):
            continue
    return result


def content_type_for(name: str, attrs: ObjectAttrs) -> str:
    """Content-Type as s3fs sets it: directories marked, files typed by their extension."""
    if attrs.is_dir:
        return DIR_CONTENT_TYPE
    if attrs.content_type:
        return attrs.content_type
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or DEFAULT_CONTENT_TYPE
