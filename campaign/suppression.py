"""Suppression (opt-out) files: every phone number in them, whatever the file's shape.

People keep opt-out lists in every shape (PRODUCT.md, "The spreadsheet as its owner sees
it"): a plain list of numbers with no header, one column, a ``Mobile``/``Phone Number``/
``WhatsApp`` column, an Excel sheet, another campaign's results file. Missing one number in
one of them messages a person who asked not to be, so the rules lean towards suppressing:

- a first row is a header only if it looks like one: it names a phone column, or it has a
  cell with letters and no cell that is a number (digits, spaces, ``+ ( ) - . /``); a first
  row of numbers is data, even one ``default_country`` cannot read (``07911 123471`` in a
  US campaign whose contacts are read as GB through ``country_column``);
- every sheet of a workbook that holds numbers is read, hidden ones too;
- a results file (columns ``row``, ``phone``, ``status``) gives its E.164 ``phone`` column;
- otherwise every column named like the campaign's ``phone_column`` or like a phone
  (``Phone``, ``Telephone``, ``Mobile``, ``WhatsApp``, ``MSISDN``, ``Cell``, ``Tel``) counts;
  failing those, a ``Number`` column (not beside a phone column: an order number is not a
  phone number); and a file with a single column counts that one;
- an entry with :data:`PLAUSIBLE_DIGITS` or more digits that cannot be read as a number in
  the country its own row gives (the file's country column) stops the run (InputFileError,
  exit 2) before anything is sent: the contacts file may read the same text as a number
  (in the row's country, or written with ``+``) and message that person. Other entries
  that are not numbers ("n/a", notes) are warnings naming the file, row and column;
- an entry written without ``+`` in a file without the country column also suppresses the
  number the same text is in each contact row's own country (``Suppressions.source``);
- a file that cannot be read, or in which no column can hold phone numbers, stops the run
  (InputFileError, exit 2, naming it as the suppression file); an empty one is a warning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from campaign import phones
from campaign.errors import InputFileError
from campaign.spreadsheet import RecipientFile, header_key, open_recipients, sheets
from campaign.spreadsheet.common import EMPTY

_PHONE_PARTS = ("phone", "mobile", "whatsapp", "msisdn")  # anywhere in a name: "Telephone"
_PHONE_WORDS = frozenset({"cell", "tel", "mob", "sms"})  # whole words only: not "Hotel"
#: Header names a suppression file's header row is looked for by (below any title rows).
PHONE_HEADERS = ("phone", "mobile", "cell", "phone number", "mobile number", "cell phone", "msisdn", "whatsapp")
_RESULTS_COLUMNS = frozenset({"row", "phone", "status"})  # what marks a campaign's results file
MAX_WARNINGS_PER_FILE = 10


#: A cell that can only be a number: digits with the punctuation people write phones with.
_DIGIT_LIKE = re.compile(r"[\d\s+()\-./]*\d[\d\s+()\-./]*")
#: Digits from which an entry is a phone number someone meant (shorter ones are notes, codes).
PLAUSIBLE_DIGITS = 7
_SCIENTIFIC = re.compile(r"\d+(?:[.,]\d+)?[eE]\+?\d+")  # 6.18E+09, 6,18E09
_WHERE = "suppression file ([recipients] suppress)"


@dataclass
class Suppressions:
    """The numbers never to message (E.164 → the file that lists them) and what was skipped.

    ``national`` keeps, with their file, the entries written without ``+`` that were read in
    ``default_country`` because their file has no country column: the campaign's contacts
    may read the same text in another country (``country_column``), and :meth:`source`
    then reads these entries in that country too.
    """

    numbers: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    default_country: str | None = None
    national: list[tuple[str, str]] = field(default_factory=list)
    _by_country: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def source(self, phone: str, country: str | None = None) -> str | None:
        """The file that suppresses ``phone`` (E.164), read by a row in ``country``; else None.

        An entry written without ``+`` in a file without the country column suppresses the
        number it is in ``default_country`` and the one it is in the row's own country:
        the same text read the way the contacts file reads it (leaning towards suppressing).
        """
        found = self.numbers.get(phone)
        if found is not None or not country or country == self.default_country or not self.national:
            return found
        table = self._by_country.get(country)
        if table is None:
            table = {}
            for text, name in self.national:
                try:
                    table.setdefault(phones.normalise(text, country), name)
                except phones.PhoneError:
                    continue
            self._by_country[country] = table
        return table.get(phone)

    def __contains__(self, phone: object) -> bool:
        return phone in self.numbers


def read_suppressions(
    paths: Sequence[Path], phone_column: str, default_country: str | None, country_column: str | None = None
) -> Suppressions:
    """Read every suppression file; numbers are normalised as recipients' are (phones.normalise).

    A file with the campaign's ``country_column`` reads each number in its row's country, as
    the recipients file does. Raises InputFileError, naming the file as a suppression file,
    for a file that cannot be read, has no column of phone numbers, or holds an entry with
    at least :data:`PLAUSIBLE_DIGITS` digits that cannot be read as a number (its person
    would be messaged); entries without digits, or too few, are warnings.
    """
    out = Suppressions(default_country=default_country)
    for path in paths:
        _read_one(Path(path), phone_column, default_country, country_column, out)
    return out


def _is_phone(text: str, default_country: str | None) -> bool:
    try:
        phones.normalise(text, default_country)
    except phones.PhoneError:
        return False
    return True


def _digit_like(cell: str) -> bool:
    """Whether a cell can only be a number: digits, spaces and ``+ ( ) - . /``."""
    return _DIGIT_LIKE.fullmatch(cell.strip()) is not None


def _digits(cell: str) -> int:
    return sum(c.isdigit() for c in cell)


def _is_header(cells: Sequence[str], default_country: str | None, phone_column: str) -> bool:
    """Whether a first row is a header: it names a phone column (``Phone``, the campaign's
    ``phone_column``), or it has a cell with letters and no cell that is a number.

    ``07911 123471`` is data even when ``default_country`` cannot read it (the contacts may
    be read in another country); so is ``+16175550101,Ann``.
    """
    names = {header_key(name) for name in (phone_column, *PHONE_HEADERS)}
    if any(header_key(cell) in names for cell in cells):
        return True
    filled = [cell.strip() for cell in cells if cell.strip()]
    if any(_digit_like(cell) or _is_phone(cell, default_country) for cell in filled):
        return False
    return any(any(c.isalpha() for c in cell) for cell in filled)


def _phone_like(name: str) -> bool:
    """Whether a (case-folded) column name says it holds phone numbers."""
    return any(part in name for part in _PHONE_PARTS) or not _PHONE_WORDS.isdisjoint(re.findall(r"[a-z]+", name))


def _columns(file: RecipientFile, phone_column: str, default_country: str | None) -> tuple[list[int], bool]:
    """The columns holding numbers, and whether the header row is itself a row of numbers."""
    if not _is_header(file.header, default_country, phone_column):
        cells = [cell.strip() for cell in file.header]
        chosen = [i for i, cell in enumerate(cells) if _is_phone(cell, default_country)]
        chosen = chosen or [i for i, cell in enumerate(cells) if _digit_like(cell)]
        return chosen or [next((i for i, cell in enumerate(cells) if cell), 0)], True
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
    also = "" if wanted in (header_key(name) for name in ACCEPTED) else f', or "{phone_column}" (phone_column)'
    raise InputFileError(
        file.path,
        f"the {_WHERE} has no column named like a phone column (its columns are "
        f"{', '.join(file.columns)}); name the column holding the numbers \"Phone\" "
        f"(names accepted: {', '.join(ACCEPTED)}{also})",
    )


#: Column names that say a suppression file's column holds numbers, as an error lists them.
ACCEPTED = ("Phone", "Mobile", "Cell", "Tel", "Telephone", "WhatsApp", "MSISDN", "SMS", "Phone Number", "Number")


def _open(path: Path, sheet: str | None, phone_column: str) -> RecipientFile | None:
    """The file (or sheet) opened as a suppression file; None when it holds nothing at all."""
    try:
        return open_recipients(path, sheet=sheet, allow_empty=True, phone_column=(phone_column, *PHONE_HEADERS))
    except InputFileError as err:
        if err.message == EMPTY:
            return None
        raise _named(err) from err


def _named(err: InputFileError) -> InputFileError:
    """``err`` saying that the file is a suppression file and which key names it."""
    message = err.message
    if message.startswith(("is ", "has ", "does ", "cannot ", "holds ")):
        return InputFileError(err.path, f"the {_WHERE} {message}")
    return InputFileError(err.path, f"in the {_WHERE}, {message}")


def _read_one(
    path: Path, phone_column: str, default_country: str | None, country_column: str | None, out: Suppressions
) -> None:
    """One file; a workbook's every sheet (hidden ones too: an opt-out anywhere is an opt-out)."""
    first = _open(path, None, phone_column)
    try:
        titles = [title for title, _ in sheets(path)]
    except InputFileError as err:
        raise _named(err) from err
    bad: list[str] = []
    taken = 0
    if first is None:
        pass
    elif len(titles) <= 1:
        bad, taken = _read_sheet(
            first, _columns(first, phone_column, default_country), default_country, country_column, out
        )
    else:
        read = 0
        for title in titles:
            try:
                file = first if title == first.sheet else _open(path, title, phone_column)
                if file is None:
                    continue
                columns = _columns(file, phone_column, default_country)
            except InputFileError:
                continue  # an empty sheet, or one without numbers (a lookup table, notes)
            read += 1
            lines, count = _read_sheet(file, columns, default_country, country_column, out, f'sheet "{title}", ')
            taken += count
            bad += [f'sheet "{title}", {line}' for line in lines]
        if not read:
            _columns(first, phone_column, default_country)  # raises: no sheet holds numbers
    for line in bad[:MAX_WARNINGS_PER_FILE]:
        out.warnings.append(f"suppression file {path.name}, {line}; it suppresses nobody: fix or remove it")
    if len(bad) > MAX_WARNINGS_PER_FILE:
        more = len(bad) - MAX_WARNINGS_PER_FILE
        out.warnings.append(f"suppression file {path.name}: {more:,} more entries are not phone numbers")
    if not bad and not taken:
        out.warnings.append(f"suppression file {path.name} holds no phone numbers; it suppresses nobody")


