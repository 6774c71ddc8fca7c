"""Delivery reports in the state file: recording them, and reading the funnel back.

The tables are created by schema 2 of :mod:`campaign.state`. A report is appended to
``delivery_events`` as received, and the message's line in ``delivery`` is updated by
:func:`campaign.delivery.resolve` in the same transaction. Lines are keyed by message id, so a
report for a message the journal does not (yet) know is kept and joins its row as soon as the
send's answer (or ``campaign reconcile``) writes that id to the recipient.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from campaign.delivery import (
    DELIVERED_RANK,
    FAILURES,
    READ_RANK,
    SENT_RANK,
    ErrorKind,
    Report,
    Shown,
    error_kind,
    error_text,
    resolve,
)
from campaign.state import State, now_iso

_FAILURE_LIST = ",".join(f"'{s}'" for s in sorted(FAILURES))


def record_reports(state: State, reports: Sequence[tuple[Report, int]]) -> None:
    """Append (report, arrival epoch ms) pairs and update what each message shows; one commit.

    When this returns the reports are committed: only then may the listener answer 2xx.
    """
    stamp = now_iso()
    db = state.db
    with state.transaction():
        db.executemany(
            "INSERT INTO delivery_events (message_id, status, error_code, error_message, at_ms, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(r.message_id, r.status, r.error_code, r.error_message, r.at_ms, stamp) for r, _ in reports],
        )
        shown: dict[str, Shown | None] = {}
        for report, arrived in reports:
            if report.message_id not in shown:
                row = db.execute(
                    "SELECT status, error_code, error_message, at_ms, reached FROM delivery WHERE message_id = ?",
                    (report.message_id,),
                ).fetchone()
                shown[report.message_id] = None if row is None else Shown(*row)
            shown[report.message_id] = resolve(shown[report.message_id], report, arrived)
        counts = Counter(r.message_id for r, _ in reports)
        db.executemany(
            "INSERT INTO delivery (message_id, status, error_code, error_message, at_ms, reached, reports)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO UPDATE SET status = excluded.status,"
            " error_code = excluded.error_code, error_message = excluded.error_message, at_ms = excluded.at_ms,"
            # delivery.reports, not reports: PostgreSQL calls a bare name here ambiguous
            " reached = excluded.reached, reports = delivery.reports + excluded.reports",
            [
                (mid, s.status, s.error_code, s.error_message, s.at_ms, s.reached, counts[mid])
                for mid, s in shown.items()
                if s is not None
            ],
        )


def has_reports(state: State) -> bool:
    """Whether any delivery report has been recorded (the results file then shows them)."""
    return state.db.execute("SELECT 1 FROM delivery LIMIT 1").fetchone() is not None


def known_ids(state: State, message_ids: Iterable[str]) -> set[str]:
    """Which of these message ids the campaign's journal holds (the listener's routing)."""
    ids = sorted(set(message_ids))
    return {r[0] for r in state._where_in("SELECT message_id FROM recipients WHERE message_id IN ({marks})", ids)}


@dataclass
class Funnel:
    """``campaign status``'s delivery funnel over the recipients the API accepted."""

    accepted: int = 0  # sent or scheduled, with a message id
    sent: int = 0  # a report said sent (or anything later: delivered, read)
    delivered: int = 0  # a report said delivered or read (read implies delivered)
    read: int = 0
    reported: int = 0  # accepted messages with at least one report
    events: int = 0  # reports recorded, all messages, duplicates included
    unmatched: int = 0  # message ids with reports but no row (yet)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, code) -> messages
    examples: dict[tuple[str, str], str] = field(default_factory=dict)  # (status, code) -> provider's text


def funnel(state: State) -> Funnel:
    """Count the funnel from the journal joined to the delivery lines."""
    f = Funnel()
    row = state.db.execute(
        # CASE, not sum(boolean): one SQL for SQLite and PostgreSQL (campaign.database)
        "SELECT count(*), coalesce(sum(CASE WHEN d.reached >= ? THEN 1 ELSE 0 END), 0),"
        " coalesce(sum(CASE WHEN d.reached >= ? THEN 1 ELSE 0 END), 0),"
        " coalesce(sum(CASE WHEN d.reached >= ? THEN 1 ELSE 0 END), 0), count(d.message_id)"
        " FROM recipients p LEFT JOIN delivery d ON d.message_id = p.message_id"
        " WHERE p.status IN ('sent', 'scheduled') AND p.message_id != ''",
        (SENT_RANK, DELIVERED_RANK, READ_RANK),
    ).fetchone()
    f.accepted, f.sent, f.delivered, f.read, f.reported = (int(v) for v in row)
    f.events = int(state.db.execute("SELECT count(*) FROM delivery_events").fetchone()[0])
    f.unmatched = int(
        state.db.execute(
            "SELECT count(*) FROM delivery d WHERE NOT EXISTS"
            " (SELECT 1 FROM recipients p WHERE p.message_id = d.message_id)"
        ).fetchone()[0]
    )
    for status, code, message, n in state.db.execute(
        "SELECT d.status, d.error_code, max(d.error_message), count(*) FROM recipients p"
        f" JOIN delivery d ON d.message_id = p.message_id WHERE p.status IN ('sent', 'scheduled')"
        f" AND d.status IN ({_FAILURE_LIST}) GROUP BY 1, 2 ORDER BY 4 DESC"
    ):
        f.failures[(status, code)] = n
        f.examples[(status, code)] = message
    return f


def failed_deliveries(state: State, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Sent recipients whose delivery failed: key, row, phone, status, code, text, kind.

    ``keys`` limits the answer to those recipients (the planner asks batch by batch).
    """
    sql = (
        "SELECT p.key, p.row, p.phone, d.status, d.error_code, d.error_message FROM recipients p"
        " JOIN delivery d ON d.message_id = p.message_id"
        f" WHERE p.status IN ('sent', 'scheduled') AND d.status IN ({_FAILURE_LIST})"
    )
    if keys is None:
        rows: Iterable[tuple[Any, ...]] = state.db.execute(sql + " ORDER BY p.row")
    else:
        rows = state._where_in(sql + " AND p.key IN ({marks})", keys)
    return [
        {
            "key": key,
            "row": row,
            "phone": phone,
            "delivery_status": status,
            "delivery_error": error_text(code, message),
            "kind": error_kind(code),
        }
        for key, row, phone, status, code, message in rows
    ]


def retryable(state: State, keys: Sequence[str]) -> set[str]:
    """Of these recipients, those whose delivery failed for a temporary reason."""
    return {d["key"] for d in failed_deliveries(state, keys) if d["kind"] is ErrorKind.TEMPORARY}
