"""campaign.runner's small parts, each exactly, in this process (so mutation testing sees them):
the top reasons a summary prints, and the schedule range ``campaign check`` reports."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from campaign import printing, runner, store, timing
from campaign.config import load_campaign
from campaign.errors import ExitCode, LockedError, UsageError
from campaign.leases import Coordinator
from campaign.prepare import BATCH, Pipeline
from campaign.runner import Reasons, Summary, check, preview, status
from campaign.sandbox import Faults, Sandbox, SandboxConfig
from tests.conftest import KEY, CampaignFactory, contacts, state_of, write_csv
from tests.test_record import options, run_on
from tests.test_timing import campaign_file

AT = datetime(2026, 12, 2, 3, tzinfo=UTC)  # a Wednesday, 21:00 on Tuesday in Chicago


def test_reasons_group_rows_by_the_shape_of_their_error() -> None:
    reasons = Reasons()
    for row in (3, 5, 7, 9, 11, 13):
        reasons.add(f"duplicate of row {row - 1}", row)
    reasons.add('bad value "x"', 6)
    reasons.add("bad value 'y'", 8)
    reasons.add("suppressed ('optouts.csv')", 4)
    assert reasons.counts == Counter({"duplicate of row …": 6, "bad value …": 2, "suppressed (…)": 1})
    assert reasons.first == {
        "duplicate of row …": "duplicate of row 2",
        "bad value …": 'bad value "x"',
        "suppressed (…)": "suppressed ('optouts.csv')",
    }
    # The most common first; five example rows at most; a kind of one row shows its own error.
    assert reasons.top() == [
        ("duplicate of row …", 6, [3, 5, 7, 9, 11]),
        ("bad value …", 2, [6, 8]),
        ("suppressed ('optouts.csv')", 1, [4]),
    ]
    assert reasons.top(1) == [("duplicate of row …", 6, [3, 5, 7, 9, 11])]


def test_reasons_of_one_text_show_it_whole() -> None:
    """Rows 15 and 16 both "duplicate of row 12": the summary says so, not "duplicate of row …"."""
    reasons = Reasons()
    reasons.add("duplicate of row 12", 15)
    reasons.add("duplicate of row 12", 16)
    assert reasons.top() == [("duplicate of row 12", 2, [15, 16])]
    reasons.add("duplicate of row 3", 17)
    assert reasons.top() == [("duplicate of row …", 3, [15, 16, 17])]


def test_reasons_top_gives_five_kinds_unless_asked_for_more() -> None:
    reasons = Reasons()
    for n in range(1, 8):
        for row in range(n):
            reasons.add(f"reason {'x' * n}", 100 * n + row)
    assert [count for _, count, _ in reasons.top()] == [7, 6, 5, 4, 3]
    assert [count for _, count, _ in reasons.top(7)] == [7, 6, 5, 4, 3, 2, 1]


def test_note_schedule_keeps_the_earliest_and_latest_instant() -> None:
    summary = Summary()
    summary.note_schedule("2099-01-02T09:00:00-05:00")
    assert summary.scheduled_rows == 1
    assert summary.schedule_range == (datetime(2099, 1, 2, 14, tzinfo=UTC),) * 2
    summary.note_schedule("2099-01-01T20:00:00+01:00")  # earlier, though later on its own clock
    summary.note_schedule("2099-01-03T00:00:00+00:00")
    summary.note_schedule("2099-01-02T12:00:00+00:00")  # between: changes neither end
    assert summary.scheduled_rows == 4
    assert summary.schedule_range == (datetime(2099, 1, 1, 19, tzinfo=UTC), datetime(2099, 1, 3, tzinfo=UTC))


def test_check_reports_how_many_rows_are_scheduled_and_when(make_campaign: CampaignFactory) -> None:
    rows = [
        (*r[:3], when, *r[4:])
        for r, when in zip(contacts(3), ["2099-01-03 09:00", "2099-01-01 09:00", "2099-01-02 09:00"], strict=True)
    ]
    path = make_campaign(rows, message='text = "x"\nschedule = "{{ order_id }}"\ntimezone = "America/New_York"')
    summary = asyncio.run(check(load_campaign(path), prepare_in_child=False))
    assert summary.counts == Counter({"dry-run": 3})
    assert summary.scheduled_rows == 3
    assert summary.schedule_range == (datetime(2099, 1, 1, 14, tzinfo=UTC), datetime(2099, 1, 3, 14, tzinfo=UTC))


def test_check_without_a_schedule_reports_none(make_campaign: CampaignFactory) -> None:
    summary = asyncio.run(check(load_campaign(make_campaign(contacts(2))), prepare_in_child=False))
    assert summary.counts == Counter({"dry-run": 2})
    assert (summary.scheduled_rows, summary.schedule_range) == (0, None)


def test_preview_says_why_an_earlier_run_holds_each_row(make_campaign: CampaignFactory) -> None:
    """Sent, failed and unknown rows, each with its own sentence; an untried row shows its
    request; a second row of a sent number is that row's duplicate; ``n`` rows at most."""
    rows = contacts(4)
    rows.append(rows[0])  # row 6: the number of row 2 again
    path = make_campaign(rows)
    sent, blocked, dropped, untried = (r[0] for r in rows[:4])

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(blocked=frozenset({blocked})))) as box:
            await run_on(box, load_campaign(path), options(limit=2))  # rows 2 and 3: sent, failed
            box.config.faults = Faults(drop_after_accept=1.0)
            await run_on(box, load_campaign(path), options(limit=1))  # row 4: unknown

    asyncio.run(main())
    shown = preview(load_campaign(path), 10)
    held = [(r["row"], r["phone"], r.get("status"), r.get("error")) for r in shown]
    assert held == [
        (2, sent, "sent", "already sent by an earlier run; send does not send it again"),
        (3, blocked, "failed", "failed in an earlier run; send sends it again only with --retry-failed"),
        (4, dropped, "unknown", "its outcome is unknown; send sends it again only with --resend-unknown"),
        (5, untried, None, None),
        (6, sent, "skipped", "duplicate of row 2"),
    ]
    assert shown[3]["request"]["to"] == untried
    assert shown[3]["request"]["text"] == "Hi P3, order A-3 is ready."
    assert shown[3]["segments"] == "1 (GSM-7, 26 characters)"
    assert "request" not in shown[0] and "segments" not in shown[0]
    assert [r["row"] for r in preview(load_campaign(path), 2)] == [2, 3]
    # Re-sorted, a row of the sent number with another order first, and the failed and unknown
    # rows' orders changed: the earlier requests were other messages, and the preview says so.
    def changed(row: tuple[str, ...]) -> tuple[str, ...]:
        return (*row[:3], "Z-9", *row[4:])

    write_csv(path.parent / "contacts.csv", [changed(rows[0]), rows[0], changed(rows[1]), changed(rows[2]), rows[3]])
    shown = preview(load_campaign(path), 5)
    other = " with another message (another row's with this number, or this row's before it changed)"
    assert [(r["row"], r.get("status"), r.get("error")) for r in shown] == [
        (2, "sent", f"already sent by an earlier run{other}; send does not send it again"),
        (3, "skipped", "duplicate of row 2"),
        (4, "failed", f"failed in an earlier run{other}; send sends it again only with --retry-failed"),
        (5, "unknown", f"its outcome is unknown{other}; send sends it again only with --resend-unknown"),
        (6, None, None),
    ]


