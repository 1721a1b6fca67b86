"""The bucket as a tree of paths (ocifs.meta.tree) over a Store on moto's in-process mock."""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import time

import pytest
import trio

from ocifs.meta import objects
from mock_s3 import aws, client  # noqa: F401 (fixtures)
from ocifs.meta.objects import ObjectAttrs
from ocifs.errors import FsError
from ocifs.s3.errors import StoreError
from ocifs.units import MiB
from ocifs.s3.store import Store
from ocifs.meta.cache import MetaCache
from ocifs.meta.tree import Tree, join, name_of, parent_of, split_subtree

BUCKET = "ocifs-unit-tree"
UID, GID = 4321, 8765
DIR_CT = objects.DIR_CONTENT_TYPE


@pytest.fixture
def store(client):
    return Store(client, BUCKET, multipart_threshold=5 * MiB, multipart_size=5 * MiB)


@pytest.fixture
def tree(store):
    return Tree(store, UID, GID)


def put(client, key, body=b"", meta=None, ctype=None):
    kwargs = {"Bucket": BUCKET, "Key": key, "Body": body, "Metadata": meta or {}}
    if ctype:
        kwargs["ContentType"] = ctype
    client.put_object(**kwargs)


def exists(client, key) -> bool:
    try:
        client.head_object(Bucket=BUCKET, Key=key)
        return True
    except client.exceptions.ClientError:
        return False


def file_attrs(mode=0o644, size=0, mtime_s=1_700_000_000):
    ns = mtime_s * 1_000_000_000
    return ObjectAttrs(mode=stat.S_IFREG | mode, size=size, uid=1, gid=2,
                       mtime_ns=ns, ctime_ns=ns, atime_ns=ns)


def run(fn, *args):
    return trio.run(fn, *args)


# -- helpers ---------------------------------------------------------------------------------

def test_path_helpers():
    assert join("", "a") == "a"
    assert join("a/b", "c") == "a/b/c"
    assert parent_of("a/b/c") == "a/b"
    assert parent_of("a") == ""
    assert name_of("a/b/c") == "c"


# -- stat ------------------------------------------------------------------------------------

def test_stat_file_with_metadata(client, tree):
    put(client, "docs/readme.txt", b"hello", {"mode": "33261", "uid": "10", "gid": "20",
                                            "mtime": "1700000000.5"}, "text/plain")
    a = run(tree.stat, "docs/readme.txt")
    assert a is not None and not a.is_dir
    assert a.mode == stat.S_IFREG | 0o755
    assert a.size == 5
    assert (a.uid, a.gid) == (10, 20)
    assert a.mtime_ns == 1_700_000_000_500_000_000
    assert a.content_type == "text/plain"


def test_stat_file_without_metadata_uses_defaults(client, tree):
    put(client, "plain", b"xyz")
    a = run(tree.stat, "plain")
    assert a.mode == objects.DEFAULT_FILE_MODE
    assert (a.uid, a.gid) == (UID, GID)
    assert a.size == 3


def test_stat_explicit_dir(client, tree):
    put(client, "d/", meta={"mode": str(stat.S_IFDIR | 0o711), "uid": "3"}, ctype=DIR_CT)
    a = run(tree.stat, "d")
    assert a.is_dir and a.has_marker
    assert a.mode == stat.S_IFDIR | 0o711
    assert a.uid == 3 and a.gid == GID


def test_stat_explicit_dir_s3fs_190_marker(client, tree):
    put(client, "old/", meta={"mode": "493"}, ctype=DIR_CT)
    a = run(tree.stat, "old")
    assert a.is_dir and a.mode == stat.S_IFDIR | 0o755


def test_stat_implicit_dir(client, tree):
    put(client, "imp/deeper/file", b"1")
    a = run(tree.stat, "imp")
    assert a.is_dir
    assert not a.has_marker
    assert a.mode == objects.DEFAULT_DIR_MODE
    assert (a.uid, a.gid) == (UID, GID)
    b = run(tree.stat, "imp/deeper")
    assert b.is_dir and not b.has_marker


def test_stat_prefix_of_a_name_is_not_a_dir(client, tree):
    put(client, "abc", b"1")
    put(client, "abcdef/x", b"1")
    assert run(tree.stat, "ab") is None
    assert run(tree.stat, "abcd") is None


def test_stat_missing(tree):
    assert run(tree.stat, "nothing/here") is None


def test_negative_cache_until_invalidate(client, tree):
    assert run(tree.stat, "late") is None
    put(client, "late", b"now")
    assert run(tree.stat, "late") is None  # the cached miss hides it
    tree.invalidate("late")
    a = run(tree.stat, "late")
    assert a is not None and a.size == 3


