"""The job behind ``stats`` and ``demo`` on a real LocalCluster and the local S3 server: a progress line that
moves, per-job prefetch figures (not the workers' cumulative counters), rates only where they mean something,
and the demo's headline next to the README's claim."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from conftest import BUCKET, MiB
from distributed import Client, LocalCluster

import dask_prefetch
from dask_prefetch.cli.claims import DEMO_DEFAULTS, README_DEMO_CLAIM
from dask_prefetch.cli.demo import headline
from dask_prefetch.cli.job import hits, rate, report, run
from dask_prefetch.cli.main import main
from dask_prefetch.cluster import register_plugins
from dask_prefetch.engine.stats import EngineStats, job_stats
from dask_prefetch.testing import WanProxy
from dask_prefetch.testing.tractograms import sharded_tractogram, upload_sharded

README = Path(__file__).resolve().parents[1] / "README.md"
UPDATE = re.compile(r"\[[#.]+\]\s+(\d+)%.*?\| (\d+)/(\d+) partitions done")


@pytest.fixture
def client(tmp_path):
    # One worker (in this process: process_stats is then that worker's own), both plugins.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:  # fmt: skip
        register_plugins(client, prefetch_storage=[(str(tmp_path / "tier"), 256)])
        yield client


def test_the_progress_line_moves_before_any_partition_is_done(raw_fs, storage_options, s3_server, client):
    # Three 2 MB shards behind a slow WAN: each partition is one GET of ~1 s, so every task finishes near the end.
    paths = upload_sharded(raw_fs, f"{BUCKET}/slow", sharded_tractogram(6, 3, seed=3))
    with WanProxy(s3_server.endpoint_url, 0.05, 2 * MiB) as proxy:
        options = {**storage_options, "endpoint_url": proxy.endpoint_url}
        tg = dask_prefetch.read_tractogram([f"s3://{p}" for p in paths], storage_options=options)
        stream = io.StringIO()
        result = run(tg, client, progress=True, stream=stream)
    updates = [tuple(map(int, m.groups())) for m in UPDATE.finditer(stream.getvalue())]
    assert result.summary.streamlines > 0
    assert len(updates) >= 3, stream.getvalue()
    assert updates[-1] == (100, 3, 3)
    assert any(0 < pct < 100 and done == 0 for pct, done, _ in updates), updates  # moved while none was done
    percents = [pct for pct, _, _ in updates]
    assert percents == sorted(percents)
    assert stream.getvalue().endswith("\n")


def test_per_job_figures_are_this_jobs_not_the_workers_cumulative_counters(raw_fs, storage_options, client):
    paths = upload_sharded(raw_fs, f"{BUCKET}/twice", sharded_tractogram(4, 2, seed=5))
    size = sum(raw_fs.size(p) for p in paths[1:])
    tg = dask_prefetch.read_tractogram([f"s3://{p}" for p in paths], storage_options=storage_options)
    jobs = []
    for _ in range(2):
        before = client.run(dask_prefetch.process_stats)
        tg.lengths.compute()
        jobs.append(job_stats(before, client.run(dask_prefetch.process_stats)))
    served = client.run(lambda dask_worker: dask_worker.metrics["prefetch_bytes_served"](dask_worker))
    cumulative = sum(served.values())  # what the dashboard and Prometheus show: both jobs
    for job in jobs:  # each job read the shards once; the workers' counters hold both jobs
        assert size <= job.bytes_served < 1.5 * size, (job, size)
        assert job.files_opened == 2
    assert cumulative == sum(job.bytes_served for job in jobs) >= 2 * size

    result = run(tg, client, progress=False)
    assert size <= result.prefetch.bytes_served < 1.5 * size
    out = io.StringIO()
    report(result, out)
    line = next(x for x in out.getvalue().splitlines() if x.startswith("prefetch, this job only:"))
    assert re.search(r"ms per task", line) and "2 streams" in line, line


def test_job_stats_counts_a_worker_that_joined_from_zero():
    before = {"a": EngineStats(bytes_fetched=10, reads=4, peak_in_flight=3)}
    after = {"a": EngineStats(bytes_fetched=25, reads=6, peak_in_flight=2), "b": EngineStats(bytes_fetched=7)}
    job = job_stats(before, after)
    assert (job.bytes_fetched, job.reads, job.peak_in_flight) == (22, 2, 2)


def test_rates_and_hits_only_where_they_mean_something():
    assert rate(100_000, 2.0) is None and rate(64 * MiB, 0.01) is None
    assert rate(64 * MiB, 2.0) == "32 MiB/s" and rate(3 * MiB, 2.0) == "1.5 MiB/s"
    assert hits(EngineStats(reads=3, reads_waited=3, files_opened=3)).startswith("hits n/a")
    assert hits(EngineStats(reads=16, reads_waited=2, files_opened=8)).startswith("88% of 16 block reads")


def test_stats_on_tiny_files_prints_no_meaningless_rate(raw_fs, storage_options, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", storage_options["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", storage_options["secret"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    upload_sharded(raw_fs, f"{BUCKET}/tiny", sharded_tractogram(0.05, 3, seed=2))
    code = main(["stats", f"s3://{BUCKET}/tiny.*", "--endpoint-url", storage_options["endpoint_url"],
                 "--storage", f"{tmp_path}:64", "--workers", "1", "--no-progress"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "MiB/s" not in out, out  # was "(0 MiB/s)"
    assert not re.search(r"\b0% of", out), out  # was "0% of 3 reads ... (hits)"
    assert "hits n/a (" in out and "prefetch, this job only: 3 streams" in out, out


def test_the_headline_names_the_readme_claim_for_the_defaults_only():
    line = headline(2.0, 4.2, dict(DEMO_DEFAULTS))
    assert "took 2.1x dask_prefetch's time" in line and f"README claims {README_DEMO_CLAIM} for this setting" in line
    other = headline(2.0, 4.2, {**DEMO_DEFAULTS, "latency": 0.0})
    assert "README has no figure for this setting" in other


def test_the_readme_states_the_claim_the_demo_prints():
    text = README.read_text()
    demo = text[text.index("`make demo` runs `dask-prefetch demo`") :]
    demo = demo[: demo.index("\n\n")]
    assert f"{README_DEMO_CLAIM.replace('x', '×')}" in demo or README_DEMO_CLAIM in demo, demo


def test_the_readme_names_prometheus_client_wherever_it_shows_the_prometheus_metrics():
    paragraphs = [p for p in README.read_text().split("\n\n") if "/metrics" in p]  # where the page is shown
    assert paragraphs
    for paragraph in paragraphs:
        assert "prometheus_client" in paragraph, paragraph
