"""The routes of ``campaign web``: each page calls one :mod:`campaign.runner` function.

Pages (server-rendered Jinja2 with autoescape, no JavaScript; the run page refreshes itself
while a send runs): campaigns list ``/``, ``/new``, and per campaign (the campaign file's stem)
``/c/NAME`` (check), ``/preview``, ``/send`` (confirm), ``/run`` (progress, Stop),
``/results`` (downloads, rerun failed rows, reconcile), plus ``/sandbox`` (what the built-in
sandbox received) in sandbox mode. The HTML templates use their own Environment: the
campaign's sandboxed message renderer is never used for pages.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import openpyxl
from aiohttp import web

from campaign import delivery_runner, runner, store, timing
from campaign.config import API_KEY_ENV, Campaign
from campaign.delivery import error_meaning
from campaign.errors import CampaignError, UsageError, count
from campaign.sandbox import Sandbox, SandboxConfig
from campaign.state import Status
from campaign.web import forms
from campaign.web.security import inside, middleware
from campaign.web.site import SITE, Site, off_loop

T = TypeVar("T")

STATUS_ORDER = [s.value for s in Status if s is not Status.SENDING]
PREVIEW_ROWS = 5


def _site(request: web.Request) -> Site:
    return request.app[SITE]


def _name(request: web.Request) -> str:
    return request.match_info["name"]


# --- campaigns -------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    site = _site(request)
    rows = []
    for path in sorted(site.folder.glob("*.toml")):
        linked = bool(forms.NAME.fullmatch(path.stem))
        item: dict[str, Any] = {"name": path.stem, "counts": {}, "last_run": None, "error": None, "linked": linked}
        item.update(running=False, progress=None, collecting=False)
        try:
            if not forms.NAME.fullmatch(path.stem):
                raise UsageError(
                    f"{path.name}: this page opens campaign files named with letters, digits, - and _ only; "
                    "rename the file to open it here."
                )
            campaign = site.campaign(path.stem)
            item["title"] = campaign.name
            job = site.jobs.get(path.stem)
            item["running"] = job is not None and job.running
            if job is not None and job.running:
                # The state file is mid-run: its counts are of the rows read so far, its run
                # has no outcome yet and rows in flight look unknown. Show the live run.
                item["progress"], item["collecting"] = job.progress(), job.collecting
            elif store.state_exists(campaign):
                report = runner.status(campaign)
                item["counts"], item["last_run"] = report.counts, report.last_run
        except CampaignError as err:
            item["error"] = str(err)
        rows.append(item)
    return site.page(request, "index.html", campaigns=rows, order=STATUS_ORDER)


async def new_form(request: web.Request) -> web.Response:
    return _site(request).page(request, "new.html", form={"provider": "twlo", "default_country": "US"}, error=None)


async def new_post(request: web.Request) -> web.StreamResponse:
    site = _site(request)
    form: dict[str, str] = {}
    try:
        _, upload, filename = await site.multipart(request, form)  # form keeps what came before an error
        if upload is None:
            raise UsageError("Choose the spreadsheet with the recipients (CSV or Excel).")
        try:
            path = forms.write_campaign(site.folder, form, upload, filename)
        finally:
            upload.unlink(missing_ok=True)
    except CampaignError as err:
        return site.page(request, "new.html", status=400, form=form, error=str(err))
    raise web.HTTPSeeOther(f"/c/{path.stem}")


# --- one campaign ----------------------------------------------------------------------------


async def check(request: web.Request) -> web.Response:
    site, name = _site(request), _name(request)
    context: dict[str, Any] = {"name": name, "error": None, "summary": None, "problems": None, "eta": None}
    context["price"] = request.query.get("price", "")
    try:
        campaign = site.campaign(name)
        context["campaign"] = campaign
        summary = await off_loop(lambda: runner.check(campaign, prepare_in_child=False))
        context["summary"] = summary
        if summary.results_path is not None and summary.results_path.exists():
            context["problems"] = forms.read_problems(summary.results_path, campaign)
        sendable = summary.counts.get(Status.DRY_RUN.value, 0)
        rate = campaign.sending.rate
        context["eta"] = f"about {runner_duration(sendable / rate)}" if rate > 0 else "as fast as the API answers"
        context["countries"] = summary.countries.most_common()
        context["zones"] = [(timing.zone_label(z), n) for z, n in summary.zones.most_common()]
        context["cost"] = _cost(request.query.get("price", ""), campaign, summary)
    except CampaignError as err:
        context["error"] = str(err)
    return site.page(request, "check.html", **context)


def _cost(price: str, campaign: Campaign, summary: runner.Summary) -> str | None:
    """The cost at the price the user typed: per SMS segment (Twilio bills SMS per segment) or
    per WhatsApp message. None without a price; a sentence for one that is not a number."""
    if not price.strip():
        return None
    try:
        each = float(price.replace(",", "."))
    except ValueError:
        return f"{price!r} is not a price; write it as a number, e.g. 0.0079."
    if campaign.provider == "twlo":
        units, what = summary.segments, "segments"
    else:
        units, what = summary.counts.get(Status.DRY_RUN.value, 0), "messages"
    return f"About {units * each:,.2f} for {units:,} {what} at {each:g} each."


def runner_duration(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


async def upload_fixed(request: web.Request) -> web.StreamResponse:
    site, name = _site(request), _name(request)
    try:
        campaign = site.campaign(name)
        _, upload, _ = await site.multipart(request)
        if (job := site.jobs.get(name)) is not None and job.running:
            if upload is not None:
                upload.unlink(missing_ok=True)
            raise UsageError("This campaign is being sent now; upload the fixed file when the send has ended.")
        if upload is None:
            raise UsageError("Choose the fixed spreadsheet to upload.")
        try:
            forms.replace_recipients(campaign, upload)
        finally:
            upload.unlink(missing_ok=True)
    except CampaignError as err:
        return site.page(request, "error.html", status=400, name=name, error=str(err))
    raise web.HTTPSeeOther(f"/c/{name}")


async def preview(request: web.Request) -> web.Response:
    site, name = _site(request), _name(request)
    items: list[dict[str, Any]] = []
    error = None
    campaign = None
    try:
        campaign = site.campaign(name)
        items = await asyncio.to_thread(runner.preview, campaign, PREVIEW_ROWS)
    except CampaignError as err:
        error = str(err)
    return site.page(request, "preview.html", name=name, campaign=campaign, items=items, error=error)


def _flags(data: dict[str, str] | Any) -> dict[str, bool]:
    return {k: data.get(k) == "1" for k in ("retry_failed", "resend_unknown", "retry_undelivered")}


async def send_confirm(request: web.Request) -> web.Response:
    site, name = _site(request), _name(request)
    flags = _flags(request.query)
    context: dict[str, Any] = {"name": name, "error": None, "count": 0, "flags": flags, "countries": []}
    job = site.jobs.get(name)
    context["running"] = job is not None and job.running
    try:
        campaign = site.campaign(name)
        context["campaign"] = campaign
        if not site.api_key():
            raise UsageError(
                f"Set {API_KEY_ENV} in the environment of `campaign web` to your Sociocs API key "
                "(Profile & settings → API), or start it with --sandbox to try the campaign locally."
            )
        options = site.options(dry_run=True, command="plan", write_results=False, **flags)
        planned = await off_loop(lambda: runner.run(campaign, options))
        context["count"] = planned.counts.get(Status.DRY_RUN.value, 0)
        context["countries"] = planned.countries.most_common()
    except CampaignError as err:
        context["error"] = str(err)
    return site.page(request, "send.html", **context)


def _expected(value: str) -> int | None:
    """The confirmation's count of rows to send (the progress total until the file is read);
    None when the form has none. Only the progress display uses it."""
    return int(value) if value.isdigit() and len(value) < 12 else None


async def send_post(request: web.Request) -> web.StreamResponse:
    site, name = _site(request), _name(request)
    data = await site.form(request)
    try:
        campaign = site.campaign(name)
        options = site.options(expected=_expected(data.get("expected", "")), **_flags(data))
        site.jobs.start(name, campaign, options, around=lambda: site.sandbox_reports(campaign))
    except CampaignError as err:
        return site.page(request, "error.html", status=409, name=name, error=str(err))
    raise web.HTTPSeeOther(f"/c/{name}/run")


async def run_page(request: web.Request) -> web.Response:
    site, name = _site(request), _name(request)
    site.campaign(name)  # 404 for a name that is not a campaign
    job = site.jobs.get(name)
    return site.page(
        request,
        "run.html",
        name=name,
        job=job,
        progress=job.progress() if job else None,
        order=STATUS_ORDER,
        duration=runner_duration,
    )


async def stop(request: web.Request) -> web.StreamResponse:
    site, name = _site(request), _name(request)
    await site.form(request)
    job = site.jobs.get(name)
    if job is not None and job.running:
        job.stop.set()  # Ctrl-C: requests in flight finish, every row is recorded, resumable
    raise web.HTTPSeeOther(f"/c/{name}/run")


async def results(request: web.Request) -> web.Response:
    site, name = _site(request), _name(request)
    context: dict[str, Any] = {"name": name, "report": None, "error": None, "order": STATUS_ORDER, "funnel": None}
    context["message"] = request.query.get("done")
    try:
        campaign = site.campaign(name)
        context["campaign"] = campaign
        # Rewrites the results file from the state: a whole-file pass, off the server's loop.
        context["report"] = await asyncio.to_thread(runner.status, campaign, results_path=campaign.results)
        context["funnel"] = await asyncio.to_thread(delivery_runner.delivery_funnel, campaign)
        context["meaning"] = error_meaning
    except CampaignError as err:
        context["error"] = str(err)
    return site.page(request, "results.html", **context)


class _Refused(Exception):
    """A button's action could not run: ``page`` is the error page (409) to answer with."""

    def __init__(self, page: web.Response) -> None:
        self.page = page


