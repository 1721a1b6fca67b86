"""What every request carries: s3fs's per-request options, added through botocore's events.

SSE (``use_sse``), the storage class, ``requester_pays``, the listing page size and
``ahbe_conf``'s extra headers are added to each operation that takes them, so the store's
code never has to remember them: a parameter goes only to operations whose input shape has
it (SSE-C keys to GET/HEAD/PUT/UploadPart/copies, the copy source's key to copies, the
storage class to PUT/CreateMultipartUpload/CopyObject), and never replaces one the caller set.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
from pathlib import Path
import re
from typing import Any

log = logging.getLogger(__name__)

HEADER_OPERATIONS = ("PutObject", "CreateMultipartUpload", "CopyObject")  # ahbe_conf's
STORAGE_CLASSES = ("standard", "standard_ia", "onezone_ia", "reduced_redundancy",
                   "intelligent_tiering", "glacier", "glacier_ir", "deep_archive")


class RequestOptionError(ValueError):
    """A bad request option (SSE keys, ahbe_conf); the message names the option, not the key."""


@dataclasses.dataclass(frozen=True)
class HeaderRule:
    """One ``ahbe_conf`` line: objects whose ``/key`` ends with ``suffix`` (or matches
    ``regex``; neither: every object) get ``header: value`` on upload."""

    header: str
    value: str
    suffix: str | None = None
    regex: re.Pattern | None = None

    def matches(self, key: str) -> bool:
        path = "/" + key
        if self.regex is not None:
            return self.regex.search(path) is not None
        return self.suffix is None or path.endswith(self.suffix)


@dataclasses.dataclass
class RequestParams:
    """Parameters added to every operation that accepts them."""

    params: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    header_rules: list[HeaderRule] = dataclasses.field(default_factory=list)

    def applies_to(self, operation: Any) -> bool:
        """Whether anything here is added to ``operation`` (a botocore OperationModel)."""
        members = operation.input_shape.members if operation.input_shape is not None else {}
        return (any(name in members for name in self.params)
                or (bool(self.header_rules) and operation.name in HEADER_OPERATIONS))

    def install(self, client: Any) -> None:
        """Register the handlers on ``client``'s own event system."""
        if self.params:
            client.meta.events.register("before-parameter-build.s3.*", self._add_params)
        if self.header_rules:
            client.meta.events.register("before-parameter-build.s3.*", self._remember_key)
            client.meta.events.register("before-call.s3.*", self._add_headers)

    def _add_params(self, params: dict, model: Any, **_: Any) -> None:
        members = model.input_shape.members if model.input_shape is not None else {}
        for name, value in self.params.items():
            if name in members:
                params.setdefault(name, value)

    def _remember_key(self, params: dict, model: Any, context: dict, **_: Any) -> None:
        if model.name in HEADER_OPERATIONS and "Key" in params:
            context["ocifs_key"] = params["Key"]

    def _add_headers(self, params: dict, context: dict, **_: Any) -> None:
        key = context.get("ocifs_key")
        if key is None:
            return
        headers = params.setdefault("headers", {})
        for rule in self.header_rules:
            if rule.matches(key):
                headers[rule.header] = rule.value


