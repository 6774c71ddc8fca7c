"""An opted-out number is never messaged because its entry was misread (issue #9, kind 2).

The tester's trials (t26-t28): a headerless first line written the local way for another
country than ``default_country`` was taken as a header; an entry the suppression file could
not read only warned while the contacts file read the same text (through ``country_column``)
and messaged that person. Real files in tmp_path, sends over the sandbox on loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import openpyxl
import pytest

from campaign import runner
from campaign.config import load_campaign
from campaign.errors import InputFileError
from campaign.sandbox import Faults, Sandbox, SandboxConfig
from campaign.suppression import read_suppressions
from tests.conftest import KEY
from tests.test_cli import run
from tests.test_send import results, send

# Olivia and Noah are in the UK, Sam in the US; the campaign reads numbers in the US by default.
CONTACTS = b"Phone,Name,Country\n07911 123470,Olivia,GB\n07911 123471,Noah,GB\n617 555 2501,Sam,US\n"
HOW = "write it with + and the country code (for example +44 7911 123456)"


def write_campaign(folder: Path, optouts: bytes, contacts: bytes = CONTACTS, name: str = "optouts.csv") -> Path:
    (folder / "contacts.csv").write_bytes(contacts)
    (folder / name).write_bytes(optouts)
    path = folder / "uk.toml"
    path.write_text(
        'name = "uk"\nprovider = "twlo"\nchannel_key = "twlo_16175550100"\napi_url = "http://127.0.0.1:9"\n'
        '[recipients]\nfile = "contacts.csv"\nphone_column = "Phone"\nname_column = "Name"\n'
        f'country_column = "Country"\ndefault_country = "US"\nsuppress = ["{name}"]\n'
        '[message]\ntext = "Hi {{ Name }}"\n[sending]\nrate = 0\nconcurrency = 2\nmax_attempts = 2\ntimeout = 5\n',
        encoding="utf-8",
    )
    return path


def refused(path: Path) -> tuple[InputFileError, Sandbox]:
    """Run a send that must stop before anything is sent; the error and the sandbox."""

    async def main() -> tuple[InputFileError, Sandbox]:
        box = Sandbox(SandboxConfig(api_key=KEY, faults=Faults(seed=1)))
        url = await box.start()
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=url)
            with pytest.raises(InputFileError) as caught:
                await runner.run(campaign, runner.Options(api_key=KEY, backoff_base=0.01, sandbox=True))
        finally:
            await box.close()
        return caught.value, box

    return asyncio.run(main())


def unreadable(where: str, value: str) -> str:
    return (
        f"in the suppression file ([recipients] suppress), {where}: {value!r} is too long for US; an opt-out that "
        f"cannot be read would let its person be messaged, so nothing was sent: {HOW}, or add the campaign's "
        'country column "Country" to this file'
    )


# --- 1. a headerless first line is a number, whatever country reads it ------------------------


@pytest.mark.parametrize(
    ("optouts", "where", "value"),
    [
        (b"07911 123470\n", "row 1", "07911 123470"),  # t26: Olivia was messaged, no warning
        (b"07911 123471\n+44 7911 123470\n", "row 1", "07911 123471"),  # t27: Noah was
        (b"Phone\n07911 123471\n", 'row 2 (column "Phone")', "07911 123471"),  # t28: a warning only
    ],
    ids=["t26-headerless", "t27-headerless-two", "t28-header"],
)
def test_an_opt_out_the_file_cannot_read_stops_the_send(
    tmp_path: Path, optouts: bytes, where: str, value: str
) -> None:
    err, box = refused(write_campaign(tmp_path, optouts))
    assert err.message == unreadable(where, value)
    assert box.requests == [] and box.accepted == []
    assert not (tmp_path / "uk.results.csv").exists() and not (tmp_path / "uk.sandbox.results.csv").exists()


def test_the_cli_exits_2_with_one_sentence(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, b"07911 123470\n")
    proc = run("send", str(path), "--sandbox", "--yes", cwd=tmp_path, key=KEY)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'optouts.csv'}: {unreadable('row 1', '07911 123470')}"
    ]


def test_a_digit_like_first_line_is_data_even_when_short(tmp_path: Path) -> None:
    # "12345" was taken as the header and dropped in silence; now it is an entry, reported
    path = tmp_path / "optouts.csv"
    path.write_bytes(b"12345\n+16175550102\n")
    found = read_suppressions([path], "Phone", "US")
    assert set(found.numbers) == {"+16175550102"}
    assert len(found.warnings) == 1 and found.warnings[0].startswith("suppression file optouts.csv, row 1: ")


def test_a_number_row_above_a_wider_row_is_not_a_title(tmp_path: Path) -> None:
    # "+16175550101" (one cell) above "+16175550102,Bo" was skipped as a title row
    path = tmp_path / "optouts.csv"
    path.write_bytes(b"+16175550101\n+16175550102,Bo\n")
    with pytest.raises(InputFileError, match=r"row 2 has 2 cells but the header has 1"):
        read_suppressions([path], "Phone", "US")
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in (["+16175550101"], ["+16175550102", "Bo"], ["+16175550103", "Cy"]):
        sheet.append(row)
    book.save(tmp_path / "optouts.xlsx")
    found = read_suppressions([tmp_path / "optouts.xlsx"], "Phone", "US")
    assert set(found.numbers) == {"+16175550101", "+16175550102", "+16175550103"}


# --- 2. what the contacts file would read, the suppression file reads -------------------------


def test_the_suppression_files_own_country_column_reads_it(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, b"Phone,Country\n07911 123471,GB\nnot given,GB\n")
    summary, box = send(path)
    assert [m.to for m in box.accepted] == ["+447911123470", "+16175552501"]
    assert summary.suppressed == 1
    out = results(tmp_path / "uk.results.csv")
    assert [(r["Name"], r["status"], r["error"]) for r in out][1] == ("Noah", "skipped", "suppressed (optouts.csv)")


@pytest.mark.parametrize(
    ("optouts", "where"),
    [
        (b"Phone,Country\n07911 123471,\n", 'row 2 (column "Phone")'),  # the row's country is blank
        (b"Phone,Country\n07911 123471,UK\n", 'row 2 (column "Country")'),  # not a country code
    ],
    ids=["blank-country", "unknown-country"],
)
def test_an_entry_its_row_gives_no_country_for_still_stops(tmp_path: Path, optouts: bytes, where: str) -> None:
    err, box = refused(write_campaign(tmp_path, optouts))
    assert err.message.startswith(f"in the suppression file ([recipients] suppress), {where}: ")
    assert HOW in err.message
    assert box.requests == []


def test_an_entry_is_also_read_in_each_rows_own_country(tmp_path: Path) -> None:
    # "207 946 0958" is a US number (Maine) in the opt-out file, read with default_country US;
    # the contacts file reads the same text in the UK for Olivia's row (London): both are suppressed
    contacts = b"Phone,Name,Country\n207 946 0958,Olivia,GB\n207 946 0958,Sam,US\n617 555 2501,Ann,US\n"
    summary, box = send(write_campaign(tmp_path, b"207 946 0958\n", contacts))
    assert [m.to for m in box.accepted] == ["+16175552501"]
    out = results(tmp_path / "uk.results.csv")
    assert [(r["phone"], r["status"], r["error"]) for r in out][:2] == [
        ("+442079460958", "skipped", "suppressed (optouts.csv)"),
        ("+12079460958", "skipped", "suppressed (optouts.csv)"),
    ]
    assert summary.suppressed == 2


def test_entries_without_digits_stay_warnings(tmp_path: Path) -> None:
    path = tmp_path / "optouts.csv"
    path.write_bytes(b"Phone,Note\n+447911123471,\nn/a,\nsee notes,x\n")
    found = read_suppressions([path], "Phone", "US", "Country")
    assert set(found.numbers) == {"+447911123471"}
    assert [w.split(":")[0] for w in found.warnings] == [
        'suppression file optouts.csv, row 3 (column "Phone")',
        'suppression file optouts.csv, row 4 (column "Phone")',
    ]


# --- 3. messages that say what is true ----------------------------------------------------------


def test_a_file_whose_numbers_are_in_an_unnamed_column(tmp_path: Path) -> None:
    path = tmp_path / "optouts.csv"
    path.write_bytes(b"Customer,Contact\nAnn,+16175550101\n")
    with pytest.raises(InputFileError) as caught:
        read_suppressions([path], "Mobile No", "US")
    message = caught.value.message
    assert message.startswith(
        "the suppression file ([recipients] suppress) has no column named like a phone column "
        '(its columns are Customer, Contact); name the column holding the numbers "Phone" (names accepted: '
    )
    assert message.endswith(', or "Mobile No" (phone_column))')
    assert "holds phone numbers" not in message


@pytest.mark.parametrize("name", ["missing.csv", "optouts.txt.bak"])
def test_a_missing_or_unusable_file_is_called_a_suppression_file(tmp_path: Path, name: str) -> None:
    path = write_campaign(tmp_path, b"+16175550101\n")
    path.write_text(path.read_text(encoding="utf-8").replace("optouts.csv", name), encoding="utf-8")
    if name.endswith(".bak"):
        (tmp_path / name).write_bytes(b"+16175550101\n")
    proc = run("check", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / name}: the suppression file ([recipients] suppress) "), line


@pytest.mark.parametrize("content", [b"Phone\n", b"", b"Phone,Name\n\n,\n"], ids=["header-only", "empty", "blank"])
def test_a_file_with_no_numbers_gets_a_warning(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "optouts.csv"
    path.write_bytes(content)
    found = read_suppressions([path], "Phone", "US")
    assert found.numbers == {}
    assert found.warnings == ["suppression file optouts.csv holds no phone numbers; it suppresses nobody"]


def test_a_header_naming_the_phone_column_stays_a_header_beside_a_date(tmp_path: Path) -> None:
    # a column headed by a date ("01/12/2026") is digit-like, but "Mobile" says this is a header
    path = tmp_path / "optouts.csv"
    path.write_bytes(b"Mobile,01/12/2026\n+16175550101,yes\n6175550102,no\n")
    found = read_suppressions([path], "Phone", "US")
    assert set(found.numbers) == {"+16175550101", "+16175550102"}
    assert found.warnings == []


def test_an_opt_out_shown_in_scientific_notation_stops_the_send(tmp_path: Path) -> None:
    """An Excel opt-out cell that holds 6175552501 formatted 0.00E+00 shows 6.18E+09: its
    digits are not readable from what it shows, so the send stops rather than message Sam."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Phone"])
    sheet.append([6175552501])
    sheet["A2"].number_format = "0.00E+00"
    book.save(tmp_path / "optouts.xlsx")
    path = write_campaign(tmp_path, b"", name="optouts.csv")
    path.write_text(path.read_text(encoding="utf-8").replace("optouts.csv", "optouts.xlsx"), encoding="utf-8")
    err, box = refused(path)
    assert "'6.18E+09'" in str(err) and "nothing was sent" in str(err)
    assert box.requests == []
