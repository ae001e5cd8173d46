"""One ``PrefetchFile`` shared by threads (issue #19 item 5), against the real moto server.

Each call (``read``, ``readinto``, ``seek``, ``tell``, ``close``) is atomic: the bytes a call
returns are the file's bytes from the position it started at, and the position moves by exactly
as many. ``close`` from another thread ends promptly; the readers get ``ValueError`` or their bytes.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable

import pytest
from conftest import MiB, put_shards
from test_reads import same

from dask_prefetch import S3PrefetchFileSystem
from dask_prefetch.testing import WanProxy

THREADS = 4
SIZE = 3 * MiB + 12_345
OPTIONS = dict(block_size=256 * 1024, part_size=64 * 1024, concurrency=4)


def offset_of(piece: bytes, data: bytes, hint: int = 0) -> int:
    """Where ``piece`` (at least 16 random bytes, or the file's tail) lies in ``data``; else an assertion."""
    for start in (hint, 0):
        at = data.find(piece, start)
        if at >= 0:
            return at
    raise AssertionError(f"a read of {len(piece)} bytes returned bytes that are not in the file")


def run_threads(targets: list[Callable[[], None]], timeout: float = 60.0) -> list[BaseException]:
    """Run ``targets`` in threads at once; return what they raised. A thread still running fails the test."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def wrap(target: Callable[[], None]) -> None:
        try:
            barrier.wait()
            target()
        except BaseException as e:  # noqa: BLE001 - reported to the test thread
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(t,), daemon=True) for t in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"readers still running after {timeout} s"
    return errors


@pytest.fixture
def obj(raw_fs) -> tuple[str, bytes]:
    (path,) = put_shards(raw_fs, [SIZE], prefix="threads")
    return path, raw_fs.cat(path)


def test_threads_reading_from_the_shared_position_get_every_byte_once(fs, tiers, obj):
    path, data = obj
    pieces: list[bytes] = []  # list.append is atomic
    with fs.open(path, prefetch_storage=tiers(2), **OPTIONS) as f:

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            while True:
                if rng.random() < 0.5:
                    piece = f.read(rng.randint(16, 100_000))
                else:
                    buffer = bytearray(rng.randint(16, 100_000))
                    piece = bytes(buffer[: f.readinto(buffer)])
                if not piece:
                    return
                pieces.append(piece)

        assert run_threads([lambda s=s: reader(s) for s in range(THREADS)]) == []
        assert f.tell() == SIZE and f.read() == b""
    # The pieces tile the file: each is the file's bytes at some offset, none overlaps, none is missing.
    spans = sorted((offset_of(p, data), len(p)) for p in pieces)
    at = 0
    for start, length in spans:
        assert start == at, f"bytes {at}..{start} read {'never' if start > at else 'twice'}"
        at += length
    assert at == SIZE
    assert same(b"".join(data[s : s + n] for s, n in spans), data)


def test_threads_seeking_and_reading_their_own_ranges_get_the_files_bytes(fs, tiers, obj):
    path, data = obj
    reads, exact = [0] * THREADS, [0] * THREADS
    with fs.open(path, prefetch_storage=tiers(2), **OPTIONS) as f:

        def reader(i: int) -> None:
            rng = random.Random(i)
            for _ in range(40):
                start, length = rng.randrange(SIZE - 16), rng.randint(16, 200_000)
                f.seek(start)
                if rng.random() < 0.5:
                    piece = f.read(length)
                else:
                    buffer = bytearray(length)
                    piece = bytes(buffer[: f.readinto(buffer)])
                # Another thread may have moved the position between our seek and our read (to the
                # end, even), but the read itself is whole: the file's bytes from where it began,
                # short only at the end of the file.
                if piece:
                    at = offset_of(piece, data, hint=start)
                    assert piece == data[at : at + length], (i, start, length, at)
                    exact[i] += at == start
                reads[i] += 1

        assert run_threads([lambda i=i: reader(i) for i in range(THREADS)]) == []
    assert reads == [40] * THREADS
    assert sum(exact) > 0  # most reads begin where their own seek left the position


@pytest.mark.parametrize("slow", [False, True], ids=["loopback", "wan"])
def test_close_from_another_thread_ends_the_readers_promptly(s3_server, storage_options, tiers, obj, slow):
    path, data = obj
    options = dict(storage_options)
    proxy = WanProxy(s3_server.endpoint_url, latency=0.05, bandwidth=MiB) if slow else None
    if proxy is not None:
        proxy.start()
        options["endpoint_url"] = proxy.endpoint_url
    try:
        fs = S3PrefetchFileSystem(**options, skip_instance_cache=True)
        f = fs.open(path, prefetch_storage=tiers(2), read_timeout=60, **OPTIONS)
        enough = threading.Event()  # some reads done: the readers are well under way
        good = [0] * THREADS

        def reader(i: int) -> None:
            rng = random.Random(i)
            try:
                while True:
                    start = rng.randrange(SIZE - 16)
                    f.seek(start)
                    length = rng.randint(16, 300_000)
                    piece = f.read(length)
                    if piece:  # whole, from wherever the position was (b"": another thread left it at the end)
                        at = offset_of(piece, data, hint=start)
                        assert piece == data[at : at + length]
                    good[i] += 1
                    if sum(good) >= 8 * THREADS:
                        enough.set()
            except ValueError as e:  # the file was closed: the only error a reader may see
                assert "closed file" in str(e), e

        def closer() -> None:
            assert enough.wait(30), f"only {sum(good)} reads succeeded"
            began = time.monotonic()
            f.close()
            assert time.monotonic() - began < 10, "close waited for the readers"

        assert run_threads([closer] + [lambda i=i: reader(i) for i in range(THREADS)], timeout=30) == []
        assert f.closed and sum(good) > 0
        with pytest.raises(ValueError, match="closed file"):
            f.read(1)
    finally:
        if proxy is not None:
            proxy.stop()
