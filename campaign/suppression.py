"""Suppression (opt-out) files: every phone number in them, whatever the file's shape.

People keep opt-out lists in every shape (PRODUCT.md, "The spreadsheet as its owner sees
it"): a plain list of numbers with no header, one column, a ``Mobile``/``Phone Number``/
``WhatsApp`` column, an Excel sheet, another campaign's results file. Missing one number in
one of them messages a person who asked not to be, so the rules lean towards suppressing:

- a first row whose cell is a phone number is a number, not a header;
- every sheet of a workbook that holds numbers is read, hidden ones too;
- a results file (columns ``row``, ``phone``, ``status``) gives its E.164 ``phone`` column;
- otherwise every column named like the campaign's ``phone_column`` or like a phone
  (``Phone``, ``Telephone``, ``Mobile``, ``WhatsApp``, ``MSISDN``, ``Cell``, ``Tel``) counts;
  failing those, a ``Number`` column (not beside a phone column: an order number is not a
  phone number); and a file with a single column counts that one;
- an entry that is not a phone number becomes a warning naming the file, row and column;
- a file that cannot be read, or in which no column can hold phone numbers, stops the run
  (InputFileError, exit 2) before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from campaign import phones
from campaign.errors import InputFileError
from campaign.spreadsheet import RecipientFile, header_key, open_recipients, sheets

_PHONE_PARTS = ("phone", "mobile", "whatsapp", "msisdn")  # anywhere in a name: "Telephone"
_PHONE_WORDS = frozenset({"cell", "tel", "mob", "sms"})  # whole words only: not "Hotel"
#: Header names a suppression file's header row is looked for by (below any title rows).
PHONE_HEADERS = ("phone", "mobile", "cell", "phone number", "mobile number", "cell phone", "msisdn", "whatsapp")
_RESULTS_COLUMNS = frozenset({"row", "phone", "status"})  # what marks a campaign's results file
MAX_WARNINGS_PER_FILE = 10


@dataclass
class Suppressions:
    """The numbers never to message (E.164 → the file that lists them) and what was skipped."""

    numbers: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def read_suppressions(
    paths: Sequence[Path], phone_column: str, default_country: str | None, country_column: str | None = None
) -> Suppressions:
    """Read every suppression file; numbers are normalised as recipients' are (phones.normalise).

    A file with the campaign's ``country_column`` reads each number in its row's country, as
    the recipients file does. Raises InputFileError for a file that cannot be read or has no
    column of phone numbers.
    """
    out = Suppressions()
    for path in paths:
        _read_one(Path(path), phone_column, default_country, country_column, out)
    return out


def _is_phone(text: str, default_country: str | None) -> bool:
    try:
        phones.normalise(text, default_country)
    except phones.PhoneError:
        return False
    return True


def _phone_like(name: str) -> bool:
    """Whether a (case-folded) column name says it holds phone numbers."""
    return any(part in name for part in _PHONE_PARTS) or not _PHONE_WORDS.isdisjoint(re.findall(r"[a-z]+", name))


def _columns(file: RecipientFile, phone_column: str, default_country: str | None) -> tuple[list[int], bool]:
    """The columns holding numbers, and whether the header row is itself a row of numbers."""
    numbers_in_header = [i for i, cell in enumerate(file.header) if _is_phone(cell, default_country)]
    if numbers_in_header:
        return numbers_in_header, True
    folded = [header_key(column) for column in file.columns]
    if set(folded) >= _RESULTS_COLUMNS:
        return [folded.index("phone")], False
    wanted = header_key(phone_column)
    named = [i for i, name in enumerate(folded) if name == wanted or _phone_like(name)]
    if not named:  # "Number" alone, but not "Order number" beside a "Phone" column
        named = [i for i, name in enumerate(folded) if "number" in re.findall(r"[a-z]+", name)]
    if named:
        return named, False
    if len(file.columns) == 1:
        return [0], False
    raise InputFileError(
        file.path,
        f"is a suppression file but none of its columns ({', '.join(file.columns)}) holds phone numbers; "
        f'name the column of numbers "Phone" (or "{phone_column}", like the campaign\'s phone_column)',
    )


def _read_one(
    path: Path, phone_column: str, default_country: str | None, country_column: str | None, out: Suppressions
) -> None:
    """One file; a workbook's every sheet (hidden ones too: an opt-out anywhere is an opt-out)."""
    wanted = (phone_column, *PHONE_HEADERS)
    first = open_recipients(path, allow_empty=True, phone_column=wanted)
    titles = [title for title, _ in sheets(path)]
    if len(titles) <= 1:
        bad = _read_sheet(first, _columns(first, phone_column, default_country), default_country, country_column, out)
    else:
        bad, read = [], 0
        for title in titles:
            try:
                file = (
                    first
                    if title == first.sheet
                    else open_recipients(path, sheet=title, allow_empty=True, phone_column=wanted)
                )
                columns = _columns(file, phone_column, default_country)
            except InputFileError:
                continue  # an empty sheet, or one without numbers (a lookup table, notes)
            read += 1
            lines = _read_sheet(file, columns, default_country, country_column, out)
            bad += [f'sheet "{title}", {line}' for line in lines]
        if not read:
            _columns(first, phone_column, default_country)  # raises: no sheet holds numbers
    for line in bad[:MAX_WARNINGS_PER_FILE]:
        out.warnings.append(f"suppression file {path.name}, {line}; it suppresses nobody: fix or remove it")
    if len(bad) > MAX_WARNINGS_PER_FILE:
        more = len(bad) - MAX_WARNINGS_PER_FILE
        out.warnings.append(f"suppression file {path.name}: {more:,} more entries are not phone numbers")


def _read_sheet(
    file: RecipientFile,
    chosen: tuple[list[int], bool],
    default_country: str | None,
    country_column: str | None,
    out: Suppressions,
) -> list[str]:
    """Add one sheet's numbers to ``out``; return where its entries are not numbers."""
    columns, headerless = chosen
    country_index = None if headerless or not country_column else file.find_optional_column(country_column)
    bad: list[str] = []

    def take(number: int, cells: Sequence[str]) -> None:
        country = default_country
        if country_index is not None and country_index < len(cells) and cells[country_index].strip():
            try:
                country = phones.region_code(cells[country_index])
            except phones.PhoneError as err:
                bad.append(f'row {number} (column "{file.columns[country_index]}"): {err}')
                return
        for index in columns:
            cell = cells[index].strip() if index < len(cells) else ""
            if not cell:
                continue
            try:
                out.numbers.setdefault(phones.normalise(cell, country), file.path.name)
            except phones.PhoneError as err:
                # the first column chosen must hold numbers; others only where they have digits
                if index == columns[0] or any(c.isdigit() for c in cell):
                    where = "" if headerless else f' (column "{file.columns[index]}")'
                    bad.append(f"row {number}{where}: {err}")

    if headerless:
        take(file.header_row, file.header)
    for chunk in file.chunks():
        for row in chunk:
            take(row.number, row.cells)
    return bad
