"""Azurite (Microsoft's Azure Storage emulator, Node.js) as a local Azure Blob Storage server.

Azurite is installed on first use with npm into a cache folder (``$DASK_PREFETCH_CACHE``, else
``$XDG_CACHE_HOME/dask-prefetch``, else ``~/.cache/dask-prefetch``); it needs ``node`` and ``npm``.
Only its blob service runs, in memory, on ``127.0.0.1`` and a port it picks itself, with its
telemetry off. adlfs reaches it with the emulator's well-known account (``devstoreaccount1``)
through :meth:`LocalAzuriteServer.storage_options`.
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
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

from .s3server import _ChildProcess, _shutdown

#: The Azurite release installed (3.36 and later declare Node >= 21; this one runs on Node 20).
VERSION = "3.35.0"
#: The emulator's well-known account and key (public, the same in every Azurite).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_LISTENING = re.compile(r"listens on (http://[\d.]+:(\d+))")


def cache_home() -> Path:
    """The folder where test servers installed with npm are kept."""
    if os.environ.get("DASK_PREFETCH_CACHE"):
        return Path(os.environ["DASK_PREFETCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dask-prefetch"


def ensure_installed(version: str = VERSION) -> Path:
    """Path of the ``azurite-blob`` executable, installing Azurite with npm when it is missing.

    The install goes to a temporary folder renamed into place, so concurrent first uses never
    see half an installation.

    Raises
    ------
    RuntimeError
        If ``npm`` is not on ``PATH``, or the install fails (with npm's output).
    """
    home = cache_home() / f"azurite-{version}"
    exe = home / "node_modules" / ".bin" / "azurite-blob"
    if exe.exists():
        return exe
    if not shutil.which("npm") or not shutil.which("node"):
        raise RuntimeError("LocalAzuriteServer needs node and npm on PATH (it installs azurite with npm)")
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".azurite-{version}-", dir=home.parent))
    try:
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--omit=dev", "--prefix", str(staging), f"azurite@{version}"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm install azurite@{version} failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}")
        try:
            staging.rename(home)
        except OSError:  # another process installed it first
            if not exe.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return exe


class LocalAzuriteServer(_ChildProcess):
    """Azurite's blob service in a child process on ``127.0.0.1`` and a free port, data in memory.

    Parameters
    ----------
    start_timeout
        Seconds to wait for Azurite to listen (the npm install on first use is not counted).
    memory_limit_mb
        Azurite's cap on the bytes it holds in memory (``--extentMemoryLimit``).

    Examples
    --------
    >>> with LocalAzuriteServer() as server:  # doctest: +SKIP
    ...     fs = adlfs.AzureBlobFileSystem(**server.storage_options())
    ...     fs.mkdir("container")
    """

    def __init__(self, start_timeout: float = 30.0, memory_limit_mb: int = 1024) -> None:
        self.start_timeout = start_timeout
        self.memory_limit_mb = memory_limit_mb
        self._url: str | None = None

    def _forget(self) -> None:
        self._url = None

    @property
    def endpoint_url(self) -> str:
        """Base URL of the blob service, ``http://127.0.0.1:PORT``."""
        if self._url is None:
            raise RuntimeError("LocalAzuriteServer is not started")
        return self._url

    @property
    def port(self) -> int:
        """The TCP port the blob service listens on."""
        return int(self.endpoint_url.rsplit(":", 1)[1])

    def start(self) -> Self:
        """Install Azurite if needed, start it and block until it listens.

        Raises
        ------
        RuntimeError
            If node/npm are missing, or Azurite exits or does not listen within ``start_timeout``
            seconds (the message has its output).
        """
        if self.running:
            return self
        self.stop()
        exe = ensure_installed()
        workdir = tempfile.mkdtemp(prefix="azurite-")  # Azurite's working folder: nothing is persisted
        args = [
            str(exe),
            "--blobHost", "127.0.0.1",
            "--blobPort", "0",
            "--inMemoryPersistence",
            "--extentMemoryLimit", str(self.memory_limit_mb),
            "--disableTelemetry",
            "--skipApiVersionCheck",  # whatever azure-storage-blob version adlfs brings
            "--silent",
        ]  # fmt: skip
        log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the child): a pipe would need draining
        proc = subprocess.Popen(
            args,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C goes to us; we stop the child
        )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _stop, proc, log, workdir)
        try:
            self._url = _read_url(proc, log, time.monotonic() + self.start_timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def connection_string(self) -> str:
        """The Azure connection string of the emulator's account on this server."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.endpoint_url}/{ACCOUNT};"
        )

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``adlfs.AzureBlobFileSystem`` (``abfs://``, ``az://``) pointing at this server."""
        return {"connection_string": self.connection_string()}

    def __repr__(self) -> str:
        return f"<LocalAzuriteServer {self._url or 'stopped'}>"


def _read_url(proc: subprocess.Popen[bytes], log: IO[bytes], deadline: float) -> str:
    """Poll Azurite's output (a file) until it says where it listens."""
    while True:
        log.seek(0)
        said = log.read().decode(errors="replace")
        match = _LISTENING.search(said)
        if match:
            return match[1]
        if proc.poll() is not None:
            raise RuntimeError(f"Azurite exited ({proc.returncode}) before listening:\n{said[-4000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Azurite did not listen in time; it said:\n{said[-4000:]}")
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[bytes], log: IO[bytes], workdir: str) -> None:
    """Stop Azurite and remove its working folder."""
    _shutdown(proc, log)
    shutil.rmtree(workdir, ignore_errors=True)
