"""Every s3fs 1.97 option is known: implemented, accepted with a warning, or refused with a reason.

The table below is s3fs 1.97's man page (REFERENCE §3) plus the older and newer names still
seen in compose files.  Effects are checked on the boto3 client ocifs builds: its config, and
the headers of requests caught at botocore's ``before-send`` (answered there, no server).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import urllib3
from botocore import UNSIGNED
from botocore.awsrequest import AWSResponse

from ocifs.run.mount import MountError, MountSpec, build_store, credentials_for
from ocifs.run.options import (ALIASES, FSTAB_WORDS, NO_EFFECT, REFUSED, MountOptions,
                               OptionError, options_help, parse_options)
from ocifs.s3.credentials import Credentials, CredentialError, metadata_credentials
from ocifs.s3.requests import RequestOptionError, parse_ahbe_conf, sse_params

README = (Path(__file__).parent.parent / "README.md").read_text()

IMPLEMENTED, WARNS, REFUSES, NOT_WIRED = "implemented", "warns", "refused", "parsed, not yet wired"

# (option as a user writes it, what ocifs does with it).  Every s3fs 1.97 option is here.
S3FS_197 = [
    ("bucket=b:/p", IMPLEMENTED), ("url=https://s3.example.com", IMPLEMENTED),
    ("host=s3.example.com", IMPLEMENTED), ("servicepath=/svc", IMPLEMENTED),
    ("endpoint=eu-west-1", IMPLEMENTED), ("region=eu-west-1", IMPLEMENTED),
    ("use_path_request_style", IMPLEMENTED), ("listobjectsv2", WARNS), ("sigv2", WARNS),
    ("sigv4", WARNS), ("noua", IMPLEMENTED), ("instance_name=node1", IMPLEMENTED),
    ("requester_pays", IMPLEMENTED),
    ("passwd_file=/etc/passwd-s3fs", IMPLEMENTED), ("profile=work", IMPLEMENTED),
    ("public_bucket=1", IMPLEMENTED), ("iam_role", IMPLEMENTED), ("iam_role=auto", IMPLEMENTED),
    ("iam_role=myrole", IMPLEMENTED), ("ecs", IMPLEMENTED), ("imdsv1only", WARNS),
    ("use_session_token", IMPLEMENTED), ("ibm_iam_auth", REFUSES),
    ("ibm_iam_endpoint=https://iam.cloud.ibm.com", REFUSES), ("credlib=libsts.so", REFUSES),
    ("credlib_opts=x", REFUSES),
    ("no_check_certificate", IMPLEMENTED), ("ssl_verify_hostname=0", IMPLEMENTED),
    ("ssl_client_cert=/c.pem", IMPLEMENTED), ("cipher_suites=ECDHE-RSA-AES128-GCM-SHA256", WARNS),
    ("nodnscache", WARNS), ("nosscache", WARNS), ("ipresolve=IPv4", WARNS),
    ("proxy=http://proxy:3128", IMPLEMENTED), ("proxy_cred_file=/p", IMPLEMENTED),
    ("connect_timeout=30", IMPLEMENTED), ("readwrite_timeout=30", IMPLEMENTED),
    ("retries=3", IMPLEMENTED),
    ("storage_class=standard_ia", IMPLEMENTED), ("use_rrs", IMPLEMENTED),
    ("use_sse", IMPLEMENTED), ("use_sse=1", IMPLEMENTED), ("use_sse=kmsid:abc", IMPLEMENTED),
    ("use_sse=k", IMPLEMENTED), ("use_sse=custom:/k", IMPLEMENTED), ("use_sse=c", IMPLEMENTED),
    ("load_sse_c=/k", IMPLEMENTED), ("default_acl=private", WARNS),
    ("mime=/etc/mime.types", IMPLEMENTED), ("ahbe_conf=/a", IMPLEMENTED),
    ("enable_content_md5", WARNS), ("enable_unsigned_payload", IMPLEMENTED),
    ("use_xattr", IMPLEMENTED), ("use_wtf8", IMPLEMENTED), ("compat_dir", IMPLEMENTED),
    ("complement_stat", WARNS),
    ("multipart_size=10", IMPLEMENTED), ("multipart_threshold=25", IMPLEMENTED),
    ("multipart_copy_size=512", IMPLEMENTED), ("singlepart_copy_limit=512", IMPLEMENTED),
    ("nomultipart", IMPLEMENTED), ("nomixupload", IMPLEMENTED), ("nocopyapi", IMPLEMENTED),
    ("norenameapi", WARNS), ("streamupload", WARNS), ("max_dirty_data=5120", IMPLEMENTED),
    ("max_thread_count=10", IMPLEMENTED), ("parallel_count=5", IMPLEMENTED),
    ("multireq_max=20", WARNS),
    ("use_cache=/tmp", IMPLEMENTED), ("del_cache", IMPLEMENTED), ("check_cache_dir_exist", WARNS),
    ("ensure_diskfree=100", IMPLEMENTED), ("free_space_ratio=10", WARNS),
    ("tmpdir=/tmp", IMPLEMENTED), ("stat_cache_expire=900", IMPLEMENTED),
    ("stat_cache_interval_expire=900", IMPLEMENTED), ("max_stat_cache_size=100000", IMPLEMENTED),
    ("enable_negative_cache", IMPLEMENTED), ("disable_negative_cache", IMPLEMENTED),
    ("enable_noobj_cache", WARNS), ("list_object_max_keys=500", IMPLEMENTED),
    ("set_check_cache_sigusr1", WARNS), ("update_parent_dir_stat", IMPLEMENTED),
    ("bucket_size=1TiB", IMPLEMENTED),
    ("dbglevel=info", IMPLEMENTED), ("curldbg", IMPLEMENTED), ("logfile=/tmp/l", IMPLEMENTED),
    ("no_time_stamp_msg", WARNS), ("mp_umask=022", IMPLEMENTED), ("umask=022", IMPLEMENTED),
    ("uid=1000", IMPLEMENTED), ("gid=1000", IMPLEMENTED), ("allow_other", IMPLEMENTED),
    ("nonempty", WARNS), ("noxmlns", WARNS), ("insecure_logging", WARNS),
    ("notsup_compat_dir", WARNS), ("default_permissions", IMPLEMENTED),
]

# Options s3fs does not read itself but hands to libfuse 2 (its man page: "FUSE/mount Options"),
# which compose files carry too: the kernel's mount flags and FUSE's own.
FUSE_AND_MOUNT = [
    ("ro", IMPLEMENTED), ("noatime", IMPLEMENTED), ("sync", IMPLEMENTED), ("dirsync", IMPLEMENTED),
    ("allow_root", IMPLEMENTED), ("max_read=131072", WARNS), ("direct_io", IMPLEMENTED),
    ("attr_timeout=0", IMPLEMENTED), ("entry_timeout=2.5", IMPLEMENTED),
    ("kernel_cache", WARNS), ("auto_cache", WARNS), ("big_writes", WARNS), ("large_read", WARNS),
    ("max_write=131072", WARNS), ("max_readahead=131072", WARNS), ("negative_timeout=0", WARNS),
    ("ac_attr_timeout=1", WARNS), ("hard_remove", WARNS), ("use_ino", WARNS),
    ("readdir_ino", WARNS), ("intr", WARNS), ("async_read", WARNS), ("atomic_o_trunc", WARNS),
]


def _name(option: str) -> str:
    name = option.partition("=")[0]
    return ALIASES.get(name, name)


@pytest.mark.parametrize("option,outcome", S3FS_197 + FUSE_AND_MOUNT,
                         ids=[o for o, _ in S3FS_197 + FUSE_AND_MOUNT])
def test_every_s3fs_option_is_known(option, outcome):
    name = _name(option)
    if outcome == REFUSES:
        with pytest.raises(OptionError, match=f"^option {name} is not supported: .+"):
            parse_options([option])
        return
    options = parse_options([option])  # never "unknown option"
    if outcome == WARNS:
        assert options.ignored == [name] and NO_EFFECT[name]
    else:
        assert name in {f.name for f in MountOptions.specs()}
        assert not options.ignored
    if outcome == NOT_WIRED:
        field = next(f for f in MountOptions.specs() if f.name == name)
        assert "not yet wired" in field.metadata["help"]


def test_help_and_readme_name_every_option():
    text = options_help()
    for option, _ in S3FS_197 + FUSE_AND_MOUNT:
        name = option.partition("=")[0]
        assert name in text or name in ALIASES, name
        assert f"`{name}`" in README, name
    for name in FSTAB_WORDS:
        assert name in text


def test_an_unknown_option_still_fails():
    with pytest.raises(OptionError, match="^unknown option: no_such_option$"):
        parse_options(["no_such_option"])


def test_older_forms_fold_into_the_options_ocifs_uses():
    assert parse_options(["host=s3.example.com:8443,servicepath=/svc"]).url == \
        "https://s3.example.com:8443/svc"
    assert parse_options(["host=http://h:9"]).url == "http://h:9"
    assert parse_options(["use_rrs"]).storage_class == "reduced_redundancy"
    assert parse_options(["iam_role"]).iam_role == "auto"
    assert parse_options(["use_sse"]).use_sse == "1"
    hostname = parse_options(["ssl_verify_hostname=0"])
    assert hostname.no_check_certificate and any("ssl_verify_hostname" in n for n in hostname.notices)
    last_use = parse_options(["stat_cache_expire=1,stat_cache_interval_expire=2"])  # last wins
    assert last_use.stat_cache_interval_expire == 2
    made = parse_options(["stat_cache_interval_expire=2", "stat_cache_expire=1"])
    assert (made.stat_cache_interval_expire, made.stat_cache_expire) == (None, 1)


@pytest.mark.parametrize("option,message", [
    ("host=h,url=https://x", "options host and url cannot both be given"),
    ("storage_class=cold", "option storage_class=cold is not one of"),
    ("bucket_size=lots", "option bucket_size has a bad value"),
    ("bucket_size=0", "option bucket_size has a bad value"),
    ("tmpdir=/nonexistent/dir", "option tmpdir=/nonexistent/dir is not a directory"),
    ("public_bucket=1,iam_role", "option public_bucket"),
    ("use_rrs,storage_class=glacier", "options use_rrs and storage_class"),
])
def test_bad_values_name_the_option(option, message):
    with pytest.raises(OptionError, match=message):
        parse_options([option])


# -- effects on the client ------------------------------------------------------------------

def store_for(option_string: str, credentials: Credentials | None = None):
    spec = MountSpec("bucket", "", "/mnt", parse_options([option_string]),
                     credentials=credentials or Credentials("key", "secret"))
    return build_store(spec)


BASE = "url=http://127.0.0.1:9,use_path_request_style,retries=0"


def test_tls_and_proxy_options_reach_botocore(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x"), key.write_text("x")
    store = store_for(f"{BASE},no_check_certificate,proxy=proxy.example:3128,"
                      f"ssl_client_cert={cert}:PEM:{key}:PEM,instance_name=node7")
    config = store.client.meta.config
    assert store.client._endpoint.http_session._verify is False
    assert config.proxies == {"http": "http://proxy.example:3128",
                              "https": "http://proxy.example:3128"}
    assert config.client_cert == (str(cert), str(key))
    assert "ocifs-instance/node7" in config.user_agent_extra
    assert store_for(BASE).client._endpoint.http_session._verify is True


def test_proxy_credentials_go_into_the_proxy_url_only(tmp_path):
    creds = tmp_path / "proxy-creds"
    creds.write_text("user:p%40ss\n")
    creds.chmod(0o600)
    store = store_for(f"{BASE},proxy=http://proxy:3128,proxy_cred_file={creds}")
    assert store.client.meta.config.proxies["https"] == "http://user:p%40ss@proxy:3128"
    creds.chmod(0o644)
    with pytest.raises(MountError, match="^option proxy_cred_file: .*others permissions"):
        store_for(f"{BASE},proxy=http://proxy:3128,proxy_cred_file={creds}")
    with pytest.raises(MountError, match="^option proxy_cred_file needs proxy="):
        store_for(f"{BASE},proxy_cred_file={creds}")


def test_ssl_client_cert_types_botocore_cannot_load_are_refused(tmp_path):
    cert = tmp_path / "c.p12"
    cert.write_text("x")
    with pytest.raises(MountError, match="^option ssl_client_cert: type P12 is not supported"):
        store_for(f"{BASE},ssl_client_cert={cert}:P12")
    with pytest.raises(MountError, match="^option ssl_client_cert: /nope.pem does not exist"):
        store_for(f"{BASE},ssl_client_cert=/nope.pem")


class Recorder:
    """Answers every request at ``before-send`` (200, empty body) and keeps its headers."""

    def __init__(self, client) -> None:
        self.requests: list = []
        client.meta.events.register_last("before-send.s3", self)

    def __call__(self, request, **_):
        self.requests.append(request)
        raw = urllib3.HTTPResponse(body=io.BytesIO(b""), preload_content=False, status=200)
        return AWSResponse(request.url, 200, {}, raw)

    def headers(self, index: int = -1) -> dict[str, str]:
        return {k.lower(): (v.decode() if isinstance(v, bytes) else v)
                for k, v in self.requests[index].headers.items()}


def every_operation(client) -> dict[str, dict[str, str]]:
    """One request of each kind the store sends; their headers by operation."""
    recorder = Recorder(client)
    seen = {}
    calls = {
        "PutObject": lambda: client.put_object(Bucket="bucket", Key="d/f.gz", Body=b"x"),
        "GetObject": lambda: client.get_object(Bucket="bucket", Key="d/f.gz"),
        "HeadObject": lambda: client.head_object(Bucket="bucket", Key="d/f.gz"),
        "CopyObject": lambda: client.copy_object(Bucket="bucket", Key="d/g.gz",
                                                 CopySource={"Bucket": "bucket", "Key": "d/f.gz"}),
        "CreateMultipartUpload": lambda: client.create_multipart_upload(Bucket="bucket", Key="d/h"),
        "UploadPart": lambda: client.upload_part(Bucket="bucket", Key="d/h", UploadId="u",
                                                 PartNumber=1, Body=b"x"),
        "UploadPartCopy": lambda: client.upload_part_copy(
            Bucket="bucket", Key="d/h", UploadId="u", PartNumber=1,
            CopySource={"Bucket": "bucket", "Key": "d/f.gz"}),
        "ListObjectsV2": lambda: client.list_objects_v2(Bucket="bucket", Prefix="d/"),
        "DeleteObject": lambda: client.delete_object(Bucket="bucket", Key="d/f.gz"),
    }
    for name, call in calls.items():
        try:
            call()
        except Exception:  # noqa: BLE001 - empty answers may not parse; the request was sent
            pass
        seen[name] = recorder.headers()
        seen[name]["url"] = recorder.requests[-1].url
    return seen


def test_sse_c_key_goes_with_every_read_write_and_copy(tmp_path):
    keyfile = tmp_path / "sse.keys"
    keyfile.write_bytes(b"k" * 32 + b"\n")
    keyfile.chmod(0o600)
    seen = every_operation(store_for(f"{BASE},use_sse=custom:{keyfile}").client)
    for op in ("PutObject", "GetObject", "HeadObject", "CopyObject", "CreateMultipartUpload",
               "UploadPart", "UploadPartCopy"):
        assert seen[op]["x-amz-server-side-encryption-customer-algorithm"] == "AES256", op
        assert "x-amz-server-side-encryption-customer-key-md5" in seen[op], op
    for op in ("CopyObject", "UploadPartCopy"):
        assert seen[op]["x-amz-copy-source-server-side-encryption-customer-algorithm"] == "AES256"
    for op in ("ListObjectsV2", "DeleteObject"):
        assert not any(h.startswith("x-amz-server-side") for h in seen[op]), op


def test_sse_s3_kms_storage_class_and_requester_pays_headers():
    seen = every_operation(store_for(f"{BASE},use_sse=1,storage_class=standard_ia,"
                                     "requester_pays").client)
    for op in ("PutObject", "CopyObject", "CreateMultipartUpload"):
        assert seen[op]["x-amz-server-side-encryption"] == "AES256"
        assert seen[op]["x-amz-storage-class"] == "STANDARD_IA"
    assert "x-amz-storage-class" not in seen["UploadPart"]
    for op in seen:
        assert seen[op]["x-amz-request-payer"] == "requester", op
    kms = every_operation(store_for(f"{BASE},use_sse=kmsid:my-key").client)
    assert kms["PutObject"]["x-amz-server-side-encryption"] == "aws:kms"
    assert kms["PutObject"]["x-amz-server-side-encryption-aws-kms-key-id"] == "my-key"
    plain = every_operation(store_for(BASE).client)
    assert not any(h.startswith(("x-amz-server-side", "x-amz-storage", "x-amz-request-payer"))
                   for headers in plain.values() for h in headers)


def test_unsigned_payload_public_bucket_noua_and_page_size():
    signed = every_operation(store_for(BASE).client)["PutObject"]
    assert signed["x-amz-content-sha256"] != "UNSIGNED-PAYLOAD"
    unsigned = every_operation(store_for(f"{BASE},enable_unsigned_payload").client)
    assert unsigned["PutObject"]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"  # on http://
    assert "authorization" in unsigned["PutObject"]
    public = store_for(f"{BASE},public_bucket=1", credentials_for(
        MountSpec("bucket", "", "/mnt", parse_options(["public_bucket=1"]))))
    assert public.client.meta.config.signature_version is UNSIGNED
    assert "authorization" not in every_operation(public.client)["GetObject"]
    assert "user-agent" not in every_operation(store_for(f"{BASE},noua").client)["GetObject"]
    assert "user-agent" in signed
    listing = every_operation(store_for(f"{BASE},list_object_max_keys=50").client)
    assert "max-keys=50" in listing["ListObjectsV2"]["url"]


def test_ahbe_conf_adds_headers_by_suffix_and_regex(tmp_path):
    conf = tmp_path / "ahbe.conf"
    conf.write_text("# s3fs's sample\n.gz Content-Encoding gzip\n"
                    "reg:^/d/.*\\.gz$ Cache-Control max-age=60\n"
                    ".txt Content-Language en\n")
    seen = every_operation(store_for(f"{BASE},ahbe_conf={conf}").client)
    assert seen["PutObject"]["content-encoding"] == "gzip"
    assert seen["PutObject"]["cache-control"] == "max-age=60"
    assert "content-language" not in seen["PutObject"]
    assert "content-encoding" not in seen["CreateMultipartUpload"]  # d/h has no suffix
    rules = parse_ahbe_conf(str(conf))
    assert [r.header for r in rules] == ["Content-Encoding", "Cache-Control", "Content-Language"]


def test_sse_option_mistakes_are_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("AWSSSECKEYS", raising=False)
    with pytest.raises(RequestOptionError, match="^option use_sse=custom needs a key file"):
        sse_params("custom", None, environ={})
    with pytest.raises(RequestOptionError, match="^option use_sse=bogus is not"):
        sse_params("bogus", None)
    keyfile = tmp_path / "k"
    keyfile.write_text("short\n")
    keyfile.chmod(0o600)
    with pytest.raises(RequestOptionError, match="must be 32 bytes") as info:
        sse_params(f"custom:{keyfile}", None)
    assert "short" not in str(info.value)
    keyfile.chmod(0o644)
    with pytest.raises(RequestOptionError, match="should not have group or other permissions"):
        sse_params(f"custom:{keyfile}", None)
    assert sse_params("k", None, environ={"AWSSSEKMSID": "from-env"})["SSEKMSKeyId"] == "from-env"
    assert sse_params("c", None, environ={"AWSSSECKEYS": "A" * 32})["SSECustomerKey"] == b"A" * 32


def test_metadata_credentials_fail_in_one_line_without_a_service(monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CredentialError, match=r"^instance metadata \(iam_role\): no credentials"):
        metadata_credentials("auto", ecs=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CredentialError, match=r"^container credentials endpoint \(ecs\): no "):
        metadata_credentials(None, ecs=True)


def test_use_session_token_refuses_keys_without_one(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    spec = MountSpec("bucket", "", "/mnt", parse_options(["use_session_token"]))
    with pytest.raises(MountError, match="^option use_session_token: .* no session token") as info:
        credentials_for(spec)
    assert "SECRET" not in str(info.value)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "TOKEN")
    assert credentials_for(spec).session_token == "TOKEN"


def test_ecs_credentials_come_from_botocore_container_provider(monkeypatch):
    import http.server
    import json
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"AccessKeyId": "ASIAECS", "SecretAccessKey": "s", "Token": "t",
                               "Expiration": "2099-01-01T00:00:00Z"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI",
                           f"http://127.0.0.1:{server.server_port}/creds")
        spec = MountSpec("bucket", "", "/mnt", parse_options(["ecs"]))
        spec.credentials = credentials_for(spec)
        assert spec.credentials.provider is not None and not spec.credentials.access_key
        client = build_store(MountSpec("bucket", "", "/mnt", parse_options([BASE + ",ecs"]),
                                       credentials=spec.credentials)).client
        assert client._request_signer._credentials.get_frozen_credentials().access_key == "ASIAECS"
    finally:
        server.shutdown()


def test_bucket_size_is_what_statfs_reports():
    import trio
    from ocifs.fuse.operations import AttrView, Operations
    from ocifs.meta.objects import ObjectAttrs
    from ocifs.run.options import parse_size

    assert parse_size("bucket_size", "1TiB") == 1 << 40
    assert parse_size("bucket_size", "500GB") == 500 * 1000 ** 3
    view = AttrView(root=ObjectAttrs(mode=0o40700), capacity=1 << 40)
    ops = Operations.__new__(Operations)
    ops.view = view
    data = trio.run(ops.statfs, None)
    assert data.f_blocks * data.f_frsize == 1 << 40 and data.f_bavail == data.f_blocks
    ops.view = AttrView(root=ObjectAttrs(mode=0o40700))
    assert trio.run(ops.statfs, None).f_blocks == (1 << 40) - 1


def test_mime_file_types_win(tmp_path):
    import mimetypes
    from ocifs.meta.objects import ObjectAttrs, content_type_for
    from ocifs.run.mount import load_mime_types

    types = tmp_path / "mime.types"
    types.write_text("application/x-ocifs-test\tocifstest\n")
    load_mime_types(str(types))
    try:
        assert content_type_for("a.ocifstest", ObjectAttrs(mode=0o100644)) == \
            "application/x-ocifs-test"
    finally:
        mimetypes.init()
    with pytest.raises(MountError, match="^option mime=/nonexistent is not a file"):
        load_mime_types("/nonexistent")
