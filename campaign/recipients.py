"""Reading recipients files: CSV/TSV/TXT and Excel, streamed, every cell as text.

A recipients file is a spreadsheet a person exported or typed, so this module is defensive:
``open_recipients`` validates the whole file *before* anything is sent (a file that breaks
halfway through a campaign leaves it half sent), and every problem becomes one
``InputFileError`` sentence naming the file, the row or column and what to do.

Cells are always text: a phone number must never become a float or lose its leading zeros,
and an empty cell is ``""``, never ``nan``. Row numbers are the ones a spreadsheet program
shows (the header is row 1 when it is the first line), so users can find any row we report.
Reading streams in chunks, so memory does not grow with the file.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import importlib.util
import math
import re
import unicodedata
import warnings
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import AnyStr
from xml.parsers import expat

import pandas as pd

from campaign.errors import InputFileError

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
#: Legacy formats, read through pandas only when their reader happens to be installed.
_EMPTY = "is empty: it has no header and no rows; export the contacts again with a header row"
_GENUINE_TAIL = "if the file is genuine, open it in Excel and save it as .csv"
_GENUINE = "refusing a possible zip bomb; " + _GENUINE_TAIL
LEGACY_READERS = {".xls": "python_calamine", ".ods": "python_calamine"}  # module needed per suffix
MAX_LINE_BYTES = 1 << 20  # a longer line means the file is not really delimited text
MAX_UNZIPPED_BYTES = 1 << 30  # zip-bomb limits for Excel files
MAX_COMPRESSION_RATIO = 100
RATIO_FLOOR_BYTES = 1 << 20  # members smaller than this cannot bomb, whatever their ratio
_BLOCK = 1 << 20  # never above MAX_LINE_BYTES: _LineScan relies on it
_SNIFF_BYTES = 64 * 1024
_DELIMITERS = ",;\t|"
_CP1252_HOLES = (0x81, 0x8D, 0x8F, 0x90, 0x9D)  # the bytes Windows-1252 leaves undefined
_VALIDATE_ROWS = 10_000
_EMPTY_LINE = re.compile(r'[\s,;|"\ufeff]*')
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZEROS = re.compile("0+")
_FORMAT_PUNCTUATION = str.maketrans("", "", ' -()\\"')  # separators in formats like 000-000
_CONVERT = "open it in Excel or LibreOffice and save it as .xlsx or .csv"


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One data row: its number as a spreadsheet program shows it, and its cells as text."""

    number: int  # the header is row 1 when it is the file's first line
    cells: tuple[str, ...]  # aligned with RecipientFile.columns; an empty cell is ""


class RecipientFile:
    """A recipients file that has been opened and validated; ``chunks()`` streams its rows.

    Nothing is held open between calls: each ``chunks()`` reads the file again from the start.
    """

    def __init__(
        self,
        path: Path,
        columns: Sequence[str],
        read: Callable[[int], Iterator[list[SourceRow]]],
        *,
        encoding: str | None = None,
        sheet: str | None = None,
    ) -> None:
        self.path = path
        self.columns = tuple(columns)
        self.encoding = encoding  # the text encoding detected (None for Excel)
        self.sheet = sheet  # the sheet read (None for delimited text)
        self._read = read

    def __repr__(self) -> str:
        return f"RecipientFile({str(self.path)!r}, columns={self.columns!r})"

    def find_column(self, name: str, *, key: str = "phone_column") -> int:
        """Index of the column ``name`` (the campaign file's ``key``); InputFileError if absent.

        An exact match wins; otherwise a unique match by :func:`header_key` (ignoring case,
        surrounding and repeated spaces, and invisible characters such as a BOM).
        """
        index = self.find_optional_column(name, key=key)
        if index is None:
            wanted = name.strip()
            message = f'has no column "{visible(wanted)}" (set by {key} in the campaign file)'
            message += f"; its columns are {_quoted(self.columns)}"
            folded = {header_key(column): column for column in self.columns}
            close = difflib.get_close_matches(header_key(wanted), list(folded), n=1)
            hint = f'. Did you mean "{visible(folded[close[0]])}"?' if close else ""
            raise InputFileError(self.path, message + hint)
        return index

    def find_optional_column(self, name: str, *, key: str = "name_column") -> int | None:
        """Like ``find_column`` but ``None`` when no column matches (for optional columns)."""
        wanted = name.strip()
        if wanted in self.columns:
            return self.columns.index(wanted)
        hits = [i for i, c in enumerate(self.columns) if header_key(c) == header_key(wanted)]
        if len(hits) > 1:
            names = _quoted(self.columns[i] for i in hits)
            raise InputFileError(
                self.path,
                f'{key} "{visible(wanted)}" matches several columns ({names}); '
                "write the column name exactly as in the header",
            )
        return hits[0] if hits else None

    def chunks(self, size: int = 2000) -> Iterator[list[SourceRow]]:
        """Stream the data rows in lists of at most ``size``, skipping rows with no text."""
        if size < 1:
            raise ValueError("chunk size must be at least 1")
        return self._read(size)


