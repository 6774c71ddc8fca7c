"""A workbook cell as the text its program displays: number formats applied.

Excel and LibreOffice store ``34.3`` and show ``$34.30`` (format ``"$"#,##0.00``); a message
must say what the owner sees, so formatted cells go through xlfmt, which implements the
ECMA-376 number-format language (ECMA-376 Part 1, 18.8.31 numFmts). Three exceptions, each to
keep a value exact where a display would lose it:

- ``General`` (and text ``@``): Excel's General shortens long numbers to fit the column
  (``1.61756E+10``); the column width is not ours to know, and a phone number stored as a
  number must keep all its digits, so a whole General number below 10^15 (a phone number
  has at most 15 digits, and Excel keeps 15 significant ones) gives every digit
  (``16175550101``, never ``16175550101.0``). Other General numbers show as in a standard
  Excel column (:func:`general_number`): at most 10 significant digits (``0.3333333333``),
  in scientific notation below 0.0001 or from 10^10 up (``1E-07``, ``1E+20``).
- The built-in short date formats (numFmtId 14 and 22, ``mm-dd-yy`` / ``m/d/yy h:mm`` in the
  file) follow the reader's system locale: 01/05/2026 in London is 5/1/2026 in Boston. We
  cannot know which the owner saw, so they give the unambiguous ISO date ``2026-05-01``
  (and ``2026-05-01 09:30`` for id 22).
- A format xlfmt cannot apply gives the plain value rather than stopping the run.

Dates and times show the units their format names and drop the rest, as Excel and
LibreOffice do: 9:05:30 under ``h:mm`` is ``9:05``, 23:59:59 is ``23:59`` (not ``0:00``),
18:45:50 under ``h AM/PM`` is ``6 PM``. xlfmt rounds to the nearest shown unit instead, so the
value is truncated to that unit before xlfmt sees it (:func:`truncate_clock`).
"""

from __future__ import annotations

import contextlib
import math
import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal

#: Built-in date formats whose display depends on the reader's locale (ids 14 and 22), as
#: openpyxl and xlrd spell them.
LOCALE_FORMATS = frozenset({"mm-dd-yy", "m/d/yy", "m/d/yy h:mm", "mm-dd-yy h:mm"})


def plain_text(value: object) -> str:
    """A workbook value as the text a person expects to see (and a phone number needs).

    Formula cells give their saved result (a sheet with formulas and no saved results is
    refused before it is read: :mod:`campaign.spreadsheet.formulas`).
    """
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int) and abs(value) >= 10**15:
        value = float(value)  # beyond a phone number's 15 digits: as Excel's General shows it
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer() and abs(value) < 1e15:  # E.164: at most 15 digits
            return str(int(value))  # 16175550100.0 is a phone number, not a float
        return general_number(value)
    if isinstance(value, datetime):
        if value.time() == time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat(timespec="seconds" if not value.microsecond else "auto")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):  # a duration cell such as [h]:mm:ss
        hours, rest = divmod(int(abs(value.total_seconds())), 3600)  # cut off, as Excel shows it
        sign = "-" if value < timedelta(0) else ""
        return f"{sign}{hours}:{rest // 60:02}:{rest % 60:02}"
    return str(value)


def general_number(value: float) -> str:
    """A number that is not whole as Excel's General shows it in a standard-width column.

    At most 10 significant digits, rounded half away from zero as Excel rounds (``1/3`` is
    ``0.3333333333``, ``2.675`` stays ``2.675``); plain decimal notation from 0.0001 up to
    below 10^10, otherwise scientific notation written as Excel writes it: ``E``, a sign and
    at least two exponent digits (``1E-07``, ``1.23456789E+10``). Trailing zeros are dropped.
    Excel shortens General numbers further in a narrow column; the width is not ours to know.
    Source: Microsoft, "Available number formats in Excel" (General: "up to 11 digits").
    """
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    exact = Decimal(repr(value))  # the shortest decimal that is this float: 2.675, not 2.67499...
    exponent = exact.adjusted()
    digits = exact.scaleb(-exponent).quantize(Decimal("1.000000000"), rounding="ROUND_HALF_UP")
    if abs(digits) >= 10:  # 9.9999999999 rounded up to 10.000000000
        digits, exponent = digits / 10, exponent + 1
    mantissa = format(digits.normalize(), "f")
    if -4 <= exponent < 10:
        return format(digits.scaleb(exponent).normalize(), "f")
    return f"{mantissa}E{'-' if exponent < 0 else '+'}{abs(exponent):02}"


# A format's parts that are not date/time codes: quoted text, escaped characters, the
# padding (_x) and fill (*x) codes, and bracketed codes other than the elapsed [h] [m] [s].
_NOT_CODES = re.compile(r'"[^"]*"|\\.|[_*].|\[(?![hms]+\])[^\]]*\]|am/pm|a/p', re.IGNORECASE)
_SUBSECONDS = re.compile(r"s+\.(0{1,6})")
#: Microseconds in each unit a date/time format can end on.
_MICROSECONDS = {"second": 1_000_000, "minute": 60_000_000, "hour": 3_600_000_000, "day": 86_400_000_000}


