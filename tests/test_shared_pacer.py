"""The pacer every worker of a channel shares through PostgreSQL (campaign/shared_pacer.py), driven
in this process, where a mutant of it can fail a test (worker processes import the unmutated package).

Two pacers on one channel are two workers: each has its own connection to one real database.
Time is the test's own: the event loop runs on a virtual clock (a wait moves the clock to the next
timer at once, nothing sleeps), and the database's ``clock_timestamp()`` reads the same clock
(a function of that name in a schema the connections search before ``pg_catalog``). So every
slot, pause, rate and row below is an exact number of the clock, never a measured timing.
"""

from __future__ import annotations

import asyncio
import os
import random
import selectors
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from campaign.database import PostgresDatabase
from campaign.ledger import SCHEMA as LEDGER_SCHEMA
from campaign.shared_pacer import SharedPacer

pytestmark = pytest.mark.backend("postgresql")

T = TypeVar("T")

EPOCH = 1_700_000_000.0  # seconds: the database's clock when the loop's clock reads 0
T0 = 1024.0  # the loop's clock when a test starts (a power of two: sums with it stay exact)
NOW = (EPOCH + T0) * 1000  # the database's clock then, in ms, as the pacer's rows hold it
CH = "twlo +15550001"


def ms(t: float) -> float:
    """The database's clock, in ms, when the loop's clock reads ``t``."""
    return (EPOCH + t) * 1000


def at_ms(value: float) -> Any:
    return pytest.approx(value, rel=0, abs=1e-3)


def at_s(value: float) -> Any:
    return pytest.approx(value, rel=0, abs=1e-6)


class Clock:
    """The test's time: ``now`` seconds on the event loop's clock, ``EPOCH + now`` seconds by the
    database's ``clock_timestamp()`` (one row the test's function reads)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        self.now = 0.0
        self.set(T0)

    def set(self, now: float) -> None:
        self.now = now
        self.db.execute("UPDATE now SET ms = ?", (ms(now),))


class _Selector(selectors.DefaultSelector):
    """Waits by moving the clock: nothing but the loop's own timers happens in these tests."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("the loop would wait forever: nothing is scheduled")
        if timeout > 0:
            self.clock.set(self.clock.now + timeout)
        return super().select(0)


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop on the test's clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        super().__init__(_Selector(clock))

    def time(self) -> float:
        return self.clock.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    db = PostgresDatabase(os.environ["CAMPAIGN_STATE_URL"], "pacer_clock")
    db.execute("CREATE TABLE now (ms DOUBLE PRECISION NOT NULL)")
    db.execute("INSERT INTO now VALUES (0)")
    db.execute(
        "CREATE FUNCTION clock_timestamp() RETURNS timestamptz LANGUAGE sql"
        " AS $$ SELECT to_timestamp(ms / 1000) FROM pacer_clock.now $$"
    )
    try:
        yield Clock(db)
    finally:
        db.close()


@pytest.fixture
def loop(clock: Clock) -> Iterator[VirtualLoop]:
    found = VirtualLoop(clock)
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def ledger(clock: Clock) -> Iterator[Callable[[], PostgresDatabase]]:
    """A new connection to the ledger's schema (one worker's), on the test's clock."""
    opened: list[PostgresDatabase] = []

    def connect() -> PostgresDatabase:
        db = PostgresDatabase(os.environ["CAMPAIGN_STATE_URL"], LEDGER_SCHEMA)
        db.execute(f'SET search_path TO "{LEDGER_SCHEMA}", pacer_clock, pg_catalog')
        opened.append(db)
        return db

    try:
        yield connect
    finally:
        for db in opened:
            db.close()


def run(loop: VirtualLoop, main: Coroutine[Any, Any, T]) -> T:
    """``main`` on the test's loop; one that waits 100 s of the clock fails (a mutant's endless wait)."""
    return loop.run_until_complete(asyncio.wait_for(main, 100))


def row(db: PostgresDatabase, channel: str = CH) -> dict[str, float]:
    found = db.execute(
        "SELECT next_ms, pause_ms, rate, target, changed_ms FROM pacer WHERE channel = ?", (channel,)
    ).fetchone()
    return dict(zip(("next_ms", "pause_ms", "rate", "target", "changed_ms"), map(float, found), strict=True))