def test_preview_before_any_run_holds_nothing(make_campaign: CampaignFactory) -> None:
    shown = preview(load_campaign(make_campaign(contacts(2))), 5)
    assert [(r["row"], r.get("status"), r["request"]["to"]) for r in shown] == [
        (2, None, "+16175550000"),
        (3, None, "+16175550001"),
    ]


def _sent(path: Path, **extra: Any) -> Path:
    """``path`` after one send through a sandbox, with the options ``extra`` (``limit=2``)."""

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options(**extra))

    asyncio.run(main())
    return path


def _check_at(path: Path, at: datetime) -> Summary:
    with timing.use_clock(timing.ManualClock(at)):
        return asyncio.run(check(load_campaign(path), prepare_in_child=False))


def test_check_warns_of_a_daily_limit_only_when_there_are_more_recipients(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    rows = [(f"+1312555{i:04d}", f"c{i}", "") for i in range(11)]
    over = _check_at(campaign_file(make_campaign, tmp_path, rows, "daily_limit = 10"), AT)
    assert over.counts == Counter({"dry-run": 11})
    assert over.warnings == [
        "11 recipients but [schedule] daily_limit is 10 per 24 hours (with every other campaign on this channel): "
        "they go out over at least 2 days; rows over the limit wait."
    ]
    assert over.forecast == []  # no window: nothing to forecast per zone
    exact = _check_at(campaign_file(make_campaign, tmp_path, rows, "daily_limit = 11"), AT)
    assert (exact.warnings, exact.forecast) == ([], [])


def test_check_warns_of_days_too_few_for_the_rows(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """A schedule of days without hours: the warning says so (it said 'window days'). 3 rows at one
    per 50,000 s need 150,000 s; Wednesday (local) has 86,400: the rest go out next Wednesday."""
    rows = [(f"+1312555{i:04d}", f"c{i}", "") for i in range(3)]
    path = campaign_file(make_campaign, tmp_path, rows, 'days = ["wed"]', sending="rate = 0.00002\nconcurrency = 1")
    summary = _check_at(path, AT)
    assert summary.forecast == ["America/Chicago: 3 rows, Wed 00:00–Wed 17:40 local (06:00–23:40 UTC)"]
    assert summary.warnings == [
        "3 rows for America/Chicago cannot all go out inside their sending days at 2e-05 per second; the last go "
        "out Wed 09 Dec 17:40 local. Raise [sending] rate or split the campaign."
    ]
    one = campaign_file(make_campaign, tmp_path, rows[:1], 'days = ["wed"]', sending="rate = 0.00001", name="one")
    assert _check_at(one, AT).warnings == [  # one row taking 100,000 s of a day's 86,400
        "1 row for America/Chicago cannot go out inside its sending days at 1e-05 per second; it ends "
        "Wed 09 Dec 03:46 local. Raise [sending] rate or split the campaign."
    ]


def test_resend_unknown_never_takes_another_campaigns_message_on_the_channel(make_campaign: CampaignFactory) -> None:
    """Two campaigns send the same text to one number on one channel; the second's answer is
    lost. ``--resend-unknown`` reconciles first, leaving out the message id the first campaign
    holds (the ledger's registry of the channel's states): the one left is the row's own, found,
    and nothing is sent a third time."""
    first = make_campaign(contacts(1), message='text = "Hi"', name="first")
    second = make_campaign(contacts(1), message='text = "Hi"', name="second")

    async def main() -> tuple[Summary, Sandbox]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            assert (await run_on(box, load_campaign(first), options())).counts == Counter({"sent": 1})
            box.config.faults = Faults(drop_after_accept=1.0)
            assert (await run_on(box, load_campaign(second), options())).counts == Counter({"unknown": 1})
            box.config.faults = Faults()
            return await run_on(box, load_campaign(second), options(resend_unknown=True)), box

    summary, box = asyncio.run(main())
    assert [m.to for m in box.accepted] == ["+16175550000"] * 2
    assert summary.reconciled is not None and (summary.reconciled.found, summary.held_ambiguous) == (1, 0)
    assert summary.counts == Counter({"sent": 1}) and summary.sent_now == 0


def test_allow_duplicates_numbers_each_numbers_recipients_from_one(make_campaign: CampaignFactory) -> None:
    """A recipient is (number, n-th occurrence): ``+1…#1``, ``#2``, one number's count apart
    from another's, and a rerun with one more row of a number adds the next n."""
    ann, bob = contacts(2)
    path = make_campaign([ann, bob, ann], recipients="allow_duplicates = true")

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options())
            write_csv(path.parent / "contacts.csv", [ann, bob, ann, bob, ann])
            await run_on(box, load_campaign(path), options())
            assert len(box.accepted) == 5

    asyncio.run(main())
    state = state_of(path)
    try:
        keys = dict(state.db.execute("SELECT key, row FROM recipients ORDER BY row").fetchall())
    finally:
        state.close()
    a, b = ann[0], bob[0]
    assert keys == {f"{a}#1": 2, f"{b}#1": 3, f"{a}#2": 4, f"{b}#2": 5, f"{a}#3": 6}


def test_allow_duplicates_numbers_a_numbers_rows_on_across_batches(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """Rows are planned in batches (prepare.BATCH rows first): a number's 31st row, in the
    second batch, takes the next recipient (``#31``) and is sent, never taken for one of the 30
    already planned; a suppressed row is left out with allow_duplicates too."""
    x = "+16175559999"
    mine = [(x, f"X {i}", "X", f"X-{i}", "x@x", "B") for i in range(31)]
    rows = [*mine[:30], ("+16175559998", "Opt", "Opt", "O", "o@x", "B"), *contacts(BATCH - 31), mine[30]]
    (tmp_path / "optouts.csv").write_text("Phone\n+16175559998\n", encoding="utf-8")
    path = make_campaign(
        rows,
        recipients='allow_duplicates = true\nsuppress = ["optouts.csv"]',
        sending="rate = 0\nconcurrency = 8\nmax_attempts = 3\ntimeout = 5",
    )

    async def main() -> tuple[Summary, Counter[str]]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            summary = await run_on(box, load_campaign(path), options())
            return summary, Counter(m.body["text"] for m in box.accepted if m.to == x)

    summary, texts = asyncio.run(main())
    assert summary.counts == Counter({"sent": BATCH, "skipped": 1}) and summary.suppressed == 1
    assert texts == Counter(f"Hi X, order X-{i} is ready." for i in range(31))


def test_preview_of_a_resorted_sheet_with_allow_duplicates_shows_what_send_does(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """Two rows to one number, the first sent; the sheet re-sorted. ``send`` gives each row the
    recipient whose request was its own (its message), so it sends Bob's row and holds Ann's:
    the preview must say the same, not number the rows by position (it showed Bob's row as
    already sent and Ann's as about to go)."""
    ann = ("+16175550001", "Ann", "Ann", "A-1", "a@example.com", "Boston")
    bob = ("+16175550001", "Bob", "Bob", "B-2", "b@example.com", "Boston")
    cy = ("+16175550001", "Cy", "Cy", "C-3", "c@example.com", "Boston")
    path = make_campaign([ann, bob], recipients="allow_duplicates = true")

    async def main() -> tuple[list[dict[str, Any]], list[str]]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options(limit=1))  # Ann's row only
            write_csv(tmp_path / "contacts.csv", [bob, cy, ann, bob])  # re-sorted, one row more, Bob twice
            shown = preview(load_campaign(path), 10)
            await run_on(box, load_campaign(path), options())
            return shown, [str(m.body["text"]) for m in box.accepted[1:]]

    shown, sent = asyncio.run(main())
    assert [(r["row"], r.get("status"), r.get("request", {}).get("text")) for r in shown] == [
        (2, None, "Hi Bob, order B-2 is ready."),
        (3, None, "Hi Cy, order C-3 is ready."),
        (4, "sent", None),
        (5, None, "Hi Bob, order B-2 is ready."),
    ]
    assert shown[2]["error"] == "already sent by an earlier run; send does not send it again"
    assert [s["segments"] for s in shown if "request" in s] == [f"1 (GSM-7, {n} characters)" for n in (27, 26, 27)]
    # What the preview said would go is what goes.
    assert sent == [r["request"]["text"] for r in shown if "request" in r]


def test_status_reports_failed_rows_their_reasons_and_rows_left_by_limit(
    make_campaign: CampaignFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [*contacts(4), ("abc0", "Bad", "B", "B", "b@x", "X"), ("abc1", "Bad", "B", "B", "b@x", "X")]
    blocked = rows[1][0]
    path = make_campaign(rows, message='text = "Hi"\nschedule = "2099-01-02 09:00"\ntimezone = "UTC"')

    async def main() -> None:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(blocked=frozenset({blocked})))) as box:
            await run_on(box, load_campaign(path), options(limit=3))

    asyncio.run(main())
    report = status(load_campaign(path))
    assert report.counts == {"scheduled": 2, "failed": 1, "pending": 1, "invalid": 2}
    assert report.limit_pending == 1
    assert [(f["row"], f["phone"]) for f in report.failed] == [(3, blocked)]
    assert report.reasons["failed"].top() == [("Contact is blocked.", 1, [3])]
    assert report.reasons["invalid"].top() == [("phone: … is not a phone number", 2, [6, 7])]
    assert set(report.reasons) == {"failed", "invalid"}
    printing.print_status(report, "c.toml", None)
    printed = capsys.readouterr().out
    assert printed.count("  invalid (2): phone: … is not a phone number — rows 6, 7\n") == 1  # next week too
    assert "  failed (1): Contact is blocked. — row 3\n" in printed
    assert [r["row"] for r in report.scheduled] == [2, 4]
    assert (report.unknown, report.unread, report.workers) == ([], False, [])
    with timing.use_clock(timing.ManualClock(datetime(2099, 1, 2, 9, tzinfo=UTC))):  # the moment they go
        assert status(load_campaign(path)).scheduled == []
    assert report.exit_code() is ExitCode.ROWS_NOT_SENT
    status(load_campaign(path), results_path=tmp_path / "elsewhere.csv")  # a send's columns: no segments
    with (tmp_path / "elsewhere.csv").open(encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle))
    assert header[-3:] == ["attempts", "message", "updated_at"] and "segments" not in header


