"""A faster parse of ListObjectsV2 responses, driven by botocore's own model.

botocore parses a REST-XML body by building an ElementTree and then walking it through its
generic shape machinery, which for a 1,000-key listing costs about 20 ms of CPU: a quarter of
a cold ``ls -l``.  Here the same output shape is compiled once into small functions (tag name
to member name and converter), and the body is walked with them in a few milliseconds.

The result reaches botocore through its ``before-parse`` hook: the handler puts the parsed
members into ``customized_response_dict`` (which botocore merges over its own parse) and
hands botocore an empty body, so everything else (headers, ``ResponseMetadata``, the URL
decoding of keys, retries, errors) stays botocore's.  A body that is not a
``ListBucketResult`` is left to botocore untouched.

botocore also parses every 200 body of S3 once more before that, only to see whether it is
an ``<Error>`` or cut short (either becomes a 500, to be retried).  For listings the handler
makes that check itself on its own parse, and botocore's check goes on for every other
operation.
"""

from __future__ import annotations

import base64
import logging
from typing import Any, Callable
from xml.etree import ElementTree

import botocore.handlers

log = logging.getLogger(__name__)

OPERATION = "ListObjectsV2"
ROOT_TAG = "ListBucketResult"
# S3's namespace: ElementTree names each element ``{namespace}Tag``
S3_NAMESPACE = "{http://s3.amazonaws.com/doc/2006-03-01/}"

Parse = Callable[[ElementTree.Element], Any]


def _local(tag: str) -> str:
    """A tag without its ``{namespace}``."""
    return tag[tag.rfind("}") + 1:]


def _xml_name(member_name: str, shape: Any) -> str:
    """The tag a member is sent as (for a flattened list: the tag of each item)."""
    if shape.type_name == "list" and shape.serialization.get("flattened"):
        item_name = shape.member.serialization.get("name")
        if item_name:
            return item_name
    return shape.serialization.get("name") or member_name


def _text(node: ElementTree.Element) -> str:
    return node.text or ""


def compile_shape(shape: Any, timestamp: Callable[[str], Any]) -> Parse:
    """A function turning an element of ``shape`` into what botocore's parser returns.

    Raises ValueError for a shape type a listing never holds (maps, unions), so the caller can
    leave such an operation to botocore.
    """
    kind = shape.type_name
    if kind == "structure":
        return _compile_structure(shape, timestamp)
    if kind == "list":
        item = compile_shape(shape.member, timestamp)
        return lambda node: [item(child) for child in node]
    if kind == "string":
        return _text
    if kind == "boolean":
        return lambda node: node.text == "true"
    if kind in ("integer", "long"):
        return lambda node: int(node.text or "")
    if kind in ("float", "double"):
        return lambda node: float(node.text or "")
    if kind == "timestamp":
        return lambda node: timestamp(node.text or "")
    if kind == "blob":
        return lambda node: base64.b64decode(node.text or "")
    raise ValueError(f"no fast parse for {kind} shape {shape.name}")


def _compile_structure(shape: Any, timestamp: Callable[[str], Any]) -> Parse:
    # tag -> (member name, parse of one element, whether the tag repeats as a flattened list)
    fields: dict[str, tuple[str, Parse, bool]] = {}
    for name, member in shape.members.items():
        if member.serialization.get("location") or member.serialization.get("xmlAttribute"):
            continue  # headers and attributes: botocore parses those itself
        flattened = member.type_name == "list" and bool(member.serialization.get("flattened"))
        parse = compile_shape(member.member if flattened else member, timestamp)
        fields[_xml_name(name, member)] = (name, parse, flattened)

    # the same under the names ElementTree gives S3's elements: one dict lookup per element;
    # a tag in another namespace has its namespace cut off first
    by_tag = {**fields, **{S3_NAMESPACE + tag: field for tag, field in fields.items()}}

    def parse_structure(node: ElementTree.Element) -> dict[str, Any]:
        parsed: dict[str, Any] = {}
        for child in node:
            field = by_tag.get(child.tag) or fields.get(_local(child.tag))
            if field is None:
                continue
            name, parse, flattened = field
            if flattened:
                parsed.setdefault(name, []).append(parse(child))
            else:
                parsed[name] = parse(child)
        return parsed
    return parse_structure


def parse_listing_body(body: bytes, parse: Parse) -> dict[str, Any] | None:
    """The members of a ListObjectsV2 body, or None when it is not a ``ListBucketResult``
    (cut short, or an ``<Error>`` sent with 200: what botocore retries as a 500)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    return parse(root) if _local(root.tag) == ROOT_TAG else None


def install_fast_listing(client: Any, timestamp: Callable[[str], Any]) -> bool:
    """Parse this client's ListObjectsV2 responses with the compiled walker.

    ``timestamp`` must be the parser botocore was given, so both paths return equal values.
    Returns False (and changes nothing) if the model holds a shape the walker cannot parse.
    """
    operation = client.meta.service_model.operation_model(OPERATION)
    try:
        parse = compile_shape(operation.output_shape, timestamp)
    except ValueError as exc:
        log.debug("ListObjectsV2 left to botocore: %s", exc)
        return False

    def before_parse(response_dict: dict[str, Any], customized_response_dict: dict[str, Any],
                     **_: Any) -> None:
        if response_dict.get("status_code") != 200:
            return
        body = response_dict.get("body")
        if not isinstance(body, bytes) or not body:
            return
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            response_dict["status_code"] = 500  # cut short: retried, as botocore does
            return
        tag = _local(root.tag)
        if tag == "Error":
            response_dict["status_code"] = 500  # an error sent with 200: retried, as botocore does
        elif tag == ROOT_TAG:
            customized_response_dict.update(parse(root))
            response_dict["body"] = b""

    events = client.meta.events
    events.register(f"before-parse.s3.{OPERATION}", before_parse, unique_id="ocifs-fast-listing")
    check_200 = getattr(botocore.handlers, "_handle_200_error", None)
    if check_200 is not None:
        def check_200_except_listings(operation_model: Any, **kwargs: Any) -> None:
            if operation_model.name != OPERATION:
                check_200(operation_model=operation_model, **kwargs)
        events.unregister("before-parse.s3.*", check_200)
        events.register_first("before-parse.s3.*", check_200_except_listings,
                              unique_id="ocifs-200-error-check")
    return True