def users(db: PostgresDatabase, channel: str = CH) -> list[tuple[str, float, float]]:
    return [
        (worker, float(rate), float(seen))
        for worker, rate, seen in db.execute(
            "SELECT worker, rate, seen_ms FROM pacer_users WHERE channel = ? ORDER BY worker", (channel,)
        )
    ]


# -- the channel's row ---------------------------------------------------------------------------


def test_a_new_pacer_writes_the_channel_row_and_starts_empty(ledger: Callable[[], PostgresDatabase]) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, 10.0, user="a")
    assert row(db) == {"next_ms": 0.0, "pause_ms": 0.0, "rate": 10.0, "target": 10.0, "changed_ms": 0.0}
    assert users(db) == []
    assert (pacer.fetches, pacer.late, list(pacer.slots), pacer.seen_ms) == (0, 0, [], float("-inf"))
    assert (pacer.target, pacer.current, pacer.limited_in_a_row, pacer.pause_until) == (10.0, 10.0, 0, 0.0)
    assert pacer.backoff_base == 1.0
    assert SharedPacer(ledger(), "other", 3.0, user="b", backoff_base=0.25).backoff_base == 0.25


def test_a_pacer_joining_a_channel_may_lower_its_rate_never_raise_it(ledger: Callable[[], PostgresDatabase]) -> None:
    db = ledger()
    SharedPacer(db, CH, 10.0, user="a")
    SharedPacer(ledger(), CH, 20.0, user="b")
    assert (row(db)["rate"], row(db)["target"]) == (10.0, 10.0)
    SharedPacer(ledger(), CH, 4.0, user="c")
    assert (row(db)["rate"], row(db)["target"]) == (4.0, 10.0)  # the target is the next fetch's to set
    SharedPacer(ledger(), "other", 7.0, user="a")
    assert (row(db, "other")["rate"], row(db)["rate"]) == (7.0, 4.0)


# -- _fetch --------------------------------------------------------------------------------------


def test_a_fetch_hands_out_the_next_slot_and_moves_the_row_past_it(
    ledger: Callable[[], PostgresDatabase], loop: VirtualLoop
) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, 10.0, user="a")
    pacer._fetch(loop)
    assert list(pacer.slots) == [T0]  # the database's now, on this loop's clock
    assert row(db) == {"next_ms": at_ms(NOW + 105), "pause_ms": 0.0, "rate": 10.0, "target": 10.0, "changed_ms": 0.0}
    assert users(db) == [("a", 10.0, NOW)]
    assert (pacer.current, pacer.fetches, pacer.seen_ms) == (10.0, 1, NOW)
    pacer._fetch(loop)  # at the same instant: the slot after the first, 1.05 / 10 s later
    assert list(pacer.slots) == [T0, at_s(T0 + 0.105)]
    assert row(db)["next_ms"] == at_ms(NOW + 210)
    assert pacer.fetches == 2


@pytest.mark.parametrize(
    ("rate", "n", "interval"),
    [(10.0, 1, 105.0), (30.0, 1, 35.0), (60.0, 3, 17.5), (100.0, 5, 10.5), (0.5, 1, 2100.0)],
)
def test_a_fetch_takes_50_ms_of_slots_at_least_one(
    ledger: Callable[[], PostgresDatabase], loop: VirtualLoop, rate: float, n: int, interval: float
) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, rate, user="a")
    pacer._fetch(loop)
    assert list(pacer.slots) == [at_s(T0 + i * interval / 1000) for i in range(n)]
    assert row(db)["next_ms"] == at_ms(NOW + n * interval)


@pytest.mark.parametrize(
    ("next_ms", "pause_ms", "start"),
    [
        (NOW + 300, NOW + 200, NOW + 300),  # the next free slot
        (NOW + 200, NOW + 300, NOW + 300),  # a pause's end
        (NOW - 5000, NOW - 1000, NOW),  # both past: now
    ],
)
def test_a_fetch_starts_at_the_latest_of_the_next_slot_now_and_the_pause(
    ledger: Callable[[], PostgresDatabase], loop: VirtualLoop, next_ms: float, pause_ms: float, start: float
) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, 10.0, user="a")
    ledger().execute("UPDATE pacer SET next_ms = ?, pause_ms = ? WHERE channel = ?", (next_ms, pause_ms, CH))
    pacer._fetch(loop)
    assert list(pacer.slots) == [at_s(T0 + (start - NOW) / 1000)]
    assert row(db) == {
        "next_ms": at_ms(start + 105),
        "pause_ms": pause_ms,
        "rate": 10.0,
        "target": 10.0,
        "changed_ms": 0.0,
    }


