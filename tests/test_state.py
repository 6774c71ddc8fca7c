"""campaign.state.State in this process: what each reading returns (every column), what each
writing leaves on exactly the rows given, scratch copies, whose state it is, and the sentences
for a state that cannot be used. A real SQLite file in tmp_path (PostgreSQL where marked)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaign.config import load_campaign
from campaign.database import redact
from campaign.errors import StateError
from campaign.sandbox import Sandbox, SandboxConfig
from campaign.state import (
    _TABLES,
    SCHEMA_VERSION,
    Identity,
    Known,
    Outcome,
    RowRecord,
    State,
    Status,
    now_iso,
    occurrence_number,
)
from tests.conftest import KEY, CampaignFactory, write_csv
from tests.test_record import options, run_on

T0 = "2026-01-01T00:00:00+00:00"  # created
T1 = "2026-01-01T00:05:00+00:00"  # first attempt
T2 = "2026-01-01T00:06:00+00:00"  # last update
A, B, C = "+16175550001", "+16175550002", "+16175550003"
NOW = "<now>"  # an updated_at written by the call under test (between before and after)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    opened = State(tmp_path / "c.state.sqlite")
    try:
        yield opened
    finally:
        opened.close()


def put(state: State, key: str, row: int, status: Status | str = Status.PENDING, **cols: Any) -> None:
    """A recipient line with these columns (the others as add_recipients writes them)."""
    phone = cols.pop("phone", key.split("#")[0])
    with state.transaction():
        state.add_recipients([(key, phone, row, cols.pop("payload_hash", "h"), cols.pop("message", "m"))])
        values = {"status": str(status), "created_at": T0, "updated_at": T0, **cols}
        state.db.execute(
            f"UPDATE recipients SET {', '.join(f'{c} = ?' for c in values)} WHERE key = ?", (*values.values(), key)
        )


def lines(state: State, columns: str, before: str = "9999") -> dict[str, tuple[Any, ...]]:
    """key -> these columns of its recipient line; an updated_at at or after ``before`` reads NOW."""
    cur = state.db.execute(f"SELECT key, {columns} FROM recipients ORDER BY key")
    names = [d[0] for d in cur.description][1:]
    out = {}
    for key, *values in cur:
        out[key] = tuple(
            NOW if name == "updated_at" and before <= value <= now_iso() else value
            for name, value in zip(names, values, strict=True)
        )
    return out


def dump(state: State, tables: tuple[str, ...] = _TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of these tables, sorted (so two engines' copies compare)."""
    return {t: sorted(tuple(r) for r in state.db.execute(f"SELECT * FROM {t}")) for t in tables}


def fill(state: State, rows: int = 3) -> None:
    """Something in every table: meta, two runs, recipients, a read of ``rows`` rows, delivery."""
    state.set_meta("api_url", "https://api.example.com")
    state.begin_run("send", ["Phone", "Name"])
    state.end_run(state.run, "finished")
    state.begin_run("send", ["Phone", "Name"])
    with state.transaction():
        state.add_rows(
            RowRecord(r, f'["+1617555{r:04d}", "P{r}"]', f"+1617555{r:04d}", f"+1617555{r:04d}", payload_hash=f"h{r}")
            for r in range(2, rows + 2)
        )
        state.add_rows([RowRecord(rows + 2, '["x", "Bad"]', None, "", Status.INVALID, "not a phone number")])
    state.finish_read()
    put(state, A, 2, Status.SENT, message_id="SM1", http_status=200, attempts=1, sent_hash="h2")
    put(state, B, 3, Status.UNKNOWN, error="lost", first_attempt_at=T1, content='{"text":"Hi"}')
    with state.transaction():
        state.db.execute(
            "INSERT INTO delivery_events (message_id, status, error_code, error_message, at_ms, received_at)"
            " VALUES ('SM1', 'delivered', '', '', 1767225600000, ?)",
            (T2,),
        )
        state.db.execute(
            "INSERT INTO delivery (message_id, status, at_ms, reached, reports)"
            " VALUES ('SM1', 'delivered', 1767225600000, 1, 1)"
        )


# --- reading back -------------------------------------------------------------------------------


def test_by_status_gives_every_column_of_each_line_in_row_order(state: State) -> None:
    put(
        state,
        C,
        4,
        Status.UNKNOWN,
        message="Hi Cy",
        error="the answer was lost",
        updated_at=T2,
        payload_hash="h4",
        content='{"text":"Hi Cy"}',
        schedule_at="2090-01-01T09:00:00+00:00",
        first_attempt_at=T1,
        reconciled="ambiguous",
        message_id="",
    )
    put(state, B, 3, Status.UNKNOWN, message="Hi Bo", payload_hash="h3")  # never attempted: created_at
    put(state, A, 2, Status.SENT, message_id="SM1")
    assert state.by_status(Status.UNKNOWN) == [
        {
            "key": B,
            "row": 3,
            "phone": B,
            "message": "Hi Bo",
            "error": "",
            "updated_at": T0,
            "payload_hash": "h3",
            "content": "",
            "schedule_at": "",
            "first_attempt_at": T0,
            "reconciled": "",
            "message_id": "",
        },
        {
            "key": C,
            "row": 4,
            "phone": C,
            "message": "Hi Cy",
            "error": "the answer was lost",
            "updated_at": T2,
            "payload_hash": "h4",
            "content": '{"text":"Hi Cy"}',
            "schedule_at": "2090-01-01T09:00:00+00:00",
            "first_attempt_at": T1,
            "reconciled": "ambiguous",
            "message_id": "",
        },
    ]
    assert [d["key"] for d in state.by_status(Status.SENT)] == [A]
    assert state.by_status(Status.FAILED) == []


