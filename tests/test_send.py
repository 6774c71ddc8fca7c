"""The whole pipeline against the sandbox over real HTTP, with real files and real SQLite."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from campaign import runner
from campaign.config import load_campaign
from campaign.errors import ExitCode
from campaign.sandbox import Faults, Sandbox, SandboxConfig
from campaign.state import State, Status
from tests.conftest import HEADER, KEY, CampaignFactory, contacts, has_state, state_of


def send(
    path: Path, box: Sandbox | None = None, faults: Faults | None = None, **options: Any
) -> tuple[runner.Summary, Sandbox]:
    """Run `campaign send` in-process against a fresh (or given) sandbox."""

    async def main() -> tuple[runner.Summary, Sandbox]:
        sandbox = box or Sandbox(SandboxConfig(api_key=KEY, faults=faults or Faults(seed=1)))
        url = await sandbox.start()
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=url)
            opts = runner.Options(**{"api_key": KEY, "backoff_base": 0.01, "sandbox": True, **options})
            return await runner.run(campaign, opts), sandbox
        finally:
            await sandbox.close()

    return asyncio.run(main())


def results(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_sms_campaign_end_to_end(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    rows = contacts(6)
    rows[1] = ("(617) 555-0001", *rows[1][1:])  # no country code: default_country US
    rows[2] = ("12345", *rows[2][1:])  # not a phone number
    rows[3] = (rows[0][0], *rows[3][1:])  # duplicate of row 2
    path = make_campaign(rows, extra='\n[contact_saving]\nsave = true\nextra_fields = ["Email", "City"]\n')
    summary, box = send(path)

    assert summary.counts == Counter({"sent": 4, "invalid": 1, "skipped": 1})
    assert summary.exit_code() is ExitCode.ROWS_NOT_SENT  # the invalid row
    bodies = [m.body for m in box.accepted]
    assert bodies[0] == {
        "provider": "twlo",
        "channel_key": "twlo_16175550000",
        "to": "+16175550000",
        "name": "Person 0",
        "text": "Hi P0, order A-0 is ready.",
        "contact_saving": {"save": True, "list_id": 0, "extra_fields": {"Email": "p0@example.com", "City": "Boston"}},
    }
    assert bodies[1]["to"] == "+16175550001"
    out = results(tmp_path / "test.results.csv")
    assert [r["row"] for r in out] == ["2", "3", "4", "5", "6", "7"]
    assert list(out[0])[: len(HEADER)] == ["Phone_input", *HEADER[1:]]  # "Phone" beside our "phone"
    assert list(out[0])[len(HEADER) :] == [
        "row",
        "phone",
        "status",
        "message_id",
        "error",
        "http_status",
        "attempts",
        "message",
        "updated_at",
    ]
    by_row = {r["row"]: r for r in out}
    assert by_row["2"]["status"] == "sent" and by_row["2"]["message_id"].startswith("SM")
    assert by_row["2"]["attempts"] == "1" and by_row["2"]["http_status"] == "200"
    assert by_row["4"]["status"] == "invalid" and "12345" in by_row["4"]["error"]
    assert by_row["5"]["status"] == "skipped" and by_row["5"]["error"] == "duplicate of row 2"
    assert by_row["2"]["message"] == "Hi P0, order A-0 is ready."


def test_twlowa_from_excel(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Customers"
    ws.append(list(HEADER))
    ws.append([16175550100, "Ann", "Ann", "A-1", "a@example.com", "Boston"])  # a number cell, as Excel stores it
    ws.append(["+16175550101", "Bob", "", "A-2", "b@example.com", "Boston"])  # empty variable: Twilio refuses it
    wb.save(tmp_path / "contacts.xlsx")
    path = make_campaign(
        provider="twlowa",
        file="contacts.xlsx",
        message='template_id = "HX0123456789abcdef0123456789abcdef"\n'
        '[message.variables]\n"1" = "{{ first_name }}"\n"2" = "{{ order_id }}"',
    )
    summary, box = send(path)
    assert summary.counts == Counter({"sent": 1, "invalid": 1})
    assert len(box.requests) == 1  # the invalid row never reached the API
    assert box.accepted[0].body == {
        "provider": "twlowa",
        "channel_key": "twlowa_16175550000",
        "to": "+16175550100",
        "name": "Ann",
        "template": {"id": "HX0123456789abcdef0123456789abcdef", "variables": {"1": "Ann", "2": "A-1"}},
    }
    out = results(tmp_path / "test.results.csv")
    assert out[0]["message"] == json.dumps({"1": "Ann", "2": "A-1"}, separators=(",", ":"))
    assert "variable 1 is empty" in out[1]["error"]


def test_gswa_body(make_campaign: CampaignFactory) -> None:
    path = make_campaign(
        contacts(1),
        provider="gswa",
        message='template_id = "007b7c0e-fc8d-4698-a9a8-3938151dd5da"\n'
        '[message.variables]\nMEDIA_URL = "https://placehold.co/600x400"\n'
        '[message.variables.Header]\n"1" = "{{ first_name }}"\n'
        '[message.variables.Body]\n"1" = "{{ Email }}"\n"2" = "{{ order_id }}"\n'
        '[message.variables.Buttons]\n"1" = "Quick Reply Text"',
    )
    summary, box = send(path)
    assert summary.counts == Counter({"sent": 1}) and len(box.requests) == 1
    assert box.accepted[0].body["template"] == {
        "id": "007b7c0e-fc8d-4698-a9a8-3938151dd5da",
        "variables": {
            "MEDIA_URL": "https://placehold.co/600x400",
            "Header": {"1": "P0"},
            "Body": {"1": "p0@example.com", "2": "A-0"},
            "Buttons": {"1": "Quick Reply Text"},
        },
    }


def test_rerun_sends_nothing_twice_and_resort_is_safe(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    rows = contacts(8)
    path = make_campaign(rows)
    first, box1 = send(path, limit=3)
    assert first.counts["sent"] == 3 and first.counts["pending"] == 5
    assert first.exit_code() is ExitCode.OK  # pending only because of --limit
    # Re-sort and add a row between runs.
    from tests.conftest import write_csv

    write_csv(tmp_path / "contacts.csv", [*reversed(rows), *contacts(1, start=50)])
    second, box2 = send(path)
    sent_to = [m.to for m in box1.accepted] + [m.to for m in box2.accepted]
    assert len(sent_to) == len(set(sent_to)) == 9
    assert second.already_done == 3
    third, box3 = send(path)
    assert box3.accepted == [] and third.already_done == 9 and third.exit_code() is ExitCode.OK


def test_rate_limit_with_retry_after_costs_time_not_rows(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(12), sending="rate = 40\nconcurrency = 4\nmax_attempts = 1\ntimeout = 5")
    summary, box = send(path, faults=Faults(rate_limit=8, retry_after=1, seed=3))
    assert summary.counts == Counter({"sent": 12}) and summary.exit_code() is ExitCode.OK
    assert summary.rate_limited > 0
    assert Counter(r.status for r in box.requests) == Counter({200: 12, 429: summary.rate_limited})
    assert sorted(m.to for m in box.accepted) == sorted(row[0] for row in contacts(12))  # each exactly once


def test_503_is_retried_and_500_is_unknown_never_resent(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(
        contacts(30), sending="rate = 0\nconcurrency = 3\nmax_attempts = 8\ntimeout = 5\nmax_consecutive_errors = 50"
    )
    summary, box = send(path, faults=Faults(error_503=0.3, error_500=0.1, seed=7))
    rows = results(tmp_path / "test.results.csv")
    statuses = Counter(r["status"] for r in rows)
    assert statuses == summary.counts and statuses["unknown"] > 0 and statuses["sent"] > 0
    assert set(statuses) <= {"sent", "unknown", "failed"} and statuses.total() == 30
    # The sandbox's record, number by number: a 500 ends the row (unknown, one 500 and never
    # another request); a 503 is retried, so each row's requests are its attempts.
    by_number: dict[str, list[int]] = {}
    for r in box.requests:
        by_number.setdefault(r.to, []).append(r.status)
    for row in rows:
        answers = by_number[row["phone"]]
        assert len(answers) == int(row["attempts"]), row
        assert answers[:-1] == [503] * (len(answers) - 1), row
        assert answers[-1] == {"sent": 200, "unknown": 500, "failed": 503}[row["status"]], row
    assert any(len(a) > 1 and a[-1] == 200 for a in by_number.values()), "no 503 was retried into sent"
    # A rerun does not resend unknown rows: nothing is pending, so it sends nothing at all.
    again, box2 = send(path)
    assert box2.requests == []
    assert again.held_unknown == statuses["unknown"] and again.counts == summary.counts


def test_dropped_connection_after_accept_is_unknown_then_reconciled(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(10), sending="rate = 0\nconcurrency = 2\nmax_attempts = 3\ntimeout = 5")

    async def main() -> tuple[runner.Summary, runner.ReconcileReport, list[str]]:
        box = Sandbox(SandboxConfig(api_key=KEY, faults=Faults(drop_after_accept=0.4, seed=5)))
        url = await box.start()
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=url)
            summary = await runner.run(campaign, runner.Options(api_key=KEY, backoff_base=0.01))
            report = await runner.reconcile(campaign, KEY)
            return summary, report, [m.to for m in box.accepted]
        finally:
            await box.close()

    summary, report, accepted = asyncio.run(main())
    unknown = summary.counts["unknown"]
    assert unknown > 0
    assert summary.counts["sent"] + unknown == 10
    assert report.checked == unknown and report.found == unknown and report.pending == 0
    assert len(accepted) == 10  # every request reached the sandbox exactly once
    state = state_of(path)
    assert state.journal_counts() == {"sent": 10}
    state.close()


def test_401_stops_the_run(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(40), sending="rate = 0\nconcurrency = 3\nmax_attempts = 3\ntimeout = 5")

    async def main() -> tuple[runner.Summary, Sandbox]:
        box = Sandbox(SandboxConfig(api_key=KEY))
        url = await box.start()
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=url)
            return await runner.run(campaign, runner.Options(api_key="wrong:key")), box
        finally:
            await box.close()

    summary, box = asyncio.run(main())
    assert summary.exit_code() is ExitCode.STOPPED
    assert summary.stop_reason
    assert len(box.requests) <= 3  # no more than what was in flight
    assert summary.counts["pending"] == 40
    assert "wrong:key" not in summary.stop_reason


def test_invalid_channel_stops_and_blocked_contact_fails(make_campaign: CampaignFactory) -> None:
    rows = contacts(3)
    path = make_campaign(rows)
    summary, _ = send(path, faults=Faults(blocked=frozenset({"+16175550001"})))
    assert summary.counts["sent"] == 2 and summary.counts["failed"] == 1
    state = state_of(path)
    assert state.by_status(Status.FAILED)[0]["error"] == "Contact is blocked."
    state.close()

    async def main() -> runner.Summary:
        box = Sandbox(SandboxConfig(api_key=KEY, channels=frozenset({"twlo_19999999999"})))
        url = await box.start()
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=url, state=path.parent / "other.sqlite")
            return await runner.run(campaign, runner.Options(api_key=KEY, retry_failed=True))
        finally:
            await box.close()

    stopped = asyncio.run(main())
    assert stopped.exit_code() is ExitCode.STOPPED and "Invalid channel_key" in (stopped.stop_reason or "")


def test_retry_failed(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(3))
    first, _ = send(path, faults=Faults(blocked=frozenset({"+16175550001"})))
    assert first.counts["failed"] == 1
    again, box = send(path)
    assert again.held_failed == 1 and box.accepted == []
    retried, box2 = send(path, retry_failed=True)
    assert [m.to for m in box2.accepted] == ["+16175550001"] and retried.exit_code() is ExitCode.OK


def test_dry_run_touches_nothing(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(4))
    summary, box = send(path, dry_run=True)
    assert summary.counts == Counter({"dry-run": 4})
    assert box.requests == []
    assert not has_state(path)
    assert summary.exit_code() is ExitCode.OK


@pytest.mark.parametrize("cell", ["{{ 7*7 }}", "{{ ''.__class__ }}", '=HYPERLINK("http://x")'])
def test_row_data_is_data(make_campaign: CampaignFactory, tmp_path: Path, cell: str) -> None:
    rows = [("+16175550000", "N", cell, "A-1", "e@example.com", "Boston")]
    path = make_campaign(rows)
    _summary, box = send(path)
    assert box.accepted[0].body["text"] == f"Hi {cell}, order A-1 is ready."
    out = (tmp_path / "test.results.csv").read_text(encoding="utf-8-sig")
    if cell.startswith("="):
        assert "'=HYPERLINK" in out


def test_schedule_suppression_media_and_allow_duplicates(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    (tmp_path / "optouts.csv").write_text("Mobile Number\n(617) 555-0002\n", encoding="utf-8")
    rows = contacts(4)
    rows.append(rows[0])  # same number again: allowed here, a second message
    path = make_campaign(
        rows,
        recipients='suppress = ["optouts.csv"]\nallow_duplicates = true',
        message='text = "Order {{ order_id }}"\nimage_url = "https://cdn.example.com/{{ order_id }}.jpg"\n'
        'schedule = "2099-01-02 09:00"\ntimezone = "America/New_York"',
    )
    summary, box = send(path)
    assert summary.counts == Counter({"scheduled": 4, "skipped": 1})
    assert summary.suppressed == 1
    first = box.accepted[0].body
    assert first["image_url"] == "https://cdn.example.com/A-0.jpg"
    assert first["schedule"] == "2099-01-02T09:00:00-05:00"
    assert [m.to for m in box.accepted].count("+16175550000") == 2
    out = results(tmp_path / "test.results.csv")
    assert out[2]["status"] == "skipped" and out[2]["error"] == "suppressed (optouts.csv)"
    assert all(r["message_id"] for r in out if r["status"] == "scheduled")
    # Rerun: the duplicate-allowed rows are remembered by occurrence, nothing is sent again.
    again, box2 = send(path)
    assert box2.accepted == [] and again.already_done == 4


def test_past_or_naive_schedule_is_invalid(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    rows = [
        (*r[:3], when, *r[4:])
        for r, when in zip(contacts(3), ["2001-01-01T00:00:00Z", "2099-01-01 10:00", "not a date"], strict=True)
    ]
    path = make_campaign(rows, message='text = "x"\nschedule = "{{ order_id }}"')
    summary, box = send(path)
    assert summary.counts == Counter({"invalid": 3}) and box.accepted == []
    errors = [r["error"] for r in results(tmp_path / "test.results.csv")]
    assert "in the past" in errors[0] and "no UTC offset" in errors[1] and "not an ISO 8601" in errors[2]


def test_changed_template_after_some_sent_is_counted(make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(5))
    send(path, limit=2)
    path.write_text(path.read_text().replace("is ready.", "is ready!"), encoding="utf-8")
    summary, box = send(path)
    assert summary.changed_since_sent == 2 and len(box.accepted) == 3


def test_broken_state_file_stops_without_hanging() -> None:
    """A journal that cannot commit must stop the pool, not block the producer forever."""
    from campaign.api import SociocsClient
    from campaign.config import Sending
    from campaign.sender import Job, Sender

    async def main() -> tuple[Sender, int]:
        box = Sandbox(SandboxConfig(api_key=KEY))
        url = await box.start()
        state = State(":memory:")
        with state.transaction():
            state.add_recipients([(f"+1617555{i:04d}", f"+1617555{i:04d}", i + 2, "h", "m") for i in range(50)])
        try:
            async with SociocsClient(url, KEY, timeout=5, connections=2) as client:
                sender = Sender(client, state, Sending(rate=0, concurrency=2))
                await sender.start()
                state.db.close()  # every commit now fails
                for i in range(50):
                    body = json.dumps(
                        {"provider": "twlo", "channel_key": "twlo_16175550000", "to": f"+1617555{i:04d}", "text": "x"}
                    ).encode()
                    await sender.put(Job(f"+1617555{i:04d}", i + 2, body, "h", "m", False))
                await asyncio.wait_for(sender.close(), 10)
                return sender, len(box.accepted)
        finally:
            await box.close()

    sender, accepted = asyncio.run(main())
    assert sender.stop_reason and sender.stop_reason.startswith("internal error")
    assert accepted == 0  # the write-ahead mark failed, so nothing was sent


def test_headers_that_are_not_names_are_reached_through_row(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    from tests.conftest import write_csv

    write_csv(tmp_path / "contacts.csv", [("+16175550000", "Ann Lee", "Ann", "A-1")],
              header=("Phone", "Name", "First Name", "order_id"))
    path = make_campaign(message='text = "Hi {{ row[\\"First Name\\"] }} ({{ name }}), {{ order_id }} for {{ phone }}"')
    summary, box = send(path)
    assert summary.counts["sent"] == 1
    assert box.accepted[0].body["text"] == "Hi Ann (Ann Lee), A-1 for +16175550000"


def test_nul_characters_in_cells_and_text_reach_the_state(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """A NUL from a legacy workbook's cell or a ``\\u0000`` in the campaign file's text is sent as
    written and journaled on either engine (PostgreSQL text cannot hold one: U+FFFD there); the
    rerun knows the row was sent."""
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Sheet1")
    for col, value in enumerate(HEADER):
        sheet.write(0, col, value)
    for col, value in enumerate(("+16175550100", "A\x00nn", "A\x00nn", "A-1", "a@example.com", "Bos\x00ton")):
        sheet.write(1, col, value)
    book.save(str(tmp_path / "contacts.xls"))
    path = make_campaign(file="contacts.xls", message='text = "Hi\\u0000 {{ first_name }}"')
    summary, box = send(path)
    assert summary.counts == Counter({"sent": 1}), summary.counts
    assert box.accepted[0].body["text"] == "Hi\x00 A\x00nn"  # the request keeps its NUL characters
    assert box.accepted[0].body["name"] == "A\x00nn"
    [row] = results(tmp_path / "test.results.csv")
    assert row["status"] == "sent" and row["City"] == "Bos\x00ton"  # the cells are JSON: lossless
    assert row["message"] in ("Hi\x00 A\x00nn", "Hi\ufffd A\ufffdnn")
    again, box = send(path)
    assert again.already_done == 1 and box.accepted == []
