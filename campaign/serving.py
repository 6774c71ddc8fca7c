"""Running a local HTTP server in the foreground until SIGINT or SIGTERM.

What ``campaign sandbox`` and ``campaign listen`` share: start, say where it listens, wait for
a signal, close (which finishes what is in progress). Outside the main thread (or on Windows)
no signal handler can be installed, so the server then runs until the process ends.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


def run_until_signal(
    start: Callable[[], Awaitable[str]],
    close: Callable[[], Awaitable[None]],
    ready: Callable[[str], None] | None = None,
) -> None:
    """Await ``start()`` (it returns the base URL), call ``ready(url)``, block until SIGINT or
    SIGTERM, then await ``close()``, which also runs when ``start`` raises."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # Windows or a non-main thread
        try:
            url = await start()
            if ready is not None:
                ready(url)
            await stop.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await close()

    asyncio.run(main())
