"""campaign.ledger pinned in-process: where the ledger lives, the pair gap and the daily limit at
exact instants, what is recorded and deleted, other campaigns' message ids, and each error's
whole sentence.

Real SQLite files in ``tmp_path``; the PostgreSQL tests (marked) use the test's own database on
the session's throw-away cluster (tests/conftest.py). Time is given, never waited for: every
instant is ``T0`` plus whole or exactly representable seconds, so ``t - last`` is exact.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from campaign.errors import StateError
from campaign.ledger import (
    DAY,
    PG_PREFIX,
    SCHEMA,
    Ledger,
    _connect,
    _instant,
    ledger_path,
    other_message_ids,
    register_state,
)

CHANNEL = "whatsapp meta 15550001111"
OTHER_CHANNEL = "whatsapp meta 15550002222"
A, B, C, D = "+16175550101", "+16175550102", "+16175550103", "+16175550104"
#: 2 December 2026 12:00 UTC: a whole number of seconds since the epoch.
T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def s(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def ts(seconds: float) -> float:
    return s(seconds).timestamp()


@contextmanager
def ledger(
    path: Path | str, *, daily_limit: int | None = None, pair_gap: float | None = None, channel: str = CHANNEL
) -> Iterator[Ledger]:
    opened = Ledger(path, channel, daily_limit=daily_limit, pair_gap=pair_gap)
    try:
        yield opened
    finally:
        opened.close()


def sends(path: Path) -> list[tuple[str, str, float]]:
    """The ledger file's ``sends`` rows, read without campaign's code."""
    with closing(sqlite3.connect(path)) as conn:
        return [tuple(r) for r in conn.execute("SELECT channel, phone, at FROM sends ORDER BY at, channel, phone")]


def states(path: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(path)) as conn:
        return [tuple(r) for r in conn.execute("SELECT channel, state FROM states ORDER BY channel, state")]


def state_file(path: Path, ids: Iterable[str]) -> str:
    """A campaign state file whose ``recipients`` hold ``ids`` (and a row without one); its path."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE recipients (key TEXT PRIMARY KEY, message_id TEXT NOT NULL DEFAULT '')")
        conn.execute("INSERT INTO recipients (key, message_id) VALUES ('unsent', '')")
        conn.executemany("INSERT INTO recipients (key, message_id) VALUES (?, ?)", [(i, i) for i in ids])
        conn.commit()
    return str(path)


# --- ledger_path ------------------------------------------------------------------------------


def test_ledger_path_campaign_ledger_wins_over_xdg_and_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGN_LEDGER", str(tmp_path / "from-os-environ.sqlite"))
    env = {"CAMPAIGN_LEDGER": "/srv/shared/ledger.db", "XDG_STATE_HOME": "/xdg"}
    assert ledger_path(env) == Path("/srv/shared/ledger.db")


def test_ledger_path_expands_a_tilde_in_campaign_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ledger_path({"CAMPAIGN_LEDGER": "~/limits/ledger.sqlite"}) == tmp_path / "limits" / "ledger.sqlite"


def test_ledger_path_under_xdg_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ledger_path({"XDG_STATE_HOME": "/xdg/state"}) == Path("/xdg/state/campaign/ledger.sqlite")
    # an empty CAMPAIGN_LEDGER is unset
    assert ledger_path({"CAMPAIGN_LEDGER": "", "XDG_STATE_HOME": "/xdg"}) == Path("/xdg/campaign/ledger.sqlite")


def test_ledger_path_without_either_is_the_xdg_default_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = tmp_path / ".local" / "state" / "campaign" / "ledger.sqlite"
    assert ledger_path({}) == expected
    assert ledger_path({"XDG_STATE_HOME": "", "CAMPAIGN_LEDGER": ""}) == expected


def test_ledger_path_reads_the_process_environment_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CAMPAIGN_LEDGER", "/from/env.sqlite")
    assert ledger_path() == Path("/from/env.sqlite")
    monkeypatch.delenv("CAMPAIGN_LEDGER")
    monkeypatch.setenv("XDG_STATE_HOME", "/xdg-env")
    assert ledger_path() == Path("/xdg-env/campaign/ledger.sqlite")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert ledger_path() == tmp_path / ".local" / "state" / "campaign" / "ledger.sqlite"


# --- _connect ---------------------------------------------------------------------------------


