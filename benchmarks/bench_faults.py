"""The fault matrix: how reads fare under each S3 fault, at several rates.

    python benchmarks/bench_faults.py [--repeat 3] [--json out.json]

Each row reads 4 shards of 4 MiB (a 1000-byte header skipped in the last three) through a
:class:`~dask_prefetch.testing.FaultProxy` in front of a local moto server, with 1 MiB blocks,
256 KiB parts and 8 GETs in flight, and reports the outcome (bytes identical to the objects, or
the exception), the median wall time, and what the proxy and the engine counted. Transient
faults must end identical (read deadline 60 s); persistent ones must end in an ``OSError``
before a 10 s read deadline. The last rows race stragglers: 5 % of GETs stall for
8 s with a stall timeout of 30 s, so only re-issuing them keeps the read fast. "Range ignored"
rows drop the ``Range`` header of GETs, so the server answers with the whole object: the reads
must end identical (asked again) or in an ``OSError``, never with wrong bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import threading
import time
from typing import Any

import dask.config
import numpy as np
import s3fs

from dask_prefetch import S3PrefetchFileSystem
from dask_prefetch.testing import FaultProxy, LocalS3Server

MiB = 2**20
HEADER = 1000
OPEN = dict(block_size=MiB, part_size=256 * 1024, concurrency=8, header_bytes=HEADER)
QUICK = {"dask-prefetch.stall-timeout": "1s", "dask-prefetch.straggler-factor": 0}
MATRIX: list[tuple[str, dict[str, float], float, dict[str, Any]]] = [
    ("none", {}, 0, QUICK),
    *(("slowdown", {"slowdown": r}, 0, QUICK) for r in (0.1, 0.3, 1.0)),
    *(("reset", {"reset": r}, 0, QUICK) for r in (0.1, 0.3, 1.0)),
    *(("stall", {"stall": r}, 30, QUICK) for r in (0.05, 0.2, 1.0)),
    *(("hang", {"hang": r}, 30, QUICK) for r in (0.05, 1.0)),
    *(("Range ignored (200, whole object)", {"norange": r}, 0, QUICK) for r in (0.1, 1.0)),
    ("straggler, re-issue off", {"stall": 0.05}, 8, {"dask-prefetch.straggler-factor": 0}),
    ("straggler, re-issue on", {"stall": 0.05}, 8, {"dask-prefetch.straggler-factor": 4}),
]


def read_once(server: LocalS3Server, paths: list[str], truth: bytes, rates, stall, settings, tier, gone=False) -> dict:
    with dask.config.set(settings), FaultProxy(server.endpoint_url, rates, stall_seconds=stall or 1, seed=1) as proxy:
        options = {**server.storage_options(), "endpoint_url": proxy.endpoint_url}
        fs = S3PrefetchFileSystem(**options, skip_instance_cache=True)
        started = time.monotonic()
        outcome, stats = "identical", None
        try:
            deadline = 10 if gone or max(rates.values(), default=0) == 1 else 60
            with fs.open(paths, prefetch_storage=[(tier, 8)], read_timeout=deadline, **OPEN) as f:
                stats = f.engine.stats
                if gone:  # the server goes away for good after the first MiB
                    head = f.read(MiB)
                    threading.Thread(target=proxy.stop).start()
                    data = head + f.read()
                else:
                    data = f.read()
            if data != truth:
                outcome = "WRONG BYTES"
        except OSError as e:
            outcome = f"{type(e).__name__}: {re.sub(r'[0-9]+', 'N', str(e))[:90]}"  # the same failure, any byte
        seconds = time.monotonic() - started
        counts = proxy.counts() if proxy.running else {}
    return {
        "outcome": outcome,
        "seconds": seconds,
        "gets": counts.get("gets"),
        "faults": sum(v for k, v in counts.items() if k in FaultProxy.faults),
        "resumed": stats.gets_resumed if stats else None,
        "reissued": stats.gets_reissued if stats else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (median time)")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--only", default="", help="run only the rows whose fault name contains this")
    args = parser.parse_args()
    tier = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
    rows = []
    with LocalS3Server() as server:
        raw = s3fs.S3FileSystem(**server.storage_options(), skip_instance_cache=True)
        raw.mkdir("faults")
        objects = [np.random.default_rng(i).bytes(4 * MiB) for i in range(4)]
        paths = [f"faults/shard{i}" for i in range(4)]
        for path, body in zip(paths, objects):
            raw.pipe(path, body)
        truth = b"".join(body[HEADER if i else 0 :] for i, body in enumerate(objects))
        matrix = [(name, rates, stall, settings, False) for name, rates, stall, settings in MATRIX]
        matrix.append(("server gone mid-read", {}, 0, QUICK, True))
        print(f"| fault | rate | outcome | s (median of {args.repeat}) | GETs | faults | resumed | re-issued |")
        print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
        for name, rates, stall, settings, gone in [row for row in matrix if args.only in row[0]]:
            runs = [read_once(server, paths, truth, rates, stall, settings, tier, gone) for _ in range(args.repeat)]
            outcomes = sorted({r["outcome"] for r in runs})
            row = {**runs[0], "fault": name, "rate": sum(rates.values()), "outcome": " / ".join(outcomes)}
            row["seconds"] = statistics.median(r["seconds"] for r in runs)
            rows.append(row)
            print(
                f"| {name} | {row['rate']:g} | {row['outcome']} | {row['seconds']:.2f} | {row['gets']} | "
                f"{row['faults']} | {row['resumed']} | {row['reissued']} |",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