def test_the_slots_are_turned_into_this_loops_time(
    ledger: Callable[[], PostgresDatabase], clock: Clock, loop: VirtualLoop
) -> None:
    """The database's clock and the loop's differ by EPOCH; a slot is an instant of the loop's."""
    db = ledger()
    pacer = SharedPacer(db, CH, 100.0, user="a")
    clock.set(T0 + 8)
    pacer._fetch(loop)
    assert list(pacer.slots) == [at_s(T0 + 8 + i * 0.0105) for i in range(5)]


def test_the_rate_recovers_by_a_quarter_a_second_after_the_last_change(
    ledger: Callable[[], PostgresDatabase], clock: Clock, loop: VirtualLoop
) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, 10.0, user="a")
    ledger().execute("UPDATE pacer SET rate = 5, changed_ms = ? WHERE channel = ?", (NOW - 1000, CH))
    seen = []
    for t in (0.0, 0.999, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0):
        clock.set(T0 + t)
        pacer._fetch(loop)
        found = row(db)
        seen.append((t, found["rate"], found["changed_ms"] - NOW, found["target"], pacer.current))
    assert seen == [
        (0.0, 6.25, 0.0, 10.0, 6.25),  # a second after the 429's change: 5 * 1.25
        (0.999, 6.25, 0.0, 10.0, 6.25),  # less than a second after the last change
        (1.0, 7.8125, 1000.0, 10.0, 7.8125),
        (1.5, 7.8125, 1000.0, 10.0, 7.8125),
        (2.0, 9.765625, 2000.0, 10.0, 9.765625),
        (3.0, 10.0, 3000.0, 10.0, 10.0),  # never past the target
        (4.0, 10.0, 3000.0, 10.0, 10.0),  # at the target: nothing changes
        (5.0, 10.0, 3000.0, 10.0, 10.0),
    ]


def test_a_slot_is_as_far_from_the_last_as_the_rate_of_its_fetch_says(
    ledger: Callable[[], PostgresDatabase], loop: VirtualLoop
) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, 10.0, user="a")
    ledger().execute("UPDATE pacer SET rate = 5, changed_ms = ?, next_ms = ? WHERE channel = ?", (NOW - 1000, NOW, CH))
    pacer._fetch(loop)  # 6.25 a second: 1.05 / 6.25 s = 168 ms a slot
    pacer._fetch(loop)
    assert list(pacer.slots) == [T0, at_s(T0 + 0.168)]
    assert row(db)["next_ms"] == at_ms(NOW + 336)


def test_a_worker_records_its_rate_once_a_second(
    ledger: Callable[[], PostgresDatabase], clock: Clock, loop: VirtualLoop
) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, 10.0, user="a")
    ledger().execute("UPDATE pacer SET rate = 5 WHERE channel = ?", (CH,))
    seen = []
    for t in (0.0, 0.5, 0.999, 1.0, 1.999, 2.0):
        clock.set(T0 + t)
        pacer._fetch(loop)
        seen.append((t, users(db), pacer.seen_ms - NOW))
    assert seen == [
        (0.0, [("a", 10.0, NOW)], 0.0),  # its own rate (the target), not the channel's current one
        (0.5, [("a", 10.0, NOW)], 0.0),
        (0.999, [("a", 10.0, NOW)], 0.0),
        (1.0, [("a", 10.0, NOW + 1000)], 1000.0),
        (1.999, [("a", 10.0, NOW + 1000)], 1000.0),
        (2.0, [("a", 10.0, NOW + 2000)], 2000.0),
    ]