def test_positive_cache_until_invalidate(client, tree):
    put(client, "f", b"1", {"mode": "33188"})
    assert run(tree.stat, "f").mode == stat.S_IFREG | 0o644
    put(client, "f", b"22", {"mode": "33216"})
    assert run(tree.stat, "f").size == 1
    tree.invalidate("f")
    a = run(tree.stat, "f")
    assert a.size == 2 and a.mode == stat.S_IFREG | 0o700


def test_invalidate_subtree(client, tree):
    for p in ("t/a", "t/b/c", "tt"):
        assert run(tree.stat, p) is None
    put(client, "t/a", b"1")
    put(client, "t/b/c", b"1")
    put(client, "tt", b"1")
    tree.cache.changed("t", subtree=True)
    assert run(tree.stat, "t/a") is not None
    assert run(tree.stat, "t/b/c") is not None
    assert run(tree.stat, "tt") is None  # not below "t/": still cached


def test_no_cache_when_expire_zero(client, store):
    tree = Tree(store, UID, GID, cache=MetaCache(stat_expire=0))
    assert run(tree.stat, "late") is None
    put(client, "late", b"now")
    assert run(tree.stat, "late") is not None


def test_cache_size_bounded(client, store):
    tree = Tree(store, UID, GID, cache=MetaCache(max_stats=2))
    for name in ("a", "b", "c", "d"):
        run(tree.stat, name)
    assert tree.cache.attrs_count() <= 2


def test_stat_pending_file(tree, client):
    attrs = file_attrs(size=0)
    tree.add_pending("new.txt", attrs)
    assert run(tree.stat, "new.txt") == attrs
    assert not exists(client, "new.txt")


def test_stat_with_store_prefix(client):
    put(client, "base/f", b"12", {"mode": "33188"})
    put(client, "base/d/", ctype=DIR_CT)
    put(client, "f", b"outside")
    tree = Tree(Store(client, BUCKET, prefix="base"), UID, GID)
    assert run(tree.stat, "f").size == 2
    assert run(tree.stat, "d").is_dir
    names = [n for n, _ in run(tree.listdir, "")]
    assert names == ["d", "f"]


# -- listdir ---------------------------------------------------------------------------------

def test_listdir(client, tree):
    put(client, "top/", meta={"mode": str(stat.S_IFDIR | 0o755)}, ctype=DIR_CT)
    put(client, "top/zeta.txt", b"zz", {"mode": "33188", "uid": "5"})
    put(client, "top/alpha", b"a")
    put(client, "top/marked/", meta={"mode": str(stat.S_IFDIR | 0o700)}, ctype=DIR_CT)
    put(client, "top/implicit/child", b"c")
    put(client, "top/marked/inner", b"i")
    put(client, "topper", b"not in top")

    entries = run(tree.listdir, "top")
    names = [n for n, _ in entries]
    assert names == ["alpha", "implicit", "marked", "zeta.txt"]
    assert "" not in names
    got = dict(entries)
    assert got["zeta.txt"].mode == stat.S_IFREG | 0o644 and got["zeta.txt"].uid == 5
    assert got["zeta.txt"].size == 2
    assert got["alpha"].mode == objects.DEFAULT_FILE_MODE and got["alpha"].uid == UID
    assert got["marked"].mode == stat.S_IFDIR | 0o700 and got["marked"].has_marker
    assert got["implicit"].is_dir and not got["implicit"].has_marker
    # listing fills the attribute cache
    assert tree.cache.attrs("top/zeta.txt") is got["zeta.txt"]


def test_listdir_root(client, tree):
    put(client, "b", b"1")
    put(client, "a/", ctype=DIR_CT)
    put(client, "c/d", b"1")
    assert [n for n, _ in run(tree.listdir, "")] == ["a", "b", "c"]


def test_listdir_empty_marker_dir(client, tree):
    put(client, "empty/", ctype=DIR_CT)
    assert run(tree.listdir, "empty") == []


def test_listdir_includes_pending(client, tree):
    put(client, "p/existing", b"1")
    attrs = file_attrs()
    tree.add_pending("p/new", attrs)
    tree.add_pending("p/sub/deeper", file_attrs())
    tree.add_pending("other", file_attrs())
    entries = dict(run(tree.listdir, "p"))
    assert sorted(entries) == ["existing", "new"]
    assert entries["new"] == attrs


def test_listdir_pending_overrides_stored(client, tree):
    put(client, "q/f", b"old", {"mode": "33188"})
    attrs = file_attrs(mode=0o600, size=99)
    tree.add_pending("q/f", attrs)
    assert dict(run(tree.listdir, "q"))["f"] == attrs


def test_listdir_many_entries(client, tree):
    for i in range(30):
        put(client, f"many/f{i:02d}", b"x" * i)
    entries = run(tree.listdir, "many")
    assert [n for n, _ in entries] == [f"f{i:02d}" for i in range(30)]
    assert [a.size for _, a in entries] == list(range(30))


