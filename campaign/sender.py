"""The worker pool: paced, retried, journaled sending of prepared requests.

One :class:`Sender` owns everything concurrent: the bounded job queue, ``concurrency`` worker
tasks, the :class:`Pacer` (aiolimiter), the :class:`Journal` (group commits to the state file),
the counters and the stop flag. Its life: ``start()``, ``put(job)`` for each job, ``close()``.

The order inside a worker is what makes a crash lose nothing and send nothing twice:

1. wait for the pacer (so a row is not marked while it could still wait minutes);
2. ``journal.mark(job)``: the row is committed as ``sending`` (group commit, shared with every
   worker that got here in the same loop tick, and carrying the outcomes of their previous rows);
3. POST, retrying only what certainly was not processed (429, 503, failed connect);
   a connection that cannot be made at all stops the run with the row ``pending``;
4. ``journal.record(outcome)``: written with the next group commit, at most 100 ms later.

So at any moment at most ``concurrency`` rows are ``sending`` in the file, and a kill leaves at
most that many ``unknown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiolimiter import AsyncLimiter

from campaign import timing
from campaign.api import Reply, SociocsClient, Verdict
from campaign.config import Sending
from campaign.errors import count
from campaign.state import Outcome, State, Status


@dataclass(frozen=True, slots=True)
class Job:
    """One request ready to go: the recipient's key, its row and the encoded body."""

    key: str
    row: int
    body: bytes
    payload_hash: str
    message: str
    scheduled: bool
    content: str = ""  # the content fields as JSON (text, media, template): what reconcile compares
    zones: tuple[str, ...] = ()  # the recipient's time zones, when [schedule] needs them (campaign.timing)
    note: str = ""  # what the row's schedule had to decide (a DST gap, a past send_at): kept with its outcome
    schedule_at: str = ""  # the request's ``schedule`` (ISO 8601), '' when it goes at once


