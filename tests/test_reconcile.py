"""Reconcile on its own (campaign.reconcile): every decision reconcile_state takes, branch by branch.

Each test builds a real state (SQLite in tmp_path) with ``unknown`` rows whose first attempt
and last answer it chooses, and answers ``GET /messages`` from :class:`Listing`, a real aiohttp
server on loopback that lists the messages a test gives it (by their ``created_at`` day) and
can fail chosen ranges; the client is the real SociocsClient. The rows' times are fixed instants
in 2090, so the ranges reconcile asks for (the rows' days, a day either side, up to today) do
not depend on the day the suite runs; the tests of "up to today" and of a row without times use
the clock on purpose. No mock of HTTP or of the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any

import pytest
from aiohttp import web

from campaign import store, timing
from campaign.api import SociocsClient
from campaign.config import Campaign, load_campaign
from campaign.errors import RunStopped
from campaign.ledger import register_state
from campaign.reconcile import CLOCK_SKEW, ReconcileReport, _digits, _our_content, _when, reconcile_state
from campaign.state import Outcome, State, Status
from tests.conftest import KEY, CampaignFactory, contacts, state_of

TEMPLATE = "HX" + "b" * 32
OTHER_TEMPLATE = "HX" + "a" * 32
PHONE = "+16175550100"
T0 = datetime(2090, 3, 10, 12, 0, tzinfo=UTC)  # the row's first attempt
T1 = T0 + timedelta(minutes=5)  # its last (lost) answer
# The span a candidate must fall in: [T0 - 2 min, T1 + 2 min]; listed on 2090-03-09..2090-03-11.
ONE_RANGE = "start_date=2090-03-09&end_date=2090-03-11"
PENDING = "not listed by the API (reconcile); the next run sends it"
FAILS = "GET /messages failed: Listing down."


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


# What a range gets instead of its listing: an error text (HTTP 500), or (status, text).
Failer = Callable[[date, date], str | tuple[int, str] | None]


class Listing:
    """A real ``GET /messages`` on 127.0.0.1: each listed message whose ``created_at`` day is in
    the requested range (one without a readable ``created_at``: in every range), or, when
    ``fail(start, end)`` gives a text, a 500 with that error text (or the status it gives). Keeps each query string."""

    def __init__(self, messages: list[dict[str, Any]], fail: Failer | None = None) -> None:
        self.messages, self.fail = messages, fail
        self.heard: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _get(self, request: web.Request) -> web.Response:
        self.heard.append(request.query_string)
        start, end = (date.fromisoformat(request.query[k]) for k in ("start_date", "end_date"))
        error = self.fail(start, end) if self.fail else None
        if error is not None:
            status, text = error if isinstance(error, tuple) else (500, error)
            return web.json_response({"status": "error", "errors": [{"msg": text}]}, status=status)
        out = []
        for message in self.messages:
            try:
                day = datetime.fromisoformat(str(message.get("created_at")).replace("Z", "+00:00")).date()
            except ValueError:
                day = None
            if day is None or start <= day <= end:
                out.append(message)
        return web.json_response({"status": "success", "data": out})

    async def __aenter__(self) -> Listing:
        app = web.Application()
        app.router.add_get("/messages", self._get)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def sms(mid: Any = "SM1", *, at: datetime = T0 + timedelta(minutes=1), **fields: Any) -> dict[str, Any]:
    """A listed message that is the text campaign's row's in every respect (``fields`` change it)."""
    message = {
        "message_id": mid,
        "direction": "outbound",
        "to": PHONE,
        "text": "Hi",
        "created_at": iso(at),
        "provider": "twlo",
        "channel_key": "twlo_16175550000",
    }
    return {k: v for k, v in {**message, **fields}.items() if v is not ...}


def add_unknown(
    state: State,
    key: str = PHONE,
    *,
    phone: str = PHONE,
    row: int = 2,
    message: str = "Hi",
    content: str | None = '{"text":"Hi"}',
    first: str = iso(T0),
    answered: str = iso(T1),
    status: Status = Status.UNKNOWN,
    message_id: str = "",
    schedule_at: str = "",
) -> None:
    """A recipient whose request was written (``sending``), then ``status``; with these times."""
    with state.transaction():
        state.add_recipients([(key, phone, row, "hash", message)])
    state.write([], [(key, "hash", message, content or "", schedule_at)])
    if status is not Status.SENDING:
        state.write([Outcome(key, status, message_id, "the answer was lost", 500, 1)], [])
    with state.transaction():
        state.db.execute(
            "UPDATE recipients SET first_attempt_at = ?, updated_at = ? WHERE key = ?", (first, answered, key)
        )


def recipients(campaign: Campaign) -> dict[str, tuple[str, str, str, str]]:
    """key -> (status, message_id, error, reconciled verdict) as the journal holds them."""
    state = state_of(campaign)
    try:
        rows = state.db.execute("SELECT key, status, message_id, error, reconciled FROM recipients ORDER BY row")
        return {key: (status, mid, error, verdict) for key, status, mid, error, verdict in rows}
    finally:
        state.close()


def reconcile(
    campaign: Campaign, messages: list[dict[str, Any]], *, fail: Failer | None = None, channel: str | None = None
) -> tuple[ReconcileReport | RunStopped, list[str]]:
    """reconcile_state of ``campaign``'s state against a Listing of ``messages``: its report
    (or the RunStopped it raised) and the query strings the listing heard."""

    async def main() -> tuple[ReconcileReport | RunStopped, list[str]]:
        async with Listing(messages, fail) as api, SociocsClient(api.url, KEY, timeout=5, connections=1) as client:
            state = state_of(campaign)
            try:
                return await reconcile_state(campaign, state, client, channel=channel), api.heard
            except RunStopped as err:
                return err, api.heard
            finally:
                state.close()

    return asyncio.run(main())


@pytest.fixture
def text_campaign(make_campaign: CampaignFactory) -> Campaign:
    return load_campaign(make_campaign(contacts(1), message='text = "Hi"'))


@pytest.fixture
def template_campaign(make_campaign: CampaignFactory) -> Campaign:
    message = f'template_id = "{TEMPLATE}"\n[message.variables]\n"1" = "{{{{ first_name }}}}"'
    return load_campaign(make_campaign(contacts(1), provider="twlowa", message=message))


def one_unknown(campaign: Campaign, **row: Any) -> None:
    state = state_of(campaign)
    try:
        add_unknown(state, **row)
    finally:
        state.close()


FOUND = ("sent", "SM1", "found by reconcile", "found")
STILL_PENDING = ("pending", "", PENDING, "")


# --- one row, one listed message: is it the row's? ---------------------------------------------


def test_exactly_one_candidate_is_the_rows_message(text_campaign: Campaign) -> None:
    one_unknown(text_campaign)
    report, heard = reconcile(text_campaign, [sms()])
    assert report == ReconcileReport(checked=1, found=1, days=3)
    assert heard == [ONE_RANGE]
    assert recipients(text_campaign) == {PHONE: FOUND}


SKEW = CLOCK_SKEW.total_seconds()


#: One listed message, changed in one field from the row's: whether it is still the row's.
CHANGED = [
    (sms(to="+1 (617) 555-0100"), True),  # digits compared, formatting ignored
    (sms(to="16175550100"), True),
    (sms(to="+16175550101"), False),
    (sms(to=...), False),
    (sms(channel_key="twlo_16175559999"), False),
    (sms(channel_key=...), True),  # a listing without the field: the others decide
    (sms(provider="gswa"), False),
    (sms(provider=...), True),
    (sms(direction="inbound"), False),
    (sms(direction=...), True),
    (sms(text="Hi there"), False),
    (sms(text=...), False),  # a message without text is not our text message
    (sms(image_url="https://example.com/a.png"), False),
    (sms(video_url="https://example.com/a.mp4"), False),
    (sms(file_url="https://example.com/a.pdf"), False),
    (sms(image_url=None, video_url=None, file_url=None), True),
    (sms(template_id=TEMPLATE), False),  # we sent no template
    (sms(template={"id": TEMPLATE}), False),
    (sms(template_variables={"1": "Ann"}), False),
    (sms(template={"variables": {"1": "Ann"}}), False),
    (sms(template_variables={}), True),
    (sms(at=T0 - CLOCK_SKEW), True),  # the span's ends, give or take CLOCK_SKEW, included
    (sms(at=T0 - CLOCK_SKEW - timedelta(seconds=1)), False),
    (sms(at=T1 + CLOCK_SKEW), True),
    (sms(at=T1 + CLOCK_SKEW + timedelta(seconds=1)), False),
    (sms(at=T0 - timedelta(seconds=119)), True),
    (sms(created_at="2090-03-10T14:06:00+02:00"), True),  # 12:06 UTC
    (sms(created_at="2090-03-10T12:08:00+02:00"), False),  # 10:08 UTC
    (sms(message_id=12345), True),
]


@pytest.mark.parametrize(
    ("message", "found"),
    CHANGED,
    ids=lambda v: "" if isinstance(v, bool) else None,
)
def test_what_makes_a_listed_message_the_rows_candidate(
    text_campaign: Campaign, message: dict[str, Any], found: bool
) -> None:
    """One listed message, changed in one field: the row is found with it, or, when it is not
    the row's, the row is pending (every day of its span was listed, nothing in it is theirs)."""
    assert SKEW == 120
    one_unknown(text_campaign)
    report, heard = reconcile(text_campaign, [message])
    assert heard == [ONE_RANGE]
    if found:
        mid = str(message["message_id"])
        assert report == ReconcileReport(checked=1, found=1, days=3)
        assert recipients(text_campaign) == {PHONE: ("sent", mid, "found by reconcile", "found")}
    else:
        assert report == ReconcileReport(checked=1, pending=1, days=3)
        assert recipients(text_campaign) == {PHONE: STILL_PENDING}