def test_the_channel_goes_at_the_lowest_rate_of_the_workers_seen_in_the_last_minute(
    ledger: Callable[[], PostgresDatabase], clock: Clock, loop: VirtualLoop
) -> None:
    db = ledger()
    fast = SharedPacer(db, CH, 10.0, user="fast")
    slow = SharedPacer(ledger(), CH, 4.0, user="slow")
    slow._fetch(loop)
    assert row(db) == {"next_ms": at_ms(NOW + 262.5), "pause_ms": 0.0, "rate": 4.0, "target": 4.0, "changed_ms": 0.0}
    fast._fetch(loop)
    assert list(fast.slots) == [at_s(T0 + 0.2625)]  # 1.05 / 4 s after slow's slot
    assert (fast.current, row(db)["rate"], row(db)["target"]) == (4.0, 4.0, 4.0)
    assert users(db) == [("fast", 10.0, NOW), ("slow", 4.0, NOW)]
    clock.set(T0 + 59.999)
    fast._fetch(loop)
    assert (fast.current, row(db)["rate"], row(db)["target"]) == (4.0, 4.0, 4.0)
    clock.set(T0 + 60.0)  # slow was last seen a minute ago: it no longer counts
    fast._fetch(loop)
    assert (fast.current, row(db)["rate"], row(db)["target"]) == (5.0, 5.0, 10.0)
    assert row(db)["changed_ms"] == at_ms(NOW + 60_000)


# -- acquire -------------------------------------------------------------------------------------


def test_two_workers_share_one_rate_slot_after_slot(ledger: Callable[[], PostgresDatabase], loop: VirtualLoop) -> None:
    db = ledger()
    one = SharedPacer(db, CH, 10.0, user="a")
    two = SharedPacer(ledger(), CH, 10.0, user="b")
    starts: list[tuple[float, str]] = []

    async def take(pacer: SharedPacer, name: str) -> None:
        for _ in range(4):
            await pacer.acquire()
            starts.append((loop.time(), name))

    async def main() -> None:
        await asyncio.gather(take(one, "a"), take(two, "b"))

    run(loop, main())
    # 10 starts in any 1.05 s across both workers: each slot 105 ms after the one before, whoever has it
    assert starts == [
        (T0, "a"),
        (at_s(T0 + 0.105), "a"),
        (at_s(T0 + 0.210), "b"),
        (at_s(T0 + 0.315), "a"),
        (at_s(T0 + 0.420), "b"),
        (at_s(T0 + 0.525), "a"),
        (at_s(T0 + 0.630), "b"),
        (at_s(T0 + 0.735), "b"),
    ]
    assert (one.fetches, two.fetches, one.late, two.late) == (4, 4, 0, 0)
    assert row(db)["next_ms"] == at_ms(NOW + 840)


def test_acquire_returns_at_once_when_stopped(ledger: Callable[[], PostgresDatabase], loop: VirtualLoop) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, 10.0, user="a")
    pacer.stopped.set()
    run(loop, pacer.acquire())
    assert (loop.time(), pacer.fetches, list(pacer.slots), row(db)["next_ms"]) == (T0, 0, [], 0.0)


def test_a_slot_due_now_starts_without_yielding(ledger: Callable[[], PostgresDatabase], loop: VirtualLoop) -> None:
    """Nothing else runs between taking a slot that is due and the start: no 429 can come between."""
    pacer = SharedPacer(ledger(), CH, 10.0, user="a")
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    async def main() -> None:
        beside = asyncio.ensure_future(other())
        await pacer.acquire()
        order.append("start")
        await beside

    run(loop, main())
    assert order == ["start", "other"]
    assert (loop.time(), pacer.fetches) == (T0, 1)


def test_acquire_waits_for_its_slot(ledger: Callable[[], PostgresDatabase], loop: VirtualLoop) -> None:
    pacer = SharedPacer(ledger(), CH, 10.0, user="a")

    async def main() -> list[float]:
        times = []
        for _ in range(3):
            await pacer.acquire()
            times.append(loop.time())
        return times

    assert run(loop, main()) == [T0, at_s(T0 + 0.105), at_s(T0 + 0.210)]
    assert (pacer.fetches, pacer.late, list(pacer.slots)) == (3, 0, [])


