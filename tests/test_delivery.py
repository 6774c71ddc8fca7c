"""Delivery reports: the signature, the ranking, and the loop over real HTTP on loopback.

The sandbox posts signed reports to a real ``Listener``; the listener writes to a real SQLite
state file; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import csv
import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from campaign import delivery_runner, store
from campaign.config import Campaign, load_campaign
from campaign.delivery import (
    SIGNATURE_HEADER,
    Report,
    ReportError,
    Shown,
    parse_report,
    resolve,
    sign,
    signature_ok,
)
from campaign.delivery_store import failed_deliveries, funnel, record_reports
from campaign.errors import UsageError
from campaign.listener import Listener
from campaign.runner import Options, Summary, export, reconcile, run
from campaign.sandbox import Faults, Sandbox, SandboxConfig
from campaign.sandbox_webhooks import WebhookFaults
from campaign.state import _MIGRATIONS, SCHEMA_VERSION, State
from tests.conftest import KEY, CampaignFactory, contacts, state_of

SECRET = "My Shared Secret"


def test_signature_passes_the_documented_test_vector() -> None:
    vector = "a52954ef969a496aeed237f48b03c6df7ea43cd0f6e595d06dfe7a8b14b5d891"  # sociocs-api.md section 8
    assert sign(SECRET, b"Hello, World!") == vector
    assert signature_ok(SECRET, b"Hello, World!", vector)
    assert signature_ok(SECRET, b"Hello, World!", vector.upper())
    assert not signature_ok(SECRET, b"Hello, World!!", vector)
    assert not signature_ok("my shared secret", b"Hello, World!", vector)
    assert not signature_ok(SECRET, b"Hello, World!", None)
    assert not signature_ok(SECRET, b"Hello, World!", vector[:-1])
    assert not signature_ok(SECRET, b"Hello, World!", "é" * 64)


def _r(status: str, at: int | None = None, code: str = "") -> Report:
    return Report("SM1", status, code, "", at)


def _play(*reports: Report) -> Shown:
    shown: Shown | None = None
    for i, report in enumerate(reports):
        shown = resolve(shown, report, 1000 + i)
    assert shown is not None
    return shown


def test_ranking_delivered_never_goes_back_and_read_implies_delivered() -> None:
    assert _play(_r("delivered"), _r("sent")).status == "delivered"
    assert _play(_r("sent"), _r("delivered"), _r("sent"), _r("delivered")).status == "delivered"
    read = _play(_r("read", 3), _r("sent", 1))
    assert (read.status, read.reached) == ("read", 5)
    # Read without any delivered report still counts as delivered in the funnel (reached >= 4).
    assert _play(_r("sent"), _r("read")).reached >= 4


def test_ranking_failure_after_delivered_is_shown_as_the_provider_said() -> None:
    shown = _play(_r("delivered", 1), _r("failed", 2, "30003"))
    assert (shown.status, shown.error_code, shown.reached) == ("failed", "30003", 4)
    # A late sent never hides a failure; a later-timestamped delivered does.
    assert _play(_r("undelivered", 2, "30003"), _r("sent", 1)).status == "undelivered"
    assert _play(_r("undelivered", 2, "30003"), _r("delivered", 3)).status == "delivered"
    # Two failures: the later provider time wins, whatever the arrival order.
    assert _play(_r("failed", 5, "30005"), _r("undelivered", 4, "30003")).error_code == "30005"


def test_ranking_keeps_unknown_words_until_a_known_one_comes() -> None:
    assert _play(_r("handed_to_carrier")).status == "handed_to_carrier"
    assert _play(_r("handed_to_carrier"), _r("sent")).status == "sent"
    assert _play(_r("sent"), _r("handed_to_carrier")).status == "sent"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"event": "status_update", "event_data": {"status": "sent"}}', "message_id"),
        (b'{"message_id": "SM1", "event_data": {}}', "status"),
        (b'{"message_id": "SM1", "event_data": "sent"}', "event_data"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_reports_are_refused(body: bytes, why: str) -> None:
    with pytest.raises(ReportError, match=why):
        parse_report(body)


def test_incoming_message_deliveries_are_not_status_reports() -> None:
    assert parse_report(b'{"message_id": "SM1", "event": "message", "text": "hi"}') is None


@pytest.mark.backend("sqlite")
@pytest.mark.parametrize("version", [1, 2])
def test_an_older_state_file_opens_and_gains_the_delivery_tables(tmp_path: Path, version: int) -> None:
    """Schema 1 (before issue 10) and 2 (before delivery reports) upgrade on open."""
    path = tmp_path / "old.state.sqlite"
    db = sqlite3.connect(path)
    scripts = "; ".join(_MIGRATIONS[v] for v in range(1, version + 1))
    db.executescript(f"BEGIN; {scripts}; PRAGMA user_version = {version}; COMMIT;")
    db.execute(
        "INSERT INTO recipients (key, phone, row, status, message_id, created_at, updated_at)"
        " VALUES ('+16175550100', '+16175550100', 2, 'sent', 'SMold', 'x', 'x')"
    )
    db.commit()
    db.close()
    state = State(path)
    try:
        assert state.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        record_reports(state, [(Report("SMold", "delivered"), 1)])
        f = funnel(state)
        assert (f.accepted, f.delivered, f.unmatched) == (1, 1, 0)
    finally:
        state.close()


# --- over HTTP ----------------------------------------------------------------------------------


def _campaign(make_campaign: CampaignFactory, n: int, url: str, provider: str = "twlo") -> Campaign:
    message = 'text = "Hi {{ first_name }}"'
    if provider == "twlowa":
        message = 'template_id = "HX0123456789abcdef0123456789abcdef"\n[message.variables]\n"1" = "{{ first_name }}"'
    return load_campaign(make_campaign(contacts(n), api_url=url, provider=provider, message=message))


async def _send(campaign: Campaign, **options: Any) -> Summary:
    return await run(campaign, Options(api_key=KEY, backoff_base=0.01, prepare_in_child=False, **options))


def _delivery(campaign: Campaign) -> dict[str, tuple[str, str]]:
    """message_id -> (delivery status, error code) of every accepted row, from the state file."""
    state = state_of(campaign)
    try:
        rows = state.db.execute(
            "SELECT p.message_id, coalesce(d.status, ''), coalesce(d.error_code, '') FROM recipients p"
            " LEFT JOIN delivery d ON d.message_id = p.message_id WHERE p.status = 'sent'"
        ).fetchall()
    finally:
        state.close()
    return {mid: (status, code) for mid, status, code in rows}


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


def test_forged_unsigned_and_malformed_reports_change_nothing(make_campaign: CampaignFactory) -> None:
    async def main() -> tuple[list[int], int, dict[str, tuple[str, str]]]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            campaign = _campaign(make_campaign, 2, box.url)
            await _send(campaign)
            mid = next(iter(_delivery(campaign)))
            report = json.dumps({"message_id": mid, "event": "status_update", "event_data": {"status": "read"}})
            body = report.encode()
            async with Listener([campaign], SECRET, max_body=4096) as listener:
                statuses = [
                    await _post(listener.url, body, {}),  # unsigned
                    await _post(listener.url, body, {SIGNATURE_HEADER: sign("another secret", body)}),  # forged
                    await _post(listener.url, body + b" ", {SIGNATURE_HEADER: sign(SECRET, body)}),  # altered
                    await _post(listener.url, b"{oops", {SIGNATURE_HEADER: sign(SECRET, b"{oops")}),  # malformed
                    await _post(listener.url, b"x" * 5000, {}),  # too large
                ]
            state = state_of(campaign)
            try:
                events = state.db.execute("SELECT count(*) FROM delivery_events").fetchone()[0]
            finally:
                state.close()
            return statuses, events, _delivery(campaign)

    statuses, events, delivery = asyncio.run(main())
    assert statuses == [401, 401, 401, 400, 413]
    assert events == 0
    assert all(status == "" for status, _ in delivery.values())


def test_an_early_report_for_an_unknown_message_id_is_kept_and_joined(make_campaign: CampaignFactory) -> None:
    """The report is committed before the send's answer names the id; it joins the row after."""

    async def main() -> tuple[Campaign, dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
        faults = WebhookFaults(early=1.0, fail_rate=0.0, seed=3)
        async with Sandbox(SandboxConfig(api_key=KEY, webhooks=faults)) as box:
            campaign = _campaign(make_campaign, 3, box.url)
            async with delivery_runner.listener_for([campaign], SECRET) as listener:
                await delivery_runner.subscribe(campaign, KEY, url=listener.url, secret=SECRET)
                await _send(campaign)
                await box.webhooks.drain()
            # Closing the listener rewrote the results file with the reports.
            return campaign, _delivery(campaign), dict(box.webhooks.final)

    campaign, delivery, final = asyncio.run(main())
    assert len(delivery) == 3
    assert delivery == {mid: final[mid] for mid in delivery}
    assert {status for status, _ in delivery.values()} == {"delivered"}
    with campaign.results.open(encoding="utf-8-sig", newline="") as handle:
        assert [r["delivery_status"] for r in csv.DictReader(handle)] == ["delivered"] * 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_faulty_reports_and_a_listener_restarted_mid_campaign_end_with_what_the_sandbox_said(
    make_campaign: CampaignFactory,
) -> None:
    """Duplicates, reordering, early and delayed reports; sends whose answer was lost (their
    reports name ids only reconcile finds); the listener stopped and restarted while sending."""

    async def main() -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]], int, int, list[dict[str, str]]]:
        faults = WebhookFaults(
            fail_rate=0.3, read_rate=0.5, duplicate=0.5, out_of_order=0.5, early=0.2, delay=0.05, seed=11
        )
        port = _free_port()
        sandbox = SandboxConfig(
            api_key=KEY, webhooks=faults, faults=Faults(drop_after_accept=0.1, latency=0.01, seed=5)
        )
        async with Sandbox(sandbox) as box:
            campaign = _campaign(make_campaign, 60, box.url, provider="twlowa")
            first = Listener([campaign], SECRET)
            url = await first.start(port=port)
            await delivery_runner.subscribe(campaign, KEY, url=url, secret=SECRET)

            async def restart() -> Listener:
                while len(box.accepted) < 20:
                    await asyncio.sleep(0.005)
                await first.close()  # down while sends and reports go on: the sandbox retries
                await asyncio.sleep(0.3)
                second = Listener([campaign], SECRET)
                await second.start(port=port)
                return second

            restarting = asyncio.create_task(restart())
            summary = await _send(campaign)
            second = await restarting
            assert summary.counts["unknown"] > 0  # answers lost after the API accepted
            report = await reconcile(campaign, KEY)
            assert report.found == summary.counts["unknown"]
            await box.webhooks.drain()
            await second.close()
            state = state_of(campaign)
            try:
                export(state, campaign.results)
            finally:
                state.close()
            with campaign.results.open(encoding="utf-8-sig", newline="") as handle:
                rows = list(csv.DictReader(handle))
            final = {m.message_id: box.webhooks.final[m.message_id] for m in box.accepted}
            return _delivery(campaign), final, first.recorded, box.webhooks.retried, rows

    delivery, final, recorded_by_first, retried, rows = asyncio.run(main())
    assert delivery == final  # every accepted message, each as the sandbox last reported it
    assert len(delivery) == 60
    assert recorded_by_first > 0 and retried > 0  # the restart really happened mid-stream
    words = {status for status, _ in delivery.values()}
    assert {"read", "delivered"} <= words and words & {"failed", "undelivered"}
    for row in rows:
        status, code = final[row["message_id"]]
        assert row["delivery_status"] == status
        assert row["delivery_updated_at"]
        assert (code in row["delivery_error"]) if code else row["delivery_error"] == ""


