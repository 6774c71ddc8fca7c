"""``campaign`` with a proposed change patched in, to measure it side by side with the real one.

Bench-only: the product never imports this. Each patch is the smallest change that shows what
a finding in bench/RESULTS.md would buy; the real change belongs in ``campaign/``.

``pacer-grid``
    ``sender.Pacer`` gets :class:`GridLimiter` instead of ``AsyncLimiter(1, 1/rate)``: starts
    are due on a fixed grid of 1/rate, so a late wake-up (epoll rounds timeouts up to the next
    millisecond; a batch being prepared holds the loop 10-80 ms) is made up instead of lost
    (up to ``CATCH_UP`` seconds of lag), and a log of the last ``rate`` starts keeps any
    window of ``1 s x (1 + MARGIN)`` to at most ``rate`` starts, so arrival jitter of a few
    ms cannot put ``rate + 1`` requests in one second at the server.
``gate-at-send``
    (on the pacer of commit 149cdef and later) the "at most ``rate`` in any second" log is
    checked and stamped right before each POST instead of in ``Pacer.acquire``, which runs
    before the journal mark: what the server sees is when requests leave, not when they were
    allowed to start.
``bucket-at-window-rate``
    (on the pacer of 149cdef and later) its aiolimiter bucket drips at ``rate / 1.01``, the
    rate its one-second log allows, instead of ``rate``: no pause-then-burst every second.
``smooth-pacer``
    (on the pacer of 149cdef and later) the bucket drips at ``rate / 1.01`` and the log guards
    1.005 s: the bucket never runs ahead of the log, so no pause-then-burst every second.
``small-batches``
    ``prepare.BATCH = 16``: ``Pipeline.batches`` prepares (and ``Planner.plan`` commits) 16 rows
    at a time instead of 256, so the loop is never held 40-90 ms by one batch.
``fixed-batches``
    every batch 256 rows, as before they grew to 2,048 (``prepare.BATCH_MAX``): one planning
    transaction per 256 rows, each writing the index pages its random phone-number keys dirtied.
``check-tempfile``
    dry runs (``campaign check``, ``send --dry-run``, the confirmation plan) keep their scratch
    state in a temporary SQLite file (``synchronous = OFF``, deleted on close) instead of
    ``:memory:``, whose pages all stay in RAM: the whole file's ``rows`` table.
``no-status-index``
    the state file without the ``recipients(status)`` index, which every status change of
    every row updates (three per sent row) for queries made once per run.
``no-rows-phone-index``
    the state file without the ``rows(run, phone)`` index, read only with ``allow_duplicates``
    but updated by every row of every run.
``wal-checkpoint-10k``
    the state file checkpoints its WAL every 10,000 pages instead of every 1,000 (fewer,
    larger checkpoints; each one fsyncs the database file under ``synchronous = NORMAL``).
``inline-prepare``
    rows are prepared on the event loop, between its turns, as before commit f9ca57b, instead
    of in the forked child process of ``campaign.prepare``.
``no-autocheckpoint``
    no WAL checkpoint inside any COMMIT for the whole run: the upper bound of what running
    checkpoints off the event loop could buy.
``stats``
    no change: counts the planner's transactions and the journal's group commits (marks and
    outcomes per commit) and prints them to stderr at exit.

    python -m bench.patched pacer-grid,check-tempfile send CAMPAIGN.toml --yes
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CATCH_UP = 0.1  # seconds of lag the grid makes up before it restarts from now
MARGIN = 0.01  # the window the start log guards is 1 % longer than a second
WINDOW = 1.0 + MARGIN


class GridLimiter:
    """Starts due every 1/rate on a fixed grid; never more than ``rate`` in any 1.01 s."""

    def __init__(self, rate: float, *, window: float = 1.0, margin: float = MARGIN, catch_up: float = CATCH_UP):
        self.interval = 1.0 / rate
        self.cap = max(1, math.floor(rate * window + 1e-9))
        self.window = window * (1 + margin)
        self.catch_up = max(catch_up, self.interval)
        self.starts: deque[float] = deque(maxlen=self.cap)
        self.due: float | None = None  # the next start's slot on the grid
        self.lock = asyncio.Lock()

    def _slot(self, now: float) -> float:
        if self.due is None or now - self.due > self.catch_up:
            return now  # idle (or stalled too long): the grid restarts now, no burst of credit
        return self.due

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        async with self.lock:  # one waiter at a time, first come first served
            while True:
                now = loop.time()
                due = self._slot(now)
                if len(self.starts) == self.cap:
                    due = max(due, self.starts[0] + self.window)
                if due <= now:
                    break
                await asyncio.sleep(due - now)
            self.due = self._slot(now) + self.interval
            self.starts.append(now)


def _pacer_grid() -> None:
    from campaign import sender

    if hasattr(sender.Pacer, "_set_rate"):  # the pacer of commit 149cdef and later
        original = sender.Pacer._set_rate

        def set_rate(self: sender.Pacer, rate: float) -> None:
            original(self, rate)
            if rate:
                self.limiter = GridLimiter(rate)  # type: ignore[assignment]

        sender.Pacer._set_rate = set_rate  # type: ignore[method-assign]
        return

    def limiter(rate: float) -> GridLimiter | None:  # earlier: AsyncLimiter(1, 1/rate)
        return GridLimiter(rate) if rate else None

    sender.Pacer._limiter = staticmethod(limiter)  # type: ignore[attr-defined]


def _check_tempfile() -> None:
    from campaign.state import State

    original_init = State.__init__
    original_close = State.close

    def init(self: State, path: Path | str) -> None:
        if str(path) != ":memory:":
            original_init(self, path)
            return
        fd, scratch = tempfile.mkstemp(prefix="campaign-dry-run-", suffix=".sqlite")
        os.close(fd)
        original_init(self, scratch)
        self.db.execute("PRAGMA synchronous = OFF")
        self._scratch = scratch  # type: ignore[attr-defined]

    def close(self: State) -> None:
        original_close(self)
        scratch = getattr(self, "_scratch", None)
        if scratch:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(scratch + suffix)

    State.__init__ = init  # type: ignore[method-assign]
    State.close = close  # type: ignore[method-assign]


def _fixed_batches() -> None:
    """Every batch 256 rows (``prepare.BATCH_MAX = prepare.BATCH``), as before the batches grew
    to 2,048: one planning transaction per 256 rows."""
    from campaign import prepare

    prepare.BATCH_MAX = prepare.BATCH  # type: ignore[misc]


def _stats() -> None:
    """Not a change: print the journal's and the planner's transaction counts at the end (stderr)."""
    from campaign import prepare, runner, sender
    from campaign.state import State

    counts = {"plan_transactions": 0, "journal_commits": 0, "marks": 0, "outcomes": 0}
    original_plan = runner.Planner.plan
    original_write = State.write

    def plan(self: runner.Planner, batch: list[prepare.Prepared]) -> list[sender.Job]:
        counts["plan_transactions"] += 1
        return original_plan(self, batch)

    def write(self: State, outcomes: Sequence[object], marks: Sequence[object]) -> None:
        counts["journal_commits"] += 1
        counts["marks"] += len(marks)
        counts["outcomes"] += len(outcomes)
        original_write(self, outcomes, marks)  # type: ignore[arg-type]

    runner.Planner.plan = plan  # type: ignore[method-assign]
    State.write = write  # type: ignore[method-assign,assignment]
    import atexit

    def report() -> None:
        with contextlib.suppress(OSError):  # Linux: bytes this process had the kernel write
            io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
            counts["write_bytes"] = int(io["write_bytes"])
        print(f"bench-stats {counts}", file=sys.stderr)

    atexit.register(report)


def _after_migrate(sql: str) -> None:
    """Every state file this process opens runs ``sql`` once its schema is in place."""
    from campaign.state import State

    original = State._migrate

    def migrate(self: State) -> None:
        original(self)
        self.db.execute(sql)

    State._migrate = migrate  # type: ignore[method-assign]


def _no_status_index() -> None:
    """Drop the ``recipients(status)`` index: every status change (pending, sending, sent) costs
    a delete and an insert in it, for queries (``by_status``, ``recover``) run once per run."""
    _after_migrate("DROP INDEX IF EXISTS recipients_status")


def _no_rows_phone_index() -> None:
    """Drop the ``rows(run, phone)`` index, which only ``State.phone_counts`` (allow_duplicates)
    reads, but every row inserted by every run updates."""
    _after_migrate("DROP INDEX IF EXISTS rows_phone")


def _gate_at_send() -> None:
    """Enforce the one-second window where the request leaves, not before the journal mark.

    ``Pacer.acquire`` runs before ``Journal.mark`` (a group commit on the next loop tick) and
    before the loop gets back from preparing a batch, so start-to-socket delay varies by tens of
    ms and a window guarded at ``acquire`` can hold more than ``rate`` arrivals at the server.
    Here the pacer's own log is switched off (``WINDOW = 0``; its bucket still spreads starts)
    and the same log guards every POST right before ``SociocsClient.send``.
    """
    from campaign import sender

    sender.Pacer.WINDOW = 0.0  # type: ignore[misc]  # its log never waits; the bucket stays
    original_init = sender.Sender.__init__

    def init(self: sender.Sender, client: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, client, *args, **kwargs)
        pacer = self.pacer
        starts: deque[float] = deque()
        original_send = client.send

        async def send(body: bytes) -> Any:
            if pacer.current:
                cap = max(1, int(pacer.current + 1e-9))
                loop = asyncio.get_running_loop()
                while len(starts) >= cap and (wait := starts[-cap] + WINDOW - loop.time()) > 0:
                    await asyncio.sleep(wait)
                starts.append(loop.time())
                while len(starts) > cap:
                    starts.popleft()
            return await original_send(body)

        client.send = send

    sender.Sender.__init__ = init  # type: ignore[method-assign]


def _small_batches() -> None:
    """Prepare and plan 16 rows per slice instead of ``prepare.BATCH`` (256): the event loop is
    never held for more than a few ms, so no request waits behind a batch being prepared."""
    from campaign import prepare

    prepare.BATCH = prepare.BATCH_MAX = 16  # type: ignore[misc]


def _wal_checkpoint_big() -> None:
    """``PRAGMA wal_autocheckpoint = 10000`` (40 MB of WAL) instead of SQLite's 1000 pages."""
    _after_migrate("PRAGMA wal_autocheckpoint = 10000")


