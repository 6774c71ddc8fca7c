"""Shared fixtures: real files in a temp folder, a real sandbox API on loopback."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
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


def run_campaign(
    *args: str, cwd: Path, key: str | None = None, timeout: float = 60, columns: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m campaign ARGS` as a child process in ``cwd``: the environment's API key and URL
    removed (``key`` sets the key), no stdin, output captured; ``columns`` widens the lines."""
    env = {k: v for k, v in os.environ.items() if k not in ("SOCIOCS_API_KEY", "SOCIOCS_API_URL")}
    if key:
        env["SOCIOCS_API_KEY"] = key
    if columns:
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "campaign", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(autouse=True)
def _own_ledger(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own machine-wide ledger (daily limits, the campaigns per channel), so no
    test reads another's, nor the user's (the child processes a test starts inherit it)."""
    monkeypatch.setenv("CAMPAIGN_LEDGER", str(tmp_path_factory.mktemp("ledger") / "ledger.sqlite"))


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
