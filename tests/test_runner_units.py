"""campaign.runner's small parts, each exactly, in this process (so mutation testing sees them):
the top reasons a summary prints, and the schedule range ``campaign check`` reports."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

from campaign.config import load_campaign
from campaign.runner import Reasons, Summary, check
from tests.conftest import CampaignFactory, contacts


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
