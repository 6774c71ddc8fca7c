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

import os
import socket
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

from campaign.config import Campaign
from campaign.database import pool, redact, schema_name, unreachable
from campaign.errors import LockedError
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
        return PostgresLock(campaign.state_url, schema(campaign), campaign.name)
    return CampaignLock(campaign.state, campaign.name)


def who() -> str:
    """This process as locks and the workers table name it: host and pid."""
    return f"{socket.gethostname()} pid {os.getpid()}"


class PostgresLock:
    """``pg_try_advisory_lock`` on the campaign's schema, held on a connection of its own."""

    def __init__(self, url: str, schema: str, name: str) -> None:
        self.url = url
        self.key = f"campaign-lock:{schema}"
        self.name = name
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
                f"Campaign {self.name!r} is already being sent ({by}); wait for that run to finish, or "
                "add --worker to share the sending with it. A lock left by a killed run is released "
                "automatically."
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
        raise UsageError(f"Campaign {campaign.name!r} has not been sent yet (no {state_label(campaign)}).")
    return open_state(campaign)
