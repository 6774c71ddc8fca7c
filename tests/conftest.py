"""Shared fixtures: real files in a temp folder, a real sandbox API on loopback."""

from __future__ import annotations

import csv
import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

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


#: The state engines the suite runs against: CAMPAIGN_TEST_BACKENDS (default both). A test in a
#: module that sends (BACKEND_MODULES) runs once per engine; a test that is about one engine's
#: own behaviour (a damaged SQLite file, a server that goes away) is marked ``backend``.
BACKENDS = tuple(b for b in os.environ.get("CAMPAIGN_TEST_BACKENDS", "sqlite,postgresql").split(",") if b)
# test_cli, test_output, test_secrets and test_web are about what is printed, written and
# served; they reach the state through the same campaign.store, so they run on SQLite, with
# one test each on both engines (marked) and the PostgreSQL-only secrets test of a state URL.
BACKEND_MODULES = frozenset(
    {
        "test_cancel",
        "test_delivery",
        "test_delivery_cli",
        "test_faults",
        "test_kill",
        "test_record",
        "test_send",
        "test_stops",
        "test_suppression_safety",
        "test_timing",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backend(name): a test of one state engine's own behaviour")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    marker = metafunc.definition.get_closest_marker("backend")
    if marker is not None:  # backend("postgresql"), or backend("sqlite", "postgresql") for both
        engines = [b for b in marker.args if b in BACKENDS] or [marker.args[0]]
        metafunc.parametrize("state_backend", engines, indirect=True, ids=engines)
    elif module in BACKEND_MODULES:
        metafunc.parametrize("state_backend", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """One throw-away PostgreSQL cluster for the session (bench/pgcluster.py)."""
    from bench.pgcluster import Cluster, available

    if not available():
        raise RuntimeError("PostgreSQL is missing (apt-get install postgresql); or set CAMPAIGN_TEST_BACKENDS=sqlite")
    cluster = Cluster.start()
    try:
        yield cluster
    finally:
        from campaign.database import close_pools

        close_pools()
        cluster.stop()


_databases = itertools.count(1)


@pytest.fixture(autouse=True)
def state_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The state engine of this test: ``sqlite`` (the default), or ``postgresql``: a fresh
    database on the session's cluster, named by CAMPAIGN_STATE_URL for this process and the
    ``campaign`` processes the test starts."""
    backend = getattr(request, "param", "sqlite")
    if backend != "postgresql":
        monkeypatch.delenv("CAMPAIGN_STATE_URL", raising=False)
        yield backend
        return
    cluster = request.getfixturevalue("pg_cluster")
    name = f"t{os.getpid()}_{next(_databases)}"
    monkeypatch.setenv("CAMPAIGN_STATE_URL", cluster.create_database(name))
    try:
        yield backend
    finally:
        from campaign.database import close_pools

        close_pools()
        cluster.drop_database(name)


def _campaign_of(campaign: Any, sandbox: bool) -> Any:
    from campaign.config import Campaign, for_sandbox, load_campaign

    found: Campaign = campaign if isinstance(campaign, Campaign) else load_campaign(Path(campaign))
    return for_sandbox(found, "http://127.0.0.1:9") if sandbox else found


def state_of(campaign: Any, *, sandbox: bool = False) -> Any:
    """The state of ``campaign`` (a campaign file, or a loaded Campaign) on this test's engine,
    created if need be; ``sandbox``: its ``--sandbox`` trial's state. Close it after use."""
    from campaign import store

    return store.open_state(_campaign_of(campaign, sandbox))


def has_state(campaign: Any, *, sandbox: bool = False) -> bool:
    """Whether ``campaign`` (a file or a Campaign) has a state on this test's engine yet: the
    file beside it, or its schema in the test's PostgreSQL database. Creates nothing."""
    from campaign import store

    return bool(store.state_exists(_campaign_of(campaign, sandbox)))


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
