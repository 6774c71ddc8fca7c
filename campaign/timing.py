"""When each recipient may hear from a campaign: the one clock, time zones, send_at, windows.

* **The one clock.** Every decision about *when* (is this row inside its window, is ``send_at``
  past, how many recipients did the channel reach in the last 24 hours) asks :func:`now`, and
  every wait for a window sleeps through :meth:`Clock.sleep`. Tests install a
  :class:`ManualClock` with :func:`use_clock` and move time instead of sleeping. (Pacing stays
  on the event loop's clock, as aiolimiter's does; it decides how fast, never whether.)
* **Each recipient's zone** (PRODUCT.md, "Sending windows and local time"): the row's
  ``timezone_column`` (an IANA name; legacy names such as ``Asia/Calcutta`` are read as their
  canonical zone), else the zones ``phonenumbers.timezone.time_zones_for_number`` gives for the
  number (``Etc/Unknown`` means none), else ``[message] timezone``. A number may give several
  zones (Australian mobiles, toll-free numbers): a window must then hold in all of them.
* **send_at** without an offset is a wall-clock time in the recipient's zone. A time in a
  daylight-saving gap or fold follows RFC 5545 section 3.3.5 (a nonexistent time is read with
  the offset before the change; an ambiguous one is its first occurrence) and the row says so.
* **Windows** (``window``, ``days``) are checked by the sender at the moment of sending
  (:class:`Gate`), and forecast by ``check`` (:func:`forecast`).

The daily-limit ledger lives in :mod:`campaign.ledger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.resources
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone

from campaign.config import DAYS as DAY_NAMES
from campaign.config import Schedule
from campaign.errors import agree, count
from campaign.ledger import PAIR_GAP, Ledger

UNKNOWN_ZONE = "Etc/Unknown"  # what phonenumbers (and CLDR) say when a number has no zone
MAX_AHEAD = timedelta(days=30)  # Sociocs holds scheduled messages up to 30 days (sociocs-api.md 6)
_HORIZON = 8  # days ahead a window opening is looked for: every weekday comes round once


# --- the one clock --------------------------------------------------------------------------


class Clock:
    """The real clock: UTC wall time, and asyncio sleeps."""

    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        await asyncio.sleep(max(0.0, seconds))


class ManualClock(Clock):
    """A clock that moves only when told (tests): ``sleep`` jumps forward instead of waiting."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self.moment = start.astimezone(UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta``."""
        self.moment += delta

    async def sleep(self, seconds: float) -> None:
        self.moment += timedelta(seconds=max(0.0, seconds))
        await asyncio.sleep(0)


_clock: Clock = Clock()


def now() -> datetime:
    """The current instant (aware, UTC) from the installed clock."""
    return _clock.now()


def clock() -> Clock:
    """The installed clock."""
    return _clock


@contextlib.contextmanager
def use_clock(replacement: Clock) -> Iterator[Clock]:
    """Install ``replacement`` as the one clock for the duration of the ``with`` block."""
    global _clock
    old, _clock = _clock, replacement
    try:
        yield replacement
    finally:
        _clock = old


# --- time zones -----------------------------------------------------------------------------


class ZoneError(ValueError):
    """A row's time zone cannot be known or used; ``str()`` is the sentence for its results row."""


@functools.cache
def _links() -> dict[str, str]:
    """Legacy zone name → canonical name, from the IANA ``backward`` links that the tzdata
    package ships in ``tzdata.zi`` (lines ``L Asia/Kolkata Asia/Calcutta``)."""
    try:
        text = importlib.resources.files("tzdata").joinpath("zoneinfo", "tzdata.zi").read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError):
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("L "):
            _, target, alias = line.split()
            out[alias] = target
    return out


def canonical(name: str) -> str:
    """The canonical IANA name of a zone (``Asia/Calcutta`` → ``Asia/Kolkata``); others as given."""
    seen = {name}
    while name in _links():
        name = _links()[name]
        if name in seen:
            break
        seen.add(name)
    return name