def test_retry_undelivered_resends_exactly_the_temporary_failures(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    async def main() -> tuple[dict[str, tuple[str, str]], int, Summary, int]:
        faults = WebhookFaults(fail_rate=0.7, seed=2)
        async with Sandbox(SandboxConfig(api_key=KEY, webhooks=faults)) as box:
            campaign = _campaign(make_campaign, 30, box.url)
            async with Listener([campaign], None) as listener:
                await delivery_runner.subscribe(campaign, KEY, url=listener.url, secret=None)
                await _send(campaign)
                await box.webhooks.drain()
                before = _delivery(campaign)
                accepted = len(box.accepted)
                again = await _send(campaign, retry_undelivered=True)
                resent = len(box.accepted) - accepted
                await box.webhooks.drain()
                await _send(campaign, retry_undelivered=False)  # nothing more without the flag
                assert len(box.accepted) == accepted + resent
            return before, resent, again, delivery_runner.export_undeliverable(campaign, tmp_path / "undeliverable.csv")

    before, resent, again, exported = asyncio.run(main())
    temporary = [code for status, code in before.values() if code in ("30003", "30008")]
    permanent = [code for status, code in before.values() if code in ("30005", "30006", "21610")]
    assert temporary and permanent
    assert resent == again.retried_undelivered == len(temporary)
    with (tmp_path / "undeliverable.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert exported == len(rows) >= len(permanent)  # resent rows may have failed for good since
    assert all(r["phone"].startswith("+1617555") for r in rows)
    assert {r["delivery_error"].split(":")[0] for r in rows} <= {"30005", "30006", "21610"}


def test_subscribe_is_idempotent_and_delete_removes_it(make_campaign: CampaignFactory) -> None:
    async def main() -> list[Any]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            campaign = _campaign(make_campaign, 1, box.url)
            one = await delivery_runner.subscribe(campaign, KEY, url="https://a.example/webhooks/sociocs", secret="s")
            two = await delivery_runner.subscribe(campaign, KEY, url="https://b.example/webhooks/sociocs", secret="s")
            listed = await delivery_runner.subscribe(campaign, KEY, url=None, secret=None)
            gone = await delivery_runner.subscribe(campaign, KEY, url=None, secret=None, delete=True)
            again = await delivery_runner.subscribe(campaign, KEY, url=None, secret=None, delete=True)
            return [one, two, listed, gone, again]

    one, two, listed, gone, again = asyncio.run(main())
    assert one.subscription_id == two.subscription_id
    assert [s["webhook_url"] for s in listed.subscriptions] == ["https://b.example/webhooks/sociocs"]
    assert listed.subscriptions[0]["subscriber_reference_id"] == one.reference
    assert "secret" not in listed.subscriptions[0]
    assert (gone.action, gone.subscriptions) == ("deleted", [])
    assert again.action == "not-found"


def test_subscribe_refuses_a_url_that_is_not_http(make_campaign: CampaignFactory) -> None:
    campaign = _campaign(make_campaign, 1, "http://127.0.0.1:9")
    with pytest.raises(UsageError, match="not an http"):
        asyncio.run(delivery_runner.subscribe(campaign, KEY, url="hooks.example.com/webhooks/sociocs", secret=None))


def test_failed_deliveries_classify_codes(make_campaign: CampaignFactory) -> None:
    state = state_of(make_campaign(contacts(1)))
    try:
        with state.transaction():
            state.db.executemany(
                "INSERT INTO recipients (key, phone, row, status, message_id, created_at, updated_at)"
                " VALUES (?, ?, ?, 'sent', ?, 'x', 'x')",
                [(f"+1617555000{i}", f"+1617555000{i}", i + 2, f"SM{i}") for i in range(4)],
            )
        record_reports(
            state,
            [
                (Report("SM0", "undelivered", "30003", "Unreachable"), 1),
                (Report("SM1", "failed", "21610", ""), 1),
                (Report("SM2", "undelivered", "30007", ""), 1),
                (Report("SM3", "delivered"), 1),
            ],
        )
        kinds = {d["key"][-1]: str(d["kind"]) for d in failed_deliveries(state)}
    finally:
        state.close()
    assert kinds == {"0": "temporary", "1": "permanent", "2": "other"}


def test_one_listener_routes_reports_to_the_campaign_that_sent_them(make_campaign: CampaignFactory) -> None:
    """A known id goes to its campaign only; an id no campaign knows yet is kept by each."""
    campaigns = [load_campaign(make_campaign(contacts(1), name=name)) for name in ("a", "b")]
    for i, campaign in enumerate(campaigns):
        state = store.open_state(campaign)
        try:
            with state.transaction():
                state.db.execute(
                    "INSERT INTO recipients (key, phone, row, status, message_id, created_at, updated_at)"
                    " VALUES ('k', '+16175550100', 2, 'sent', ?, 'x', 'x')",
                    (f"SM{i}",),
                )
        finally:
            state.close()

    async def main() -> list[int]:
        async with Listener(campaigns, SECRET) as listener:
            out = []
            for mid in ("SM0", "SM1", "SMlater"):
                body = json.dumps({"message_id": mid, "event_data": {"status": "delivered"}}).encode()
                out.append(await _post(listener.url, body, {SIGNATURE_HEADER: sign(SECRET, body)}))
            return out

    assert asyncio.run(main()) == [200, 200, 200]
    for campaign, mine in zip(campaigns, ("SM0", "SM1"), strict=True):
        state = store.open_state(campaign)
        try:
            ids = sorted(r[0] for r in state.db.execute("SELECT message_id FROM delivery_events"))
        finally:
            state.close()
        assert ids == sorted([mine, "SMlater"])


def test_a_report_holding_nul_characters_is_recorded_and_acknowledged(make_campaign: CampaignFactory) -> None:
    """JSON may carry ``\\u0000`` in any text of a report (the id, the status, the provider's
    error): it is committed and answered 200 on either engine, never refused again and again
    (PostgreSQL text cannot hold a NUL: it keeps U+FFFD), and its message still finds its row."""
    campaign = load_campaign(make_campaign(contacts(1), name="n"))
    state = state_of(campaign)
    try:
        with state.transaction():
            state.db.execute(
                "INSERT INTO recipients (key, phone, row, status, message_id, created_at, updated_at)"
                " VALUES ('k', '+16175550100', 2, 'sent', ?, 'x', 'x')",
                ("SM\x00nul",),
            )
    finally:
        state.close()
    report = {"status": "undelivered\x00", "error": {"code": "300\x0003", "message": "Unreach\x00able"}}
    body = json.dumps({"message_id": "SM\x00nul", "event_data": report}).encode()

    async def main() -> int:
        async with Listener([campaign], SECRET) as listener:
            return await _post(listener.url, body, {SIGNATURE_HEADER: sign(SECRET, body)})

    assert asyncio.run(main()) == 200
    state = state_of(campaign)
    try:
        [event] = state.db.execute("SELECT message_id, status, error_code, error_message FROM delivery_events")
        f = funnel(state)
    finally:
        state.close()
    assert event in (
        ("SM\x00nul", "undelivered\x00", "300\x0003", "Unreach\x00able"),
        ("SM\ufffdnul", "undelivered\ufffd", "300\ufffd03", "Unreach\ufffdable"),
    )
    assert (f.accepted, f.reported, f.unmatched, f.events) == (1, 1, 0, 1)


@pytest.mark.backend("sqlite")
def test_a_report_that_cannot_be_committed_is_not_acknowledged(make_campaign: CampaignFactory) -> None:
    """Another process holds the state file's write lock past the busy timeout: 503, nothing
    recorded, so the sender posts it again; once the lock is gone the same report is 200."""
    campaign = load_campaign(make_campaign(contacts(1), name="c"))
    path = campaign.state
    State(path).close()
    body = json.dumps({"message_id": "SM1", "event_data": {"status": "delivered"}}).encode()
    headers = {SIGNATURE_HEADER: sign(SECRET, body)}

    async def main() -> tuple[int, int]:
        async with Listener([campaign], SECRET) as listener:
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                refused = await _post(listener.url, body, headers)
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            return refused, await _post(listener.url, body, headers)

    refused, accepted = asyncio.run(main())
    assert (refused, accepted) == (503, 200)
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM delivery_events").fetchone()[0] == 1
    finally:
        db.close()
