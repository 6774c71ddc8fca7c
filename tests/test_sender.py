"""The worker pool (campaign.sender) in this process: its stops and their sentences, the
backoff and the 429 slow-down, over real HTTP against the sandbox or a real socket server.

The child-process tests (test_stops) show the same stops as a user sees them; these run the
pool in-process, so each decision of the pool is pinned where it is made.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from campaign.api import SociocsClient
from campaign.config import Sending
from campaign.sandbox import Faults, Sandbox, SandboxConfig
from campaign.sender import Job, Pacer, Sender
from campaign.state import State, Status
from tests.conftest import KEY
from tests.test_faults import per_number

T = TypeVar("T")


def keys(n: int) -> list[str]:
    return [f"+1617555{i:04d}" for i in range(n)]


Rows = dict[str, tuple[str, str]]  # key -> (status, error) in the state file


def rows_of(state: State) -> Rows:
    return {r["key"]: (status.value, r["error"]) for status in Status for r in state.by_status(status)}


async def pool(
    url: str,
    sending: Sending,
    n: int,
    *,
    seed: int | None = None,
    watch: Callable[[Sender, State], Awaitable[None]] | None = None,
    **options: Any,
) -> tuple[Sender, dict[str, int], Rows]:
    """Rows 0..n-1 through a Sender against ``url``: the sender, the journal's counts and each
    row's status and error once it closed. ``seed`` seeds the pacer's backoff draws; ``watch``
    runs beside the pool, and is waited for."""
    state = State(":memory:")
    try:
        with state.transaction():
            state.add_recipients([(k, k, i + 2, "h", "m") for i, k in enumerate(keys(n))])
        async with SociocsClient(url, KEY, timeout=5, connections=sending.concurrency) as client:
            sender = Sender(client, state, sending, **{"backoff_base": 0.01, **options})
            if seed is not None:
                sender.pacer.rng = random.Random(seed)
            watcher = asyncio.ensure_future(watch(sender, state)) if watch else None
            await sender.start()
            for i, key in enumerate(keys(n)):
                body = {"provider": "twlo", "channel_key": "twlo_16175550000", "to": key, "text": "x"}
                if not await sender.put(Job(key, i + 2, json.dumps(body).encode(), "h", "m", False)):
                    break
            await asyncio.wait_for(sender.close(), 20)  # a stop that never comes fails here
            if watcher is not None:
                await asyncio.wait_for(watcher, 20)
        return sender, state.journal_counts(), rows_of(state)
    finally:
        state.close()


def test_a_stop_while_a_rows_mark_is_committed_sends_nothing_and_says_so() -> None:
    """The run stops in the moment between a row's write-ahead mark (``sending``) and its
    request: no request goes, and the row is recorded ``pending``, "not sent, the run stopped",
    not left ``sending`` (which a later run would call unknown)."""

    async def stop_once_marked(sender: Sender, state: State) -> None:
        write = state.write

        def write_then_stop(outcomes: Any, marks: Any, **kw: Any) -> set[str]:
            refused = write(outcomes, marks, **kw)
            if marks:
                sender.stop()
            return refused

        state.write = write_then_stop  # type: ignore[method-assign]

    async def main() -> tuple[Sender, dict[str, int], Rows, Sandbox]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            sending = Sending(rate=0, concurrency=1, max_attempts=3)
            return (*await pool(box.url, sending, 3, watch=stop_once_marked), box)

    sender, journal, rows, box = asyncio.run(main())
    assert (box.requests, sender.requests, sender.stop_reason) == ([], 0, None)
    assert rows[keys(1)[0]] == ("pending", "not sent, the run stopped")
    assert journal == {"pending": 3}


def test_errors_in_a_row_stop_at_the_limit_with_the_count_and_the_last_error() -> None:
    """A 500 may have sent the message: never retried, counted; the third in a row stops."""

    async def main() -> tuple[Sender, dict[str, int], Rows, Sandbox]:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(error_500=1.0))) as box:
            sending = Sending(rate=0, concurrency=1, max_attempts=3, max_consecutive_errors=3)
            return (*await pool(box.url, sending, 6), box)

    sender, journal, _, box = asyncio.run(main())
    assert sender.stop_reason == "3 requests in a row failed (last: Internal server error. Try again later.)"
    assert journal == {"unknown": 3, "pending": 3}
    assert per_number(box) == Counter({k: 1 for k in keys(3)})
    assert sender.requests == 3


def test_an_answer_between_errors_starts_the_count_again() -> None:
    """Two 503s exhaust row 1's two attempts (counted once), row 2 is accepted, and then it
    takes two more failed rows to reach the limit of two."""

    async def main() -> tuple[Sender, dict[str, int], Rows, Sandbox]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            sending = Sending(rate=0, concurrency=1, max_attempts=2, max_consecutive_errors=2)

            def flip(outcome: Any) -> None:  # 503s, then one success, then 503s again
                box.config.faults = Faults(error_503=0.0 if outcome.key == keys(1)[0] else 1.0)

            box.config.faults = Faults(error_503=1.0)
            return (*await pool(box.url, sending, 6, on_outcome=flip), box)

    sender, journal, _, box = asyncio.run(main())
    assert sender.stop_reason == "2 requests in a row failed (last: Service unavailable. Try again later.)"
    assert journal == {"failed": 3, "sent": 1, "pending": 2}
    assert per_number(box) == Counter({keys(4)[0]: 2, keys(4)[1]: 1, keys(4)[2]: 2, keys(4)[3]: 2})
    assert sender.requests == 7  # the summary's count: every attempt


def test_a_refused_row_also_starts_the_count_again() -> None:
    """A 400 for one row (a blocked contact) is an answer: the errors before it no longer count
    towards the limit, and it is progress for the rate-limit patience."""

    async def main() -> tuple[Sender, dict[str, int], Rows]:
        faults = Faults(error_500=1.0, blocked=frozenset({keys(2)[1]}))
        async with Sandbox(SandboxConfig(api_key=KEY, faults=faults)) as box:
            sending = Sending(rate=0, concurrency=1, max_attempts=3, max_consecutive_errors=2)
            return await pool(box.url, sending, 5)

    sender, journal, rows = asyncio.run(main())
    assert sender.stop_reason == "2 requests in a row failed (last: Internal server error. Try again later.)"
    assert journal == {"unknown": 3, "failed": 1, "pending": 1}
    assert rows[keys(2)[1]] == ("failed", "Contact is blocked.")

    async def limited() -> tuple[Sender, dict[str, int], Rows]:
        faults = Faults(rate_limit=0.001, blocked=frozenset({keys(1)[0]}))
        async with Sandbox(SandboxConfig(api_key=KEY, faults=faults)) as box:
            async with SociocsClient(box.url, KEY, timeout=5, connections=1) as client:  # takes the one token
                body = {"provider": "twlo", "channel_key": "twlo_16175550000", "to": "+16175559999", "text": "x"}
                assert (await client.send(json.dumps(body).encode())).http_status == 200
            return await pool(box.url, Sending(rate=0, concurrency=1), 2, rate_limit_patience=0.3, backoff_base=0.05)

    sender, journal, rows = asyncio.run(limited())
    assert sender.stop_reason == "the API kept answering 429 (rate limit) for 0 s"
    assert journal == {"failed": 1, "pending": 1}


async def _accept_once_then_refuse() -> tuple[asyncio.Server, str]:
    """A real HTTP server that answers one request (accepted), having stopped listening when it
    arrived: every later connection is refused."""
    answer = json.dumps({"status": "success", "data": {"message_id": "SM1"}}).encode()

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.close()  # no new connections from now on; this one is answered
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(answer)}\r\n\r\n".encode()
            + answer
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(once, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_an_api_gone_after_some_sends_stops_with_the_rest_pending() -> None:
    """Row 1 is accepted; then nobody listens. Row 2's two connects fail (nothing was written,
    so it is pending, saying why), with the seeded backoff between them; the run stops."""

    async def main() -> tuple[Sender, dict[str, int], Rows, str, float]:
        server, url = await _accept_once_then_refuse()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            sending = Sending(rate=0, concurrency=1, max_attempts=2)
            return (*await pool(url, sending, 4, seed=3, backoff_base=0.5), url, loop.time() - started)
        finally:
            await server.wait_closed()

    sender, journal, rows, url, took = asyncio.run(main())
    assert sender.stop_reason == f"cannot reach the API at {url} (connection refused); the rows not sent stay pending"
    assert journal == {"sent": 1, "pending": 3}
    assert rows[keys(2)[1]] == ("pending", "not sent: connection refused")
    assert sender.requests == 3  # one answered, two that found nobody listening
    assert took >= random.Random(3).uniform(0, 0.5)  # the backoff before the second connect was waited


def test_a_retry_that_never_succeeds_gives_up_after_max_attempts() -> None:
    """503 says "not processed": retried, with the backoff between attempts, up to
    max_attempts; then the row is failed, saying how many attempts it took."""

    async def main() -> tuple[Sender, dict[str, int], Rows, Sandbox]:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(error_503=1.0))) as box:
            sending = Sending(rate=0, concurrency=1, max_attempts=3, max_consecutive_errors=50)
            return (*await pool(box.url, sending, 2, seed=5, backoff_base=0.5), box)

    sender, journal, rows, box = asyncio.run(main())
    assert sender.pacer.backoff_base == 0.5  # the run's backoff reaches the pacer
    assert sender.stop_reason is None and journal == {"failed": 2}
    assert set(rows.values()) == {("failed", "gave up after 3 attempts: Service unavailable. Try again later.")}
    assert per_number(box) == Counter({k: 3 for k in keys(2)})
    draws = random.Random(5)
    for key in keys(2):  # each row's attempts are the backoff apart, at least (n-th wait: up to 0.5 * 2**(n-1))
        at = [r.at for r in box.requests if r.to == key]
        for n, (before, after) in enumerate(itertools.pairwise(at), start=1):
            assert after - before >= draws.uniform(0, 0.5 * 2 ** (n - 1)), (key, n)


def test_a_row_waiting_out_a_429_is_pending_in_the_state_saying_why() -> None:
    """While row 2 waits out Retry-After, the state file has it pending "waiting to retry"
    (so a kill then leaves it pending, not unknown); stopped during the wait, it is pending
    "not sent, the run stopped", and never sent again. The stop does not wait out the pause
    (60 s here): `pool` allows the close 20 s."""
    seen: list[tuple[str, str]] = []

    async def watch(sender: Sender, state: State) -> None:
        while not (row := rows_of(state)[keys(2)[1]])[1]:  # pending, and no error yet: not tried
            await asyncio.sleep(0.01)  # polls the state file for the journal's next commit
        seen.append(row)
        sender.stop()

    async def main() -> tuple[Sender, dict[str, int], Rows, Sandbox]:
        faults = Faults(rate_limit=0.001, retry_after=60)
        async with Sandbox(SandboxConfig(api_key=KEY, faults=faults)) as box:
            return (*await pool(box.url, Sending(rate=0, concurrency=1), 3, watch=watch), box)

    _, journal, rows, box = asyncio.run(main())
    assert seen == [("pending", "waiting to retry: Rate limit reached.")]
    assert journal == {"sent": 1, "pending": 2}
    assert rows[keys(2)[1]] == ("pending", "not sent, the run stopped")
    # Row 3 never tried; row 2 answered 429 once.
    assert per_number(box) == Counter({keys(2)[0]: 1, keys(2)[1]: 1}) and len(box.accepted) == 1


def test_a_stop_during_a_retry_backoff_ends_it() -> None:
    """A 503's backoff (here a seeded draw of about 50 s) is not waited out once the run stops:
    the row is pending "not sent, the run stopped", asked once."""
    draw = random.Random(11).uniform(0, min(60.0, 100.0))
    assert draw > 25  # the seed gives a wait longer than `pool` allows the close (20 s)

    async def watch(sender: Sender, state: State) -> None:
        while not rows_of(state)[keys(1)[0]][1]:
            await asyncio.sleep(0.01)
        sender.stop()

    async def main() -> tuple[Sender, dict[str, int], Rows, Sandbox]:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(error_503=1.0))) as box:
            sending = Sending(rate=0, concurrency=1, max_attempts=3)
            return (*await pool(box.url, sending, 1, seed=11, backoff_base=100.0, watch=watch), box)

    _, journal, rows, box = asyncio.run(main())
    assert journal == {"pending": 1}
    assert rows[keys(1)[0]] == ("pending", "not sent, the run stopped")
    assert per_number(box) == Counter({keys(1)[0]: 1})


def test_429s_past_the_patience_stop_with_the_row_pending_saying_why() -> None:
    async def main() -> tuple[Sender, dict[str, int], Rows]:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(rate_limit=0.001))) as box:
            sending = Sending(rate=0, concurrency=1)
            return await pool(box.url, sending, 3, rate_limit_patience=0.3, backoff_base=0.05)

    sender, journal, rows = asyncio.run(main())
    assert sender.stop_reason == "the API kept answering 429 (rate limit) for 0 s"
    assert journal == {"sent": 1, "pending": 2}
    assert rows[keys(2)[1]] == ("pending", "not sent, the run stopped: Rate limit reached.")


def test_429s_from_the_first_request_on_also_run_out_of_patience() -> None:
    """No request of the run ever got through: the patience counts from the start."""

    async def main() -> tuple[Sender, dict[str, int], Rows, Sandbox]:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(rate_limit=0.001))) as box:
            async with SociocsClient(box.url, KEY, timeout=5, connections=1) as client:  # takes the one token
                body = {"provider": "twlo", "channel_key": "twlo_16175550000", "to": "+16175559999", "text": "x"}
                assert (await client.send(json.dumps(body).encode())).http_status == 200
            sending = Sending(rate=0, concurrency=1)
            return (*await pool(box.url, sending, 2, rate_limit_patience=0.3, backoff_base=0.05), box)

    sender, journal, rows, box = asyncio.run(main())
    assert sender.stop_reason == "the API kept answering 429 (rate limit) for 0 s"
    assert journal == {"pending": 2} and len(box.accepted) == 1
    assert rows[keys(1)[0]] == ("pending", "not sent, the run stopped: Rate limit reached.")


def _broken_state_run(close_state_when: str) -> tuple[str | None, int]:
    """One row through a pool whose state file is closed ``"before"`` the first mark, or
    ``"after"`` the first outcome (so only its commit fails); the stop reason, and how many
    messages the sandbox accepted."""

    async def main() -> tuple[str | None, int]:
        state = State(":memory:")
        with state.transaction():
            state.add_recipients([(k, k, i + 2, "h", "m") for i, k in enumerate(keys(1))])
        async with (
            Sandbox(SandboxConfig(api_key=KEY)) as box,
            SociocsClient(box.url, KEY, timeout=5, connections=1) as client,
        ):
            sender = Sender(client, state, Sending(rate=0, concurrency=1), on_outcome=lambda _: state.close())
            await sender.start()
            if close_state_when == "before":
                state.close()
            body = {"provider": "twlo", "channel_key": "twlo_16175550000", "to": keys(1)[0], "text": "x"}
            await sender.put(Job(keys(1)[0], 2, json.dumps(body).encode(), "h", "m", False))
            if close_state_when == "after":  # the journal's timer commits first, and fails; close's again
                while sender.journal.error is None:
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(sender.close(), 20)
            return sender.stop_reason, len(box.accepted)

    return asyncio.run(main())


def test_a_state_file_that_cannot_be_written_stops_the_run_saying_so() -> None:
    """The write-ahead mark fails: nothing is sent, and the worker's error is the reason. Or
    only the last outcome's commit fails (at close): the reason says the state file."""
    closed = "Cannot operate on a closed database."
    assert _broken_state_run("before") == (f"internal error: ProgrammingError: {closed}", 0)
    assert _broken_state_run("after") == (f"internal error: cannot write the state file: {closed}", 1)


