"""When each recipient hears from a campaign (issue 13): zones, local send_at, quiet hours,
the daily limit. Over real HTTP against the sandbox, with the one clock moved, never slept."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from campaign import runner, store, timing
from campaign.config import Schedule, load_campaign
from campaign.errors import ConfigError, ExitCode
from campaign.ledger import Ledger
from campaign.sandbox import Faults, Sandbox, SandboxConfig
from campaign.state import Outcome
from tests.conftest import KEY, CampaignFactory

HEADER = ("Phone", "Name", "Zone")
NEW_YORK, CHICAGO, LOS_ANGELES = "+12125550100", "+13125550100", "+12135550100"
LONDON, KOLKATA, SYDNEY = "+442071234567", "+919876543210", "+61291234567"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def write(path: Path, rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def campaign_file(
    factory: CampaignFactory, tmp_path: Path, rows: Sequence[Sequence[str]], schedule: str, **kw: Any
) -> Path:
    write(tmp_path / kw.pop("file", "people.csv"), rows)
    return factory(
        None,
        file="people.csv",
        message='text = "Hi {{ name }}"',
        sending=kw.pop("sending", "rate = 0\nconcurrency = 1\nmax_attempts = 2\ntimeout = 5"),
        extra=f"\n[schedule]\n{schedule}\n",
        **kw,
    )


def send(
    path: Path,
    clock: timing.ManualClock,
    *,
    box: Sandbox | None = None,
    step: timedelta | None = None,
    waits: list[str] | None = None,
    **options: Any,
) -> tuple[runner.Summary, Sandbox, list[tuple[str, datetime]]]:
    """`campaign send` in-process against the sandbox, on ``clock``; each outcome moves the
    clock on by ``step`` (a row reached later than the one before). Returns the summary, the
    sandbox and (key, clock time) of every accepted send; ``waits`` gets each "waiting for"
    the progress line shows (--wait)."""
    sent: list[tuple[str, datetime]] = []

    def progress(summary: runner.Summary, outcome: Outcome | None) -> None:
        if waits is not None and outcome is None and summary.waiting_for:
            waits.append(summary.waiting_for)
        if outcome is not None:
            if outcome.message_id:
                sent.append((outcome.key, clock.now()))
            if step is not None:
                clock.advance(step)

    async def main() -> tuple[runner.Summary, Sandbox]:
        sandbox = box or Sandbox(SandboxConfig(api_key=KEY, faults=Faults(seed=1)))
        url = await sandbox.start()
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=url)
            opts = runner.Options(
                **{"api_key": KEY, "backoff_base": 0.01, "sandbox": True, "prepare_in_child": False, **options}
            )
            return await runner.run(campaign, opts, on_progress=progress), sandbox
        finally:
            if box is None:
                await sandbox.close()

    with timing.use_clock(clock):
        summary, sandbox = asyncio.run(main())
    return summary, sandbox, sent


def results(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return {r["phone"]: r for r in csv.DictReader(handle)}


# --- zones ----------------------------------------------------------------------------------


def test_zone_comes_from_column_then_number_then_message_timezone() -> None:
    assert timing.recipient_zones("Asia/Calcutta", NEW_YORK, None) == (("Asia/Kolkata",), "column")
    assert timing.recipient_zones(" ", CHICAGO, None) == (("America/Chicago",), "number")
    assert timing.recipient_zones("Etc/Unknown", KOLKATA, None) == (("Asia/Kolkata",), "number")
    # +882 (international networks) has no zone in phonenumbers: Etc/Unknown, so the default
    assert timing.zones_for_number("+88213100000") == ()
    assert timing.recipient_zones("", "+88213100000", "Europe/Paris") == (("Europe/Paris",), "timezone")
    with pytest.raises(timing.ZoneError, match="no time zone is known"):
        timing.recipient_zones("", "+88213100000", None)
    with pytest.raises(timing.ZoneError, match="'Mars/Olympus' is not a known time zone"):
        timing.recipient_zones("Mars/Olympus", NEW_YORK, None)


def test_a_window_must_hold_in_every_zone_of_the_number() -> None:
    window = Schedule(window=(9 * 60, 17 * 60), window_text="09:00-17:00")
    mobile = timing.zones_for_number("+61412345678")  # an Australian mobile: Cocos Islands to Lord Howe
    # (Indian/Cocos is read as its canonical zone, Asia/Yangon, +06:30)
    assert {"Asia/Yangon", "Australia/Perth", "Australia/Sydney"} <= set(mobile)
    with timing.use_clock(timing.ManualClock(utc(2026, 12, 1, 0))):  # 11:00 Sydney, 06:30 Cocos
        # The window holds in all of them once it opens in the westernmost: 09:00 Cocos (+06:30).
        assert timing.next_opening(window, mobile, timing.now()) == utc(2026, 12, 1, 2, 30)
        # Toll-free +1 800 spans Guam to Newfoundland: no hour of 09:00-17:00 holds in all of them.
        with pytest.raises(timing.ZoneError, match="no hour of the window 09:00-17:00 holds"):
            timing.row_zones(window, None, "+18005550100", None)
        # ...unless the row's own column says where the recipient is.
        assert timing.row_zones(window, "America/Denver", "+18005550100", None) == ("America/Denver",)


# --- send_at in local time --------------------------------------------------------------------


def test_local_send_at_bodies_across_a_dst_change(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """09:00 on 1 Nov 2026 in six cities, sent on 30 Oct: New York, Chicago and Los Angeles fall
    back at 02:00 that morning, so the bodies carry the offsets of 1 Nov, not of the day sent;
    London fell back on 25 Oct, Sydney went forward on 4 Oct, Kolkata has no DST."""
    people = [NEW_YORK, CHICAGO, LOS_ANGELES, LONDON, KOLKATA, SYDNEY]
    path = campaign_file(make_campaign, tmp_path, [(p, "x", "") for p in people], 'send_at = "2026-11-01 09:00"')
    clock = timing.ManualClock(utc(2026, 10, 30, 12))
    assert clock.now().astimezone(timing.zone("America/New_York")).utcoffset() == timedelta(hours=-4)
    summary, box, _ = send(path, clock)
    assert summary.exit_code() is ExitCode.OK
    schedules = {m.body["to"]: m.body["schedule"] for m in box.accepted}
    assert schedules == {
        NEW_YORK: "2026-11-01T09:00:00-05:00",
        CHICAGO: "2026-11-01T09:00:00-06:00",
        LOS_ANGELES: "2026-11-01T09:00:00-08:00",
        LONDON: "2026-11-01T09:00:00+00:00",
        KOLKATA: "2026-11-01T09:00:00+05:30",
        SYDNEY: "2026-11-01T09:00:00+11:00",
    }
    assert {r["status"] for r in results(tmp_path / "test.results.csv").values()} == {"scheduled"}


def test_send_at_in_a_gap_or_a_fold_is_said_never_silently_moved(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    rows = [(NEW_YORK, "gap", "America/New_York"), (KOLKATA, "legacy", "Asia/Calcutta")]
    path = campaign_file(make_campaign, tmp_path, rows, 'send_at = "2026-03-08 02:30"\ntimezone_column = "Zone"')
    summary, box, _ = send(path, timing.ManualClock(utc(2026, 3, 1)))
    bodies = {m.body["to"]: m.body["schedule"] for m in box.accepted}
    # 02:30 does not exist in New York that night: read with the offset before the change
    # (RFC 5545), which is 03:30 EDT, and the row says so.
    assert bodies == {NEW_YORK: "2026-03-08T03:30:00-04:00", KOLKATA: "2026-03-08T02:30:00+05:30"}
    out = results(tmp_path / "test.results.csv")
    assert "does not exist" in out[NEW_YORK]["error"] and "03:30 EDT" in out[NEW_YORK]["error"]
    assert out[KOLKATA]["error"] == ""
    assert any("does not exist" in note for note in summary.row_notes)

    fold = Schedule(send_at=datetime(2026, 11, 1, 1, 30), send_at_text="2026-11-01 01:30")
    when = timing.send_at(fold, ("America/New_York",), utc(2026, 10, 20))
    assert when.instant == utc(2026, 11, 1, 5, 30)  # the first 01:30, EDT
    assert "happens twice" in when.note


def test_send_at_already_past_follows_if_past(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    # 14:00 UTC on 1 Dec: 09:00 has passed in London and Kolkata, not yet in Chicago.
    rows = [(CHICAGO, "chi", ""), (LONDON, "ldn", "")]
    clock = timing.ManualClock(utc(2026, 12, 1, 14))
    path = campaign_file(make_campaign, tmp_path, rows, 'send_at = "2026-12-01 09:00"')
    _, box, _ = send(path, clock)
    bodies = {m.body["to"]: m.body.get("schedule") for m in box.accepted}
    assert bodies == {CHICAGO: "2026-12-01T09:00:00-06:00", LONDON: None}  # if_past = "now": at once

    path = campaign_file(
        make_campaign, tmp_path, rows, 'send_at = "2026-12-01 09:00"\nif_past = "next-day"', name="later"
    )
    _, box, _ = send(path, clock)
    bodies = {m.body["to"]: m.body.get("schedule") for m in box.accepted}
    assert bodies == {CHICAGO: "2026-12-01T09:00:00-06:00", LONDON: "2026-12-02T09:00:00+00:00"}


def test_a_note_many_rows_share_is_said_once_with_five_of_its_rows(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    rows = [(f"+44207123450{i}", f"ldn{i}", "") for i in range(7)]  # rows 2-8, all in London
    path = campaign_file(make_campaign, tmp_path, rows, 'send_at = "2026-12-01 09:00"')
    summary, box, _ = send(path, timing.ManualClock(utc(2026, 12, 1, 14)))
    assert len(box.accepted) == 7 and all("schedule" not in m.body for m in box.accepted)
    (note,) = summary.row_notes
    assert "had passed" in note and summary.row_notes[note] == [2, 3, 4, 5, 6]


def test_send_at_more_than_30_days_ahead_is_refused(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = campaign_file(make_campaign, tmp_path, [(CHICAGO, "chi", "")], 'send_at = "2027-01-15 09:00"')
    with pytest.raises(ConfigError, match="more than 30 days ahead"):
        send(path, timing.ManualClock(utc(2026, 12, 1)))


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ('window = "8-21"', "is not a time range"),
        ('window = "08:00-08:00"', "is empty"),
        ('days = ["mon", "funday"]', "'funday', which is not a day name"),
        ('days = ["monxyz"]', "'monxyz', which is not a day name"),
        ("days = []", "days is empty"),
        ('send_at = "tomorrow 9"', "is not a date and time"),
        ("daily_limit = 0", "at least 1"),
        ('if_past = "later"', 'must be "now"'),
    ],
)
def test_schedule_mistakes_are_one_sentence(
    make_campaign: CampaignFactory, tmp_path: Path, schedule: str, message: str
) -> None:
    path = campaign_file(make_campaign, tmp_path, [(CHICAGO, "chi", "")], schedule)
    with pytest.raises(ConfigError, match=message):
        load_campaign(path)


# --- quiet hours ----------------------------------------------------------------------------


def test_window_defers_then_releases_rows_as_the_clock_moves(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """Three Chicago rows start at 20:57 local; each send takes the clock two minutes on, so the
    third is reached at 21:01, after the window closed, and waits; the London row waits for
    London's morning. A rerun at the next opening sends them."""
    rows = [(CHICAGO, "a", ""), ("+13125550101", "b", ""), ("+13125550102", "c", ""), (LONDON, "ldn", "")]
    path = campaign_file(make_campaign, tmp_path, rows, 'window = "08:00-21:00"')
    clock = timing.ManualClock(utc(2026, 12, 2, 2, 57))  # 20:57 in Chicago (CST), 02:57 in London
    summary, box, _ = send(path, clock, step=timedelta(minutes=2))
    assert [m.body["to"] for m in box.accepted] == [CHICAGO, "+13125550101"]
    assert summary.waiting == 2
    assert summary.exit_code() is ExitCode.OK  # waiting rows are not failures: cron runs again
    assert summary.next_window == "08:00 Europe/London (08:00 UTC)"
    out = results(tmp_path / "test.results.csv")
    assert (out["+13125550102"]["status"], out["+13125550102"]["error"]) == (
        "pending",
        "waits for Wed 02 Dec 08:00 America/Chicago",
    )
    assert out[LONDON]["error"] == "waits for 08:00 Europe/London"

    clock.moment = utc(2026, 12, 2, 8, 0)  # London opens; Chicago is still at 02:00
    summary, box, _ = send(path, clock)
    assert [m.body["to"] for m in box.accepted] == [LONDON]
    assert summary.next_window == "08:00 America/Chicago (14:00 UTC)"

    clock.moment = utc(2026, 12, 2, 14, 0)
    summary, box, _ = send(path, clock)
    assert [m.body["to"] for m in box.accepted] == ["+13125550102"]
    assert summary.waiting == 0 and summary.exit_code() is ExitCode.OK
    assert {r["status"] for r in results(tmp_path / "test.results.csv").values()} == {"sent"}


