"""HEAD, ranged GET, small PUT, DELETE and listings sent without botocore's per-request
pipeline.

A boto3 call spends most of its client CPU on work that is the same for every request of a
mount: validating and serializing parameters through the model, resolving the endpoint
through the rule set, a dozen event emits, and parsing the answer's headers by walking every
member of the output shape (about 50 for HeadObject) through a case-insensitive dict.  A
cold ``ls -l`` is one HEAD per entry and a small file is a HEAD, a LIST and a PUT, so that
CPU is what those workloads cost.

:class:`LeanRequests` sends the common requests with what can be decided once:
the object URL's prefix (from botocore's own endpoint resolution, through a presigned URL),
the User-Agent, and for each operation the map from the headers it answers with to its
output members.  What stays botocore's:

- **signing**: the client's own request signer (credentials, their refresh, UNSIGNED,
  payload signing rules);
- **the connection**: the client's own urllib3 pool with its TLS verification, client
  certificate and timeouts (:class:`DirectTransport`; through a proxy, the client's own
  ``send``), and botocore's exceptions for what goes wrong on it;
- **converting values and errors**: the client's REST-XML parser turns each header into its
  member and an error answer into the same ``ClientError`` a boto3 call raises;
- **retries**: a failure botocore would retry is retried by the boto3 call itself, after
  the pause the mount's retry pacing gives a first failure, with this attempt counted
  (:func:`ocifs.s3.retries.attempts_already_made`).

Only operations that carry nothing beyond their own parameters go this way: one that a
mount's per-request options add to (SSE-C keys to HEAD and GET, a storage class to PUT,
``ahbe_conf`` headers, requester-pays, a listing page size) goes through boto3.
"""

from __future__ import annotations

import logging
import ssl
import time
import urllib.parse
from typing import Any, Callable, Iterable, Iterator

from botocore.awsrequest import AWSRequest
import botocore.exceptions
from botocore.parsers import RestXMLParser
from botocore.retries import standard
import botocore.handlers
from botocore.utils import percent_encode, percent_encode_sequence
import urllib3.exceptions

from ocifs.s3.listparse import compile_shape, parse_listing_body
from ocifs.s3.requests import RequestParams
from ocifs.s3.retries import PacedRetry, attempts_already_made
from ocifs.s3.wire import ConnectFailed, WireAnswer, WireError, exchange

log = logging.getLogger(__name__)
# ``curldbg`` shows botocore's request lines (ocifs.run.logs, redacted): the lean path's go there too
http_log = logging.getLogger("botocore.endpoint")

# botocore internals used here beyond its documented API, as (object, attribute) with object
# one of "client", "http" (its URLLib3Session) or "parser" (RestXMLParser); pyproject.toml
# bounds botocore's version and tests/test_unit_botocore_hooks.py fails when one is gone.
PRIVATE_ATTRIBUTES = (
    ("client", "_request_signer"),      # the client's signer: its credentials and rules
    ("client", "_endpoint"),            # .http_session: the client's connection pool
    ("client", "_user_agent_creator"),  # the User-Agent boto3 sends
    ("http", "_proxy_config"),          # whether requests go through a proxy
    ("http", "_manager"),               # the urllib3 PoolManager
    ("http", "_setup_ssl_cert"),        # TLS verification settings of a pool
    ("http", "_verify"),
    ("parser", "_parse_shape"),         # one header value into its member
    ("signer", "_choose_signer"),       # the signature version the choose-signer event gives
)
# The client's before-sign handlers that change nothing of a request the lean path signs
# (a bucket name, not an ARN; no S3 Express; signed, not UNSIGNED).  With only these, the
# lean path signs without the events (a third of RequestSigner.sign's time): the signature
# version is chosen once per operation, and each request gets the signer's own auth
# (its credentials as they are then, refreshed when they expire) and ``add_auth``.
HARMLESS_BEFORE_SIGN = frozenset((
    "remove_arn_from_signing_path",
    "_set_extra_headers_for_unsigned_request",
    "S3ExpressIdentityResolver.resolve_s3express_identity",
))
# PUTs up to this size are sent from memory without ``Expect: 100-continue`` (one round trip
# less than boto3, which waits for ``100 Continue`` from 1 MB on); bigger ones go through
# boto3, streamed.  Small files and AOFs below the 5 MiB part minimum are all such PUTs; at
# most ``max_thread_count`` of them are in memory at once.
MAX_BODY = 5 * 1024 * 1024
# ranged GETs of more than this are read by urllib3 (http.client reads a body into one buffer
# of its length; ocifs.s3.wire collects what each recv gives); the rest go by ocifs.s3.wire
WIRE_BODY = 1024 * 1024
OPERATIONS = ("HeadObject", "GetObject", "PutObject", "DeleteObject", "ListObjectsV2")
# botocore adds these to every ListObjectsV2 and decodes the keys of the answer
LIST_QUERY = (("list-type", "2"), ("encoding-type", "url"))
PROBE_KEY = "K"  # the key of the presigned URL the object URLs' prefix is taken from

