"""Issue 10, items 1-5: the record never lies. Real files, real SQLite, the sandbox over HTTP."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from campaign import runner
from campaign.config import Campaign, load_campaign
from campaign.errors import CampaignError, ExitCode, RunStopped, StateError
from campaign.reconcile import _same_content
from campaign.sandbox import Faults, Sandbox, SandboxConfig, spawn
from campaign.state import SCHEMA_VERSION, State, Status
from tests.conftest import KEY, CampaignFactory, contacts, has_state, state_of, write_csv

TEMPLATE_A = "HX" + "a" * 32
TEMPLATE_B = "HX" + "b" * 32
WHATSAPP = '[message.variables]\n"1" = "{{ first_name }}"\n"2" = "{{ order_id }}"'


def results(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def options(**extra: Any) -> runner.Options:
    return runner.Options(**{"api_key": KEY, "backoff_base": 0.01, **extra})


async def run_on(box: Sandbox, campaign: Campaign, opts: runner.Options) -> runner.Summary:
    """One `campaign send` against a sandbox that keeps its URL (and what it accepted)."""
    return await runner.run(dataclasses.replace(campaign, api_url=box.url), opts)


def listed(box: Sandbox) -> Counter[tuple[str, str]]:
    """What the sandbox accepted, as (number, template id) counts."""
    return Counter((m.to, m.body.get("template", {}).get("id", m.body.get("text"))) for m in box.accepted)


# --- item 1: whose state it is ---------------------------------------------------------------


def test_sandbox_trial_keeps_its_own_files_and_a_real_send_sends_everything(tmp_path: Path) -> None:
    """`--sandbox` then a "real" API (a `campaign sandbox` process via SOCIOCS_API_URL)."""
    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "samples", tmp_path / "samples", ignore=shutil.ignore_patterns("*.sqlite*", "*.csv.*", ".*"))
    shutil.copytree(root / "templates", tmp_path / "templates")
    env = {k: v for k, v in os.environ.items() if k not in ("SOCIOCS_API_KEY", "SOCIOCS_API_URL")}

    def send(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "campaign", "send", "samples/sms.toml", "--yes", *args],
            cwd=tmp_path,
            env={**env, **more},
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    trial = send("--sandbox")
    assert trial.returncode == 1, trial.stderr  # the sample's bad row
    folder = tmp_path / "samples"
    assert has_state(folder / "sms.toml", sandbox=True)
    assert len(results(folder / "order-ready-sms.sandbox.results.csv")) == 24
    assert not has_state(folder / "sms.toml")
    with spawn() as url:
        real = send(SOCIOCS_API_URL=url, SOCIOCS_API_KEY=KEY)
        assert real.returncode == 1, real.stderr
        assert "already sent" not in real.stdout
        rows = results(folder / "order-ready-sms.results.csv")
        assert Counter(r["status"] for r in rows)["sent"] == 21
        again = send("--sandbox")  # the trial's state knows only the sandbox
        assert again.returncode == 1 and "already sent by an earlier run" in again.stdout


def test_a_state_file_refuses_another_api_or_channel(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(3))

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as first, Sandbox(SandboxConfig(api_key=KEY)) as second:
            campaign = load_campaign(path)
            assert (await run_on(first, campaign, options())).counts["sent"] == 3
            with pytest.raises(StateError) as refused:
                await run_on(second, campaign, options())
            text = str(refused.value)
            assert first.url in text and second.url in text and "Nothing was sent" in text
            assert refused.value.exit_code is ExitCode.INPUT
            other = dataclasses.replace(campaign, channel_key="twlo_16175559999")
            with pytest.raises(StateError, match="channel twlo_16175559999"):
                await run_on(first, other, options())
            with pytest.raises(StateError, match="built-in sandbox"):
                await run_on(first, campaign, options(sandbox=True))
            assert len(second.accepted) == 0 and len(first.accepted) == 3

    asyncio.run(main())


@pytest.mark.backend("sqlite")  # in PostgreSQL a campaign is its name: the copy shares it (below)
def test_a_copy_of_the_campaign_file_that_kept_its_name_is_refused(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    path = make_campaign(contacts(3))
    copy = tmp_path / "test-january.toml"
    shutil.copy(path, copy)

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            assert (await run_on(box, load_campaign(path), options())).counts["sent"] == 3
            with pytest.raises(StateError) as refused:
                await run_on(box, load_campaign(copy), options())
            assert str(copy) in str(refused.value) and str(path) in str(refused.value)
            assert "own name" in str(refused.value)
            with pytest.raises(StateError):
                runner.status(load_campaign(copy))
            # The same folder moved elsewhere is the same campaign: nothing is sent again.
            moved = tmp_path.parent / f"{tmp_path.name}-moved"
            shutil.copytree(tmp_path, moved, ignore=shutil.ignore_patterns("test-january.toml"))
            again = await run_on(box, load_campaign(moved / "test.toml"), options())
            assert again.already_done == 3 and len(box.accepted) == 3
            # Renamed (the old file is gone): the new name takes the campaign over.
            path.rename(tmp_path / "test-renamed.toml")
            copy.unlink()
            renamed = await run_on(box, load_campaign(tmp_path / "test-renamed.toml"), options())
            assert renamed.already_done == 3 and len(box.accepted) == 3

    asyncio.run(main())


@pytest.mark.backend("postgresql")
def test_the_same_campaign_in_two_folders_shares_one_postgresql_campaign(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """In PostgreSQL a campaign is its name (and URL): a second folder's (a second host's) copy
    of the campaign file continues the campaign, sending only what the first did not, which is
    how workers share it. A file with another name is another campaign."""
    path = make_campaign(contacts(6))
    other = tmp_path / "host-b"
    other.mkdir()
    shutil.copy(path, other / "test.toml")
    shutil.copy(tmp_path / "contacts.csv", other / "contacts.csv")

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            first = await run_on(box, load_campaign(path), options(limit=4))
            assert first.counts["sent"] == 4
            second = await run_on(box, load_campaign(other / "test.toml"), options())
            assert second.already_done == 4 and second.counts == Counter({"sent": 6})
            third = await run_on(box, load_campaign(path), options())
            assert third.already_done == 6 and third.counts == Counter({"sent": 6})
            assert Counter(m.to for m in box.accepted) == Counter({p[0]: 1 for p in contacts(6)})
            renamed = other / "test-b.toml"
            renamed.write_text((other / "test.toml").read_text().replace('name = "test"', 'name = "test-b"'))
            fresh = await run_on(box, load_campaign(renamed), options())
            assert fresh.already_done == 0 and len(box.accepted) == 12

    asyncio.run(main())
    for folder in (tmp_path, other):
        assert {r["status"] for r in results(folder / "test.results.csv")} == {"sent"}


@pytest.mark.backend("sqlite")
def test_a_state_file_of_the_previous_schema_opens_and_upgrades(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """tests/data/state-v1.sqlite: made by schema 1 (`campaign send test.toml --limit 2` of
    contacts(3), with a dropped connection): row 2 unknown, row 3 sent, row 4 pending."""
    path = make_campaign(contacts(3))
    shutil.copy(Path(__file__).parent / "data" / "state-v1.sqlite", tmp_path / "test.state.sqlite")
    state = State(tmp_path / "test.state.sqlite")
    # 3: delivery reports, 4: each recipient's schedule (issue 13), 5: workers' leases (issue 15)
    assert state.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    assert state.db.execute("SELECT count(*) FROM recipients WHERE job = '' AND lease_owner = ''").fetchone()[0] == 3
    assert state.counts() == {"sent": 1, "unknown": 1, "pending": 1}
    [unknown] = state.by_status(Status.UNKNOWN)
    assert unknown["first_attempt_at"] and unknown["content"] == ""  # falls back to when it was created
    state.close()

    async def main() -> tuple[runner.ReconcileReport, runner.Summary, list[str]]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            campaign = dataclasses.replace(load_campaign(path), api_url=box.url)
            report = await runner.reconcile(campaign, KEY)
            summary = await runner.run(campaign, options())
            return report, summary, [m.to for m in box.accepted]

    report, summary, sent_to = asyncio.run(main())
    assert (report.checked, report.pending) == (1, 1)  # this sandbox never saw it: listed nowhere
    assert sorted(sent_to) == ["+16175550000", "+16175550002"]  # row 3 (sent) is not sent again
    assert summary.counts == Counter({"sent": 3}) and summary.changed_since_sent == 0


@pytest.mark.backend("postgresql")
def test_a_postgresql_state_of_the_previous_schema_opens_and_upgrades(make_campaign: CampaignFactory) -> None:
    """The PostgreSQL counterpart: a campaign's schema made by the schema before this one (one
    row already sent) upgrades when it opens, and the next send sends only the other rows."""
    from campaign import store
    from campaign.database import PostgresDatabase
    from campaign.state import _MIGRATIONS

    path = make_campaign(contacts(3))
    campaign = load_campaign(path)
    older = SCHEMA_VERSION - 1
    db = PostgresDatabase(campaign.state_url, store.schema(campaign))
    try:
        with db.transaction():
            assert db.user_version() == 0  # a new schema (this creates its version table)
            for version in range(1, older + 1):
                db.script(_MIGRATIONS[version])
            db.set_user_version(older)
            db.execute(
                "INSERT INTO recipients (key, phone, row, status, message_id, created_at, updated_at)"
                " VALUES ('+16175550000', '+16175550000', 2, 'sent', 'SMold', 'x', 'x')"
            )
    finally:
        db.close()

    async def main() -> tuple[runner.Summary, list[str]]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            summary = await run_on(box, campaign, options())
            return summary, [m.to for m in box.accepted]

    summary, sent_to = asyncio.run(main())
    assert sorted(sent_to) == ["+16175550001", "+16175550002"]
    assert summary.already_done == 1 and summary.counts == Counter({"sent": 3})
    state = state_of(path)
    try:
        assert state.db.user_version() == SCHEMA_VERSION
    finally:
        state.close()


# --- item 2: reconcile never guesses -----------------------------------------------------------


def test_reconcile_of_two_campaigns_to_the_same_numbers_never_takes_the_others_messages(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    people = contacts(20)
    first = make_campaign(people, provider="twlowa", name="first", message=f'template_id = "{TEMPLATE_A}"\n{WHATSAPP}')
    second = make_campaign(provider="twlowa", name="second", message=f'template_id = "{TEMPLATE_B}"\n{WHATSAPP}')
    faults = Faults(accept_then_500=0.3, drop_after_accept=0.2, error_500=0.2, seed=7)

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=faults)) as box:
            await run_on(box, load_campaign(first), options())
            await run_on(box, load_campaign(second), options())
            state = state_of(second)
            unknown = {u["phone"] for u in state.by_status(Status.UNKNOWN)}
            state.close()
            assert len(unknown) >= 6
            ours = {m.message_id: m.to for m in box.accepted if m.body["template"]["id"] == TEMPLATE_B}
            # Someone else sends the second campaign's exact message to two numbers that the
            # API took but did not answer: two candidates each, so those rows must stay unknown.
            accepted_unknown = sorted(unknown & set(ours.values()))
            assert len(accepted_unknown) >= 3
            twins = accepted_unknown[:2]
            box.config.faults = Faults()
            async with aiohttp.ClientSession(headers={"apikey": KEY}) as session:
                for phone in twins:
                    twin = next(m for m in box.accepted if m.to == phone and m.message_id in ours)
                    async with session.post(f"{box.url}/message", json=twin.body) as response:
                        assert response.status == 200

            report = await runner.reconcile(dataclasses.replace(load_campaign(second), api_url=box.url), KEY)
            state = state_of(second)
            sent = state.db.execute("SELECT phone, message_id, error FROM recipients WHERE status = 'sent'")
            rows = {phone: {"message_id": mid, "error": error} for phone, mid, error in sent}
            for phone, row in rows.items():
                if row["error"] == "found by reconcile":
                    assert ours.get(row["message_id"]) == phone  # its own message, never the first's
            assert report.checked == len(unknown) and report.ambiguous == 2
            found = {p for p, r in rows.items() if r["error"] == "found by reconcile"}
            assert found == set(accepted_unknown[2:])
            left = state.by_status(Status.UNKNOWN)
            assert [u["phone"] for u in left] == twins and all("could be this row's" in u["error"] for u in left)
            pending = {u["phone"] for u in state.by_status(Status.PENDING)}
            assert pending == unknown - set(ours.values())  # the API never took them
            state.close()

            # --resend-unknown never resends what the API lists: only the pending rows go.
            again = await run_on(box, load_campaign(second), options(resend_unknown=True))
            assert again.held_ambiguous == 2 and again.sent_now == len(pending)
            counts = listed(box)
            for phone, *_ in people:
                assert counts[(phone, TEMPLATE_A)] <= 1  # the first campaign, faults on, not rerun
                assert counts[(phone, TEMPLATE_B)] == (2 if phone in twins else 1)

    asyncio.run(main())


def test_reconcile_never_takes_a_message_another_campaign_sent_with_the_same_text(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """Two campaigns (other names, one channel) send the same text to the same numbers at the
    same time; every request of the second gets a 500 the API did not act on. The listing holds
    one message per number with that text, the first campaign's: reconcile of the second must
    not take them (those people never got the second campaign), but leave the rows to be sent."""
    people = contacts(6)
    same = 'text = "Same: hi {{ first_name }}."'
    first = make_campaign(people, name="first", message=same)
    second = make_campaign(name="second", message=same)

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(first), options())
            box.config.faults = Faults(error_500=1.0)
            await run_on(box, load_campaign(second), options())
            theirs = {m.message_id for m in box.accepted}
            assert len(theirs) == 6
            box.config.faults = Faults()
            report = await runner.reconcile(dataclasses.replace(load_campaign(second), api_url=box.url), KEY)
            assert report.checked == 6
            state = state_of(second)
            assert state.message_ids() == set()  # none of the first campaign's ids
            assert {u["phone"] for u in state.by_status(Status.PENDING)} == {p[0] for p in people}
            state.close()
            again = await run_on(box, load_campaign(second), options())
            assert again.sent_now == 6
            assert listed(box) == Counter({(p[0], f"Same: hi {p[2]}."): 2 for p in people})

    asyncio.run(main())


def test_resend_unknown_reconciles_first(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(12))

    async def main() -> None:
        faults = Faults(drop_after_accept=0.5, seed=3)
        async with Sandbox(SandboxConfig(api_key=KEY, faults=faults)) as box:
            first = await run_on(box, load_campaign(path), options())
            assert first.counts["unknown"] > 0
            box.config.faults = Faults()
            again = await run_on(box, load_campaign(path), options(resend_unknown=True))
            assert again.reconciled is not None and again.reconciled.found == first.counts["unknown"]
            assert again.sent_now == 0 and again.counts == Counter({"sent": 12})
            assert len(box.accepted) == 12  # every number exactly once

    asyncio.run(main())


# --- item 3: a refused connection sent nothing ---------------------------------------------------


def test_refused_connection_leaves_rows_pending_and_a_plain_rerun_sends_them(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(20))

    async def main() -> None:
        box = Sandbox(SandboxConfig(api_key=KEY))
        url = await box.start()
        port = int(url.rsplit(":", 1)[1])
        await box.close()  # nothing listens there now: connection refused
        campaign = dataclasses.replace(load_campaign(path), api_url=url)
        down = await runner.run(campaign, options())
        assert down.stop_reason == f"cannot reach the API at {url} (connection refused); nothing was sent"
        assert down.exit_code() is ExitCode.STOPPED
        assert down.counts == Counter({"pending": 20})
        await box.start(port=port)
        try:
            up = await runner.run(campaign, options())
        finally:
            await box.close()
        assert up.counts == Counter({"sent": 20}) and len(box.accepted) == 20

    asyncio.run(main())


def test_refused_connection_is_one_sentence_exit_3(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(3), api_url="http://127.0.0.1:9")  # nothing listens on port 9
    env = {**os.environ, "SOCIOCS_API_KEY": KEY}
    env.pop("SOCIOCS_API_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "campaign", "send", str(path), "--yes"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 3, proc.stderr
    assert "cannot reach the API at http://127.0.0.1:9 (connection refused); nothing was sent" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert {r["status"] for r in results(tmp_path / "test.results.csv")} == {"pending"}


# --- item 4: every row in the results, whatever stopped the run ----------------------------------


def test_a_401_stop_still_writes_every_row(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(700), sending="rate = 0\nconcurrency = 2\nmax_attempts = 3\ntimeout = 5")

    async def main() -> runner.Summary:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            return await runner.run(dataclasses.replace(load_campaign(path), api_url=box.url), options(api_key="x:y"))

    summary = asyncio.run(main())
    assert summary.exit_code() is ExitCode.STOPPED
    rows = results(tmp_path / "test.results.csv")
    assert len(rows) == 700 and {r["status"] for r in rows} == {"pending"}
    assert [int(r["row"]) for r in rows] == list(range(2, 702))


def test_status_gives_each_unknown_rows_reason(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(8))

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(drop_after_accept=0.5, seed=2))) as box:
            await run_on(box, load_campaign(path), options())

    asyncio.run(main())
    state = state_of(path)
    with state.transaction():  # a run killed mid-request leaves this
        state.db.execute(
            "UPDATE recipients SET status = 'sending'"
            " WHERE key = (SELECT min(key) FROM recipients WHERE status = 'sent')"
        )
    state.close()
    report = runner.status(load_campaign(path))
    assert len(report.unknown) >= 2
    for u in report.unknown:
        assert "may have been" in u["error"], u


# --- item 5: each row says what happened to it -------------------------------------------------


def test_resorted_sheet_with_a_duplicate_number_keeps_the_send_on_its_row(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    ann = ("+16175550001", "Ann", "Ann", "A-1", "a@example.com", "Boston")
    bob = ("+16175550001", "Bob", "Bob", "B-2", "b@example.com", "Boston")
    path = make_campaign([ann, bob])

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options())
            write_csv(tmp_path / "contacts.csv", [bob, ann])  # re-sorted by name, descending
            again = await run_on(box, load_campaign(path), options())
            assert again.changed_since_sent == 0 and again.sent_now == 0
            assert len(box.accepted) == 1

    asyncio.run(main())
    by_name = {r["Name"]: r for r in results(tmp_path / "test.results.csv")}
    assert by_name["Ann"]["row"] == "3" and by_name["Ann"]["status"] == "sent"
    assert by_name["Ann"]["message"] == "Hi Ann, order A-1 is ready."
    assert (by_name["Bob"]["status"], by_name["Bob"]["error"]) == ("skipped", "duplicate of row 3")
    assert by_name["Bob"]["message_id"] == ""


@pytest.mark.parametrize(
    ("faults", "outcome"),
    [(Faults(drop_after_accept=1.0), "unknown"), (Faults(blocked=frozenset({"+16175550001"})), "failed")],
    ids=["unknown", "failed"],
)
def test_resorted_sheet_with_a_duplicate_number_keeps_every_outcome_on_its_row(
    make_campaign: CampaignFactory, tmp_path: Path, faults: Faults, outcome: str
) -> None:
    """Not only a send: Ann's request may have gone (unknown) or was refused (failed). After
    the sheet is re-sorted, Bob's row comes first, yet the outcome, its message and its error
    stay on Ann's row, and Bob's and Cy's rows are her duplicates (a rerun sends nothing: the
    row is held).
    ``campaign reconcile`` then finds an unknown message on Ann's row too."""
    ann = ("+16175550001", "Ann", "Ann", "A-1", "a@example.com", "Boston")
    bob = ("+16175550001", "Bob", "Bob", "B-2", "b@example.com", "Boston")
    cy = ("+16175550001", "Cy", "Cy", "C-3", "c@example.com", "Boston")
    path = make_campaign([ann, bob, cy], sending="rate = 0\nconcurrency = 1\nmax_attempts = 1\ntimeout = 5")

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=faults)) as box:
            await run_on(box, load_campaign(path), options())
            write_csv(tmp_path / "contacts.csv", [bob, cy, ann])
            again = await run_on(box, load_campaign(path), options())
            assert again.sent_now == 0 and len(box.requests) == 1
            by_name = {r["Name"]: r for r in results(tmp_path / "test.results.csv")}
            assert (by_name["Ann"]["row"], by_name["Ann"]["status"]) == ("4", outcome)
            assert by_name["Ann"]["message"] == "Hi Ann, order A-1 is ready." and by_name["Ann"]["error"]
            for name in ("Bob", "Cy"):
                assert (by_name[name]["status"], by_name[name]["error"]) == ("skipped", "duplicate of row 4")
            assert by_name["Bob"]["message"] == "Hi Bob, order B-2 is ready."
            if outcome == "unknown":
                await runner.reconcile(dataclasses.replace(load_campaign(path), api_url=box.url), KEY)
                by_name = {r["Name"]: r for r in results(tmp_path / "test.results.csv")}
                assert (by_name["Ann"]["status"], by_name["Bob"]["status"]) == ("sent", "skipped")
                assert by_name["Ann"]["message_id"] == box.accepted[0].message_id

    asyncio.run(main())


