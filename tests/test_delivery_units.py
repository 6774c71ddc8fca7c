"""campaign.delivery pinned in-process (issue #11): whole values for every function.

The error-code table, both signature functions, every body shape the sandbox posts and every
malformed one (exact ``ReportError`` sentences), ``_timestamp``'s order and units, ``resolve``
as a table of (shown, report, arrival) -> Shown, ``iso_ms`` and ``error_text``.

Expected values are written by hand: signatures are computed here with ``hmac``/``hashlib``
as sociocs-api.md section 8 ("Webhook deliveries", Signing) states them (hex HMAC-SHA256, key =
the secret, message = the raw body); instants by the calendar: 1700000000 s is
2023-11-14T22:13:20Z, 1764547200 s is 2025-12-01T00:00:00Z, 253402300799 s is
9999-12-31T23:59:59Z (the last second a ``datetime`` holds).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from campaign import delivery
from campaign.delivery import (
    ErrorKind,
    Report,
    ReportError,
    Shown,
    _timestamp,
    error_kind,
    error_meaning,
    error_text,
    iso_ms,
    parse_report,
    resolve,
    sign,
    signature_ok,
)

TEMP, PERM, OTHER = ErrorKind.TEMPORARY, ErrorKind.PERMANENT, ErrorKind.OTHER

#: Every code the module knows, with its kind and the line a campaign owner reads (Twilio's error
#: dictionary, https://www.twilio.com/docs/api/errors/<code>, and its WhatsApp 631xx codes).
KNOWN_CODES: list[tuple[int, ErrorKind, str]] = [
    (21211, PERM, "invalid 'To' phone number"),
    (21408, OTHER, "sending to this region is not enabled on the account"),
    (21610, PERM, "the recipient opted out (replied STOP)"),
    (21612, OTHER, "this route (from/to pair) is not supported"),
    (21614, PERM, "not a mobile number"),
    (30001, TEMP, "queue overflow: too many messages queued on the sender"),
    (30002, OTHER, "account suspended"),
    (30003, TEMP, "unreachable handset (switched off or out of coverage)"),
    (30004, PERM, "message blocked by the recipient or their carrier"),
    (30005, PERM, "unknown number: it does not exist or is no longer in service"),
    (30006, PERM, "landline or unreachable carrier: cannot receive SMS"),
    (30007, OTHER, "carrier filtering: the carrier flagged the message as spam"),
    (30008, TEMP, "unknown error from the carrier"),
    (30017, TEMP, "carrier network congestion"),
    (30022, TEMP, "US A2P 10DLC rate limit exceeded"),
    (30034, OTHER, "US A2P 10DLC: the sending number is not registered"),
    (63003, PERM, "the number is not on WhatsApp"),
    (63016, OTHER, "WhatsApp: outside the 24-hour window; send an approved template"),
    (63018, TEMP, "WhatsApp: rate or messaging-tier limit reached"),
    (63024, PERM, "WhatsApp: invalid recipient"),
    (63032, OTHER, "WhatsApp: Meta held the message back (user in an experiment)"),
    (63049, OTHER, "WhatsApp: Meta chose not to deliver this marketing message"),
]

UNREACHABLE = "unreachable handset (switched off or out of coverage)"


# --- error codes ----------------------------------------------------------------------------


def test_the_code_table_is_exactly_the_known_codes() -> None:
    assert {code: (kind, text) for code, kind, text in KNOWN_CODES} == delivery.ERROR_CODES
    assert [k.value for k in ErrorKind] == ["temporary", "permanent", "other"]


@pytest.mark.parametrize(("code", "kind", "meaning"), KNOWN_CODES)
def test_each_known_code_has_its_meaning_and_kind(code: int, kind: ErrorKind, meaning: str) -> None:
    assert error_meaning(str(code)) == meaning
    assert error_kind(str(code)) is kind


@pytest.mark.parametrize("code", ["99999", "0", "-30003", "", "abc", "30003.0", "30003x", "0x7533", "None"])
def test_an_unknown_or_non_numeric_code_has_no_meaning_and_kind_other(code: str) -> None:
    assert error_meaning(code) == ""
    assert error_kind(code) is ErrorKind.OTHER


@pytest.mark.parametrize("code", [" 30003", "30003\n", "+30003", "030003"])
def test_a_code_is_read_as_an_integer(code: str) -> None:
    """int() reads the code: surrounding space, a sign and leading zeros do not matter."""
    assert error_meaning(code) == UNREACHABLE
    assert error_kind(code) is ErrorKind.TEMPORARY


# --- signatures -----------------------------------------------------------------------------


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def test_sign_matches_the_documented_test_vector() -> None:
    # sociocs-api.md section 8: secret "My Shared Secret", body "Hello, World!".
    assert (
        sign("My Shared Secret", b"Hello, World!") == "a52954ef969a496aeed237f48b03c6df7ea43cd0f6e595d06dfe7a8b14b5d891"
    )


@pytest.mark.parametrize(
    ("secret", "body"),
    [
        ("s3cret", b'{"message_id": "SM1", "event": "status_update", "event_data": {"status": "sent"}}'),
        ("cl\u00e9 \u2603", b"caf\xc3\xa9"),  # a secret outside Latin-1 is keyed by its UTF-8 bytes
        ("k", b""),
        ("", b"x"),
    ],
)
def test_sign_is_the_hex_hmac_sha256_of_the_raw_body_keyed_by_the_utf8_secret(secret: str, body: bytes) -> None:
    expected = _hmac_hex(secret, body)
    assert sign(secret, body) == expected
    assert len(expected) == 64 and expected == expected.lower()


def test_sign_of_a_non_latin1_secret_is_not_its_latin1_or_sha1_hmac() -> None:
    secret, body = "cl\u00e9", b"body"
    assert sign(secret, body) != hmac.new(secret.encode("latin-1"), body, hashlib.sha256).hexdigest()
    assert sign(secret, body) != hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest()


SECRET, BODY = "My Shared Secret", b'{"message_id": "SM1", "event_data": {"status": "delivered"}}'
GOOD = _hmac_hex(SECRET, BODY)


@pytest.mark.parametrize(
    "given",
    [GOOD, GOOD.upper(), GOOD[:32].upper() + GOOD[32:], f"  {GOOD}  ", f"\t{GOOD}\r\n", f"{GOOD}\n"],
)
def test_signature_ok_accepts_the_hmac_in_either_case_and_around_whitespace(given: str) -> None:
    assert signature_ok(SECRET, BODY, given) is True


@pytest.mark.parametrize(
    "given",
    [
        None,
        "",
        "   ",
        GOOD[:-1],
        GOOD + "0",
        GOOD[:-1] + ("0" if GOOD[-1] != "0" else "1"),
        f"sha256={GOOD}",
        GOOD[:32] + " " + GOOD[32:],
        "\u00e9" * 64,  # not ASCII: replaced, so simply wrong (no exception)
        GOOD[:-1] + "\u00e9",
        GOOD + "\u00e9",  # a non-ASCII character is replaced, not dropped: still wrong
        "\u00e9" + GOOD,
        _hmac_hex(SECRET, BODY + b" "),
        _hmac_hex("my shared secret", BODY),
        hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest(),
    ],
)
def test_signature_ok_refuses_anything_else(given: str | None) -> None:
    assert signature_ok(SECRET, BODY, given) is False


def test_signature_ok_checks_the_body_and_the_secret_it_is_given() -> None:
    assert signature_ok(SECRET, BODY + b"\n", GOOD) is False
    assert signature_ok("other", BODY, GOOD) is False
    assert signature_ok("other", BODY, _hmac_hex("other", BODY)) is True
    assert signature_ok("cl\u00e9", b"x", _hmac_hex("cl\u00e9", b"x")) is True


def test_the_header_and_environment_names() -> None:
    assert delivery.SIGNATURE_HEADER == "X-Sociocs-Signature"
    assert delivery.SECRET_ENV == "SOCIOCS_WEBHOOK_SECRET"


# --- parse_report ---------------------------------------------------------------------------


def _body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def test_the_sandboxs_sent_report() -> None:
    # campaign/sandbox_webhooks.py's _body for ("sent", no code) at 1764547200000.
    body = _body(message_id="MM2aa0", event="status_update", event_data={"status": "sent"}, timestamp=1764547200000)
    assert parse_report(body) == Report("MM2aa0", "sent", "", "", 1764547200000)


def test_the_sandboxs_failure_report() -> None:
    body = _body(
        message_id="SMabc",
        event="status_update",
        event_data={
            "status": "undelivered",
            "error": {"code": 30003, "message": f"{UNREACHABLE} (code: 30003)"},
            "provider_err_obj": {
                "status": 400,
                "code": 30003,
                "moreInfo": "https://www.twilio.com/docs/errors/30003",
                "error": True,
            },
        },
        timestamp=1764547200001,
    )
    assert parse_report(body) == Report("SMabc", "undelivered", "30003", f"{UNREACHABLE} (code: 30003)", 1764547200001)


def test_the_documented_example_without_a_timestamp() -> None:
    # sociocs-api.md section 8, "Outbound status" (no timestamp: arrival will stand in).
    body = (
        b'{ "message_id": "MM2aa0db1b276eaeaa5d730d5aa34167f2", "event": "status_update",\n'
        b'  "event_data": { "status": "failed",\n'
        b'    "error": { "code": 21614, "message": "... (code: 21614)" },\n'
        b'    "provider_err_obj": { "status": 400, "code": 21614,\n'
        b'      "moreInfo": "https://www.twilio.com/docs/errors/21614", "error": true } } }'
    )
    assert parse_report(body) == Report(
        "MM2aa0db1b276eaeaa5d730d5aa34167f2", "failed", "21614", "... (code: 21614)", None
    )


@pytest.mark.parametrize("event", ["message", "STATUS_UPDATE", "status_updates", "", 5, [], {}])
def test_a_delivery_of_another_event_is_not_a_report(event: Any) -> None:
    body = _body(message_id="SM1", event=event, event_data={"status": "sent"})
    assert parse_report(body) is None


def test_an_incoming_message_delivery_is_not_a_report() -> None:
    body = _body(message_id="SM9", event="message", direction="incoming", text="hi", timestamp=1764547200000)
    assert parse_report(body) is None


@pytest.mark.parametrize("event", [{"event": None}, {}])
def test_a_missing_or_null_event_is_read_as_a_status_update(event: dict[str, Any]) -> None:
    body = _body(message_id="SM1", event_data={"status": "sent"}, **event)
    assert parse_report(body) == Report("SM1", "sent", "", "", None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "The body is not valid JSON."),
        (b"", "The body is not valid JSON."),
        (b"\xff\xfe", "The body is not valid JSON."),
        (b'{"message_id": "\xff"}', "The body is not valid JSON."),  # not UTF-8
        (b'{"a": 1} x', "The body is not valid JSON."),
        (b"[1, 2]", "The body must be a JSON object."),
        (b'"SM1"', "The body must be a JSON object."),
        (b"null", "The body must be a JSON object."),
        (b"5", "The body must be a JSON object."),
        (_body(event="status_update", event_data={"status": "sent"}), "message_id is missing."),
        (_body(message_id=None, event_data={"status": "sent"}), "message_id is missing."),
        (_body(message_id="", event_data={"status": "sent"}), "message_id is missing."),
        (_body(message_id=" \t ", event_data={"status": "sent"}), "message_id is missing."),
        (_body(message_id=True, event_data={"status": "sent"}), "message_id is missing."),
        (_body(message_id=False, event_data={"status": "sent"}), "message_id is missing."),
        (_body(message_id=1.5, event_data={"status": "sent"}), "message_id is missing."),
        (_body(message_id=["SM1"], event_data={"status": "sent"}), "message_id is missing."),
        (_body(message_id={"id": "SM1"}, event_data={"status": "sent"}), "message_id is missing."),
        (_body(message_id="SM1"), "event_data must be an object."),
        (_body(message_id="SM1", event_data=None), "event_data must be an object."),
        (_body(message_id="SM1", event_data="sent"), "event_data must be an object."),
        (_body(message_id="SM1", event_data=[{"status": "sent"}]), "event_data must be an object."),
        (_body(message_id="SM1", event_data={}), "event_data.status is missing."),
        (_body(message_id="SM1", event_data={"status": None}), "event_data.status is missing."),
        (_body(message_id="SM1", event_data={"status": ""}), "event_data.status is missing."),
        (_body(message_id="SM1", event_data={"status": "  "}), "event_data.status is missing."),
        (_body(message_id="SM1", event_data={"status": 3}), "event_data.status is missing."),
        (_body(message_id="SM1", event_data={"status": ["sent"]}), "event_data.status is missing."),
    ],
)
def test_a_malformed_delivery_is_refused_with_one_exact_sentence(body: bytes, message: str) -> None:
    with pytest.raises(ReportError) as caught:
        parse_report(body)
    assert str(caught.value) == message
    assert caught.value.__cause__ is None
    # the JSON decoder's own error is not chained on (``from None``): the sentence is the message
    assert caught.value.__suppress_context__ is (message == "The body is not valid JSON.")
    assert isinstance(caught.value, ValueError)


def test_checks_come_in_order_message_id_before_event_data() -> None:
    with pytest.raises(ReportError, match=r"^message_id is missing\.$"):
        parse_report(_body(event_data="x"))


@pytest.mark.parametrize(
    ("message_id", "expected"),
    [
        ("SM1", "SM1"),
        ("  SM1\n", "SM1"),
        (42, "42"),
        (0, "0"),
        (-7, "-7"),
        ("x" * 250, "x" * 200),
        (" " + "y" * 200 + "z", "y" * 200),
    ],
)
def test_the_message_id_is_text_stripped_and_cut_at_200(message_id: Any, expected: str) -> None:
    report = parse_report(_body(message_id=message_id, event_data={"status": "sent"}))
    assert report == Report(expected, "sent", "", "", None)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Delivered", "delivered"),
        (" SENT \n", "sent"),
        ("handed_to_carrier", "handed_to_carrier"),
        ("A" * 45, "a" * 40),
        (" " + "B" * 40 + "C", "b" * 40),
    ],
)
def test_the_status_is_stripped_lowered_and_cut_at_40(status: str, expected: str) -> None:
    report = parse_report(_body(message_id="SM1", event_data={"status": status}))
    assert report == Report("SM1", expected, "", "", None)


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        ({"code": 30003, "message": "Unreachable"}, "30003", "Unreachable"),
        ({"code": "63016", "message": "Outside window"}, "63016", "Outside window"),
        ({"code": 30003}, "30003", ""),
        ({"message": "no code"}, "", "no code"),
        ({"code": None, "message": None}, "", ""),
        ({"code": 0, "message": 0}, "0", ""),
        ({"code": 30003.5, "message": 12}, "30003.5", "12"),
        ({"code": True, "message": ["a", 1]}, "True", "['a', 1]"),
        ({"code": [30003], "message": {"m": 1}}, "", "{'m': 1}"),
        ({"code": {"n": 30003}, "message": "x"}, "", "x"),
        ({"code": "9" * 45, "message": "m" * 501}, "9" * 40, "m" * 500),
        ({}, "", ""),
    ],
)
def test_the_error_object_gives_code_and_message_as_text(error: dict[str, Any], code: str, message: str) -> None:
    report = parse_report(_body(message_id="SM1", event_data={"status": "failed", "error": error}))
    assert report == Report("SM1", "failed", code, message, None)


@pytest.mark.parametrize("error", ["30003", 30003, ["30003", "x"], None, True])
def test_an_error_that_is_not_an_object_is_ignored(error: Any) -> None:
    report = parse_report(_body(message_id="SM1", event_data={"status": "failed", "error": error}))
    assert report == Report("SM1", "failed", "", "", None)


def test_provider_err_obj_alone_gives_no_code() -> None:
    body = _body(message_id="SM1", event_data={"status": "failed", "provider_err_obj": {"code": 30003}})
    assert parse_report(body) == Report("SM1", "failed", "", "", None)


def test_a_body_in_utf16_is_json_too() -> None:
    # json.loads detects UTF-16/32 from the first bytes (RFC 8259 section 8.1 allows only UTF-8
    # on the wire, but the module takes what json takes).
    body = '{"message_id": "SM1", "event_data": {"status": "sent"}}'.encode("utf-16")
    assert parse_report(body) == Report("SM1", "sent", "", "", None)


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ((1764547200000, 1700000000000), 1764547200000),  # the first usable one wins
        ((None, 1700000000000), 1700000000000),
        (("1764547200000", 1700000000000), 1700000000000),  # text is not a number
        ((True, 1700000000000), 1700000000000),  # nor is a JSON boolean
        ((False, 5), 5),
        ((0, 1700000000000), 1700000000000),  # zero and below are not times
        ((-1, 7), 7),
        ((float("nan"), 7), 7),
        ((float("inf"), 7), 7),
        ((float("-inf"), 7), 7),
        ((1, 7), 1),
        ((1764547200123.9, 7), 1764547200123),  # cut to whole milliseconds, not rounded
        ((0.5, 7), 0),  # above zero, so taken, then cut
        ((1764547200, 7), 1764547200),  # taken as milliseconds as it stands: no guessing of seconds
        (([1], {"t": 1}, 9), 9),
        ((), None),
        ((None, None), None),
        ((0, -5, "x", False), None),
    ],
)
def test_timestamp_takes_the_first_positive_finite_number_in_ms(
    candidates: tuple[Any, ...], expected: int | None
) -> None:
    got = _timestamp(*candidates)
    assert got == expected
    assert got is None or type(got) is int


@pytest.mark.parametrize(
    ("top", "inner", "expected"),
    [
        (1764547200000, 1700000000000, 1764547200000),  # the top-level one first
        (None, 1700000000000, 1700000000000),
        ("soon", 1700000000000, 1700000000000),
        (0, 1700000000000, 1700000000000),
        (None, None, None),
    ],
)
def test_parse_report_reads_the_top_level_timestamp_then_event_datas(
    top: Any, inner: Any, expected: int | None
) -> None:
    fields: dict[str, Any] = {"message_id": "SM1", "event_data": {"status": "sent"}}
    if top is not None:
        fields["timestamp"] = top
    if inner is not None:
        fields["event_data"]["timestamp"] = inner
    assert parse_report(_body(**fields)) == Report("SM1", "sent", "", "", expected)


def test_nan_and_infinity_in_the_body_are_no_timestamp() -> None:
    body = b'{"message_id": "SM1", "event_data": {"status": "sent", "timestamp": Infinity}, "timestamp": NaN}'
    assert parse_report(body) == Report("SM1", "sent", "", "", None)


def test_a_timestamp_too_large_for_a_float_is_no_timestamp() -> None:
    body = b'{"message_id": "SM1", "event_data": {"status": "sent"}, "timestamp": 1' + b"0" * 400 + b"}"
    assert parse_report(body) == Report("SM1", "sent", "", "", None)


@pytest.mark.parametrize("huge", [10**20, 10**15, 253402300800000])
def test_a_timestamp_past_year_9999_is_no_timestamp(huge: int) -> None:
    body = _body(message_id="SM1", event_data={"status": "sent"}, timestamp=huge)
    assert parse_report(body) == Report("SM1", "sent", "", "", None)


def test_the_last_millisecond_of_year_9999_is_a_timestamp() -> None:
    last = 253402300799999  # 9999-12-31T23:59:59.999Z
    body = _body(message_id="SM1", event_data={"status": "sent"}, timestamp=last)
    assert parse_report(body) == Report("SM1", "sent", "", "", last)
    assert delivery.iso_ms(last) == "9999-12-31T23:59:59+00:00"


def test_a_deeply_nested_body_is_refused_as_not_json() -> None:
    with pytest.raises(ReportError, match=r"^The body is not valid JSON\.$"):
        parse_report(b"[" * 100_000)


# --- resolve --------------------------------------------------------------------------------


def test_the_progress_ranks_and_failure_words() -> None:
    assert delivery.PROGRESS_RANK == {
        "accepted": 1,
        "queued": 1,
        "enqueued": 1,
        "scheduled": 1,
        "sending": 2,
        "sent": 3,
        "delivered": 4,
        "read": 5,
    }
    assert (delivery.SENT_RANK, delivery.DELIVERED_RANK, delivery.READ_RANK) == (3, 4, 5)
    assert {"failed", "undelivered", "sending_failed", "delivery_failed", "canceled", "cancelled"} == delivery.FAILURES


def _rep(status: str, at: int | None = None, code: str = "", message: str = "") -> Report:
    return Report("SM1", status, code, message, at)


def _shown(status: str, at: int | None, reached: int, code: str = "", message: str = "") -> Shown:
    return Shown(status, code, message, at, reached)


FAIL_20 = _shown("failed", 20, 0, "30003", "gone")
DELIVERED_20 = _shown("delivered", 20, 4)


@pytest.mark.parametrize(
    ("report", "arrived", "expected"),
    [
        (_rep("sent"), 100, _shown("sent", 100, 3)),  # no provider time: the arrival stands in
        (_rep("sent", 50), 100, _shown("sent", 50, 3)),
        (_rep("accepted", 1), 9, _shown("accepted", 1, 1)),
        (_rep("sending", 1), 9, _shown("sending", 1, 2)),
        (_rep("delivered", 1), 9, _shown("delivered", 1, 4)),
        (_rep("read", 1), 9, _shown("read", 1, 5)),
        (_rep("failed", 7, "30003", "gone"), 9, _shown("failed", 7, 0, "30003", "gone")),
        (_rep("handed_to_carrier", None), 9, _shown("handed_to_carrier", 9, 0)),
    ],
)
def test_resolve_the_first_report_is_shown_as_it_is(report: Report, arrived: int, expected: Shown) -> None:
    assert resolve(None, report, arrived) == expected


@pytest.mark.parametrize(
    ("current", "report", "arrived", "expected"),
    [
        # Progress only moves forward; equal ranks and duplicates change nothing (not even the time).
        (_shown("sent", 10, 3), _rep("delivered", 20), 99, _shown("delivered", 20, 4)),
        (_shown("sent", 30, 3), _rep("delivered", 20), 99, _shown("delivered", 20, 4)),  # rank, not time
        (DELIVERED_20, _rep("sent", 30), 99, _shown("delivered", 20, 4)),  # a late sent
        (DELIVERED_20, _rep("sent"), 99, _shown("delivered", 20, 4)),
        (DELIVERED_20, _rep("delivered", 30), 99, _shown("delivered", 20, 4)),  # a duplicate
        (DELIVERED_20, _rep("delivered", 10), 99, _shown("delivered", 20, 4)),
        (_shown("queued", 5, 1), _rep("accepted", 6), 99, _shown("queued", 5, 1)),
        (_shown("queued", 5, 1), _rep("sending", 6), 99, _shown("sending", 6, 2)),
        (_shown("sending", 5, 2), _rep("enqueued", 6), 99, _shown("sending", 5, 2)),
        (_shown("scheduled", 5, 1), _rep("sent"), 99, _shown("sent", 99, 3)),
        (DELIVERED_20, _rep("read", 30), 99, _shown("read", 30, 5)),
        (_shown("sent", 10, 3), _rep("read", 5), 99, _shown("read", 5, 5)),  # read implies delivered
        (_shown("read", 30, 5), _rep("delivered", 40), 99, _shown("read", 30, 5)),
        # reached keeps the furthest rank of any report, even one no longer shown.
        (_shown("sent", 10, 4), _rep("sent", 11), 99, _shown("sent", 10, 4)),
        # A failure replaces any progress, whatever its time, and keeps reached.
        (DELIVERED_20, _rep("failed", 30, "30003", "gone"), 99, _shown("failed", 30, 4, "30003", "gone")),
        (DELIVERED_20, _rep("undelivered", 10, "30005"), 99, _shown("undelivered", 10, 4, "30005")),
        (_shown("read", 30, 5), _rep("failed", None, "63024"), 99, _shown("failed", 99, 5, "63024")),
        (_shown("sent", 10, 3), _rep("delivery_failed", 5), 99, _shown("delivery_failed", 5, 3)),
        # Between failures the later one wins (provider time, else arrival); equal times: the newer report.
        (FAIL_20, _rep("undelivered", 30, "30005", "x"), 99, _shown("undelivered", 30, 0, "30005", "x")),
        (FAIL_20, _rep("undelivered", 10, "30005", "x"), 99, FAIL_20),
        (FAIL_20, _rep("undelivered", 20, "30005", "x"), 99, _shown("undelivered", 20, 0, "30005", "x")),
        (FAIL_20, _rep("undelivered", None, "30005"), 21, _shown("undelivered", 21, 0, "30005")),
        (FAIL_20, _rep("undelivered", None, "30005"), 19, FAIL_20),
        (_shown("failed", None, 3, "1"), _rep("canceled", 1, "2"), 0, _shown("canceled", 1, 3, "2")),
        # After a failure only delivered/read with a later provider time is shown.
        (FAIL_20, _rep("sent", 30), 99, _shown("failed", 20, 3, "30003", "gone")),
        (FAIL_20, _rep("sending", 30), 99, _shown("failed", 20, 2, "30003", "gone")),
        (FAIL_20, _rep("delivered", 30), 99, _shown("delivered", 30, 4)),
        (FAIL_20, _rep("read", 21), 99, _shown("read", 21, 5)),
        (FAIL_20, _rep("delivered", 20), 99, _shown("failed", 20, 4, "30003", "gone")),  # equal: not later
        (FAIL_20, _rep("delivered", 19), 99, _shown("failed", 20, 4, "30003", "gone")),
        (FAIL_20, _rep("delivered"), 99, _shown("failed", 20, 4, "30003", "gone")),  # arrival is not enough
        (_shown("failed", None, 0), _rep("delivered", 30), 99, _shown("failed", None, 4)),
        # A word we do not know shows only while nothing known has been.
        (_shown("handed_to_carrier", 10, 0), _rep("sent", 5), 99, _shown("sent", 5, 3)),
        (_shown("handed_to_carrier", 10, 0), _rep("other_word", 11), 99, _shown("other_word", 11, 0)),
        (_shown("handed_to_carrier", 10, 0), _rep("other_word", 10), 99, _shown("other_word", 10, 0)),
        (_shown("handed_to_carrier", 10, 0), _rep("other_word", 9), 99, _shown("handed_to_carrier", 10, 0)),
        (_shown("handed_to_carrier", None, 0), _rep("other_word"), 1, _shown("other_word", 1, 0)),
        (_shown("handed_to_carrier", 10, 0), _rep("failed", 5, "9"), 99, _shown("failed", 5, 0, "9")),
        (_shown("sent", 10, 3), _rep("other_word", 30), 99, _shown("sent", 10, 3)),
        (_shown("queued", 10, 1), _rep("other_word", 30), 99, _shown("queued", 10, 1)),
        (FAIL_20, _rep("other_word", 30), 99, _shown("failed", 20, 0, "30003", "gone")),
        (_shown("failed", 20, 4), _rep("FAILED", 30), 99, _shown("failed", 20, 4)),  # words are matched as given
    ],
)
def test_resolve_table(current: Shown, report: Report, arrived: int, expected: Shown) -> None:
    assert resolve(current, report, arrived) == expected


@pytest.mark.parametrize(
    "word", ["failed", "undelivered", "sending_failed", "delivery_failed", "canceled", "cancelled"]
)
def test_each_failure_word_replaces_delivered_and_is_not_replaced_by_an_older_one(word: str) -> None:
    after = resolve(DELIVERED_20, _rep(word, 30, "30003"), 99)
    assert after == _shown(word, 30, 4, "30003")
    assert resolve(after, _rep("failed", 25, "1"), 99) == after


def test_the_sandboxs_orders_all_end_on_the_final_report() -> None:
    """sandbox_webhooks' plans (sent, delivered, read; sent, undelivered), in order, reversed and
    with a duplicate, each with the sandbox's timestamps base + i."""
    plans = [
        [_rep("sent", 100), _rep("delivered", 101), _rep("read", 102)],
        [_rep("sent", 100), _rep("undelivered", 101, "30003")],
        [_rep("failed", 100, "21610")],
    ]
    finals = [_shown("read", 102, 5), _shown("undelivered", 101, 3, "30003"), _shown("failed", 100, 0, "21610")]
    for plan, final in zip(plans, finals, strict=True):
        for order in (plan, plan[::-1], plan + plan[:1], plan[-1:] + plan):
            shown: Shown | None = None
            for i, report in enumerate(order):
                shown = resolve(shown, report, 1000 + i)
            assert shown == final, order


