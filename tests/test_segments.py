"""SMS segment counting against Twilio's segment calculator.

The table is ported from github.com/TwilioDevEd/message-segment-calculator (commit a50230f,
``tests/index.test.js``): each body is rebuilt from its length there (its filler is digits, one
GSM-7 septet each), with the encoding and segment count Twilio's calculator gives. The rows
marked "issue 9" are the boundary cases a naive ``ceil(units / 153)`` gets wrong.
"""

from __future__ import annotations

import pytest

from campaign.rules import sms_segments

ESCAPES = ["|", "^", "€", "{", "}", "[", "]", "~", "\\", "\f"]
FLAG = "\U0001f1ee\U0001f1f9"  # Italy: two regional indicators, one grapheme, four UTF-16 units
RAINBOW = "\U0001f3f3\ufe0f\u200d\U0001f308"  # a ZWJ sequence: one grapheme, six units
TRIPLE_ACCENT = "e\u0301\u0301\u0301"  # one grapheme, four units


def d(n: int) -> str:
    """``n`` digits, as Twilio's test bodies use."""
    return ("1234567890" * 40)[:n]


TWILIO = [
    # (description, body, encoding, segments)
    ("GSM-7 in one segment", d(160), "GSM-7", 1),
    ("GSM-7 in two segments", d(161), "GSM-7", 2),
    ("GSM-7 in three segments", d(307), "GSM-7", 3),
    ("UCS-2 message in one segment", "\U0001f61c" + d(68), "UCS-2", 1),
    ("UCS-2 message in two segments", "\U0001f61c" + d(69), "UCS-2", 2),
    ("UCS-2 message in three segments", "\U0001f61c" + d(133), "UCS-2", 3),
    ("UCS-2 with two-unit extended characters, one segment boundary", FLAG + d(66), "UCS-2", 1),
    ("UCS-2 with extended characters, two segments boundary", FLAG + d(67), "UCS-2", 2),
    ("UCS-2 with four-unit extended characters, one segment boundary", RAINBOW + d(64), "UCS-2", 1),
    ("UCS-2 with four-unit extended characters, two segments boundary", RAINBOW + d(65), "UCS-2", 2),
    ("UCS-2 message with special GSM characters in one segment", "\U0001f600" + "]" * 68, "UCS-2", 1),
    ("UCS-2 message with special GSM characters in two segments", "\U0001f600" + "]" * 69, "UCS-2", 2),
    ("triple accents, one segment", TRIPLE_ACCENT + "a" * 66, "UCS-2", 1),
    ("triple accents, two segments", TRIPLE_ACCENT + "a" * 67, "UCS-2", 2),
    *[(f"one segment with escape character {c!r}", c + d(158), "GSM-7", 1) for c in ESCAPES],
    *[(f"two segments with escape character {c!r}", c + d(159), "GSM-7", 2) for c in ESCAPES],
    *[(f"one segment, 70 of {c!r}", c * 70, "UCS-2", 1) for c in "ÁÚúçíÍóÓ"],
    *[(f"two segments, 71 of {c!r}", c * 71, "UCS-2", 2) for c in "ÁÚúçíÍóÓ"],
    # issue 9: a two-septet character or a surrogate pair never straddles two segments.
    ("issue 9: ']' x 153 (306 septets, 153 per part, but no escape pair is split)", "]" * 153, "GSM-7", 3),
    ("issue 9: a euro sign at the first part's end", "a" * 152 + "€" + "a" * 152, "GSM-7", 3),
    ("issue 9: an emoji at the first part's end", "a" * 66 + "\U0001f600" + "a" * 66, "UCS-2", 3),
    ("a flag is one character: not split between its two indicators", "a" * 65 + FLAG + "a" * 65, "UCS-2", 3),
    ("152 euro signs fill two parts exactly (76 per part)", "€" * 152, "GSM-7", 2),
    ("empty", "", "GSM-7", 1),
]


@pytest.mark.parametrize(("body", "encoding", "parts"), [t[1:] for t in TWILIO], ids=[t[0] for t in TWILIO])
def test_segments_match_twilio(body: str, encoding: str, parts: int) -> None:
    seg = sms_segments(body)
    assert (seg.encoding, seg.parts) == (encoding, parts)


@pytest.mark.parametrize(
    ("body", "units"),
    [
        ("\rabcde\r\n123", 11),  # Twilio: CR LF is two characters
        ("\nabcde\n\n123\n", 12),
        ("€" * 3, 6),  # extension characters take two septets
        ("\U0001f600", 2),  # UTF-16 units
    ],
)
def test_segment_units(body: str, units: int) -> None:
    assert sms_segments(body).units == units


def test_escape_character_alone_is_not_gsm7() -> None:
    """ESC is only the extension table's prefix; Twilio's table has no ESC character."""
    assert sms_segments("\x1b").encoding == "UCS-2"