@pytest.mark.parametrize("message", [m for m, found in CHANGED if not found])
def test_a_listed_message_that_is_not_the_rows_does_not_hide_the_next(
    text_campaign: Campaign, message: dict[str, Any]
) -> None:
    """The listing goes on past a message that is not the row's: the row's own, listed after
    it, is found."""
    one_unknown(text_campaign)
    report, _ = reconcile(text_campaign, [{**message, "message_id": "SM0"}, sms()])
    assert report == ReconcileReport(checked=1, found=1, days=3)
    assert recipients(text_campaign) == {PHONE: FOUND}


def test_a_row_with_media_matches_only_its_own_media(make_campaign: CampaignFactory) -> None:
    campaign = load_campaign(make_campaign(contacts(1), message='text = "Hi"\nimage_url = "https://example.com/a.png"'))
    content = '{"text":"Hi","image_url":"https://example.com/a.png"}'
    one_unknown(campaign, content=content)
    report, _ = reconcile(
        campaign, [sms("SM0", image_url="https://example.com/b.png"), sms(image_url=json.loads(content)["image_url"])]
    )
    assert report == ReconcileReport(checked=1, found=1, days=3)
    assert recipients(campaign) == {PHONE: FOUND}


def wa(mid: str = "SM1", **fields: Any) -> dict[str, Any]:
    """A listed message that is the template campaign's row's (no text)."""
    return sms(mid, **{"text": ..., "provider": "twlowa", "channel_key": "twlowa_16175550000", **fields})