def test_listdir_hides_names_the_kernel_cannot_ask_for(client, tree):
    """``a//b``, ``/a``, ``./`` and ``../`` segments: the kernel never looks such names up."""
    for key in ("d//x", "d/./y", "d/../z", "d/.", "d/ok", "/lead"):
        put(client, key, b"k")
    assert [name for name, _ in run(tree.listdir, "d")] == ["ok"]
    assert [name for name, _ in run(tree.listdir, "")] == ["d"]
    assert not run(tree.is_empty_dir, "d")  # the hidden keys are still there


def test_stat_name_with_control_characters_found_through_its_parent(client, store):
    """On OCI, never asked for by name unless listed (it answers 400), but found without a
    prior ls."""
    tree = Tree(store, UID, GID, control_chars_refused=True)
    put(client, "d/ctl\x01name", b"ctl")
    attrs = run(tree.stat, "d/ctl\x01name")
    assert attrs is not None and attrs.size == 3 and not attrs.is_dir
    assert run(tree.stat, "d/other\x01name") is None


def test_control_characters_are_plain_names_off_oci(client, tree, store):
    assert not tree.refuses_new_name("a\rb")
    put(client, "c\rname", b"x")
    assert run(tree.stat, "c\rname").size == 1
    assert Tree(store, UID, GID, control_chars_refused=True).refuses_new_name("a\rb")


# -- is_empty_dir ----------------------------------------------------------------------------

def test_is_empty_dir(client, tree):
    put(client, "e/", ctype=DIR_CT)
    put(client, "full/", ctype=DIR_CT)
    put(client, "full/x", b"1")
    put(client, "nested/", ctype=DIR_CT)
    put(client, "nested/sub/", ctype=DIR_CT)
    put(client, "imp/a/b", b"1")
    assert run(tree.is_empty_dir, "e") is True
    assert run(tree.is_empty_dir, "full") is False
    assert run(tree.is_empty_dir, "nested") is False
    assert run(tree.is_empty_dir, "imp") is False
    tree.add_pending("e/new", file_attrs())
    assert run(tree.is_empty_dir, "e") is False


# -- changes ---------------------------------------------------------------------------------

def test_rename_file(client, tree):
    put(client, "src.txt", b"content", {"mode": "33188", "keep": "me"}, "text/plain")
    attrs = run(tree.stat, "src.txt")
    assert run(tree.stat, "dir/dst.txt") is None  # cached miss must not survive the rename
    run(tree.rename, "src.txt", "dir/dst.txt", attrs)
    assert not exists(client, "src.txt")
    head = client.head_object(Bucket=BUCKET, Key="dir/dst.txt")
    assert head["Metadata"]["mode"] == "33188"
    assert head["Metadata"]["keep"] == "me"
    assert head["ContentType"] == "text/plain"
    assert client.get_object(Bucket=BUCKET, Key="dir/dst.txt")["Body"].read() == b"content"
    assert run(tree.stat, "src.txt") is None
    assert run(tree.stat, "dir/dst.txt").size == 7


def test_rename_file_over_file(client, tree):
    put(client, "a", b"new")
    put(client, "b", b"old-old")
    run(tree.rename, "a", "b", run(tree.stat, "a"))
    assert not exists(client, "a")
    assert client.get_object(Bucket=BUCKET, Key="b")["Body"].read() == b"new"


def test_rename_file_over_dir_refused(client, tree):
    put(client, "f", b"1")
    put(client, "d/", ctype=DIR_CT)
    with pytest.raises(FsError) as info:
        run(tree.rename, "f", "d", run(tree.stat, "f"))
    assert info.value.errno == errno.EISDIR
    assert exists(client, "f")


def test_rename_dir_over_file_refused(client, tree):
    put(client, "d/", ctype=DIR_CT)
    put(client, "f", b"1")
    with pytest.raises(FsError) as info:
        run(tree.rename, "d", "f", run(tree.stat, "d"))
    assert info.value.errno == errno.ENOTDIR


def test_rename_dir_over_nonempty_dir_refused(client, tree):
    put(client, "a/", ctype=DIR_CT)
    put(client, "b/", ctype=DIR_CT)
    put(client, "b/x", b"1")
    with pytest.raises(FsError) as info:
        run(tree.rename, "a", "b", run(tree.stat, "a"))
    assert info.value.errno == errno.ENOTEMPTY
    assert exists(client, "a/") and exists(client, "b/x")