# Called once per lean attempt: (op, key, perf_counter at start, body length, the AWSResponse
# or None, the parsed error or None, the exception or None, whether boto3 retries it).
Observer = Callable[[str, str, float, int, Any, "dict | None", "BaseException | None", bool],
                    None]


class _BytesRequest(AWSRequest):
    """An AWSRequest whose data is bytes: its ``body`` is that data, without the whole
    ``prepare()`` botocore's property makes (the signer reads the body once per request to
    hash the payload: a fifth of signing a HEAD).  What ``prepare()`` gives for bytes."""

    @property
    def body(self) -> bytes | None:
        return self.data or None


class Retry(Exception):
    """The lean attempt failed in a way botocore retries: send the call through boto3."""


class NotLean(Exception):
    """This call is one the lean path does not send (nothing was sent): boto3 sends it."""


class HeaderParse:
    """An operation's answer headers turned into its output members, as botocore does it.

    The map from header name to member is built once from the model; each answer then costs
    a dict lookup per header it carries, and botocore's parser converts each value
    (timestamps, integers, booleans) exactly as it would have.
    """

    def __init__(self, output_shape: Any, parser: RestXMLParser) -> None:
        self.parser = parser
        self.members: dict[str, tuple[str, Any]] = {}
        self.prefixes: list[tuple[str, str, Any]] = []
        self.status_members: list[tuple[str, Any]] = []
        for name, shape in output_shape.members.items():
            location = shape.serialization.get("location")
            if location == "header":
                self.members[shape.serialization["name"].lower()] = (name, shape)
            elif location == "headers":
                self.prefixes.append((shape.serialization.get("name", "").lower(), name, shape))
            elif location == "statusCode":
                self.status_members.append((name, shape))

    def __call__(self, status: int, headers: Any) -> dict:
        """``headers``: (name, value) pairs, a repeated header's values joined by ", " (as
        urllib3's ``itermerged`` gives them)."""
        parsed: dict[str, Any] = {name: {} for _, name, _ in self.prefixes}
        lowered: dict[str, str] = {}
        parse_shape = self.parser._parse_shape
        for header, value in headers:
            lower = header.lower()
            lowered[lower] = value
            member = self.members.get(lower)
            if member is not None:
                parsed[member[0]] = parse_shape(member[1], value)
                continue
            for prefix, name, _ in self.prefixes:
                if lower.startswith(prefix):
                    parsed[name][header[len(prefix):]] = value
        for name, shape in self.status_members:
            parsed[name] = parse_shape(shape, status)
        metadata: dict[str, Any] = {}
        if "x-amzn-requestid" in lowered:
            metadata["RequestId"] = lowered["x-amzn-requestid"]
        elif "x-amz-request-id" in lowered:
            metadata["RequestId"] = lowered["x-amz-request-id"]
            metadata["HostId"] = lowered.get("x-amz-id-2", "")
        metadata.update(HTTPStatusCode=status, HTTPHeaders=lowered, RetryAttempts=0)
        parsed["ResponseMetadata"] = metadata
        return parsed


