"""The worker coordinator in process (campaign.leases): one PostgreSQL state, several
``Coordinator`` objects on it, real rows, exact results.

tests/test_workers.py drives the coordinator through worker processes (the installed package);
these tests call it directly, so a change to campaign/leases.py shows here (bench/mutation.py).
Time is the database's clock for heartbeats (read before and after each call, never slept on)
and a ``ManualClock`` for ``timing.now`` (started_at, not_before). A long lease
(CAMPAIGN_LEASE_SECONDS) keeps every "silent" or "fresh" heartbeat 50 seconds away from its
boundary, so a slow machine cannot move a worker across it.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from campaign import leases, store, timing
from campaign.config import load_campaign
from campaign.leases import Coordinator, decode_job, encode_job, fingerprint, lease_seconds, workers
from campaign.sender import Job
from campaign.state import State
from tests.conftest import CampaignFactory, contacts, state_of

pytestmark = pytest.mark.backend("postgresql")

LEASE = 100_000  # seconds: CAMPAIGN_LEASE_SECONDS in the tests that reap or list workers
MARGIN = 50_000  # ms: how far a heartbeat is from the lease's boundary
START = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)  # the ManualClock's start (with microseconds)


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_signal_sent() -> Iterator[None]:
    """Whether a process is alive is asked with signal 0: a real signal to a worker's pid (this
    process's, for the workers these tests register) would be a bug, here a test failure."""
    got: list[int] = []
    old = signal.signal(signal.SIGHUP, lambda signum, _frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, old)
    assert got == []


@pytest.fixture
def path(make_campaign: CampaignFactory) -> Path:
    return make_campaign(contacts(2))


