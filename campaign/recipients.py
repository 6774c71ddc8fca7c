"""Reading recipients files: kept for callers of ``campaign.recipients``; see campaign.spreadsheet."""

from __future__ import annotations

from campaign.spreadsheet import (
    EXCEL_SUFFIXES,
    LEGACY_SUFFIXES,
    MAX_LINE_BYTES,
    TEXT_SUFFIXES,
    RecipientFile,
    SourceRow,
    header_key,
    open_recipients,
    visible,
)

__all__ = [
    "EXCEL_SUFFIXES",
    "LEGACY_SUFFIXES",
    "MAX_LINE_BYTES",
    "TEXT_SUFFIXES",
    "RecipientFile",
    "SourceRow",
    "header_key",
    "open_recipients",
    "visible",
]
