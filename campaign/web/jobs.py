"""Sends started from the page: they run in the server process, one per campaign.

Each send is ``runner.run`` in an asyncio task, with the same campaign lock the CLI takes
(so the CLI and the page never send one campaign twice) and a stop event that is the page's
"Stop" button: like Ctrl-C, requests in flight finish, every row is recorded, and the next
send resumes. The progress lives here, not in the browser, so closing the tab and opening it
again shows the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

from campaign import runner
from campaign.config import Campaign
from campaign.errors import CampaignError, UsageError
from campaign.state import Outcome, Status

log = logging.getLogger(__name__)
# After the run: (summary, message ids this run sent) -> a sentence for the run page, or None.
AfterSend = Callable[[runner.Summary, frozenset[str]], Awaitable[str | None]]
Around = Callable[[], AbstractAsyncContextManager[AfterSend | None]]


@dataclass
class Job:
    """One send started from the page, and what it has done so far."""

    name: str
    campaign: Campaign
    options: runner.Options
    stop: asyncio.Event
    started: float = field(default_factory=time.monotonic)
    summary: runner.Summary | None = None  # the run's live summary (updated as rows finish)
    outcomes: Counter[str] = field(default_factory=Counter)  # this run's outcomes per status
    error: str | None = None  # the CampaignError sentence that ended the run before it sent
    task: asyncio.Task[None] | None = None
    finished_at: float | None = None
    collecting: bool = False  # sent; waiting for the sandbox's delivery reports
    accepted: set[str] = field(default_factory=set)  # message ids of the rows this run sent (not scheduled)
    reports_note: str | None = None  # how the wait for the sandbox's delivery reports ended

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def progress(self) -> dict[str, float | int]:
        """Done, total, rate (rows per second), ETA (seconds) and rows left of this run.

        The total is the rows this send sends (``Summary.total``: the confirmation's count
        until the whole file is read), never the rows read so far, which run only a little
        ahead of the sending. ``left`` after the run: the rows still pending (Stop leaves them
        for the next send)."""
        s = self.summary
        done = s.finished_now if s else 0
        known = s.total if s else self.options.expected
        total = max(known if known is not None else (s.to_send if s else 0), done)
        elapsed = (self.finished_at or time.monotonic()) - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        left = s.counts.get("pending", 0) if s and not self.running else max(total - done, 0)
        return {"done": done, "total": total, "rate": rate, "eta": eta, "elapsed": elapsed, "left": left}


class Jobs:
    """The sends of one server, by campaign name (the campaign file's stem)."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def get(self, name: str) -> Job | None:
        return self.jobs.get(name)

    def start(
        self,
        name: str,
        campaign: Campaign,
        options: runner.Options,
        results: Path | None = None,
        *,
        around: Around | None = None,
    ) -> Job:
        """Start sending; raise UsageError if this server is already sending the campaign
        (another process sending it is found by the lock, and reported as the run's error).
        ``around`` is entered around the run; what it yields, if not None, is awaited with
        the summary after it (sandbox mode: collect the delivery reports)."""
        current = self.jobs.get(name)
        if current is not None and current.running:
            raise UsageError(f"Campaign {name!r} is already being sent from this page.")
        job = Job(name, campaign, options, asyncio.Event())

        def on_progress(summary: runner.Summary, outcome: Outcome | None) -> None:
            job.summary = summary
            if outcome is not None:
                job.outcomes[outcome.status.value] += 1
                if outcome.status is Status.SENT and outcome.message_id:
                    job.accepted.add(outcome.message_id)

        async def go() -> None:
            try:
                async with around() if around is not None else contextlib.nullcontext(None) as after:
                    summary = await runner.run(
                        campaign, options, results_path=results, on_progress=on_progress, stop_event=job.stop
                    )
                    job.summary = summary
                    if after is not None:
                        job.collecting = True
                        job.reports_note = await after(summary, frozenset(job.accepted))
            except CampaignError as err:
                job.error = str(err)
            except Exception:  # a bug: the page says so; the traceback goes to the server's console
                log.exception("internal error while sending %s", name)
                job.error = (
                    "campaign hit a bug while sending; the server's console has the details. "
                    "Nothing committed to the state file is lost."
                )
            finally:
                job.finished_at = time.monotonic()

        job.task = asyncio.create_task(go())
        self.jobs[name] = job
        return job

    async def close(self) -> None:
        """Stop every running send (as Stop does) and wait for each to end cleanly."""
        tasks = []
        for job in self.jobs.values():
            if job.task is not None and not job.task.done():
                job.stop.set()
                tasks.append(job.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
