"""`campaign listen`, `subscribe`, `status` (funnel) and `send --sandbox` as a user runs them."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from campaign.delivery import SIGNATURE_HEADER, sign
from campaign.sandbox import spawn
from tests.conftest import KEY, CampaignFactory, contacts, has_state, state_of

SECRET = "listen-test-secret"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCIOCS_")}
    env.update(extra)
    return env


def _run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "campaign", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


class _Listening:
    """`campaign listen` in a child process; lines of its stdout collected as they come."""

    def __init__(self, cwd: Path, *args: str, secret: str | None) -> None:
        env = _env(SOCIOCS_WEBHOOK_SECRET=secret) if secret else _env()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "campaign", "listen", *args, "--port", "0"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.url = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        assert self.ready.wait(20), "campaign listen did not start"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = re.search(r"http://\S+/webhooks/sociocs", line)
            if match and not self.url:
                self.url = match.group(0)
                self.ready.set()
        self.ready.set()

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        assert self.proc.stderr is not None and self.proc.stdout is not None
        stderr = self.proc.stderr.read()
        self.proc.stderr.close()
        self.reader.join(10)
        self.proc.stdout.close()
        return code, stderr


def _report(message_id: str, status: str, code: int | None = None) -> bytes:
    data: dict[str, object] = {"status": status}
    if code:
        data["error"] = {"code": code, "message": f"(code: {code})"}
    return json.dumps({"message_id": message_id, "event": "status_update", "event_data": data}).encode()


def test_listen_records_signed_reports_refuses_others_and_stops_on_sigterm(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    make_campaign(contacts(2))
    listening = _Listening(tmp_path, "test.toml", "--verbose", secret=SECRET)
    try:
        good = _report("SMabc", "delivered")
        assert (
            requests.post(listening.url, data=good, headers={SIGNATURE_HEADER: sign(SECRET, good)}).status_code == 200
        )
        assert requests.post(listening.url, data=good).status_code == 401
        assert requests.post(listening.url, data=good, headers={SIGNATURE_HEADER: sign("x", good)}).status_code == 401
    finally:
        code, stderr = listening.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert any("SMabc delivered" in line and "(no row yet)" in line for line in listening.lines)
    state = state_of(tmp_path / "test.toml")
    try:
        assert state.db.execute("SELECT message_id, status FROM delivery_events").fetchall() == [("SMabc", "delivered")]
    finally:
        state.close()


def test_listen_without_a_secret_warns_that_anyone_can_post(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    make_campaign(contacts(1))
    listening = _Listening(tmp_path, "test.toml", "-v", secret=None)
    try:
        body = _report("SMx", "[bold]sent")  # an odd word, kept; never read as rich markup
        assert requests.post(listening.url, data=body).status_code == 200
    finally:
        code, stderr = listening.stop()
    assert code == 0
    assert "SOCIOCS_WEBHOOK_SECRET is not set" in stderr
    assert any("SMx [bold]sent" in line for line in listening.lines)


def test_send_sandbox_shows_the_funnel_and_status_exports_undeliverable(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    make_campaign(contacts(40))
    sent = _run("send", "test.toml", "--sandbox", "--yes", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert re.search(r"delivered\s*│\s*\d+\s*│\s*\d+\.\d%", sent.stdout), sent.stdout
    with (tmp_path / "test.sandbox.results.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {"delivery_status", "delivery_error", "delivery_updated_at"} <= set(rows[0])
    assert all(r["delivery_status"] for r in rows)
    assert not has_state(tmp_path / "test.toml")  # a trial never touches the real state
    status = _run("status", "test.toml", "--sandbox", "--export-undeliverable", "undeliverable.csv", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "accepted" in status.stdout and "100.0%" in status.stdout
    permanent = [r for r in rows if r["delivery_error"].split(":")[0] in ("30005", "30006", "21610")]
    with (tmp_path / "undeliverable.csv").open(encoding="utf-8-sig", newline="") as handle:
        exported = list(csv.DictReader(handle))
    assert sorted(r["phone"] for r in exported) == sorted(r["phone"] for r in permanent)
    for r in rows:
        if r["delivery_error"]:
            code = r["delivery_error"].split(":")[0]
            assert re.search(rf"{r['delivery_status']} {code} \(\d+\): \S", status.stdout)


@pytest.mark.parametrize("delete", [False, True])
def test_subscribe_command_lists_and_updates_one_subscription(
    make_campaign: CampaignFactory, tmp_path: Path, delete: bool
) -> None:
    with spawn(env=_env()) as url:
        make_campaign(contacts(1), api_url=url)
        for hook in ("https://a.example/webhooks/sociocs", "https://b.example/webhooks/sociocs"):
            done = _run("subscribe", "test.toml", "--url", hook, cwd=tmp_path, SOCIOCS_API_KEY=KEY)
            assert done.returncode == 0, done.stderr
            assert "SOCIOCS_WEBHOOK_SECRET is not set" in done.stdout
        listed = _run("subscribe", "test.toml", *(["--delete"] if delete else []), cwd=tmp_path, SOCIOCS_API_KEY=KEY)
    assert listed.returncode == 0, listed.stderr
    if delete:
        assert "Deleted subscription" in listed.stdout
        assert "No webhook subscriptions" in listed.stdout
    else:
        assert listed.stdout.count("webhooks/sociocs") == 1
        assert "https://b.example/webhooks/sociocs" in listed.stdout and "(this campaign)" in listed.stdout


def test_bench_delivery_runs_and_reports(tmp_path: Path) -> None:
    """bench/delivery.py at a tiny size: every report recorded, figures written (no timing asserted)."""
    from bench import delivery

    out = tmp_path / "figures.json"
    argv = ["--reports", "300", "--recipients", "100", "--concurrency", "4", "--workdir", str(tmp_path)]
    assert delivery.main([*argv, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["events"] == 300 and data["not_200"] == 0 and data["listener_exit"] == 0
    assert data["reports_per_s"] > 0 and data["peak_mb"] > 0


def test_listen_on_a_taken_port_says_so_in_one_sentence(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    make_campaign(contacts(1))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = _run("listen", "test.toml", "--port", port, cwd=tmp_path)
    assert done.returncode == 2
    assert f"Cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr


def test_send_sandbox_dry_run_creates_no_state_and_wires_no_listener(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    make_campaign(contacts(3))
    done = _run("send", "test.toml", "--sandbox", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not has_state(tmp_path / "test.toml", sandbox=True) and not has_state(tmp_path / "test.toml")
    assert "delivery" not in done.stdout.lower().split("results:")[0]


def _final_reports(campaign_file: Path) -> int:
    """Sent rows whose delivery report is final (an SMS is never read)."""
    state = state_of(campaign_file)
    try:
        return int(
            state.db.execute(
                "SELECT count(*) FROM recipients p JOIN delivery d ON d.message_id = p.message_id"
                " WHERE d.status IN ('delivered', 'failed', 'undelivered')"
            ).fetchone()[0]
        )
    finally:
        state.close()


def test_sandbox_listen_subscribe_send_status_across_processes(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """The user's whole loop, each command its own process: reports with faults reach the
    listener, which rewrites the results file when it stops."""
    flags = ("--report-duplicate", "0.5", "--report-out-of-order", "0.5", "--report-early", "0.3", "--seed", "3")
    with spawn(*flags, env=_env()) as url:
        make_campaign(contacts(12), api_url=url)
        listening = _Listening(tmp_path, "test.toml", secret=SECRET)
        try:
            auth = {"SOCIOCS_API_KEY": KEY, "SOCIOCS_WEBHOOK_SECRET": SECRET}
            subscribed = _run("subscribe", "test.toml", "--url", listening.url, cwd=tmp_path, **auth)
            assert subscribed.returncode == 0, subscribed.stderr
            sent = _run("send", "test.toml", "--yes", cwd=tmp_path, **auth)
            assert sent.returncode == 0, sent.stderr
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _final_reports(tmp_path / "test.toml") < 12:
                time.sleep(0.1)
            status = _run("status", "test.toml", cwd=tmp_path)
        finally:
            code, stderr = listening.stop()
    assert code == 0, stderr
    assert re.search(r"accepted\s*│\s*12\s*│\s*100\.0%", status.stdout), status.stdout
    with (tmp_path / "test.results.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and all(r["delivery_status"] in ("delivered", "failed", "undelivered") for r in rows)
