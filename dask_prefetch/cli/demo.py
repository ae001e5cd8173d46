"""``dask-prefetch demo``: the statistics job on an embedded local S3, against nibabel over plain s3fs."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time

import click
import numpy as np

from .job import Summary, report, run

DEMO_EXTRA = ("moto", "flask", "flask_cors")  # what the [demo] extra installs for the local S3 server


def run_demo(
    size_mb: float,
    shards: int,
    latency: float,
    bandwidth_mib: float,
    workers: int,
    threads: int,
    compare: bool,
    progress: bool | None,
    timeline: str | None = None,
) -> None:
    """Start a local S3 server (and a simulated WAN), write a sample tractogram, summarise it on a LocalCluster.

    Raises
    ------
    click.ClickException
        If the ``[demo]`` extra (moto, flask, flask-cors: the local S3 server) is not installed.
    """
    missing = [name for name in DEMO_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise click.ClickException(
            f"the demo's local S3 server needs {', '.join(missing)}: pip install \"dask-prefetch[demo]\""
        )
    import s3fs

    from ..testing import LocalS3Server, WanProxy
    from ..testing.tractograms import sharded_tractogram, upload_sharded
    from ..tractography.tractogram import read_tractogram
    from .main import _cluster

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with contextlib.ExitStack() as stack:
        click.echo("starting a local S3 server (moto) ...", err=True)
        server = stack.enter_context(LocalS3Server())
        options = server.storage_options()
        raw = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        raw.mkdir("demo")
        started = time.perf_counter()
        paths = upload_sharded(raw, "demo/tractogram", sharded_tractogram(size_mb, shards))
        total = sum(raw.size(p) for p in paths)
        click.echo(
            f"wrote s3://demo/tractogram.* : a 1000-byte global header + {shards} TRK shards, "
            f"{total / 1e6:.0f} MB ({time.perf_counter() - started:.0f} s)",
            err=True,
        )
        if latency > 0:
            proxy = stack.enter_context(WanProxy(server.endpoint_url, latency, bandwidth_mib * 2**20))
            options = {**options, "endpoint_url": proxy.endpoint_url}
            click.echo(
                f"simulated WAN: {latency * 1000:g} ms first byte, {bandwidth_mib:g} MiB/s per connection", err=True
            )
        with _cluster(None, workers, threads, None) as client:
            click.echo(
                f"LocalCluster: {workers} workers x {threads} threads, dashboard {client.dashboard_link}", err=True
            )
            tg = read_tractogram("s3://demo/tractogram.*", storage_options=options)
            result = run(tg, client, progress)
            click.echo(f"\ndask_prefetch ({tg!r}, both plugins):")
            report(result)
            if compare:
                seconds, plain = _nibabel_over_s3fs(client, options, paths[1:])
                if (plain.streamlines, plain.points) != (result.summary.streamlines, result.summary.points):
                    raise AssertionError("nibabel over s3fs found other counts: the demo's data or a reader is wrong")
                click.echo(
                    f"\nsame job with nibabel over plain s3fs (a task per shard): {seconds:.2f} s, "
                    f"{seconds / result.seconds:.1f}x dask_prefetch's time; same counts"
                )
        if timeline:
            _plot_timeline(options, paths, timeline)


def _plot_timeline(options: dict, paths: list[str], png: str) -> None:
    """Read the global header + every shard as one file, parsing as it goes, traced; plot the timeline."""
    from ..fs.s3 import S3PrefetchFileSystem
    from ..formats.trk import TrkReader
    from ..engine.trace import Tracer

    fs = S3PrefetchFileSystem(**options)
    started = time.perf_counter()
    with Tracer() as trace, fs.open(paths, header_bytes=1000, block_size=8 * 2**20, part_size=2 * 2**20) as f:
        n = sum(len(chunk.lengths) for chunk in TrkReader(f, paths[0]))
        stats = f.stats
    seconds = time.perf_counter() - started
    trace.plot(
        png, title=f"one logical file: {len(paths) - 1} shards, 8 MiB blocks, read and parsed in {seconds:.1f} s"
    )
    click.echo(
        f"\ntimeline of one traced read ({n:,} streamlines, {stats.requests} GETs, waited "
        f"{stats.stall_seconds:.2f} s): {png}"
    )


def _nibabel_over_s3fs(client: object, options: dict, shards: list[str]) -> tuple[float, Summary]:
    started = time.perf_counter()
    parts = client.gather([client.submit(_plain_shard, p, options, pure=False) for p in shards])  # type: ignore[attr-defined]
    summary = Summary()
    for part in parts:
        summary = summary.merge(part)
    return time.perf_counter() - started, summary


def _plain_shard(path: str, options: dict) -> Summary:
    import s3fs
    from nibabel.streamlines import TrkFile

    from ..formats import StreamlineChunk

    with s3fs.S3FileSystem(**options).open(path, "rb") as f:
        streamlines = TrkFile.load(f, lazy_load=False).streamlines
    lengths = np.asarray(streamlines._lengths, np.int64)
    return Summary.of(StreamlineChunk(np.asarray(streamlines.get_data(), np.float32), lengths))
