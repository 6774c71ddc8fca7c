"""campaign.prepare pinned exactly, in this process (issue #11: mutation testing).

Every test builds a real campaign over a real CSV in ``tmp_path`` and asserts whole values:
each field of :class:`Prepared` (the exact request body bytes, the payload hash, the exact
error sentence), the batch sizes, the row crossing the fork's pipe, and a forked
:class:`ChildPreparer` giving exactly what the inline pipeline gives. The clock is a
``ManualClock`` wherever a schedule is involved, so the values do not depend on today.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pickle
import signal
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaign import prepare, timing
from campaign.config import Campaign, load_campaign
from campaign.errors import CampaignError, ConfigError, InputFileError, RunStopped
from campaign.prepare import Pipeline, Prepared, cells_json
from campaign.runner import preview, skip_duplicate
from campaign.sender import Job
from campaign.spreadsheet import SourceRow
from campaign.state import Status
from tests.conftest import contacts, write_csv

ANN, BO, CY, DEE = "+16175550101", "+16175550102", "+16175550103", "+16175550104"
LONDON = "+442079460018"  # a fixed line: landline=True, and refused on WhatsApp
TEMPLATE = "HX0123456789abcdef0123456789abcdef"
COLUMNS = 'phone_column = "phone"\nname_column = "name"\n'
TOO_SHORT = (
    "phone: '12345' is too short for US; if it is another country's number, write it with + and the "
    "country code (for example +44 7911 123456)"
)


def _campaign(
    folder: Path, csv_text: str, message: str, *, provider: str = "twlo", recipients: str = "", extra: str = ""
) -> Campaign:
    """A campaign over ``contacts.csv`` holding exactly ``csv_text``."""
    (folder / "contacts.csv").write_bytes(csv_text.encode("utf-8"))
    path = folder / "c.toml"
    path.write_text(
        f'provider = "{provider}"\nchannel_key = "{provider}_16175550000"\n'
        f'[recipients]\nfile = "contacts.csv"\ndefault_country = "US"\n{COLUMNS}{recipients}\n'
        f"[message]\n{message}\n{extra}",
        encoding="utf-8",
    )
    return load_campaign(path, environ={})


def _all(pipeline: Pipeline) -> list[Prepared]:
    return [p for batch in pipeline.batches() for p in batch]


def _digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=12).hexdigest()


def _sendable(
    row: int, cells: str, phone: str, body: bytes, digest: str, message: str, content: str, **more: object
) -> Prepared:
    """The Prepared of a sendable row (key = phone) whose job goes at once, unless ``more`` says."""
    job_more = {k: more.pop(k) for k in ("scheduled", "zones", "note", "schedule_at") if k in more}
    job = Job(phone, row, body, digest, message, bool(job_more.pop("scheduled", False)), content, **job_more)  # type: ignore[arg-type]
    return Prepared(row, cells, phone, phone, None, job=job, **more)  # type: ignore[arg-type]


def _invalid(row: int, cells: str, error: str, phone: str = "") -> Prepared:
    return Prepared(row, cells, phone, None, Status.INVALID, error)


@pytest.fixture
def at_nov_25() -> Iterator[timing.Clock]:
    """2026-11-25 00:00 UTC: a send_at of 2026-12-01 is six days ahead."""
    with timing.use_clock(timing.ManualClock(datetime(2026, 11, 25, tzinfo=UTC))) as clock:
        yield clock


# --- one row of each kind --------------------------------------------------------------------


def test_an_sms_row_is_prepared_exactly(tmp_path: Path) -> None:
    campaign = _campaign(
        tmp_path, f"phone,name,order_id\n{ANN},Ann,A-1\n", 'text = "Hi {{ name }}, order {{ order_id }}"'
    )
    body = (
        b'{"provider":"twlo","channel_key":"twlo_16175550000","to":"+16175550101","name":"Ann",'
        b'"text":"Hi Ann, order A-1"}'
    )
    assert _all(Pipeline(campaign)) == [
        Prepared(
            2,
            '["+16175550101", "Ann", "A-1"]',
            ANN,
            ANN,
            None,
            "",
            Job(ANN, 2, body, "a653dadc5d232d88783fadfc", "Hi Ann, order A-1", False, '{"text":"Hi Ann, order A-1"}'),
            "Hi Ann, order A-1",
            (),
            "US",
            False,
        )
    ]
    assert _digest(body) == "a653dadc5d232d88783fadfc"  # blake2b, 12 bytes, of the exact body


def test_text_outside_ascii_is_kept_as_is_in_cells_body_and_content(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, f"phone,name\n{ANN},Zoë\n", 'text = "Hi {{ name }} ✓"')
    (p,) = _all(Pipeline(campaign))
    assert p.cells == '["+16175550101", "Zoë"]'
    assert p.job is not None
    assert p.job.body == (
        '{"provider":"twlo","channel_key":"twlo_16175550000","to":"+16175550101","name":"Zoë","text":"Hi Zoë ✓"}'
    ).encode()
    assert (p.job.content, p.job.message, p.text) == ('{"text":"Hi Zoë ✓"}', "Hi Zoë ✓", "Hi Zoë ✓")
    assert p.job.payload_hash == _digest(p.job.body)


def test_a_national_number_in_another_country_column_is_a_landline_with_its_region(tmp_path: Path) -> None:
    campaign = _campaign(
        tmp_path,
        f"phone,name,Country\n020 7946 0018,Fay,GB\n{ANN},Ann, \n",
        'text = "Hi {{ name }}"',
        recipients='country_column = "Country"',
    )
    fay = b'{"provider":"twlo","channel_key":"twlo_16175550000","to":"+442079460018","name":"Fay","text":"Hi Fay"}'
    ann = b'{"provider":"twlo","channel_key":"twlo_16175550000","to":"+16175550101","name":"Ann","text":"Hi Ann"}'
    assert _all(Pipeline(campaign)) == [
        _sendable(
            2, '["020 7946 0018", "Fay", "GB"]', LONDON, fay, _digest(fay), "Hi Fay", '{"text":"Hi Fay"}',
            text="Hi Fay", region="GB", landline=True,
        ),
        # a blank country cell falls back to default_country
        _sendable(
            3, '["+16175550101", "Ann", " "]', ANN, ann, _digest(ann), "Hi Ann", '{"text":"Hi Ann"}',
            text="Hi Ann", region="US",
        ),
    ]


def test_a_national_opt_out_suppresses_the_number_it_is_in_the_rows_own_country(tmp_path: Path) -> None:
    # no +, no country column: read in default_country (+1 207-946-0018) and in the row's country
    (tmp_path / "optouts.csv").write_bytes(b"phone\n2079460018\n")
    campaign = _campaign(
        tmp_path,
        "phone,name,Country\n020 7946 0018,Fay,GB\n",
        'text = "Hi {{ name }}"',
        recipients='country_column = "Country"\nsuppress = ["optouts.csv"]',
    )
    assert _all(Pipeline(campaign)) == [
        Prepared(2, '["020 7946 0018", "Fay", "GB"]', LONDON, LONDON, Status.SKIPPED, "suppressed (optouts.csv)")
    ]


def test_an_opt_out_files_own_country_column_reads_its_national_numbers(tmp_path: Path) -> None:
    """An opt-out file with the campaign's country column reads each of its numbers in its own
    row's country: "07911 123456" marked GB opts out +44 7911 123456, which the sheet's row
    (whose country cell says US, its number written with +44) would not have read it as."""
    (tmp_path / "optouts.csv").write_bytes(b"phone,Country\n07911 123456,GB\n")
    campaign = _campaign(
        tmp_path,
        "phone,name,Country\n+447911123456,Gus,US\n",
        'text = "Hi {{ name }}"',
        recipients='country_column = "Country"\nsuppress = ["optouts.csv"]',
    )
    [row] = _all(Pipeline(campaign))
    assert (row.phone, row.status, row.error) == ("+447911123456", Status.SKIPPED, "suppressed (optouts.csv)")


def test_a_bad_country_cell_is_invalid_naming_the_column(tmp_path: Path) -> None:
    campaign = _campaign(
        tmp_path,
        f"phone,name,Country\n{ANN},Gil,Narnia\n",
        'text = "Hi {{ name }}"',
        recipients='country_column = "Country"',
    )
    assert _all(Pipeline(campaign)) == [
        _invalid(
            2,
            '["+16175550101", "Gil", "Narnia"]',
            "country: 'Narnia' is not an ISO 3166 alpha-2 country code (for example US, GB, IN); "
            "write one in column 'Country'",
        )
    ]


def test_a_twlowa_template_row_sends_its_id_and_variables(tmp_path: Path) -> None:
    campaign = _campaign(
        tmp_path,
        f"phone,name,order_id\n{ANN},Ann,A-1\n{BO},,A-2\n{LONDON},Fay,A-3\n",
        f'template_id = "{TEMPLATE}"\n[message.variables]\n"1" = "{{{{ name }}}}"\n"2" = "{{{{ order_id }}}}"',
        provider="twlowa",
    )
    template = '{"id":"HX0123456789abcdef0123456789abcdef","variables":{"1":"Ann","2":"A-1"}}'
    body = (
        '{"provider":"twlowa","channel_key":"twlowa_16175550000","to":"+16175550101","name":"Ann",'
        f'"template":{template}}}'
    ).encode()
    assert _all(Pipeline(campaign)) == [
        Prepared(
            2,
            '["+16175550101", "Ann", "A-1"]',
            ANN,
            ANN,
            None,
            "",
            Job(ANN, 2, body, "25edc6e044ee458005181e93", '{"1":"Ann","2":"A-1"}', False, f'{{"template":{template}}}'),
            None,  # text only for SMS (twlo)
            (),
            "US",
            False,
        ),
        _invalid(3, '["+16175550102", "", "A-2"]', "template variable 1 is empty after rendering", BO),
        _invalid(
            4,
            '["+442079460018", "Fay", "A-3"]',
            "phone: '+442079460018' is a landline (GB), which WhatsApp cannot reach",
        ),
    ]


def test_a_gswa_template_row_sends_media_url_and_body_variables(tmp_path: Path) -> None:
    campaign = _campaign(
        tmp_path,
        f"phone,name,order_id\n{ANN},Ann,A-1\n{BO},Bo,\n",
        'template_id = "order_ready"\n[message.variables]\nMEDIA_URL = "https://cdn.example.com/{{ order_id }}.jpg"\n'
        '[message.variables.Body]\n"1" = "{{ name }}"\n"2" = "{{ order_id }}"',
        provider="gswa",
    )
    variables = '{"MEDIA_URL":"https://cdn.example.com/A-1.jpg","Body":{"1":"Ann","2":"A-1"}}'
    template = f'{{"id":"order_ready","variables":{variables}}}'
    body = (
        f'{{"provider":"gswa","channel_key":"gswa_16175550000","to":"+16175550101","name":"Ann","template":{template}}}'
    ).encode()
    assert _all(Pipeline(campaign)) == [
        Prepared(
            2,
            '["+16175550101", "Ann", "A-1"]',
            ANN,
            ANN,
            None,
            "",
            Job(ANN, 2, body, "cec240e621e6e61b381f94b2", variables, False, f'{{"template":{template}}}'),
            None,
            (),
            "US",
            False,
        ),
        _invalid(3, '["+16175550102", "Bo", ""]', "template variable Body 2 is empty after rendering", BO),
    ]


def test_bad_and_missing_phones_are_invalid_with_their_sentence(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, "phone,name\n12345,Bo\n,Eve\n", 'text = "Hi {{ name }}"')
    assert _all(Pipeline(campaign)) == [
        _invalid(2, '["12345", "Bo"]', TOO_SHORT),
        _invalid(3, '["", "Eve"]', "phone: no phone number"),
    ]


def test_an_opted_out_number_is_skipped_naming_its_file_and_bad_entries_warn(tmp_path: Path) -> None:
    (tmp_path / "optouts.csv").write_bytes(b"phone\n+16175550103\nnot a number\n")
    campaign = _campaign(
        tmp_path,
        f"phone,name\n(617) 555-0103,Cy\n{DEE},Dee\n",
        'text = "Hi {{ name }}"',
        recipients='suppress = ["optouts.csv"]',
    )
    pipeline = Pipeline(campaign)
    dee = b'{"provider":"twlo","channel_key":"twlo_16175550000","to":"+16175550104","name":"Dee","text":"Hi Dee"}'
    assert _all(pipeline) == [
        Prepared(2, '["(617) 555-0103", "Cy"]', CY, CY, Status.SKIPPED, "suppressed (optouts.csv)"),
        _sendable(3, '["+16175550104", "Dee"]', DEE, dee, _digest(dee), "Hi Dee", '{"text":"Hi Dee"}', text="Hi Dee",
                  region="US"),
    ]
    warning = (
        "suppression file optouts.csv, row 3 (column \"phone\"): 'not a number' is not a phone number; "
        "it suppresses nobody: fix or remove it"
    )
    assert pipeline.warnings == [warning]
    found: list[str] = ["before"]
    assert prepare.load_suppressions(campaign, found).source(CY) == "optouts.csv"
    assert found == ["before", warning]  # appended, not replaced
    assert prepare.load_suppressions(campaign).source(DEE) is None  # no list: nothing to append to


def test_empty_cells_render_blank_and_are_named(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, f"phone,name,order_id\n{DEE},,\n", 'text = "Hi {{ name }}, order {{ order_id }}"')
    body = b'{"provider":"twlo","channel_key":"twlo_16175550000","to":"+16175550104","text":"Hi , order "}'
    assert _all(Pipeline(campaign)) == [
        _sendable(
            2, '["+16175550104", "", ""]', DEE, body, "728b4d82e931880ec691d5ea", "Hi , order ",
            '{"text":"Hi , order "}', text="Hi , order ", blanks=("name", "order_id"), region="US",
        )
    ]


def test_a_template_error_and_an_empty_text_are_invalid_rows(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, f"phone,name\n{ANN},Ann\n", 'text = "Hi {{ name.foo.bar }}"')
    assert _all(Pipeline(campaign)) == [
        _invalid(2, '["+16175550101", "Ann"]', "template error: 'str object' has no attribute 'foo'", ANN)
    ]
    campaign = _campaign(tmp_path, f"phone,name,order_id\n{BO},Bo,\n", 'text = "{{ order_id }}"')
    assert _all(Pipeline(campaign)) == [
        _invalid(2, '["+16175550102", "Bo", ""]', "the message text is empty after rendering", BO)
    ]


def test_a_template_that_raises_on_a_rows_values_makes_only_that_row_invalid(tmp_path: Path) -> None:
    """Python's own errors inside an expression (a division by a zero cell, text plus a number,
    the sandbox's range limit) are the row's, like Jinja's: that row is invalid with the reason
    and every other row is prepared (a whole run once stopped at the first such row)."""
    csv_text = f"phone,name,n\n{ANN},Ann,4\n{BO},Bo,0\n{CY},Cy,x\n{DEE},Dee,2\n"
    campaign = _campaign(tmp_path, csv_text, 'text = "Hi {{ name }}, each share is {{ 100 // (n|int(n)) }}."')
    got = [(p.row, p.status, p.error, p.text) for p in _all(Pipeline(campaign))]
    assert got == [
        (2, None, "", "Hi Ann, each share is 25."),
        (3, Status.INVALID, "template error: ZeroDivisionError: integer division or modulo by zero", None),
        (
            4,
            Status.INVALID,
            "template error: TypeError: unsupported operand type(s) for //: 'int' and 'str' "
            "(every cell is text: |int or |float makes it a number)",
            None,
        ),
        (5, None, "", "Hi Dee, each share is 50."),
    ]
    campaign = _campaign(tmp_path, csv_text, 'text = "{{ name }}: {{ range(n|int * 100000)|list|length }}"')
    assert [(p.row, p.status, p.error[:40]) for p in _all(Pipeline(campaign))] == [
        (2, Status.INVALID, "template error: OverflowError: Range too"),
        (3, None, ""),
        (4, None, ""),
        (5, Status.INVALID, "template error: OverflowError: Range too"),
    ]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("Hi {{ name|nosuch }}", "[message] text: template error on line 1: Jinja has no filter named 'nosuch'."),
        ("Hi {{ name|uper }}", "Jinja has no filter named 'uper'. Did you mean 'upper'?"),
        # Under an {% if %}, or a test: Jinja itself finds them only when a row reaches them.
        ("{% if name %}{{ name|nosuch }}{% endif %}", "Jinja has no filter named 'nosuch'."),
        ("{% if name is nosuchtest %}x{% endif %}Hi", "on line 1: Jinja has no test named 'nosuchtest'."),
        ("Hi\n{{ name is defind }}", "on line 2: Jinja has no test named 'defind'. Did you mean 'defined'?"),
        ('Hi {{ row["nme"] }}', 'uses row["nme"], but contacts.csv has no column "nme". Did you mean "name"? '
         "Columns: phone, name."),
        ('{% if name %}{{ row["zip"] }}{% endif %}', 'contacts.csv has no column "zip". Columns: phone, name.'),
    ],
)
def test_a_filter_or_test_jinja_does_not_have_is_the_campaign_files_error(
    tmp_path: Path, text: str, said: str
) -> None:
    campaign = _campaign(tmp_path, f"phone,name\n{ANN},Ann\n", f"text = {json.dumps(text)}")  # a TOML basic string
    with pytest.raises(ConfigError) as caught:
        Pipeline(campaign)
    assert str(caught.value).endswith(said)


@pytest.mark.parametrize(
    ("header", "variable", "said"),
    [
        ("Order", "order", "there is no variable 'order'; write {{ Order }} (variable names are case-sensitive)."),
        (
            "First Name",
            "first_name",
            'contacts.csv has the column "First Name", not \'first_name\'; write {{ row["First Name"] }}.',
        ),
        (
            "Prénom Client",
            "prénom_client",
            'contacts.csv has the column "Prénom Client", not \'prénom_client\'; write {{ row["Prénom Client"] }}.',
        ),
        (
            "order\u00a0id",
            "order_id",
            'contacts.csv has the column "order<U+00A0>id", not \'order_id\'; write {{ row["order\\u00a0id"] }}, '
            "or retype the header without the invisible character.",
        ),
        (
            "city",
            "cty",
            "contacts.csv has no column 'cty'. Did you mean 'city'? Columns: phone, name, city. A header that is "
            'not a plain name is written row["Header Name"].',
        ),
        (  # {{ row }} is every column, which a message never prints: not offered as "write {{ row }}"
            "city",
            "Row",
            "contacts.csv has no column 'Row'. Did you mean 'row'? Columns: phone, name, city. A header that is "
            'not a plain name is written row["Header Name"].',
        ),
        (
            "ci\u200bty",
            "zzz",
            "contacts.csv has no column 'zzz'. Columns: phone, name, ci<U+200B>ty. A header that is not a plain "
            'name is written row["Header Name"].',
        ),
    ],
)
def test_a_variable_that_is_no_column_is_one_sentence_saying_how_to_write_it(
    tmp_path: Path, header: str, variable: str, said: str
) -> None:
    """In this process, each whole sentence (tests/test_render.py checks parts through the CLI)."""
    csv_text = f"phone,name,{header}\n{ANN},Ann,x\n"
    with pytest.raises(ConfigError) as caught:
        Pipeline(_campaign(tmp_path, csv_text, f"text = {json.dumps('Hi {{ ' + variable + ' }}')}"))
    assert str(caught.value) == f"{tmp_path / 'c.toml'}: [message] text uses {{{{ {variable} }}}}, but {said}"


def test_a_template_that_raises_for_every_row_is_the_campaign_files_error(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, f"phone,name\n{ANN},Ann\n", 'text = "Hi {{ 1 / 0 }}"')
    with pytest.raises(ConfigError) as caught:
        Pipeline(campaign)
    assert str(caught.value).endswith(
        "[message] text: template error: ZeroDivisionError: division by zero."
    )


# --- duplicates (decided after prepare, by the one rule of runner.skip_duplicate) -------------


def test_a_duplicate_is_prepared_as_sendable_then_skipped_as_duplicate_of_its_first_row(tmp_path: Path) -> None:
    csv_text = f"phone,name\n{ANN},Ann\n{BO},Bo\n(617) 555-0101,Ann again\n"
    campaign = _campaign(tmp_path, csv_text, 'text = "Hi {{ name }}"')
    rows = _all(Pipeline(campaign))
    assert [(p.row, p.key, p.status) for p in rows] == [(2, ANN, None), (3, BO, None), (4, ANN, None)]
    first: dict[str, int] = {}
    decided = [skip_duplicate(p, first) for p in rows]
    assert decided[:2] == rows[:2]
    assert decided[2] == Prepared(4, '["(617) 555-0101", "Ann again"]', ANN, ANN, Status.SKIPPED, "duplicate of row 2")
    assert first == {ANN: 2, BO: 3}
    shown = preview(campaign, 10)
    assert [(r["row"], r.get("status"), r.get("error")) for r in shown] == [
        (2, None, None),
        (3, None, None),
        (4, "skipped", "duplicate of row 2"),
    ]


def test_with_allow_duplicates_both_rows_of_a_number_are_sent(tmp_path: Path) -> None:
    campaign = _campaign(
        tmp_path,
        f"phone,name\n{ANN},Ann\n(617) 555-0101,Ann again\n",
        'text = "Hi {{ name }}"',
        recipients="allow_duplicates = true",
    )
    assert [(p.row, p.key, p.status) for p in _all(Pipeline(campaign))] == [(2, ANN, None), (3, ANN, None)]
    assert [(r["row"], r["request"]["text"]) for r in preview(campaign, 10)] == [(2, "Hi Ann"), (3, "Hi Ann again")]


# --- schedules -------------------------------------------------------------------------------


def test_a_local_send_at_is_each_rows_own_zone_and_a_bad_zone_names_its_column(
    tmp_path: Path, at_nov_25: timing.Clock
) -> None:
    campaign = _campaign(
        tmp_path,
        f"phone,name,tz\n{ANN},Ann,\n{BO},Bo,Asia/Kolkata\n{CY},Cy,Mars/Base\n{DEE},Dee,Asia/Tokyo\n",
        'text = "Hi {{ name }}"',
        extra='[schedule]\nsend_at = "2026-12-01 09:00"\nwindow = "08:00-21:00"\ntimezone_column = "tz"\n',
    )

    def body(phone: str, name: str, at: str) -> bytes:
        return (
            f'{{"provider":"twlo","channel_key":"twlo_16175550000","to":"{phone}","name":"{name}",'
            f'"text":"Hi {name}","schedule":"{at}"}}'
        ).encode()

    ann, bo = body(ANN, "Ann", "2026-12-01T09:00:00-05:00"), body(BO, "Bo", "2026-12-01T09:00:00+05:30")
    assert _all(Pipeline(campaign)) == [
        _sendable(
            2, '["+16175550101", "Ann", ""]', ANN, ann, "593132cd4a1c61a5288df02d", "Hi Ann", '{"text":"Hi Ann"}',
            scheduled=True, zones=("America/New_York",), schedule_at="2026-12-01T09:00:00-05:00", text="Hi Ann",
            region="US",
        ),
        _sendable(
            3, '["+16175550102", "Bo", "Asia/Kolkata"]', BO, bo, _digest(bo), "Hi Bo", '{"text":"Hi Bo"}',
            scheduled=True, zones=("Asia/Kolkata",), schedule_at="2026-12-01T09:00:00+05:30", text="Hi Bo",
            region="US",
        ),
        _invalid(
            4,
            '["+16175550103", "Cy", "Mars/Base"]',
            "schedule: 'Mars/Base' is not a known time zone (an IANA name such as America/Chicago); "
            "fix it in column 'tz'",
            CY,
        ),
        _sendable(
            5, '["+16175550104", "Dee", "Asia/Tokyo"]', DEE, body(DEE, "Dee", "2026-12-01T09:00:00+09:00"),
            _digest(body(DEE, "Dee", "2026-12-01T09:00:00+09:00")), "Hi Dee", '{"text":"Hi Dee"}',
            scheduled=True, zones=("Asia/Tokyo",), schedule_at="2026-12-01T09:00:00+09:00", text="Hi Dee",
            region="US",
        ),
    ]


def test_a_send_at_outside_the_window_is_invalid_and_names_the_column_only_when_the_row_filled_it(
    tmp_path: Path, at_nov_25: timing.Clock
) -> None:
    campaign = _campaign(
        tmp_path,
        f"phone,name,tz\n{ANN},Ann,\n{BO},Bo,  \n{CY},Cy,Asia/Kolkata\n",
        'text = "Hi {{ name }}"',
        extra='[schedule]\nsend_at = "2026-12-01 07:00"\nwindow = "08:00-21:00"\ntimezone_column = "tz"\n',
    )
    outside = (
        "schedule: its schedule, Tue 01 Dec 07:00 in {zone}, is outside the sending window 08:00-21:00 there; "
        "move send_at or schedule inside it"
    )
    assert _all(Pipeline(campaign)) == [  # an empty or blank zone cell: no "fix it in column"
        _invalid(2, '["+16175550101", "Ann", ""]', outside.format(zone="America/New_York"), ANN),
        _invalid(3, '["+16175550102", "Bo", "  "]', outside.format(zone="America/New_York"), BO),
        _invalid(
            4,
            '["+16175550103", "Cy", "Asia/Kolkata"]',
            outside.format(zone="Asia/Kolkata") + "; fix it in column 'tz'",
            CY,
        ),
    ]


def test_quiet_hours_alone_give_every_row_its_zones_and_no_schedule(tmp_path: Path, at_nov_25: timing.Clock) -> None:
    campaign = _campaign(
        tmp_path,
        f"phone,name,tz\n{ANN},Ann,\n{BO},Bo,Asia/Kolkata\n",
        'text = "Hi {{ name }}"',
        extra='[schedule]\nwindow = "08:00-21:00"\ntimezone_column = "tz"\n',
    )
    ann = b'{"provider":"twlo","channel_key":"twlo_16175550000","to":"+16175550101","name":"Ann","text":"Hi Ann"}'
    bo = b'{"provider":"twlo","channel_key":"twlo_16175550000","to":"+16175550102","name":"Bo","text":"Hi Bo"}'
    assert _all(Pipeline(campaign)) == [
        _sendable(2, '["+16175550101", "Ann", ""]', ANN, ann, _digest(ann), "Hi Ann", '{"text":"Hi Ann"}',
                  zones=("America/New_York",), text="Hi Ann", region="US"),
        _sendable(3, '["+16175550102", "Bo", "Asia/Kolkata"]', BO, bo, _digest(bo), "Hi Bo", '{"text":"Hi Bo"}',
                  zones=("Asia/Kolkata",), text="Hi Bo", region="US"),
    ]


def test_a_local_send_at_already_past_in_a_zone_goes_now_with_a_note(tmp_path: Path) -> None:
    with timing.use_clock(timing.ManualClock(datetime(2026, 12, 1, 12, tzinfo=UTC))):  # 07:00 Boston, 17:30 Kolkata
        campaign = _campaign(
            tmp_path,
            f"phone,name,tz\n{ANN},Ann,\n{BO},Bo,Asia/Kolkata\n",
            'text = "Hi {{ name }}"',
            extra='[schedule]\nsend_at = "2026-12-01 09:00"\ntimezone_column = "tz"\n',
        )
        rows = _all(Pipeline(campaign))
    ann = (
        b'{"provider":"twlo","channel_key":"twlo_16175550000","to":"+16175550101","name":"Ann","text":"Hi Ann",'
        b'"schedule":"2026-12-01T09:00:00-05:00"}'
    )
    bo = b'{"provider":"twlo","channel_key":"twlo_16175550000","to":"+16175550102","name":"Bo","text":"Hi Bo"}'
    assert rows == [
        _sendable(
            2, '["+16175550101", "Ann", ""]', ANN, ann, "593132cd4a1c61a5288df02d", "Hi Ann", '{"text":"Hi Ann"}',
            scheduled=True, zones=("America/New_York",), schedule_at="2026-12-01T09:00:00-05:00", text="Hi Ann",
            region="US",
        ),
        _sendable(
            3, '["+16175550102", "Bo", "Asia/Kolkata"]', BO, bo, "c7216aa7cc498225751557a4", "Hi Bo",
            '{"text":"Hi Bo"}', zones=("Asia/Kolkata",),
            note="send_at 2026-12-01 09:00 had passed in Asia/Kolkata; sent at once ([schedule] if_past)",
            text="Hi Bo", region="US",
        ),
    ]


def test_a_send_at_more_than_30_days_ahead_refuses_the_pipeline(tmp_path: Path, at_nov_25: timing.Clock) -> None:
    campaign = _campaign(
        tmp_path,
        f"phone,name\n{ANN},Ann\n",
        'text = "Hi {{ name }}"',
        extra='[schedule]\nsend_at = "2026-12-30T09:00:00+00:00"\n',
    )
    with pytest.raises(ConfigError) as caught:
        Pipeline(campaign)
    assert str(caught.value) == (
        f"{tmp_path / 'c.toml'}: [schedule] send_at 2026-12-30T09:00:00+00:00 is more than 30 days ahead, and "
        "Sociocs holds scheduled messages for at most 30 days; run the campaign within 30 days of that date."
    )


# --- columns ---------------------------------------------------------------------------------


def test_without_phone_column_the_column_headed_phone_is_used_else_one_sentence(tmp_path: Path) -> None:
    csv_text = f"Name,PHONE\nAnn,{ANN}\n"
    (tmp_path / "contacts.csv").write_bytes(csv_text.encode())
    path = tmp_path / "d.toml"
    path.write_text(
        'provider = "twlo"\nchannel_key = "twlo_16175550000"\n[recipients]\nfile = "contacts.csv"\n'
        'default_country = "US"\n[message]\ntext = "Hi {{ name }}"\n',
        encoding="utf-8",
    )
    pipeline = Pipeline(load_campaign(path, environ={}))
    indexes = (pipeline.phone_index, pipeline.name_index, pipeline.country_index, pipeline.zone_index)
    assert indexes == (1, 0, None, None)
    assert pipeline.whatsapp is False
    (tmp_path / "contacts.csv").write_bytes(f"Name,mobile\nAnn,{ANN}\n".encode())
    with pytest.raises(InputFileError) as caught:
        Pipeline(load_campaign(path, environ={}))
    assert str(caught.value) == (
        f'{tmp_path / "contacts.csv"}: has no column "phone" and the campaign file sets no phone_column; set '
        '[recipients] phone_column to the header of the column holding the phone numbers (its columns are '
        '"Name", "mobile")'
    )


@pytest.mark.parametrize(
    ("header", "setting", "said"),
    [
        ("Mobile,Name", 'phone_column = "Phone"', 'has no column "Phone" (set by phone_column in the campaign '
         'file); its columns are "Mobile", "Name"'),
        ("phone,Nom", 'name_column = "Name"', 'has no column "Name" (set by name_column in the campaign file); '
         'its columns are "phone", "Nom"'),
    ],
)
def test_a_column_the_campaign_file_names_and_the_sheet_lacks_names_the_setting(
    tmp_path: Path, header: str, setting: str, said: str
) -> None:
    (tmp_path / "contacts.csv").write_text(f"{header}\n{ANN},Ann\n", encoding="utf-8")
    path = tmp_path / "d.toml"
    path.write_text(
        f'provider = "twlo"\nchannel_key = "twlo_16175550000"\n[recipients]\nfile = "contacts.csv"\n{setting}\n'
        'default_country = "US"\n[message]\ntext = "Hi"\n',
        encoding="utf-8",
    )
    with pytest.raises(InputFileError) as caught:
        Pipeline(load_campaign(path, environ={}))
    assert str(caught.value) == f"{tmp_path / 'contacts.csv'}: {said}"


def test_without_a_name_column_the_body_has_no_name(tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").write_bytes(f"phone,city\n{ANN},Boston\n".encode())
    path = tmp_path / "d.toml"
    path.write_text(
        'provider = "gswa"\nchannel_key = "gswa_16175550000"\n[recipients]\nfile = "contacts.csv"\n'
        'default_country = "US"\n[message]\ntemplate_id = "order_ready"\n'
        '[message.variables.Body]\n"1" = "{{ city }}"\n',
        encoding="utf-8",
    )
    pipeline = Pipeline(load_campaign(path, environ={}))
    assert (pipeline.phone_index, pipeline.name_index, pipeline.whatsapp) == (0, None, True)
    (p,) = _all(pipeline)
    assert p.job is not None and p.job.body == (
        b'{"provider":"gswa","channel_key":"gswa_16175550000","to":"+16175550101",'
        b'"template":{"id":"order_ready","variables":{"Body":{"1":"Boston"}}}}'
    )


def test_contact_saving_extra_fields_send_the_named_columns_as_they_are(tmp_path: Path) -> None:
    campaign = _campaign(
        tmp_path,
        f"phone,name,Email,City\n{ANN},Ann,ann@example.com, Boston \n",
        'text = "Hi {{ name }}"',
        extra='[contact_saving]\nsave = true\nlist_id = 7\nextra_fields = ["Email", "City"]\n',
    )
    (p,) = _all(Pipeline(campaign))
    assert p.job is not None and p.job.body == (
        b'{"provider":"twlo","channel_key":"twlo_16175550000","to":"+16175550101","name":"Ann","text":"Hi Ann",'
        b'"contact_saving":{"save":true,"list_id":7,"extra_fields":{"Email":"ann@example.com","City":" Boston "}}}'
    )
    assert p.job.content == '{"text":"Hi Ann"}'  # contact_saving is not content (reconcile compares content)


def test_contact_saving_save_from_a_column_reads_yes_and_no_words_per_row(tmp_path: Path) -> None:
    """``save = "{{ Save }}"``: each row's word, any case and padding ("Y", " on ", "0", ""),
    decides; anything else makes that row invalid with the word it read."""
    rows = [("Y", True), (" on ", True), ("0", False), ("", False), ("No", False), ("maybe", None)]
    csv_text = "phone,name,Save\n" + "".join(f"+1617555{i:04d},P{i},{w}\n" for i, (w, _) in enumerate(rows))
    campaign = _campaign(
        tmp_path, csv_text, 'text = "Hi {{ name }}"', extra='[contact_saving]\nsave = "{{ Save }}"\nlist_id = 7\n'
    )
    got = []
    for p in _all(Pipeline(campaign)):
        body = json.loads(p.job.body) if p.job is not None else None
        got.append((body["contact_saving"]["save"] if body else None, p.error))
    assert got == [
        (True, ""),
        (True, ""),
        (False, ""),
        (False, ""),
        (False, ""),
        (None, "[contact_saving] save rendered 'maybe'; expected true or false"),
    ]


# --- cells_json, batches, the pipe -----------------------------------------------------------


def test_this_test_process_can_fork() -> None:
    assert prepare.can_fork() is True  # otherwise prepared_batches(child=None) runs inline here


def test_cells_json_is_a_json_array_with_unicode_kept() -> None:
    assert cells_json(("a", "é 😀", '"q"', "", "x\ny")) == '["a", "é 😀", "\\"q\\"", "", "x\\ny"]'
    assert cells_json(()) == "[]"


def test_batches_grow_from_batch_to_batch_max_within_each_chunk_in_row_order(tmp_path: Path) -> None:
    write_csv(tmp_path / "contacts.csv", contacts(5000))
    (tmp_path / "c.toml").write_text(
        'provider = "twlo"\nchannel_key = "twlo_16175550000"\n[recipients]\nfile = "contacts.csv"\n'
        'phone_column = "Phone"\ndefault_country = "US"\n[message]\ntext = "Hi {{ first_name }}"\n',
        encoding="utf-8",
    )
    batches = list(Pipeline(load_campaign(tmp_path / "c.toml", environ={})).batches())
    # the file is read 2,048 records at a time (the header is the first chunk's first record, so
    # that chunk holds 2,047 rows); a batch never crosses a chunk, and sizes keep growing across
    assert [len(b) for b in batches] == [256, 512, 1024, 255, 2048, 905]
    assert [p.row for b in batches for p in b] == list(range(2, 5002))
    assert (prepare.BATCH, prepare.BATCH_MAX) == (256, 2048)


def test_a_short_file_is_one_batch(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, f"phone,name\n{ANN},Ann\n{BO},Bo\n", 'text = "Hi {{ name }}"')
    assert [[p.row for p in b] for b in Pipeline(campaign).batches()] == [[2, 3]]


def _kinds(folder: Path) -> list[Prepared]:
    """One Prepared of every kind: SMS, scheduled, landline, template, invalid, skipped."""
    (folder / "optouts.csv").write_bytes(b"phone\n+16175550103\n")
    with timing.use_clock(timing.ManualClock(datetime(2026, 11, 25, tzinfo=UTC))):
        sms = _all(
            Pipeline(
                _campaign(
                    folder,
                    f"phone,name,Country,tz\n{ANN},Ann,,\n020 7946 0018,Fay,GB,\n{DEE},,,\n12345,Bo,,\n{CY},Cy,,\n"
                    f"{BO},Bo,,Asia/Kolkata\n",
                    'text = "Hi {{ name }}"',
                    recipients='country_column = "Country"\nsuppress = ["optouts.csv"]',
                    extra='[schedule]\nsend_at = "2026-12-01 09:00"\ntimezone_column = "tz"\n',
                )
            )
        )
    whatsapp = _all(
        Pipeline(
            _campaign(
                folder,
                f"phone,name\n{ANN},Ann\n",
                f'template_id = "{TEMPLATE}"\n[message.variables]\n"1" = "{{{{ name }}}}"',
                provider="twlowa",
            )
        )
    )
    return sms + whatsapp


def test_every_kind_of_prepared_row_crosses_the_pipe_unchanged(tmp_path: Path) -> None:
    rows = _kinds(tmp_path)
    assert [(p.status, p.landline, p.blanks, p.job is not None and p.job.scheduled) for p in rows] == [
        (None, False, (), True),
        (None, True, (), True),
        (None, False, ("name",), True),
        (Status.INVALID, False, (), False),
        (Status.SKIPPED, False, (), False),
        (None, False, (), True),
        (None, False, (), False),
    ]
    for p in rows:
        flat = prepare._flat(p)
        assert prepare._unflat(flat) == p
        assert prepare._unflat(pickle.loads(pickle.dumps(flat))) == p
        assert len(flat) == (6 if p.job is None else 18)


def test_the_flat_row_is_exactly_its_fields_in_order(tmp_path: Path) -> None:
    fay = _kinds(tmp_path)[1]
    assert fay.job is not None
    j = fay.job
    assert prepare._flat(fay) == (
        3, fay.cells, LONDON, LONDON, None, "", j.body, j.payload_hash, "Hi Fay", True, '{"text":"Hi Fay"}',
        ("Europe/London",), "", "2026-12-01T09:00:00+00:00", "Hi Fay", (), "GB", True,
    )
    skipped = Prepared(6, '["+16175550103"]', CY, CY, Status.SKIPPED, "suppressed (optouts.csv)")
    assert prepare._flat(skipped) == (6, '["+16175550103"]', CY, CY, Status.SKIPPED, "suppressed (optouts.csv)")


# --- the forked child ------------------------------------------------------------------------


def _mixed_csv(n: int = 50) -> str:
    """``n`` rows cycling through every kind of outcome, with duplicates and blanks."""
    lines = ["phone,name,order_id,Country"]
    for i in range(n):
        kind = i % 7
        if kind == 0:
            lines.append(f"+1617555{i:04d},Person {i},A-{i},")
        elif kind == 1:
            lines.append(f"12{i},Bad {i},A-{i},")  # too short
        elif kind == 2:
            lines.append("+16175550103,Opted out,A-x,")  # suppressed
        elif kind == 3:
            lines.append(f"+16175550000,Same {i},A-{i},")  # a duplicate number
        elif kind == 4:
            lines.append(f"+1617555{i:04d},,,")  # blanks
        elif kind == 5:
            lines.append(f"020 7946 {i:04d},Uk {i},A-{i},GB")  # landline
        else:
            lines.append(f"+1617555{i:04d},Nowhere,A-{i},Narnia")  # bad country
    return "\n".join(lines) + "\n"


async def _from_child(pipeline: Pipeline) -> tuple[list[Prepared], prepare.ChildPreparer]:
    preparer = prepare.ChildPreparer(pipeline)
    rows: list[Prepared] = []
    try:
        async for batch in preparer.batches():
            rows.extend(batch)
    finally:
        preparer.close()
    return rows, preparer


def test_the_child_prepares_exactly_what_the_inline_pipeline_prepares(tmp_path: Path) -> None:
    (tmp_path / "optouts.csv").write_bytes(b"phone\n+16175550103\n")
    campaign = _campaign(
        tmp_path,
        _mixed_csv(),
        'text = "Hi {{ name }}, order {{ order_id }}"',
        recipients='country_column = "Country"\nsuppress = ["optouts.csv"]',
    )
    pipeline = Pipeline(campaign)
    inline = _all(pipeline)
    assert len(inline) == 50
    assert sorted({(p.status, p.landline, bool(p.blanks)) for p in inline}, key=repr) == sorted(
        {(None, False, False), (Status.INVALID, False, False), (Status.SKIPPED, False, False),
         (None, False, True), (None, True, False)},
        key=repr,
    )
    rows, preparer = asyncio.run(_from_child(pipeline))
    assert rows == inline
    assert (preparer.finished, preparer.pid, preparer.ended) == (True, 0, "exit status 0")
    preparer.close()  # twice is safe
    assert preparer.pid == 0


@pytest.mark.parametrize("child", [True, False], ids=["child", "inline"])
def test_prepared_batches_gives_the_same_batches_either_way(tmp_path: Path, child: bool) -> None:
    campaign = _campaign(tmp_path, _mixed_csv(), 'text = "Hi {{ name }}"', recipients='country_column = "Country"')
    pipeline = Pipeline(campaign)
    expected = list(pipeline.batches())

    async def collect() -> list[list[Prepared]]:
        async with prepare.prepared_batches(pipeline, child=child) as batches:
            return [batch async for batch in batches]

    assert asyncio.run(collect()) == expected


def test_a_file_that_breaks_part_way_raises_its_exact_error_in_the_parent(tmp_path: Path) -> None:
    write_csv(tmp_path / "contacts.csv", contacts(3000))
    (tmp_path / "c.toml").write_text(
        'provider = "twlo"\nchannel_key = "twlo_16175550000"\n[recipients]\nfile = "contacts.csv"\n'
        'phone_column = "Phone"\ndefault_country = "US"\n[message]\ntext = "Hi {{ first_name }}"\n',
        encoding="utf-8",
    )
    pipeline = Pipeline(load_campaign(tmp_path / "c.toml", environ={}))
    rows = contacts(3000)
    rows[2500] = (*rows[2500], "one cell too many")
    write_csv(tmp_path / "contacts.csv", rows)  # changed after the checks at open
    seen: list[int] = []

    async def main() -> None:
        preparer = prepare.ChildPreparer(pipeline)
        try:
            async for batch in preparer.batches():
                seen.extend(p.row for p in batch)
        finally:
            preparer.close()
            assert (preparer.finished, preparer.pid) == (False, 0)  # reaped (it may have exited first)

    with pytest.raises(InputFileError) as caught:
        asyncio.run(main())
    assert type(caught.value) is InputFileError
    assert str(caught.value) == (
        f"{tmp_path / 'contacts.csv'}: row 2502 has 7 cells but the header has 6 columns "
        '(a "," inside a cell that is not in quotes?)'
    )
    assert seen == list(range(2, 2049))  # the first chunk's batches arrived, in order; nothing after


def test_a_crash_in_the_child_comes_back_as_its_traceback(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, f"phone,name\n{ANN},Ann\n", 'text = "Hi {{ name }}"')
    pipeline = Pipeline(campaign)
    pipeline.phone_index = 5  # a bug: no such column
    with pytest.raises(RuntimeError) as caught:
        asyncio.run(_from_child(pipeline))
    text = str(caught.value)
    assert text.startswith("preparing rows failed in the child process:\nTraceback (most recent call last):\n")
    assert text.endswith("\nIndexError: tuple index out of range\n")


class _Local(CampaignError):
    pass


class _Unpicklable(Pipeline):
    """A pipeline whose error holds something pickle refuses (a lambda)."""

    def prepare(self, row: SourceRow) -> Prepared:
        err = _Local(f"row {row.number}: cannot be prepared")
        err.hook = lambda: None  # type: ignore[attr-defined]
        raise err


def test_an_error_that_cannot_cross_the_pipe_keeps_its_sentence(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, f"phone,name\n{ANN},Ann\n", 'text = "Hi {{ name }}"')
    with pytest.raises(CampaignError) as caught:
        asyncio.run(_from_child(_Unpicklable(campaign)))
    assert type(caught.value) is CampaignError
    assert str(caught.value) == "row 2: cannot be prepared"


def _big_pipeline(folder: Path) -> Pipeline:
    """2,000 rows of ~6 kB each: far more than the pipe and the reader hold, so a child whose
    rows are not read blocks in write."""
    filler = "la" * 700
    write_csv(folder / "contacts.csv", contacts(2000))
    (folder / "c.toml").write_text(
        'provider = "twlo"\nchannel_key = "twlo_16175550000"\n[recipients]\nfile = "contacts.csv"\n'
        f'phone_column = "Phone"\ndefault_country = "US"\n[message]\ntext = "Hi {{{{ first_name }}}} {filler}"\n',
        encoding="utf-8",
    )
    return Pipeline(load_campaign(folder / "c.toml", environ={}))


def _signal_masks(pid: int) -> dict[str, int]:
    """The SigBlk and SigIgn masks of process ``pid`` (Linux /proc), bit n-1 for signal n."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: int(v, 16) for k, v in (line.split(":\t") for line in lines) if k in ("SigBlk", "SigIgn")}


