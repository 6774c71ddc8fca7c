"""Many senders, one campaign: leases, heartbeats and one pacer per channel in PostgreSQL.

With a PostgreSQL state (``state`` / CAMPAIGN_STATE_URL) every send runs as a *worker*, and
``campaign send CAMPAIGN --worker`` may run on any number of hosts at once (issue 15):

* **One planner.** The run that takes the campaign's lock (:func:`campaign.store.lock`)
  reads the spreadsheet into the state, as a plain send does, and leaves each row to send
  ``pending`` with its prepared request (``recipients.job``). A second ``--worker`` joins
  instead of waiting: it sends what the planner has queued so far. A ``--worker`` that finds
  the lock free and the same spreadsheet and campaign file already planned (their SHA-256)
  joins without reading them again; a host without the spreadsheet can only join.
* **Leases.** A worker claims a batch of queued rows with ``FOR UPDATE SKIP LOCKED`` (no two
  workers ever claim one row, and none waits for another), and its write-ahead mark
  (``sending``, committed before the request is written) is made only while it still holds the
  row's lease (:meth:`campaign.state.State.write` with ``owner``); its outcomes likewise.
* **Heartbeats.** Each worker writes its heartbeat every ``lease / 5`` seconds and reaps the
  others: a worker silent for ``lease`` seconds (CAMPAIGN_LEASE_SECONDS, default 15; the
  database's clock, so hosts' clocks need not agree) is *lost*: its ``sending`` rows become
  ``unknown`` (the request may have been delivered: never resent without ``--resend-unknown``),
  its other claims go back to the pool. A worker that finds itself declared lost (paused
  longer than the lease) stops at once; the lease check on each mark means it cannot send a
  row that was given to another.
* **One rate per channel.** :class:`SharedPacer` hands out request slots from one row per
  channel (``pacer``), so ``rate`` holds for the channel whatever the number of workers, and a
  429 seen by one worker pauses and slows them all.

A database that goes away stops each worker (exit 3): rows in flight stay ``sending`` in the
database and become ``unknown`` when their worker's lease expires; nothing is resent blindly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from campaign import store, timing
from campaign.api import SociocsClient
from campaign.config import Campaign
from campaign.database import Database, redact
from campaign.errors import CampaignError, LockedError, RunStopped, UsageError, full_stop
from campaign.ledger import register_state
from campaign.prepare import Pipeline, prepared_batches
from campaign.reconcile import reconcile_state
from campaign.runner import (
    _LIMIT_PENDING,
    Options,
    Planner,
    Summary,
    _explain,
    _gate,
    campaign_warnings,
    channel_name,
    export,
    identity,
    require_api_key,
)
from campaign.sender import Job, Pacer, Sender
from campaign.state import DONE, Outcome, State, Status

LEASE_ENV = "CAMPAIGN_LEASE_SECONDS"
DEFAULT_LEASE = 15.0  # seconds without a heartbeat after which a worker is presumed dead


def lease_seconds() -> float:
    """How long a worker may be silent before it is presumed dead (seconds)."""
    try:
        return max(1.0, float(os.environ.get(LEASE_ENV, DEFAULT_LEASE)))
    except ValueError:
        return DEFAULT_LEASE


def encode_job(job: Job) -> str:
    """A prepared request as the state keeps it for any worker (no API key: it is a header)."""
    data = asdict(job)
    data["body"] = job.body.decode("utf-8")
    data["zones"] = list(job.zones)
    return json.dumps(data, separators=(",", ":"))


def decode_job(text: str) -> Job:
    data = json.loads(text)
    data["body"] = data["body"].encode("utf-8")
    data["zones"] = tuple(data["zones"])
    return Job(**data)


def fingerprint(campaign: Campaign) -> str | None:
    """SHA-256 of the campaign file, the spreadsheet, the suppression files and the message as
    loaded (a ``text_file`` is read into it): whether a plan is of these very inputs. None when
    the spreadsheet is not on this host."""
    digest = hashlib.sha256(repr((campaign.message, campaign.schedule)).encode())
    files = [campaign.path, campaign.recipients.file, *campaign.recipients.suppress]
    for path in files:
        try:
            with Path(path).open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            return None
        digest.update(b"\0")
    return digest.hexdigest()


def _machine() -> str:
    """This boot of this machine (Linux's boot_id; else the host name): two hosts that share a
    name are still told apart, so only this machine's own dead processes are reaped early."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:
        return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]