def test_resorted_sheet_keeps_a_cancelled_message_on_its_row(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """Ann's message was scheduled, then ``campaign cancel`` took it back; re-sorted, the
    cancelled outcome stays on Ann's row and the rerun sends nothing (Bob's row is her duplicate)."""
    ann = ("+16175550001", "Ann", "Ann", "A-1", "a@example.com", "Boston")
    bob = ("+16175550001", "Bob", "Bob", "B-2", "b@example.com", "Boston")
    message = 'text = "Hi {{ first_name }}, order {{ order_id }} is ready."\nschedule = "2099-01-02 09:00"'
    message += '\ntimezone = "UTC"'
    path = make_campaign([ann, bob], message=message)

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options())
            await runner.cancel(dataclasses.replace(load_campaign(path), api_url=box.url), KEY)
            write_csv(tmp_path / "contacts.csv", [bob, ann])
            again = await run_on(box, load_campaign(path), options())
            assert again.sent_now == 0 and again.held_cancelled == 1
            assert [r.method for r in box.requests] == ["POST", "DELETE"]

    asyncio.run(main())
    by_name = {r["Name"]: r for r in results(tmp_path / "test.results.csv")}
    assert (by_name["Ann"]["row"], by_name["Ann"]["status"]) == ("3", "cancelled")
    assert by_name["Ann"]["message"] == "Hi Ann, order A-1 is ready."
    assert (by_name["Bob"]["status"], by_name["Bob"]["error"]) == ("skipped", "duplicate of row 3")


