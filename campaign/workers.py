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
* **One rate per channel.** :class:`campaign.shared_pacer.SharedPacer` hands out request slots from one row per
  channel (``pacer``), so ``rate`` holds for the channel whatever the number of workers, and a
  429 seen by one worker pauses and slows them all.

The leases are :mod:`campaign.leases`; this module runs a worker. A database that goes away
stops each worker (exit 3): rows in flight stay ``sending`` in the
database and become ``unknown`` when their worker's lease expires; nothing is resent blindly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import AsyncExitStack, ExitStack
from datetime import UTC, datetime
from pathlib import Path

from campaign import store, timing
from campaign.api import SociocsClient
from campaign.config import Campaign
from campaign.database import PostgresDatabase, redact
from campaign.errors import CampaignError, LockedError, UsageError
from campaign.leases import Coordinator, fingerprint, lease_seconds
from campaign.ledger import SCHEMA as LEDGER_SCHEMA
from campaign.ledger import register_state
from campaign.prepare import Pipeline, prepared_batches
from campaign.runner import (
    LIMIT_PENDING_META,
    Options,
    Planner,
    Summary,
    campaign_warnings,
    channel_name,
    finish_summary,
    identity,
    outcome_counter,
    reconcile_before_resend,
    require_api_key,
    run_outcome,
    sending_gate,
)
from campaign.sender import Sender
from campaign.shared_pacer import SharedPacer
from campaign.state import Outcome, State


def _lost_database(state: State, err: BaseException) -> str:
    return (
        f"lost the campaign's state database ({' '.join(redact(str(err)).split())}); the rows in flight stay "
        f"'sending' there and become unknown {lease_seconds():g} s after this worker's last heartbeat; nothing "
        "else was sent. When the database is back, campaign reconcile finds out about the unknown rows"
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
    prints = fingerprint(
        campaign, (options.retry_failed, options.resend_unknown, options.retry_undelivered, options.limit)
    )
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
        store.check_location(campaign, state)  # a campaign sent from a SQLite file until now
        store.record_location(campaign)
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
        planned_from = state.meta("plan_inputs")
        if planning:
            state.set_meta("plan_inputs", prints or "")  # at once: joiners starting now compare with it
        elif prints is not None and planned_from and prints != planned_from:
            # (unknown yet, when the planner has not written it: no warning rather than a false one)
            summary.warnings.append(
                f"this worker joined the plan another run made; its own {campaign.recipients.file.name} (or campaign "
                "file) differs from that run's and was not read. Run campaign send --worker again once that plan "
                "is done to send what it adds."
            )
        pipeline = Pipeline(campaign) if planning else None  # the file is checked before anything is sent
        if pipeline is not None:
            summary.warnings.extend(pipeline.warnings)
        coordinator = Coordinator(state, planner=planning)
        coordinator.reap()
        coordinator.register()
        outcome = "stopped"  # unless _work returns: a run that raised is not recorded as finished
        # A joiner's run is recorded too (status shows the latest run) as "send --worker": it reads
        # no file, so status never takes it for a send that stopped before reading all of it.
        if pipeline is not None:
            run_id = state.begin_run("send", pipeline.file.columns)
        else:
            run_id = state.begin_run("send --worker", None)
        try:
            outcome = await _work(
                campaign, options, state, coordinator, pipeline, prints, summary, on_progress, stop_event
            )
        finally:
            try:
                coordinator.leave()
                state.end_run(run_id, outcome)
                if pipeline is not None:  # the planner's --limit and holds are the campaign's
                    state.set_meta(LIMIT_PENDING_META, str(summary.limit_pending + summary.waiting))
                finish_summary(state, summary, (results_path or campaign.results) if options.write_results else None)
                summary.shared = True
                summary.rows = max(summary.rows, sum(summary.counts.values()))
            except state.db.errors as err:
                summary.stop_reason = summary.stop_reason or _lost_database(state, err)
                summary.database_lost = True
                summary.results_error = (
                    "the results file was not written: the state database cannot be read. Once it is back, "
                    f"`campaign status {campaign.path.name} --results PATH` writes it"
                )
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
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            SociocsClient(campaign.api_url, options.api_key, timeout=sending.timeout, connections=sending.concurrency)
        )
        if pipeline is not None and options.resend_unknown:
            await reconcile_before_resend(campaign, state, client, options, summary)
        gate = stack.enter_context(sending_gate(campaign, options))
        channel = channel_name(identity(campaign, options))
        pacer = None
        if sending.rate:
            pacing_db = PostgresDatabase(campaign.state_url, LEDGER_SCHEMA)  # the channel is every campaign's
            stack.callback(pacing_db.close)
            pacer = SharedPacer(
                pacing_db, channel, sending.rate, user=coordinator.id, backoff_base=options.backoff_base
            )
        held: list[timing.Hold] = []
        sender = Sender(
            client,
            state,
            sending,
            backoff_base=options.backoff_base,
            on_outcome=outcome_counter(summary, on_progress),
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
            await _feed(queued, store.lock_key(campaign), options, coordinator, sender, planning, summary, on_progress)
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
        held = [h for h in held if h.until > timing.now()]  # with --wait, the rows sent since are not waiting
        if held:
            first = min(held, key=lambda h: h.until)
            summary.next_window = first.shown
            summary.waiting = len(held)
            summary.waiting_limit = sum(h.limit for h in held)
        return run_outcome(summary, sender, stop_event, input_error)


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
    planner.stopped = sender.stopping
    coordinator.queue(planner.finish())
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
    lock_key: str,
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
    claimed = 0
    while not sender.stopping:
        if planning is not None and planning.done():
            planning.result()  # a planning error (the file broke) stops the run here
        if options.limit is not None:  # --limit: at most N messages from this worker, joiner or not
            batch = min(batch, options.limit - claimed)
            if batch <= 0:
                await sender.queue.join()
                return
        jobs = coordinator.claim(batch)
        claimed += len(jobs)
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
        # A joiner waits while another run holds the campaign's lock: its planner may not have
        # queued (or even registered) anything yet. The planner itself knows it is done.
        if busy or (planning is None and coordinator.planner_alive(lock_key)):
            await asyncio.sleep(0.2)  # other workers' rows: theirs, or back to the pool if they die
            continue
        if later and options.wait:
            # The row's own zone is in its job, not here: the instant in UTC, as the summary shows it.
            summary.waiting_for = f"{datetime.fromisoformat(later).astimezone(UTC):%a %d %b %H:%M} UTC"
            if on_progress:
                on_progress(summary, None)
            await _sleep_toward(datetime.fromisoformat(later), sender, min(coordinator.lease / 5, 5.0))
            summary.waiting_for = ""  # set again if the queue still has only rows for later
            continue
        return


async def _sleep_toward(until: datetime, sender: Sender, cap: float) -> None:
    """Sleep on the campaign's one clock until ``until`` (a test's ManualClock jumps there at
    once), but no longer than ``cap`` real seconds and not past a stop, so the queue is looked
    at again soon (rows another worker gives back, a Ctrl-C)."""
    sleeper = asyncio.ensure_future(timing.clock().sleep((until - timing.now()).total_seconds()))
    deadline = time.monotonic() + cap
    try:
        while not sleeper.done() and not sender.stopping and time.monotonic() < deadline:
            await asyncio.wait({sleeper}, timeout=min(0.5, cap))
    finally:
        sleeper.cancel()


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