def test_the_first_stop_reason_is_kept_and_a_stopping_pool_takes_no_row() -> None:
    """A FATAL answer stops the run with its reason; a later stop (the user's Ctrl-C, a second
    worker's error) must not replace the reason the summary shows."""

    async def main() -> list[str | None]:
        async with SociocsClient("http://127.0.0.1:9", KEY, timeout=1, connections=1) as client:
            sender = Sender(client, State(":memory:"), Sending(rate=0, concurrency=1))
            job = Job("+16175550000", 2, b"{}", "h", "Hi", False)
            assert await sender.put(job) and sender.queue.qsize() == 1  # not started: it waits there
            seen = [sender.stop_reason]
            sender.stop()
            # Once stopping, the pool takes no more: the caller leaves the row pending.
            assert not await sender.put(job) and sender.queue.qsize() == 1
            seen.append(sender.stop_reason)
            sender.stop("first")
            sender.stop("second")
            sender.stop()
            return [*seen, sender.stop_reason, str(sender.stopping)]

    assert asyncio.run(main()) == [None, None, "first", "True"]


# --- the pacer: backoff and the 429 slow-down, on a loop whose clock the test sets ------------


class FrozenLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is whatever the test says (no sleeping on it)."""

    now = 1000.0

    def time(self) -> float:
        return self.now


def on_frozen_loop(coro: Coroutine[Any, Any, T]) -> T:
    loop = FrozenLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_backoff_is_full_jitter_doubling_up_to_the_cap() -> None:
    """The n-th consecutive failure waits uniform(0, min(cap, base * 2**(n-1))) seconds
    (AWS Architecture Blog, "Exponential Backoff And Jitter", full jitter)."""
    pacer = Pacer(0, backoff_base=0.5, backoff_cap=6.0)
    pacer.rng = random.Random(11)
    for n, bound in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 6.0), (9, 6.0)]:
        draws = [pacer.backoff(n) for _ in range(300)]
        assert 0 <= min(draws) < 0.05 * bound and 0.95 * bound < max(draws) <= bound, (n, min(draws), max(draws))


def test_429s_in_a_row_count_up_and_an_answer_resets_them() -> None:
    async def main() -> list[int]:
        pacer = Pacer(0, backoff_base=0.01)
        seen = []
        for _ in range(3):
            pacer.rate_limited(None)
            seen.append(pacer.limited_in_a_row)
        pacer.succeeded()
        return [*seen, pacer.limited_in_a_row]

    assert on_frozen_loop(main()) == [1, 2, 3, 0]


def test_the_rate_halves_at_most_once_a_second_and_recovers_a_quarter_a_second() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, FrozenLoop)
        pacer = Pacer(100)
        seen = []

        def at(t: float, event: str) -> None:
            loop.now = t
            pacer.rate_limited(0.1) if event == "429" else pacer.succeeded()
            seen.append(pacer.current)

        at(1000.0, "429")  # 50
        at(1000.5, "429")  # within the second: still 50
        at(1001.0, "429")  # a second later exactly: 25
        at(1001.5, "ok")  # within the second: still 25
        for t in range(1002, 1010):  # each second a quarter more: 31.25, 39.06... then the target
            at(t, "ok")
        at(1010.0, "ok")  # at the target: nothing changes, not even the time of the last change
        at(1010.5, "429")  # so a 429 half a second later still halves it
        return seen

    rising = [25 * 1.25**k for k in range(1, 7)]  # 31.25 ... 95.37
    assert on_frozen_loop(main()) == [50, 50, 25, 25, *rising, 100, 100, 100, 50]


async def _started_at(pacer: Pacer, step: float, events: dict[float, Callable[[], None]] | None = None) -> float:
    """Run ``pacer.acquire()`` on the frozen loop, moving its clock on by ``step`` seconds at a
    time (``events``: what happens at which offset from the start); the offset at which the
    request may start."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, FrozenLoop)
    start, pending = loop.now, dict(events or {})
    task = asyncio.create_task(pacer.acquire())
    for _ in range(2000):
        for _ in range(5):
            await asyncio.sleep(0)
        if task.done():
            return round(loop.now - start, 6)
        loop.now += step
        for at in [at for at in pending if loop.now - start >= at - 1e-9]:
            pending.pop(at)()
    raise AssertionError("the request never started")


