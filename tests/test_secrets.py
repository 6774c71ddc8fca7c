"""The API key never appears in any output, log, results file, state file or error text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CampaignFactory, contacts
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
    assert any(p.name == "test.state.sqlite" for p in tmp_path.iterdir())
    for secret in (CANARY, *CANARY.split(":")):
        for text in [*outputs, *files, server_out]:
            assert secret not in text
    assert "Traceback" not in "".join(outputs[:1])
