"""Credential sources and their checks (ocifs.s3.credentials)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocifs.s3 import credentials
from ocifs.s3.credentials import CredentialError, Credentials, find_credentials, read_passwd_file

SECRET = "Sup3rS3cretValue/xyz+123"
SECRET2 = "AnotherSecretValue/456"
TOKEN = "SessionTokenValue-789"


@pytest.fixture(autouse=True)
def no_system_passwd(tmp_path, monkeypatch):
    """Never let a real /etc/passwd-s3fs on the test machine take part."""
    monkeypatch.setattr(credentials, "SYSTEM_PASSWD_FILE", tmp_path / "no-etc-passwd-s3fs")


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def assert_no_secret(text: str) -> None:
    for secret in (SECRET, SECRET2, TOKEN):
        assert secret not in text


# -- passwd files -----------------------------------------------------------------------------

def test_passwd_key_secret(tmp_path):
    p = write(tmp_path / "p", f"AKIAKEY:{SECRET}\n")
    c = read_passwd_file(p, "bucket")
    assert (c.access_key, c.secret_key, c.session_token) == ("AKIAKEY", SECRET, None)
    assert str(p) in c.source


def test_passwd_bucket_line_preferred(tmp_path):
    p = write(tmp_path / "p", f"DEFKEY:{SECRET}\nother:OTHERKEY:x\nmybucket:BKEY:{SECRET2}\n")
    c = read_passwd_file(p, "mybucket")
    assert (c.access_key, c.secret_key) == ("BKEY", SECRET2)


def test_passwd_bucket_line_preferred_when_first(tmp_path):
    p = write(tmp_path / "p", f"mybucket:BKEY:{SECRET2}\nDEFKEY:{SECRET}\n")
    assert read_passwd_file(p, "mybucket").access_key == "BKEY"


def test_passwd_other_bucket_line_falls_back_to_default(tmp_path):
    p = write(tmp_path / "p", f"other:OKEY:{SECRET2}\nDEFKEY:{SECRET}\n")
    c = read_passwd_file(p, "mybucket")
    assert (c.access_key, c.secret_key) == ("DEFKEY", SECRET)


def test_passwd_first_default_line_wins(tmp_path):
    p = write(tmp_path / "p", f"KEY1:{SECRET}\nKEY2:{SECRET2}\n")
    assert read_passwd_file(p, "b").access_key == "KEY1"


def test_passwd_comments_and_blank_lines(tmp_path):
    p = write(tmp_path / "p", f"# a comment\n\n   \n  # indented:comment:here\nKEY:{SECRET}\n\n")
    c = read_passwd_file(p, "b")
    assert (c.access_key, c.secret_key) == ("KEY", SECRET)


def test_passwd_only_other_bucket_lines_is_error(tmp_path):
    p = write(tmp_path / "p", f"other:OKEY:{SECRET}\n")
    with pytest.raises(CredentialError) as info:
        read_passwd_file(p, "mybucket")
    assert "mybucket" in str(info.value)
    assert_no_secret(str(info.value))


@pytest.mark.parametrize("line", [f"just-one-field{SECRET}", f"a:b:c:{SECRET}", f":{SECRET}",
                                  "AKIAONLY:", f"bucket::{SECRET}"])
def test_passwd_bad_line(tmp_path, line):
    p = write(tmp_path / "p", f"# ok\n{line}\n")
    with pytest.raises(CredentialError) as info:
        read_passwd_file(p, "bucket")
    msg = str(info.value)
    assert "line 2" in msg
    assert_no_secret(msg)
    assert line not in msg


def test_passwd_world_readable_refused(tmp_path):
    p = write(tmp_path / "p", f"KEY:{SECRET}\n", 0o644)
    with pytest.raises(CredentialError) as info:
        read_passwd_file(p, "b")
    msg = str(info.value)
    assert "others" in msg
    assert str(p) in msg
    assert_no_secret(msg)


def test_passwd_group_readable_refused(tmp_path):
    p = write(tmp_path / "p", f"KEY:{SECRET}\n", 0o640)
    with pytest.raises(CredentialError) as info:
        read_passwd_file(p, "b")
    msg = str(info.value)
    assert "group" in msg
    assert "others" not in msg
    assert_no_secret(msg)


def test_passwd_owner_only_modes_accepted(tmp_path):
    for mode in (0o600, 0o400):
        p = write(tmp_path / f"p{mode:o}", f"KEY:{SECRET}\n", mode)
        assert read_passwd_file(p, "b").secret_key == SECRET


def test_passwd_missing_file(tmp_path):
    p = tmp_path / "nope"
    with pytest.raises(CredentialError) as info:
        read_passwd_file(p, "b")
    assert str(p) in str(info.value)
    assert "does not exist" in str(info.value)


def test_passwd_directory(tmp_path):
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    os.chmod(d, 0o700)
    with pytest.raises(CredentialError):
        read_passwd_file(d, "b")


# -- find_credentials order -------------------------------------------------------------------

def test_passwd_file_option_wins_over_env(tmp_path):
    p = write(tmp_path / "p", f"FILEKEY:{SECRET}\n")
    env = {"AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": SECRET2}
    c = find_credentials("b", str(p), environ=env, home=tmp_path)
    assert c.access_key == "FILEKEY"


def test_passwd_file_option_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / "mypass", f"TILDEKEY:{SECRET}\n")
    c = find_credentials("b", "~/mypass", environ={}, home=tmp_path)
    assert c.access_key == "TILDEKEY"


def test_env_vars(tmp_path):
    write(tmp_path / ".passwd-s3fs", f"HOMEKEY:{SECRET2}\n")
    env = {"AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": SECRET}
    c = find_credentials("b", None, environ=env, home=tmp_path)
    assert (c.access_key, c.secret_key, c.session_token) == ("ENVKEY", SECRET, None)
    assert c.source == "environment"


def test_env_session_token(tmp_path):
    env = {"AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_SESSION_TOKEN": TOKEN}
    c = find_credentials("b", None, environ=env, home=tmp_path)
    assert c.session_token == TOKEN


@pytest.mark.parametrize("env", [{"AWS_ACCESS_KEY_ID": "ENVKEY"},
                                 {"AWS_SECRET_ACCESS_KEY": SECRET}])
def test_env_only_one_of_key_secret(tmp_path, env):
    write(tmp_path / ".passwd-s3fs", f"HOMEKEY:{SECRET2}\n")
    with pytest.raises(CredentialError) as info:
        find_credentials("b", None, environ=env, home=tmp_path)
    msg = str(info.value)
    assert "AWS_ACCESS_KEY_ID" in msg and "AWS_SECRET_ACCESS_KEY" in msg
    assert_no_secret(msg)


def test_aws_credential_file_env(tmp_path):
    p = write(tmp_path / "cred", f"CFKEY:{SECRET}\n")
    write(tmp_path / ".passwd-s3fs", f"HOMEKEY:{SECRET2}\n")
    c = find_credentials("b", None, environ={"AWS_CREDENTIAL_FILE": str(p)}, home=tmp_path)
    assert c.access_key == "CFKEY"


def test_aws_credentials_file_default_profile(tmp_path):
    write(tmp_path / ".aws" / "credentials",
          f"[default]\naws_access_key_id = AWSKEY\naws_secret_access_key = {SECRET}\n")
    write(tmp_path / ".passwd-s3fs", f"HOMEKEY:{SECRET2}\n")
    c = find_credentials("b", None, environ={}, home=tmp_path)
    assert (c.access_key, c.secret_key, c.session_token) == ("AWSKEY", SECRET, None)
    assert "default" in c.source


def test_aws_credentials_file_named_profile(tmp_path):
    write(tmp_path / ".aws" / "credentials",
          f"[default]\naws_access_key_id = DEFKEY\naws_secret_access_key = {SECRET2}\n\n"
          f"[oci]\naws_access_key_id = OCIKEY\naws_secret_access_key = {SECRET}\n"
          f"aws_session_token = {TOKEN}\n")
    c = find_credentials("b", None, profile="oci", environ={}, home=tmp_path)
    assert (c.access_key, c.secret_key, c.session_token) == ("OCIKEY", SECRET, TOKEN)
    assert "oci" in c.source


def test_aws_credentials_missing_profile_falls_through_to_passwd_s3fs(tmp_path):
    write(tmp_path / ".aws" / "credentials",
          f"[default]\naws_access_key_id = DEFKEY\naws_secret_access_key = {SECRET2}\n")
    write(tmp_path / ".passwd-s3fs", f"HOMEKEY:{SECRET}\n")
    c = find_credentials("b", None, profile="nope", environ={}, home=tmp_path)
    assert c.access_key == "HOMEKEY"


def test_aws_credentials_profile_without_secret(tmp_path):
    write(tmp_path / ".aws" / "credentials", "[default]\naws_access_key_id = ONLYKEY\n")
    with pytest.raises(CredentialError) as info:
        find_credentials("b", None, environ={}, home=tmp_path)
    assert "default" in str(info.value)


def test_aws_credentials_unparseable_does_not_leak(tmp_path):
    write(tmp_path / ".aws" / "credentials", f"aws_secret_access_key = {SECRET}\n[default\n")
    with pytest.raises(CredentialError) as info:
        find_credentials("b", None, environ={}, home=tmp_path)
    assert_no_secret(str(info.value))


def test_home_passwd_s3fs(tmp_path):
    write(tmp_path / ".passwd-s3fs", f"b:BKEY:{SECRET}\n")
    c = find_credentials("b", None, environ={}, home=tmp_path)
    assert (c.access_key, c.secret_key) == ("BKEY", SECRET)


def test_home_passwd_s3fs_permissions_checked(tmp_path):
    write(tmp_path / ".passwd-s3fs", f"KEY:{SECRET}\n", 0o644)
    with pytest.raises(CredentialError, match="others"):
        find_credentials("b", None, environ={}, home=tmp_path)


def test_home_from_environ(tmp_path):
    write(tmp_path / ".passwd-s3fs", f"ENVHOMEKEY:{SECRET}\n")
    c = find_credentials("b", None, environ={"HOME": str(tmp_path)})
    assert c.access_key == "ENVHOMEKEY"


def test_system_passwd_file_group_readable_allowed(tmp_path, monkeypatch):
    system = write(tmp_path / "etc-passwd-s3fs", f"SYSKEY:{SECRET}\n", 0o640)
    monkeypatch.setattr(credentials, "SYSTEM_PASSWD_FILE", system)
    c = find_credentials("b", None, environ={}, home=tmp_path / "home")
    assert c.access_key == "SYSKEY"


def test_nothing_found_names_sources(tmp_path):
    with pytest.raises(CredentialError) as info:
        find_credentials("b", None, environ={}, home=tmp_path)
    msg = str(info.value)
    for source in ("passwd_file", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                   "AWS_CREDENTIAL_FILE", str(tmp_path / ".aws" / "credentials"),
                   str(tmp_path / ".passwd-s3fs"), "/etc/passwd-s3fs"):
        assert source in msg, source


# -- secrets stay out of reprs ----------------------------------------------------------------

def test_repr_hides_secret_and_token():
    c = Credentials("AKIAKEY", SECRET, TOKEN, source="environment")
    text = repr(c) + str(c)
    assert "AKIAKEY" in text
    assert_no_secret(text)


def test_credential_error_messages_never_hold_secrets(tmp_path):
    cases = [
        (tmp_path / "a", f"KEY:{SECRET}\n", 0o644),
        (tmp_path / "b", f"KEY:{SECRET}\n", 0o660),
        (tmp_path / "c", f"KEY:{SECRET}:{SECRET2}:{TOKEN}\n", 0o600),
        (tmp_path / "d", f"x:y:{SECRET}\n", 0o600),
    ]
    for path, text, mode in cases:
        write(path, text, mode)
        with pytest.raises(CredentialError) as info:
            read_passwd_file(path, "bucket")
        assert_no_secret(str(info.value))
        assert_no_secret(repr(info.value))
