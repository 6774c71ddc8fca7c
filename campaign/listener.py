"""``campaign listen``: the HTTP endpoint that records Sociocs delivery reports.

``POST /webhooks/sociocs`` takes one status delivery (``sociocs-api.md`` section 8):

* with a secret, a missing or wrong ``X-Sociocs-Signature`` is 401 and nothing is recorded
  (checked in constant time over the raw body, before the body is parsed);
* a body over ``max_body`` bytes is 413, malformed JSON or a report without a message id or
  status is 400; a delivery that is not a status report (an incoming message) is 200, ignored;
* a report is answered 200 only once it is committed to the state file: an acknowledged
  report survives a crash, and one that was not acknowledged is sent again by the sender
  (Sociocs's retry policy is not documented; the sandbox's is in
  :mod:`campaign.sandbox_webhooks`).

Reports are committed in groups by one writer: every request waiting at that moment shares
one transaction, so throughput grows with load instead of paying one commit per report. The
queue between the handlers and the writer is bounded, so memory is too, however long it runs.
With ``refresh``, each campaign's results file is rewritten every ``refresh_every`` seconds
while reports come in, and once more on close.

With several campaigns, a report goes to the campaign whose journal holds its message id; a
report no campaign knows (yet: it may come before the send's answer) is kept in every one of
them, and joins its row when that campaign records the id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from campaign import store
from campaign.config import Campaign
from campaign.delivery import SIGNATURE_HEADER, Report, ReportError, parse_report, signature_ok
from campaign.delivery_store import known_ids, record_reports
from campaign.errors import UsageError
from campaign.serving import run_until_signal
from campaign.state import State

PATH = "/webhooks/sociocs"
MAX_BODY = 64 * 1024  # bytes; a status report is a few hundred
_QUEUE = 10_000  # reports waiting for the writer at most
_GROUP = 2_000  # reports per commit at most

OnReport = Callable[[Report, str], None]  # (report, campaign name or "" when no row knows it yet)


@dataclass
class _Pending:
    report: Report
    arrived_ms: int
    done: asyncio.Future[None]


class Listener:
    """The receiver app for some campaigns' state files; use ``start``/``close`` or ``async with``."""

    def __init__(
        self,
        campaigns: Sequence[Campaign],
        secret: str | None,
        *,
        max_body: int = MAX_BODY,
        on_report: OnReport | None = None,
        refresh: Callable[[str], None] | None = None,
        refresh_every: float = 60.0,
        lazy: bool = False,
    ) -> None:
        if not campaigns:
            raise ValueError("listen needs at least one campaign")
        self.campaigns = list(campaigns)
        self.secret = secret or None
        self.on_report = on_report
        self.refresh = refresh  # rewrites a campaign's results file, in a worker thread
        self.refresh_every = refresh_every
        self.lazy = lazy  # open the state files at the first report, not at start
        self._dirty: set[str] = set()  # campaigns with reports since their last refresh
        self._refresher: asyncio.Task[None] | None = None
        self.recorded = 0  # reports committed since start
        self.refused = 0  # requests answered 401
        self.url = ""
        self._states: list[tuple[str, State]] = []
        self._queue: asyncio.Queue[_Pending] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=max_body)
        self.app.router.add_post(PATH, self._post)
        self.app.router.add_get(PATH, self._get, allow_head=True)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Open the state files and listen; return the endpoint's URL.

        Raises UsageError when the address cannot be listened on, StateError when a state
        file cannot be used.
        """
        if not self.lazy:
            self._open()
        self._queue = asyncio.Queue(_QUEUE)
        self._writer = asyncio.create_task(self._write_loop())
        if self.refresh is not None and self.refresh_every > 0:
            self._refresher = asyncio.create_task(self._refresh_loop())
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        self._runner = runner
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as err:  # port taken, address not on this machine, no permission
            await self.close()
            raise UsageError(
                f"Cannot listen on {host}:{port} ({err.strerror or err}); choose another --port or --host."
            ) from None
        bound_host, bound_port = runner.addresses[0][:2]
        bound_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{bound_host}:{bound_port}{PATH}"
        return self.url

    async def close(self) -> None:
        """Stop accepting, let the requests in progress be committed and answered, close."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()  # waits for handlers, which wait for their commit
        if self._queue is not None:
            await self._queue.join()
        for task in (self._writer, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._writer = self._refresher = None
        await self._refresh_dirty()
        for _, state in self._states:
            state.close()
        self._states = []

    async def __aenter__(self) -> Listener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _get(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "success", "data": {"recorded": self.recorded}})

    async def _post(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()  # raises 413 above client_max_size
        if self.secret is not None and not signature_ok(self.secret, body, request.headers.get(SIGNATURE_HEADER)):
            self.refused += 1
            return _error(401, f"Missing or wrong {SIGNATURE_HEADER}.")
        try:
            report = parse_report(body)
        except ReportError as err:
            return _error(400, str(err))
        if report is None:
            return web.json_response({"status": "success", "data": {"recorded": False}})
        assert self._queue is not None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(report, int(time.time() * 1000), done))
        try:
            await done
        except Exception:  # the commit failed: not acknowledged, so the sender tries again
            return _error(503, "The report could not be recorded; try again.")
        return web.json_response({"status": "success", "data": {"recorded": True}})

    async def _write_loop(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            group = [await queue.get()]
            while len(group) < _GROUP and not queue.empty():
                group.append(queue.get_nowait())
            try:
                routed = await asyncio.to_thread(self._commit, [(p.report, p.arrived_ms) for p in group])
            except Exception as err:
                for p in group:
                    if not p.done.done():
                        p.done.set_exception(err)
            else:
                self.recorded += len(group)
                for p, where in zip(group, routed, strict=True):
                    if not p.done.done():
                        p.done.set_result(None)
                    if self.on_report is not None:
                        self.on_report(p.report, where)
            finally:
                for _ in group:
                    queue.task_done()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_every)
            await self._refresh_dirty()

    async def _refresh_dirty(self) -> None:
        """Rewrite the results files of the campaigns that got reports since the last time."""
        if self.refresh is None:
            return
        while self._dirty:
            name = self._dirty.pop()
            await asyncio.to_thread(self.refresh, name)

    def _open(self) -> None:
        """Open every campaign's state file, or none (StateError names the one that failed)."""
        opened: list[tuple[str, State]] = []
        try:
            for campaign in self.campaigns:
                opened.append((campaign.name, store.open_state(campaign)))
        except BaseException:
            for _, state in opened:
                state.close()
            raise
        self._states = opened

    def _commit(self, reports: list[tuple[Report, int]]) -> list[str]:
        """Record each report in its campaign (or, unknown yet, in all); return where it went."""
        if not self._states:
            self._open()
        ids = [r.message_id for r, _ in reports]
        owners: dict[str, str] = {}
        for name, state in self._states:
            for mid in known_ids(state, ids):
                owners.setdefault(mid, name)
        for name, state in self._states:
            mine = [(r, at) for r, at in reports if owners.get(r.message_id, name) == name]
            if mine:
                record_reports(state, mine)
                self._dirty.add(name)
        return [owners.get(r.message_id, "") for r, _ in reports]


def _error(status: int, msg: str) -> web.Response:
    return web.json_response({"status": "error", "errors": [{"msg": msg}]}, status=status)


def serve(listener: Listener, host: str, port: int, *, ready: Callable[[str], None] | None = None) -> None:
    """Run ``listener`` until SIGINT or SIGTERM (blocking, for ``campaign listen``).

    On a signal it stops accepting connections, commits and answers the reports in progress,
    and closes the state files.
    """

    run_until_signal(lambda: listener.start(host, port), listener.close, ready)
