"""An HTTP proxy in a child process that injects S3 faults into ranged GETs.

Requests pass through unchanged (so signatures stay valid); each ranged GET (a ``GET``
with a ``Range`` header: object data, not listings or HEADs) draws at most one fault:

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

With ``heads=True``, ``HEAD`` requests (how a client pins an object's size and ETag) draw
faults too: ``slowdown`` answers them ``503`` (with no body, as S3 does to a HEAD).

Rates can be changed while it runs (:meth:`FaultProxy.set_rates`), and the proxy counts
what it did (:meth:`FaultProxy.counts`). Run standalone with::

    python -m dask_prefetch.testing.faults --upstream http://127.0.0.1:9000 --rate slowdown=0.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import struct
import urllib.request
from typing import Mapping
from urllib.parse import parse_qsl, urlsplit

if __package__:
    from .s3server import _ChildServer, _report_port_and_wait, _split_upstream
else:  # run as a script (the child process): import the stdlib-only sibling
    from s3server import _ChildServer, _report_port_and_wait, _split_upstream  # type: ignore[no-redef]

FAULTS = ("slowdown", "reset", "stall", "hang", "norange")
CONTROL_PATH = "/__faults__"
CHUNK = 64 * 1024
_SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>"
)


class FaultProxy(_ChildServer):
    """A fault-injecting HTTP/1.1 proxy in front of ``upstream_url``.

    Parameters
    ----------
    upstream_url
        ``http://HOST:PORT`` of the server to proxy (e.g. a :class:`LocalS3Server` endpoint).
    rates
        Probability of each fault per ranged GET, e.g. ``{"slowdown": 0.1, "reset": 0.05}``;
        they must add up to at most 1.
    stall_seconds
        How long a ``stall`` or ``hang`` fault holds the response.
    cut
        Fraction of the body sent before a ``reset`` or ``stall`` (0: right after the headers).
    seed
        Seed of the random choice of faults (the order of requests still varies).
    heads
        Whether ``HEAD`` requests draw faults too (not only ranged GETs).
    """

    _script = __file__
    #: The faults it can inject.
    faults = FAULTS

    def __init__(
        self,
        upstream_url: str,
        rates: Mapping[str, float] | None = None,
        stall_seconds: float = 10.0,
        cut: float = 0.5,
        seed: int = 0,
        start_timeout: float = 30.0,
        heads: bool = False,
    ) -> None:
        super().__init__()
        _split_upstream(upstream_url)
        if not 0 <= cut < 1:
            raise ValueError(f"cut must be in [0, 1), got {cut}")
        self.upstream_url = upstream_url
        self.rates = _check_rates(rates or {})
        self.stall_seconds, self.cut, self.seed = float(stall_seconds), float(cut), int(seed)
        self.start_timeout = start_timeout
        self.heads = bool(heads)

    def _child_args(self) -> list[str]:
        args = ["--upstream", self.upstream_url, "--stall-seconds", repr(self.stall_seconds), "--seed", str(self.seed)]
        args += ["--cut", repr(self.cut)] + (["--heads"] if self.heads else [])
        for name, rate in self.rates.items():
            args += ["--rate", f"{name}={rate!r}"]
        return args

    def _probe(self) -> None:
        self.counts()

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


def _check_rates(rates: Mapping[str, float]) -> dict[str, float]:
    unknown = set(rates) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown fault(s) {sorted(unknown)}; choose from {FAULTS}")
    checked = {name: float(rate) for name, rate in rates.items()}
    if any(not 0 <= r <= 1 for r in checked.values()) or sum(checked.values()) > 1:
        raise ValueError(f"fault rates must be in [0, 1] and add up to at most 1, got {checked}")
    return checked


class _UpstreamClosed(ConnectionError):
    """The upstream server closed the connection before sending a response."""


class _Head:
    """The start line and headers of one HTTP message."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        lines = raw.decode("latin-1").split("\r\n")
        self.start = lines[0]
        self.headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                self.headers[name.strip().lower()] = value.strip()

    @classmethod
    async def read(cls, reader: asyncio.StreamReader) -> _Head | None:
        try:
            return cls(await reader.readuntil(b"\r\n\r\n"))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def without(self, name: str) -> _Head:
        """The same message without the header ``name`` (case-insensitive)."""
        lines = self.raw.decode("latin-1").split("\r\n")
        kept = [lines[0]] + [line for line in lines[1:] if line.split(":", 1)[0].strip().lower() != name]
        return _Head("\r\n".join(kept).encode("latin-1"))

    @property
    def length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None else None


