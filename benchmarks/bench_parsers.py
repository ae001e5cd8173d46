"""Parser throughput: dask_prefetch's TRK/TCK readers vs nibabel on the same in-memory bytes.

Run from the repository root (after ``pip install -e .[test]``)::

    python benchmarks/bench_parsers.py                  # ~100 MB per format, 5 runs, median
    python benchmarks/bench_parsers.py --repeat 9 --mb 200 --profile

Synthetic random-walk tractograms (streamlines of 20-200 points, float32) are written with
nibabel's own writers into memory: a TRK with a non-trivial voxel-to-RAS affine (so the
voxmm -> RAS+ mm transform is exercised), a TCK with the same streamlines, and a smaller TRK with
per-point scalars and per-streamline properties (for information). Each parser reads from an
``io.BytesIO`` over the same bytes:

* ours: ``TrkReader`` / ``TckReader`` iterated to the end (every ``StreamlineChunk`` produced);
* ours, numpy: the same TRK reader with its numba kernels off (``compiled-parsers: false``);
* nibabel: ``TrkFile.load(f, lazy_load=False)`` / ``TckFile.load(f, lazy_load=False)``.

Once per format, our points (and lengths, scalars, properties) are asserted equal to nibabel's,
bit for bit. Throughput is file bytes / median seconds, in MB/s (10^6 bytes). ``--profile`` adds
a cProfile of ``TrkReader`` on the big TRK.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from importlib.metadata import version

import numpy as np
from nibabel.streamlines import ArraySequence, TckFile, Tractogram, TrkFile

from dask_prefetch.formats.chunk import StreamlineChunk
from dask_prefetch.formats.kernels import compiled
from dask_prefetch.formats.tck import TckReader
from dask_prefetch.formats.trk import TrkReader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_prefetch import write_json  # noqa: E402

MB = 10**6
#: A 2 mm, LAS-ordered MNI-like grid: nibabel stores voxmm, and both readers must map it back to RAS+ mm.
AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
TRK_HEADER = {
    "dimensions": (91, 109, 91),
    "voxel_sizes": (2.0, 2.0, 2.0),
    "voxel_to_rasmm": AFFINE,
    "voxel_order": "LAS",
}
TARGETS = {"trk": 10.0, "tck": 5.0}
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_VERBOSE")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=float, default=100, help="size of the TRK and TCK files, MB")
    p.add_argument("--scalars-mb", type=float, default=25, help="size of the TRK with scalars + properties, MB")
    p.add_argument("--repeat", type=int, default=5, help="runs per parser; the median is reported")
    p.add_argument("--chunk-mib", type=float, default=None, help="our readers' chunk_bytes (default: theirs)")
    p.add_argument("--profile", action="store_true", help="print a cProfile of TrkReader on the big TRK")
    p.add_argument("--json", default="benchmarks/results/bench_parsers.json")
    return p.parse_args(argv)


# -- synthetic data ------------------------------------------------------------------------


def random_walks(seed: int, target_bytes: float, point_bytes: int = 12, lo: int = 20, hi: int = 200) -> ArraySequence:
    """Random walks (0.5 mm steps from a start in a brain-sized box) totalling ~``target_bytes`` on disk."""
    rng = np.random.default_rng(seed)
    n = max(1, int(target_bytes / (point_bytes * (lo + hi) / 2 + 4)))
    lengths = rng.integers(lo, hi + 1, n).astype(np.int64)
    offsets = np.zeros(n, np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    steps = rng.standard_normal((int(lengths.sum()), 3), dtype=np.float32)
    steps *= 0.5
    steps[offsets] = rng.uniform(-70, 70, (n, 3)).astype(np.float32)  # each walk's first point
    walk = np.cumsum(steps, axis=0, dtype=np.float64)
    walk -= np.repeat(walk[offsets] - steps[offsets], lengths, axis=0)  # restart the sum at each streamline
    seq = ArraySequence()
    seq._data, seq._offsets, seq._lengths = walk.astype(np.float32), offsets, lengths
    return seq


def trk_bytes(
    streamlines: ArraySequence, data_per_point: dict | None = None, data_per_streamline: dict | None = None
) -> bytes:
    buf = io.BytesIO()
    tractogram = Tractogram(
        streamlines, data_per_streamline=data_per_streamline, data_per_point=data_per_point, affine_to_rasmm=np.eye(4)
    )
    TrkFile(tractogram, header=dict(TRK_HEADER)).save(buf)
    return buf.getvalue()


def tck_bytes(streamlines: ArraySequence) -> bytes:
    buf = io.BytesIO()
    TckFile(Tractogram(streamlines, affine_to_rasmm=np.eye(4))).save(buf)
    return buf.getvalue()


def per_point(streamlines: ArraySequence, values: np.ndarray) -> ArraySequence:
    seq = ArraySequence()
    seq._data, seq._offsets, seq._lengths = values, streamlines._offsets, streamlines._lengths
    return seq


def datasets(args: argparse.Namespace) -> dict[str, bytes]:
    walks = random_walks(0, args.mb * MB)
    small = random_walks(1, args.scalars_mb * MB, point_bytes=4 * 7)
    rng = np.random.default_rng(2)
    n_points = len(small.get_data())
    return {
        "trk": trk_bytes(walks),
        "tck": tck_bytes(walks),
        "trk+scalars": trk_bytes(
            small,
            data_per_point={
                "colors": per_point(small, rng.uniform(0, 255, (n_points, 3)).astype(np.float32)),
                "fa": per_point(small, rng.uniform(0, 1, (n_points, 1)).astype(np.float32)),
            },
            data_per_streamline={
                "mean_colors": rng.uniform(0, 255, (len(small), 3)).astype(np.float32),
                "length_mm": rng.uniform(20, 200, (len(small), 1)).astype(np.float32),
            },
        ),
    }


# -- the parsers ---------------------------------------------------------------------------


def ours(fmt: str, chunk_bytes: int | None, use_kernels: bool | None = None) -> Callable[[bytes], int]:
    def run(data: bytes) -> int:
        n = 0
        if fmt == "tck":
            reader: Iterable[StreamlineChunk] = TckReader(io.BytesIO(data), fmt, chunk_bytes=chunk_bytes)
        else:
            reader = TrkReader(io.BytesIO(data), fmt, chunk_bytes=chunk_bytes, use_kernels=use_kernels)
        for chunk in reader:
            n += len(chunk)
        return n

    return run


def ours_concat(fmt: str, chunk_bytes: int | None) -> Callable[[bytes], int]:
    """Ours, one chunk for the whole file (the same in-memory result as nibabel's), as read_tractogram's
    tasks make it: TRK parsed straight into one array (``read_all``), TCK chunks joined."""

    def run(data: bytes) -> int:
        if fmt == "tck":
            return len(StreamlineChunk.concat(list(TckReader(io.BytesIO(data), fmt, chunk_bytes=chunk_bytes))))
        return len(TrkReader(io.BytesIO(data), fmt, chunk_bytes=chunk_bytes).read_all())

    return run


def nibabel(fmt: str) -> Callable[[bytes], int]:
    cls = TckFile if fmt == "tck" else TrkFile

    def run(data: bytes) -> int:
        return len(cls.load(io.BytesIO(data), lazy_load=False).streamlines)

    return run


def check_equal(fmt: str, data: bytes, chunk_bytes: int | None) -> int:
    """Our output against nibabel's, bit for bit (TRK: both paths); returns the streamline count."""
    ref = (TckFile if fmt == "tck" else TrkFile).load(io.BytesIO(data), lazy_load=False)
    if fmt == "tck":
        return check_chunk(fmt, StreamlineChunk.concat(list(TckReader(io.BytesIO(data), fmt))), ref)
    for use_kernels in (None, False):
        reader = TrkReader(io.BytesIO(data), fmt, chunk_bytes=chunk_bytes, use_kernels=use_kernels)
        n = check_chunk(fmt, StreamlineChunk.concat(list(reader)), ref)
    return n


def check_chunk(fmt: str, got: StreamlineChunk, ref) -> int:
    assert got.points.dtype == np.float32, got.points.dtype
    assert np.array_equal(got.lengths, ref.streamlines._lengths), f"{fmt}: lengths differ from nibabel's"
    assert np.array_equal(got.points, ref.streamlines.get_data()), f"{fmt}: points differ from nibabel's"
    per_pt, per_sl = ref.tractogram.data_per_point, ref.tractogram.data_per_streamline
    if len(per_pt):
        want = np.concatenate([per_pt[k].get_data() for k in per_pt], axis=1)
        assert got.scalars is not None and np.array_equal(got.scalars, want), f"{fmt}: scalars differ"
    if len(per_sl):
        want = np.concatenate([np.asarray(per_sl[k]) for k in per_sl], axis=1)
        assert got.properties is not None and np.array_equal(got.properties, want), f"{fmt}: properties differ"
    return len(got)


# -- harness -------------------------------------------------------------------------------


def machine() -> dict:
    import numpy

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "blas_env": {k: os.environ[k] for k in BLAS_ENV if k in os.environ},
        **{pkg: version(pkg) for pkg in ("dask-prefetch", "nibabel", "numba")},
        "trk_kernels": "numba" if compiled() is not None else "unavailable: numpy only",
    }


