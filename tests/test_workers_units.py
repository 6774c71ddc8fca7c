"""campaign.workers in this process (so mutation testing sees it): the planner, a joiner, a
worker's --limit, one the others declared lost, and the sentences each says.

tests/test_workers.py runs workers as processes (the installed package), which no mutant of
this process reaches. Here ``runner.run`` takes the PostgreSQL path (``run_shared``) against an
in-process sandbox over real HTTP, on the test's own database of the session's cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from campaign import runner, store
from campaign.config import Campaign, load_campaign
from campaign.errors import UsageError
from campaign.leases import fingerprint
from campaign.sandbox import Faults, Sandbox, SandboxConfig
from campaign.sender import Job, Journal
from campaign.state import Status
from tests.conftest import KEY, CampaignFactory, contacts, state_of
from tests.test_record import options

pytestmark = pytest.mark.backend("postgresql")


def _on(box: Sandbox, path: Path) -> Campaign:
    return dataclasses.replace(load_campaign(path), api_url=box.url)


def _meta(path: Path, *keys: str) -> list[str | None]:
    state = state_of(path)
    try:
        return [state.meta(k) for k in keys]
    finally:
        state.close()


def _runs(path: Path) -> list[tuple[str, str]]:
    """(command, outcome) of every run of the campaign, oldest first."""
    state = state_of(path)
    try:
        return [tuple(r) for r in state.db.execute("SELECT command, outcome FROM runs ORDER BY id").fetchall()]
    finally:
        state.close()


def test_the_planner_sends_every_row_once_and_marks_its_plan_complete(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(6))

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            campaign = _on(box, path)
            summary = await runner.run(campaign, options())
            assert summary.shared and summary.read_all and summary.stop_reason is None
            assert summary.counts == Counter({"sent": 6}) and summary.rows == 6 and summary.sent_now == 6
            assert Counter(m.to for m in box.accepted) == Counter({c[0]: 1 for c in contacts(6)})
            prints = fingerprint(campaign, (False, False, False, None))
            assert prints and _meta(path, "plan_fingerprint", "plan_inputs", runner.LIMIT_PENDING_META) == [
                prints,
                prints,
                "0",
            ]
            # A --worker with the same files joins the finished plan: it reads nothing, sends nothing.
            again = await runner.run(campaign, options(worker=True))
            assert again.counts == Counter({"sent": 6}) and again.sent_now == 0 and not again.warnings
            assert len(box.accepted) == 6
            assert _runs(path) == [("send", "finished"), ("send --worker", "finished")]
            assert 0 <= summary.elapsed < 60 and 0 <= again.elapsed < 60
            # A host without the spreadsheet joins the finished plan too (it cannot plan one).
            (path.parent / "contacts.csv").unlink()
            elsewhere = await runner.run(campaign, options(worker=True))
            assert elsewhere.sent_now == 0 and not elsewhere.warnings and len(box.accepted) == 6

    asyncio.run(main())


def test_a_limit_leaves_the_plan_open_and_the_next_worker_plans_again(make_campaign: CampaignFactory) -> None:
    """--limit 4 of 10: four sent, six left to a later run, the plan not complete (so the next
    --worker, same files or not, reads the file again and sends the next four)."""
    path = make_campaign(contacts(10))

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            campaign = _on(box, path)
            first = await runner.run(campaign, options(limit=4, worker=True))
            assert first.counts == Counter({"sent": 4, "pending": 6}) and first.limit_pending == 6
            assert _meta(path, "plan_fingerprint", runner.LIMIT_PENDING_META) == ["", "6"]
            second = await runner.run(campaign, options(limit=4, worker=True))
            assert second.counts == Counter({"sent": 8, "pending": 2}) and second.sent_now == 4
            assert _runs(path) == [("send", "finished"), ("send", "finished")]  # planned twice, not joined
            third = await runner.run(campaign, options(worker=True))
            assert third.counts == Counter({"sent": 10}) and third.limit_pending == 0
            assert Counter(m.to for m in box.accepted) == Counter({c[0]: 1 for c in contacts(10)})
            assert _meta(path, runner.LIMIT_PENDING_META) == ["0"]

    asyncio.run(main())


def test_a_joiner_without_the_spreadsheet_and_no_plan_is_one_sentence(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(2))
    (path.parent / "contacts.csv").unlink()
    with pytest.raises(UsageError) as refused:
        asyncio.run(runner.run(load_campaign(path), options(worker=True)))
    assert str(refused.value) == (
        f"{path.parent / 'contacts.csv'} is not on this host and the campaign has not been planned yet: start "
        "campaign send --worker first where the spreadsheet is; workers elsewhere then join it."
    )


def test_a_joiner_whose_own_file_differs_from_the_plan_warns_and_sends_the_plan(
    make_campaign: CampaignFactory,
) -> None:
    """Another run holds the campaign's lock (a planner); this --worker's spreadsheet is not the
    one that planner read: it joins, says so, and sends only what the plan queued."""
    path = make_campaign(contacts(3))

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            campaign = _on(box, path)
            state = state_of(path)
            try:
                state.set_meta("plan_inputs", "another file's fingerprint")
            finally:
                state.close()
            planner = store.lock(campaign)
            planner.__enter__()
            # The "planner" finishes (queues nothing) a moment after the joiner started.
            asyncio.get_running_loop().call_later(0.5, planner.__exit__, None, None, None)
            summary = await runner.run(campaign, options(worker=True))
            assert summary.warnings == [
                "this worker joined the plan another run made; its own contacts.csv (or campaign file) differs "
                "from that run's and was not read. Run campaign send --worker again once that plan is done to send "
                "what it adds."
            ]
            assert summary.sent_now == 0 and box.accepted == []
            assert _runs(path) == [("send --worker", "finished")]

    asyncio.run(main())


def test_a_worker_the_others_declared_lost_stops_at_once(
    make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its next heartbeat finds it lost (another worker reaped it while it was paused): it
    stops with the sentence, sends nothing more, and leaves the rest to the others."""
    monkeypatch.setenv("CAMPAIGN_LEASE_SECONDS", "1")  # a heartbeat every 0.2 s
    path = make_campaign(contacts(40), sending="rate = 0\nconcurrency = 1\nmax_attempts = 3\ntimeout = 5")

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(latency=0.05))) as box:
            campaign = _on(box, path)
            run = asyncio.create_task(runner.run(campaign, options()))
            while len(box.accepted) < 3:
                await asyncio.sleep(0.01)
            state = state_of(path)
            try:
                state.db.execute("UPDATE workers SET state = 'lost' WHERE state = 'running'")
            finally:
                state.close()
            summary = await run
            assert summary.stop_reason == (
                "this worker was silent for over 1 s and the others presumed it dead; its rows went back to them"
            )
            assert 3 <= len(box.accepted) < 40
            assert len({m.to for m in box.accepted}) == len(box.accepted)

    asyncio.run(main())