def open_recipients(path: Path, *, sheet: str | None = None, allow_empty: bool = False) -> RecipientFile:
    """Open and validate a recipients file; everything that makes it unreadable raises here.

    ``sheet`` chooses an Excel sheet (default: the first visible one); delimited text has no
    sheets, so it is ignored there. A header with no rows is an error unless ``allow_empty``
    (an empty suppression list is fine, an empty recipients list is a mistake).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    supported = TEXT_SUFFIXES + EXCEL_SUFFIXES + tuple(LEGACY_READERS)
    if suffix not in supported:
        kind = f'is a "{suffix}" file' if suffix else "has no suffix"
        raise InputFileError(path, f"{kind}; recipients files must be one of {', '.join(supported)}")
    if not path.is_file():
        raise InputFileError(path, "does not exist or is not a file")
    try:
        if suffix in TEXT_SUFFIXES:
            return _open_text(path, suffix, allow_empty)
        if suffix in EXCEL_SUFFIXES or suffix == ".ods":  # both are zip archives of XML parts
            _check_zip(path)
        elif importlib.util.find_spec(LEGACY_READERS[suffix]) is None:
            raise InputFileError(path, f"is a {suffix} file, which cannot be read here: {_CONVERT}")
        return _open_sheet(path, sheet, allow_empty)
    except OSError as exc:
        raise InputFileError(path, f"cannot be read ({exc.strerror or exc})") from exc


# --- delimited text ---------------------------------------------------------------------


class _LineScan:
    """Counts lines as the blocks of a text file go by; refuses NULs and absurdly long lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0  # line breaks seen so far
        self.current = 0  # length of the line in progress
        self.content = False  # seen anything but whitespace, delimiters and quotes
        self.carriage: bool | None = None  # old-Mac files end lines with "\r" alone

    def feed(self, block: AnyStr, lf: AnyStr, cr: AnyStr, nul: AnyStr, blank: AnyStr) -> None:
        """Account for one block (bytes, or text for UTF-16); blocks are at most 1 MiB."""
        if self.carriage is None:
            self.carriage = lf not in block and cr in block
        newline = cr if self.carriage else lf
        where = block.find(nul)
        if where >= 0:
            line = self.lines + block.count(newline, 0, where) + 1
            raise InputFileError(
                self.path,
                f"line {line} contains a NUL byte: this looks like a binary file, not "
                "delimited text (if it is UTF-16 text without a BOM, save it as UTF-8)",
            )
        first = block.find(newline)
        # A line inside a block is shorter than the block, so only the one continuing from
        # the previous block and the one running past this block can be too long.
        head = self.current + (len(block) if first < 0 else first)
        if head > MAX_LINE_BYTES:
            raise InputFileError(
                self.path,
                f"line {self.lines + 1} is longer than 1 MiB, which no contacts file needs; check that this is the "
                "right file, or export the contacts again as CSV",
            )
        if first < 0:
            self.current = head
        else:
            self.current = len(block) - block.rfind(newline) - 1
            self.lines += block.count(newline)
        if not self.content and block.strip(blank):
            self.content = True