def test_after_its_own_429_a_worker_starts_exactly_when_the_pause_ends(
    ledger: Callable[[], PostgresDatabase], loop: VirtualLoop
) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, 10.0, user="a")

    async def main() -> None:
        pacer.rate_limited(0.5)
        await pacer.acquire()

    run(loop, main())
    assert loop.time() == T0 + 0.5  # the slot fetched after the pause is the pause's end: not void
    assert (pacer.fetches, pacer.late, pacer.current) == (1, 0, 5.0)
    assert row(db)["next_ms"] == at_ms(NOW + 500 + 210)


def test_a_429_while_a_start_waits_voids_its_slot(ledger: Callable[[], PostgresDatabase], loop: VirtualLoop) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, 10.0, user="a")

    async def limited() -> None:
        await asyncio.sleep(0.0625)  # while the second start waits for T0 + 0.105
        pacer.rate_limited(1.0)

    async def main() -> list[float]:
        await pacer.acquire()
        times = [loop.time()]
        beside = asyncio.ensure_future(limited())
        await pacer.acquire()
        times.append(loop.time())
        await beside
        return times

    assert run(loop, main()) == [T0, T0 + 1.0625]
    assert (pacer.fetches, pacer.late, pacer.current) == (3, 0, 6.25)  # halved at +62.5 ms, raised a second later
    assert row(db)["next_ms"] == at_ms(NOW + 1062.5 + 168)


def test_a_slot_reached_late_is_dropped_for_a_fresh_one(
    ledger: Callable[[], PostgresDatabase], clock: Clock, loop: VirtualLoop
) -> None:
    """A busy loop (a callback that holds it) wakes a start after its slot: more than 10 ms late,
    the slot is void and the start takes the next free one."""
    pacer = SharedPacer(ledger(), CH, 10.0, user="a")

    async def main() -> list[float]:
        times = []
        await pacer.acquire()
        times.append(loop.time())
        loop.call_at(T0 + 0.0625, clock.set, T0 + 0.125)  # busy until 20 ms after the slot at T0 + 0.105
        await pacer.acquire()
        times.append(loop.time())
        loop.call_at(T0 + 0.25, clock.set, T0 + 0.34)  # 25 ms after the slot at T0 + 0.315
        await pacer.acquire()
        times.append(loop.time())
        return times

    assert run(loop, main()) == [T0, at_s(T0 + 0.21), at_s(T0 + 0.42)]
    assert (pacer.late, pacer.fetches) == (2, 5)


def test_a_slot_reached_exactly_10_ms_late_still_serves(
    ledger: Callable[[], PostgresDatabase], clock: Clock, loop: VirtualLoop
) -> None:
    pacer = SharedPacer(ledger(), CH, 10.0, user="a")
    clock.set(0.01)  # 0.01 - 0.0 is exactly LATE in floating point
    pacer.slots.append(0.0)
    run(loop, pacer.acquire())
    assert (loop.time(), pacer.late, pacer.fetches) == (0.01, 0, 0)
    clock.set(0.02)
    pacer.slots.append(0.0)
    run(loop, pacer.acquire())
    assert (loop.time(), pacer.late, pacer.fetches) == (0.02, 1, 1)


# -- rate_limited and succeeded ------------------------------------------------------------------


def test_a_429_by_one_worker_pauses_the_other_until_the_exact_end_and_halves_the_rate(
    ledger: Callable[[], PostgresDatabase], loop: VirtualLoop
) -> None:
    db = ledger()
    one = SharedPacer(db, CH, 10.0, user="a")
    two = SharedPacer(ledger(), CH, 10.0, user="b")

    async def main() -> None:
        await one.acquire()
        one.rate_limited(2.0)
        assert row(db) == {
            "next_ms": at_ms(NOW + 105),
            "pause_ms": NOW + 2000,
            "rate": 5.0,
            "target": 10.0,
            "changed_ms": NOW,
        }
        assert (one.pause_until, one.limited_in_a_row, list(one.slots)) == (T0 + 2.0, 1, [])
        await two.acquire()  # two saw no 429: the channel's row holds it back

    run(loop, main())
    assert loop.time() == T0 + 2.0
    assert (two.pause_until, two.limited_in_a_row, two.current, two.fetches) == (0.0, 0, 5.0, 1)
    assert row(db)["next_ms"] == at_ms(NOW + 2000 + 210)  # 5 a second after the pause