def test_connect_makes_the_folders_and_tables_and_waits_30_seconds_for_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.sqlite"
    db = _connect(path)
    try:
        assert db.tables() == ["sends", "states"]
        indexes = db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
        assert [name for (name,) in indexes] == ["sends_channel_at", "sends_channel_phone"]
        assert db.execute("PRAGMA busy_timeout").fetchone() == (30000,)
        db.execute("INSERT INTO sends (channel, phone, at) VALUES ('c', 'p', 1.5)")
    finally:
        db.close()
    assert path.is_file()
    again = _connect(path)  # the folder exists, the tables exist: nothing lost
    try:
        assert again.execute("SELECT channel, phone, at FROM sends").fetchall() == [("c", "p", 1.5)]
    finally:
        again.close()


def test_connect_in_memory_writes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = _connect(":memory:")
    try:
        assert db.tables() == ["sends", "states"]
    finally:
        db.close()
    assert list(tmp_path.iterdir()) == []


def test_connect_to_a_folder_is_one_sentence_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(StateError) as caught:
        _connect(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}: cannot open the campaign ledger (unable to open database file); "
        "set CAMPAIGN_LEDGER to a writable file."
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_connect_to_a_file_that_is_not_sqlite_is_one_sentence_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"not a ledger, just some notes\n" * 200)
    with pytest.raises(StateError) as caught:
        _connect(path)
    assert str(caught.value) == (
        f"{path}: cannot open the campaign ledger (file is not a database); set CAMPAIGN_LEDGER to a writable file."
    )
    assert path.read_bytes() == b"not a ledger, just some notes\n" * 200


def test_connect_under_a_file_is_one_sentence_with_the_fix(tmp_path: Path) -> None:
    """CAMPAIGN_LEDGER under a path that is a file: its folder cannot be made. A StateError (one
    sentence, exit 3), not an OSError (which the command line reports as an internal error)."""
    blocker = tmp_path / "ledgers"
    blocker.write_text("a file, not a folder\n")
    with pytest.raises(StateError) as caught:
        _connect(blocker / "ledger.sqlite")
    assert str(caught.value) == (
        f"{blocker / 'ledger.sqlite'}: cannot open the campaign ledger ([Errno 17] File exists: '{blocker}'); "
        "set CAMPAIGN_LEDGER to a writable file."
    )
    with pytest.raises(StateError) as deeper:
        _connect(blocker / "sub" / "ledger.sqlite")
    assert str(deeper.value) == (
        f"{blocker / 'sub' / 'ledger.sqlite'}: cannot open the campaign ledger "
        f"([Errno 20] Not a directory: '{blocker / 'sub'}'); set CAMPAIGN_LEDGER to a writable file."
    )


# --- register_state ---------------------------------------------------------------------------


