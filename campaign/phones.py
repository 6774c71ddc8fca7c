"""Phone numbers as people type them, turned into E.164 (``+16175550100``) with phonenumbers.

A recipient *is* its normalised number (PRODUCT.md, "Rerunning"), so this function decides what
counts as the same person: ``(617) 555-0100`` and ``+1 617 555 0100`` are one recipient.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
    ValidationResult.TOO_SHORT: "is too short",
    ValidationResult.TOO_LONG: "is too long",
    ValidationResult.INVALID_LENGTH: "has the wrong number of digits",
}


class PhoneError(ValueError):
    """The cell cannot be made into a phone number; ``str()`` is the reason for the row."""


def normalise(raw: str, default_country: str | None) -> str:
    """Return ``raw`` as E.164, or raise :class:`PhoneError` saying why not.

    Numbers without a country code take ``default_country``. Spreadsheets often drop the ``+``
    of international numbers (``447911123456``), so when a number is not valid for the default
    country but is valid with a ``+`` in front, that reading wins.
    """
    text = raw.strip()
    if not text:
        raise PhoneError("no phone number")
    if not any(c.isdigit() for c in text):
        raise PhoneError(f"{text!r} is not a phone number")
    candidates: list[tuple[str, str | None]] = [(text, default_country)]
    if not text.startswith("+"):
        digits = "".join(c for c in text if c.isdigit())
        if text.startswith("00"):
            candidates.insert(0, ("+" + digits[2:], None))
        candidates.append(("+" + digits, None))
    first_reason: str | None = None
    for candidate, region in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except NumberParseException as err:
            if err.error_type == NumberParseException.INVALID_COUNTRY_CODE and region is None:
                reason = (
                    f"{text!r} has no country code; write it with + and the country code "
                    "or set [recipients] default_country"
                )
            else:
                reason = f"{text!r} is not a phone number"
            first_reason = first_reason or reason
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, PhoneNumberFormat.E164)
        if first_reason is None:
            why = _REASONS.get(phonenumbers.is_possible_number_with_reason(number))
            first_reason = f"{text!r} {why}" if why else f"{text!r} is not a valid number"
            if region and not text.startswith("+"):
                first_reason += f" for {region}"
    raise PhoneError(first_reason or f"{text!r} is not a phone number")