def test_the_rate_halves_at_most_once_a_second_and_a_pause_only_grows(
    ledger: Callable[[], PostgresDatabase], clock: Clock, loop: VirtualLoop
) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, 10.0, user="a")
    seen = []

    async def main() -> None:
        for t, retry_after in ((0.0, 2.0), (0.5, 0.5), (0.999, 1.5), (1.0, 0.25), (1.5, 3.0), (2.0, 0.0)):
            clock.set(T0 + t)
            pacer.rate_limited(retry_after)
            found = row(db)
            seen.append((t, found["rate"], found["changed_ms"] - NOW, found["pause_ms"] - NOW, pacer.pause_until - T0))

    run(loop, main())
    assert seen == [
        (0.0, 5.0, 0.0, 2000.0, 2.0),
        (0.5, 5.0, 0.0, 2000.0, 2.0),  # a shorter Retry-After does not end the pause sooner
        (0.999, 5.0, 0.0, at_ms(2499.0), at_s(2.499)),
        (1.0, 2.5, 1000.0, at_ms(2499.0), at_s(2.499)),
        (1.5, 2.5, 1000.0, 4500.0, 4.5),
        (2.0, 1.25, 2000.0, 4500.0, 4.5),
    ]
    assert pacer.limited_in_a_row == 6


@pytest.mark.parametrize(("target", "floor"), [(10.0, 0.2), (0.3, 0.2), (0.1, 0.1)])
def test_the_halved_rate_stops_at_a_floor(
    ledger: Callable[[], PostgresDatabase], clock: Clock, loop: VirtualLoop, target: float, floor: float
) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, target, user="a")

    async def main() -> None:
        for t in range(12):
            clock.set(T0 + t)
            pacer.rate_limited(0.0)

    run(loop, main())
    assert row(db)["rate"] == floor


def test_retry_after_none_pauses_for_a_backoff_draw_and_a_long_one_for_the_cap(
    ledger: Callable[[], PostgresDatabase], clock: Clock, loop: VirtualLoop
) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, 10.0, user="a", backoff_base=0.25)
    pacer.rng = random.Random(7)
    draws = random.Random(7)
    first, second = draws.uniform(0, 0.25), draws.uniform(0, 0.5)  # full jitter: 0.25 * 2 ** (n - 1)

    async def main() -> None:
        pacer.rate_limited(None)
        assert (pacer.limited_in_a_row, pacer.pause_until) == (1, T0 + first)
        assert row(db)["pause_ms"] == at_ms(NOW + first * 1000)
        clock.set(T0 + 8)
        pacer.rate_limited(None)
        assert (pacer.limited_in_a_row, pacer.pause_until) == (2, T0 + 8 + second)
        assert row(db)["pause_ms"] == at_ms(NOW + 8000 + second * 1000)
        clock.set(T0 + 16)
        pacer.rate_limited(3600.0)  # capped at backoff_cap, 60 s
        assert (pacer.limited_in_a_row, pacer.pause_until) == (3, T0 + 16 + 60)
        assert row(db)["pause_ms"] == NOW + 16_000 + 60_000

    run(loop, main())


def test_an_answer_resets_the_backoff_and_leaves_the_rate_to_the_next_fetches(
    ledger: Callable[[], PostgresDatabase], clock: Clock, loop: VirtualLoop
) -> None:
    db = ledger()
    pacer = SharedPacer(db, CH, 10.0, user="a")
    pacer.rng = random.Random(3)
    draws = random.Random(3)

    async def main() -> None:
        pacer.rate_limited(0.0)
        pacer.rate_limited(0.0)
        assert pacer.limited_in_a_row == 2
        pacer.succeeded()
        assert pacer.limited_in_a_row == 0
        assert (row(db)["rate"], pacer.current) == (5.0, 10.0)  # the fetches raise it, not an answer
        clock.set(T0 + 8)
        pacer.rate_limited(None)  # the first 429 in a row again: a draw up to 1 s, not 2 s
        assert pacer.pause_until == T0 + 8 + draws.uniform(0, 1.0)
        clock.set(T0 + 16)
        pacer._fetch(loop)
        assert (row(db)["rate"], pacer.current) == (3.125, 3.125)

    run(loop, main())