def test_no_request_starts_inside_a_429_pause_however_short_or_lengthened() -> None:
    """A pause shorter than a second is waited out too; a 429 that lengthens the pause while a
    worker sleeps through it is waited out as well (no pacing: rate 0); and with pacing, a 429
    that comes while a worker waits for its token (the rate just halved, so not halved again)
    sends that worker back to the pause."""

    async def main() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, FrozenLoop)
        short = Pacer(0)
        short.pause_until = loop.now + 0.5
        after_short = await _started_at(short, 0.05)
        longer = Pacer(0)
        longer.pause_until = loop.now + 0.5
        after_longer = await _started_at(longer, 0.05, {0.25: lambda: longer.rate_limited(2.0)})  # to 2.25
        paced = Pacer(1)
        paced.rate_limited(0.0)  # the rate halves to 0.5 a second: a token every 2 s, no pause
        await paced.acquire()  # the bucket's one token
        after_token = await _started_at(paced, 0.05, {0.5: lambda: paced.rate_limited(3.0)})  # to 3.5
        return after_short, after_longer, after_token

    after_short, after_longer, after_token = on_frozen_loop(main())
    assert 0.5 <= after_short <= 0.55
    assert 2.25 <= after_longer <= 2.3
    assert 3.5 <= after_token <= 4.2  # not inside the pause; then the next token (every 2 s, from 2.0)


