"""A minimal stand-in for the Sociocs API, cheap enough never to be the bottleneck.

It answers every ``POST /message`` with ``{"status":"success","data":{"message_id":"..."}}``
and nothing else: no validation, no auth, no logging. Two flavours:

``raw`` (default)
    a bare ``asyncio.Protocol`` speaking just enough HTTP/1.1 (keep-alive, Content-Length,
    pipelining): about 20-30 µs of CPU per request, several times cheaper than aiohttp's server.
``aiohttp``
    the same answers from a minimal aiohttp ``web.Application`` (for comparison).

Both record the arrival time (``time.monotonic()``, CLOCK_MONOTONIC: comparable across
processes of one machine) of every POST, and serve them at ``GET /_stats``
(``{"count": n, "first": t0, "last": tn, "arrivals": [...]}``; ``?arrivals=0`` omits the list);
``POST /_reset`` forgets them. ``--latency S`` delays every answer by S seconds.

Run: ``python -m bench.fastserver --port 0`` prints ``listening http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Sequence

_OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


class Recorder:
    def __init__(self) -> None:
        self.arrivals: list[float] = []

    def stats(self, with_arrivals: bool) -> bytes:
        a = self.arrivals
        out: dict[str, object] = {"count": len(a), "first": a[0] if a else None, "last": a[-1] if a else None}
        if with_arrivals:
            out["arrivals"] = a
        return json.dumps(out).encode()


def _reply(n: int) -> bytes:
    return b'{"status":"success","data":{"message_id":"SM%032x"}}' % n


class _RawHTTP(asyncio.Protocol):
    """Just enough HTTP/1.1 for one keep-alive client connection."""

    def __init__(self, recorder: Recorder, latency: float) -> None:
        self.recorder = recorder
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop if stop >= 0 else len(lower)].strip())
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self._handle(head)

    def _handle(self, head: bytes) -> None:
        assert self.transport is not None
        line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
        method, _, rest = line.partition(b" ")
        target = rest.partition(b" ")[0]
        if method == b"POST" and target == b"/message":
            self.recorder.arrivals.append(time.monotonic())
            body = _reply(len(self.recorder.arrivals))
        elif target.startswith(b"/_stats"):
            body = self.recorder.stats(b"arrivals=0" not in target)
        elif target == b"/_reset":
            self.recorder.arrivals = []
            body = b"{}"
        else:
            msg = b'{"status":"error","errors":[{"msg":"Not found."}]}'
            self.transport.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(msg), msg)
            )
            return
        response = _OK_HEAD % len(body) + body
        if self.latency > 0 and method == b"POST":
            # Answers leave in request order per connection (HTTP/1.1 has no reordering).
            asyncio.get_running_loop().call_later(self.latency, self._write, response)
        else:
            self.transport.write(response)

    def _write(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _serve_raw(host: str, port: int, latency: float, recorder: Recorder) -> tuple[asyncio.AbstractServer, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _RawHTTP(recorder, latency), host, port, backlog=1024)
    return server, server.sockets[0].getsockname()[1]


async def _serve_aiohttp(host: str, port: int, latency: float, recorder: Recorder) -> tuple[object, int]:
    from aiohttp import web

    async def message(request: web.Request) -> web.Response:
        recorder.arrivals.append(time.monotonic())
        await request.read()
        if latency > 0:
            await asyncio.sleep(latency)
        return web.Response(body=_reply(len(recorder.arrivals)), content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        body = recorder.stats(request.query.get("arrivals") != "0")
        return web.Response(body=body, content_type="application/json")

    async def reset(request: web.Request) -> web.Response:
        recorder.arrivals = []
        return web.Response(body=b"{}", content_type="application/json")

    app = web.Application()
    app.router.add_post("/message", message)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/_reset", reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    return runner, runner.addresses[0][1]


async def _main(args: argparse.Namespace) -> None:
    recorder = Recorder()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serve = _serve_raw if args.flavour == "raw" else _serve_aiohttp
    handle, port = await serve(args.host, args.port, args.latency, recorder)
    print(f"listening http://{args.host}:{port}", flush=True)
    await stop.wait()
    if isinstance(handle, asyncio.AbstractServer):
        handle.close()
    else:
        await handle.cleanup()  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fastserver", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--flavour", choices=("raw", "aiohttp"), default="raw")
    args = parser.parse_args(argv)
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
