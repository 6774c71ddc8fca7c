"""Suppression files of every shape suppress every number in them (issue #9, kind 2).

Real files in tmp_path (plain bytes, openpyxl), and a send over the sandbox on loopback
showing that suppressed numbers get no request and that messages say what the spreadsheet
displays (kind 4, end to end).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
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

OPTED_OUT = {"+16175550101", "+16175550102"}

SHAPES = {
    # the file: the first line was taken as a header and never suppressed
    "headerless": b"+16175550101\n+16175550102\n",
    "headerless-national": b"(617) 555-0101\r\n617.555.0102\r\n",
    "headerless-two-columns": b"+16175550101,Ann\n+16175550102,Bo\n",
    "one-column": b"Opt-outs\n+16175550101\n+16175550102\n",
    "mobile": b"Name,Mobile\nAnn,+16175550101\nBo,+16175550102\n",
    "phone-number": b"Name;Phone Number;Date\nAnn;617-555-0101;2026-01-01\nBo;+1 617 555 0102;2026-01-02\n",
    "whatsapp": b"WhatsApp\tName\n+16175550101\tAnn\n+16175550102\tBo\n",
    "two-phone-columns": b"Name,Home phone,Mobile\nAnn,+16175550101,\nBo,,+16175550102\n",
    "order-number-beside": b"Order number,Tel.,Hotel\n6175550199,+16175550101,Ritz\n6175550198,+16175550102,\n",
    "number": b"Number\n+16175550101\n+16175550102\n",
    "country-column": b"Phone,Country\n+16175550101,\n(617) 555-0102,us\n",
    "title-row": "Do not contact – updated 1 Dec\n\nPhone,Name\n+16175550101,Ann\n+16175550102,Bo\n".encode(),
    "sep-hint": b"sep=;\nPhone;Name\n+16175550101;Ann\n+16175550102;Bo\n",
    # another campaign's results file: its own input columns, then row, phone (E.164), status...
    "results-file": (
        b"Phone_input,Name,row,phone,status,message_id,error\n"
        b"(617) 555-0101,Ann,2,+16175550101,sent,m1,\n"
        b"617 555 0102,Bo,3,+16175550102,failed,,x\n"
        b"12345,Cy,4,,invalid,,phone: not a number\n"
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_number_in_every_shape_is_suppressed(tmp_path: Path, shape: str) -> None:
    path = tmp_path / ("optouts.tsv" if shape == "whatsapp" else "optouts.csv")
    path.write_bytes(SHAPES[shape])
    found = read_suppressions([path], "Phone", "US" if shape != "country-column" else "GB", "Country")
    assert set(found.numbers) == OPTED_OUT
    assert set(found.numbers.values()) == {path.name}
    assert found.warnings == []


def test_excel_suppression_file_with_numbers_stored_as_numbers(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in (["Unsubscribed"], [], ["Mobile", "When"], [16175550101, dt.date(2026, 1, 1)], [6175550102, None]):
        sheet.append(row)
    book.save(tmp_path / "optouts.xlsx")
    assert set(read_suppressions([tmp_path / "optouts.xlsx"], "Phone", "US").numbers) == OPTED_OUT


def test_every_sheet_of_a_workbook_is_read(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    first = book.active
    assert first is not None
    first.title = "2025"
    first.append(["Phone"])
    first.append(["+16175550101"])
    notes = book.create_sheet("Notes")  # no numbers: not an error in a workbook that has some
    notes.append(["Ask Dana before adding numbers"])
    old = book.create_sheet("2024")
    old.append(["Mobile", "Note"])
    old.append(["617 555 0102", "x"])
    old.append(["n/a", "y"])
    old.sheet_state = "hidden"  # an opt-out on any sheet is still an opt-out
    book.create_sheet("Empty")
    book.save(tmp_path / "optouts.xlsx")
    found = read_suppressions([tmp_path / "optouts.xlsx"], "Phone", "US")
    assert set(found.numbers) == OPTED_OUT
    assert len(found.warnings) == 1
    assert found.warnings[0].startswith('suppression file optouts.xlsx, sheet "2024", row 3 (column "Mobile"): ')


def test_entries_that_are_not_numbers_are_reported_by_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "optouts.csv"
    path.write_bytes(b"Phone,Note\n+16175550101,\nnot given,\n\n12,x\n+16175550102,\n")
    found = read_suppressions([path], "Phone", "US")
    assert set(found.numbers) == OPTED_OUT
    assert len(found.warnings) == 2
    assert found.warnings[0].startswith('suppression file optouts.csv, row 3 (column "Phone"): ')
    assert found.warnings[1].startswith('suppression file optouts.csv, row 5 (column "Phone"): ')
    assert all("fix or remove it" in w for w in found.warnings)


def test_a_file_without_a_phone_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "optouts.csv"
    path.write_bytes(b"Name,Email\nAnn,ann@example.com\n")
    with pytest.raises(InputFileError) as caught:
        read_suppressions([path], "Phone", "US")
    assert caught.value.message == (
        "the suppression file ([recipients] suppress) has no column named like a phone column (its columns are "
        'Name, Email); name the column holding the numbers "Phone" (names accepted: Phone, Mobile, Cell, Tel, '
        "Telephone, WhatsApp, MSISDN, SMS, Phone Number, Number)"
    )


# --- end to end over the sandbox ------------------------------------------------------------

TEXT = "Hi {{ Name }}: {{ Amount }} due {{ Visit }} at {{ Time }}, room {{ Room }}, {{ Discount }} off"


def write_campaign(folder: Path, suppress: str = "optouts.csv") -> Path:
    path = folder / "clinic.toml"
    path.write_text(
        'name = "clinic"\nprovider = "twlo"\nchannel_key = "twlo_16175550000"\n'
        'api_url = "http://127.0.0.1:9"\n'
        '[recipients]\nfile = "clinic.xlsx"\nphone_column = "Phone"\ndefault_country = "US"\n'
        f'suppress = ["{suppress}"]\n'
        f'[message]\ntext = "{TEXT}"\n'
        "[sending]\nrate = 0\nconcurrency = 2\nmax_attempts = 2\ntimeout = 5\n",
        encoding="utf-8",
    )
    return path


def write_clinic(folder: Path) -> None:
    """The issue's workbook: a title row, formatted cells, a room merged down three rows."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Riverside Clinic – December reminders"])
    sheet.append(["Phone", "Name", "Amount", "Visit", "Time", "Discount", "Room"])
    sheet.append([6175550100, "Ann", 34.3, dt.datetime(2026, 5, 1), dt.time(9, 30), 0.15, "5B"])
    sheet.append([6175550101, "Bo", 12, dt.datetime(2026, 5, 2), dt.time(14, 5), 0.1])
    sheet.append(["+1 617 555 0102", "Cy", 7.5, dt.datetime(2026, 5, 3), dt.time(8, 0), 0])
    formats = ["0", "General", '"$"#,##0.00', "dd/mm/yyyy", "h:mm AM/PM", "0%"]
    for line in (3, 4, 5):
        for cell, number_format in zip(sheet[line], formats, strict=False):
            cell.number_format = number_format
    sheet.merge_cells("G3:G5")
    book.save(folder / "clinic.xlsx")


