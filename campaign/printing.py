"""What ``campaign`` prints: one way to print text as written, progress, summaries, status.

The CLI calls these after the library has done the work. Every line goes through consoles
that never interpret text (no markup, no emoji codes): a row's error such as "[message] text
uses ..." keeps its brackets, whatever a cell or the API put in it. Styles come only from the
Text objects ``line`` and ``say`` build, and sentences from different sources are joined by
``sentence`` (one full stop, one space), never by hand.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from campaign import runner, timing
from campaign.config import API_KEY_ENV, Campaign
from campaign.delivery import error_meaning
from campaign.delivery_store import Funnel
from campaign.errors import agree, count, full_stop
from campaign.state import Outcome, Status


def plain_console(*, stderr: bool = False) -> Console:
    """A console that prints text as written.

    No markup ("[message] text" keeps its brackets), no emoji codes (":smile:" stays), no
    highlighting: user and API text is never interpreted. Styles come only from the Text
    objects that line and say build. soft_wrap keeps long lines whole, so the commands in
    them can be copied.
    """
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True)


out = plain_console()
err = plain_console(stderr=True)


def sentence(*parts: str) -> str:
    """Join sentences as written: one space between them, one full stop between them at most.

    Parts come from different places (an API's "Authentication failed.", our hint, a file's
    path), so each is stripped and, unless it is the last, ends with its own punctuation or
    gets a full stop (:func:`campaign.errors.full_stop`): never "failed.. Check" nor a double
    space at a join. The text inside a part, and the end of the last one, are left alone.
    """
    texts = [p.strip() for p in parts if p and p.strip()]
    return " ".join([*(full_stop(t) for t in texts[:-1]), *texts[-1:]])


def line(console: Console, *pieces: str | tuple[str, str]) -> None:
    """Print one line from plain strings and (text, style) pairs; nothing is parsed as markup."""
    console.print(Text.assemble(*pieces))


def say(console: Console, label: str, style: str, *parts: str) -> None:
    """Print ``label`` in ``style``, then the sentences ``parts`` (see :func:`sentence`)."""
    line(console, (label, style), " ", sentence(*parts))


STATUS_ORDER = [s.value for s in Status if s not in (Status.SENDING, Status.CANCELLING)]



def schedule_phrase(planned: runner.Summary, n: int) -> str:
    """When the messages go out, for the confirmation question: "now", or their schedule."""
    if not planned.scheduled_rows or planned.schedule_range is None:
        return "now"
    low, high = (t.isoformat(sep=" ", timespec="minutes") for t in planned.schedule_range)
    when = f"scheduled for {low}" if low == high else f"scheduled between {low} and {high}"
    if planned.scheduled_rows < n:
        return f"now ({planned.scheduled_rows:,} of them {when})"
    return when


def not_sent(planned: runner.Summary) -> str:
    """The rows this run will not send, for the confirmation: "1 invalid, 2 skipped" and so on."""
    c = planned.counts
    parts = [
        (c.get(Status.INVALID, 0), "invalid"),
        (c.get(Status.SKIPPED, 0), "skipped (duplicates or suppressed)"),
        (planned.already_done, "already sent by an earlier run"),
        (planned.held_failed, "failed earlier (add --retry-failed to send them)"),
        (planned.held_unknown, "unknown from an earlier run (add --resend-unknown to send them)"),
        (planned.limit_pending, "left for a later run by --limit"),
    ]
    shown = [f"{n:,} {what}" for n, what in parts if n]
    return f"Not sent: {'; '.join(shown)}." if shown else ""



def by_outcome(summary: runner.Summary) -> str:
    """This run's finished rows by outcome, e.g. "184 sent, 72 failed, 44 unknown"."""
    shown = [f"{summary.outcomes[name]:,} {name}" for name in STATUS_ORDER if summary.outcomes.get(name)]
    return ", ".join(shown) or "none finished yet"