def test_scheduled_lists_by_schedule_time_then_row_with_every_column(state: State) -> None:
    late, early = "2090-01-02T10:00:00+00:00", "2090-01-01T10:00:00+00:00"
    put(state, A, 5, Status.SCHEDULED, message_id="SM5", schedule_at=late)
    put(state, B, 7, Status.SCHEDULED, message_id="SM7", schedule_at=early)
    put(state, C, 4, Status.SCHEDULED, message_id="SM4", schedule_at=late, error="still listed")
    put(state, "+16175550004", 3, Status.CANCELLING, message_id="SM3", schedule_at=early)
    put(state, "+16175550005", 2, Status.SENT, message_id="SM2", schedule_at=early)

    def line(key: str, row: int, mid: str, at: str, status: str = "scheduled", error: str = "") -> dict[str, Any]:
        return {
            "key": key,
            "row": row,
            "phone": key,
            "message_id": mid,
            "schedule_at": at,
            "status": status,
            "error": error,
        }

    b, c, a = line(B, 7, "SM7", early), line(C, 4, "SM4", late, error="still listed"), line(A, 5, "SM5", late)
    assert state.scheduled() == [b, c, a]
    assert state.scheduled([5, 7, 99]) == [b, a]
    assert state.scheduled([]) == []
    assert state.scheduled(statuses=("scheduled", "cancelling")) == [
        line("+16175550004", 3, "SM3", early, "cancelling"),
        b,
        c,
        a,
    ]
    assert state.scheduled(statuses=("cancelled",)) == []


def test_scheduled_orders_by_the_instant_not_the_text(state: State) -> None:
    """09:00 in Kolkata (03:30 UTC) is before 09:00 in London, which is before 09:00 in New
    York: ordered as text, "+00:00" came first and "+05:30" second."""
    put(state, A, 2, Status.SCHEDULED, message_id="SM2", schedule_at="2090-12-04T09:00:00+00:00")
    put(state, B, 3, Status.SCHEDULED, message_id="SM3", schedule_at="2090-12-04T09:00:00-05:00")
    put(state, C, 4, Status.SCHEDULED, message_id="SM4", schedule_at="2090-12-04T09:00:00+05:30")
    put(state, "+16175550004", 5, Status.SCHEDULED, message_id="SM5", schedule_at="")
    assert [d["row"] for d in state.scheduled()] == [4, 2, 3, 5]


def test_last_run_is_the_newest_run_with_every_column(state: State) -> None:
    assert state.last_run() is None
    first = state.begin_run("send", ["Phone"])
    state.end_run(first, "finished")
    before = now_iso()
    second = state.begin_run("check", None)
    run = state.last_run()
    assert run is not None and before <= run["started_at"] <= now_iso()
    assert (first, second) == (1, 2)
    assert run == {"id": 2, "started_at": run["started_at"], "finished_at": None, "command": "check", "outcome": None}
    state.end_run(second, "stopped")
    done = state.last_run()
    assert done is not None and run["started_at"] <= done["finished_at"] <= now_iso()
    assert done == {
        "id": 2,
        "started_at": run["started_at"],
        "finished_at": done["finished_at"],
        "command": "check",
        "outcome": "stopped",
    }


def test_journal_counts_and_message_ids_cover_every_line(state: State) -> None:
    assert state.journal_counts() == {}
    assert state.message_ids() == set()
    put(state, A, 2, Status.SENT, message_id="SM1")
    put(state, B, 3, Status.SCHEDULED, message_id="SM2")
    put(state, C, 4, Status.SENDING)
    put(state, "+16175550004", 5, Status.SENT, message_id="SM3")
    put(state, "+16175550005", 6, Status.UNKNOWN)
    assert state.journal_counts() == {"sent": 2, "scheduled": 1, "sending": 1, "unknown": 1}
    assert state.message_ids() == {"SM1", "SM2", "SM3"}


def test_occurrences_and_keys_read_per_number(state: State) -> None:
    """allow_duplicates: each number's recipients in order of n (10 after 9), with the hash of
    what each sent (sent_hash once done, else the planned payload_hash); and the keys this
    run's rows went to so far."""
    for n, status in ((10, Status.PENDING), (1, Status.SENT), (9, Status.UNKNOWN), (2, Status.FAILED)):
        put(state, f"{A}#{n}", n + 1, status, phone=A, payload_hash=f"p{n}", sent_hash=f"s{n}")
    put(state, f"{B}#1", 20, Status.SCHEDULED, phone=B, payload_hash="pB", sent_hash="sB")
    assert state.occurrences([A, B, A, C]) == {
        A: [
            (f"{A}#1", "sent", "s1"),
            (f"{A}#2", "failed", "p2"),
            (f"{A}#9", "unknown", "p9"),
            (f"{A}#10", "pending", "p10"),
        ],
        B: [(f"{B}#1", "scheduled", "sB")],
    }
    assert state.occurrences([]) == {}
    state.begin_run("send", ["Phone"])
    with state.transaction():  # an earlier run's read: not this run's
        state.add_rows([RowRecord(2, "[]", f"{C}#1", C)])
    state.begin_run("send", ["Phone"])
    with state.transaction():
        state.add_rows(
            [
                RowRecord(2, "[]", f"{A}#2", A),
                RowRecord(3, "[]", f"{A}#1", A),
                RowRecord(4, "[]", None, A, Status.INVALID, "template error"),
                RowRecord(5, "[]", f"{B}#1", B),
            ]
        )
    assert state.keys_read([A, C]) == {f"{A}#1", f"{A}#2"}
    assert state.keys_read([B]) == {f"{B}#1"}
    assert state.keys_read([C]) == set()


def test_occurrence_number() -> None:
    assert [occurrence_number(k) for k in (f"{A}#1", f"{A}#12", A, f"{A}#", "x#y")] == [1, 12, 0, 0, 0]


