"""campaign.timing pinned in-process (issue #11): whole return values, whole sentences, the
boundaries of every window, DST gaps and folds, the one clock, the ledger's holds, the forecast.

Every expected instant below is worked out by hand from the calendar and the tz database, not
from timing's own arithmetic: in December Chicago is UTC-6 (CST), New York UTC-5 (EST), London
UTC+0 (GMT), Auckland UTC+13 (NZDT), Chatham UTC+13:45. In 2026 New York springs forward on
Sunday 8 March (02:00 EST -> 03:00 EDT) and falls back on Sunday 1 November (02:00 EDT ->
01:00 EST); London springs forward on Sunday 29 March (01:00 GMT -> 02:00 BST) and falls back on
Sunday 25 October (02:00 BST -> 01:00 GMT). 1 December 2026 is a Tuesday.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from campaign import timing
from campaign.config import Schedule
from campaign.ledger import Ledger
from campaign.timing import Forecast, Hold, ManualClock, SendAt

CHICAGO, NEW_YORK, LONDON = "+13125550100", "+12125550100", "+442071234567"
NZ_MOBILE = "+6421123456"  # Pacific/Auckland and Pacific/Chatham
TOLL_FREE = "+18005550100"
CHI, NY, LDN = ("America/Chicago",), ("America/New_York",), ("Europe/London",)
CHANNEL = "sandbox twlo twlo_16175550000"

#: phonenumbers' 42 zones for a +1 800 number, each read as its canonical IANA zone (the tz
#: database's ``backward`` file: Anguilla, Antigua, Dominica, Grenada, Lower_Princes,
#: Montserrat, St_Kitts, St_Lucia, St_Thomas, St_Vincent and Tortola are America/Puerto_Rico;
#: Cayman is America/Panama; Nassau is America/Toronto; Pacific/Saipan is Pacific/Guam), each once,
#: in the order phonenumbers first gives it.
TOLL_FREE_ZONES = (
    "America/Adak",
    "America/Anchorage",
    "America/Puerto_Rico",
    "America/Barbados",
    "America/Boise",
    "America/Panama",
    "America/Chicago",
    "America/Denver",
    "America/Edmonton",
    "America/Fort_Nelson",
    "America/Grand_Turk",
    "America/Halifax",
    "America/Jamaica",
    "America/Juneau",
    "America/Los_Angeles",
    "America/Toronto",
    "America/New_York",
    "America/North_Dakota/Center",
    "America/Phoenix",
    "America/Regina",
    "America/Santo_Domingo",
    "America/St_Johns",
    "America/Vancouver",
    "America/Winnipeg",
    "Atlantic/Bermuda",
    "Pacific/Guam",
    "Pacific/Honolulu",
    "Pacific/Pago_Pago",
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def window(text: str, days: frozenset[int] = frozenset()) -> Schedule:
    """A ``[schedule] window`` as config.py builds it: minutes after local midnight."""
    start, end = text.split("-")
    lo = int(start[:2]) * 60 + int(start[3:])
    hi = int(end[:2]) * 60 + int(end[3:])
    return Schedule(window=(lo, hi), window_text=text, days=days)


def local_send_at(text: str, *, if_past: str = "now") -> Schedule:
    return Schedule(send_at=datetime.fromisoformat(text), send_at_text=text, if_past=if_past)


# --- the one clock --------------------------------------------------------------------------


def test_the_real_clock_reads_aware_utc_and_a_negative_sleep_is_no_wait() -> None:
    before = datetime.now(UTC)
    read = timing.Clock().now()
    after = datetime.now(UTC)
    assert read.tzinfo is UTC and before <= read <= after

    async def main() -> None:
        # a bound, not a measurement: a negative wait must not become a wait of a second
        await asyncio.wait_for(timing.Clock().sleep(-3600.0), timeout=0.5)

    asyncio.run(main())


def test_manual_clock_needs_an_aware_start_and_moves_only_when_told() -> None:
    with pytest.raises(ValueError) as err:
        ManualClock(datetime(2026, 12, 1, 9, 30))
    assert str(err.value) == "ManualClock needs an aware datetime"
    clock = ManualClock(datetime(2026, 12, 1, 9, 30, tzinfo=ZoneInfo("Asia/Kolkata")))  # UTC+05:30
    assert clock.now().isoformat() == "2026-12-01T04:00:00+00:00" and clock.now().tzinfo is UTC
    assert clock.now() == clock.now()  # no time passes by itself
    clock.advance(timedelta(minutes=90))
    assert clock.now() == utc(2026, 12, 1, 5, 30)

    async def sleep(seconds: float) -> None:
        await asyncio.wait_for(clock.sleep(seconds), timeout=0.5)  # jumps, never waits

    asyncio.run(sleep(45.25))
    assert clock.now() == utc(2026, 12, 1, 5, 30, 45, 250000)
    asyncio.run(sleep(-10.0))
    assert clock.now() == utc(2026, 12, 1, 5, 30, 45, 250000)
    asyncio.run(sleep(0.5))
    assert clock.now() == utc(2026, 12, 1, 5, 30, 45, 750000)


def test_use_clock_installs_the_one_clock_and_restores_it_after_even_on_error() -> None:
    original = timing.clock()
    assert type(original) is timing.Clock and timing.now().tzinfo is UTC
    outer, inner = ManualClock(utc(2026, 12, 1)), ManualClock(utc(2027, 1, 1))
    with timing.use_clock(outer) as installed:
        assert installed is outer and timing.clock() is outer and timing.now() == utc(2026, 12, 1)
        with timing.use_clock(inner):
            assert timing.clock() is inner and timing.now() == utc(2027, 1, 1)
        assert timing.clock() is outer and timing.now() == utc(2026, 12, 1)
    assert timing.clock() is original
    with pytest.raises(RuntimeError, match=r"^boom$"), timing.use_clock(outer):
        assert timing.clock() is outer
        raise RuntimeError("boom")
    assert timing.clock() is original


# --- time zones -----------------------------------------------------------------------------


def test_links_are_the_iana_backward_links_alias_to_zone() -> None:
    links = timing._links()
    wanted = {
        "Asia/Calcutta": "Asia/Kolkata",
        "US/Eastern": "America/New_York",
        "GB": "Europe/London",
        "Europe/Kiev": "Europe/Kyiv",
        "Asia/Rangoon": "Asia/Yangon",
        "Indian/Cocos": "Asia/Yangon",
        "America/Anguilla": "America/Puerto_Rico",
        "Pacific/Saipan": "Pacific/Guam",
    }
    assert {alias: links[alias] for alias in wanted} == wanted
    for name in ("Asia/Kolkata", "America/Chicago", "Europe/London", "Pacific/Guam"):
        assert name not in links  # a canonical zone is no alias


def test_canonical_follows_links_to_the_end_and_stops_on_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    assert timing.canonical("Asia/Calcutta") == "Asia/Kolkata"
    assert timing.canonical("America/Chicago") == "America/Chicago"
    assert timing.canonical("Mars/Olympus") == "Mars/Olympus"
    links = {"Old/One": "Old/Two", "Old/Two": "New/Three", "Loop/A": "Loop/B", "Loop/B": "Loop/C", "Loop/C": "Loop/A"}
    monkeypatch.setattr(timing, "_links", lambda: links)
    assert timing.canonical("Old/One") == "New/Three"  # a link to a link
    assert timing.canonical("Old/Two") == "New/Three"
    assert timing.canonical("Loop/A") == "Loop/A"  # round the cycle once, back where it began
    assert timing.canonical("Loop/B") == "Loop/B"


def test_zone_reads_legacy_names_and_padding_and_refuses_unknown_names_in_one_sentence() -> None:
    assert timing.zone("Asia/Calcutta") is ZoneInfo("Asia/Kolkata")
    assert timing.zone("  Europe/London\t").key == "Europe/London"
    assert timing.zone("US/Eastern").key == "America/New_York"
    # Not found; not a key at all; a folder of the database; too long for a file name.
    for name in ("Mars/Olympus", "../etc/passwd", "", "/etc/localtime", "America", "Etc", "x" * 300):
        with pytest.raises(timing.ZoneError) as err:
            timing.zone(name)
        assert str(err.value) == f"{name!r} is not a known time zone (an IANA name such as America/Chicago)"
        assert err.value.__cause__ is None and err.value.__suppress_context__
    assert issubclass(timing.ZoneError, ValueError)


def test_zones_for_number_across_countries() -> None:
    assert timing.zones_for_number(NEW_YORK) == ("America/New_York",)
    assert timing.zones_for_number(CHICAGO) == ("America/Chicago",)
    assert timing.zones_for_number("+12505550100") == ("America/Vancouver",)  # British Columbia
    assert timing.zones_for_number(LONDON) == ("Europe/London",)
    assert timing.zones_for_number("+919876543210") == ("Asia/Kolkata",)  # phonenumbers says Asia/Calcutta
    assert timing.zones_for_number("+74951234567") == ("Europe/Moscow",)
    assert timing.zones_for_number("+5511987654321") == ("America/Sao_Paulo",)
    assert timing.zones_for_number(NZ_MOBILE) == ("Pacific/Auckland", "Pacific/Chatham")
    # an Australian mobile: the mainland, Lord Howe, Christmas Island (Asia/Bangkok) and Cocos (Asia/Yangon)
    assert timing.zones_for_number("+61412345678") == (
        "Australia/Adelaide",
        "Australia/Brisbane",
        "Australia/Eucla",
        "Australia/Lord_Howe",
        "Australia/Perth",
        "Australia/Sydney",
        "Asia/Bangkok",
        "Asia/Yangon",
    )
    assert timing.zones_for_number(TOLL_FREE) == TOLL_FREE_ZONES
    assert timing.zones_for_number("+7495") == ()  # too short: phonenumbers says Etc/Unknown
    assert timing.zones_for_number("+88213100000") == ()  # international networks: Etc/Unknown
    assert timing.zones_for_number("not a number") == ()  # phonenumbers cannot parse it


def test_recipient_zones_column_then_number_then_message_timezone() -> None:
    assert timing.recipient_zones(" Asia/Calcutta ", CHICAGO, "Europe/Paris") == (("Asia/Kolkata",), "column")
    assert timing.recipient_zones(None, CHICAGO, "Europe/Paris") == (CHI, "number")
    assert timing.recipient_zones("   ", CHICAGO, None) == (CHI, "number")
    assert timing.recipient_zones(" Etc/Unknown ", NZ_MOBILE, None) == (
        ("Pacific/Auckland", "Pacific/Chatham"),
        "number",
    )
    assert timing.recipient_zones("", "+88213100000", "Asia/Calcutta") == (("Asia/Kolkata",), "timezone")
    assert timing.recipient_zones(None, "+88213100000", "Europe/Paris") == (("Europe/Paris",), "timezone")
    for default in (None, ""):
        with pytest.raises(timing.ZoneError) as err:
            timing.recipient_zones(None, "+88213100000", default)
        assert str(err.value) == (
            "no time zone is known for +88213100000; add a time zone column ([schedule] timezone_column) "
            "or set [message] timezone"
        )
    with pytest.raises(timing.ZoneError) as err:
        timing.recipient_zones(" Mars/Olympus ", CHICAGO, "Europe/Paris")
    assert str(err.value) == "' Mars/Olympus ' is not a known time zone (an IANA name such as America/Chicago)"


def test_row_zones_refuses_a_number_whose_zones_share_no_hour_of_the_window() -> None:
    nz = ("Pacific/Auckland", "Pacific/Chatham")
    with timing.use_clock(ManualClock(utc(2026, 12, 1))):
        assert timing.row_zones(Schedule(), None, TOLL_FREE, None) == TOLL_FREE_ZONES  # no quiet hours
        assert timing.row_zones(window("09:00-17:00"), None, NZ_MOBILE, None) == nz  # 09:45-17:00 Chatham
        assert timing.row_zones(window("09:00-17:00"), "America/Denver", TOLL_FREE, None) == ("America/Denver",)
        assert timing.row_zones(window("09:00-17:00"), None, CHICAGO, None) == CHI
        # Guam (UTC+10) and St John's (UTC-03:30) hold 09:00-17:00 at 23:00-07:00 and 12:30-20:30 UTC
        with pytest.raises(timing.ZoneError) as err:
            timing.row_zones(window("09:00-17:00"), None, TOLL_FREE, None)
        assert str(err.value) == (
            "no hour of the window 09:00-17:00 holds in all of this number's 28 time zones (America/Adak and 27 "
            "more zones); give the row its zone in a time zone column ([schedule] timezone_column)"
        )
        # 09:00-09:30 in Auckland is 08:15-08:45 in Chatham: two zones, no common minute
        with pytest.raises(timing.ZoneError) as err:
            timing.row_zones(window("09:00-09:30"), None, NZ_MOBILE, None)
        assert re.fullmatch(
            r"no hour of the window 09:00-09:30 holds in all of this number's 2 time zones \(Pacific/Auckland "
            r"and 1 more zone\); give the row its zone in a time zone column \(\[schedule\] timezone_column\)",
            str(err.value),
        )


def test_has_common_hour_on_a_day() -> None:
    nz = ("Pacific/Auckland", "Pacific/Chatham")
    assert timing._has_common_hour(window("09:00-17:00"), nz, date(2026, 12, 1)) is True
    assert timing._has_common_hour(window("09:00-09:30"), nz, date(2026, 12, 1)) is False
    assert timing._has_common_hour(window("09:00-09:46"), nz, date(2026, 12, 1)) is True  # 09:45-09:46 Auckland


def test_check_send_at_refuses_only_what_is_over_30_days_ahead_everywhere() -> None:
    at = utc(2026, 12, 1)
    assert timing.check_send_at(Schedule(), at) is None
    assert timing.check_send_at(local_send_at("2026-12-31T00:00:00+00:00"), at) is None  # exactly 30 days
    assert timing.check_send_at(local_send_at("2026-12-30T19:00:00-05:00"), at) is None  # 00:00 UTC as well
    assert timing.check_send_at(local_send_at("2026-12-31T00:00:01+00:00"), at) == (
        "[schedule] send_at 2026-12-31T00:00:01+00:00 is more than 30 days ahead, and Sociocs holds scheduled "
        "messages for at most 30 days; run the campaign within 30 days of that date."
    )
    # a local time: 12:00 on 30 Dec at UTC-12 (the latest zone on Earth) is 00:00 UTC on 31 Dec
    assert timing.check_send_at(local_send_at("2026-12-30 12:00"), at) is None
    assert timing.check_send_at(local_send_at("2026-12-30 12:01"), at) == (
        "[schedule] send_at 2026-12-30 12:01 is more than 30 days ahead, and Sociocs holds scheduled "
        "messages for at most 30 days; run the campaign within 30 days of that date."
    )


def test_zone_label_names_one_zone_or_the_first_and_how_many_more() -> None:
    assert timing.zone_label(CHI) == "America/Chicago"
    assert timing.zone_label(["Europe/London", "America/New_York", "Asia/Kolkata"]) == (
        "Europe/London and 2 more zones"
    )
    assert timing.zone_label(TOLL_FREE_ZONES) == "America/Adak and 27 more zones"


def test_zone_label_of_two_zones_is_singular() -> None:
    assert timing.zone_label(("Pacific/Auckland", "Pacific/Chatham")) == "Pacific/Auckland and 1 more zone"


# --- windows --------------------------------------------------------------------------------


def test_local_minutes_after_midnight_as_utc_across_days_and_dst() -> None:
    chicago, new_york, london = ZoneInfo("America/Chicago"), ZoneInfo("America/New_York"), ZoneInfo("Europe/London")
    assert timing._local(date(2026, 12, 1), 0, chicago) == utc(2026, 12, 1, 6)
    assert timing._local(date(2026, 12, 1), 8 * 60 + 59, chicago) == utc(2026, 12, 1, 14, 59)
    assert timing._local(date(2026, 12, 1), 1439, chicago) == utc(2026, 12, 2, 5, 59)
    assert timing._local(date(2026, 12, 1), 1440, chicago) == utc(2026, 12, 2, 6)  # 24:00 is next midnight
    assert timing._local(date(2026, 12, 1), 1440 + 8 * 60, chicago) == utc(2026, 12, 2, 14)  # 08:00 next day
    assert timing._local(date(2026, 12, 31), 1440 + 61, chicago) == utc(2027, 1, 1, 7, 1)  # into a new year
    assert timing._local(date(2026, 12, 1), 8 * 60, chicago).tzinfo is UTC
    # 02:30 on 8 Mar in New York does not exist: read with the offset before (EST)
    assert timing._local(date(2026, 3, 8), 150, new_york) == utc(2026, 3, 8, 7, 30)
    assert timing._local(date(2026, 3, 8), 180, new_york) == utc(2026, 3, 8, 7)  # 03:00 EDT
    # 01:30 on 1 Nov happens twice: the first (EDT)
    assert timing._local(date(2026, 11, 1), 90, new_york) == utc(2026, 11, 1, 5, 30)
    assert timing._local(date(2026, 11, 1), 120, new_york) == utc(2026, 11, 1, 7)  # 02:00 EST
    assert timing._local(date(2026, 3, 29), 90, london) == utc(2026, 3, 29, 1, 30)  # the gap: GMT
    assert timing._local(date(2026, 10, 25), 90, london) == utc(2026, 10, 25, 0, 30)  # the fold: BST


def test_intervals_from_the_day_before_start_skipping_days_not_named() -> None:
    weekdays = window("08:00-21:00", frozenset({0, 1, 2, 3, 4}))
    # 03:00 UTC on Sat 5 Dec is 21:00 on Fri 4 Dec in Chicago: from Thu 3 Dec for 3 more days
    assert timing._intervals(weekdays, "America/Chicago", utc(2026, 12, 5, 3), 3) == [
        (utc(2026, 12, 3, 14), utc(2026, 12, 4, 3)),
        (utc(2026, 12, 4, 14), utc(2026, 12, 5, 3)),
        (utc(2026, 12, 7, 14), utc(2026, 12, 8, 3)),
    ]
    assert timing._intervals(window("20:00-24:00"), "America/Chicago", utc(2026, 12, 2, 12), 0) == [
        (utc(2026, 12, 2, 2), utc(2026, 12, 2, 6)),
        (utc(2026, 12, 3, 2), utc(2026, 12, 3, 6)),
    ]
    # legacy name accepted; spring forward: 01:00 EST to 04:00 EDT is two hours
    assert timing._intervals(window("01:00-04:00"), "US/Eastern", utc(2026, 3, 8, 12), 0) == [
        (utc(2026, 3, 7, 6), utc(2026, 3, 7, 9)),
        (utc(2026, 3, 8, 6), utc(2026, 3, 8, 8)),
    ]


def test_intervals_of_a_window_across_midnight_belong_to_the_day_it_opens() -> None:
    overnight = window("21:00-08:00")
    assert timing._intervals(overnight, "America/Chicago", utc(2026, 12, 2, 12), 1) == [
        (utc(2026, 12, 2, 3), utc(2026, 12, 2, 14)),
        (utc(2026, 12, 3, 3), utc(2026, 12, 3, 14)),
        (utc(2026, 12, 4, 3), utc(2026, 12, 4, 14)),
    ]
    # New York falls back in the night of 31 Oct: 21:00 EDT to 08:00 EST is twelve hours
    assert timing._intervals(overnight, "America/New_York", utc(2026, 11, 1, 12), 0) == [
        (utc(2026, 11, 1, 1), utc(2026, 11, 1, 13)),
        (utc(2026, 11, 2, 2), utc(2026, 11, 2, 13)),
    ]
    # Friday night only: opens on Friday, closes on Saturday morning
    friday = window("21:00-08:00", frozenset({4}))
    assert timing._intervals(friday, "Europe/London", utc(2026, 12, 1, 12), 6) == [
        (utc(2026, 12, 4, 21), utc(2026, 12, 5, 8)),
    ]


def test_intervals_of_whole_days_merge_into_one() -> None:
    weekend = Schedule(days=frozenset({5, 6}))  # days without a window: whole days
    assert timing._intervals(weekend, "Europe/London", utc(2026, 12, 1, 12), 6) == [
        (utc(2026, 12, 5), utc(2026, 12, 7)),
    ]


def test_merge_joins_touching_and_overlapping_intervals_in_order() -> None:
    assert timing._merge([]) == []
    assert timing._merge(
        [
            (utc(2026, 12, 1, 10), utc(2026, 12, 1, 12)),
            (utc(2026, 12, 1, 8), utc(2026, 12, 1, 9)),
            (utc(2026, 12, 1, 13), utc(2026, 12, 1, 14)),
            (utc(2026, 12, 1, 9), utc(2026, 12, 1, 10)),
            (utc(2026, 12, 1, 11), utc(2026, 12, 1, 11, 30)),
        ]
    ) == [(utc(2026, 12, 1, 8), utc(2026, 12, 1, 12)), (utc(2026, 12, 1, 13), utc(2026, 12, 1, 14))]
    one_microsecond_apart = [
        (utc(2026, 12, 1, 8), utc(2026, 12, 1, 9)),
        (utc(2026, 12, 1, 9, 0, 0, 1), utc(2026, 12, 1, 10)),
    ]
    assert timing._merge(one_microsecond_apart) == one_microsecond_apart


def test_intersect_keeps_only_overlaps_of_positive_length() -> None:
    def h(hour: int) -> datetime:
        return utc(2026, 12, 1, hour)

    xs = [(h(1), h(5)), (h(7), h(10)), (h(12), h(14))]
    ys = [(h(2), h(3)), (h(4), h(8)), (h(10), h(13))]
    expected = [(h(2), h(3)), (h(4), h(5)), (h(7), h(8)), (h(12), h(13))]
    assert timing._intersect(xs, ys) == expected
    assert timing._intersect(ys, xs) == expected
    assert timing._intersect(xs, []) == [] and timing._intersect([], ys) == []
    assert timing._intersect([(h(1), h(2))], [(h(2), h(3))]) == []  # touching is not overlapping


def test_common_intervals_of_two_zones_from_an_hour() -> None:
    both = ("America/New_York", "Europe/London")
    # 09:00-17:00 is 14:00-22:00 UTC in New York and 09:00-17:00 UTC in London: 14:00-17:00 UTC
    # (from 30 Nov, the day before 1 Dec in London, to 8 Dec, eight days after 30 Nov in New York)
    expected = tuple((utc(2026, m, d, 14), utc(2026, m, d, 17)) for m, d in [(11, 30), *((12, d) for d in range(1, 9))])
    assert timing._common(window("09:00-17:00"), both, utc(2026, 12, 1)) == expected
    assert timing._common(window("09:00-17:00"), (), utc(2026, 12, 1)) == ()
    assert timing._common(window("09:00-12:00"), ("Europe/London", "Pacific/Auckland"), utc(2026, 12, 1)) == ()


def test_common_windows_start_at_the_moment_asked_and_drop_those_ended() -> None:
    chicago = window("08:00-21:00")
    # 09:30 on Wed 2 Dec in Chicago: today's window from now, then every day to 10 Dec
    assert timing.common_windows(chicago, CHI, utc(2026, 12, 2, 15, 30)) == [
        (utc(2026, 12, 2, 15, 30), utc(2026, 12, 3, 3)),
        *((utc(2026, 12, d, 14), utc(2026, 12, d + 1, 3)) for d in range(3, 11)),
    ]
    # exactly 21:00: today's window has ended
    assert timing.common_windows(chicago, CHI, utc(2026, 12, 3, 3)) == [
        (utc(2026, 12, d, 14), utc(2026, 12, d + 1, 3)) for d in range(3, 11)
    ]
    # a minute before: the last minute of today's window is left
    assert timing.common_windows(chicago, ["America/Chicago"], utc(2026, 12, 3, 2, 59))[0] == (
        utc(2026, 12, 3, 2, 59),
        utc(2026, 12, 3, 3),
    )


def test_common_windows_in_a_half_hour_zone_count_days_from_the_hour_asked() -> None:
    # 09:00-17:00 in Kolkata (UTC+05:30) is 03:30-11:30 UTC. 18:45 UTC on 1 Dec is 00:15 on 2 Dec
    # there, but the hour it is asked in (18:00 UTC) is 23:30 on 1 Dec: windows of 2 to 9 Dec
    assert timing.common_windows(window("09:00-17:00"), ["Asia/Kolkata"], utc(2026, 12, 1, 18, 45)) == [
        (utc(2026, 12, d, 3, 30), utc(2026, 12, d, 11, 30)) for d in range(2, 10)
    ]


def test_next_opening_at_a_windows_first_and_last_minute_and_its_end() -> None:
    chicago = window("08:00-21:00")
    assert timing.next_opening(Schedule(), CHI, utc(2026, 12, 2, 3)) is None  # no quiet hours
    assert timing.next_opening(chicago, CHI, utc(2026, 12, 2, 13, 59)) == utc(2026, 12, 2, 14)  # 07:59
    assert timing.next_opening(chicago, CHI, utc(2026, 12, 2, 14)) is None  # 08:00, the first minute
    assert timing.next_opening(chicago, CHI, utc(2026, 12, 3, 2, 59)) is None  # 20:59, the last minute
    assert timing.next_opening(chicago, CHI, utc(2026, 12, 3, 2, 59, 59, 999999)) is None
    assert timing.next_opening(chicago, CHI, utc(2026, 12, 3, 3)) == utc(2026, 12, 3, 14)  # 21:00: tomorrow
    overnight = window("21:00-08:00")
    assert timing.next_opening(overnight, CHI, utc(2026, 12, 2, 13, 59)) is None  # 07:59
    assert timing.next_opening(overnight, CHI, utc(2026, 12, 2, 14)) == utc(2026, 12, 3, 3)  # 08:00
    # days only: Saturday noon in Chicago waits for Monday 00:00 CST
    weekdays = Schedule(days=frozenset({0, 1, 2, 3, 4}))
    assert timing.next_opening(weekdays, CHI, utc(2026, 12, 5, 18)) == utc(2026, 12, 7, 6)
    assert timing.next_opening(weekdays, CHI, utc(2026, 12, 5, 5, 59)) is None  # 23:59 on Friday
    both = ("America/New_York", "Europe/London")
    assert timing.next_opening(window("09:00-17:00"), both, utc(2026, 12, 1, 10)) == utc(2026, 12, 1, 14)
    assert timing.next_opening(window("09:00-17:00"), both, utc(2026, 12, 1, 16, 59)) is None
    assert timing.next_opening(window("09:00-17:00"), both, utc(2026, 12, 1, 17)) == utc(2026, 12, 2, 14)


def test_next_opening_when_the_zones_never_share_the_window() -> None:
    # 09:00-12:00 is 09:00-12:00 UTC in London and 20:00-23:00 UTC the day before in Auckland
    with pytest.raises(timing.ZoneError) as err:
        timing.next_opening(window("09:00-12:00"), ["Europe/London", "Pacific/Auckland"], utc(2026, 12, 1))
    assert str(err.value) == (
        "no hour of the window 09:00-12:00 falls inside it in all of this number's time zones "
        "(Europe/London, Pacific/Auckland); give the row its zone in the time zone column "
        "([schedule] timezone_column)"
    )


def test_check_in_window_names_the_local_time_outside_the_window() -> None:
    chicago = window("08:00-21:00")
    assert timing.check_in_window(chicago, CHI, "2026-12-01T08:00:00-06:00") is None
    assert timing.check_in_window(chicago, CHI, "2026-12-02T02:59:00+00:00") is None  # 20:59
    assert timing.check_in_window(Schedule(), CHI, "2026-12-01T03:00:00-06:00") is None
    with pytest.raises(timing.ZoneError) as err:
        timing.check_in_window(chicago, CHI, "2026-12-01T13:59:00+00:00")
    assert str(err.value) == (
        "its schedule, Tue 01 Dec 07:59 in America/Chicago, is outside the sending window 08:00-21:00 there; "
        "move send_at or schedule inside it"
    )
    with pytest.raises(timing.ZoneError) as err:
        timing.check_in_window(Schedule(days=frozenset({4, 0, 2})), CHI, "2026-12-05T12:00:00-06:00")
    assert str(err.value) == (
        "its schedule, Sat 05 Dec 12:00 in America/Chicago, is outside the sending window mon, wed, fri there; "
        "move send_at or schedule inside it"
    )


def test_check_in_window_names_the_zone_where_the_schedule_is_outside() -> None:
    # 16:30 in Auckland (NZDT, UTC+13) is 17:15 in Chatham (UTC+13:45): outside 09:00-17:00 only there
    with pytest.raises(timing.ZoneError) as err:
        timing.check_in_window(window("09:00-17:00"), ("Pacific/Auckland", "Pacific/Chatham"), "2026-12-01T03:30:00Z")
    assert "17:15 in Pacific/Chatham" in str(err.value)


def test_describe_opening_gives_the_date_only_when_it_is_another_local_day() -> None:
    # 03:00 UTC on 2 Dec is 21:00 on Tue 1 Dec in Chicago
    with timing.use_clock(ManualClock(utc(2026, 12, 2, 3))):
        assert timing.describe_opening(utc(2026, 12, 2, 5), CHI) == "23:00 America/Chicago"  # still 1 Dec there
        assert timing.describe_opening(utc(2026, 12, 2, 6), CHI) == "Wed 02 Dec 00:00 America/Chicago"
        assert timing.describe_opening(utc(2026, 12, 2, 14), CHI) == "Wed 02 Dec 08:00 America/Chicago"
        assert timing.describe_opening(utc(2026, 12, 2, 14), ["Europe/London", "America/Chicago"]) == (
            "14:00 Europe/London"  # 14:00 on 2 Dec, as it is already 2 Dec in London
        )


# --- send_at --------------------------------------------------------------------------------


def test_resolve_local_an_ordinary_time_has_no_note() -> None:
    moment, note = timing.resolve_local(datetime(2026, 12, 1, 9), "America/New_York")
    assert (moment.isoformat(), note) == ("2026-12-01T09:00:00-05:00", "")
    assert moment.tzinfo is ZoneInfo("America/New_York")
    moment, note = timing.resolve_local(datetime(2026, 7, 1, 9), "Asia/Calcutta")
    assert (moment.isoformat(), note) == ("2026-07-01T09:00:00+05:30", "")
    # the minutes either side of a change exist once
    for naive, shown in [
        (datetime(2026, 3, 8, 1, 59), "2026-03-08T01:59:00-05:00"),
        (datetime(2026, 3, 8, 3, 0), "2026-03-08T03:00:00-04:00"),
        (datetime(2026, 11, 1, 0, 59), "2026-11-01T00:59:00-04:00"),
        (datetime(2026, 11, 1, 2, 0), "2026-11-01T02:00:00-05:00"),
    ]:
        moment, note = timing.resolve_local(naive, "America/New_York")
        assert (moment.isoformat(), note) == (shown, "")


def test_resolve_local_in_a_gap_reads_the_offset_before_the_change_and_says_so() -> None:
    moment, note = timing.resolve_local(datetime(2026, 3, 8, 2, 30), "America/New_York")
    assert moment.isoformat() == "2026-03-08T03:30:00-04:00" and moment.tzinfo is ZoneInfo("America/New_York")
    assert note == (
        "02:30 on 2026-03-08 in America/New_York does not exist (the clocks go forward); scheduled at 03:30 EDT, "
        "the same moment read with the offset before the change (RFC 5545)"
    )
    moment, note = timing.resolve_local(datetime(2026, 3, 8, 2, 0), "America/New_York")  # the gap's first minute
    assert moment.isoformat() == "2026-03-08T03:00:00-04:00"
    assert note.startswith("02:00 on 2026-03-08 in America/New_York does not exist")
    moment, note = timing.resolve_local(datetime(2026, 3, 29, 1, 30), "Europe/London")
    assert moment.isoformat() == "2026-03-29T02:30:00+01:00"
    assert note == (
        "01:30 on 2026-03-29 in Europe/London does not exist (the clocks go forward); scheduled at 02:30 BST, "
        "the same moment read with the offset before the change (RFC 5545)"
    )


def test_resolve_local_in_a_fold_takes_the_first_and_says_so() -> None:
    moment, note = timing.resolve_local(datetime(2026, 11, 1, 1, 30), "America/New_York")
    assert moment.isoformat() == "2026-11-01T01:30:00-04:00" and moment.fold == 0
    assert note == (
        "01:30 on 2026-11-01 in America/New_York happens twice (the clocks go back); scheduled at the first, EDT"
    )
    moment, note = timing.resolve_local(datetime(2026, 10, 25, 1, 0), "Europe/London")  # the fold's first minute
    assert moment.isoformat() == "2026-10-25T01:00:00+01:00"
    assert (
        note == "01:00 on 2026-10-25 in Europe/London happens twice (the clocks go back); scheduled at the first, BST"
    )
    _, note = timing.resolve_local(datetime(2026, 11, 1, 1, 30), "US/Eastern")  # the name as the row gave it
    assert note.startswith("01:30 on 2026-11-01 in US/Eastern happens twice")


def test_send_at_with_an_offset_is_one_instant_for_everyone() -> None:
    schedule = local_send_at("2026-12-03T09:00:00-05:00")
    result = timing.send_at(schedule, CHI, utc(2026, 12, 1))
    assert result == SendAt(utc(2026, 12, 3, 14), "") and result.instant is not None
    assert result.instant.tzinfo is UTC
    assert timing.send_at(schedule, ("Europe/London", "America/New_York"), utc(2026, 12, 1)) == SendAt(
        utc(2026, 12, 3, 14), ""
    )
    # passed (exactly at it counts as passed): sent at once, even with if_past = "next-day"
    late = local_send_at("2026-12-03T09:00:00-05:00", if_past="next-day")
    assert timing.send_at(late, CHI, utc(2026, 12, 3, 14)) == SendAt(
        None, "send_at 2026-12-03T09:00:00-05:00 had passed; sent at once ([schedule] if_past)"
    )
    assert timing.send_at(late, CHI, utc(2026, 12, 3, 13, 59, 59, 999999)) == SendAt(utc(2026, 12, 3, 14), "")
    assert SendAt(None).note == ""


def test_send_at_local_time_takes_the_offset_of_its_own_date() -> None:
    # sent on 30 Oct (EDT) for 1 Nov, after New York has fallen back to EST
    assert timing.send_at(local_send_at("2026-11-01 09:00"), NY, utc(2026, 10, 30, 12)) == SendAt(
        utc(2026, 11, 1, 14), ""
    )
    assert timing.send_at(local_send_at("2026-11-01 09:00"), LDN, utc(2026, 10, 30, 12)) == SendAt(
        utc(2026, 11, 1, 9), ""
    )
    assert timing.send_at(local_send_at("2026-10-25 01:30"), LDN, utc(2026, 10, 20)) == SendAt(
        utc(2026, 10, 25, 0, 30),
        "01:30 on 2026-10-25 in Europe/London happens twice (the clocks go back); scheduled at the first, BST",
    )


def test_send_at_with_several_zones_is_the_latest_of_them_and_says_so() -> None:
    zones = ("Europe/London", "America/New_York")
    assert timing.send_at(local_send_at("2026-12-01 09:00"), zones, utc(2026, 11, 30)) == SendAt(
        utc(2026, 12, 1, 14),
        "the number may be in 2 time zones; scheduled for 09:00 in the westernmost, so it is not earlier anywhere "
        "(14:00 in Europe/London)",
    )
    # 02:30 on 8 Mar exists in neither: 07:30 UTC (New York, EST) and 08:30 UTC (Chicago, CST); the first note only
    assert timing.send_at(
        local_send_at("2026-03-08 02:30"), ("America/New_York", "America/Chicago"), utc(2026, 3, 1)
    ) == SendAt(
        utc(2026, 3, 8, 8, 30),
        "02:30 on 2026-03-08 in America/New_York does not exist (the clocks go forward); scheduled at 03:30 EDT, "
        "the same moment read with the offset before the change (RFC 5545); the number may be in 2 time zones; "
        "scheduled for 02:30 in the westernmost, so it is not earlier anywhere (04:30 in America/New_York)",
    )


def test_send_at_already_past_sends_now_or_moves_to_the_next_day_it_is_ahead() -> None:
    nine = local_send_at("2026-12-01 09:00")  # 15:00 UTC in Chicago
    assert timing.send_at(nine, CHI, utc(2026, 12, 1, 14, 59)) == SendAt(utc(2026, 12, 1, 15), "")
    assert timing.send_at(nine, CHI, utc(2026, 12, 1, 15)) == SendAt(
        None, "send_at 2026-12-01 09:00 had passed in America/Chicago; sent at once ([schedule] if_past)"
    )
    next_day = local_send_at("2026-12-01 09:00", if_past="next-day")
    assert timing.send_at(next_day, CHI, utc(2026, 12, 1, 15)) == SendAt(
        utc(2026, 12, 2, 15), "send_at had passed in America/Chicago; scheduled a day later ([schedule] if_past)"
    )
    assert timing.send_at(next_day, CHI, utc(2026, 12, 3, 12)) == SendAt(
        utc(2026, 12, 3, 15), "send_at had passed in America/Chicago; scheduled 2 days later ([schedule] if_past)"
    )
    # a day later across the fall-back: 09:00 EST, not 09:00 EDT
    assert timing.send_at(local_send_at("2026-10-31 09:00", if_past="next-day"), NY, utc(2026, 11, 1)) == SendAt(
        utc(2026, 11, 1, 14), "send_at had passed in America/New_York; scheduled a day later ([schedule] if_past)"
    )
    # the gap's note stays beside the past one
    assert timing.send_at(local_send_at("2026-03-08 02:30"), NY, utc(2026, 3, 9)) == SendAt(
        None,
        "02:30 on 2026-03-08 in America/New_York does not exist (the clocks go forward); scheduled at 03:30 EDT, "
        "the same moment read with the offset before the change (RFC 5545); send_at 2026-03-08 02:30 had passed "
        "in America/New_York; sent at once ([schedule] if_past)",
    )


def test_send_at_more_than_30_days_ahead_is_refused() -> None:
    # 09:00 CST on 31 Dec is 15:00 UTC: exactly 30 days after 15:00 UTC on 1 Dec
    assert timing.send_at(local_send_at("2026-12-31 09:00"), CHI, utc(2026, 12, 1, 15)) == SendAt(
        utc(2026, 12, 31, 15), ""
    )
    for schedule, at in [
        (local_send_at("2026-12-31 09:00"), utc(2026, 12, 1, 14, 59)),
        (local_send_at("2026-12-31T15:00:00+00:00"), utc(2026, 12, 1, 14, 59)),
    ]:
        with pytest.raises(timing.ZoneError) as err:
            timing.send_at(schedule, CHI, at)
        assert str(err.value) == (
            f"send_at {schedule.send_at_text} is more than 30 days ahead, and Sociocs holds scheduled messages "
            "for at most 30 days; run the campaign within 30 days of that date"
        )
    with pytest.raises(AssertionError):
        timing.send_at(Schedule(), CHI, utc(2026, 12, 1))


def test_api_time_carries_the_recipients_offset_on_that_date() -> None:
    assert timing.api_time(utc(2026, 11, 1, 14), NY) == "2026-11-01T09:00:00-05:00"
    assert timing.api_time(utc(2026, 7, 1, 13), NY) == "2026-07-01T09:00:00-04:00"
    assert timing.api_time(utc(2026, 12, 1, 3, 30), ("Asia/Calcutta", "Europe/London")) == "2026-12-01T09:00:00+05:30"
    assert timing.api_time(utc(2026, 11, 1, 14), ()) == "2026-11-01T14:00:00+00:00"


# --- the sender's question ------------------------------------------------------------------


def test_hold_shows_utc_beside_a_local_label() -> None:
    local = Hold(datetime(2026, 12, 2, 8, tzinfo=ZoneInfo("America/Chicago")), "08:00 America/Chicago")
    assert (local.short, local.limit) == (False, False)
    assert local.utc == "14:00 UTC"
    assert local.shown == "08:00 America/Chicago (14:00 UTC)"
    limit = Hold(utc(2026, 12, 2, 12, 0, 30), "12:00 UTC (daily limit)", limit=True)
    assert limit.utc == "12:00 UTC" and limit.shown == "12:00 UTC (daily limit)"


def test_gate_without_a_ledger_holds_only_to_the_window() -> None:
    gate = timing.Gate(window("08:00-21:00"))
    with timing.use_clock(ManualClock(utc(2026, 12, 2, 13, 59))) as clock:  # 07:59 in Chicago
        held = gate.hold(CHI, CHICAGO)
        assert held == Hold(utc(2026, 12, 2, 14), "08:00 America/Chicago")
        assert held is not None and (held.short, held.limit) == (False, False)
        assert gate.hold((), CHICAGO) is None  # no zone known: the window cannot apply
        clock.advance(timedelta(minutes=1))
        assert gate.hold(CHI, CHICAGO, reserve=True) is None
        clock.moment = utc(2026, 12, 3, 3)  # 21:00: closed until tomorrow
        assert gate.hold(CHI, CHICAGO) == Hold(utc(2026, 12, 3, 14), "Thu 03 Dec 08:00 America/Chicago")
    assert timing.Gate(Schedule()).hold(CHI, CHICAGO) is None
    assert timing.Gate(Schedule()).ledger is None


def test_gate_with_a_ledger_holds_six_seconds_between_messages_to_one_number(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite", CHANNEL, daily_limit=None, pair_gap=6.0)
    gate = timing.Gate(Schedule(), ledger)
    start = utc(2026, 12, 2, 15)
    try:
        with timing.use_clock(ManualClock(start)) as clock:
            assert gate.hold(CHI, CHICAGO) is None and gate.hold(CHI, CHICAGO) is None  # not reserved: no entry
            assert ledger.recipients_since(start) == 0
            assert gate.hold(CHI, CHICAGO, reserve=True) is None
            assert ledger.recipients_since(start) == 1
            held = gate.hold(CHI, CHICAGO)
            assert held == Hold(
                start + timedelta(seconds=6, microseconds=1), "6 s since the last message to this number", short=True
            )
            assert held is not None and held.limit is False
            assert gate.hold(CHI, "+13125550199") is None  # another number
            clock.advance(timedelta(seconds=6, microseconds=1))
            assert gate.hold(CHI, CHICAGO) is None
    finally:
        ledger.close()


def test_gate_with_a_ledger_holds_to_the_daily_limit(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite", CHANNEL, daily_limit=1, pair_gap=None)
    gate = timing.Gate(Schedule(), ledger)
    start = utc(2026, 12, 2, 15)  # 09:00 in Chicago
    free = start + timedelta(days=1, microseconds=1)  # when the first send turns 24 hours old
    try:
        with timing.use_clock(ManualClock(start)) as clock:
            assert gate.hold(CHI, CHICAGO, reserve=True) is None
            clock.advance(timedelta(hours=1))
            held = gate.hold(CHI, NEW_YORK)
            assert held == Hold(free, "Thu 03 Dec 09:00 America/Chicago (daily limit)", limit=True)
            assert held is not None and held.short is False
            assert gate.hold((), NEW_YORK) == Hold(free, "15:00 UTC (daily limit)", limit=True)
            # a wait of at most 7 seconds is waited in the run (short), whatever held it
            clock.moment = free - timedelta(seconds=7)
            assert gate.hold(CHI, NEW_YORK) == Hold(free, "6 s since the last message to this number", short=True)
            clock.moment = free - timedelta(seconds=7, microseconds=1)  # 08:59 on 3 Dec there: no date
            assert gate.hold(CHI, NEW_YORK) == Hold(free, "09:00 America/Chicago (daily limit)", limit=True)
            clock.moment = free
            assert gate.hold(CHI, NEW_YORK, reserve=True) is None
    finally:
        ledger.close()


def test_gate_window_comes_before_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite", CHANNEL, daily_limit=1, pair_gap=6.0)
    gate = timing.Gate(window("08:00-21:00"), ledger)
    try:
        with timing.use_clock(ManualClock(utc(2026, 12, 2, 13))):  # 07:00 in Chicago
            assert gate.hold(CHI, CHICAGO, reserve=True) == Hold(utc(2026, 12, 2, 14), "08:00 America/Chicago")
            assert ledger.recipients_since(utc(2026, 12, 2, 13)) == 0  # a held row takes no place
    finally:
        ledger.close()


# --- check's forecast -----------------------------------------------------------------------


def test_forecast_describe_in_the_groups_first_zone_and_utc() -> None:
    one = Forecast(CHI, 1234, utc(2026, 12, 2, 14), utc(2026, 12, 2, 14, 20, 34), True)
    assert one.describe() == "America/Chicago: 1,234 rows, Wed 08:00–Wed 08:20 local (14:00–14:20 UTC)"
    three = Forecast(
        ("America/New_York", "Europe/London", "Asia/Kolkata"), 5, utc(2026, 12, 1, 14), utc(2026, 12, 2, 6), False
    )
    assert three.describe() == (
        "America/New_York and 2 more zones: 5 rows, Tue 09:00–Wed 01:00 local (14:00–06:00 UTC)"
    )


def test_forecast_one_group_waits_for_its_window() -> None:
    chicago = window("08:00-21:00")
    at = utc(2026, 12, 2, 3)  # 21:00 on Tue 1 Dec in Chicago: just closed
    assert timing.forecast(chicago, {CHI: 10}, 1.0, at) == [
        Forecast(CHI, 10, utc(2026, 12, 2, 14), utc(2026, 12, 2, 14, 0, 10), True)
    ]
    assert timing.forecast(chicago, {CHI: 10}, 4.0, at) == [
        Forecast(CHI, 10, utc(2026, 12, 2, 14), utc(2026, 12, 2, 14, 0, 2, 500000), True)
    ]
    # rate 0 (no pacing): all at the window's opening
    assert timing.forecast(chicago, {CHI: 10}, 0.0, at) == [
        Forecast(CHI, 10, utc(2026, 12, 2, 14), utc(2026, 12, 2, 14), True)
    ]
    assert timing.forecast(chicago, {}, 1.0, at) == []


def test_forecast_without_a_window_or_with_send_at_goes_now() -> None:
    at = utc(2026, 12, 2, 3)
    expected = [Forecast(CHI, 10, at, at + timedelta(seconds=10), True)]
    assert timing.forecast(Schedule(), {CHI: 10}, 1.0, at) == expected
    with_send_at = Schedule(
        send_at=datetime(2026, 12, 3, 9), send_at_text="2026-12-03 09:00", window=(480, 1260), window_text="08:00-21:00"
    )
    assert timing.forecast(with_send_at, {CHI: 10}, 1.0, at) == expected


def test_forecast_looks_eight_days_ahead_when_nothing_holds_the_rows_back() -> None:
    # 700,000 rows at one a second take 8.1 days; the forecast looks 8 days (691,200 s) ahead
    at = utc(2026, 12, 2, 3)
    assert timing.forecast(Schedule(), {CHI: 700_000}, 1.0, at) == [
        Forecast(CHI, 700_000, at, utc(2026, 12, 10, 3), False)
    ]
    assert timing.forecast(Schedule(), {CHI: 691_200}, 1.0, at) == [
        Forecast(CHI, 691_200, at, utc(2026, 12, 10, 3), True)
    ]


def test_forecast_groups_go_in_order_of_their_window_sharing_the_rate() -> None:
    at = utc(2026, 12, 2, 4)  # 04:00 in London, 22:00 on 1 Dec in Chicago: both closed
    plan = timing.forecast(window("08:00-21:00"), {CHI: 3600, LDN: 1800}, 1.0, at)
    assert plan == [
        Forecast(LDN, 1800, utc(2026, 12, 2, 8), utc(2026, 12, 2, 8, 30), True),
        Forecast(CHI, 3600, utc(2026, 12, 2, 14), utc(2026, 12, 2, 15), True),
    ]
    # London from 08:00 to 19:00 UTC; Chicago's window (from 14:00) is reached at 19:00 UTC
    plan = timing.forecast(window("08:00-21:00"), {CHI: 3600, LDN: 11 * 3600}, 1.0, at)
    assert plan == [
        Forecast(LDN, 11 * 3600, utc(2026, 12, 2, 8), utc(2026, 12, 2, 19), True),
        Forecast(CHI, 3600, utc(2026, 12, 2, 19), utc(2026, 12, 2, 20), True),
    ]


def test_forecast_rows_that_spill_into_the_next_window_do_not_fit() -> None:
    short = window("08:00-08:05")  # 300 seconds a day
    at = utc(2026, 12, 2)  # 18:00 on 1 Dec in Chicago
    assert timing.forecast(short, {CHI: 300}, 1.0, at) == [
        Forecast(CHI, 300, utc(2026, 12, 2, 14), utc(2026, 12, 2, 14, 5), True)  # exactly fills it
    ]
    assert timing.forecast(short, {CHI: 301}, 1.0, at) == [
        Forecast(CHI, 301, utc(2026, 12, 2, 14), utc(2026, 12, 3, 14, 0, 1), False)
    ]
    # Winnipeg shares Chicago's CST: Chicago fills Wednesday's window, Winnipeg waits for Thursday's
    assert timing.forecast(short, {("America/Winnipeg",): 60, CHI: 300}, 1.0, at) == [
        Forecast(CHI, 300, utc(2026, 12, 2, 14), utc(2026, 12, 2, 14, 5), True),
        Forecast(("America/Winnipeg",), 60, utc(2026, 12, 3, 14), utc(2026, 12, 3, 14, 1), True),
    ]


def test_forecast_beyond_the_horizon_and_zones_that_never_share_the_window() -> None:
    short = window("08:00-08:05")
    at = utc(2026, 12, 2)
    # eight windows (2 to 9 Dec) of 300 s hold 2400 of Chicago's 3000 s; nothing is left for Winnipeg
    assert timing.forecast(short, {CHI: 3000, ("America/Winnipeg",): 60}, 1.0, at) == [
        Forecast(CHI, 3000, utc(2026, 12, 2, 14), utc(2026, 12, 9, 14, 5), False),
        Forecast(("America/Winnipeg",), 60, utc(2026, 12, 9, 14, 5), utc(2026, 12, 9, 14, 5), False),
    ]
    never = ("Europe/London", "Pacific/Auckland")
    assert timing.forecast(window("09:00-12:00"), {never: 5, LDN: 5}, 1.0, at) == [
        Forecast(LDN, 5, utc(2026, 12, 2, 9), utc(2026, 12, 2, 9, 0, 5), True)
    ]


# --- what mutation testing found unpinned ----------------------------------------------------


@pytest.fixture
def far_local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local time zone set to Asia/Kolkata (UTC+05:30), so that a time that is
    meant to be UTC but is only "local" shows (the suite's machines run in UTC)."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_utc_labels_and_send_at_instants_are_utc_whatever_the_local_zone(far_local_zone: None, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite", CHANNEL, daily_limit=1, pair_gap=None)
    start = utc(2026, 12, 2, 15)
    try:
        with timing.use_clock(ManualClock(start)) as clock:
            gate = timing.Gate(Schedule(), ledger)
            assert gate.hold((), NEW_YORK, reserve=True) is None
            clock.advance(timedelta(hours=1))
            held = gate.hold((), CHICAGO)
            assert held is not None and held.label == "15:00 UTC (daily limit)"  # 20:30 in Kolkata
    finally:
        ledger.close()
    at = timing.send_at(local_send_at("2026-12-01 09:00"), (*CHI, *NY), utc(2026, 12, 1, 12)).instant
    assert at == utc(2026, 12, 1, 15) and at is not None and at.utcoffset() == timedelta(0)


def test_forecast_orders_groups_by_when_their_window_opens_not_closes() -> None:
    """In December New York's 08:00-21:00 is 13:00-02:00 UTC; shared with Chicago it is
    14:00-02:00: the same close, so only the opening puts New York first."""
    both = ("America/Chicago", "America/New_York")
    at = utc(2026, 12, 2, 12)
    assert timing.forecast(window("08:00-21:00"), {both: 3600, NY: 3600}, 1.0, at) == [
        Forecast(NY, 3600, utc(2026, 12, 2, 13), utc(2026, 12, 2, 14), True),
        Forecast(both, 3600, utc(2026, 12, 2, 14), utc(2026, 12, 2, 15), True),
    ]


def test_forecast_without_a_window_half_a_second_past_the_horizon_does_not_fit() -> None:
    """No window: one span of eight days (691,200 s); 1,382,401 rows at 2 a second need half a
    second more."""
    at = utc(2026, 12, 2)
    assert timing.forecast(Schedule(), {CHI: 1_382_401}, 2.0, at) == [
        Forecast(CHI, 1_382_401, at, at + timedelta(days=8), False)
    ]
    assert timing.forecast(Schedule(), {CHI: 1_382_400}, 2.0, at) == [
        Forecast(CHI, 1_382_400, at, at + timedelta(days=8), True)
    ]


def test_row_zones_falls_back_to_the_campaigns_timezone() -> None:
    """+882 (international networks) has no zone of its own: [message] timezone gives it one."""
    assert timing.row_zones(window("08:00-21:00"), None, "+88213100000", "Europe/Paris") == ("Europe/Paris",)
    assert timing.row_zones(window("08:00-21:00"), "", "+88213100000", "Asia/Calcutta") == ("Asia/Kolkata",)
