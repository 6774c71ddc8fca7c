"""Workbooks (.xlsx/.xlsm, .xls, .ods) read as their program shows them, streamed.

Every cell gives the text its program displays (:mod:`campaign.spreadsheet.display`; .ods
stores that text itself: :mod:`campaign.spreadsheet.ods`); every cell of a merged range gives
the range's text; the first visible sheet is read unless one is named; title rows above the
header are skipped (:mod:`campaign.spreadsheet.header`). An .xlsx is checked part by part
before openpyxl sees it (zip bombs, entity declarations, damage) and then streamed with
openpyxl's read-only mode, so memory does not grow with the sheet. An .xls (at most 65,536
rows by the format) is read whole by xlrd, which alone gives its number formats.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.parsers import expat

from campaign.errors import InputFileError
from campaign.spreadsheet import ods
from campaign.spreadsheet.common import (
    CONVERT,
    EXCEL_SUFFIXES,
    OLE2_MAGIC,
    RecipientFile,
    SourceRow,
    clean,
    filled,
    header_names,
)
from campaign.spreadsheet.display import displayed, plain_text
from campaign.spreadsheet.formulas import UnsavedFormulas
from campaign.spreadsheet.header import Numbered, Wanted, find_header

MAX_UNZIPPED_BYTES = 1 << 30  # zip-bomb limits for workbooks
MAX_COMPRESSION_RATIO = 100
RATIO_FLOOR_BYTES = 1 << 20  # members smaller than this cannot bomb, whatever their ratio
_BLOCK = 1 << 20
_GENUINE_TAIL = "if the file is genuine, open it in Excel and save it as .csv"
_GENUINE = "refusing a possible zip bomb; " + _GENUINE_TAIL
_MERGE_CELL = re.compile(rb'<(?:[A-Za-z_][\w.-]*:)?mergeCell\b[^>]*?\bref="([A-Za-z]{1,3}\d+):([A-Za-z]{1,3}\d+)"')
_MERGE_TAIL = 512  # longer than any <mergeCell ref="..."/> element
#: A merged range: first and last row (1-based, as shown), first and last column (0-based).
Merge = tuple[int, int, int, int]
_WORKSHEET = re.compile(r"xl/worksheets/[^/]+\.xml", re.IGNORECASE)


@dataclass(frozen=True)
class Part:
    """What the scan found in one worksheet part: its merged ranges, and the first cell
    holding a formula without a saved result (``"C2"``), if any."""

    merges: list[Merge] = field(default_factory=list)
    unsaved_formula: str | None = None


class _EntityDeclared(Exception):
    """An XML part declares entities: the shape of a "billion laughs" attack."""


def check_zip(path: Path) -> dict[str, Part]:
    """Refuse what is not a sound .xlsx/.ods before it is read: wrong kind, bomb, damage.

    Returns what the same streaming pass found in each worksheet part (by its name in the
    archive): its merged ranges (openpyxl's read-only mode does not read them, and they come
    after the rows, so a reader that streams the rows needs them first) and its first formula
    without a saved result (:mod:`campaign.spreadsheet.formulas`; refused when the sheet is read).

    Every XML part is streamed through expat with entity declarations forbidden (openpyxl
    parses with defusedxml as well), which also proves the archive decompresses cleanly.
    """
    with path.open("rb") as stream:
        head = stream.read(8)
    if head.startswith(OLE2_MAGIC) and path.suffix.lower() != ".ods":
        raise InputFileError(
            path,
            "is password-protected (encrypted) or an old .xls file renamed: remove the "
            f"password in Excel (File > Info > Protect Workbook), or {CONVERT}",
        )
    if not head.startswith(b"PK"):
        kind = "an OpenDocument spreadsheet" if path.suffix.lower() == ".ods" else "an Excel file"
        raise InputFileError(path, f"is not {kind} (maybe it is a CSV renamed?)")
    member = ""
    parts: dict[str, Part] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            total = sum(info.file_size for info in infos)
            if total > MAX_UNZIPPED_BYTES:
                raise InputFileError(
                    path,
                    f"would unpack to {total:,} bytes (the limit is {MAX_UNZIPPED_BYTES:,}); " + _GENUINE,
                )
            for info in infos:
                ratio = info.file_size / max(info.compress_size, 1)
                if info.file_size > RATIO_FLOOR_BYTES and ratio > MAX_COMPRESSION_RATIO:
                    raise InputFileError(
                        path,
                        f"has a part {info.filename} of {info.compress_size:,} bytes that "
                        f"unpacks to {info.file_size:,} (ratio {ratio:,.0f}:1, the limit is "
                        f"{MAX_COMPRESSION_RATIO}:1); " + _GENUINE,
                    )
            for info in infos:
                if info.filename.endswith((".xml", ".rels")):
                    member = info.filename
                    found = _check_xml(archive, info, bool(_WORKSHEET.fullmatch(member)))
                    if found.merges or found.unsaved_formula:
                        parts[member] = found
    except _EntityDeclared as exc:
        raise InputFileError(
            path,
            f"declares XML entities in {member} (an entity-expansion attack?); refusing it; " + _GENUINE_TAIL,
        ) from exc
    except expat.ExpatError as exc:
        raise InputFileError(path, f"is damaged: {member} is not valid XML ({exc})") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        where = f"{member}: " if member else ""
        raise InputFileError(path, f"is damaged or incomplete ({where}{exc}); save or download it again") from exc
    return parts


def _check_xml(archive: zipfile.ZipFile, info: zipfile.ZipInfo, worksheet: bool) -> Part:
    """Parse one part, refusing entity declarations; return the merged ranges it lists and,
    for a ``worksheet`` part, its first formula without a saved result."""

    def refuse(*_: object) -> None:
        raise _EntityDeclared

    parser = expat.ParserCreate()
    parser.EntityDeclHandler = refuse
    refs: set[tuple[bytes, bytes]] = set()
    tail = b""  # the end of the previous block: a <mergeCell> may straddle two blocks
    formulas = UnsavedFormulas()
    with archive.open(info) as member:
        while block := member.read(_BLOCK):
            parser.Parse(block, False)
            if worksheet:
                formulas.feed(block)
            if b"mergeCell" in block or b"mergeCell" in tail + block[:_MERGE_TAIL]:
                refs.update(_MERGE_CELL.findall(tail + block))
            tail = block[-_MERGE_TAIL:]
    parser.Parse(b"", True)
    return Part(sorted(_merge(first, last) for first, last in refs), formulas.first)


def _merge(first: bytes, last: bytes) -> Merge:
    """A range such as ``B2:B4`` as (first row, last row, first column, last column)."""
    (c1, r1), (c2, r2) = _cell_ref(first), _cell_ref(last)
    return (r1, r2, c1, c2)


def _cell_ref(ref: bytes) -> tuple[int, int]:
    """``B12`` as (0-based column, 1-based row): 1, 12."""
    letters = ref.rstrip(b"0123456789")
    column = 0
    for letter in letters.upper():
        column = column * 26 + letter - ord("A") + 1
    return column - 1, int(ref[len(letters) :])


@contextmanager
def _sheet_rows(
    path: Path, wanted: str | None, parts: dict[str, Part]
) -> Iterator[tuple[str, Iterator[Numbered]]]:
    """Yield the chosen sheet's title and its rows (number, displayed texts), merges filled.

    Any failure while the caller reads the rows becomes an InputFileError too; so does a
    sheet with formulas whose results were never saved (their cells would read as blank).
    """
    suffix = path.suffix.lower()
    try:
        if suffix in EXCEL_SUFFIXES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # openpyxl warns about features it drops
                # Imported here: openpyxl costs ~0.1 s of start-up that CSV campaigns never need.
                import openpyxl
                from openpyxl.utils.datetime import CALENDAR_MAC_1904
                from openpyxl.worksheet._read_only import ReadOnlyWorksheet

                book = openpyxl.load_workbook(path, read_only=True, data_only=True)
            values: Iterator[Any] | None = None
            try:
                title = pick_sheet(path, wanted, [(s.title, s.sheet_state != "visible") for s in book.worksheets])
                worksheet = book[title]
                ranges: list[Merge] = []
                if isinstance(worksheet, ReadOnlyWorksheet):
                    worksheet.reset_dimensions()  # a wrong <dimension> must not cut rows off
                    part: str = getattr(worksheet, "_worksheet_path", "")  # openpyxl keeps it private
                    scanned = parts.get(part.lstrip("/"), Part())
                    ranges = scanned.merges
                    if scanned.unsaved_formula:
                        raise InputFileError(path, unsaved_message(title, scanned.unsaved_formula))
                values = worksheet.iter_rows()  # cells, not values: we need number formats
                mac = book.epoch == CALENDAR_MAC_1904
                texts = ((n, [_xlsx_text(cell, mac) for cell in row]) for n, row in enumerate(values, start=1))
                yield title, with_merges(texts, ranges)
            finally:
                if values is not None and hasattr(values, "close"):
                    values.close()  # it holds the sheet's part of the zip open
                book.close()
        elif suffix == ".xls":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import xlrd

                xls = xlrd.open_workbook(str(path), formatting_info=True, on_demand=False)
            try:
                title = pick_sheet(path, wanted, [(s.name, s.visibility != 0) for s in xls.sheets()])
                sheet = xls.sheet_by_name(title)
                xls_merges = [(r1 + 1, r2, c1, c2 - 1) for r1, r2, c1, c2 in sheet.merged_cells]
                yield title, with_merges(_xls_rows(xls, sheet), xls_merges)
            finally:
                xls.release_resources()
        else:
            title = pick_sheet(path, wanted, ods.sheets(path))
            rows = ods.rows(path, title)
            try:
                yield title, rows
            finally:
                rows.close()  # it holds content.xml open when the caller stops early
    except InputFileError:
        raise
    except Exception as exc:  # every library failure on a bad workbook, or the file vanishing
        raise InputFileError(path, f"cannot be read as a workbook ({type(exc).__name__}: {exc})") from exc


def list_sheets(path: Path) -> list[tuple[str, bool]]:
    """Every sheet of a workbook, in order, with whether it is hidden; InputFileError if unreadable."""
    suffix = path.suffix.lower()
    try:
        if suffix in EXCEL_SUFFIXES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import openpyxl

                book = openpyxl.load_workbook(path, read_only=True, data_only=True)
            try:
                return [(s.title, s.sheet_state != "visible") for s in book.worksheets]
            finally:
                book.close()
        if suffix == ".xls":
            import xlrd

            xls = xlrd.open_workbook(str(path), on_demand=True)
            try:
                return [(name, xls._sheet_visibility[i] != 0) for i, name in enumerate(xls.sheet_names())]
            finally:
                xls.release_resources()
        return ods.sheets(path)
    except Exception as exc:  # every library failure on a bad workbook, or the file vanishing
        raise InputFileError(path, f"cannot be read as a workbook ({type(exc).__name__}: {exc})") from exc


def _xlsx_text(cell: Any, mac: bool) -> str:
    value = cell.value
    if value is None or isinstance(value, str):  # text shows as itself: skip the style lookup
        return value or ""
    return displayed(value, cell.number_format, date1904=mac)


def _xls_rows(book: Any, sheet: Any) -> Iterator[Numbered]:
    """An xlrd sheet's rows as displayed text (xlrd cell types: xlrd.sheet.Cell)."""
    import xlrd
    from openpyxl.styles.numbers import is_date_format

    date1904 = book.datemode == 1
    for r in range(sheet.nrows):
        texts: list[str] = []
        for cell in sheet.row(r):
            kind, value = cell.ctype, cell.value
            if kind in (xlrd.XL_CELL_NUMBER, xlrd.XL_CELL_DATE):
                fmt = book.format_map[book.xf_list[cell.xf_index].format_key].format_str
                # xlrd takes [mm] and [ss] for numbers; openpyxl's test is the one .xlsx cells get
                is_date = kind == xlrd.XL_CELL_DATE or is_date_format(fmt)
                if kind == xlrd.XL_CELL_DATE and fmt.strip().casefold() in ("general", ""):
                    with contextlib.suppress(ValueError, xlrd.xldate.XLDateError):
                        value = xlrd.xldate.xldate_as_datetime(value, book.datemode)
                    texts.append(plain_text(value))
                else:
                    texts.append(displayed(float(value), fmt, date1904=date1904, is_date=is_date))
            elif kind == xlrd.XL_CELL_TEXT:
                texts.append(value)
            elif kind == xlrd.XL_CELL_BOOLEAN:
                texts.append("TRUE" if value else "FALSE")
            elif kind == xlrd.XL_CELL_ERROR:
                texts.append(xlrd.error_text_from_code.get(value, ""))
            else:
                texts.append("")
        yield r + 1, texts