def parse_ahbe_conf(path: str) -> list[HeaderRule]:
    """s3fs's ``ahbe_conf`` file: ``[SUFFIX|reg:REGEX] HEADER VALUE`` lines, ``#`` comments."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise RequestOptionError(f"option ahbe_conf={path} cannot be read: {exc.strerror}") from None
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 2) if not line[0].isspace() else [""] + line.split(None, 1)
        if len(fields) < 2:
            raise RequestOptionError(f"option ahbe_conf={path} line {number}: no header name")
        target, header = fields[0], fields[1]
        value = fields[2].strip() if len(fields) > 2 else ""
        if target.startswith("reg:"):
            try:
                regex = re.compile(target[4:])
            except re.error:
                raise RequestOptionError(
                    f"option ahbe_conf={path} line {number}: bad regular expression") from None
            rules.append(HeaderRule(header, value, regex=regex))
        else:
            rules.append(HeaderRule(header, value, suffix=target or None))
    return rules


def _read_sse_keys(path: str, option: str) -> list[bytes]:
    """SSE-C keys, one per line (raw 32-byte keys or their base64), as s3fs reads them."""
    file = Path(path).expanduser()
    try:
        if file.stat().st_mode & 0o077:
            raise RequestOptionError(f"option {option}: key file {file} should not have group or "
                                     f"other permissions; run: chmod 600 {file}")
        lines = file.read_bytes().splitlines()
    except OSError as exc:
        raise RequestOptionError(f"option {option}: key file {file} cannot be read: "
                                 f"{exc.strerror}") from None
    keys = [_sse_key(line.strip(), option) for line in lines if line.strip()]
    if not keys:
        raise RequestOptionError(f"option {option}: key file {file} holds no key")
    return keys


def _sse_key(text: bytes, option: str) -> bytes:
    if len(text) == 32:
        return text
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise RequestOptionError(f"option {option}: an SSE-C key must be 32 bytes (or their base64)")
    return key


def sse_params(use_sse: str | None, load_sse_c: str | None,
               environ: dict[str, str] | None = None) -> dict[str, Any]:
    """botocore parameters for ``use_sse`` as s3fs spells it: ``1`` (SSE-S3), ``kmsid[:ID]``
    or ``k`` (SSE-KMS, ID from AWSSSEKMSID), ``custom[:FILE]`` or ``c`` (SSE-C, keys from
    FILE, ``load_sse_c`` or AWSSSECKEYS).  botocore adds the key's MD5 and base64 itself."""
    env = os.environ if environ is None else environ
    if not use_sse:
        if load_sse_c:
            log.warning("option load_sse_c has no effect without use_sse=custom")
        return {}
    kind, _, arg = use_sse.partition(":")
    kind = kind.lower()
    if kind in ("1", "true", "sse-s3"):
        return {"ServerSideEncryption": "AES256"}
    if kind in ("kmsid", "k"):
        key_id = arg or env.get("AWSSSEKMSID")
        params: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
        if key_id:
            params["SSEKMSKeyId"] = key_id
        return params
    if kind in ("custom", "c"):
        source = arg or load_sse_c
        if source:
            keys = _read_sse_keys(source, "use_sse" if arg else "load_sse_c")
        elif env.get("AWSSSECKEYS"):
            keys = [_sse_key(k.strip().encode(), "use_sse (AWSSSECKEYS)")
                    for k in env["AWSSSECKEYS"].split(":") if k.strip()]
        else:
            raise RequestOptionError("option use_sse=custom needs a key file (use_sse=custom:FILE, "
                                     "load_sse_c=FILE or AWSSSECKEYS)")
        if len(keys) > 1:
            log.warning("use_sse=custom: only the first of %d SSE-C keys is used (reading objects "
                        "written with the other keys is not supported)", len(keys))
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": keys[0],
                "CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": keys[0]}
    if kind in ("0", "false"):
        return {}
    raise RequestOptionError(f"option use_sse={kind} is not 1, kmsid[:ID], k, custom[:FILE] or c")


def request_params(use_sse: str | None = None, load_sse_c: str | None = None,
                   storage_class: str | None = None, requester_pays: bool = False,
                   list_max_keys: int | None = None, ahbe_conf: str | None = None,
                   environ: dict[str, str] | None = None) -> RequestParams:
    """Everything s3fs's request options add, checked (files read) before mounting."""
    params = sse_params(use_sse, load_sse_c, environ)
    if storage_class and storage_class != "standard":
        params["StorageClass"] = storage_class.upper()
    if requester_pays:
        params["RequestPayer"] = "requester"
    if list_max_keys and list_max_keys != 1000:
        params["MaxKeys"] = list_max_keys
    rules = parse_ahbe_conf(ahbe_conf) if ahbe_conf else []
    return RequestParams(params, rules)