@pytest.mark.parametrize(
    ("message", "found"),
    [
        (wa(), True),  # a listing without template fields: number, channel and time decide
        (wa(text=""), True),
        (wa(text=None), True),
        (wa(text="Hi"), False),
        (wa(template_id=TEMPLATE, template_variables={"1": "Ann"}), True),
        (wa(template={"id": TEMPLATE, "variables": {"1": "Ann"}}), True),
        (wa(template_id=OTHER_TEMPLATE), False),
        (wa(template={"id": OTHER_TEMPLATE}), False),
        (wa(template_variables={"1": "Bo"}), False),
        (wa(template={"variables": {"1": "Bo"}}), False),
        (wa(template_variables={"1": "Ann", "2": "x"}), False),
        (wa(template=TEMPLATE), True),  # not an object: no template fields
        (wa(template_id=TEMPLATE, template={"id": OTHER_TEMPLATE}), True),  # the flat field first
        (wa(template_variables={"1": "Ann"}, template={"variables": {"1": "Bo"}}), True),
    ],
)
def test_what_makes_a_listed_template_message_the_rows_candidate(
    template_campaign: Campaign, message: dict[str, Any], found: bool
) -> None:
    one_unknown(
        template_campaign,
        message='{"1":"Ann"}',
        content=json.dumps({"template": {"id": TEMPLATE, "variables": {"1": "Ann"}}}),
    )
    report, _ = reconcile(template_campaign, [message])
    assert report == ReconcileReport(checked=1, found=int(found), pending=int(not found), days=3)
    assert recipients(template_campaign) == {PHONE: FOUND if found else STILL_PENDING}


@pytest.mark.parametrize(
    "message",
    [wa(template_variables={}), wa(template={"id": TEMPLATE, "variables": {}}), wa(template={"id": TEMPLATE})],
)
def test_a_template_row_without_variables_matches_a_listing_without_them(
    template_campaign: Campaign, message: dict[str, Any]
) -> None:
    one_unknown(template_campaign, message="", content=json.dumps({"template": {"id": TEMPLATE}}))
    report, _ = reconcile(template_campaign, [wa("SM0", template_variables={"1": "Ann"}), message])
    assert report == ReconcileReport(checked=1, found=1, days=3)
    assert recipients(template_campaign) == {PHONE: FOUND}


@pytest.mark.parametrize("text", ["Hi", "Bye"])
def test_a_row_from_before_schema_2_is_matched_by_its_message(text_campaign: Campaign, text: str) -> None:
    """A state file from before schema 2 kept no ``content``: the row's message is its text."""
    one_unknown(text_campaign, message=text, content=None)
    report, _ = reconcile(text_campaign, [sms(text="Bye")])
    assert report == ReconcileReport(checked=1, found=int(text == "Bye"), pending=int(text != "Bye"), days=3)


def test_a_template_row_from_before_schema_2_is_matched_by_its_variables(template_campaign: Campaign) -> None:
    one_unknown(template_campaign, message='{"1":"Ann"}', content=None)
    report, _ = reconcile(
        template_campaign,
        [
            wa("SM0", template_variables={"1": "Bo"}),
            wa("SM2", template_id=OTHER_TEMPLATE),
            wa(template_variables={"1": "Ann"}),
        ],
    )
    assert report == ReconcileReport(checked=1, found=1, days=3)
    assert recipients(template_campaign) == {PHONE: FOUND}


# --- ids that are already someone's -------------------------------------------------------------


