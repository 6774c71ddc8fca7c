"""``campaign cancel``: take back a campaign's scheduled messages before they go out.

Each ``scheduled`` row's message is deleted at the API with ``DELETE /messages/scheduled/{id}``
(sociocs-api.md section 8), paced like sends (the same :class:`~campaign.sender.Pacer`) and
journaled like sends: the row is committed ``cancelling`` before its DELETE is written, and
``cancelled`` (or what the API said instead) after the answer. So a kill leaves at most one row
``cancelling``, and the next ``cancel`` resolves it from ``GET /messages/scheduled`` before
deleting anything: still listed, it is deleted now; no longer listed while its time has not
come, the killed run's DELETE went through and it is ``cancelled`` without a second DELETE.
Only when the listing may be cut short (it holds at most 100 messages, no paging) is the
DELETE repeated, and a 404 then means the first one went through.

A message the API already sends or sent cannot be deleted (the API refuses); the row becomes
``sent`` and the report says so per row.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from campaign import timing
from campaign.api import SociocsClient, Verdict
from campaign.config import Campaign
from campaign.sandbox_scheduled import LISTED
from campaign.sender import Pacer
from campaign.state import State, Status


@dataclass
class CancelReport:
    """What ``cancel`` did, per row: each list holds {row, phone, error}."""

    cancelled: list[dict[str, Any]] = field(default_factory=list)
    too_late: list[dict[str, Any]] = field(default_factory=list)  # the API sends or sent it already
    failed: list[dict[str, Any]] = field(default_factory=list)  # still scheduled: the API did not delete it
    unresolved: list[dict[str, Any]] = field(default_factory=list)  # no answer: run cancel again
    not_scheduled: list[dict[str, Any]] = field(default_factory=list)  # --row N that is not scheduled
    resumed: int = 0  # rows a killed cancel had started
    deletes: int = 0  # DELETE requests made
    stop_reason: str | None = None


def _future(schedule_at: str) -> bool:
    try:
        return bool(schedule_at) and datetime.fromisoformat(schedule_at) > timing.now()
    except ValueError:
        return False


async def cancel_state(
    campaign: Campaign, state: State, client: SociocsClient, rows: list[int] | None = None
) -> CancelReport:
    """Cancel the scheduled rows (all, or those numbered ``rows``) of an open state file."""
    report = CancelReport()
    if rows:
        known = {r["row"]: r for r in state.scheduled(rows, statuses=[s.value for s in Status])}
        for n in rows:
            r = known.get(n)
            if r is None or r["status"] not in (Status.SCHEDULED, Status.CANCELLING):
                status = r["status"] if r is not None else "not sent by this campaign"
                report.not_scheduled.append({"row": n, "phone": r["phone"] if r else "", "error": status})
    pacer = Pacer(campaign.sending.rate)
    leftover = state.scheduled(rows, statuses=[Status.CANCELLING])
    again = await _resume(state, client, leftover, report) if leftover else set()
    for r in state.scheduled(rows):
        if report.stop_reason:
            break
        await _delete(
            state, client, pacer, r, report, again=r["key"] in again, max_attempts=campaign.sending.max_attempts
        )
    return report


async def _resume(
    state: State, client: SociocsClient, leftover: list[dict[str, Any]], report: CancelReport
) -> set[str]:
    """Rows a killed ``cancel`` left ``cancelling``: find out from the listing what became of
    them. Returns the keys whose DELETE must be repeated (the listing was cut short)."""
    listed = await client.list_scheduled()
    ids = {str(m.get("message_id")) for m in listed}
    complete = len(listed) < LISTED
    again: set[str] = set()
    late = "its time came before the cancel was confirmed; it may have gone out"
    for r in leftover:
        report.resumed += 1
        if r["message_id"] in ids:
            state.set_cancel(r["key"], Status.SCHEDULED)  # the DELETE never got there: do it now
        elif complete and _future(r["schedule_at"]):
            state.set_cancel(r["key"], Status.CANCELLED, "cancelled (the API no longer lists it)")
            report.cancelled.append(_item(r))
        elif complete:
            state.set_cancel(r["key"], Status.SENT, late)
            report.too_late.append(_item(r, late))
        else:
            state.set_cancel(r["key"], Status.SCHEDULED)  # a listing cut short proves nothing: ask again
            again.add(r["key"])
    return again


async def _delete(
    state: State,
    client: SociocsClient,
    pacer: Pacer,
    r: dict[str, Any],
    report: CancelReport,
    *,
    again: bool,
    max_attempts: int,
) -> None:
    """Delete one row's scheduled message, retrying only what the API certainly did not process.
    ``again``: a killed run may already have deleted it, so a 404 means it did."""
    if not r["message_id"]:
        report.failed.append(_item(r, "no message id was recorded for it; cancel it in the Sociocs app"))
        return
    retries = 0
    while True:
        await pacer.acquire()
        state.set_cancel(r["key"], Status.CANCELLING)
        report.deletes += 1
        reply = await client.delete_scheduled(r["message_id"])
        v = reply.verdict
        if v is Verdict.ACCEPTED:
            pacer.succeeded()
            state.set_cancel(r["key"], Status.CANCELLED)
            report.cancelled.append(_item(r))
            return
        if v is Verdict.REJECTED and reply.http_status == 404 and again:
            state.set_cancel(r["key"], Status.CANCELLED, "cancelled (the first DELETE went through)")
            report.cancelled.append(_item(r))
            return
        if v is Verdict.REJECTED and reply.http_status == 400:
            state.set_cancel(r["key"], Status.SENT, f"not cancelled: {reply.error}")
            report.too_late.append(_item(r, reply.error))
            return
        if v is Verdict.REJECTED:
            state.set_cancel(r["key"], Status.SCHEDULED, f"not cancelled: {reply.error}")
            report.failed.append(_item(r, reply.error))
            return
        if v is Verdict.UNKNOWN:  # it may have been deleted: the next cancel asks the listing
            report.unresolved.append(_item(r, reply.error))
            return
        if v in (Verdict.FATAL, Verdict.UNREACHABLE):
            state.set_cancel(r["key"], Status.SCHEDULED, f"not cancelled: {reply.error}")
            report.stop_reason = reply.error
            return
        if v is Verdict.RATE_LIMITED:
            pacer.rate_limited(reply.retry_after)
            continue
        retries += 1  # Verdict.RETRY: 502/503/504, not processed
        if retries >= max_attempts:
            state.set_cancel(r["key"], Status.SCHEDULED, f"not cancelled: {reply.error}")
            report.failed.append(_item(r, reply.error))
            return
        await asyncio.sleep(pacer.backoff(retries))


def _item(r: dict[str, Any], error: str = "") -> dict[str, Any]:
    return {"row": r["row"], "phone": r["phone"], "schedule_at": r["schedule_at"], "error": error}
