"""One server of ``campaign web``: its folder, secrets, sends and (sandbox mode) sandbox.

:class:`Site` is what every route reads: which campaign a name means (a ``NAME.toml`` in the
folder, never a path from the browser), the options a send gets (the API key from the server's
environment, never from a page), the HTML Environment (autoescape, separate from the
campaign's message renderer), and the CSRF-checked forms.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from aiohttp import BodyPartReader, web

from campaign import delivery_runner, runner
from campaign.config import API_KEY_ENV, Campaign, for_sandbox, load_campaign
from campaign.errors import count
from campaign.sandbox import Sandbox
from campaign.web import forms
from campaign.web.jobs import AfterSend, Jobs
from campaign.web.reports import ReportWatch, wait_for_reports
from campaign.web.security import Secrets, UploadError, read_field, save_upload

T = TypeVar("T")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass
class Site:
    """One server's folder, secrets, sends, and (in sandbox mode) its built-in sandbox."""

    folder: Path
    keys: Secrets = field(default_factory=Secrets)
    jobs: Jobs = field(default_factory=Jobs)
    max_upload: int = 50 * 1024 * 1024
    sandbox: Sandbox | None = None
    sandbox_key: str = ""
    env: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("campaign.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["num"] = lambda n: f"{n:,}"
        self.env.filters["count"] = count  # {{ n | count("row") }}: "1 row", "2 rows"
        self.env.filters["day_name"] = lambda d: DAY_NAMES[d]

    def api_key(self) -> str:
        """The key sends use: the sandbox's, or SOCIOCS_API_KEY from the server's environment."""
        return self.sandbox_key if self.sandbox is not None else os.environ.get(API_KEY_ENV, "")

    def campaign(self, name: str) -> Campaign:
        """The campaign ``NAME.toml`` in the folder, as this server sends it (404 if none)."""
        if not forms.NAME.fullmatch(name) or not (self.folder / f"{name}.toml").is_file():
            raise web.HTTPNotFound(text=f"No campaign named {name!r} in this folder.", content_type="text/plain")
        campaign = load_campaign(self.folder / f"{name}.toml")
        if self.sandbox is not None:
            campaign = for_sandbox(campaign, self.sandbox.url)  # its own state and results files
        return campaign

    def options(self, **kw: Any) -> runner.Options:
        # No forked preparer inside a server with threads; rows are prepared in this process.
        return runner.Options(api_key=self.api_key(), sandbox=self.sandbox is not None, prepare_in_child=False, **kw)

    @contextlib.asynccontextmanager
    async def sandbox_reports(self, campaign: Campaign) -> AsyncIterator[AfterSend | None]:
        """Sandbox mode: a listener in this process, subscribed at the sandbox, records its
        delivery reports into the campaign's (sandbox) state file, as ``campaign send --sandbox``
        does; what this yields waits for this run's reports after the send (bounded:
        :func:`campaign.web.reports.wait_for_reports`), rewrites the results file with the
        delivery columns and returns how the wait ended. Yields None otherwise (real reports come to ``campaign
        listen``)."""
        if self.sandbox is None:
            yield None
            return
        sandbox = self.sandbox
        secret = secrets.token_hex(16)
        watch = ReportWatch(campaign.provider)
        before = len(sandbox.accepted)
        listener = delivery_runner.listener_for([campaign], secret, refresh=False, lazy=True, on_report=watch)
        try:
            hook = await listener.start()
            await delivery_runner.subscribe(campaign, self.sandbox_key, url=hook, secret=secret)

            async def after(summary: runner.Summary, accepted: frozenset[str]) -> str | None:
                if summary.results_path is None:
                    return None
                # Not the sandbox's whole webhook queue: it also retries reports to the
                # listeners of earlier sends, long gone (issue 14). This run's messages only.
                # Every message the sandbox accepted on this channel during the run, also
                # those whose answer was lost (rows unknown): their reports come all the same.
                ours = {m.message_id for m in sandbox.accepted[before:] if m.channel_key == campaign.channel_key}
                note = await wait_for_reports(watch, ours | accepted)
                await listener.close()
                await asyncio.to_thread(export_results, campaign, summary.results_path)
                return note

            yield after
        finally:
            await listener.close()

    def page(self, request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
        html = self.env.get_template(template).render(
            csrf=self.keys.csrf, sandbox=self.sandbox is not None, path=request.path, **context
        )
        return web.Response(text=html, content_type="text/html", status=status)

    async def form(self, request: web.Request) -> dict[str, str]:
        """A url-encoded POST's fields, after the CSRF check."""
        data = await request.post()
        if not self.keys.csrf_ok(str(data.get("csrf", ""))):
            raise web.HTTPForbidden(text="The form's CSRF token is missing or wrong; reload the page.")
        return {k: str(v) for k, v in data.items()}

    async def multipart(
        self, request: web.Request, fields: dict[str, str] | None = None
    ) -> tuple[dict[str, str], Path | None, str]:
        """A multipart POST: its text fields, the uploaded file (streamed to disk under a
        name made here) and the name the user's file had (for messages only, never a path).
        The CSRF field must come first, before anything is stored. The fields go into
        ``fields`` as they are read, so a form refused for its upload (too large, wrong
        kind) is shown again filled in."""
        reader = await request.multipart()
        fields = {} if fields is None else fields
        upload: Path | None = None
        filename = ""
        try:
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise UploadError("Nested multipart forms are not accepted.")
                if "csrf" not in fields:
                    value = await read_field(part) if part.name == "csrf" else None
                    if not self.keys.csrf_ok(value):
                        raise web.HTTPForbidden(text="The form's CSRF token is missing or wrong; reload the page.")
                    fields["csrf"] = value or ""
                elif part.filename is not None:
                    if upload is not None or part.name != "file":
                        raise UploadError("Upload one recipients file.")
                    if part.filename == "":  # the file input left empty
                        await part.release()
                        continue
                    filename = Path(part.filename.replace("\\", "/")).name  # a browser may send a path
                    upload = await save_upload(part, self.folder, self.max_upload)
                elif part.name:
                    fields[part.name] = await read_field(part)
        except BaseException:
            if upload is not None:
                upload.unlink(missing_ok=True)
            raise
        return fields, upload, filename


SITE = web.AppKey("site", Site)


async def off_loop(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a whole-file pass (check, the count behind the confirmation) on its own event loop
    in a worker thread: it reads every row without awaiting, and the server's loop, which
    also runs the sends started from the page, must keep answering meanwhile."""
    return await asyncio.to_thread(lambda: asyncio.run(work()))


def export_results(campaign: Campaign, results: Path) -> None:
    """Rewrite the results file from the state file (after delivery reports came in)."""
    runner.rewrite_results(campaign, results)
