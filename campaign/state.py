"""The campaign's memory: a SQLite journal beside the campaign file, or the same tables in a
PostgreSQL schema (``state = "postgresql://..."``; :mod:`campaign.database`, :mod:`campaign.store`).

Tables (plus ``meta`` and ``runs``):

``recipients``
    one line per recipient (its E.164 number, or number plus occurrence with
    ``allow_duplicates``): what was sent to them and what the API said. This is the journal that
    makes reruns safe. A row is written ``sending`` *and committed* before its request goes to the
    socket; its outcome is committed after the reply. A ``sending`` line found at start-up
    therefore belongs to a run that died mid-request, and becomes ``unknown``: it may have been
    delivered, so it is never resent without ``--resend-unknown``.

``rows``
    the spreadsheet as read by each run: every row with its cells, its recipient key and, for
    rows never sent (``invalid``, ``skipped``), the reason. A run's rows replace the previous
    run's only once it has read the whole file, so a run killed halfway through the file
    leaves the last complete read in place. The results file is that read joined to
    ``recipients``, so it can be written again at any time, even after a kill.

``meta`` records whose state this is (issue 10): the campaign file it belongs to (relative to
the state file's folder) and the API and channel it was sent through; :meth:`State.claim`
refuses another. ``runs`` lists the runs. The schema is versioned (``PRAGMA user_version``):
each change is a migration in ``_MIGRATIONS``, applied in one transaction when an older file
opens; ``tests/data/state-v1.sqlite`` keeps a file of schema 1 to prove it.

``delivery_events`` and ``delivery``
    delivery reports (schema 3): every report as received, append-only, and per message id
    the status it shows (:func:`campaign.delivery.resolve`). ``campaign listen`` writes them
    (:mod:`campaign.delivery_store`) while a send may be running: both use short
    ``BEGIN IMMEDIATE`` transactions on the WAL, so neither blocks the other for long.

Durability: WAL with ``synchronous=NORMAL``. A commit survives the process being killed
(SIGKILL, OOM, a crash) because it is in the WAL file the moment ``COMMIT`` returns; it is not
fsynced, so a power loss or kernel crash may lose the last commits, which could make a row that
was sent look ``pending`` again. ``synchronous=FULL`` would close that gap at the price of an
fsync per group commit; set ``CAMPAIGN_STATE_SYNC=FULL`` to choose it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from campaign.database import Database, SqliteDatabase, redact, unreachable
from campaign.delivery import error_text, iso_ms
from campaign.errors import StateError

SCHEMA_VERSION = 5

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE recipients (
        key TEXT PRIMARY KEY,
        phone TEXT NOT NULL,
        row INTEGER NOT NULL,
        status TEXT NOT NULL,
        message_id TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        http_status INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        payload_hash TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL DEFAULT '',
        sent_hash TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX recipients_status ON recipients(status);
    CREATE TABLE rows (
        run INTEGER NOT NULL,
        row INTEGER NOT NULL,
        key TEXT,
        phone TEXT NOT NULL DEFAULT '',
        status TEXT,
        error TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL DEFAULT '',
        cells TEXT NOT NULL,
        PRIMARY KEY (run, row)
    );
    CREATE INDEX rows_key ON rows(run, key);
    CREATE INDEX rows_phone ON rows(run, phone);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        command TEXT NOT NULL,
        outcome TEXT
    );
    """,
    # 2: what reconcile and re-sorted sheets need (issue 10). Each recipient keeps the content
    # it was sent with (text, media, template id and variables, as JSON), when it was first
    # attempted, and what the last reconcile concluded; each row of a read keeps the hash of
    # its own request, so a send is attributed to the row whose message it was. The API and
    # channel a state file was sent through, and the campaign file it belongs to, live in
    # ``meta`` (keys ``api_url``, ``provider``, ``channel_key``, ``campaign_file``).
    2: """
    ALTER TABLE recipients ADD COLUMN content TEXT NOT NULL DEFAULT '';
    ALTER TABLE recipients ADD COLUMN first_attempt_at TEXT;
    ALTER TABLE recipients ADD COLUMN reconciled TEXT NOT NULL DEFAULT '';
    ALTER TABLE rows ADD COLUMN payload_hash TEXT NOT NULL DEFAULT '';
    """,
    # 3: delivery reports (issue 12, campaign.delivery): every report as it came (append-only),
    # and per message id what it shows. Keyed by message id, not recipient: a report may arrive before
    # the send's answer names its row, and is joined when it does.
    3: """
    CREATE TABLE delivery_events (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL,
        status TEXT NOT NULL,
        error_code TEXT NOT NULL DEFAULT '',
        error_message TEXT NOT NULL DEFAULT '',
        at_ms INTEGER,
        received_at TEXT NOT NULL
    );
    CREATE TABLE delivery (
        message_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        error_code TEXT NOT NULL DEFAULT '',
        error_message TEXT NOT NULL DEFAULT '',
        at_ms INTEGER,
        reached INTEGER NOT NULL DEFAULT 0,
        reports INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX recipients_message_id ON recipients(message_id);
    """,
    # 4: sending windows and cancelling (issue 13). Each recipient keeps the ``schedule`` it was
    # sent with (ISO 8601, '' when sent at once), so ``status`` can list upcoming rows by time
    # and ``cancel`` can tell a message deleted by a killed run from one the API already sent.
    4: """
    ALTER TABLE recipients ADD COLUMN schedule_at TEXT NOT NULL DEFAULT '';
    """,
    # 5: several workers, one campaign (issue 15, campaign.workers; PostgreSQL only in use). The
    # planner leaves each row to send ``pending`` with its prepared request (``job``, JSON);
    # a worker leases rows (``lease_owner``: its id in ``workers``) and marks them ``sending``
    # only while it holds the lease. ``not_before``: a row held by its window or the daily limit
    # goes back to the pool until then (ISO 8601). The channel's pacer is the ledger's
    # (campaign.shared_pacer), shared across campaigns.
    5: """
    ALTER TABLE recipients ADD COLUMN job TEXT NOT NULL DEFAULT '';
    ALTER TABLE recipients ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE recipients ADD COLUMN not_before TEXT NOT NULL DEFAULT '';
    CREATE INDEX recipients_queue ON recipients(status, lease_owner, row);
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        planner INTEGER NOT NULL DEFAULT 0
    );
    """,
}