def test_register_state_is_idempotent_per_channel_and_state(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    register_state(path, CHANNEL, "/c/one.sqlite")
    register_state(path, CHANNEL, "/c/one.sqlite")
    register_state(path, OTHER_CHANNEL, "/c/one.sqlite")
    register_state(path, CHANNEL, "postgresql:two")
    assert states(path) == [
        (CHANNEL, "/c/one.sqlite"),
        (CHANNEL, "postgresql:two"),
        (OTHER_CHANNEL, "/c/one.sqlite"),
    ]


# --- other_message_ids ------------------------------------------------------------------------


def test_other_message_ids_reads_every_other_state_on_the_channel(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    own = state_file(tmp_path / "c_own.sqlite", ["own-1"])
    first = state_file(tmp_path / "a first #1?.sqlite", ["a-1", "a-2"])  # a name a URI must escape
    second = state_file(tmp_path / "b_second.sqlite", ["b-1"])
    elsewhere = state_file(tmp_path / "d_elsewhere.sqlite", ["d-1"])
    for state in (own, first, second):
        register_state(path, CHANNEL, state)
    register_state(path, OTHER_CHANNEL, elsewhere)
    assert other_message_ids(path, CHANNEL, own) == {"a-1", "a-2", "b-1"}
    assert other_message_ids(path, CHANNEL, first) == {"own-1", "b-1"}
    assert other_message_ids(path, OTHER_CHANNEL, elsewhere) == set()
    assert other_message_ids(path, OTHER_CHANNEL, own) == {"d-1"}


def test_other_message_ids_forgets_a_state_file_that_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    gone = str(tmp_path / "a_gone.sqlite")
    live = state_file(tmp_path / "b_live.sqlite", ["b-1"])
    own = state_file(tmp_path / "c_own.sqlite", ["own-1"])
    for state in (gone, live, own):
        register_state(path, CHANNEL, state)
    register_state(path, OTHER_CHANNEL, gone)
    assert other_message_ids(path, CHANNEL, own) == {"b-1"}
    assert states(path) == [(CHANNEL, live), (CHANNEL, own), (OTHER_CHANNEL, gone)]


def test_other_message_ids_leaves_out_an_unreadable_state_and_keeps_it_listed(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    garbage = tmp_path / "a_garbage.sqlite"
    garbage.write_bytes(b"this is not a SQLite file\n" * 100)
    empty = tmp_path / "a_no_recipients.sqlite"
    with closing(sqlite3.connect(empty)) as conn:
        conn.execute("CREATE TABLE other (x TEXT)")
    live = state_file(tmp_path / "b_live.sqlite", ["b-1"])
    own = state_file(tmp_path / "c_own.sqlite", ["own-1"])
    for state in (str(garbage), str(empty), live, own):
        register_state(path, CHANNEL, state)
    assert other_message_ids(path, CHANNEL, own) == {"b-1"}
    assert states(path) == [(CHANNEL, str(garbage)), (CHANNEL, str(empty)), (CHANNEL, live), (CHANNEL, own)]
    assert garbage.read_bytes() == b"this is not a SQLite file\n" * 100


def test_other_message_ids_without_a_ledger_file_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite"
    assert other_message_ids(path, CHANNEL, "/c/own.sqlite") == set()
    assert list(tmp_path.iterdir()) == []


# --- Ledger.admit: the pair gap ---------------------------------------------------------------


def test_pair_gap_refuses_a_second_message_to_one_number_until_six_seconds_after_the_last(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with ledger(path, pair_gap=6.0) as lg:
        assert lg.admit(A, s(0)) is None
        assert lg.admit(B, s(1)) is None  # another number is not held
        assert lg.admit(A, s(5.999)) == s(6) + US
        assert lg.admit(A, s(6)) is None
        assert lg.admit(A, s(11.5)) == s(12) + US  # from the last send, not the first
        assert lg.admit(A + "#2", s(8)) == s(12) + US  # allow_duplicates: the number, not the key
        assert lg.admit(A, s(12)) is None
    assert sends(path) == [(CHANNEL, A, ts(0)), (CHANNEL, B, ts(1)), (CHANNEL, A, ts(6)), (CHANNEL, A, ts(12))]


@pytest.mark.parametrize("gap", [None, 0.0])
def test_without_a_pair_gap_one_number_may_get_two_messages_at_once(tmp_path: Path, gap: float | None) -> None:
    path = tmp_path / "ledger.sqlite"
    with ledger(path, pair_gap=gap) as lg:
        assert lg.admit(A, s(0)) is None
        assert lg.admit(A, s(0)) is None
    assert sends(path) == [(CHANNEL, A, ts(0)), (CHANNEL, A, ts(0))]


# --- Ledger.admit: the daily limit ------------------------------------------------------------


def test_daily_limit_refuses_a_new_number_until_24_hours_after_the_oldest(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with ledger(path, daily_limit=2) as lg:
        assert lg.admit(A, s(0)) is None
        assert lg.admit(B, s(10)) is None
        assert lg.admit(C, s(20)) == s(DAY) + US
        assert lg.admit(C, s(DAY - 0.5)) == s(DAY) + US
        assert lg.admit(C, s(DAY)) is None  # A's send is exactly 24 hours old: it no longer counts
        assert lg.admit(D, s(DAY + 1)) == s(DAY + 10) + US  # now B is the oldest of the last two
        assert lg.recipients_since(s(DAY + 1)) == 2
    assert sends(path) == [(CHANNEL, A, ts(0)), (CHANNEL, B, ts(10)), (CHANNEL, C, ts(DAY))]


def test_daily_limit_always_admits_a_number_already_reached_in_24_hours(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with ledger(path, daily_limit=1) as lg:
        assert lg.admit(A, s(0)) is None
        assert lg.admit(A, s(100)) is None  # the limit is full, but A is already in it
        assert lg.admit(B, s(200)) == s(DAY + 100) + US  # A's last send is what ages out
        assert lg.admit(A, s(DAY + 50)) is None  # its send at 100 s is within 24 hours
    assert sends(path) == [(CHANNEL, A, ts(0)), (CHANNEL, A, ts(100)), (CHANNEL, A, ts(DAY + 50))]


def test_daily_limit_counts_people_not_allow_duplicates_keys(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with ledger(path, daily_limit=1) as lg:
        assert lg.admit(A + "#1", s(0)) is None
        assert lg.admit(A + "#2", s(10)) is None
        assert lg.admit(B + "#1", s(20)) == s(DAY + 10) + US
        assert lg.recipients_since(s(20)) == 1
    assert sends(path) == [(CHANNEL, A, ts(0)), (CHANNEL, A, ts(10))]


def test_daily_limit_below_what_the_ledger_holds_waits_for_enough_numbers_to_age_out(tmp_path: Path) -> None:
    """Another campaign on the channel (a higher limit) reached three numbers: to fall below
    two, two of them must turn 24 hours old; below one, all three."""
    path = tmp_path / "ledger.sqlite"
    with ledger(path, daily_limit=3) as high:
        assert high.admit(A, s(0)) is None
        assert high.admit(B, s(10)) is None
        assert high.admit(C, s(20)) is None
    with ledger(path, daily_limit=2) as two, ledger(path, daily_limit=1) as one:
        assert two.admit(D, s(30)) == s(DAY + 10) + US
        assert one.admit(D, s(30)) == s(DAY + 20) + US
        assert one.admit(A, s(DAY - 0.5)) is None  # A's own send is still within 24 hours
        # B's send at 10 s is exactly 24 hours old: C's and A's new one hold the place
        assert one.admit(B, s(DAY + 10)) == s(2 * DAY - 0.5) + US
    assert sends(path) == [(CHANNEL, A, ts(0)), (CHANNEL, B, ts(10)), (CHANNEL, C, ts(20)), (CHANNEL, A, ts(DAY - 0.5))]


def test_a_refused_send_and_reserve_false_record_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with ledger(path, daily_limit=1, pair_gap=6.0) as lg:
        assert lg.admit(A, s(0), reserve=False) is None
        assert sends(path) == []
        assert lg.admit(B, s(0)) is None  # A took no place
        assert lg.admit(C, s(1), reserve=False) == s(DAY) + US
        assert lg.admit(B, s(3), reserve=False) == s(6) + US
        assert lg.admit(A, s(2 * DAY + 1), reserve=False) is None  # nor deletes the old rows
    assert sends(path) == [(CHANNEL, B, ts(0))]


def test_admit_deletes_every_channels_rows_older_than_two_days(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with ledger(path) as lg, ledger(path, channel=OTHER_CHANNEL) as other:
        assert other.admit(A, s(0)) is None
        assert lg.admit(A, s(0)) is None
        assert lg.admit(B, s(1)) is None
        assert lg.admit(C, s(DAY)) is None
        assert sends(path) == [
            (CHANNEL, A, ts(0)),
            (OTHER_CHANNEL, A, ts(0)),
            (CHANNEL, B, ts(1)),
            (CHANNEL, C, ts(DAY)),
        ]
        assert lg.admit(D, s(2 * DAY + 1)) is None  # B's row is exactly two days old: kept
    assert sends(path) == [(CHANNEL, B, ts(1)), (CHANNEL, C, ts(DAY)), (CHANNEL, D, ts(2 * DAY + 1))]


def test_two_channels_are_limited_apart(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with (
        ledger(path, daily_limit=1, pair_gap=6.0) as lg,
        ledger(path, daily_limit=1, pair_gap=6.0, channel=OTHER_CHANNEL) as other,
    ):
        assert lg.admit(A, s(0)) is None
        assert other.admit(B, s(0)) is None  # the first channel's number takes no place here
        assert other.admit(A, s(1)) == s(DAY) + US
        assert lg.admit(B, s(1)) == s(DAY) + US
        assert lg.admit(A, s(6)) is None
        assert other.admit(B, s(2)) == s(6) + US
        assert lg.recipients_since(s(6)) == 1
        assert other.recipients_since(s(6)) == 1
    assert sends(path) == [(CHANNEL, A, ts(0)), (OTHER_CHANNEL, B, ts(0)), (CHANNEL, A, ts(6))]


# --- recipients_since, _instant ---------------------------------------------------------------


def test_recipients_since_counts_unique_numbers_after_24_hours_before_up_to_the_instant(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with ledger(path) as lg, ledger(path, channel=OTHER_CHANNEL) as other:
        assert other.admit(C, s(1)) is None
        for phone, at in ((A, 0), (B, 1), (A, 2)):
            assert lg.admit(phone, s(at)) is None
        assert lg.recipients_since(s(-1)) == 0
        assert lg.recipients_since(s(0)) == 1  # a send at the instant counts
        assert lg.recipients_since(s(0.5)) == 1
        assert lg.recipients_since(s(2)) == 2  # A twice is one number
        assert lg.recipients_since(s(DAY)) == 2  # the send at 0 s is exactly 24 hours old; A's at 2 s counts
        assert lg.recipients_since(s(DAY + 1)) == 1
        assert lg.recipients_since(s(DAY + 2)) == 0
        assert other.recipients_since(s(2)) == 1


def test_instant_is_one_microsecond_after_in_utc() -> None:
    assert _instant(T0.timestamp()) == T0 + US
    assert _instant(T0.timestamp()).tzinfo is UTC
    assert _instant(1.5) == datetime(1970, 1, 1, 0, 0, 1, 500001, tzinfo=UTC)


# --- PostgreSQL -------------------------------------------------------------------------------


def _pg_url() -> str:
    return os.environ["CAMPAIGN_STATE_URL"]


def _pg(sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(_pg_url(), autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []


def _pg_state(schema: str, ids: Iterable[str]) -> str:
    _pg(f'CREATE SCHEMA "{schema}"')
    _pg(f"CREATE TABLE \"{schema}\".recipients (key TEXT PRIMARY KEY, message_id TEXT NOT NULL DEFAULT '')")
    _pg(f"INSERT INTO \"{schema}\".recipients (key, message_id) VALUES ('unsent', '')")
    for i in ids:
        _pg(f'INSERT INTO "{schema}".recipients (key, message_id) VALUES (%s, %s)', (i, i))
    return PG_PREFIX + schema


@pytest.mark.backend("postgresql")
def test_postgresql_ledger_admits_and_records_in_its_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with ledger(_pg_url(), daily_limit=1, pair_gap=6.0) as lg:
        assert lg.admit(A, s(0)) is None
        assert lg.admit(A, s(5.999)) == s(6) + US
        assert lg.admit(B, s(6)) == s(DAY) + US
        assert lg.admit(A + "#2", s(6)) is None
        assert lg.recipients_since(s(6)) == 1
    assert _pg(f'SELECT channel, phone, at FROM "{SCHEMA}".sends ORDER BY at') == [
        (CHANNEL, A, ts(0)),
        (CHANNEL, A, ts(6)),
    ]
    assert list(tmp_path.iterdir()) == []  # nothing on disk


@pytest.mark.backend("postgresql")
def test_postgresql_other_message_ids_leaves_out_a_dropped_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = _pg_url()
    dropped = PG_PREFIX + "a_dropped"
    first = _pg_state("b_first", ["b-1", "b-2"])
    second = _pg_state("c_second", ["c-1"])
    own = _pg_state("d_own", ["own-1"])
    for state in (dropped, first, second, own):
        register_state(url, CHANNEL, state)
    register_state(url, CHANNEL, own)  # again: nothing changes
    assert other_message_ids(url, CHANNEL, own) == {"b-1", "b-2", "c-1"}
    # libpq's other spelling of the scheme is a PostgreSQL URL too
    assert other_message_ids(url.replace("postgresql://", "postgres://", 1), CHANNEL, first) == {"c-1", "own-1"}
    # a dropped schema is left out, not forgotten (a schema cannot be told from one not made yet)
    assert _pg(f'SELECT channel, state FROM "{SCHEMA}".states ORDER BY state') == [
        (CHANNEL, dropped),
        (CHANNEL, first),
        (CHANNEL, second),
        (CHANNEL, own),
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.backend("postgresql")
def test_postgresql_ledger_that_cannot_be_opened_is_one_sentence_without_the_password() -> None:
    port = urlsplit(_pg_url()).port
    url = f"postgresql://postgres:s3cret@127.0.0.1:{port}/no_such_db"
    with pytest.raises(StateError) as caught:
        _connect(url)
    message = str(caught.value)
    assert message.startswith(
        f"cannot open the campaign ledger in PostgreSQL at postgresql://postgres:***@127.0.0.1:{port}/no_such_db ("
    )
    assert 'database "no_such_db" does not exist' in message
    assert message.endswith(").") and "s3cret" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.backend("postgresql")
def test_postgresql_ledger_tables_are_made_under_the_schema_lock() -> None:
    """Two campaigns opening the ledger at once take turns creating its tables: while another
    connection holds the lock, opening waits (here until the server's lock_timeout)."""
    import psycopg

    url = _pg_url()
    impatient = url + ("&" if "?" in url else "?") + "options=-c%20lock_timeout%3D200"
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{SCHEMA}:ledger-schema",))
        with pytest.raises(StateError) as caught:
            _connect(impatient)
        holder.execute("COMMIT")
    assert str(caught.value) == (
        f"cannot open the campaign ledger in PostgreSQL at {impatient} (canceling statement due to lock timeout)."
    )
    _connect(impatient).close()  # the lock released, it opens
