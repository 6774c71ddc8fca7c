"""The two engines a campaign's state can live in: a SQLite file, or a PostgreSQL schema.

:class:`campaign.state.State`, :mod:`campaign.delivery_store` and :mod:`campaign.ledger` write
one SQL for both: ``?`` placeholders, ``INSERT ... ON CONFLICT``, ``RETURNING``, and the types
SQLite and PostgreSQL share. What differs is here and only here:

* placeholders (``?`` → ``%s``, a literal ``%`` doubled) and DDL types, translated once by
  :func:`postgres_sql` / :func:`postgres_ddl`: ``INTEGER`` is 64-bit in SQLite and becomes
  ``BIGINT``, ``REAL`` becomes ``DOUBLE PRECISION``, ``INTEGER PRIMARY KEY`` an identity column;
* how a write transaction starts: SQLite's ``BEGIN IMMEDIATE`` takes the file's write lock at
  once (no deadlock between two writers upgrading); PostgreSQL's ``BEGIN`` plus row locks;
* where the schema version lives (``PRAGMA user_version``; a one-row table in PostgreSQL);
* which errors mean "the engine is gone" (:attr:`Database.lost`).

PostgreSQL connections come from one psycopg pool per URL per process (psycopg_pool), so the
web page and the listener, which open a campaign's state for each request, reuse connections.
Each campaign is one schema (``search_path``) in the URL's database: tables keep their names.
Source: PostgreSQL 15 manual, "SQL Key Words" (``row``, ``key``, ``at`` are non-reserved) and
"INSERT ... ON CONFLICT"; SQLite "UPSERT" (3.24) and "RETURNING" (3.35).
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from campaign.errors import StateError

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

Params = Sequence[Any]


class Cursor(Protocol):
    """What both engines' cursors offer (DB-API 2.0, PEP 249)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchmany(self, size: int = ...) -> list[Any]: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database:
    """One connection to a campaign's state, in autocommit mode; transactions are explicit."""

    dialect = ""
    label = ""  # what error messages call it: the file, or the database URL without a password
    #: exceptions that mean the engine cannot be used (the file is damaged, the server is gone)
    errors: tuple[type[BaseException], ...] = ()

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        raise NotImplementedError

    def begin(self) -> None:
        raise NotImplementedError

    def script(self, sql: str) -> None:
        """Run several statements (DDL), inside the caller's transaction."""
        raise NotImplementedError

    def user_version(self) -> int:
        raise NotImplementedError

    def set_user_version(self, version: int) -> None:
        raise NotImplementedError

    def lock(self, name: str) -> None:
        """Serialise this transaction with every other that takes the same ``name`` lock."""

    def tables(self) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self.execute("ROLLBACK")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``with db.transaction():`` commits on success, rolls back on error."""
        self.begin()
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.commit()


class SqliteDatabase(Database):
    """A SQLite file (or ``:memory:``)."""

    dialect = "sqlite"
    errors = (sqlite3.DatabaseError,)

    def __init__(self, path: str, *, timeout: float = 5.0) -> None:
        self.label = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        self.conn.executemany(sql, rows)

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def script(self, sql: str) -> None:
        for statement in _statements(sql):
            self.conn.execute(statement)

    def user_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def set_user_version(self, version: int) -> None:
        self.conn.execute(f"PRAGMA user_version = {int(version)}")

    def tables(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]

    def close(self) -> None:
        self.conn.close()


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)


def postgres_ddl(sql: str) -> str:
    """A migration written for SQLite, in PostgreSQL's types (the same columns, 64-bit integers)."""
    for pattern, replacement in _TYPES:
        sql = pattern.sub(replacement, sql)
    return sql


#: What PostgreSQL stores for a NUL character: U+FFFD, Unicode's replacement character.
NUL_STAND_IN = "\ufffd"


def postgres_params(params: Params) -> Params:
    """``params`` with every NUL character of a text value replaced by :data:`NUL_STAND_IN`.

    PostgreSQL's ``text`` cannot hold U+0000 (PostgreSQL 15 manual, "Character Types"; psycopg
    raises DataError), yet a text the state keeps may carry one: a cell of a legacy workbook, a
    message written with ``\\u0000`` in the campaign file, an API's error text, a delivery
    report's ``error.message``. SQLite keeps them as they are; in PostgreSQL they become U+FFFD
    instead of failing the commit (which would stop the run, or make the listener refuse the
    report forever). The request sent keeps its NUL: only the journal's copy of the text differs,
    and the cells are JSON, where a NUL is written ``\\u0000`` and survives.
    """
    if not any(isinstance(v, str) and "\x00" in v for v in params):
        return params
    return [v.replace("\x00", NUL_STAND_IN) if isinstance(v, str) else v for v in params]


