"""Reconcile: what became of the rows whose answer was lost, from the API's own listing.

A row is ``unknown`` when its request may have reached the API but no answer came back (a
read timeout, a dropped connection, a 500). The API has no idempotency key and no way to ask
for one message by id (sociocs-api.md section 8), so the only record is ``GET /messages``, a
listing by date. Reading it must never guess (issue 10, item 2): another campaign may have
sent other messages to the same numbers, on the same day, through the same channel.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from campaign import store, timing
from campaign.api import SociocsClient
from campaign.config import Campaign
from campaign.errors import CampaignError, RunStopped, count
from campaign.ledger import other_message_ids
from campaign.state import State, Status


@dataclass
class ReconcileReport:
    """What reconcile concluded, row by row, from ``GET /messages``."""

    checked: int = 0  # unknown rows looked at
    found: int = 0  # exactly one listed message is theirs: now sent (or scheduled)
    found_scheduled: int = 0  # of ``found``, those whose message is scheduled for later: now scheduled
    pending: int = 0  # the listing covers their time span and nothing in it is theirs
    ambiguous: int = 0  # more than one listed message could be theirs: still unknown
    uncovered: int = 0  # the listing does not cover their time span: still unknown
    days: int = 0

    def found_text(self) -> str:
        """"3 were sent (now `sent`)", or which of them the API holds for later (`scheduled`):
        the words the CLI and the web page say about the rows found."""
        later, now = self.found_scheduled, self.found - self.found_scheduled
        became = f"{later} now `scheduled`, {now} `sent`"
        if not (later and now):
            became = "now `scheduled`" if later else "now `sent`"
        return f"{count(self.found, 'was', 'were')} sent ({became})"


# How far the API's clock (created_at) may be from this machine's (first attempt, last answer).
CLOCK_SKEW = timedelta(minutes=2)
# A created_at without a UTC offset is in the API's own zone, which is not documented: anywhere
# from UTC-12 to UTC+14. Such a message is a candidate anywhere in that range of the row's span,
# and never found on its own (its time is not known well enough to tell it from another's).
UNKNOWN_ZONE = timedelta(hours=14)


async def reconcile_state(
    campaign: Campaign, state: State, client: SociocsClient, *, channel: str | None = None
) -> ReconcileReport:
    """Resolve the ``unknown`` rows of ``state`` from the API's listing; never guess.

    A listed message is a row's candidate when it is outbound, on the campaign's channel
    (``channel_key``/``provider`` where the listing has them), to the row's number, with the
    row's content (its text; or its template id and variables where the listing has them, and
    no text), created between the row's first attempt and its last answer (give or take
    :data:`CLOCK_SKEW`), and not already another row's message id, nor one that another campaign
    on this machine got on the same ``channel`` (the ledger's registry: two campaigns may send the
    same text to the same number, and the listing cannot tell their messages apart). A row with exactly one
    candidate, which is no other row's candidate, is ``sent`` with that id. A row with none is
    ``pending`` (the next run sends it), but only when every day of its time span was listed
    (with a day either side: the listing's dates are in the API's time zone, which is not
    documented); otherwise, and when there are several candidates (or one without a
    ``created_at``, or with one without a UTC offset: :data:`UNKNOWN_ZONE`), it stays ``unknown``
    with the reason. A found row whose request carried a
    ``schedule`` still in the future is ``scheduled`` (``campaign cancel`` can delete it), as the
    answer would have made it. Source: sociocs-api.md, GET /messages
    (ranges of at most 31 days) and section 10 (check via GET /messages before re-sending).
    """
    report = ReconcileReport()
    state.recover()
    unknown = state.by_status(Status.UNKNOWN)
    report.checked = len(unknown)
    if not unknown:
        return report
    now = timing.now()  # the campaign's one clock (a test sets it)
    spans: list[tuple[datetime, datetime]] = []
    for u in unknown:
        answered = _when(u["updated_at"]) or now
        spans.append(((_when(u["first_attempt_at"]) or answered) - CLOCK_SKEW, answered + CLOCK_SKEW))
    first = min(a for a, _ in spans).date() - timedelta(days=1)
    last = max(max(b for _, b in spans).date() + timedelta(days=1), now.date())
    listed: list[dict[str, Any]] = []
    covered: set[date] = set()
    failure: CampaignError | None = None
    day: date = first
    while day <= last:
        until = min(last, day + timedelta(days=30))
        try:
            listed.extend(await client.list_messages(day, until))
            covered.update(day + timedelta(days=i) for i in range((until - day).days + 1))
        except RunStopped:
            raise
        except CampaignError as err:  # that range is not covered; its rows stay unknown
            failure = failure or err
        day = until + timedelta(days=1)
    if not covered and failure is not None:  # the API failed us: a stop (exit 3), not a usage error
        raise RunStopped(f"{str(failure).rstrip('.')}; the unknown rows stay unknown.")
    report.days = (last - first).days + 1
    taken = state.message_ids()
    if channel is not None:
        taken |= other_message_ids(store.ledger_location(campaign), channel, store.state_ref(campaign))
    candidates = [_candidates(campaign, u, span, listed, taken) for u, span in zip(unknown, spans, strict=True)]
    claims = Counter(mid for found in candidates for mid, _ in found)
    found: dict[str, tuple[str, Status]] = {}
    pending: list[str] = []
    unresolved: list[tuple[str, str, str]] = []
    for u, (start, end), mine in zip(unknown, spans, candidates, strict=True):
        days = {start.date() + timedelta(days=i) for i in range(-1, (end.date() - start.date()).days + 2)}
        if len(mine) == 1 and mine[0][1] and mine[0][0] and claims[mine[0][0]] == 1:
            schedule = _when(u["schedule_at"])
            found[u["key"]] = (mine[0][0], Status.SCHEDULED if schedule and schedule > now else Status.SENT)
        elif mine:
            unresolved.append(
                (u["key"], "ambiguous", f"reconcile: {_why_not_found(mine, claims)}; still unknown, not resent")
            )
        elif days <= covered:
            pending.append(u["key"])
        else:
            unresolved.append(
                (
                    u["key"],
                    "uncovered",
                    f"reconcile: the API's listing did not cover {start.date()} to {end.date()} ({failure}); "
                    "still unknown",
                )
            )
    with state.transaction():
        state.mark_found((key, message_id, status) for key, (message_id, status) in found.items())
        state.set_status(pending, Status.PENDING, "not listed by the API (reconcile); the next run sends it")
        state.mark_unresolved(unresolved)
    report.found = len(found)
    report.found_scheduled = sum(1 for _, status in found.values() if status is Status.SCHEDULED)
    report.pending = len(pending)
    report.ambiguous = sum(1 for _, verdict, _ in unresolved if verdict == "ambiguous")
    report.uncovered = len(unresolved) - report.ambiguous
    return report


def _why_not_found(mine: list[tuple[str, bool]], claims: Counter[str]) -> str:
    """Why a row with candidates is not found, in words (its reason in the results file)."""
    if len(mine) > 1:
        ids = ", ".join(mid or "(no id)" for mid, _ in mine[:3])
        return f"the API lists {len(mine)} messages that could be this row's ({ids}) and cannot tell them apart"
    [(message_id, timed)] = mine
    if not message_id:
        return "the API lists one message that could be this row's, without an id to record"
    if not timed:
        return (
            f"the API lists one message that could be this row's ({message_id}), without the time it was made"
            " (or its time zone)"
        )
    others = claims[message_id] - 1
    row_s = "row's" if others == 1 else "rows'"
    return f"the API lists one message that could be this row's ({message_id}), or {others} other {row_s}"


def _digits(number: Any) -> str:
    return "".join(c for c in str(number or "") if c.isdigit())


def _parsed(value: Any) -> datetime | None:
    """A datetime from ISO 8601 / RFC 3339 text (``Z``, which ``fromisoformat`` reads since
    Python 3.11, and the lowercase ``t`` and ``z`` RFC 3339 section 5.6 allows), naive when the
    text gives no offset; None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).upper())
    except ValueError:
        return None


