"""When a run must stop, and what it leaves: the sender's stops, exit codes of real processes,
unusable state files, a recipients file that breaks part-way, and what a rerun may resend.

Over real HTTP against the sandbox, with real files and real SQLite; the process tests run
`campaign` as a child process and check its exit code, its stdout and stderr, the results
file and the sandbox's record of requests per number.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import subprocess
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from campaign import runner
from campaign.api import SociocsClient
from campaign.config import Sending, load_campaign
from campaign.errors import ExitCode, InputFileError
from campaign.sandbox import Faults, Sandbox, SandboxConfig, spawn
from campaign.sender import Job, Sender
from campaign.state import SCHEMA_VERSION, State, Status
from tests.conftest import KEY, CampaignFactory, contacts, run_campaign, state_of
from tests.test_faults import per_number
from tests.test_send import results, send


def campaign_process(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`campaign ARGS` as a child process with the test key; wide lines, so sentences stay whole."""
    return run_campaign(*args, cwd=cwd, key=KEY, timeout=120, columns=500)


def sandbox_log(url: str) -> tuple[Counter[str], int]:
    """A sandbox process's POST /message requests per number, and how many it accepted."""
    with urllib.request.urlopen(f"{url}/_sandbox/requests", timeout=10) as response:
        log = json.loads(response.read())
    posts = Counter(r["to"] for r in log["requests"] if r["method"] == "POST" and r["path"] == "/message")
    return posts, int(log["accepted"])


def assert_clean(proc: subprocess.CompletedProcess[str]) -> None:
    """No traceback, no key, no internal error on either stream."""
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream and KEY not in stream and "internal error" not in stream


# --- the sender's stops --------------------------------------------------------------------