def test_a_sent_rows_text_changed_and_resorted_keeps_the_send_on_the_first_row_and_says_so(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """Ann's message was sent; then the sheet is re-sorted (Bob, of the same number, first) and
    Ann's order edited. No row has the sent message any more, and nothing tells which row was
    Ann's without guessing: the first row keeps the send, shows the message that went, and its
    error column says its own text was not sent; the summary names the row. Nothing is resent."""
    ann = ("+16175550001", "Ann", "Ann", "A-1", "a@example.com", "Boston")
    bob = ("+16175550001", "Bob", "Bob", "B-2", "b@example.com", "Boston")
    path = make_campaign([ann, bob])

    async def main() -> runner.Summary:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options())
            write_csv(tmp_path / "contacts.csv", [bob, (*ann[:3], "A-9", *ann[4:])])
            again = await run_on(box, load_campaign(path), options())
            assert len(box.accepted) == 1 and again.sent_now == 0
            return again

    again = asyncio.run(main())
    assert (again.changed_since_sent, again.changed_examples) == (1, [2])
    by_name = {r["Name"]: r for r in results(tmp_path / "test.results.csv")}
    assert (by_name["Bob"]["row"], by_name["Bob"]["status"]) == ("2", "sent")
    assert by_name["Bob"]["message"] == "Hi Ann, order A-1 is ready."
    assert by_name["Bob"]["error"] == (
        "an earlier run's request for this number had the message shown, not this row's text now "
        "(the row or the sheet changed since); this row's text was not sent"
    )
    assert (by_name["Ann"]["status"], by_name["Ann"]["error"]) == ("skipped", "duplicate of row 2")
    assert by_name["Ann"]["message"] == "Hi Ann, order A-9 is ready."