def _scan_text(path: Path) -> str:
    """Decide the encoding in one streaming pass over the bytes, and refuse non-text files.

    A file that is valid UTF-8 is UTF-8, else Windows-1252 (what Excel writes on Windows);
    a UTF-16 file must start with a BOM. Returns the codec name to read it with.
    """
    scan = _LineScan(path)
    with path.open("rb") as stream:
        block = stream.read(_BLOCK)
        for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
            if block.startswith(bom):
                decoder = codecs.getincrementaldecoder(codec)()
                block = block[len(bom) :]
                while True:
                    try:
                        text = decoder.decode(block, final=not block)
                    except UnicodeDecodeError as exc:
                        where = f"line {scan.lines + 1}" if block else "its end"
                        raise InputFileError(path, f"is not valid UTF-16 ({where})") from exc
                    if not block:
                        return _checked(path, scan, codec)
                    scan.feed(text, "\n", "\r", "\x00", ' \t\r\n,;|"\ufeff')
                    block = stream.read(_BLOCK)
        _refuse_binary(path, block)
        codec = "utf-8-sig" if block.startswith(codecs.BOM_UTF8) else "utf-8"
        utf8 = codecs.getincrementaldecoder(codec)()
        bad_utf8: int | None = None  # line of the first byte that is not UTF-8
        hole: tuple[int, int] | None = None  # (line, byte) of the first byte cp1252 lacks
        while block:
            if bad_utf8 is None:
                try:
                    utf8.decode(block)
                except UnicodeDecodeError as exc:
                    start = max(exc.start - len(utf8.getstate()[0]), 0)
                    bad_utf8 = scan.lines + block.count(b"\n", 0, start) + 1
            if hole is None:
                found = [(block.find(bytes([b])), b) for b in _CP1252_HOLES]
                if spots := sorted(spot for spot in found if spot[0] >= 0):
                    hole = (scan.lines + block.count(b"\n", 0, spots[0][0]) + 1, spots[0][1])
            scan.feed(block, b"\n", b"\r", b"\x00", b' \t\r\n,;|"\xef\xbb\xbf')
            block = stream.read(_BLOCK)
        if bad_utf8 is None:
            try:
                utf8.decode(b"", final=True)
            except UnicodeDecodeError:
                bad_utf8 = scan.lines + 1
    if bad_utf8 is None:
        return _checked(path, scan, codec)
    if codec == "utf-8-sig":
        raise InputFileError(path, f"starts with a UTF-8 mark but line {bad_utf8} is not UTF-8; save it as UTF-8")
    if hole is not None:
        raise InputFileError(
            path,
            f"cannot be decoded: line {hole[0]} has the byte 0x{hole[1]:02X}, which is neither "
            f"UTF-8 (first invalid on line {bad_utf8}) nor Windows-1252 (tried both); "
            "save the file as CSV UTF-8",
        )
    return _checked(path, scan, "cp1252")


def _checked(path: Path, scan: _LineScan, codec: str) -> str:
    if not scan.content:
        raise InputFileError(path, _EMPTY)
    return codec


def _refuse_binary(path: Path, head: bytes) -> None:
    """Name the usual suspects among binary files given a text suffix."""
    if head.startswith(b"PK\x03\x04"):
        raise InputFileError(path, "is a zip archive (an Excel .xlsx file?), not delimited text: name it .xlsx")
    if head.startswith(_OLE2_MAGIC) and path.suffix.lower() != ".ods":
        raise InputFileError(path, f"is an old binary Office file, not delimited text: {_CONVERT}")