class Status(StrEnum):
    """What happened to a row or recipient (PRODUCT.md's statuses, plus one internal one)."""

    SENT = "sent"  # accepted by the API; message_id is set
    SCHEDULED = "scheduled"  # accepted with a future schedule; message_id is set
    FAILED = "failed"  # rejected by the API, or retries exhausted
    INVALID = "invalid"  # never sent: unusable phone, template error, provider rule
    SKIPPED = "skipped"  # never sent: duplicate of an earlier row, or suppressed
    UNKNOWN = "unknown"  # the request may have reached the API but no answer came back
    PENDING = "pending"  # not attempted yet
    DRY_RUN = "dry-run"  # rendered and valid; --dry-run sent nothing
    SENDING = "sending"  # internal write-ahead mark: committed before the request is written
    CANCELLED = "cancelled"  # was scheduled; `campaign cancel` deleted it at the API
    CANCELLING = "cancelling"  # internal write-ahead mark: committed before the DELETE is written


#: Every table, in the order a copy fills them (State.scratch of a PostgreSQL state).
_TABLES = ("meta", "runs", "recipients", "rows", "delivery_events", "delivery")

DONE = frozenset({Status.SENT, Status.SCHEDULED})

# A row's status as users see it: its own (invalid, skipped) or its recipient's, with the
# internal write-ahead mark shown as what it means once no run is sending it.
_ROW_STATUS = (
    "CASE WHEN r.status IS NOT NULL THEN r.status WHEN p.status = 'sending' THEN 'unknown'"
    " WHEN p.status = 'cancelling' THEN 'scheduled'"
    " ELSE coalesce(p.status, 'pending') END"
)


# The hash of the request a recipient's outcome is about: what was sent or scheduled (also when
# cancelled since), else what was last tried (unknown, in flight, failed). A pending recipient's
# request never went: whichever row is first now sends its own message, so it has none.
_TRIED_HASH = (
    "CASE WHEN p.status IN ('sent', 'scheduled', 'cancelled', 'cancelling') THEN p.sent_hash"
    " WHEN p.status IN ('unknown', 'sending', 'failed') THEN p.payload_hash ELSE '' END"
)


# This run's row's own request is not the one its recipient's outcome is about (_TRIED_HASH).
_DIFFERS = f"{_TRIED_HASH} != '' AND r.payload_hash != '' AND r.payload_hash != {_TRIED_HASH}"

# Requests that went, or may have: an allow_duplicates row never takes over one of these with
# another text by sending it (campaign.runner.Planner.finish).
WENT = DONE | {Status.UNKNOWN, Status.SENDING, Status.CANCELLED, Status.CANCELLING}


# The results' error for a row whose recipient's request (sent, scheduled, cancelled, unknown or
# failed) was another message than the row's own now, which no other row of the number has: the
# message column shows the one the request had.
_CHANGED_NOTE = (
    "an earlier run's request for this number had the message shown, not this row's text now "
    "(the row or the sheet changed since); this row's text was not sent"
)


def _instant(schedule_at: str) -> datetime:
    """A recipient's ``schedule_at`` (ISO 8601 with its UTC offset) as an instant, for ordering:
    ``09:00+05:30`` comes before ``09:00+00:00``. One without an offset, or none, sorts last."""
    try:
        moment = datetime.fromisoformat(schedule_at)
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)
    return moment if moment.tzinfo is not None else datetime.max.replace(tzinfo=UTC)