def test_wait_sends_each_row_as_its_window_opens(
    make_campaign: CampaignFactory, tmp_path: Path, state_backend: str
) -> None:
    rows = [(CHICAGO, "chi", ""), (LONDON, "ldn", ""), (KOLKATA, "kol", "")]
    weekdays = 'window = "08:00-21:00"\ndays = ["mon", "tue", "wed", "thu", "fri"]'
    path = campaign_file(make_campaign, tmp_path, rows, weekdays)
    clock = timing.ManualClock(utc(2026, 12, 5, 12))  # Saturday: no window opens before Monday
    waits: list[str] = []
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "America/Chicago"  # this machine's own zone must not leak into what is shown
    time.tzset()
    try:
        summary, _, sent = send(path, clock, wait=True, waits=waits)
    finally:
        if zone is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = zone
        time.tzset()
    assert summary.waiting == 0 and summary.exit_code() is ExitCode.OK
    assert summary.waiting_for == ""  # the wait is over: the progress line no longer shows it
    if state_backend == "sqlite":  # PostgreSQL's workers show the bare UTC instant instead (reported)
        assert waits == [  # the progress line, before each window: the earliest held row's
            "Mon 07 Dec 08:00 Asia/Kolkata (02:30 UTC)",
            "Mon 07 Dec 08:00 Europe/London (08:00 UTC)",
            "Mon 07 Dec 08:00 America/Chicago (14:00 UTC)",
        ]
    else:  # the earliest queued row's instant, in UTC whatever this machine's zone (Chicago here)
        assert waits == ["Mon 07 Dec 02:30 UTC", "Mon 07 Dec 08:00 UTC", "Mon 07 Dec 14:00 UTC"]
    # Monday 7 Dec, 08:00 in each zone, in the order the windows open (the clock only jumped).
    assert sent == [
        (KOLKATA, utc(2026, 12, 7, 2, 30)),
        (LONDON, utc(2026, 12, 7, 8)),
        (CHICAGO, utc(2026, 12, 7, 14)),
    ]


