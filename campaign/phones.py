"""Phone numbers as people type them, turned into E.164 (``+16175550100``) with phonenumbers.

A recipient *is* its normalised number (PRODUCT.md, "Rerunning"), so this module decides what
counts as the same person: ``(617) 555-0100`` and ``+1 617 555 0100`` are one recipient.

Reading rules (PRODUCT.md, "The spreadsheet as its owner sees it"):

- A number written with ``+`` or ``00`` carries its own country code. Any other number is read
  in the default country (``default_country``, or the row's ``country_column``) and nowhere
  else: when it is not valid there the row is invalid, never re-read as ``+digits`` (which
  turned ``(617) 555-01040`` into an Australian number). Countries that share a calling code
  (the North American plan: US, CA, ...) are one numbering plan, so ``4165550101`` read with
  ``US`` is the Canadian line it is when dialled from the US.
- A spreadsheet's damage is undone only when it is exact: ``6175550101.0`` and
  ``6.175550101E9`` are ``6175550101``; ``1.61755501E10`` lost its last digits and is refused
  (the cell's digits were replaced by zeros; no one can say which number it was).
- A number with an extension (``617-555-0100 ext 5``, ``x5``, ``;ext=5``) is refused by
  :func:`parse`: E.164 has no extension, so the message would go to the switchboard's line.
  :func:`normalise` (suppression lists) keeps reading it as that line, so opting out one
  extension holds back the line.
- A number whose type cannot take a text (premium rate, shared cost, pager, voicemail, UAN:
  phonenumbers' ``PhoneNumberType``) is refused, naming the type; on WhatsApp a landline
  (``FIXED_LINE``) is refused too. GOV.UK Notify refuses the same UK ranges
  (alphagov/notifications-utils, ``recipient_validation/phone_number.py``).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import phonenumbers
from phonenumbers import (
    CountryCodeSource,
    NumberParseException,
    PhoneNumberFormat,
    PhoneNumberType,
    ValidationResult,
)

_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
    ValidationResult.TOO_SHORT: "is too short",
    ValidationResult.TOO_LONG: "is too long",
    ValidationResult.INVALID_LENGTH: "has the wrong number of digits",
}

# Types of number that cannot receive a text message (phonenumbers' PhoneNumberType).
CANNOT_TEXT = {
    PhoneNumberType.PREMIUM_RATE: "premium-rate",
    PhoneNumberType.SHARED_COST: "shared-cost",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UAN: "universal access (UAN)",
}

# What a spreadsheet writes for a number it took as a float: 6175550101.0, 6.175550101E9,
# 6,17555E+09 (a comma as the decimal mark), 6,175,550,101 (a number format with thousands
# separators). Anything else is left to phonenumbers.
_FLOAT_TAIL = re.compile(r"(\d+)[.,]0+")
_LEADING_00 = re.compile(r"[^\d+]*\+?00")  # "00 44 …", "(0044) …", "+0044 …"; not "0 044"
_THOUSANDS = re.compile(r"(\d{1,3}(?:,\d{3})+)(?:\.0+)?")
_SCIENTIFIC = re.compile(r"\d+(?:[.,]\d+)?[eE][+-]?\d+")
# RFC 3966 parameters phonenumbers reads after a ";" (tel:+1-617-555-0101;ext=5).
_SEVERAL = re.compile(r"[;/\n|&]|,\s|\s(?:or|and|oder|ou|o)\s", re.IGNORECASE)  # between two numbers
_MIN_DIGITS = 7  # fewer digits than any phone number's (ITU-T E.164 numbers have 8 to 15)
_TEL_PARAMETER = re.compile(r"\s*(?:ext|isub|phone-context)=", re.IGNORECASE)

HOW_TO_WRITE = "write it with + and the country code (for example +44 7911 123456)"
ELSEWHERE = f"; if it is another country's number, {HOW_TO_WRITE}"


class PhoneError(ValueError):
    """The cell cannot be made into a phone number; ``str()`` is the reason for the row."""


@dataclass(frozen=True, slots=True)
class Number:
    """A phone number that passed every check: E.164, destination country, phonenumbers' type."""

    e164: str
    region: str  # ISO 3166 alpha-2 of the destination ("001" for non-geographic +800 numbers)
    type: int  # a phonenumbers PhoneNumberType value

    @property
    def landline(self) -> bool:
        """Whether the number is a fixed line, which an SMS usually cannot reach (Twilio 30006).

        ``FIXED_LINE_OR_MOBILE`` (every US and Canadian number) is not a landline here.
        """
        return self.type == PhoneNumberType.FIXED_LINE


def region_code(value: str) -> str:
    """``value`` as an ISO 3166 alpha-2 region phonenumbers knows (``us`` -> ``US``).

    Raises :class:`PhoneError` when it is not one.
    """
    code = value.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise PhoneError(f"{value.strip()!r} is not an ISO 3166 alpha-2 country code (for example US, GB, IN)")
    return code