def test_a_resorted_sheets_check_shows_each_row_its_own_message(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """Ann's recipient was planned (pending, left by --limit) with Ann's message; re-sorted, Bob's
    row is the first with the number and is the one a send would send: the check's report shows
    Bob's own message on his row, and the send sends exactly that."""
    cy = ("+16175550002", "Cy", "Cy", "C-3", "c@example.com", "Boston")
    ann = ("+16175550001", "Ann", "Ann", "A-1", "a@example.com", "Boston")
    bob = ("+16175550001", "Bob", "Bob", "B-2", "b@example.com", "Boston")
    path = make_campaign([cy, ann, bob])

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options(limit=1))  # Cy only; Ann's recipient is pending
            write_csv(tmp_path / "contacts.csv", [cy, bob, ann])
            await runner.check(load_campaign(path), prepare_in_child=False)
            by_name = {r["Name"]: r for r in results(tmp_path / "test.check.csv")}
            assert (by_name["Bob"]["status"], by_name["Bob"]["message"]) == ("dry-run", "Hi Bob, order B-2 is ready.")
            assert by_name["Ann"]["status"] == "skipped"
            await run_on(box, load_campaign(path), options())
            sent = [m.body["text"] for m in box.accepted]
            assert sent == ["Hi Cy, order C-3 is ready.", "Hi Bob, order B-2 is ready."]
            by_name = {r["Name"]: r for r in results(tmp_path / "test.results.csv")}
            assert (by_name["Bob"]["status"], by_name["Bob"]["message"]) == ("sent", "Hi Bob, order B-2 is ready.")

    asyncio.run(main())