class _Proxy:
    """The asyncio proxy run by the child process."""

    def __init__(
        self,
        upstream: tuple[str, int],
        rates: dict[str, float],
        stall_seconds: float,
        cut: float,
        seed: int,
        heads: bool = False,
    ) -> None:
        self.upstream, self.rates, self.stall_seconds, self.cut = upstream, rates, stall_seconds, cut
        self.heads = heads
        self.random = random.Random(seed)
        self.counts = dict.fromkeys(("gets", *FAULTS), 0)
        self.tasks: set[asyncio.Task] = set()

    def draw(self) -> str | None:
        self.counts["gets"] += 1
        u, edge = self.random.random(), 0.0
        for name in FAULTS:
            edge += self.rates.get(name, 0.0)
            if u < edge:
                self.counts[name] += 1
                return name
        return None

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        up: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head = await _Head.read(client_r)
                if head is None:
                    return
                body = await client_r.readexactly(head.length or 0)
                method, target = head.start.split(" ")[:2]
                if target.startswith(CONTROL_PATH):
                    self.control(method, target, client_w)
                    continue
                self.counts[f"method:{method}"] = self.counts.get(f"method:{method}", 0) + 1
                ranged = method == "GET" and "range" in head.headers
                fault = self.draw() if ranged or (method == "HEAD" and self.heads) else None
                if fault == "slowdown":
                    body_bytes = b"" if method == "HEAD" else _SLOWDOWN_BODY
                    client_w.write(
                        b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(_SLOWDOWN_BODY), body_bytes)
                    )
                    await client_w.drain()
                    continue
                if fault == "norange":
                    head = head.without("range")
                reused = up is not None
                if up is None:
                    up = await asyncio.open_connection(*self.upstream)
                up[1].write(head.raw + body)
                try:
                    keep = await self.relay(up[0], client_w, method, fault)
                except _UpstreamClosed:
                    if not reused:
                        raise
                    up[1].close()  # an idle keep-alive connection the server had closed: once more
                    up = await asyncio.open_connection(*self.upstream)
                    up[1].write(head.raw + body)
                    keep = await self.relay(up[0], client_w, method, fault)
                if not keep:  # the upstream connection cannot carry another request
                    up[1].close()
                    up = None
                if fault == "reset":
                    sock = client_w.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client_w.transport.abort()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            for writer in (client_w, up[1] if up else None):
                if writer is not None:
                    writer.close()
            self.tasks.discard(task)

    async def relay(
        self, up_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, method: str, fault: str | None
    ) -> bool:
        """Relay one response, injecting ``fault`` into its body; True if upstream can be reused."""
        head = await _Head.read(up_r)
        if head is None:
            raise _UpstreamClosed("upstream closed before answering")
        if fault == "hang":
            await asyncio.sleep(self.stall_seconds)
        client_w.write(head.raw)
        status = int(head.start.split(" ")[1])
        length = head.length
        if method == "HEAD" or status in (204, 304) or status < 200:
            length = 0
        chunked = head.headers.get("transfer-encoding", "").lower() == "chunked"
        if length is None and not chunked:  # body until EOF
            while data := await up_r.read(CHUNK):
                client_w.write(data)
                await client_w.drain()
            return False
        if chunked:  # forwarded as is (faults only hit bodies of known length)
            while True:
                size_line = await up_r.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                client_w.write(size_line + await up_r.readexactly(size + 2))
                if size == 0:
                    break
            await client_w.drain()
            return True
        cut = int(length * self.cut) if fault in ("reset", "stall") else length
        sent = 0
        while sent < length:
            if sent == cut:
                await client_w.drain()
                if fault == "reset":
                    return False
                await asyncio.sleep(self.stall_seconds)
                cut = length
            data = await up_r.read(min(CHUNK, cut - sent))
            if not data:
                raise ConnectionError("upstream closed mid-body")
            client_w.write(data)
            sent += len(data)
            await client_w.drain()
        if fault == "reset":  # an empty body: reset after the headers
            await client_w.drain()
            return False
        return head.headers.get("connection", "").lower() != "close"

    def control(self, method: str, target: str, client_w: asyncio.StreamWriter) -> None:
        if method == "POST":
            for name, value in parse_qsl(urlsplit(target).query):
                self.rates[name] = float(value)
        payload = json.dumps(self.counts).encode()
        client_w.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload)
        )
        client_w.write(payload)

    async def serve(self, port: int = 0) -> None:
        server = await asyncio.start_server(self.handle, "127.0.0.1", port, backlog=256)
        await _report_port_and_wait(server.sockets[0].getsockname()[1])
        server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point of the proxy child process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="http://HOST:PORT to forward to")
    parser.add_argument("--rate", action="append", default=[], metavar="FAULT=P", help=f"one of {FAULTS}")
    parser.add_argument("--stall-seconds", type=float, default=10.0)
    parser.add_argument("--cut", type=float, default=0.5, help="fraction of a body sent before a reset or stall")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heads", action="store_true", help="HEAD requests draw faults too")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    args = parser.parse_args(argv)
    rates = _check_rates({k: float(v) for k, v in (item.split("=", 1) for item in args.rate)})
    proxy = _Proxy(_split_upstream(args.upstream), rates, args.stall_seconds, args.cut, args.seed, args.heads)
    asyncio.run(proxy.serve(args.port))


if __name__ == "__main__":
    main()
