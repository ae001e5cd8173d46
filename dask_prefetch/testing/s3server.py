"""A local moto S3 server running in a child process, for tests and benchmarks.

moto is imported only inside the child process, so importing this module (or
``dask_prefetch.testing``) never needs moto; starting a server does. Children run
the module files as scripts (stdlib imports only, not the ``dask_prefetch``
package), which keeps their start-up fast; ``python -m`` works as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from typing_extensions import Self

_PORT_PREFIX = "PORT "


def _shutdown(proc: subprocess.Popen[bytes], stderr: IO[bytes], timeout: float = 5.0) -> None:
    """Stop a child server process: close stdin, terminate, wait, kill."""
    for pipe in (proc.stdin, proc.stdout):  # the child also exits on stdin EOF
        if pipe is not None:
            pipe.close()
    proc.terminate()  # no-op if it already exited
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    stderr.close()


def _split_upstream(url: str) -> tuple[str, int]:
    """``(host, port)`` of an ``http://HOST:PORT`` URL (the server a proxy forwards to)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"upstream must look like http://HOST:PORT, got {url!r}")
    return parts.hostname, parts.port or 80


async def _report_port_and_wait(port: int) -> None:
    """Child side of an asyncio server: print ``PORT <port>`` for the parent, then return on SIGTERM or
    SIGINT, or when the parent closes our stdin (or dies)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"{_PORT_PREFIX}{port}\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the parent closes our stdout now

    def wait_stdin() -> None:  # raw reads: no lock held at interpreter exit
        while os.read(0, 4096):
            pass
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_stdin, daemon=True).start()
    await stop.wait()


class _ChildProcess:
    """Base class: a server in a child process, its lifecycle; subclasses say how it starts.

    ``start()`` sets ``_proc`` and ``_finalizer`` (a ``weakref.finalize`` that shuts the child down,
    e.g. with :func:`_shutdown`); :meth:`stop` runs it once and :meth:`_forget` what ``start`` learnt.
    """

    _proc: subprocess.Popen[bytes] | None = None
    _finalizer: weakref.finalize | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def _forget(self) -> None:
        """Reset what :meth:`start` learnt about the child (its port, its URL)."""

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the child process (terminate, wait, kill). Idempotent."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._proc = None
        self._forget()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _ChildServer(_ChildProcess):
    """Base class: a server in a child process that prints its port on stdout.

    Subclasses set ``_script`` (a file run with ``sys.executable``) and may override ``_child_args``, ``_child_env``
    and ``_probe`` (one readiness check, raising ``OSError`` while not ready).
    """

    _script: str = ""
    start_timeout: float = 30.0

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[..., _ChildServer] | None = None
        self._port: int | None = None

    def _child_args(self) -> list[str]:
        return []

    def _child_env(self) -> dict[str, str]:
        return {}

    def _probe(self) -> None:
        raise NotImplementedError

    def _forget(self) -> None:
        self._port = None

    @property
    def pid(self) -> int | None:
        """Process id of the child, or ``None`` when not started."""
        return None if self._proc is None else self._proc.pid

    @property
    def port(self) -> int:
        """The TCP port the child listens on."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        """Base URL of the server, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start the child process and block until it answers.

        Raises
        ------
        RuntimeError
            If the child exits or does not answer within ``start_timeout`` seconds;
            the message includes the child's stderr.
        """
        if self.running:
            return self
        self.stop()
        env = {**os.environ, **self._child_env()}
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the child)
        proc = subprocess.Popen(
            [sys.executable, self._script, *self._child_args()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            start_new_session=True,  # Ctrl-C goes to us; we stop the child
        )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _shutdown, proc, stderr)
        deadline = time.monotonic() + self.start_timeout
        try:
            self._port = self._read_port(proc, deadline)
            assert proc.stdout is not None
            proc.stdout.close()  # the child sends nothing after the port line
            self._wait_ready(deadline)
        except (OSError, RuntimeError, ValueError) as exc:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            stderr.seek(0)
            err = stderr.read().decode(errors="replace")[-8000:]
            self.stop()
            raise RuntimeError(f"{type(self).__name__} failed to start: {exc}\n--- child stderr ---\n{err}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def __repr__(self) -> str:
        where = self.endpoint_url if self._port is not None else "stopped"
        return f"<{type(self).__name__} {where}>"

    @staticmethod
    def _read_port(proc: subprocess.Popen[bytes], deadline: float) -> int:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError("timed out waiting for the child to report its port")
                if sel.select(remaining):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        raise RuntimeError(f"child exited (code {proc.wait()}) before reporting its port")
                    buf += chunk
        line = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
        if not line.startswith(_PORT_PREFIX):
            raise RuntimeError(f"unexpected first line from child: {line!r}")
        return int(line[len(_PORT_PREFIX) :])

    def _wait_ready(self, deadline: float) -> None:
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError("child exited during start-up")
            try:
                self._probe()
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"child did not answer in time: {exc}") from None
            time.sleep(0.02)


class LocalS3Server(_ChildServer):
    """A moto S3 server in a child process on ``127.0.0.1`` and a free port.

    Examples
    --------
    >>> with LocalS3Server() as server:  # doctest: +SKIP
    ...     fs = s3fs.S3FileSystem(**server.storage_options())
    ...     fs.mkdir("bucket")
    """

    _script = __file__

    def __init__(self, start_timeout: float = 30.0) -> None:
        super().__init__()
        self.start_timeout = start_timeout

    def start(self) -> Self:
        """Start moto in a child process and wait until it answers HTTP.

        Also sets ``AWS_DEFAULT_REGION=us-east-1`` in this process unless set:
        moto's bucket creation fails with a region passed in ``client_kwargs``.
        """
        if importlib.util.find_spec("moto") is None:
            raise ImportError('LocalS3Server needs moto: pip install "dask-prefetch[demo]" (or the \'test\' extra)')
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        return super().start()

    def _child_env(self) -> dict[str, str]:
        keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        return {**keys, "AWS_DEFAULT_REGION": "us-east-1"}

    def _probe(self) -> None:
        # Any HTTP answer (even an error status) means the server is serving.
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=2):
                pass
        except urllib.error.HTTPError:
            pass

    def reset(self) -> None:
        """Delete all buckets and objects (POST ``/moto-api/reset``)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` pointing at this server."""
        return {"endpoint_url": self.endpoint_url, "key": "testing", "secret": "testing"}


def _main() -> None:
    """Child entry point: serve moto, print ``PORT <n>``, run until stdin closes."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    sys.stdout.write(f"{_PORT_PREFIX}{port}\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # later prints must not hit the closed pipe
    while os.read(0, 4096):  # until the parent closes stdin or dies; SIGTERM ends us too
        pass
    server.stop()


if __name__ == "__main__":
    _main()