def _plausible(cell: str) -> bool:
    """Whether ``cell`` may be somebody's number: :data:`PLAUSIBLE_DIGITS` digits, or a number
    a spreadsheet shows in scientific notation (``6.18E+09``: the cell may hold every digit
    while its display lost them), so that an opt-out that cannot be read stops the run."""
    return _digits(cell) >= PLAUSIBLE_DIGITS or bool(_SCIENTIFIC.fullmatch(cell.strip()))


def _read_sheet(
    file: RecipientFile,
    chosen: tuple[list[int], bool],
    default_country: str | None,
    country_column: str | None,
    out: Suppressions,
    sheet: str = "",
) -> tuple[list[str], int]:
    """Add one sheet's numbers to ``out``; return where its entries are not numbers, and how
    many entries were numbers.

    Raises InputFileError for an entry with a plausible number (PLAUSIBLE_DIGITS digits)
    that cannot be read in a country its own row gives: whoever it is would be messaged.
    """
    columns, headerless = chosen
    country_index = None if headerless or not country_column else file.find_optional_column(country_column)
    bad: list[str] = []
    taken = [0]
    name = file.path.name

    def refuse(where: str, cell: str, reason: str) -> InputFileError:
        add = f', or add the campaign\'s country column "{country_column}" to this file' if country_column else ""
        return InputFileError(
            file.path,
            f"in the {_WHERE}, {sheet}{where}: {reason.removesuffix(phones.ELSEWHERE)}; an opt-out that cannot be "
            f"read would let its person be messaged, so nothing was sent: {phones.HOW_TO_WRITE}{add}",
        )

    def take(number: int, cells: Sequence[str]) -> None:
        country, given = default_country, False
        if country_index is not None and country_index < len(cells) and cells[country_index].strip():
            try:
                country, given = phones.region_code(cells[country_index]), True
            except phones.PhoneError as err:
                where = f'row {number} (column "{file.columns[country_index]}")'
                if any(_plausible(cells[i]) for i in columns if i < len(cells)):
                    raise refuse(where, cells[country_index], str(err)) from None
                bad.append(f"{where}: {err}")
                return
        for index in columns:
            cell = cells[index].strip() if index < len(cells) else ""
            if not cell:
                continue
            where = f"row {number}" if headerless else f'row {number} (column "{file.columns[index]}")'
            try:
                phone = phones.normalise(cell, country)
            except phones.PhoneError as err:
                if _plausible(cell) and not given:
                    raise refuse(where, cell, str(err)) from None
                # the first column chosen must hold numbers; others only where they have digits
                if index == columns[0] or any(c.isdigit() for c in cell):
                    bad.append(f"{where}: {err}")
                continue
            out.numbers.setdefault(phone, name)
            taken[0] += 1
            if not given and "+" not in cell:
                out.national.append((cell, name))

    if headerless:
        take(file.header_row, file.header)
    for chunk in file.chunks():
        for row in chunk:
            take(row.number, row.cells)
    return bad, taken[0]