@pytest.mark.parametrize("channel", [None, "http://127.0.0.1:9 twlo twlo_16175550000"])
def test_an_id_another_row_holds_is_no_candidate(text_campaign: Campaign, channel: str | None) -> None:
    """With or without the ledger (``channel``): this state's own ids are always taken."""
    state = state_of(text_campaign)
    add_unknown(state, "+16175550199", phone="+16175550199", row=3, status=Status.SENT, message_id="SM1")
    add_unknown(state)
    state.close()
    report, _ = reconcile(text_campaign, [sms()], channel=channel)
    assert report == ReconcileReport(checked=1, pending=1, days=3)
    assert recipients(text_campaign)[PHONE] == STILL_PENDING
    one_unknown(text_campaign, key=f"{PHONE}#2", row=4)
    report, _ = reconcile(text_campaign, [sms(), sms("SM2")], channel=channel)  # the next one is found
    assert report == ReconcileReport(checked=1, found=1, days=3)
    assert recipients(text_campaign)[f"{PHONE}#2"] == ("sent", "SM2", "found by reconcile", "found")


def test_an_id_another_campaign_on_the_channel_holds_is_no_candidate(make_campaign: CampaignFactory) -> None:
    """The ledger lists both campaigns' states on the channel: the first's ids are not the
    second's to take, but only when reconcile is told the channel."""
    first = load_campaign(make_campaign(contacts(1), message='text = "Hi"', name="first"))
    second = load_campaign(make_campaign(contacts(1), message='text = "Hi"', name="second"))
    third = load_campaign(make_campaign(contacts(1), message='text = "Hi"', name="third"))
    channel = "http://127.0.0.1:9 twlo twlo_16175550000"
    for campaign, ch in ((first, channel), (second, channel), (third, "http://127.0.0.1:9 twlo other")):
        register_state(store.ledger_location(campaign), ch, store.state_ref(campaign))
    for campaign, mid in ((first, "SM1"), (third, "SM2")):
        state = state_of(campaign)
        add_unknown(state, status=Status.SENT, message_id=mid)
        state.close()
    one_unknown(second)
    report, _ = reconcile(second, [sms("SM1")], channel=channel)
    assert report == ReconcileReport(checked=1, pending=1, days=3)
    assert recipients(second) == {PHONE: STILL_PENDING}
    one_unknown(second, key="+16175550100#2", row=3)
    report, _ = reconcile(second, [sms("SM2", at=T0)], channel=channel)  # third is on another channel
    assert report == ReconcileReport(checked=1, found=1, days=3)


def test_without_a_channel_the_ledger_is_not_read(make_campaign: CampaignFactory) -> None:
    first = load_campaign(make_campaign(contacts(1), message='text = "Hi"', name="first"))
    second = load_campaign(make_campaign(contacts(1), message='text = "Hi"', name="second"))
    channel = "http://127.0.0.1:9 twlo twlo_16175550000"
    for campaign in (first, second):
        register_state(store.ledger_location(campaign), channel, store.state_ref(campaign))
    state = state_of(first)
    add_unknown(state, status=Status.SENT, message_id="SM1")
    state.close()
    one_unknown(second)
    report, _ = reconcile(second, [sms("SM1")])
    assert report == ReconcileReport(checked=1, found=1, days=3)


# --- more than one, or one that cannot be told apart ---------------------------------------------


def ambiguous(n: int, ids: str) -> tuple[str, str, str, str]:
    return unresolved(f"the API lists {n} messages that could be this row's ({ids}) and cannot tell them apart")


def unresolved(why: str) -> tuple[str, str, str, str]:
    return ("unknown", "", f"reconcile: {why}; still unknown, not resent", "ambiguous")


NO_TIME = unresolved(
    "the API lists one message that could be this row's (SM1), without the time it was made (or its time zone)"
)


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([sms("SM1"), sms("SM2")], ambiguous(2, "SM1, SM2")),
        ([sms("SM1"), sms(None), sms("SM3"), sms("SM4")], ambiguous(4, "SM1, (no id), SM3")),
        ([sms(None)], unresolved("the API lists one message that could be this row's, without an id to record")),
        ([sms(created_at=...)], NO_TIME),  # one, but when it was made is not known
        ([sms(created_at="")], NO_TIME),
        ([sms(created_at="last tuesday")], NO_TIME),
        ([sms(created_at=...), sms("SM2")], ambiguous(2, "SM1, SM2")),
    ],
)
def test_candidates_that_cannot_be_told_apart_leave_the_row_unknown(
    text_campaign: Campaign, messages: list[dict[str, Any]], expected: tuple[str, str, str, str]
) -> None:
    one_unknown(text_campaign)
    report, _ = reconcile(text_campaign, messages)
    assert report == ReconcileReport(checked=1, ambiguous=1, days=3)
    assert recipients(text_campaign) == {PHONE: expected}