def occurrence_number(key: str) -> int:
    """``n`` of an allow_duplicates recipient ``+16175550100#n`` (0 for a plain number)."""
    _, mark, n = key.rpartition("#")
    return int(n) if mark and n.isdigit() else 0


def now_iso() -> str:
    """The current time as ISO 8601 UTC, second precision (what the results file shows)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Identity:
    """Where a campaign's messages went: the API (its URL, or ``sandbox`` for the built-in one,
    whose port changes every run) and the channel (provider and ``channel_key``)."""

    api: str
    provider: str
    channel_key: str

    def describe(self) -> str:
        api = "the built-in sandbox (--sandbox)" if self.api == SANDBOX_API else self.api
        return f"{api}, {self.provider} channel {self.channel_key}"


SANDBOX_API = "sandbox"


@dataclass(frozen=True, slots=True)
class Known:
    """What the journal already knows of one recipient, for planning a run."""

    status: Status
    payload_hash: str
    reconciled: str = ""  # the last reconcile's verdict on an unknown line ('' = none since)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one request: the fields written to the recipient's line."""

    key: str
    status: Status
    message_id: str = ""
    error: str = ""
    http_status: int | None = None
    attempts: int = 0
    # A worker's row held by its window or the daily limit (ISO 8601): the row goes back to the
    # shared pool until then, its lease released in the same write (campaign.workers).
    not_before: str = ""


@dataclass(frozen=True, slots=True)
class RowRecord:
    """One spreadsheet row as read in this run (``status`` only for never-sent rows)."""

    row: int
    cells: str  # JSON text (campaign.prepare.cells_json)
    key: str | None
    phone: str
    status: Status | None = None
    error: str = ""
    message: str = ""
    payload_hash: str = ""  # the hash of this row's own request (duplicates too)


