"""The pipeline: spreadsheet → rows → requests → outcomes → results file.

``send()``, ``check()``, ``preview()``, ``status()`` and ``reconcile()`` are what the CLI calls;
each takes a checked :class:`~campaign.config.Campaign` and returns a summary the CLI prints.
Nothing here prints or exits: a test can import and run all of it.

Rows stream: the file is read in batches, each batch is prepared (phone, render, rules; in a
child process, see :mod:`campaign.prepare`), planned against the state file in one
transaction (new, already done, retry or not, duplicate) and handed to the
:class:`~campaign.sender.Sender` through its bounded queue, so the first request leaves after
the first batch, not after the whole file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from campaign import store, timing
from campaign.api import SociocsClient
from campaign.cancel import CancelReport as CancelReport  # re-exported: what cancel() returns
from campaign.cancel import cancel_state
from campaign.config import WHATSAPP, Campaign
from campaign.delivery_store import has_reports, retryable
from campaign.errors import CampaignError, ExitCode, OutputError, RunStopped, UsageError, agree, count, full_stop
from campaign.ledger import PAIR_GAP, Ledger, register_state
from campaign.prepare import Pipeline, Prepared, prepared_batches
from campaign.reconcile import ReconcileReport as ReconcileReport  # re-exported: what reconcile() returns
from campaign.reconcile import reconcile_state
from campaign.results import DELIVERY_COLUMNS, write_results
from campaign.rules import sms_segments
from campaign.sender import Job, Sender
from campaign.state import (
    DONE,
    SANDBOX_API,
    WENT,
    Identity,
    Known,
    Outcome,
    RowRecord,
    State,
    Status,
    occurrence_number,
)

T = TypeVar("T")


@dataclass
class Options:
    """What the command line adds to the campaign file for one run."""

    dry_run: bool = False
    limit: int | None = None
    retry_failed: bool = False
    resend_unknown: bool = False
    retry_undelivered: bool = False  # resend sent rows whose delivery failed for a temporary reason
    api_key: str = ""
    command: str = "send"
    backoff_base: float = 1.0
    write_results: bool = True  # False for the count behind the confirmation question
    prepare_in_child: bool | None = None  # None: a child process where it can fork (campaign.prepare)
    sandbox: bool = False  # sent to the built-in sandbox (recorded as such in the state file)
    sandbox_per_run: bool = False  # that sandbox was started for this run alone (CLI --sandbox; not the web's)
    wait: bool = False  # --wait: keep running and send each held row when its window opens
    worker: bool = False  # --worker: share a PostgreSQL campaign with other runs (campaign.workers)
    # Rows this send is expected to send, as the confirmation just counted them (a dry run of
    # the same options): the progress total while the file is still being read. None: unknown.
    expected: int | None = None


@dataclass
class Reasons:
    """Rows of one status grouped by the shape of their error, for a summary's "top reasons".

    ``counts`` maps a kind (the error with quoted values and row numbers elided, so "duplicate
    of row 3" and "duplicate of row 7" are one kind) to its rows; ``examples`` keeps the first
    five row numbers of each kind, ``first`` the first row's own error text.
    """

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)
    varied: set[str] = field(default_factory=set)  # kinds whose rows' errors are not all one text

    def add(self, error: str, row: int) -> None:
        """Count one row with this error."""
        kind = _reason_kind(error)
        self.counts[kind] += 1
        if self.first.setdefault(kind, error) != error:
            self.varied.add(kind)
        examples = self.examples.setdefault(kind, [])
        if len(examples) < 5:
            examples.append(row)

    def top(self, n: int = 5) -> list[tuple[str, int, list[int]]]:
        """The ``n`` most common kinds as (text to show, rows, first row numbers).

        A kind whose rows all have one error shows it ("duplicate of row 12"); a kind of
        several errors shows their shape ("duplicate of row …").
        """
        return [
            (kind if kind in self.varied else self.first[kind], count, self.examples[kind])
            for kind, count in self.counts.most_common(n)
        ]


@dataclass
class Summary:
    """What a run did, for the CLI to print and to pick the exit code from."""

    counts: Counter[str] = field(default_factory=Counter)  # rows of the file per final status
    rows: int = 0
    sent_now: int = 0  # requests accepted in this run
    finished_now: int = 0  # rows that got an outcome in this run
    outcomes: Counter[str] = field(default_factory=Counter)  # finished_now by status (sent, failed, ...)
    already_done: int = 0  # rows skipped because an earlier run sent them
    changed_since_sent: int = 0  # of those, rows whose message is now different
    changed_examples: list[int] = field(default_factory=list)  # the first five of them
    recovered_unknown: int = 0  # in-flight rows of a dead run turned unknown at start
    limit_pending: int = 0  # rows left pending by --limit
    not_reached: int = 0  # rows read after the run stopped: recorded pending, not sent
    held_ambiguous: int = 0  # unknown rows reconcile could not tell apart: not resent
    reconciled: ReconcileReport | None = None  # the reconcile --resend-unknown ran first
    held_failed: int = 0  # failed rows not retried (no --retry-failed)
    held_unknown: int = 0  # unknown rows not resent (no --resend-unknown)
    retried_undelivered: int = 0  # sent rows resent by --retry-undelivered
    held_cancelled: int = 0  # rows `campaign cancel` took back: never sent again by send
    invalid_reasons: Counter[str] = field(default_factory=Counter)
    invalid_examples: dict[str, list[int]] = field(default_factory=dict)
    invalid_first: dict[str, str] = field(default_factory=dict)  # kind -> the first row's own error
    reasons: dict[str, Reasons] = field(default_factory=dict)  # failed, skipped -> why (the whole file)
    blanks: Counter[str] = field(default_factory=Counter)  # variable -> rows where it left a blank
    blank_examples: dict[str, list[int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    duplicates: int = 0
    suppressed: int = 0
    segments: int = 0
    multi_segment: int = 0
    unicode_rows: int = 0
    # Rows this run sends (or, for check, could send) per destination country (ISO 3166
    # alpha-2, phones.Number.region): a stray +61 in a US list stands out.
    countries: Counter[str] = field(default_factory=Counter)
    landlines: int = 0  # of those, SMS rows to a fixed line, which usually fail (Twilio error 30006)
    landline_examples: list[int] = field(default_factory=list)  # the first 5 of those rows
    rate_limited: int = 0
    requests: int = 0
    elapsed: float = 0.0
    results_path: Path | None = None
    results_error: str | None = None  # why the results file could not be written
    stop_reason: str | None = None
    interrupted: bool = False
    dry_run: bool = False
    rate: float = 0.0
    # [schedule] (campaign.timing): rows left pending for their window or the daily limit
    waiting: int = 0
    waiting_limit: int = 0  # of those, rows held by the daily limit (the rest wait for their window)
    next_window: str = ""  # when the first of them may go: "08:00 America/Chicago (13:00 UTC)"
    waiting_for: str = ""  # what --wait is waiting for right now (progress)
    zones: Counter[tuple[str, ...]] = field(default_factory=Counter)  # sendable rows per time-zone group
    forecast: list[str] = field(default_factory=list)  # check: when each zone's rows go out
    forecast_label: str = "goes out"  # what those times are: with send_at, when the requests are "posted"
    forecast_note: str = ""  # with send_at: when the API delivers what was posted
    row_notes: dict[str, list[int]] = field(default_factory=dict)  # what a row's schedule decided -> rows
    scheduled_rows: int = 0  # dry runs: rows that carry a schedule (sent later by the API)
    schedule_range: tuple[datetime, datetime] | None = None  # dry runs: earliest and latest schedule
    expected: int | None = None  # Options.expected: the confirmation's count of rows to send
    read_all: bool = False  # the whole file was read: to_send is this run's final count
    shared: bool = False  # a worker of a PostgreSQL campaign: counts are the campaign's, sent_now its own
    database_lost: bool = False  # the PostgreSQL state went away: no counts, no results file now

    def note_schedule(self, when: str) -> None:
        """Count one row scheduled for ``when`` (ISO 8601 with offset, as rendered)."""
        moment = datetime.fromisoformat(when)
        self.scheduled_rows += 1
        low, high = self.schedule_range or (moment, moment)
        self.schedule_range = (min(low, moment), max(high, moment))

    @property
    def total(self) -> int | None:
        """Rows this run sends, the progress bar's total: exact once the whole file is read;
        before that the confirmation's count (``expected``), or None when nothing counted them
        (rows read so far are not the total: the file is read only a little ahead of sending)."""
        if self.read_all:
            return max(self.to_send, self.finished_now)
        if self.expected is None:
            return None
        return max(self.expected, self.to_send, self.finished_now)

    @property
    def to_send(self) -> int:
        """Rows read so far that this run hands to the sender (see ``total`` for the bar's)."""
        held = self.already_done + self.held_failed + self.held_unknown + self.limit_pending + self.not_reached
        held += self.held_ambiguous + self.held_cancelled
        return self.rows - held - self.duplicates - self.suppressed - sum(self.invalid_reasons.values())

    def exit_code(self) -> ExitCode:
        """PRODUCT.md's exit codes."""
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if self.stop_reason:
            return ExitCode.STOPPED
        return rows_exit_code(self.counts, self.limit_pending + self.waiting)


def rows_exit_code(counts: Mapping[str, int], pending_for_later: int) -> ExitCode:
    """PRODUCT.md "Exit codes" for a finished run (or ``status``): 0 or 1 from the rows.

    1 when some rows are failed, invalid, unknown or pending, except ``pending_for_later``
    pending rows left for a later run on purpose (``--limit``, a sending window, the daily limit).
    """
    bad = sum(counts.get(s, 0) for s in (Status.FAILED, Status.INVALID, Status.UNKNOWN, Status.PENDING))
    return ExitCode.ROWS_NOT_SENT if bad - pending_for_later > 0 else ExitCode.OK


def identity(campaign: Campaign, options: Options) -> Identity:
    """The API and channel a run sends through, as its state file records them."""
    return Identity(SANDBOX_API if options.sandbox else campaign.api_url, campaign.provider, campaign.channel_key)


def channel_name(ident: Identity) -> str:
    """The channel as the shared ledger names it: one API, provider and channel key."""
    return f"{ident.api} {ident.provider} {ident.channel_key}"


def peers_channel(campaign: Campaign, options: Options) -> str | None:
    """The channel whose other campaigns' message ids reconcile leaves out (campaign.ledger), or
    None for a sandbox started for this run alone (``send --sandbox``): no other campaign's
    message can be in its listing, so other campaigns' state files (anywhere on this machine)
    are not opened. The web's sandbox serves every campaign of its session: its peers count."""
    return None if options.sandbox_per_run else channel_name(identity(campaign, options))


def campaign_warnings(campaign: Campaign) -> list[str]:
    """Things that are allowed but probably not what the user wants."""
    out = []
    if campaign.provider in ("twlowa", "gswa") and campaign.message.text is not None:
        out.append(
            f"plain text over WhatsApp ({campaign.provider}) only reaches people who wrote to you in the "
            "last 24 hours; for a campaign, use an approved template ([message] template_id)."
        )
    rc = campaign.recipients
    if rc.countries and rc.default_country and rc.default_country not in rc.countries:
        out.append(
            f"default_country {rc.default_country} is not in [recipients] countries ({', '.join(rc.countries)}), "
            "so every number written without + and a country code will be invalid."
        )
    return out


def _reason_kind(error: str) -> str:
    """Group rows by the shape of their reason, not the row's own values (quoted, row numbers)."""
    return re.sub(r"\b(rows?) \d+", r"\1 …", re.sub(r"'[^']*'|\"[^\"]*\"", "…", error))


LIMIT_PENDING_META = "limit_pending"  # state meta: pending rows the last run's --limit left for later
_EXPLAINED = (Status.FAILED, Status.SKIPPED)  # statuses whose top reasons a summary gives


def explain_reasons(
    state: State, counts: Mapping[str, int], statuses: Sequence[Status] = _EXPLAINED
) -> dict[str, Reasons]:
    """Why the file's rows of ``statuses`` (failed and skipped; ``status`` adds invalid, which
    a send's summary has from its planner) are so, from the state (one pass, only if any)."""
    wanted = {str(s) for s in statuses if counts.get(s)}
    reasons = {status: Reasons() for status in wanted}
    if wanted:
        for _cells, row, _phone, status, _mid, error, *_rest in state.results():
            if status in wanted:
                reasons[status].add(error or "no reason recorded", row)
    return reasons


def sendable_phones(batch: Sequence[Prepared]) -> list[str]:
    """The numbers of the rows in ``batch`` that may still be sent: those whose recipients
    :func:`number_occurrences` looks up."""
    return [p.phone for p in batch if p.key is not None and p.status is None]


def number_occurrences(
    batch: list[Prepared], known: Mapping[str, Sequence[tuple[str, str, str]]], used: set[str]
) -> list[Prepared]:
    """With allow_duplicates a recipient is its row (PRODUCT.md, "Rerunning"), known by what
    it sends: a row takes the recipient (``+16175550100#n``) whose request was its own (the
    same payload hash) wherever the row now is in the sheet; a row without one takes a
    recipient still pending (never tried), else a new one. Never another content's recipient
    that was, or may have been, sent (nor a failed one, whose status it would inherit):
    numbered by position, a sheet re-sorted after a partial run sent one row's message
    twice and the other row's never.

    ``known``: each number's recipients in the state (:meth:`State.occurrences`); ``used``: the
    recipients rows read so far took (added to here). ``send`` and ``preview`` both decide so.
    """
    last: dict[str, int] = {}  # each number's highest n, known or read: a new one is n + 1
    for taken in [k for found in known.values() for k, _, _ in found] + list(used):
        phone = taken.rpartition("#")[0]
        last[phone] = max(last.get(phone, 0), occurrence_number(taken))
    out = []
    for p in batch:
        if p.key is None or p.status is not None:
            out.append(p)
            continue
        assert p.job is not None
        free = [o for o in known.get(p.phone, ()) if o[0] not in used]
        key = next((k for k, _, content in free if content == p.job.payload_hash), None)
        key = key or next((k for k, status, _ in free if status == Status.PENDING), None)
        if key is None:
            last[p.phone] = last.get(p.phone, 0) + 1
            key = f"{p.phone}#{last[p.phone]}"
        used.add(key)
        out.append(replace(p, key=key, job=replace(p.job, key=key)))
    return out


class Planner:
    """Decides, batch by batch and in one transaction each, what happens to every row."""

    def __init__(self, campaign: Campaign, state: State, options: Options, summary: Summary) -> None:
        self.campaign = campaign
        self.state = state
        self.options = options
        self.summary = summary
        self.queued = 0
        self.stopped = False  # the run stopped: rows are still recorded (pending), not sent
        # allow_duplicates: rows given a new recipient while their number has a request that
        # went (or may have) which no row matched yet; decided by finish() once the file is read.
        self.deferred: list[Prepared] = []

    def plan(self, batch: list[Prepared]) -> list[Job]:
        allow_dup = self.campaign.recipients.allow_duplicates
        s = self.summary
        records: list[RowRecord] = []
        candidates: list[Prepared] = []
        went: set[str] = set()  # allow_duplicates: numbers of this batch with a request that went
        if allow_dup:
            batch, went = self._number_occurrences(batch)
        keys = [p.key for p in batch if p.key is not None and p.status is None]
        first = {} if allow_dup else self.state.first_rows(keys)
        taken = set() if allow_dup else self._taken_back_or_done(batch)
        for p in batch:
            own_hash = p.job.payload_hash if p.job is not None else ""
            message = p.job.message if p.job is not None else ""
            if p.phone in taken and p.status is Status.INVALID and p.key is None:
                # An earlier run sent or scheduled this recipient; that its message no longer
                # renders now (its schedule has passed since: issue 13) does not make it invalid.
                records.append(RowRecord(p.row, p.cells, p.phone, p.phone))
                s.already_done += 1
                continue
            if not allow_dup:
                sendable, p = p, skip_duplicate(p, first)
                if p is not sendable:
                    s.duplicates += 1
            if p.status is Status.INVALID:
                kind = _reason_kind(p.error)
                s.invalid_reasons[kind] += 1
                s.invalid_examples.setdefault(kind, [])
                s.invalid_first.setdefault(kind, p.error)
                if len(s.invalid_examples[kind]) < 5:
                    s.invalid_examples[kind].append(p.row)
            elif p.status is Status.SKIPPED and p.error.startswith("suppressed"):
                s.suppressed += 1
            if p.status is None:
                candidates.append(p)
                for variable in p.blanks:
                    s.blanks[variable] += 1
                    examples = s.blank_examples.setdefault(variable, [])
                    if len(examples) < 5:
                        examples.append(p.row)
            records.append(RowRecord(p.row, p.cells, p.key, p.phone, p.status, p.error, message, own_hash))
        s.rows += len(batch)
        jobs: list[Job] = []
        with self.state.transaction():
            self.state.add_rows(records)
            known = self.state.known([p.key for p in candidates if p.key is not None])
            retry: set[str] = set()
            if self.options.retry_undelivered:
                retry = retryable(self.state, [key for key, k in known.items() if k.status in DONE])
            new: list[tuple[str, str, int, str, str]] = []
            touch: list[tuple[int, str]] = []
            dry: list[str] = []
            for p in candidates:
                assert p.job is not None and p.key is not None
                job = p.job
                if p.text is not None and self.options.dry_run:  # segments are a check-time figure
                    seg = sms_segments(p.text)
                    s.segments += seg.parts
                    s.multi_segment += seg.parts > 1
                    s.unicode_rows += seg.encoding == "UCS-2"
                k: Known | None = known.get(p.key)
                retrying = False  # a sent row whose delivery failed for a temporary reason
                if k is None:
                    new.append((p.key, p.phone, p.row, job.payload_hash, job.message))
                    if p.phone in went:
                        self.deferred.append(p)
                        continue
                else:
                    touch.append((p.row, p.key))
                    retrying = p.key in retry
                    if not retrying and not self._should_send(k, job):
                        continue
                self._take(p, job, retrying, jobs, dry)
            self.state.add_recipients(new)
            self.state.touch_rows(touch)
            if dry:
                self.state.set_status(dry, Status.DRY_RUN)
        return jobs

    def _take(self, p: Prepared, job: Job, retrying: bool, jobs: list[Job], dry: list[str]) -> None:
        """Count a row that is to be sent and queue its job (``dry``: its key, for a dry run),
        unless the run stopped or ``--limit`` is reached."""
        s = self.summary
        if self.stopped:
            s.not_reached += 1
            return
        if self.options.limit is not None and self.queued >= self.options.limit:
            s.limit_pending += not retrying  # a row left sent is not pending
            return
        s.retried_undelivered += retrying
        self.queued += 1
        s.countries[p.region] += 1
        if job.zones:
            s.zones[job.zones] += 1
        if job.note:
            rows = s.row_notes.setdefault(job.note, [])
            if len(rows) < 5:
                rows.append(p.row)
        if p.landline and self.campaign.provider == "twlo":
            s.landlines += 1
            if len(s.landline_examples) < 5:
                s.landline_examples.append(p.row)
        if self.options.dry_run:
            dry.append(job.key)
            if job.scheduled:  # for the confirmation question: when they go out
                s.note_schedule(json.loads(job.body)["schedule"])
        else:
            jobs.append(job)

    def finish(self) -> list[Job]:
        """Once the whole file is read (allow_duplicates): each deferred row (its text matches
        no request of its number) takes a request of its number that went, or may have, and
        that no row of the sheet has now, instead of being sent. Such a request was a row's
        that was edited since: sending the new text would reach the person twice. Its outcome
        shows on the row, with the message that went (State.results says the row's own text was
        not sent). Other deferred rows are sent as new ones: their jobs."""
        jobs: list[Job] = []
        dry: list[str] = []
        if not self.deferred:
            return jobs
        phones = [p.phone for p in self.deferred]
        found, taken = self.state.occurrences(phones), self.state.keys_read(phones)  # once for all of them
        with self.state.transaction():
            for p in sorted(self.deferred, key=lambda d: d.row):
                assert p.job is not None and p.key is not None
                went = [(k, status) for k, status, _ in found.get(p.phone, []) if status in WENT and k not in taken]
                if went:
                    key, status = went[0]
                    taken.add(key)
                    self.state.inherit(p.row, p.key, key)
                    s = self.summary
                    if status in DONE:
                        s.already_done += 1
                    elif status in (Status.CANCELLED, Status.CANCELLING):
                        s.held_cancelled += 1
                    else:
                        s.held_unknown += 1
                else:
                    self._take(p, p.job, False, jobs, dry)
            if dry:
                self.state.set_status(dry, Status.DRY_RUN)
        self.deferred.clear()
        return jobs

    def _taken_back_or_done(self, batch: list[Prepared]) -> set[str]:
        """Phones of this batch's invalid rows whose recipient an earlier run already sent,
        scheduled or cancelled."""
        phones = [p.phone for p in batch if p.status is Status.INVALID and p.phone and p.key is None]
        if not phones:
            return set()
        held = DONE | {Status.CANCELLED, Status.CANCELLING}
        return {key for key, k in self.state.known(phones).items() if k.status in held}

    def _should_send(self, known: Known, job: Job) -> bool:
        s = self.summary
        if known.status in DONE:
            s.already_done += 1  # whether its message changed is known once the file is read
            return False
        if known.status in (Status.CANCELLED, Status.CANCELLING):
            s.held_cancelled += 1  # the user took it back: a rerun must not send it after all
            return False
        if known.status is Status.FAILED and not self.options.retry_failed:
            s.held_failed += 1
            return False
        if known.status in (Status.UNKNOWN, Status.SENDING) and not self.options.resend_unknown:
            s.held_unknown += 1
            return False
        if known.status is Status.UNKNOWN and known.reconciled == "ambiguous":
            # The API lists more than one message that could be this row's: resending could
            # send it twice, --resend-unknown or not (issue 10, item 2).
            s.held_ambiguous += 1
            return False
        return True

    def _number_occurrences(self, batch: list[Prepared]) -> tuple[list[Prepared], set[str]]:
        """The batch with each row's recipient (:func:`number_occurrences`), and the numbers
        among it with a request that went (``WENT``): a row of those given a new recipient waits
        for :meth:`finish`."""
        phones = sendable_phones(batch)
        known = self.state.occurrences(phones)
        went = {phone for phone, found in known.items() if any(status in WENT for _, status, _ in found)}
        return number_occurrences(batch, known, self.state.keys_read(phones)), went


def skip_duplicate(p: Prepared, first: dict[str, int]) -> Prepared:
    """A sendable row whose recipient already has a row in ``first`` (recipient → row number)
    becomes ``skipped``, "duplicate of row N"; otherwise it becomes that recipient's first row.
    The one rule for ``send``, ``check`` and ``preview`` (without ``allow_duplicates``)."""
    if p.status is not None or p.key is None:
        return p
    if p.key in first:
        return Prepared(p.row, p.cells, p.phone, p.key, Status.SKIPPED, f"duplicate of row {first[p.key]}")
    first[p.key] = p.row
    return p


async def run(
    campaign: Campaign,
    options: Options,
    *,
    results_path: Path | None = None,
    on_progress: Callable[[Summary, Outcome | None], None] | None = None,
    stop_event: asyncio.Event | None = None,
) -> Summary:
    """Send (or dry-run) a campaign; the one function behind ``campaign send``.

    Raises CampaignError subclasses for problems found before anything is sent. Returns the
    summary otherwise; ``summary.exit_code()`` is the process exit code.
    """
    if options.worker and not campaign.state_url:
        raise UsageError(
            '--worker shares a campaign between runs through PostgreSQL: set state = "postgresql://..." in '
            'the campaign file or CAMPAIGN_STATE_URL (README, "Several workers").'
        )
    if campaign.state_url and not options.dry_run:
        # Every send of a PostgreSQL campaign works the shared queue, so that a plain rerun and
        # workers never send the same row (campaign.workers).
        from campaign.workers import run_shared

        return await run_shared(
            campaign, options, results_path=results_path, on_progress=on_progress, stop_event=stop_event
        )
    summary = Summary(dry_run=options.dry_run, rate=campaign.sending.rate, warnings=campaign_warnings(campaign))
    summary.expected = options.expected
    started = time.monotonic()
    pipeline = Pipeline(campaign)  # opens and checks the file and templates: nothing sent yet
    summary.warnings.extend(pipeline.warnings)
    require_api_key(options)
    async with AsyncExitStack() as stack:
        # Forked first, before the lock and the state file exist, so the child holds neither.
        batches = await stack.enter_async_context(prepared_batches(pipeline, child=options.prepare_in_child))
        if not options.dry_run:
            stack.enter_context(store.lock(campaign))
            store.check_location(campaign)  # a campaign sent through PostgreSQL until now
        real = store.open_state(campaign) if (not options.dry_run or store.state_exists(campaign)) else None
        if real is not None:
            stack.callback(real.close)
        if options.dry_run:
            state = State.scratch(real)
            stack.callback(state.close)
        else:
            assert real is not None
            state = real
        if real is not None:
            # Before anything is read or sent: is this state file this campaign's, on this API?
            real.claim(
                campaign.path,
                None if options.command == "check" else identity(campaign, options),
                record=not options.dry_run,
            )
            if options.command == "send" and not options.dry_run:  # reconcile tells campaigns apart by it
                channel = channel_name(identity(campaign, options))
                register_state(store.ledger_location(campaign), channel, store.state_ref(campaign))
        summary.recovered_unknown = state.recover()
        run_id = state.begin_run(options.command, pipeline.file.columns)
        planner = Planner(campaign, state, options, summary)
        outcome_label = "stopped"  # a run that raises (its file broke, a Ctrl-C at once): status says so
        try:
            if options.dry_run:
                async for batch in batches:
                    planner.plan(batch)
                    if on_progress:
                        on_progress(summary, None)
                planner.finish()
                state.finish_read()
                summary.read_all = True
                state.attribute()
                if options.command == "check":
                    summary.counts = Counter(state.counts())
                    _forecast(campaign, summary)
                outcome_label = "finished"
            else:
                outcome_label = await _send(
                    campaign, batches, planner, state, options, summary, on_progress, stop_event
                )
        finally:
            state.end_run(run_id, outcome_label)
            if not options.dry_run:
                state.set_meta(LIMIT_PENDING_META, str(summary.limit_pending + summary.waiting))
            summary.elapsed = time.monotonic() - started
            target = results_path or (campaign.report if options.command == "check" else campaign.results)
            finish_summary(
                state,
                summary,
                target if options.write_results else None,
                with_segments=options.command == "check" and campaign.provider == "twlo",
            )
    return summary


def finish_summary(state: State, summary: Summary, target: Path | None, *, with_segments: bool = False) -> None:
    """What every send (plain, or a worker's) and check end with: the counts, reasons and changed
    messages from the state, then the results file at ``target`` (None: not written). A file that
    cannot be written is ``summary.results_error``: the state has everything, so it is no loss."""
    changed = state.changed_since_sent()
    summary.changed_since_sent, summary.changed_examples = len(changed), changed[:5]
    summary.counts = Counter(state.counts())
    summary.reasons = explain_reasons(state, summary.counts)
    if target is None:
        return
    try:
        export(state, target, with_segments=with_segments)
        summary.results_path = target
    except OutputError as err:  # the state file has everything; say how to write it elsewhere
        summary.results_error = f"cannot write {target} ({err.reason})"


def require_api_key(options: Options) -> None:
    """UsageError unless a send has an API key (a dry run needs none)."""
    if not options.dry_run and not options.api_key:
        raise UsageError(
            "Set SOCIOCS_API_KEY to your Sociocs API key (Profile & settings → API), or add "
            "--sandbox to try the campaign against the built-in local API."
        )


async def _send(
    campaign: Campaign,
    batches: AsyncIterator[list[Prepared]],
    planner: Planner,
    state: State,
    options: Options,
    summary: Summary,
    on_progress: Callable[[Summary, Outcome | None], None] | None,
    stop_event: asyncio.Event | None,
) -> str:
    """Stream batches into the sender; stop cleanly on a stop event or an API stop."""
    sending = campaign.sending
    progress = outcome_counter(summary, on_progress)
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            SociocsClient(campaign.api_url, options.api_key, timeout=sending.timeout, connections=sending.concurrency)
        )
        if options.resend_unknown:
            await reconcile_before_resend(campaign, state, client, options, summary)
        gate = stack.enter_context(sending_gate(campaign, options))
        sender = Sender(client, state, sending, backoff_base=options.backoff_base, on_outcome=progress, gate=gate)
        await sender.start()
        watcher = None
        input_error: CampaignError | None = None
        if stop_event is not None:

            async def watch() -> None:
                await stop_event.wait()
                sender.stop()

            watcher = asyncio.create_task(watch())
        try:
            try:
                async for batch in batches:
                    # Once the run stops, the rest of the file is still read and recorded
                    # (pending), so the results file has every row whatever stopped the run.
                    planner.stopped = sender.stopping
                    jobs = planner.plan(batch)
                    if on_progress:
                        on_progress(summary, None)
                    for job in jobs:
                        if not await sender.put(job):
                            break
                    await asyncio.sleep(0)  # let workers and the journal run between batches
                planner.stopped = sender.stopping
                for job in planner.finish():
                    if not await sender.put(job):
                        break
                state.finish_read()  # the whole file was read: this run's rows are the snapshot
                summary.read_all = True
                if options.wait:

                    def waiting(label: str) -> None:
                        summary.waiting_for = label
                        if on_progress:
                            on_progress(summary, None)

                    await sender.wait_for_windows(waiting)
            except CampaignError as err:
                # The file broke halfway (the checks at open catch what they can). Queued rows
                # are dropped; requests in flight finish. If none had gone out this is an input
                # error (exit 2, nothing sent), otherwise a stopped run (exit 3).
                sender.stop(f"reading the recipients stopped: {err}")
                input_error = err
        finally:
            await sender.close()
            if watcher is not None:
                watcher.cancel()
        if input_error is None:
            state.attribute()  # after the last outcome: a send of this run is attributed too
        summary.rate_limited = sender.rate_limited
        summary.requests = sender.requests
        summary.waiting = len(sender.held)
        summary.waiting_limit = sum(hold.limit for hold, _ in sender.held.values())
        summary.waiting_for = ""
        first = sender.next_opening()
        if first is not None:
            summary.next_window = first.shown
        return run_outcome(summary, sender, stop_event, input_error)


def outcome_counter(
    summary: Summary, on_progress: Callable[[Summary, Outcome | None], None] | None
) -> Callable[[Outcome], None]:
    """The sender's ``on_outcome``: count each finished row in ``summary``, then report progress."""

    def progress(outcome: Outcome) -> None:
        summary.finished_now += 1
        summary.outcomes[outcome.status] += 1
        if outcome.status in DONE:
            summary.sent_now += 1
        if on_progress:
            on_progress(summary, outcome)

    return progress


async def reconcile_before_resend(
    campaign: Campaign, state: State, client: SociocsClient, options: Options, summary: Summary
) -> None:
    """``--resend-unknown``: never resend what the API lists. Reconcile the unknown rows first,
    with this run's client; if the listing cannot be had, refuse rather than resend blindly
    (issue 10, item 2): RunStopped, nothing sent."""
    if not state.by_status(Status.UNKNOWN):
        return
    try:
        summary.reconciled = await reconcile_state(
            campaign, state, client, channel=peers_channel(campaign, options)
        )
    except CampaignError as err:
        raise RunStopped(
            f"--resend-unknown reconciles the unknown rows first, and that failed: {full_stop(str(err))} "
            "Nothing was sent; rerun when the API answers."
        ) from None


def run_outcome(
    summary: Summary, sender: Sender, stop_event: asyncio.Event | None, input_error: CampaignError | None
) -> str:
    """How a send ended ("stopped", "interrupted" or "finished"), with the sender's figures in
    ``summary``. Re-raises the recipients file's error when it broke before any request: an
    input error (exit 2, nothing sent), not a stopped run."""
    summary.rate_limited = sender.rate_limited
    summary.requests = sender.requests
    if input_error is not None and sender.requests == 0:
        raise input_error
    if sender.stop_reason:
        summary.stop_reason = sender.stop_reason
        return "stopped"
    if stop_event is not None and stop_event.is_set():
        summary.interrupted = True
        return "interrupted"
    return "finished"


@contextlib.contextmanager
def sending_gate(campaign: Campaign, options: Options) -> Iterator[timing.Gate | None]:
    """What the sender asks before each row (campaign.timing.Gate), or None when nothing in
    ``[schedule]`` limits when rows go. The daily limit counts on the shared ledger, per API and
    channel (a sandbox run counts among sandbox runs only); WhatsApp's one message per number
    every 6 seconds (``allow_duplicates``) is kept in this run's memory when there is no limit."""
    sched = campaign.schedule
    pair = PAIR_GAP if campaign.recipients.allow_duplicates and campaign.provider in WHATSAPP else None
    ident = identity(campaign, options)
    channel = channel_name(ident)
    ledger: Ledger | None = None
    if sched.daily_limit is not None:
        ledger = Ledger(store.ledger_location(campaign), channel, daily_limit=sched.daily_limit, pair_gap=pair)
    elif pair is not None:
        ledger = Ledger(":memory:", channel, daily_limit=None, pair_gap=pair)
    try:
        yield timing.Gate(sched, ledger) if ledger is not None or sched.has_window else None
    finally:
        if ledger is not None:
            ledger.close()


def _forecast(campaign: Campaign, summary: Summary) -> None:
    """``check``: when each time zone's rows go out at the configured rate, and a warning for
    each zone whose rows cannot all go out inside their window."""
    sched = campaign.schedule
    sendable = summary.counts.get(Status.DRY_RUN, 0) or sum(summary.zones.values())
    if sched.daily_limit is not None and sendable > sched.daily_limit:
        days = -(-sendable // sched.daily_limit)
        summary.warnings.append(
            f"{sendable:,} recipients but [schedule] daily_limit is {sched.daily_limit:,} per 24 hours (with every "
            f"other campaign on this channel): they go out over at least {days} days; rows over the limit wait."
        )
    if not sched.has_window or not summary.zones:
        return
    at = timing.now()
    if sched.send_at is not None:  # each request carries its schedule: posted now, delivered then
        local = "" if sched.send_at.tzinfo is not None else ", the recipient's time"
        summary.forecast_label = "posted"
        summary.forecast_note = f"The API holds each message until send_at {sched.send_at_text}{local}."
    inside = f"window {sched.window_text}" if sched.window_text else "sending days"
    for line in timing.forecast(sched, dict(summary.zones), campaign.sending.rate, at):
        summary.forecast.append(line.describe())
        if not line.fits:
            n = line.rows  # one row too can take longer than its window, at a very low rate
            summary.warnings.append(
                f"{count(n, 'row')} for {timing.zone_label(line.zones)} cannot {agree(n, '', 'all ')}go "
                f"out inside {agree(n, 'its', 'their')} {inside} at {campaign.sending.rate:g} per second; "
                f"{agree(n, 'it ends', 'the last go out')} "
                f"{line.last.astimezone(timing.zone(line.zones[0])):%a %d %b %H:%M} local. Raise [sending] rate "
                "or split the campaign."
            )


def rewrite_results(campaign: Campaign, path: Path) -> int:
    """Rewrite ``path`` from the campaign's state file alone (after delivery reports came in,
    with no run open); the number of rows written."""
    state = store.open_state(campaign)
    try:
        return export(state, path)
    finally:
        state.close()


def export(state: State, path: Path, *, with_segments: bool = False) -> int:
    """(Re)write a results file from the state file."""
    rows: Iterator[tuple[Any, ...]] = state.results()
    extra: tuple[str, ...] = ()
    if has_reports(state):  # PRODUCT.md: the delivery columns come once reports arrive
        extra = DELIVERY_COLUMNS
    else:
        rows = (r[: -len(DELIVERY_COLUMNS)] for r in rows)
    if with_segments:
        extra = (*extra, "segments", "encoding")

        def add_segments(source: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
            for r in source:
                seg = sms_segments(r[8]) if r[8] else None
                yield (*r, seg.parts if seg else "", seg.encoding if seg else "")

        rows = add_segments(rows)
    return write_results(path, state.columns(), rows, extra)


async def check(campaign: Campaign, *, report: Path | None = None, prepare_in_child: bool | None = None) -> Summary:
    """``campaign check``: everything but the sending, on a copy of the state.
    ``prepare_in_child=False`` prepares rows in this process (the web server does not fork)."""
    options = Options(dry_run=True, command="check", prepare_in_child=prepare_in_child)
    return await run(campaign, options, results_path=report)


def preview(campaign: Campaign, n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows as ``send`` would treat them: the request it would send, or why
    it would not (``status`` and ``error``: invalid, skipped as a duplicate or suppressed, or
    already done in an earlier run according to the campaign's state file, if there is one).
    Reads the state file, never writes a row to it."""
    pipeline = Pipeline(campaign)
    allow_dup = campaign.recipients.allow_duplicates
    out: list[dict[str, Any]] = []
    first: dict[str, int] = {}  # recipient → its first row, as send decides duplicates
    used: set[str] = set()  # allow_duplicates: the recipients rows so far took (number_occurrences)
    with contextlib.ExitStack() as stack:
        state = None
        if store.state_exists(campaign):
            state = stack.enter_context(contextlib.closing(store.open_state(campaign)))
        for batch in pipeline.batches():
            if allow_dup:
                batch = number_occurrences(batch, state.occurrences(sendable_phones(batch)) if state else {}, used)
            for p in batch:
                p = p if allow_dup else skip_duplicate(p, first)
                item: dict[str, Any] = {"row": p.row, "phone": p.phone}
                held = _held_by_state(state, p.key, p.job.payload_hash if p.job else "") if p.status is None else None
                if p.status is None and held is None and p.job is not None:
                    item["request"] = json.loads(p.job.body)
                    if p.text is not None:
                        seg = sms_segments(p.text)
                        item["segments"] = f"{seg.parts} ({seg.encoding}, {seg.units} characters)"
                elif held is not None:
                    item["status"], item["error"] = held
                else:
                    item["status"] = p.status.value if p.status is not None else "invalid"
                    item["error"] = p.error
                out.append(item)
                if len(out) >= n:
                    return out
    return out


def _held_by_state(state: State | None, key: str | None, own_hash: str = "") -> tuple[str, str] | None:
    """Why ``send`` (without --retry-failed / --resend-unknown) would not send this recipient
    again, from the state file: (its status, the sentence); None when it would.

    ``own_hash``: the hash of this row's request. When the request the earlier run made differs
    (another row of the number was first then, or this row's text changed since), the sentence
    says so: the results give that outcome to the row whose request it was (State.attribute)."""
    if state is None or key is None:
        return None
    known = state.known([key]).get(key)
    if known is None:
        return None
    other = (
        " with another message (another row's with this number, or this row's before it changed)"
        if own_hash and known.payload_hash and known.payload_hash != own_hash
        else ""
    )
    if known.status in DONE:
        return known.status.value, f"already sent by an earlier run{other}; send does not send it again"
    if known.status is Status.FAILED:
        return known.status.value, f"failed in an earlier run{other}; send sends it again only with --retry-failed"
    if known.status in (Status.UNKNOWN, Status.SENDING):
        return "unknown", f"its outcome is unknown{other}; send sends it again only with --resend-unknown"
    return None


_IN_FLIGHT = "a run was sending it when it stopped (or is sending it now); it may have been delivered"


@dataclass
class StatusReport:
    """``campaign status``: every row's status so far, the last run, the unknown and failed rows."""

    counts: dict[str, int]  # rows of the file (its last complete read) per status, after every run so far
    journal: dict[str, int]
    last_run: dict[str, Any] | None
    unknown: list[dict[str, Any]]
    scheduled: list[dict[str, Any]] = field(default_factory=list)  # upcoming scheduled rows, soonest first
    failed: list[dict[str, Any]] = field(default_factory=list)  # row, phone, error, ... in row order
    limit_pending: int = 0  # pending rows the last run left for later (--limit, window, daily limit)
    reasons: dict[str, Reasons] = field(default_factory=dict)  # invalid, failed, skipped -> why
    unread: bool = False  # the last send stopped before reading the whole file: rows are missing
    workers: list[dict[str, Any]] = field(default_factory=list)  # PostgreSQL: campaign.workers.workers

    def exit_code(self) -> ExitCode:
        """The rows part of PRODUCT.md "Exit codes", as ``send`` applies it: 0 or 1 (1 while
        rows of the file were never read: they are pending, in effect)."""
        return ExitCode.ROWS_NOT_SENT if self.unread else rows_exit_code(self.counts, self.limit_pending)


def status(campaign: Campaign, *, results_path: Path | None = None) -> StatusReport:
    """Read the state file: counts over all runs so far, and the rows that need attention.

    Raises UsageError when the campaign has no state file yet.
    """
    state = store.open_existing(campaign)
    try:
        state.claim(campaign.path, None, record=False)
        in_flight = [{**u, "error": _IN_FLIGHT} for u in state.by_status(Status.SENDING)]
        counts = state.counts()
        report = StatusReport(
            counts,
            state.journal_counts(),
            state.last_run(),
            state.by_status(Status.UNKNOWN) + in_flight,
            failed=state.by_status(Status.FAILED),
            limit_pending=int(state.meta(LIMIT_PENDING_META) or 0),
            reasons=explain_reasons(state, counts, (Status.INVALID, *_EXPLAINED)),
        )
        last = report.last_run
        report.unread = last is not None and last["command"] == "send" and state.meta("snapshot_run") != str(last["id"])
        at = timing.now()
        report.scheduled = [r for r in state.scheduled() if _upcoming(r["schedule_at"], at)]
        if state.shared:
            from campaign.leases import workers

            report.workers = workers(state)
            if any(w["state"] == "running" for w in report.workers):
                # Rows in flight belong to live workers (listed with them), not to a dead run.
                report.unknown = [u for u in report.unknown if u["error"] != _IN_FLIGHT]
        if results_path is not None:
            export(state, results_path)
        return report
    finally:
        state.close()


async def reconcile(campaign: Campaign, api_key: str, *, sandbox: bool = False) -> ReconcileReport:
    """``campaign reconcile``: resolve ``unknown`` rows from ``GET /messages`` (see
    :func:`reconcile_state`), under the campaign's lock, then rewrite the results file."""
    channel = channel_name(identity(campaign, Options(sandbox=sandbox)))
    return await _with_api(
        campaign,
        api_key,
        sandbox,
        lambda campaign, state, client: reconcile_state(campaign, state, client, channel=channel),
    )


async def _with_api(
    campaign: Campaign,
    api_key: str,
    sandbox: bool,
    work: Callable[[Campaign, State, SociocsClient], Awaitable[T]],
) -> T:
    """Run ``work`` on the campaign's state and an API client, under the campaign's lock, then
    rewrite the results file: what ``reconcile`` and ``cancel`` share. Raises UsageError when
    the campaign was never sent, and what :meth:`State.claim` raises for another API or file."""
    store.open_existing(campaign).close()  # never sent, or its state is elsewhere: say so before locking
    with store.lock(campaign):
        state = store.open_state(campaign)
        try:
            state.claim(campaign.path, identity(campaign, Options(sandbox=sandbox)), record=False)
            async with SociocsClient(
                campaign.api_url, api_key, timeout=campaign.sending.timeout, connections=2
            ) as client:
                report = await work(campaign, state, client)
            export(state, campaign.results)
        finally:
            state.close()
    return report


def _upcoming(schedule_at: str, at: datetime) -> bool:
    try:
        return datetime.fromisoformat(schedule_at) > at
    except ValueError:
        return False


async def cancel(
    campaign: Campaign, api_key: str, rows: list[int] | None = None, *, sandbox: bool = False
) -> CancelReport:
    """``campaign cancel``: delete the campaign's scheduled messages at the API (all, or the
    rows numbered ``rows``), under the campaign's lock, then rewrite the results file. See
    :mod:`campaign.cancel`. Raises UsageError when the campaign was never sent."""
    return await _with_api(
        campaign, api_key, sandbox, lambda campaign, state, client: cancel_state(campaign, state, client, rows)
    )