def test_one_message_two_rows_could_have_leaves_both_unknown(text_campaign: Campaign) -> None:
    """Two rows to one number (allow_duplicates) with the same text: one listed message fits
    both, so neither takes it; a third row, to another number, is found alongside."""
    state = state_of(text_campaign)
    add_unknown(state)
    add_unknown(state, f"{PHONE}#2", row=3)
    add_unknown(state, "+16175550101", phone="+16175550101", row=4)
    state.close()
    report, _ = reconcile(text_campaign, [sms(), sms("SM9", to="+16175550101")])
    assert report == ReconcileReport(checked=3, found=1, ambiguous=2, days=3)
    assert recipients(text_campaign) == {
        PHONE: unresolved("the API lists one message that could be this row's (SM1), or 1 other row's"),
        f"{PHONE}#2": unresolved("the API lists one message that could be this row's (SM1), or 1 other row's"),
        "+16175550101": ("sent", "SM9", "found by reconcile", "found"),
    }


def test_one_message_three_rows_could_have_says_how_many_others(text_campaign: Campaign) -> None:
    state = state_of(text_campaign)
    for n in (1, 2, 3):
        add_unknown(state, PHONE if n == 1 else f"{PHONE}#{n}", row=n + 1)
    state.close()
    report, _ = reconcile(text_campaign, [sms()])
    assert report == ReconcileReport(checked=3, ambiguous=3, days=3)
    why = unresolved("the API lists one message that could be this row's (SM1), or 2 other rows'")
    assert recipients(text_campaign) == {PHONE: why, f"{PHONE}#2": why, f"{PHONE}#3": why}


# --- what the listing covered ------------------------------------------------------------------


def test_no_unknown_rows_asks_nothing(text_campaign: Campaign) -> None:
    state = state_of(text_campaign)
    add_unknown(state, status=Status.SENT, message_id="SM1")
    state.close()
    report, heard = reconcile(text_campaign, [sms("SM2")])
    assert report == ReconcileReport()
    assert heard == []


NOW = T1 + timedelta(minutes=1)  # the campaign's clock in the schedule tests: reconcile runs then


@pytest.mark.parametrize(
    ("schedule_at", "status"),
    [
        ("2090-05-01T09:00:00+00:00", "scheduled"),
        (iso(NOW + timedelta(microseconds=1)), "scheduled"),  # still ahead of the clock
        (iso(NOW), "sent"),  # due at this very instant: the API sends it now
        ("2020-05-01T09:00:00Z", "sent"),
    ],
)
def test_a_found_row_whose_request_had_a_future_schedule_is_scheduled(
    text_campaign: Campaign, schedule_at: str, status: str
) -> None:
    """PRODUCT.md: ``scheduled`` is "accepted with a future schedule", and only such rows can
    be cancelled (campaign.cancel); a row found by reconcile with a future ``schedule`` is one.
    One whose schedule has passed was sent by the API since: ``sent``. "Now" is the campaign's
    one clock (campaign.timing)."""
    one_unknown(text_campaign, schedule_at=schedule_at)
    with timing.use_clock(timing.ManualClock(NOW)):
        report, _ = reconcile(text_campaign, [sms()])
    later = int(status == "scheduled")
    assert report == ReconcileReport(checked=1, found=1, found_scheduled=later, days=3)
    assert report.found_text() == f"1 was sent (now `{status}`)"
    assert recipients(text_campaign)[PHONE] == (status, *FOUND[1:])


def test_what_reconcile_says_it_found_names_the_scheduled_ones() -> None:
    assert ReconcileReport(found=3).found_text() == "3 were sent (now `sent`)"
    assert ReconcileReport(found=2, found_scheduled=2).found_text() == "2 were sent (now `scheduled`)"
    assert ReconcileReport(found=5, found_scheduled=3).found_text() == "5 were sent (3 now `scheduled`, 2 `sent`)"
    assert ReconcileReport(found=1, found_scheduled=1).found_text() == "1 was sent (now `scheduled`)"


def test_a_row_a_dead_run_left_sending_is_reconciled(text_campaign: Campaign) -> None:
    one_unknown(text_campaign, status=Status.SENDING)
    report, _ = reconcile(text_campaign, [sms()])
    assert report == ReconcileReport(checked=1, found=1, days=3)
    assert recipients(text_campaign) == {PHONE: FOUND}


def test_a_span_over_31_days_is_listed_in_ranges_of_31_days(text_campaign: Campaign) -> None:
    """A row first tried on 2090-03-10 and last answered 40 days later: 2090-03-09 to
    2090-04-20 in two requests, each at most 31 days (sociocs-api.md, GET /messages)."""
    one_unknown(text_campaign, answered=iso(T0 + timedelta(days=40)))
    report, heard = reconcile(text_campaign, [sms(at=T0 + timedelta(days=35))])
    assert heard == [
        "start_date=2090-03-09&end_date=2090-04-08",
        "start_date=2090-04-09&end_date=2090-04-20",
    ]
    assert report == ReconcileReport(checked=1, found=1, days=43)


