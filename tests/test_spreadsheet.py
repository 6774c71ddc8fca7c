"""Every spreadsheet read as its owner sees it (issue #9, kinds 4 and 5; PRODUCT.md).

Real files written here with openpyxl, xlwt, odfpy and plain bytes: number formats give the
text the program displays, merged cells fill every row of their range, hidden sheets are
never read by default, and the header is found below title rows (or named by header_row).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pytest
import xlwt  # type: ignore[import-untyped]
from odf.opendocument import OpenDocumentSpreadsheet  # type: ignore[import-untyped]
from odf.style import Style, TableProperties  # type: ignore[import-untyped]
from odf.table import CoveredTableCell, Table, TableCell, TableRow  # type: ignore[import-untyped]
from odf.text import P  # type: ignore[import-untyped]

from campaign.config import load_campaign
from campaign.errors import ConfigError, InputFileError
from campaign.spreadsheet import RecipientFile, open_recipients
from campaign.spreadsheet.display import displayed

Rows = list[tuple[int, tuple[str, ...]]]
HEADER = ["Phone", "Amount", "Visit", "Time", "Discount", "Room"]
#: What Excel and LibreOffice show for the issue's cells: the messages must say the same.
SHOWN = ("16175550101", "$34.30", "01/05/2026", "9:30 AM", "15%", "5B")
TITLE = "Riverside Clinic – December reminders"


def rows(file: RecipientFile) -> Rows:
    return [(row.number, row.cells) for chunk in file.chunks() for row in chunk]


def expected(first: int) -> Rows:
    """The issue's three rows, the first at row ``first``: the room is merged down all three."""
    return [
        (first, SHOWN),
        (first + 1, ("+16175550102", "", "", "", "", "5B")),
        (first + 2, ("+16175550103", "", "", "", "", "5B")),
    ]


def make_xlsx(path: Path, *, title: bool = True) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Contacts"
    if title:
        sheet.append([TITLE])
        sheet.merge_cells("A1:F1")  # a title merged across the table must not fill the header
        sheet.append([])
    sheet.append(HEADER)
    first = sheet.max_row + 1
    sheet.append([16175550101, 34.3, dt.datetime(2026, 5, 1), dt.time(9, 30), 0.15, "5B"])
    sheet.append(["+16175550102"])
    sheet.append(["+16175550103"])
    formats = ["General", '"$"#,##0.00', "dd/mm/yyyy", "h:mm AM/PM", "0%"]
    for cell, number_format in zip(sheet[first], formats, strict=False):
        cell.number_format = number_format
    sheet.merge_cells(f"F{first}:F{first + 2}")
    secret = book.create_sheet("Old list", 0)  # hidden and first: never read by default
    secret.append(["Phone"])
    secret.append(["+16175550199"])
    secret.sheet_state = "hidden"
    book.save(path)
    return path


def make_xls(path: Path) -> Path:
    book = xlwt.Workbook()
    secret = book.add_sheet("Old list")
    secret.write(0, 0, "Phone")
    secret.write(1, 0, "+16175550199")
    secret.visibility = 1  # hidden
    sheet = book.add_sheet("Contacts")
    book.set_active_sheet(1)
    sheet.write(0, 0, TITLE)
    for c, name in enumerate(HEADER):
        sheet.write(2, c, name)
    style = [xlwt.easyxf(num_format_str=f) for f in ("General", '"$"#,##0.00', "dd/mm/yyyy", "h:mm AM/PM", "0%")]
    values: list[object] = [16175550101.0, 34.3, dt.datetime(2026, 5, 1), dt.time(9, 30), 0.15]
    for c, (value, st) in enumerate(zip(values, style, strict=True)):
        sheet.write(3, c, value, st)
    sheet.write_merge(3, 5, 5, 5, "5B")
    sheet.write(4, 0, "+16175550102")
    sheet.write(5, 0, "+16175550103")
    book.save(str(path))
    return path


def _cell(shown: str, kind: str | None = None, value: object = None, **attrs: object) -> TableCell:
    cell = TableCell(valuetype=kind, value=value, **attrs) if kind else TableCell(**attrs)
    cell.addElement(P(text=shown))
    return cell


def make_ods(path: Path) -> Path:
    doc = OpenDocumentSpreadsheet()
    hidden = Style(name="hiddenTable", family="table")
    hidden.addElement(TableProperties(display="false"))
    doc.automaticstyles.addElement(hidden)
    secret = Table(name="Old list", stylename=hidden)
    for text in ("Phone", "+16175550199"):
        row = TableRow()
        row.addElement(_cell(text))
        secret.addElement(row)
    doc.spreadsheet.addElement(secret)
    table = Table(name="Contacts")
    lines: list[list[TableCell]] = [
        [_cell(TITLE, numbercolumnsspanned=6)],
        [],
        [_cell(name) for name in HEADER],
        [
            _cell("1.61756E+10", "float", 16175550101),  # a narrow column: every digit still read
            _cell("$34.30", "currency", 34.3, currency="USD"),
            TableCell(valuetype="date", datevalue="2026-05-01", stringvalue=None),
            _cell("9:30 AM", "time", None, timevalue="PT09H30M00S"),
            _cell("15%", "percentage", 0.15),
            _cell("5B", numberrowsspanned=3),
        ],
        [_cell("+16175550102"), TableCell(numbercolumnsrepeated=4), CoveredTableCell()],
        [_cell("+16175550103"), TableCell(numbercolumnsrepeated=4), CoveredTableCell()],
    ]
    lines[3][2].addElement(P(text="01/05/2026"))
    for cells in lines:
        row = TableRow()
        for cell in cells:
            row.addElement(cell)
        table.addElement(row)
    table.addElement(TableRow(numberrowsrepeated=1048000))  # LibreOffice's empty tail
    doc.spreadsheet.addElement(table)
    doc.save(str(path))
    return path


