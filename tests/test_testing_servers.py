"""The local S3 server and the WAN/fault proxy used by the other tests and the benchmarks (real processes)."""

from __future__ import annotations

import http.client
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
import s3fs

from dask_prefetch.testing import LocalS3Server, WanProxy
from dask_prefetch.testing.proxy import _Body
from dask_prefetch.testing.s3server import _ChildServer

MiB = 2**20
BUCKET = "servers-test"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _fs(endpoint_url: str, **config: object) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(
        endpoint_url=endpoint_url, key="testing", secret="testing", skip_instance_cache=True, config_kwargs=config
    )


@pytest.fixture
def s3(s3_server: LocalS3Server) -> s3fs.S3FileSystem:
    """s3fs on an empty server."""
    s3_server.reset()
    return s3fs.S3FileSystem(**s3_server.storage_options(), skip_instance_cache=True)


@pytest.fixture
def obj(s3: s3fs.S3FileSystem) -> Iterator[tuple[str, bytes]]:
    """A 6 MiB object of random bytes: ``(path, data)``."""
    data = np.random.default_rng(42).bytes(6 * MiB)
    s3.mkdir(BUCKET)
    s3.pipe(f"{BUCKET}/obj", data)
    yield f"{BUCKET}/obj", data


def test_importing_testing_does_not_import_moto() -> None:
    code = (
        "import sys, dask_prefetch.testing as t; t.LocalS3Server, t.WanProxy; "
        "assert 'moto' not in sys.modules, 'moto imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_s3_put_get_and_reset(s3_server: LocalS3Server, s3: s3fs.S3FileSystem) -> None:
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert s3_server.endpoint_url == f"http://127.0.0.1:{s3_server.port}"
    assert s3_server.storage_options() == {
        "endpoint_url": s3_server.endpoint_url,
        "key": "testing",
        "secret": "testing",
    }
    s3.mkdir(BUCKET)
    s3.pipe(f"{BUCKET}/a/b.bin", b"0123456789")
    assert s3.cat(f"{BUCKET}/a/b.bin") == b"0123456789"
    assert s3.cat_file(f"{BUCKET}/a/b.bin", start=2, end=5) == b"234"
    s3_server.reset()
    s3.invalidate_cache()
    assert s3.ls("") == []
    assert not s3.exists(f"{BUCKET}/a/b.bin")


def test_stop_is_idempotent_and_children_exit() -> None:
    with LocalS3Server() as server:
        with WanProxy(server.endpoint_url, latency=0, bandwidth=math.inf) as proxy:
            pids = [server.pid, proxy.pid]
            assert server.running and proxy.running
            assert _fs(proxy.endpoint_url).ls("") == []
        proxy.stop()
    server.stop()
    for srv, pid in zip((server, proxy), pids):
        assert pid is not None and _gone(pid)
        assert not srv.running and srv.pid is None
        with pytest.raises(RuntimeError, match="not started"):
            _ = srv.endpoint_url


def test_failed_start_raises_with_child_stderr(tmp_path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("import sys\nsys.stderr.write('boom from the child\\n')\nsys.exit(3)\n")

    class Broken(_ChildServer):
        _script = str(script)

    server = Broken()
    with pytest.raises(RuntimeError, match="(?s)failed to start.*boom from the child"):
        server.start()
    assert not server.running


@pytest.mark.parametrize("latency, bandwidth", [(0.0, math.inf), (0.005, 100 * MiB)])
def test_proxy_forwards_bytes_exactly(
    s3_server: LocalS3Server, obj: tuple[str, bytes], latency: float, bandwidth: float
) -> None:
    path, data = obj
    direct = _fs(s3_server.endpoint_url)
    with WanProxy(s3_server.endpoint_url, latency=latency, bandwidth=bandwidth) as proxy:
        far = _fs(proxy.endpoint_url, max_pool_connections=64)
        for start, end in [(0, len(data)), (1, 3 * MiB + 7), (5 * MiB - 3, len(data)), (123, 124)]:
            got = far.cat_file(path, start=start, end=end)
            assert got == direct.cat_file(path, start=start, end=end) == data[start:end]
        # 32 concurrent ranged GETs on as many connections
        bounds = np.linspace(0, len(data), 33).astype(int)
        parts = far.cat_ranges([path] * 32, bounds[:-1].tolist(), bounds[1:].tolist())
        assert b"".join(parts) == data


def test_proxy_adds_latency_to_every_request(s3_server: LocalS3Server, obj: tuple[str, bytes]) -> None:
    path, _ = obj
    with WanProxy(s3_server.endpoint_url, latency=0.1, bandwidth=math.inf) as proxy:
        far = _fs(proxy.endpoint_url, max_pool_connections=1)  # sequential requests on one keep-alive connection
        for i in range(3):
            t0 = time.perf_counter()
            assert far.cat_file(path, start=i, end=i + 100) == obj[1][i : i + 100]
            assert time.perf_counter() - t0 >= 0.1


def test_proxy_paces_bandwidth(s3_server: LocalS3Server, obj: tuple[str, bytes]) -> None:
    path, data = obj
    with WanProxy(s3_server.endpoint_url, latency=0, bandwidth=40 * MiB) as proxy:
        far = _fs(proxy.endpoint_url)
        far.cat_file(path, start=0, end=10)  # connect and sign once, outside the timing
        t0 = time.perf_counter()
        assert far.cat_file(path, start=0, end=4 * MiB) == data[: 4 * MiB]
        assert time.perf_counter() - t0 >= 0.09  # 4 MiB at 40 MiB/s is 0.1 s


def test_proxy_closes_client_when_upstream_refuses() -> None:
    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        with WanProxy(f"http://127.0.0.1:{bound.getsockname()[1]}", latency=0.01) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
                assert client.recv(1) == b""
            with pytest.raises(ValueError):
                WanProxy("ftp://nowhere")


def test_proxy_shapes_and_injects_faults_at_once(s3_server: LocalS3Server, obj: tuple[str, bytes]) -> None:
    path, data = obj
    latency, bandwidth = 0.1, 20 * MiB
    with WanProxy(s3_server.endpoint_url, latency, bandwidth, faults={"slowdown": 1.0}) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        t0 = time.perf_counter()
        conn.request("GET", f"/{path}", headers={"Range": "bytes=0-99"})
        response = conn.getresponse()
        assert response.status == 503 and b"<Code>SlowDown</Code>" in response.read()
        assert time.perf_counter() - t0 >= latency  # the proxy's own answer is as far away as the server's
        conn.close()
        proxy.set_rates(slowdown=0.4)
        far = _fs(proxy.endpoint_url, max_pool_connections=1)  # one connection: the attempts add up
        before = proxy.counts()
        t0 = time.perf_counter()
        for start in (0, 2 * MiB, 4 * MiB):
            assert far.cat_file(path, start=start, end=start + 2 * MiB) == data[start : start + 2 * MiB]
        elapsed = time.perf_counter() - t0
        counts = proxy.counts()
    attempts, slowdowns = counts["gets"] - before["gets"], counts["slowdown"] - before["slowdown"]
    assert slowdowns >= 1 and attempts == 3 + slowdowns  # each 503 retried (by botocore) until it passed
    assert elapsed >= attempts * latency + 6 * MiB / bandwidth  # every attempt delayed, every byte paced


def test_body_framing_finds_where_each_message_ends() -> None:
    body = _Body({"content-length": "5"})
    assert body.take(memoryview(b"abc")) == 3 and not body.done
    assert body.take(memoryview(b"deHTTP/1.1")) == 2 and body.done
    assert _Body({}).done and _Body({"content-length": "9"}, length=0).done  # no body, or none allowed (HEAD)
    chunked = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n"
    for step in (1, 3, len(chunked)):  # however the bytes arrive
        body, used = _Body({"transfer-encoding": "chunked"}), 0
        for i in range(0, len(chunked), step):
            used += body.take(memoryview(chunked[i : i + step] + b"NEXT"[: 4 if i + step >= len(chunked) else 0]))
            if body.done:
                break
        assert body.done and used == len(chunked)
    until_eof = _Body({}, eof=True)
    assert until_eof.take(memoryview(b"x" * 10)) == 10 and not until_eof.done


@pytest.mark.parametrize("module", ["proxy", "wan", "faults"])
def test_proxy_modules_run_standalone(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"dask_prefetch.testing.{module}", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--latency" in result.stdout and "--rate" in result.stdout