class LeanRequests:
    """The lean path of one bucket on one boto3 client (see the module's docstring).

    Build it with :meth:`for_client`; each method returns what the boto3 call would, raises
    the ``ClientError`` it would for a refusal, and raises :class:`Retry` for a failure the
    caller should send through boto3 (which then retries it, this attempt counted).
    """

    def __init__(self, client: Any, bucket: str, retries: int,
                 timestamp_parser: Callable[[str], Any],
                 operations: Iterable[str] = OPERATIONS) -> None:
        self.client = client
        self.bucket = bucket
        self.operations = frozenset(operations)
        self.observer: Observer | None = None
        url = client.generate_presigned_url("head_object",
                                            Params={"Bucket": bucket, "Key": PROBE_KEY})
        base = url.split("?", 1)[0]
        if not base.endswith("/" + PROBE_KEY):
            raise ValueError(f"unexpected object URL {base}")
        self.base = base[:-len(PROBE_KEY)]
        # Path style: ``/bucket``, as botocore sends it; virtual hosts: ``/``.
        origin_end = self.base.index("/", self.base.index("://") + 3)
        self.bucket_url = self.base if self.base[origin_end:] == "/" else self.base[:-1]
        self.signer = client._request_signer
        self.http = client._endpoint.http_session
        self.host: str | None = None
        try:
            direct = DirectTransport(self.http, self.base)
            self.transport: Callable[[AWSRequest], Any] = direct
            self.host = direct.host
        except ValueError:
            self.transport = lambda request: self.http.send(request.prepare())
        self.config = client.meta.config
        self.user_agent: str | None = client._user_agent_creator.to_string()
        self.parser = RestXMLParser(timestamp_parser=timestamp_parser)
        model = client.meta.service_model
        self.models = {op: model.operation_model(op) for op in OPERATIONS}
        self.parses = {op: HeaderParse(self.models[op].output_shape, self.parser)
                       for op in OPERATIONS}
        self.list_body = compile_shape(self.models["ListObjectsV2"].output_shape,
                                       timestamp_parser)
        self.retry = PacedRetry(retries)
        self.auth_args = {op: args for op in self.operations
                          if (args := self._auth_args(op)) is not None}

    def _auth_args(self, op: str) -> dict[str, str] | None:
        """What ``RequestSigner.sign`` would give ``get_auth_instance`` for ``op``'s lean
        requests, or None when it must sign them itself (unknown before-sign handlers,
        UNSIGNED, a signer without what is read here)."""
        try:
            handlers = self.client.meta.events._emitter._handlers.prefix_search(
                f"before-sign.s3.{op}")
            version = self.signer._choose_signer(op, "standard",
                                                 {"client_config": self.config})
        except AttributeError:
            return None
        names = {getattr(handler, "__qualname__", repr(handler)) for handler in handlers}
        if not names <= HARMLESS_BEFORE_SIGN or not isinstance(version, str):
            return None
        return {"signing_name": self.signer.signing_name,
                "region_name": self.signer.region_name, "signature_version": version}

    def _sign(self, op: str, request: AWSRequest) -> None:
        """Sign as the client's signer would (no credentials: raised as boto3 would)."""
        args = self.auth_args.get(op)
        if args is None:
            self.signer.sign(op, request)
        else:
            self.signer.get_auth_instance(**args).add_auth(request)

    @classmethod
    def for_client(cls, client: Any, bucket: str, retries: int,
                   timestamp_parser: Callable[[str], Any],
                   params: RequestParams | None = None,
                   user_agent: bool = True) -> "LeanRequests | None":
        """The lean path of the operations ``params`` (the mount's per-request options)
        adds nothing to, or None when botocore's whole pipeline is needed for every one."""
        model = client.meta.service_model
        operations = [op for op in OPERATIONS
                      if params is None or not params.applies_to(model.operation_model(op))]
        if not operations:
            return None
        try:
            lean = cls(client, bucket, retries, timestamp_parser, operations)
        except (AttributeError, ValueError, botocore.exceptions.BotoCoreError) as exc:
            log.debug("requests all go through boto3: %s", exc)
            return None
        if not user_agent:
            lean.user_agent = None
        return lean

    def serves(self, op: str) -> bool:
        return op in self.operations

    # -- the operations -------------------------------------------------------------------

    def head(self, key: str) -> dict | None:
        """HeadObject's answer, or None for 404."""
        status, headers, _ = self._send("HeadObject", "HEAD", key, {}, b"", accept_404=True)
        if status == 404:
            return None
        return self.parses["HeadObject"](status, headers)

    def get(self, key: str, range_header: str) -> dict:
        """A ranged GetObject's answer, with ``Body`` holding the bytes."""
        first, _, last = range_header.partition("=")[2].partition("-")
        big = not (first.isdigit() and last.isdigit()) or int(last) - int(first) >= WIRE_BODY
        status, headers, body = self._send("GetObject", "GET", key, {"Range": range_header}, b"",
                                           big_body=big)
        parsed = self.parses["GetObject"](status, headers)
        parsed["Body"] = body
        return parsed

    def get_stream(self, key: str, range_header: str, chunk: int) -> tuple[dict, Iterator[bytes]]:
        """A ranged GetObject's answer and its body as ``chunk``-byte pieces, read as they are
        iterated (urllib3's errors on the way, as botocore's).  Close the iterator to drop
        the rest (the connection is then closed, not reused)."""
        status, headers, raw = self._send("GetObject", "GET", key, {"Range": range_header}, b"",
                                          stream=True)
        return self.parses["GetObject"](status, headers), _pieces(raw, chunk, self.base)

    def put(self, key: str, body: bytes, metadata: dict[str, str], content_type: str) -> dict:
        """PutObject of ``body`` (at most :data:`MAX_BODY` bytes) with user metadata."""
        if not all(value.isascii() for value in metadata.values()):
            raise NotLean("metadata that is not ASCII")  # boto3 knows how to refuse it
        headers = {"Content-Type": content_type}
        for name, value in metadata.items():
            headers["x-amz-meta-" + name] = value
        status, answer, _ = self._send("PutObject", "PUT", key, headers, body)
        return self.parses["PutObject"](status, answer)

    def delete(self, key: str) -> dict:
        """DeleteObject (S3 answers 204 whether or not the key existed)."""
        status, headers, _ = self._send("DeleteObject", "DELETE", key, {}, b"")
        return self.parses["DeleteObject"](status, headers)

    def list(self, prefix: str, delimiter: str | None = None, max_keys: int | None = None,
             start_after: str | None = None, token: str | None = None) -> dict:
        """One page of ListObjectsV2, as boto3 returns it (keys URL-decoded)."""
        query = [*LIST_QUERY, ("prefix", prefix)]
        for name, value in (("delimiter", delimiter), ("max-keys", max_keys),
                            ("start-after", start_after), ("continuation-token", token)):
            if value is not None:
                query.append((name, str(value)))
        url = self.bucket_url + "?" + percent_encode_sequence(query)
        status, headers, body = self._send("ListObjectsV2", "GET", prefix, {}, b"", url=url)
        parsed = parse_listing_body(body, self.list_body)
        if parsed is None:  # cut short, or an error sent with 200: botocore retries it (also
            # with retries=0: too rare to parse its error here)
            log.info("ListObjectsV2 answered 200 without a listing: sent again through boto3")
            raise Retry("ListObjectsV2")
        parsed.update(self.parses["ListObjectsV2"](status, headers))
        botocore.handlers.decode_list_object_v2(parsed, {"encoding_type_auto_set": True})
        return parsed

    # -- one attempt ----------------------------------------------------------------------

    def _send(self, op: str, method: str, key: str, headers: dict[str, str], body: bytes,
              accept_404: bool = False, url: str | None = None, stream: bool = False,
              big_body: bool = False) -> tuple[int, Any, Any]:
        """Sign and send one request: (status, its headers, its body, or with ``stream`` the
        urllib3 response to read it from); ``big_body``: an answer of more than
        :data:`WIRE_BODY` bytes is likely (read by urllib3, into one buffer)."""
        if self.user_agent is not None:
            headers["User-Agent"] = self.user_agent
        if self.host is not None:  # signed as botocore would derive it, without the URL parse
            headers["Host"] = self.host
        if url is None:
            url = self.base + percent_encode(key, safe="/~")
        request = _BytesRequest(method, url, headers=headers, data=body)
        request.stream_output = stream
        request.context["ocifs_big_body"] = big_body
        request.context["client_config"] = self.config
        if op == "PutObject":
            request.context["has_streaming_input"] = True
        self._sign(op, request)
        if http_log.isEnabledFor(logging.DEBUG):
            http_log.debug("Sending http request: %s", request.prepare())
        started = time.perf_counter()
        try:
            response = self.transport(request)
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            self._failed(op, key, started, len(body), None, None, exc)
        status = response.status_code
        if http_log.isEnabledFor(logging.DEBUG):
            http_log.debug("Response %d headers: %s", status, dict(response.headers.items()))
        if status < 300 or (accept_404 and status == 404):
            self._observe(op, key, started, len(body), response, None, None, False)
            return (status, response.pairs if isinstance(response, WireAnswer)
                    else response.raw.headers.itermerged(),
                    response.raw if stream else response.content)
        parsed = self.parser.parse({"status_code": status, "headers": response.headers,
                                    "body": response.content}, self.models[op].output_shape)
        self._failed(op, key, started, len(body), response, parsed, None)
        raise AssertionError("unreachable")  # _failed always raises

    def _failed(self, op: str, key: str, started: float, length: int, response: Any,
                parsed: dict | None, exception: BaseException | None) -> None:
        """Raise :class:`Retry` (after the first retry's pause) for what botocore retries,
        else what the boto3 call would raise."""
        context = standard.RetryContext(attempt_number=1, operation_model=self.models[op],
                                        parsed_response=parsed, http_response=response,
                                        caught_exception=exception)
        delay = self.retry.next_delay(context)
        self._observe(op, key, started, length, response, parsed, exception, delay is not None)
        if delay is not None:
            time.sleep(delay)
            raise Retry(op)
        if exception is not None:
            raise exception
        assert parsed is not None
        code = parsed.get("Error", {}).get("Code")
        raise self.client.exceptions.from_code(code)(parsed, op)

    def _observe(self, *outcome: Any) -> None:
        if self.observer is not None:
            self.observer(*outcome)


