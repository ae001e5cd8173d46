"""Defaults come from dask.config; open() arguments override them."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import dask
import pytest
from conftest import MiB, put_shards, scratch_dirs

from dask_prefetch import config


def test_config_defaults_are_registered():
    assert config.get_bytes("block-size") == 32 * MiB
    assert config.get_bytes("part-size") == 8 * MiB
    assert config.get("concurrency") == "auto" and config.get("max-concurrency") == 64
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


@pytest.mark.parametrize("prefix", ["DASK_DASK_PREFETCH__", "DASK_PREFETCH__"])
def test_environment_variables_set_the_defaults(prefix, tmp_path):
    env = {**os.environ, f"{prefix}BLOCK_SIZE": "64MiB", f"{prefix}STORAGE": f'[["{tmp_path}", 100]]'}
    code = "import dask, dask_prefetch; print(dask.config.get('dask-prefetch.block-size'), dask_prefetch.config.default_storage())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"64MiB [('{tmp_path}', 100.0)]"


def test_the_short_environment_names_survive_a_refresh_and_give_way_to_the_long_ones(tmp_path):
    env = {**os.environ, "DASK_PREFETCH__BLOCK_SIZE": "64MiB", "DASK_PREFETCH__CONCURRENCY": "3"}
    env["DASK_DASK_PREFETCH__CONCURRENCY"] = "5"
    code = (
        "import dask.config, dask_prefetch.config as c\n"
        "before = (c.get('block-size'), c.get('concurrency'))\n"
        "dask.config.refresh()\n"
        "print(before, (c.get('block-size'), c.get('concurrency')))\n"
        "with dask.config.set({'dask-prefetch.block-size': '8MiB'}):\n"
        "    print(c.get('block-size'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["('64MiB', 5) ('64MiB', 5)", "8MiB"]


def test_every_setting_is_documented_in_the_readme():
    from pathlib import Path

    import yaml

    root = Path(config.__file__).parents[1]
    keys = yaml.safe_load((root / "dask_prefetch" / "dask-prefetch.yaml").read_text())["dask-prefetch"]
    readme = (root / "README.md").read_text()
    assert [key for key in keys if f"| `{key}` |" not in readme] == []


def test_the_engine_gets_its_timeouts_from_open_resolved_once(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [100_000])
    with dask.config.set({"dask-prefetch.stall-timeout": "7s", "dask-prefetch.straggler-factor": 0}):
        f = fs.open(path, prefetch_storage=tiers(1))
    with f:  # read after the settings changed back: the values of the open stay
        assert f._engine.stall_timeout == 7.0 and f._engine._stragglers.factor == 0.0
        assert f.read() == raw_fs.cat(path)
    for value, exc in [("fast", TypeError), (-1, ValueError), (float("nan"), ValueError)]:
        with dask.config.set({"dask-prefetch.straggler-factor": value}):
            with pytest.raises(exc, match="dask-prefetch.straggler-factor"):
                fs.open(path, prefetch_storage=tiers(1))