def with_merges(rows: Iterator[Numbered], merges: Sequence[Merge]) -> Iterator[Numbered]:
    """Give every row of a merged range the range's text (its top-left cell's), row by row.

    The text goes down the range's first column only: a range merged across columns (a title
    over the table, a header over two columns) must not copy its text into its neighbours,
    which would make them duplicate header names. Rows inside a range that the reader
    skipped as empty are made, so that none is lost.
    """
    vertical = [m for m in merges if m[1] > m[0]]
    if not vertical:
        yield from rows
        return
    starts: dict[int, list[Merge]] = {}
    for merge in vertical:
        starts.setdefault(merge[0], []).append(merge)
    active: list[tuple[int, int, str]] = []  # last row, column, text

    def fill(number: int, cells: list[str]) -> list[str]:
        for last, column, text in active:
            if number <= last:
                cells.extend([""] * (column + 1 - len(cells)))
                if not cells[column].strip():
                    cells[column] = text
        return cells

    previous = 0
    for number, cells in rows:
        while active and previous + 1 < number:  # rows the reader skipped inside a range
            previous += 1
            active = [a for a in active if a[0] >= previous]
            if active:
                yield previous, fill(previous, [])
        for _, last, column, _ in starts.pop(number, ()):
            text = cells[column] if column < len(cells) else ""
            if text.strip():
                active.append((last, column, text))
        yield number, fill(number, cells)
        previous = number
        active = [a for a in active if a[0] > number]
    while active:
        previous += 1
        active = [a for a in active if a[0] >= previous]
        if active:
            yield previous, fill(previous, [])


