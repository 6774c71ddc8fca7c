"""Reading what people save as a recipients or suppression file: CSV/TSV/TXT, Excel, ODS.

A recipients file is a spreadsheet a person exported or typed, so this package is defensive:
:func:`open_recipients` validates the whole file *before* anything is sent (a file that breaks
halfway through a campaign leaves it half sent), and every problem becomes one
``InputFileError`` sentence naming the file, the row or column and what to do. Every cell is
read as its owner sees it in the spreadsheet program (PRODUCT.md, "The spreadsheet as its
owner sees it"), and row numbers are the ones that program shows.

Modules: ``delimited`` (encodings, sniffing, ``sep=``), ``excel`` (workbooks, merged ranges),
``ods``, ``display`` (number formats), ``header`` (finding the header row), ``common``.
"""

from __future__ import annotations

from pathlib import Path

from campaign.errors import InputFileError
from campaign.spreadsheet.common import (
    EXCEL_SUFFIXES,
    LEGACY_SUFFIXES,
    TEXT_SUFFIXES,
    RecipientFile,
    SourceRow,
    header_key,
    visible,
)
from campaign.spreadsheet.delimited import MAX_LINE_BYTES, open_text
from campaign.spreadsheet.excel import check_zip, list_sheets, open_sheet
from campaign.spreadsheet.header import Wanted

__all__ = [
    "EXCEL_SUFFIXES",
    "LEGACY_SUFFIXES",
    "MAX_LINE_BYTES",
    "TEXT_SUFFIXES",
    "RecipientFile",
    "SourceRow",
    "Wanted",
    "header_key",
    "open_recipients",
    "sheets",
    "visible",
]


def open_recipients(
    path: Path,
    *,
    sheet: str | None = None,
    allow_empty: bool = False,
    phone_column: Wanted = None,
    header_row: int | None = None,
) -> RecipientFile:
    """Open and validate a recipients file; everything that makes it unreadable raises here.

    ``sheet`` chooses a workbook sheet (default: the first visible one); delimited text has no
    sheets, so it is ignored there. ``phone_column`` (a name, or several any of which will
    do) finds the header below title rows; ``header_row`` (1-based, as the spreadsheet shows
    it) names the header row outright. A header with no rows is an error unless
    ``allow_empty`` (an empty suppression list is fine, an empty recipients list is a
    mistake). Raises InputFileError.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    supported = TEXT_SUFFIXES + EXCEL_SUFFIXES + LEGACY_SUFFIXES
    if suffix not in supported:
        kind = f'is a "{suffix}" file' if suffix else "has no suffix"
        raise InputFileError(path, f"{kind}; recipients files must be one of {', '.join(supported)}")
    if not path.is_file():
        raise InputFileError(path, "does not exist or is not a file")
    try:
        if suffix in TEXT_SUFFIXES:
            return open_text(path, suffix, allow_empty, phone_column, header_row)
        parts = {} if suffix == ".xls" else check_zip(path)  # .xlsx and .ods are zips of XML
        return open_sheet(path, sheet, allow_empty, phone_column, header_row, parts)
    except OSError as exc:
        raise InputFileError(path, f"cannot be read ({exc.strerror or exc})") from exc


def sheets(path: Path) -> list[tuple[str, bool]]:
    """A workbook's sheets as (name, hidden), in order; ``[]`` for delimited text.

    Raises InputFileError when the file cannot be read as a workbook.
    """
    path = Path(path)
    if path.suffix.lower() not in EXCEL_SUFFIXES + LEGACY_SUFFIXES:
        return []
    if path.suffix.lower() != ".xls":
        check_zip(path)
    return list_sheets(path)