def test_first_rows_and_known_say_what_this_run_and_the_journal_hold(state: State) -> None:
    state.begin_run("send", ["Phone"])
    with state.transaction():
        state.add_rows(
            [
                RowRecord(3, "[]", A, A),
                RowRecord(2, "[]", B, B, Status.SKIPPED, "suppressed"),
                RowRecord(5, "[]", A, A),
                RowRecord(6, "[]", B, B),
            ]
        )
    put(state, A, 3, Status.UNKNOWN, payload_hash="hA", reconciled="uncovered")
    put(state, B, 6, Status.SENT, payload_hash="hB")
    assert state.first_rows([A, B, C]) == {A: 3, B: 6}
    assert state.known([A, B, C]) == {
        A: Known(Status.UNKNOWN, "hA", "uncovered"),
        B: Known(Status.SENT, "hB", ""),
    }
    many = [f"+1617556{i:04d}" for i in range(1203)]  # over the 500-value slices
    with state.transaction():
        state.add_recipients([(k, k, i + 10, "h", "m") for i, k in enumerate(many)])
    assert len(state.known(many)) == 1203


# --- writing ------------------------------------------------------------------------------------


def test_set_status_writes_exactly_the_rows_given_and_frees_a_lease_only_for_pending(state: State) -> None:
    for key, row in ((A, 2), (B, 3), (C, 4)):
        put(state, key, row, Status.UNKNOWN, error="lost", lease_owner="w1")
    before = now_iso()
    state.set_status([A, B], Status.PENDING)
    cols = "status, error, lease_owner, updated_at"
    assert lines(state, cols, before) == {
        A: ("pending", "", "", NOW),
        B: ("pending", "", "", NOW),
        C: ("unknown", "lost", "w1", T0),
    }
    state.set_status(iter([C]), Status.FAILED, "gave up after 3 attempts")
    assert lines(state, cols, before)[C] == ("failed", "gave up after 3 attempts", "w1", NOW)
    state.set_status([], Status.SENT)
    assert state.journal_counts() == {"pending": 2, "failed": 1}


def test_set_cancel_commits_one_line_and_leaves_the_others(state: State, tmp_path: Path) -> None:
    put(state, A, 2, Status.SCHEDULED, message_id="SM1", error="old")
    put(state, B, 3, Status.SCHEDULED, message_id="SM2")
    before = now_iso()
    state.set_cancel(A, Status.CANCELLING)
    other = State(tmp_path / "c.state.sqlite")  # another connection sees it committed
    try:
        cols = "status, error, message_id, updated_at"
        assert lines(other, cols, before) == {A: ("cancelling", "", "SM1", NOW), B: ("scheduled", "", "SM2", T0)}
        state.set_cancel(A, Status.SCHEDULED, "the API still lists it")
        assert lines(other, cols, before)[A] == ("scheduled", "the API still lists it", "SM1", NOW)
    finally:
        other.close()


def test_mark_found_writes_status_id_and_verdict_and_keeps_the_http_status(state: State) -> None:
    for key, row in ((A, 2), (B, 3), (C, 4)):
        put(
            state,
            key,
            row,
            Status.UNKNOWN,
            payload_hash=f"h{row}",
            error="lost",
            http_status=500,
            reconciled="uncovered",
            updated_at=T2,
        )
    state.mark_found([(A, "SM1", Status.SENT), (B, "SM2", Status.SCHEDULED)])
    cols = "status, message_id, error, sent_hash, reconciled, http_status, updated_at"
    assert lines(state, cols) == {
        A: ("sent", "SM1", "found by reconcile", "h2", "found", 500, T2),
        B: ("scheduled", "SM2", "found by reconcile", "h3", "found", 500, T2),
        C: ("unknown", "", "lost", "", "uncovered", 500, T2),
    }


def test_mark_unresolved_touches_only_unknown_lines_given(state: State) -> None:
    put(state, A, 2, Status.UNKNOWN, error="lost")
    put(state, B, 3, Status.SENT, message_id="SM2")
    put(state, C, 4, Status.UNKNOWN, error="lost")
    state.mark_unresolved(
        [(A, "ambiguous", "the API lists 2 messages that could be this row's"), (B, "uncovered", "no listing")]
    )
    assert lines(state, "status, reconciled, error, updated_at") == {
        A: ("unknown", "ambiguous", "the API lists 2 messages that could be this row's", T0),
        B: ("sent", "", "", T0),
        C: ("unknown", "", "lost", T0),
    }


def test_write_and_recover_leave_marks_outcomes_and_unknowns(state: State) -> None:
    put(state, A, 2)
    put(state, B, 3)
    put(state, C, 4, Status.UNKNOWN, reconciled="ambiguous")
    before = now_iso()
    assert state.write([], [(A, "hA", "Hi A", '{"text":"Hi A"}', ""), (B, "hB", "Hi B", "{}", "2090-01-01")]) == set()
    cols = "status, payload_hash, message, content, schedule_at, reconciled, updated_at"
    assert lines(state, cols, before) == {
        A: ("sending", "hA", "Hi A", '{"text":"Hi A"}', "", "", NOW),
        B: ("sending", "hB", "Hi B", "{}", "2090-01-01", "", NOW),
        C: ("unknown", "h", "m", "", "", "ambiguous", T0),
    }
    state.write([Outcome(A, Status.SENT, "SM1", "", 200, 1), Outcome(C, Status.UNKNOWN, "", "lost again", None, 2)], [])
    assert lines(state, "status, message_id, error, http_status, attempts, sent_hash, reconciled") == {
        A: ("sent", "SM1", "", 200, 1, "hA", ""),
        B: ("sending", "", "", None, 0, "", ""),
        C: ("unknown", "", "lost again", None, 2, "", ""),
    }
    assert state.recover() == 1
    assert lines(state, "status, error")[B] == (
        "unknown",
        "the run stopped while this request was in flight; it may have been delivered",
    )


