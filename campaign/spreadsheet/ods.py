"""OpenDocument spreadsheets (.ods) read as LibreOffice shows them, streamed.

An .ods file stores, for every cell, both its value (``office:value``) and the text the
program displayed when it saved (``<text:p>``, OpenDocument 1.3 part 3, 9.1.4
table:table-cell), so the displayed text is read as is: ``$34.30``, ``01/05/2026``, ``15%``.
One exception keeps phone numbers exact: an integer shown in scientific notation because
the column was narrow (``1.61756E+10``) gives its digits. ``content.xml`` is streamed through
expat, so memory stays flat however long the sheet; repeated empty rows and cells
(``number-rows-repeated="1048000"``) cost nothing. A range merged over rows (``number-rows-spanned``)
gives its text to each row's cell in its first column.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Generator
from pathlib import Path
from xml.parsers import expat

from campaign.spreadsheet.display import plain_text

_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_STYLE = "urn:oasis:names:tc:opendocument:xmlns:style:1.0"
_BLOCK = 64 * 1024
_MAX_REPEAT = 1 << 14  # a filled row or cell repeated more than this is a damaged file
_SCIENTIFIC = re.compile(r"-?\d(?:[.,]\d+)?E[+-]?\d+", re.IGNORECASE)
Numbered = tuple[int, list[str]]


def _name(namespace: str, local: str) -> str:
    return f"{namespace} {local}"


_T_TABLE, _T_ROW, _T_CELL = _name(_TABLE, "table"), _name(_TABLE, "table-row"), _name(_TABLE, "table-cell")
_T_COVERED, _T_NAME = _name(_TABLE, "covered-table-cell"), _name(_TABLE, "name")
_T_STYLE, _T_DISPLAY = _name(_TABLE, "style-name"), _name(_TABLE, "display")
_T_ROWS_REP, _T_COLS_REP = _name(_TABLE, "number-rows-repeated"), _name(_TABLE, "number-columns-repeated")
_T_ROWS_SPAN = _name(_TABLE, "number-rows-spanned")
_O_TYPE, _O_VALUE, _O_ANNOTATION = _name(_OFFICE, "value-type"), _name(_OFFICE, "value"), _name(_OFFICE, "annotation")
_O_DATE, _O_TIME, _O_BOOL = _name(_OFFICE, "date-value"), _name(_OFFICE, "time-value"), _name(_OFFICE, "boolean-value")
_X_P, _X_S, _X_C = _name(_TEXT, "p"), _name(_TEXT, "s"), _name(_TEXT, "c")
_X_TAB, _X_BREAK = _name(_TEXT, "tab"), _name(_TEXT, "line-break")
_S_STYLE, _S_NAME, _S_FAMILY = _name(_STYLE, "style"), _name(_STYLE, "name"), _name(_STYLE, "family")
_S_TABLE_PROPS = _name(_STYLE, "table-properties")


def _count(attrs: dict[str, str], key: str) -> int:
    try:
        return max(1, int(attrs.get(key, "1")))
    except ValueError:
        return 1


def sheets(path: Path) -> list[tuple[str, bool]]:
    """Every sheet's name and whether it is hidden (its table style has display="false")."""
    hidden_styles: set[str] = set()
    found: list[tuple[str, str]] = []
    style = ""

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal style
        if name == _S_STYLE:
            style = attrs.get(_S_NAME, "") if attrs.get(_S_FAMILY) == "table" else ""
        elif name == _S_TABLE_PROPS and style and attrs.get(_T_DISPLAY) == "false":
            hidden_styles.add(style)
        elif name == _T_TABLE:
            found.append((attrs.get(_T_NAME, f"Sheet{len(found) + 1}"), attrs.get(_T_STYLE, "")))

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = start
    with zipfile.ZipFile(path) as archive, archive.open("content.xml") as member:
        while block := member.read(_BLOCK):
            parser.Parse(block, False)
        parser.Parse(b"", True)
    return [(title, style_name in hidden_styles) for title, style_name in found]