def postgres_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def schema_name(name: str) -> str:
    """A PostgreSQL schema name for a campaign's state (lower case, ``[a-z0-9_]``, at most 63
    bytes: longer names keep their start and a hash of the whole)."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "campaign"
    if cleaned[0].isdigit():
        cleaned = "c_" + cleaned
    if len(cleaned) > 63:
        cleaned = cleaned[:50] + "_" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return cleaned


def redact(url: str) -> str:
    """The URL without its password, for messages (a password may be in the URL's userinfo or
    its ``password=`` parameter)."""
    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


# The pool reports failed reconnections through logging; the run reports them in its own words.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())
logging.getLogger("psycopg.pool").propagate = False


def unreachable(url: str, err: BaseException) -> StateError:
    """The one sentence for a PostgreSQL server that cannot be used (no password in it)."""
    return StateError(
        f"cannot reach the campaign's state in PostgreSQL at {redact(url)} ({' '.join(redact(str(err)).split())}); "
        "check state / CAMPAIGN_STATE_URL and that the server is running."
    )


_pools: dict[str, psycopg_pool.ConnectionPool[Any]] = {}
_pools_lock = threading.Lock()


def pool(url: str) -> psycopg_pool.ConnectionPool[Any]:
    """The process's connection pool for ``url`` (opened at first use, at most 8 connections).

    Raises psycopg.OperationalError when the server cannot be reached within 10 seconds.
    """
    import psycopg
    import psycopg_pool

    with _pools_lock:
        found = _pools.get(url)
        if found is None:
            # One direct connection first: its error says why ("connection refused", "password
            # authentication failed"), where the pool would only time out.
            psycopg.connect(url, connect_timeout=5, application_name=_application_name()).close()
            found = psycopg_pool.ConnectionPool(
                url,
                min_size=0,
                max_size=8,
                open=True,
                timeout=5.0,
                # A connection checked out is checked first (one round trip): after a server
                # restart the pool's old connections are dead, and the first page load or
                # send would fail on one.
                check=psycopg_pool.ConnectionPool.check_connection,
                # application_name: who holds a lock or a lease, in pg_stat_activity and messages
                kwargs={"autocommit": True, "connect_timeout": 5, "application_name": _application_name()},
            )
            _pools[url] = found
        return found


def _application_name() -> str:
    import os
    import socket

    return f"campaign {socket.gethostname()} pid {os.getpid()}"[:63]


def close_pools() -> None:
    """Close every pool (at exit, and in a forked child that must not use its parent's)."""
    with _pools_lock:
        for p in _pools.values():
            p.close()
        _pools.clear()


class PostgresDatabase(Database):
    """A schema of a PostgreSQL database: one pooled connection, ``search_path`` set to it."""

    dialect = "postgresql"

    def __init__(self, url: str, schema: str) -> None:
        import psycopg

        self.errors = (psycopg.Error,)
        self.label = f"{redact(url)} (schema {schema})"
        self.url = url
        self.schema = schema
        self._pool = pool(url)
        self.conn: psycopg.Connection[Any] = self._pool.getconn()
        try:
            # A commit must be on disk when COMMIT returns, whatever the server's default: the
            # write-ahead mark is what keeps a request from being sent twice after a crash
            # (PostgreSQL 15 manual, 20.5.1 "synchronous_commit": off may lose the last commits).
            self.conn.execute("SET synchronous_commit TO on")
            # Two workers starting at once would race on CREATE SCHEMA IF NOT EXISTS (a unique
            # violation in pg_namespace): one creates it under a lock, the other then sees it.
            with self.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"schema:{schema}",))
                self.conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            self.conn.execute(f'SET search_path TO "{schema}"')
        except BaseException:
            self._pool.putconn(self.conn)
            raise

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        if params:
            return self.conn.execute(postgres_sql(sql), postgres_params(params))
        return self.conn.execute(sql)

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        rows = [postgres_params(r) for r in rows]
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(postgres_sql(sql), rows)

    def begin(self) -> None:
        self.conn.execute("BEGIN")

    def script(self, sql: str) -> None:
        for statement in _statements(postgres_ddl(sql)):
            self.conn.execute(statement)

    def user_version(self) -> int:
        self.conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        row = self.conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def set_user_version(self, version: int) -> None:
        self.conn.execute("DELETE FROM schema_version")
        self.conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (int(version),))

    def lock(self, name: str) -> None:
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{self.schema}:{name}",))

    def tables(self) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY table_name",
                (self.schema,),
            )
        ]

    def close(self) -> None:
        conn, self.conn = self.conn, None  # type: ignore[assignment]
        if conn is None:
            return
        try:
            if not conn.closed:
                conn.execute("RESET ALL")
        except Exception:
            conn.close()  # broken: the pool replaces it
        self._pool.putconn(conn)
