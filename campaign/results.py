"""The results file: every input row with what happened to it, safe to open in Excel.

Written from the state file (``State.results``), so it can be rewritten at any time, and
atomically (a temporary file beside it, then ``os.replace``): a reader never sees half a file.
UTF-8 with a BOM so Excel reads accents and emoji right; and no cell can run as a formula
(OWASP CSV injection: a cell starting ``=``, ``+``, ``-``, ``@``, tab, CR or LF gets a leading
``'``), except a plain number (``-12.5``, ``-1e3``) or an E.164 number (``+16175550100``), which
stay as they are so the file is still a valid recipients file. ``+1-415-555-0180`` is not one:
Excel computes it (1 - 415 - 555 - 180 = -1149), so it gets the ``'``, as does any cell that
starts with ``+`` and is not exactly ``+`` and digits.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from campaign.errors import RESULTS_ELSEWHERE, OutputError

RESULT_COLUMNS = (
    "row",
    "phone",
    "status",
    "message_id",
    "error",
    "http_status",
    "attempts",
    "message",
    "updated_at",
)
# Added once the campaign has delivery reports (campaign listen), after RESULT_COLUMNS.
DELIVERY_COLUMNS = ("delivery_status", "delivery_error", "delivery_updated_at")
_FORMULA_START_CHARS = frozenset("=+-@\t\r\n")
# What may start with + or - and stay as typed: a negative number (-12.5, -1e3), or + and
# digits only (E.164). Anything else there, "+1-415-555-0180" or "-1+2", is arithmetic to Excel.
_PLAIN = re.compile(r"^(?:-\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\+\d+)$")


def _neutralised(values: Iterable[Any]) -> list[Any]:
    """A row whose text cells no spreadsheet program will run as a formula.

    The one place the rule lives; a list comprehension rather than a call per cell, since it
    runs for every cell of every results file. Only text can be a formula; numbers and None go
    to the csv module as they are (it writes None as an empty cell).
    """
    starts, plain = _FORMULA_START_CHARS, _PLAIN.match
    return ["'" + v if v.__class__ is str and v and v[0] in starts and not plain(v) else v for v in values]


def as_written(cell: str) -> str:
    """A results-file cell as it was before :func:`neutralise` added its ``'``: for showing the
    file where no spreadsheet program runs it (a web page, an .xlsx of text cells).

    The inverse of the rule, so a cell that itself began with ``'`` and then ``=``, ``+``... loses
    that ``'`` too; the results file never writes such a cell differently, so this cannot tell.
    """
    rest = cell[1:]
    if cell.startswith("'") and rest and rest[0] in _FORMULA_START_CHARS and not _PLAIN.match(rest):
        return rest
    return cell


def neutralise(value: Any) -> str:
    """One cell as text that no spreadsheet program will run as a formula."""
    return str(_neutralised(["" if value is None else str(value)])[0])


def output_columns(input_columns: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """The header: input columns, then ours.

    An input column named like one of ours, ignoring case (``Phone`` beside our ``phone``), is
    kept as ``<name>_input``: headers are matched ignoring case, so the file must not have two
    that differ only in case if it is to be read back as a recipients file.
    """
    ours = {c.lower() for c in (*RESULT_COLUMNS, *extra)}
    renamed = [f"{c}_input" if c.strip().lower() in ours else c for c in input_columns]
    return renamed + list(RESULT_COLUMNS) + list(extra)


#: Seconds after which a results file's temporary copy is taken for one left by a killed run.
STALE_AFTER = 300.0


def write_results(
    path: Path, input_columns: Sequence[str], rows: Iterable[Sequence[Any]], extra: Sequence[str] = ()
) -> int:
    """Write rows of (cells, row, phone, status, ..., updated_at[, extra...]) atomically.

    Returns the number of data rows written. Raises OutputError when the file cannot be
    written (the old one, if any, is left as it was).
    """
    return write_csv(path, output_columns(input_columns, extra), ((*cells, *ours) for cells, *ours in rows))


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]], fix: str = RESULTS_ELSEWHERE) -> int:
    """Write a CSV file campaign gives the user (a results file, an export) as this module
    writes every one: atomically, fsynced, UTF-8 with a BOM, every cell neutralised, readable
    by whoever may read the folder (the umask).

    Returns the number of data rows written. Raises OutputError (whose sentence ends with
    ``fix``) when the file cannot be written; the old one, if any, is left as it was.
    """
    try:
        return _write_csv(path, header, rows)
    except OSError as err:
        raise OutputError.of(path, err, fix) from None


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        # Left by a run killed mid-write; one being written now (another worker of the same
        # campaign in this folder) was touched within the last minutes and is not stale.
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_AFTER:
                stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it owner-only; a results file is not secret
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(_neutralised(header))
            for row in rows:
                writer.writerow(_neutralised(row))
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return count