def test_a_changed_message_is_still_reported(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(2))

    async def main() -> runner.Summary:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options())
            write_csv(tmp_path / "contacts.csv", [contacts(2)[0], (*contacts(2)[1][:3], "Z-9", *contacts(2)[1][4:])])
            return await run_on(box, load_campaign(path), options())

    assert asyncio.run(main()).changed_since_sent == 1


def test_reconcile_refuses_another_api(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(2))

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box, Sandbox(SandboxConfig(api_key=KEY)) as other:
            await run_on(box, load_campaign(path), options())
            with pytest.raises(CampaignError, match="was sent through"):
                await runner.reconcile(dataclasses.replace(load_campaign(path), api_url=other.url), KEY)

    asyncio.run(main())


def test_reconcile_reads_template_content_from_the_listing() -> None:
    ours = {"template": {"id": TEMPLATE_B, "variables": {"1": "Ann"}}}
    assert _same_content({"text": None, "template_id": TEMPLATE_B, "template_variables": {"1": "Ann"}}, ours)
    assert not _same_content({"text": None, "template_id": TEMPLATE_A}, ours)
    assert not _same_content({"text": None, "template": {"id": TEMPLATE_B, "variables": {"1": "Bo"}}}, ours)
    assert not _same_content({"text": "Hi Ann"}, ours)
    assert _same_content({"text": None}, ours)  # a listing without template fields: number and time decide
    assert json.loads(json.dumps(ours)) == ours