def test_too_many_errors_in_a_row_stops_a_real_process_with_exit_3(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    sending = "rate = 0\nconcurrency = 1\nmax_attempts = 3\ntimeout = 5\nmax_consecutive_errors = 3"
    with spawn("--error-500", "1") as url:
        path = make_campaign(contacts(10), api_url=url, sending=sending)
        proc = campaign_process("send", str(path), "--yes", cwd=tmp_path)
        posts, accepted = sandbox_log(url)
    assert proc.returncode == 3, proc.stderr
    assert_clean(proc)
    reason = "3 requests in a row failed (last: Internal server error. Try again later.)"
    assert f"{reason}. Rerun later to continue; nothing sent is sent again." in proc.stderr
    rows = results(tmp_path / "test.results.csv")
    assert Counter(r["status"] for r in rows) == Counter({"unknown": 3, "pending": 7})
    assert posts == Counter({r["phone"]: 1 for r in rows if r["status"] == "unknown"})  # a 500 is never retried
    assert accepted == 0
    assert "3 rows are unknown" in proc.stdout and f"Results: {tmp_path / 'test.results.csv'}" in proc.stdout


def _sender_run(faults: Faults, n: int, **sender_options: float) -> tuple[Sender, Sandbox, dict[str, int]]:
    """Rows 0..n-1 through a Sender of one worker against a sandbox; the journal's counts."""

    async def main() -> tuple[Sender, Sandbox, dict[str, int]]:
        box = Sandbox(SandboxConfig(api_key=KEY, faults=faults))
        url = await box.start()
        state = State(":memory:")
        keys = [f"+1617555{i:04d}" for i in range(n)]
        with state.transaction():
            state.add_recipients([(k, k, i + 2, "h", "m") for i, k in enumerate(keys)])
        try:
            async with SociocsClient(url, KEY, timeout=5, connections=1) as client:
                sender = Sender(client, state, Sending(rate=0, concurrency=1), **sender_options)
                await sender.start()
                for i, key in enumerate(keys):
                    body = {"provider": "twlo", "channel_key": "twlo_16175550000", "to": key, "text": "x"}
                    if not await sender.put(Job(key, i + 2, json.dumps(body).encode(), "h", "m", False)):
                        break
                await asyncio.wait_for(sender.close(), 20)  # a stop that never comes fails here
                return sender, box, state.journal_counts()
        finally:
            state.close()
            await box.close()

    return asyncio.run(main())


def test_429s_that_never_lift_stop_the_run() -> None:
    # One token, refilled once in 1000 s: the first row goes, then every answer is 429 (no
    # Retry-After: backoff, short here, so a second of patience runs out after a few 429s).
    sender, box, journal = _sender_run(Faults(rate_limit=0.001), 5, rate_limit_patience=1.0, backoff_base=0.05)
    assert sender.stop_reason == "the API kept answering 429 (rate limit) for 1 s"
    assert journal == {"sent": 1, "pending": 4}
    statuses = Counter(r.status for r in box.requests)
    assert statuses[200] == 1 and statuses[429] == sender.rate_limited >= 2
    assert set(per_number(box)) <= {"+16175550000", "+16175550001"}  # the rest were never tried


def test_stop_while_a_row_waits_to_retry_sends_it_no_more(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """A 429 pauses the row for Retry-After (1 s); the run is stopped during the pause (as by
    Ctrl-C, once the sandbox has answered the 429): the row stays pending, never sent again."""
    path = make_campaign(contacts(5), sending="rate = 0\nconcurrency = 1\nmax_attempts = 3\ntimeout = 5")

    async def main() -> tuple[runner.Summary, Sandbox]:
        box = Sandbox(SandboxConfig(api_key=KEY, faults=Faults(rate_limit=0.001, retry_after=1)))
        url = await box.start()
        stop = asyncio.Event()

        async def stop_at_the_first_429() -> None:
            while not any(r.status == 429 for r in box.requests):
                await asyncio.sleep(0.005)
            stop.set()

        watcher = asyncio.create_task(stop_at_the_first_429())
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=url)
            summary = await runner.run(campaign, runner.Options(api_key=KEY), stop_event=stop)
            await watcher
            return summary, box
        finally:
            await box.close()

    summary, box = asyncio.run(main())
    assert summary.interrupted and summary.exit_code() is ExitCode.INTERRUPTED
    assert summary.counts == Counter({"sent": 1, "pending": 4})
    assert per_number(box) == Counter({"+16175550000": 1, "+16175550001": 1})
    rows = {r["phone"]: r for r in results(tmp_path / "test.results.csv")}
    # The stop is set when the sandbox has answered the 429; whether the sender had read that
    # answer by then decides if the sentence carries its reason (both are the whole truth).
    assert rows["+16175550001"]["status"] == "pending"
    stopped = "not sent, the run stopped"
    assert rows["+16175550001"]["error"] in (stopped, f"{stopped}: Rate limit reached.")


def test_a_429_pauses_and_slows_the_pool(make_campaign: CampaignFactory) -> None:
    """The sandbox takes 5 a second, the campaign asks for 20. Pausing on each 429 and halving
    the rate keeps 429s a small share of the requests; a pool that neither paused nor slowed
    would keep asking at 20 a second, three of every four answered 429."""
    path = make_campaign(contacts(25), sending="rate = 20\nconcurrency = 4\nmax_attempts = 1\ntimeout = 5")
    summary, box = send(path, faults=Faults(rate_limit=5, retry_after=1, seed=1))
    assert summary.counts == Counter({"sent": 25})
    statuses = Counter(r.status for r in box.requests)
    assert statuses[200] == 25 and statuses[429] == summary.rate_limited >= 1
    assert statuses[429] <= 10, statuses


# --- state files -----------------------------------------------------------------------------


@pytest.mark.backend("sqlite")
def test_corrupt_state_file_is_one_sentence_and_exit_2(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    (tmp_path / "test.state.sqlite").write_bytes(b"this is not a database, just some bytes" * 100)
    with spawn() as url:
        path = make_campaign(contacts(3), api_url=url)
        for command in (["send", str(path), "--yes"], ["status", str(path)]):
            proc = campaign_process(*command, cwd=tmp_path)
            assert proc.returncode == 2, (command, proc.stderr)
            assert_clean(proc)
            assert proc.stdout == ""
            assert "the state file cannot be used (file is not a database). Move it aside" in proc.stderr
        assert sandbox_log(url) == (Counter(), 0)


@pytest.mark.backend("sqlite")
def test_state_file_from_a_newer_version_is_one_sentence_and_exit_2(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    newer = SCHEMA_VERSION + 1
    db = sqlite3.connect(tmp_path / "test.state.sqlite")
    db.execute(f"PRAGMA user_version = {newer}")
    db.close()
    with spawn() as url:
        path = make_campaign(contacts(3), api_url=url)
        proc = campaign_process("send", str(path), "--yes", cwd=tmp_path)
        assert sandbox_log(url) == (Counter(), 0)
    assert proc.returncode == 2, proc.stderr
    assert_clean(proc)
    assert proc.stdout == ""
    assert (
        f"the state file was written by a newer campaign (schema {newer}); "
        "upgrade campaign to continue this campaign." in proc.stderr
    )


@pytest.mark.backend("postgresql")
def test_state_schema_from_a_newer_version_is_one_sentence_and_exit_2(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """The PostgreSQL counterpart: the campaign's schema records a newer version."""
    newer = SCHEMA_VERSION + 1
    with spawn() as url:
        path = make_campaign(contacts(3), api_url=url)
        state = state_of(path)
        with state.transaction():
            state.db.execute("UPDATE schema_version SET version = ?", (newer,))
        state.close()
        for command in (["send", str(path), "--yes"], ["status", str(path)]):
            proc = campaign_process(*command, cwd=tmp_path)
            assert proc.returncode == 2, (command, proc.stderr)
            assert_clean(proc)
            assert proc.stdout == ""
            assert (
                f"(schema test_state): the campaign's state was written by a newer campaign (schema {newer}); "
                "upgrade campaign to continue this campaign." in proc.stderr
            )
            assert len(proc.stderr.strip().splitlines()) == 1
        assert sandbox_log(url) == (Counter(), 0)


@pytest.mark.backend("postgresql")
@pytest.mark.parametrize("where", ["campaign file", "environment"])
def test_postgresql_server_not_running_is_one_sentence_and_exit_2(
    make_campaign: CampaignFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A state URL to a port where no server listens: exit 2 before anything is sent, one
    sentence that names the URL without its password."""
    from tests.test_cli import free_port

    down = f"postgresql://campaign:pw-CANARY-77@127.0.0.1:{free_port()}/campaigns"
    shown = down.replace("pw-CANARY-77", "***")
    monkeypatch.delenv("CAMPAIGN_STATE_URL")
    if where == "environment":
        monkeypatch.setenv("CAMPAIGN_STATE_URL", down)
    with spawn() as url:
        path = make_campaign(contacts(3), api_url=url)
        if where == "campaign file":
            path.write_text(f'state = "{down}"\n' + path.read_text(encoding="utf-8"), encoding="utf-8")
        for command in (["send", str(path), "--yes"], ["status", str(path)], ["reconcile", str(path)]):
            proc = campaign_process(*command, cwd=tmp_path)
            assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
            assert_clean(proc)
            assert "pw-CANARY-77" not in proc.stdout + proc.stderr
            assert f"cannot reach the campaign's state in PostgreSQL at {shown} (" in proc.stderr
            assert "and that the server is running." in proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert sandbox_log(url) == (Counter(), 0)
    assert not list(tmp_path.glob("*.results.csv"))


def test_a_failed_transaction_rolls_back(make_campaign: CampaignFactory) -> None:
    state = state_of(make_campaign(contacts(1)))
    try:
        try:
            with state.transaction():
                state.add_recipients([("+16175550000", "+16175550000", 2, "h", "m")])
                raise RuntimeError("between two writes")
        except RuntimeError:
            pass
        assert state.journal_counts() == {}
        with state.transaction():
            state.add_recipients([("+16175550000", "+16175550000", 2, "h", "m")])
        assert state.journal_counts() == {"pending": 1}
    finally:
        state.close()


# --- the recipients file breaking part-way ----------------------------------------------------


def test_recipients_file_broken_at_open_is_exit_2(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    rows = contacts(300)
    rows[200] = (*rows[200], "one cell too many")
    with spawn() as url:
        path = make_campaign(rows, api_url=url)
        proc = campaign_process("send", str(path), "--yes", cwd=tmp_path)
        posts, _ = sandbox_log(url)
    assert proc.returncode == 2, proc.stderr
    assert_clean(proc)
    assert f"{tmp_path / 'contacts.csv'}: row 202 has 7 cells" in proc.stderr
    assert posts == Counter()


def test_recipients_file_breaking_before_anything_was_sent_is_an_input_error(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """The file breaks after the checks at open, but every row read so far was invalid, so no
    request went out: an input error (exit 2), not a stopped run."""
    path = make_campaign([("12345", *row[1:]) for row in contacts(2100)])

    def break_the_file(summary: runner.Summary, outcome: object) -> None:
        if summary.rows and not broken:
            broken.append(True)
            with (tmp_path / "contacts.csv").open("a", encoding="utf-8") as handle:
                handle.write("+16179990000,Late,L,A-1,l@example.com,Boston,one cell too many\n")

    broken: list[bool] = []

    async def main() -> Sandbox:
        box = Sandbox(SandboxConfig(api_key=KEY))
        url = await box.start()
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=url)
            options = runner.Options(api_key=KEY, prepare_in_child=False)  # reads a chunk only when asked
            with pytest.raises(InputFileError) as caught:
                await runner.run(campaign, options, on_progress=break_the_file)
            assert str(caught.value).startswith(f"{tmp_path / 'contacts.csv'}: row 2102 has 7 cells")
            assert caught.value.exit_code is ExitCode.INPUT
            return box
        finally:
            await box.close()

    box = asyncio.run(main())
    assert broken and box.requests == []
    state = state_of(path)
    try:  # what `campaign status` shows as the last run
        assert (state.last_run()["command"], state.last_run()["outcome"]) == ("send", "stopped")
    finally:
        state.close()


# SQLite only: a PostgreSQL campaign's planner reads the file into the shared queue ahead of the
# requests (campaign.workers), so whether it reads a line appended once sending began is a race.
@pytest.mark.backend("sqlite")
@pytest.mark.parametrize("child", [True, False], ids=["child", "inline"])
def test_recipients_file_breaking_after_sending_began_is_exit_3(
    make_campaign: CampaignFactory, tmp_path: Path, child: bool
) -> None:
    """The file passed the checks at open; a broken row is appended once sending began (as
    when another program is still writing it): requests went out, so the run stops (exit 3)."""
    path = make_campaign(contacts(3000), sending="rate = 0\nconcurrency = 4\nmax_attempts = 3\ntimeout = 5")

    async def main() -> tuple[runner.Summary, Sandbox]:
        box = Sandbox(SandboxConfig(api_key=KEY))
        url = await box.start()

        async def break_the_file_once_sending_began() -> None:
            while not box.requests:
                await asyncio.sleep(0.001)
            with (tmp_path / "contacts.csv").open("a", encoding="utf-8") as handle:
                handle.write("+16179990000,Late,L,A-1,l@example.com,Boston,one cell too many\n")

        breaker = asyncio.create_task(break_the_file_once_sending_began())
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=url)
            options = runner.Options(api_key=KEY, prepare_in_child=child)
            return await runner.run(campaign, options), box
        finally:
            breaker.cancel()
            await box.close()

    summary, box = asyncio.run(main())
    assert summary.exit_code() is ExitCode.STOPPED
    assert summary.stop_reason == (
        f"reading the recipients stopped: {tmp_path / 'contacts.csv'}: row 3002 has 7 cells but the header has "
        '6 columns (a "," inside a cell that is not in quotes?)'
    )
    posts = per_number(box)
    assert len(box.accepted) == sum(posts.values()) > 0 and set(posts.values()) == {1}
    assert set(summary.counts) == {"sent", "pending"} and summary.counts["sent"] == len(box.accepted)


# --- what a rerun may send ---------------------------------------------------------------------


def test_resend_unknown_only_with_the_flag(make_campaign: CampaignFactory) -> None:
    """Four unknown rows: the API never took the first two (500) and took the last two (then
    500). Without the flag nothing is sent; with it, the two the API lists become sent without
    a request and the other two are sent once more, once each."""
    rows = contacts(4)
    path = make_campaign(rows, sending="rate = 0\nconcurrency = 1\nmax_attempts = 3\ntimeout = 5")
    numbers = [row[0] for row in rows]

    async def main() -> tuple[list[runner.Summary], list[Counter[str]]]:
        box = Sandbox(SandboxConfig(api_key=KEY, faults=Faults(error_500=1.0)))
        url = await box.start()
        campaign = dataclasses.replace(load_campaign(path), api_url=url)
        summaries, posts = [], []
        try:
            for options, faults in (
                (runner.Options(api_key=KEY, limit=2), None),
                (runner.Options(api_key=KEY), Faults(accept_then_500=1.0)),
                (runner.Options(api_key=KEY), Faults()),
                (runner.Options(api_key=KEY, resend_unknown=True), None),
            ):
                box.config.faults = faults or box.config.faults
                before = per_number(box)
                summaries.append(await runner.run(campaign, options))
                posts.append(per_number(box) - before)
            return summaries, posts
        finally:
            await box.close()

    (_, unknown, held, resent), (_, _, held_posts, resent_posts) = asyncio.run(main())
    assert unknown.counts == Counter({"unknown": 4})
    assert held_posts == Counter() and held.held_unknown == 4
    assert held.counts == Counter({"unknown": 4}) and held.exit_code() is ExitCode.ROWS_NOT_SENT
    assert resent_posts == Counter(numbers[:2])  # the two the API never took, once each
    assert resent.counts == Counter({"sent": 4}) and resent.exit_code() is ExitCode.OK


def test_the_duplicate_key_is_the_normalised_number(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    rows = contacts(2)
    rows[0] = ("(617) 555-0100", *rows[0][1:])
    rows[1] = ("+1 617 555 0100", *rows[1][1:])
    path = make_campaign(rows)
    summary, box = send(path)
    assert summary.counts == Counter({"sent": 1, "skipped": 1})
    assert per_number(box) == Counter({"+16175550100": 1})
    out = results(tmp_path / "test.results.csv")
    assert [(r["status"], r["error"]) for r in out] == [("sent", ""), ("skipped", "duplicate of row 2")]


def test_results_cells_starting_with_cr_or_lf_are_neutralised(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    rows = contacts(2)
    rows[0] = (*rows[0][:5], "\r=cmd|' /C calc'!A0")
    rows[1] = (*rows[1][:5], "\n@SUM(1+1)")
    path = make_campaign(rows)
    summary, _ = send(path)
    assert summary.counts == Counter({"sent": 2})
    out = results(tmp_path / "test.results.csv")
    assert [r["City"] for r in out] == ["'\r=cmd|' /C calc'!A0", "'\n@SUM(1+1)"]
    assert out[0]["status"] == Status.SENT


def test_reconcile_matches_the_number_not_only_the_text(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """Two unknown rows with the same text; the API accepted only the second one's message.
    Reconcile must find that one for the second row, not hand it to the first."""
    rows = contacts(2)
    path = make_campaign(rows, message='text = "Your order is ready."')

    async def main() -> tuple[list[runner.Summary], runner.ReconcileReport, Sandbox]:
        box = Sandbox(SandboxConfig(api_key=KEY, faults=Faults(error_500=1.0)))
        url = await box.start()
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=url)
            first = await runner.run(campaign, runner.Options(api_key=KEY, limit=1))  # row 2: 500, not accepted
            box.config.faults = Faults(accept_then_500=1.0)
            second = await runner.run(campaign, runner.Options(api_key=KEY))  # row 3: accepted, then 500
            return [first, second], await runner.reconcile(campaign, KEY), box
        finally:
            await box.close()

    (first, second), report, box = asyncio.run(main())
    assert first.counts["unknown"] == 1 and second.counts == Counter({"unknown": 2})
    [accepted] = box.accepted
    assert accepted.to == rows[1][0]
    assert (report.checked, report.found, report.pending) == (2, 1, 1)
    out = {r["phone"]: r for r in results(tmp_path / "test.results.csv")}
    assert (out[rows[1][0]]["status"], out[rows[1][0]]["message_id"]) == ("sent", accepted.message_id)
    assert (out[rows[0][0]]["status"], out[rows[0][0]]["message_id"]) == ("pending", "")


def _open_and_close(path: Path) -> str:
    from tests.conftest import state_of

    try:
        state_of(path).close()
    except Exception as err:  # the test reports what failed
        return f"{type(err).__name__}: {err}"
    return "ok"


def test_processes_opening_a_new_state_at_once_migrate_it_once(make_campaign: CampaignFactory) -> None:
    """A send starting while `status` (or a second worker) opens the same new state: each
    creates nothing twice ("table meta already exists" was one process's StateError)."""
    import multiprocessing

    path = make_campaign(contacts(1))
    with multiprocessing.get_context("fork").Pool(6) as pool:
        results = pool.map(_open_and_close, [path] * 12)
    assert set(results) == {"ok"}, results
