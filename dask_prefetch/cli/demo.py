"""``dask-prefetch demo``: the statistics job on an embedded local S3, against nibabel over plain s3fs."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from typing import Any

import click
import numpy as np

from .claims import DEMO_DEFAULTS, README_DEMO_CLAIM
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

    from ..formats import kernels
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
        wan = "no WAN (loopback)"
        if latency > 0:
            proxy = stack.enter_context(WanProxy(server.endpoint_url, latency, bandwidth_mib * 2**20))
            options = {**options, "endpoint_url": proxy.endpoint_url}
            wan = f"a simulated WAN of {latency * 1000:g} ms to first byte and {bandwidth_mib:g} MiB/s per connection"
        setting = (
            f"a {total / 1e6:.0f} MB tractogram (a global header + {shards} TRK shards of "
            f"{(total - 1000) / shards / 1e6:.1f} MB) on a local S3 server (moto) behind {wan}, "
            f"read on a LocalCluster of {workers} workers x {threads} threads"
        )
        click.echo(f"setting: {setting}")
        # Warm-up, never timed: what a long-running cluster has done long before a job arrives.
        local = kernels.warm()  # compiled here once (and cached on disk), so the workers load them
        started = time.perf_counter()
        with _cluster(None, workers, threads, None, "s3://demo", options) as client:
            cluster_seconds = time.perf_counter() - started  # the plugins' setup warms the workers' kernels
            started = time.perf_counter()
            client.run(_warm_readers, options, paths[0])
            readers_seconds = time.perf_counter() - started
            click.echo(
                f"warm-up, not timed: TRK kernels {local.seconds:.1f} s ({_how(local)}), "
                f"LocalCluster + plugins {cluster_seconds:.1f} s (workers' kernels: "
                f"{_workers_kernels(client)}), store clients and readers on the workers {readers_seconds:.1f} s; "
                f"dashboard {client.dashboard_link}"
            )
            started = time.perf_counter()
            tg = read_tractogram("s3://demo/tractogram.*", storage_options=options)
            graph_seconds = time.perf_counter() - started
            result = run(tg, client, progress)
            ours = graph_seconds + result.seconds
            click.echo(f"\ndask_prefetch ({tg!r}, both plugins), graph {graph_seconds:.2f} s + compute:")
            report(result)
            if compare:
                seconds, plain = _nibabel_over_s3fs(client, options, paths[1:])
                if (plain.streamlines, plain.points) != (result.summary.streamlines, result.summary.points):
                    raise AssertionError("nibabel over s3fs found other counts: the demo's data or a reader is wrong")
                click.echo(f"\nsame job with nibabel over plain s3fs (a task per shard): {seconds:.2f} s; same counts")
                settings = {
                    "size_mb": size_mb, "shards": shards, "latency": latency,
                    "bandwidth_mib": bandwidth_mib, "workers": workers, "threads": threads,
                }  # fmt: skip
                click.echo("\n" + headline(ours, seconds, settings))
        if timeline:
            _plot_timeline(options, paths, timeline)


def headline(ours: float, theirs: float, settings: dict) -> str:
    """The demo's result in one line: the measured ratio, next to what the README claims for these settings."""
    measured = (
        f"headline: nibabel over plain s3fs took {theirs / ours:.1f}x dask_prefetch's time "
        f"({theirs:.2f} s against {ours:.2f} s, warm-up excluded from both)"
    )
    if settings == DEMO_DEFAULTS:
        return f"{measured}; the README claims {README_DEMO_CLAIM} for this setting (the defaults, 2-core VM)"
    return f"{measured}; the README has no figure for this setting (its {README_DEMO_CLAIM} is for the defaults)"


def _how(warmup: Any) -> str:
    if warmup.how == "compiled":
        return f"compiled, cached in {warmup.cache_dir}" if warmup.cache_dir else "compiled, not cached"
    return {"loaded": "loaded from numba's cache", "ready": "already compiled"}.get(warmup.how, warmup.how)


def _workers_kernels(client: Any) -> str:
    """How each worker's plugin warmed its kernels, e.g. ``loaded from numba's cache in 0.12 s``."""
    from ..cluster import PrefetchWorkerPlugin

    def how(dask_worker: Any) -> str:
        plugin = next((p for p in dask_worker.plugins.values() if isinstance(p, PrefetchWorkerPlugin)), None)
        warmup = getattr(plugin, "warmup", None)
        return f"{_how(warmup)} in {warmup.seconds:.2f} s" if warmup is not None else "not warmed"

    return ", ".join(sorted(set(client.run(how).values())))


def _warm_readers(options: dict, path: str) -> None:
    """Import both jobs' readers on a worker and make one request through a store client."""
    import nibabel.streamlines  # noqa: F401 (the nibabel job's parser)
    import s3fs

    from ..fs import s3  # noqa: F401 (ours)

    s3fs.S3FileSystem(**options, skip_instance_cache=True).info(path)


def _plot_timeline(options: dict, paths: list[str], png: str) -> None:
    """Read the global header + every shard as one file in this process, parsing as it goes, traced; plot it."""
    from ..engine.trace import Tracer
    from ..formats.trk import TrkReader
    from ..fs.s3 import S3PrefetchFileSystem

    fs = S3PrefetchFileSystem(**options)
    started = time.perf_counter()
    with Tracer() as trace, fs.open(paths, header_bytes=1000, block_size=8 * 2**20, part_size=2 * 2**20) as f:
        n = sum(len(chunk.lengths) for chunk in TrkReader(f, paths[0]))
        stats, layout = f.stats, f.layout
    seconds = time.perf_counter() - started
    trace.plot(
        png,
        title=f"the demo's tractogram as one file: a global header + {len(paths) - 1} shards, 8 MiB blocks, "
        f"read and parsed in {seconds:.1f} s",
        layout=layout,
    )
    click.echo(
        f"\ntimeline of one traced read in this process, not the cluster job above ({n:,} streamlines, "
        f"{stats.requests} GETs, waited {stats.stall_seconds:.2f} s): {png}"
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