def open_sheet(
    path: Path,
    wanted_sheet: str | None,
    allow_empty: bool,
    wanted: Wanted = None,
    header_row: int | None = None,
    parts: dict[str, Part] | None = None,
) -> RecipientFile:
    """Find the header and make sure at least one row follows; InputFileError if not.

    Columns left of the first header name and right of the last are ignored (a table may
    start anywhere on the sheet, and notes often sit beside it); unnamed columns between
    named ones become ``column_<n>``, n being the sheet's column number (A is 1).
    """
    parts = parts or {}
    has_rows = False
    with _sheet_rows(path, wanted_sheet, parts) as (title, rows):
        found = find_header(path, rows, wanted, header_row, f'(sheet "{title}") ')
        if found is None:
            raise InputFileError(path, f'sheet "{title}" is empty')
        (header_number, texts), after = found
        named = [i for i, text in enumerate(texts) if clean(text)]
        first = named[0]
        header = texts[first : named[-1] + 1]
        for _, values in itertools.chain(after, rows):
            if filled(values[first : first + len(header)]):
                has_rows = True
                break
    columns = header_names(path, header, list(range(first + 1, first + len(header) + 1)))
    if not has_rows and not allow_empty:
        raise InputFileError(
            path,
            f'has a header (sheet "{title}", row {header_number}) but no rows; add one row per recipient '
            "below it, or set [recipients] sheet to the sheet that has them",
        )
    width, end = len(columns), first + len(columns)

    def read(size: int) -> Iterator[list[SourceRow]]:
        chunk: list[SourceRow] = []
        with _sheet_rows(path, title, parts) as (_, numbered):
            for number, values in numbered:
                if number <= header_number:
                    continue
                cells = tuple(values[first:end])
                cells += ("",) * (width - len(cells))
                if filled(cells):
                    chunk.append(SourceRow(number, cells))
                    if len(chunk) == size:
                        yield chunk
                        chunk = []
        if chunk:
            yield chunk

    return RecipientFile(path, columns, read, sheet=title, header_row=header_number, header=header)


