"""What the WAN proxy costs: concurrent ranged GETs through ``WanProxy``, wall time, first bytes, proxy CPU.

``--conns`` connections each read one ``--range-mib`` range of one object on a local S3 server (s3rver, or
moto) through :class:`~dask_prefetch.testing.WanProxy`; the reader is a bare asyncio HTTP client on presigned
URLs, so the client costs little and the proxy shows. Printed per round: wall time (ideal: latency +
range / bandwidth), the spread of first-byte times, and the CPU seconds of the proxy's child process.
To compare two versions of the proxy, run this file with ``PYTHONPATH`` pointing at each tree in turn::

    python benchmarks/bench_proxy.py --conns 16 --range-mib 32 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from urllib.parse import urlsplit

import botocore.session
import psutil

import dask_prefetch.testing
from dask_prefetch.testing import LocalS3Server, WanProxy

sys.path.insert(0, os.path.dirname(__file__))
from s3rver import S3rverServer  # noqa: E402

MiB = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", choices=["s3rver", "moto"], default="s3rver")
    p.add_argument("--conns", type=int, default=16, help="concurrent connections, one range each")
    p.add_argument("--range-mib", type=float, default=8)
    p.add_argument("--latency", type=float, default=0.05, help="first-byte latency, seconds")
    p.add_argument("--bandwidth-mib", type=float, default=40, help="per-connection MiB/s")
    p.add_argument("--repeat", type=int, default=3, help="rounds after one warm-up; medians are reported")
    return p.parse_args(argv)


async def get(url: str, start: int, end: int) -> tuple[float, int]:
    """One ranged GET on its own connection: seconds to the response head, body bytes read."""
    u = urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    t0 = time.perf_counter()
    request = f"GET {u.path}?{u.query} HTTP/1.1\r\nHost: {u.netloc}\r\nRange: bytes={start}-{end - 1}\r\n\r\n"
    writer.write(request.encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    first = time.perf_counter() - t0
    if " 206 " not in head[0]:
        raise RuntimeError(f"unexpected answer {head[0]!r}")
    length = int(next(line for line in head if line.lower().startswith("content-length")).split(":")[1])
    got = 0
    while got < length and (data := await reader.read(MiB)):
        got += len(data)
    writer.close()
    return first, got


async def one_round(url: str, conns: int, size: int) -> tuple[float, float, float]:
    """Wall time and the earliest and latest first byte of ``conns`` concurrent ranges."""
    t0 = time.perf_counter()
    results = await asyncio.gather(*(get(url, i * size, (i + 1) * size) for i in range(conns)))
    wall = time.perf_counter() - t0
    if any(got != size for _, got in results):
        raise RuntimeError("short read")
    firsts = [first for first, _ in results]
    return wall, min(firsts), max(firsts)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    size = int(args.range_mib * MiB)
    server = S3rverServer() if args.server == "s3rver" else LocalS3Server()
    with server:
        options = server.storage_options()
        s3 = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=options["endpoint_url"],
            aws_access_key_id=options["key"],
            aws_secret_access_key=options["secret"],
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="obj", Body=os.urandom(args.conns * size))
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "bench", "Key": "obj"}, ExpiresIn=3600)
        with WanProxy(server.endpoint_url, args.latency, args.bandwidth_mib * MiB) as proxy:
            url = url.replace(options["endpoint_url"], proxy.endpoint_url)
            child = psutil.Process(proxy.pid)
            asyncio.run(one_round(url, args.conns, size))  # warm-up
            walls, cpus = [], []
            for _ in range(args.repeat):
                cpu = sum(child.cpu_times()[:2])
                wall, first_min, first_max = asyncio.run(one_round(url, args.conns, size))
                cpus.append(sum(child.cpu_times()[:2]) - cpu)
                walls.append(wall)
                print(
                    f"  wall {wall:.3f} s, first bytes {first_min * 1000:.1f}-{first_max * 1000:.1f} ms, "
                    f"proxy CPU {cpus[-1]:.2f} s"
                )
    ideal = args.latency + size / (args.bandwidth_mib * MiB)
    print(
        f"{os.path.dirname(dask_prefetch.testing.__file__)}: {args.conns} x {args.range_mib:g} MiB, "
        f"{args.latency * 1000:g} ms, {args.bandwidth_mib:g} MiB/s (ideal {ideal:.3f} s), load "
        f"{os.getloadavg()[0]:.1f}: median wall {statistics.median(walls):.3f} s, "
        f"proxy CPU {statistics.median(cpus):.2f} s"
    )


if __name__ == "__main__":
    main()
