"""The `campaign` command end to end: real subprocesses, exit codes and visible text."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaign.cli import cli
from campaign.lock import CampaignLock
from campaign.sandbox import spawn
from tests.conftest import KEY, CampaignFactory, contacts

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path, key: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SOCIOCS_API_KEY", "SOCIOCS_API_URL")}
    if key:
        env["SOCIOCS_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "campaign", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "samples",
        tmp_path / "samples",
        ignore=shutil.ignore_patterns("*.sqlite*", "*.csv.*", "*.results.csv", "*.check.csv", ".*"),
    )
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sandbox_process() -> Iterator[str]:
    """A `campaign sandbox` subprocess with 50 ms latency; yields its URL."""
    with spawn("--latency", "0.05") as url:
        yield url


def read_results(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("sample", ["sms.toml", "whatsapp-twilio.toml", "whatsapp-gupshup.toml"])
def test_readme_demo_with_python_m(samples: Path, sample: str) -> None:
    proc = run("send", f"samples/{sample}", "--sandbox", "--yes", cwd=samples)
    assert proc.returncode == 1, proc.stderr  # the samples have one bad phone number on purpose
    assert "Traceback" not in proc.stderr
    assert "sent" in proc.stdout and "Results:" in proc.stdout
    name = {
        "sms.toml": "order-ready-sms",
        "whatsapp-twilio.toml": "order-ready-twlowa",
        "whatsapp-gupshup.toml": "order-ready-gswa",
    }[sample]
    rows = read_results(samples / "samples" / f"{name}.sandbox.results.csv")  # a trial keeps its own files
    assert not (samples / "samples" / f"{name}.results.csv").exists()
    assert not (samples / "samples" / f"{name}.state.sqlite").exists()
    assert len(rows) == 24
    statuses = {r["status"] for r in rows}
    assert statuses <= {"sent", "invalid", "skipped"} and "sent" in statuses
    bad = [r for r in rows if r["status"] == "invalid"]
    assert [r["row"] for r in bad] == ["9"]


def test_every_command_has_help() -> None:
    assert cli.help
    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 20, name
        proc = run(name, "--help", cwd=ROOT)
        assert proc.returncode == 0 and "Usage:" in proc.stdout


def test_no_terminal_and_no_yes_refuses(samples: Path) -> None:
    proc = run("send", "samples/sms.toml", "--sandbox", cwd=samples)
    assert proc.returncode == 2
    assert "Send 21 messages via twlo channel twlo_16175550100?" in proc.stderr
    assert "--yes" in proc.stderr
    assert not (samples / "samples" / "order-ready-sms.state.sqlite").exists()


def test_missing_key_is_one_sentence(samples: Path) -> None:
    proc = run("send", "samples/sms.toml", "--yes", cwd=samples)
    assert proc.returncode == 2
    assert "SOCIOCS_API_KEY" in proc.stderr and "Traceback" not in proc.stderr


def test_campaign_file_mistakes(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(1), extra="\n[sending]\n")  # duplicate table: invalid TOML
    proc = run("check", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "is not valid TOML" in proc.stderr and "Traceback" not in proc.stderr
    path = make_campaign(contacts(1), message='text = "x"\nimage_url = "https://x/y.jpg"', provider="twlowa")
    proc = run("check", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "image_url is only supported with provider twlo" in proc.stderr
    path = make_campaign(contacts(1), message='text = "Hi {{ frist_name }}"')
    proc = run("check", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "Did you mean 'first_name'?" in proc.stderr
    proc = run("--debug", "check", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_check_and_preview(samples: Path) -> None:
    proc = run("check", "samples/sms.toml", cwd=samples)
    assert proc.returncode == 1
    assert "Sendable: 21" in proc.stdout
    assert "invalid (1): phone: '12345' is too short for US; if it is another country's number, write it" in proc.stdout
    assert "(for example +44 7911 123456) — row 9" in proc.stdout  # the bad row, by number
    assert "SMS segments:" in proc.stdout
    report = read_results(samples / "samples" / "order-ready-sms.check.csv")
    assert {r["status"] for r in report} == {"dry-run", "invalid", "skipped"}
    assert report[0]["segments"] == "1"
    proc = run("preview", "samples/sms.toml", "-n", "2", cwd=samples)
    assert proc.returncode == 0 and '"to": "+16175550100"' in proc.stdout and "SMS segments" in proc.stdout


def test_status_and_lock(samples: Path) -> None:
    run("send", "samples/sms.toml", "--sandbox", "--yes", cwd=samples)
    proc = run("status", "samples/sms.toml", "--results", "again.csv", cwd=samples)
    assert proc.returncode == 2 and "has not been sent yet" in proc.stderr  # a trial is not a real send
    proc = run("status", "samples/sms.toml", "--sandbox", "--results", "again.csv", cwd=samples)
    assert proc.returncode == 0 and "sent" in proc.stdout
    assert len(read_results(samples / "again.csv")) == 24
    with CampaignLock(samples / "samples" / "order-ready-sms.sandbox.state.sqlite", "order-ready-sms"):
        proc = run("send", "samples/sms.toml", "--sandbox", "--yes", cwd=samples)
    assert proc.returncode == 2 and "already being sent" in proc.stderr


def _start_send(path: Path, **popen: Any) -> subprocess.Popen[str]:
    """`campaign send PATH --yes` as a child process with the test key, its output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "campaign", "send", str(path), "--yes"],
        env={**os.environ, "SOCIOCS_API_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_exits_130_with_complete_results(
    make_campaign: CampaignFactory, tmp_path: Path, sandbox_process: str, stop: signal.Signals
) -> None:
    url = sandbox_process
    path = make_campaign(contacts(200), api_url=url, sending="rate = 50\nconcurrency = 2\ntimeout = 5")
    proc = _start_send(path)
    time.sleep(2.0)
    proc.send_signal(stop)
    _stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Resume with: campaign send" in stderr
    rows = read_results(tmp_path / "test.results.csv")
    assert len(rows) >= 1
    sent = [r for r in rows if r["status"] == "sent"]
    assert sent and all(r["message_id"] for r in sent)
    assert not [r for r in rows if r["status"] in ("sending", "unknown")]
    # Resume finishes the rest, and nothing is sent twice.
    proc2 = run("send", str(path), "--yes", cwd=tmp_path, key=KEY, timeout=120)
    assert proc2.returncode == 0, proc2.stderr
    rows = read_results(tmp_path / "test.results.csv")
    assert {r["status"] for r in rows} == {"sent"} and len(rows) == 200
    assert len({r["message_id"] for r in rows}) == 200