def _pieces(raw: Any, chunk: int, url: str) -> Iterator[bytes]:
    """The body of urllib3 response ``raw``, ``chunk`` bytes at a time, urllib3's errors
    raised as the botocore errors a boto3 body would raise; closed when left early."""
    try:
        yield from raw.stream(chunk, decode_content=False)
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise botocore.exceptions.ReadTimeoutError(endpoint_url=url, error=exc) from None
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.HTTPError) as exc:
        raise botocore.exceptions.ResponseStreamingError(error=exc) from None
    finally:
        if not raw.isclosed():
            raw.close()


def with_lean_attempt(lean_call: Callable[[], Any], boto_call: Callable[[], Any]) -> Any:
    """``lean_call()``; when it asks for a retry, ``boto_call()`` with its attempt counted
    (and ``boto_call()`` alone for a call the lean path does not send)."""
    try:
        return lean_call()
    except NotLean:
        return boto_call()
    except Retry:
        with attempts_already_made(1):
            return boto_call()


class _Answer:
    """What :class:`DirectTransport` got back, with the attributes of botocore's AWSResponse
    that are read here (``headers``: urllib3's case-insensitive dict; ``content`` read on
    first use, so that a streamed body is not)."""

    __slots__ = ("status_code", "raw", "headers")

    def __init__(self, raw: Any) -> None:
        self.status_code = raw.status
        self.raw = raw
        self.headers = raw.headers

    @property
    def content(self) -> bytes:
        return self.raw.data