MAKERS = {".xlsx": make_xlsx, ".xls": make_xls, ".ods": make_ods}


@pytest.mark.parametrize("suffix", list(MAKERS))
def test_workbook_cells_read_as_displayed_below_a_title(tmp_path: Path, suffix: str) -> None:
    path = MAKERS[suffix](tmp_path / f"c{suffix}")
    file = open_recipients(path, phone_column="Phone")
    assert file.sheet == "Contacts"  # the hidden sheet before it is never read by default
    assert (file.columns, file.header_row) == (tuple(HEADER), 3)  # row numbers as the program shows
    assert rows(file) == expected(4)


def test_hidden_sheet_is_read_when_named(tmp_path: Path) -> None:
    for suffix, make in MAKERS.items():
        path = make(tmp_path / f"c{suffix}")
        assert rows(open_recipients(path, sheet="Old list")) == [(2, ("+16175550199",))]


@pytest.mark.parametrize(
    ("value", "number_format", "shown"),
    [
        (34.3, '"$"#,##0.00', "$34.30"),
        (dt.datetime(2026, 5, 1), "dd/mm/yyyy", "01/05/2026"),
        (dt.time(9, 30), "h:mm AM/PM", "9:30 AM"),
        (0.15, "0%", "15%"),
        (1234567.891, "#,##0.00", "1,234,567.89"),
        (1234.5, "#,##0.00 [$€-407]", "1,234.50 €"),
        (1234.5, '_("$"* #,##0.00_);_("$"* (#,##0.00);_("$"* "-"??_);_(@_)', "$1,234.50"),  # accounting
        (dt.datetime(2026, 5, 1), "d mmmm yyyy", "1 May 2026"),
        (dt.datetime(2026, 5, 1, 14, 5), "dddd h:mm", "Friday 14:05"),
        (dt.timedelta(hours=36, minutes=30), "[h]:mm", "36:30"),
        (7700900123, "00000000000", "07700900123"),
        (5, '"Room "0', "Room 5"),
        # General keeps every digit of a phone number stored as a number (Excel's would shorten
        # it to fit the column), and the built-in short date follows the reader's locale: ISO
        (16175550101.0, "General", "16175550101"),
        (123456789012345, "General", "123456789012345"),
        (dt.datetime(2026, 5, 1), "mm-dd-yy", "2026-05-01"),
        (0.1, "General", "0.1"),
        ("text", "0.00", "text"),
    ],
)
def test_number_formats(value: object, number_format: str, shown: str) -> None:
    assert displayed(value, number_format) == shown