def test_rename_dir_tree(client, tree):
    put(client, "old/", meta={"mode": str(stat.S_IFDIR | 0o700)}, ctype=DIR_CT)
    put(client, "old/f", b"f", {"mode": "33261", "x": "y"}, "text/x-script")
    put(client, "old/sub/", ctype=DIR_CT)
    put(client, "old/sub/g", b"gg")
    put(client, "old/implicit/h", b"hhh")
    put(client, "older", b"sibling with the same prefix")
    attrs = run(tree.stat, "old")
    run(tree.stat, "old/f")  # cached under the old name
    run(tree.rename, "old", "new/place", attrs)

    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == ["new/place/", "new/place/f", "new/place/implicit/h", "new/place/sub/",
                    "new/place/sub/g", "older"]
    head = client.head_object(Bucket=BUCKET, Key="new/place/f")
    assert head["Metadata"] == {"mode": "33261", "x": "y"}
    assert head["ContentType"] == "text/x-script"
    marker = client.head_object(Bucket=BUCKET, Key="new/place/")
    assert marker["Metadata"]["mode"] == str(stat.S_IFDIR | 0o700)
    assert client.get_object(Bucket=BUCKET, Key="new/place/implicit/h")["Body"].read() == b"hhh"

    assert run(tree.stat, "old") is None
    assert run(tree.stat, "old/f") is None
    assert run(tree.stat, "new/place").is_dir
    assert run(tree.stat, "new/place/f").mode == stat.S_IFREG | 0o755
    assert [n for n, _ in run(tree.listdir, "new/place")] == ["f", "implicit", "sub"]


def test_rename_implicit_dir(client, tree):
    put(client, "imp/a", b"1")
    put(client, "imp/b/c", b"2")
    run(tree.rename, "imp", "moved", run(tree.stat, "imp"))
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == ["moved/a", "moved/b/c"]


def test_rename_dir_over_empty_dir(client, tree):
    put(client, "a/", meta={"mode": str(stat.S_IFDIR | 0o701)}, ctype=DIR_CT)
    put(client, "a/f", b"1")
    put(client, "b/", meta={"mode": str(stat.S_IFDIR | 0o777)}, ctype=DIR_CT)
    run(tree.rename, "a", "b", run(tree.stat, "a"))
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == ["b/", "b/f"]
    assert client.head_object(Bucket=BUCKET, Key="b/")["Metadata"]["mode"] == str(stat.S_IFDIR | 0o701)


def test_rename_dir_moves_pending_children(client, tree):
    put(client, "pd/", ctype=DIR_CT)
    attrs = file_attrs()
    tree.add_pending("pd/new", attrs)
    run(tree.rename, "pd", "qd", run(tree.stat, "pd"))
    assert not tree.is_pending("pd/new")
    assert run(tree.stat, "qd/new") == attrs


def test_rename_pending_file(client, tree):
    attrs = file_attrs()
    tree.add_pending("p1", attrs)
    run(tree.rename, "p1", "p2", attrs)
    assert not tree.is_pending("p1") and run(tree.stat, "p2") == attrs
    assert not exists(client, "p1") and not exists(client, "p2")


def test_rename_pending_file_over_stored_file(client, tree):
    # The replaced object must go: otherwise, if the new file is removed before its upload,
    # the old contents of the target come back.
    put(client, "target", b"old contents")
    attrs = file_attrs()
    tree.add_pending("fresh", attrs)
    run(tree.rename, "fresh", "target", attrs)
    assert run(tree.stat, "target") == attrs
    assert not exists(client, "target")


def test_mkdir_and_remove_dir(client, tree):
    attrs = ObjectAttrs(mode=stat.S_IFDIR | 0o755, uid=1, gid=2)
    run(tree.mkdir, "nd", attrs)
    head = client.head_object(Bucket=BUCKET, Key="nd/")
    assert head["ContentType"] == DIR_CT
    assert head["Metadata"]["mode"] == str(stat.S_IFDIR | 0o755)
    put(client, "nd/x", b"1")
    with pytest.raises(FsError) as info:
        run(tree.remove_dir, "nd", attrs)
    assert info.value.errno == errno.ENOTEMPTY
    client.delete_object(Bucket=BUCKET, Key="nd/x")
    run(tree.remove_dir, "nd", attrs)
    assert not exists(client, "nd/")
    assert run(tree.stat, "nd") is None


def test_put_attrs_file_and_implicit_dir(client, tree):
    put(client, "f.txt", b"data", {"mode": "33188", "extra": "kept"}, "text/plain")
    attrs = run(tree.stat, "f.txt")
    attrs.mode = stat.S_IFREG | 0o600
    run(tree.put_attrs, "f.txt", attrs)
    head = client.head_object(Bucket=BUCKET, Key="f.txt")
    assert head["Metadata"]["mode"] == str(stat.S_IFREG | 0o600)
    assert head["Metadata"]["extra"] == "kept"
    assert head["ContentType"] == "text/plain"
    assert client.get_object(Bucket=BUCKET, Key="f.txt")["Body"].read() == b"data"

    put(client, "imp/child", b"1")
    d = run(tree.stat, "imp")
    assert not d.has_marker
    d.mode = stat.S_IFDIR | 0o700
    run(tree.put_attrs, "imp", d)
    assert d.has_marker
    assert client.head_object(Bucket=BUCKET, Key="imp/")["Metadata"]["mode"] == str(stat.S_IFDIR | 0o700)