class _Rows:
    """The expat handlers that turn one table's XML into numbered rows of displayed text."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.inside = False  # in the wanted table
        self.done = False
        self.number = 1  # the current row's number
        self.repeat = 1
        self.cells: list[str] = []
        self.gap = 0  # empty cells not yet appended (trailing ones never are)
        self.cell: dict[str, str] | None = None  # the open cell's attributes
        self.paragraphs: list[list[str]] = []
        self.in_p = 0
        self.annotation = 0
        self.merged: list[tuple[int, int, int, str]] = []  # first and last row, column, text
        self.out: list[Numbered] = []

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if name == _T_TABLE:
            self.inside = attrs.get(_T_NAME) == self.title and not self.done
        elif not self.inside:
            return
        elif name == _T_ROW:
            self.repeat, self.cells, self.gap = _count(attrs, _T_ROWS_REP), [], 0
        elif name in (_T_CELL, _T_COVERED):
            self.cell, self.paragraphs = attrs, []
        elif name == _O_ANNOTATION:
            self.annotation += 1
        elif self.cell is not None and not self.annotation:
            if name == _X_P:
                self.in_p += 1
                if self.in_p == 1:
                    self.paragraphs.append([])
            elif self.in_p and name == _X_S:
                self.paragraphs[-1].append(" " * _count(attrs, _X_C))
            elif self.in_p and name == _X_TAB:
                self.paragraphs[-1].append("\t")
            elif self.in_p and name == _X_BREAK:
                self.paragraphs[-1].append("\n")

    def text(self, data: str) -> None:
        if self.inside and self.in_p and not self.annotation:
            self.paragraphs[-1].append(data)

    def end(self, name: str) -> None:
        if not self.inside:
            return
        if name == _T_TABLE:
            self.inside, self.done = False, True
        elif name == _O_ANNOTATION:
            self.annotation -= 1
        elif name == _X_P and self.in_p:
            self.in_p -= 1
        elif name in (_T_CELL, _T_COVERED) and self.cell is not None:
            self._end_cell(name == _T_COVERED)
        elif name == _T_ROW:
            if "".join(self.cells).strip():
                for k in range(min(self.repeat, _MAX_REPEAT)):
                    self.out.append((self.number + k, list(self.cells)))
            self.number += self.repeat
            self.merged = [m for m in self.merged if m[1] >= self.number]

    def _end_cell(self, covered: bool) -> None:
        attrs, self.cell = self.cell or {}, None
        column = len(self.cells) + self.gap
        text = "\n".join("".join(parts) for parts in self.paragraphs)
        if covered and not text:
            text = next((m[3] for m in self.merged if m[0] <= self.number <= m[1] and m[2] == column), "")
        elif attrs.get(_O_TYPE) in ("float", "percentage", "currency"):
            value = attrs.get(_O_VALUE, "")
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and (not text or (_SCIENTIFIC.fullmatch(text) and number.is_integer())):
                text = plain_text(number)  # every digit of a phone number stored as a number
        elif not text:
            raw = attrs.get(_O_DATE) or attrs.get(_O_TIME) or ""
            text = raw or {"true": "TRUE", "false": "FALSE"}.get(attrs.get(_O_BOOL, ""), "")
        rows = _count(attrs, _T_ROWS_SPAN)
        if text and rows > 1:  # down the first column only, as campaign.spreadsheet.excel.with_merges
            self.merged.append((self.number, self.number + rows - 1, column, text))
        repeat = _count(attrs, _T_COLS_REP)
        if not text.strip():
            self.gap += repeat
            return
        self.cells.extend([""] * self.gap)
        self.cells.extend([text] * min(repeat, _MAX_REPEAT))
        self.gap = 0


def rows(path: Path, title: str) -> Generator[Numbered, None, None]:
    """The non-empty rows of sheet ``title``, numbered as LibreOffice shows them, as text."""
    handler = _Rows(title)
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = handler.start
    parser.EndElementHandler = handler.end
    parser.CharacterDataHandler = handler.text
    with zipfile.ZipFile(path) as archive, archive.open("content.xml") as member:
        while not handler.done and (block := member.read(_BLOCK)):
            parser.Parse(block, False)
            yield from handler.out
            handler.out.clear()
        if not handler.done:
            parser.Parse(b"", True)
            yield from handler.out