def test_check_counts_zones_and_warns_when_the_window_is_too_short(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    rows = [(f"+1312555{i:04d}", f"c{i}", "") for i in range(30)] + [(LONDON, "ldn", "")]
    path = campaign_file(
        make_campaign,
        tmp_path,
        rows,
        'window = "08:00-08:05"\ndaily_limit = 10',
        sending="rate = 0.05\nconcurrency = 1",
    )

    async def main() -> runner.Summary:
        return await runner.check(load_campaign(path))

    with timing.use_clock(timing.ManualClock(utc(2026, 12, 2, 3))):
        summary = asyncio.run(main())
    assert dict(summary.zones) == {("America/Chicago",): 30, ("Europe/London",): 1}
    assert summary.forecast == [
        "Europe/London: 1 row, Wed 08:00–Wed 08:00 local (08:00–08:00 UTC)",
        "America/Chicago: 30 rows, Wed 08:00–Thu 08:05 local (14:00–14:05 UTC)",
    ]
    assert summary.warnings[-2:] == [
        "31 recipients but [schedule] daily_limit is 10 per 24 hours (with every other campaign on this channel): "
        "they go out over at least 4 days; rows over the limit wait.",
        "30 rows for America/Chicago cannot all go out inside their window 08:00-08:05 at 0.05 per second; the last "
        "go out Thu 03 Dec 08:05 local. Raise [sending] rate or split the campaign.",
    ]


def test_forecast_with_send_at_is_when_the_requests_go_not_the_window() -> None:
    """With send_at every request goes now, carrying its own schedule; the window does not hold
    them back, so the forecast must not say "goes out Fri 08:00" for rows sent at once."""
    at = utc(2026, 12, 2, 3)  # 21:00 in Chicago: outside the window
    plain = Schedule(window=(8 * 60, 21 * 60), window_text="08:00-21:00")
    later = timing.forecast(plain, {("America/Chicago",): 10}, 1.0, at)
    assert later[0].first > at  # waits for 08:00
    scheduled = dataclasses.replace(plain, send_at=datetime(2026, 12, 3, 9, 0), send_at_text="2026-12-03 09:00")
    now = timing.forecast(scheduled, {("America/Chicago",): 10}, 1.0, at)
    assert now[0].first == at and now[0].fits


def test_forecast_50000_rows_at_one_per_second_do_not_fit_a_day() -> None:
    window = Schedule(window=(8 * 60, 21 * 60), window_text="08:00-21:00")
    lines = timing.forecast(window, {("America/Chicago",): 50_000}, 1.0, utc(2026, 12, 2, 13))
    assert len(lines) == 1 and not lines[0].fits
    assert timing.forecast(window, {("America/Chicago",): 3_000}, 1.0, utc(2026, 12, 2, 13))[0].fits


# --- the daily limit ------------------------------------------------------------------------


def test_two_campaigns_on_one_channel_never_exceed_the_daily_limit(
    make_campaign: CampaignFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    monkeypatch.setenv("CAMPAIGN_LEDGER", str(ledger))
    first = campaign_file(
        make_campaign, tmp_path, [(f"+1312555{i:04d}", "a", "") for i in range(2)], "daily_limit = 3", name="one"
    )
    write(tmp_path / "more.csv", [(f"+1415555{i:04d}", "b", "") for i in range(4)])
    second = make_campaign(
        None, file="more.csv", message='text = "Hi {{ name }}"', name="two", extra="\n[schedule]\ndaily_limit = 3\n"
    )
    clock = timing.ManualClock(utc(2026, 12, 2, 12))
    box = Sandbox(SandboxConfig(api_key=KEY))
    sends: list[tuple[str, datetime]] = []

    async def start() -> None:
        await box.start()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(start())
    try:
        runs = [(first, 0), (second, 60), (second, 24 * 60 + 1), (second, 25 * 60 + 1)]
        for path, minutes in runs:
            at = timedelta(minutes=minutes)
            clock.moment = utc(2026, 12, 2, 12) + at
            summary, _, sent = send_on(loop, path, clock, box)
            sends += sent
            if path == second and at == timedelta(hours=1):
                assert summary.waiting == summary.waiting_limit == 3 and summary.exit_code() is ExitCode.OK
                assert summary.next_window == "12:00 UTC (daily limit)"
    finally:
        loop.run_until_complete(box.close())
        loop.close()
    assert len(sends) == 6 == len(box.accepted)
    for _, sent_at in sends:  # in every rolling 24 hours ending at a send: at most 3 numbers
        assert len({k for k, t in sends if sent_at - timedelta(hours=24) < t <= sent_at}) <= 3
    # the ledger of the campaign's engine: the file, or the schema beside a PostgreSQL state
    where = store.ledger_location(load_campaign(first))
    check = Ledger(where, "sandbox twlo twlo_16175550000", daily_limit=3, pair_gap=None)
    assert check.recipients_since(clock.now()) == 3
    check.close()


def send_on(
    loop: asyncio.AbstractEventLoop, path: Path, clock: timing.ManualClock, box: Sandbox
) -> tuple[runner.Summary, Sandbox, list[tuple[str, datetime]]]:
    """``send`` on an already running sandbox (kept across campaigns)."""
    sent: list[tuple[str, datetime]] = []

    def progress(_: runner.Summary, outcome: Outcome | None) -> None:
        if outcome is not None and outcome.message_id:
            sent.append((outcome.key, clock.now()))

    campaign = dataclasses.replace(load_campaign(path), api_url=box.url)
    opts = runner.Options(api_key=KEY, backoff_base=0.01, sandbox=True, prepare_in_child=False)
    with timing.use_clock(clock):
        summary = loop.run_until_complete(runner.run(campaign, opts, on_progress=progress))
    return summary, box, sent


def test_message_schedule_in_message_timezone_follows_the_same_gap_rule(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """The same kind of fault in [message] schedule: a naive time read in [message] timezone used
    to get that zone's tzinfo as-is, sending 02:30-05:00 for a time New York skips."""
    rows = [(NEW_YORK, "gap", "")]
    write(tmp_path / "people.csv", rows)
    path = make_campaign(
        None,
        file="people.csv",
        message='text = "Hi"\nschedule = "2026-03-08T02:30"\ntimezone = "America/New_York"',
        sending="rate = 0\nconcurrency = 1",
    )
    _, box, _ = send(path, timing.ManualClock(utc(2026, 3, 1)))
    assert [m.body["schedule"] for m in box.accepted] == ["2026-03-08T03:30:00-04:00"]
    assert "does not exist" in results(tmp_path / "test.results.csv")[NEW_YORK]["error"]


def test_a_scheduled_row_is_held_to_the_window_at_its_schedule_not_at_the_request(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """The API delivers a scheduled message at its time: the request may go at 03:00 Chicago
    time for a 09:00 send_at, and a send_at of 07:00 (outside 08:00-21:00) is refused per row."""
    rows = [(CHICAGO, "chi", "")]
    clock = timing.ManualClock(utc(2026, 12, 2, 9))  # 03:00 in Chicago: outside its window
    path = campaign_file(make_campaign, tmp_path, rows, 'send_at = "2026-12-02 09:00"\nwindow = "08:00-21:00"')
    summary, box, _ = send(path, clock)
    assert [m.body["schedule"] for m in box.accepted] == ["2026-12-02T09:00:00-06:00"]
    assert summary.waiting == 0

    path = campaign_file(
        make_campaign, tmp_path, rows, 'send_at = "2026-12-02 07:00"\nwindow = "08:00-21:00"', name="early"
    )
    summary, box, _ = send(path, clock)
    assert box.accepted == []
    error = results(tmp_path / "early.results.csv")[CHICAGO]["error"]
    assert error == (
        "schedule: its schedule, Wed 02 Dec 07:00 in America/Chicago, is outside the sending window 08:00-21:00 "
        "there; move send_at or schedule inside it"
    )


def test_a_rerun_after_a_schedule_has_passed_keeps_the_row_scheduled(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """Another member of the kind "decided against a clock that has moved": a row scheduled by
    an earlier run used to turn `invalid` ("schedule ... is in the past") in the results file,
    with exit 1, once its time had passed."""
    rows = [  # each row's own time, in the third column
        (CHICAGO, "chi", "2026-12-02T09:00:00-06:00"),
        (NEW_YORK, "nyc", "2026-12-02T09:00:00-05:00"),
    ]
    write(tmp_path / "people.csv", rows)
    path = make_campaign(
        None, file="people.csv", message='text = "Hi"\nschedule = "{{ Zone }}"', sending="rate = 0\nconcurrency = 1"
    )
    clock = timing.ManualClock(utc(2026, 12, 1))
    send(path, clock)
    clock.moment = utc(2026, 12, 3)
    # A row added below them, in the same batch, is still planned and sent.
    write(tmp_path / "people.csv", [*rows, (LOS_ANGELES, "la", "2026-12-04T09:00:00-08:00")])
    summary, box, _ = send(path, clock)
    assert [m.to for m in box.accepted] == [LOS_ANGELES] and summary.already_done == 2
    assert summary.exit_code() is ExitCode.OK
    out = results(tmp_path / "test.results.csv")
    assert {phone: r["status"] for phone, r in out.items()} == dict.fromkeys(
        [CHICAGO, NEW_YORK, LOS_ANGELES], "scheduled"
    )


def test_cli_send_ends_with_exit_0_saying_when_the_window_opens(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """`campaign send --sandbox` as a user runs it (a real process, the real clock): a window
    that is closed now, in UTC so the test needs no zone arithmetic of its own."""
    now = datetime.now(UTC)
    start = (now + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    window = f"{start:%H:%M}-{start + timedelta(hours=1):%H:%M}"
    rows = [(LONDON, "ldn", "Etc/UTC")]
    path = campaign_file(make_campaign, tmp_path, rows, f'window = "{window}"\ntimezone_column = "Zone"')
    env = {k: v for k, v in os.environ.items() if k not in ("SOCIOCS_API_KEY", "SOCIOCS_API_URL")}
    env["CAMPAIGN_LEDGER"] = str(tmp_path / "ledger.sqlite")
    done = subprocess.run(
        [sys.executable, "-m", "campaign", "send", str(path), "--sandbox", "--yes"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    # (after 22:00 UTC the opening is tomorrow, and says its date)
    said = rf"1 row waits for its window; the next opens at (\w{{3}} \d\d \w{{3}} )?{start:%H:%M} Etc/UTC "
    assert re.search(said + rf"\({start:%H:%M} UTC\)\.", " ".join(done.stdout.split())), done.stdout


def test_whatsapp_duplicates_to_one_number_are_six_seconds_apart(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """WhatsApp's pair rate limit: with allow_duplicates, one number never gets two messages
    within 6 s; the sender waits it out on the one clock (moved, not slept)."""
    mobile = "+447911123456"  # a UK mobile (WhatsApp cannot reach a landline)
    rows = [(CHICAGO, "a", ""), (CHICAGO, "b", ""), (mobile, "c", ""), (CHICAGO, "d", "")]
    write(tmp_path / "people.csv", rows)
    path = make_campaign(
        None,
        file="people.csv",
        provider="twlowa",
        message='template_id = "HX0123456789abcdef0123456789abcdef"\n[message.variables]\n"1" = "{{ name }}"',
        recipients="allow_duplicates = true",
        sending="rate = 0\nconcurrency = 1",
    )
    start = utc(2026, 12, 2, 12)
    summary, box, sent = send(path, timing.ManualClock(start))
    assert summary.exit_code() is ExitCode.OK and summary.waiting == 0
    assert len(box.accepted) == 4
    chicago = [at for key, at in sent if key.startswith(CHICAGO)]
    assert len(chicago) == 3
    assert all(b - a >= timedelta(seconds=6) for a, b in itertools.pairwise(chicago))
    assert [at for key, at in sent if key.startswith(mobile)] == [chicago[1]]  # the other number did not wait
