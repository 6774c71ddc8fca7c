"""What every spreadsheet reader shares: the row and file types, header names, limits.

Cells are always text: a phone number must never become a float or lose its leading zeros,
and an empty cell is ``""``, never ``nan``. Row numbers are the ones a spreadsheet program
shows (the header is row 1 when it is the first line), so users can find any row we report.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from campaign.errors import InputFileError

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
LEGACY_SUFFIXES = (".xls", ".ods")
#: How far down a sheet the header row is looked for when title rows stand above it.
HEADER_SEARCH_ROWS = 20
EMPTY = "is empty: it has no header and no rows; export the contacts again with a header row"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # old binary Office files (.xls, encrypted .xlsx)
CONVERT = "open it in Excel or LibreOffice and save it as .xlsx or .csv"


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One data row: its number as a spreadsheet program shows it, and its cells as text."""

    number: int  # the header is row 1 when it is the file's first line
    cells: tuple[str, ...]  # aligned with RecipientFile.columns; an empty cell is ""


class RecipientFile:
    """A recipients file that has been opened and validated; ``chunks()`` streams its rows.

    Nothing is held open between calls: each ``chunks()`` reads the file again from the start.
    ``header_row`` is the header's row number as the spreadsheet program shows it, and
    ``header`` the header's cells as they were before cleaning (a suppression file without a
    header has a phone number there).
    """

    def __init__(
        self,
        path: Path,
        columns: Sequence[str],
        read: Callable[[int], Iterator[list[SourceRow]]],
        *,
        encoding: str | None = None,
        sheet: str | None = None,
        header_row: int = 1,
        header: Sequence[str] = (),
    ) -> None:
        self.path = path
        self.columns = tuple(columns)
        self.encoding = encoding  # the text encoding detected (None for workbooks)
        self.sheet = sheet  # the sheet read (None for delimited text)
        self.header_row = header_row
        self.header = tuple(header) or self.columns
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
            message += f"; its columns are {quoted(self.columns)}"
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
            names = quoted(self.columns[i] for i in hits)
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


def clean(name: str) -> str:
    """A header name without surrounding spaces or a byte-order mark."""
    return name.strip().lstrip("\ufeff").strip()


def filled(cells: Iterable[str]) -> bool:
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


def quoted(names: Iterable[str], limit: int = 30) -> str:
    """Names in double quotes (invisible characters shown), comma-separated, at most ``limit``."""
    names = list(names)
    text = ", ".join(f'"{visible(name)}"' for name in names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def header_names(path: Path, raw: Sequence[str], positions: Sequence[int]) -> tuple[str, ...]:
    """Clean header names; an empty one becomes ``column_<n>``; duplicates are refused."""
    names = [clean(name) or f"column_{n}" for name, n in zip(raw, positions, strict=True)]
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
