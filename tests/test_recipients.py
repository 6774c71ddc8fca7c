"""Tests for campaign.spreadsheet: real files in tmp_path, written byte by byte where it matters."""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import tracemalloc
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from campaign import spreadsheet as recipients
from campaign.errors import InputFileError
from campaign.spreadsheet import RecipientFile, SourceRow, excel, open_recipients

Rows = list[tuple[int, tuple[str, ...]]]


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def rows(file: RecipientFile, size: int = 2000) -> Rows:
    return [(row.number, row.cells) for chunk in file.chunks(size) for row in chunk]


def refused(path: Path, *fragments: str, **kwargs: str) -> str:
    """Open ``path``, expect an InputFileError naming the file and every fragment."""
    with pytest.raises(InputFileError) as caught:
        open_recipients(path, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- delimited text: encodings ------------------------------------------------------------

TEXT = "Name,Phone\nJosé Müller,+49 30 1234\nZoë €,00441234\n"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (TEXT.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF8 + TEXT.encode("utf-8"), "utf-8-sig"),
        (codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "utf-16-le"),
        (codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "utf-16-be"),
        (TEXT.encode("cp1252"), "cp1252"),
        (TEXT.replace("\n", "\r\n").encode("cp1252"), "cp1252"),
    ],
    ids=["utf8", "utf8-bom", "utf16le", "utf16be", "cp1252", "cp1252-crlf"],
)
def test_encodings(tmp_path: Path, data: bytes, encoding: str) -> None:
    file = open_recipients(write(tmp_path, "c.csv", data))
    assert file.encoding == encoding
    assert file.sheet is None
    assert file.columns == ("Name", "Phone")  # no BOM left on "Name"
    assert rows(file) == [(2, ("José Müller", "+49 30 1234")), (3, ("Zoë €", "00441234"))]


def test_bom_stripped_from_first_header_and_spaces_from_all(tmp_path: Path) -> None:
    file = open_recipients(write(tmp_path, "c.csv", b"\xef\xbb\xbf Phone ,  Name\n1,2\n"))
    assert file.columns == ("Phone", "Name")
    assert file.find_column("Phone") == 0