async def nap(seconds: float, stopped: asyncio.Event) -> None:
    """Sleep ``seconds`` (a 429's pause, a retry's backoff), or until ``stopped`` is set: a stop
    must not wait out a pause of up to a minute."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopped.wait(), seconds)


class Pacer:
    """At most ``rate`` request starts in any one-second window; slows down after a 429.

    Two parts, because neither alone does the job:

    * an aiolimiter leaky bucket, ``AsyncLimiter(burst, burst / rate)``, spreads starts at
      ``rate`` per second. Its bucket holds ``burst`` tokens; the default ``AsyncLimiter(rate, 1)``
      would hold a whole second's worth and let ``2 x rate`` through in one second after an idle
      spell. A bucket of one token never bursts but loses a little time on every late wake-up
      (measured: -13 % at 200/s on a busy loop, bench/RESULTS.md), so the bucket holds 50 ms
      worth of tokens: late wake-ups are made up, and the burst is bounded by
    * a log of the last ``rate`` start times: a start waits until the oldest of them is more
      than a second (plus 1 % for arrival jitter at the server) old. That makes "never more than
      ``rate`` in any one-second window" hold exactly, whatever the bucket does.

    A 429 pauses every worker (``Retry-After`` when given, else full-jitter exponential backoff)
    and halves the rate; each second without a 429 raises it by a quarter until it is back at
    the configured rate. ``rate == 0`` means no pacing at all (benchmarks, the sandbox).
    """

    WINDOW = 1.01  # seconds the start log guards: one second plus jitter at the server
    BURST = 0.05  # seconds of tokens the bucket holds

    def __init__(self, rate: float, *, backoff_base: float = 1.0, backoff_cap: float = 60.0) -> None:
        self.target = rate
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.floor = min(rate, 0.2) if rate else 0.0
        self.pause_until = 0.0
        self.last_change = 0.0
        self.limited_in_a_row = 0
        self.rng = random.Random()
        self.starts: deque[float] = deque()
        self.stopped = asyncio.Event()  # set by Sender.stop: waits end, nothing more starts
        self._set_rate(rate)

    def _set_rate(self, rate: float) -> None:
        self.current = rate
        if not rate:
            self.limiter: AsyncLimiter | None = None
            return
        burst = max(1.0, rate * self.BURST)
        self.limiter = AsyncLimiter(burst, burst / rate)
        self.cap = max(1, int(rate + 1e-9))
        self.starts = deque(self.starts, maxlen=self.cap)

    async def paused(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Sleep out a 429's pause if one is on, or until the run stops (a pause lasts up to
        ``backoff_cap`` seconds: a stop must not wait it out); True when it slept (look again)."""
        wait = self.pause_until - loop.time()
        if wait > 0:
            await nap(wait, self.stopped)
            return True
        return False

    async def acquire(self) -> None:
        """Wait until this request may start, or the run stops (then the caller, seeing the
        stop, sends nothing)."""
        loop = asyncio.get_running_loop()
        while not self.stopped.is_set():
            if await self.paused(loop):
                continue
            limiter = self.limiter
            if limiter is None:
                return
            await limiter.acquire()
            if limiter is not self.limiter or loop.time() < self.pause_until:
                continue  # the rate changed or a 429 paused us while we waited
            while len(self.starts) == self.cap and (wait := self.starts[0] + self.WINDOW - loop.time()) > 0:
                await asyncio.sleep(wait)
            self.starts.append(loop.time())
            return

    def backoff(self, n: int) -> float:
        """Full-jitter exponential backoff for the n-th consecutive failure (n >= 1)."""
        return self.rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (n - 1)))

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429 came back: pause everyone, and slow down once per pause."""
        now = asyncio.get_running_loop().time()
        self.limited_in_a_row += 1
        delay = retry_after if retry_after is not None else self.backoff(self.limited_in_a_row)
        self.pause_until = max(self.pause_until, now + min(delay, self.backoff_cap))
        if self.target and now - self.last_change >= 1.0:
            self._set_rate(max(self.floor, self.current / 2))
            self.last_change = now

    def succeeded(self) -> None:
        """A request got through: recover the rate step by step."""
        self.limited_in_a_row = 0
        if self.target and self.current < self.target:
            now = asyncio.get_running_loop().time()
            if now - self.last_change >= 1.0:
                self._set_rate(min(self.target, self.current * 1.25))
                self.last_change = now


class Journal:
    """Group commits to the state file: write-ahead marks and outcomes, batched.

    ``mark()`` returns once the row is committed as ``sending``; every mark made in the same
    loop tick shares one transaction. ``record()`` buffers an outcome; it is committed with the
    next mark or after ``interval`` seconds, whichever comes first.
    """

    def __init__(self, state: State, interval: float = 0.1, *, owner: str | None = None) -> None:
        self.state = state
        self.interval = interval
        self.owner = owner  # a worker's id: marks only rows it holds the lease of (campaign.workers)
        self.refused: set[str] = set()  # rows whose lease this worker lost: never sent by it
        self.outcomes: list[Outcome] = []
        self.marks: list[tuple[str, str, str, str, str]] = []
        self._commit: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.commits = 0
        self.error: Exception | None = None  # the first failed commit; the journal is broken

    async def mark(self, job: Job) -> bool:
        """Commit the row as ``sending``; False when this worker no longer holds its lease."""
        self.marks.append((job.key, job.payload_hash, job.message, job.content, job.schedule_at))
        if self._commit is None:
            loop = asyncio.get_running_loop()
            self._commit = loop.create_future()
            loop.call_soon(self.flush)
        await asyncio.shield(self._commit)
        return job.key not in self.refused

    def record(self, outcome: Outcome) -> None:
        if self.error is not None:
            raise self.error
        self.outcomes.append(outcome)
        if self._timer is None and self._commit is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Commit everything buffered now (also called on shutdown, synchronously).

        A failed commit is kept in ``error`` and raised to the next caller of ``mark``,
        ``record`` or ``flush``; its outcomes stay buffered, so their rows stay ``sending``
        in the file (and so ``unknown`` later), never silently lost.
        """
        commit, self._commit = self._commit, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        outcomes, self.outcomes = self.outcomes, []
        marks, self.marks = self.marks, []
        try:
            if self.error is not None:
                raise self.error
            if outcomes or marks:
                self.refused |= self.state.write(outcomes, marks, owner=self.owner)
                self.commits += 1
        except Exception as err:
            self.error = err
            self.outcomes = outcomes + self.outcomes
            if commit is not None and not commit.done():
                commit.set_exception(err)
            return
        if commit is not None and not commit.done():
            commit.set_result(None)


class _LeaseLost(Exception):
    """A worker's lease on a row it waited to retry expired, and another worker took it."""