# --- scratch copies -----------------------------------------------------------------------------


def test_an_empty_scratch_is_an_unsynced_temporary_file_deleted_on_close() -> None:
    copy = State.scratch()
    path = copy.scratch_path
    assert path is not None
    try:
        assert path.parent == Path(tempfile.gettempdir())
        assert path.name.startswith("campaign-scratch-") and path.suffix == ".sqlite"
        assert copy.path == str(path) and path.exists()
        assert copy.db.user_version() == SCHEMA_VERSION
        assert copy.db.execute("PRAGMA synchronous").fetchone()[0] == 0  # OFF
        assert dump(copy) == {t: [] for t in _TABLES}
        copy.claim(Path("elsewhere.toml"), Identity("https://other", "twlo", "k"), record=True)  # never refused
        assert copy.identity() is None  # nor recorded
    finally:
        copy.close()
    assert [p for p in path.parent.glob(f"{path.name}*")] == []


def test_a_scratch_copy_of_a_file_has_every_table_and_so_has_a_copy_of_it(state: State, tmp_path: Path) -> None:
    fill(state)
    state.db.execute(
        "INSERT INTO workers (id, host, pid, started_at, heartbeat_ms, state) VALUES ('w1', 'h', 1, ?, 5, 'idle')",
        (T0,),
    )
    whole = (*_TABLES, "workers")
    original = dump(state, whole)
    assert all(original[t] for t in whole)
    copy = State.scratch(state)
    try:
        assert dump(copy, whole) == original
        again = State.scratch(copy)
        try:
            assert dump(again, whole) == original
            assert again.scratch_path not in (None, copy.scratch_path)
        finally:
            again.close()
        copy.set_status([A], Status.FAILED)  # the copy is its own: the file is untouched
        assert dump(state, whole) == original
    finally:
        copy.close()
    assert dump(State(tmp_path / "c.state.sqlite"), whole) == original


def test_copy_into_replaces_every_table_of_the_copy_in_chunks(state: State) -> None:
    fill(state, rows=5003)  # over one 5000-row chunk
    copy = State.scratch()
    try:
        copy.set_meta("stale", "x")
        put(copy, C, 9, Status.FAILED)
        state._copy_into(copy)
        assert dump(copy) == dump(state)
        assert len(dump(copy)["rows"]) == 5004
    finally:
        copy.close()


@pytest.mark.backend("postgresql")
def test_a_scratch_copy_of_a_postgresql_state_is_sqlite_with_every_table(state_backend: str) -> None:
    source = State.postgres(os.environ["CAMPAIGN_STATE_URL"], "camp")
    try:
        fill(source)
        copy = State.scratch(source)
        try:
            assert (source.db_dialect(), copy.db_dialect()) == ("postgresql", "sqlite")
            assert dump(copy) == dump(source)
            assert all(dump(copy).values())
        finally:
            copy.close()
    finally:
        source.close()


# --- whose state this is ------------------------------------------------------------------------


def test_identity_describe_is_one_exact_phrase() -> None:
    assert Identity("sandbox", "twlo", "twlo_16175550000").describe() == (
        "the built-in sandbox (--sandbox), twlo channel twlo_16175550000"
    )
    assert Identity("https://api.example.com/v1", "gswa", "gswa_1").describe() == (
        "https://api.example.com/v1, gswa channel gswa_1"
    )


def test_identity_is_read_only_when_all_three_are_recorded(state: State) -> None:
    assert state.identity() is None
    state.set_meta("api_url", "https://api.example.com")
    state.set_meta("provider", "twlo")
    assert state.identity() is None
    state.set_meta("channel_key", "twlo_1")
    assert state.identity() == Identity("https://api.example.com", "twlo", "twlo_1")


