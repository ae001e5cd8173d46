"""A TCP proxy in a child process that makes a local server behave like a WAN.

Each HTTP response's first byte is held until ``latency`` seconds after the first
byte of its request arrived, and every connection's downstream traffic is paced
to ``bandwidth`` bytes/s. Bytes are forwarded unchanged, so request signatures
stay valid. Run standalone with::

    python -m dask_prefetch.testing.wan --upstream http://127.0.0.1:9000 \\
        --latency 0.05 --bandwidth-mib 40
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import socket

if __package__:
    from .s3server import _ChildServer, _report_port_and_wait, _split_upstream
else:  # run as a script (the child process): import the stdlib-only sibling
    from s3server import _ChildServer, _report_port_and_wait, _split_upstream  # type: ignore[no-redef]

CHUNK = 64 * 1024  # pacing granularity: bytes per paced write
HIGH_WATER = 1024 * 1024  # queued response bytes that pause reading from upstream
LOW_WATER = 256 * 1024  # ... and that resume it
SLACK = 0.0005  # send a chunk this early rather than arm a timer


class WanProxy(_ChildServer):
    """A latency- and bandwidth-shaping TCP proxy in front of ``upstream_url``.

    Parameters
    ----------
    upstream_url
        ``http://HOST:PORT`` of the server to proxy (for example a
        :class:`~dask_prefetch.testing.LocalS3Server` endpoint).
    latency
        Seconds from a request's first byte to its response's first byte (a lower
        bound: a slower upstream is not sped up). ``0`` disables the delay.
    bandwidth
        Downstream bytes per second per connection. ``math.inf`` disables pacing.
    start_timeout
        Seconds ``start()`` waits for the child before raising ``RuntimeError``.
    """

    _script = __file__

    def __init__(
        self, upstream_url: str, latency: float = 0.05, bandwidth: float = 40 * 2**20, start_timeout: float = 30.0
    ) -> None:
        super().__init__()
        if latency < 0 or not bandwidth > 0:
            raise ValueError("latency must be >= 0 and bandwidth > 0")
        _split_upstream(upstream_url)  # validate early, in the parent
        self.upstream_url, self.latency, self.bandwidth = upstream_url, float(latency), float(bandwidth)
        self.start_timeout = start_timeout

    def _child_args(self) -> list[str]:
        mib = repr(self.bandwidth / 2**20)
        return ["--upstream", self.upstream_url, "--latency", repr(self.latency), "--bandwidth-mib", mib]

    def _probe(self) -> None:
        socket.create_connection(("127.0.0.1", self.port), timeout=2).close()


class _Upstream(asyncio.Protocol):
    """Upstream side of one proxied connection: hands responses to its ``_Conn``."""

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        self.conn.from_upstream(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.upstream_eof = True
        self.conn.flush()

    def pause_writing(self) -> None:  # upstream is slow to take requests
        if self.conn.client is not None:
            self.conn.client.pause_reading()

    def resume_writing(self) -> None:
        if self.conn.client is not None:
            self.conn.client.resume_reading()


class _Conn(asyncio.Protocol):
    """Client side of one proxied connection, with the response queue and pacing.

    Requests go upstream at once. Response bytes wait in ``pending``; each is sent
    when due: a response's first byte at ``request_start + latency``, later bytes at
    ``start + sent / bandwidth``. A full queue pauses reading from upstream.
    """

    def __init__(self, proxy: _Proxy) -> None:
        self.proxy = proxy
        self.loop = proxy.loop
        self.latency, self.bandwidth = proxy.latency, proxy.bandwidth
        self.shaped = self.latency > 0 or math.isfinite(self.bandwidth)
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        # (chunk, request start time if it is a response's first chunk else None)
        self.pending: collections.deque[tuple[bytes | memoryview, float | None]] = collections.deque()
        self.queued = 0
        self.request_start: float | None = None
        self.response_started = False
        self.start = self.sent = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.client_paused = self.upstream_paused = self.upstream_eof = self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.client = transport
        transport.pause_reading()  # until upstream is connected
        self.proxy.conns.add(self)
        task = self.loop.create_task(self.connect())
        self.proxy.tasks.add(task)
        task.add_done_callback(self.proxy.tasks.discard)

    def data_received(self, data: bytes) -> None:
        if self.request_start is None or self.response_started:
            self.request_start, self.response_started = self.loop.time(), False
        if self.upstream is not None and not self.upstream_eof:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def pause_writing(self) -> None:
        self.client_paused = True

    def resume_writing(self) -> None:
        self.client_paused = False
        self.flush()

    async def connect(self) -> None:
        try:
            transport, _ = await self.loop.create_connection(lambda: _Upstream(self), *self.proxy.upstream)
        except OSError:
            self.close()
            return
        self.upstream = transport
        if self.closed:
            transport.close()
        elif self.client is not None:
            self.client.resume_reading()

    def from_upstream(self, data: bytes) -> None:
        if self.closed:
            return
        mark = None
        if not self.response_started:
            self.response_started = True
            mark = self.request_start if self.request_start is not None else self.loop.time()
        if not self.shaped and not self.pending and not self.client_paused:
            assert self.client is not None
            self.client.write(data)
            return
        step = CHUNK if math.isfinite(self.bandwidth) else len(data)
        view = memoryview(data)
        for i in range(0, len(data), step):
            self.pending.append((view[i : i + step], mark if i == 0 else None))
        self.queued += len(data)
        if self.queued > HIGH_WATER and not self.upstream_paused and self.upstream is not None:
            self.upstream.pause_reading()
            self.upstream_paused = True
        self.flush()

    def flush(self) -> None:
        """Send every queued chunk that is due; schedule a timer for the next one."""
        if self.timer is not None or self.closed or self.client is None:
            return
        now = self.loop.time()
        while self.pending and not self.client_paused:
            data, mark = self.pending[0]
            if mark is not None:
                self.start, self.sent = max(mark + self.latency, now), 0.0
                self.pending[0] = (data, None)
            due = self.start + self.sent / self.bandwidth
            if due > now + SLACK:
                self.timer = self.loop.call_at(due, self._on_timer)
                return
            self.pending.popleft()
            self.queued -= len(data)
            self.sent += len(data)
            self.client.write(data)
        if self.upstream_paused and self.queued < LOW_WATER and self.upstream is not None:
            self.upstream.resume_reading()
            self.upstream_paused = False
        if self.upstream_eof and not self.pending:
            self.client.close()  # flushes what the transport holds, then closes

    def _on_timer(self) -> None:
        self.timer = None
        self.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self.pending.clear()
        for transport in (self.client, self.upstream):
            if transport is not None:
                transport.close()
        self.proxy.conns.discard(self)


class _Proxy:
    """The asyncio proxy server run by the child process."""

    loop: asyncio.AbstractEventLoop

    def __init__(self, upstream: tuple[str, int], latency: float, bandwidth: float) -> None:
        self.upstream, self.latency, self.bandwidth = upstream, latency, bandwidth
        self.conns: set[_Conn] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def serve(self, port: int = 0) -> None:
        self.loop = asyncio.get_running_loop()
        server = await self.loop.create_server(lambda: _Conn(self), "127.0.0.1", port, backlog=256)
        await _report_port_and_wait(server.sockets[0].getsockname()[1])
        server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for conn in list(self.conns):
            conn.close()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point of the proxy child process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="http://HOST:PORT to forward to")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds to first byte")
    parser.add_argument("--bandwidth-mib", type=float, default=40.0, help="MiB/s per connection, or inf")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    args = parser.parse_args(argv)
    upstream = _split_upstream(args.upstream)
    asyncio.run(_Proxy(upstream, args.latency, args.bandwidth_mib * 2**20).serve(args.port))


if __name__ == "__main__":
    main()
