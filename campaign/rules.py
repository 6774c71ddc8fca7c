"""Provider rules checked before sending, and SMS segment counting.

Sources: sociocs-api.md sections 3 and 4 (Sociocs), Twilio's ContentVariables rules (error
21656: values non-empty, no newline or tab, at most four spaces in a row, at most 1,600
characters) and Twilio's segment rules (GSM-7: 160 / 153 per part, extension characters count
double; UCS-2 as soon as one character is outside GSM-7: 70 / 67 per part; a character is
never split across parts).

A broken rule is a :class:`RuleError` whose text becomes the row's ``error``; the row is
``invalid`` and never sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import regex

MAX_TEXT = 1600  # Twilio's maximum body; Sociocs forwards to Twilio (sociocs-api.md section 9)
MAX_VARIABLE = 1600
MAX_VARIABLES = 100
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
_FIVE_SPACES = re.compile(r" {5,}")

# The GSM 03.38 basic set (without ESC, which is only the extension prefix) and the extension
# table (each extension character takes two septets: ESC and its code).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


class RuleError(ValueError):
    """A provider rule the row breaks; ``str()`` is the sentence for the results file."""


@dataclass(frozen=True, slots=True)
class Segments:
    """How an SMS body is billed: its encoding, length in code units and number of parts."""

    encoding: str  # "GSM-7" or "UCS-2"
    units: int
    parts: int


def sms_segments(text: str) -> Segments:
    """Count the SMS segments Twilio will bill for ``text`` (cost and time estimates use this).

    GSM-7 when every character is in GSM 03.38 (an extension character takes two septets),
    else UCS-2 (UTF-16 code units: an emoji outside the BMP takes two). One segment holds 160
    septets or 70 units; a multipart message loses 6 octets per segment to the concatenation
    header, leaving 153 septets or 67 units. Characters are packed whole, never split across
    segments: not an extension character's escape pair, not a surrogate pair, and (as Twilio's
    calculator does) not a grapheme cluster such as a flag or a ZWJ emoji sequence, so a
    message can need one segment more than ``units / 153``. Source: Twilio's segment
    calculator (github.com/TwilioDevEd/message-segment-calculator, ``Segment.ts`` and
    ``SegmentedMessage.ts``), ported with its test vectors in ``tests/test_segments.py``.
    """
    clusters = _clusters(text)
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in clusters):
        sizes = [2 if c in GSM7_EXTENSION else 1 for c in clusters]
        return _pack("GSM-7", sizes, single=160, multi=153)
    return _pack("UCS-2", [len(c.encode("utf-16-le")) // 2 for c in clusters], single=70, multi=67)


def _clusters(text: str) -> list[str]:
    """The text as user-perceived characters (Unicode extended grapheme clusters, UAX #29).

    CR LF is two characters, as in Twilio's calculator: each is one GSM-7 septet.
    """
    out: list[str] = []
    for cluster in regex.findall(r"\X", text):
        if cluster == "\r\n":
            out.extend(cluster)
        else:
            out.append(cluster)
    return out


def _pack(encoding: str, sizes: list[int], *, single: int, multi: int) -> Segments:
    """Fill segments in order with whole characters of the given sizes (septets or units)."""
    units = sum(sizes)
    if units <= single:
        return Segments(encoding, units, 1)
    parts, free = 1, multi
    for size in sizes:
        if size > free:
            parts, free = parts + 1, multi
        free -= size
    return Segments(encoding, units, parts)


def check_text(text: str) -> None:
    """An SMS body must be non-empty and at most 1,600 characters."""
    if not text.strip():
        raise RuleError("the message text is empty after rendering")
    if len(text) > MAX_TEXT:
        raise RuleError(f"the message is {len(text):,} characters; the limit is {MAX_TEXT:,}")


def check_url(url: str, field: str) -> None:
    """Media URLs must be public http(s) addresses."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RuleError(f"{field} {url!r} is not an http(s) URL")


def check_template_id(template_id: str, provider: str) -> None:
    """A twlowa template id is a Twilio Content SID (``HX`` and 32 hex digits)."""
    if provider == "twlowa" and not CONTENT_SID.match(template_id):
        raise RuleError(f"template_id {template_id!r} is not a Twilio Content SID (HX followed by 32 hex digits)")


def check_variable(key: str, value: str, *, body: bool = True) -> None:
    """Twilio rejects empty variables and, in body variables, newlines, tabs and long runs of spaces."""
    if not value.strip():
        raise RuleError(f"template variable {key} is empty after rendering")
    if len(value) > MAX_VARIABLE:
        raise RuleError(f"template variable {key} is {len(value):,} characters; the limit is {MAX_VARIABLE:,}")
    if body and ("\n" in value or "\r" in value or "\t" in value):
        raise RuleError(f"template variable {key} contains a newline or tab, which WhatsApp refuses")
    if body and _FIVE_SPACES.search(value):
        raise RuleError(f"template variable {key} has more than four spaces in a row, which WhatsApp refuses")