class DirectTransport:
    """The client's own urllib3 pool, without botocore's per-request wrapping.

    ``URLLib3Session.send`` looks the proxy and the pool up again, parses the URL twice and
    copies the headers into two case-insensitive dicts for every request; none of that
    changes between requests to one endpoint without a proxy (with one, requests go through
    ``send``).  A request whose answer is read whole is one :func:`ocifs.s3.wire.exchange`
    on a connection of that pool; a streamed one goes through urllib3's ``urlopen``.  The
    pool, its TLS settings (verification, CA bundle, client certificate) and timeouts are
    botocore's; what fails on the way becomes the botocore error ``send`` raises, so retry
    decisions and errno mapping see the same exceptions.
    """

    def __init__(self, http: Any, base: str) -> None:
        if http._proxy_config.proxy_url_for(base):
            raise ValueError("requests go through a proxy")
        self.http = http
        self.base = base
        parts = urllib.parse.urlsplit(base)
        self.where = (parts.hostname, parts.port, parts.scheme)
        self.origin = len(f"{parts.scheme}://{parts.netloc}")
        # the Host header: what botocore signs when none is set (lowercase, IPv6 in
        # brackets, the port unless it is the scheme's own)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
            host = f"{host}:{parts.port}"
        self.host = host
        self._pool: Any = None

    def pool(self) -> Any:
        """The endpoint's pool, looked up once (the manager's lookup and TLS setup cost as
        much as parsing an answer) and again once the manager has dropped its pools
        (botocore's ``close``; urllib3 2 does not close them then)."""
        pool = self._pool
        if pool is None or not len(self.http._manager.pools):
            pool = self.http._manager.connection_from_host(*self.where)
            self.http._setup_ssl_cert(pool, self.base, self.http._verify)
            self._pool = pool
        return pool

    def __call__(self, request: AWSRequest) -> "WireAnswer | _Answer":
        """Send ``request``; its body is read at once unless ``request.stream_output``."""
        pool = self.pool()
        if request.stream_output or request.context.get("ocifs_big_body"):
            return self._urlopen(pool, request)
        url = request.url
        try:
            return exchange(pool, request.method, url[self.origin:], request.headers.items(),
                            request.data or b"")
        except ConnectFailed as failed:
            exc = failed.__cause__
            if isinstance(exc, (urllib3.exceptions.SSLError, ssl.SSLError)):
                raise botocore.exceptions.SSLError(endpoint_url=url, error=exc) from None
            if isinstance(exc, urllib3.exceptions.NewConnectionError):
                raise botocore.exceptions.EndpointConnectionError(endpoint_url=url,
                                                                  error=exc) from None
            if isinstance(exc, (urllib3.exceptions.ConnectTimeoutError, TimeoutError)):
                raise botocore.exceptions.ConnectTimeoutError(endpoint_url=url,
                                                              error=exc) from None
            raise botocore.exceptions.EndpointConnectionError(endpoint_url=url,
                                                              error=exc) from None
        except TimeoutError as exc:
            raise botocore.exceptions.ReadTimeoutError(endpoint_url=url, error=exc) from None
        except WireError as exc:
            raise botocore.exceptions.ConnectionClosedError(error=exc, request=request,
                                                            endpoint_url=url) from None

    def _urlopen(self, pool: Any, request: AWSRequest) -> _Answer:
        """Through urllib3: a streamed answer, or a big one (read into one buffer)."""
        url = request.url
        try:
            raw = pool.urlopen(request.method, url[self.origin:], body=request.data or None,
                               headers=dict(request.headers.items()), retries=False,
                               assert_same_host=False, redirect=False,
                               preload_content=not request.stream_output,
                               decode_content=False)
        except urllib3.exceptions.SSLError as exc:
            raise botocore.exceptions.SSLError(endpoint_url=url, error=exc) from None
        except urllib3.exceptions.NewConnectionError as exc:
            raise botocore.exceptions.EndpointConnectionError(endpoint_url=url,
                                                              error=exc) from None
        except urllib3.exceptions.ConnectTimeoutError as exc:
            raise botocore.exceptions.ConnectTimeoutError(endpoint_url=url, error=exc) from None
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise botocore.exceptions.ReadTimeoutError(endpoint_url=url, error=exc) from None
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as exc:
            raise botocore.exceptions.ConnectionClosedError(error=exc, request=request,
                                                            endpoint_url=url) from None
        except urllib3.exceptions.HTTPError as exc:
            raise botocore.exceptions.HTTPClientError(error=exc) from None
        return _Answer(raw)
