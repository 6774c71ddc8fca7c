"""The "New campaign" form as a campaign file, and the check page's problem rows.

The form writes an ordinary campaign file (TOML, PRODUCT.md "The campaign file") and an
ordinary recipients file beside it, so ``campaign send NAME.toml`` runs the same campaign from
a terminal. The file is checked with :func:`campaign.config.load_campaign` before it is kept.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from campaign.config import PROVIDERS, Campaign, load_campaign
from campaign.errors import ConfigError, InputFileError, UsageError
from campaign.prepare import Pipeline
from campaign.results import RESULT_COLUMNS, as_written
from campaign.runner import _reason_kind
from campaign.spreadsheet.common import header_key

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
FIELDS = (
    "name",
    "provider",
    "channel_key",
    "text",
    "image_url",
    "template_id",
    "variables",
    "send_at",
    "window",
    "days",
    "timezone_column",
    "daily_limit",
    "default_country",
    "phone_column",
    "name_column",
    "rate",
)


def check_name(name: str) -> str:
    """A campaign name usable as a file name and in a URL, or UsageError."""
    if not NAME.fullmatch(name):
        raise UsageError(f"The name {name!r} cannot be used: use 1 to 64 letters, digits, - or _ (e.g. spring-sale).")
    return name


def _variables(text: str) -> dict[str, Any]:
    """``1 = {{ first_name }}`` lines (Twilio) or ``Body.1 = ...`` lines (Gupshup sections)."""
    out: dict[str, Any] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"Template variables, line {n}: write one per line as `1 = {{{{ first_name }}}}`.")
        section, dot, name = key.strip().partition(".")
        if dot:
            out.setdefault(section, {})[name.strip()] = value.strip()
        else:
            out[key.strip()] = value.strip()
    return out


def campaign_toml(form: Mapping[str, str], recipients_file: str) -> dict[str, Any]:
    """The campaign file's tables from the form's fields (UsageError for what cannot be one)."""
    name = check_name(form.get("name", "").strip())
    provider = form.get("provider", "")
    if provider not in PROVIDERS:
        raise UsageError(f"Choose the provider: one of {', '.join(PROVIDERS)}.")
    recipients: dict[str, Any] = {"file": recipients_file}
    for key in ("default_country", "phone_column", "name_column"):
        if value := form.get(key, "").strip():
            recipients[key] = value.upper() if key == "default_country" else value
    message: dict[str, Any] = {}
    if template_id := form.get("template_id", "").strip():
        message["template_id"] = template_id
        if variables := _variables(form.get("variables", "")):
            message["variables"] = variables
    elif text := form.get("text", "").replace("\r\n", "\n").strip():
        message["text"] = text
    else:
        raise UsageError("Write the message text, or give an approved template's id.")
    if value := form.get("image_url", "").strip():
        message["image_url"] = value
    schedule: dict[str, Any] = {}  # [schedule] (PRODUCT.md, "Sending windows and local time")
    for key in ("send_at", "window", "timezone_column"):
        if value := form.get(key, "").strip():
            schedule[key] = value
    if days := [d.strip() for d in form.get("days", "").replace(" ", ",").split(",") if d.strip()]:
        schedule["days"] = days
    if limit := form.get("daily_limit", "").strip():
        if not limit.isdigit():
            raise UsageError(f"The daily limit must be a whole number of recipients, not {limit!r}.")
        schedule["daily_limit"] = int(limit)
    sending: dict[str, Any] = {}
    if rate := form.get("rate", "").strip():
        try:
            sending["rate"] = float(rate)
        except ValueError:
            raise UsageError(f"Messages per second must be a number, not {rate!r}.") from None
    doc: dict[str, Any] = {
        "name": name,
        "provider": provider,
        "channel_key": form.get("channel_key", "").strip(),
        "recipients": recipients,
        "message": message,
    }
    if schedule:
        doc["schedule"] = schedule
    if sending:
        doc["sending"] = sending
    return doc


def write_campaign(folder: Path, form: Mapping[str, str], upload: Path, filename: str = "") -> Path:
    """Keep the uploaded recipients as ``NAME.recipients.<suffix>`` and write ``NAME.toml``.

    Nothing is kept unless the campaign file loads and its templates fit the upload's columns
    (ConfigError names the key, and the file by ``filename``, the name the user's file had,
    not the upload's name on disk); an existing campaign of that name is never overwritten
    (UsageError)."""
    name = check_name(form.get("name", "").strip())
    path = folder / f"{name}.toml"
    recipients = folder / f"{name}.recipients{upload.suffix}"
    if path.exists() or recipients.exists():
        raise UsageError(f"A campaign named {name!r} already exists in this folder; choose another name.")
    doc = campaign_toml(form, recipients.name)
    draft = folder / f".{name}.toml.draft"
    draft.write_text(tomli_w.dumps(doc), encoding="utf-8")
    try:
        campaign = load_campaign(draft)
        # The templates against the upload's header, as check will: a mistake in the message
        # is fixed in this form. A file that cannot be read is kept: the check page says why
        # and takes a fixed file.
        with contextlib.suppress(InputFileError):
            Pipeline(replace(campaign, recipients=replace(campaign.recipients, file=upload)))
    except ConfigError as err:
        draft.unlink(missing_ok=True)
        # The names the user knows: the campaign's, and the file they chose, not the upload's.
        raise ConfigError(Path(path.name), as_uploaded(err.message, upload, filename)) from None
    os.replace(upload, recipients)
    os.replace(draft, path)
    return path


def as_uploaded(message: str, upload: Path, filename: str) -> str:
    """``message`` with the upload's name on disk (a random ``.upload-…`` name the user never
    saw), as a path or a bare name, replaced by the name of the file the user uploaded."""
    shown = filename or "the uploaded file"
    for written in (str(upload.resolve()), str(upload), upload.name):
        message = message.replace(written, shown)
    return message


def replace_recipients(campaign: Campaign, upload: Path) -> None:
    """Put a fixed upload in place of the campaign's recipients file.

    A campaign this page made (``NAME.recipients.<suffix>``) takes any kind of spreadsheet:
    its campaign file is rewritten to name the new one. Any other campaign file is the
    user's own text (comments, layout), so it is never rewritten: the upload must then be the
    same kind of file. Raises UsageError otherwise, or for a recipients file outside the folder.
    """
    current = campaign.recipients.file
    if not current.resolve().is_relative_to(campaign.folder.resolve()):
        raise UsageError(f"This campaign reads {current}, outside its folder; replace that file yourself.")
    if upload.suffix == current.suffix.lower():
        os.replace(upload, current)
        return
    stem = campaign.path.stem
    if current.name != f"{stem}.recipients{current.suffix}" or current.parent != campaign.folder:
        raise UsageError(
            f"This campaign reads {current.name}: upload a {current.suffix} file (or change [recipients] file)."
        )
    doc = tomllib.loads(campaign.path.read_text(encoding="utf-8"))
    fresh = current.with_name(f"{stem}.recipients{upload.suffix}")
    doc["recipients"]["file"] = fresh.name
    draft = campaign.path.with_name(f".{stem}.toml.draft")
    draft.write_text(tomli_w.dumps(doc), encoding="utf-8")
    os.replace(upload, fresh)
    os.replace(draft, campaign.path)
    current.unlink(missing_ok=True)


@dataclass
class Problems:
    """The check report's rows that will not be sent, the first few of each kind."""

    columns: list[str] = field(default_factory=list)  # the recipients file's columns
    kinds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # reason kind → rows
    counts: dict[str, int] = field(default_factory=dict)