def fmt_load(load: tuple[float, ...]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


def profile_trk(data: bytes, chunk_bytes: int | None, runs: int = 3, lines: int = 15) -> str:
    prof = cProfile.Profile()
    run = ours("trk", chunk_bytes)
    prof.enable()
    for _ in range(runs):
        run(data)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(lines)
    return out.getvalue()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    chunk_bytes = None if args.chunk_mib is None else int(args.chunk_mib * 2**20)
    info = machine()
    load_start = os.getloadavg()
    print(
        f"{info['cpus']} CPUs ({info['processor']}), Python {info['python']}, numpy {info['numpy']}, "
        f"nibabel {info['nibabel']}, numba {info['numba']} (TRK kernels: {info['trk_kernels']}); BLAS env: {info['blas_env'] or 'none set'} (left as found)"
    )
    started = time.perf_counter()
    data = datasets(args)
    print(
        "data (written by nibabel, in memory): "
        + ", ".join(f"{k} {len(v) / MB:.0f} MB" for k, v in data.items())
        + f" in {time.perf_counter() - started:.1f} s"
    )
    counts = {fmt: check_equal(fmt, raw, chunk_bytes) for fmt, raw in data.items()}
    print(
        "checked: our points, lengths, scalars and properties equal nibabel's exactly "
        + ", ".join(f"({fmt}: {n} streamlines)" for fmt, n in counts.items())
    )

    methods = {
        fmt: {"ours": ours(fmt, chunk_bytes), "ours + concat": ours_concat(fmt, chunk_bytes), "nibabel": nibabel(fmt)}
        for fmt in data
    }
    for fmt in ("trk", "trk+scalars"):
        methods[fmt]["ours, numpy"] = ours(fmt, chunk_bytes, use_kernels=False)
    times: dict[str, dict[str, list[float]]] = {fmt: {name: [] for name in m} for fmt, m in methods.items()}
    for run in range(args.repeat):
        for fmt, ms in methods.items():
            for name, fn in ms.items():
                t0 = time.perf_counter()
                n = fn(data[fmt])
                times[fmt][name].append(time.perf_counter() - t0)
                if n != counts[fmt]:
                    raise RuntimeError(f"{fmt} {name}: {n} streamlines, expected {counts[fmt]}")
        print(f"run {run + 1}/{args.repeat} done", flush=True)

    info["load_average"] = {"start": load_start, "end": os.getloadavg()}
    print(
        f"load average (1, 5, 15 min) at start {fmt_load(load_start)}, at end {fmt_load(os.getloadavg())}"
        " (> 0.5 before we start: something else shares the 2 cores and the times are noisy)"
    )
    report = summarise(args, info, data, counts, times)
    if args.profile:
        text = profile_trk(data["trk"], chunk_bytes)
        print(f"\ncProfile of TrkReader over the {len(data['trk']) / MB:.0f} MB TRK (3 runs, tottime order):")
        print(text)
        report["trk_profile"] = text
    write_json(args.json, report)
    return report


def summarise(args, info, data, counts, times) -> dict:
    medians = {fmt: {k: statistics.median(v) for k, v in ts.items()} for fmt, ts in times.items()}
    best = {fmt: {k: min(v) for k, v in ts.items()} for fmt, ts in times.items()}
    print(
        f"\n{'format':<12} {'MB':>5} {'parser':<14} {'median s':>9} {'MB/s':>7} {'vs nibabel':>11}"
        f" {'best s':>8} {'best vs nibabel':>16}"
    )
    for fmt, ms in medians.items():
        size = len(data[fmt]) / MB
        for name, t in sorted(ms.items(), key=lambda kv: kv[1]):
            print(
                f"{fmt:<12} {size:>5.0f} {name:<14} {t:>9.3f} {size / t:>7.0f} {ms['nibabel'] / t:>10.1f}x"
                f" {best[fmt][name]:>8.3f} {best[fmt]['nibabel'] / best[fmt][name]:>15.1f}x"
            )
    checks = {
        f"{fmt.upper()}: ours >= {TARGETS[fmt]:g}x nibabel's MB/s": medians[fmt]["nibabel"] / medians[fmt]["ours"]
        for fmt in TARGETS
    }
    print("\ntargets")
    for (name, value), limit in zip(checks.items(), TARGETS.values()):
        print(f"  {'PASS' if value >= limit else 'MISS'}  {name}: {value:.1f}x")
    ratio = medians["trk+scalars"]["nibabel"] / medians["trk+scalars"]["ours"]
    print(f"  info  TRK with scalars + properties: ours {ratio:.1f}x nibabel's MB/s")
    return {
        "settings": vars(args),
        "machine": info,
        "bytes": {fmt: len(raw) for fmt, raw in data.items()},
        "streamlines": counts,
        "times": times,
        "medians": medians,
        "best": best,
        "load_average": info.get("load_average"),
        "mb_per_s": {fmt: {k: len(data[fmt]) / MB / t for k, t in ms.items()} for fmt, ms in medians.items()},
        "targets": checks,
        "target_limits": {name: limit for name, limit in zip(checks, TARGETS.values())},
    }


if __name__ == "__main__":
    main()