def test_the_listing_reaches_today(text_campaign: Campaign) -> None:
    """Rows 45 days old: listed from the day before the first attempt up to today."""
    today = datetime.now(UTC).date()
    then = datetime.combine(today - timedelta(days=45), datetime.min.time(), UTC) + timedelta(hours=12)
    one_unknown(text_campaign, first=iso(then), answered=iso(then))
    report, heard = reconcile(text_campaign, [])
    assert heard == [
        f"start_date={today - timedelta(days=46)}&end_date={today - timedelta(days=16)}",
        f"start_date={today - timedelta(days=15)}&end_date={today}",
    ]
    assert report == ReconcileReport(checked=1, pending=1, days=47)


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local time zone set (TZ, time.tzset) where today's local date is not
    today's UTC date: 12 hours behind UTC before noon UTC, 14 ahead after."""
    zone = "Etc/GMT+12" if datetime.now(UTC).hour < 12 else "Etc/GMT-14"
    before = os.environ.get("TZ")
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    yield
    if before is None:
        monkeypatch.delenv("TZ")
    else:
        monkeypatch.setenv("TZ", before)
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_the_listing_reaches_todays_utc_date_whatever_the_local_zone(text_campaign: Campaign) -> None:
    today = datetime.now(UTC).date()
    assert datetime.now().date() != today
    then = datetime.combine(today - timedelta(days=10), datetime.min.time(), UTC) + timedelta(hours=12)
    one_unknown(text_campaign, first=iso(then), answered=iso(then))
    report, heard = reconcile(text_campaign, [])
    assert heard == [f"start_date={today - timedelta(days=11)}&end_date={today}"]
    assert report == ReconcileReport(checked=1, pending=1, days=12)


def test_a_row_without_a_first_attempt_is_searched_from_its_last_answer(text_campaign: Campaign) -> None:
    one_unknown(text_campaign, first="not a time")
    report, heard = reconcile(text_campaign, [sms(at=T1 - CLOCK_SKEW - timedelta(seconds=1))])
    assert heard == [ONE_RANGE]
    assert report == ReconcileReport(checked=1, pending=1, days=3)
    one_unknown(text_campaign, key=f"{PHONE}#2", first="", row=3)
    report, _ = reconcile(text_campaign, [sms(at=T1 - CLOCK_SKEW)])
    assert report == ReconcileReport(checked=1, found=1, days=3)


def test_a_row_without_a_last_answer_is_searched_up_to_now(text_campaign: Campaign) -> None:
    now = datetime.now(UTC)
    one_unknown(text_campaign, first=iso(now - timedelta(hours=3)), answered="")
    report, _ = reconcile(text_campaign, [sms(at=now - timedelta(minutes=30))])
    assert isinstance(report, ReconcileReport) and (report.checked, report.found) == (1, 1)


def test_a_failed_range_leaves_its_rows_unknown_and_the_others_are_decided(text_campaign: Campaign) -> None:
    """Three rows 35 days apart: three ranges. The first two fail (the first failure is the
    reason given); the rows of the third are decided: found, pending, ambiguous. Row 2's
    attempts ran from 00:01 to 23:59, so with the skew its span is 2090-03-09 to 2090-03-11."""
    day = datetime(2090, 3, 10, tzinfo=UTC)
    later = T0 + timedelta(days=70)
    state = state_of(text_campaign)
    add_unknown(state, first=iso(day + timedelta(minutes=1)), answered=iso(day + timedelta(hours=23, minutes=59)))
    add_unknown(
        state,
        "+16175550101",
        phone="+16175550101",
        row=3,
        first=iso(T0 + timedelta(days=35)),
        answered=iso(T1 + timedelta(days=35)),
    )
    add_unknown(
        state, "+16175550102", phone="+16175550102", row=4, first=iso(later), answered=iso(later + timedelta(minutes=5))
    )
    add_unknown(
        state, "+16175550103", phone="+16175550103", row=5, first=iso(later), answered=iso(later + timedelta(minutes=5))
    )
    add_unknown(
        state, "+16175550104", phone="+16175550104", row=6, first=iso(later), answered=iso(later + timedelta(minutes=5))
    )
    state.close()
    failures = {date(2090, 3, 8): "Listing down.", date(2090, 4, 8): "Still down."}
    listed = [
        sms("SM3", to="+16175550102", at=later),
        sms("SM4", to="+16175550104", at=later),
        sms("SM5", to="+16175550104", at=later),
    ]
    report, heard = reconcile(text_campaign, listed, fail=lambda start, _: failures.get(start))
    assert heard == [
        "start_date=2090-03-08&end_date=2090-04-07",
        "start_date=2090-04-08&end_date=2090-05-08",
        "start_date=2090-05-09&end_date=2090-05-20",
    ]
    assert report == ReconcileReport(checked=5, found=1, pending=1, ambiguous=1, uncovered=2, days=74)
    uncovered = "reconcile: the API's listing did not cover {} to {} (" + FAILS + "); still unknown"
    assert recipients(text_campaign) == {
        PHONE: ("unknown", "", uncovered.format("2090-03-09", "2090-03-11"), "uncovered"),
        "+16175550101": ("unknown", "", uncovered.format("2090-04-14", "2090-04-14"), "uncovered"),
        "+16175550102": ("sent", "SM3", "found by reconcile", "found"),
        "+16175550103": STILL_PENDING,
        "+16175550104": ambiguous(2, "SM4, SM5"),
    }