def test_claim_records_the_campaign_file_and_identity_and_refuses_another(state: State, tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    campaign_file = folder / "spring.toml"
    campaign_file.write_text("", encoding="utf-8")
    first = Identity("https://api.example.com", "twlo", "twlo_1")
    state.claim(campaign_file, first, record=False)
    assert (state.identity(), state.meta("campaign_file")) == (None, None)
    state.claim(campaign_file, first, record=True)
    assert (state.identity(), state.meta("campaign_file")) == (first, "campaigns/spring.toml")
    second = Identity("sandbox", "twlowa", "twlowa_2")
    put(state, A, 2)  # nothing reached the API yet: the API and channel may change
    state.claim(campaign_file, second, record=True)
    assert state.identity() == second
    state.set_status([A], Status.SENT)
    with pytest.raises(StateError) as refused:
        state.claim(campaign_file, first, record=True)
    assert str(refused.value) == (
        f"{state.path}: this campaign was sent through the built-in sandbox (--sandbox), twlowa channel "
        "twlowa_2; this run would send through https://api.example.com, twlo channel twlo_1. A state file "
        "records one API and channel, so its rows' statuses say nothing about the other one: give the "
        "campaign its own name or [output] state for it, or set api_url, provider and channel_key back. "
        "Nothing was sent."
    )
    state.claim(campaign_file, second, record=True)  # the same one goes on
    copy = folder / "copy.toml"
    copy.write_text("", encoding="utf-8")
    with pytest.raises(StateError) as other_file:
        state.claim(copy, second, record=True)
    assert str(other_file.value) == (
        f"{copy} would continue the campaign of {tmp_path / 'campaigns/spring.toml'}: both use the state file "
        f'{state.path}. Give this campaign file its own name (name = "...") or [output] state so that it '
        "starts afresh; nothing was sent."
    )
    campaign_file.unlink()  # renamed away: the current file takes over
    state.claim(copy, second, record=True)
    assert state.meta("campaign_file") == "campaigns/copy.toml"


# --- a state that cannot be used ----------------------------------------------------------------


def test_a_corrupt_state_file_is_one_sentence_naming_it_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "c.state.sqlite"
    path.write_bytes(b"this is not a SQLite database, " * 100)
    with pytest.raises(StateError) as err:
        State(path)
    assert str(err.value) == (
        f"{path}: the state file cannot be used (file is not a database). Move it aside to start the "
        "campaign afresh, which would resend every row."
    )
    with pytest.raises(StateError) as folder:
        State(tmp_path)  # a folder: SQLite cannot even open it
    assert str(folder.value) == (
        f"{tmp_path}: the state file cannot be used (unable to open database file). Move it aside to start "
        "the campaign afresh, which would resend every row."
    )


def test_a_state_file_from_a_newer_campaign_says_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "c.state.sqlite"
    State(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError) as err:
        State(path)
    assert str(err.value) == (
        f"{path}: the state file was written by a newer campaign (schema {SCHEMA_VERSION + 1}); "
        "upgrade campaign to continue this campaign."
    )


def test_db_dialect_is_sqlite_before_a_database_is_open() -> None:
    assert State.__new__(State).db_dialect() == "sqlite"


@pytest.mark.backend("sqlite", "postgresql")
def test_db_dialect_and_shared_name_the_engine(state_backend: str, tmp_path: Path) -> None:
    if state_backend == "postgresql":
        opened = State.postgres(os.environ["CAMPAIGN_STATE_URL"], "camp")
    else:
        opened = State(tmp_path / "c.state.sqlite")
    try:
        assert (opened.db_dialect(), opened.shared) == (state_backend, state_backend == "postgresql")
    finally:
        opened.close()


@pytest.mark.backend("postgresql")
def test_an_unusable_postgresql_state_names_the_schema_and_the_servers_reason(state_backend: str) -> None:
    url = os.environ["CAMPAIGN_STATE_URL"]
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:  # a schema with a table of another shape
        conn.execute('CREATE SCHEMA "taken"')
        conn.execute('CREATE TABLE "taken".meta (other TEXT)')
    with pytest.raises(StateError) as err:
        State.postgres(url, "taken")
    assert str(err.value) == (
        f'{redact(url)} (schema taken): the campaign\'s state cannot be used (relation "meta" already exists).'
    )
    State.postgres(url, "current").close()
    again = State.postgres(url, "current")  # a current schema opens again as it is
    assert (again.db.user_version(), again.db.tables()) == (
        SCHEMA_VERSION,
        sorted((*_TABLES, "schema_version", "workers")),
    )
    again.close()
    newer = State.postgres(url, "newer")
    with newer.transaction():
        newer.db.set_user_version(SCHEMA_VERSION + 1)
    newer.close()
    with pytest.raises(StateError) as upgrade:
        State.postgres(url, "newer")
    assert str(upgrade.value) == (
        f"{redact(url)} (schema newer): the campaign's state was written by a newer campaign "
        f"(schema {SCHEMA_VERSION + 1}); upgrade campaign to continue this campaign."
    )


# --- re-sorted sheets (issue 10, item 5) --------------------------------------------------------


def read(state: State, rows: list[RowRecord]) -> None:
    state.begin_run("send", ["Phone", "Name"])
    with state.transaction():
        state.add_rows(rows)
    state.finish_read()


def snapshot(state: State) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in state.db.execute("SELECT row, key, status, error FROM rows WHERE run = ? ORDER BY row", (state.run,))
    ]


def test_attribute_gives_a_send_to_the_duplicate_row_whose_message_it_was(state: State) -> None:
    read(
        state,
        [
            RowRecord(2, '["Ann"]', A, A, payload_hash="hAnn"),
            RowRecord(3, '["Bob"]', A, A, Status.SKIPPED, "duplicate of row 2", payload_hash="hBob"),
        ],
    )
    put(state, A, 2, Status.SENT, payload_hash="hAnn", sent_hash="hAnn", message_id="SM1")
    put(state, B, 4, Status.SENT, payload_hash="hB", sent_hash="hB", message_id="SM2")
    # Re-sorted: Bob is now first (row 2, planned) and Ann, whose message was sent, row 3.
    read(
        state,
        [
            RowRecord(2, '["Bob"]', A, A, payload_hash="hBob"),
            RowRecord(3, '["Ann"]', A, A, Status.SKIPPED, "duplicate of row 2", payload_hash="hAnn"),
            RowRecord(4, '["B"]', B, B, payload_hash="hB"),
        ],
    )
    assert state.changed_since_sent() == [2]
    state.attribute()
    assert snapshot(state) == [(2, A, "skipped", "duplicate of row 3"), (3, A, None, ""), (4, B, None, "")]
    assert lines(state, "row, status, message_id") == {A: (3, "sent", "SM1"), B: (4, "sent", "SM2")}
    assert state.changed_since_sent() == []
    state.attribute()  # a second time changes nothing
    assert snapshot(state) == [(2, A, "skipped", "duplicate of row 3"), (3, A, None, ""), (4, B, None, "")]


def test_attribute_leaves_a_changed_message_where_it_was(state: State) -> None:
    read(state, [RowRecord(2, '["Ann"]', A, A, payload_hash="hAnn")])
    put(state, A, 2, Status.SENT, payload_hash="hAnn", sent_hash="hAnn", message_id="SM1")
    read(
        state,
        [
            RowRecord(2, '["Ann"]', A, A, payload_hash="hAnn2"),
            RowRecord(3, '["Bob"]', A, A, Status.SKIPPED, "duplicate of row 2", payload_hash="hBob"),
        ],
    )
    state.attribute()
    assert snapshot(state) == [(2, A, None, ""), (3, A, "skipped", "duplicate of row 2")]
    assert lines(state, "row")[A] == (2,)
    assert state.changed_since_sent() == [2]