def test_resorted_sheet_with_allow_duplicates_keeps_each_send_on_its_row(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    ann = ("+16175550001", "Ann", "Ann", "A-1", "a@example.com", "Boston")
    bob = ("+16175550001", "Bob", "Bob", "B-2", "b@example.com", "Boston")
    path = make_campaign([ann, bob], recipients="allow_duplicates = true")

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options())
            sent = {m.body["name"]: m.message_id for m in box.accepted}
            write_csv(tmp_path / "contacts.csv", [bob, ann])
            again = await run_on(box, load_campaign(path), options())
            assert again.changed_since_sent == 0 and again.sent_now == 0 and len(box.accepted) == 2
            by_name = {r["Name"]: r for r in results(tmp_path / "test.results.csv")}
            for name, row in (("Bob", "2"), ("Ann", "3")):
                assert by_name[name]["row"] == row and by_name[name]["status"] == "sent"
                assert by_name[name]["message_id"] == sent[name]
                assert by_name[name]["message"].startswith(f"Hi {name},")

    asyncio.run(main())


def test_allow_duplicates_across_runs_sends_each_rows_message_once(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """With allow_duplicates a recipient is its row, known by its message: a sheet stopped after
    its first row, then re-sorted, with a row added above the sent one and one identical pair,
    ends with every row's message sent exactly once (each in its own row of the results)."""
    ann = ("+16175550001", "Ann", "Ann", "A-1", "a@example.com", "Boston")
    bob = ("+16175550001", "Bob", "Bob", "B-2", "b@example.com", "Boston")
    cy = ("+16175550001", "Cy", "Cy", "C-3", "c@example.com", "Boston")
    path = make_campaign([ann, bob, bob], recipients="allow_duplicates = true")

    async def main() -> list[str]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options(limit=1))  # Ann's row only
            write_csv(tmp_path / "contacts.csv", [bob, cy, ann, bob])  # re-sorted, Cy added above Ann
            await run_on(box, load_campaign(path), options(limit=2))  # a Bob and Cy
            write_csv(tmp_path / "contacts.csv", [ann, bob, bob, cy])
            last = await run_on(box, load_campaign(path), options())  # the other Bob
            assert last.sent_now == 1 and last.changed_since_sent == 0
            again = await run_on(box, load_campaign(path), options())
            assert again.sent_now == 0
            return sorted(str(m.body["text"]) for m in box.accepted)

    assert asyncio.run(main()) == [
        "Hi Ann, order A-1 is ready.",
        "Hi Bob, order B-2 is ready.",
        "Hi Bob, order B-2 is ready.",
        "Hi Cy, order C-3 is ready.",
    ]
    rows = results(tmp_path / "test.results.csv")
    assert [(r["row"], r["Name"], r["status"]) for r in rows] == [
        ("2", "Ann", "sent"),
        ("3", "Bob", "sent"),
        ("4", "Bob", "sent"),
        ("5", "Cy", "sent"),
    ]
    assert len({r["message_id"] for r in rows}) == 4
    assert all(r["message"].startswith(f"Hi {r['Name']},") for r in rows)


