"""Shared fixtures: real files in a temp folder, a real sandbox API on loopback."""

from __future__ import annotations

import csv
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

KEY = "testkey123456789:abcdefghijklmnopqrstuvwxyz012345"

HEADER = ("Phone", "Name", "first_name", "order_id", "Email", "City")


def contacts(n: int, start: int = 0) -> list[tuple[str, ...]]:
    """n valid US rows with distinct numbers."""
    return [
        (
            f"+1617555{(start + i) % 10000:04d}",
            f"Person {i}",
            f"P{i}",
            f"A-{start + i}",
            f"p{i}@example.com",
            "Boston",
        )
        for i in range(n)
    ]


def write_csv(path: Path, rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


CampaignFactory = Callable[..., Path]


@pytest.fixture
def make_campaign(tmp_path: Path) -> CampaignFactory:
    """Write a campaign file (and its contacts CSV unless `file` is given); return its path."""

    def make(
        rows: Sequence[Sequence[str]] | None = None,
        *,
        provider: str = "twlo",
        message: str = 'text = "Hi {{ first_name }}, order {{ order_id }} is ready."',
        extra: str = "",
        sending: str = "rate = 0\nconcurrency = 4\nmax_attempts = 3\ntimeout = 5",
        recipients: str = "",
        file: str = "contacts.csv",
        api_url: str = "http://127.0.0.1:9",
        name: str = "test",
    ) -> Path:
        if rows is not None:
            write_csv(tmp_path / file, rows)
        text = (
            textwrap.dedent(
                f"""\
            name = "{name}"
            provider = "{provider}"
            channel_key = "{provider}_16175550000"
            api_url = "{api_url}"

            [recipients]
            file = "{file}"
            phone_column = "Phone"
            name_column = "Name"
            default_country = "US"
            {recipients}

            [message]
            {message}

            [sending]
            {sending}
            """
            )
            + extra
        )
        path = tmp_path / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return make
