"""s3rver (Node.js) as a fast local S3 server for benchmarks.

moto copies a whole object on every GET and serves ~150-250 MiB/s on a 2-core machine, below
what 16 WAN-shaped connections can carry; s3rver streams ranges from files on disk. It is
installed on first use with npm into ``benchmarks/.s3rver`` (needs ``node`` and ``npm``).
s3rver ignores ``If-Match``; dask_prefetch then checks the ETag of every response instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

VERSION = "3.7.1"
HOME = Path(__file__).resolve().parent / ".s3rver"


def ensure_installed() -> Path:
    """Path of the s3rver executable, installing it with npm when missing."""
    exe = HOME / "node_modules" / ".bin" / "s3rver"
    if not exe.exists():
        if not shutil.which("npm"):
            raise RuntimeError("s3rver needs node and npm; run the benchmark with --server moto instead")
        HOME.mkdir(exist_ok=True)
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(HOME), f"s3rver@{VERSION}"],
            check=True,
        )
    return exe


class S3rverServer:
    """s3rver on 127.0.0.1, random port, data in a temporary directory removed on stop."""

    def __init__(self, start_timeout: float = 30.0) -> None:
        self.start_timeout = start_timeout
        self.endpoint_url = ""
        self._proc: subprocess.Popen | None = None
        self._data = ""

    def start(self) -> S3rverServer:
        exe = ensure_installed()
        self._data = tempfile.mkdtemp(prefix="s3rver-")
        self._proc = subprocess.Popen(
            [str(exe), "-d", self._data, "-a", "127.0.0.1", "-p", "0", "--silent", "--no-vhost-buckets"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._finalizer = weakref.finalize(self, _stop, self._proc, self._data)
        deadline = time.monotonic() + self.start_timeout
        assert self._proc.stdout is not None
        for line in self._proc.stdout:  # s3rver prints "S3rver listening on HOST:PORT" when ready
            match = re.search(r"listening on ([\d.]+):(\d+)", line)
            if match:
                self.endpoint_url = f"http://{match[1]}:{match[2]}"
                return self
            if time.monotonic() > deadline:
                break
        self.stop()
        raise RuntimeError("s3rver did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._finalizer()
            self._proc = None

    def storage_options(self) -> dict:
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        return {"endpoint_url": self.endpoint_url, "key": "S3RVER", "secret": "S3RVER"}

    def __enter__(self) -> S3rverServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop(proc: subprocess.Popen, data: str) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    if proc.stdout:
        proc.stdout.close()
    shutil.rmtree(data, ignore_errors=True)