@pytest.mark.parametrize(
    ("faults", "outcome"), [(Faults(), "sent"), (Faults(drop_after_accept=1.0), "unknown")], ids=["sent", "unknown"]
)
def test_allow_duplicates_an_edited_rows_text_is_not_sent_again(
    make_campaign: CampaignFactory, tmp_path: Path, faults: Faults, outcome: str
) -> None:
    """With allow_duplicates a recipient is known by its text. Ann's row went (or may have);
    then its text is edited and the sheet re-sorted, and a new row for the number is added. The
    edited row matches no request, but its number has one that went and no row has now: it
    takes that one, shown with the text that went and a note, and is not sent again. The new
    row is sent; Bob's row keeps its own request wherever it is in the sheet."""
    ann = ("+16175550001", "Ann", "Ann", "A-1", "a@example.com", "Boston")
    bob = ("+16175550001", "Bob", "Bob", "B-2", "b@example.com", "Boston")
    cy = ("+16175550001", "Cy", "Cy", "C-3", "c@example.com", "Boston")
    path = make_campaign(
        [ann, bob], recipients="allow_duplicates = true", sending="rate = 0\nconcurrency = 1\nmax_attempts = 1"
    )

    async def main() -> list[str]:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=faults)) as box:
            await run_on(box, load_campaign(path), options())
            write_csv(tmp_path / "contacts.csv", [(*ann[:3], "A-9", *ann[4:]), cy, bob])
            checked = await runner.check(load_campaign(path), prepare_in_child=False)
            assert checked.counts == Counter({outcome: 2, "dry-run": 1})  # only Cy's row would go
            box.config.faults = Faults()
            again = await run_on(box, load_campaign(path), options())
            assert again.sent_now == 1 and again.retried_undelivered == 0
            # Bob's row (its own request) and Ann's (the request she had) are both held.
            held = again.already_done if outcome == "sent" else again.held_unknown
            assert (held, again.already_done + again.held_unknown, again.held_cancelled) == (2, 2, 0)
            once_more = await run_on(box, load_campaign(path), options())
            assert once_more.sent_now == 0
            return [str(m.body["text"]) for m in box.accepted]

    texts = ["Hi Ann, order A-1 is ready.", "Hi Bob, order B-2 is ready.", "Hi Cy, order C-3 is ready."]
    assert asyncio.run(main()) == texts
    rows = {r["Name"]: r for r in results(tmp_path / "test.results.csv")}
    assert (rows["Ann"]["row"], rows["Ann"]["status"], rows["Ann"]["message"]) == ("2", outcome, texts[0])
    assert rows["Ann"]["error"].startswith("an earlier run's request for this number had the message shown")
    assert [(rows[n]["status"], rows[n]["message"]) for n in ("Cy", "Bob")] == [
        ("sent", "Hi Cy, order C-3 is ready."),
        (outcome, "Hi Bob, order B-2 is ready."),
    ]


def test_allow_duplicates_an_edited_rows_cancelled_message_is_not_sent_again(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """A scheduled message the user then cancelled stays taken back when its row's text is
    edited: the row takes the cancelled request, it is counted as held, and nothing is sent."""
    ann = ("+16175550001", "Ann", "Ann", "A-1", "a@example.com", "Boston")
    bob = ("+16175550001", "Bob", "Bob", "B-2", "b@example.com", "Boston")
    message = 'text = "Hi {{ first_name }}, order {{ order_id }} is ready."\nschedule = "2099-01-02 09:00"'
    path = make_campaign([ann, bob], message=message + '\ntimezone = "UTC"', recipients="allow_duplicates = true")

    async def main() -> runner.Summary:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options())
            await runner.cancel(dataclasses.replace(load_campaign(path), api_url=box.url), KEY)
            write_csv(tmp_path / "contacts.csv", [bob, (*ann[:3], "A-9", *ann[4:])])
            again = await run_on(box, load_campaign(path), options())
            assert sorted(r.method for r in box.requests) == ["DELETE", "DELETE", "POST", "POST"]
            return again

    again = asyncio.run(main())
    assert (again.sent_now, again.held_cancelled, again.counts) == (0, 2, Counter({"cancelled": 2}))
    assert (again.already_done, again.held_unknown) == (0, 0)