def _layout(path: Path, codec: str, suffix: str) -> tuple[str, int]:
    """Sniff the delimiter and count the empty lines above the header, from the first 64 KB."""
    with path.open("rb") as stream:
        raw = stream.read(_SNIFF_BYTES)
    lines = re.split(r"\r\n|\r|\n", raw.decode(codec, errors="ignore").lstrip("\ufeff"))
    if len(raw) == _SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # probably cut short
    skip = next((i for i, line in enumerate(lines) if not _EMPTY_LINE.fullmatch(line)), None)
    if skip is None:
        raise InputFileError(path, "has only empty lines in its first 64 KB: where is the header?")
    if suffix == ".tsv":
        return "\t", skip
    header = lines[skip]
    try:
        sep = csv.Sniffer().sniff("\n".join(lines[skip:]), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        sep = ""
    if not sep or sep not in header:  # fall back to what the header line holds most of
        sep = max(_DELIMITERS, key=header.count)
        sep = sep if sep in header else ","
    return sep, skip


def _frames(path: Path, codec: str, sep: str, skip: int, size: int) -> Iterator[pd.DataFrame]:
    """Every record (blank ones included) as text, the header record first, ``size`` at a time."""
    try:
        with pd.read_csv(
            path,
            sep=sep,
            header=None,
            skiprows=skip or None,
            encoding=codec,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            engine="c",
            chunksize=size,
        ) as reader:
            for frame in reader:
                yield frame.fillna("") if frame.isna().to_numpy().any() else frame
    except pd.errors.ParserError as exc:
        raise _parser_error(path, exc, sep) from exc
    except pd.errors.EmptyDataError as exc:
        raise InputFileError(path, _EMPTY) from exc
    except (UnicodeError, OSError) as exc:
        raise InputFileError(path, f"cannot be read any more ({exc})") from exc


def _parser_error(path: Path, exc: Exception, sep: str) -> InputFileError:
    """Turn pandas' tokenizer messages (whose numbers count records) into row numbers."""
    text = str(exc)
    if match := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text):
        wanted, row, saw = match.groups()
        shown = "a tab" if sep == "\t" else f'"{sep}"'
        return InputFileError(
            path,
            f"row {row} has {saw} cells but the header has {wanted} columns "
            f"(a {shown} inside a cell that is not in quotes?)",
        )
    if match := re.search(r"EOF inside string starting at row (\d+)", text):
        return InputFileError(
            path,
            f'row {int(match.group(1)) + 1} opens a quoted cell (") that is never closed; '
            "check that row for a stray quote",
        )
    return InputFileError(path, f"cannot be read as delimited text ({text.strip()})")


def _open_text(path: Path, suffix: str, allow_empty: bool) -> RecipientFile:
    """Validate delimited text with a full streaming parse, exactly as ``chunks()`` parses it."""
    codec = _scan_text(path)
    sep, skip = _layout(path, codec, suffix)
    raw: list[str] = []
    trailing: list[int] = []  # unnamed columns after the last named one
    used: set[int] = set()  # ... those of them that hold data somewhere
    has_rows = False
    for frame in _frames(path, codec, sep, skip, _VALIDATE_ROWS):
        if not raw:
            raw = [str(value) for value in frame.iloc[0]]
            named = [i for i, name in enumerate(raw) if _clean(name)]
            trailing = list(range(named[-1] + 1 if named else 0, len(raw)))
            frame = frame.iloc[1:]
        if not has_rows:
            has_rows = any(_filled(row) for row in frame.itertuples(index=False, name=None))
        for index in set(trailing) - used:
            if frame[index].str.strip().ne("").any():
                used.add(index)
    keep = [i for i in range(len(raw)) if i not in trailing or i in used]
    columns = _header(path, [raw[i] for i in keep], [i + 1 for i in keep])
    if not has_rows and not allow_empty:
        raise InputFileError(path, f"has a header (row {skip + 1}) but no rows; add one row per recipient below it")

    def read(size: int) -> Iterator[list[SourceRow]]:
        number = skip  # the row number of the last record read
        whole = keep == list(range(len(raw)))
        for frame in _frames(path, codec, sep, skip, size):
            rows: list[SourceRow] = []
            for values in frame.to_numpy(dtype=object).tolist():
                number += 1
                cells = tuple(values) if whole else tuple([values[i] for i in keep])
                if "".join(cells).strip() and number > skip + 1:
                    rows.append(SourceRow(number, cells))
            if rows:
                yield rows

    return RecipientFile(path, columns, read, encoding=codec)


# --- Excel and other workbooks ----------------------------------------------------------


class _EntityDeclared(Exception):
    """An XML part declares entities: the shape of a "billion laughs" attack."""


def _check_zip(path: Path) -> None:
    """Refuse what is not a sound .xlsx before openpyxl sees it: wrong kind, bomb, damage.

    Every XML part is streamed through expat with entity declarations forbidden (openpyxl
    parses with defusedxml as well), which also proves the archive decompresses cleanly.
    """
    with path.open("rb") as stream:
        head = stream.read(8)
    if head.startswith(_OLE2_MAGIC) and path.suffix.lower() != ".ods":
        raise InputFileError(
            path,
            "is password-protected (encrypted) or an old .xls file renamed: remove the "
            f"password in Excel (File > Info > Protect Workbook), or {_CONVERT}",
        )
    if not head.startswith(b"PK"):
        kind = "an OpenDocument spreadsheet" if path.suffix.lower() == ".ods" else "an Excel file"
        raise InputFileError(path, f"is not {kind} (maybe it is a CSV renamed?)")
    member = ""
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
                    _check_xml(archive, info)
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


