"""The -o option table (ocifs.run.options)."""

from __future__ import annotations

import logging

import pytest

from ocifs.run.options import (FSTAB_WORDS, NO_EFFECT, MountOptions, OptionError, options_help,
                           parse_options)


def test_defaults():
    o = parse_options([])
    assert o.url == "https://s3.amazonaws.com"
    assert o.endpoint == "us-east-1"
    assert o.use_path_request_style is False
    assert o.allow_other is False
    assert o.uid is None and o.gid is None and o.umask is None
    assert o.multipart_size == 10
    assert o.stat_cache_expire == 900.0
    assert o.ignored == []
    assert o.log_level == logging.CRITICAL


def test_typical_oci_option_string():
    o = parse_options(["url=https://ns.compat.objectstorage.eu-frankfurt-1.oraclecloud.com,"
                       "endpoint=eu-frankfurt-1,use_path_request_style,passwd_file=/etc/p,"
                       "allow_other,uid=1000,gid=1001,umask=022"])
    assert o.url == "https://ns.compat.objectstorage.eu-frankfurt-1.oraclecloud.com"
    assert o.endpoint == "eu-frankfurt-1"
    assert o.use_path_request_style is True
    assert o.passwd_file == "/etc/p"
    assert o.allow_other is True
    assert (o.uid, o.gid) == (1000, 1001)
    assert o.umask == 0o022


def test_repeated_o_strings_combine_and_later_wins():
    o = parse_options(["uid=1", "gid=2,allow_other", "uid=3"])
    assert o.uid == 3
    assert o.gid == 2
    assert o.allow_other is True


def test_whitespace_and_empty_items():
    o = parse_options([" uid=5 , , allow_other ,"])
    assert o.uid == 5 and o.allow_other


@pytest.mark.parametrize("text,expected", [("umask=022", 0o022), ("umask=0077", 0o077),
                                           ("umask=0", 0), ("umask=777", 0o777)])
def test_umask_is_octal(text, expected):
    assert parse_options([text]).umask == expected


def test_mp_umask_octal():
    assert parse_options(["mp_umask=027"]).mp_umask == 0o027


def test_int_options():
    o = parse_options(["retries=2,connect_timeout=10,readwrite_timeout=20,parallel_count=3,"
                       "max_thread_count=4,multipart_size=64,multipart_threshold=100,"
                       "singlepart_copy_limit=1024,max_stat_cache_size=7"])
    assert (o.retries, o.connect_timeout, o.readwrite_timeout) == (2, 10, 20)
    assert (o.parallel_count, o.max_thread_count) == (3, 4)
    assert (o.multipart_size, o.multipart_threshold, o.singlepart_copy_limit) == (64, 100, 1024)
    assert o.max_stat_cache_size == 7


def test_float_option():
    assert parse_options(["stat_cache_expire=1.5"]).stat_cache_expire == 1.5
    assert parse_options(["stat_cache_expire=0"]).stat_cache_expire == 0


@pytest.mark.parametrize("value,expected", [(None, True), ("true", True), ("1", True),
                                            ("false", False), ("0", False), ("off", False)])
def test_flag_values(value, expected):
    item = "allow_other" if value is None else f"allow_other={value}"
    assert parse_options([item]).allow_other is expected


def test_region_alias():
    assert parse_options(["region=ap-tokyo-1"]).endpoint == "ap-tokyo-1"


def test_mount_uid_gid_aliases():
    o = parse_options(["mount_uid=10,mount_gid=20"])
    assert (o.uid, o.gid) == (10, 20)


def test_dbglevel():
    o = parse_options(["dbglevel=info"])
    assert o.dbglevel == "info" and o.log_level == logging.INFO
    assert parse_options(["dbglevel=DBG"]).log_level == logging.DEBUG


def test_fstab_words_ignored():
    o = parse_options(["_netdev,auto,noauto,user,rw,nofail,defaults,nosuid,nodev,uid=9"])
    assert o.uid == 9
    assert o.ignored == []
    assert "_netdev" in FSTAB_WORDS


def test_no_effect_options_collected():
    o = parse_options(["nonempty,sigv2", "enable_noobj_cache,uid=1"])
    assert o.ignored == ["nonempty", "sigv2", "enable_noobj_cache"]
    assert o.uid == 1


def test_no_effect_option_with_value_collected():
    o = parse_options(["default_acl=private"])
    assert o.ignored == ["default_acl"]


def test_unknown_option_raises_naming_it():
    with pytest.raises(OptionError, match="no_such_option"):
        parse_options(["uid=1,no_such_option=3"])


def test_unknown_flag_raises_naming_it():
    with pytest.raises(OptionError) as info:
        parse_options(["frobnicate"])
    assert "frobnicate" in str(info.value)


@pytest.mark.parametrize("text,name", [
    ("uid=abc", "uid"),
    ("gid=-1", "gid"),
    ("umask=999", "umask"),
    ("umask=abc", "umask"),
    ("umask=17777", "umask"),
    ("multipart_size=1", "multipart_size"),
    ("multipart_size=6000", "multipart_size"),
    ("url=ftp://x", "url"),
    ("retries=", "retries"),
    ("retries", "retries"),
    ("stat_cache_expire=-1", "stat_cache_expire"),
    ("stat_cache_expire=soon", "stat_cache_expire"),
    ("dbglevel=loud", "dbglevel"),
    ("allow_other=maybe", "allow_other"),
    ("parallel_count=0", "parallel_count"),
    ("max_thread_count=0", "max_thread_count"),
])
def test_bad_values_raise_naming_option(text, name):
    with pytest.raises(OptionError) as info:
        parse_options([text])
    assert name in str(info.value)


def test_option_error_is_value_error():
    assert issubclass(OptionError, ValueError)


def test_options_help_lists_every_option():
    text = options_help()
    for field in MountOptions.specs():
        assert field.name in text, field.name
        assert field.metadata["help"] in text
    for name in NO_EFFECT:
        assert name in text
    assert "region" in text
    assert "ignored" not in [f.name for f in MountOptions.specs()]


def test_options_help_shows_defaults():
    text = options_help()
    line = next(l for l in text.splitlines() if l.strip().startswith("multipart_size "))
    assert "(default: 10)" in line
    line = next(l for l in text.splitlines() if l.strip().startswith("allow_other "))
    assert "(default: off)" in line


def test_stop_timeout_is_unlimited_unless_given():
    assert parse_options([]).stop_timeout is None
    assert parse_options(["stop_timeout=2.5"]).stop_timeout == 2.5
    with pytest.raises(OptionError):
        parse_options(["stop_timeout=-1"])
