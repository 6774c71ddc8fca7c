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

from campaign import store
from campaign.cli import cli
from campaign.config import for_sandbox, load_campaign
from campaign.sandbox import spawn
from tests.conftest import KEY, CampaignFactory, contacts, has_state, run_campaign

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path, key: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_campaign(*args, cwd=cwd, key=key, timeout=timeout)


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "samples",
        tmp_path / "samples",
        ignore=shutil.ignore_patterns("*.sqlite*", "*.csv.*", "*.results.csv", "*.check.csv", ".*"),
    )
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path


def clean(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """No traceback, internal error or API key on either stream of a finished command."""
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream and "internal error" not in stream and KEY not in stream, stream
    return proc


def wait_for_requests(url: str, n: int, proc: subprocess.Popen[str]) -> None:
    """Wait until a sandbox process has answered n POSTs (the run is under way), not a fixed time."""
    import json
    import urllib.request

    while True:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        with urllib.request.urlopen(f"{url}/_sandbox/requests", timeout=10) as response:
            log = json.loads(response.read())
        if sum(1 for r in log["requests"] if r["path"] == "/message") >= n:
            return
        time.sleep(0.02)


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
    proc = clean(run("send", f"samples/{sample}", "--sandbox", "--yes", cwd=samples))
    assert proc.returncode == 1, proc.stderr  # the samples have one bad phone number on purpose
    assert proc.stderr == ""
    assert "Results:" in proc.stdout
    name = {
        "sms.toml": "order-ready-sms",
        "whatsapp-twilio.toml": "order-ready-twlowa",
        "whatsapp-gupshup.toml": "order-ready-gswa",
    }[sample]
    rows = read_results(samples / "samples" / f"{name}.sandbox.results.csv")  # a trial keeps its own files
    assert not (samples / "samples" / f"{name}.results.csv").exists()
    assert not has_state(samples / "samples" / sample)
    assert len(rows) == 24
    expected = {"sent": 21, "skipped": 2} if sample == "sms.toml" else {"sent": 22, "skipped": 1}  # 1 opt-out in sms
    assert Counter(r["status"] for r in rows) == Counter({"invalid": 1, **expected})
    assert len({r["message_id"] for r in rows if r["status"] == "sent"}) == expected["sent"]
    bad = [r for r in rows if r["status"] == "invalid"]
    assert [r["row"] for r in bad] == ["9"]


def test_every_command_has_help() -> None:
    """Each command's --help in this process (click's runner: the same code a process runs,
    a second each less); the top level's in a real process."""
    from click.testing import CliRunner

    assert cli.help
    proc = run("--help", cwd=ROOT)
    assert proc.returncode == 0 and "Usage:" in proc.stdout and proc.stderr == ""
    for name, command in cli.commands.items():
        assert command.help and len(command.help) > 20, name
        result = CliRunner().invoke(cli, [name, "--help"], prog_name="campaign")
        assert result.exit_code == 0 and result.output.startswith(f"Usage: campaign {name} "), (name, result.output)
        assert command.help.split("\n")[0].strip()[:40] in " ".join(result.output.split()), name


def test_no_terminal_and_no_yes_refuses(samples: Path) -> None:
    proc = clean(run("send", "samples/sms.toml", "--sandbox", cwd=samples))
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: Send 21 messages via twlo channel twlo_16175550100 now? Not sent: 1 invalid; 2 skipped "
        "(duplicates or suppressed). Refusing without a terminal to ask on; add --yes to confirm.\n"
    )
    assert "--yes" in proc.stderr
    sms = samples / "samples" / "sms.toml"
    assert not has_state(sms) and not has_state(sms, sandbox=True)


def test_missing_key_is_one_sentence(samples: Path) -> None:
    proc = clean(run("send", "samples/sms.toml", "--yes", cwd=samples))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "SOCIOCS_API_KEY" in proc.stderr