def _undamaged(text: str) -> str:
    """``text`` with a spreadsheet's float rendering undone, when that is exact.

    ``6175550101.0``, ``6.175550101E9`` and ``6,175,550,101`` are ``6175550101``. Raises
    :class:`PhoneError` when scientific notation dropped digits (``1.61755501E10``: the
    mantissa holds 9 digits of an 11-digit number) or the value is not a whole number.
    Decimal keeps every digit of the mantissa, where a float would round.
    """
    if m := _FLOAT_TAIL.fullmatch(text):
        return m.group(1)
    if m := _THOUSANDS.fullmatch(text):
        return m.group(1).replace(",", "")
    if not _SCIENTIFIC.fullmatch(text):
        return text
    try:
        value = Decimal(text.replace(",", "."))
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        return text
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # a finite decimal
    if exponent > 0:
        lost = "digit was" if exponent == 1 else f"{exponent} digits were"
        raise PhoneError(
            f"{text!r} is a number a spreadsheet wrote in scientific notation, and its last {lost} "
            "lost; format the phone column as Text and type the number again"
        )
    if value != value.to_integral_value():
        raise PhoneError(f"{text!r} is a number in scientific notation, not a phone number")
    return str(int(value))


def _one_number(text: str) -> None:
    """Refuse a cell holding several numbers (``6175550101;6175550102``, ``… / …``, ``… or …``).

    phonenumbers reads ``;`` as the start of RFC 3966 parameters and silently keeps only the
    first number, so the second person would never hear from the campaign; the other separators
    fail to parse, but "holds more than one phone number" says what is wrong where "is not a
    phone number" does not.
    """
    parts = [part for part in _SEVERAL.split(text) if not _TEL_PARAMETER.match(part)]
    if sum(1 for part in parts if sum(c.isdigit() for c in part) >= _MIN_DIGITS) > 1:
        raise PhoneError(f"{text!r} holds more than one phone number; give each number its own row")


def parse(
    raw: str,
    default_country: str | None,
    *,
    whatsapp: bool = False,
    countries: Collection[str] = (),
) -> Number:
    """Read one cell as a number that can receive the message, or raise :class:`PhoneError`.

    ``default_country`` (ISO 3166 alpha-2) is the only country a number written without ``+``
    or ``00`` is read in. ``countries``, when not empty, are the only destinations allowed
    (``[recipients] countries``). ``whatsapp`` refuses landlines. The error is one sentence
    that says how to write the number instead.
    """
    text = raw.strip()
    number, international = _read(text, default_country)
    if number.extension:  # a switchboard's line: the text would reach whoever answers it, not the person
        raise PhoneError(
            f"{text!r} has an extension ({number.extension}), which a text message cannot reach; give the "
            "person's own mobile number"
        )
    region = phonenumbers.region_code_for_number(number) or "001"
    kind = phonenumbers.number_type(number)
    if kind in CANNOT_TEXT:
        hint = "" if international else ELSEWHERE
        raise PhoneError(f"{text!r} is a {CANNOT_TEXT[kind]} number ({region}), which cannot receive messages{hint}")
    if whatsapp and kind == PhoneNumberType.FIXED_LINE:
        raise PhoneError(f"{text!r} is a landline ({region}), which WhatsApp cannot reach")
    if countries and region not in countries:
        raise PhoneError(
            f"{text!r} is a number in {region}, and [recipients] countries allows only {', '.join(countries)}"
        )
    return Number(phonenumbers.format_number(number, PhoneNumberFormat.E164), region, kind)


def normalise(raw: str, default_country: str | None) -> str:
    """Return ``raw`` as E.164, or raise :class:`PhoneError` saying why not.

    The reading rules of :func:`parse` without the checks of what the number can receive:
    this is the identity of a recipient (used for suppression lists too, where an opted-out
    premium-rate number is still that number).
    """
    return phonenumbers.format_number(_read(raw.strip(), default_country)[0], PhoneNumberFormat.E164)


def _read(text: str, default_country: str | None) -> tuple[phonenumbers.PhoneNumber, bool]:
    """The valid phonenumbers object for ``text`` (already stripped), read as the module says,
    and whether it was written as an international number (with ``+`` or ``00``)."""
    if not text:
        raise PhoneError("no phone number")
    if not any(c.isdigit() for c in text):
        raise PhoneError(f"{text!r} is not a phone number")
    _one_number(text)
    digits = _undamaged(text)
    if m := _LEADING_00.match(digits):  # 00 is the international prefix of most countries (ITU-T E.164)
        digits = "+" + digits[m.end() :]
    try:
        number = phonenumbers.parse(digits, default_country, keep_raw_input=True)
    except NumberParseException as err:
        if err.error_type != NumberParseException.INVALID_COUNTRY_CODE:
            raise PhoneError(f"{text!r} is not a phone number") from None
        if default_country is None and "+" not in digits:
            raise PhoneError(
                f"{text!r} has no country code; {HOW_TO_WRITE}, or set [recipients] default_country"
            ) from None
        raise PhoneError(f"{text!r} has an unknown country code") from None
    # phonenumbers itself finds the + behind leading junk (a quote, a bracket, "tel:"), and also
    # strips a national number's leading country code or the region's own international prefix
    # (011 in the US): only a + (or 00, made a + above) may take the number out of the country.
    international = number.country_code_source == CountryCodeSource.FROM_NUMBER_WITH_PLUS_SIGN
    if not international:
        assert default_country is not None  # without one, a number without + does not parse
        if number.country_code != phonenumbers.country_code_for_region(default_country):
            raise PhoneError(f"{text!r} is not a valid {default_country} number{ELSEWHERE}")
    if phonenumbers.is_valid_number(number):
        return number, international
    why = _REASONS.get(phonenumbers.is_possible_number_with_reason(number), "is not a valid number")
    if international:
        raise PhoneError(f"{text!r} {why}")
    raise PhoneError(f"{text!r} {why} for {default_country}{ELSEWHERE}")