def problem_column(error: str, columns: list[str], phone_column: str | None) -> str | None:
    """The column a row's error is about: the phone column for phone errors, else a column
    the sentence names in quotes or in ``{{ }}``; None when it names none."""
    if error.startswith("phone:") or error.startswith("duplicate of") or error.startswith("suppressed"):
        return phone_column
    for column in columns:
        if f"'{column}'" in error or f'"{column}"' in error or f"{{{{ {column} }}}}" in error:
            return column
    return None


def read_problems(report: Path, campaign: Campaign, first: int = 10) -> Problems:
    """Stream the check report (``campaign check``'s CSV) and keep the first rows per kind,
    each with the column its problem is in (see :func:`problem_column`)."""
    out = Problems()
    with report.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        try:
            row_at = header.index("row")
        except ValueError:
            return out
        # The report keeps an input column named like one of its own as NAME_input: show NAME.
        ours = {c.lower() for c in RESULT_COLUMNS}
        out.columns = [
            c[: -len("_input")] if c.endswith("_input") and c[:-6].strip().lower() in ours else c
            for c in header[:row_at]
        ]
        status_at, error_at = header.index("status"), header.index("error")
        phone_column = phone_header(campaign, out.columns)
        for cells in reader:
            status = cells[status_at]
            if status not in ("invalid", "skipped"):
                continue
            error = cells[error_at]
            kind = f"{status}: {_reason_kind(error)}"
            out.counts[kind] = out.counts.get(kind, 0) + 1
            rows = out.kinds.setdefault(kind, [])
            if len(rows) < first:
                rows.append(
                    {
                        "row": cells[row_at],
                        "cells": [as_written(c) for c in cells[:row_at]],  # the file's own text
                        "error": error,
                        "column": problem_column(error, out.columns, phone_column),
                    }
                )
    return out


def phone_header(campaign: Campaign, columns: list[str]) -> str | None:
    """The header of the phone column, matched as the reader matches names (header_key)."""
    rc = campaign.recipients
    wanted = header_key(rc.phone_column if rc.phone_column_given else "phone")
    return next((c for c in columns if header_key(c) == wanted), None)