def test_cancel_of_a_campaign_sent_for_real_takes_back_its_scheduled_rows(make_campaign: CampaignFactory) -> None:
    """``cancel`` without ``sandbox``: the campaign's own state (not its sandbox trial's)."""
    path = make_campaign(contacts(2), message='text = "Hi"\nschedule = "2099-01-02 09:00"\ntimezone = "UTC"')

    async def main() -> tuple[list[int], Sandbox]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            campaign = dataclasses.replace(load_campaign(path), api_url=box.url)
            await runner.run(campaign, options())
            report = await runner.cancel(campaign, KEY)
            return [r["row"] for r in report.cancelled], box

    cancelled, box = asyncio.run(main())
    assert cancelled == [2, 3]
    assert sorted(box.scheduled.deleted) == sorted(m.message_id for m in box.accepted)


def test_check_writes_its_report_where_asked(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    report = tmp_path / "check-report.csv"
    summary = asyncio.run(check(load_campaign(make_campaign(contacts(2))), report=report, prepare_in_child=False))
    assert summary.counts == Counter({"dry-run": 2})
    with report.open(encoding="utf-8-sig", newline="") as handle:
        got = [(r["row"], r["phone"], r["status"], r["segments"], r["encoding"]) for r in csv.DictReader(handle)]
    assert got == [("2", "+16175550000", "dry-run", "1", "GSM-7"), ("3", "+16175550001", "dry-run", "1", "GSM-7")]


def test_check_counts_every_kind_of_row_of_a_mixed_sheet(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """What ``check`` tells before a send, each figure exact: duplicates, suppressed, each kind
    of invalid number with its first five rows and the first row's own sentence, blanks,
    destinations per country, SMS to fixed lines, segments (GSM-7 and UCS-2)."""
    rows = [
        ("+16175550000", "Ann", "Ann", "A-1", "a@x", "Boston"),  # 2
        ("(617) 555-0000", "Ann again", "Ann", "A-2", "a@x", "Boston"),  # 3: duplicate of row 2
        ("+447911123456", "Uma", "", "U-1", "u@x", "London"),  # 4: a +44 mobile (Guernsey), first_name blank
        ("+442079460000", "Lou", "Lou", "L-1", "l@x", "London"),  # 5: GB fixed line
        ("+16175550009", "Opt", "Opt", "O-1", "o@x", "Boston"),  # 6: suppressed
        *[(f"abc{i}", "Bad", "Bad", "B", "b@x", "X") for i in range(7)],  # 7-13: not a phone number
        ("12", "Short", "S", "S", "s@x", "X"),  # 14: too short
        ("+16175550002", "Zoe", "Zoë 😀", "Z-1", "z@x", "Boston"),  # 15: UCS-2
        ("+16175550003", "Long", "L" * 200, "L-2", "z@x", "Boston"),  # 16: two segments
    ]
    (tmp_path / "optouts.csv").write_text("Mobile Number\n(617) 555-0009\n", encoding="utf-8")
    path = make_campaign(rows, recipients='suppress = ["optouts.csv"]')
    s = asyncio.run(check(load_campaign(path), prepare_in_child=False))
    assert s.counts == Counter({"dry-run": 5, "invalid": 8, "skipped": 2})
    assert (s.rows, s.duplicates, s.suppressed, s.to_send) == (15, 1, 1, 5)
    fix = "if it is another country's number, write it with + and the country code (for example +44 7911 123456)"
    not_a_number, too_short = "phone: … is not a phone number", f"phone: … is too short for US; {fix}"
    assert s.invalid_reasons == Counter({not_a_number: 7, too_short: 1})
    assert s.invalid_examples == {not_a_number: [7, 8, 9, 10, 11], too_short: [14]}
    assert s.invalid_first == {
        not_a_number: "phone: 'abc0' is not a phone number",
        too_short: f"phone: '12' is too short for US; {fix}",
    }
    assert (s.blanks, s.blank_examples) == (Counter({"first_name": 1}), {"first_name": [4]})
    assert s.countries == Counter({"US": 3, "GB": 1, "GG": 1})  # +44 7911 12… is Guernsey (phonenumbers)
    assert (s.landlines, s.landline_examples) == (1, [5])
    assert (s.segments, s.multi_segment, s.unicode_rows) == (6, 1, 1)
    assert s.reasons["skipped"].top() == [("duplicate of row 2", 1, [3]), ("suppressed (optouts.csv)", 1, [6])]
    assert (s.already_done, s.held_failed, s.held_unknown, s.limit_pending, s.not_reached) == (0, 0, 0, 0, 0)


def test_check_counts_each_kind_of_row_past_one_and_lists_five_examples_at_most(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """Every figure of ``check`` adds each row (two or more of each kind here, so a count set
    to 1 or taken away shows) and each list of example rows stops at five."""
    rows = [
        *[("+16175550000", f"Ann {i}", "Ann", "A", "a@x", "B") for i in range(3)],  # 2-4: 3, 4 duplicates of 2
        *[(f"+1617555001{i}", "Opt", "Opt", "O", "o@x", "B") for i in range(2)],  # 5-6: suppressed
        *[(f"+1617555002{i}", "Nil", "", "N", "n@x", "B") for i in range(6)],  # 7-12: first_name blank
        *[(f"+44207946000{i}", "Lou", "Lou", "L", "l@x", "L") for i in range(6)],  # 13-18: GB fixed lines
        *[(f"+1617555003{i}", "Long", "L" * 200, "L", "z@x", "B") for i in range(2)],  # 19-20: two segments
        ("abc", "Bad", "Bad", "B", "b@x", "X"),  # 21: not a phone number
    ]
    (tmp_path / "optouts.csv").write_text("Phone\n+16175550010\n+16175550011\n", encoding="utf-8")
    campaign = load_campaign(make_campaign(rows, recipients='suppress = ["optouts.csv"]'))
    s = asyncio.run(check(campaign, prepare_in_child=False))
    assert (s.rows, s.duplicates, s.suppressed, s.to_send) == (20, 2, 2, 15)
    # The report shows what a duplicate would have said; a row with no message shows none.
    with campaign.report.open(encoding="utf-8-sig", newline="") as handle:
        messages = {int(r["row"]): r["message"] for r in csv.DictReader(handle)}
    assert [messages[row] for row in (2, 3, 4)] == ["Hi Ann, order A is ready."] * 3
    assert [messages[row] for row in (5, 6, 21)] == ["", "", ""]
    assert (s.blanks, s.blank_examples) == (Counter({"first_name": 6}), {"first_name": [7, 8, 9, 10, 11]})
    assert (s.landlines, s.landline_examples) == (6, [13, 14, 15, 16, 17])
    assert (s.segments, s.multi_segment, s.unicode_rows) == (17, 2, 0)
    assert s.countries == Counter({"US": 9, "GB": 6})


def test_rows_planned_after_the_run_stopped_are_each_recorded_pending(make_campaign: CampaignFactory) -> None:
    """Once a run stops, the rest of the file is still planned so the results file has every
    row: each row of a batch is recorded, pending, and counted as not reached; none is sent."""
    campaign = load_campaign(make_campaign(contacts(4)))
    summary = Summary()
    state = store.open_state(campaign)
    try:
        planner = runner.Planner(campaign, state, options(), summary)
        planner.stopped = True
        (batch,) = Pipeline(campaign).batches()
        assert planner.plan(batch) == []
        assert (summary.rows, summary.not_reached, planner.queued) == (4, 4, 0)
        keys = [p.key for p in batch]
        assert sorted(state.known([k for k in keys if k is not None])) == sorted(keys)
        assert Counter(state.counts()) == Counter({"pending": 4})
    finally:
        state.close()


def test_a_rerun_counts_what_it_holds_back_and_why(make_campaign: CampaignFactory) -> None:
    """Rows 2-3: answers lost (unknown); 4-5 refused (failed); 6-7 sent. A rerun with
    ``--limit 1`` holds each back for its own reason, sends row 8 and leaves row 9 for later."""
    rows = contacts(8)

    async def main() -> Summary:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(drop_after_accept=1.0))) as box:
            await run_on(box, load_campaign(path), options(limit=2))
            box.config.faults = Faults(blocked=frozenset({rows[2][0], rows[3][0]}))
            await run_on(box, load_campaign(path), options(limit=4))
            box.config.faults = Faults()
            return await run_on(box, load_campaign(path), options(limit=1))

    path = make_campaign(rows)
    s = asyncio.run(main())
    assert s.counts == Counter({"unknown": 2, "failed": 2, "sent": 3, "pending": 1})
    assert (s.held_unknown, s.held_failed, s.already_done, s.limit_pending) == (2, 2, 2, 1)
    assert (s.sent_now, s.to_send, s.rows) == (1, 1, 8)
    assert s.outcomes == Counter({"sent": 1})


def test_a_send_counts_each_outcome_once_and_knows_its_total(make_campaign: CampaignFactory) -> None:
    rows = contacts(3)

    async def main() -> Summary:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(blocked=frozenset({rows[1][0]})))) as box:
            return await run_on(box, load_campaign(make_campaign(rows)), options())

    s = asyncio.run(main())
    assert (s.finished_now, s.sent_now, s.outcomes) == (3, 2, Counter({"sent": 2, "failed": 1}))
    assert (s.read_all, s.total, s.to_send) == (True, 3, 3)


