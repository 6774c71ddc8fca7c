"""Delivery reports: the Sociocs status webhook's signature, its parsing, and which report wins.

Sociocs posts one JSON object per status change of an outbound message to every subscribed
URL (``sociocs-api.md`` section 8, "Webhook deliveries")::

    {"message_id": "SM...", "event": "status_update",
     "event_data": {"status": "failed", "error": {"code": 30003, "message": "..."}, ...}}

With a subscription ``secret`` each delivery carries ``X-Sociocs-Signature``: the hex
HMAC-SHA256 of the raw body with the secret as key (same section, with a test vector).

Reports may come twice, out of order, or before the send's own answer; the provider's status
words differ (Twilio SMS: queued, sending, sent, delivered, undelivered, failed; WhatsApp adds
read; Gupshup: enqueued; Telnyx: sending_failed, delivery_failed). :func:`resolve` decides which
report a row shows; every report is kept regardless (the state's append-only event table).

The docs give status reports no timestamp. A numeric ``timestamp`` (epoch milliseconds, as on
incoming-message deliveries) at the top level or in ``event_data`` is used when present;
otherwise the order of arrival stands in for it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

SIGNATURE_HEADER = "X-Sociocs-Signature"
SECRET_ENV = "SOCIOCS_WEBHOOK_SECRET"

# How far along the way to the handset each progress word is (sociocs-api.md section 8, the
# subscribable statuses by provider). ``read`` outranks ``delivered``: read implies delivered.
PROGRESS_RANK: dict[str, int] = {
    "accepted": 1,
    "queued": 1,
    "enqueued": 1,
    "scheduled": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
}
SENT_RANK = PROGRESS_RANK["sent"]
DELIVERED_RANK = PROGRESS_RANK["delivered"]
READ_RANK = PROGRESS_RANK["read"]
FAILURES = frozenset({"failed", "undelivered", "sending_failed", "delivery_failed", "canceled", "cancelled"})


class ErrorKind(StrEnum):
    """What a delivery failure means for the next campaign."""

    TEMPORARY = "temporary"  # worth sending again later (`send --retry-undelivered`)
    PERMANENT = "permanent"  # this number will not receive: a suppression file entry
    OTHER = "other"  # content, policy or account trouble: resending the same thing won't help


# Twilio error dictionary (https://www.twilio.com/docs/api/errors/<code>) and Twilio's WhatsApp
# errors (631xx): the codes a campaign meets most, with one line a campaign owner understands.
ERROR_CODES: dict[int, tuple[ErrorKind, str]] = {
    21211: (ErrorKind.PERMANENT, "invalid 'To' phone number"),
    21408: (ErrorKind.OTHER, "sending to this region is not enabled on the account"),
    21610: (ErrorKind.PERMANENT, "the recipient opted out (replied STOP)"),
    21612: (ErrorKind.OTHER, "this route (from/to pair) is not supported"),
    21614: (ErrorKind.PERMANENT, "not a mobile number"),
    30001: (ErrorKind.TEMPORARY, "queue overflow: too many messages queued on the sender"),
    30002: (ErrorKind.OTHER, "account suspended"),
    30003: (ErrorKind.TEMPORARY, "unreachable handset (switched off or out of coverage)"),
    30004: (ErrorKind.PERMANENT, "message blocked by the recipient or their carrier"),
    30005: (ErrorKind.PERMANENT, "unknown number: it does not exist or is no longer in service"),
    30006: (ErrorKind.PERMANENT, "landline or unreachable carrier: cannot receive SMS"),
    30007: (ErrorKind.OTHER, "carrier filtering: the carrier flagged the message as spam"),
    30008: (ErrorKind.TEMPORARY, "unknown error from the carrier"),
    30017: (ErrorKind.TEMPORARY, "carrier network congestion"),
    30022: (ErrorKind.TEMPORARY, "US A2P 10DLC rate limit exceeded"),
    30034: (ErrorKind.OTHER, "US A2P 10DLC: the sending number is not registered"),
    63003: (ErrorKind.PERMANENT, "the number is not on WhatsApp"),
    63016: (ErrorKind.OTHER, "WhatsApp: outside the 24-hour window; send an approved template"),
    63018: (ErrorKind.TEMPORARY, "WhatsApp: rate or messaging-tier limit reached"),
    63024: (ErrorKind.PERMANENT, "WhatsApp: invalid recipient"),
    63032: (ErrorKind.OTHER, "WhatsApp: Meta held the message back (user in an experiment)"),
    63049: (ErrorKind.OTHER, "WhatsApp: Meta chose not to deliver this marketing message"),
}


def error_meaning(code: str) -> str:
    """A one-line meaning of a provider error code, or ``""`` when it is not a known one."""
    try:
        entry = ERROR_CODES.get(int(code))
    except ValueError:
        return ""
    return entry[1] if entry else ""


def error_kind(code: str) -> ErrorKind:
    """Whether a failure with this code is temporary, permanent or neither (unknown: other)."""
    try:
        entry = ERROR_CODES.get(int(code))
    except ValueError:
        return ErrorKind.OTHER
    return entry[0] if entry else ErrorKind.OTHER


def sign(secret: str, body: bytes) -> str:
    """The ``X-Sociocs-Signature`` value for ``body``: hex HMAC-SHA256 keyed by the secret."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` is the HMAC-SHA256 of the raw ``body`` (constant-time compare).

    Hex case is ignored; anything else (missing, other length, not hex) is simply wrong.
    """
    if not signature:
        return False
    expected = sign(secret, body).encode("ascii")
    given = signature.strip().lower().encode("ascii", "replace")
    return hmac.compare_digest(expected, given)


class ReportError(ValueError):
    """A delivery is not a status report we can record; ``str()`` is the 400 message."""


@dataclass(frozen=True, slots=True)
class Report:
    """One status report, as recorded."""

    message_id: str
    status: str  # lower-cased provider word, kept even when unknown to us
    error_code: str = ""
    error_message: str = ""
    at_ms: int | None = None  # the provider's time (epoch ms) when the report carries one


#: The last millisecond of year 9999 (UTC): the latest instant a datetime (and the results
#: file's ``delivery_updated_at``) can show, and far inside a 64-bit database integer.
_LAST_MS = 253_402_300_799_999


def _timestamp(*candidates: Any) -> int | None:
    """The first usable epoch-milliseconds value: a positive number no later than year 9999.
    A larger one (a 400-digit integer that no float can hold, 10**20 that no SQLite integer can)
    is no timestamp: the report counts from its arrival instead of failing its whole batch."""
    for value in candidates:
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if 0 < value <= _LAST_MS:  # False for NaN; compared before float() could overflow
            return int(value)
    return None


def parse_report(body: bytes) -> Report | None:
    """Parse one webhook delivery; ``None`` for a valid delivery that is not a status report
    (an incoming message: nothing to record). Raises :class:`ReportError` when malformed."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise ReportError("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ReportError("The body must be a JSON object.")
    event = data.get("event")
    if event is not None and event != "status_update":
        return None
    message_id = data.get("message_id")
    if not isinstance(message_id, str | int) or isinstance(message_id, bool) or not str(message_id).strip():
        raise ReportError("message_id is missing.")
    event_data = data.get("event_data")
    if not isinstance(event_data, dict):
        raise ReportError("event_data must be an object.")
    status = event_data.get("status")
    if not isinstance(status, str) or not status.strip():
        raise ReportError("event_data.status is missing.")
    code, text = "", ""
    error = event_data.get("error")
    if isinstance(error, dict):
        raw_code = error.get("code")
        code = "" if raw_code is None or isinstance(raw_code, dict | list) else str(raw_code)[:40]
        text = str(error.get("message") or "")[:500]
    return Report(
        str(message_id).strip()[:200],
        status.strip().lower()[:40],
        code,
        text,
        _timestamp(data.get("timestamp"), event_data.get("timestamp")),
    )