def test_merged_rows_the_reader_skips_are_kept(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in (["Phone", "Room"], ["+16175550101", "5B"], [None, None], [None, None], ["+16175550104", "6C"]):
        sheet.append(row)
    sheet.merge_cells("B2:B4")
    sheet.merge_cells("A6:B6")  # across columns: only the first cell holds the text
    sheet["A6"] = "+16175550105"
    book.save(tmp_path / "m.xlsx")
    assert rows(open_recipients(tmp_path / "m.xlsx")) == [
        (2, ("+16175550101", "5B")),
        (3, ("", "5B")),
        (4, ("", "5B")),
        (5, ("+16175550104", "6C")),
        (6, ("+16175550105", "")),
    ]


# --- layouts: title rows, header_row, sep= ----------------------------------------------


def write(tmp_path: Path, name: str, data: str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8"))
    return path


def test_csv_title_rows_above_the_header(tmp_path: Path) -> None:
    text = f"{TITLE}\nPrinted 1 Dec 2026\n\nPhone,Name\n+16175550101,Ann\n+16175550102,Bo\n"
    file = open_recipients(write(tmp_path, "c.csv", text), phone_column="phone")
    assert (file.columns, file.header_row) == (("Phone", "Name"), 4)
    assert rows(file) == [(5, ("+16175550101", "Ann")), (6, ("+16175550102", "Bo"))]


def test_header_found_by_the_name_as_people_read_it(tmp_path: Path) -> None:
    # case, repeated spaces and a zero-width space do not hide the phone column's header
    text = "Clinic list\nMOBILE\u200b  NUMBER,Name\n+16175550101,Ann\n"
    file = open_recipients(write(tmp_path, "c.csv", text), phone_column="Mobile Number")
    assert (file.header_row, rows(file)) == (2, [(3, ("+16175550101", "Ann"))])


def test_without_the_phone_column_the_first_row_is_the_header(tmp_path: Path) -> None:
    file = open_recipients(write(tmp_path, "c.csv", "Mobile,Name\n+16175550101,Ann\n"), phone_column="Phone")
    assert file.columns == ("Mobile", "Name")  # then find_column names the columns it has


@pytest.mark.parametrize("sep", [",", ";"])
def test_a_misnamed_phone_column_below_a_title_lists_the_real_headers(tmp_path: Path, sep: str) -> None:
    # no row names "Phone": the error must list Mobile, Name, not the title row (or, for a
    # CSV, complain that row 3 has more cells than the one-cell "header")
    text = f"{TITLE}\n\nMobile{sep}Name\n6175550101{sep}Ann\n"
    file = open_recipients(write(tmp_path, "c.csv", text), phone_column="Phone")
    assert file.columns == ("Mobile", "Name")
    with pytest.raises(InputFileError, match=r'has no column "Phone".*its columns are "Mobile", "Name"'):
        file.find_column("Phone")
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in ([TITLE], [], ["Mobile", "Name"], ["+16175550101", "Ann"]):
        sheet.append(row)
    book.save(tmp_path / "c.xlsx")
    assert open_recipients(tmp_path / "c.xlsx", phone_column="Phone").columns == ("Mobile", "Name")


def test_a_data_row_naming_the_phone_column_never_becomes_the_header(tmp_path: Path) -> None:
    # the header lacks "Phone"; row 3's "Contact by" cell says phone: row 1 stays the header
    text = "Mobile,Name,Contact by\n+16175550101,Ann,email\n+16175550102,Bo,Phone\n"
    assert open_recipients(write(tmp_path, "c.csv", text), phone_column="Phone").columns == (
        "Mobile",
        "Name",
        "Contact by",
    )
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in (["Mobile", "Name", "Contact by"], ["+16175550101", "Ann", "email"], ["+1617555012", "Bo", "Phone"]):
        sheet.append(row)
    book.save(tmp_path / "c.xlsx")
    assert open_recipients(tmp_path / "c.xlsx", phone_column="Phone").header_row == 1


def test_header_row_names_the_header(tmp_path: Path) -> None:
    text = "Phone list\nPhone,Name\nignored,x\nPhone,Name\n+16175550101,Ann\n"
    file = open_recipients(write(tmp_path, "c.csv", text), phone_column="Phone", header_row=4)
    assert (file.header_row, rows(file)) == (4, [(5, ("+16175550101", "Ann"))])
    book = make_xlsx(tmp_path / "c.xlsx")
    assert open_recipients(book, header_row=3).columns == tuple(HEADER)
    with pytest.raises(InputFileError, match=r"row 2 is empty.*header_row"):
        open_recipients(book, header_row=2)
    ods = make_ods(tmp_path / "c.ods")  # LibreOffice leaves no row for an empty one
    assert open_recipients(ods, header_row=3).columns == tuple(HEADER)
    with pytest.raises(InputFileError, match=r"row 2 is empty.*header_row"):
        open_recipients(ods, header_row=2)
    with pytest.raises(InputFileError, match=r"has no row 9000, which \[recipients\] header_row names"):
        open_recipients(book, header_row=9000)
    with pytest.raises(InputFileError, match=r"row 2 is empty.*header_row"):
        open_recipients(write(tmp_path, "d.csv", "Title\n\nPhone\n1\n"), header_row=2)


def test_excel_sep_hint_sets_the_delimiter_and_is_not_a_row(tmp_path: Path) -> None:
    text = "sep=;\r\nPhone;Name;Note\r\n+16175550101;Lee, Ann;a,b\r\n+16175550102;Bo;\r\n"
    file = open_recipients(write(tmp_path, "c.csv", text), phone_column="Phone")
    assert file.columns == ("Phone", "Name", "Note")
    # Excel hides the hint: the header is row 1 there
    assert rows(file) == [(2, ("+16175550101", "Lee, Ann", "a,b")), (3, ("+16175550102", "Bo", ""))]
    bad = write(tmp_path, "bad.csv", "sep=;\nPhone;Name\n+16175550101;Ann;extra\n")
    with pytest.raises(InputFileError, match="row 2 has 3 cells"):
        open_recipients(bad)


def write_campaign(tmp_path: Path, recipients: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        'name = "c"\nprovider = "twlo"\nchannel_key = "twlo_16175550000"\n'
        f'[recipients]\nfile = "c.csv"\nphone_column = "Phone"\n{recipients}\n[message]\ntext = "hi"\n',
        encoding="utf-8",
    )
    return path


def test_header_row_config(tmp_path: Path) -> None:
    assert load_campaign(write_campaign(tmp_path, "header_row = 3")).recipients.header_row == 3
    assert load_campaign(write_campaign(tmp_path, "")).recipients.header_row is None
    for bad in ("0", '"3"', "2.5", "true"):
        with pytest.raises(ConfigError, match="header_row must be a whole number from 1"):
            load_campaign(write_campaign(tmp_path, f"header_row = {bad}"))
