"""Delimited text (CSV/TSV/TXT) as a spreadsheet program opens it, streamed in chunks.

The encoding is decided in one streaming pass (UTF-8, else Windows-1252; UTF-16 with a BOM),
the delimiter is sniffed, and Excel's ``sep=;`` first line sets it (Excel hides that line, so
row numbers count from the line after it). Title lines above the header are skipped: see
:mod:`campaign.spreadsheet.header`. The whole file is parsed once when it is opened, so a file
that would break halfway through a campaign is refused before anything is sent.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from pathlib import Path
from typing import AnyStr

import pandas as pd

from campaign.errors import InputFileError
from campaign.spreadsheet.common import (
    CONVERT,
    EMPTY,
    HEADER_SEARCH_ROWS,
    OLE2_MAGIC,
    RecipientFile,
    SourceRow,
    clean,
    filled,
    header_names,
)
from campaign.spreadsheet.header import (
    Wanted,
    count_filled,
    folded_names,
    holds,
    table_start,
    titles_only,
    width,
)

MAX_LINE_BYTES = 1 << 20  # a longer line means the file is not really delimited text
_BLOCK = 1 << 20  # never above MAX_LINE_BYTES: _LineScan relies on it
_SNIFF_BYTES = 64 * 1024
_DELIMITERS = ",;\t|"
_CP1252_HOLES = (0x81, 0x8D, 0x8F, 0x90, 0x9D)  # the bytes Windows-1252 leaves undefined
_VALIDATE_ROWS = 10_000
_EMPTY_LINE = re.compile(r'[\s,;|"\ufeff]*')
_SEP_HINT = re.compile(r'"?sep=(.)"?[,;\t|]*', re.IGNORECASE)  # Excel's delimiter line


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
        raise InputFileError(path, EMPTY)
    return codec


def _refuse_binary(path: Path, head: bytes) -> None:
    """Name the usual suspects among binary files given a text suffix."""
    if head.startswith(b"PK\x03\x04"):
        raise InputFileError(path, "is a zip archive (an Excel .xlsx file?), not delimited text: name it .xlsx")
    if head.startswith(OLE2_MAGIC) and path.suffix.lower() != ".ods":
        raise InputFileError(path, f"is an old binary Office file, not delimited text: {CONVERT}")


def _layout(path: Path, codec: str, suffix: str, wanted: Wanted, header_row: int | None) -> tuple[str, int, int]:
    """Sniff the delimiter and find the header line, from the first 64 KB.

    Returns the delimiter, the number of lines above the header, and 1 when the first line is
    Excel's ``sep=`` hint (which Excel hides, so row numbers start after it), else 0.
    """
    with path.open("rb") as stream:
        raw = stream.read(_SNIFF_BYTES)
    lines = re.split(r"\r\n|\r|\n", raw.decode(codec, errors="ignore").lstrip("\ufeff"))
    if len(raw) == _SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # probably cut short
    sep = "\t" if suffix == ".tsv" else ""
    hint = 0
    if match := _SEP_HINT.fullmatch(lines[0].strip()):
        sep, hint = match.group(1), 1
    filled_lines = [i for i in range(hint, len(lines)) if not _EMPTY_LINE.fullmatch(lines[i])]
    if not filled_lines:
        raise InputFileError(path, "has only empty lines in its first 64 KB: where is the header?")
    if header_row is not None:
        skip = header_row - 1 + hint
        if skip not in filled_lines:
            state = "is empty" if skip < len(lines) else "is not in the first 64 KB"
            raise InputFileError(path, f"row {header_row} {state}, but [recipients] header_row names it as the header")
    else:
        skip = filled_lines[0]
        names = folded_names(wanted)
        searched = filled_lines[:HEADER_SEARCH_ROWS] if names else []
        for n, i in enumerate(searched):
            found = [d for d in sep or _DELIMITERS if holds(_cells(lines[i], d), names)]
            if not found:
                continue
            d = found[0] if len(found) == 1 else sep or ","
            above = [width(_cells(lines[j], d)) for j in searched[:n]]
            if titles_only(above, count_filled(_cells(lines[i], d))):  # as header.find_header
                skip = i
                if not sep and len(found) == 1:
                    sep = d  # the delimiter that makes the phone column's name a cell
            break
        else:  # no row names the phone column: skip title rows, so the error lists the real headers
            if searched:
                d = sep or max(_DELIMITERS, key=lambda c: sum(lines[i].count(c) for i in searched))
                skip = searched[table_start([width(_cells(lines[i], d)) for i in searched])]
    if sep:
        return sep, skip, hint
    header = lines[skip]
    try:
        sep = csv.Sniffer().sniff("\n".join(lines[skip:]), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        sep = ""
    if not sep or sep not in header:  # fall back to what the header line holds most of
        sep = max(_DELIMITERS, key=header.count)
        sep = sep if sep in header else ","
    return sep, skip, hint


def _cells(line: str, sep: str) -> list[str]:
    """One line's cells, split as the csv module would."""
    return next(csv.reader([line], delimiter=sep), [])


