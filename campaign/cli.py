"""The ``campaign`` command: parse, call one library function, print, pick the exit code.

All the work lives in ``campaign.runner``; this module only turns flags into options, shows
progress and summaries (``campaign.printing``), and maps errors to PRODUCT.md's exit codes. A
``CampaignError`` is printed as its one sentence; anything else is a bug and gets a
traceback only with ``--debug``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from campaign import __version__, delivery_runner, runner
from campaign.config import API_KEY_ENV, Campaign, for_sandbox, load_campaign
from campaign.delivery import SECRET_ENV, Report
from campaign.delivery_store import Funnel
from campaign.errors import CampaignError, ExitCode, UsageError, count
from campaign.printing import (
    ProgressDisplay,
    err,
    line,
    not_sent,
    out,
    print_check,
    print_destinations,
    print_funnel,
    print_status,
    print_summary,
    say,
    schedule_phrase,
    sentence,
)
from campaign.state import Status

T = TypeVar("T")


class _Ctx:
    debug = False


def _fail(error: BaseException) -> None:
    """Print an error the way users should see it and exit with its code."""
    if isinstance(error, CampaignError):
        say(err, "error:", "bold red", str(error))
        sys.exit(int(error.exit_code))
    if isinstance(error, KeyboardInterrupt):
        sys.exit(int(ExitCode.INTERRUPTED))
    raise error


def _guard(debug: bool, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (CampaignError, KeyboardInterrupt) as error:
        if debug:
            err.print_exception()
        _fail(error)
        raise  # unreachable
    except Exception:
        if debug:
            raise
        say(
            err,
            "internal error:",
            "bold red",
            "campaign hit a bug; rerun with --debug for the traceback and report it.",
            "Nothing committed to the state file is lost.",
        )
        sys.exit(int(ExitCode.STOPPED))


def _load(path: str, **overrides: Any) -> Campaign:
    campaign = load_campaign(path)
    sending = {k: v for k, v in overrides.items() if v is not None}
    if sending:
        campaign = dataclasses.replace(campaign, sending=dataclasses.replace(campaign.sending, **sending))
    return campaign


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="campaign")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """Send a messaging campaign from a spreadsheet through the Sociocs API.

    Start with `campaign check CAMPAIGN.toml`, then `campaign send CAMPAIGN.toml`.
    Add --sandbox to send to a built-in local API instead (no account needed).
    """
    _Ctx.debug = debug


@cli.command()
@click.argument("campaign_file", type=click.Path(dir_okay=False))
@click.option("--report", type=click.Path(dir_okay=False), help="Where to write the per-row report CSV.")
def check(campaign_file: str, report: str | None) -> None:
    """Check every row without sending: phones, templates, provider rules, duplicates.

    Prints a summary and writes a per-row report. Exit 0 when every row can be sent, 1 when
    some cannot, 2 when the campaign cannot run at all.
    """

    def go() -> runner.Summary:
        campaign = _load(campaign_file)
        return asyncio.run(runner.check(campaign, report=Path(report) if report else None))

    summary = _guard(_Ctx.debug, go)
    print_check(summary)
    sys.exit(int(summary.exit_code()))


@cli.command()
@click.argument("campaign_file", type=click.Path(dir_okay=False))
@click.option("-n", "count", default=3, show_default=True, help="How many rows to show.")
def preview(campaign_file: str, count: int) -> None:
    """Show the first N requests exactly as they would be sent (the API key is never shown)."""
    items = _guard(_Ctx.debug, lambda: runner.preview(_load(campaign_file), count))
    for item in items:
        line(out, (f"row {item['row']}", "bold"), "  ", item["phone"] or "")
        if "request" in item:
            out.print_json(json.dumps(item["request"], ensure_ascii=False))
            if "segments" in item:
                out.print(f"  SMS segments: {item['segments']}")
        else:  # skipped (duplicate, suppressed) or invalid, as send would record it; never sent
            line(out, "  ", (item["status"], "yellow"), ": ", item["error"])


@cli.command()
@click.argument("campaign_file", type=click.Path(dir_okay=False))
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (cron, scripts).")
@click.option("--dry-run", is_flag=True, help="Render and check every row; send nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N messages this run (cron batches).")
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    help="Requests per second (overrides [sending] rate); 0: no pacing, for the sandbox.",
)
@click.option("--concurrency", type=click.IntRange(min=1), help="Requests in flight at most.")
@click.option("--retry-failed", is_flag=True, help="Send rows that failed in an earlier run again.")
@click.option(
    "--resend-unknown", is_flag=True, help="Send rows whose earlier outcome is unknown again (may duplicate)."
)
@click.option(
    "--retry-undelivered",
    is_flag=True,
    help="Send again rows whose delivery failed for a temporary reason (unreachable, carrier busy).",
)
@click.option("--results", type=click.Path(dir_okay=False), help="Where to write the results CSV.")
@click.option("--sandbox", is_flag=True, help="Send to a built-in local Sociocs API; no account needed.")
@click.option(
    "--wait", is_flag=True, help="Keep running and send rows held by [schedule] window/days/daily_limit as they open."
)
@click.option(
    "--worker",
    is_flag=True,
    help="Share the campaign with other runs (any host) through its PostgreSQL state; implies --yes.",
)
def send(
    campaign_file: str,
    yes: bool,
    dry_run: bool,
    limit: int | None,
    rate: float | None,
    concurrency: int | None,
    retry_failed: bool,
    resend_unknown: bool,
    retry_undelivered: bool,
    results: str | None,
    sandbox: bool,
    wait: bool,
    worker: bool,
) -> None:
    """Send every row not yet sent, and write the results file.

    A rerun continues the campaign: sent rows are never sent again; failed rows only with
    --retry-failed, unknown rows only with --resend-unknown.
    """
    campaign = _guard(_Ctx.debug, lambda: _load(campaign_file, rate=rate, concurrency=concurrency))
    options = runner.Options(
        dry_run=dry_run,
        limit=limit,
        retry_failed=retry_failed,
        resend_unknown=resend_unknown,
        retry_undelivered=retry_undelivered,
        api_key=os.environ.get(API_KEY_ENV, ""),
        wait=wait,
        worker=worker,
    )
    yes = yes or worker  # workers run unattended (systemd, several terminals): no question
    results_path = Path(results) if results else None

    funnel: Funnel | None = None

    async def main() -> runner.Summary | None:
        nonlocal funnel, campaign
        async with _maybe_sandbox(sandbox) as target:
            if target is not None:
                campaign = for_sandbox(campaign, target[0])  # its own state and results files
                options.api_key = target[1]
                options.sandbox = options.sandbox_per_run = True
                out.print(f"Using the built-in sandbox API at {target[0]}: nothing leaves this machine.")
            if not dry_run and not yes:
                count = await _confirm(campaign, options)
                if count is None:
                    return None
                options.expected = count  # the progress total while the file is being read
            shown = f"{campaign_file} --sandbox" if sandbox else campaign_file
            async with _sandbox_listener(None if dry_run else target, campaign) as listener:
                summary = await _run_with_progress(campaign, options, results_path, shown)
                if target is not None and listener is not None and summary.results_path is not None:
                    # The sandbox's delivery reports go to a listener in this process: wait
                    # for them, then write the results again with their delivery columns.
                    await target[2].webhooks.drain()
                    await listener.close()
                    funnel = await asyncio.to_thread(_export_after_reports, campaign, summary.results_path)
            return summary

    summary = _guard(_Ctx.debug, lambda: asyncio.run(main()))
    if summary is None:  # the user answered no: a choice, not an error (exit 0)
        out.print("Nothing was sent.")
        sys.exit(int(ExitCode.OK))
    print_summary(campaign, summary, campaign_file, sandbox)
    if funnel is not None:
        print_funnel(funnel, campaign.provider)
    sys.exit(int(summary.exit_code()))


async def _confirm(campaign: Campaign, options: runner.Options) -> int | None:
    """Ask before sending: the count of rows to send when the user says yes, None when no.
    Refuses (exit 2) without a terminal."""
    counting = dataclasses.replace(options, dry_run=True, command="plan", write_results=False)
    planned = await runner.run(campaign, counting)
    n = planned.counts[Status.DRY_RUN]
    via = f"via {campaign.provider} channel {campaign.channel_key}"
    question = f"Send {count(n, 'message')} {via} {schedule_phrase(planned, n)}?"
    notes = not_sent(planned)
    print_destinations(planned)
    if not sys.stdin.isatty():
        raise UsageError(sentence(question, notes, "Refusing without a terminal to ask on; add --yes to confirm."))
    if notes:
        out.print(notes)
    return n if click.confirm(question, default=False) else None


@asynccontextmanager
async def _maybe_sandbox(enabled: bool) -> Any:
    if not enabled:
        yield None
        return
    from campaign.sandbox import Sandbox, SandboxConfig

    key = f"{secrets.token_hex(8)}:{secrets.token_hex(16)}"
    box = Sandbox(SandboxConfig(api_key=key))
    url = await box.start()
    try:
        yield (url, key, box)
    finally:
        await box.close()


@asynccontextmanager
async def _sandbox_listener(target: tuple[str, str, Any] | None, campaign: Campaign) -> Any:
    """A listener in this process, subscribed at the sandbox, recording its delivery reports
    into the state file of ``campaign`` (as the sandbox run uses it)."""
    if target is None:
        yield None
        return
    secret = secrets.token_hex(16)
    # The send writes the results file; the state file is opened at the first report (a
    # broken input file must leave none behind).
    listener = delivery_runner.listener_for([campaign], secret, refresh=False, lazy=True)
    try:
        hook = await listener.start()
        await delivery_runner.subscribe(campaign, target[1], url=hook, secret=secret)
        yield listener
    finally:
        await listener.close()


def _export_after_reports(campaign: Campaign, results: Path) -> Funnel:
    runner.rewrite_results(campaign, results)
    return delivery_runner.delivery_funnel(campaign)


async def _run_with_progress(
    campaign: Campaign, options: runner.Options, results: Path | None, campaign_file: str
) -> runner.Summary:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            err.print("\nStopping: waiting for the requests in flight (Ctrl-C again to quit at once)…")
            stop.set()
        else:
            # What is committed stays committed: the state file is consistent, and the rows
            # in flight are `unknown` to the next run. Say how to get the results file.
            where = results or campaign.results
            err.print(
                f"\nQuit at once. Write the results file with: campaign status {campaign_file} --results {where}",
                markup=False,
            )
            os._exit(int(ExitCode.INTERRUPTED))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        with ProgressDisplay(campaign) as update:
            return await runner.run(campaign, options, results_path=results, on_progress=update, stop_event=stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@cli.command()
@click.argument("campaign_file", type=click.Path(dir_okay=False))
@click.option("--results", type=click.Path(dir_okay=False), help="Also (re)write the results CSV here from the state.")
@click.option("--sandbox", is_flag=True, help="The state of the campaign's --sandbox runs (they keep their own).")
@click.option(
    "--export-undeliverable",
    "undeliverable",
    type=click.Path(dir_okay=False),
    help="Write the numbers whose delivery failed for good (opted out, unknown, landline) as a suppression file.",
)
def status(campaign_file: str, results: str | None, sandbox: bool, undeliverable: str | None) -> None:
    """Every row's status after all runs so far, the delivery funnel, the last run, the failed and
    unknown rows.

    Exits like `send` would for these rows: 0 when every row is done, 1 when some are failed,
    invalid, unknown or pending (except those --limit left for a later run).
    """

    provider = ""

    def go() -> tuple[runner.StatusReport, Funnel, int | None]:
        nonlocal provider
        campaign = _load(campaign_file)
        if sandbox:
            campaign = for_sandbox(campaign, campaign.api_url)
        provider = campaign.provider
        report = runner.status(campaign, results_path=Path(results) if results else None)
        exported = None
        if undeliverable:
            exported = delivery_runner.export_undeliverable(campaign, Path(undeliverable))
        return report, delivery_runner.delivery_funnel(campaign), exported

    report, funnel, exported = _guard(_Ctx.debug, go)
    print_status(report, campaign_file, results, sandbox)
    print_funnel(funnel, provider)
    if exported is not None:
        out.print(f"{exported:,} undeliverable numbers written to {undeliverable} (use it in suppress = [...]).")
    sys.exit(int(report.exit_code()))


@cli.command()
@click.argument("campaign_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, help="Port to listen on (0 = any free port).")
@click.option("--verbose", "-v", is_flag=True, help="Print one line per report recorded.")
@click.option(
    "--results-every",
    type=click.FloatRange(min=0),
    default=60,
    show_default=True,
    help="Seconds between rewrites of the results files while reports come in (0: only on exit).",
)
def listen(campaign_files: tuple[str, ...], host: str, port: int, verbose: bool, results_every: float) -> None:
    """Receive Sociocs delivery reports at /webhooks/sociocs and record them for these campaigns.

    Set SOCIOCS_WEBHOOK_SECRET to the secret given to `campaign subscribe`: reports without its
    signature are refused. Put it behind your HTTPS proxy. SIGTERM or Ctrl-C stops it cleanly.
    """
    from campaign.listener import serve

    secret = os.environ.get(SECRET_ENV) or None

    def report_line(report: Report, where: str) -> None:
        code = f" {report.error_code}" if report.error_code else ""
        out.print(f"{report.message_id} {report.status}{code} -> {where or '(no row yet)'}", markup=False)

    def ready(url: str) -> None:
        if secret is None:
            say(
                err,
                "warning:",
                "yellow",
                f"{SECRET_ENV} is not set: anyone who can reach this port can post delivery reports.",
                "Set it, and give the same secret to `campaign subscribe`.",
            )
        out.print(f"Listening for delivery reports on {url} (Ctrl-C or SIGTERM stops)", markup=False)
        sys.stdout.flush()

    def go() -> None:
        campaigns = [_load(f) for f in campaign_files]
        listener = delivery_runner.listener_for(
            campaigns, secret, on_report=report_line if verbose else None, refresh_every=results_every
        )
        serve(listener, host, port, ready=ready)

    _guard(_Ctx.debug, go)


@cli.command()
@click.argument("campaign_file", type=click.Path(dir_okay=False))
@click.option("--url", help="The public URL of `campaign listen` (ending in /webhooks/sociocs).")
@click.option("--delete", is_flag=True, help="Remove this campaign's subscription.")
def subscribe(campaign_file: str, url: str | None, delete: bool) -> None:
    """Register URL for delivery reports of the campaign's channel; without --url, list them.

    Subscribing again updates the campaign's one subscription. The secret is
    SOCIOCS_WEBHOOK_SECRET, which `campaign listen` checks.
    """
    if url is not None and delete:
        _fail(UsageError("Give either --url or --delete, not both."))
    secret = os.environ.get(SECRET_ENV) or None

    def go() -> delivery_runner.SubscribeReport:
        campaign = _load(campaign_file)
        key = os.environ.get(API_KEY_ENV, "")
        return asyncio.run(delivery_runner.subscribe(campaign, key, url=url, secret=secret, delete=delete))

    report = _guard(_Ctx.debug, go)
    if report.action == "subscribed":
        out.print(f"Subscribed {url} (subscription {report.subscription_id}).", markup=False)
        if secret is None:
            say(out, "warning:", "yellow", f"{SECRET_ENV} is not set: the reports will not be signed.")
    elif report.action == "deleted":
        out.print(f"Deleted subscription {report.subscription_id}.", markup=False)
    elif report.action == "not-found":
        out.print("This campaign has no subscription to delete.")
    for sub in report.subscriptions:
        mine = " (this campaign)" if sub.get("subscriber_reference_id") == report.reference else ""
        out.print(
            f"  {sub.get('id')}  {sub.get('provider') or '*'} {sub.get('channel_key') or '*'}  "
            f"{sub.get('webhook_url')}  {sub.get('status') or ''}{mine}",
            markup=False,
        )
    if not report.subscriptions:
        out.print("No webhook subscriptions on this account.")


@cli.command()
@click.argument("campaign_file", type=click.Path(dir_okay=False))
def reconcile(campaign_file: str) -> None:
    """Resolve unknown rows by asking the API what it accepted (GET /messages)."""

    def go() -> runner.ReconcileReport:
        campaign = _load(campaign_file)
        key = os.environ.get(API_KEY_ENV, "")
        if not key:
            raise CampaignError(f"Set {API_KEY_ENV} to your Sociocs API key to reconcile.")
        return asyncio.run(runner.reconcile(campaign, key))

    report = _guard(_Ctx.debug, go)
    out.print(
        f"Checked {count(report.checked, 'unknown row')}: {report.found_text()}, "
        f"{count(report.pending, 'was', 'were')} not (now `pending`; the next `campaign send` sends them)."
    )
    if report.ambiguous or report.uncovered:
        out.print(
            f"{count(report.ambiguous + report.uncovered, 'stays', 'stay')} unknown "
            f"({count(report.ambiguous, 'matches', 'match')} more than one listed message, "
            f"{count(report.uncovered, 'falls', 'fall')} outside what the API listed); "
            f"`campaign status {campaign_file}` says why for each."
        )
        sys.exit(int(ExitCode.ROWS_NOT_SENT))  # as send and status exit while rows are unknown


@cli.command()
@click.argument("campaign_file", type=click.Path(dir_okay=False))
@click.option("--row", "rows", type=click.IntRange(min=2), multiple=True, help="Cancel only this row (repeatable).")
@click.option("--sandbox", is_flag=True, help="Cancel what `send --sandbox` scheduled (its own state file).")
def cancel(campaign_file: str, rows: tuple[int, ...], sandbox: bool) -> None:
    """Delete the campaign's scheduled messages at the API before they go out (rows become
    cancelled). Paced and journaled like sends: run it again after a crash to finish."""

    def go() -> runner.CancelReport:
        campaign = _load(campaign_file)
        if sandbox:
            campaign = for_sandbox(campaign, campaign.api_url)
        key = os.environ.get(API_KEY_ENV, "")
        if not key:
            raise CampaignError(f"Set {API_KEY_ENV} to your Sociocs API key to cancel.")
        return asyncio.run(runner.cancel(campaign, key, list(rows) or None, sandbox=sandbox))

    report = _guard(_Ctx.debug, go)
    out.print(f"Cancelled {count(len(report.cancelled), 'scheduled message')}.", markup=False)
    for item in report.too_late:
        shown = f"  row {item['row']} {item['phone']}: too late, the API sends or sent it already ({item['error']})"
        out.print(shown, markup=False)
    for item in report.failed:
        out.print(f"  row {item['row']} {item['phone']}: not cancelled: {item['error']}", markup=False)
    for item in report.not_scheduled:
        out.print(f"  row {item['row']}: nothing to cancel ({item['error']})", markup=False)
    if report.unresolved:
        out.print(
            f"{count(len(report.unresolved), 'row')} got no answer (the message may or may not be deleted); run "
            f"`campaign cancel {campaign_file}` again to settle them.",
            markup=False,
        )
    if report.stop_reason:
        err.print(f"stopped: {report.stop_reason}", markup=False)
        sys.exit(int(ExitCode.STOPPED))
    sys.exit(int(ExitCode.ROWS_NOT_SENT if report.failed or report.unresolved else ExitCode.OK))


@cli.command(name="sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, help="Port to listen on (0 = any free port).")
@click.option(
    "--api-key", envvar=API_KEY_ENV, help="Accept only this key (default: any key shaped like a Sociocs key)."
)
@click.option("--rate-limit", type=float, help="Answer 429 above this many requests per second.")
@click.option("--retry-after", type=float, help="Seconds to put in Retry-After on 429.")
@click.option("--retry-after-date", is_flag=True, help="Write Retry-After as an HTTP date instead of seconds.")
@click.option("--error-500", type=float, default=0.0, help="Fraction of requests answered 500 (not accepted).")
@click.option("--error-503", type=float, default=0.0, help="Fraction of requests answered 503 (not accepted).")
@click.option("--accept-then-500", type=float, default=0.0, help="Fraction accepted, then answered 500.")
@click.option("--accept-then-504", type=float, default=0.0, help="Fraction accepted, then a gateway answers 504.")
@click.option("--drop-after-accept", type=float, default=0.0, help="Fraction accepted, then the connection dropped.")
@click.option(
    "--stall-after-accept", type=float, default=0.0, help="Fraction accepted, then answered only after --stall seconds."
)
@click.option("--stall", type=float, default=60.0, show_default=True, help="Seconds a stalled answer is held.")
@click.option("--not-json-200", type=float, default=0.0, help="Fraction accepted, then answered 200, not JSON.")
@click.option("--error-200", type=float, default=0.0, help="Fraction answered 200 with status error (not accepted).")
@click.option("--error-422", type=float, default=0.0, help="Fraction answered 422 (not accepted).")
@click.option("--latency", type=float, default=0.0, help="Seconds to wait before each answer.")
@click.option("--seed", type=int, help="Seed for the random faults.")
@click.option(
    "--report-fail-rate",
    type=float,
    default=0.1,
    show_default=True,
    help="Fraction of messages whose delivery fails (reports to webhook subscriptions).",
)
@click.option(
    "--report-read-rate",
    type=float,
    default=0.6,
    show_default=True,
    help="Fraction of delivered WhatsApp messages that are read.",
)
@click.option("--report-duplicate", type=float, default=0.0, help="Fraction of messages with a report posted twice.")
@click.option(
    "--report-out-of-order", type=float, default=0.0, help="Fraction of messages whose reports come last first."
)
@click.option("--report-early", type=float, default=0.0, help="Fraction of messages reported before the send's answer.")
@click.option("--report-delay", type=float, default=0.0, help="Seconds before a message's first report.")
@click.option("--log", is_flag=True, help="Print each request it receives: time, method, path, to, status.")
def sandbox_cmd(
    host: str,
    port: int,
    api_key: str | None,
    rate_limit: float | None,
    retry_after: float | None,
    retry_after_date: bool,
    error_500: float,
    error_503: float,
    accept_then_500: float,
    accept_then_504: float,
    drop_after_accept: float,
    stall_after_accept: float,
    stall: float,
    not_json_200: float,
    error_200: float,
    error_422: float,
    latency: float,
    seed: int | None,
    report_fail_rate: float,
    report_read_rate: float,
    report_duplicate: float,
    report_out_of_order: float,
    report_early: float,
    report_delay: float,
    log: bool,
) -> None:
    """Run a local Sociocs-compatible API with fault injection (for trying and testing).

    Webhook subscriptions made on it (`campaign subscribe`) get signed delivery reports for
    every accepted message; the --report-* options make them fail, repeat, reorder or hurry.
    """
    from campaign.sandbox import Faults, LoggedRequest, SandboxConfig, WebhookFaults, serve

    try:
        faults = Faults(
            rate_limit=rate_limit,
            retry_after=retry_after,
            error_500=error_500,
            error_503=error_503,
            accept_then_500=accept_then_500,
            accept_then_504=accept_then_504,
            drop_after_accept=drop_after_accept,
            stall_after_accept=stall_after_accept,
            stall=stall,
            not_json_200=not_json_200,
            error_200=error_200,
            error_422=error_422,
            retry_after_date=retry_after_date,
            latency=latency,
            seed=seed,
        )
        reports = WebhookFaults(
            fail_rate=report_fail_rate,
            read_rate=report_read_rate,
            duplicate=report_duplicate,
            out_of_order=report_out_of_order,
            early=report_early,
            delay=report_delay,
            seed=seed,
        )
    except ValueError as error:  # fractions out of 0..1, negative latency, ...
        _fail(UsageError(f"campaign sandbox: {error}"))
        return

    def ready(url: str) -> None:
        out.print(f"Sociocs sandbox listening on {url} (set api_url or SOCIOCS_API_URL to it; Ctrl-C stops)")
        sys.stdout.flush()

    def print_request(r: LoggedRequest) -> None:
        answer = "dropped after accepting" if r.status == 0 else str(r.status)
        to = f" to {r.to if r.to.isprintable() else repr(r.to)}" if r.to else ""
        out.print(f"{time.strftime('%H:%M:%S')} {r.method} {r.path}{to} → {answer}")
        sys.stdout.flush()

    config = SandboxConfig(api_key=api_key, faults=faults, webhooks=reports, log=print_request if log else None)
    _guard(_Ctx.debug, lambda: serve(host, port, config, ready=ready))


@cli.command()
@click.argument("folder", default=".", type=click.Path(file_okay=False, exists=True))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (others can reach it!).")
@click.option("--port", default=8800, show_default=True, help="Port to listen on (0 = any free port).")
@click.option("--sandbox", is_flag=True, help="Send to a built-in local Sociocs API; no account needed.")
@click.option(
    "--max-upload-mb", default=50.0, show_default=True, type=click.FloatRange(min=0.001), help="Largest upload."
)
def web(folder: str, host: str, port: int, sandbox: bool, max_upload_mb: float) -> None:
    """The web page: upload, check, preview, send, follow and download the campaigns in FOLDER.

    Prints a URL with a token; open it in a browser. SOCIOCS_API_KEY stays in this process.
    """
    from campaign.config import _is_loopback
    from campaign.web import serve

    if not _is_loopback(host):
        err.print(
            f"warning: listening on {host}, not only on this machine: anyone who can reach it and has the "
            "token can send from this folder, and the page is plain http (the token travels unencrypted).",
            markup=False,
        )

    def ready(url: str) -> None:
        out.print(f"campaign web serves {Path(folder).resolve()}", markup=False)
        out.print(f"Open {url}", markup=False)
        out.print("(the token in it is required; Ctrl-C stops the server and any send, cleanly)", markup=False)
        sys.stdout.flush()

    limit = int(max_upload_mb * 1024 * 1024)
    _guard(_Ctx.debug, lambda: serve(Path(folder), host, port, sandbox=sandbox, max_upload=limit, ready=ready))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="campaign")
