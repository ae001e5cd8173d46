"""A TRX from S3 over a simulated WAN: read_tractogram in place vs "download with s3fs, then trx-python load".

Run from the repository root (after ``pip install -e .[test]``)::

    python benchmarks/bench_trx.py                      # ~128 MiB TRX, stored and deflated, 50 ms, 40 MiB/s
    python benchmarks/bench_trx.py --size-mib 512 --repeat 5 --json results.json

A local S3 server (s3rver; moto with --server moto) sits behind a proxy that delays each
response's first byte and caps each connection's bandwidth (``dask_prefetch.testing.WanProxy``).
The TRX (synthetic random walks with a float16 ``fa`` per vertex and a float32 ``weight`` per
streamline, written by trx-python) is read to float32 points, lengths, ``fa`` and ``weight`` in
memory:

* ``dask_prefetch``: ``read_tractogram("s3://...")`` and ``dask.compute`` of those four arrays
  (threads), with the default partitions and with ``--npartitions``;
* ``s3fs + trx-python``: ``s3fs.S3FileSystem.get`` of the object to a local file, then
  ``trx.trx_file_memmap.load`` (which extracts a deflated zip to a temporary directory) and the
  same four arrays from its memory maps.

Both results are checked equal once per storage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from importlib.metadata import version
from pathlib import Path

import dask
import numpy as np
import s3fs

from dask_prefetch import read_tractogram
from dask_prefetch.testing import LocalS3Server, WanProxy

sys.path.insert(0, os.path.dirname(__file__))
from s3rver import S3rverServer  # noqa: E402

MiB = 2**20
BUCKET = "bench"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size-mib", type=float, default=128, help="about this many MiB of positions + dpv + dps")
    p.add_argument("--storages", default="stored,deflated")
    p.add_argument("--latency", type=float, default=0.05, help="first-byte latency, seconds")
    p.add_argument("--bandwidth-mib", type=float, default=40, help="per-connection MiB/s")
    p.add_argument("--repeat", type=int, default=3, help="runs per method; the median is reported")
    p.add_argument("--npartitions", type=int, default=4, help="the second dask_prefetch run's npartitions")
    p.add_argument("--storage", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    p.add_argument("--server", choices=["s3rver", "moto"], default="s3rver",
                   help="local S3 server behind the WAN proxy (moto is too slow for 10+ streams)")
    p.add_argument("--json", default="benchmarks/results/bench_trx.json")
    return p.parse_args(argv)


def write_synthetic_trx(path: Path, size_mib: float, storage: str, seed: int = 0) -> None:
    """Random walks (20-200 points) with ``fa`` (float16 per vertex) and ``weight`` (per streamline)."""
    import nibabel as nib
    from nibabel.streamlines import ArraySequence, Tractogram
    from trx import trx_file_memmap as tmm

    per_vertex = 12 + 2  # float32 xyz + float16 fa
    n_vertices = int(size_mib * MiB / per_vertex)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 200, n_vertices // 110 + 1)
    lengths = lengths[: int(np.searchsorted(np.cumsum(lengths), n_vertices)) + 1]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    steps = rng.normal(0, 1, (int(lengths.sum()), 3)).astype(np.float32)
    points = np.cumsum(steps, axis=0)  # one walk; each streamline re-centred below
    points -= np.repeat(points[offsets], lengths, axis=0)
    points += 50
    seq = ArraySequence()
    seq._data, seq._offsets, seq._lengths = points, offsets, lengths
    fa = ArraySequence()
    fa._data = (np.linalg.norm(points, axis=1, keepdims=True) / 100).astype(np.float32)
    fa._offsets, fa._lengths = offsets, lengths
    tractogram = Tractogram(seq, affine_to_rasmm=np.eye(4))
    tractogram.data_per_point["fa"] = fa
    tractogram.data_per_streamline["weight"] = rng.random((len(lengths), 1)).astype(np.float32)
    reference = nib.Nifti1Image(np.zeros((100, 100, 100), np.uint8), np.eye(4))
    trx = tmm.TrxFile.from_tractogram(tractogram, reference=reference, dtype_dict={
        "positions": np.float32, "offsets": np.uint64, "dpv": {"fa": np.float16}, "dps": {"weight": np.float32}})
    compression = zipfile.ZIP_DEFLATED if storage == "deflated" else zipfile.ZIP_STORED
    tmm.save(trx, str(path), compression_standard=compression)
    trx.close()


def with_dask_prefetch(url: str, options: dict, args: argparse.Namespace, npartitions: int | None) -> tuple:
    tg = read_tractogram(url, storage_options=options, npartitions=npartitions,
                         prefetch_storage=[(args.storage, 4 * args.size_mib + 256)])
    return dask.compute(tg.points, tg.lengths, tg.data_per_point["fa"], tg.data_per_streamline["weight"],
                        scheduler="threads")


def with_s3fs_then_trx_python(key: str, options: dict) -> tuple:
    from trx import trx_file_memmap as tmm

    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "a.trx")
        fs.get(key, local)
        trx = tmm.load(local)
        try:
            # copies: the memory maps go when the file closes
            out = (np.array(trx.streamlines._data, np.float32), np.array(trx.streamlines._lengths, np.int64),
                   np.array(trx.data_per_vertex["fa"]._data), np.array(trx.data_per_streamline["weight"]))
        finally:
            trx.close()
    return out


def timed(fn, *a) -> tuple[float, tuple]:
    started = time.perf_counter()
    out = fn(*a)
    return time.perf_counter() - started, out


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        **{pkg: version(pkg) for pkg in ("dask-prefetch", "s3fs", "fsspec", "trx-python", "dask")},
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    storages = args.storages.split(",")
    server = S3rverServer() if args.server == "s3rver" else LocalS3Server()
    times: dict[str, dict[str, list[float]]] = {s: {} for s in storages}
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp, server, WanProxy(server.endpoint_url, args.latency,
                                                                args.bandwidth_mib * MiB) as proxy:
        direct = server.storage_options()
        wan = {**direct, "endpoint_url": proxy.endpoint_url}
        raw = s3fs.S3FileSystem(**direct, skip_instance_cache=True)
        raw.mkdir(BUCKET)
        for storage in storages:
            local = Path(tmp) / f"{storage}.trx"
            write_synthetic_trx(local, args.size_mib, storage)
            key = f"{BUCKET}/{storage}.trx"
            raw.put(str(local), key)
            sizes[storage] = local.stat().st_size
            local.unlink()
        stored = ", ".join(f"{s}: {n / MiB:.0f} MiB" for s, n in sizes.items())
        print(f"TRX of {args.size_mib:g} MiB of arrays ({stored});"
              f" WAN: {args.latency * 1000:g} ms first byte, {args.bandwidth_mib:g} MiB/s per connection; "
              f"{os.cpu_count()} CPUs")
        methods = {
            "dask_prefetch (default partitions)": lambda s: with_dask_prefetch(
                f"s3://{BUCKET}/{s}.trx", wan, args, None),
            f"dask_prefetch (npartitions={args.npartitions})": lambda s: with_dask_prefetch(
                f"s3://{BUCKET}/{s}.trx", wan, args, args.npartitions),
            "s3fs + trx-python": lambda s: with_s3fs_then_trx_python(f"{BUCKET}/{s}.trx", wan),
        }
        for run in range(args.repeat):
            for storage in storages:
                results = {}
                for name, fn in methods.items():
                    elapsed, results[name] = timed(fn, storage)
                    times[storage].setdefault(name, []).append(elapsed)
                if run == 0:  # the same points, lengths and named data, whichever way they were read
                    ref = results["s3fs + trx-python"]
                    for name, got in results.items():
                        for a, b in zip(got, ref):
                            np.testing.assert_array_equal(a, b.reshape(a.shape), err_msg=f"{name} on {storage}")
            print(f"run {run + 1}/{args.repeat} done", flush=True)

    medians = {s: {k: statistics.median(v) for k, v in ts.items()} for s, ts in times.items()}
    print(f"\n{'storage':<9} {'method':<38} {'median s':>9} {'MiB/s':>7} {'baseline / this':>16}")
    for storage, ms in medians.items():
        baseline = ms["s3fs + trx-python"]
        for name, t in sorted(ms.items(), key=lambda kv: kv[1]):
            print(f"{storage:<9} {name:<38} {t:>9.2f} {sizes[storage] / MiB / t:>7.0f} {baseline / t:>15.2f}x")
    report = {"settings": vars(args), "machine": machine(), "object_bytes": sizes, "times": times, "medians": medians}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {args.json}")
    return report


if __name__ == "__main__":
    main()
