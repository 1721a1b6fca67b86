"""The bucket as a tree of paths: lookups, listings and namespace changes, with bounded caches.

Paths are relative to the mount root, without leading or trailing "/"; "" is the root.
This is where s3fs's layout is walked (file objects, ``dir/`` markers, implicit directories)
and where the attribute and negative caches live; the FUSE layer only maps inodes to paths.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import posixpath
import time
from typing import Callable, Iterable

import trio

from ocifs.errors import FsError
from ocifs.meta import objects
from ocifs.meta.cache import UNKNOWN, Listing, MetaCache, SharedPage
from ocifs.meta.objects import ObjectAttrs
from ocifs.s3.errors import StoreError
from ocifs.s3.oci import has_control_characters
from ocifs.s3.names import wtf8_encode
from ocifs.s3.store import Store
from ocifs.tasks import Background
from ocifs.upload.journal import UploadJournal
from ocifs.upload.multipart import Multipart

log = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024  # S3 and OCI both refuse longer keys
FOLDER_SUFFIX = "_$folder$"  # old s3fox/Cyberduck directories, with s3fs's compat_dir


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def parent_of(path: str) -> str:
    return posixpath.dirname(path)


def name_of(path: str) -> str:
    return posixpath.basename(path)


def is_entry_name(name: str) -> bool:
    """A listed name the kernel can ask for: not empty (``a//b``, ``/a``), no ``/`` (deeper
    keys), not ``.`` or ``..`` (resolved by the kernel itself, never looked up)."""
    return name not in ("", ".", "..") and "/" not in name


def split_subtree(prefix: str, objs: list[dict]) -> dict[str, tuple[list[dict], list[str]]]:
    """What a delimited ListObjectsV2 would answer for ``prefix`` and each directory prefix
    below it, from a listing of the keys under ``prefix`` without delimiter (in key order):
    ``{dir prefix: (objects, common prefixes)}``."""
    listings: dict[str, tuple[list[dict], list[str]]] = {prefix: ([], [])}
    for obj in objs:
        key = obj["Key"]
        current = prefix
        while True:
            cut = key.find("/", len(current))
            if cut < 0:
                listings[current][0].append(obj)
                break
            child = key[:cut + 1]
            if child not in listings:
                listings[child] = ([], [])
                listings[current][1].append(child)
            current = child
    return listings


class Tree:
    """Path-level view of the bucket.

    Its caches are one :class:`MetaCache`, told of every change made here.  ``_pending`` holds
    files created locally and not yet uploaded: they are visible to lookups and listings on this
    mount before any object exists, with the attributes they were created with (the open file's
    own, kept by ``OpenFiles``, are the current ones).  ``default_uid``/``default_gid`` own
    objects without metadata.  ``fast_list`` makes listings take attributes from ListObjectsV2
    alone (no HEADs).
    """

    def __init__(self, store: Store, default_uid: int, default_gid: int,
                 cache: MetaCache | None = None, fast_list: bool = False,
                 multipart: Multipart | None = None, background: Background | None = None,
                 control_chars_refused: bool = False, touch_parents: bool = False,
                 compat_dir: bool = False) -> None:
        self.store = store
        # s3fs's compat_dir: ``dir_$folder$`` objects (s3fox, Cyberduck) are directories too.
        self.compat_dir = compat_dir
        self.control_chars_refused = control_chars_refused  # OCI's rule, not S3's
        self.touch_parents = touch_parents  # s3fs's update_parent_dir_stat
        self.cache = cache or MetaCache()
        # Server-side copies (chmod, rename) go through the mount's journal of multipart uploads.
        self.multipart = multipart or Multipart(store, UploadJournal.in_memory())
        self.fast_list = fast_list
        self.default_uid = default_uid
        self.default_gid = default_gid
        self.mount_time_ns = time.time_ns()
        self._pending: dict[str, ObjectAttrs] = {}
        self.background = background or Background()  # where lookups' pages finish
        # Whether the store keeps x-amz-meta-* on ``dir/`` objects (SeaweedFS does not):
        # learned at the first mkdir, None until then.
        self.keeps_dir_metadata: bool | None = None

    # -- caches ---------------------------------------------------------------------------

    def remember(self, path: str, attrs: ObjectAttrs | None) -> None:
        """What ``path`` is now, its directory's names unchanged (a metadata change)."""
        self.cache.learned(path, attrs)

    def invalidate(self, path: str) -> None:
        """``path`` may have changed in a way this mount does not know: ask the bucket again."""
        self.cache.changed(path)

    # -- files created here, not yet uploaded ---------------------------------------------

    def add_pending(self, path: str, attrs: ObjectAttrs) -> None:
        """A file created through this mount: listed and looked up here before its object
        exists, with a copy of ``attrs`` (the open file keeps the current ones)."""
        self._pending[path] = dataclasses.replace(attrs)
        self.cache.changed(path, self._pending[path])

    def is_pending(self, path: str) -> bool:
        return path in self._pending

    def pending_uploaded(self, path: str, attrs: ObjectAttrs) -> None:
        """``path``'s object now exists with ``attrs``: lookups and listings show the object."""
        if self._pending.pop(path, None) is not None:
            self.cache.changed(path, dataclasses.replace(attrs))
        else:
            self.remember(path, dataclasses.replace(attrs))

    def _pending_in(self, path: str) -> list[str]:
        return [p for p in self._pending if parent_of(p) == path]

    # -- names ----------------------------------------------------------------------------

    def key_too_long(self, path: str) -> bool:
        """Whether ``path``'s key (or its ``dir/`` marker) would pass S3's and OCI's limit."""
        return len(self.store.key(path).encode("utf-8", "surrogateescape")) + 1 > MAX_KEY_BYTES

    def refuses_new_name(self, path: str) -> bool:
        """Whether a name about to be created would be refused by the store later (OCI refuses
        control characters, S3 takes them): refused now, with a warning, instead of at upload."""
        if self.control_chars_refused and has_control_characters(path):
            log.warning("refusing to create %r: object names cannot hold control characters", path)
            return True
        return False

    # -- lookups --------------------------------------------------------------------------

    def _dir_prefix(self, path: str) -> str:
        return self.store.key(path, directory=True) if path else self.store.prefix

    async def stat(self, path: str) -> ObjectAttrs | None:
        """Attributes of ``path``, or None when nothing is there (cached either way).

        On OCI a name with control characters is never asked for directly (it answers 400 to
        the request): it is looked for in its parent's listing first, and asked for only when the
        store holds it (so the store accepts such names).
        """
        if path in self._pending:
            return self._pending[path]
        cached = self.cache.attrs(path)
        if cached is not UNKNOWN:
            return cached  # type: ignore[return-value]
        if self.control_chars_refused and has_control_characters(path):
            attrs = await self._fetch_listed(path)
        else:
            attrs = await self._fetch(path)
        self.remember(path, attrs)
        return attrs

    async def _fetch(self, path: str) -> ObjectAttrs | None:
        """Ask the store what ``path`` is: a file object, a ``dir/`` marker, or keys under it
        (an implicit directory): s3fs's three questions, in two requests sent at once.

        One is a HEAD of the file.  The other is the first page of ``path/``'s subtree, the
        one a listing of ``path`` starts with: keys sort by byte, so a ``dir/`` marker is the
        page's first key, and any key at all says ``path`` is a directory.  When ``path`` turns
        out to be one, the ``readdir`` that usually follows finds the page fetched (or on its
        way), and ``ls -l dir`` costs one round trip fewer.  The lookup waits for the page only
        when the HEAD found no file; otherwise it finishes in the background nursery and is
        kept (``pages``) until a listing uses it.  Where nothing can be kept
        (``listing_expire`` 0), one key is asked for.  A marker's own headers (s3fs's mode,
        owner and times of the directory) cost one more HEAD, only when the page shows one.
        """
        key = self.store.key(path)
        results: dict[str, object] = {}

        async def run(name: str, fn: Callable, *args: object) -> None:
            results[name] = await fn(*args)

        page: SharedPage | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "file", self.store.head, key)
            if self.compat_dir:
                nursery.start_soon(run, "folder", self.store.head, key + FOLDER_SUFFIX)
            if self.cache.keeps_pages:
                page, fetch = self.cache.page(path)
                if fetch and self.background.active:
                    self.background.start_soon(self._fill_page_quietly, path, page)
                elif fetch:
                    nursery.start_soon(self._fill_page, path, page)
            else:  # nothing is kept (listing_expire 0): one key answers the question
                nursery.start_soon(run, "children", self.store.list_dir, key + "/", 1)
        file_head = results["file"]
        if file_head is not None:
            return objects.attrs_from_head(key, file_head, self.default_uid, self.default_gid)
        listed = await self._first_keys_below(key, page, results.get("children"))
        if listed[:1] == [key + "/"]:
            marker = await self.store.head(key + "/")
            if marker is not None:
                return objects.attrs_from_head(key + "/", marker, self.default_uid,
                                               self.default_gid)
            listed = listed[1:]  # removed meanwhile: is anything else below?
        folder = results.get("folder")
        if folder is not None:  # s3fs then treats it as ``dir/`` with that object's headers
            return objects.attrs_from_head(key + "/", folder, self.default_uid, self.default_gid)
        if listed:
            return objects.implicit_dir_attrs(self.default_uid, self.default_gid, self.mount_time_ns)
        return None

    async def _first_keys_below(self, key: str, page: SharedPage | None,
                                children: object) -> list[str]:
        """The first keys (or common prefixes) under ``key/``: from the lookup's page, or its
        one-key listing; a page that failed in the background is asked for as one key (the
        listing to come asks for its page again)."""
        if page is not None:
            try:
                below, _ = await page.wait()
                return [obj["Key"] for obj in below[:2]]
            except StoreError as exc:
                log.debug("subtree page of %r failed (%s): asking for one key", key, exc)
                children = await self.store.list_dir(key + "/", 1)
        contents, prefixes = children  # type: ignore[misc]
        return [obj["Key"] for obj in contents] + prefixes

    async def _fill_page(self, path: str, page: SharedPage) -> None:
        try:
            page.result = await self.store.list_subtree_page(self._dir_prefix(path))
        except StoreError as exc:
            page.error = exc
            raise
        except BaseException:
            page.interrupted(path)
            raise
        finally:
            page.done.set()

    async def _fill_page_quietly(self, path: str, page: SharedPage) -> None:
        """:meth:`_fill_page` in the background: a failure is for whoever waits on the page."""
        try:
            await self._fill_page(path, page)
        except StoreError as exc:
            log.debug("subtree page of %r: %s", path, exc)

    async def _subtree_page(self, path: str) -> tuple[list[dict], bool]:
        page, fetch = self.cache.page(path)
        if fetch:
            await self._fill_page(path, page)
        return await page.wait()

    async def _fetch_listed(self, path: str) -> ObjectAttrs | None:
        key = self.store.key(path)
        contents, prefixes = await self._listing(parent_of(path))
        folder = key + FOLDER_SUFFIX if self.compat_dir else None
        if (any(obj["Key"] in (key, folder) for obj in contents) or key + "/" in prefixes):
            return await self._fetch(path)
        return None

    async def exact(self, path: str, attrs: ObjectAttrs) -> ObjectAttrs:
        """``attrs`` completed with the object's headers when they came from a listing (before
        they are rewritten: chmod, rename, a write); cached from then on."""
        if not attrs.from_listing or (self.control_chars_refused and has_control_characters(path)):
            return attrs
        full = await self._fetch(path)
        if full is not None:
            objects.with_headers_of(attrs, full)
            if path not in self._pending:
                self.remember(path, dataclasses.replace(attrs))
            self.cache.shown_stale(path)  # what was shown came from the listing
        return attrs

    async def listdir(self, path: str) -> list[tuple[str, ObjectAttrs]]:
        """Entries of directory ``path`` (sorted by name) with their attributes.

        One paginated ListObjectsV2 gives the names; attributes not in the cache are fetched
        with concurrent HEADs (bounded by the store's HEAD thread limit), since the s3fs headers
        (mode, owner, mtime) are not in a listing, unless ``fast_list`` says the listing's
        size and date are enough.
        """
        prefix = self._dir_prefix(path)
        generation = self.cache.generation
        listing = contents, prefixes = await self._listing(path)
        # A change made here while the listing was asked for: show it, but cache nothing
        # from a listing that may predate it.
        fresh = self.cache.generation == generation
        files: dict[str, dict] = {}
        folders: set[str] = set()
        for obj in contents:
            name = self.store.name_of(obj["Key"][len(prefix):])
            if self.compat_dir and name.endswith(FOLDER_SUFFIX):
                folders.add(name[:-len(FOLDER_SUFFIX)])  # s3fs lists ``x_$folder$`` as ``x/``
            elif is_entry_name(name):
                files[name] = obj
        dirs = {self.store.name_of(p[len(prefix):-1]) for p in prefixes} | folders
        dirs = {d for d in dirs if is_entry_name(d) and d not in files}
        for pending_path in self._pending_in(path):
            files.setdefault(name_of(pending_path), {})

        entries: dict[str, ObjectAttrs] = {}
        to_head: list[tuple[str, bool]] = []
        for name in list(files) + list(dirs):
            child = join(path, name)
            attrs = self._pending.get(child) or self.cache.attrs(child)
            if isinstance(attrs, ObjectAttrs):
                entries[name] = attrs
            else:
                to_head.append((name, name in dirs))

        keys: dict[str, str] = {}
        heads: dict[str, dict | None] = {}
        if not self.fast_list:  # fast_list: the listing alone, no key needed
            keys = {name: self.store.key(join(path, name), directory=is_dir)
                    for name, is_dir in to_head}
            heads = await self.store.head_many(list(keys.values()))
            fresh = self.cache.generation == generation
            if heads:  # the listing's life starts once it is whole: `ls -l` again asks nothing
                self.cache.keep_listing(path, listing, since=generation)
        for name, is_dir in to_head:
            key = keys.get(name, "")
            attrs = self._listed_attrs(key, heads.get(key), is_dir, files.get(name))
            if attrs is None:
                continue
            if fresh:
                self.remember(join(path, name), attrs)
            entries[name] = attrs
        return sorted(entries.items())

    def _listed_attrs(self, key: str, head: dict | None, is_dir: bool,
                      listed: dict | None) -> ObjectAttrs | None:
        """An entry's attributes from its HEAD when there is one (not with ``fast_list``),
        else from what the listing says: an implicit directory, or a file's size and date
        (``from_listing``).  None: a pending file's placeholder with nothing to show yet."""
        if head is not None:
            return objects.attrs_from_head(key, head, self.default_uid, self.default_gid)
        if is_dir:
            attrs = objects.implicit_dir_attrs(self.default_uid, self.default_gid, self.mount_time_ns)
            attrs.from_listing = self.fast_list
            return attrs
        if listed:
            return objects.attrs_from_listing(listed, self.default_uid, self.default_gid)
        return None

    async def _listing(self, path: str) -> Listing:
        """Directory ``path``'s listing (objects, common prefixes), from the cache or the store.

        The store is first asked for one page of the whole subtree (no delimiter): when the
        subtree fits in it, that one request also holds the listing of every directory below,
        which are cached too, so ``find`` or ``ls -R`` of a tree of up to 1,000 objects costs
        one request instead of one per directory.  A bigger subtree still gives the directory's
        first entries, and every subdirectory the page covers whole; the delimited listing then
        goes on after the page's last key, so a big directory costs no extra request.
        """
        listing = self.cache.listing(path)
        if listing is not None:
            return listing
        generation = self.cache.generation
        prefix = self._dir_prefix(path)
        page, truncated = await self._subtree_page(path)
        self.cache.page_used(path)
        last = page[-1]["Key"] if page else ""
        below = split_subtree(prefix, page)
        contents, prefixes = below.pop(prefix)
        for sub_prefix, sub_listing in below.items():
            # Keys sort as UTF-8 bytes, i.e. by code point: a subdirectory is whole in the
            # page when the page's last key sorts after all of its keys.
            whole = not truncated or (last > sub_prefix and not last.startswith(sub_prefix))
            sub_path = self.store.name_of(sub_prefix[len(prefix):-1])
            if whole and all(is_entry_name(part) for part in sub_path.split("/")):
                self.cache.keep_listing(join(path, sub_path), sub_listing, since=generation)
        if truncated:
            try:
                more, more_prefixes = await self.store.list_dir(prefix, start_after=last)
            except StoreError as exc:  # a store that refuses StartAfter: list it all again
                if exc.errno != errno.EINVAL:
                    raise
                more, more_prefixes = await self.store.list_dir(prefix)
            seen = {obj["Key"] for obj in contents}
            contents = contents + [obj for obj in more if obj["Key"] not in seen]
            prefixes = sorted(set(prefixes) | set(more_prefixes))
        self.cache.keep_listing(path, (contents, prefixes), since=generation)
        return contents, prefixes

    async def is_empty_dir(self, path: str) -> bool:
        prefix = self._dir_prefix(path)
        contents, prefixes = await self.store.list_dir(prefix, max_keys=2)
        others = [o for o in contents if o["Key"] != prefix] + prefixes
        return not others and not self._pending_in(path)

    # -- changes --------------------------------------------------------------------------

    async def put_attrs(self, path: str, attrs: ObjectAttrs) -> None:
        """Store new metadata for an existing path: a self-copy for files, a marker for dirs."""
        if attrs.is_dir:
            await self.store.put_bytes(self.store.key(path, directory=True), b"",
                                       objects.metadata_for(attrs), objects.DIR_CONTENT_TYPE)
            attrs.has_marker = True
        else:
            key = self.store.key(path)
            await self.multipart.copy(key, key, objects.metadata_for(attrs),
                                      objects.content_type_for(path, attrs), size=attrs.size)
            attrs.etag = None  # a copy may have another ETag (multipart sources do)
        self.remember(path, attrs)

    async def mkdir(self, path: str, attrs: ObjectAttrs) -> None:
        key = self.store.key(path, directory=True)
        await self.store.put_bytes(key, b"", objects.metadata_for(attrs), objects.DIR_CONTENT_TYPE)
        self.cache.changed(path, attrs)
        self.cache.changed(parent_of(path))  # an implicit parent now has a marker below it
        if self.keeps_dir_metadata is None:
            await self._check_dir_metadata(key)
        await self.touch_parent(path)

    async def touch_parent(self, path: str) -> None:
        """With ``update_parent_dir_stat``: an entry made or removed in a directory moves the
        directory's mtime and ctime, stored on its marker (s3fs's option; the mountpoint has
        no object to hold them)."""
        parent = parent_of(path)
        if not self.touch_parents or not path or not parent:
            return
        attrs = await self.stat(parent)
        if attrs is None or not attrs.is_dir:
            return
        attrs = dataclasses.replace(await self.exact(parent, attrs))
        attrs.mtime_ns = attrs.ctime_ns = time.time_ns()
        await self.put_attrs(parent, attrs)

    async def _check_dir_metadata(self, key: str) -> None:
        """One HEAD of the first marker made: a store that drops a ``dir/`` object's metadata
        loses every directory's mode, owner and times at the next mount (s3fs's too); say so
        once rather than let it look like ocifs forgot them."""
        head = await self.store.head(key)
        if head is None:  # removed meanwhile: ask again at the next mkdir
            return
        self.keeps_dir_metadata = bool(head.get("Metadata"))
        if not self.keeps_dir_metadata:
            log.warning("this store keeps no metadata on directory objects (SeaweedFS does "
                        "this): directories show mode %o, the mount's owner and time after a "
                        "remount, as on s3fs", objects.DEFAULT_DIR_MODE & 0o7777)

    async def symlink(self, path: str, target: str, attrs: ObjectAttrs) -> None:
        if self.store.use_wtf8:  # s3fs maps the target as it maps names
            target = wtf8_encode(target)
        data = target.encode("utf-8", "surrogateescape")
        attrs.size = len(data)
        await self.store.put_bytes(self.store.key(path), data, objects.metadata_for(attrs),
                                   objects.DEFAULT_CONTENT_TYPE)
        self.cache.changed(path, attrs)
        await self.touch_parent(path)

    async def mknod(self, path: str, attrs: ObjectAttrs) -> None:
        """A regular file, FIFO, socket or device made by mknod: an empty object whose mode
        says what it is (and ``x-amz-meta-rdev`` a device's number), written at once."""
        attrs.size = 0
        await self.store.put_bytes(self.store.key(path), b"", objects.metadata_for(attrs),
                                   objects.content_type_for(path, attrs))
        self.cache.changed(path, attrs)
        await self.touch_parent(path)

    async def readlink(self, path: str) -> str:
        data = await self.store.get_bytes(self.store.key(path))
        return self.store.name_of(data.decode("utf-8", "surrogateescape"))

    async def remove_file(self, path: str) -> None:
        if self._pending.pop(path, None) is None:
            await self.store.delete(self.store.key(path))
        self.cache.changed(path, None)
        await self.touch_parent(path)

    async def remove_dir(self, path: str, attrs: ObjectAttrs) -> None:
        if not await self.is_empty_dir(path):
            raise FsError(errno.ENOTEMPTY, f"directory {path} is not empty")
        await self.store.delete(self.store.key(path, directory=True))
        if self.compat_dir:  # as s3fs's rmdir, the old-style object goes too (none: a no-op)
            await self.store.delete(self.store.key(path) + FOLDER_SUFFIX)
        self.cache.changed(path, None, subtree=True)
        await self.touch_parent(path)

    async def rename(self, old: str, new: str, attrs: ObjectAttrs) -> None:
        """Copy then delete (s3fs's way); a directory moves object by object, not atomically."""
        target = await self.stat(new)
        if target is not None:
            target = await self.exact(new, target)
            if target.is_dir and not attrs.is_dir:
                raise FsError(errno.EISDIR, f"{new} is a directory")
            if attrs.is_dir and not target.is_dir:
                raise FsError(errno.ENOTDIR, f"{new} is not a directory")
            if target.is_dir and not await self.is_empty_dir(new):
                raise FsError(errno.ENOTEMPTY, f"directory {new} is not empty")
        attrs.ctime_ns = time.time_ns()
        if attrs.is_dir:
            await self._rename_dir(old, new, attrs, target)
        elif old in self._pending:
            if target is not None and new not in self._pending:
                await self.store.delete(self.store.key(new))
            del self._pending[old]
            self._pending[new] = dataclasses.replace(attrs)
        else:
            src, dst = self.store.key(old), self.store.key(new)
            await self.multipart.copy(src, dst, objects.metadata_for(attrs),
                                      objects.content_type_for(new, attrs), size=attrs.size)
            await self.store.delete(src)
            attrs.etag = None  # a copy may have another ETag (multipart sources do)
        self.cache.changed(old, None, subtree=True)
        self.cache.changed(new, attrs, subtree=True)
        await self.touch_parent(old)
        if parent_of(new) != parent_of(old):
            await self.touch_parent(new)

    async def _rename_dir(self, old: str, new: str, attrs: ObjectAttrs,
                          target: ObjectAttrs | None) -> None:
        """Markers are written afresh (parents first; some stores cannot copy a ``dir/`` key),
        files copied server-side, then files deleted and markers deleted deepest first."""
        src_prefix, dst_prefix = self._dir_prefix(old), self._dir_prefix(new)
        keys = [obj["Key"] for obj in await self.store.list_recursive(src_prefix)]
        markers = sorted((k for k in keys if k.endswith("/")), key=len)
        files = [k for k in keys if not k.endswith("/")]
        if target is not None and target.has_marker and dst_prefix not in markers:
            await self.store.delete(dst_prefix)

        folder = self.store.key(old) + FOLDER_SUFFIX if self.compat_dir else None
        folder_head = await self.store.head(folder) if folder else None
        if folder_head is not None and src_prefix not in markers:
            # s3fs moves an old-style directory to a ``dir/`` marker (made first, below)
            markers.insert(0, src_prefix)
        for marker in markers:
            head = await self.store.head(marker)
            meta = (head or {}).get("Metadata") or objects.metadata_for(attrs)
            await self.store.put_bytes(dst_prefix + marker[len(src_prefix):], b"", meta,
                                       objects.DIR_CONTENT_TYPE)

        async def move(key: str) -> None:
            head = await self.store.head(key)
            if head is None:
                return
            await self.multipart.copy(key, dst_prefix + key[len(src_prefix):],
                                  head.get("Metadata") or {},
                                  head.get("ContentType") or objects.DEFAULT_CONTENT_TYPE)

        await self._for_each(move, files)
        await self._for_each(self.store.delete, files)
        for marker in reversed(markers):
            await self.store.delete(marker)
        if folder_head is not None and folder is not None:
            await self.store.delete(folder)
        for pending_path in [p for p in self._pending if p.startswith(old + "/")]:
            self._pending[new + pending_path[len(old):]] = self._pending.pop(pending_path)

    @staticmethod
    async def _for_each(fn: Callable, items: Iterable) -> None:
        async with trio.open_nursery() as nursery:
            for item in items:
                nursery.start_soon(fn, item)
