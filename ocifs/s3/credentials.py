"""Where the access key comes from, in s3fs's order, with its permission checks.

Order (s3fs's): ``passwd_file=`` → AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY(/AWS_SESSION_TOKEN) →
AWS_CREDENTIAL_FILE → ~/.aws/credentials (``profile=``) → ~/.passwd-s3fs → /etc/passwd-s3fs.
Errors name the source that was tried and never contain a secret.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import stat
from pathlib import Path
from typing import Any

from botocore.credentials import ContainerProvider, InstanceMetadataProvider
from botocore.utils import InstanceMetadataFetcher


class CredentialError(ValueError):
    """Credentials missing or unusable; the message says which source and why."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = dataclasses.field(repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)
    source: str = ""
    # A botocore credential provider (instance or container metadata) that refreshes the
    # keys itself; access_key/secret_key are then empty.
    provider: Any = dataclasses.field(default=None, repr=False, compare=False)


ANONYMOUS = Credentials("", "", source="public_bucket (unsigned requests)")
METADATA_TIMEOUT = 2.0  # seconds per metadata request, as botocore's own default (1 s) doubled


def metadata_credentials(iam_role: str | None, ecs: bool, imdsv1only: bool = False) -> Credentials:
    """Credentials from the EC2 instance metadata service (``iam_role``) or the container
    credentials endpoint (``ecs``), through botocore's own providers; fetched once here so a
    mount without a role fails before anything is mounted."""
    if ecs:
        provider: Any = ContainerProvider()
        source = "container credentials endpoint (ecs)"
    else:
        fetcher = InstanceMetadataFetcher(timeout=METADATA_TIMEOUT, num_attempts=2)
        provider = InstanceMetadataProvider(iam_role_fetcher=fetcher)
        source = "instance metadata (iam_role)"
    try:
        loaded = provider.load()
    except Exception as exc:  # noqa: BLE001 - botocore raises several kinds; none holds a secret
        raise CredentialError(f"{source}: no credentials ({exc.__class__.__name__})") from None
    if loaded is None:
        raise CredentialError(f"{source}: no credentials available")
    if iam_role and iam_role != "auto" and not ecs:
        role = fetcher.retrieve_iam_role_credentials().get("role_name")
        if role != iam_role:
            raise CredentialError(f"option iam_role={iam_role}: this instance's role is {role}")
    return Credentials("", "", source=source, provider=provider)


def require_session_token(credentials: Credentials) -> Credentials:
    """``use_session_token``: s3fs refuses keys that come without a session token."""
    if credentials.provider is None and not credentials.session_token:
        raise CredentialError(f"option use_session_token: credentials from {credentials.source} "
                              "have no session token (AWS_SESSION_TOKEN)")
    return credentials


SYSTEM_PASSWD_FILE = Path("/etc/passwd-s3fs")


def check_private(path: Path) -> None:
    """Refuse a secrets file others (or, but for /etc/passwd-s3fs, the group) can access.

    The same rule as s3fs: a key readable by other users is a leaked key.
    """
    mode = path.stat().st_mode
    if mode & stat.S_IRWXO:
        who = "others"
    elif mode & stat.S_IRWXG and path != SYSTEM_PASSWD_FILE:
        who = "group"
    else:
        return
    raise CredentialError(
        f"credentials file {path} should not have {who} permissions "
        f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}")


def read_passwd_file(path: Path, bucket: str) -> Credentials:
    """Read an s3fs passwd file: ``KEY:SECRET`` or ``BUCKET:KEY:SECRET`` lines, ``#`` comments.

    A line naming the bucket wins over a plain ``KEY:SECRET`` line.
    """
    try:
        check_private(path)
        text = path.read_text()
    except FileNotFoundError:
        raise CredentialError(f"passwd file {path} does not exist") from None
    except PermissionError:
        raise CredentialError(f"passwd file {path} cannot be read (permission denied)") from None
    except IsADirectoryError:
        raise CredentialError(f"passwd file {path} is a directory") from None
    default: Credentials | None = None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) == 2 and all(fields):
            if default is None:
                default = Credentials(fields[0], fields[1], source=f"passwd file {path}")
        elif len(fields) == 3 and all(fields):
            if fields[0] == bucket:
                return Credentials(fields[1], fields[2], source=f"passwd file {path}")
        else:
            raise CredentialError(
                f"passwd file {path} line {number} is not KEY:SECRET or BUCKET:KEY:SECRET")
    if default is None:
        raise CredentialError(f"passwd file {path} has no KEY:SECRET line for bucket {bucket}")
    return default


def _from_aws_file(path: Path, profile: str) -> Credentials | None:
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(path.read_text())
    except (OSError, configparser.Error) as exc:
        raise CredentialError(f"AWS credentials file {path} cannot be read: {exc.__class__.__name__}") from None
    if not parser.has_section(profile):
        return None
    section = parser[profile]
    key, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
    if not key or not secret:
        raise CredentialError(f"AWS credentials file {path} profile [{profile}] lacks a key or secret")
    return Credentials(key.strip(), secret.strip(), (section.get("aws_session_token") or "").strip() or None,
                       source=f"{path} [{profile}]")


def find_credentials(bucket: str, passwd_file: str | None, profile: str = "default",
                     environ: dict[str, str] | None = None, home: Path | None = None) -> Credentials:
    """Return the first credentials found in s3fs's order, or raise naming what was tried."""
    env = os.environ if environ is None else environ
    if passwd_file:
        return read_passwd_file(Path(passwd_file).expanduser(), bucket)
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret, env.get("AWS_SESSION_TOKEN") or None, source="environment")
    if key or secret:
        raise CredentialError("only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set")
    home = home if home is not None else Path(env.get("HOME") or Path.home())
    if env.get("AWS_CREDENTIAL_FILE"):
        return read_passwd_file(Path(env["AWS_CREDENTIAL_FILE"]), bucket)
    aws_file = home / ".aws" / "credentials"
    if aws_file.is_file():
        found = _from_aws_file(aws_file, profile)
        if found:
            return found
    for candidate in (home / ".passwd-s3fs", SYSTEM_PASSWD_FILE):
        if candidate.exists():
            return read_passwd_file(candidate, bucket)
    raise CredentialError(
        "no credentials found: tried passwd_file=, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
        f"AWS_CREDENTIAL_FILE, {aws_file}, {home / '.passwd-s3fs'} and /etc/passwd-s3fs")