def test_the_start_log_keeps_every_one_second_window_at_the_rate() -> None:
    """At 2 a second the bucket gives a token every 0.5 s, so a third start would come exactly
    one second after the first; the log of the last two starts holds it until that one is
    ``WINDOW`` (1.01 s) old, and so on: never more than 2 starts in any one-second window, and
    no start later than the log requires."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, FrozenLoop)
        pacer, start, starts = Pacer(2), loop.now, []
        for _ in range(5):
            await _started_at(pacer, 0.001)
            starts.append(round(loop.now - start, 6))
        return starts

    starts = on_frozen_loop(main())
    # each as soon as both allow it (the frozen clock moves 1 ms at a time)
    assert all(due <= got <= due + 0.003 for due, got in zip([0.0, 0.5, 1.01, 1.51, 2.02], starts, strict=True)), starts
    assert all(later - first >= Pacer.WINDOW for first, later in zip(starts, starts[2:], strict=False))


def test_a_429_pause_is_capped_and_the_rate_never_drops_below_its_floor() -> None:
    """Retry-After beyond the cap (60 s) pauses for the cap; halving stops at 0.2 a second
    (or the configured rate, when that is lower)."""

    async def main() -> tuple[float, list[float], float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, FrozenLoop)
        pacer = Pacer(10)
        pacer.rate_limited(3600.0)
        paused = pacer.pause_until - loop.now
        rates = []
        for _ in range(7):
            loop.now += 1.0
            pacer.rate_limited(0.0)
            rates.append(pacer.current)
        slow = Pacer(0.1)
        slow.rate_limited(0.0)
        return paused, rates, slow.current

    paused, rates, slow = on_frozen_loop(main())
    assert paused == 60.0
    assert rates == [2.5, 1.25, 0.625, 0.3125, 0.2, 0.2, 0.2]
    assert slow == 0.1
