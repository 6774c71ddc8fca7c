"""Excel cells sent as Excel and LibreOffice show them (issue #9 kind 4, second round).

Times drop the units their format does not show (a formatter that rounds sent 23:59:59 under
``h:mm`` as "0:00"), General numbers show as a standard Excel column does, and a sheet whose
formulas have no saved results is refused instead of sending blanks. Workbooks are written
here with openpyxl and xlwt; nothing needs LibreOffice at test time.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import openpyxl
import pytest
import xlwt  # type: ignore[import-untyped]

from campaign.errors import ExitCode, InputFileError
from campaign.spreadsheet import RecipientFile, open_recipients
from campaign.spreadsheet.display import displayed
from campaign.spreadsheet.formulas import UnsavedFormulas
from tests.conftest import CampaignFactory
from tests.test_cli import run
from tests.test_send import results, send

#: What LibreOffice Calc 7.4 shows (``soffice --headless --convert-to csv`` of an openpyxl
#: workbook, cells saved "as shown"), made once; Excel shows the same for these cells.
LIBREOFFICE: list[tuple[object, str, str]] = [
    (dt.time(23, 59, 59), "h:mm", "23:59"),
    (dt.datetime(2026, 5, 1, 23, 59, 59), "d mmm yyyy h:mm", "1 May 2026 23:59"),
    (dt.datetime(2026, 5, 1, 23, 59, 59), "dd/mm/yyyy", "01/05/2026"),
    (dt.time(9, 5, 30), "h:mm", "9:05"),
    (dt.datetime(2026, 5, 1, 23, 59, 59, 600000), "h:mm:ss", "23:59:59"),
    (dt.datetime(2026, 5, 1, 23, 59, 59, 960000), "hh:mm:ss.0", "23:59:59.9"),
    (dt.datetime(2026, 5, 1, 10, 0, 0, 996000), "hh:mm:ss.00", "10:00:00.99"),
    (dt.datetime(2026, 12, 31, 23, 59, 31), "yyyy-mm-dd hh:mm", "2026-12-31 23:59"),
    (dt.time(18, 45, 50), "h AM/PM", "6 PM"),
    (dt.time(23, 59, 59), "h:mm AM/PM", "11:59 PM"),
    (dt.time(11, 59, 59), "h:mm AM/PM", "11:59 AM"),
    (dt.time(12, 29, 59), 'hh "h" mm', "12 h 29"),
    (dt.time(10, 15, 40), "mm:ss", "15:40"),
    (dt.time(10, 15, 40, 700000), "mm:ss", "15:40"),
    (dt.timedelta(days=1, hours=12, minutes=59, seconds=59), "[h]:mm", "36:59"),
    (dt.timedelta(hours=1, minutes=59, seconds=59), "[mm]", "119"),
    (dt.timedelta(hours=1, minutes=59, seconds=59), "[m]:ss", "119:59"),
    (dt.datetime(2026, 5, 1, 23, 59, 59), "d mmm yyyy h", "1 May 2026 23"),
    (dt.datetime(2026, 5, 1, 23, 59, 59), "yyyy-mm-dd", "2026-05-01"),
    (dt.datetime(2026, 5, 1, 23, 59, 59), "mmm yyyy", "May 2026"),
    (dt.datetime(2026, 5, 1, 9, 59, 59, 999000), "h:mm", "9:59"),
    (dt.datetime(2026, 5, 1, 9, 59, 59, 999000), "h:mm:ss", "9:59:59"),
    (dt.time(9, 5, 30, 500000), "h:mm:ss", "9:05:30"),
    (dt.time(9, 5, 30, 500000), "ss", "30"),
]
#: Fractions of a second under a date-and-time or elapsed format: LibreOffice rounds these
#: (it shows 2026-05-02 00:00:00 and 2:00:00), though it truncates them under a time-only
#: format such as h:mm:ss (above). We truncate everywhere: one rule, and never the next day.
SUBSECONDS: list[tuple[object, str, str]] = [
    (dt.datetime(2026, 5, 1, 23, 59, 59, 600000), "yyyy-mm-dd hh:mm:ss", "2026-05-01 23:59:59"),
    (dt.timedelta(hours=1, minutes=59, seconds=59, microseconds=700000), "[h]:mm:ss", "1:59:59"),
]
#: General numbers as a standard-width Excel column shows them (README, "Reading spreadsheets").
GENERAL: list[tuple[float | int, str]] = [
    (1 / 3, "0.3333333333"),
    (-1 / 3, "-0.3333333333"),
    (2 / 3, "0.6666666667"),
    (22 / 7, "3.142857143"),
    (1e-7, "1E-07"),
    (-1e-7, "-1E-07"),
    (1e-10, "1E-10"),
    (0.0001, "0.0001"),
    (0.000123456789, "0.000123456789"),
    (0.1 + 0.2, "0.3"),
    (1234.5, "1234.5"),
    (2.675, "2.675"),
    (123456.789012345, "123456.789"),
    (1234567890.5, "1234567891"),
    (9.99999999995, "10"),
    # whole numbers: every digit up to 15 (a phone number stored as a number), then as Excel
    (16175550101, "16175550101"),
    (16175550101.0, "16175550101"),
    (123456789012345, "123456789012345"),
    (1e20, "1E+20"),
    (10**20, "1E+20"),
]


def cells_as_read(path: Path) -> list[str]:
    file = open_recipients(path, phone_column="Phone")
    return [row.cells[1] for chunk in file.chunks() for row in chunk]


def xlsx(tmp_path: Path, cases: list[tuple[object, str]]) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Phone", "Value"])
    for n, (value, number_format) in enumerate(cases):
        sheet.append([f"+1617555{n:04d}", value])
        sheet.cell(sheet.max_row, 2).number_format = number_format
    path = tmp_path / "values.xlsx"
    book.save(path)
    return path


@pytest.mark.parametrize("table", [LIBREOFFICE, SUBSECONDS])
def test_xlsx_times_show_only_the_units_their_format_names(
    tmp_path: Path, table: list[tuple[object, str, str]]
) -> None:
    path = xlsx(tmp_path, [(value, number_format) for value, number_format, _ in table])
    assert cells_as_read(path) == [shown for _, _, shown in table]


def serial(value: object) -> float:
    """A date, time or duration as the serial an .xls stores (days since 1899-12-30)."""
    if isinstance(value, dt.time):
        value = dt.datetime.combine(dt.date(1899, 12, 30), value)
    if isinstance(value, dt.datetime):
        value = value - dt.datetime(1899, 12, 30)
    assert isinstance(value, dt.timedelta)
    return value / dt.timedelta(days=1)


def test_xls_times_show_only_the_units_their_format_names(tmp_path: Path) -> None:
    book = xlwt.Workbook()
    sheet = book.add_sheet("Times")
    sheet.write(0, 0, "Phone")
    sheet.write(0, 1, "Value")
    # xlwt drops microseconds from a datetime, so every value is written as its serial
    cases = [(serial(value), number_format, shown) for value, number_format, shown in LIBREOFFICE + SUBSECONDS]
    cases.append((545 / 1440 - 1e-12, "h:mm", "9:05"))  # 9:05 as a formula may leave it: 9:04:59.99999...
    for n, (value, number_format, _) in enumerate(cases, start=1):
        sheet.write(n, 0, f"+1617555{n:04d}")
        sheet.write(n, 1, value, xlwt.easyxf(num_format_str=number_format))
    path = tmp_path / "values.xls"
    book.save(str(path))
    assert cells_as_read(path) == [shown for _, _, shown in cases]


def test_locale_date_time_shows_minutes_in_iso(tmp_path: Path) -> None:
    # numFmtId 22 follows the reader's locale; we give ISO, and only the minutes it shows
    path = xlsx(tmp_path, [(dt.datetime(2026, 5, 1, 23, 59, 59), "m/d/yy h:mm")])
    assert cells_as_read(path) == ["2026-05-01 23:59"]


def test_general_numbers_as_a_standard_excel_column(tmp_path: Path) -> None:
    path = xlsx(tmp_path, [(value, "General") for value, _ in GENERAL])
    assert cells_as_read(path) == [shown for _, shown in GENERAL]


def test_general_numbers_in_xls(tmp_path: Path) -> None:
    book = xlwt.Workbook()
    sheet = book.add_sheet("Numbers")
    sheet.write(0, 0, "Phone")
    sheet.write(0, 1, "Value")
    for n, value in enumerate([1 / 3, 1e-7, 16175550101.0], start=1):
        sheet.write(n, 0, f"+1617555{n:04d}")
        sheet.write(n, 1, value)
    path = tmp_path / "numbers.xls"
    book.save(str(path))
    assert cells_as_read(path) == ["0.3333333333", "1E-07", "16175550101"]


# --- formulas without saved results -------------------------------------------------------


def with_results(path: Path, results: dict[str, str]) -> Path:
    """Store results for formulas, as Excel does on save (openpyxl writes ``<v />``)."""
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    for formula, result in results.items():
        sheet = sheet.replace(f"<f>{formula}</f><v />", f"<f>{formula}</f>{result}")
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


def formula_book(path: Path) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Guests"
    sheet.append(["Phone", "Total", "Note"])
    sheet.append(["+16175553001", "=1+2", '=IF(B2>5,"big","")'])
    sheet.append(['=CONCAT("+1617555","3002")', 5, "x"])
    book.save(path)
    return path


def test_formulas_without_saved_results_are_refused(tmp_path: Path) -> None:
    path = formula_book(tmp_path / "guests.xlsx")
    with pytest.raises(InputFileError) as caught:
        open_recipients(path, phone_column="Phone")
    assert str(caught.value) == (
        f'{path}: has formulas without saved results (sheet "Guests", first at cell B2), so their cells '
        "would be sent blank; open the file in Excel or LibreOffice and save it, so the results are stored"
    )


def test_formulas_with_saved_results_read_as_their_results(tmp_path: Path) -> None:
    path = with_results(
        formula_book(tmp_path / "guests.xlsx"),
        {
            "1+2": "<v>3</v>",
            'IF(B2&gt;5,"big","")': "<v></v>",  # an empty text result, as Excel stores it...
            'CONCAT("+1617555","3002")': "<v>+16175553002</v>",
        },
    )
    sheet = zipfile.ZipFile(path).read("xl/worksheets/sheet1.xml").decode()
    sheet = sheet.replace('<c r="C2"><f>', '<c r="C2" t="str"><f>').replace('<c r="A3"><f>', '<c r="A3" t="str"><f>')
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()  # ...with the cell typed as text
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    file: RecipientFile = open_recipients(path, phone_column="Phone")
    assert [row.cells for chunk in file.chunks() for row in chunk] == [
        ("+16175553001", "3", ""),
        ("+16175553002", "5", "x"),
    ]


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_unsaved_formula_found_whatever_the_blocks(size: int) -> None:
    xml = (
        b'<worksheet><cols><col min="1"/></cols><sheetData><row r="1"><c r="A1" s="1"/><c r="B1" t="s"><v>0</v></c>'
        b'<x:c r="C1"><x:f t="shared" si="0"/><x:v>4</x:v></x:c><c r="D1"><f>A1</f><v>1</v></c></row>'
        b'<row r="2"><c r="A2" t="str"><f>""</f><v></v></c><c r="B2"><f>1+2</f><v /></c></row></sheetData></worksheet>'
    )
    scan = UnsavedFormulas()
    for start in range(0, len(xml), size):
        scan.feed(xml[start : start + size])
    assert scan.first == "B2"
    saved = UnsavedFormulas()
    saved.feed(xml.replace(b"<v /></c></row></sheetData>", b"<v>3</v></c></row></sheetData>"))
    assert saved.first is None


def test_check_refuses_a_sheet_of_unsaved_formulas(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    formula_book(tmp_path / "guests.xlsx")
    path = make_campaign(file="guests.xlsx", message='text = "Total {{ Total }}"')
    done = run("check", path.name, cwd=tmp_path)
    assert done.returncode == ExitCode.INPUT
    assert 'sheet "Guests", first at cell B2' in done.stderr and "Traceback" not in done.stderr


def test_send_carries_the_text_the_sheet_shows(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Phone", "Name", "Closes", "Day", "Share"])
    sheet.append(["+16175552000", "Ann", dt.time(23, 59, 59), dt.datetime(2026, 5, 1, 23, 59, 59), 1 / 3])
    sheet.append(["+16175552001", "Bob", dt.time(18, 45, 50), dt.datetime(2026, 12, 31, 23, 59, 31), 1e-7])
    for row, formats in zip(
        sheet.iter_rows(min_row=2), [("h:mm", "d mmm yyyy h:mm"), ("h AM/PM", "yyyy-mm-dd hh:mm")], strict=True
    ):
        row[2].number_format, row[3].number_format = formats
    book.save(tmp_path / "shop.xlsx")
    path = make_campaign(file="shop.xlsx", message='text = "{{ Closes }} / {{ Day }} / {{ Share }}"')
    summary, box = send(path)
    assert summary.counts["sent"] == 2
    assert [m.body["text"] for m in sorted(box.accepted, key=lambda m: m.body["to"])] == [
        "23:59 / 1 May 2026 23:59 / 0.3333333333",
        "6 PM / 2026-12-31 23:59 / 1E-07",
    ]
    assert [r["message"] for r in results(tmp_path / "test.results.csv")] == [
        "23:59 / 1 May 2026 23:59 / 0.3333333333",
        "6 PM / 2026-12-31 23:59 / 1E-07",
    ]


@pytest.mark.parametrize(
    ("value", "fmt", "shown"),
    [
        (-0.004, "0.00", "-0.00"),
        (-0.4, "0", "-0"),
        (-0.001, "0%", "-0%"),
        (-0.004, '"$"#,##0.00', "-$0.00"),
        (-0.004, "0.00;(0.00)", "(0.00)"),  # a negative section says how negatives show
        (-1234.5, "#,##0.00", "-1,234.50"),
        (0.004, "0.00", "0.00"),
    ],
)
def test_a_negative_value_that_rounds_to_zero_keeps_its_minus(value: float, fmt: str, shown: str) -> None:
    # Excel and LibreOffice show the sign of a negative value under a one-section format even
    # when the digits round to zero; the formatter alone dropped it (a second tester's find).
    assert displayed(value, fmt) == shown
