"""``dask-prefetch``: the demo on an embedded local S3, and the statistics job on real S3.

::

    dask-prefetch demo                       # local S3 + sample tractogram + LocalCluster, ~1 min
    dask-prefetch stats s3://bucket/hydi/*.trk --scheduler tcp://scheduler:8786
    dask-prefetch plan "s3://bucket/hydi/*.trk" --workers 16 --threads 8 --nic-gbps 10
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import click

from .. import __version__
from .claims import DEMO_DEFAULTS
from .plan import MODEL_DEFAULTS, Concurrency, JsonObject
from .types import COUNT, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, STORAGE


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Tracebacks on errors, and DEBUG logs of dask_prefetch.")
@click.version_option(__version__, prog_name="dask-prefetch")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Rolling prefetch of large S3 tractograms into Dask."""
    ctx.obj = {"verbose": verbose}
    import distributed  # noqa: F401 (sets up its own loggers first; after basicConfig its INFO lines reach ours)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger("dask_prefetch").setLevel(logging.DEBUG)


# distributed logs a failed task (a multi-line "Compute Failed" record with its traceback) at ERROR
# before the client raises it; the CLI prints the error itself, as one line.
_TASK_FAILURE_LOGGERS = ("distributed.worker", "distributed.scheduler", "distributed.nanny")


def _verbose() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and (ctx.find_root().obj or {}).get("verbose"))


@contextlib.contextmanager
def _quiet_task_failures(verbose: bool) -> Iterator[None]:
    """Without ``--verbose``, silence distributed's logging of failed tasks in this process."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in _TASK_FAILURE_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _bucket_of(path: str | None) -> str | None:
    """``s3://bucket`` of an S3 path (None for other paths: no connections opened ahead)."""
    if not path or not path.startswith(("s3://", "s3a://")):
        return None
    return "s3://" + path.split("://", 1)[1].split("/", 1)[0]


@contextlib.contextmanager
def _cluster(
    scheduler: str | None,
    workers: int,
    threads: int,
    storage: list | None,
    path: str | None = None,
    storage_options: dict | None = None,
) -> Iterator[Any]:
    """A client of ``scheduler``, or of a new LocalCluster; both plugins registered.

    ``path``: one the job reads; on S3 the workers open their connections to its bucket at setup.

    Without ``--verbose``, distributed's logging of a failed task is silenced here and on the
    LocalCluster's workers (``silence_logs``): the error reaches the user as the CLI's one line.
    The workers of an existing cluster (``scheduler``) keep their own logging.
    """
    from distributed import Client, LocalCluster

    from ..cluster import register_plugins

    verbose = _verbose()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet_task_failures(verbose))
        if scheduler:
            client = stack.enter_context(Client(scheduler))
        else:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=threads,
                    dashboard_address=":0",
                    silence_logs=logging.ERROR if verbose else logging.CRITICAL,
                )
            )
            client = stack.enter_context(Client(cluster))
        register_plugins(client, prefetch_storage=storage, store=_bucket_of(path), storage_options=storage_options)
        yield client


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--scheduler", metavar="ADDRESS", help="An existing cluster (default: a LocalCluster here).")
@click.option("--workers", type=COUNT, default=2, show_default=True, help="LocalCluster workers.")
@click.option("--threads", type=COUNT, default=1, show_default=True, help="LocalCluster threads per worker.")
@click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL", help="S3 endpoint (default: AWS, or $AWS_ENDPOINT_URL).")
@click.option("--anon", is_flag=True, help="Unsigned requests (public buckets).")
@click.option(
    "--header-bytes", type=NON_NEGATIVE_INT, help="Bytes to skip at the start of every shard after the first."
)
@click.option("--storage", type=STORAGE, multiple=True, help="A prefetch tier per worker (repeatable).")
@click.option("--npartitions", type=COUNT, help="Tasks to split the work into (default: one per shard).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def stats(
    paths: tuple[str, ...],
    scheduler: str | None,
    workers: int,
    threads: int,
    endpoint_url: str | None,
    anon: bool,
    header_bytes: int | None,
    storage: tuple[tuple[str, float], ...],
    npartitions: int | None,
    progress: bool | None,
) -> None:
    """Streamline and point counts, bounding box and length histogram of a tractogram (S3 or local)."""
    from ..cache.tiers import sweep_storage
    from ..tractography.tractogram import read_tractogram
    from .job import report, run

    options: dict[str, Any] = {"anon": anon} if anon else {}
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    tiers = list(storage) or None
    tg = read_tractogram(
        list(paths), header_bytes=header_bytes, storage_options=options or None, npartitions=npartitions
    )  # bad paths fail here, before any cluster starts
    click.echo(f"{tg!r}")  # on stdout, with the summary: stderr is for the progress bar and errors
    sweep_storage(tiers)  # a killed run's blocks (RAM, on /dev/shm) go now, not when a file is next opened there
    with _cluster(scheduler, workers, threads, tiers, paths[0], options or None) as client:
        report(run(tg, client, progress))


