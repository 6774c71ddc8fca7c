"""Phone numbers read as their owner meant them (issue #9, kinds 1 and 8): unit and property tests.

Kind 1: a number without + or 00 is read only in its default country; a spreadsheet's float
damage is undone when exact and refused when digits were lost; ``countries`` limits the
destinations. Kind 8: numbers whose type cannot take a text are refused, landlines on WhatsApp.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from campaign import phones, runner
from campaign.config import load_campaign
from campaign.errors import ConfigError
from campaign.phones import PhoneError, normalise, parse
from tests.conftest import CampaignFactory
from tests.test_cli import run
from tests.test_send import results, send

REGIONS = ["US", "CA", "GB", "DE", "FR", "IN", "AU", "JP", "BR", "NG", "MX", "IT"]


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+1 (617) 555-0100", None, "+16175550100"),
        ("617.555.0100", "US", "+16175550100"),
        ("16175550100", "US", "+16175550100"),
        ("0044 7911 123456", "US", "+447911123456"),
        ("07911 123456", "GB", "+447911123456"),
        ("7911123456", "GB", "+447911123456"),  # the leading 0 a spreadsheet dropped
        ("4165550101", "US", "+14165550101"),  # Toronto: the same numbering plan as the US
        ("\u200b+44 7723 456789", "US", "+447723456789"),  # a + behind junk is still a +
        ("'+447723456789", "US", "+447723456789"),
        ("(0044) 7723 456789", "US", "+447723456789"),
        ("+0012025550104", "GB", "+12025550104"),  # Notify's "+00" case
        # Spreadsheet damage, undone when no digit was lost:
        ("6175550101.0", "US", "+16175550101"),
        ("2015550105.0", "US", "+12015550105"),
        ("6175550101,0", "US", "+16175550101"),  # a comma as the decimal mark
        ("6.175550101E9", "US", "+16175550101"),
        ("6.175550101E+09", "US", "+16175550101"),
        ("6,175550101E+09", "US", "+16175550101"),
        ("6.1755501010E9", "US", "+16175550101"),  # a trailing zero in the mantissa is a digit kept
        ("7.911123456e9", "GB", "+447911123456"),
        ("6,175,550,101", "US", "+16175550101"),  # a number format with thousands separators
        ("16,175,550,101.00", "US", "+16175550101"),
    ],
)
def test_reading(raw: str, country: str | None, expected: str) -> None:
    assert normalise(raw, country) == expected
    assert parse(raw, country).e164 == expected


@pytest.mark.parametrize(
    ("raw", "country", "reason"),
    [
        ("", "US", "no phone number"),
        ("n/a", "US", "is not a phone number"),
        ("12345", "US", "'12345' is too short for US; if it is another country's number, write it with +"),
        ("6175550100", None, "has no country code; write it with + and the country code"),
        ("+999 123 456", None, "'+999 123 456' has an unknown country code"),
        # Kind 1: never re-read as +digits (these were sent to Australia, the UK, ...):
        ("(617) 555-01040", "US", "'(617) 555-01040' is too long for US; if it is another country's number"),
        ("447911123456", "US", "too long for US; if it is another country's number, write it with +"),
        ("61412345678", "US", "too long for US"),
        ("011 44 7911 123456", "US", "is not a valid US number; if it is another country's number"),
        ("784951234567", "GB", "for GB; if it is another country's number"),  # Notify reads this as Russian
        ("1-202-555-0104", "GB", "for GB; if it is another country's number"),
        # Digits lost to scientific notation:
        ("1.61755501E10", "US", "scientific notation, and its last 2 digits were lost; format the phone column"),
        ("6.18E+09", "US", "its last 7 digits were lost"),
        ("6.17555010E9", "US", "its last digit was lost"),
        ("6.175550101E-3", "US", "in scientific notation, not a phone number"),
        # Two numbers in one cell: phonenumbers kept the first and dropped the second person.
        ("6175550101;6175550102", "US", "holds more than one phone number; give each number its own row"),
        ("+44 7911 123456; +44 7911 123457", "GB", "holds more than one phone number"),
        ("617-555-0101 / 617-555-0102", "US", "holds more than one phone number"),
        ("6175550101, 6175550102", "US", "holds more than one phone number"),
        ("617 555 0101 or 617 555 0102", "US", "holds more than one phone number"),
        ("6175550101\n6175550102", "US", "holds more than one phone number"),
    ],
)
def test_refusals(raw: str, country: str | None, reason: str) -> None:
    with pytest.raises(PhoneError) as caught:
        parse(raw, country)
    assert reason in str(caught.value)
    with pytest.raises(PhoneError):
        normalise(raw, country)


def test_countries_limit_destinations() -> None:
    assert parse("4165550101", "US", countries=("US", "CA")).region == "CA"
    with pytest.raises(PhoneError, match=r"'4165550101' is a number in CA, and \[recipients\] countries allows only"):
        parse("4165550101", "US", countries=("US",))
    with pytest.raises(PhoneError, match=r"'\+61 412 345 678' is a number in AU, and .*allows only US, CA"):
        parse("+61 412 345 678", "US", countries=("US", "CA"))
    assert parse("+61 412 345 678", "US").region == "AU"


def test_region_code() -> None:
    assert phones.region_code(" gb ") == "GB"
    with pytest.raises(PhoneError, match="'Narnia' is not an ISO 3166 alpha-2 country code"):
        phones.region_code("Narnia")


def test_countries_and_country_column_in_the_campaign_file(make_campaign: CampaignFactory) -> None:
    path = make_campaign(recipients='countries = ["us", "CA", "US"]\ncountry_column = " Country "')
    rc = load_campaign(path).recipients
    assert (rc.countries, rc.country_column) == (("US", "CA"), "Country")
    assert runner.campaign_warnings(load_campaign(path)) == []
    path = make_campaign(recipients='countries = ["CA"]')
    assert runner.campaign_warnings(load_campaign(path)) == [
        "default_country US is not in [recipients] countries (CA), so every number written without + and a "
        "country code will be invalid."
    ]
    path = make_campaign(recipients='countries = ["US", "Canada"]')
    with pytest.raises(ConfigError, match="countries holds 'Canada', which is not an ISO 3166 alpha-2 country code"):
        load_campaign(path)
    path = make_campaign(recipients="countries = 1")
    with pytest.raises(ConfigError, match="countries must be a list of ISO 3166 alpha-2 country codes"):
        load_campaign(path)


# --- kind 8: numbers that cannot receive the message ------------------------------------------
# Ported from GOV.UK Notify's tests (alphagov/notifications-utils,
# tests/recipient_validation/test_phone_number.py), read with default_country GB.

VALID_UK_MOBILES = [  # Notify: valid_uk_mobile_phone_numbers
    "7723456789",
    "07723456789",
    "07723 456789",
    "07723-456-789",
    "00447723456789",
    "00 44 7723456789",
    "+447723456789",
    "+44 7723 456 789",
    "+44 (0)7723 456 789",
    "\u200b\t\t+44 (0)7723 456 789\ufeff \r\n",
]

VALID_INTERNATIONAL = [  # Notify: valid_international_phone_numbers, those written with + or 00
    ("+7 (8) (495) 123-45-67", "+74951234567"),
    ("007 (8) (495) 123-45-67", "+74951234567"),
    ("+12025550104", "+12025550104"),
    ("0012025550104", "+12025550104"),
    ("+682 50 123", "+68250123"),
    ("+33122334455", "+33122334455"),
    ("0033122334455", "+33122334455"),
    ("+43 676 111 222 333 4", "+436761112223334"),
]

INVALID_UK = [  # Notify: invalid_uk_landlines and invalid_uk_mobile_phone_numbers
    "0400 123 4567",
    "0600 123 4567",
    "0300 46 46",
    "0800 11 12",
    "0845 46 31",
    "772345678910",
    "0772345678910",
    "0044772345678910",
    "+44 (0)7723 456 789 10",
    "0772345678",
    "004477234567",
    "00447723456",
    "+44 (0)7723 456 78",
    "07890x32109",
    "07723 ☟☜⬇⬆☞☝",
    "+44 07ab cde fgh",
    "ALPHANUM3R1C",
    "+682 1234",
    "+12345 12345 12345 6",
]

CANNOT_TEXT = [  # the cases, Notify's premium cases, and the other types by name
    ("090-1234-5678", "premium-rate"),  # a Japanese mobile read in the UK: premium, not +4490…
    ("0845 46 46", "premium-rate"),  # shared cost by name; phonenumbers files 0845 as premium
    ("0900 123 4567", "premium-rate"),
    ("0870 123 4567", "premium-rate"),
    ("030 1234 5678", "universal access (UAN)"),  # Notify accepts 030 as a landline: it cannot text
    ("0550 123 4567", "universal access (UAN)"),
    ("076 0012 3456", "pager"),
]

UK_LANDLINES = ["0117 496 0860", "0044 117 496 0860", "44 117 496 0860", "+44 117 496 0860", "020 7946 0991"]


@pytest.mark.parametrize("raw", VALID_UK_MOBILES)
def test_uk_mobiles(raw: str) -> None:
    number = parse(raw, "GB", whatsapp=True)
    assert (number.e164, number.region, number.type) == ("+447723456789", "GB", PhoneNumberType.MOBILE)


@pytest.mark.parametrize(("raw", "expected"), VALID_INTERNATIONAL)
def test_international_with_plus_or_00(raw: str, expected: str) -> None:
    assert parse(raw, "GB").e164 == expected


@pytest.mark.parametrize("raw", INVALID_UK)
def test_invalid_uk(raw: str) -> None:
    with pytest.raises(PhoneError):
        parse(raw, "GB")


@pytest.mark.parametrize(("raw", "kind"), CANNOT_TEXT)
def test_types_that_cannot_take_a_text(raw: str, kind: str) -> None:
    with pytest.raises(PhoneError) as caught:
        parse(raw, "GB")
    assert f"'{raw}' is a {kind} number (GB), which cannot receive messages" in str(caught.value)
    assert "if it is another country's number, write it with + and the country code" in str(caught.value)
    assert normalise(raw, "GB").startswith("+44")  # still a number: a suppression list may hold it


def test_the_japanese_mobile_written_with_its_country_code() -> None:
    assert parse("+81 90-1234-5678", "GB", whatsapp=True).e164 == "+819012345678"


@pytest.mark.parametrize("raw", UK_LANDLINES)
def test_landlines_refused_on_whatsapp_only(raw: str) -> None:
    number = parse(raw, "GB")
    assert number.e164 == "+441174960860" or number.e164 == "+442079460991"
    assert number.landline
    with pytest.raises(PhoneError, match="is a landline \\(GB\\), which WhatsApp cannot reach"):
        parse(raw, "GB", whatsapp=True)


def test_us_numbers_are_fixed_line_or_mobile_and_fine_on_whatsapp() -> None:
    number = parse("(617) 555-0101", "US", whatsapp=True)
    assert number.type == PhoneNumberType.FIXED_LINE_OR_MOBILE and not number.landline


# --- properties ---------------------------------------------------------------------------------


def _national(text: str) -> bool:
    """Written without + or 00 (after the surrounding spaces a cell may have)."""
    return not text.strip().startswith(("+", "00"))


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet="0123456789", min_size=1, max_size=17).filter(_national),
    st.sampled_from(REGIONS),
)
def test_any_digit_string_stays_in_the_default_country(digits: str, country: str) -> None:
    try:
        e164 = normalise(digits, country)
    except PhoneError:
        return
    number = phonenumbers.parse(e164)
    assert number.country_code == phonenumbers.country_code_for_region(country)


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="0123456789 -().,eE", min_size=1, max_size=20).filter(_national),
    st.sampled_from(REGIONS),
)
def test_any_text_without_a_plus_stays_in_the_default_country(text: str, country: str) -> None:
    try:
        number = parse(text, country)
    except PhoneError:
        return
    assert phonenumbers.parse(number.e164).country_code == phonenumbers.country_code_for_region(country)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=2_000_000_000, max_value=9_999_999_999), st.integers(min_value=1, max_value=3))
def test_exact_float_renderings_read_back(n: int, zeros: int) -> None:
    try:
        expected = normalise(str(n), "US")
    except PhoneError:
        return
    assert normalise(f"{n}.{'0' * zeros}", "US") == expected
    assert normalise(format(Decimal(n), "E"), "US") == expected  # 6.175550101E+9, every digit kept


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=10_000_000_000, max_value=99_999_999_999), st.integers(min_value=2, max_value=9))
def test_lossy_scientific_notation_is_always_refused(n: int, kept: int) -> None:
    mantissa = str(n)[:kept]
    text = f"{mantissa[0]}.{mantissa[1:]}E{len(str(n)) - 1}"  # what a spreadsheet shows: digits dropped
    with pytest.raises(PhoneError, match="were lost"):
        normalise(text, "US")


# --- end to end: real CSV bytes, the runner over the sandbox's real HTTP ------------------------


def _csv(tmp_path: Path, lines: list[str]) -> None:
    (tmp_path / "contacts.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))


def test_kind1_numbers_stay_in_their_country_end_to_end(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    _csv(
        tmp_path,
        [
            "Phone,Name,first_name,order_id",
            "6175550101.0,Ann,Ann,A-1",  # row 2: a float's .0, no digit lost
            "6.175550102E9,Bob,Bob,A-2",  # row 3: scientific notation, every digit kept
            "1.61755501E10,Cy,Cy,A-3",  # row 4: digits lost (was sent to +16175550100)
            "(617) 555-01040,Di,Di,A-4",  # row 5: one digit too many (was sent to Australia)
            "2015550105.0,Ed,Ed,A-5",  # row 6 (was sent to Egypt, +20…)
            "+61 412 345 678,Flo,Flo,A-6",  # row 7: a stray Australian number
            "4165550101,Gus,Gus,A-7",  # row 8: Toronto, in the US numbering plan
            "447911123456,Hal,Hal,A-8",  # row 9: not a US number; never re-read as +44
        ],
    )
    path = make_campaign(recipients='countries = ["US", "CA"]')
    summary, box = send(path)

    sent = ["+12015550105", "+14165550101", "+16175550101", "+16175550102"]
    assert sorted(m.body["to"] for m in box.accepted) == sent
    assert len([r for r in box.requests if r.method == "POST"]) == 4  # nothing else reached the API
    assert summary.countries == Counter({"US": 3, "CA": 1})
    out = {r["row"]: r for r in results(tmp_path / "test.results.csv")}
    assert {row: r["status"] for row, r in out.items()} == {
        "2": "sent",
        "3": "sent",
        "4": "invalid",
        "5": "invalid",
        "6": "sent",
        "7": "invalid",
        "8": "sent",
        "9": "invalid",
    }
    assert out["2"]["phone"] == "+16175550101" and out["6"]["phone"] == "+12015550105"
    assert "its last 2 digits were lost; format the phone column as Text" in out["4"]["error"]
    assert "too long for US; if it is another country's number, write it with + and the country" in out["5"]["error"]
    assert "is a number in AU, and [recipients] countries allows only US, CA" in out["7"]["error"]
    assert "too long for US; if it is another country's number" in out["9"]["error"]


def test_kind1_country_column_end_to_end(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    _csv(
        tmp_path,
        [
            "Phone,Name,first_name,order_id,Country",
            "07911 123456,Ann,Ann,A-1,gb",  # row 2: read in the UK
            "6175550101,Bob,Bob,A-2,",  # row 3: no country: default_country US
            "6175550102,Cy,Cy,A-3,GB",  # row 4: not a UK number, never re-read as US or +61
            "6175550103,Di,Di,A-4,Narnia",  # row 5
        ],
    )
    path = make_campaign(recipients='country_column = "Country"')
    _, box = send(path)
    assert sorted(m.body["to"] for m in box.accepted) == ["+16175550101", "+447911123456"]
    out = {r["row"]: r for r in results(tmp_path / "test.results.csv")}
    assert [out[n]["status"] for n in "2345"] == ["sent", "sent", "invalid", "invalid"]
    assert "for GB; if it is another country's number" in out["4"]["error"]
    assert out["5"]["error"] == (
        "country: 'Narnia' is not an ISO 3166 alpha-2 country code (for example US, GB, IN); "
        "write one in column 'Country'"
    )


GB_ROWS = [
    "Phone,Name,first_name,order_id",
    "090-1234-5678,Aki,Aki,A-1",  # row 2: a Japanese mobile, read in the UK: premium rate
    "0845 46 46,Bea,Bea,A-2",  # row 3: shared cost
    "0900 123 4567,Cal,Cal,A-3",  # row 4: premium rate
    "07723 456789,Dee,Dee,A-4",  # row 5: a UK mobile
    "0117 496 0860,Eve,Eve,A-5",  # row 6: a UK landline
]


def test_kind8_numbers_that_cannot_text_end_to_end(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    _csv(tmp_path, GB_ROWS)
    path = make_campaign(recipients="", name="test")
    path.write_text(path.read_text().replace('default_country = "US"', 'default_country = "GB"'))
    summary, box = send(path)
    assert sorted(m.body["to"] for m in box.accepted) == ["+441174960860", "+447723456789"]
    assert summary.landlines == 1 and summary.landline_examples == [6]  # sent, but counted
    out = {r["row"]: r for r in results(tmp_path / "test.results.csv")}
    assert [out[n]["status"] for n in "23456"] == ["invalid", "invalid", "invalid", "sent", "sent"]
    for row in "234":
        assert "premium-rate number (GB), which cannot receive messages" in out[row]["error"]


def test_kind8_whatsapp_refuses_landlines_end_to_end(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    _csv(tmp_path, GB_ROWS)
    path = make_campaign(
        provider="twlowa",
        message='template_id = "HX0123456789abcdef0123456789abcdef"\n[message.variables]\n"1" = "{{ first_name }}"',
    )
    path.write_text(path.read_text().replace('default_country = "US"', 'default_country = "GB"'))
    summary, box = send(path)
    assert [m.body["to"] for m in box.accepted] == ["+447723456789"]
    assert summary.landlines == 0
    out = {r["row"]: r for r in results(tmp_path / "test.results.csv")}
    assert out["6"]["status"] == "invalid"
    assert "'0117 496 0860' is a landline (GB), which WhatsApp cannot reach" in out["6"]["error"]


def test_check_and_confirmation_count_destinations(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    _csv(
        tmp_path,
        [
            "Phone,Name,first_name,order_id",
            "6175550101,Ann,Ann,A-1",
            "6175550102,Bob,Bob,A-2",
            "+61 412 345 678,Cy,Cy,A-3",
            "+44 117 496 0860,Di,Di,A-4",
        ],
    )
    path = make_campaign()
    proc = run("check", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Destinations: US 2, AU 1, GB 1" in proc.stdout
    landline = "1 SMS row goes to a landline (row 5), which usually cannot receive texts (Twilio error 30006)"
    assert landline in proc.stdout
    proc = run("send", str(path), "--sandbox", cwd=tmp_path)  # no terminal: asks, is refused
    assert proc.returncode == 2 and "Send 4 messages" in proc.stderr
    assert "Destinations: US 2, AU 1, GB 1" in proc.stdout


ELSEWHERE_HINT = (
    "; if it is another country's number, write it with + and the country code (for example +44 7911 123456)"
)


@pytest.mark.parametrize(
    ("raw", "country", "sentence"),
    [
        ("", "US", "no phone number"),
        ("1", "US", "'1' is not a phone number"),
        ("12", "US", "'12' is too short for US" + ELSEWHERE_HINT),
        ("+1 200 555 0100", "US", "'+1 200 555 0100' is not a valid number"),
        ("200 555 0100", "US", "'200 555 0100' is not a valid number for US" + ELSEWHERE_HINT),
        ("+44 12", "GB", "'+44 12' is too short"),
        # an international number that cannot take a text: no "write it with +" hint, it has one
        ("+44 906 123 4567", "GB", "'+44 906 123 4567' is a premium-rate number (GB), which cannot receive messages"),
        ("0906 123 4567", "GB", "'0906 123 4567' is a premium-rate number (GB), which cannot receive messages"
         + ELSEWHERE_HINT),
        ("5550101; 5550102", "US", "'5550101; 5550102' holds more than one phone number; give each number its own row"),
        ("1.61755501E10", "US", "'1.61755501E10' is a number a spreadsheet wrote in scientific notation, and its last "
         "2 digits were lost; format the phone column as Text and type the number again"),
        # an extension: E.164 has none, so the text would reach the switchboard's line, not the person
        ("617-555-0100 ext 5", "US", "'617-555-0100 ext 5' has an extension (5), which a text message cannot "
         "reach; give the person's own mobile number"),
        ("+44 20 7946 0018 x123", "GB", "'+44 20 7946 0018 x123' has an extension (123), which a text message "
         "cannot reach; give the person's own mobile number"),
    ],
)
def test_each_refusal_is_its_exact_sentence(raw: str, country: str, sentence: str) -> None:
    """The whole sentence, not a fragment: it is what the user reads in the results file."""
    with pytest.raises(PhoneError) as caught:
        parse(raw, country)
    assert str(caught.value) == sentence


def test_an_opted_out_extension_holds_back_its_line() -> None:
    """A suppression list reads a number with an extension as its line (normalise), so the
    line is held back; as a recipient (parse) it is refused."""
    assert normalise("617-555-0100 ext 5", "US") == "+16175550100"


def test_a_non_geographic_number_has_region_001() -> None:
    # +800 (international freephone) belongs to no country: phonenumbers' region is None
    assert parse("+800 1234 5678", None).region == "001"