def _alive(pid: int) -> bool:
    """Whether a process of this host has this pid (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _now_ms(db: Database) -> float:
    return float(db.execute("SELECT extract(epoch FROM clock_timestamp()) * 1000").fetchone()[0])


class Coordinator:
    """This worker's row in ``workers``, and the leases it takes and gives back."""

    def __init__(self, state: State, *, planner: bool) -> None:
        self.state = state
        self.db = state.db
        self.id = f"{_machine()}-{uuid.uuid4().hex[:12]}"
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.planner = planner
        self.lease = lease_seconds()

    def register(self) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO workers (id, host, pid, started_at, heartbeat_ms, state, planner)"
                " VALUES (?, ?, ?, ?, ?, 'running', ?)",
                (
                    self.id,
                    self.host,
                    self.pid,
                    timing.now().isoformat(timespec="seconds"),
                    _now_ms(self.db),
                    int(self.planner),
                ),
            )

    def heartbeat(self) -> bool:
        """Renew this worker's lease; False when another worker has already declared it lost."""
        cur = self.db.execute(
            "UPDATE workers SET heartbeat_ms = ? WHERE id = ? AND state = 'running'", (_now_ms(self.db), self.id)
        )
        return cur.rowcount == 1

    def planned(self) -> None:
        """The planner has read the whole file: joiners may finish once the queue is empty."""
        self.planner = False
        self.db.execute("UPDATE workers SET planner = 0 WHERE id = ?", (self.id,))

    def reap(self) -> int:
        """Declare workers silent for longer than the lease lost: their ``sending`` rows become
        ``unknown`` (keeping the lease, so a late answer from a worker that was only paused
        still lands), their other claims go back to the pool. A worker of this host whose
        process is gone (a rerun after a crash) is lost at once. Returns the workers reaped."""
        with self.db.transaction():
            cutoff = _now_ms(self.db) - self.lease * 1000
            running = self.db.execute(
                "SELECT id, host, pid, heartbeat_ms < ? FROM workers WHERE state = 'running' AND id != ?"
                " FOR UPDATE SKIP LOCKED",
                (cutoff, self.id),
            ).fetchall()
            here = _machine() + "-"
            dead = [(w, h, p) for w, h, p, silent in running if silent or (w.startswith(here) and not _alive(int(p)))]
            for worker_id, host, pid in dead:
                self.db.execute(
                    "UPDATE recipients SET status = 'unknown', reconciled = '', error = ? WHERE status = 'sending'"
                    " AND lease_owner = ?",
                    (
                        f"the worker on {host} (pid {pid}) stopped answering while this request was in flight; "
                        "it may have been delivered",
                        worker_id,
                    ),
                )
                self.db.execute(
                    "UPDATE recipients SET lease_owner = '' WHERE status != 'sending' AND status != 'unknown'"
                    " AND lease_owner = ?",
                    (worker_id,),
                )
                self.db.execute("UPDATE workers SET state = 'lost' WHERE id = ?", (worker_id,))
        return len(dead)

    def queue(self, jobs: Sequence[Job]) -> None:
        """Leave the planned rows in the pool for any worker (pending, with their request)."""
        if not jobs:
            return
        with self.db.transaction():
            self.db.executemany(
                "UPDATE recipients SET job = ?, status = 'pending', not_before = '', lease_owner = ''"
                " WHERE key = ? AND status != 'sending' AND (lease_owner = '' OR status != 'pending')",
                [(encode_job(j), j.key) for j in jobs],
            )

    def clear_queue(self) -> None:
        """A new plan replaces the last one's queued rows (a row it still wants is queued again)."""
        self.db.execute("UPDATE recipients SET job = '' WHERE status = 'pending' AND lease_owner = ''")

    def claim(self, n: int) -> list[Job]:
        """Lease up to ``n`` queued rows whose time has come, in spreadsheet order."""
        if n <= 0:
            return []
        at = timing.now().isoformat()
        with self.db.transaction():
            rows = self.db.execute(
                "UPDATE recipients SET lease_owner = ? WHERE key IN (SELECT key FROM recipients"
                " WHERE status = 'pending' AND job != '' AND lease_owner = '' AND (not_before = '' OR not_before <= ?)"
                " ORDER BY row LIMIT ? FOR UPDATE SKIP LOCKED) RETURNING row, job",
                (self.id, at, n),
            ).fetchall()
        return [decode_job(job) for _, job in sorted(rows)]

    def outstanding(self) -> tuple[int, str]:
        """Queued rows not yet done by anyone (free now, or leased by a worker), and the
        earliest ``not_before`` of the rows waiting for their window ('' when none)."""
        at = timing.now().isoformat()
        (busy,) = self.db.execute(
            "SELECT count(*) FROM recipients WHERE job != '' AND ((status = 'pending'"
            " AND (not_before = '' OR not_before <= ? OR lease_owner != '')) OR status = 'sending')",
            (at,),
        ).fetchone()
        (later,) = self.db.execute(
            "SELECT min(not_before) FROM recipients WHERE job != '' AND status = 'pending' AND not_before > ?",
            (at,),
        ).fetchone()
        return int(busy), later or ""

    def planner_alive(self) -> bool:
        """Whether another worker is still reading the spreadsheet into the queue."""
        cutoff = _now_ms(self.db) - self.lease * 1000
        row = self.db.execute(
            "SELECT 1 FROM workers WHERE planner = 1 AND state = 'running' AND heartbeat_ms >= ? AND id != ? LIMIT 1",
            (cutoff, self.id),
        ).fetchone()
        return row is not None

    def leave(self) -> None:
        """Give back every row this worker holds but did not send, and sign off."""
        with self.db.transaction():
            self.db.execute(
                "UPDATE recipients SET lease_owner = '' WHERE lease_owner = ? AND status = 'pending'", (self.id,)
            )
            self.db.execute("UPDATE workers SET state = 'finished', planner = 0 WHERE id = ?", (self.id,))