@functools.cache
def zone(name: str) -> ZoneInfo:
    """The zone called ``name`` (IANA, legacy names accepted); raises :class:`ZoneError`.

    ZoneInfo reads ``name`` as a path under the tz database: a folder of it (``America``) or a
    name too long for a file name is an OSError, which is the cell's mistake too."""
    try:
        return ZoneInfo(canonical(name.strip()))
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ZoneError(f"{name!r} is not a known time zone (an IANA name such as America/Chicago)") from None


def zones_for_number(e164: str) -> tuple[str, ...]:
    """The canonical zones phonenumbers gives for an E.164 number; () when it gives none."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return ()
    names = phone_timezone.time_zones_for_number(number)
    return tuple(dict.fromkeys(canonical(n) for n in names if n != UNKNOWN_ZONE))


def recipient_zones(column_value: str | None, e164: str, default: str | None) -> tuple[tuple[str, ...], str]:
    """A recipient's zones and where they came from (``column``, ``number``, ``timezone``).

    Raises :class:`ZoneError` when the column names no zone, or when nothing gives one.
    """
    if column_value is not None and column_value.strip() and column_value.strip() != UNKNOWN_ZONE:
        zone(column_value)
        return (canonical(column_value.strip()),), "column"
    from_number = zones_for_number(e164)
    if from_number:
        return from_number, "number"
    if default:
        return (canonical(default),), "timezone"
    raise ZoneError(
        f"no time zone is known for {e164}; add a time zone column ([schedule] timezone_column) "
        "or set [message] timezone"
    )


def row_zones(schedule: Schedule, column_value: str | None, e164: str, default: str | None) -> tuple[str, ...]:
    """The zones a row's schedule uses (:func:`recipient_zones`); with quiet hours, also checks
    that some hour of the window holds in all of them. Raises :class:`ZoneError`."""
    zones, _ = recipient_zones(column_value, e164, default)
    if schedule.has_window and len(zones) > 1 and not _has_common_hour(schedule, zones, now().date()):
        raise ZoneError(
            f"no hour of the window {schedule.window_text or 'days'} holds in all of this number's "
            f"{len(zones)} time zones ({zone_label(zones)}); give the row its zone in a time zone column "
            "([schedule] timezone_column)"
        )
    return zones


@functools.lru_cache(maxsize=256)
def _has_common_hour(schedule: Schedule, zones: tuple[str, ...], day: date) -> bool:
    at = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return bool(common_windows(schedule, zones, at))


def check_send_at(schedule: Schedule, at: datetime) -> str | None:
    """Why ``send_at`` cannot be used at all (it is more than 30 days ahead everywhere), or None.

    Sociocs holds scheduled messages for up to 30 days (sociocs-api.md section 6); a local time
    is compared with the latest zone on Earth (UTC-12) so that no recipient is refused here
    whom a row would accept.
    """
    wanted = schedule.send_at
    if wanted is None:
        return None
    instant = wanted if wanted.tzinfo is not None else wanted.replace(tzinfo=UTC) + timedelta(hours=12)
    if instant - at > MAX_AHEAD:
        return (
            f"[schedule] send_at {schedule.send_at_text} is more than 30 days ahead, and Sociocs holds scheduled "
            "messages for at most 30 days; run the campaign within 30 days of that date."
        )
    return None


def zone_label(zones: Sequence[str]) -> str:
    """How ``check`` names a group of zones: one name, or the first and how many more."""
    if len(zones) == 1:
        return zones[0]
    more = len(zones) - 1
    return f"{zones[0]} and {more} more {agree(more, 'zone')}"


# --- windows --------------------------------------------------------------------------------


def _local(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """``minute`` minutes after local midnight of ``day`` in ``tz``, as a UTC instant."""
    day = day + timedelta(days=minute // 1440)
    minute %= 1440
    return datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz).astimezone(UTC)


def _intervals(schedule: Schedule, name: str, start: datetime, days: int) -> list[tuple[datetime, datetime]]:
    """The UTC intervals during which ``name``'s local time is inside the window and days,
    for windows opening from the day before ``start`` to ``days`` days after it."""
    tz = zone(name)
    first = start.astimezone(tz).date() - timedelta(days=1)
    begin, end = schedule.window
    if end <= begin:
        end += 1440  # a window across midnight: it belongs to the day it opens
    out = []
    for i in range(days + 2):
        day = first + timedelta(days=i)
        if schedule.days and day.weekday() not in schedule.days:
            continue
        out.append((_local(day, begin, tz), _local(day, end, tz)))
    return _merge(out)


def _merge(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _intersect(
    xs: list[tuple[datetime, datetime]], ys: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    out, i, j = [], 0, 0
    while i < len(xs) and j < len(ys):
        a, b = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        if a < b:
            out.append((a, b))
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return out


def common_windows(schedule: Schedule, zones: Sequence[str], at: datetime) -> list[tuple[datetime, datetime]]:
    """The UTC intervals, from ``at`` on (about a week), during which the window holds in every
    one of ``zones``; an interval that has already begun starts at ``at``."""
    hour = at.replace(minute=0, second=0, microsecond=0)
    return [(max(a, at), b) for a, b in _common(schedule, tuple(zones), hour) if b > at]


@functools.lru_cache(maxsize=1024)
def _common(schedule: Schedule, zones: tuple[str, ...], hour: datetime) -> tuple[tuple[datetime, datetime], ...]:
    """common_windows from the start of an hour, cached: the sender asks for every row."""
    common: list[tuple[datetime, datetime]] | None = None
    for name in zones:
        mine = _intervals(schedule, name, hour, _HORIZON)
        common = mine if common is None else _intersect(common, mine)
    return tuple(common or ())


def next_opening(schedule: Schedule, zones: Sequence[str], at: datetime) -> datetime | None:
    """None when every zone's local time is inside the window at ``at``; else the instant the
    window next holds in all of them. Raises :class:`ZoneError` when it never does."""
    if not schedule.has_window:
        return None
    windows = common_windows(schedule, zones, at)
    if not windows:
        raise ZoneError(
            f"no hour of the window {schedule.window_text} falls inside it in all of this number's time zones "
            f"({', '.join(zones)}); give the row its zone in the time zone column ([schedule] timezone_column)"
        )
    start = windows[0][0]
    return None if start <= at else start


def check_in_window(schedule: Schedule, zones: Sequence[str], when: str) -> None:
    """Raise :class:`ZoneError` when the API ``schedule`` ``when`` (ISO 8601 with offset) is
    outside the window or days in one of ``zones``: the row would be delivered in quiet hours."""
    instant = datetime.fromisoformat(when)
    if next_opening(schedule, zones, instant) is not None:
        # Named in a zone where it is outside (with several zones, it may be inside the first's).
        outside = next((z for z in zones if next_opening(schedule, (z,), instant) is not None), zones[0])
        local = instant.astimezone(zone(outside))
        raise ZoneError(
            f"its schedule, {local:%a %d %b %H:%M} in {outside}, is outside the sending window "
            f"{schedule.window_text or ', '.join(DAY_NAMES[d] for d in sorted(schedule.days))} there; "
            "move send_at or schedule inside it"
        )


def describe_opening(moment: datetime, zones: Sequence[str]) -> str:
    """``08:00 America/Chicago``: the instant as its recipient's first zone reads it (with
    the date when it is not the same local day as the moment's)."""
    local = moment.astimezone(zone(zones[0]))
    return (
        f"{local:%H:%M} {zones[0]}"
        if local.date() == now().astimezone(local.tzinfo).date()
        else (f"{local:%a %d %b %H:%M} {zones[0]}")
    )