def unsaved_message(sheet: str, cell: str) -> str:
    """The sentence for a sheet whose formulas have no saved results (after the file name)."""
    where = "a cell" if cell == "a cell" else f"cell {cell}"
    return (
        f'has formulas without saved results (sheet "{sheet}", first at {where}), so their cells '
        "would be sent blank; open the file in Excel or LibreOffice and save it, so the results are stored"
    )


def pick_sheet(path: Path, wanted: str | None, sheets: list[tuple[str, bool]]) -> str:
    """The sheet asked for (exact name, else unique case-insensitive), or the first visible.

    A hidden sheet is never chosen unless named: it often holds lookups or old data.
    """
    if not sheets:
        raise InputFileError(path, "has no worksheets")
    if wanted is None:
        visible = next((title for title, hidden in sheets if not hidden), None)
        if visible is None:
            raise InputFileError(path, "has only hidden sheets: set [recipients] sheet to the one to read")
        return visible
    titles = [title for title, _ in sheets]
    if wanted in titles:
        return wanted
    hits = [t for t in titles if t.strip().casefold() == wanted.strip().casefold()]
    if len(hits) == 1:
        return hits[0]
    shown = ", ".join(f'"{t}"' + (" (hidden)" if hidden else "") for t, hidden in sheets)
    raise InputFileError(
        path, f'has no sheet "{wanted}"; its sheets are {shown}: set [recipients] sheet to one of them'
    )