def workers(state: State) -> list[dict[str, Any]]:
    """Every worker this campaign has had, newest first: host, pid, started, seconds since its
    last heartbeat, state (running / finished / lost) and rows in flight (``sending``)."""
    if "workers" not in state.db.tables() or state.db.dialect != "postgresql":
        return []
    now = _now_ms(state.db)
    cur = state.db.execute(
        "SELECT w.id, w.host, w.pid, w.started_at, w.heartbeat_ms, w.state, w.planner,"
        " (SELECT count(*) FROM recipients r WHERE r.lease_owner = w.id AND r.status = 'sending')"
        " FROM workers w ORDER BY w.started_at DESC, w.id"
    )
    out = []
    for wid, host, pid, started, beat, wstate, planner, flying in cur.fetchall():
        out.append(
            {
                "id": wid,
                "host": host,
                "pid": int(pid),
                "started_at": started,
                "heartbeat_age": max(0.0, (now - float(beat)) / 1000),
                "state": wstate,
                "planner": bool(planner),
                "in_flight": int(flying),
            }
        )
    return out


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

    def __init__(self, db: Database, channel: str, rate: float, *, backoff_base: float = 1.0) -> None:
        super().__init__(rate, backoff_base=backoff_base)
        self.db = db
        self.channel = channel
        self.slots: deque[float] = deque()
        self.fetches = 0
        self.late = 0  # slots dropped because this worker reached them late
        with db.transaction():
            db.execute(
                "INSERT INTO pacer (channel, next_ms, pause_ms, rate, target, changed_ms) VALUES (?, 0, 0, ?, ?, 0)"
                " ON CONFLICT (channel) DO UPDATE SET target = excluded.target,"
                " rate = least(pacer.rate, excluded.target)",
                (channel, rate, rate),
            )

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self.pause_until - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
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
            next_ms, pause_ms, rate, target, changed_ms, now_ms = self.db.execute(
                "SELECT next_ms, pause_ms, rate, target, changed_ms, extract(epoch FROM clock_timestamp()) * 1000"
                " FROM pacer WHERE channel = ? FOR UPDATE",
                (self.channel,),
            ).fetchone()
            now_ms, rate, target = float(now_ms), float(rate), float(target)
            if rate < target and now_ms - float(changed_ms) >= 1000:
                rate, changed_ms = min(target, rate * 1.25), now_ms
            interval = 1000 * self.WINDOW / rate
            start = max(float(next_ms), now_ms, float(pause_ms))
            self.db.execute(
                "UPDATE pacer SET next_ms = ?, rate = ?, changed_ms = ? WHERE channel = ?",
                (start + n * interval, rate, changed_ms, self.channel),
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


def _lost_database(state: State, err: BaseException) -> str:
    return (
        f"lost the campaign's state database ({' '.join(redact(str(err)).split())}); the rows in flight stay "
        f"'sending' there and become unknown {lease_seconds():g} s after this worker's last heartbeat; nothing "
        "else was sent. Rerun when the database is back (then campaign reconcile for the unknown rows)"
    )


async def run_shared(
    campaign: Campaign,
    options: Options,
    *,
    results_path: Path | None = None,
    on_progress: Callable[[Summary, Outcome | None], None] | None = None,
    stop_event: asyncio.Event | None = None,
) -> Summary:
    """``campaign send`` with a PostgreSQL state: plan (when this run holds the campaign's lock)
    and work the shared queue until no row is left that any worker could still send.

    Raises LockedError when another run plans and this is not ``--worker``, UsageError for a
    worker that has nothing to join, and what a plain send raises before sending.
    """
    require_api_key(options)
    summary = Summary(rate=campaign.sending.rate, warnings=campaign_warnings(campaign))
    summary.expected = options.expected
    started = time.monotonic()
    prints = fingerprint(campaign)
    if prints is not None:
        # A plan is of these inputs *and* of what the run asked for: --retry-failed and the
        # like plan anew (when the lock is free) instead of joining a plan that left those rows.
        asked = (options.retry_failed, options.resend_unknown, options.retry_undelivered, options.limit)
        prints = hashlib.sha256(f"{prints}|{asked}".encode()).hexdigest()
    async with AsyncExitStack() as stack:
        planner_lock = ExitStack()
        stack.callback(planner_lock.close)
        planning = True
        try:
            planner_lock.enter_context(store.lock(campaign))
        except LockedError:
            if not options.worker:
                raise
            planning = False  # another run is planning: join it
        state = store.open_state(campaign)
        stack.callback(state.close)
        ident = identity(campaign, options)
        state.claim(campaign.path, ident, record=True)
        register_state(store.ledger_location(campaign), channel_name(ident), store.state_ref(campaign))
        if planning and options.worker and (prints is None or prints == state.meta("plan_fingerprint")):
            planning = False  # these very files are planned already (or cannot be read here): join
            planner_lock.close()
        if not planning and prints is None and not state.meta("plan_fingerprint"):
            raise UsageError(
                f"{campaign.recipients.file} is not on this host and the campaign has not been planned yet: start "
                "campaign send --worker first where the spreadsheet is; workers elsewhere then join it."
            )
        pipeline = Pipeline(campaign) if planning else None  # the file is checked before anything is sent
        if pipeline is not None:
            summary.warnings.extend(pipeline.warnings)
        coordinator = Coordinator(state, planner=planning)
        coordinator.reap()
        coordinator.register()
        outcome = "finished"
        run_id = state.begin_run("send", pipeline.file.columns) if pipeline is not None else 0
        try:
            outcome = await _work(
                campaign, options, state, coordinator, pipeline, prints, summary, on_progress, stop_event
            )
        finally:
            try:
                coordinator.leave()
                if run_id:
                    state.end_run(run_id, outcome)
                    state.set_meta(_LIMIT_PENDING, str(summary.limit_pending + summary.waiting))
                summary.changed_since_sent = state.changed_since_sent()
                summary.counts = Counter(state.counts())
                summary.shared = True
                summary.rows = max(summary.rows, sum(summary.counts.values()))
                summary.reasons = _explain(state, summary.counts)
                target = results_path or campaign.results
                try:
                    if options.write_results:
                        export(state, target)
                        summary.results_path = target
                except OSError as err:
                    summary.results_error = f"cannot write {target} ({err.strerror or err})"
            except state.db.errors as err:
                summary.stop_reason = summary.stop_reason or _lost_database(state, err)
                summary.results_error = "the results file was not written: the state database cannot be read"
            summary.elapsed = time.monotonic() - started
    return summary


async def _work(
    campaign: Campaign,
    options: Options,
    state: State,
    coordinator: Coordinator,
    pipeline: Pipeline | None,
    prints: str | None,
    summary: Summary,
    on_progress: Callable[[Summary, Outcome | None], None] | None,
    stop_event: asyncio.Event | None,
) -> str:
    """Plan (with ``pipeline``), heartbeat and claim until the queue is done; the run's outcome."""
    sending = campaign.sending

    def progress(outcome: Outcome) -> None:
        if outcome.status is Status.PENDING and outcome.error.startswith("waiting to retry"):
            return
        summary.finished_now += 1
        summary.outcomes[outcome.status] += 1
        if outcome.status in DONE:
            summary.sent_now += 1
        if on_progress:
            on_progress(summary, outcome)

    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            SociocsClient(campaign.api_url, options.api_key, timeout=sending.timeout, connections=sending.concurrency)
        )
        if pipeline is not None and options.resend_unknown and state.by_status(Status.UNKNOWN):
            try:
                summary.reconciled = await reconcile_state(
                    campaign, state, client, channel=channel_name(identity(campaign, options))
                )
            except CampaignError as err:
                raise RunStopped(
                    f"--resend-unknown reconciles the unknown rows first, and that failed: {full_stop(str(err))} "
                    "Nothing was sent; rerun when the API answers."
                ) from None
        gate = stack.enter_context(_gate(campaign, options))
        channel = channel_name(identity(campaign, options))
        pacer = (
            SharedPacer(state.db, channel, sending.rate, backoff_base=options.backoff_base) if sending.rate else None
        )
        held: list[timing.Hold] = []
        sender = Sender(
            client,
            state,
            sending,
            backoff_base=options.backoff_base,
            on_outcome=progress,
            gate=gate,
            pacer=pacer,
            owner=coordinator.id,
            on_hold=lambda job, hold: held.append(hold),
        )
        await sender.start()
        queued = asyncio.Event()  # set by the planner after each batch it queues
        planning = (
            asyncio.create_task(
                _plan(campaign, options, state, coordinator, pipeline, prints, summary, on_progress, sender, queued)
            )
            if pipeline is not None
            else None
        )
        beat = asyncio.create_task(_heartbeat(state, coordinator, sender))
        watcher = asyncio.create_task(_watch(stop_event, sender)) if stop_event is not None else None
        input_error: CampaignError | None = None
        try:
            await _feed(queued, options, coordinator, sender, planning, summary, on_progress)
            if planning is not None:
                await planning
        except CampaignError as err:
            sender.stop(f"reading the recipients stopped: {err}")
            input_error = err
        except state.db.errors as err:
            sender.stop(_lost_database(state, err))
        finally:
            for task in (planning, beat, watcher):
                if task is not None and not task.done():
                    task.cancel()
            await sender.close()
        if sender.failure is not None and isinstance(sender.failure, state.db.errors):
            sender.stop_reason = _lost_database(state, sender.failure)
        summary.rate_limited = sender.rate_limited
        summary.requests = sender.requests
        if held:
            first = min(held, key=lambda h: h.until)
            summary.next_window = first.shown
            summary.waiting = len(held)
            summary.waiting_limit = sum(h.limit for h in held)
        if input_error is not None and sender.requests == 0:
            raise input_error
        if sender.stop_reason:
            summary.stop_reason = sender.stop_reason
            return "stopped"
        if stop_event is not None and stop_event.is_set():
            summary.interrupted = True
            return "interrupted"
    return "finished"