def progress_line(summary: runner.Summary, elapsed: float) -> str:
    """The plain progress line: rows finished in this run, counted by outcome, never all as "sent"."""
    done = summary.finished_now
    rate = done / max(elapsed, 1e-6)
    total = summary.total
    if total is None:  # --yes: nothing counted the rows first; the file is still being read
        read = count(summary.rows, "row")
        return f"{count(done, 'row')} finished: {by_outcome(summary)} ({rate:.1f}/s; {read} read so far)"
    return f"{done:,} of {count(total, 'row')} finished: {by_outcome(summary)} ({rate:.1f}/s)"


class ProgressDisplay:
    """A rich progress bar on a terminal; a plain line every few seconds otherwise.

    Either way the last thing drawn is the final count: the bar is redrawn on exit, and the
    plain lines end with one more when any was printed (a stale "299 of 300" misleads).
    ``clock`` is there for tests, which drive it without sleeping.
    """

    EVERY = 5.0  # seconds between plain lines

    def __init__(
        self, campaign: Campaign, *, terminal: bool | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.campaign = campaign
        self.terminal = out.is_terminal if terminal is None else terminal
        self.clock = clock
        self.bar: Progress | None = None
        self.task: Any = None
        self.started = self.last = clock()
        self.latest: runner.Summary | None = None  # for the last update on exit
        self.printed = ""  # the last plain line printed

    def __enter__(self) -> Callable[[runner.Summary, Outcome | None], None]:
        if self.terminal:
            self.bar = Progress(
                TextColumn("{task.description}", style="bold", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[outcomes]}", markup=False),
                TextColumn("{task.fields[rate]:.1f}/s", markup=False),
                TimeRemainingColumn(),
                console=out,
            )
        return self.update

    def update(self, summary: runner.Summary, outcome: Outcome | None) -> None:
        """Called for every outcome: does real work only a few times a second."""
        now = self.clock()
        if summary.waiting_for and outcome is None:
            out.print(f"waiting for {summary.waiting_for} (--wait)")
        self.latest = summary
        if self.bar is not None:
            if self.task is None:
                # Started at the first update, not on entry: the bar's refresh thread would
                # otherwise keep the run from forking its row-preparing process (campaign.prepare).
                self.bar.start()
                self.task = self.bar.add_task("sending", total=None, rate=0.0, outcomes="")
            elif now - self.last < 0.1:  # the bar redraws 10 times a second; more is wasted
                return
            self.last = now
            self._draw(summary, now)
        elif outcome is not None and now - self.last >= self.EVERY:
            self.last = now
            self._print(summary, now)

    def _print(self, summary: runner.Summary, now: float) -> None:
        text = progress_line(summary, now - self.started)
        if text != self.printed:
            out.print(text)
            self.printed = text

    def _draw(self, summary: runner.Summary, now: float) -> None:
        assert self.bar is not None
        done = summary.finished_now
        rate = done / max(now - self.started, 1e-6)
        total = summary.total  # None: an open-ended bar until the whole file is read
        self.bar.update(self.task, completed=done, total=total, rate=rate, outcomes=by_outcome(summary))

    def __exit__(self, *exc: object) -> None:
        if self.latest is None:
            return
        if self.bar is not None and self.task is not None:
            self._draw(self.latest, self.clock())  # the final counts, not the last drawn
            self.bar.stop()
        elif self.printed:
            self._print(self.latest, self.clock())


def counts_table(counts: dict[str, int], title: str) -> Table:
    """Rows per status, in the results file's order of statuses; the title is printed as written."""
    table = Table(title=title, show_header=True)
    table.add_column("status")
    table.add_column("rows", justify="right")
    for name in STATUS_ORDER:
        if counts.get(name):
            table.add_row(name, f"{counts[name]:,}")
    return table


def _rows(n: int, examples: list[int]) -> str:
    """"row 5", or "rows 4, 9, 11…" when ``n`` rows have more than these ``examples``."""
    return f"{agree(n, 'row')} {', '.join(map(str, examples))}{'…' if n > len(examples) else ''}"


def _print_warnings(s: runner.Summary) -> None:
    for warning in s.warnings:
        say(out, "warning:", "yellow", warning)
    for note, noted in s.row_notes.items():
        listed = ", ".join(map(str, noted))
        line(out, ("note:", "yellow"), f" {agree(len(noted), 'row')} {listed}: {note}")
    for variable, n in s.blanks.most_common():
        rows = _rows(n, s.blank_examples.get(variable, []))
        say(
            out,
            "warning:",
            "yellow",
            f"{{{{ {variable} }}}} is empty in {count(n, 'row')} ({rows}), "
            f"leaving a blank in the message; write {{{{ {variable} or '...' }}}} for a default."
        )


def _print_reasons(label: str, top: list[tuple[str, int, list[int]]]) -> None:
    """One line per reason: "  failed (72): <reason> — rows 4, 9, 11, 12, 20…"."""
    for shown, n, rows in top:
        line(out, f"  {label} ({n:,}): ", shown, f" — {_rows(n, rows)}")


def _print_invalid(s: runner.Summary) -> None:
    top = [
        (s.invalid_first.get(kind, kind) if n == 1 else kind, n, s.invalid_examples.get(kind, []))
        for kind, n in s.invalid_reasons.most_common()
    ]
    _print_reasons("invalid", top)


def _print_why(reasons: dict[str, runner.Reasons]) -> None:
    """The top reasons for failed and skipped rows (and invalid ones, for ``status``: a
    summary has those from its planner), like those for invalid rows."""
    for status in (Status.INVALID, Status.FAILED, Status.SKIPPED):
        if status in reasons:
            _print_reasons(status, reasons[status].top())


def command(*words: str) -> str:
    """A command line the user can copy: each word quoted for the shell where it needs it."""
    return " ".join(shlex.quote(w) for w in words)


def print_summary(campaign: Campaign, s: runner.Summary, campaign_file: str, sandbox: bool = False) -> None:
    """After ``send``: counts, why rows are invalid, failed or skipped, and the commands to run next.

    ``sandbox``: the run used ``--sandbox``, so the printed ``send`` commands carry it too.
    """
    if s.database_lost:  # no counts to show: the journal is out of reach, not empty
        lost = f"{count(s.sent_now, 'row')} in {s.elapsed:.1f} s before the database went away"
        out.print(f"{campaign.name}: this worker sent {lost}.")
    else:
        out.print(counts_table(s.counts, f"{campaign.name}: {count(s.rows, 'row')}, {s.elapsed:.1f} s"))
    _print_invalid(s)
    _print_why(s.reasons)
    _print_warnings(s)
    flag = ["--sandbox"] if sandbox else []  # a --sandbox run keeps its own state: later commands say so too
    send_again = ["campaign", "send", campaign_file, *flag]
    status_cmd = command("campaign", "status", campaign_file, *flag)
    if s.shared and not s.database_lost:
        out.print(f"This worker sent {s.sent_now:,} of them; the table counts the whole campaign, every worker's rows.")
    if s.recovered_unknown:
        rows = count(s.recovered_unknown, "row was", "rows were")
        out.print(f"{rows} in flight when an earlier run died; now unknown.")
    if s.already_done:
        rows = count(s.already_done, "row was", "rows were")
        out.print(f"{rows} already sent by an earlier run and not sent again.")
    if s.changed_since_sent:
        n = s.changed_since_sent
        say(
            out,
            "warning:",
            "yellow",
            f"the message changed since {count(n, 'of them was', 'of them were')} sent; "
            f"{agree(n, 'it', 'they')} got the old text ({_rows(n, s.changed_examples)}; the results file "
            "shows the text sent and says so in the error column).",
        )
    if s.reconciled is not None:
        r = s.reconciled
        out.print(
            f"--resend-unknown reconciled {count(r.checked, 'unknown row')} first: {r.found:,} found sent, "
            f"{r.pending:,} not listed (sent now), {r.ambiguous + r.uncovered:,} still unknown."
        )
    if s.held_ambiguous:
        whose = agree(s.held_ambiguous, "the row's", "theirs")
        out.print(
            f"{count(s.held_ambiguous, 'unknown row was', 'unknown rows were')} not resent: the API lists more "
            f"than one message that could be {whose} (see `{status_cmd}`)."
        )
    if s.retried_undelivered:
        again = agree(s.retried_undelivered, "was", "were")
        out.print(
            f"{count(s.retried_undelivered, 'row')} whose delivery failed for a temporary reason {again} sent again."
        )
    if s.rate_limited:
        out.print(
            f"The API rate-limited {count(s.rate_limited, 'request')} (429); the rate was lowered and "
            f"{agree(s.rate_limited, 'it was', 'they were')} retried."
        )
    if s.limit_pending:
        out.print(f"--limit reached: {count(s.limit_pending, 'row is', 'rows are')} pending for the next run.")
    failed = s.counts.get(Status.FAILED, 0)
    if failed:
        held = count(s.held_failed, "of them was", "of them were")
        not_retried = f" ({held} not retried in this run)" if s.held_failed else ""
        again = command(*send_again, "--retry-failed")
        out.print(f"{count(failed, 'row')} failed{not_retried}. To send {agree(failed, 'it', 'them')} again: {again}")
    if s.waiting:
        windows = s.waiting - s.waiting_limit
        what = " and ".join(
            part
            for part in (
                count(windows, "row waits for its window", "rows wait for their window") if windows else "",
                count(s.waiting_limit, "row waits", "rows wait") + " for the daily limit" if s.waiting_limit else "",
            )
            if part
        )
        out.print(
            f"{what}; the next opens at {s.next_window}. Run `{command(*send_again)}` again then "
            "(cron), or add --wait to keep running."
        )
    unknown = s.counts.get(Status.UNKNOWN, 0)
    unknown_rows = f"{count(unknown, 'row is', 'rows are')} unknown"
    if unknown and sandbox:
        line(out, (unknown_rows, "yellow"), f" ({SANDBOX_UNKNOWN.format(command(*send_again))}).")
    elif unknown:
        line(
            out,
            (unknown_rows, "yellow"),
            f" (the API may have sent {agree(unknown, 'it', 'them')}). To find out: "
            f"{command('campaign', 'reconcile', campaign_file)} "
            f"(then {command(*send_again)} sends the ones it did not; with --resend-unknown, send reconciles "
            "first and resends only what the API does not list).",
        )
    if s.stop_reason:
        say(err, "stopped:", "bold red", s.stop_reason, stop_hint(s.stop_reason))
    if s.interrupted:
        line(err, f"Interrupted. Resume with: {command(*send_again, *(['--worker'] if s.shared else []))}")
    print_results(s, status_cmd)


#: A --sandbox trial's unknown rows: its built-in sandbox ended with the run, so there is no API
#: to ask (``campaign reconcile`` asks the real one, of the real state): resend them, to a sandbox.
SANDBOX_UNKNOWN = (
    "the trial's sandbox may have taken them, and it ended with its run, so there is nothing to ask; "
    "`{} --resend-unknown` sends them again, to a new sandbox"
)


def stop_hint(reason: str) -> str:
    """What to do about the API's reason for stopping a run (bad key, bad channel, wrong URL)."""
    if "channel_key" in reason:
        return "Check channel_key and provider in the campaign file (Profile & settings → API)."
    if "HTTP 401" in reason or "authentication" in reason.lower() or "apikey" in reason.lower():
        return f"Check {API_KEY_ENV}."
    if "404" in reason:
        return "Check api_url in the campaign file or SOCIOCS_API_URL."
    if reason.startswith("cannot reach the API"):
        return "Check api_url (or SOCIOCS_API_URL) and the network; a plain rerun sends the pending rows."
    return "Rerun later to continue; nothing sent is sent again."


def print_check(s: runner.Summary) -> None:
    """After ``check``: PRODUCT.md's check summary (sendable, invalid by reason, duplicates...)."""
    out.print(counts_table(s.counts, f"check: {count(s.rows, 'row')}"))
    sendable = s.counts.get(Status.DRY_RUN, 0)
    out.print(f"Sendable: {sendable:,}")
    _print_invalid(s)
    _print_why(s.reasons)
    _print_warnings(s)
    if s.duplicates:
        out.print(f"Duplicates skipped: {s.duplicates:,}")
    if s.suppressed:
        out.print(f"Suppressed: {s.suppressed:,}")
    if s.already_done:
        out.print(f"Already sent by an earlier run: {s.already_done:,}")
    print_destinations(s)
    if s.zones:
        zones = ", ".join(f"{timing.zone_label(z)} {n:,}" for z, n in s.zones.most_common())
        out.print(f"Time zones: {zones}")
    for when in s.forecast:
        out.print(f"  {s.forecast_label}: {when}")
    if s.forecast and s.forecast_note:
        out.print(f"  {s.forecast_note}")
    if s.segments:
        out.print(
            f"SMS segments: {s.segments:,} (multi-segment rows: {s.multi_segment:,}; Unicode rows: {s.unicode_rows:,})"
        )
    if s.rate:
        seconds = sendable / s.rate
        out.print(f"Time at {s.rate:g}/s: {duration(seconds)}")
    print_results(s, None)


def print_destinations(s: runner.Summary) -> None:
    """Where the messages go, most first ("Destinations: US 1,203, CA 4, AU 1"): PRODUCT.md has
    check and the send confirmation count recipients per destination country."""
    if s.countries:
        where = ", ".join(f"{region} {n:,}" for region, n in s.countries.most_common())
        out.print(f"Destinations: {where}")
    if s.landlines:
        say(
            out,
            "warning:",
            "yellow",
            f"{count(s.landlines, 'SMS row goes to a landline', 'SMS rows go to landlines')} "
            f"({_rows(s.landlines, s.landline_examples)}), which usually cannot receive texts "
            "(Twilio error 30006).",
        )


def print_results(s: runner.Summary, status_cmd: str | None) -> None:
    """Where the results (or check report) file is, or why it could not be written and what to do.

    ``status_cmd``: the ``campaign status ...`` command of a send, which can write it elsewhere;
    None after ``check``.
    """
    if s.results_error is None:
        out.print(f"{'Results' if status_cmd else 'Report'}: {s.results_path}")
        return
    hint = ""
    if status_cmd and not s.database_lost:
        hint = f" Nothing is lost: `{status_cmd} --results PATH` writes it elsewhere."
    say(err, "error:", "bold red", s.results_error, hint)


def duration(seconds: float) -> str:
    """Seconds as "1h 02m 03s", "2m 03s" or "3s"."""
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def print_status(
    report: runner.StatusReport, campaign_file: str, results: str | None, sandbox: bool = False
) -> None:
    """``campaign status``: cumulative counts, the last run, why rows failed, the rows to act on."""
    total = sum(report.counts.values())
    title = ("all " if total != 1 else "") + count(total, "row") + ", after every run so far (cumulative)"
    out.print(counts_table(report.counts, title))
    if report.last_run:
        r = report.last_run
        live = any(w["state"] == "running" for w in report.workers)
        unfinished = "still running (workers below)" if live else "did not finish (killed?)"
        out.print(f"Last run: {r['command']} started {r['started_at']}, {r['outcome'] or unfinished}")
    if report.unread:
        again = command("campaign", "send", campaign_file, *(["--sandbox"] if sandbox else []))
        line(
            out,
            ("The last send stopped before it had read the whole recipients file", "yellow"),
            f": these counts and the results file hold only the rows it read. `{again}` reads the rest "
            "(and sends nothing twice).",
        )
    _print_why(report.reasons)
    shown = 50
    retry = command("campaign", "send", campaign_file, *(["--sandbox"] if sandbox else []), "--retry-failed")
    for label, rows, hint in (
        ("failed", report.failed, f"`{retry}` sends them again"),
        (
            "unknown",
            report.unknown,
            SANDBOX_UNKNOWN.format(command("campaign", "send", campaign_file, "--sandbox"))
            if sandbox
            else f"run `{command('campaign', 'reconcile', campaign_file)}` to find out",
        ),
    ):
        if not rows:
            continue
        more = f", the first {shown}" if len(rows) > shown else ""
        line(out, (count(len(rows), f"{label} row"), "yellow"), f" ({hint}{more}):")
        for u in rows[:shown]:
            line(out, f"  row {u['row']}  {u['phone']}  ", u["error"] or "no reason recorded")
    if report.scheduled:
        hint = f"`{command('campaign', 'cancel', campaign_file)}` takes them back"
        out.print(f"{count(len(report.scheduled), 'scheduled row')} still to go out ({hint}):")
        for r in report.scheduled[:shown]:
            out.print(f"  {r['schedule_at']}  row {r['row']}  {r['phone']}")
        if len(report.scheduled) > shown:
            out.print(f"  … and {len(report.scheduled) - shown:,} more")
    if report.workers:
        running = sum(w["state"] == "running" for w in report.workers)
        out.print(f"Workers: {running} running, {len(report.workers)} in all (newest first):")
        for w in report.workers[:20]:
            role = ", planning" if w["planner"] and w["state"] == "running" else ""
            if w["state"] == "silent":
                role = " (presumed dead: its process on this host is gone, or no heartbeat for longer than the lease)"
            out.print(
                f"  {w['host']} pid {w['pid']}  {w['state']}{role}  started {w['started_at']}  "
                f"last heartbeat {w['heartbeat_age']:.1f} s ago  {w['in_flight']} in flight"
            )
    if report.limit_pending and report.counts.get(Status.PENDING):
        left = count(report.limit_pending, "pending row was", "pending rows were")
        out.print(f"{left} left for a later run (--limit, window, daily limit).")
    if results:
        out.print(f"Results: {results}")


def print_funnel(f: Funnel, provider: str) -> None:
    """Delivery reports: accepted → sent → delivered → read (WhatsApp only: SMS has no read receipts), with
    percentages of accepted; failures by code with their meaning."""
    if not f.accepted and not f.events:
        return
    if not f.events:
        out.print("No delivery reports yet: run `campaign subscribe` and `campaign listen` to receive them.")
        return
    table = Table(title="delivery", show_header=True)
    table.add_column("stage")
    table.add_column("messages", justify="right")
    table.add_column("of accepted", justify="right")
    stages = [("accepted", f.accepted), ("sent", f.sent), ("delivered", f.delivered)]
    if provider != "twlo" or f.read:
        stages.append(("read", f.read))
    for stage, n in stages:
        table.add_row(stage, f"{n:,}", f"{100 * n / f.accepted:.1f}%" if f.accepted else "")
    out.print(table)
    if f.accepted > f.reported:
        out.print(f"{f.accepted - f.reported:,} accepted messages have no delivery report yet.")
    for (word, code), n in f.failures.most_common():
        meaning = error_meaning(code) or f.examples.get((word, code), "") or "no reason given"
        out.print(f"  {word} {code or '(no code)'} ({n:,}): {meaning}")
    if f.unmatched:
        out.print(f"{f.unmatched:,} reported message ids match no row yet (sent by another tool, or still unknown).")