@dataclass(frozen=True, slots=True)
class Shown:
    """What a message shows after its reports so far (one line of the state's ``delivery``)."""

    status: str
    error_code: str
    error_message: str
    at_ms: int | None  # time of the report shown (provider's, else arrival)
    reached: int  # the furthest progress rank any report reached (the funnel counts this)


def _is_failure(status: str) -> bool:
    return status in FAILURES


def resolve(current: Shown | None, report: Report, arrived_ms: int) -> Shown:
    """The status a message shows once ``report`` joins what was shown before.

    * Progress words only move forward: ``delivered`` never goes back to ``sent``; a
      duplicate changes nothing.
    * A failure (failed, undelivered, ...) replaces any progress, even ``delivered``: it is
      shown as the provider said (the funnel still counts the message as delivered, through
      ``reached``). A progress word replaces a failure only when it is at least ``delivered``
      and carries a later provider time than the failure.
    * Between failures, the later one wins (provider time, else arrival).
    * A word we do not know is shown only while nothing known has been reported.
    """
    at = report.at_ms if report.at_ms is not None else arrived_ms
    rank = PROGRESS_RANK.get(report.status, 0)
    new = Shown(report.status, report.error_code, report.error_message, at, rank)
    if current is None:
        return new
    reached = max(current.reached, rank)
    cur_fail, new_fail = _is_failure(current.status), _is_failure(report.status)
    cur_rank = PROGRESS_RANK.get(current.status, 0)
    later = current.at_ms is None or at >= current.at_ms
    if new_fail:
        take = (not cur_fail) or later
    elif rank == 0:  # an unknown word
        take = cur_rank == 0 and not cur_fail and later
    elif cur_fail:
        take = rank >= DELIVERED_RANK and report.at_ms is not None and current.at_ms is not None and at > current.at_ms
    else:
        take = rank > cur_rank
    if take:
        return Shown(new.status, new.error_code, new.error_message, at, reached)
    return Shown(current.status, current.error_code, current.error_message, current.at_ms, reached)


def iso_ms(ms: int | None) -> str:
    """Epoch milliseconds as ISO 8601 UTC, second precision (what the results file shows)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def error_text(code: str, message: str) -> str:
    """The results file's ``delivery_error``: code and text (the provider's, else ours)."""
    text = message or error_meaning(code)
    if code and text:
        return f"{code}: {text}"
    return code or text
