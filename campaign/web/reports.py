"""Waiting for the sandbox's delivery reports after a send from the page, for a bounded time.

The built-in sandbox posts each accepted message's reports within milliseconds, but its
webhook queue also holds reports for subscriptions that no longer listen (earlier sends from
the same server), which it retries for a while; waiting for that queue to empty kept a
finished send "collecting the sandbox's delivery reports" for a minute or two (issue 14).
So the page waits only for this run's messages: until each has a final delivery status, or
no report came for ``QUIET`` seconds, or ``CAP`` seconds passed, whichever is first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from campaign.config import WHATSAPP
from campaign.delivery import DELIVERED_RANK, FAILURES, PROGRESS_RANK, READ_RANK, Report

QUIET = 2.0  # seconds without a report after which the rest are not waited for
CAP = 30.0  # seconds at most, however the reports trickle in
POLL = 0.05  # seconds between looks


@dataclass
class ReportWatch:
    """What the listener has recorded so far: which messages reached a final delivery status,
    and when the last report came (``time.monotonic``). Feed it as the listener's on_report."""

    provider: str
    finished: set[str] = field(default_factory=set)
    last: float | None = None
    clock: Callable[[], float] = time.monotonic

    def __call__(self, report: Report, where: str) -> None:
        self.last = self.clock()
        if self.final(report.status):
            self.finished.add(report.message_id)

    def final(self, status: str) -> bool:
        """A failure; delivered on SMS; read on WhatsApp (delivered may still turn read)."""
        if status in FAILURES:
            return True
        rank = PROGRESS_RANK.get(status, 0)
        return rank >= (READ_RANK if self.provider in WHATSAPP else DELIVERED_RANK)


async def wait_for_reports(
    watch: ReportWatch, accepted: Iterable[str], *, quiet: float = QUIET, cap: float = CAP
) -> str:
    """Wait until every message in ``accepted`` (this run's message ids) has a final report in
    ``watch``, no report came for ``quiet`` seconds, or ``cap`` seconds passed; return a
    sentence saying which ended the wait (shown on the run page)."""
    wanted = set(accepted)
    started = watch.clock()
    while True:
        missing = len(wanted - watch.finished)
        now = watch.clock()
        if not missing:
            return f"Every one of the {len(wanted):,} accepted messages has its final delivery report."
        if now - (watch.last if watch.last is not None else started) >= quiet:
            return (
                f"{missing:,} of {len(wanted):,} accepted messages had no final delivery report and none came "
                f"for {quiet:g} s, so the page stopped waiting; the results show the reports that came."
            )
        if now - started >= cap:
            return (
                f"{missing:,} of {len(wanted):,} accepted messages had no final delivery report after "
                f"{cap:g} s, the most the page waits; the results show the reports that came."
            )
        await asyncio.sleep(POLL)