async def _with_api(request: web.Request, verb: str, call: Callable[[Campaign, str, bool], Awaitable[T]]) -> T:
    """Run a button's action that needs the API (reconcile, cancel) with its campaign and the
    key; raises _Refused carrying the error page with one sentence."""
    site, name = _site(request), _name(request)
    await site.form(request)
    try:
        campaign = site.campaign(name)
        if not site.api_key():
            raise UsageError(f"Set {API_KEY_ENV} in the environment of `campaign web` to {verb}.")
        return await call(campaign, site.api_key(), site.sandbox is not None)
    except CampaignError as err:
        raise _Refused(site.page(request, "error.html", status=409, name=name, error=str(err))) from None


def _back_to_results(request: web.Request, done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(request.app.router["results"].url_for(name=_name(request)).with_query(done=done))


async def reconcile(request: web.Request) -> web.StreamResponse:
    try:
        r = await _with_api(request, "reconcile", lambda c, key, box: runner.reconcile(c, key, sandbox=box))
    except _Refused as refused:
        return refused.page
    done = (
        f"Checked {count(r.checked, 'unknown row')}: {r.found_text()}, {count(r.pending, 'was', 'were')} not "
        f"(send sends them); {count(r.ambiguous + r.uncovered, 'stays', 'stay')} unknown."
    )
    raise _back_to_results(request, done)


async def cancel(request: web.Request) -> web.StreamResponse:
    """Take back the campaign's scheduled messages at the API (``campaign cancel``)."""
    try:
        r = await _with_api(request, "cancel", lambda c, key, box: runner.cancel(c, key, None, sandbox=box))
    except _Refused as refused:
        return refused.page
    parts = [f"Cancelled {len(r.cancelled):,} scheduled messages."]
    if r.too_late:
        parts.append(f"{len(r.too_late):,} were too late (the API sends or sent them already).")
    if r.failed:
        parts.append(f"{len(r.failed):,} were not cancelled: {r.failed[0]['error']}")
    if r.unresolved:
        parts.append(f"{len(r.unresolved):,} got no answer; cancel again to settle them.")
    if r.stop_reason:
        parts.append(f"Stopped: {r.stop_reason}")
    raise _back_to_results(request, " ".join(parts))


async def download(request: web.Request) -> web.StreamResponse:
    site, name = _site(request), _name(request)
    campaign = site.campaign(name)
    kind = request.match_info["kind"]
    files = {"results.csv": campaign.results, "check.csv": campaign.report}
    if kind == "results.xlsx":
        source = inside(site.folder, campaign.results)
        body = _xlsx(source)
        filename = f"{source.stem}.xlsx"
        return web.Response(
            body=body,
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    if kind not in files:
        raise web.HTTPNotFound(text="No such download.", content_type="text/plain")
    path = inside(site.folder, files[kind])
    return web.FileResponse(
        path, headers={"Content-Disposition": f'attachment; filename="{path.name}"', "Content-Type": "text/csv"}
    )


def _xlsx(source: Path) -> bytes:
    """The results CSV as an .xlsx workbook, every cell text (as written: formulas neutralised)."""
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("results")
    with source.open(newline="", encoding="utf-8-sig") as handle:
        for cells in csv.reader(handle):
            row = []
            for value in cells:
                cell = openpyxl.cell.WriteOnlyCell(sheet, value=value)
                cell.data_type = "s"  # never a formula, whatever the text starts with
                row.append(cell)
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def sandbox_record(request: web.Request) -> web.StreamResponse:
    """What the built-in sandbox accepted, to compare with a results file (sandbox mode only)."""
    site = _site(request)
    if site.sandbox is None:
        raise web.HTTPNotFound(text="This server was not started with --sandbox.", content_type="text/plain")
    messages = [
        {
            "message_id": m.message_id,
            "to": m.to,
            "channel_key": m.channel_key,
            "text": m.body.get("text", ""),
            "created_at": m.created_at.isoformat(),
        }
        for m in site.sandbox.accepted
    ]
    if request.path.endswith(".csv"):
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["message_id", "to", "channel_key", "text", "created_at"])
        writer.writeheader()
        writer.writerows(messages)
        return web.Response(
            text=out.getvalue(),
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="sandbox-record.csv"'},
        )
    return site.page(request, "sandbox.html", messages=messages)


def make_app(site: Site) -> web.Application:
    """The aiohttp application of one server (the token middleware guards every route)."""
    app = web.Application(middlewares=[middleware(site.keys)], client_max_size=256 * 1024)
    app[SITE] = site
    r = app.router
    r.add_get("/", index, name="index")
    r.add_get("/new", new_form)
    r.add_post("/new", new_post)
    r.add_get("/sandbox", sandbox_record)
    r.add_get("/sandbox.csv", sandbox_record)
    r.add_get("/c/{name}", check, name="check")
    r.add_post("/c/{name}/upload", upload_fixed)
    r.add_get("/c/{name}/preview", preview)
    r.add_get("/c/{name}/send", send_confirm)
    r.add_post("/c/{name}/send", send_post)
    r.add_get("/c/{name}/run", run_page)
    r.add_post("/c/{name}/stop", stop)
    r.add_get("/c/{name}/results", results, name="results")
    r.add_post("/c/{name}/reconcile", reconcile)
    r.add_post("/c/{name}/cancel", cancel)
    r.add_get("/c/{name}/download/{kind}", download)
    r.add_static("/static", Path(__file__).parent / "static")

    async def shutdown(app: web.Application) -> None:
        await site.jobs.close()

    app.on_shutdown.append(shutdown)
    return app


async def start(site: Site, host: str, port: int, *, sandbox: bool = False) -> tuple[web.AppRunner, str]:
    """Start the sandbox (if asked) and the server; return the runner and the URL with the token."""
    if sandbox:
        site.sandbox_key = f"{os.urandom(8).hex()}:{os.urandom(16).hex()}"
        site.sandbox = Sandbox(SandboxConfig(api_key=site.sandbox_key))
        await site.sandbox.start()
    app_runner = web.AppRunner(make_app(site), access_log=None, shutdown_timeout=5.0)
    await app_runner.setup()
    await web.TCPSite(app_runner, host, port).start()
    bound_host, bound_port = app_runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return app_runner, f"http://{shown}:{bound_port}/?token={site.keys.token}"


def serve(
    folder: Path,
    host: str = "127.0.0.1",
    port: int = 8800,
    *,
    sandbox: bool = False,
    max_upload: int = 50 * 1024 * 1024,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``folder`` until SIGINT/SIGTERM; running sends stop as with Ctrl-C first."""

    async def main() -> None:
        site = Site(folder.resolve(), max_upload=max_upload)
        app_runner, url = await start(site, host, port, sandbox=sandbox)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        if ready is not None:
            ready(url)
        try:
            await stopping.wait()
        finally:
            await app_runner.cleanup()
            if site.sandbox is not None:
                await site.sandbox.close()

    asyncio.run(main())


__all__ = ["make_app", "serve", "start"]