@pytest.mark.timeout(30)  # close() that forgot to kill would wait for the blocked child forever
def test_stopping_early_kills_the_child_blocked_on_the_full_pipe(tmp_path: Path) -> None:
    pipeline = _big_pipeline(tmp_path)

    async def main() -> tuple[list[int], dict[str, int], prepare.ChildPreparer]:
        preparer = prepare.ChildPreparer(pipeline)
        rows: list[int] = []
        async for batch in preparer.batches():
            rows.extend(p.row for p in batch)
            break  # the sender stopped after the first batch
        masks = _signal_masks(preparer.pid)  # the child is set up: it has written a batch
        preparer.close()
        return rows, masks, preparer

    rows, masks, preparer = asyncio.run(main())
    assert rows == list(range(2, 258))
    assert (preparer.finished, preparer.pid, preparer.ended) == (False, 0, "killed by SIGKILL")
    # Ctrl-C is the parent's: the child ignores SIGINT, dies of SIGTERM, and blocks neither
    sigint, sigterm = 1 << (signal.SIGINT - 1), 1 << (signal.SIGTERM - 1)
    assert (masks["SigIgn"] & (sigint | sigterm), masks["SigBlk"] & (sigint | sigterm)) == (sigint, 0)


def test_a_child_killed_from_outside_stops_the_run_with_one_sentence(tmp_path: Path) -> None:
    pipeline = _big_pipeline(tmp_path)
    seen: list[int] = []

    async def main() -> None:
        preparer = prepare.ChildPreparer(pipeline)
        try:
            async for batch in preparer.batches():
                if not seen:
                    os.kill(preparer.pid, signal.SIGKILL)
                seen.extend(p.row for p in batch)
        finally:
            preparer.close()

    with pytest.raises(RunStopped) as caught:
        asyncio.run(main())
    assert str(caught.value) == (
        "the process preparing rows ended without finishing (killed by SIGKILL); "
        "run the same command again to send the rest"
    )
    assert 256 <= len(seen) < 2000 and seen == list(range(2, 2 + len(seen)))


