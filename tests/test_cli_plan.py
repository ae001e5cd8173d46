"""``dask-prefetch plan``: on paper, and against the local S3 server behind the WAN proxy (listing and probing)."""

from __future__ import annotations

import io
import json
import os
import re

import click

import pytest
from conftest import BUCKET, MiB, put_shards

from dask_prefetch.cli.main import main
from dask_prefetch.cli.plan import list_objects, probe, run_plan
from dask_prefetch.testing import WanProxy

PAPER = ["plan", "--data-gb", "498", "--shards", "464", "--header-bytes", "1000", "--workers", "16", "--threads", "8",
         "--nic-gbps", "10", "--latency-ms", "45", "--bandwidth-mibs", "83.4"]  # fmt: skip


def figure(out: str, pattern: str) -> float:
    match = re.search(pattern, out)
    assert match, f"{pattern!r} not in:\n{out}"
    return float(match.group(1))


def test_plan_on_paper_prints_the_prediction_the_table_and_the_settings(capsys, tmp_path):
    png = tmp_path / "workers.png"
    assert main([*PAPER, "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "464 shards, 498 GB" in out and "(given)" in out
    wall = figure(out, r"predicted wall time: ([\d.]+) s")
    assert 24.9 < wall < 30  # 31 GB a node over 10 Gb/s is 24.9 s, plus the graph
    assert "bottleneck: nic" in out
    rows = re.findall(r"^  (graph build|stall at task starts|compute \(\+ parse\)|per-task overhead|waiting for bytes|tail)"
                      r" +([\d.]+)", out, re.M)  # fmt: skip
    assert len(rows) == 6 and sum(float(s) for _, s in rows) == pytest.approx(wall, abs=0.05)
    assert re.search(r"recommended \(within 1 GiB of tiers per worker\): block-size \d+ MiB", out)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_compute_bound_plan_says_so_and_more_compute_takes_longer(capsys):
    assert main([*PAPER, "--compute-s-per-mib", "0.01"]) == 0
    first = capsys.readouterr().out
    assert main([*PAPER, "--compute-s-per-mib", "0.02"]) == 0
    second = capsys.readouterr().out
    assert "bottleneck: compute" in first
    assert figure(second, r"predicted wall time: ([\d.]+)") > figure(first, r"predicted wall time: ([\d.]+)")


@pytest.mark.parametrize(
    "args, message",
    [
        (["plan"], "give objects to list"),
        (["plan", "--data-gb", "1", "--shards", "2"], "--latency-ms and --bandwidth-mibs"),
        (["plan", "s3://b/x", "--data-gb", "1", "--shards", "2"], "not both"),
        (["plan", "--concurrency", "0"], "'auto' or at least 1"),
        (["plan", "--concurrency", "many"], "neither 'auto' nor a whole number"),
        (["plan", "--storage-options", "[1]"], "not a JSON object"),
    ],
)
def test_bad_plan_arguments_are_usage_errors(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_plan_lists_once_and_drops_a_global_header(raw_fs, storage_options):
    raw_fs.pipe(f"{BUCKET}/hydi/a.trk", b"h" * 1000)  # sorts first: the global header
    put_shards(raw_fs, [3 * MiB, 2 * MiB], prefix="hydi/b")
    listing = list_objects([f"s3://{BUCKET}/hydi/*"], storage_options)
    assert listing.shard_sizes == (3 * MiB, 2 * MiB) and listing.header_object == 1000
    assert list_objects([f"s3://{BUCKET}/hydi"], storage_options).shard_sizes == (3 * MiB, 2 * MiB)  # a prefix
    raw_fs.pipe(f"{BUCKET}/t/t.trk", b"h" * 1000)  # sorts after its shards, t.pt000 and t.pt001
    put_shards(raw_fs, [3 * MiB, 2 * MiB], prefix="t/t.pt")
    behind = list_objects([f"s3://{BUCKET}/t/*"], storage_options)
    assert behind.shard_sizes == (3 * MiB, 2 * MiB) and behind.header_object == 1000
    with pytest.raises(FileNotFoundError):
        list_objects([f"s3://{BUCKET}/nothing*"], storage_options)


def test_plan_probes_the_latency_and_bandwidth_behind_the_wan_proxy(raw_fs, storage_options, s3_server, capsys):
    put_shards(raw_fs, [2 * MiB, 2 * MiB], prefix="wan/s")
    with WanProxy(s3_server.endpoint_url, latency=0.05, bandwidth=8 * MiB) as proxy:
        options = {**storage_options, "endpoint_url": proxy.endpoint_url}
        listing = list_objects([f"s3://{BUCKET}/wan/*"], options)
        measured = probe(listing.fs, listing.paths[0], gets=3, nbytes=2 * MiB)
        assert 0.045 <= measured.latency_s <= 0.1, measured
        assert 5 * MiB <= measured.bandwidth_bps <= 10 * MiB, measured  # 8 MiB/s per connection
        code = main(["plan", f"s3://{BUCKET}/wan/*", "--storage-options", json.dumps(options), "--probe-gets", "2",
                     "--workers", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 shards, 4.19 MB" in out and "latency probed: median of 2 GETs" in out
    latency_ms = figure(out, r"link: ([\d.]+) ms to first byte")
    assert 45 <= latency_ms <= 100
    assert 5 <= figure(out, r"([\d.]+) MiB/s per connection") <= 10


def test_measure_runs_the_job_and_prints_measured_against_predicted(raw_fs, storage_options):
    from dask_prefetch.testing.tractograms import sharded_tractogram, upload_sharded

    upload_sharded(raw_fs, f"{BUCKET}/m/t", sharded_tractogram(1.0, 3))
    out = io.StringIO()
    p, _ = run_plan([f"s3://{BUCKET}/m/t*"], data_gb=None, shards=None, storage_options=storage_options,
                    latency_ms=1.0, bandwidth_mibs=100.0, probe_gets=1, memory_mib=None, plot_path=None, out=out,
                    measure=True)  # fmt: skip
    text = out.getvalue()
    measured = figure(text, r"measured wall time: ([\d.]+) s")
    assert 0 < measured < 30 and "3 shards" in text
    assert figure(text, r": ([\d.]+) x the measured") == pytest.approx(p.wall_s / measured, rel=0.05, abs=0.01)


def test_measure_needs_objects_to_read():
    with pytest.raises(click.UsageError, match="--measure runs the job"):
        run_plan([], data_gb=1.0, shards=2, storage_options=None, latency_ms=45.0, bandwidth_mibs=80.0, probe_gets=1,
                 memory_mib=None, plot_path=None, measure=True)  # fmt: skip


def test_the_command_measures_and_takes_the_model_s_inputs(raw_fs, storage_options, capsys):
    """``--measure``, ``--compute-streamed`` and ``--job-overhead-s`` reach the model and the job from the command."""
    from dask_prefetch.testing.tractograms import sharded_tractogram, upload_sharded

    upload_sharded(raw_fs, f"{BUCKET}/c/t", sharded_tractogram(1.0, 3))
    args = ["plan", f"s3://{BUCKET}/c/t*", "--storage-options", json.dumps(storage_options), "--latency-ms", "1",
            "--bandwidth-mibs", "100", "--probe-gets", "1"]  # fmt: skip
    assert main([*args, "--measure"]) == 0
    assert 0 < figure(capsys.readouterr().out, r"measured wall time: ([\d.]+) s") < 30
    walls = {}
    for flags in (["--compute-after"], ["--compute-streamed"], ["--compute-after", "--job-overhead-s", "5"]):
        assert main([*args, "--compute-s-per-mib", "0.5", *flags]) == 0
        walls[" ".join(flags)] = figure(capsys.readouterr().out, r"predicted wall time: ([\d.]+)")
    assert walls["--compute-streamed"] < walls["--compute-after"]  # compute overlaps the transfer
    assert walls["--compute-after --job-overhead-s 5"] == pytest.approx(walls["--compute-after"] + 4.9, abs=0.02)


def a_tenth_of_a_second(chunk) -> int:
    """The user's function of the test below: 0.1 s a partition, whatever it holds."""
    import time

    time.sleep(0.1)
    return len(chunk)


def test_the_user_s_function_is_timed_on_a_partition_and_run_by_the_measured_job(raw_fs, storage_options, capsys):
    from dask_prefetch.testing.tractograms import sharded_tractogram, upload_sharded

    upload_sharded(raw_fs, f"{BUCKET}/f/t", sharded_tractogram(2.0, 4))
    args = ["plan", f"s3://{BUCKET}/f/t*", "--storage-options", json.dumps(storage_options), "--latency-ms", "1",
            "--bandwidth-mibs", "100"]  # fmt: skip
    assert main(args) == 0
    without = figure(capsys.readouterr().out, r"predicted wall time: ([\d.]+)")
    assert main([*args, "--function", f"{__name__}:a_tenth_of_a_second", "--measure"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"compute timed: .*a_tenth_of_a_second took 0\.1\d* s on partition 0", out), out
    assert figure(out, r"predicted wall time: ([\d.]+)") >= without + 0.35  # 4 partitions of 0.1 s on 1 thread
    # The job ran the function on each partition (threads: as many at once as there are cores)
    assert figure(out, r"measured wall time: ([\d.]+) s") >= 0.4 / max(os.cpu_count() or 1, 1)


@pytest.mark.parametrize("spec, message", [("nocolon", "package.module:name"), ("no_such_module_x:f", "cannot import"),
                                           ("json:not_there", "no callable 'not_there'")])  # fmt: skip
def test_a_bad_function_is_a_usage_error(spec, message, raw_fs, storage_options):
    with pytest.raises(click.UsageError, match=message):
        run_plan([f"s3://{BUCKET}/x*"], data_gb=None, shards=None, storage_options=storage_options, latency_ms=1.0,
                 bandwidth_mibs=100.0, probe_gets=1, memory_mib=None, plot_path=None, function=spec)  # fmt: skip
    with pytest.raises(click.UsageError, match="--function is timed on a partition"):
        run_plan([], data_gb=1.0, shards=2, storage_options=None, latency_ms=45.0, bandwidth_mibs=80.0, probe_gets=1,
                 memory_mib=None, plot_path=None, function="json:dumps")  # fmt: skip
