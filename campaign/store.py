"""Where a campaign's state lives, and opening it: the SQLite file beside the campaign, or a
schema in the PostgreSQL database of ``state`` / ``CAMPAIGN_STATE_URL`` (PRODUCT.md, "Several
workers"). Everything that opens a campaign's state goes through here, so no caller knows
which engine it is.

In PostgreSQL a campaign is its schema, named after the state file's name (``spring.state``
becomes ``spring_state``; the sandbox's ``spring.sandbox.state`` its own schema): every campaign
file with that ``name`` and URL, on any host, shares the journal. The daily-limit ledger is
the schema ``campaign_ledger`` of the same database, shared by the campaigns in it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

from campaign.config import Campaign
from campaign.database import pool, redact, schema_name, unreachable
from campaign.errors import LockedError, StateError
from campaign.ledger import PG_PREFIX, ledger_path
from campaign.lock import CampaignLock
from campaign.state import State


def schema(campaign: Campaign) -> str:
    """The campaign's PostgreSQL schema: its state file's name without ``.sqlite``."""
    name = campaign.state.name
    return schema_name(name[: -len(".sqlite")] if name.endswith(".sqlite") else name)


def open_state(campaign: Campaign) -> State:
    """The campaign's state, created (and migrated) if need be. Raises StateError."""
    if campaign.state_url:
        return State.postgres(campaign.state_url, schema(campaign))
    return State(campaign.state)


def state_exists(campaign: Campaign) -> bool:
    """Whether the campaign has a state yet (a run has started), without creating one.

    Raises StateError when the PostgreSQL server cannot be reached."""
    if not campaign.state_url:
        return campaign.state.exists()
    try:
        with pool(campaign.state_url).connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'runs'",
                (schema(campaign),),
            ).fetchone()
    except Exception as err:
        raise unreachable(campaign.state_url, err) from None
    return row is not None


def state_label(campaign: Campaign) -> str:
    """How messages name the campaign's state: the file's name, or the schema and server."""
    if campaign.state_url:
        return f"schema {schema(campaign)} at {redact(campaign.state_url)}"
    return campaign.state.name


def state_ref(campaign: Campaign) -> str:
    """How the ledger's ``states`` list names this state (campaign.ledger.register_state)."""
    if campaign.state_url:
        return PG_PREFIX + schema(campaign)
    return str(campaign.state.resolve())


def ledger_location(campaign: Campaign) -> Path | str:
    """The ledger that counts this campaign's sends: its PostgreSQL database's, or the machine's."""
    return campaign.state_url or ledger_path()


def lock(campaign: Campaign) -> AbstractContextManager[Any]:
    """One run at a time (one planner, with workers): a file lock beside a SQLite state, a
    session advisory lock in PostgreSQL (released by the server when the holder's connection
    dies, however it dies). Raises LockedError naming the holder."""
    if campaign.state_url:
        return PostgresLock(campaign.state_url, schema(campaign), campaign.name, campaign.path.name)
    return CampaignLock(campaign.state, campaign.name)


def who() -> str:
    """This process as locks and the workers table name it: host and pid."""
    return f"{socket.gethostname()} pid {os.getpid()}"


def lock_key(campaign: Campaign) -> str:
    """The name of a PostgreSQL campaign's advisory lock (``hashtextextended`` of it)."""
    return f"campaign-lock:{schema(campaign)}"


class PostgresLock:
    """``pg_try_advisory_lock`` on the campaign's schema, held on a connection of its own."""

    def __init__(self, url: str, schema: str, name: str, file: str = "CAMPAIGN") -> None:
        self.url = url
        self.key = f"campaign-lock:{schema}"
        self.name = name
        self.file = file  # the campaign file's name, for the command in the message
        self.conn: Any = None

    def __enter__(self) -> PostgresLock:
        try:
            self.conn = pool(self.url).getconn()
            got = self.conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (self.key,)).fetchone()[0]
            holder = None
            if not got:
                holder = self.conn.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted"
                    " AND l.objid = (hashtextextended(%s, 0) & 4294967295)::oid LIMIT 1",
                    (self.key,),
                ).fetchone()
        except Exception as err:
            self._release()
            raise unreachable(self.url, err) from None
        if not got:
            self._release()
            by = holder[0].removeprefix("campaign ") if holder and holder[0] else "another process"
            raise LockedError(
                f"Campaign {self.name!r} is already being sent ({by}); wait for that run to finish (to "
                f"send alongside it instead: `campaign send {self.file} --worker`). A lock left by a killed run is "
                "released automatically."
            )
        return self

    def _release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            pool(self.url).putconn(conn)

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        conn = self.conn
        if conn is not None:
            try:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (self.key,))
            except Exception:
                conn.close()  # the server is gone: so is the lock
        self._release()