def test_attribute_leaves_an_occurrence_whose_message_no_sent_line_has(state: State) -> None:
    a1, a2 = f"{A}#1", f"{A}#2"
    read(
        state,
        [RowRecord(2, '["Ann"]', a1, A, payload_hash="hAnn"), RowRecord(3, '["Bob"]', a2, A, payload_hash="hBob")],
    )
    put(state, a1, 2, Status.SENT, phone=A, payload_hash="hAnn", sent_hash="hAnn", message_id="SM1")
    put(state, a2, 3, Status.FAILED, phone=A, payload_hash="hBob", sent_hash="hBob")  # failed: not a send
    read(
        state,
        [RowRecord(2, '["Bob"]', a1, A, payload_hash="hBob"), RowRecord(3, '["Ann"]', a2, A, payload_hash="hAnn")],
    )
    state.attribute()
    assert snapshot(state) == [(2, a1, None, ""), (3, a2, None, "")]
    assert lines(state, "row") == {a1: (2,), a2: (3,)}


def test_a_resorted_sheet_with_allow_duplicates_never_sends_one_rows_message_twice(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    ann = ("+16175550001", "Ann", "Ann", "A-1", "a@example.com", "Boston")
    bob = ("+16175550001", "Bob", "Bob", "B-2", "b@example.com", "Boston")
    path = make_campaign([ann, bob], recipients="allow_duplicates = true")

    async def main() -> list[str]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options(limit=1))  # Ann's row only
            write_csv(tmp_path / "contacts.csv", [bob, ann])  # re-sorted: Bob first
            await run_on(box, load_campaign(path), options())
            return [str(m.body["text"]) for m in box.accepted]

    assert asyncio.run(main()) == ["Hi Ann, order A-1 is ready.", "Hi Bob, order B-2 is ready."]


# --- more re-sorted sheets: each duplicate's swap is made, whatever comes before it ----------------------------


@pytest.fixture
def engine_state(state_backend: str, tmp_path: Path) -> Iterator[State]:
    """A state on this test's engine: a SQLite file, or a schema in the test's PostgreSQL database."""
    if state_backend == "postgresql":
        opened = State.postgres(os.environ["CAMPAIGN_STATE_URL"], "camp")
    else:
        opened = State(tmp_path / "c.state.sqlite")
    try:
        yield opened
    finally:
        opened.close()


@pytest.mark.backend("sqlite", "postgresql")
def test_attribute_goes_on_after_a_changed_message_to_the_next_duplicate(engine_state: State) -> None:
    state = engine_state
    read(state, [RowRecord(2, '["Ann"]', A, A, payload_hash="hAnn"), RowRecord(3, '["Bo"]', B, B, payload_hash="hBo")])
    put(state, A, 2, Status.SENT, payload_hash="hAnn", sent_hash="hAnn", message_id="SM1")
    put(state, B, 3, Status.SENT, payload_hash="hBo", sent_hash="hBo", message_id="SM2")
    # A's message changed (no row has the sent one); B's rows were re-sorted (Bo's is now row 5).
    read(
        state,
        [
            RowRecord(2, '["Ann"]', A, A, payload_hash="hAnn2"),
            RowRecord(3, '["Bea"]', B, B, payload_hash="hBea"),
            RowRecord(4, '["Cid"]', B, B, Status.SKIPPED, "duplicate of row 3", payload_hash="hCid"),
            RowRecord(5, '["Bo"]', B, B, Status.SKIPPED, "duplicate of row 3", payload_hash="hBo"),
            RowRecord(6, '["Dee"]', B, B, Status.SKIPPED, "suppressed", payload_hash="hDee"),
        ],
    )
    state.attribute()
    assert snapshot(state) == [
        (2, A, None, ""),
        (3, B, "skipped", "duplicate of row 5"),
        (4, B, "skipped", "duplicate of row 5"),
        (5, B, None, ""),
        (6, B, "skipped", "suppressed"),  # suppressed stays what it is
    ]
    assert lines(state, "row") == {A: (2,), B: (5,)}


# --- the snapshot: counts, results, columns ---------------------------------------------------------