@pytest.mark.parametrize(
    ("days_later", "failed", "expected"),
    [
        (29, 2, "uncovered"),  # 2090-04-08: the day after it (04-09) was not listed
        (29, 1, "uncovered"),
        (30, 1, "uncovered"),  # 2090-04-09: the day before it (04-08) was not listed
        (30, 2, "uncovered"),
        (31, 1, "pending"),  # 2090-04-10: 04-09 to 04-11 were listed
    ],
)
def test_a_row_needs_the_day_either_side_of_its_span_listed(
    text_campaign: Campaign, days_later: int, failed: int, expected: str
) -> None:
    """Two rows, one on 2090-03-10 (listed in 03-09..04-08) and one ``days_later``; the second
    range starts 2090-04-09 and ends the day after the later row. Range ``failed`` fails."""
    later = "+16175550101"
    state = state_of(text_campaign)
    add_unknown(state)
    add_unknown(
        state,
        later,
        phone=later,
        row=3,
        first=iso(T0 + timedelta(days=days_later)),
        answered=iso(T1 + timedelta(days=days_later)),
    )
    state.close()
    ranges = [
        "start_date=2090-03-09&end_date=2090-04-08",
        f"start_date=2090-04-09&end_date={date(2090, 3, 11) + timedelta(days=days_later)}",
    ]
    report, heard = reconcile(
        text_campaign,
        [],
        fail=lambda start, _: (
            "Listing down." if start == date(2090, 4, 9) - timedelta(days=31 if failed == 1 else 0) else None
        ),
    )
    assert heard == ranges
    first_uncovered = failed == 1
    later_uncovered = expected == "uncovered"
    assert report == ReconcileReport(
        checked=2,
        pending=2 - first_uncovered - later_uncovered,
        uncovered=first_uncovered + later_uncovered,
        days=days_later + 3,
    )
    day = (T0 + timedelta(days=days_later)).date()
    reason = "reconcile: the API's listing did not cover {} to {} (" + FAILS + "); still unknown"
    assert recipients(text_campaign) == {
        PHONE: ("unknown", "", reason.format("2090-03-10", "2090-03-10"), "uncovered")
        if first_uncovered
        else STILL_PENDING,
        later: ("unknown", "", reason.format(day, day), "uncovered") if later_uncovered else STILL_PENDING,
    }


def test_a_row_over_several_days_needs_the_day_after_its_last_listed(text_campaign: Campaign) -> None:
    """A row tried from 2090-04-06 to 2090-04-08 needs 04-05 to 04-09 listed; 04-09 is the
    second range, which fails (the first, from 03-09, is listed)."""
    later = "+16175550101"
    state = state_of(text_campaign)
    add_unknown(state)
    add_unknown(
        state, later, phone=later, row=3, first=iso(T0 + timedelta(days=27)), answered=iso(T0 + timedelta(days=29))
    )
    state.close()
    report, heard = reconcile(text_campaign, [], fail=lambda start, _: "Listing down." if start.month == 4 else None)
    assert heard == ["start_date=2090-03-09&end_date=2090-04-08", "start_date=2090-04-09&end_date=2090-04-09"]
    assert report == ReconcileReport(checked=2, pending=1, uncovered=1, days=32)
    reason = f"reconcile: the API's listing did not cover 2090-04-06 to 2090-04-08 ({FAILS}); still unknown"
    assert recipients(text_campaign) == {PHONE: STILL_PENDING, later: ("unknown", "", reason, "uncovered")}


def test_every_range_failing_stops_the_run_and_changes_nothing(text_campaign: Campaign) -> None:
    one_unknown(text_campaign, answered=iso(T0 + timedelta(days=40)))
    outcome, heard = reconcile(text_campaign, [sms()], fail=lambda start, _: f"Down from {start}.")
    assert isinstance(outcome, RunStopped)
    assert str(outcome) == "GET /messages failed: Down from 2090-03-09; the unknown rows stay unknown."
    assert len(heard) == 2
    assert recipients(text_campaign) == {PHONE: ("unknown", "", "the answer was lost", "")}


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_stops_at_the_first_range(text_campaign: Campaign, status: int) -> None:
    """The key refused (RunStopped from the client) is not one range's failure: no further
    range is asked for, even one that would answer."""
    one_unknown(text_campaign, answered=iso(T0 + timedelta(days=40)))
    first = date(2090, 3, 9)
    outcome, heard = reconcile(
        text_campaign, [sms()], fail=lambda start, _: (status, "No.") if start == first else None
    )
    assert isinstance(outcome, RunStopped)
    assert str(outcome) == f"The API refused the key (HTTP {status}); check SOCIOCS_API_KEY."
    assert heard == ["start_date=2090-03-09&end_date=2090-04-08"]
    assert recipients(text_campaign) == {PHONE: ("unknown", "", "the answer was lost", "")}


