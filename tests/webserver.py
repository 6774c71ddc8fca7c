"""Start ``campaign web`` in a child process for the web tests (real HTTP on loopback)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests


@dataclass
class WebServer:
    base: str  # http://127.0.0.1:PORT
    token: str
    output: list[str] = field(default_factory=list)  # every line it printed (stdout and stderr)

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"

    def session(self) -> requests.Session:
        """A session that has opened the URL with the token (so it holds the cookie)."""
        s = requests.Session()
        assert s.get(self.url, timeout=10).status_code == 200
        return s

    def csrf(self, session: requests.Session) -> str:
        page = session.get(f"{self.base}/new", timeout=10).text
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match is not None
        return match.group(1)


@contextmanager
def web_server(folder: Path, *flags: str, env: Mapping[str, str] | None = None) -> Iterator[WebServer]:
    """``campaign web FOLDER --port 0 FLAGS``; stopped with SIGINT (as Ctrl-C) at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "campaign", "web", str(folder), "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "?token=" in line:
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        found = None
        if ready.wait(30):
            found = next((re.search(r"(http://\S+)/\?token=(\S+)", x) for x in lines if "?token=" in x), None)
        if found is None:
            raise RuntimeError(f"campaign web did not start: {''.join(lines)}")
        yield WebServer(found.group(1), found.group(2), lines)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