def _no_autocheckpoint() -> None:
    """``PRAGMA wal_autocheckpoint = 0``: no checkpoint inside any COMMIT (the WAL grows for the
    whole run). Not a proposal by itself: the upper bound of what moving checkpoints off the
    event loop could buy."""
    _after_migrate("PRAGMA wal_autocheckpoint = 0")


def _bucket_at_window_rate() -> None:
    """(Pacer of 149cdef and later) the bucket drips at ``rate / WINDOW`` instead of ``rate``.

    With the bucket at exactly ``rate`` and the log guarding ``WINDOW = 1.01`` s, the bucket
    lets ``rate`` starts through in ~0.95 s, then the log holds everything for ~60 ms, then the
    bucket's 50 ms of saved tokens leave back to back: a pause and a burst every second, and a
    few ms of jitter at the server put ``rate + 5..9`` arrivals in one second. At the log's own
    rate the bucket spaces starts evenly and the log almost never has to step in.
    """
    from aiolimiter import AsyncLimiter

    from campaign import sender

    original = sender.Pacer._set_rate

    def set_rate(self: sender.Pacer, rate: float) -> None:
        original(self, rate)
        if rate:
            effective = rate / self.WINDOW
            burst = max(1.0, effective * self.BURST)
            self.limiter = AsyncLimiter(burst, burst / effective)

    sender.Pacer._set_rate = set_rate  # type: ignore[method-assign]