# --- send_at --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendAt:
    """One row's ``schedule``: the instant (None: send at once) and what the row should say."""

    instant: datetime | None
    note: str = ""


def resolve_local(naive: datetime, name: str) -> tuple[datetime, str]:
    """``naive`` as a wall-clock time in ``name``, by RFC 5545 section 3.3.5's rules, and the
    note that says so when the time does not exist (gap) or exists twice (fold) there."""
    tz = zone(name)
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first, ""
    first = first.astimezone(UTC).astimezone(tz)  # the wall time that moment really shows there
    when = f"{naive:%H:%M} on {naive:%Y-%m-%d} in {name}"
    if first.replace(tzinfo=None) != naive:  # a gap: fold=0 reads it with the offset before the change
        return first, (
            f"{when} does not exist (the clocks go forward); scheduled at {first:%H:%M} {first.tzname()}, "
            "the same moment read with the offset before the change (RFC 5545)"
        )
    return first, f"{when} happens twice (the clocks go back); scheduled at the first, {first.tzname()}"


def send_at(schedule: Schedule, zones: Sequence[str], at: datetime) -> SendAt:
    """This row's API ``schedule`` for ``[schedule] send_at``, as of the instant ``at``.

    With an offset, ``send_at`` is one instant for everyone. Without, it is the wall-clock time
    in the recipient's zone; with several zones, the latest of them (so that it is not earlier
    than ``send_at`` anywhere the number may be). A time already past follows ``if_past``:
    ``now`` sends at once (the API's own rule for a past schedule, sociocs-api.md section 6),
    ``next-day`` moves it to the next day on which that local time is still ahead. Raises
    :class:`ZoneError` for a time more than 30 days ahead (Sociocs holds scheduled messages for
    up to 30 days, sociocs-api.md section 6).
    """
    assert schedule.send_at is not None
    wanted = schedule.send_at
    moved = 0
    while True:
        notes: list[str] = []
        if wanted.tzinfo is not None:
            instant = wanted.astimezone(UTC)
        else:
            candidates = [resolve_local(wanted, name) for name in zones]
            instant = max(c[0] for c in candidates).astimezone(UTC)
            notes = [n for _, n in candidates if n][:1]
            if len(zones) > 1:
                local = instant.astimezone(zone(zones[0]))
                notes.append(
                    f"the number may be in {len(zones)} time zones; scheduled for {wanted:%H:%M} in the "
                    f"westernmost, so it is not earlier anywhere ({local:%H:%M} in {zones[0]})"
                )
        if instant > at:
            break
        if schedule.if_past == "now" or wanted.tzinfo is not None:
            where = f" in {zones[0]}" if zones and wanted.tzinfo is None else ""
            notes.append(f"send_at {schedule.send_at_text} had passed{where}; sent at once ([schedule] if_past)")
            return SendAt(None, "; ".join(notes))
        wanted += timedelta(days=1)
        moved += 1
    if instant - at > MAX_AHEAD:
        raise ZoneError(
            f"send_at {schedule.send_at_text} is more than 30 days ahead, and Sociocs holds scheduled messages for "
            "at most 30 days; run the campaign within 30 days of that date"
        )
    if moved:
        days = "a day" if moved == 1 else f"{moved} days"
        notes.append(f"send_at had passed in {zones[0]}; scheduled {days} later ([schedule] if_past)")
    return SendAt(instant, "; ".join(notes))