def clock_step(number_format: str) -> int:
    """The smallest time unit a date/time format shows, in microseconds.

    ``h:mm`` shows minutes (60,000,000), ``h AM/PM`` hours, ``hh:mm:ss.00`` hundredths of a
    second (10,000), ``[h]:mm`` minutes, ``dd/mm/yyyy`` whole days (86,400,000,000). An ``m``
    counts as minutes after an hour or before a second, as ECMA-376 Part 1, 18.8.31 says.
    Only the first section is read: a date is never negative.
    """
    codes = _NOT_CODES.sub(" ", number_format.split(";", 1)[0]).casefold()
    if fraction := _SUBSECONDS.search(codes):
        return int(10 ** (6 - len(fraction.group(1))))
    if "s" in codes:
        return _MICROSECONDS["second"]
    if "[m" in codes or re.search(r"h[^a-z]*m|m[^a-z]*s", codes):
        return _MICROSECONDS["minute"]
    if "h" in codes:
        return _MICROSECONDS["hour"]
    return _MICROSECONDS["day"]


def truncate_clock(value: datetime | time | timedelta, number_format: str) -> datetime | time | Decimal:
    """``value`` with the units its format does not show dropped (not rounded).

    Excel and LibreOffice show 23:59:59 under ``h:mm`` as ``23:59``; a formatter that rounds
    shows ``0:00``, and ``2026-05-01 23:59:59`` under ``d mmm yyyy h:mm`` becomes the next
    day. A duration comes back as its serial (days, exact) for the formatter.
    """
    step = clock_step(number_format)
    if isinstance(value, timedelta):
        micros = (value // timedelta(microseconds=1)) // step * step
        return Decimal(micros) / Decimal(_MICROSECONDS["day"])
    since_midnight = (value.hour * 3600 + value.minute * 60 + value.second) * 1_000_000 + value.microsecond
    micros = since_midnight // step * step
    if step >= _MICROSECONDS["day"] and isinstance(value, datetime):
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    seconds, micro = divmod(micros, 1_000_000)
    return value.replace(hour=seconds // 3600, minute=seconds // 60 % 60, second=seconds % 60, microsecond=micro)


def serial_clock(serial: float, date1904: bool) -> datetime:
    """An .xls date serial (days since the workbook's epoch) as a datetime, to the millisecond.

    Rounding to the millisecond removes binary noise (9:05 computed by a formula may be
    stored as 9:04:59.9999999), as openpyxl does for .xlsx. Raises ValueError outside
    the datetime range.
    """
    epoch = datetime(1904, 1, 1) if date1904 else datetime(1899, 12, 30)
    if not date1904 and serial < 61:  # Excel's 1900 counts a 29 February 1900 that never was
        epoch = datetime(1899, 12, 31)
    return epoch + timedelta(milliseconds=round(serial * 86_400_000))


def displayed(value: object, number_format: str | None, *, date1904: bool = False, is_date: bool = False) -> str:
    """The text a spreadsheet program shows for ``value`` under ``number_format``.

    ``value`` is what the reader gives (a number, a date/time, text, a bool); a date may also
    come as its serial number (days since the workbook's epoch; ``date1904`` for the Mac
    1904 system), then ``is_date`` says so (xlrd knows it from the format).
    Never raises: a format that cannot be applied gives ``plain_text(value)``.
    """
    fmt = (number_format or "").strip()
    if value is None or isinstance(value, str | bool) or fmt.casefold() in ("", "general", "@"):
        return plain_text(value)
    if fmt.casefold() in LOCALE_FORMATS:  # the owner's locale decides: give ISO 8601
        fmt = "yyyy-mm-dd hh:mm" if "h" in fmt.casefold() else "yyyy-mm-dd"
        is_date = True
    if isinstance(value, float) and not math.isfinite(value):
        return plain_text(value)
    if is_date and isinstance(value, float):
        with contextlib.suppress(ValueError, OverflowError):  # out of range: the plain number
            value = serial_clock(value, date1904)
    if isinstance(value, datetime | time | timedelta):
        value = truncate_clock(value, fmt)
    import xlfmt  # here: CSV campaigns never need it (start-up time)

    try:
        text = xlfmt.format_value(value, fmt, date1904=date1904)
    except Exception:  # an exotic or damaged format: the value itself is still right
        return plain_text(value)
    # "_)" and "* " pad for alignment in the cell; the padding is not part of the text
    text = str(text).strip()
    if isinstance(value, int | float) and value < 0 and ";" not in fmt and not any(c in text for c in "-("):
        # A one-section format shows a negative value with its minus sign even when it rounds
        # to zero (-0.004 under 0.00 is "-0.00" in Excel and LibreOffice); xlfmt drops it.
        text = "-" + text
    return text