def open_existing(campaign: Campaign) -> State:
    """The campaign's state; UsageError when it has none yet (never sent)."""
    from campaign.errors import UsageError

    if not state_exists(campaign):
        check_location(campaign)  # sent through PostgreSQL, and no URL here: say so, not "never sent"
        raise UsageError(f"Campaign {campaign.name!r} has not been sent yet (no {state_label(campaign)}).")
    state = open_state(campaign)
    try:
        check_location(campaign, state)  # the URL set, but the sends are in the file beside
    except BaseException:
        state.close()
        raise
    return state


def pointer(campaign: Campaign) -> Path:
    """The note a PostgreSQL campaign leaves beside its campaign file (``<name>.state.postgresql``,
    holding the URL without its password and the schema), so that a run without the URL does
    not start afresh in a new SQLite file."""
    name = campaign.state.name
    base = name[: -len(".sqlite")] if name.endswith(".sqlite") else name
    return campaign.state.with_name(base + ".postgresql")


def check_location(campaign: Campaign, state: State | None = None) -> None:
    """Refuse a send whose state has moved between engines since the last send: the new one
    knows nothing of what was sent, so every row would go again. ``state``: the PostgreSQL
    state just opened. Raises StateError (exit 2) naming both places; nothing sent."""
    if campaign.state_url:
        if state is None or state.last_run() is not None:
            return
        note = pointer(campaign)
        here = _location(campaign)
        with contextlib.suppress(OSError):
            there = note.read_text(encoding="utf-8", errors="replace").strip() if note.exists() else here
            if there != here:
                raise StateError(
                    f"This campaign was sent with its state in PostgreSQL ({there}; see {note.name}), and this run "
                    f"would use another place ({here}) that knows nothing of it: every row would go again. Set "
                    f"the URL back, or delete {note.name} to start afresh there. Nothing was sent."
                )
        if not _sqlite_has_sends(campaign.state):
            return
        raise StateError(
            f"{campaign.state} holds this campaign's sends so far, but its state is now PostgreSQL "
            f"({state_label(campaign)}): continuing there would send every row again. To go on with the "
            "file, unset CAMPAIGN_STATE_URL (or remove state = from the campaign file); to start afresh in "
            "PostgreSQL, move the file aside."
        )
    note = pointer(campaign)
    if note.exists() and not campaign.state.exists():
        where = note.read_text(encoding="utf-8", errors="replace").strip() or "PostgreSQL"
        raise StateError(
            f"This campaign's state is in PostgreSQL ({where}; see {note.name}), and no CAMPAIGN_STATE_URL or "
            "state = is set here: a new state file would know nothing of it, and a send would send every row "
            f"again. Set the URL (README, \"Several workers\"), or delete {note.name} to start afresh with a "
            "file."
        )


def record_location(campaign: Campaign) -> None:
    """Leave :func:`pointer` beside the campaign file (a PostgreSQL campaign's first send)."""
    if not campaign.state_url:
        return
    note = pointer(campaign)
    with contextlib.suppress(OSError):  # a read-only folder: the guard is a courtesy, not the journal
        if not note.exists():  # never rewritten: check_location compares the next run's place to it
            note.write_text(_location(campaign) + "\n", encoding="utf-8")


def _location(campaign: Campaign) -> str:
    return f"schema {schema(campaign)} at {redact(campaign.state_url)}"


def _sqlite_has_sends(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
        try:
            row = db.execute("SELECT 1 FROM recipients WHERE status NOT IN ('pending', 'dry-run') LIMIT 1").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return True  # a file that cannot be read may hold sends: refuse rather than guess
    return row is not None