def test_symlink_and_readlink(client, tree):
    attrs = ObjectAttrs(mode=objects.SYMLINK_MODE, uid=1, gid=1)
    run(tree.symlink, "ln", "../target/ü", attrs)
    assert attrs.size == len("../target/ü".encode())
    assert run(tree.readlink, "ln") == "../target/ü"
    tree.invalidate("ln")
    assert run(tree.stat, "ln").is_symlink


def test_remove_file(client, tree):
    put(client, "gone", b"1")
    run(tree.stat, "gone")
    run(tree.remove_file, "gone")
    assert not exists(client, "gone")
    assert run(tree.stat, "gone") is None
    tree.add_pending("pend", file_attrs())
    run(tree.remove_file, "pend")
    assert not tree.is_pending("pend")


# -- listing cache ---------------------------------------------------------------------------

def count_listings(store) -> list[str]:
    """The prefixes the store is asked to list from now on (subtree pages and listings)."""
    calls: list[str] = []
    real_page, real_dir = store.list_subtree_page, store.list_dir

    async def page(prefix):
        calls.append(prefix)
        return await real_page(prefix)

    async def listing(prefix, max_keys=None, start_after=None):
        calls.append(prefix)
        return await real_dir(prefix, max_keys, start_after)
    store.list_subtree_page, store.list_dir = page, listing
    return calls


def test_listing_cache_asks_once_and_sees_local_changes_at_once(client, store):
    tree = Tree(store, UID, GID, cache=MetaCache(listing_expire=60))
    put(client, "lc/a", b"1")
    calls = count_listings(store)
    names = lambda: [n for n, _ in run(tree.listdir, "lc")]  # noqa: E731
    assert names() == ["a"] and names() == ["a"]
    assert calls == ["lc/"]
    put(client, "lc/b", b"2")  # another client: not seen until the listing expires
    assert names() == ["a"]
    run(tree.mkdir, "lc/d", ObjectAttrs(mode=stat.S_IFDIR | 0o755))  # a change made here is
    assert names() == ["a", "b", "d"]
    run(tree.remove_file, "lc/a")
    assert names() == ["b", "d"]
    run(tree.rename, "lc/b", "lc/c", file_attrs(size=1))
    assert names() == ["c", "d"]
    assert tree.cache.listings_count() <= 1000


TREE_KEYS = ["t/", "t/a", "t/b/", "t/b/c", "t/b/d/e", "t/b/d/f", "t/b-x", "t/b0/g", "t/é/h",
             "t/x//y", "t/z"]


def test_split_subtree_answers_what_delimited_listings_answer(client, store):
    for key in TREE_KEYS:
        put(client, key, b"k")
    page, truncated = run(store.list_subtree_page, "t/")
    assert not truncated
    split = split_subtree("t/", page)
    assert set(split) == {"t/", "t/b/", "t/b/d/", "t/b0/", "t/é/", "t/x/", "t/x//"}
    for prefix, (contents, prefixes) in split.items():
        want_contents, want_prefixes = run(store.list_dir, prefix)
        assert [o["Key"] for o in contents] == [o["Key"] for o in want_contents], prefix
        assert prefixes == want_prefixes, prefix


def test_one_subtree_listing_serves_every_directory_below(client, store):
    tree = Tree(store, UID, GID, cache=MetaCache(listing_expire=60))
    for key in TREE_KEYS:
        put(client, key, b"k")
    calls = count_listings(store)
    assert [n for n, _ in run(tree.listdir, "t")] == ["a", "b", "b-x", "b0", "x", "z", "é"]
    assert [n for n, _ in run(tree.listdir, "t/b")] == ["c", "d"]
    assert [n for n, _ in run(tree.listdir, "t/b/d")] == ["e", "f"]
    assert [n for n, _ in run(tree.listdir, "t/é")] == ["h"]
    assert [n for n, _ in run(tree.listdir, "t/x")] == []  # "x//y": no name the kernel can ask
    assert calls == ["t/"]


def test_a_subtree_bigger_than_a_page_lists_right_at_no_extra_cost(client, store):
    """The first subtree page holds 1,000 keys: the small directory before the big one is
    covered whole (cached), the big one is not, and the listing goes on after the page."""
    tree = Tree(store, UID, GID, cache=MetaCache(listing_expire=60))
    keys = ["p/a0", "p/a1", "p/abc/1", "p/abc/2"] + [f"p/big/{i:04d}" for i in range(1001)]
    keys += ["p/z0", "p/z1"]
    for key in keys:
        put(client, key, b"k")
    calls = count_listings(store)
    listed = run(tree.listdir, "p")
    assert [n for n, _ in listed] == ["a0", "a1", "abc", "big", "z0", "z1"]
    assert dict(listed)["z1"].size == 1
    assert calls == ["p/", "p/"]  # the subtree page, then the rest of the delimited listing
    assert [n for n, _ in run(tree.listdir, "p/abc")] == ["1", "2"]
    assert calls == ["p/", "p/"]
    assert len(run(tree.listdir, "p/big")) == 1001
    assert calls == ["p/", "p/", "p/big/", "p/big/"]