# --- iso_ms and error_text ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, ""),
        (0, "1970-01-01T00:00:00+00:00"),
        (1700000000000, "2023-11-14T22:13:20+00:00"),
        (1700000000999, "2023-11-14T22:13:20+00:00"),  # cut to the second, not rounded
        (1700000001000, "2023-11-14T22:13:21+00:00"),
        (1764547200000, "2025-12-01T00:00:00+00:00"),
        (1764547199999, "2025-11-30T23:59:59+00:00"),
        (-1, "1969-12-31T23:59:59+00:00"),
        (253402300799999, "9999-12-31T23:59:59+00:00"),
    ],
)
def test_iso_ms(ms: int | None, text: str) -> None:
    assert iso_ms(ms) == text


@pytest.mark.parametrize(
    ("code", "message", "text"),
    [
        ("30003", "", f"30003: {UNREACHABLE}"),  # ours when the provider gave none
        (
            "30003",
            "Unreachable destination handset (code: 30003)",
            "30003: Unreachable destination handset (code: 30003)",
        ),
        ("99999", "", "99999"),
        ("abc", "", "abc"),
        ("", "Something failed", "Something failed"),
        ("", "", ""),
        ("21610", "x", "21610: x"),
    ],
)
def test_error_text(code: str, message: str, text: str) -> None:
    assert error_text(code, message) == text