@pytest.fixture
def state(path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[State]:
    """The PostgreSQL state of a fresh campaign, with a long lease set before any Coordinator."""
    monkeypatch.setenv("CAMPAIGN_LEASE_SECONDS", str(LEASE))
    opened = state_of(path)
    try:
        yield opened
    finally:
        opened.close()


def _db_ms(state: State) -> float:
    """The database's clock (ms since the epoch), as leases reads it."""
    return float(state.db.execute("SELECT extract(epoch FROM clock_timestamp()) * 1000").fetchone()[0])


def _job(key: str, row: int) -> Job:
    return Job(
        key=key, row=row, body=f'{{"to":"{key}"}}'.encode(), payload_hash=f"h{row}", message=f"m{row}", scheduled=False
    )


def _put(
    state: State,
    key: str,
    row: int,
    *,
    status: str = "pending",
    job: str = "",
    lease: str = "",
    not_before: str = "",
    error: str = "",
    reconciled: str = "",
) -> None:
    """A recipient with exactly these columns."""
    state.add_recipients([(key, f"+1617555{row:04d}", row, "h", "m")])
    state.db.execute(
        "UPDATE recipients SET status = ?, job = ?, lease_owner = ?, not_before = ?, error = ?, reconciled = ?"
        " WHERE key = ?",
        (status, job, lease, not_before, error, reconciled, key),
    )


def _recipients(state: State) -> dict[str, tuple[str, str, str, str, str, str]]:
    """key: (status, job, lease_owner, not_before, error, reconciled)."""
    rows = state.db.execute(
        "SELECT key, status, job, lease_owner, not_before, error, reconciled FROM recipients"
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def _worker_row(state: State, wid: str) -> tuple[Any, ...]:
    """(host, pid, started_at, heartbeat_ms, state, planner) of one worker."""
    row = state.db.execute(
        "SELECT host, pid, started_at, heartbeat_ms, state, planner FROM workers WHERE id = ?", (wid,)
    ).fetchone()
    return tuple(row)


def _beat(state: State, wid: str, ms: float) -> None:
    state.db.execute("UPDATE workers SET heartbeat_ms = ? WHERE id = ?", (int(ms), wid))


def _dead_pid() -> int:
    """The pid of a process of this host that has exited (and been waited for)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _advisory_locks(state: State) -> int:
    """Advisory locks this state's own session holds."""
    return int(
        state.db.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchone()[0]
    )


def _machine_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]


# --- pure functions -------------------------------------------------------------------------------


@pytest.mark.backend("sqlite")
def test_lease_seconds_reads_the_environment_with_a_floor_of_one_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAMPAIGN_LEASE_SECONDS", raising=False)
    assert lease_seconds() == 15.0
    monkeypatch.setenv("CAMPAIGN_LEASE_SECONDS", "1.5")
    assert lease_seconds() == 1.5
    monkeypatch.setenv("CAMPAIGN_LEASE_SECONDS", "0.25")
    assert lease_seconds() == 1.0
    monkeypatch.setenv("CAMPAIGN_LEASE_SECONDS", "soon")
    assert lease_seconds() == 15.0


@pytest.mark.backend("sqlite")
def test_a_job_is_encoded_as_compact_json_and_decoded_to_the_same_job() -> None:
    job = Job(
        key="+16175550001",
        row=7,
        body='{"text":"Hé"}'.encode(),
        payload_hash="ph",
        message="msg",
        scheduled=True,
        content='{"text":"Hé"}',
        zones=("America/New_York", "Europe/Paris"),
        note="a note",
        schedule_at="2030-01-01T09:00:00+00:00",
    )
    text = encode_job(job)
    assert text == (
        '{"key":"+16175550001","row":7,"body":"{\\"text\\":\\"H\\u00e9\\"}","payload_hash":"ph",'
        '"message":"msg","scheduled":true,"content":"{\\"text\\":\\"H\\u00e9\\"}",'
        '"zones":["America/New_York","Europe/Paris"],"note":"a note",'
        '"schedule_at":"2030-01-01T09:00:00+00:00"}'
    )
    back = decode_job(text)
    assert back == job
    assert type(back.body) is bytes and type(back.zones) is tuple
    plain = decode_job(encode_job(_job("k", 3)))
    assert plain == _job("k", 3) and plain.zones == () and plain.note == "" and plain.schedule_at == ""


@pytest.mark.backend("sqlite")
def test_fingerprint_is_the_hash_of_the_inputs_and_changes_with_each_of_them(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    (tmp_path / "optouts.csv").write_text("Phone\n+16175550009\n", encoding="utf-8")
    (tmp_path / "message.txt").write_text("Hi {{ first_name }}", encoding="utf-8")
    suppress = 'suppress = ["optouts.csv"]'
    path = make_campaign(contacts(3), message='text_file = "message.txt"', recipients=suppress)
    campaign = load_campaign(path)
    expected = hashlib.sha256(repr((campaign.message, campaign.schedule, ())).encode())
    for file in (path, tmp_path / "contacts.csv", tmp_path / "optouts.csv"):
        expected.update(file.read_bytes())
        expected.update(b"\0")
    first = fingerprint(campaign)
    assert first == expected.hexdigest()
    # What does not change it: the same inputs loaded again, a file touched, another file beside them.
    os.utime(tmp_path / "contacts.csv", (1, 1))
    (tmp_path / "results.csv").write_text("anything", encoding="utf-8")
    assert fingerprint(campaign, ()) == first and fingerprint(load_campaign(path)) == first
    # What does: what the run asked, each file's bytes, the message as loaded from its text_file.
    seen = {first}
    for change in (
        lambda: None,  # the "asked" below
        lambda: (tmp_path / "optouts.csv").write_text("Phone\n+16175550008\n", encoding="utf-8"),
        lambda: (tmp_path / "contacts.csv").write_bytes((tmp_path / "contacts.csv").read_bytes() + b"\n"),
        lambda: make_campaign(message='text_file = "message.txt"', recipients=suppress, extra="# a comment\n"),
        lambda: (tmp_path / "message.txt").write_text("Hello {{ first_name }}", encoding="utf-8"),
    ):
        change()
        now = fingerprint(load_campaign(path), () if len(seen) > 1 else ("retry_failed",))
        assert now is not None and now not in seen
        seen.add(now)
    assert len(seen) == 6
    (tmp_path / "optouts.csv").unlink()
    assert fingerprint(load_campaign(path)) is None  # a suppression file is not on this host
    (tmp_path / "optouts.csv").write_text("Phone\n", encoding="utf-8")
    (tmp_path / "contacts.csv").unlink()
    assert fingerprint(load_campaign(path)) is None  # nor the spreadsheet


@pytest.mark.backend("sqlite")
def test_fingerprint_reads_a_file_larger_than_one_chunk_whole(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(40_000))  # about 2 MB: more than one 1 MiB read
    campaign = load_campaign(path)
    size = (tmp_path / "contacts.csv").stat().st_size
    assert size > 1 << 21
    before = fingerprint(campaign)
    with (tmp_path / "contacts.csv").open("r+b") as handle:
        handle.seek(size - 3)
        handle.write(b"X")  # one byte near the end
    after = fingerprint(campaign)
    assert before is not None and after is not None and before != after


@pytest.mark.backend("sqlite")
def test_the_machine_is_the_boot_id_or_else_a_hash_of_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert leases._machine() == _machine_id()
    assert re.fullmatch(r"[0-9a-f]{12}", leases._machine())

    class Missing:
        def __init__(self, _path: str) -> None:
            pass

        def read_text(self) -> str:
            raise FileNotFoundError("no /proc here")

    monkeypatch.setattr(leases, "Path", Missing)
    assert leases._machine() == hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]


@pytest.mark.backend("sqlite")
def test_alive_is_true_for_a_live_process_and_another_users_and_false_for_a_dead_one() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert leases._alive(child.pid) is True
        with pytest.raises(subprocess.TimeoutExpired):  # only asked, never signalled
            child.wait(timeout=1)
    finally:
        child.kill()
        child.wait()
    assert leases._alive(os.getpid()) is True
    assert leases._alive(_dead_pid()) is False
    assert os.stat("/proc/1").st_uid == 0  # pid 1 is root's
    if os.getuid() == 0:  # as another user (saved uid kept to come back), root's process refuses the signal
        os.setresuid(65534, 65534, 0)
        try:
            alive = leases._alive(1)
        finally:
            os.setresuid(0, 0, 0)
    else:
        alive = leases._alive(1)
    assert alive is True


def test_now_ms_is_the_database_clock_in_milliseconds(state: State) -> None:
    before = _db_ms(state)
    now = leases._now_ms(state.db)
    after = _db_ms(state)
    assert type(now) is float and before <= now <= after


# --- one worker's life ------------------------------------------------------------------------------


def test_a_coordinator_registers_its_row(state: State) -> None:
    with timing.use_clock(timing.ManualClock(START)):
        planner = Coordinator(state, planner=True)
        joiner = Coordinator(state, planner=False)
        before = _db_ms(state)
        planner.register()
        joiner.register()
        after = _db_ms(state)
    machine = _machine_id()
    assert re.fullmatch(rf"{machine}-[0-9a-f]{{12}}", planner.id) and re.fullmatch(
        rf"{machine}-[0-9a-f]{{12}}", joiner.id
    )
    assert planner.id != joiner.id
    assert (planner.host, planner.pid, planner.planner, planner.lease) == (
        socket.gethostname(),
        os.getpid(),
        True,
        LEASE,
    )
    assert joiner.planner is False and planner.db is state.db and planner.state is state
    host, pid, started, beat, wstate, flag = _worker_row(state, planner.id)
    assert (host, pid, started, wstate, flag) == (
        socket.gethostname(),
        os.getpid(),
        "2030-01-02T03:04:05+00:00",
        "running",
        1,
    )
    assert before - 1 <= beat <= after + 1  # BIGINT: rounded to the ms
    assert _worker_row(state, joiner.id)[4:] == ("running", 0)
    assert state.db.execute("SELECT count(*) FROM workers").fetchone()[0] == 2


def test_heartbeat_renews_the_lease_until_the_worker_is_declared_lost(state: State) -> None:
    me, other = Coordinator(state, planner=False), Coordinator(state, planner=False)
    me.register()
    other.register()
    _beat(state, me.id, 1000)
    _beat(state, other.id, 2000)
    before = _db_ms(state)
    assert me.heartbeat() is True
    after = _db_ms(state)
    assert before - 1 <= _worker_row(state, me.id)[3] <= after + 1
    assert _worker_row(state, other.id)[3] == 2000  # only its own row
    _beat(state, me.id, 1000)
    assert other.reap() == 1  # silent since 1970
    assert me.heartbeat() is False
    assert _worker_row(state, me.id)[3:5] == (1000, "lost")  # not renewed
    state.db.execute("UPDATE workers SET state = 'finished' WHERE id = ?", (other.id,))
    assert other.heartbeat() is False


def test_planned_clears_the_planner_flag_of_this_worker_only(state: State) -> None:
    one, two = Coordinator(state, planner=True), Coordinator(state, planner=True)
    one.register()
    two.register()
    one.planned()
    assert one.planner is False and two.planner is True
    assert _worker_row(state, one.id)[5] == 0 and _worker_row(state, two.id)[5] == 1


# --- the queue ------------------------------------------------------------------------------------


def test_queue_puts_planned_rows_in_the_pool_except_those_in_flight_or_held(state: State) -> None:
    me, other = Coordinator(state, planner=True), Coordinator(state, planner=False)
    me.register()
    other.register()
    _put(state, "new", 2)
    _put(state, "failed", 3, status="failed", lease=other.id, not_before="2030-01-01T00:00:00+00:00", job="old")
    _put(state, "sending", 4, status="sending", lease=other.id, job="old")
    _put(state, "held", 5, lease=other.id, job="old")  # pending, leased: another worker has it
    _put(state, "waiting", 6, not_before="2030-01-01T00:00:00+00:00", job="old")
    _put(state, "untouched", 7)
    jobs = [_job("new", 2), _job("failed", 3), _job("sending", 4), _job("held", 5), _job("waiting", 6)]
    me.queue(jobs)
    assert _recipients(state) == {
        "new": ("pending", encode_job(jobs[0]), "", "", "", ""),
        "failed": ("pending", encode_job(jobs[1]), "", "", "", ""),
        "sending": ("sending", "old", other.id, "", "", ""),
        "held": ("pending", "old", other.id, "", "", ""),
        "waiting": ("pending", encode_job(jobs[4]), "", "", "", ""),
        "untouched": ("pending", "", "", "", "", ""),
    }
    me.queue([])  # nothing to queue: nothing changes
    assert _recipients(state)["new"] == ("pending", encode_job(jobs[0]), "", "", "", "")


def test_clear_queue_empties_only_the_free_pending_rows(state: State) -> None:
    me = Coordinator(state, planner=True)
    _put(state, "free", 2, job="j")
    _put(state, "leased", 3, job="j", lease="someone")
    _put(state, "failed", 4, status="failed", job="j")
    _put(state, "sending", 5, status="sending", job="j")
    me.clear_queue()
    assert {k: v[1] for k, v in _recipients(state).items()} == {
        "free": "",
        "leased": "j",
        "failed": "j",
        "sending": "j",
    }


def test_claim_leases_free_rows_whose_time_has_come_in_row_order(state: State) -> None:
    me, other = Coordinator(state, planner=False), Coordinator(state, planner=False)
    clock = timing.ManualClock(START)
    now = START.isoformat()
    later = (START + timedelta(seconds=1)).isoformat()
    # Inserted in reverse row order, so the table's own order is not the spreadsheet's.
    _put(state, "r9", 9, job=encode_job(_job("r9", 9)))
    _put(state, "r8", 8, job=encode_job(_job("r8", 8)), not_before=later)  # its window opens later
    _put(state, "r7", 7, job=encode_job(_job("r7", 7)), not_before=now)  # opens right now
    _put(state, "r6", 6, job=encode_job(_job("r6", 6)), lease=other.id)  # another worker's
    _put(state, "r5", 5, job=encode_job(_job("r5", 5)), status="failed")
    _put(state, "r4", 4)  # not queued (no job)
    _put(state, "r3", 3, job=encode_job(_job("r3", 3)), not_before="2030-01-02T03:04:05+00:00")  # past
    _put(state, "r2", 2, job=encode_job(_job("r2", 2)))
    with timing.use_clock(clock):
        assert me.claim(0) == [] and me.claim(-1) == []
        assert me.claim(2) == [_job("r2", 2), _job("r3", 3)]
        assert other.claim(1) == [_job("r7", 7)]
        assert me.claim(10) == [_job("r9", 9)]
        assert me.claim(10) == []
        clock.advance(timedelta(seconds=1))
        assert other.claim(10) == [_job("r8", 8)]
    owners = {k: v[2] for k, v in _recipients(state).items()}
    assert owners == {
        "r2": me.id,
        "r3": me.id,
        "r4": "",
        "r5": "",
        "r6": other.id,
        "r7": other.id,
        "r8": other.id,
        "r9": me.id,
    }


def test_claim_takes_one_row_and_skips_a_row_another_transaction_has_locked(state: State, path: Path) -> None:
    me = Coordinator(state, planner=False)
    for row in (2, 3, 4):
        _put(state, f"r{row}", row, job=encode_job(_job(f"r{row}", row)))
    assert me.claim(1) == [_job("r2", 2)]
    state.db.execute("UPDATE recipients SET lease_owner = ''")
    rival = state_of(path)  # another connection
    try:
        rival.db.execute("SET lock_timeout = '5s'")
        state.db.execute("SET lock_timeout = '5s'")
        rival.db.begin()
        rival.db.execute("SELECT key FROM recipients WHERE key = 'r2' FOR UPDATE")
        assert me.claim(1) == [_job("r3", 3)]  # r2 is being changed elsewhere: skipped, not waited for
        rival.db.rollback()
    finally:
        rival.close()
    assert me.claim(5) == [_job("r2", 2), _job("r4", 4)]


def test_outstanding_counts_the_rows_not_done_and_the_earliest_window(state: State) -> None:
    me = Coordinator(state, planner=False)
    clock = timing.ManualClock(START)
    now = START.isoformat()
    hour, two, three = (START + timedelta(hours=h) for h in (1, 2, 3))
    with timing.use_clock(clock):
        assert me.outstanding() == (0, "")
        _put(state, "free", 2, job="j")  # counted
        _put(state, "due", 3, job="j", not_before=now)  # counted: its time is now
        _put(state, "later", 4, job="j", not_before=hour.isoformat())  # waiting: the earliest
        _put(state, "leased later", 5, job="j", not_before=two.isoformat(), lease="w")  # a worker holds it: counted
        _put(state, "latest", 6, job="j", not_before=three.isoformat())  # waiting
        _put(state, "sending", 7, status="sending", job="j")  # counted
        _put(state, "sending unqueued", 8, status="sending")
        _put(state, "sent", 9, status="sent", job="j")
        _put(state, "unqueued", 10)
        _put(state, "unqueued later", 11, not_before=(START + timedelta(minutes=1)).isoformat())
        _put(state, "failed later", 12, status="failed", job="j", not_before=(START + timedelta(minutes=2)).isoformat())
        busy, later = me.outstanding()
        assert (busy, later) == (4, hour.isoformat()) and type(busy) is int
        clock.advance(timedelta(hours=1))  # "later" is due now
        assert me.outstanding() == (5, two.isoformat())
        clock.advance(timedelta(hours=5))
        assert me.outstanding() == (6, "")


def test_planner_alive_is_whether_another_session_holds_the_campaigns_lock(state: State, path: Path) -> None:
    me = Coordinator(state, planner=False)
    campaign = load_campaign(path)
    key = store.lock_key(campaign)
    assert me.planner_alive(key) is False
    assert _advisory_locks(state) == 0  # the probe's lock was given back
    with store.lock(campaign):  # another connection: a planner
        assert me.planner_alive(key) is True
        assert me.planner_alive(key) is True
        assert _advisory_locks(state) == 0
        assert me.planner_alive("campaign-lock:another") is False
    with store.lock(campaign):  # the probe never kept the lock: a planner can still take it
        pass
    assert me.planner_alive(key) is False and _advisory_locks(state) == 0


def test_leave_gives_back_pending_claims_and_signs_off(state: State) -> None:
    me, other = Coordinator(state, planner=True), Coordinator(state, planner=True)
    me.register()
    other.register()
    _put(state, "claimed", 2, job="j", lease=me.id)
    _put(state, "sending", 3, status="sending", job="j", lease=me.id)
    _put(state, "unknown", 4, status="unknown", job="j", lease=me.id)
    _put(state, "theirs", 5, job="j", lease=other.id)
    me.leave()
    assert {k: v[2] for k, v in _recipients(state).items()} == {
        "claimed": "",
        "sending": me.id,
        "unknown": me.id,
        "theirs": other.id,
    }
    assert _worker_row(state, me.id)[4:] == ("finished", 0)
    assert _worker_row(state, other.id)[4:] == ("running", 1)


# --- reaping ---------------------------------------------------------------------------------------


def _insert_worker(state: State, wid: str, *, host: str, pid: int, started: str, beat: float, wstate: str) -> None:
    state.db.execute(
        "INSERT INTO workers (id, host, pid, started_at, heartbeat_ms, state, planner) VALUES (?, ?, ?, ?, ?, ?, 0)",
        (wid, host, pid, started, int(beat), wstate),
    )


def test_reap_declares_silent_and_dead_workers_lost_and_frees_their_rows(state: State) -> None:
    lease_ms = LEASE * 1000
    me = Coordinator(state, planner=False)
    silent, fresh, dead, alive = (Coordinator(state, planner=False) for _ in range(4))
    for c in (me, silent, fresh, dead, alive):
        c.register()
    dead_pid = _dead_pid()
    state.db.execute("UPDATE workers SET host = 'box' WHERE id = ?", (silent.id,))  # its pid: this live one
    state.db.execute("UPDATE workers SET pid = ? WHERE id = ?", (dead_pid, dead.id))
    now = _db_ms(state)
    _beat(state, me.id, 0)  # this worker's own row is never its own to reap
    _beat(state, silent.id, now - lease_ms - MARGIN)
    _beat(state, fresh.id, now - lease_ms + MARGIN)
    elsewhere = "0123456789zz-000000000001"  # another machine: a pid there says nothing here
    _insert_worker(state, elsewhere, host="far", pid=dead_pid, started="s", beat=now, wstate="running")
    done = _machine_id() + "-000000000002"
    _insert_worker(state, done, host="box", pid=dead_pid, started="s", beat=0, wstate="finished")
    _put(state, "s-sending", 2, status="sending", job="j", lease=silent.id, error="old", reconciled="sent")
    _put(state, "s-pending", 3, job="j", lease=silent.id)
    _put(state, "s-unknown", 4, status="unknown", job="j", lease=silent.id, error="e")
    _put(state, "s-sent", 5, status="sent", job="j", lease=silent.id)
    _put(state, "d-sending", 6, status="sending", job="j", lease=dead.id)
    _put(state, "d-failed", 7, status="failed", job="j", lease=dead.id)
    _put(state, "f-sending", 8, status="sending", job="j", lease=fresh.id, reconciled="x")
    _put(state, "f-pending", 9, job="j", lease=fresh.id)
    _put(state, "a-pending", 10, job="j", lease=alive.id)
    _put(state, "e-sending", 11, status="sending", job="j", lease=elsewhere)
    _put(state, "x-pending", 12, job="j", lease=done)

    assert me.reap() == 2

    said = "stopped answering while this request was in flight; it may have been delivered"
    assert _recipients(state) == {
        "s-sending": ("unknown", "j", silent.id, "", f"the worker on box (pid {os.getpid()}) {said}", ""),
        "s-pending": ("pending", "j", "", "", "", ""),
        "s-unknown": ("unknown", "j", silent.id, "", "e", ""),
        "s-sent": ("sent", "j", "", "", "", ""),
        "d-sending": ("unknown", "j", dead.id, "", f"the worker on {socket.gethostname()} (pid {dead_pid}) {said}", ""),
        "d-failed": ("failed", "j", "", "", "", ""),
        "f-sending": ("sending", "j", fresh.id, "", "", "x"),
        "f-pending": ("pending", "j", fresh.id, "", "", ""),
        "a-pending": ("pending", "j", alive.id, "", "", ""),
        "e-sending": ("sending", "j", elsewhere, "", "", ""),
        "x-pending": ("pending", "j", done, "", "", ""),
    }
    states = dict(state.db.execute("SELECT id, state FROM workers").fetchall())
    assert states == {
        me.id: "running",
        silent.id: "lost",
        fresh.id: "running",
        dead.id: "lost",
        alive.id: "running",
        elsewhere: "running",
        done: "finished",
    }
    assert me.reap() == 0  # already lost: not again
    assert fresh.reap() == 1  # "me" has been silent since 1970


def test_reap_skips_a_worker_row_another_transaction_holds(state: State, path: Path) -> None:
    me, silent = Coordinator(state, planner=False), Coordinator(state, planner=False)
    me.register()
    silent.register()
    _beat(state, silent.id, 0)
    rival = state_of(path)
    try:
        state.db.execute("SET lock_timeout = '5s'")
        rival.db.begin()
        rival.db.execute("SELECT id FROM workers WHERE id = ? FOR UPDATE", (silent.id,))
        assert me.reap() == 0  # being reaped (or beating) elsewhere: not waited for
        rival.db.rollback()
    finally:
        rival.close()
    assert me.reap() == 1


# --- the listing --------------------------------------------------------------------------------------


@pytest.mark.backend("sqlite")
def test_workers_lists_nothing_for_a_sqlite_state(make_campaign: CampaignFactory) -> None:
    state = state_of(make_campaign(contacts(2)))
    try:
        assert state.db.dialect == "sqlite" and "workers" in state.db.tables()
        assert workers(state) == []
    finally:
        state.close()


def test_workers_lists_every_worker_newest_first_with_its_state(state: State) -> None:
    lease_ms = LEASE * 1000
    clock = timing.ManualClock(START)
    with timing.use_clock(clock):
        planner = Coordinator(state, planner=True)
        planner.register()
        clock.advance(timedelta(seconds=60))
        left, silent = Coordinator(state, planner=True), Coordinator(state, planner=False)
        left.register()
        silent.register()  # the same second as "left": listed by id
        clock.advance(timedelta(seconds=60))
        fresh, dead = Coordinator(state, planner=False), Coordinator(state, planner=False)
        fresh.register()
        dead.register()
    left.leave()
    dead_pid = _dead_pid()
    state.db.execute("UPDATE workers SET pid = ? WHERE id = ?", (dead_pid, dead.id))
    now = _db_ms(state)
    _beat(state, planner.id, now + 10_000)  # a clock a little ahead: never a negative age
    _beat(state, left.id, 0)  # finished long ago: finished, not silent
    _beat(state, silent.id, now - lease_ms - MARGIN)
    _beat(state, fresh.id, now - lease_ms + MARGIN)
    _beat(state, dead.id, now)
    elsewhere = "0123456789zz-000000000001"
    _insert_worker(
        state, elsewhere, host="far", pid=dead_pid, started="2029-12-31T00:00:00+00:00", beat=now, wstate="running"
    )
    lost = _machine_id() + "-000000000002"
    _insert_worker(state, lost, host="box", pid=dead_pid, started="2029-12-30T00:00:00+00:00", beat=0, wstate="lost")
    _put(state, "p1", 2, status="sending", lease=planner.id)
    _put(state, "p2", 3, status="sending", lease=planner.id)
    _put(state, "p3", 4, status="pending", lease=planner.id)
    _put(state, "p4", 5, status="unknown", lease=planner.id)
    _put(state, "s1", 6, status="sending", lease=silent.id)
    _put(state, "free", 7, status="sending")
    beats = dict(state.db.execute("SELECT id, heartbeat_ms FROM workers").fetchall())
    before = _db_ms(state)
    listed = workers(state)
    after = _db_ms(state)
    ages = {w["id"]: w.pop("heartbeat_age") for w in listed}
    host, pid = socket.gethostname(), os.getpid()
    t0, t1, t2 = "2030-01-02T03:04:05+00:00", "2030-01-02T03:05:05+00:00", "2030-01-02T03:06:05+00:00"

    def entry(
        wid: str, started: str, wstate: str, *, planner: bool = False, flying: int = 0, **kw: Any
    ) -> dict[str, Any]:
        return {
            "id": wid,
            "host": kw.get("host", host),
            "pid": kw.get("pid", pid),
            "started_at": started,
            "state": wstate,
            "planner": planner,
            "in_flight": flying,
        }

    assert listed == [
        *sorted([entry(fresh.id, t2, "running"), entry(dead.id, t2, "silent", pid=dead_pid)], key=lambda e: e["id"]),
        *sorted([entry(left.id, t1, "finished"), entry(silent.id, t1, "silent", flying=1)], key=lambda e: e["id"]),
        entry(planner.id, t0, "running", planner=True, flying=2),
        entry(elsewhere, "2029-12-31T00:00:00+00:00", "running", host="far", pid=dead_pid),
        entry(lost, "2029-12-30T00:00:00+00:00", "lost", host="box", pid=dead_pid),
    ]
    assert all(type(w["planner"]) is bool and type(w["pid"]) is int and type(w["in_flight"]) is int for w in listed)
    assert ages[planner.id] == 0.0
    for wid, beat in beats.items():
        if wid != planner.id:
            assert (before - beat) / 1000 <= ages[wid] <= (after - beat) / 1000, wid