def _when(value: Any) -> datetime | None:
    """:func:`_parsed`, aware: a time without an offset is taken as UTC (our own times)."""
    when = _parsed(value)
    return when if when is None or when.tzinfo is not None else when.replace(tzinfo=UTC)


def _our_content(campaign: Campaign, unknown: dict[str, Any]) -> dict[str, Any]:
    """The content fields the row was sent with (a state file from before schema 2 kept only
    the message: its text, or its template variables as JSON)."""
    if unknown["content"]:
        return dict(json.loads(unknown["content"]))
    if campaign.message.template_id is None:
        return {"text": unknown["message"]} if unknown["message"] else {}
    template: dict[str, Any] = {}
    if "{" not in campaign.message.template_id:
        template["id"] = campaign.message.template_id
    if unknown["message"]:
        template["variables"] = json.loads(unknown["message"])
    return {"template": template}


def _same_content(listed: dict[str, Any], ours: dict[str, Any]) -> bool:
    """Text must agree (a template message has none); media, template id and variables must
    agree where the listing has them."""
    if (listed.get("text") or None) != (ours.get("text") or None):
        return False
    for media in ("image_url", "video_url", "file_url"):
        if listed.get(media) is not None and listed.get(media) != ours.get(media):
            return False
    raw = listed.get("template")
    template: dict[str, Any] = raw if isinstance(raw, dict) else {}
    template_id = listed.get("template_id") or template.get("id")
    variables = listed.get("template_variables") or template.get("variables")
    mine = ours.get("template") or {}
    if template_id is not None and template_id != mine.get("id"):
        return False
    return variables is None or variables == (mine.get("variables") or {})


def _candidates(
    campaign: Campaign,
    unknown: dict[str, Any],
    span: tuple[datetime, datetime],
    listed: list[dict[str, Any]],
    taken: set[str],
) -> list[tuple[str, bool]]:
    """The listed messages that could be this row's: (message_id, whether its time is known)."""
    to, ours = _digits(unknown["phone"]), _our_content(campaign, unknown)
    out = []
    for message in listed:
        message_id = str(message.get("message_id") or "")
        if message_id and message_id in taken:
            continue
        if message.get("direction") not in (None, "outbound") or _digits(message.get("to")) != to:
            continue
        if message.get("channel_key") not in (None, campaign.channel_key):
            continue
        if message.get("provider") not in (None, campaign.provider):
            continue
        if not _same_content(message, ours):
            continue
        created = _parsed(message.get("created_at"))
        zoned = created is not None and created.tzinfo is not None
        if created is not None and not zoned:
            created = created.replace(tzinfo=UTC)  # its zone is unknown: UNKNOWN_ZONE either side
        slack = timedelta(0) if zoned else UNKNOWN_ZONE
        if created is not None and not span[0] - slack <= created <= span[1] + slack:
            continue
        out.append((message_id, zoned))
    return out