def test_check_forecasts_nothing_for_send_at_without_a_window(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """send_at alone: each request carries its own schedule and goes now; there is no window
    to forecast, though every row has its zone."""
    rows = [(f"+1312555{i:04d}", f"c{i}", "") for i in range(2)]
    summary = _check_at(campaign_file(make_campaign, tmp_path, rows, 'send_at = "2026-12-03 09:00"'), AT)
    assert summary.zones == Counter({("America/Chicago",): 2})
    assert (summary.forecast, summary.warnings) == ([], [])


def test_check_with_send_at_and_a_window_says_its_times_are_when_the_requests_are_posted(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """The window only checks each row's schedule: the requests go now, outside it, and the API
    delivers them at send_at. The times are labelled so, not "goes out"."""
    rows = [(f"+1312555{i:04d}", f"c{i}", "") for i in range(2)]
    path = campaign_file(make_campaign, tmp_path, rows, 'send_at = "2026-12-03 09:00"\nwindow = "08:00-21:00"')
    summary = _check_at(path, AT)
    assert summary.forecast_label == "posted"
    assert summary.forecast_note == "The API holds each message until send_at 2026-12-03 09:00, the recipient's time."
    assert summary.forecast == ["America/Chicago: 2 rows, Tue 21:00–Tue 21:00 local (03:00–03:00 UTC)"]
    plain = _check_at(campaign_file(make_campaign, tmp_path, rows, 'window = "08:00-21:00"', name="plain"), AT)
    assert (plain.forecast_label, plain.forecast_note) == ("goes out", "")
    assert plain.forecast[0].startswith("America/Chicago: 2 rows, Wed 08:00")


def test_each_run_records_how_it_ended(make_campaign: CampaignFactory) -> None:
    """The runs table (``status``'s last run): a refused key stops the run, a Ctrl-C (the stop
    event) interrupts it, and a run that sends every row finishes."""
    path = make_campaign(contacts(2))

    async def main() -> list[Any]:
        ended: list[Any] = []
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            campaign = dataclasses.replace(load_campaign(path), api_url=box.url)
            refused = await runner.run(campaign, options(api_key="someone:else12345"))
            ended.append((status(campaign).last_run or {}).get("outcome"))
            stop = asyncio.Event()
            stop.set()
            interrupted = await runner.run(campaign, options(), stop_event=stop)
            ended.append((status(campaign).last_run or {}).get("outcome"))
            finished = await runner.run(campaign, options())
            ended.append((status(campaign).last_run or {}).get("outcome"))
            assert (refused.exit_code(), interrupted.interrupted, finished.counts) == (
                ExitCode.STOPPED,
                True,
                Counter({"sent": 2}),
            )
            # The stop event stops the sender itself: the interrupted run sent nothing.
            assert (interrupted.requests, interrupted.sent_now, interrupted.counts) == (0, 0, Counter({"pending": 2}))
            after = status(campaign)
            assert (after.limit_pending, after.exit_code()) == (0, ExitCode.OK)  # no --limit left rows
        return ended

    assert asyncio.run(main()) == ["stopped", "interrupted", "finished"]


@pytest.mark.backend("postgresql")
def test_status_of_a_shared_campaign_leaves_a_live_workers_flights_out_of_unknown(
    make_campaign: CampaignFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row ``sending`` under a running worker is that worker's (listed with it), not a dead
    run's unknown row; once no worker runs, it is unknown, with the in-flight sentence."""
    monkeypatch.setenv("CAMPAIGN_LEASE_SECONDS", "100000")
    path = make_campaign(contacts(2))
    phone = contacts(1)[0][0]
    state = state_of(path)
    try:
        live = Coordinator(state, planner=False)
        live.register()
        with state.transaction():
            state.add_recipients([(phone, phone, 2, "h", "Hi")])
            state.db.execute(
                "UPDATE recipients SET status = 'sending', lease_owner = ? WHERE key = ?", (live.id, phone)
            )
        report = status(load_campaign(path))
        assert report.unknown == []
        assert [(w["id"], w["state"], w["in_flight"]) for w in report.workers] == [(live.id, "running", 1)]
        state.db.execute("UPDATE workers SET state = 'finished' WHERE id = ?", (live.id,))
        report = status(load_campaign(path))
        assert [(u["phone"], u["error"]) for u in report.unknown] == [
            (phone, "a run was sending it when it stopped (or is sending it now); it may have been delivered")
        ]
        assert [w["state"] for w in report.workers] == ["finished"]
    finally:
        state.close()


def test_allow_duplicates_with_an_invalid_row_sends_every_valid_row(make_campaign: CampaignFactory) -> None:
    """An invalid row among a number's rows is left as it is, and the rows after it are still
    numbered, previewed and sent."""
    ann, bob = contacts(2)
    bad = ("not a number", *ann[1:])
    path = make_campaign([ann, bad, ann, bob], recipients="allow_duplicates = true")
    shown = preview(load_campaign(path), 10)
    assert [(r["row"], r.get("status")) for r in shown] == [(2, None), (3, "invalid"), (4, None), (5, None)]

    async def main() -> Summary:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            summary = await run_on(box, load_campaign(path), options())
            assert [m.to for m in box.accepted] == [ann[0], ann[0], bob[0]]
            return summary

    assert asyncio.run(main()).counts == Counter({"sent": 3, "invalid": 1})


def test_check_of_a_sheet_with_no_valid_row_warns_of_nothing_to_send_late(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    rows = [("not a number", "x", ""), ("12", "y", "")]
    summary = _check_at(campaign_file(make_campaign, tmp_path, rows, "daily_limit = 1"), AT)
    assert summary.counts == Counter({"invalid": 2})
    assert (summary.forecast, summary.warnings) == ([], [])


def test_status_reconcile_and_cancel_never_record_which_campaign_file_is_the_states(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """Only a send records the campaign file a state file belongs to. The file renamed, read
    with ``status``, ``reconcile`` and ``cancel`` under its new name, then put back under its
    old name beside the renamed one: the old name still continues its own campaign."""
    path = make_campaign(contacts(2))

    async def main() -> Summary:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            await run_on(box, load_campaign(path), options())
            moved = path.rename(tmp_path / "moved.toml")
            campaign = dataclasses.replace(load_campaign(moved), api_url=box.url)
            assert status(campaign).counts == {"sent": 2}
            assert (await runner.reconcile(campaign, KEY)).checked == 0
            assert (await runner.cancel(campaign, KEY)).cancelled == []
            path.write_bytes(moved.read_bytes())
            return await run_on(box, load_campaign(path), options())

    again = asyncio.run(main())
    assert (again.already_done, again.requests) == (2, 0)
    state = state_of(path)
    try:
        assert state.meta("campaign_file") == "test.toml"
    finally:
        state.close()


def test_a_send_without_an_api_key_or_a_worker_without_postgresql_is_one_sentence(
    make_campaign: CampaignFactory,
) -> None:
    campaign = load_campaign(make_campaign(contacts(1)))
    with pytest.raises(UsageError) as no_key:
        asyncio.run(runner.run(campaign, runner.Options()))
    assert str(no_key.value) == (
        "Set SOCIOCS_API_KEY to your Sociocs API key (Profile & settings → API), or add "
        "--sandbox to try the campaign against the built-in local API."
    )
    with pytest.raises(UsageError) as no_database:
        asyncio.run(runner.run(campaign, options(worker=True)))
    assert str(no_database.value) == (
        '--worker shares a campaign between runs through PostgreSQL: set state = "postgresql://..." in '
        'the campaign file or CAMPAIGN_STATE_URL (README, "Several workers").'
    )


def test_a_duplicate_in_a_later_batch_is_skipped_as_the_first_rows(make_campaign: CampaignFactory) -> None:
    """Rows are planned in batches (prepare.BATCH rows first): a number's second row in a later
    batch is still a duplicate of its first row, never a second message."""
    rows = contacts(300)
    rows.append(rows[0])  # row 302: the number of row 2, 300 rows later
    path = make_campaign(rows, sending="rate = 0\nconcurrency = 8\nmax_attempts = 3\ntimeout = 5")

    async def main() -> tuple[Summary, Counter[str]]:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            summary = await run_on(box, load_campaign(path), options())
            return summary, Counter(m.to for m in box.accepted)

    summary, sent = asyncio.run(main())
    assert summary.counts == Counter({"sent": 300, "skipped": 1}) and summary.duplicates == 1
    assert summary.rows == 301  # every batch's rows, not the last batch's
    assert len(sent) == 300 and set(sent.values()) == {1}
    assert summary.reasons["skipped"].top() == [("duplicate of row 2", 1, [302])]


@pytest.mark.parametrize("provider", ["twlowa", "gswa"])
def test_campaign_warnings_are_whole_sentences_in_order(make_campaign: CampaignFactory, provider: str) -> None:
    """Plain text over WhatsApp, and a default_country outside [recipients] countries: allowed,
    each said in full; neither for SMS text, a WhatsApp template, or a country list that holds
    the default."""
    path = make_campaign(provider=provider, message='text = "Hi"', recipients='countries = ["CA", "MX"]')
    assert runner.campaign_warnings(load_campaign(path)) == [
        f"plain text over WhatsApp ({provider}) only reaches people who wrote to you in the last 24 hours; for a "
        "campaign, use an approved template ([message] template_id).",
        "default_country US is not in [recipients] countries (CA, MX), so every number written without + and a "
        "country code will be invalid.",
    ]
    template = 'template_id = "HX0123456789abcdef0123456789abcdef"\nvariables = { "1" = "x" }'
    if provider == "gswa":
        template = 'template_id = "4f3a2b1c-0d9e-4f8a-b7c6-5d4e3f2a1b0c"\n[message.variables.Body]\n"1" = "x"'
    for message, recipients in ((template, 'countries = ["US", "CA"]'), (template, "")):
        path = make_campaign(provider=provider, message=message, recipients=recipients)
        assert runner.campaign_warnings(load_campaign(path)) == []
    path = make_campaign(message='text = "Hi"', recipients='countries = ["US"]')
    assert runner.campaign_warnings(load_campaign(path)) == []


def test_a_send_keeps_the_campaigns_figures_and_records_how_it_ended(make_campaign: CampaignFactory) -> None:
    path = make_campaign(
        contacts(3), provider="twlowa", message='text = "Hi"', sending="rate = 50\nconcurrency = 2\ntimeout = 5"
    )

    async def main() -> Summary:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            return await run_on(box, load_campaign(path), options(expected=3))

    summary = asyncio.run(main())
    assert summary.counts == Counter({"sent": 3}) and not summary.dry_run and summary.read_all
    assert (summary.rate, summary.expected) == (50.0, 3)
    assert summary.warnings == runner.campaign_warnings(load_campaign(path)) and len(summary.warnings) == 1
    assert 0 <= summary.elapsed < 60
    state = state_of(path)
    try:
        assert (state.last_run()["command"], state.last_run()["outcome"]) == ("send", "finished")
    finally:
        state.close()


def test_check_reads_an_earlier_sends_state_on_any_api_and_writes_only_its_report(
    make_campaign: CampaignFactory,
) -> None:
    """After a send of two rows of three (through a sandbox), ``check`` with the campaign file's
    own api_url: the state is read (two already sent), the API is not compared (check sends
    nothing), and its report is written, not the results file."""
    campaign = load_campaign(_sent(make_campaign(contacts(3)), limit=2))
    results = campaign.results.read_bytes()
    summary = asyncio.run(check(campaign, prepare_in_child=False))
    assert summary.dry_run and summary.read_all
    assert summary.counts == Counter({"dry-run": 1, "sent": 2}) and summary.already_done == 2
    assert campaign.results.read_bytes() == results
    with campaign.report.open(encoding="utf-8-sig") as report:
        assert [r["status"] for r in csv.DictReader(report)] == ["sent", "sent", "dry-run"]


def test_the_confirmations_count_writes_no_file_and_takes_no_lock(make_campaign: CampaignFactory) -> None:
    """``send``'s confirmation counts the rows (a dry run, write_results False) while another
    send holds the lock; that send itself is refused."""
    campaign = load_campaign(make_campaign(contacts(2)))
    with store.lock(campaign):
        counted = asyncio.run(
            runner.run(campaign, options(dry_run=True, command="plan", write_results=False, prepare_in_child=False))
        )
        with pytest.raises(LockedError):
            asyncio.run(runner.run(campaign, options()))
    assert counted.counts == Counter({"dry-run": 2})
    assert not campaign.results.exists() and not campaign.report.exists()


def test_rows_waiting_for_their_days_are_left_for_a_later_run(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """On a Wednesday, a campaign that sends on Thursdays sends nothing: its three rows wait,
    and the state says three rows are left for later (what ``status`` counts)."""
    rows = [(f"+1312555{i:04d}", f"c{i}", "") for i in range(3)]
    path = campaign_file(make_campaign, tmp_path, rows, 'days = ["thu"]')

    async def main() -> Summary:
        async with Sandbox(SandboxConfig(api_key=KEY)) as box:
            return await run_on(box, load_campaign(path), options(limit=5))

    with timing.use_clock(timing.ManualClock(AT)):
        summary = asyncio.run(main())
    assert (summary.waiting, summary.limit_pending, summary.sent_now) == (3, 0, 0)
    state = state_of(path)
    try:
        assert state.meta(runner.LIMIT_PENDING_META) == "3"
    finally:
        state.close()


def _report_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_checks_report_gives_each_sms_rows_segments_and_a_row_without_a_message_none(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """``check`` of an SMS campaign counts each row's message in its report: a long GSM-7 text
    is 2 segments, a name outside GSM-7 makes the text UCS-2, an invalid row (no message) has
    both cells blank, and a duplicate row's own message is counted too (what it would send)."""
    rows = contacts(4)
    rows[0] = (rows[0][0], rows[0][1], "A" * 200, *rows[0][3:])
    rows[1] = (rows[1][0], rows[1][1], "Łukasz", *rows[1][3:])
    rows[2] = ("12345", *rows[2][1:])
    rows.append((rows[1][0], "Again", "Zoë", *rows[1][3:]))
    report = tmp_path / "report.csv"
    asyncio.run(check(load_campaign(make_campaign(rows)), report=report, prepare_in_child=False))
    got = [(r["status"], r["message"] != "", r["segments"], r["encoding"]) for r in _report_rows(report)]
    assert got == [
        ("dry-run", True, "2", "GSM-7"),
        ("dry-run", True, "1", "UCS-2"),
        ("invalid", False, "", ""),
        ("dry-run", True, "1", "GSM-7"),
        ("skipped", True, "1", "UCS-2"),
    ]


def test_finish_summary_writes_the_results_where_asked_or_says_why_it_could_not(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """What every send ends with (a worker's too, which passes no ``with_segments``): counts from
    the state, the results file without segment columns and its path; a target whose folder is
    a file is one sentence in ``results_error``; no target, no file."""
    path = _sent(make_campaign(contacts(2)))
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    again, blocked = tmp_path / "again.csv", tmp_path / "a-file" / "results.csv"
    written, refused, counted = Summary(), Summary(), Summary()
    state = state_of(path)
    try:
        runner.finish_summary(state, written, again)
        runner.finish_summary(state, refused, blocked)
        runner.finish_summary(state, counted, None)
    finally:
        state.close()
    assert (written.results_path, written.results_error) == (again, None)
    assert [r["status"] for r in _report_rows(again)] == ["sent", "sent"]
    assert "segments" not in again.read_text(encoding="utf-8-sig").splitlines()[0]
    assert refused.results_path is None
    assert refused.results_error.startswith(f"cannot write {blocked} (") and refused.results_error.endswith(")")
    assert "a-file" in refused.results_error.partition(" (")[2]  # the folder that is a file is named
    assert counted.results_path is None and counted.counts == Counter({"sent": 2}) == written.counts
    assert not blocked.exists()


def test_rewrite_results_writes_the_states_rows_again(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """After delivery reports, with no run open: the results file again, from the state alone."""
    campaign = load_campaign(_sent(make_campaign(contacts(3)), limit=2))
    again = tmp_path / "again.csv"
    assert runner.rewrite_results(campaign, again) == 3
    assert again.read_bytes() == campaign.results.read_bytes()
    assert [r["status"] for r in _report_rows(again)] == ["sent", "sent", "pending"]


def test_only_a_sandbox_started_for_one_run_has_no_peers(make_campaign: CampaignFactory) -> None:
    """Reconcile leaves out the message ids of the channel's other campaigns, except on a
    sandbox started for this run alone, where no other campaign can have sent."""
    campaign = load_campaign(make_campaign(contacts(1)))
    own = runner.Options(sandbox=True, sandbox_per_run=True)
    assert runner.peers_channel(campaign, own) is None
    for opts in (runner.Options(sandbox=True), runner.Options()):
        assert runner.peers_channel(campaign, opts) == runner.channel_name(runner.identity(campaign, opts))
    real, sandbox = (runner.peers_channel(campaign, runner.Options(sandbox=s)) for s in (False, True))
    assert real != sandbox


def test_sendable_phones_are_the_rows_with_a_recipient_and_no_status() -> None:
    from campaign.prepare import Prepared
    from campaign.state import Status

    batch = [
        Prepared(2, "[]", "+16175550000", "+16175550000", None),
        Prepared(3, "[]", "+16175550001", None, Status.INVALID, "not a number"),
        Prepared(4, "[]", "+16175550000", "+16175550000", Status.SKIPPED, "duplicate of row 2"),
        Prepared(5, "[]", "+16175550002", None, None),  # no recipient: never asked about
        Prepared(6, "[]", "+16175550003", "+16175550003#2", None),
    ]
    assert runner.sendable_phones(batch) == ["+16175550000", "+16175550003"]


def test_how_a_run_ended_from_the_senders_figures_and_the_recipients_files_error() -> None:
    """The file broke before any request: its error is raised (an input error, exit 2). After
    one request: the run stopped (exit 3) with the sender's reason. Else a stop event set means
    interrupted, and nothing means finished."""
    from types import SimpleNamespace

    from campaign.errors import InputFileError

    broke = InputFileError("contacts.csv", "row 9 has 7 cells")

    def ended(requests: int, stop_reason: str = "", stop: bool = False, error: Any = None) -> tuple[str, Summary]:
        sender = SimpleNamespace(rate_limited=2, requests=requests, stop_reason=stop_reason)
        event = asyncio.Event()
        if stop:
            event.set()
        summary = Summary()
        return runner.run_outcome(summary, sender, event, error), summary  # type: ignore[arg-type]

    with pytest.raises(InputFileError) as caught:
        ended(0, "reading the recipients stopped: …", error=broke)
    assert caught.value is broke
    label, summary = ended(1, "reading the recipients stopped: …", error=broke)
    assert (label, summary.stop_reason, summary.requests, summary.rate_limited) == (
        "stopped",
        "reading the recipients stopped: …",
        1,
        2,
    )
    assert ended(5, stop=True)[0] == "interrupted" and ended(5, stop=True)[1].interrupted
    assert ended(5)[0] == "finished" and not ended(5)[1].interrupted
    assert ended(5, "too many errors in a row", stop=True)[0] == "stopped"
