"""One HTTP/1.1 proxy in a child process that makes a local server behave like a WAN, with S3 faults.

Shaping: each response's first byte is held until ``latency`` seconds after the first byte
of its request arrived, and every connection's downstream traffic is paced to ``bandwidth``
bytes/s. Faults: each ranged GET (a ``GET`` with a ``Range`` header: object data, not
listings or HEADs) draws at most one of

``slowdown``
    Answered by the proxy with ``503 SlowDown`` (S3's throttling error); never forwarded.
``reset``
    Forwarded; the status line, headers and the first ``cut`` of the body reach the client,
    then the connection is reset (TCP RST).
``stall``
    Forwarded; after the first ``cut`` of the body, no byte is sent for ``stall_seconds``,
    then the rest follows (if the client is still there).
``hang``
    Forwarded; the whole response, status line included, is held for ``stall_seconds``.
``norange``
    Forwarded without its ``Range`` header, so the server answers ``200`` with the whole
    object (as some S3-compatible stores, caches and CDNs do).

With ``heads=True``, ``HEAD`` requests draw faults too: ``slowdown`` answers them ``503``
(with no body, as S3 does to a HEAD). Rates can be changed while it runs
(:meth:`Proxy.set_rates`), and the proxy counts what it did (:meth:`Proxy.counts`).
Apart from the faults, bytes are forwarded unchanged, so request signatures stay valid.
Run standalone with::

    python -m dask_prefetch.testing.proxy --upstream http://127.0.0.1:9000 \\
        --latency 0.05 --bandwidth-mib 40 --rate slowdown=0.1
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import random
import socket
import struct
import urllib.request
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlsplit

if __package__:
    from .s3server import _ChildServer, _report_port_and_wait, _split_upstream
else:  # run as a script (the child process): import the stdlib-only sibling
    from s3server import _ChildServer, _report_port_and_wait, _split_upstream  # type: ignore[no-redef]

FAULTS = ("slowdown", "reset", "stall", "hang", "norange")
CONTROL_PATH = "/__faults__"
CHUNK = 64 * 1024  # pacing granularity: bytes per paced write
HIGH_WATER = 1024 * 1024  # queued response bytes that pause reading from upstream
LOW_WATER = 256 * 1024  # ... and that resume it
SLACK = 0.0005  # send a chunk this early rather than arm a timer
MAX_HEAD = 64 * 1024  # a longer request or response head closes the connection
_SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>"
)


class Proxy(_ChildServer):
    """A WAN-shaping, fault-injecting HTTP/1.1 proxy in front of ``upstream_url``.

    :class:`~dask_prefetch.testing.WanProxy` and :class:`~dask_prefetch.testing.FaultProxy`
    are this class with their own positional arguments and defaults.

    Parameters
    ----------
    upstream_url
        ``http://HOST:PORT`` of the server to proxy (e.g. a :class:`LocalS3Server` endpoint).
    latency
        Seconds from a request's first byte to its response's first byte (a lower
        bound: a slower upstream is not sped up). ``0`` disables the delay.
    bandwidth
        Downstream bytes per second per connection. ``math.inf`` disables pacing.
    rates
        Probability of each fault per ranged GET, e.g. ``{"slowdown": 0.1, "reset": 0.05}``;
        they must add up to at most 1.
    stall_seconds
        How long a ``stall`` or ``hang`` fault holds the response.
    cut
        Fraction of the body sent before a ``reset`` or ``stall`` (0: right after the headers;
        a body of unknown length is cut right after the headers).
    seed
        Seed of the random choice of faults (the order of requests still varies).
    heads
        Whether ``HEAD`` requests draw faults too (not only ranged GETs).
    start_timeout
        Seconds ``start()`` waits for the child before raising ``RuntimeError``.

    Notes
    -----
    Answers of the proxy itself (a ``503``) get the same latency and pacing as forwarded ones.
    A ``hang`` adds ``stall_seconds`` to the latency; a ``stall`` pauses the pacing.
    """

    _script = __file__
    #: The faults it can inject.
    faults = FAULTS

    def __init__(
        self,
        upstream_url: str,
        *,
        latency: float = 0.0,
        bandwidth: float = math.inf,
        rates: Mapping[str, float] | None = None,
        stall_seconds: float = 10.0,
        cut: float = 0.5,
        seed: int = 0,
        heads: bool = False,
        start_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        _split_upstream(upstream_url)  # validate early, in the parent
        if latency < 0 or not bandwidth > 0:
            raise ValueError("latency must be >= 0 and bandwidth > 0")
        if not 0 <= cut < 1:
            raise ValueError(f"cut must be in [0, 1), got {cut}")
        self.upstream_url, self.latency, self.bandwidth = upstream_url, float(latency), float(bandwidth)
        self.rates = _check_rates(rates or {})
        self.stall_seconds, self.cut, self.seed = float(stall_seconds), float(cut), int(seed)
        self.heads = bool(heads)
        self.start_timeout = start_timeout

    def _child_args(self) -> list[str]:
        args = ["--upstream", self.upstream_url, "--latency", repr(self.latency)]
        args += ["--bandwidth-mib", repr(self.bandwidth / 2**20), "--stall-seconds", repr(self.stall_seconds)]
        args += ["--seed", str(self.seed), "--cut", repr(self.cut)] + (["--heads"] if self.heads else [])
        for name, rate in self.rates.items():
            args += ["--rate", f"{name}={rate!r}"]
        return args

    def _probe(self) -> None:
        socket.create_connection(("127.0.0.1", self.port), timeout=2).close()

    def set_rates(self, **rates: float) -> None:
        """Change fault rates from now on (faults not named keep their rate)."""
        self.rates = _check_rates({**self.rates, **rates})
        query = "&".join(f"{k}={v!r}" for k, v in rates.items())
        self._control(f"?{query}", method="POST")

    def counts(self) -> dict[str, int]:
        """Ranged GETs seen (``"gets"``), faults injected by kind, and requests by method (``"method:GET"``)."""
        return json.loads(self._control("", method="GET"))

    def _control(self, query: str, method: str) -> bytes:
        request = urllib.request.Request(f"{self.endpoint_url}{CONTROL_PATH}{query}", method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read()


class WanProxy(Proxy):
    """A latency- and bandwidth-shaping proxy in front of ``upstream_url`` (a :class:`Proxy`).

    ``faults`` (fault rates, as :class:`Proxy`'s ``rates``) and the other keyword arguments
    of :class:`Proxy` inject faults into the shaped traffic; by default there are none.
    """

    def __init__(
        self,
        upstream_url: str,
        latency: float = 0.05,
        bandwidth: float = 40 * 2**20,
        start_timeout: float = 30.0,
        *,
        faults: Mapping[str, float] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            upstream_url, latency=latency, bandwidth=bandwidth, rates=faults, start_timeout=start_timeout, **options
        )


class FaultProxy(Proxy):
    """A fault-injecting proxy in front of ``upstream_url`` (a :class:`Proxy`, unshaped by default).

    ``latency`` and ``bandwidth`` (keywords) shape the traffic as :class:`WanProxy` does.
    """

    def __init__(
        self,
        upstream_url: str,
        rates: Mapping[str, float] | None = None,
        stall_seconds: float = 10.0,
        cut: float = 0.5,
        seed: int = 0,
        start_timeout: float = 30.0,
        heads: bool = False,
        *,
        latency: float = 0.0,
        bandwidth: float = math.inf,
    ) -> None:
        super().__init__(
            upstream_url,
            latency=latency,
            bandwidth=bandwidth,
            rates=rates,
            stall_seconds=stall_seconds,
            cut=cut,
            seed=seed,
            heads=heads,
            start_timeout=start_timeout,
        )


def _check_rates(rates: Mapping[str, float]) -> dict[str, float]:
    unknown = set(rates) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown fault(s) {sorted(unknown)}; choose from {FAULTS}")
    checked = {name: float(rate) for name, rate in rates.items()}
    if any(not 0 <= r <= 1 for r in checked.values()) or sum(checked.values()) > 1:
        raise ValueError(f"fault rates must be in [0, 1] and add up to at most 1, got {checked}")
    return checked


# ---------------------------------------------------------------- the child process


def _parse_head(raw: bytes) -> tuple[str, dict[str, str]]:
    """The start line and the headers (lower-case names) of an HTTP message head."""
    lines = raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def _without(raw: bytes, name: str) -> bytes:
    """The message head ``raw`` without the header ``name`` (lower case)."""
    lines = raw.split(b"\r\n")
    key = name.encode()
    return b"\r\n".join([lines[0]] + [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower() != key])


class _Body:
    """Where an HTTP message body ends: a known length, chunked, or the end of the connection."""

    __slots__ = ("remaining", "chunked", "eof", "done", "line", "trailer")

    def __init__(self, headers: dict[str, str], length: int | None = None, eof: bool = False) -> None:
        self.chunked = length is None and "chunked" in headers.get("transfer-encoding", "").lower()
        if length is None and not self.chunked:
            value = headers.get("content-length")
            length = int(value) if value is not None else None
        self.eof = length is None and not self.chunked and eof
        self.remaining = length or 0  # bytes of the body (or, chunked, of the current chunk + CRLF) still due
        self.done = not (self.chunked or self.eof or self.remaining)
        self.line = bytearray()
        self.trailer = False

    def take(self, data: memoryview) -> int:
        """How many leading bytes of ``data`` belong to the body; sets ``done`` at its end."""
        if self.eof:
            return len(data)
        if not self.chunked:
            n = min(self.remaining, len(data))
            self.remaining -= n
            self.done = not self.remaining
            return n
        buf, i = bytes(data), 0  # chunked bodies are rare and small (listings): copying is fine
        while i < len(buf) and not self.done:
            if self.remaining:
                n = min(self.remaining, len(buf) - i)
                i, self.remaining = i + n, self.remaining - n
                continue
            j = buf.find(b"\n", i)
            if j < 0:
                self.line += buf[i:]
                return len(buf)
            line = bytes(self.line) + buf[i : j + 1]
            self.line.clear()
            i = j + 1
            if self.trailer:
                self.done = not line.strip()
            elif (size := int(line.split(b";")[0], 16)) == 0:
                self.trailer = True
            else:
                self.remaining = size + 2
        return i


class _Request:
    """One request seen on a connection, waiting for its response."""

    __slots__ = ("start", "method", "fault", "local")

    def __init__(self, start: float, method: str, fault: str | None, local: bytes | None = None) -> None:
        self.start, self.method, self.fault, self.local = start, method, fault, local


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
    """Client side of one proxied connection: parses requests and responses, queues and paces.

    Requests go upstream at once (unless the proxy answers them itself). Response bytes wait in
    ``pending`` as ``(data, request start or None, hold seconds, reset)``; each is sent when due:
    a response's first byte at ``request start + latency``, later bytes at
    ``start + sent / bandwidth``; a hold (a stall or hang) pushes ``start`` back, a reset
    entry resets the connection. A full queue pauses reading from upstream.
    """

    def __init__(self, proxy: _Server) -> None:
        self.proxy = proxy
        self.loop = proxy.loop
        self.latency, self.bandwidth = proxy.latency, proxy.bandwidth
        self.shaped = self.latency > 0 or math.isfinite(self.bandwidth)
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.pending: collections.deque[tuple[bytes | memoryview, float | None, float, bool]] = collections.deque()
        self.queued = 0
        self.start = self.sent = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.client_paused = self.upstream_paused = self.upstream_eof = self.closed = False
        # requests: the head being read, the body being forwarded (or dropped), those awaiting answers
        self.req_head = bytearray()
        self.req_start = 0.0
        self.req_body: _Body | None = None
        self.req_forward = True
        self.requests: collections.deque[_Request] = collections.deque()
        # responses: the head being read, the body being relayed, where a fault cuts it
        self.resp_head = bytearray()
        self.resp_body: _Body | None = None
        self.resp_final = True
        self.resp_cut = -1  # body bytes to relay before the fault of this response (-1: none)
        self.resp_fault: str | None = None
        self.discard = False  # after a reset: nothing more from upstream

    # client side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.client = transport
        transport.pause_reading()  # until upstream is connected
        self.proxy.conns.add(self)
        task = self.loop.create_task(self.connect())
        self.proxy.tasks.add(task)
        task.add_done_callback(self.proxy.tasks.discard)

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.closed:
            if self.req_body is not None:  # a request body: forwarded as it comes, or dropped
                n = self.req_body.take(view)
                if self.req_forward and self.upstream is not None and not self.upstream_eof:
                    self.upstream.write(view[:n] if n < len(view) else view)
                view = view[n:]
                if self.req_body.done:
                    self.req_body = None
                continue
            if not self.req_head:
                self.req_start = self.loop.time()
            searched = max(len(self.req_head) - 3, 0)
            self.req_head += view
            end = self.req_head.find(b"\r\n\r\n", searched)
            if end < 0:
                if len(self.req_head) > MAX_HEAD:
                    self.close()
                return
            view = memoryview(bytes(self.req_head[end + 4 :]))
            raw = bytes(self.req_head[: end + 4])
            self.req_head.clear()
            self.request(raw)

    def request(self, raw: bytes) -> None:
        """Handle one request head: answer it here, or forward it (maybe changed) upstream."""
        start_line, headers = _parse_head(raw)
        method, target = start_line.split(" ")[:2]
        body = _Body(headers)
        self.req_body = None if body.done else body
        self.req_forward = False
        proxy = self.proxy
        if target.startswith(CONTROL_PATH):
            self.requests.append(_Request(self.req_start, method, None, proxy.control(method, target)))
            self.answer_local()
            return
        proxy.counts[f"method:{method}"] = proxy.counts.get(f"method:{method}", 0) + 1
        ranged = method == "GET" and "range" in headers
        fault = proxy.draw() if ranged or (method == "HEAD" and proxy.heads) else None
        if fault == "slowdown":
            body_bytes = b"" if method == "HEAD" else _SLOWDOWN_BODY
            local = b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n%s" % (
                len(_SLOWDOWN_BODY),
                body_bytes,
            )
            self.requests.append(_Request(self.req_start, method, fault, local))
            self.answer_local()
            return
        if fault == "norange":
            raw = _without(raw, "range")
        self.requests.append(_Request(self.req_start, method, fault))
        self.req_forward = True
        if self.upstream is not None and not self.upstream_eof:
            self.upstream.write(raw)

    def answer_local(self) -> None:
        """Queue the proxy's own answers that are next in line (after the responses before them)."""
        while self.requests and self.requests[0].local is not None and self.resp_body is None and not self.resp_head:
            request = self.requests.popleft()
            mark = None if request.fault is None else request.start  # control answers are not delayed
            assert request.local is not None
            self.queue(request.local, mark)
        self.flush()

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

    # upstream side

    def from_upstream(self, data: bytes) -> None:
        if self.closed or self.discard:
            return
        body = self.resp_body
        if body is not None and self.resp_cut < 0 and not body.chunked and len(data) < body.remaining:
            body.remaining -= len(data)  # the common case: the middle of a body, no fault
            self.queue(data, None)
            self.flush()
            return
        view = memoryview(data)
        while view and not self.discard:
            if self.resp_body is None:
                searched = max(len(self.resp_head) - 3, 0)
                self.resp_head += view
                end = self.resp_head.find(b"\r\n\r\n", searched)
                if end < 0:
                    if len(self.resp_head) > MAX_HEAD:
                        self.close()
                    break
                view = memoryview(bytes(self.resp_head[end + 4 :]))
                raw = bytes(self.resp_head[: end + 4])
                self.resp_head.clear()
                self.response(raw)
            else:
                view = self.relay(view)
        self.flush()

    def response(self, raw: bytes) -> None:
        """Queue a response head; note how its body ends and where its fault cuts it."""
        start_line, headers = _parse_head(raw)
        status = int(start_line.split(" ")[1])
        request = self.requests[0] if self.requests else None
        method = request.method if request is not None else "GET"
        self.resp_final = status >= 200
        no_body = method == "HEAD" or status in (204, 304) or not self.resp_final
        body = _Body(headers, length=0 if no_body else None, eof=True)
        fault = request.fault if request is not None and self.resp_final else None
        mark = request.start if request is not None else None
        self.queue(raw, mark, self.proxy.stall_seconds if fault == "hang" else 0.0)
        self.resp_body, self.resp_fault, self.resp_cut = body, fault, -1
        if fault in ("reset", "stall"):
            self.resp_cut = int(body.remaining * self.proxy.cut) if not (body.chunked or body.eof) else 0
        self.relay(memoryview(b""))  # an empty body ends here, a cut at 0 happens here

    def relay(self, view: memoryview) -> memoryview:
        """Queue the body bytes at the start of ``view``, apply a fault at its cut; return the rest."""
        body = self.resp_body
        assert body is not None
        if self.resp_cut >= 0:
            if self.resp_cut <= len(view):  # the cut is here: relay up to it, then the fault
                n = body.take(view[: self.resp_cut])
                if n:
                    self.queue(view[:n], None)
                view = view[n:]
                self.resp_cut = -1
                if self.resp_fault == "reset":
                    self.pending.append((b"", None, 0.0, True))
                    self.discard = True
                    if self.upstream is not None:
                        self.upstream.close()
                    return memoryview(b"")
                if not body.done:
                    self.pending.append((b"", None, self.proxy.stall_seconds, False))
            else:
                n = body.take(view)
                self.resp_cut -= n
                if n:
                    self.queue(view[:n], None)
                view = view[n:]
        else:
            n = body.take(view)
            if n:
                self.queue(view[:n] if n < len(view) else view, None)
            view = view[n:]
        if body.done:
            self.resp_body = None
            if self.resp_final and self.requests:
                self.requests.popleft()
            self.answer_local()
        return view

    # pacing

    def queue(self, data: bytes | memoryview, mark: float | None, hold: float = 0.0) -> None:
        """Queue response bytes (``mark``: the request start of a response's first bytes)."""
        if not self.shaped and not hold and not self.pending and not self.client_paused:
            assert self.client is not None
            self.client.write(data)
            return
        size = len(data)
        if math.isfinite(self.bandwidth) and size > CHUNK:
            view = memoryview(data)
            self.pending.append((view[:CHUNK], mark, hold, False))
            for i in range(CHUNK, size, CHUNK):
                self.pending.append((view[i : i + CHUNK], None, 0.0, False))
        else:
            self.pending.append((data, mark, hold, False))
        self.queued += size
        if self.queued > HIGH_WATER and not self.upstream_paused and self.upstream is not None:
            self.upstream.pause_reading()
            self.upstream_paused = True

    def flush(self) -> None:
        """Send every queued chunk that is due; schedule a timer for the next one."""
        if self.timer is not None or self.closed or self.client is None:
            return
        now = self.loop.time()
        while self.pending and not self.client_paused:
            data, mark, hold, reset = self.pending[0]
            if mark is not None or hold:
                if mark is not None:
                    self.start, self.sent = max(mark + self.latency, now), 0.0
                if hold:
                    self.start, self.sent = max(self.start + self.sent / self.bandwidth, now) + hold, 0.0
                self.pending[0] = (data, None, 0.0, reset)
            due = self.start + self.sent / self.bandwidth
            if due > now + SLACK:
                self.timer = self.loop.call_at(due, self._on_timer)
                return
            if reset:
                if self.client.get_write_buffer_size():  # let what was sent before the cut leave first
                    self.timer = self.loop.call_later(0.001, self._on_timer)
                    return
                sock = self.client.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.client.abort()
                self.close()
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


class _Server:
    """The asyncio proxy server run by the child process: settings, fault draws, counts."""

    loop: asyncio.AbstractEventLoop

    def __init__(
        self,
        upstream: tuple[str, int],
        latency: float = 0.0,
        bandwidth: float = math.inf,
        rates: dict[str, float] | None = None,
        stall_seconds: float = 10.0,
        cut: float = 0.5,
        seed: int = 0,
        heads: bool = False,
    ) -> None:
        self.upstream, self.latency, self.bandwidth = upstream, latency, bandwidth
        self.rates, self.stall_seconds, self.cut, self.heads = dict(rates or {}), stall_seconds, cut, heads
        self.random = random.Random(seed)
        self.counts = dict.fromkeys(("gets", *FAULTS), 0)
        self.conns: set[_Conn] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def draw(self) -> str | None:
        self.counts["gets"] += 1
        u, edge = self.random.random(), 0.0
        for name in FAULTS:
            edge += self.rates.get(name, 0.0)
            if u < edge:
                self.counts[name] += 1
                return name
        return None

    def control(self, method: str, target: str) -> bytes:
        """The answer to a request to ``CONTROL_PATH``: the counts (after setting rates on ``POST``)."""
        if method == "POST":
            for name, value in parse_qsl(urlsplit(target).query):
                self.rates[name] = float(value)
        payload = json.dumps(self.counts).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
        return head + payload

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


def main(argv: list[str] | None = None, *, latency: float = 0.0, bandwidth_mib: float = math.inf) -> None:
    """Command-line entry point of the proxy child process (``latency``, ``bandwidth_mib``: the defaults)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="http://HOST:PORT to forward to")
    parser.add_argument("--latency", type=float, default=latency, help="seconds to first byte")
    parser.add_argument("--bandwidth-mib", type=float, default=bandwidth_mib, help="MiB/s per connection, or inf")
    parser.add_argument("--rate", action="append", default=[], metavar="FAULT=P", help=f"one of {FAULTS}")
    parser.add_argument("--stall-seconds", type=float, default=10.0)
    parser.add_argument("--cut", type=float, default=0.5, help="fraction of a body sent before a reset or stall")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heads", action="store_true", help="HEAD requests draw faults too")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    args = parser.parse_args(argv)
    rates = _check_rates({k: float(v) for k, v in (item.split("=", 1) for item in args.rate)})
    server = _Server(
        _split_upstream(args.upstream),
        args.latency,
        args.bandwidth_mib * 2**20,
        rates,
        args.stall_seconds,
        args.cut,
        args.seed,
        args.heads,
    )
    asyncio.run(server.serve(args.port))


if __name__ == "__main__":
    main()