def test_a_store_refusing_start_after_still_lists_whole(client, store, monkeypatch):
    tree = Tree(store, UID, GID, cache=MetaCache(listing_expire=60))
    for key in [f"q/{i:04d}" for i in range(1003)] + ["q/sub/x"]:
        put(client, key, b"k")
    real = store.list_dir

    async def refusing(prefix, max_keys=None, start_after=None):
        if start_after:
            raise StoreError(errno.EINVAL, "LIST: InvalidArgument (start-after)", "InvalidArgument")
        return await real(prefix, max_keys)
    monkeypatch.setattr(store, "list_dir", refusing)
    names = [n for n, _ in run(tree.listdir, "q")]
    assert names == [f"{i:04d}" for i in range(1003)] + ["sub"]


def test_listing_cache_expires_and_can_be_off(client, store):
    put(client, "le/a", b"1")
    for expire in (0, 0.2):
        tree = Tree(store, UID, GID, cache=MetaCache(listing_expire=expire))
        assert "a" in [n for n, _ in run(tree.listdir, "le")]
        put(client, f"le/new{expire}", b"2")
        if expire:
            time.sleep(0.3)
        assert f"new{expire}" in [n for n, _ in run(tree.listdir, "le")]


# -- a lookup's subtree page --------------------------------------------------------------------

async def in_background(tree, fn, *args):
    """``fn`` with the tree's background nursery open, as the mount runs lookups."""
    async with tree.background.running():
        return await fn(*args)


def test_a_lookup_fetches_the_page_the_listing_then_uses(client, store):
    for key in ["m/", "m/a", "m/sub/b", "implicit/c", "implicit/d/e"]:
        put(client, key, b"k")
    tree = Tree(store, UID, GID, cache=MetaCache(listing_expire=60), fast_list=True)
    calls = count_listings(store)

    async def lookup_then_list(path):
        assert (await tree.stat(path)).is_dir
        return [n for n, _ in await tree.listdir(path)]
    assert run(in_background, tree, lookup_then_list, "m") == ["a", "sub"]  # a marker dir
    assert run(in_background, tree, lookup_then_list, "implicit") == ["c", "d"]  # no marker
    assert [n for n, _ in run(tree.listdir, "m/sub")] == ["b"]  # covered by m's page
    assert calls == ["m/", "implicit/"]
    assert run(tree.stat, "m/a").size == 1 and run(tree.stat, "nothing") is None
    assert calls == ["m/", "implicit/", "nothing/"]


def test_a_failed_background_page_is_asked_for_again(client, store, monkeypatch):
    put(client, "fp/", b"")
    put(client, "fp/a", b"1")
    tree = Tree(store, UID, GID, cache=MetaCache(listing_expire=60))
    real = store.list_subtree_page
    failures = []

    async def failing_once(prefix):
        if not failures:
            failures.append(prefix)
            raise StoreError(errno.EIO, "LIST fp/: InternalError")
        return await real(prefix)
    monkeypatch.setattr(store, "list_subtree_page", failing_once)
    assert run(in_background, tree, tree.stat, "fp").is_dir  # the marker answers
    assert failures == ["fp/"]
    assert [n for n, _ in run(tree.listdir, "fp")] == ["a"]


def test_a_change_during_a_listing_is_shown_and_the_listing_not_cached(client, store):
    for key in ["g/a", "g/b"]:
        put(client, key, b"k")
    tree = Tree(store, UID, GID, cache=MetaCache(stat_expire=60, listing_expire=60), fast_list=True)
    calls = count_listings(store)
    counted = store.list_subtree_page
    fetched, release = trio.Event(), trio.Event()

    async def slow(prefix):
        result = await counted(prefix)
        fetched.set()
        await release.wait()
        return result
    store.list_subtree_page = slow

    async def scenario():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tree.listdir, "g")
            await fetched.wait()  # the listing holds "a"; now it is removed here
            await tree.remove_file("g/a")
            release.set()
        store.list_subtree_page = counted
        return [n for n, _ in await tree.listdir("g")]
    assert run(scenario) == ["b"]
    assert calls == ["g/", "g/"]  # the first listing predates the removal: not kept
    assert run(tree.stat, "g/a") is None