def test_undecodable_bytes_name_the_line_and_the_encodings(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", b"Name,Phone\nJos\xe9,1\nA\x81B,2\n")
    refused(path, "line 3", "0x81", "UTF-8", "Windows-1252")


def test_utf8_bom_with_invalid_utf8(tmp_path: Path) -> None:
    refused(write(tmp_path, "c.csv", b"\xef\xbb\xbfName\nok\nJos\xe9\n"), "line 3", "UTF-8")


def test_broken_utf16(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + "Name\nA\n".encode("utf-16-le") + b"\x00\xdc"  # lone surrogate
    refused(write(tmp_path, "c.csv", data), "UTF-16")


# --- delimited text: delimiters, cells, rows ----------------------------------------------


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
@pytest.mark.parametrize("suffix", [".csv", ".txt"])
def test_delimiters_are_sniffed(tmp_path: Path, sep: str, suffix: str) -> None:
    text = sep.join(["Name", "Phone", "Note"]) + "\n"
    text += sep.join(["Ann", "+1 617 555 0100", '"a, b; c"']) + "\n"  # quoted
    text += sep.join(["Bob", "0044 20 1234", ""]) + "\n"
    file = open_recipients(write(tmp_path, "c" + suffix, text))
    assert file.columns == ("Name", "Phone", "Note")
    assert rows(file) == [
        (2, ("Ann", "+1 617 555 0100", "a, b; c")),
        (3, ("Bob", "0044 20 1234", "")),
    ]


def test_tsv_is_tab_even_when_commas_abound(tmp_path: Path) -> None:
    file = open_recipients(write(tmp_path, "c.TSV", "Name, full\tPhone\nSmith, J\t1,2\n"))
    assert file.columns == ("Name, full", "Phone")
    assert rows(file) == [(2, ("Smith, J", "1,2"))]


def test_single_column_file(tmp_path: Path) -> None:
    file = open_recipients(write(tmp_path, "c.csv", "Phone\n+16175550100\n6175550101\n"))
    assert file.columns == ("Phone",)
    assert rows(file) == [(2, ("+16175550100",)), (3, ("6175550101",))]


def test_cells_stay_text(tmp_path: Path) -> None:
    text = "Phone,Code,Amount,Flag,Empty\n00441234,007,1.50,TRUE,\n16175550100,1e5,NaN,NA,\n"
    file = open_recipients(write(tmp_path, "c.csv", text))
    got = rows(file)
    assert got == [
        (2, ("00441234", "007", "1.50", "TRUE", "")),
        (3, ("16175550100", "1e5", "NaN", "NA", "")),
    ]
    assert all(type(cell) is str for _, cells in got for cell in cells)


def test_short_rows_are_padded_with_empty_strings(tmp_path: Path) -> None:
    file = open_recipients(write(tmp_path, "c.csv", "A,B,C\n1\n2,3\n"))
    assert rows(file) == [(2, ("1", "", "")), (3, ("2", "3", ""))]


def test_blank_lines_keep_row_numbers(tmp_path: Path) -> None:
    text = "Name,Phone\r\nAnn,1\r\n\r\n,\r\n  ,\t\r\nBob,2\r\n\r\n"
    assert rows(open_recipients(write(tmp_path, "c.csv", text))) == [
        (2, ("Ann", "1")),
        (6, ("Bob", "2")),
    ]


def test_quoted_multiline_cell_is_one_row(tmp_path: Path) -> None:
    text = 'Name,Note,Phone\nAnn,"line 1\nline 2\n\nline 4",1\nBob,"say ""hi""",2\n\nCy,x,3\n'
    assert rows(open_recipients(write(tmp_path, "c.csv", text))) == [
        (2, ("Ann", "line 1\nline 2\n\nline 4", "1")),
        (3, ("Bob", 'say "hi"', "2")),
        (5, ("Cy", "x", "3")),
    ]


def test_old_mac_line_endings(tmp_path: Path) -> None:
    file = open_recipients(write(tmp_path, "c.csv", "Name,Phone\rAnn,1\r\rBob,2\r"))
    assert rows(file) == [(2, ("Ann", "1")), (4, ("Bob", "2"))]


def test_empty_lines_above_the_header_count_as_rows(tmp_path: Path) -> None:
    # what Excel exports when the table starts on row 3
    file = open_recipients(write(tmp_path, "c.csv", ",,\n\nName,Phone,\nAnn,1,\n"))
    assert file.columns == ("Name", "Phone")
    assert rows(file) == [(4, ("Ann", "1"))]


def test_unnamed_columns(tmp_path: Path) -> None:
    # the middle unnamed column holds data: it gets a name; trailing empty ones disappear
    text = "Name,,Phone,,\nAnn,x,1,,\nBob,,2,,\n"
    file = open_recipients(write(tmp_path, "c.csv", text))
    assert file.columns == ("Name", "column_2", "Phone")
    assert rows(file) == [(2, ("Ann", "x", "1")), (3, ("Bob", "", "2"))]
    file = open_recipients(write(tmp_path, "d.csv", "Name,Phone,\nAnn,1,late note\n"))
    assert file.columns == ("Name", "Phone", "column_3")


def test_chunk_sizes(tmp_path: Path) -> None:
    text = "Phone\n" + "".join(f"{i}\n" for i in range(1, 8))
    file = open_recipients(write(tmp_path, "c.csv", text))
    assert [len(chunk) for chunk in file.chunks(3)] == [2, 3, 2]  # the header fills a slot
    assert all(len(c) <= 1 for c in file.chunks(1))
    assert rows(file, 3) == rows(file, 1000)
    with pytest.raises(ValueError, match="at least 1"):
        file.chunks(0)


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    assert open_recipients(write(tmp_path, "C.CSV", "Phone\n1\n")).columns == ("Phone",)


# --- delimited text: refused files -------------------------------------------------------


def test_too_many_cells_is_refused_at_open(tmp_path: Path) -> None:
    good = "".join(f"n{i},{i}\n" for i in range(15_000))  # past the first validation chunk
    path = write(tmp_path, "c.csv", 'Name,Phone\n"a\nb",1\n' + good + "Smith, J,3\n")
    refused(path, "row 15003 has 3 cells but the header has 2 columns", '","')


def test_too_many_cells_on_the_first_row(tmp_path: Path) -> None:
    refused(write(tmp_path, "c.csv", "A,B,C,D,E\n1,2,3,4,5,6\n"), "row 2 has 6 cells", "5 columns")


def test_unclosed_quote(tmp_path: Path) -> None:
    refused(write(tmp_path, "c.csv", 'Name,Phone\nAnn,1\n"Bob,2\nCy,3\n'), "row 3", "quote")


def test_duplicate_headers(tmp_path: Path) -> None:
    refused(write(tmp_path, "c.csv", "Phone,Name, phone\n1,2,3\n"), '"Phone" (columns 1 and 3)')


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n\n", b" ,, \r\n;\n"])
def test_empty_file(tmp_path: Path, data: bytes) -> None:
    refused(write(tmp_path, "c.csv", data), "is empty")


@pytest.mark.parametrize("data", ["Name,Phone\n", "Name,Phone", "Name,Phone\n\n,\n  ,  \n"])
def test_header_only(tmp_path: Path, data: str) -> None:
    path = write(tmp_path, "c.csv", data)
    refused(path, "has a header", "but no rows")
    file = open_recipients(path, allow_empty=True)  # e.g. an empty suppression list
    assert file.columns == ("Name", "Phone")
    assert rows(file) == []


def test_binary_file_named_csv(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00"
    refused(write(tmp_path, "c.csv", png), "NUL", "binary", "line 3")


def test_nul_byte_names_its_line(tmp_path: Path) -> None:
    refused(write(tmp_path, "c.csv", b"Name,Phone\nAnn,1\nBob,\x002\n"), "line 3", "NUL")


def test_nul_in_utf16_text(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + "Name\nAnn\nB\x00b\n".encode("utf-16-le")
    refused(write(tmp_path, "c.csv", data), "line 3", "NUL")


def test_workbooks_named_csv(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.save(tmp_path / "book.xlsx")
    refused(write(tmp_path, "c.csv", (tmp_path / "book.xlsx").read_bytes()), "zip", ".xlsx")
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512
    refused(write(tmp_path, "d.csv", ole), "old binary Office file", ".csv")


def test_two_megabyte_line(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", b"Name,Phone\nAnn,1\n" + b"x" * (2 << 20) + b"\nBob,2\n")
    refused(path, "line 3", "1 MiB", "export the contacts again")


def test_long_line_across_blocks_only_when_over_the_limit(tmp_path: Path) -> None:
    long_cell = "y" * (recipients.MAX_LINE_BYTES - 10)
    path = write(tmp_path, "c.csv", "Name,Phone\n" + "a,1\n" * 1000 + long_cell + ",2\n")
    assert rows(open_recipients(path))[-1] == (1002, (long_cell, "2"))


def test_unsupported_suffix_and_missing_file(tmp_path: Path) -> None:
    refused(write(tmp_path, "c.json", "{}"), '".json"', ".csv", ".xlsx")
    refused(tmp_path / "nope.csv", "does not exist")


# --- find_column --------------------------------------------------------------------------


def test_find_column(tmp_path: Path) -> None:
    file = open_recipients(write(tmp_path, "c.csv", "Name, Mobile Phone ,E-mail\na,1,x\n"))
    assert file.find_column("Mobile Phone") == 1
    assert file.find_column("  mobile PHONE ") == 1
    assert file.find_optional_column("e-MAIL") == 2
    assert file.find_optional_column("City") is None
    with pytest.raises(InputFileError) as caught:
        file.find_column("Mobile")
    message = str(caught.value)
    assert str(file.path) in message
    for fragment in ('"Mobile"', "phone_column", '"Name", "Mobile Phone", "E-mail"'):
        assert fragment in message
    assert 'Did you mean "Mobile Phone"?' in message
    with pytest.raises(InputFileError) as caught:
        file.find_column("Zzz", key="name_column")
    message = str(caught.value)
    assert "name_column" in message
    assert "Did you mean" not in message


def test_find_column_exact_match_wins_and_ambiguity_is_refused() -> None:
    # open_recipients refuses such headers; a RecipientFile built by hand can still have them
    file = RecipientFile(Path("x.csv"), ("Phone", "PHONE", "phone"), lambda size: iter(()))
    assert file.find_column("PHONE") == 1
    with pytest.raises(InputFileError, match='"Phone", "PHONE", "phone"'):
        file.find_column("pHoNe")
    with pytest.raises(InputFileError, match="several columns"):
        file.find_optional_column("pHoNe")


# --- streaming ----------------------------------------------------------------------------


def test_streaming_keeps_memory_flat_and_matches_pandas(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("Phone,Name,Code,Empty,Note\n")
        for i in range(200_000):
            out.write(f'00{16175550000 + i},Person {i},0{i % 97},,"note, {i}"\n')
    size = path.stat().st_size

    tracemalloc.start()
    try:
        file = open_recipients(path)
        digest, count, last = hashlib.sha256(), 0, 0
        for chunk in file.chunks(2000):
            assert 0 < len(chunk) <= 2000
            for row in chunk:
                digest.update("\x1f".join(row.cells).encode() + b"\x1e")
            count, last = count + len(chunk), chunk[-1].number
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (count, last) == (200_000, 200_001)
    assert peak < 50 * 2**20, f"peak {peak:,} bytes for a {size:,}-byte file"
    assert peak < size, "streaming must use less memory than the file's own size"

    whole = pd.read_csv(path, dtype=str, keep_default_na=False)
    expected = hashlib.sha256()
    for values in whole.itertuples(index=False, name=None):
        expected.update("\x1f".join(values).encode() + b"\x1e")
    assert digest.hexdigest() == expected.hexdigest()


# --- Excel --------------------------------------------------------------------------------


def make_book(path: Path, *sheets: tuple[str, list[list[object]], bool]) -> Path:
    """Write a workbook of (title, rows, hidden) sheets."""
    book = openpyxl.Workbook()
    book.remove(book.worksheets[0])
    for title, data, hidden in sheets:
        sheet = book.create_sheet(title)
        for row in data:
            sheet.append(row)
        if hidden:
            sheet.sheet_state = "hidden"
    book.save(path)
    return path


def test_xlsx_values_become_text(tmp_path: Path) -> None:
    data: list[list[object]] = [
        [],
        ["", " Phone ", "Name", None, "Amount", "When", "Flag"],
        [None, 16175550100, "Ann", None, 0.1, dt.datetime(2026, 3, 1), True],
        [None, 16175550100.0, "Bob", "x", 2.5, dt.datetime(2026, 3, 1, 9, 30), False],
        [],
        [None, "00441234", 7, None, 1e-7, dt.date(2026, 1, 2), None, "beyond"],
        [None, None, None, None, None, dt.time(9, 30, 15)],
    ]
    file = open_recipients(make_book(tmp_path / "c.xlsx", ("Contacts", data, False)))
    assert (file.sheet, file.encoding) == ("Contacts", None)
    # column A has no header (ignored); D sits between named columns (kept, named by number)
    assert file.columns == ("Phone", "Name", "column_4", "Amount", "When", "Flag")
    assert rows(file) == [
        (3, ("16175550100", "Ann", "", "0.1", "2026-03-01 0:00:00", "TRUE")),  # Excel shows yyyy-mm-dd h:mm:ss
        (4, ("16175550100", "Bob", "x", "2.5", "2026-03-01 9:30:00", "FALSE")),
        (6, ("00441234", "7", "", "1E-07", "2026-01-02", "")),  # General: as Excel shows 1e-7
        (7, ("", "", "", "", "9:30:15", "")),  # h:mm:ss
    ]


def test_xlsx_numbers_formatted_with_leading_zeros_keep_them(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Phone", "Zip", "Plain", "Price"])
    sheet.append([7700900123, 2134, 7700900123, 5])
    for cell, number_format in zip(sheet[2], ["00000000000", "00000", "General", "0.00"], strict=True):
        cell.number_format = number_format
    book.save(tmp_path / "c.xlsx")
    # what Excel shows: 07700900123 and 02134, every digit under General, 5 as 5.00
    assert rows(open_recipients(tmp_path / "c.xlsx")) == [(2, ("07700900123", "02134", "7700900123", "5.00"))]


def test_xlsx_cached_formula_values_and_merged_cells(tmp_path: Path) -> None:
    path = make_book(tmp_path / "c.xlsx", ("S", [["Phone", "Name"], ["=1+1", "x"]], False))
    # give the formula a cached value, as Excel would have
    with zipfile.ZipFile(path) as src:
        parts = {info.filename: src.read(info) for info in src.infolist()}
    sheet = parts["xl/worksheets/sheet1.xml"]
    parts["xl/worksheets/sheet1.xml"] = sheet.replace(b"<f>1+1</f><v />", b"<f>1+1</f><v>2</v>")
    assert parts["xl/worksheets/sheet1.xml"] != sheet
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name, body in parts.items():
            out.writestr(name, body)
    assert rows(open_recipients(path)) == [(2, ("2", "x"))]

    book = openpyxl.Workbook()
    sheet_ = book.active
    assert sheet_ is not None
    for row in (["Phone", "Name", "City"], ["1", "Ann", "Boston"], ["2", None, None]):
        sheet_.append(row)
    sheet_.merge_cells("B2:C3")  # the file keeps the value in the top-left cell only
    book.save(tmp_path / "m.xlsx")
    assert rows(open_recipients(tmp_path / "m.xlsx")) == [
        (2, ("1", "Ann", "")),  # every row of the range shows it, in its first column
        (3, ("2", "Ann", "")),
    ]


def test_xlsx_sheets(tmp_path: Path) -> None:
    path = make_book(
        tmp_path / "c.XLSX",
        ("Secret", [["Key"], ["k1"]], True),
        ("Customers", [["Phone"], ["1"]], False),
        ("Staff", [["Phone"], ["2"]], False),
    )
    assert open_recipients(path).sheet == "Customers"  # the first *visible* sheet
    assert rows(open_recipients(path, sheet="Staff")) == [(2, ("2",))]
    assert open_recipients(path, sheet=" staff ").sheet == "Staff"
    assert rows(open_recipients(path, sheet="Secret")) == [(2, ("k1",))]
    refused(path, '"Orders"', '"Secret" (hidden), "Customers", "Staff"', sheet="Orders")


def test_xlsx_empty_sheet_and_header_only(tmp_path: Path) -> None:
    path = make_book(tmp_path / "c.xlsx", ("Empty", [], False), ("Head", [[None, "Phone"]], False))
    refused(path, '"Empty" is empty')
    refused(path, "has a header", "row 1", "no rows", sheet="Head")
    assert open_recipients(path, sheet="Head", allow_empty=True).columns == ("Phone",)


def test_xlsx_duplicate_headers(tmp_path: Path) -> None:
    path = make_book(tmp_path / "c.xlsx", ("S", [["Phone", "PHONE"], ["1", "2"]], False))
    refused(path, "duplicate", '"Phone" (columns 1 and 2)')


def test_xlsx_truncated(tmp_path: Path) -> None:
    good = make_book(tmp_path / "good.xlsx", ("S", [["Phone"], ["1"]], False)).read_bytes()
    refused(write(tmp_path, "c.xlsx", good[: len(good) // 2]), "damaged or incomplete")


def test_xlsx_not_a_zip(tmp_path: Path) -> None:
    refused(write(tmp_path, "c.xlsx", "Name,Phone\nAnn,1\n"), "not an Excel file", "CSV renamed")
    refused(write(tmp_path, "d.xlsm", b""), "not an Excel file")


def test_xlsx_encrypted_ole2(tmp_path: Path) -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 4096
    message = refused(write(tmp_path, "c.xlsx", ole), "password-protected", ".csv")
    assert "Traceback" not in message and "\n" not in message


def rezip(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info.filename, replace.pop(info.filename, b"") or src.read(info))
        for name, body in replace.items():
            out.writestr(name, body)
    return target


def test_xlsx_zip_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = make_book(tmp_path / "good.xlsx", ("S", [["Phone"], ["1"]], False))
    bomb = rezip(good, tmp_path / "bomb.xlsx", {"xl/worksheets/sheet2.xml": b" " * (20 << 20)})
    refused(bomb, "xl/worksheets/sheet2.xml", "20,971,520", "zip bomb", "100:1")
    # the total limit, lowered so that the test stays small
    monkeypatch.setattr(excel, "MAX_UNZIPPED_BYTES", 1000)
    refused(good, "would unpack to", "1,000", "zip bomb")


def test_xlsx_billion_laughs(tmp_path: Path) -> None:
    entities = b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1)) * 10) for i in range(1, 10))
    sheet = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">' + entities + b"]>"
        b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        b'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&lol9;</t></is></c></row>'
        b"</sheetData></worksheet>"
    )
    good = make_book(tmp_path / "good.xlsx", ("S", [["Phone"], ["1"]], False))
    path = rezip(good, tmp_path / "lol.xlsx", {"xl/worksheets/sheet1.xml": sheet})
    refused(path, "xl/worksheets/sheet1.xml", "entit")  # refused, not expanded (a billion "lol"s)
    # second layer: openpyxl itself parses with defusedxml, which refuses entities too
    assert openpyxl.DEFUSEDXML
    with pytest.raises(ValueError, match="invalid XML"):
        openpyxl.load_workbook(path, read_only=True)


def test_xlsx_broken_xml(tmp_path: Path) -> None:
    good = make_book(tmp_path / "good.xlsx", ("S", [["Phone"], ["1"]], False))
    path = rezip(good, tmp_path / "bad.xlsx", {"xl/worksheets/sheet1.xml": b"<worksheet><row>"})
    refused(path, "sheet1.xml", "not valid XML")


# --- legacy formats -----------------------------------------------------------------------


def test_ods_with_reader(tmp_path: Path) -> None:
    path = tmp_path / "c.ods"
    frame = pd.DataFrame([[None, None], ["Phone", "Name"], [16175550100, "Ann"], [None, None]])
    with pd.ExcelWriter(path, engine="odf") as writer:
        frame.to_excel(writer, sheet_name="S1", header=False, index=False)
    file = open_recipients(path)
    assert (file.sheet, file.columns) == ("S1", ("Phone", "Name"))
    assert rows(file) == [(3, ("16175550100", "Ann"))]


def test_xls_with_reader(tmp_path: Path) -> None:
    import xlwt  # type: ignore[import-untyped]

    book = xlwt.Workbook()
    sheet = book.add_sheet("Old")
    for r, values in enumerate([["Phone", "Name"], [16175550100.0, "Ann"], ["+16175550101", ""]]):
        for c, value in enumerate(values):
            sheet.write(r, c, value)
    book.save(str(tmp_path / "c.xls"))
    file = open_recipients(tmp_path / "c.xls")
    assert (file.sheet, file.columns) == ("Old", ("Phone", "Name"))
    assert rows(file) == [(2, ("16175550100", "Ann")), (3, ("+16175550101", ""))]


def test_source_row_is_frozen() -> None:
    row = SourceRow(2, ("a",))
    with pytest.raises(AttributeError):
        row.number = 3  # type: ignore[misc]