def _check_xml(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    def refuse(*_: object) -> None:
        raise _EntityDeclared

    parser = expat.ParserCreate()
    parser.EntityDeclHandler = refuse
    with archive.open(info) as member:
        while block := member.read(_BLOCK):
            parser.Parse(block, False)
    parser.Parse(b"", True)


_Sheet = tuple[str, Iterator[Sequence[object]], Callable[[object], str]]


@contextmanager
def _sheet_values(path: Path, wanted: str | None) -> Iterator[_Sheet]:
    """Yield the chosen sheet's title, its rows of cells from row 1 on, and how to read a cell.

    Any failure while the caller reads the rows becomes an InputFileError too.
    """
    suffix = path.suffix.lower()
    try:
        if suffix in EXCEL_SUFFIXES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # openpyxl warns about features it drops
                # Imported here: openpyxl costs ~0.1 s of start-up that CSV campaigns never need.
                import openpyxl
                from openpyxl.worksheet._read_only import ReadOnlyWorksheet

                book = openpyxl.load_workbook(path, read_only=True, data_only=True)
            values: Iterator[Sequence[object]] | None = None
            try:
                sheets = [(s.title, s.sheet_state != "visible") for s in book.worksheets]
                title = _pick_sheet(path, wanted, sheets)
                worksheet = book[title]
                if isinstance(worksheet, ReadOnlyWorksheet):
                    worksheet.reset_dimensions()  # a wrong <dimension> must not cut rows off
                values = worksheet.iter_rows()  # cells, not values: we need number formats
                yield title, values, _xlsx_text
            finally:
                if isinstance(values, Generator):
                    values.close()  # it holds the sheet's part of the zip open
                book.close()
        else:  # legacy formats: pandas reads the whole sheet (they are small by nature)
            with warnings.catch_warnings(), pd.ExcelFile(path, engine="calamine") as book_:
                warnings.simplefilter("ignore")
                title = _pick_sheet(path, wanted, [(str(s), False) for s in book_.sheet_names])
                frame = pd.read_excel(book_, sheet_name=title, header=None, dtype=object)
            yield title, frame.itertuples(index=False, name=None), _cell_text
    except InputFileError:
        raise
    except Exception as exc:  # every library failure on a bad workbook, or the file vanishing
        raise InputFileError(path, f"cannot be read as a workbook ({type(exc).__name__}: {exc})") from exc


def _pick_sheet(path: Path, wanted: str | None, sheets: list[tuple[str, bool]]) -> str:
    """The sheet asked for (exact name, else unique case-insensitive), or the first visible."""
    if not sheets:
        raise InputFileError(path, "has no worksheets")
    if wanted is None:
        return next((title for title, hidden in sheets if not hidden), sheets[0][0])
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


def _open_sheet(path: Path, wanted: str | None, allow_empty: bool) -> RecipientFile:
    """Find the header (the first non-empty row) and make sure at least one row follows.

    Columns left of the first header name and right of the last are ignored (a table may
    start anywhere on the sheet, and notes often sit beside it); unnamed columns between
    named ones become ``column_<n>``, n being the sheet's column number (A is 1).
    """
    header_row = first = 0  # the header's row, and its first named column (0-based)
    header: list[str] = []
    has_rows = False
    with _sheet_values(path, wanted) as (title, rows, text):
        for number, values in enumerate(rows, start=1):
            texts = [text(value) for value in values]
            if not header_row and _filled(texts):
                header_row = number
                named = [i for i, text in enumerate(texts) if _clean(text)]
                first = named[0]
                header = texts[first : named[-1] + 1]
            elif header_row and _filled(texts[first : first + len(header)]):
                has_rows = True
                break
    if not header_row:
        raise InputFileError(path, f'sheet "{title}" is empty')
    columns = _header(path, header, list(range(first + 1, first + len(header) + 1)))
    if not has_rows and not allow_empty:
        raise InputFileError(
            path,
            f'has a header (sheet "{title}", row {header_row}) but no rows; add one row per recipient '
            "below it, or set [recipients] sheet to the sheet that has them",
        )
    width, end = len(columns), first + len(columns)

    def read(size: int) -> Iterator[list[SourceRow]]:
        rows: list[SourceRow] = []
        with _sheet_values(path, title) as (_, values_by_row, text):
            for number, values in enumerate(values_by_row, start=1):
                if number <= header_row:
                    continue
                cells = tuple([text(value) for value in values[first:end]])
                cells += ("",) * (width - len(cells))
                if _filled(cells):
                    rows.append(SourceRow(number, cells))
                    if len(rows) == size:
                        yield rows
                        rows = []
        if rows:
            yield rows

    return RecipientFile(path, columns, read, sheet=title)


def _xlsx_text(cell: object) -> str:
    """An openpyxl cell as text; a number formatted with leading zeros keeps them.

    Phone numbers are often stored as numbers with a format such as ``00000000000`` so that
    Excel shows 07700900123: we give what Excel shows (digits only), not 7700900123.
    """
    value = getattr(cell, "value", None)
    text = _cell_text(value)
    if type(value) in (int, float) and text.isdigit():
        zeros = str(getattr(cell, "number_format", "")).translate(_FORMAT_PUNCTUATION)
        if _ZEROS.fullmatch(zeros):
            return text.zfill(len(zeros))
    return text


def _cell_text(value: object) -> str:
    """A workbook value as the text a person expects to see (and a phone number needs).

    Formula cells give their cached value, which files written by openpyxl lack (then "").
    In a merged range only the top-left cell holds the value; the others are "".
    """
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))  # 16175550100.0 is a phone number, not a float
        return format(value, ".15g")  # what Excel displays: 0.1 is "0.1"
    if isinstance(value, datetime):
        if value.time() == time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat(timespec="seconds" if not value.microsecond else "auto")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):  # a duration cell such as [h]:mm:ss
        hours, rest = divmod(round(abs(value.total_seconds())), 3600)
        sign = "-" if value < timedelta(0) else ""
        return f"{sign}{hours}:{rest // 60:02}:{rest % 60:02}"
    return str(value)