def test_a_database_that_goes_away_stops_the_worker_and_says_what_became_of_its_rows(
    make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops mid-send (its own cluster, halted): the run ends with the lost-database
    sentence, no counts and no results file, and nothing was sent twice."""
    from bench.pgcluster import Cluster
    from campaign.database import close_pools

    monkeypatch.setenv("CAMPAIGN_LEASE_SECONDS", "2")
    with Cluster.start() as cluster:
        monkeypatch.setenv("CAMPAIGN_STATE_URL", cluster.create_database("gone"))
        path = make_campaign(contacts(60), sending="rate = 0\nconcurrency = 2\nmax_attempts = 3\ntimeout = 5")

        async def main() -> runner.Summary:
            async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(latency=0.05))) as box:
                run = asyncio.create_task(runner.run(_on(box, path), options()))
                while len(box.accepted) < 6:
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(cluster.halt)
                summary = await run
                assert len({m.to for m in box.accepted}) == len(box.accepted) < 60
                return summary

        try:
            summary = asyncio.run(main())
        finally:
            close_pools()
    assert summary.database_lost
    assert summary.stop_reason is not None and summary.stop_reason.startswith("lost the campaign's state database (")
    why = summary.stop_reason.partition("(")[2].partition("); the rows")[0]  # the driver's own words, one line
    assert why == " ".join(why.split()) and "XX" not in why and why != "None" and len(why) > 10
    assert summary.stop_reason.endswith(
        "); the rows in flight stay 'sending' there and become unknown 2 s after this worker's last heartbeat; "
        "nothing else was sent. When the database is back, campaign reconcile finds out about the unknown rows"
    )
    assert summary.results_error == (
        "the results file was not written: the state database cannot be read. Once it is back, "
        f"`campaign status {path.name} --results PATH` writes it"
    )
    assert not (path.parent / "test.results.csv").exists()


def test_a_shared_send_reports_progress_stops_on_ctrl_c_and_writes_results_where_asked(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """What the CLI hands a PostgreSQL send reaches it: each outcome is reported, the stop event
    (Ctrl-C) ends the run as interrupted, and the results go to the path given."""
    path = make_campaign(contacts(30), sending="rate = 0\nconcurrency = 1\nmax_attempts = 3\ntimeout = 5")
    elsewhere = tmp_path / "out" / "mine.csv"
    seen: list[str] = []

    async def main() -> runner.Summary:
        stop = asyncio.Event()

        def progress(summary: runner.Summary, outcome: object) -> None:
            if outcome is not None:
                seen.append(str(getattr(outcome, "status", "")))
                if len(seen) == 3:
                    stop.set()

        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(latency=0.02))) as box:
            summary = await runner.run(
                _on(box, path), options(), results_path=elsewhere, on_progress=progress, stop_event=stop
            )
            assert 3 <= len(box.accepted) < 30
            return summary

    summary = asyncio.run(main())
    assert summary.interrupted and summary.stop_reason is None and summary.shared
    assert seen[:3] == ["sent"] * 3 and summary.sent_now == seen.count("sent")
    assert _runs(path) == [("send", "interrupted")]
    assert elsewhere.exists() and not (tmp_path / "test.results.csv").exists()


def test_a_paced_shared_send_takes_its_slots_from_the_channels_pacer(make_campaign: CampaignFactory) -> None:
    """With a rate, the send's requests are paced by the channel's one pacer in the database
    (campaign.shared_pacer), which records the rate this worker asked for."""
    import os

    from campaign.database import PostgresDatabase
    from campaign.ledger import SCHEMA as LEDGER_SCHEMA

    path = make_campaign(
        contacts(6),
        provider="twlowa",
        message='text = "Hi"',
        sending="rate = 40\nconcurrency = 2\nmax_attempts = 3\ntimeout = 5",
    )

    async def main() -> str:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            summary = await runner.run(_on(box, path), options(expected=6))
            assert summary.counts == Counter({"sent": 6}) and (summary.rate, summary.expected) == (40.0, 6)
            assert summary.warnings == runner.campaign_warnings(load_campaign(path)) and len(summary.warnings) == 1
            return box.url

    url = asyncio.run(main())
    db = PostgresDatabase(os.environ["CAMPAIGN_STATE_URL"], LEDGER_SCHEMA)
    try:
        channel = f"{url} twlowa twlowa_16175550000"
        assert db.execute("SELECT channel, target FROM pacer").fetchall() == [(channel, 40.0)]
        assert db.execute("SELECT channel, rate FROM pacer_users").fetchall() == [(channel, 40.0)]
    finally:
        db.close()


class _Sender:
    """What ``_sleep_toward`` reads of a sender: whether it is stopping."""

    def __init__(self, stopping: bool) -> None:
        self.stopping = stopping


@pytest.mark.parametrize(
    ("ahead", "cap", "stopping", "at_least"),
    [
        (0.3, 30.0, False, 0.25),  # the instant comes first: slept until it, not less
        (60.0, 0.2, False, 0.15),  # the cap (real seconds) ends the sleep long before the instant
        (60.0, 30.0, True, 0.0),  # a stopping sender: no sleep at all
        (-1.0, 30.0, False, 0.0),  # an instant already past: no sleep at all
    ],
    ids=["instant", "capped", "stopping", "past"],
)
def test_sleep_toward_returns_at_the_instant_the_cap_or_a_stop(
    ahead: float, cap: float, stopping: bool, at_least: float
) -> None:
    """``--wait`` sleeps toward the next window in slices of at most ``cap`` seconds, so the
    queue is looked at again soon; it never outlasts a stop. Each case would take 30 s or more
    if a bound were lost; it takes under one (and a sleep never ends early)."""
    from datetime import timedelta

    from campaign import timing
    from campaign.workers import _sleep_toward

    async def main() -> float:
        started = asyncio.get_running_loop().time()
        until = timing.now() + timedelta(seconds=ahead)
        await _sleep_toward(until, _Sender(stopping), cap)  # type: ignore[arg-type]
        return asyncio.get_running_loop().time() - started

    assert at_least <= asyncio.run(main()) < 10.0


def test_a_joiner_with_a_limit_sends_exactly_that_many_of_a_longer_queue(make_campaign: CampaignFactory) -> None:
    """Ten rows queued by a planner that still holds the campaign's lock; a --worker with
    --limit 6 claims them four (its queue) and then two, sends six and leaves: it neither
    sends a seventh nor waits for the planner (a lost bound would send all ten, or hang)."""
    from campaign.leases import Coordinator
    from campaign.prepare import Pipeline, prepared_batches

    path = make_campaign(contacts(10), sending="rate = 0\nconcurrency = 1\nmax_attempts = 3\ntimeout = 5")

    async def main() -> tuple[runner.Summary, list[str]]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            campaign = _on(box, path)
            jobs = []
            async with prepared_batches(Pipeline(campaign), child=False) as batches:
                async for batch in batches:
                    jobs += [p.job for p in batch if p.job is not None]
            state = state_of(path)
            try:
                state.add_recipients([(j.key, j.key, j.row, j.payload_hash, j.message) for j in jobs])
                Coordinator(state, planner=True).queue(jobs)
            finally:
                state.close()
            with store.lock(campaign):  # the planner, still running
                summary = await asyncio.wait_for(runner.run(campaign, options(worker=True, limit=6)), 60)
            return summary, [m.to for m in box.accepted]

    summary, sent = asyncio.run(main())
    assert sent == [c[0] for c in contacts(6)] and summary.sent_now == 6
    state = state_of(path)
    try:
        statuses = dict(state.db.execute("SELECT status, count(*) FROM recipients GROUP BY status").fetchall())
    finally:
        state.close()
    assert statuses == {"sent": 6, "pending": 4}


def test_rows_waiting_for_their_days_are_left_for_a_later_worker(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """On a Wednesday, a campaign that sends on Thursdays: its three rows wait, and the state
    says three rows are left for later (what ``status`` counts), on PostgreSQL as on SQLite."""
    from datetime import UTC, datetime

    from campaign import timing
    from tests.test_timing import campaign_file

    rows = [(f"+1312555{i:04d}", f"c{i}", "") for i in range(3)]
    path = campaign_file(make_campaign, tmp_path, rows, 'days = ["thu"]')

    async def main() -> runner.Summary:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            return await runner.run(_on(box, path), options(limit=5))

    with timing.use_clock(timing.ManualClock(datetime(2026, 12, 2, 3, tzinfo=UTC))):
        summary = asyncio.run(main())
    assert (summary.waiting, summary.limit_pending, summary.sent_now) == (3, 0, 0)
    assert _meta(path, runner.LIMIT_PENDING_META) == ["3"]


def test_a_shared_campaign_is_refused_on_another_api_or_after_sends_from_a_state_file(
    make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PostgreSQL send records and checks whose campaign this is: a second API is refused,
    and so is a campaign whose sends so far are in its state file (every row would go again)."""
    import os

    from campaign.errors import StateError

    shared = make_campaign(contacts(2), name="shared")
    moved = make_campaign(contacts(2), name="moved")
    url = os.environ["CAMPAIGN_STATE_URL"]

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as first, Sandbox(SandboxConfig(api_key=KEY)) as second:
            assert (await runner.run(_on(first, shared), options())).counts == Counter({"sent": 2})
            with pytest.raises(StateError) as other_api:
                await runner.run(_on(second, shared), options())
            assert first.url in str(other_api.value) and second.url in str(other_api.value)
            monkeypatch.delenv("CAMPAIGN_STATE_URL")
            assert (await runner.run(_on(first, moved), options())).counts == Counter({"sent": 2})
            monkeypatch.setenv("CAMPAIGN_STATE_URL", url)
            with pytest.raises(StateError) as from_file:
                await runner.run(_on(first, moved), options())
            assert "holds this campaign's sends so far, but its state is now PostgreSQL" in str(from_file.value)
            assert len(first.accepted) == 4 and second.accepted == []

    asyncio.run(main())


def test_a_worker_never_marks_a_row_another_worker_holds(make_campaign: CampaignFactory) -> None:
    """The write-ahead mark of a worker takes only rows it holds the lease of: a row another
    worker took over (this one's lease expired) is refused, and so never sent twice."""
    keys = [c[0] for c in contacts(3)]
    state = state_of(make_campaign(contacts(3)))
    try:
        with state.transaction():
            state.add_recipients([(k, k, i + 2, "h", "m") for i, k in enumerate(keys)])
            for key, owner in zip(keys, ("me", "other", "me"), strict=True):
                state.db.execute("UPDATE recipients SET lease_owner = ? WHERE key = ?", (owner, key))
        journal = Journal(state, owner="me")

        async def main() -> list[bool]:
            return [await journal.mark(Job(k, i + 2, b"{}", "h", "m", False)) for i, k in enumerate(keys)]

        assert asyncio.run(main()) == [True, False, True]
        assert journal.refused == {keys[1]}
        assert sorted(r["key"] for r in state.by_status(Status.SENDING)) == [keys[0], keys[2]]
    finally:
        state.close()