def test_second_ctrl_c_says_how_to_write_the_results(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    import signal
    import time

    with spawn("--latency", "3") as url:  # requests stay in flight long enough for a second Ctrl-C
        path = make_campaign(contacts(50), api_url=url, sending="rate = 0\nconcurrency = 2\ntimeout = 10")
        proc = subprocess.Popen(
            [sys.executable, "-m", "campaign", "send", str(path), "--yes"],
            env={**os.environ, "SOCIOCS_API_KEY": KEY},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until requests are in flight (marked sending)
            time.sleep(0.2)
            if has_state(path):
                state = state_of(path)
                try:
                    if state.journal_counts().get("sending"):
                        break
                finally:
                    state.close()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert f"campaign status {path} --results {tmp_path / 'test.results.csv'}" in stderr
    run = subprocess.run(
        [sys.executable, "-m", "campaign", "status", str(path), "--results", str(tmp_path / "out.csv")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr  # like send: unknown and pending rows remain
    assert "may have been" in run.stdout  # the in-flight rows, with their reason
    assert len(results(tmp_path / "out.csv")) == 50


def test_status_says_when_the_last_send_did_not_read_the_whole_file(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """A second Ctrl-C (or a kill) while the file is still being read leaves rows that no run
    read: status must not call the rows it has "all" of them, and exits 1 like send."""
    path = make_campaign(contacts(5))

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options(limit=2))

    asyncio.run(main())
    whole = runner.status(load_campaign(path))
    assert not whole.unread and whole.exit_code() is ExitCode.OK  # --limit left the rest for later
    state = state_of(path)
    state.begin_run("send", ["Phone"])  # a send killed while it was reading the file
    state.close()
    cut = runner.status(load_campaign(path))
    assert cut.unread and cut.exit_code() is ExitCode.ROWS_NOT_SENT
    proc = subprocess.run(
        [sys.executable, "-m", "campaign", "status", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "500"},
    )
    assert proc.returncode == 1, proc.stderr
    assert (
        "The last send stopped before it had read the whole recipients file: these counts and the results file "
        f"hold only the rows it read. `campaign send {path}` reads the rest (and sends nothing twice)."
    ) in proc.stdout


class _LostAnswers:
    """A real HTTP API on loopback that loses every answer to POST /message (500) and lists
    nothing; its listing refuses ranges starting before ``listed_from`` (or answers
    ``list_status``): what reconcile must not take for "not sent"."""

    def __init__(self, listed_from: date | None = None, list_status: int = 200) -> None:
        self.listed_from, self.list_status, self.posts = listed_from, list_status, 0
        self.url = ""
        self.runner: web.AppRunner | None = None

    async def __aenter__(self) -> _LostAnswers:
        app = web.Application()
        app.router.add_post("/message", self.post)
        app.router.add_get("/messages", self.get)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def post(self, request: web.Request) -> web.Response:
        self.posts += 1
        return web.json_response({"status": "error", "errors": [{"msg": "Internal error."}]}, status=500)

    async def get(self, request: web.Request) -> web.Response:
        start = date.fromisoformat(request.query["start_date"])
        if self.list_status != 200 or (self.listed_from is not None and start < self.listed_from):
            error = {"status": "error", "errors": [{"msg": "Not available."}]}
            return web.json_response(error, status=400 if self.list_status == 200 else self.list_status)
        return web.json_response({"status": "success", "data": []})


def test_reconcile_leaves_rows_the_listing_does_not_cover_unknown(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    path = make_campaign(contacts(2))
    today = datetime.now(UTC).date()

    async def main() -> runner.ReconcileReport:
        async with _LostAnswers(listed_from=today - timedelta(days=40)) as api:
            campaign = dataclasses.replace(load_campaign(path), api_url=api.url)
            assert (await runner.run(campaign, options())).counts == Counter({"unknown": 2})
            long_ago = (datetime.now(UTC) - timedelta(days=60)).isoformat(timespec="seconds")
            state = state_of(path)
            with state.transaction():
                state.db.execute(
                    "UPDATE recipients SET first_attempt_at = ?, updated_at = ? WHERE key = '+16175550000'",
                    (long_ago, long_ago),
                )
            state.close()
            report = await runner.reconcile(campaign, KEY)
            state = state_of(path)
            [left] = state.by_status(Status.UNKNOWN)
            assert left["phone"] == "+16175550000" and "did not cover" in left["error"]
            assert [p["phone"] for p in state.by_status(Status.PENDING)] == ["+16175550001"]
            state.close()
            # --resend-unknown is the user's word for such a row: it is sent again (not held as
            # ambiguous: no listed message could be it), and the pending one goes too.
            before = api.posts
            again = await runner.run(campaign, options(resend_unknown=True))
            assert (again.held_ambiguous, again.held_unknown, again.requests) == (0, 0, 2)
            assert api.posts == before + 2
            return report

    report = asyncio.run(main())
    assert (report.checked, report.uncovered, report.pending, report.found) == (2, 1, 1, 0)


def test_resend_unknown_refuses_when_it_cannot_reconcile(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(3))

    async def main() -> None:
        async with _LostAnswers(list_status=503) as api:
            campaign = dataclasses.replace(load_campaign(path), api_url=api.url)
            assert (await runner.run(campaign, options())).counts == Counter({"unknown": 3})
            posts = api.posts
            with pytest.raises(RunStopped) as stopped:
                await runner.run(campaign, options(resend_unknown=True))
            assert str(stopped.value) == (
                "--resend-unknown reconciles the unknown rows first, and that failed: GET /messages failed: Not "
                "available; the unknown rows stay unknown. Nothing was sent; rerun when the API answers."
            )
            assert api.posts == posts  # nothing resent blindly

    asyncio.run(main())


def test_a_corrected_api_url_is_accepted_while_nothing_reached_the_old_one(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(4), api_url="http://127.0.0.1:9")  # a mistyped port: refused

    async def main() -> None:
        down = await runner.run(load_campaign(path), options())
        assert down.counts == Counter({"pending": 4}) and down.exit_code() is ExitCode.STOPPED
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            fixed = await run_on(box, load_campaign(path), options())
            assert fixed.counts == Counter({"sent": 4}) and len(box.accepted) == 4
        with pytest.raises(StateError):  # now the state belongs to the API that took them
            await runner.run(load_campaign(path), options())

    asyncio.run(main())