def test_without_a_listing_cache_a_lookup_asks_for_one_key(client, store, monkeypatch):
    put(client, "one/a", b"1")
    put(client, "one/b", b"2")
    tree = Tree(store, UID, GID, cache=MetaCache(stat_expire=0, listing_expire=0))
    asked = []
    real_page, real_dir = store.list_subtree_page, store.list_dir

    async def page(prefix):
        asked.append(("page", prefix))
        return await real_page(prefix)

    async def listing(prefix, max_keys=None, start_after=None):
        asked.append(("list", prefix, max_keys))
        return await real_dir(prefix, max_keys, start_after)
    monkeypatch.setattr(store, "list_subtree_page", page)
    monkeypatch.setattr(store, "list_dir", listing)
    assert run(in_background, tree, tree.stat, "one").is_dir  # implicit: found by one key
    assert run(in_background, tree, tree.stat, "one/a").size == 1
    assert asked == [("list", "one/", 1), ("list", "one/a/", 1)]


def test_names_never_asked_are_asked_after_mkdir_and_listing(client, store):
    tree = Tree(store, UID, GID, cache=MetaCache(listing_expire=60))
    run(tree.mkdir, "nd", ObjectAttrs(mode=stat.S_IFDIR | 0o755))
    put(client, "nd/f", b"1")
    assert run(tree.stat, "nd/f") is not None
    put(client, "ls/a", b"1")
    assert [n for n, _ in run(tree.listdir, "ls")] == ["a"]
    put(client, "ls/b", b"22")
    assert run(tree.stat, "ls/b").size == 2


def test_negative_cache_can_be_turned_off(client, store):
    tree = Tree(store, UID, GID, cache=MetaCache(negative=False))
    assert run(tree.stat, "later") is None
    put(client, "later", b"x")
    assert run(tree.stat, "later") is not None


def test_expiry_from_last_use():
    """s3fs's stat_cache_interval_expire: an entry used within the expiry stays."""
    attrs = file_attrs()
    for from_use, kept in ((True, True), (False, False)):
        cache = MetaCache(stat_expire=0.6, expire_from_use=from_use)
        cache.learned("p", attrs)
        for _ in range(3):
            time.sleep(0.3)
            found = cache.attrs("p")
        assert (found is attrs) is kept


def test_stat_cache_options_reach_the_cache():
    from ocifs.meta.cache import UNKNOWN
    from ocifs.run.mount import _meta_cache
    from ocifs.run.options import parse_options

    for option, kept in (("enable_negative_cache", True), ("disable_negative_cache", False)):
        cache = _meta_cache(parse_options([option]))
        cache.learned("missing", None)
        assert (cache.attrs("missing") is None) is kept
        assert cache.attrs("missing") is (None if kept else UNKNOWN)
    cache = _meta_cache(parse_options(["stat_cache_interval_expire=0.6"]))
    cache.learned("p", file_attrs())
    for _ in range(3):
        time.sleep(0.3)
        assert cache.attrs("p") is not UNKNOWN  # each use starts the expiry again


def test_a_store_that_drops_directory_metadata_is_named_once(store, caplog):
    tree = Tree(store, UID, GID)
    run(tree.mkdir, "kept", ObjectAttrs(mode=stat.S_IFDIR | 0o755))
    assert tree.keeps_dir_metadata is True  # moto keeps it
    dropping = Tree(store, UID, GID)
    real = store.head

    async def head_without_metadata(key):
        head = await real(key)
        return {**head, "Metadata": {}} if head is not None and key.endswith("/") else head
    store.head = head_without_metadata
    heads = []
    store.head = lambda key, _h=head_without_metadata: heads.append(key) or _h(key)
    with caplog.at_level("WARNING"):
        run(dropping.mkdir, "d1", ObjectAttrs(mode=stat.S_IFDIR | 0o755))
        run(dropping.mkdir, "d2", ObjectAttrs(mode=stat.S_IFDIR | 0o755))
    assert dropping.keeps_dir_metadata is False
    assert heads == ["d1/"]  # asked once per mount
    assert sum("keeps no metadata on directory objects" in r.message for r in caplog.records) == 1


def test_update_parent_dir_stat_moves_the_directorys_times(client, store):
    old = ObjectAttrs(mode=stat.S_IFDIR | 0o755, mtime_ns=10**9, ctime_ns=10**9, atime_ns=10**9)
    for touch, moved in ((False, False), (True, True)):
        tree = Tree(store, UID, GID, touch_parents=touch)
        run(tree.mkdir, f"up{touch}", dataclasses.replace(old))
        run(tree.symlink, f"up{touch}/ln", "x", ObjectAttrs(mode=objects.SYMLINK_MODE))
        mtime = client.head_object(Bucket=BUCKET, Key=f"up{touch}/")["Metadata"]["mtime"]
        assert (mtime != "1") is moved
        assert (run(tree.stat, f"up{touch}").mtime_ns > 10**9) is moved


