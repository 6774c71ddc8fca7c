"""Several workers, one PostgreSQL campaign (issue 15): every row exactly once, leases that
expire, one rate per channel, and a database that goes away.

Real processes (`campaign send --worker`), a real sandbox process, a real PostgreSQL cluster
(tests/conftest.py); each test has its own database (CAMPAIGN_STATE_URL).
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from campaign.config import load_campaign
from campaign.database import PostgresDatabase
from campaign.leases import Coordinator
from campaign.ledger import SCHEMA as LEDGER_SCHEMA
from campaign.sandbox import spawn
from campaign.shared_pacer import SharedPacer
from campaign.state import Outcome, Status
from tests.conftest import KEY, CampaignFactory, contacts, has_state, state_of

pytestmark = pytest.mark.backend("postgresql")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SOCIOCS_API_URL",)}
    env.update(SOCIOCS_API_KEY=KEY, COLUMNS="500", **extra)
    return env


def _worker(path: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "campaign", "send", str(path), "--worker", *flags],
        cwd=path.parent,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`campaign ARGS` to its end, with this process's environment and the test key."""
    return subprocess.run(
        [sys.executable, "-m", "campaign", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=60
    )


def _finish(procs: Sequence[subprocess.Popen[str]], timeout: float = 120) -> list[tuple[int, str, str]]:
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        done.append((proc.returncode, out, err))
    return done


def _log(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_sandbox/requests", timeout=10) as response:
        return dict(json.loads(response.read()))


def _posts(url: str) -> Counter[str]:
    return Counter(r["to"] for r in _log(url)["requests"] if r["method"] == "POST" and r["path"] == "/message")


def _busiest_second(url: str) -> int:
    """The most POST /message requests the sandbox received in any one-second window [t, t + 1)
    (a closed window holds 21 requests sent exactly 50 ms apart)."""
    times = sorted(r["at"] for r in _log(url)["requests"] if r["method"] == "POST")
    return max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


def _span(url: str) -> float:
    """Seconds from the first POST /message the sandbox received to the last."""
    times = [r["at"] for r in _log(url)["requests"] if r["method"] == "POST"]
    return max(times) - min(times)


def _has_flights(state: Any, pid: int) -> bool:
    """Whether the worker with this pid has requests in flight (rows it marked ``sending``)."""
    if "workers" not in state.db.tables():
        return False
    row = state.db.execute(
        "SELECT count(*) FROM recipients r JOIN workers w ON w.id = r.lease_owner WHERE w.pid = ?"
        " AND r.status = 'sending'",
        (pid,),
    ).fetchone()
    return bool(row[0])


def _clean(streams: Sequence[str]) -> None:
    for text in streams:
        assert "Traceback" not in text and KEY not in text and "internal error" not in text


def test_two_workers_send_every_row_exactly_once(make_campaign: CampaignFactory) -> None:
    with spawn("--latency", "0.01") as url:
        path = make_campaign(contacts(150), api_url=url, sending="rate = 0\nconcurrency = 4\ntimeout = 5")
        results = _finish([_worker(path), _worker(path)])
        posts = _posts(url)
    assert [code for code, _, _ in results] == [0, 0], results
    _clean([s for _, out, err in results for s in (out, err)])
    assert len(posts) == 150 and set(posts.values()) == {1}
    shares = [int(out.split("This worker sent ", 1)[1].split(" ", 1)[0]) for _, out, _ in results]
    assert sum(shares) == 150  # each worker's own share, adding up to the campaign
    state = state_of(path)
    try:
        assert state.counts() == {"sent": 150}
        assert state.db.execute("SELECT count(*) FROM workers WHERE state = 'finished'").fetchone()[0] == 2
    finally:
        state.close()


def test_three_workers_keep_the_channel_rate_in_every_second(make_campaign: CampaignFactory) -> None:
    """rate is the channel's: three workers together keep to it. Measured where the requests
    arrive, three processes away: the 90 requests take at least the 4.45 s that 20 a second
    needs (three workers each at the full rate would take a third of it), and no one-second
    window holds more than 20 but for two of arrival jitter on a loaded machine. The exact
    slots (every start 1/rate apart, across workers) are pinned on a virtual clock in
    tests/test_shared_pacer.py."""
    with spawn() as url:
        path = make_campaign(contacts(90), api_url=url, sending="rate = 20\nconcurrency = 4\ntimeout = 5")
        results = _finish([_worker(path) for _ in range(3)])
        busiest, span = _busiest_second(url), _span(url)
        posts = _posts(url)
    assert [code for code, _, _ in results] == [0, 0, 0], results
    assert len(posts) == 90 and set(posts.values()) == {1}
    assert span >= 4.0 and busiest <= 22, (span, busiest)


def test_a_429_seen_by_one_worker_slows_the_channel_for_all(make_campaign: CampaignFactory) -> None:
    """The sandbox allows 10/s; the campaign asks 40/s: the shared rate comes down, every row
    goes exactly once."""
    with spawn("--rate-limit", "10", "--retry-after", "0.5") as url:
        path = make_campaign(contacts(60), api_url=url, sending="rate = 40\nconcurrency = 4\ntimeout = 5")
        results = _finish([_worker(path) for _ in range(2)])
        log = _log(url)
        posts = _posts(url)
    assert [code for code, _, _ in results] == [0, 0], results
    statuses = Counter(r["status"] for r in log["requests"] if r["method"] == "POST")
    assert log["accepted"] == 60 and len(posts) == 60
    # Without a shared pause each worker would go on at 40/s into a 10/s limit: about three
    # 429s per accepted message. Shared, a handful before the channel's rate comes down.
    assert 0 < statuses[429] <= 20
    state = state_of(path)
    try:
        (pause_ms, changed_ms, target) = state.db.execute(
            "SELECT pause_ms, changed_ms, target FROM campaign_ledger.pacer"
        ).fetchone()
    finally:
        state.close()
    assert target == 40 and pause_ms > 0 and changed_ms > 0  # the pause and the slower rate are the channel's


def test_a_killed_worker_leaves_unknown_rows_and_its_claims_to_the_others(make_campaign: CampaignFactory) -> None:
    """SIGKILL one of two workers mid-send: after its lease its in-flight rows are unknown (never
    resent), the rest goes out through the other worker, nothing twice."""
    env = _env(CAMPAIGN_LEASE_SECONDS="2")
    with spawn("--latency", "0.05") as url:
        path = make_campaign(contacts(200), api_url=url, sending="rate = 0\nconcurrency = 4\ntimeout = 5")
        victim = _worker(path, env=env)
        other = _worker(path, env=env)
        watch = state_of(path)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not _has_flights(watch, victim.pid):
                time.sleep(0.02)
        finally:
            watch.close()
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        [(code, out, err)] = _finish([other])
        posts = _posts(url)
        accepted = _log(url)["accepted"]
    _clean([out, err])
    assert set(posts.values()) == {1}  # nothing sent twice
    state = state_of(path)
    try:
        counts = state.counts()
        lost = state.db.execute("SELECT count(*) FROM workers WHERE state = 'lost'").fetchone()[0]
        unknown = state.by_status(Status.UNKNOWN)
    finally:
        state.close()
    assert lost == 1
    assert counts.get("sent", 0) + counts.get("unknown", 0) == 200 and set(counts) <= {"sent", "unknown"}
    assert all("stopped answering" in u["error"] for u in unknown)
    assert len(posts) == accepted == 200 - sum(1 for u in unknown if u["phone"] not in posts)  # none lost
    assert code == 1 if unknown else code == 0


def test_a_worker_whose_lease_was_taken_never_marks_the_row(make_campaign: CampaignFactory) -> None:
    """The fence: worker A claims rows, is presumed dead, B takes them; A's write-ahead mark and
    outcome are refused, so A cannot send them."""
    path = make_campaign(contacts(3))
    state = state_of(path)
    try:
        state.begin_run("send", ["Phone"])
        with state.transaction():
            state.add_recipients([(f"+1617555000{i}", f"+1617555000{i}", i + 2, "h", "m") for i in range(3)])
        a, b = Coordinator(state, planner=False), Coordinator(state, planner=False)
        a.register()
        b.register()
        state.db.execute(
            "UPDATE recipients SET job = ?",
            (
                json.dumps(
                    {
                        "key": "k",
                        "row": 2,
                        "body": "{}",
                        "payload_hash": "h",
                        "message": "m",
                        "scheduled": False,
                        "content": "",
                        "zones": [],
                        "note": "",
                        "schedule_at": "",
                    }
                ),
            ),
        )
        claimed = a.claim(10)
        assert len(claimed) == 3 and b.claim(10) == []  # SKIP LOCKED / leased: B gets none
        state.db.execute("UPDATE workers SET heartbeat_ms = 0 WHERE id = ?", (a.id,))
        assert b.reap() == 1 and not a.heartbeat()  # A is lost, and finds out at its next heartbeat
        assert len(b.claim(10)) == 3
        key = "+16175550000"
        refused = state.write([], [(key, "h", "m", "", "")], owner=a.id)
        assert refused == {key}
        state.write([Outcome(key, Status.SENT, "SMa")], [], owner=a.id)
        assert state.write([], [(key, "h", "m", "", "")], owner=b.id) == set()
        row = state.db.execute("SELECT status, message_id FROM recipients WHERE key = ?", (key,)).fetchone()
        assert tuple(row) == ("sending", "")  # B's mark; A's outcome did not land
    finally:
        state.close()


def _ledger() -> PostgresDatabase:
    return PostgresDatabase(os.environ["CAMPAIGN_STATE_URL"], LEDGER_SCHEMA)


def test_the_shared_pacer_never_hands_two_workers_the_same_second() -> None:
    """Two pacers on one channel (two workers' connections) take slots that never overlap."""
    import asyncio

    one, two = _ledger(), _ledger()
    try:

        async def main() -> list[float]:
            p1 = SharedPacer(one, "ch", 10.0, user="a")
            p2 = SharedPacer(two, "ch", 10.0, user="b")
            loop = asyncio.get_running_loop()
            starts: list[float] = []

            async def take(p: SharedPacer, n: int) -> None:
                for _ in range(n):
                    await p.acquire()
                    starts.append(loop.time())

            await asyncio.gather(take(p1, 8), take(p2, 8))
            return sorted(starts)

        starts = asyncio.run(main())
    finally:
        one.close()
        two.close()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Slots are 1.05 / 10 s apart in the database's time (pinned exactly on a virtual clock in
    # tests/test_shared_pacer.py); each pacer maps them to its loop's time across its own query's
    # round trip, so on a loaded machine two starts may come closer (78 ms seen), never together,
    # and never more than the rate in any second.
    assert len(starts) == 16 and min(gaps) > 0
    assert max(bisect.bisect_right(starts, t + 1.0) - i for i, t in enumerate(starts)) <= 10


def test_a_429_pauses_and_halves_the_channel_for_every_worker_once_a_second() -> None:
    """rate_limited writes the pause and the halved rate in the channel's row (what every
    worker's next fetch reads), halves at most once a second, caps the pause at backoff_cap;
    an answer resets the count of 429s in a row."""
    import asyncio

    one, two = _ledger(), _ledger()

    def row() -> tuple[float, float]:
        """(rate, ms of pause left by the database's clock) of the channel's row, as another
        worker reads it."""
        rate, left = two.execute(
            "SELECT rate, pause_ms - extract(epoch FROM clock_timestamp()) * 1000 FROM pacer WHERE channel = ?",
            ("429 ch",),
        ).fetchone()
        return float(rate), float(left)

    try:

        async def main() -> None:
            p1 = SharedPacer(one, "429 ch", 10.0, user="a")
            loop = asyncio.get_running_loop()
            await p1.acquire()
            assert row()[0] == 10.0
            p1.rate_limited(2.0)
            rate, left = row()
            assert rate == 5.0 and 0 < left <= 2000
            assert p1.limited_in_a_row == 1 and not p1.slots
            assert 0 < p1.pause_until - loop.time() <= 2.0
            p1.rate_limited(3600.0)  # within the same second: not halved again; capped at 60 s
            rate, left = row()
            assert rate == 5.0 and 2000 < left <= 60_000
            assert p1.limited_in_a_row == 2 and 2.0 < p1.pause_until - loop.time() <= 60.0
            p1.rate_limited(None)  # no Retry-After: the third backoff draw (up to 4 s), inside the 60 s pause
            assert p1.limited_in_a_row == 3 and row()[0] == 5.0
            p1.succeeded()
            assert p1.limited_in_a_row == 0

        asyncio.run(main())
    finally:
        one.close()
        two.close()


def test_two_campaigns_on_one_channel_share_its_rate_at_the_lowest_asked() -> None:
    """The pacer is the channel's, not a campaign's: a campaign asking 50/s beside one asking
    5/s on the same channel goes at 5/s while the slower is about."""
    import asyncio

    fast_db, slow_db = _ledger(), _ledger()
    try:

        async def main() -> list[float]:
            slow = SharedPacer(slow_db, "twlo ch", 5.0, user="slow")
            await slow.acquire()  # the slower campaign is on the channel
            fast = SharedPacer(fast_db, "twlo ch", 50.0, user="fast")
            loop = asyncio.get_running_loop()
            starts = []
            for _ in range(6):
                await fast.acquire()
                starts.append(loop.time())
            return starts

        starts = asyncio.run(main())
    finally:
        fast_db.close()
        slow_db.close()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) > 0.19  # 1.05 / 5 s apart (less jitter), not 1.05 / 50


def test_worker_needs_postgresql(make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAMPAIGN_STATE_URL")
    path = make_campaign(contacts(2))
    proc = _worker(path)
    code, out, err = _finish([proc])[0]
    assert code == 2
    assert "--worker shares a campaign between runs through PostgreSQL" in out + err
    _clean([out, err])


def test_a_worker_without_the_spreadsheet_and_no_plan_says_where_to_start(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(2))
    (path.parent / "contacts.csv").unlink()
    code, out, err = _finish([_worker(path)])[0]
    assert code == 2
    assert "is not on this host and the campaign has not been planned yet" in " ".join((out + err).split())
    _clean([out, err])


def test_a_database_that_goes_away_stops_the_worker_with_exit_3(
    make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops mid-send: the worker stops (exit 3, one sentence, no traceback); after the
    server is back, a rerun sends the rest and nothing twice."""
    from bench.pgcluster import Cluster

    cluster = Cluster.start()
    try:
        monkeypatch.setenv("CAMPAIGN_STATE_URL", cluster.create_database("gone"))
        env = _env(CAMPAIGN_LEASE_SECONDS="2")
        with spawn("--latency", "0.05") as url:
            path = make_campaign(contacts(120), api_url=url, sending="rate = 0\nconcurrency = 2\ntimeout = 5")
            proc = _worker(path, env=env)
            deadline = time.monotonic() + 60
            while sum(_posts(url).values()) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            cluster.halt()
            code, out, err = _finish([proc])[0]
            cluster.restart()
            assert code == 3, out + err
            said = " ".join((out + err).split())
            assert "lost the campaign's state database" in said
            assert "before the database went away" in said and "writes it elsewhere" not in said
            _clean([out, err])
            time.sleep(2.5)  # the stopped worker's lease expires
            again = _finish([_worker(path, env=env)])[0]
            posts = _posts(url)
        assert set(posts.values()) == {1}  # nothing sent twice
        assert again[0] in (0, 1), again  # 1 when rows in flight at the loss are unknown
        state = state_of(path)
        try:
            rows = {r[2]: r[3] for r in state.results()}
        finally:
            state.close()
        assert len(rows) == 120 and set(rows.values()) <= {"sent", "unknown"}
        assert all(rows[phone] in ("sent", "unknown") for phone in posts)  # every accepted message is on record
    finally:
        from campaign.database import close_pools

        close_pools()
        cluster.stop()


def test_status_lists_the_workers(make_campaign: CampaignFactory) -> None:
    with spawn() as url:
        path = make_campaign(contacts(5), api_url=url)
        assert [c for c, _, _ in _finish([_worker(path)])] == [0]
    proc = _run("status", str(path), cwd=path.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Workers: 0 running, 1 in all" in proc.stdout
    assert "pid " in proc.stdout and "finished" in proc.stdout and "0 in flight" in proc.stdout
    assert load_campaign(path).state_url  # the test ran against PostgreSQL


def test_a_changed_spreadsheet_is_planned_again_and_an_unchanged_one_joined(make_campaign: CampaignFactory) -> None:
    """--worker with the same files joins the plan without reading them; after rows are added,
    the next --worker plans again and sends only the new rows."""
    with spawn() as url:
        path = make_campaign(contacts(10), api_url=url)
        assert [c for c, _, _ in _finish([_worker(path)])] == [0]
        state = state_of(path)
        try:
            runs = state.db.execute("SELECT count(*) FROM runs WHERE command = 'send'").fetchone()[0]
        finally:
            state.close()
        assert [c for c, _, _ in _finish([_worker(path)])] == [0]
        state = state_of(path)
        try:
            assert state.db.execute("SELECT count(*) FROM runs WHERE command = 'send'").fetchone()[0] == runs
            assert state.last_run()["command"] == "send --worker"  # joined, not re-read; status shows it last
        finally:
            state.close()
        make_campaign(contacts(15), api_url=url)  # five more rows
        code, out, _ = _finish([_worker(path)])[0]
        posts = _posts(url)
    assert code == 0 and "This worker sent 5 of them" in out
    assert len(posts) == 15 and set(posts.values()) == {1}


def test_a_plain_send_while_a_planner_runs_is_refused_naming_it(make_campaign: CampaignFactory) -> None:
    from campaign import store

    path = make_campaign(contacts(2))
    with store.lock(load_campaign(path)):
        proc = _run("send", str(path), "--yes", cwd=path.parent)
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2
    assert f"pid {os.getpid()}" in text
    assert f"to send alongside it instead: `campaign send {path.name} --worker`" in text


def test_short_three_worker_kill_soak() -> None:
    """The soak of bench/workers.py, short: three workers, random SIGKILLs and restarts,
    reconcile at the end: nothing sent twice, nothing lost (its own cluster and sandbox)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.workers",
            "soak",
            "--workers",
            "3",
            "--rows",
            "400",
            "--kills",
            "4",
            "--min-delay",
            "0.2",
            "--max-delay",
            "0.8",
            "--lease",
            "2",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "duplicates at the sandbox: 0" in proc.stdout
    assert "accepted by the sandbox but not 'sent' in the state: 0" in proc.stdout
    assert "rows not sent at the end: 0" in proc.stdout
    assert "kills 4" in proc.stdout


def test_worker_batches_with_limit_continue_the_campaign_each_run(make_campaign: CampaignFactory) -> None:
    """Cron with --worker --limit: each run sends the next batch (a plan that left rows for later
    is never joined as if complete), and nothing twice."""
    with spawn() as url:
        path = make_campaign(contacts(12), api_url=url)
        codes = [c for c, _, _ in _finish([_worker(path, "--limit", "5")])]
        codes += [c for c, _, _ in _finish([_worker(path, "--limit", "5")])]
        codes += [c for c, _, _ in _finish([_worker(path, "--limit", "5")])]
        posts = _posts(url)
    assert codes == [0, 0, 0]  # rows left by --limit are pending on purpose
    assert len(posts) == 12 and set(posts.values()) == {1}


def test_a_joiner_waits_for_a_planner_that_has_queued_nothing_yet(make_campaign: CampaignFactory) -> None:
    """Started together, the worker that did not get the lock must not find an empty queue and
    quit (exit 0, nothing sent): it waits while the campaign's lock is held."""
    from campaign import store

    path = make_campaign(contacts(3))
    with store.lock(load_campaign(path)):  # a planner that has not queued (or registered) yet
        joiner = _worker(path)
        # Until the joiner has registered it may not have tried the lock yet (a slow start on a
        # busy machine): released then, it would plan itself.
        deadline = time.monotonic() + 60
        while not (has_state(path) and _registered(path)):
            assert joiner.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)  # a few of its looks at the empty queue
        assert joiner.poll() is None  # still waiting for the plan
    code, out, err = _finish([joiner])[0]
    assert code in (0, 1), out + err
    _clean([out, err])
    assert "differs from that run's" not in out + err  # no plan's inputs known yet: no false warning


def test_moving_a_campaign_between_engines_refuses_instead_of_sending_everything_again(
    make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    url_of_pg = os.environ["CAMPAIGN_STATE_URL"]
    with spawn() as url:
        monkeypatch.delenv("CAMPAIGN_STATE_URL")
        sqlite_path = make_campaign(contacts(4), api_url=url, name="onfile")
        assert _finish([_worker_plain(sqlite_path)])[0][0] == 0  # sent from a SQLite file
        monkeypatch.setenv("CAMPAIGN_STATE_URL", url_of_pg)
        code, out, err = _finish([_worker(sqlite_path)])[0]
        assert code == 2
        assert "holds this campaign's sends so far, but its state is now PostgreSQL" in " ".join((out + err).split())
        pg_path = make_campaign(contacts(4, start=100), api_url=url, name="onpg")
        assert _finish([_worker(pg_path)])[0][0] == 0  # sent through PostgreSQL
        monkeypatch.delenv("CAMPAIGN_STATE_URL")
        code, out, err = _finish([_worker_plain(pg_path)])[0]
        assert code == 2
        assert "This campaign's state is in PostgreSQL" in " ".join((out + err).split())
        posts = _posts(url)
    assert len(posts) == 8 and set(posts.values()) == {1}  # each row once, whatever the engine


def _registered(path: Path) -> bool:
    """Whether a worker of the campaign has registered in its state."""
    from campaign.leases import workers

    state = state_of(path)
    try:
        return bool(workers(state))
    finally:
        state.close()


def _worker_plain(path: Path) -> subprocess.Popen[str]:
    """A plain `campaign send --yes` (no --worker), with this process's environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "campaign", "send", str(path), "--yes"],
        cwd=path.parent,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_a_postgresql_campaign_never_moves_silently_to_another_database_or_loses_its_status(
    make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch, pg_cluster: Any
) -> None:
    """Sent through one database: a send through another refuses (every row would go again);
    status and reconcile without the URL say where the state is instead of "never sent"."""
    with spawn() as url:
        path = make_campaign(contacts(3), api_url=url, name="moved")
        assert _finish([_worker(path)])[0][0] == 0
        other = pg_cluster.create_database(f"other{os.getpid()}")
        try:
            code, out, err = _finish([_worker(path, env=_env(CAMPAIGN_STATE_URL=other))])[0]
            said = " ".join((out + err).split())
            assert code == 2 and "would use another place" in said and "that knows nothing of it" in said
        finally:
            pg_cluster.drop_database(f"other{os.getpid()}")
        posts = _posts(url)
        monkeypatch.delenv("CAMPAIGN_STATE_URL")
        for command in ("status", "reconcile"):
            proc = _run(command, str(path), cwd=path.parent)
            said = " ".join((proc.stdout + proc.stderr).split())
            assert proc.returncode == 2 and "This campaign's state is in PostgreSQL" in said, said
            assert "has not been sent yet" not in said
    assert len(posts) == 3 and set(posts.values()) == {1}