# --- the helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2090-03-10T12:00:00Z", T0),
        ("2090-03-10T12:00:00.250Z", T0 + timedelta(milliseconds=250)),
        ("2090-03-10t12:00:00z", T0),  # RFC 3339 section 5.6 allows lowercase
        ("2090-03-10T14:00:00+02:00", T0),
        ("2090-03-10T07:00:00-05:00", T0),
        ("2090-03-10T12:00:00", T0),  # naive: taken as UTC
        ("2090-03-10", datetime(2090, 3, 10, tzinfo=UTC)),
        (T0, T0),
        ("yesterday", None),
        ("2090-13-01T00:00:00Z", None),
        ("", None),
        (None, None),
        (0, None),
    ],
)
def test_when(value: Any, expected: datetime | None) -> None:
    when = _when(value)
    assert when == expected
    if expected is not None:
        assert when is not None and when.tzinfo is not None


def test_when_keeps_the_offset_it_was_given() -> None:
    when = _when("2090-03-10T14:00:00+02:00")
    assert when is not None and when.utcoffset() == timedelta(hours=2)
    naive = _when("2090-03-10T12:00:00")
    assert naive is not None and naive.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "expected"),
    [("+1 (617) 555-0100", "16175550100"), (16175550100, "16175550100"), (None, ""), ("", ""), ("abc", "")],
)
def test_digits(value: Any, expected: str) -> None:
    assert _digits(value) == expected


def row_of(message: str, content: str = "") -> dict[str, Any]:
    return {"content": content, "message": message}


def test_our_content_of_a_text_row(text_campaign: Campaign) -> None:
    assert _our_content(text_campaign, row_of("Hi")) == {"text": "Hi"}
    assert _our_content(text_campaign, row_of("")) == {}
    stored = '{"text":"Hello","image_url":"https://example.com/a.png"}'
    assert _our_content(text_campaign, row_of("Hi", stored)) == {
        "text": "Hello",
        "image_url": "https://example.com/a.png",
    }


def test_our_content_of_a_template_row(template_campaign: Campaign) -> None:
    assert _our_content(template_campaign, row_of('{"1":"Ann"}')) == {
        "template": {"id": TEMPLATE, "variables": {"1": "Ann"}}
    }
    assert _our_content(template_campaign, row_of("")) == {"template": {"id": TEMPLATE}}
    stored = json.dumps({"template": {"id": OTHER_TEMPLATE, "variables": {"1": "Bo"}}})
    assert _our_content(template_campaign, row_of('{"1":"Ann"}', stored)) == json.loads(stored)


def test_our_content_of_a_row_whose_template_id_is_a_template(template_campaign: Campaign) -> None:
    """A template id rendered per row (it holds ``{``) was not kept before schema 2: unknown."""
    per_row = dataclasses.replace(
        template_campaign, message=dataclasses.replace(template_campaign.message, template_id="HX{{ kind }}")
    )
    assert _our_content(per_row, row_of('{"1":"Ann"}')) == {"template": {"variables": {"1": "Ann"}}}
    assert _our_content(per_row, row_of("")) == {"template": {}}


# --- a created_at without a UTC offset: the API's zone is not documented --------------------


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        ("2090-03-10T12:01:00", NO_TIME),  # the row's own time, read as UTC: still no zone
        ("2090-03-10T07:01:00", NO_TIME),  # the API in New York (UTC-5): the same instant
        ("2090-03-11T01:01:00", NO_TIME),  # in Auckland (UTC+13) it is the next day
        ("2090-03-09T22:04:00", NO_TIME),  # UTC-14 reaches the span's start less the skew
        ("2090-03-09T21:50:00", STILL_PENDING),  # 14 h 8 min before the span: no zone makes it the row's
        ("2090-03-11T02:15:00", STILL_PENDING),  # 14 h 8 min after it: past UTC+14 as well
    ],
)
def test_a_listed_time_without_an_offset_is_never_read_as_utc(
    text_campaign: Campaign, created_at: str, expected: tuple[str, str, str, str]
) -> None:
    """Read as UTC, a New York "07:01" would be 5 hours before the row's span: no candidate,
    the row pending, and the next run would send the message a second time. A time without an
    offset is a candidate anywhere from UTC-12 to UTC+14 of the span (UNKNOWN_ZONE) and never
    found on its own; beyond that range it is no candidate."""
    one_unknown(text_campaign)
    report, _ = reconcile(text_campaign, [sms(created_at=created_at)])
    decided = {"pending": 1} if expected is STILL_PENDING else {"ambiguous": 1}
    assert report == ReconcileReport(checked=1, days=3, **decided)
    assert recipients(text_campaign) == {PHONE: expected}
