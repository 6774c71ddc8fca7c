"""One run at a time per campaign: an OS file lock beside the state file.

The lock is ``flock`` on ``<state>.lock``: the kernel drops it when the process dies, however it
dies, so a lock left by a killed cron job never blocks the next run.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from campaign.errors import LockedError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class CampaignLock:
    """``with CampaignLock(state_path, name):`` raises LockedError if another run holds it."""

    def __init__(self, state_path: Path, name: str) -> None:
        self.path = state_path.with_name(state_path.name + ".lock")
        self.name = name
        self.fd: int | None = None

    def __enter__(self) -> CampaignLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise LockedError(
                    f"Campaign {self.name!r} is already being sent (pid {holder}); wait for that run "
                    "to finish. A lock left by a killed run is released automatically."
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self.fd is not None:
            if fcntl is not None:
                # Unlock explicitly: a forked child holding a copy of the descriptor would
                # otherwise keep the lock until it exits.
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
