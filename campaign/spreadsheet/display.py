"""A workbook cell as the text its program displays: number formats applied.

Excel and LibreOffice store ``34.3`` and show ``$34.30`` (format ``"$"#,##0.00``); a message
must say what the owner sees, so formatted cells go through xlfmt, which implements the
ECMA-376 number-format language (ECMA-376 Part 1, 18.8.31 numFmts). Three exceptions, each to
keep a value exact where a display would lose it:

- ``General`` (and text ``@``): Excel's General shortens long numbers to fit the column
  (``1.61756E+10``); the column width is not ours to know, and a phone number stored as a
  number must keep all its digits, so General numbers give every digit (``16175550101``,
  never ``16175550101.0``) and fractions up to 15 significant digits, as Excel's formula bar.
- The built-in short date formats (numFmtId 14 and 22, ``mm-dd-yy`` / ``m/d/yy h:mm`` in the
  file) follow the reader's system locale: 01/05/2026 in London is 5/1/2026 in Boston. We
  cannot know which the owner saw, so they give the unambiguous ISO date ``2026-05-01``.
- A format xlfmt cannot apply gives the plain value rather than stopping the run.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta

#: Built-in date formats whose display depends on the reader's locale (ids 14 and 22), as
#: openpyxl and xlrd spell them.
LOCALE_FORMATS = frozenset({"mm-dd-yy", "m/d/yy", "m/d/yy h:mm", "mm-dd-yy h:mm"})


def plain_text(value: object) -> str:
    """A workbook value as the text a person expects to see (and a phone number needs).

    Formula cells give their cached value, which files written by openpyxl lack (then "").
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


def displayed(value: object, number_format: str | None, *, date1904: bool = False) -> str:
    """The text a spreadsheet program shows for ``value`` under ``number_format``.

    ``value`` is what the reader gives (a number, a date/time, text, a bool); a date may also
    come as its serial number (days since the workbook's epoch; ``date1904`` for the Mac
    1904 system). Never raises: a format that cannot be applied gives ``plain_text(value)``.
    """
    fmt = (number_format or "").strip()
    if value is None or isinstance(value, str | bool) or fmt.casefold() in ("", "general", "@"):
        return plain_text(value)
    if fmt.casefold() in LOCALE_FORMATS:
        return plain_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return plain_text(value)
    if isinstance(value, timedelta):  # xlfmt takes a duration as its serial: days
        value = value.total_seconds() / 86400
    import xlfmt  # here: CSV campaigns never need it (start-up time)

    try:
        text = xlfmt.format_value(value, fmt, date1904=date1904)
    except Exception:  # an exotic or damaged format: the value itself is still right
        return plain_text(value)
    # "_)" and "* " pad for alignment in the cell; the padding is not part of the text
    return str(text).strip()