def test_counts_and_results_join_the_snapshot_to_the_journal_and_delivery(state: State) -> None:
    state.begin_run("send", ["Phone", "Name"])
    assert state.columns() == ["Phone", "Name"]  # before any complete read: the one being read
    rows = [
        RowRecord(2, '["a", "Ann"]', A, A, message="Hi Ann (row)"),
        RowRecord(3, '["b", "Bo"]', B, B),
        RowRecord(4, '["x", "Bad"]', None, "", Status.INVALID, "not a phone number", "Hi Bad"),
        RowRecord(5, '["c", "Cy"]', C, C),
        RowRecord(6, '["d", "Dee"]', "+16175550004", "+16175550004", message="Hi Dee"),
        RowRecord(7, '["a", "Al"]', A, A, Status.SKIPPED, "duplicate of row 2", "Hi Al"),
        RowRecord(8, '["e", "Eve"]', "+16175550005", "+16175550005"),
    ]
    with state.transaction():
        state.add_rows(rows)
    put(state, A, 2, Status.SENT, message="Hi Ann", message_id="SM1", http_status=200, attempts=1, updated_at=T2)
    put(state, B, 3, Status.SENDING, message="Hi Bo", error="", attempts=0, updated_at=T1)
    put(state, C, 5, Status.CANCELLING, message="Hi Cy", message_id="SM3", error="", http_status=200, attempts=1)
    put(state, "+16175550005", 8, Status.SENT, message="Hi Eve", message_id="SM5", http_status=201, attempts=2)
    with state.transaction():
        state.db.execute(
            "INSERT INTO delivery (message_id, status, error_code, error_message, at_ms)"
            " VALUES ('SM1', 'delivered', '', '', 1767225600000), ('SM5', 'undelivered', '30003', 'Unreachable', NULL)"
        )
    assert state.counts() == {"sent": 2, "unknown": 1, "invalid": 1, "scheduled": 1, "pending": 1, "skipped": 1}
    assert list(state.results()) == [
        (("a", "Ann"), 2, A, "sent", "SM1", "", 200, 1, "Hi Ann", T2, "delivered", "", "2026-01-01T00:00:00+00:00"),
        (("b", "Bo"), 3, B, "unknown", "", "", None, 0, "Hi Bo", T1, "", "", ""),
        (("x", "Bad"), 4, "", "invalid", "", "not a phone number", None, 0, "Hi Bad", "", "", "", ""),
        (("c", "Cy"), 5, C, "scheduled", "SM3", "", 200, 1, "Hi Cy", T0, "", "", ""),
        (("d", "Dee"), 6, "+16175550004", "pending", "", "", None, 0, "Hi Dee", "", "", "", ""),
        (("a", "Al"), 7, A, "skipped", "", "duplicate of row 2", None, 0, "Hi Al", "", "", "", ""),
        (
            ("e", "Eve"), 8, "+16175550005", "sent", "SM5", "", 201, 2, "Hi Eve", T0,
            "undelivered", "30003: Unreachable", "",
        ),
    ]  # fmt: skip
    first = state.run
    state.finish_read()
    # A second read, killed after one row: counts, results and columns stay the first read's.
    state.begin_run("send", ["Phone", "Name", "City"])
    with state.transaction():
        state.add_rows([RowRecord(2, '["a", "Ann", "X"]', A, A)])
    assert state.meta("snapshot_run") == str(first)
    assert state.columns() == ["Phone", "Name"]
    assert state.counts() == {"sent": 2, "unknown": 1, "invalid": 1, "scheduled": 1, "pending": 1, "skipped": 1}
    assert [r[1] for r in state.results()] == [2, 3, 4, 5, 6, 7, 8]
    state.finish_read()
    assert state.columns() == ["Phone", "Name", "City"]
    assert state.counts() == {"sent": 1}
    assert state.db.execute("SELECT DISTINCT run FROM rows").fetchall() == [(state.run,)]


def test_a_first_read_killed_halfway_shows_what_it_read(state: State) -> None:
    assert (state.counts(), list(state.results()), state.columns()) == ({}, [], [])
    state.begin_run("send", ["Phone"])
    with state.transaction():
        state.add_rows([RowRecord(2, '["a"]', A, A), RowRecord(3, '["b"]', B, B)])
    state.begin_run("worker", None)  # a run that reads no file keeps the columns
    assert (state.counts(), state.columns(), state.meta("snapshot_run")) == ({"pending": 2}, ["Phone"], None)


def test_a_state_file_is_wal_and_synchronous_normal_unless_full_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def pragmas(opened: State) -> tuple[Any, ...]:
        try:
            return tuple(
                opened.db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("journal_mode", "synchronous", "busy_timeout")
            )
        finally:
            opened.close()

    monkeypatch.delenv("CAMPAIGN_STATE_SYNC", raising=False)
    assert pragmas(State(tmp_path / "a.sqlite")) == ("wal", 1, 5000)
    assert pragmas(State(":memory:")) == ("memory", 1, 5000)
    monkeypatch.setenv("CAMPAIGN_STATE_SYNC", "full")
    assert pragmas(State(tmp_path / "a.sqlite")) == ("wal", 2, 5000)
    monkeypatch.setenv("CAMPAIGN_STATE_SYNC", "OFF")  # anything else: NORMAL
    assert pragmas(State(tmp_path / "a.sqlite")) == ("wal", 1, 5000)


def test_a_schema_1_file_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    path.write_bytes((Path(__file__).parent / "data" / "state-v1.sqlite").read_bytes())
    opened = State(path)
    try:
        assert opened.db.user_version() == SCHEMA_VERSION
        assert opened.db.tables() == sorted((*_TABLES, "workers"))
        assert [r[1] for r in opened.db.execute("PRAGMA table_info(recipients)")] == [
            *("key", "phone", "row", "status", "message_id", "error", "http_status", "attempts", "payload_hash"),
            *("message", "sent_hash", "created_at", "updated_at", "content", "first_attempt_at", "reconciled"),
            *("schedule_at", "job", "lease_owner", "not_before"),
        ]
    finally:
        opened.close()


def test_add_recipients_writes_pending_lines_and_touch_rows_moves_them(state: State) -> None:
    before = now_iso()
    with state.transaction():
        state.add_recipients([(A, A, 2, "hA", "Hi A"), (f"{B}#1", B, 3, "hB", "Hi B")])
    cols = "phone, row, status, payload_hash, message, message_id, error, attempts, sent_hash, created_at, updated_at"
    got = lines(state, cols, before)
    assert got == {
        A: (A, 2, "pending", "hA", "Hi A", "", "", 0, "", got[A][9], NOW),
        f"{B}#1": (B, 3, "pending", "hB", "Hi B", "", "", 0, "", got[A][9], NOW),
    }
    assert before <= got[A][9] <= now_iso()
    state.touch_rows([(7, A)])
    assert lines(state, "row") == {A: (7,), f"{B}#1": (3,)}


def test_a_state_that_cannot_be_used_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "c.state.sqlite"
    path.write_bytes(b"this is not a SQLite database, " * 100)
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc to list open files")
    with pytest.raises(StateError):
        State(path)
    open_files = {os.path.realpath(fds / fd) for fd in os.listdir(fds)}
    assert str(path.resolve()) not in open_files