def api_time(instant: datetime, zones: Sequence[str]) -> str:
    """The API's ``schedule`` value: ISO 8601 with the recipient's own offset on that date."""
    return instant.astimezone(zone(zones[0])).isoformat() if zones else instant.isoformat()


# --- the sender's question: may this row go now? -------------------------------------------


@dataclass(frozen=True, slots=True)
class Hold:
    """A row that may not go yet: the instant it may, and that instant as its recipient reads it."""

    until: datetime
    label: str  # "08:00 America/Chicago"
    short: bool = False  # seconds (the pair rate limit): the sender waits for it in the run
    limit: bool = False  # held by the daily limit, not by the window

    @property
    def utc(self) -> str:
        """The instant in UTC, as the summary shows it beside the local time (``13:00 UTC``)."""
        return f"{self.until.astimezone(UTC):%H:%M} UTC"

    @property
    def shown(self) -> str:
        """``08:00 America/Chicago (14:00 UTC)``: the label, with UTC when it is local time."""
        return self.label if " UTC" in self.label else f"{self.label} ({self.utc})"


class Gate:
    """What the sender asks, at the moment of sending, about each row (DESIGN.md: the sender
    asks timing): is the recipient's local time inside ``window`` and ``days``, and (with a
    ledger) does the channel's daily limit and the one-message-per-6-seconds rule allow it?"""

    def __init__(self, schedule: Schedule, ledger: Ledger | None = None) -> None:
        self.schedule = schedule
        self.ledger = ledger

    def hold(self, zones: Sequence[str], phone: str, *, reserve: bool = False) -> Hold | None:
        """None when the row may go now; else until when it waits. With ``reserve`` and a
        ledger, a row that may go is entered in the ledger in the same transaction."""
        at = now()
        if self.schedule.has_window and zones:
            opening = next_opening(self.schedule, zones, at)
            if opening is not None:
                return Hold(opening, describe_opening(opening, zones))
        if self.ledger is not None:
            until = self.ledger.admit(phone, at, reserve=reserve)
            if until is not None:
                if (until - at).total_seconds() <= PAIR_GAP + 1:  # (a pair gap, not a day)
                    return Hold(until, "6 s since the last message to this number", short=True)
                shown = describe_opening(until, zones) if zones else f"{until.astimezone(UTC):%H:%M} UTC"
                return Hold(until, f"{shown} (daily limit)", limit=True)
        return None