def test_campaign_file_mistakes(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(1), extra="\n[sending]\n")  # duplicate table: invalid TOML
    proc = clean(run("check", str(path), cwd=tmp_path))
    assert proc.returncode == 2 and "is not valid TOML" in proc.stderr and proc.stdout == ""
    path = make_campaign(contacts(1), message='text = "x"\nimage_url = "https://x/y.jpg"', provider="twlowa")
    proc = clean(run("check", str(path), cwd=tmp_path))
    assert proc.returncode == 2 and "image_url is only supported with provider twlo" in proc.stderr
    assert proc.stdout == ""
    path = make_campaign(contacts(1), message='text = "Hi {{ frist_name }}"')
    proc = clean(run("check", str(path), cwd=tmp_path))
    assert proc.returncode == 2 and "Did you mean 'first_name'?" in proc.stderr and proc.stdout == ""
    proc = run("--debug", "check", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_check_and_preview(samples: Path) -> None:
    proc = clean(run("check", "samples/sms.toml", cwd=samples))
    assert proc.returncode == 1 and proc.stderr == ""
    assert "Sendable: 21" in proc.stdout
    assert "invalid (1): phone: '12345' is too short for US; if it is another country's number, write it" in proc.stdout
    assert "(for example +44 7911 123456) — row 9" in proc.stdout  # the bad row, by number
    assert "SMS segments:" in proc.stdout
    report = read_results(samples / "samples" / "order-ready-sms.check.csv")
    assert Counter(r["status"] for r in report) == Counter({"dry-run": 21, "invalid": 1, "skipped": 2})
    assert report[0]["segments"] == "1"
    proc = clean(run("preview", "samples/sms.toml", "-n", "2", cwd=samples))
    assert proc.returncode == 0 and '"to": "+16175550100"' in proc.stdout and "SMS segments" in proc.stdout
    assert proc.stderr == ""


@pytest.mark.backend("sqlite", "postgresql")
def test_status_and_lock(samples: Path) -> None:
    sent = clean(run("send", "samples/sms.toml", "--sandbox", "--yes", cwd=samples))
    assert sent.returncode == 1 and sent.stderr == ""  # 1: the sample's bad row
    proc = clean(run("status", "samples/sms.toml", "--results", "again.csv", cwd=samples))
    assert proc.returncode == 2 and "has not been sent yet" in proc.stderr  # a trial is not a real send
    assert proc.stdout == ""
    proc = clean(run("status", "samples/sms.toml", "--sandbox", "--results", "again.csv", cwd=samples))
    assert proc.returncode == sent.returncode == 1 and proc.stderr == ""  # like send: the sample's bad row
    again = read_results(samples / "again.csv")
    assert Counter(r["status"] for r in again) == Counter({"sent": 21, "invalid": 1, "skipped": 2})
    assert again == read_results(samples / "samples" / "order-ready-sms.sandbox.results.csv")
    with store.lock(for_sandbox(load_campaign(samples / "samples" / "sms.toml"), "http://127.0.0.1:9")):
        proc = clean(run("send", "samples/sms.toml", "--sandbox", "--yes", cwd=samples))
    assert proc.returncode == 2 and "already being sent" in proc.stderr and "Results" not in proc.stdout


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
@pytest.mark.backend("sqlite", "postgresql")
def test_interrupt_exits_130_with_complete_results(
    make_campaign: CampaignFactory, tmp_path: Path, sandbox_process: str, stop: signal.Signals
) -> None:
    url = sandbox_process
    path = make_campaign(contacts(200), api_url=url, sending="rate = 50\nconcurrency = 2\ntimeout = 5")
    proc = _start_send(path)
    wait_for_requests(url, 5, proc)
    proc.send_signal(stop)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Resume with: campaign send" in stderr
    for stream in (stdout, stderr):
        assert "Traceback" not in stream and KEY not in stream
    rows = read_results(tmp_path / "test.results.csv")
    statuses = Counter(r["status"] for r in rows)
    assert set(statuses) == {"sent", "pending"} and statuses["sent"] >= 5  # no sending, no unknown
    assert all(r["message_id"].startswith("SM") for r in rows if r["status"] == "sent")
    # Resume finishes the rest, and nothing is sent twice.
    proc2 = clean(run("send", str(path), "--yes", cwd=tmp_path, key=KEY, timeout=120))
    assert proc2.returncode == 0 and proc2.stderr == "", proc2.stderr
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
    wait_for_requests(sandbox_process, 5, proc)
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


def test_second_ctrl_c_exits_at_once_and_loses_nothing(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """The second Ctrl-C comes while the first waits for requests in flight (3 s each at this
    sandbox): the process exits at once, without the results file the end of a run writes."""
    import json
    import urllib.request
    from datetime import UTC, datetime

    with spawn("--latency", "3") as url:
        path = make_campaign(contacts(12), api_url=url, sending="rate = 0\nconcurrency = 4\ntimeout = 10")
        proc = _start_send(path)
        assert proc.stderr is not None
        wait_for_requests(url, 4, proc)  # the first four answered: four more are in flight
        proc.send_signal(signal.SIGINT)
        assert proc.stderr.readline() in ("\n", "")  # the line break before the sentence
        assert "Stopping: waiting for the requests in flight" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        _stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130 and "Traceback" not in stderr
        assert not (tmp_path / "test.results.csv").exists()
        again = clean(run("send", str(path), "--yes", cwd=tmp_path, key=KEY, timeout=120))
        assert again.returncode == 1, again.stderr  # the rows cut off are unknown
        today = datetime.now(UTC).date().isoformat()
        request = urllib.request.Request(f"{url}/messages?start_date={today}&end_date={today}", headers={"apikey": KEY})
        with urllib.request.urlopen(request, timeout=10) as response:
            sent_to = [m["to"] for m in json.loads(response.read())["data"]]
    assert len(sent_to) == len(set(sent_to))  # nothing sent twice
    rows = read_results(tmp_path / "test.results.csv")
    statuses = Counter(r["status"] for r in rows)
    assert set(statuses) == {"sent", "unknown"} and statuses["sent"] + statuses["unknown"] == 12  # none lost
    assert 1 <= statuses["unknown"] <= 4  # at most the pool's four, in flight at the second Ctrl-C
    # Every sent row reached the API. An unknown row's request reached it or not: the second
    # Ctrl-C may fall between its 'sending' mark and its first byte on the socket (more likely on
    # a loaded machine); that is why it is unknown and never resent without reconcile.
    phones = {status: {r["phone"] for r in rows if r["status"] == status} for status in statuses}
    assert phones["sent"] <= set(sent_to) <= phones["sent"] | phones["unknown"]


def test_sandbox_refuses_impossible_faults(tmp_path: Path) -> None:
    proc = clean(run("sandbox", "--error-500", "2", cwd=tmp_path))
    assert proc.returncode == 2 and "between 0 and 1" in proc.stderr and proc.stdout == ""


def test_unwritable_results_path_is_one_sentence(samples: Path) -> None:
    (samples / "afile").write_text("x")
    proc = clean(run("send", "samples/sms.toml", "--sandbox", "--yes", "--results", "afile/out.csv", cwd=samples))
    assert proc.returncode == 1  # 1: the sample's bad row
    assert "cannot write" in proc.stderr and "campaign status samples/sms.toml --sandbox --results PATH" in proc.stderr
    again = clean(run("status", "samples/sms.toml", "--sandbox", "--results", "elsewhere.csv", cwd=samples))
    assert again.returncode == 1 and again.stderr == "" and len(read_results(samples / "elsewhere.csv")) == 24
