"""The daily-limit ledger: who each channel reached in the last 24 hours, across campaigns.

WhatsApp caps the unique recipients a business number may start conversations with in any
rolling 24 hours (its messaging limit tiers: 250, 2,000, 10,000, 100,000), and refuses more than
one message to one number every 6 seconds (its pair rate limit). ``[schedule] daily_limit``
holds a campaign to such a cap counting every campaign on this machine that uses the channel,
so the count lives outside any one campaign's state file: a small SQLite file at
``$CAMPAIGN_LEDGER``, else ``$XDG_STATE_HOME/campaign/ledger.sqlite``, else
``~/.local/state/campaign/ledger.sqlite`` (the XDG Base Directory specification's default for
state data).

The ledger also lists which campaigns' state files send through each channel
(:func:`register_state`), so that ``reconcile`` never takes another campaign's message for one
of its own rows when both sent the same text to the same number (:func:`other_message_ids`).

A send is entered at the moment it is admitted, before its request leaves, in the same
``BEGIN IMMEDIATE`` transaction that counted, so two runs on one channel (two processes) can
never both take the last place. A request that then fails still counts: the ledger errs on the
side of fewer messages.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from campaign.database import Database, PostgresDatabase, SqliteDatabase, redact
from campaign.errors import StateError

DAY = 86400.0
PAIR_GAP = 6.0  # seconds between two messages to one number (WhatsApp pair rate limit)


def ledger_path(environ: dict[str, str] | None = None) -> Path:
    """Where the ledger lives (see the module docstring); ``CAMPAIGN_LEDGER`` overrides."""
    env = dict(os.environ) if environ is None else environ
    if env.get("CAMPAIGN_LEDGER"):
        return Path(env["CAMPAIGN_LEDGER"]).expanduser()
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
    return base / "campaign" / "ledger.sqlite"


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sends (channel TEXT NOT NULL, phone TEXT NOT NULL, at REAL NOT NULL);"
    "CREATE INDEX IF NOT EXISTS sends_channel_at ON sends(channel, at);"
    "CREATE INDEX IF NOT EXISTS sends_channel_phone ON sends(channel, phone, at);"
    "CREATE TABLE IF NOT EXISTS states (channel TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (channel, state));"
)

#: The PostgreSQL schema that holds the ledger of every campaign whose state is in that database.
SCHEMA = "campaign_ledger"
#: How a PostgreSQL state is named in the ledger's ``states`` (a SQLite state by its file's path).
PG_PREFIX = "postgresql:"


def _connect(path: Path | str) -> Database:
    """The ledger's connection (autocommit; transactions are explicit), its tables in place.
    ``path`` is the SQLite file, or a PostgreSQL URL: then the ledger is the schema
    ``campaign_ledger`` of that database, shared by every campaign whose state is there.
    Raises StateError with the fix when it cannot be opened or written."""
    where = str(path)
    if where.startswith(("postgresql://", "postgres://")):
        try:
            db: Database = PostgresDatabase(where, SCHEMA)
            with db.transaction():
                db.lock("ledger-schema")
                db.script(_SCHEMA)
        except Exception as err:
            raise StateError(
                f"cannot open the campaign ledger in PostgreSQL at {redact(where)} ({redact(str(err)).strip()})."
            ) from None
        return db
    try:
        if where != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)  # under a file: OSError, said below
        db = SqliteDatabase(where, timeout=30.0)
        db.script(_SCHEMA)
    except (sqlite3.Error, OSError) as err:
        raise StateError(
            f"{path}: cannot open the campaign ledger ({err}); set CAMPAIGN_LEDGER to a writable file."
        ) from None
    return db


def register_state(path: Path | str, channel: str, state: str) -> None:
    """Record that the campaign whose journal is ``state`` (a SQLite file's resolved path, or
    ``postgresql:<schema>``) sends through ``channel`` (``"<api> <provider> <channel_key>"``),
    before its first request."""
    db = _connect(path)
    try:
        db.execute("INSERT INTO states (channel, state) VALUES (?, ?) ON CONFLICT DO NOTHING", (channel, state))
    finally:
        db.close()


def other_message_ids(path: Path | str, channel: str, state: str) -> set[str]:
    """Message ids that other campaigns on this machine (or this database) got from the API on
    ``channel``.

    Read from each registered state but ``state`` (read-only; a file that is gone or
    unreadable is left out, and forgotten when gone). The API's listing cannot tell two
    campaigns' identical messages apart (sociocs-api.md, GET /messages); these ids can.
    """
    if not str(path).startswith("postgres") and not Path(path).exists():
        return set()
    db = _connect(path)
    try:
        rows = db.execute("SELECT state FROM states WHERE channel = ? AND state != ?", (channel, state))
        others = [p for (p,) in rows]
        ids: set[str] = set()
        for other in others:
            if other.startswith(PG_PREFIX):
                schema = other[len(PG_PREFIX) :]
                try:
                    found = db.execute(f'SELECT message_id FROM "{schema}".recipients WHERE message_id != \'\'')
                    ids.update(r for (r,) in found)
                except db.errors:
                    continue  # the schema was dropped: it cannot hold a claim either
                continue
            if not Path(other).exists():
                db.execute("DELETE FROM states WHERE channel = ? AND state = ?", (channel, other))
                continue
            try:
                peer = sqlite3.connect(f"{Path(other).as_uri()}?mode=ro", uri=True, timeout=30.0)
                try:
                    ids.update(r for (r,) in peer.execute("SELECT message_id FROM recipients WHERE message_id != ''"))
                finally:
                    peer.close()
            except sqlite3.Error:
                continue  # not a state file any more: it cannot hold a claim either
        return ids
    finally:
        db.close()


class Ledger:
    """One channel's view of the shared ledger: ``admit`` answers "may this number get a
    message now?" and, when it may, records that it did."""

    def __init__(self, path: Path | str, channel: str, *, daily_limit: int | None, pair_gap: float | None) -> None:
        self.channel = channel
        self.daily_limit = daily_limit
        self.pair_gap = pair_gap
        self.db = _connect(path)

    def close(self) -> None:
        self.db.close()

    def admit(self, phone: str, at: datetime, *, reserve: bool = True) -> datetime | None:
        """None when ``phone`` may get a message at ``at`` (and, with ``reserve``, the send is
        recorded); else the instant it may. ``phone`` is the E.164 number (with
        ``allow_duplicates`` the key's ``#n`` is dropped: the limit counts people)."""
        phone = phone.split("#", 1)[0]
        t = at.timestamp()
        db = self.db
        db.begin()
        db.lock(self.channel)  # PostgreSQL: one admit per channel at a time (SQLite: the write lock)
        try:
            if self.pair_gap:
                (last,) = db.execute(
                    "SELECT max(at) FROM sends WHERE channel = ? AND phone = ?", (self.channel, phone)
                ).fetchone()
                if last is not None and t - last < self.pair_gap:
                    return _instant(last + self.pair_gap)
            if self.daily_limit is not None:
                since = t - DAY
                seen = db.execute(
                    "SELECT 1 FROM sends WHERE channel = ? AND phone = ? AND at > ? LIMIT 1",
                    (self.channel, phone, since),
                ).fetchone()
                if seen is None:
                    lasts = [
                        m
                        for (m,) in db.execute(
                            "SELECT max(at) AS m FROM sends WHERE channel = ? AND at > ? GROUP BY phone ORDER BY m",
                            (self.channel, since),
                        )
                    ]
                    if len(lasts) >= self.daily_limit:
                        # The set shrinks as each number's last send turns 24 h old.
                        return _instant(lasts[len(lasts) - self.daily_limit] + DAY)
            if reserve:
                db.execute("INSERT INTO sends (channel, phone, at) VALUES (?, ?, ?)", (self.channel, phone, t))
                db.execute("DELETE FROM sends WHERE at < ?", (t - 2 * DAY,))
            return None
        finally:
            db.commit()

    def recipients_since(self, at: datetime) -> int:
        """Unique numbers this channel reached in the 24 hours before ``at`` (for tests, status)."""
        (n,) = self.db.execute(
            "SELECT count(DISTINCT phone) FROM sends WHERE channel = ? AND at > ? AND at <= ?",
            (self.channel, at.timestamp() - DAY, at.timestamp()),
        ).fetchone()
        return int(n)


def _instant(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=1)
