"""Finding the header row: title rows often stand above it ("Riverside Clinic – reminders").

The header is the first row, among the first :data:`HEADER_SEARCH_ROWS` rows that hold
anything, that holds the phone column's name, provided every row above it is a title: holds
at most two cells, and fewer than the header. Otherwise the first row that holds anything is
the header, as before: a data row holding the word "Phone" (a "Contact by" column) below a
header that lacks the phone column must not become the header and hide the rows above it. ``[recipients]
header_row`` names the row outright, 1-based as the spreadsheet program shows it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from campaign.errors import InputFileError
from campaign.spreadsheet.common import HEADER_SEARCH_ROWS, filled, header_key

MAX_TITLE_CELLS = 2  # a title row, or a title and a date; more is a table
NUMBER_ROW = -1  # the width of a row holding a phone number: never a title (see width)
NUMBER_DIGITS = 7  # digits from which a cell of digits and phone punctuation is a phone number
_NUMBER = re.compile(r"[\d\s+()\-./]*\d[\d\s+()\-./]*")

#: What a reader is told to look for: a phone column's names (any one matches), or nothing.
Wanted = str | Sequence[str] | None

Numbered = tuple[int, list[str]]  # a row's number as the program shows it, and its cells


def folded_names(wanted: Wanted) -> frozenset[str]:
    """The names to look for, by :func:`header_key` (case, spaces, invisible characters ignored)."""
    if wanted is None:
        return frozenset()
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    return frozenset(header_key(name) for name in names if header_key(name))


def holds(cells: Iterable[str], names: frozenset[str]) -> bool:
    """Whether one of ``cells`` is one of ``names``, compared by :func:`header_key`."""
    return any(header_key(cell) in names for cell in cells)


def find_header(
    path: Path, rows: Iterator[Numbered], wanted: Wanted, header_row: int | None, where: str = ""
) -> tuple[Numbered, list[Numbered]] | None:
    """Read ``rows`` up to the header; return it and the rows read past it (in order).

    ``None`` when no row holds anything. ``header_row`` wins over the search; a row it names
    that is empty or missing is an InputFileError (``where`` says which sheet, for workbooks).
    """
    if header_row is not None:
        for number, cells in rows:
            if number == header_row:
                if not filled(cells):
                    raise InputFileError(
                        path, f"{where}row {header_row} is empty, but [recipients] header_row names it as the header"
                    )
                return (number, cells), []
            if number > header_row:  # the reader skipped it: it holds nothing
                raise InputFileError(
                    path, f"{where}row {header_row} is empty, but [recipients] header_row names it as the header"
                )
        raise InputFileError(path, f"{where}has no row {header_row}, which [recipients] header_row names as the header")
    names = folded_names(wanted)
    seen: list[Numbered] = []
    for number, cells in rows:
        if not filled(cells):
            continue
        seen.append((number, cells))
        if not names:
            return seen[-1], []
        if holds(cells, names):
            if titles_only([width(above) for _, above in seen[:-1]], count_filled(cells)):
                return seen[-1], []
            break  # a data row naming the phone column: the first row is the header after all
        if len(seen) == HEADER_SEARCH_ROWS:
            break
    else:
        return _table_start(seen) if seen else None
    if not holds(seen[-1][1], names):
        return _table_start(seen)
    return seen[0], seen[1:]


def _table_start(seen: list[Numbered]) -> tuple[Numbered, list[Numbered]]:
    """The header when no row names the phone column (see :func:`table_start`)."""
    i = table_start([width(cells) for _, cells in seen])
    return seen[i], seen[i + 1 :]


def table_start(widths: Sequence[int]) -> int:
    """Index of the header among rows of these widths when no row names the phone column.

    The first row below titles that is as wide as the table, so that the error about the
    missing column lists the real headers (``Mobile, Name``), not a title row above them;
    else the first row.
    """
    for i, wide in enumerate(widths):
        if titles_only(widths[:i], wide) and wide >= max(widths[i:]):
            return i
    return 0


def titles_only(widths: Iterable[int], header_width: int) -> bool:
    """Whether rows of these widths (:func:`width`) above a header of ``header_width`` are titles."""
    return all(0 <= wide <= MAX_TITLE_CELLS and wide < header_width for wide in widths)


def count_filled(cells: Iterable[str]) -> int:
    """How many cells hold more than whitespace."""
    return sum(1 for cell in cells if cell.strip())


def width(cells: Iterable[str]) -> int:
    """A row's width for the title-row rules: its filled cells, or :data:`NUMBER_ROW`.

    A row holding a phone number (a cell of :data:`NUMBER_DIGITS` or more digits and phone
    punctuation only: ``+16175550101``, ``07911 123471``) is data, never a title to skip:
    skipping it would drop a recipient, or an opted-out number from a headerless
    suppression file.
    """
    cells = list(cells)
    if any(_NUMBER.fullmatch(cell.strip()) and sum(c.isdigit() for c in cell) >= NUMBER_DIGITS for cell in cells):
        return NUMBER_ROW
    return count_filled(cells)