def test_prepared_batches_runs_in_a_child_by_default_here(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, f"phone,name\n{ANN},Ann\n", 'text = "Hi {{ name }}"')
    pipeline = Pipeline(campaign)

    async def main() -> tuple[str, list[Prepared]]:
        async with prepare.prepared_batches(pipeline) as batches:
            return batches.__qualname__, [p async for batch in batches for p in batch]  # type: ignore[attr-defined]

    assert asyncio.run(main()) == ("ChildPreparer.batches", _all(pipeline))


def test_a_prepared_row_whose_job_has_another_key_never_crosses_the_pipe(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, f"phone,name\n{ANN},Ann\n", 'text = "Hi {{ name }}"')
    (p,) = _all(Pipeline(campaign))
    with pytest.raises(AssertionError):
        prepare._flat(replace(p, key=f"{ANN}#2"))  # _unflat would rebuild the job with the wrong key
    with pytest.raises(AssertionError):
        prepare._flat(replace(p, row=3))


class _TwoPart(CampaignError):
    """An error that pickles but cannot be rebuilt from its args (no __reduce__, unlike _FileError)."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")


class _TwoPartPipeline(Pipeline):
    def prepare(self, row: SourceRow) -> Prepared:
        raise _TwoPart(f"row {row.number}", "cannot be prepared")


def test_an_error_that_pickles_but_cannot_be_rebuilt_keeps_its_sentence(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, f"phone,name\n{ANN},Ann\n", 'text = "Hi {{ name }}"')
    with pytest.raises(CampaignError) as caught:
        asyncio.run(_from_child(_TwoPartPipeline(campaign)))
    assert str(caught.value) == "row 2: cannot be prepared"


# --- what mutation testing found unpinned ----------------------------------------------------


def test_a_process_with_another_thread_never_forks() -> None:
    """Forking a process that runs other threads copies their locks held: the child may hang."""
    import threading

    assert prepare.can_fork() is True  # this test process: one thread, on Linux
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert prepare.can_fork() is False
    finally:
        release.set()
        other.join()
    assert prepare.can_fork() is True


def test_a_number_outside_the_allowed_countries_is_invalid(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, f"phone,name\n{LONDON},Ann\n", 'text = "Hi"', recipients='countries = ["US"]')
    [row] = _all(Pipeline(campaign))
    assert (row.status, row.key) == (Status.INVALID, None)
    assert row.error == f"phone: '{LONDON}' is a number in GB, and [recipients] countries allows only US"