@cli.command()
@click.option(
    "--size-mb",
    type=POSITIVE,
    default=DEMO_DEFAULTS["size_mb"],
    show_default=True,
    help="Size of the sample tractogram.",
)
@click.option(
    "--shards",
    type=COUNT,
    default=DEMO_DEFAULTS["shards"],
    show_default=True,
    help="Shards it is split into (+ a global header).",
)
@click.option(
    "--latency",
    type=NON_NEGATIVE,
    default=DEMO_DEFAULTS["latency"],
    show_default=True,
    help="Simulated WAN first-byte latency, s (0: no WAN).",
)
@click.option(
    "--bandwidth-mib",
    type=POSITIVE,
    default=DEMO_DEFAULTS["bandwidth_mib"],
    show_default=True,
    help="Simulated WAN MiB/s per connection.",
)
@click.option(
    "--workers", type=COUNT, default=DEMO_DEFAULTS["workers"], show_default=True, help="LocalCluster workers."
)
@click.option(
    "--threads",
    type=COUNT,
    default=DEMO_DEFAULTS["threads"],
    show_default=True,
    help="LocalCluster threads per worker.",
)
@click.option(
    "--compare/--no-compare", default=True, show_default=True, help="Time the same job with nibabel over plain s3fs."
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.option(
    "--timeline",
    type=click.Path(dir_okay=False),
    metavar="PNG",
    help="Also read the whole tractogram as one file, traced, and plot its prefetch timeline (needs matplotlib).",
)
def demo(
    size_mb: float,
    shards: int,
    latency: float,
    bandwidth_mib: float,
    workers: int,
    threads: int,
    compare: bool,
    progress: bool | None,
    timeline: str | None,
) -> None:
    """The main job on an embedded default: local S3 server, sample tractogram, LocalCluster."""
    from .demo import run_demo

    run_demo(size_mb, shards, latency, bandwidth_mib, workers, threads, compare, progress, timeline)


@cli.command()
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(["prefetch", "tractogram", "cluster", "parsers"]),
    help="Run only these (repeatable; default: all four, ~10 min).",
)
@click.option("--repeat", type=COUNT, help="Runs per method (default: each script's own).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("benchmarks/results"),
    show_default=True,
    help="Where the JSON files and bench.png go.",
)
def bench(only: tuple[str, ...], repeat: int | None, out: Path) -> None:
    """Run the benchmarks of a source checkout; write bench.json and bench.png, print the targets."""
    from .bench import plot, run_benchmarks, targets

    merged = run_benchmarks(only, repeat, out)
    for name, target, value, limit, met in targets(merged):
        click.echo(f"{'PASS' if met else 'MISS'}  {name}: {target} = {value:.3g} (limit {limit:g})")
    try:
        plot(merged, out / "bench.png")
        click.echo(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    except ImportError:
        click.echo(f"wrote {out / 'bench.json'} (no plot: pip install 'dask-prefetch[plot]')")


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--workers", type=COUNT, default=1, show_default=True, help="Dask workers.")
@click.option("--threads", type=COUNT, default=1, show_default=True, help="Threads per worker.")
@click.option("--workers-per-node", type=COUNT, default=1, show_default=True, help="Workers sharing a node's NIC.")
@click.option("--nic-gbps", type=POSITIVE, default=10.0, show_default=True, help="Each node's network card, Gb/s.")
@click.option("--compute-s-per-mib", type=NON_NEGATIVE, default=0.0, show_default=True,
              help="Your function's thread-seconds per MiB (0: I/O only).")
@click.option("--compute-streamed/--compute-after", default=False, show_default=True,
              help="Your function runs on chunks as they arrive (map_chunks(f, per='chunk')), or after each "
                   "partition's last byte.")
@click.option("--parse-s-per-mib", type=NON_NEGATIVE, default=MODEL_DEFAULTS["parse_s_per_mib"], show_default=True,
              help="Parsing's thread-seconds per MiB (measured: see dask_prefetch.sizing).")
@click.option("--job-overhead-s", type=NON_NEGATIVE, default=MODEL_DEFAULTS["job_overhead_s"], show_default=True,
              help="A job's fixed cost: store client, graph submitted, results gathered.")
@click.option("--latency-ms", type=NON_NEGATIVE, help="First-byte latency (default: probed with a few GETs).")
@click.option("--bandwidth-mibs", type=POSITIVE, help="MiB/s of one connection (default: probed with one GET).")
@click.option("--data-gb", type=POSITIVE, help="On paper, without objects: GB of data (with --shards).")
@click.option("--shards", type=COUNT, help="On paper: shards the data is in.")
@click.option("--header-bytes", type=NON_NEGATIVE_INT, default=0, show_default=True,
              help="Bytes skipped at the start of every shard after the first.")
@click.option("--npartitions", type=COUNT, help="Tasks (default: one per shard).")
@click.option("--tier-mib", type=POSITIVE, default=1024.0, show_default=True, help="Tier budget per worker, MiB.")
@click.option("--memory-mib", type=POSITIVE, help="Most tier space per worker the recommendation may use (default: --tier-mib).")
@click.option("--block-mib", type=POSITIVE, default=32.0, show_default=True, help="dask-prefetch.block-size, MiB.")
@click.option("--part-mib", type=POSITIVE, default=8.0, show_default=True, help="dask-prefetch.part-size, MiB.")
@click.option("--concurrency", type=Concurrency(), default="auto", show_default=True, help="GETs in flight per stream.")
@click.option("--next-task-mib", type=NON_NEGATIVE, default=64.0, show_default=True, help="dask-prefetch.next-task-bytes, MiB.")
@click.option("--plugins/--no-plugins", default=True, show_default=True, help="Both plugins registered.")
@click.option("--probe-gets", type=COUNT, default=3, show_default=True, help="GETs timed for the latency.")
@click.option("--storage-options", type=JsonObject(), help="JSON for the store (s3fs: endpoint_url, anon, ...).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="PNG",
              help="Draw predicted time against workers (needs matplotlib).")
@click.option("--function", metavar="MODULE:NAME",
              help="Your function (on a StreamlineChunk), timed on the first partition for the compute per MiB "
                   "(replaces --compute-s-per-mib); --measure's job runs it.")
@click.option("--measure", is_flag=True,
              help="Then run the job (read every partition, on the running Dask client if any, else threads) and "
                   "print measured against predicted.")
def plan(paths: tuple[str, ...], tier_mib: float, block_mib: float, part_mib: float, next_task_mib: float,
         nic_gbps: float, **options: Any) -> None:  # fmt: skip
    """Predict a job's wall time before running it, where it goes, and the settings that minimise it.

    PATHS: a URL, glob or prefix of the shards (one listing gives their sizes; a few ranged GETs
    probe the latency and one connection's bandwidth), or none with --data-gb and --shards.
    """
    from .plan import run_plan

    MiB = 2**20
    run_plan(list(paths), tier_bytes=round(tier_mib * MiB), block_bytes=round(block_mib * MiB),
             part_bytes=round(part_mib * MiB), next_task_bytes=round(next_task_mib * MiB), nic_bps=nic_gbps * 1e9 / 8,
             **options)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: errors print one line (tracebacks and usage with ``--verbose``).

    Parameters
    ----------
    argv
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0, 1 for an error, 2 for bad arguments (a usage error), 130 when aborted.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args
    try:
        cli.main(args, prog_name="dask-prefetch", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except _NO_ARGS_IS_HELP as e:  # bare `dask-prefetch`: the help text
        e.show()
        return 0
    except click.UsageError as e:
        if verbose:
            e.show()  # click's usage text and the error
        else:
            hint = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
            click.echo(f"dask-prefetch: error: {_one_line(e.format_message())}{hint}", err=True)
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"dask-prefetch: error: {_one_line(e.format_message())}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except Exception as e:
        if verbose:
            raise
        click.echo(f"dask-prefetch: error: {type(e).__name__}: {_one_line(str(e))}", err=True)
        return 1
    return 0


_NO_ARGS_IS_HELP: type[BaseException] = getattr(click.exceptions, "NoArgsIsHelpError", ())  # type: ignore[assignment]


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