# --- shared -----------------------------------------------------------------------------


def _clean(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip()


def _filled(cells: Iterable[str]) -> bool:
    """Whether any cell holds more than whitespace (rows without are skipped)."""
    return bool("".join(cells).strip())


def header_key(name: str) -> str:
    """A header as people read it, for matching names given in the campaign file.

    Compatibility-normalised (NFKC: a full-width or ligature letter is the plain one), without
    invisible format characters (a stray BOM, a zero-width space: Unicode category Cf), with
    runs of spaces as one and case folded. Two headers with one key look the same on screen,
    so an error can never say a column is missing while listing it.
    """
    text = "".join(ch for ch in unicodedata.normalize("NFKC", name) if unicodedata.category(ch) != "Cf")
    return " ".join(text.split()).casefold()


def visible(name: str) -> str:
    """A header or value as an error message shows it: a character that prints as nothing
    (zero-width space, BOM, no-break space, control character) is written ``<U+200B>``."""
    return "".join(ch if ch.isprintable() else f"<U+{ord(ch):04X}>" for ch in name)


def _quoted(names: Iterable[str], limit: int = 30) -> str:
    names = list(names)
    text = ", ".join(f'"{visible(name)}"' for name in names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _header(path: Path, raw: Sequence[str], positions: Sequence[int]) -> tuple[str, ...]:
    """Clean header names; an empty one becomes ``column_<n>``; duplicates are refused."""
    names = [_clean(name) or f"column_{n}" for name, n in zip(raw, positions, strict=True)]
    seen: dict[str, list[int]] = {}
    for name, n in zip(names, positions, strict=True):
        seen.setdefault(name.casefold(), []).append(n)
    dupes = [
        f'"{names[positions.index(ns[0])]}" (columns {", ".join(map(str, ns[:-1]))} and {ns[-1]})'
        for ns in seen.values()
        if len(ns) > 1
    ]
    if dupes:
        raise InputFileError(
            path,
            f"has duplicate column names: {'; '.join(dupes)}; rename them so each is unique",
        )
    return tuple(names)
