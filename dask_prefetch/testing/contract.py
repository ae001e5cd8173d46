"""The contract every prefetching filesystem and range source passes: a reusable pytest suite.

As zarr ships ``StoreTests``, this module ships :class:`PrefetchFileSystemContract`. To add a
store, subclass it in a test module and give it a ``store`` fixture returning a
:class:`ContractStore`: the filesystem under test, plus the store's *own* client to put, replace
and list objects (so that what is checked never goes through the code under test)::

    class TestMemory(PrefetchFileSystemContract):
        @pytest.fixture
        def store(self, tmp_path):
            target = fsspec.filesystem("memory", skip_instance_cache=True)
            return ContractStore(PrefetchFileSystem(fs=target), target.pipe_file, ...)

The suite checks byte-exact reads at random offsets and sizes, seeks, shard lists with
``header_bytes``, that an object changed mid-read raises instead of mixing versions, that a
missing object is ``FileNotFoundError``, that every method outside the reading allow-list
raises ``PermissionError`` with the store unchanged, and that filesystems and open files pickle.
Needs pytest.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import pickle
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from ..fs.readonly import READING_METHODS

#: Methods of the filesystems that are this package's own (reading) machinery.
OWN_METHODS = frozenset({"_pin_objects", "_open_prefetching", "_range_source", "_object_path"})
KiB = 1024


@dataclass
class ContractStore:
    """A store under test.

    Attributes
    ----------
    fs
        The prefetching filesystem under test.
    put
        ``put(path, data)``: write (or replace) an object with the store's own client.
    snapshot
        ``snapshot()``: everything a write could change (e.g. a listing with versions), comparable with ``==``.
    root
        Where the test's objects go: ``f"{root}/name"`` is a path the filesystem under test opens.
    storage
        ``prefetch_storage`` for the files the tests open.
    """

    fs: Any
    put: Callable[[str, bytes], None]
    snapshot: Callable[[], Any]
    root: str
    storage: list[tuple[str, float]]


def _data(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(n)


class PrefetchFileSystemContract:
    """Tests every prefetching filesystem passes; subclass and provide the ``store`` fixture."""

    SMALL = dict(block_size=64 * KiB, part_size=16 * KiB)

    @pytest.fixture
    def store(self) -> ContractStore:  # pragma: no cover - provided by subclasses
        raise NotImplementedError("provide a `store` fixture returning a ContractStore")

    def objects(self, store: ContractStore, sizes: list[int], prefix: str = "obj") -> tuple[list[str], list[bytes]]:
        paths, bodies = [], []
        for i, size in enumerate(sizes):
            path, body = f"{store.root}/{prefix}{i:03d}", _data(size, seed=size + i)
            store.put(path, body)
            paths.append(path)
            bodies.append(body)
        return paths, bodies

    def test_reads_are_byte_exact_at_random_offsets_and_sizes(self, store: ContractStore) -> None:
        (path,), (body,) = self.objects(store, [300 * KiB + 17])
        rng = np.random.default_rng(0)
        with store.fs.open(path, prefetch_storage=store.storage, **self.SMALL) as f:
            assert f.read(1000) == body[:1000]  # sequential from the start
            for _ in range(25):
                start = int(rng.integers(0, len(body) + 10))
                size = int(rng.integers(0, 100 * KiB))
                assert f.seek(start) == start
                assert f.read(size) == body[start : start + size]
                assert f.tell() == (min(start + size, len(body)) if start <= len(body) else start)
            f.seek(0)
            assert f.read() == body

    def test_shards_with_header_bytes_read_as_one_file(self, store: ContractStore) -> None:
        paths, bodies = self.objects(store, [1000, 70 * KiB, 3 * KiB, 130 * KiB + 5], prefix="shard")
        expected = bodies[0] + b"".join(b[1000:] for b in bodies[1:])
        with store.fs.open(paths, header_bytes=1000, prefetch_storage=store.storage, **self.SMALL) as f:
            assert f.size == len(expected)
            pieces = []
            while piece := f.read(7777):
                pieces.append(piece)
            assert b"".join(pieces) == expected
            assert f.seek(-5000, io.SEEK_END) == len(expected) - 5000
            assert f.read() == expected[-5000:]

    def test_readinto_and_text_mode(self, store: ContractStore) -> None:
        (path,), (body,) = self.objects(store, [90 * KiB])
        with store.fs.open(path, prefetch_storage=store.storage, **self.SMALL) as f:
            buffer = bytearray(70 * KiB)
            assert f.readinto(buffer) == len(buffer) and bytes(buffer) == body[: len(buffer)]
        text = "línea\n" * 5000
        store.put(f"{store.root}/t.txt", text.encode())
        with store.fs.open(f"{store.root}/t.txt", "r", encoding="utf-8", prefetch_storage=store.storage) as f:
            assert f.read() == text

    def test_a_missing_object_is_file_not_found(self, store: ContractStore) -> None:
        with pytest.raises(FileNotFoundError):
            store.fs.open(f"{store.root}/no-such-object", prefetch_storage=store.storage)

    def test_an_object_changed_mid_read_raises_and_never_mixes_versions(self, store: ContractStore) -> None:
        (path,), (body,) = self.objects(store, [512 * KiB])
        small = dict(block_size=32 * KiB, part_size=32 * KiB, concurrency=1)
        with store.fs.open(path, prefetch_storage=[(store.storage[0][0], 0.0625)], **small) as f:
            assert f.read(1000) == body[:1000]
            store.put(path, _data(len(body), seed=99))  # same size, other bytes
            read = bytearray(body[:1000])
            with pytest.raises(OSError):
                while piece := f.read(16 * KiB):
                    read += piece
            assert bytes(read) == body[: len(read)]  # whatever came before the error is the old version
            assert len(read) < len(body)

    def test_every_write_refuses_and_the_store_is_unchanged(self, store: ContractStore) -> None:
        (path,), _ = self.objects(store, [1000])
        before = store.snapshot()
        refused = []
        for name in dir(store.fs):
            if name.startswith("__") or name in READING_METHODS or name in OWN_METHODS:
                continue
            if isinstance(inspect.getattr_static(type(store.fs), name, None), property):
                continue
            method = getattr(store.fs, name)
            if not callable(method) or inspect.isclass(method):
                continue
            with pytest.raises(PermissionError, match="read-only"):
                result = method(path, f"{store.root}/copy")
                if inspect.iscoroutine(result):
                    asyncio.run(result)  # a refusing coroutine raises at its first step
            refused.append(name)
        assert {"pipe_file", "rm", "cp_file", "mv", "put", "mkdir", "touch"} <= set(refused)
        for mode in ("wb", "ab", "r+b", "w"):
            with pytest.raises(PermissionError, match="read-only"):
                store.fs.open(f"{store.root}/new", mode)
        assert store.snapshot() == before

    def test_filesystem_and_open_file_pickle(self, store: ContractStore) -> None:
        (path,), (body,) = self.objects(store, [100 * KiB])
        copy = pickle.loads(pickle.dumps(store.fs))
        with copy.open(path, prefetch_storage=store.storage, **self.SMALL) as f:
            assert f.read(10) == body[:10]
            g = pickle.loads(pickle.dumps(f))  # "re-open at this position"
            try:
                assert g.tell() == 10 and g.read() == body[10:]
            finally:
                g.close()

    def test_listing_and_metadata_are_the_store_s(self, store: ContractStore) -> None:
        (path,), (body,) = self.objects(store, [4 * KiB])
        assert store.fs.info(path)["size"] == len(body)
        assert store.fs.exists(path) and not store.fs.exists(f"{store.root}/absent")
        assert store.fs.cat_file(path, start=10, end=20) == body[10:20]
