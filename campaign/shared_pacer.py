"""One pacer per channel shared by every worker of every PostgreSQL campaign in a database
(issue 15): ``rate`` is the channel's, whatever the number of workers or campaigns on it, and a
429 seen by one slows them all. Its tables live in the ledger's schema (``campaign_ledger``),
beside the daily limit, because a channel is shared across campaigns.

When campaigns on one channel ask for different rates, the channel goes at the lowest rate of
the workers seen in the last minute (``pacer_users``): no campaign's ``rate`` is exceeded.
"""

from __future__ import annotations

import asyncio
from collections import deque

from campaign.database import Database
from campaign.sender import Pacer

_TABLES = """
CREATE TABLE IF NOT EXISTS pacer (
    channel TEXT PRIMARY KEY,
    next_ms REAL NOT NULL,
    pause_ms REAL NOT NULL DEFAULT 0,
    rate REAL NOT NULL,
    target REAL NOT NULL,
    changed_ms REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pacer_users (
    channel TEXT NOT NULL,
    worker TEXT NOT NULL,
    rate REAL NOT NULL,
    seen_ms REAL NOT NULL,
    PRIMARY KEY (channel, worker)
)
"""


class SharedPacer(Pacer):
    """Request slots for one channel, shared by every worker through its ``pacer`` row.

    Each fetch takes the row's lock (``SELECT ... FOR UPDATE``), hands this worker the next
    ``n`` slots ``WINDOW / rate`` seconds apart from ``max(next free slot, now, pause)``, and
    moves the row past them; slots are instants of the database's clock, turned into this
    host's loop time by the offset measured on that query. Slots never overlap across
    workers, so no one-second window holds more than ``rate`` starts. Between a slot and the
    request reaching the API lie the write-ahead commit and both ends' event-loop lag, so slots
    are 5 % apart more than ``1 / rate`` (a 50 ms margin in any second: the channel runs at
    95 % of ``rate`` at most), and a slot this worker reaches more than 10 ms late is dropped
    for a fresh one rather than used late. A 429 moves ``pause`` for all
    and halves the channel's rate (once a second at most); each fetch a second after the last
    change raises it by a quarter, back to ``target``. ``n`` is 50 ms worth of slots (at least
    one), so one fetch serves several requests at high rates.
    """

    WINDOW = 1.05
    LATE = 0.01  # seconds: a slot reached later than this is void

    SEEN = 60_000.0  # ms: a worker's rate counts for the channel until this long after its last fetch

    def __init__(
        self, db: Database, channel: str, rate: float, *, user: str, backoff_base: float = 1.0
    ) -> None:
        super().__init__(rate, backoff_base=backoff_base)
        self.db = db  # a connection to the ledger's schema (campaign.ledger.SCHEMA)
        self.channel = channel
        self.user = user  # this worker's id
        self.slots: deque[float] = deque()
        self.fetches = 0
        self.late = 0  # slots dropped because this worker reached them late
        self.seen_ms = float("-inf")  # when this worker last recorded its rate in pacer_users
        with db.transaction():
            db.lock("pacer-tables")
            db.script(_TABLES)
            db.execute(
                "INSERT INTO pacer (channel, next_ms, pause_ms, rate, target, changed_ms) VALUES (?, 0, 0, ?, ?, 0)"
                " ON CONFLICT (channel) DO UPDATE SET rate = least(pacer.rate, excluded.target)",
                (channel, rate, rate),
            )

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopped.is_set():
            if await self.paused(loop):
                continue
            if not self.slots:
                self._fetch(loop)
            at = self.slots.popleft()
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if loop.time() < self.pause_until:
                continue  # a 429 came while this start waited: its slot is void
            if loop.time() - at > self.LATE:
                self.late += 1
                continue  # reached late (a busy loop): a late start would crowd the next second
            return

    def _fetch(self, loop: asyncio.AbstractEventLoop) -> None:
        n = max(1, int(self.target * self.BURST))
        before = loop.time()
        with self.db.transaction():
            next_ms, pause_ms, rate, changed_ms, now_ms = self.db.execute(
                "SELECT next_ms, pause_ms, rate, changed_ms, extract(epoch FROM clock_timestamp()) * 1000"
                " FROM pacer WHERE channel = ? FOR UPDATE",
                (self.channel,),
            ).fetchone()
            now_ms, rate = float(now_ms), float(rate)
            if now_ms - self.seen_ms >= 1000:  # once a second is enough against a minute's window
                self.db.execute(
                    "INSERT INTO pacer_users (channel, worker, rate, seen_ms) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (channel, worker) DO UPDATE SET rate = excluded.rate, seen_ms = excluded.seen_ms",
                    (self.channel, self.user, self.target, now_ms),
                )
                self.seen_ms = now_ms
            (target,) = self.db.execute(
                "SELECT min(rate) FROM pacer_users WHERE channel = ? AND seen_ms > ?",
                (self.channel, now_ms - self.SEEN),
            ).fetchone()
            target = float(target)  # the lowest rate asked for on this channel lately
            rate = min(rate, target)
            if rate < target and now_ms - float(changed_ms) >= 1000:
                rate, changed_ms = min(target, rate * 1.25), now_ms
            interval = 1000 * self.WINDOW / rate
            start = max(float(next_ms), now_ms, float(pause_ms))
            self.db.execute(
                "UPDATE pacer SET next_ms = ?, rate = ?, target = ?, changed_ms = ? WHERE channel = ?",
                (start + n * interval, rate, target, changed_ms, self.channel),
            )
        offset = (before + loop.time()) / 2 - now_ms / 1000  # this loop's clock minus the database's
        self.slots.extend((start + i * interval) / 1000 + offset for i in range(n))
        self.current = rate
        self.fetches += 1

    def rate_limited(self, retry_after: float | None) -> None:
        loop = asyncio.get_running_loop()
        self.limited_in_a_row += 1
        delay = min(retry_after if retry_after is not None else self.backoff(self.limited_in_a_row), self.backoff_cap)
        self.pause_until = max(self.pause_until, loop.time() + delay)
        self.slots.clear()
        with self.db.transaction():
            self.db.execute(
                "UPDATE pacer SET pause_ms = greatest(pause_ms, extract(epoch FROM clock_timestamp()) * 1000 + ?),"
                " rate = CASE WHEN extract(epoch FROM clock_timestamp()) * 1000 - changed_ms >= 1000"
                " THEN greatest(least(target, 0.2), rate / 2) ELSE rate END,"
                " changed_ms = CASE WHEN extract(epoch FROM clock_timestamp()) * 1000 - changed_ms >= 1000"
                " THEN extract(epoch FROM clock_timestamp()) * 1000 ELSE changed_ms END WHERE channel = ?",
                (delay * 1000, self.channel),
            )

    def succeeded(self) -> None:
        self.limited_in_a_row = 0  # the shared rate recovers at the next fetches