class Sender:
    """The pool: ``concurrency`` workers over a bounded queue, one pacer, one journal."""

    def __init__(
        self,
        client: SociocsClient,
        state: State,
        sending: Sending,
        *,
        backoff_base: float = 1.0,
        rate_limit_patience: float = 900.0,
        on_outcome: Callable[[Outcome], None] | None = None,
        gate: timing.Gate | None = None,
        pacer: Pacer | None = None,
        owner: str | None = None,
        on_hold: Callable[[Job, timing.Hold], None] | None = None,
    ) -> None:
        self.client = client
        self.sending = sending
        self.journal = Journal(state, owner=owner)
        self.pacer = pacer or Pacer(sending.rate, backoff_base=backoff_base)
        # Workers (campaign.workers): a held row goes back to the shared pool instead of memory.
        self.on_hold = on_hold
        self.queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=4 * sending.concurrency)
        self.on_outcome = on_outcome
        self.rate_limit_patience = rate_limit_patience
        self.workers: list[asyncio.Task[None]] = []
        self.requests = 0
        self.maybe_sent = 0  # answers that say, or may mean, the API took the message
        self.rate_limited = 0
        self.consecutive_errors = 0
        self.stop_reason: str | None = None  # set when the API made further sending pointless
        self.stopping = False
        self.failure: Exception | None = None  # the first unexpected error of a worker
        self.last_progress = 0.0
        self.gate = gate
        self.held: dict[str, tuple[timing.Hold, Job]] = {}  # rows waiting for their window or the daily limit

    async def start(self) -> None:
        self.last_progress = asyncio.get_running_loop().time()
        self.workers = [asyncio.create_task(self._worker()) for _ in range(self.sending.concurrency)]

    async def put(self, job: Job) -> bool:
        """Hand a job to the pool; False once the pool is stopping (the job stays pending)."""
        if self.stopping:
            return False
        await self.queue.put(job)
        return True

    def stop(self, reason: str | None = None) -> None:
        """Stop handing out rows; requests in flight finish. ``reason`` marks an API stop."""
        self.stopping = True
        self.pacer.stopped.set()  # the run's one stop event: the pacer's waits and the sender's
        if reason and self.stop_reason is None:
            self.stop_reason = reason

    async def close(self) -> None:
        """Wait for queued and in-flight jobs to finish, then commit the last outcomes."""
        for _ in self.workers:
            await self.queue.put(None)
        try:
            await asyncio.gather(*self.workers)
        finally:
            self.journal.flush()
            if self.journal.error is not None:
                self.failure = self.failure or self.journal.error
                self.stop(f"internal error: cannot write the state file: {self.journal.error}")

    async def _worker(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                if job is None:
                    return
                if self.stopping:
                    continue  # never marked: it stays pending for the next run
                await self._process(job)
            except Exception as err:
                # A bug or a broken state file: stop handing out rows, but keep draining the
                # queue so the producer never blocks. The row stays `sending`, so the next run
                # sees it as unknown: never resent blindly.
                self.failure = self.failure or err
                self.stop(f"internal error: {type(err).__name__}: {err}")
            finally:
                self.queue.task_done()

    async def _may_go(self, job: Job, *, reserve: bool) -> bool:
        """Ask timing whether the row may go now (its window, the daily limit); a row that may
        not is held: recorded ``pending`` with what it waits for, and kept for ``--wait``. A
        wait of seconds (one number's 6-second gap) is waited out here."""
        if self.gate is None:
            return True
        # A scheduled row's window was checked against its schedule when it was prepared: the
        # request itself may go at any hour (campaign.prepare).
        zones = () if job.scheduled else job.zones
        while (hold := self.gate.hold(zones, job.key, reserve=reserve)) is not None:
            if not hold.short:
                not_before = ""
                if self.on_hold is not None:  # a worker: the row goes back to the shared pool
                    self.on_hold(job, hold)
                    not_before = hold.until.astimezone(UTC).isoformat()
                else:
                    self.held[job.key] = (hold, job)
                self.journal.record(
                    Outcome(job.key, Status.PENDING, error=f"waits for {hold.label}", not_before=not_before)
                )
                return False
            await self._sleep_until(hold.until)
            if self.stopping:
                return False
        return True

    async def _sleep_until(self, until: datetime) -> None:
        """Sleep on the one clock until ``until``, or until the run stops."""
        delay = (until - timing.now()).total_seconds()
        sleeper = asyncio.ensure_future(timing.clock().sleep(delay))
        stopper = asyncio.ensure_future(self.pacer.stopped.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()

    async def wait_for_windows(self, on_wait: Callable[[str], None] | None = None) -> None:
        """``--wait``: once every queued row is done, sleep until the earliest held row may go,
        hand the rows whose time has come back to the workers, and repeat until none is held."""
        while not self.stopping:
            await self.queue.join()
            if not self.held or self.stopping:
                return
            first = min((hold for hold, _ in self.held.values()), key=lambda h: h.until)
            if on_wait is not None:
                on_wait(first.shown)  # what --wait waits for now ("08:00 America/Chicago")
            await self._sleep_until(first.until)
            at = timing.now()
            due = [key for key, (hold, _) in self.held.items() if hold.until <= at]
            for key in due:
                _, job = self.held.pop(key)
                if not await self.put(job):
                    return

    def next_opening(self) -> timing.Hold | None:
        """The earliest instant a held row may go (None when no row is held)."""
        holds = [hold for hold, _ in self.held.values()]
        return min(holds, key=lambda h: h.until) if holds else None

    async def _process(self, job: Job) -> None:
        # Asked before the pacer (a held row must not use up a start) and again after it: the
        # window is checked at the moment of sending, not when the row was queued.
        if not await self._may_go(job, reserve=False):
            return
        await self.pacer.acquire()
        if self.stopping or not await self._may_go(job, reserve=True):
            return
        if not await self.journal.mark(job):
            return  # its lease expired and another worker has it: not ours to send
        if self.stopping:  # stopped while the mark was committed: nothing was written
            outcome = Outcome(job.key, Status.PENDING, error="not sent, the run stopped")
        else:
            try:
                outcome = await self._deliver(job)
            except _LeaseLost:  # another worker took the row over while this one waited to retry
                return
        self.journal.record(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    async def _deliver(self, job: Job) -> Outcome:
        """Send one job until it has an outcome; retry only what was certainly not processed.

        While it waits to retry, the row is recorded ``pending`` (the last answer says the API
        did not take it) and marked ``sending`` again just before the next attempt, so a kill
        during a long rate-limit pause leaves it pending, not unknown.
        """
        loop = asyncio.get_running_loop()
        attempts = retries = recorded = 0
        while True:
            attempts += 1
            self.requests += 1
            reply = await self.client.send(job.body)
            verdict = reply.verdict
            if verdict in (Verdict.ACCEPTED, Verdict.UNKNOWN):
                self.maybe_sent += 1
            new = attempts - recorded  # requests not yet counted in the state file
            if verdict is Verdict.ACCEPTED:
                self.pacer.succeeded()
                self.consecutive_errors = 0
                self.last_progress = loop.time()
                status = Status.SCHEDULED if job.scheduled else Status.SENT
                return Outcome(job.key, status, reply.message_id, job.note, reply.http_status, new)
            if verdict is Verdict.REJECTED:
                self.consecutive_errors = 0
                self.last_progress = loop.time()
                return self._outcome(job, Status.FAILED, reply, new)
            if verdict is Verdict.FATAL:
                self.stop(reply.error)
                return self._outcome(job, Status.PENDING, reply, new)
            if verdict is Verdict.UNREACHABLE:
                # Nothing reached the API (no connection was made), so the row is certainly
                # not sent: it stays pending. After the retries the API is down: stop, so
                # that every row stays pending for a plain rerun (issue 10, item 3).
                retries += 1
                if retries >= self.sending.max_attempts:
                    self.stop(self._unreachable(reply))
                    return self._outcome(job, Status.PENDING, reply, new, prefix="not sent: ")
            if verdict is Verdict.UNKNOWN:
                self._count_error(reply)
                return self._outcome(job, Status.UNKNOWN, reply, new)
            if verdict is Verdict.RATE_LIMITED:
                # Waiting out a rate limit never uses up the row's attempts: a rate set too
                # high costs time, never rows. Only a rate limit that never lifts stops the run.
                self.rate_limited += 1
                self.pacer.rate_limited(reply.retry_after)
                if loop.time() - self.last_progress > self.rate_limit_patience:
                    self.stop(f"the API kept answering 429 (rate limit) for {self.rate_limit_patience:.0f} s")
                wait = 0.0
            elif verdict is Verdict.UNREACHABLE:
                wait = self.pacer.backoff(retries)
            else:  # Verdict.RETRY
                retries += 1
                if retries >= self.sending.max_attempts:
                    self._count_error(reply)
                    return self._outcome(
                        job, Status.FAILED, reply, new, prefix=f"gave up after {count(attempts, 'attempt')}: "
                    )
                wait = self.pacer.backoff(retries)
            if self.stopping:
                # The last answer says it was not processed, so it is safe to leave pending.
                return self._outcome(job, Status.PENDING, reply, new, prefix="not sent, the run stopped: ")
            self.journal.record(self._outcome(job, Status.PENDING, reply, new, prefix="waiting to retry: "))
            recorded = attempts
            if wait:
                await nap(wait, self.pacer.stopped)
            await self.pacer.acquire()
            if self.stopping:
                return Outcome(job.key, Status.PENDING, error="not sent, the run stopped")
            if not await self.journal.mark(job):
                raise _LeaseLost  # another worker holds the row now: nothing of ours to record

    def _unreachable(self, reply: Reply) -> str:
        """The stop sentence for an API no connection can be made to."""
        tail = "nothing was sent" if self.maybe_sent == 0 else "the rows not sent stay pending"
        return f"cannot reach the API at {self.client.api_url} ({reply.error}); {tail}"

    def _count_error(self, reply: Reply) -> None:
        self.consecutive_errors += 1
        if self.consecutive_errors >= self.sending.max_consecutive_errors:
            self.stop(f"{self.consecutive_errors} requests in a row failed (last: {reply.error})")

    @staticmethod
    def _outcome(job: Job, status: Status, reply: Reply, attempts: int, prefix: str = "") -> Outcome:
        return Outcome(job.key, status, "", prefix + reply.error, reply.http_status, attempts)