async def _plan(
    campaign: Campaign,
    options: Options,
    state: State,
    coordinator: Coordinator,
    pipeline: Pipeline,
    prints: str | None,
    summary: Summary,
    on_progress: Callable[[Summary, Outcome | None], None] | None,
    sender: Sender,
    queued: asyncio.Event,
) -> None:
    """Read the spreadsheet into the queue, batch by batch (rows are claimable at once)."""
    planner = Planner(campaign, state, options, summary)
    state.set_meta("plan_fingerprint", "")
    coordinator.clear_queue()
    # Prepared in this process: the state's pooled connections must not be shared with a fork.
    async with prepared_batches(pipeline, child=False) as batches:
        async for batch in batches:
            planner.stopped = sender.stopping
            coordinator.queue(planner.plan(batch))
            queued.set()
            if on_progress:
                on_progress(summary, None)
            await asyncio.sleep(0)
    state.finish_read()
    summary.read_all = True
    state.attribute()
    if prints is not None and not sender.stopping and not summary.limit_pending:
        # Complete: a later --worker with the same inputs joins it. A plan that left rows to a
        # later run (--limit) or was stopped is not: the next --worker plans again.
        state.set_meta("plan_fingerprint", prints)
    coordinator.planned()
    queued.set()


async def _feed(
    queued: asyncio.Event,
    options: Options,
    coordinator: Coordinator,
    sender: Sender,
    planning: asyncio.Task[None] | None,
    summary: Summary,
    on_progress: Callable[[Summary, Outcome | None], None] | None,
) -> None:
    """Claim queued rows as the sender has room, until no worker could still send one.

    Rows are claimed a batch (the sender's queue size) at a time and handed over one by one,
    each ``put`` waiting while the queue is full: a worker holds at most its queue, its
    requests in flight and one batch."""
    batch = max(1, sender.queue.maxsize)
    while not sender.stopping:
        if planning is not None and planning.done():
            planning.result()  # a planning error (the file broke) stops the run here
        jobs = coordinator.claim(batch)
        for job in jobs:
            if not await sender.put(job):
                return
        if jobs:
            continue
        if planning is not None and not planning.done():
            queued.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queued.wait(), 0.2)  # the planner's next batch
            continue
        await sender.queue.join()  # this worker's rows are done: is anything left for anyone?
        busy, later = coordinator.outstanding()
        if busy or coordinator.planner_alive():
            await asyncio.sleep(0.2)  # other workers' rows: theirs, or back to the pool if they die
            continue
        if later and options.wait:
            summary.waiting_for = later
            if on_progress:
                on_progress(summary, None)
            await asyncio.sleep(min(coordinator.lease / 5, 5.0))
            continue
        return


async def _heartbeat(state: State, coordinator: Coordinator, sender: Sender) -> None:
    """Renew this worker's lease and reap lost workers, every lease / 5 seconds."""
    while True:
        await asyncio.sleep(coordinator.lease / 5)
        try:
            alive = coordinator.heartbeat()
            coordinator.reap()
        except state.db.errors as err:
            sender.stop(_lost_database(state, err))
            return
        if not alive:
            sender.stop(
                f"this worker was silent for over {coordinator.lease:g} s and the others presumed it dead; "
                "its rows went back to them"
            )
            return


async def _watch(stop_event: asyncio.Event, sender: Sender) -> None:
    await stop_event.wait()
    sender.stop()