# --- check's forecast -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Forecast:
    """When one group of recipients (same zones) goes out at the configured rate."""

    zones: tuple[str, ...]
    rows: int
    first: datetime  # UTC
    last: datetime  # UTC
    fits: bool  # all inside the first window they reach

    def describe(self) -> str:
        tz = zone(self.zones[0])
        a, b = self.first.astimezone(tz), self.last.astimezone(tz)
        return (
            f"{zone_label(self.zones)}: {count(self.rows, 'row')}, {a:%a %H:%M}–{b:%a %H:%M} local "
            f"({self.first:%H:%M}–{self.last:%H:%M} UTC)"
        )


def forecast(schedule: Schedule, groups: dict[tuple[str, ...], int], rate: float, at: datetime) -> list[Forecast]:
    """When each zone group's rows go out, sending one group after another at ``rate`` per
    second (the one sender's rate is shared), each only inside its window. ``fits`` is False
    when a group's rows cannot all go out inside the first window they reach. With ``send_at``
    the requests go now (each carries its own ``schedule``, checked against the window at that
    time), so the window does not hold them back here either."""
    out: list[Forecast] = []
    cursor = at
    plans = []
    for zones, n in groups.items():
        held = schedule.has_window and schedule.send_at is None
        windows = common_windows(schedule, zones, at) if held else [(at, at + timedelta(days=_HORIZON))]
        if windows:
            plans.append((windows[0][0], zones, n, windows))
    for _, zones, n, windows in sorted(plans):
        remaining = n / rate if rate else 0.0
        first: datetime | None = None
        spans = 0
        for a, b in windows:
            start = max(cursor, a)
            if start >= b:
                continue
            first = first or start
            spans += 1
            take = min(remaining, (b - start).total_seconds())
            remaining -= take
            cursor = start + timedelta(seconds=take)
            if remaining <= 0:
                break
        if first is None:
            first = cursor
        out.append(Forecast(zones, n, first, cursor, remaining <= 0 and spans == 1))
    return out