class State:
    """The journal of one campaign: a SQLite file (``path``; ``":memory:"`` for tests), or a
    schema in PostgreSQL (:meth:`postgres`). Both run the same SQL (campaign.database)."""

    def __init__(self, path: Path | str | Database) -> None:
        self.run = 0  # the current run, once begin_run has been called
        self.scratch_path: Path | None = None  # set for throw-away copies, deleted on close
        if isinstance(path, Database):
            self.db = path
            self.path = path.label
        else:
            self.path = str(path)
            try:
                self.db = SqliteDatabase(self.path)
            except sqlite3.DatabaseError as err:
                raise self._unusable(err) from None
        try:
            if self.db.dialect == "sqlite":
                self.db.execute("PRAGMA busy_timeout = 5000")
                if self.path != ":memory:":
                    self.db.execute("PRAGMA journal_mode = WAL")
                sync = os.environ.get("CAMPAIGN_STATE_SYNC", "NORMAL").upper()
                self.db.execute(f"PRAGMA synchronous = {'FULL' if sync == 'FULL' else 'NORMAL'}")
            self._migrate()
        except BaseException as err:
            self.db.close()  # a state that cannot be used is closed, not left to the collector
            if isinstance(err, self.db.errors):
                raise self._unusable(err) from None
            raise

    @classmethod
    def postgres(cls, url: str, schema: str) -> State:
        """The campaign's state in schema ``schema`` of the PostgreSQL database at ``url``.

        Raises StateError (naming the URL without its password) when the server cannot be
        reached or the schema cannot be used.
        """
        from campaign.database import PostgresDatabase

        try:
            db = PostgresDatabase(url, schema)
        except Exception as err:
            raise unreachable(url, err) from None
        return cls(db)

    @property
    def shared(self) -> bool:
        """Whether the state is in a database server (PostgreSQL) that several hosts share."""
        return self.db.dialect == "postgresql"

    def _unusable(self, err: BaseException) -> StateError:
        if self.db_dialect() == "postgresql":
            return StateError(f"{self.path}: the campaign's state cannot be used ({redact(str(err)).strip()}).")
        return StateError(
            f"{self.path}: the state file cannot be used ({err}). Move it aside to start the "
            "campaign afresh, which would resend every row."
        )

    def db_dialect(self) -> str:
        db = getattr(self, "db", None)
        return db.dialect if db is not None else "sqlite"

    def _migrate(self) -> None:
        """Bring the schema up to SCHEMA_VERSION, in one transaction that holds the write lock
        (SQLite's BEGIN IMMEDIATE, an advisory lock in PostgreSQL) from reading the version to
        the last migration: two processes opening a new state at once (a send starting while
        `status` or a test looks) migrate it once, never both."""
        db = self.db
        if db.dialect == "sqlite" and db.user_version() == SCHEMA_VERSION:
            return  # the common case: no write lock taken to open a current file
        with db.transaction():
            db.lock("migrate")
            self._migrate_locked()

    def _migrate_locked(self) -> None:
        version = self.db.user_version()
        if version > SCHEMA_VERSION:
            what = "the campaign's state" if self.shared else "the state file"
            raise StateError(
                f"{self.path}: {what} was written by a newer campaign (schema {version}); "
                "upgrade campaign to continue this campaign."
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            self.db.script(_MIGRATIONS[target])
            self.db.set_user_version(target)

    def transaction(self) -> AbstractContextManager[None]:
        """``with state.transaction(): ...`` commits on success, rolls back on error."""
        return self.db.transaction()

    @classmethod
    def scratch(cls, source: State | None = None) -> State:
        """A throw-away SQLite copy (of ``source``, or empty) for dry runs and checks.

        It lives in a temporary file, not ``:memory:``: a check of a million rows keeps every
        row in the ``rows`` table, which in memory would be hundreds of megabytes. The file is
        unsynced (nothing in it matters after a crash) and deleted on close. A PostgreSQL
        state is copied table by table.
        """
        fd, name = tempfile.mkstemp(prefix="campaign-scratch-", suffix=".sqlite")
        os.close(fd)
        copy = cls(name)
        copy.scratch_path = Path(name)
        try:
            copy.db.execute("PRAGMA synchronous = OFF")
            if source is not None and isinstance(source.db, SqliteDatabase):
                source.db.conn.backup(cast(SqliteDatabase, copy.db).conn)
            elif source is not None:
                source._copy_into(copy)
        except BaseException:
            copy.close()
            raise
        return copy

    def _copy_into(self, copy: State) -> None:
        """Every row of every table of this state into ``copy`` (same schema version)."""
        with copy.transaction():
            for table in _TABLES:
                cur = self.db.execute(f"SELECT * FROM {table}")
                names = [d[0] for d in cur.description or ()]
                copy.db.execute(f"DELETE FROM {table}")
                insert = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
                while chunk := cur.fetchmany(5000):
                    copy.db.executemany(insert, chunk)

    def close(self) -> None:
        self.db.close()
        if self.scratch_path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.scratch_path}{suffix}").unlink(missing_ok=True)

    # --- runs -------------------------------------------------------------------------------

    def recover(self) -> int:
        """Turn ``sending`` lines left by a dead run into ``unknown``; return how many."""
        with self.transaction():
            cur = self.db.execute(
                # updated_at stays the time of the request: reconcile searches around it.
                "UPDATE recipients SET status = ?, error = ?, reconciled = '' WHERE status = ?",
                (
                    Status.UNKNOWN,
                    "the run stopped while this request was in flight; it may have been delivered",
                    Status.SENDING,
                ),
            )
        return cur.rowcount

    def begin_run(self, command: str, columns: Sequence[str] | None) -> int:
        """Start a run; its rows are read into a fresh snapshot (see :meth:`finish_read`).
        ``columns`` None: a run that reads no file (a worker joining another run's plan)."""
        with self.transaction():
            if columns is not None:
                self.set_meta("next_columns", json.dumps(list(columns)))
            cur = self.db.execute(
                "INSERT INTO runs (started_at, command) VALUES (?, ?) RETURNING id", (now_iso(), command)
            )
            self.run = int(cur.fetchone()[0])
        return self.run

    def finish_read(self) -> None:
        """The whole file has been read: this run's rows become *the* snapshot."""
        with self.transaction():
            self.db.execute("DELETE FROM rows WHERE run != ?", (self.run,))
            self.set_meta("snapshot_run", str(self.run))
            self.set_meta("columns", self.meta("next_columns") or "[]")

    def attribute(self) -> None:
        """After a whole read: give each earlier request to the row whose request it was.

        The first row with a number is the one planned; in a re-sorted sheet that may be
        another row with the same number than the one whose request went (issue 10, item 5):
        sent, scheduled or cancelled, and also unknown or failed (:data:`_TRIED_HASH`). When a
        duplicate row's own request is that one, it becomes the recipient's row and the others
        are its duplicates, so the results say what happened to each row, with its own message.
        With allow_duplicates no row is another's duplicate: each row already took the
        recipient whose request was its own (``Planner._number_occurrences`` in campaign.runner).
        """
        snapshot = self.run
        swaps = self.db.execute(
            f"SELECT r.key, {_TRIED_HASH} FROM rows r JOIN recipients p ON p.key = r.key"
            f" WHERE r.run = ? AND r.status IS NULL AND {_DIFFERS} ORDER BY r.row",
            (snapshot,),
        ).fetchall()
        if not swaps:
            return
        with self.transaction():
            for key, tried in swaps:
                owner = self.db.execute(
                    "SELECT min(row) FROM rows WHERE run = ? AND key = ? AND status = 'skipped'"
                    " AND payload_hash = ? AND error LIKE 'duplicate of row %'",
                    (snapshot, key, tried),
                ).fetchone()[0]
                if owner is None:
                    continue  # no row has that message any more: it changed (see changed_since_sent)
                self.db.execute(
                    "UPDATE rows SET status = 'skipped', error = ? WHERE run = ? AND key = ? AND row != ?"
                    " AND (status IS NULL OR error LIKE 'duplicate of row %')",
                    (f"duplicate of row {owner}", snapshot, key, owner),
                )
                self.db.execute(
                    "UPDATE rows SET status = NULL, error = '' WHERE run = ? AND row = ?", (snapshot, owner)
                )
                self.db.execute("UPDATE recipients SET row = ? WHERE key = ?", (owner, key))

    def changed_since_sent(self) -> list[int]:
        """Rows of this read (in order) whose recipient was sent a message other than the row's
        own now, and which :meth:`attribute` could give to no other row: the row changed since,
        or the row that was sent did. Nothing tells which row it was then without guessing, so
        the row keeps the outcome and the results say so (:data:`_CHANGED_NOTE`)."""
        cur = self.db.execute(
            "SELECT r.row FROM rows r JOIN recipients p ON p.key = r.key"
            " WHERE r.run = ? AND r.status IS NULL AND p.status IN ('sent', 'scheduled')"
            f" AND {_DIFFERS} ORDER BY r.row",
            (self.run,),
        )
        return [int(row) for (row,) in cur]

    def _snapshot(self) -> int:
        """The run whose rows the results show: the last complete read, or before any read
        has completed (a first run killed halfway), whatever the latest run has read so far."""
        done = self.meta("snapshot_run")
        if done is not None:
            return int(done)
        return int(self.db.execute("SELECT max(run) FROM rows").fetchone()[0] or 0)

    def end_run(self, run_id: int, outcome: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE runs SET finished_at = ?, outcome = ? WHERE id = ?", (now_iso(), outcome, run_id))

    def last_run(self) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT id, started_at, finished_at, command, outcome FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return dict(zip(("id", "started_at", "finished_at", "command", "outcome"), row, strict=True))

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def columns(self) -> list[str]:
        """The input columns of the rows the results show."""
        raw = self.meta("columns")
        if raw is None:
            raw = self.meta("next_columns")
        return list(json.loads(raw)) if raw else []

    # --- whose state this is ------------------------------------------------------------------

    def claim(self, campaign_file: Path, identity: Identity | None, *, record: bool) -> None:
        """Refuse a campaign file or an API/channel that this state file does not belong to.

        A state file belongs to one campaign file: the one recorded, as a path relative to the
        state file's folder, by the first run that sent. "The same campaign file" is that path
        resolving to this very file (``os.path.samefile``), so moving the whole folder keeps
        working; a recorded file that no longer exists was renamed or moved, and the current
        file takes over. A second file that exists beside it (a copy that kept ``name``) is
        refused. Likewise the state remembers the API and channel it was sent through, and a
        run through another one is refused: its "already sent" would be about another
        account's messages (issue 10); until a row has reached the API (every row still
        ``pending``) the API and channel may change. A state file from before schema 2 records
        them on its next send. ``record`` writes what is missing or may change (a real send).
        Raises StateError (exit 2) naming both sides; nothing has been sent at that point.
        """
        if self.path == ":memory:" or self.scratch_path is not None:
            return
        # In PostgreSQL a campaign is its name: every host's copy of the campaign file (with that
        # name and state URL) shares the journal, which is how workers share a campaign.
        folder = Path.cwd() if self.shared else Path(self.path).resolve().parent
        recorded = None if self.shared else self.meta("campaign_file")
        if recorded is not None:
            owner = folder / recorded
            try:
                same = os.path.samefile(owner, campaign_file)
            except OSError:
                same = not owner.exists()  # renamed or moved away: the current file takes over
            if not same:
                raise StateError(
                    f"{campaign_file} would continue the campaign of {owner}: both use the state file "
                    f'{self.path}. Give this campaign file its own name (name = "...") or [output] state '
                    "so that it starts afresh; nothing was sent."
                )
        if identity is not None:
            old = [self.meta(k) for k in ("api_url", "provider", "channel_key")]
            if all(v is not None for v in old):
                before = Identity(*(str(v) for v in old))
                # Binding once anything may have reached that API: a run that could not connect
                # (a mistyped api_url) leaves every row pending, and the corrected one goes on.
                reached = self.db.execute(
                    "SELECT 1 FROM recipients WHERE status NOT IN ('pending', 'dry-run') LIMIT 1"
                ).fetchone()
                if before != identity and reached is not None:
                    raise StateError(
                        f"{self.path}: this campaign was sent through {before.describe()}; this run would "
                        f"send through {identity.describe()}. A state file records one API and channel, "
                        "so its rows' statuses say nothing about the other one: give the campaign its "
                        "own name or [output] state for it, or set api_url, provider and channel_key back. "
                        "Nothing was sent."
                    )
        if not record:
            return
        with self.transaction():
            if not self.shared:
                try:
                    relative = os.path.relpath(campaign_file, folder)
                except ValueError:  # another drive (Windows): only an absolute path can name it
                    relative = str(campaign_file)
                self.set_meta("campaign_file", Path(relative).as_posix())
            if identity is not None:
                self.set_meta("api_url", identity.api)
                self.set_meta("provider", identity.provider)
                self.set_meta("channel_key", identity.channel_key)

    def identity(self) -> Identity | None:
        """The API and channel this state file was sent through, if recorded."""
        old = [self.meta(k) for k in ("api_url", "provider", "channel_key")]
        return Identity(*(str(v) for v in old)) if all(v is not None for v in old) else None

    # --- planning ---------------------------------------------------------------------------

    def _where_in(self, sql: str, values: Sequence[str], *params: Any) -> Iterator[tuple[Any, ...]]:
        """Run ``sql`` (with one ``{marks}`` placeholder for ``IN (...)``) over ``values`` in
        slices of 500, under SQLite's limit on bound parameters; ``params`` bind before them."""
        for start in range(0, len(values), 500):
            part = values[start : start + 500]
            yield from self.db.execute(sql.format(marks=",".join("?" * len(part))), [*params, *part])

    def known(self, keys: Sequence[str]) -> dict[str, Known]:
        """The journal's lines for these keys (those that exist)."""
        rows = self._where_in(
            "SELECT key, status, payload_hash, reconciled FROM recipients WHERE key IN ({marks})", keys
        )
        return {key: Known(Status(status), payload_hash, reconciled) for key, status, payload_hash, reconciled in rows}

    def first_rows(self, keys: Sequence[str]) -> dict[str, int]:
        """For keys already read in this run, the first row that had them (for duplicates)."""
        sql = "SELECT key, min(row) FROM rows WHERE run = ? AND key IN ({marks}) AND status IS NULL GROUP BY key"
        return dict(self._where_in(sql, keys, self.run))

    def occurrences(self, phones: Sequence[str]) -> dict[str, list[tuple[str, str, str]]]:
        """With allow_duplicates, each number's recipients (``+1617…#n``) in order of ``n``:
        (key, status, the hash of what it sent: ``sent_hash`` once sent or scheduled, else the
        ``payload_hash`` planned or tried)."""
        sql = (
            "SELECT phone, key, status, CASE WHEN status IN ('sent', 'scheduled') THEN sent_hash"
            " ELSE payload_hash END FROM recipients WHERE phone IN ({marks})"
        )
        out: dict[str, list[tuple[str, str, str]]] = {}
        for phone, key, status, content in self._where_in(sql, sorted(set(phones))):
            out.setdefault(phone, []).append((key, status, content))
        for found in out.values():
            found.sort(key=lambda o: occurrence_number(o[0]))
        return out

    def inherit(self, row: int, new: str, went: str) -> None:
        """allow_duplicates: this run's ``row`` takes the recipient ``went`` (a request of its
        number that went, or may have) instead of the ``new`` one planned for it, which is
        dropped: it was never tried (campaign.runner.Planner.finish)."""
        self.db.execute("UPDATE rows SET key = ? WHERE run = ? AND row = ?", (went, self.run, row))
        self.db.execute("DELETE FROM recipients WHERE key = ? AND status = 'pending' AND attempts = 0", (new,))

    def keys_read(self, phones: Sequence[str]) -> set[str]:
        """The recipients this run's rows so far went to, for these numbers (allow_duplicates)."""
        sql = "SELECT DISTINCT key FROM rows WHERE run = ? AND phone IN ({marks}) AND key IS NOT NULL"
        return {key for (key,) in self._where_in(sql, sorted(set(phones)), self.run)}

    def add_rows(self, rows: Iterable[RowRecord]) -> None:
        self.db.executemany(
            "INSERT INTO rows (run, row, key, phone, status, error, message, cells, payload_hash)"
            " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (run, row) DO UPDATE SET key = excluded.key,"
            " phone = excluded.phone, status = excluded.status, error = excluded.error,"
            " message = excluded.message, cells = excluded.cells, payload_hash = excluded.payload_hash",
            [(self.run, r.row, r.key, r.phone, r.status, r.error, r.message, r.cells, r.payload_hash) for r in rows],
        )

    def add_recipients(self, items: Iterable[tuple[str, str, int, str, str]]) -> None:
        """Insert new recipients as pending: (key, phone, row, payload_hash, message)."""
        stamp = now_iso()
        self.db.executemany(
            "INSERT INTO recipients (key, phone, row, status, payload_hash, message, created_at, updated_at)"
            " VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)",
            [(*item, stamp, stamp) for item in items],
        )

    def touch_rows(self, items: Iterable[tuple[int, str]]) -> None:
        """Update the row number of known recipients: (row, key). Re-sorting moves, never resends."""
        self.db.executemany("UPDATE recipients SET row = ? WHERE key = ?", items)

    def set_status(self, keys: Iterable[str], status: Status, error: str = "") -> None:
        """Set these recipients' status. A row set back to ``pending`` (reconcile: the API never
        took it) is free for any worker again: the lease an ``unknown`` row keeps for a late
        answer (campaign.workers) is void once the row is known not sent, and a row still
        leased by a worker that has finished would be waited for forever."""
        stamp = now_iso()
        self.db.executemany(
            "UPDATE recipients SET status = ?, error = ?, updated_at = ?,"
            " lease_owner = CASE WHEN ? = 'pending' THEN '' ELSE lease_owner END WHERE key = ?",
            [(status, error, stamp, status, k) for k in keys],
        )

    # --- sending ----------------------------------------------------------------------------

    def write(
        self,
        outcomes: Sequence[Outcome],
        marks: Sequence[tuple[str, str, str, str, str]],
        *,
        owner: str | None = None,
    ) -> set[str]:
        """One group commit: outcomes of finished requests, then write-ahead marks of new ones.

        ``marks`` are (key, payload_hash, message, content, schedule_at): the row goes ``sending`` with the
        exact request about to be written; its first attempt's time is kept for reconcile. A
        new ``unknown`` outcome clears the last reconcile's verdict: it predates this attempt.
        With ``owner`` (a worker, campaign.workers) a row is marked only while that worker
        holds its lease: returns the keys it no longer holds, which must not be sent.
        """
        stamp = now_iso()
        with self.transaction():
            if outcomes and owner is None:
                self.db.executemany(
                    "UPDATE recipients SET status = ?, message_id = ?, error = ?, http_status = ?,"
                    " attempts = attempts + ?, updated_at = ?,"
                    " sent_hash = CASE WHEN ? IN ('sent', 'scheduled') THEN payload_hash ELSE sent_hash END,"
                    " reconciled = CASE WHEN ? = 'unknown' THEN '' ELSE reconciled END"
                    " WHERE key = ?",
                    [
                        (o.status, o.message_id, o.error, o.http_status, o.attempts, stamp, o.status, o.status, o.key)
                        for o in outcomes
                    ],
                )
            elif outcomes:
                # A worker writes only rows it holds (a row reaped from it and re-leased is not
                # its any more); a hold gives the row back to the pool until ``not_before``.
                self.db.executemany(
                    "UPDATE recipients SET status = ?, message_id = ?, error = ?, http_status = ?,"
                    " attempts = attempts + ?, updated_at = ?,"
                    " sent_hash = CASE WHEN ? IN ('sent', 'scheduled') THEN payload_hash ELSE sent_hash END,"
                    " reconciled = CASE WHEN ? = 'unknown' THEN '' ELSE reconciled END,"
                    " not_before = ?, lease_owner = CASE WHEN ? != '' THEN '' ELSE lease_owner END"
                    " WHERE key = ? AND lease_owner = ?",
                    [
                        (
                            *(o.status, o.message_id, o.error, o.http_status, o.attempts, stamp, o.status, o.status),
                            *(o.not_before, o.not_before, o.key, owner),
                        )
                        for o in outcomes
                    ],
                )
            mark = (
                "UPDATE recipients SET status = 'sending', payload_hash = ?, message = ?, content = ?,"
                " schedule_at = ?, updated_at = ?, first_attempt_at = coalesce(first_attempt_at, ?),"
                " reconciled = '' WHERE key = ?"
            )
            if marks and owner is None:
                self.db.executemany(mark, [(h, m, c, at, stamp, stamp, k) for k, h, m, c, at in marks])
            refused: set[str] = set()
            for k, h, m, c, at in marks if owner is not None else ():
                cur = self.db.execute(mark + " AND lease_owner = ?", (h, m, c, at, stamp, stamp, k, owner))
                if cur.rowcount != 1:
                    refused.add(k)
        return refused

    # --- reading back -----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows of the snapshot per status (never-sent rows by their own status)."""
        return dict(
            self.db.execute(
                f"SELECT {_ROW_STATUS}, count(*) FROM rows r"
                " LEFT JOIN recipients p ON r.status IS NULL AND p.key = r.key WHERE r.run = ? GROUP BY 1",
                (self._snapshot(),),
            ).fetchall()
        )

    def results(self) -> Iterator[tuple[Any, ...]]:
        """Every row of the snapshot, in spreadsheet order, joined to its recipient's outcome.

        Yields (cells, row, phone, status, message_id, error, http_status, attempts, message,
        updated_at, delivery_status, delivery_error, delivery_updated_at). A row still ``sending``
        (its run died or could not record the answer) shows as ``unknown``, which is what it is.
        ``message`` is the one that went (or may have) for a row whose recipient was tried, else
        the row's own: a pending row sends its own message, whatever an earlier run planned.
        """
        cur = self.db.execute(
            f"SELECT r.cells, r.row, r.phone, {_ROW_STATUS},"
            " coalesce(p.message_id, ''), CASE WHEN r.status IS NOT NULL THEN r.error"
            f" WHEN {_DIFFERS} THEN ? || CASE WHEN coalesce(p.error, '') = '' THEN '' ELSE '; ' || p.error END"
            " ELSE coalesce(p.error, '') END,"
            " p.http_status, coalesce(p.attempts, 0),"
            " CASE WHEN r.status IS NOT NULL OR p.status IN ('pending', 'dry-run') THEN r.message"
            " ELSE coalesce(p.message, r.message) END,"
            " coalesce(p.updated_at, ''), d.status, d.error_code, d.error_message, d.at_ms"
            " FROM rows r LEFT JOIN recipients p ON r.status IS NULL AND p.key = r.key"
            " LEFT JOIN delivery d ON p.message_id != '' AND d.message_id = p.message_id"
            " WHERE r.run = ? ORDER BY r.row",
            (_CHANGED_NOTE, self._snapshot()),
        )
        for cells, *rest, d_status, d_code, d_message, d_at in cur:
            delivery = (d_status, error_text(d_code, d_message), iso_ms(d_at)) if d_status else ("", "", "")
            yield (tuple(json.loads(cells)), *rest, *delivery)

    def by_status(self, status: Status) -> list[dict[str, Any]]:
        """Recipients with this status, with their row, phone, message and last update."""
        cur = self.db.execute(
            "SELECT key, row, phone, message, error, updated_at, payload_hash, content, schedule_at,"
            " coalesce(first_attempt_at, created_at) AS first_attempt_at, reconciled, message_id FROM recipients"
            " WHERE status = ? ORDER BY row",
            (status,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]

    def mark_found(self, found: Iterable[tuple[str, str, Status]]) -> None:
        """Reconcile found these (key, message_id, status) at the API: ``sent``, or ``scheduled``
        when the request carried a schedule still in the future (so ``cancel`` can delete it).
        The HTTP status of the lost answer stays as it was."""
        self.db.executemany(
            "UPDATE recipients SET status = ?, message_id = ?, error = 'found by reconcile',"
            " sent_hash = payload_hash, reconciled = 'found' WHERE key = ?",
            [(str(status), message_id, key) for key, message_id, status in found],
        )

    def mark_unresolved(self, items: Iterable[tuple[str, str, str]]) -> None:
        """Reconcile could not decide these (key, verdict, error): they stay ``unknown``, with
        the verdict (``ambiguous``: the API lists more than one message that could be the
        row's; ``uncovered``: its listing does not cover the row's time span) and why."""
        self.db.executemany(
            "UPDATE recipients SET reconciled = ?, error = ? WHERE key = ? AND status = 'unknown'",
            [(verdict, error, key) for key, verdict, error in items],
        )

    # --- cancelling (campaign.cancel) ---------------------------------------------------------

    def scheduled(
        self, rows: Sequence[int] | None = None, *, statuses: Sequence[str] = ("scheduled",)
    ) -> list[dict[str, Any]]:
        """Recipients with one of ``statuses`` (of the rows named, or all), by schedule time:
        key, row, phone, message_id, schedule_at, status, error."""
        marks = ", ".join("?" for _ in statuses)
        cur = self.db.execute(
            "SELECT key, row, phone, message_id, schedule_at, status, error FROM recipients"
            f" WHERE status IN ({marks}) ORDER BY schedule_at, row",
            tuple(statuses),
        )
        names = [d[0] for d in cur.description]
        found = [dict(zip(names, r, strict=True)) for r in cur]
        found.sort(key=lambda d: (_instant(d["schedule_at"]), d["row"]))  # by the instant, not the text
        return found if rows is None else [d for d in found if d["row"] in set(rows)]

    def set_cancel(self, key: str, status: Status, error: str = "") -> None:
        """Commit a cancel step for one recipient: ``cancelling`` before its DELETE is written
        (so a kill leaves a trace), then ``cancelled``, or back to what the API says it is."""
        with self.transaction():
            self.db.execute(
                "UPDATE recipients SET status = ?, error = ?, updated_at = ? WHERE key = ?",
                (status, error, now_iso(), key),
            )

    def message_ids(self) -> set[str]:
        """Every message id the journal holds (reconcile must not give one to two rows)."""
        return {r[0] for r in self.db.execute("SELECT message_id FROM recipients WHERE message_id != ''")}

    def journal_counts(self) -> dict[str, int]:
        """Recipients per status over the campaign's whole life (not only the last read)."""
        return dict(self.db.execute("SELECT status, count(*) FROM recipients GROUP BY status").fetchall())