def test_ctrl_c_at_a_terminal_hits_the_whole_process_group_and_counts_once(
    make_campaign: CampaignFactory, tmp_path: Path, sandbox_process: str
) -> None:
    """A terminal sends Ctrl-C to every process of the group, the row-preparing child included:
    the child must ignore it (not count as a second Ctrl-C), and none may be left behind."""
    path = make_campaign(contacts(8000), api_url=sandbox_process, sending="rate = 50\nconcurrency = 2\ntimeout = 5")
    proc = _start_send(path, start_new_session=True)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert stderr.count("Stopping: waiting for the requests in flight") == 1
    assert "Resume with: campaign send" in stderr
    rows = read_results(tmp_path / "test.results.csv")
    assert [r["row"] for r in rows] == [str(n) for n in range(2, len(rows) + 2)]  # the rows read so far
    statuses = Counter(r["status"] for r in rows)
    assert set(statuses) == {"sent", "pending"} and statuses["sent"] >= 1
    deadline = time.monotonic() + 5
    while True:  # the child was reaped with its parent: nothing left in the group
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "a process of the run outlived it"
        time.sleep(0.05)


def test_second_ctrl_c_exits_at_once_and_loses_nothing(
    make_campaign: CampaignFactory, tmp_path: Path, sandbox_process: str
) -> None:
    import json
    import urllib.request
    from datetime import UTC, datetime

    path = make_campaign(contacts(300), api_url=sandbox_process, sending="rate = 0\nconcurrency = 4\ntimeout = 5")
    env = {**os.environ, "SOCIOCS_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-m", "campaign", "send", str(path), "--yes"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    assert proc.wait(10) == 130
    assert time.monotonic() - started < 5  # did not wait for the pool to drain
    again = run("send", str(path), "--yes", cwd=tmp_path, key=KEY, timeout=120)
    assert again.returncode in (0, 1), again.stderr  # 1 when a request was cut off: unknown
    today = datetime.now(UTC).date().isoformat()
    request = urllib.request.Request(f"{sandbox_process}/messages?start_date={today}&end_date={today}",
                                     headers={"apikey": KEY})
    with urllib.request.urlopen(request, timeout=10) as response:
        sent_to = [m["to"] for m in json.loads(response.read())["data"]]
    assert len(sent_to) == len(set(sent_to))  # nothing sent twice
    rows = read_results(tmp_path / "test.results.csv")
    assert {r["status"] for r in rows} <= {"sent", "unknown"} and len(rows) == 300
    unknown = [r["phone"] for r in rows if r["status"] == "unknown"]
    assert len(unknown) <= 4 and len(sent_to) >= 300 - len(unknown)


def test_sandbox_refuses_impossible_faults(tmp_path: Path) -> None:
    proc = run("sandbox", "--error-500", "2", cwd=tmp_path)
    assert proc.returncode == 2 and "between 0 and 1" in proc.stderr and "Traceback" not in proc.stderr


def test_unwritable_results_path_is_one_sentence(samples: Path) -> None:
    (samples / "afile").write_text("x")
    proc = run("send", "samples/sms.toml", "--sandbox", "--yes", "--results", "afile/out.csv", cwd=samples)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr  # 1: the sample's bad row
    assert "cannot write" in proc.stderr and "campaign status samples/sms.toml --sandbox --results PATH" in proc.stderr
    again = run("status", "samples/sms.toml", "--sandbox", "--results", "elsewhere.csv", cwd=samples)
    assert again.returncode == 0 and len(read_results(samples / "elsewhere.csv")) == 24
