"""Defaults come from dask.config; open() arguments override them."""

from __future__ import annotations

import tempfile

import dask
from conftest import MiB, put_shards, scratch_dirs

from dask_prefetch import config


def test_config_defaults_are_registered():
    assert config.get_bytes("block-size") == 32 * MiB
    assert config.get_bytes("part-size") == 8 * MiB
    assert config.get("concurrency") == 16
    assert config.get_seconds("read-timeout") == 120


def test_open_takes_its_defaults_from_dask_config(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [300_000])
    ((tier, _),) = tiers(1)
    settings = {
        "dask-prefetch.block-size": "64 KiB",
        "dask-prefetch.part-size": "16 KiB",
        "dask-prefetch.concurrency": 3,
        "dask-prefetch.storage": [[tier, 1]],
    }
    with dask.config.set(settings):
        with fs.open(path) as f:
            assert f.layout.block_size == 64 * 1024 and f.layout.part_size == 16 * 1024
            assert f._engine.concurrency == 3
            assert len(scratch_dirs(tier)) == 1
            assert f.read() == raw_fs.cat(path)
        with fs.open(path, block_size=100_000, part_size="50 kB", concurrency=2) as f:  # arguments win
            assert f.layout.block_size == 100_000 and f.layout.part_size == 50_000 and f._engine.concurrency == 2


def test_default_storage_is_shared_memory_when_writable():
    ((directory, mib),) = config.default_storage()
    assert directory in ("/dev/shm", tempfile.gettempdir())
    assert mib == 1024