# -- compat_dir: dir_$folder$ objects (s3fs 1.94+) -------------------------------------------

FOLDER = "_$folder$"


@pytest.fixture
def compat_tree(store):
    return Tree(store, UID, GID, compat_dir=True)


def test_folder_object_is_a_directory_only_with_compat_dir(client, store):
    put(client, "old" + FOLDER, meta={"mode": str(stat.S_IFDIR | 0o755)})
    plain = run(Tree(store, UID, GID).stat, "old")
    assert plain is None
    a = run(Tree(store, UID, GID, compat_dir=True).stat, "old")
    assert a is not None and a.is_dir and stat.S_IMODE(a.mode) == 0o755


def test_folder_object_without_headers_is_a_directory(client, compat_tree):
    put(client, "bare" + FOLDER)
    a = run(compat_tree.stat, "bare")
    assert a is not None and a.is_dir


def test_listdir_shows_folder_object_as_directory(client, store, compat_tree):
    put(client, "top/x" + FOLDER)
    put(client, "top/f.txt", b"1")
    names = {n: a.is_dir for n, a in run(compat_tree.listdir, "top")}
    assert names == {"x": True, "f.txt": False}
    plain = {n for n, _ in run(Tree(store, UID, GID).listdir, "top")}
    assert plain == {"x" + FOLDER, "f.txt"}


def test_listdir_folder_object_and_children_one_entry(client, compat_tree):
    put(client, "y" + FOLDER)
    put(client, "y/inner.txt", b"1")
    entries = run(compat_tree.listdir, "")
    assert [(n, a.is_dir) for n, a in entries] == [("y", True)]


def test_zero_byte_dir_object_without_slash_is_a_directory_either_way(client, store):
    # s3fs HEADs "dir" first and reads its headers: a directory content type makes it one,
    # with or without compat_dir.
    put(client, "legacy", ctype=DIR_CT)
    for compat in (False, True):
        a = run(Tree(store, UID, GID, compat_dir=compat).stat, "legacy")
        assert a is not None and a.is_dir


def test_rmdir_removes_folder_object(client, compat_tree):
    put(client, "gone" + FOLDER)
    attrs = run(compat_tree.stat, "gone")
    run(compat_tree.remove_dir, "gone", attrs)
    assert not exists(client, "gone" + FOLDER)
    assert run(compat_tree.stat, "gone") is None


def test_rename_moves_folder_directory_to_marker(client, compat_tree):
    put(client, "src" + FOLDER, meta={"mode": str(stat.S_IFDIR | 0o700)})
    put(client, "src/a.txt", b"abc")
    attrs = run(compat_tree.stat, "src")
    run(compat_tree.rename, "src", "dst", attrs)
    assert not exists(client, "src" + FOLDER)
    assert not exists(client, "src/a.txt")
    assert exists(client, "dst/") and exists(client, "dst/a.txt")
    a = run(compat_tree.stat, "dst")
    assert a is not None and a.is_dir


def test_rename_empty_folder_directory_keeps_it(client, compat_tree):
    put(client, "e" + FOLDER)
    run(compat_tree.rename, "e", "f", run(compat_tree.stat, "e"))
    assert not exists(client, "e" + FOLDER) and exists(client, "f/")


# -- use_wtf8: names that are not UTF-8 ------------------------------------------------------

BAD = os.fsdecode(b"bad\xff.txt")  # what the kernel's bytes become in a path


def test_invalid_utf8_name_refused_without_use_wtf8(tree):
    with pytest.raises(FsError) as info:
        run(tree.stat, BAD)
    assert info.value.errno == errno.EILSEQ


def test_use_wtf8_maps_keys_and_listed_names(client):
    store = Store(client, BUCKET, use_wtf8=True)
    t = Tree(store, UID, GID)
    assert store.key(BAD) == "bad\ue0ff.txt"
    put(client, "d/bad\ue0ff.txt", b"x")
    put(client, "d/sub\ue0fe/inner", b"y")
    assert {n for n, _ in run(t.listdir, "d")} == {BAD, os.fsdecode(b"sub\xfe")}
    assert run(t.stat, "d/" + BAD).size == 1
    assert [n for n, _ in run(t.listdir, "d/" + os.fsdecode(b"sub\xfe"))] == ["inner"]


def test_use_wtf8_maps_symlink_targets_as_s3fs(client):
    t = Tree(Store(client, BUCKET, use_wtf8=True), UID, GID)
    target = os.fsdecode(b"to\xff")
    attrs = dataclasses.replace(file_attrs(), mode=stat.S_IFLNK | 0o777)
    run(t.symlink, "link", target, attrs)
    body = client.get_object(Bucket=BUCKET, Key="link")["Body"].read()
    assert body == "to\ue0ff".encode()
    assert run(t.readlink, "link") == target