def _frames(path: Path, codec: str, sep: str, skip: int, size: int, hint: int = 0) -> Iterator[pd.DataFrame]:
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
        raise _parser_error(path, exc, sep, hint) from exc
    except pd.errors.EmptyDataError as exc:
        raise InputFileError(path, EMPTY) from exc
    except (UnicodeError, OSError) as exc:
        raise InputFileError(path, f"cannot be read any more ({exc})") from exc


def _parser_error(path: Path, exc: Exception, sep: str, hint: int = 0) -> InputFileError:
    """Turn pandas' tokenizer messages (whose numbers count records) into row numbers."""
    text = str(exc)
    if match := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text):
        wanted, row, saw = match.groups()
        shown = "a tab" if sep == "\t" else f'"{sep}"'
        return InputFileError(
            path,
            f"row {int(row) - hint} has {saw} cells but the header has {wanted} columns "
            f"(a {shown} inside a cell that is not in quotes?)",
        )
    if match := re.search(r"EOF inside string starting at row (\d+)", text):
        return InputFileError(
            path,
            f'row {int(match.group(1)) + 1 - hint} opens a quoted cell (") that is never closed; '
            "check that row for a stray quote",
        )
    return InputFileError(path, f"cannot be read as delimited text ({text.strip()})")


def open_text(
    path: Path, suffix: str, allow_empty: bool, wanted: Wanted = None, header_row: int | None = None
) -> RecipientFile:
    """Validate delimited text with a full streaming parse, exactly as ``chunks()`` parses it.

    ``wanted`` names the phone column (to find the header below title lines); ``header_row``
    names the header's row outright. Raises InputFileError for anything unreadable.
    """
    codec = _scan_text(path)
    sep, skip, hint = _layout(path, codec, suffix, wanted, header_row)
    header_number = skip - hint + 1  # the header's row as the spreadsheet program shows it
    raw: list[str] = []
    trailing: list[int] = []  # unnamed columns after the last named one
    used: set[int] = set()  # ... those of them that hold data somewhere
    has_rows = False
    for frame in _frames(path, codec, sep, skip, _VALIDATE_ROWS, hint):
        if not raw:
            raw = [str(value) for value in frame.iloc[0]]
            named = [i for i, name in enumerate(raw) if clean(name)]
            trailing = list(range(named[-1] + 1 if named else 0, len(raw)))
            frame = frame.iloc[1:]
        if not has_rows:
            has_rows = any(filled(row) for row in frame.itertuples(index=False, name=None))
        for index in set(trailing) - used:
            if frame[index].str.strip().ne("").any():
                used.add(index)
    keep = [i for i in range(len(raw)) if i not in trailing or i in used]
    columns = header_names(path, [raw[i] for i in keep], [i + 1 for i in keep])
    if not has_rows and not allow_empty:
        raise InputFileError(
            path, f"has a header (row {header_number}) but no rows; add one row per recipient below it"
        )

    def read(size: int) -> Iterator[list[SourceRow]]:
        number = header_number - 1  # the row number of the last record read
        whole = keep == list(range(len(raw)))
        for frame in _frames(path, codec, sep, skip, size, hint):
            rows: list[SourceRow] = []
            for values in frame.to_numpy(dtype=object).tolist():
                number += 1
                cells = tuple(values) if whole else tuple([values[i] for i in keep])
                if "".join(cells).strip() and number > header_number:
                    rows.append(SourceRow(number, cells))
            if rows:
                yield rows

    return RecipientFile(path, columns, read, encoding=codec, header_row=header_number, header=[raw[i] for i in keep])