def test_send_says_what_the_sheet_shows_and_skips_opted_out_numbers(tmp_path: Path) -> None:
    write_clinic(tmp_path)
    (tmp_path / "optouts.csv").write_bytes(b"+16175550101\n6175550102\n")  # no header
    summary, box = send(write_campaign(tmp_path))
    assert summary.suppressed == 2
    assert [(m.to, m.body["text"]) for m in box.accepted] == [
        ("+16175550100", "Hi Ann: $34.30 due 01/05/2026 at 9:30 AM, room 5B, 15% off"),
    ]
    out = results(tmp_path / "clinic.results.csv")
    assert [(r["row"], r["status"], r["error"]) for r in out] == [
        ("3", "sent", ""),
        ("4", "skipped", "suppressed (optouts.csv)"),
        ("5", "skipped", "suppressed (optouts.csv)"),
    ]


def test_an_unreadable_suppression_file_stops_the_run_before_sending(tmp_path: Path) -> None:
    write_clinic(tmp_path)
    (tmp_path / "optouts.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    path = write_campaign(tmp_path)

    async def main() -> Sandbox:
        box = Sandbox(SandboxConfig(api_key=KEY, faults=Faults(seed=1)))
        url = await box.start()
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=url)
            where = r"optouts\.csv: in the suppression file \(\[recipients\] suppress\), line 3 contains a NUL"
            with pytest.raises(InputFileError, match=where):
                await runner.run(campaign, runner.Options(api_key=KEY, backoff_base=0.01))
        finally:
            await box.close()
        return box

    box = asyncio.run(main())
    assert box.requests == [] and box.accepted == []
    proc = run("send", str(path), "--sandbox", "--yes", cwd=tmp_path, key=KEY)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'optouts.csv'}: in the suppression file ([recipients] suppress), line 3 contains a "
        "NUL byte: this looks like a binary file, not "
        "delimited text (if it is UTF-16 text without a BOM, save it as UTF-8)"
    ]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "clinic.sandbox.results.csv").exists()


def test_check_reports_suppression_warnings(tmp_path: Path) -> None:
    write_clinic(tmp_path)
    (tmp_path / "optouts.csv").write_bytes(b"Phone\n+16175550101\n[bold]call me[/bold]\n")
    proc = run("check", str(write_campaign(tmp_path)), cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert "suppression file optouts.csv, row 3" in output, output
    assert "[bold]call me[/bold]" in output  # the file's text, not rich markup
    assert "Suppressed: 1" in output