def test_an_unreachable_postgresql_server_is_one_sentence_without_the_password() -> None:
    with pytest.raises(StateError) as err:
        State.postgres("postgresql://ann:s3cret@127.0.0.1:1/campaigns?connect_timeout=2", "camp")
    text = str(err.value)
    assert text.startswith("cannot reach the campaign's state in PostgreSQL at postgresql://ann:***@127.0.0.1:1/")
    assert text.endswith("; check state / CAMPAIGN_STATE_URL and that the server is running.")
    assert "s3cret" not in text
    assert 'connection to server at "127.0.0.1", port 1 failed: Connection refused' in text  # libpq's reason


def test_a_read_that_named_no_columns_leaves_none(state: State) -> None:
    state.begin_run("worker", None)
    state.finish_read()
    assert (state.columns(), state.meta("columns"), state.meta("snapshot_run")) == ([], "[]", "1")


def test_a_state_in_memory_claims_nothing(tmp_path: Path) -> None:
    memory = State(":memory:")
    try:
        put(memory, A, 2, Status.SENT)
        memory.set_meta("api_url", "https://api.example.com")
        memory.set_meta("provider", "twlo")
        memory.set_meta("channel_key", "twlo_1")
        memory.set_meta("campaign_file", "gone/elsewhere.toml")
        (tmp_path / "c.toml").write_text("", encoding="utf-8")
        memory.claim(tmp_path / "c.toml", Identity("sandbox", "gswa", "gswa_2"), record=True)  # not refused
        assert (memory.identity(), memory.meta("campaign_file")) == (
            Identity("https://api.example.com", "twlo", "twlo_1"),
            "gone/elsewhere.toml",
        )
    finally:
        memory.close()


@pytest.mark.backend("postgresql")
def test_a_postgresql_campaign_is_its_name_not_its_file(state_backend: str, tmp_path: Path) -> None:
    shared = State.postgres(os.environ["CAMPAIGN_STATE_URL"], "camp")
    try:
        for folder in ("here", "there"):  # every host's copy of the campaign file shares the journal
            (tmp_path / folder).mkdir()
            (tmp_path / folder / "c.toml").write_text("", encoding="utf-8")
            shared.claim(tmp_path / folder / "c.toml", Identity("sandbox", "twlo", "twlo_1"), record=True)
        assert (shared.meta("campaign_file"), shared.identity()) == (None, Identity("sandbox", "twlo", "twlo_1"))
    finally:
        shared.close()


def test_a_workers_write_touches_only_the_rows_it_holds(state: State) -> None:
    d, e, f = "+16175550004", "+16175550005", "+16175550006"
    put(state, A, 2, Status.SENDING, payload_hash="hA", lease_owner="w1")
    put(state, B, 3, Status.SENDING, payload_hash="hB", lease_owner="w2")
    put(state, C, 4, Status.SENDING, payload_hash="hC", lease_owner="w1")
    put(state, d, 5, Status.PENDING, lease_owner="w2")
    put(state, e, 6, Status.PENDING, lease_owner="w1")
    put(state, f, 7, Status.SENDING, lease_owner="w1", reconciled="ambiguous")
    state.db.execute("UPDATE recipients SET reconciled = 'uncovered' WHERE key = ?", (A,))
    before = now_iso()
    refused = state.write(
        [
            Outcome(A, Status.SCHEDULED, "SM1", "", 200, 1),
            Outcome(B, Status.SENT, "SM2", "", 200, 1),  # reaped from w1 and leased by w2: not w1's
            Outcome(C, Status.PENDING, "", "waiting for the window", None, 0, "2090-01-01T09:00:00+00:00"),
            Outcome(f, Status.UNKNOWN, "", "lost", None, 1),  # a new unknown: the old verdict is void
        ],
        [(d, "hD", "Hi D", "{}", ""), (e, "hE", "Hi E", "{}", "")],
        owner="w1",
    )
    assert refused == {d}
    cols = (
        "status, message_id, error, http_status, attempts, sent_hash, not_before, lease_owner, payload_hash, updated_at"
    )
    assert lines(state, cols, before) == {
        A: ("scheduled", "SM1", "", 200, 1, "hA", "", "w1", "hA", NOW),
        B: ("sending", "", "", None, 0, "", "", "w2", "hB", T0),
        C: ("pending", "", "waiting for the window", None, 0, "", "2090-01-01T09:00:00+00:00", "", "hC", NOW),
        d: ("pending", "", "", None, 0, "", "", "w2", "h", T0),
        e: ("sending", "", "", None, 0, "", "", "w1", "hE", NOW),
        f: ("unknown", "", "lost", None, 1, "", "", "w1", "h", NOW),
    }
    assert lines(state, "reconciled") == {A: ("uncovered",), B: ("",), C: ("",), d: ("",), e: ("",), f: ("",)}


def test_a_second_mark_keeps_the_first_attempts_time(state: State) -> None:
    put(state, A, 2)
    state.write([], [(A, "h1", "Hi", "{}", "")])
    state.db.execute("UPDATE recipients SET first_attempt_at = ? WHERE key = ?", (T1, A))
    state.write([Outcome(A, Status.FAILED, "", "HTTP 503", 503, 1)], [])
    state.write([], [(A, "h2", "Hi again", "{}", "")])
    assert lines(state, "status, payload_hash, message, first_attempt_at, attempts, error") == {
        A: ("sending", "h2", "Hi again", T1, 1, "HTTP 503")
    }


def test_now_iso_is_utc_to_the_second() -> None:
    import re

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", now_iso())


def test_a_new_state_has_run_zero_and_is_no_scratch(state: State) -> None:
    assert (state.run, state.scratch_path, state.shared) == (0, None, False)
