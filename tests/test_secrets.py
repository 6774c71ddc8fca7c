"""The API key (and a PostgreSQL state URL's password) never appears in any output, log,
results file, state or error text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from campaign import store
from campaign.config import load_campaign
from campaign.database import pool
from tests.conftest import CampaignFactory, contacts, has_state
from tests.test_cli import free_port

CANARY = "CANARYkey0000001:CANARYsecret00000000000000000002"
FAULTS = [
    [],
    ["--rate-limit", "5", "--retry-after", "1"],
    ["--error-500", "0.5"],
    ["--error-503", "0.5"],
    ["--accept-then-500", "0.5"],
    ["--drop-after-accept", "0.5"],
    ["--api-key", "someone-else-key:0000000000000000000000000000000"],  # every request 401
]


@pytest.mark.parametrize("faults", FAULTS, ids=lambda f: " ".join(f) or "no-fault")
def test_key_never_leaks(make_campaign: CampaignFactory, tmp_path: Path, faults: list[str]) -> None:
    port = free_port()
    env = {**os.environ, "SOCIOCS_API_KEY": CANARY}
    server = subprocess.Popen(
        [sys.executable, "-m", "campaign", "sandbox", "--port", str(port), "--seed", "4", *faults],
        env={k: v for k, v in env.items() if k != "SOCIOCS_API_KEY"} if "--api-key" in faults else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "listening on ..." once ready
        path = make_campaign(
            contacts(12),
            api_url=f"http://127.0.0.1:{port}",
            sending="rate = 50\nconcurrency = 3\nmax_attempts = 2\ntimeout = 5",
        )
        outputs = []
        for args in (
            ["send", str(path), "--yes"],
            ["--debug", "send", str(path), "--yes", "--retry-failed"],
            ["status", str(path)],
            ["reconcile", str(path)],
            ["preview", str(path)],
        ):
            proc = subprocess.run(
                [sys.executable, "-m", "campaign", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
            outputs += [proc.stdout, proc.stderr]
    finally:
        server.terminate()
        server_out, _ = server.communicate(timeout=10)
    files = [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.iterdir() if p.is_file()]
    assert has_state(path)
    if os.environ.get("CAMPAIGN_STATE_URL"):
        files.append(database_text(os.environ["CAMPAIGN_STATE_URL"]))
    for secret in (CANARY, *CANARY.split(":")):
        for text in [*outputs, *files, server_out]:
            assert secret not in text
    assert "Traceback" not in "".join(outputs[:1])


def database_text(url: str) -> str:
    """Every row of every table of the PostgreSQL database at ``url`` outside the system's
    schemas (each campaign's state, the ledger), as text."""
    out = []
    with pool(url).connection() as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert tables
        for schema, table in tables:
            out += [repr(row) for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"')]
    return "\n".join(out)


PASSWORD = "pgCANARYpassword42"


@pytest.mark.backend("postgresql")
def test_state_url_password_never_leaks(
    make_campaign: CampaignFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test cluster trusts every connection, so a URL with a password works: it must not
    reach any output (of a run with faults, --debug, status, reconcile, cancel, listen's
    refusal, a second run's lock message, a database that does not exist), file, or the
    database itself."""
    url = os.environ["CAMPAIGN_STATE_URL"]
    secret_url = url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    assert secret_url != url
    monkeypatch.setenv("CAMPAIGN_STATE_URL", secret_url)
    port = free_port()
    env = {**os.environ, "SOCIOCS_API_KEY": CANARY}
    server = subprocess.Popen(
        [sys.executable, "-m", "campaign", "sandbox", "--port", str(port), "--seed", "4", "--drop-after-accept", "0.3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    outputs: list[str] = []

    def run(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "campaign", *args],
            env={**env, **more}, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        outputs.extend([proc.stdout, proc.stderr])
        return proc

    try:
        assert server.stdout is not None
        server.stdout.readline()
        path = make_campaign(contacts(12), api_url=f"http://127.0.0.1:{port}")
        assert run("send", str(path), "--yes").returncode == 1  # rows left unknown by the dropped answers
        run("--debug", "send", str(path), "--yes", "--retry-failed")
        assert run("status", str(path)).returncode in (0, 1)
        run("reconcile", str(path))
        run("cancel", str(path))
        with store.lock(load_campaign(path)):
            locked = run("send", str(path), "--yes")
        assert locked.returncode == 2 and "already being sent" in locked.stderr, locked.stderr
        held = subprocess.Popen(  # a listener holds the state open while a second command runs
            [sys.executable, "-m", "campaign", "listen", str(path), "--port", str(free_port())],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            run("status", str(path))
        finally:
            held.terminate()
            outputs.extend(held.communicate(timeout=30))
        missing = secret_url.rsplit("/", 1)[0] + "/no_such_database"
        gone = run("status", str(path), CAMPAIGN_STATE_URL=missing)
        assert gone.returncode == 2 and "postgres:***@" in gone.stderr, gone.stderr
    finally:
        server.terminate()
        server_out, _ = server.communicate(timeout=10)
    files = [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 3  # the campaign, its contacts and results files
    for text in [*outputs, *files, server_out, database_text(url)]:
        assert PASSWORD not in text
        assert CANARY not in text
    assert "Traceback" not in "".join(outputs[:2])