def _smooth_pacer() -> None:
    """(Pacer of 149cdef and later) bucket 1 % slower than ``rate``, log window 1.005 s.

    The bucket's long-run rate stays below what the log allows, so the log only steps in after
    a stall (when the bucket's saved tokens leave together), not once every second.
    """
    from aiolimiter import AsyncLimiter

    from campaign import sender

    sender.Pacer.WINDOW = 1.005  # type: ignore[misc]
    original = sender.Pacer._set_rate

    def set_rate(self: sender.Pacer, rate: float) -> None:
        original(self, rate)
        if rate:
            effective = rate / 1.01
            burst = max(1.0, effective * self.BURST)
            self.limiter = AsyncLimiter(burst, burst / effective)

    sender.Pacer._set_rate = set_rate  # type: ignore[method-assign]


def _inline_prepare() -> None:
    """Prepare rows on the event loop (``prepare.can_fork`` says no), to measure the child."""
    from campaign import prepare

    prepare.can_fork = lambda: False  # type: ignore[assignment]


PATCHES: dict[str, Callable[[], None]] = {
    "inline-prepare": _inline_prepare,
    "smooth-pacer": _smooth_pacer,
    "bucket-at-window-rate": _bucket_at_window_rate,
    "wal-checkpoint-10k": _wal_checkpoint_big,
    "no-autocheckpoint": _no_autocheckpoint,
    "small-batches": _small_batches,
    "fixed-batches": _fixed_batches,
    "gate-at-send": _gate_at_send,
    "no-rows-phone-index": _no_rows_phone_index,
    "no-status-index": _no_status_index,
    "pacer-grid": _pacer_grid,
    "check-tempfile": _check_tempfile,
    "stats": _stats,
}


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or any(name not in PATCHES for name in argv[0].split(",")):
        names = ", ".join(PATCHES)
        raise SystemExit(f"usage: python -m bench.patched PATCH[,PATCH] CAMPAIGN-ARGS... (patches: {names})")
    for name in argv[0].split(","):
        PATCHES[name]()
    from campaign.cli import cli

    cli.main(args=argv[1:], prog_name="campaign")


if __name__ == "__main__":
    main()
