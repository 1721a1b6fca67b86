"""Inode <-> path table with kernel lookup counts (ocifs.meta.inodes)."""

from __future__ import annotations

import pytest

from ocifs.meta.inodes import ROOT_INODE, InodeTable


def test_root():
    t = InodeTable()
    assert ROOT_INODE == 1
    assert ROOT_INODE in t
    assert t.path(ROOT_INODE) == ""
    assert t.inode_of("") == ROOT_INODE
    assert len(t) == 1
    assert not t.is_unlinked(ROOT_INODE)


def test_lookup_allocates_once_and_counts():
    t = InodeTable()
    a = t.lookup("a")
    assert a != ROOT_INODE
    assert t.lookup("a") == a
    b = t.lookup("a/b")
    assert b not in (a, ROOT_INODE)
    assert t.path(a) == "a" and t.path(b) == "a/b"
    assert t.inode_of("a/b") == b
    assert t.inode_of("nope") is None
    assert len(t) == 3

    t.forget(a, 1)
    assert a in t and t.path(a) == "a"  # one lookup still held
    t.forget(a, 1)
    assert a not in t
    assert t.inode_of("a") is None
    assert len(t) == 2


def test_forget_several_at_once():
    t = InodeTable()
    for _ in range(5):
        x = t.lookup("x")
    t.forget(x, 4)
    assert x in t
    t.forget(x, 1)
    assert x not in t


def test_forget_more_than_held_removes():
    t = InodeTable()
    x = t.lookup("x")
    t.forget(x, 10)
    assert x not in t


def test_numbers_never_reused():
    t = InodeTable()
    a = t.lookup("a")
    t.forget(a, 1)
    a2 = t.lookup("a")
    assert a2 != a
    assert t.path(a2) == "a"


def test_unknown_inode():
    t = InodeTable()
    with pytest.raises(KeyError):
        t.path(999)
    assert t.is_unlinked(999)
    t.forget(999, 1)  # no error
    assert 999 not in t


def test_root_never_forgotten():
    t = InodeTable()
    t.forget(ROOT_INODE, 100)
    assert ROOT_INODE in t
    assert t.path(ROOT_INODE) == ""
    assert t.inode_of("") == ROOT_INODE
    t.lookup("")
    t.forget(ROOT_INODE, 1000)
    assert ROOT_INODE in t


def test_unlink_marks_entry():
    t = InodeTable()
    f = t.lookup("f")
    t.unlink("f")
    assert f in t  # the kernel still holds it
    assert t.is_unlinked(f)
    assert t.inode_of("f") is None
    # a new file of the same name gets a new inode
    f2 = t.lookup("f")
    assert f2 != f
    assert not t.is_unlinked(f2)
    # forgetting the old inode must not drop the new one's path
    t.forget(f, 1)
    assert f not in t
    assert t.inode_of("f") == f2
    assert t.path(f2) == "f"


def test_unlink_unknown_path_is_noop():
    t = InodeTable()
    t.unlink("nothing")
    assert len(t) == 1


def test_rename_file():
    t = InodeTable()
    a = t.lookup("dir/a")
    t.rename("dir/a", "other/b")
    assert t.path(a) == "other/b"
    assert t.inode_of("other/b") == a
    assert t.inode_of("dir/a") is None
    assert not t.is_unlinked(a)


def test_rename_moves_descendants():
    t = InodeTable()
    d = t.lookup("d")
    x = t.lookup("d/x")
    y = t.lookup("d/sub/y")
    sibling = t.lookup("dd/z")  # shares the prefix "d" but is not below "d/"
    t.rename("d", "e/f")
    assert t.path(d) == "e/f"
    assert t.path(x) == "e/f/x"
    assert t.path(y) == "e/f/sub/y"
    assert t.path(sibling) == "dd/z"
    assert t.inode_of("e/f/sub/y") == y
    assert t.inode_of("d") is None and t.inode_of("d/x") is None
    assert t.inode_of("dd/z") == sibling


def test_rename_unlinks_target():
    t = InodeTable()
    src = t.lookup("src")
    dst = t.lookup("dst")
    t.rename("src", "dst")
    assert t.is_unlinked(dst)
    assert not t.is_unlinked(src)
    assert t.inode_of("dst") == src
    # forgetting the replaced inode leaves the renamed one in place
    t.forget(dst, 1)
    assert t.inode_of("dst") == src


def test_rename_dir_over_dir_unlinks_targets_children():
    t = InodeTable()
    t.lookup("a")
    a_child = t.lookup("a/same")
    t.lookup("b")
    b_child = t.lookup("b/same")
    t.rename("a", "b")
    assert t.is_unlinked(b_child)
    assert t.inode_of("b/same") == a_child
    assert t.path(a_child) == "b/same"


def test_rename_path_not_in_table():
    t = InodeTable()
    dst = t.lookup("dst")
    t.rename("never-looked-up", "dst")
    assert t.is_unlinked(dst)
    assert t.inode_of("dst") is None


def test_held_inode_outlives_the_kernels_forget():
    """A file whose upload failed stays dirty after its last close; the kernel may forget its
    inode (at unmount it does): ocifs must still know the path to upload it, and a new
    lookup of the path must find the same inode (the same staged data)."""
    t = InodeTable()
    ino = t.lookup("dir/f")
    t.hold(ino)
    t.forget(ino, 1)
    assert ino in t and t.path(ino) == "dir/f" and not t.is_unlinked(ino)
    assert t.lookup("dir/f") == ino
    t.forget(ino, 1)
    t.rename("dir", "moved")
    assert t.path(ino) == "moved/f"
    t.release(ino)
    assert ino not in t and t.inode_of("moved/f") is None


def test_release_of_a_looked_up_inode_keeps_it():
    t = InodeTable()
    ino = t.lookup("f")
    t.hold(ino)
    t.release(ino)
    assert ino in t
    t.forget(ino, 1)
    assert ino not in t
