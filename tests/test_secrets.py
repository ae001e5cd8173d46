"""Credentials never show: not in exceptions, task keys, reprs, logs or worker metrics."""

from __future__ import annotations

import logging

import pytest
from conftest import BUCKET, put_shards, wait_until
from distributed import Client, LocalCluster

from dask_prefetch import PrefetchWorkerPlugin, S3PrefetchFileSystem, read_tractogram
from dask_prefetch.testing.tractograms import sharded_tractogram, upload_sharded

SECRET = "testing"  # the local server's secret key (moto accepts any); searched for below


@pytest.fixture
def secret_options(storage_options):
    assert storage_options["secret"] == SECRET
    return {**storage_options, "key": "AKIDEXAMPLEKEY0000"}


def leaks(text: str) -> bool:
    return f"'{SECRET}'" in text or "AKIDEXAMPLEKEY0000" in text or "secret=" in text


def test_errors_reprs_and_logs_carry_no_credentials(raw_fs, secret_options, tiers, caplog):
    (path,) = put_shards(raw_fs, [10_000])
    fs = S3PrefetchFileSystem(**secret_options, skip_instance_cache=True)
    with caplog.at_level(logging.DEBUG, logger="dask_prefetch"):
        with fs.open(path, prefetch_storage=tiers(1)) as f:
            f.read()
            assert not leaks(repr(f)) and not leaks(str(f.stats))
        with pytest.raises(FileNotFoundError) as missing:
            fs.open(f"{BUCKET}/missing", prefetch_storage=tiers(1))
    assert not leaks(str(missing.value)) and not leaks(repr(missing.value))
    assert caplog.records and not any(leaks(r.getMessage()) for r in caplog.records)


def test_task_keys_and_metrics_carry_no_credentials(raw_fs, secret_options, tiers):
    upload_sharded(raw_fs, f"{BUCKET}/hydi", sharded_tractogram(1, 2))
    tg = read_tractogram(f"s3://{BUCKET}/hydi.*", storage_options=secret_options)
    keys = [str(k) for k in tg.lengths.__dask_graph__()]
    assert keys and not any(leaks(k) for k in keys)
    assert not leaks(repr(tg))
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as lc,
        Client(lc) as c,
    ):
        c.register_plugin(PrefetchWorkerPlugin(prefetch_storage=tiers(16)))
        tg.lengths.compute()
        wait_until(lambda: "prefetch_bytes_fetched" in str(c.scheduler_info()))  # with the next heartbeat
        assert not leaks(str(c.scheduler_info()))  # what the dashboard shows: worker metrics, names
