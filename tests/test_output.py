"""What the user reads (issue 10, items 6-8): text printed as written, honest progress and
summaries, `status` exit codes, the sandbox's own sentences, the confirmation question.

Everything runs the real `campaign` command (a subprocess, stdin not a terminal unless a test
gives it a pseudo-terminal) against a real sandbox over loopback HTTP.
"""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from campaign import printing
from campaign.config import load_campaign
from campaign.errors import CampaignError, count
from campaign.prepare import Pipeline
from campaign.printing import sentence
from campaign.runner import Summary
from campaign.sandbox import spawn
from tests.conftest import KEY, CampaignFactory, contacts, run_campaign, state_of
from tests.test_cli import free_port, read_results, run

# "Authentication failed.. Check", "failed. . Check": two full stops, not an ellipsis.
DOUBLED_STOP = re.compile(r"(?<!\.)\.\.(?!\.)|\.\s+\.")
API_STOP_SENDING = "rate = 0\nconcurrency = 1\nmax_attempts = 1\ntimeout = 5\nmax_consecutive_errors = 2"


def assert_as_written(text: str) -> None:
    """Every line reads as one written sentence: no doubled spaces or full stops."""
    for line in text.splitlines():
        body = line.strip()
        assert "  " not in body, line
        assert not DOUBLED_STOP.search(body), line


def library_error(path: Path) -> str:
    """The sentence the library raises for this campaign before anything is sent."""
    try:
        Pipeline(load_campaign(path))
    except CampaignError as err:
        return str(err)
    raise AssertionError(f"{path} raised no error")


@dataclass
class ErrorCase:
    """One error path: how to reach it, its exit code, and text it must print as written."""

    make: Callable[[CampaignFactory, Path, dict[str, str]], tuple[list[str], str | None]]
    code: int
    fragment: str  # with its brackets, if it has any
    from_library: bool = False  # the printed sentence must be the library's error, verbatim


def _config(
    message: str = 'text = "Hi {{ first_name }}"', country: str = "US", **kw: str
) -> Callable[..., tuple[list[str], None]]:
    def make(make_campaign: CampaignFactory, tmp_path: Path, urls: dict[str, str]) -> tuple[list[str], None]:
        path = make_campaign(contacts(2), message=message, **kw)
        path.write_text(path.read_text().replace('default_country = "US"', f'default_country = "{country}"'))
        return ["check", str(path)], None

    return make


def _no_default_country(make_campaign: CampaignFactory, tmp_path: Path, urls: dict[str, str]) -> tuple[list[str], None]:
    path = make_campaign([("6175550100", "Ann", "A", "A-1", "a@example.com", "Boston")])
    path.write_text(path.read_text().replace('default_country = "US"\n', ""))
    return ["check", str(path)], None


def _xlsx_without_sheet(make_campaign: CampaignFactory, tmp_path: Path, urls: dict[str, str]) -> tuple[list[str], None]:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "People"
    sheet.append(["Phone", "Name", "first_name"])
    sheet.append(["+16175550100", "Ann", "Ann"])
    book.save(tmp_path / "book.xlsx")
    path = make_campaign(file="book.xlsx", recipients='sheet = "Customers"')
    return ["check", str(path)], None


def _missing_file(make_campaign: CampaignFactory, tmp_path: Path, urls: dict[str, str]) -> tuple[list[str], None]:
    return ["check", str(make_campaign(file="nowhere.csv"))], None


def _api(sandbox: str, channel: str | None = None) -> Callable[..., tuple[list[str], str]]:
    def make(make_campaign: CampaignFactory, tmp_path: Path, urls: dict[str, str]) -> tuple[list[str], str]:
        path = make_campaign(contacts(3), api_url=urls[sandbox], sending=API_STOP_SENDING)
        if channel is not None:
            path.write_text(path.read_text().replace('"twlo_16175550000"', f'"{channel}"'))
        return ["send", str(path), "--yes"], KEY

    return make


def _usage(*args: str, key: str | None = None, make_file: bool = True) -> Callable[..., tuple[list[str], str | None]]:
    def make(make_campaign: CampaignFactory, tmp_path: Path, urls: dict[str, str]) -> tuple[list[str], str | None]:
        path = make_campaign(contacts(2)) if make_file else tmp_path / "none.toml"
        return [a.replace("CAMPAIGN", str(path)) for a in args], key

    return make


ERROR_CASES = {
    "campaign file: [recipients]": ErrorCase(_config(country="XX"), 2, "[recipients] default_country 'XX'", True),
    "campaign file: [message] text": ErrorCase(_config('text = "{{ nope }"'), 2, "[message] text", True),
    "campaign file: [sending]": ErrorCase(_config(sending="rate = -1"), 2, "[sending] rate must be at least 0", True),
    "campaign file: [contact_saving]": ErrorCase(
        _config(extra="\n[contact_saving]\nlist_id = 1.5\n"), 2, "[contact_saving] list_id must be", True
    ),
    "a row's error: no default_country": ErrorCase(
        _no_default_country, 1, "or set [recipients] default_country — row 2"
    ),
    "campaign file: a template error ending in a full stop": ErrorCase(
        _config('text = "{% for x in y %}hi"'), 2, "The innermost block that needs to be closed is 'for'.", True
    ),
    "input file: no such sheet": ErrorCase(_xlsx_without_sheet, 2, "set [recipients] sheet to one of them", True),
    "input file: missing": ErrorCase(_missing_file, 2, "nowhere.csv", True),
    "API stop: 401": ErrorCase(_api("other key"), 3, "stopped: Check apikey header. Check SOCIOCS_API_KEY."),
    "API stop: invalid channel": ErrorCase(
        _api("plain", channel="twlo_12"), 3, "stopped: Invalid channel_key. Check channel_key and provider"
    ),
    "API stop: too many errors": ErrorCase(
        _api("503"), 3, "stopped: 2 requests in a row failed (last: Service unavailable."
    ),
    "usage: no API key": ErrorCase(_usage("send", "CAMPAIGN", "--yes"), 2, "error: Set SOCIOCS_API_KEY to your"),
    "usage: not sent yet": ErrorCase(_usage("status", "CAMPAIGN"), 2, "error: Campaign 'test' has not been sent yet"),
    "usage: sandbox faults": ErrorCase(
        _usage("sandbox", "--error-500", "2", make_file=False), 2, "error: campaign sandbox: Fault fractions"
    ),
}


@pytest.fixture(scope="module")
def sandboxes() -> Any:
    """The sandboxes the API stops need: one that accepts any key, one for 401, one for 503s."""
    with spawn() as plain, spawn("--api-key", "other:key") as other, spawn("--error-503", "1") as failing:
        yield {"plain": plain, "other key": other, "503": failing}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_every_error_path_prints_its_sentence_as_written(
    case: str, make_campaign: CampaignFactory, tmp_path: Path, sandboxes: dict[str, str]
) -> None:
    """Issue 10 item 7: brackets survive ("[message] text uses …" lost "[message]" to markup),
    and joined sentences have neither "failed.. Check" nor a double space."""
    spec = ERROR_CASES[case]
    args, key = spec.make(make_campaign, tmp_path, sandboxes)
    proc = run(*args, cwd=tmp_path, key=key)
    assert proc.returncode == spec.code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert spec.fragment in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert_as_written(proc.stderr)
    if spec.code == 1:  # a row's own error, in the summary
        assert_as_written(next(line for line in proc.stdout.splitlines() if spec.fragment in line))
    if spec.from_library:
        expected = library_error(Path(args[-1]))
        assert proc.stderr == f"error: {sentence(expected)}\n"


def test_sentence_joins_without_doubling() -> None:
    assert sentence("Authentication failed.", "Check SOCIOCS_API_KEY.") == (
        "Authentication failed. Check SOCIOCS_API_KEY."
    )
    assert sentence("cannot write x (Is a directory) ", " Nothing is lost") == (
        "cannot write x (Is a directory). Nothing is lost"  # the last part's end is its own
    )
    assert sentence("Really?", "", "Wait…", "[message] text uses [x]") == "Really? Wait… [message] text uses [x]"


def test_user_text_is_never_markup_or_emoji(capsys: pytest.CaptureFixture[str]) -> None:
    """The consoles themselves print as written: a row's error quoting a cell such as
    "[bold]x[/] :smile:" comes out with its brackets and colons."""
    printing.say(printing.out, "warning:", "yellow", "[message] text uses [bold]x[/] :smile: [recipients]")
    printing.out.print("[red]plain[/]")
    printing.out.print(printing.counts_table({"sent": 1}, "[bold]spring[/] :tada:"))  # a campaign's name
    printed = capsys.readouterr().out
    assert printed.startswith("warning: [message] text uses [bold]x[/] :smile: [recipients]\n[red]plain[/]\n")
    assert "[bold]spring[/] :tada:" in printed


# --- item 6: progress, summaries, status ------------------------------------------------------


def test_progress_counts_finished_rows_by_outcome_and_ends_current(capsys: pytest.CaptureFixture[str]) -> None:
    """Not "299 of 300 rows sent" when 184 were sent, 72 failed and 44 unknown; and the last
    line printed is the final count, not the one from up to five seconds before the end."""
    now = [0.0]
    summary = Summary(rows=300, expected=300)
    bar = printing.ProgressDisplay(None, terminal=False, clock=lambda: now[0])  # type: ignore[arg-type]
    with bar as update:
        for status, n in (("sent", 184), ("failed", 72), ("unknown", 44)):
            for _ in range(n):
                summary.finished_now += 1
                summary.outcomes[status] += 1
                now[0] += 1 / 32  # a line every 5 s: at the 160th outcome, and the 320th (never)
                update(summary, object())  # type: ignore[arg-type]
    assert capsys.readouterr().out.splitlines() == [
        "160 of 300 rows finished: 160 sent (32.0/s)",
        "300 of 300 rows finished: 184 sent, 72 failed, 44 unknown (32.0/s)",  # drawn on exit
    ]


def test_progress_total_is_the_rows_this_send_sends_not_the_rows_read_so_far() -> None:
    """Issue 14: "2,887 of 4,095 rows finished (10,000 rows read)" on a bigger file: the file is
    read only a little ahead of sending, so the rows read so far are no total. The total is the
    confirmation's count until the whole file is read, then the run's exact count."""
    summary = Summary(rows=4_095, finished_now=2_887, expected=12_000)
    summary.outcomes["sent"] = 2_887
    assert summary.total == 12_000
    assert printing.progress_line(summary, 100.0) == "2,887 of 12,000 rows finished: 2,887 sent (28.9/s)"
    unknown = Summary(rows=4_095, finished_now=2_887)  # --yes: nothing counted the rows first
    unknown.outcomes["sent"] = 2_887
    assert unknown.total is None
    assert printing.progress_line(unknown, 100.0) == (
        "2,887 rows finished: 2,887 sent (28.9/s; 4,095 rows read so far)"
    )
    summary.rows, summary.read_all = 11_990, True  # the file changed since: the exact count wins
    assert summary.total == 11_990


def test_a_figure_of_one_reads_in_the_singular(
    make_campaign: CampaignFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not "1 rows were": each sentence of the summary agrees with its number (errors.count)."""
    assert [count(n, "row is", "rows are") for n in (0, 1, 2, 1_204)] == [
        "0 rows are",
        "1 row is",
        "2 rows are",
        "1,204 rows are",
    ]
    campaign = load_campaign(make_campaign(contacts(1)))
    one = dict.fromkeys(
        ("rows", "recovered_unknown", "already_done", "changed_since_sent", "held_ambiguous", "retried_undelivered"), 1
    )
    s = Summary(**one, rate_limited=1, limit_pending=1, held_failed=1, changed_examples=[7])
    s.counts = Counter({"failed": 1, "unknown": 1})
    printing.print_summary(campaign, s, "c.toml")
    printed = capsys.readouterr().out
    for said in (
        "1 row was in flight when an earlier run died; now unknown.",
        "1 row was already sent by an earlier run and not sent again.",
        "warning: the message changed since 1 of them was sent; it got the old text (row 7; the results file",
        "1 unknown row was not resent: the API lists more than one message that could be the row's (see `campaign",
        "1 row whose delivery failed for a temporary reason was sent again.",
        "The API rate-limited 1 request (429); the rate was lowered and it was retried.",
        "--limit reached: 1 row is pending for the next run.",
        "1 row failed (1 of them was not retried in this run). To send it again: campaign send c.toml --retry-failed",
        "1 row is unknown (the API may have sent it). To find out: campaign reconcile c.toml",
    ):
        assert said in printed


@pytest.mark.backend("sqlite", "postgresql")
def test_summary_gives_reasons_and_next_commands_and_status_exits_like_send(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    rows = contacts(3)
    rows.append(rows[0])  # row 5 duplicates row 2
    rows.append(("+1-415-555-0180", "Dash", "D", "A-9", "d@example.com", "Boston"))  # row 6
    port = free_port()  # the same API URL twice: the state file belongs to one API
    with spawn("--error-503", "1", "--port", str(port)) as url:
        path = make_campaign(rows, api_url=url, sending="rate = 0\nconcurrency = 1\nmax_attempts = 1\ntimeout = 5")
        send = run("send", str(path), "--yes", cwd=tmp_path, key=KEY)
    assert send.returncode == 1, send.stderr
    out = send.stdout
    reason = "gave up after 1 attempt: Service unavailable. Try again later."
    assert f"  failed (4): {reason} — rows 2, 3, 4, 6\n" in out
    assert "  skipped (1): duplicate of row 2 — row 5\n" in out
    assert f"4 rows failed. To send them again: campaign send {path} --retry-failed\n" in out
    assert_as_written(send.stderr)

    status = run("status", str(path), cwd=tmp_path)
    assert status.returncode == send.returncode
    assert "all 5 rows, after every run so far (cumulative)" in status.stdout
    assert f"4 failed rows (`campaign send {path} --retry-failed` sends them again):" in status.stdout
    assert f"  row 6  +14155550180  {reason}\n" in status.stdout
    assert "unknown rows" not in status.stdout

    # The results file: "+1-415-555-0180" is arithmetic to Excel and is neutralised; E.164 stays.
    results = {r["row"]: r for r in read_results(tmp_path / "test.results.csv")}
    assert results["6"]["Phone_input"] == "'+1-415-555-0180" and results["6"]["phone"] == "+14155550180"
    assert results["2"]["Phone_input"] == results["2"]["phone"] == "+16175550000"

    with spawn("--port", str(port)):  # now healthy: the printed command sends them; then both exit 0
        printed = send.stdout.split("To send them again: ")[1].splitlines()[0].split()
        again = run(*printed[1:], "--yes", cwd=tmp_path, key=KEY)
        assert again.returncode == 0, again.stdout + again.stderr
        assert run("status", str(path), cwd=tmp_path).returncode == 0


def test_unknown_rows_get_the_reconcile_command(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    with spawn("--accept-then-500", "1") as url:
        path = make_campaign(contacts(2), api_url=url, sending="rate = 0\nconcurrency = 1\ntimeout = 5")
        send = run("send", str(path), "--yes", cwd=tmp_path, key=KEY)
    assert send.returncode == 1
    assert (
        f"2 rows are unknown (the API may have sent them). To find out: campaign reconcile {path} "
        f"(then campaign send {path} sends the ones it did not; with --resend-unknown, send reconciles first "
        "and resends only what the API does not list).\n"
    ) in send.stdout
    status = run("status", str(path), cwd=tmp_path)
    assert status.returncode == 1 and "2 unknown rows (run `campaign reconcile" in status.stdout


def test_resend_unknown_on_the_command_line_reconciles_first(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """The flag as a user types it reaches the run: the two unknown rows (accepted, answered
    500) are found in the listing and not sent again."""
    with spawn("--accept-then-500", "1") as url:
        path = make_campaign(contacts(2), api_url=url, sending="rate = 0\nconcurrency = 1\ntimeout = 5")
        assert run("send", str(path), "--yes", cwd=tmp_path, key=KEY).returncode == 1
        again = run("send", str(path), "--yes", "--resend-unknown", cwd=tmp_path, key=KEY)
        with urllib.request.urlopen(f"{url}/_sandbox/requests", timeout=10) as response:
            posts = [r for r in json.loads(response.read())["requests"] if r["method"] == "POST"]
    assert again.returncode == 0, again.stdout + again.stderr
    said = "--resend-unknown reconciled 2 unknown rows first: 2 found sent, 0 not listed (sent now), 0 still unknown."
    assert f"{said}\n" in again.stdout
    assert len(posts) == 2 and [r["status"] for r in read_results(tmp_path / "test.results.csv")] == ["sent", "sent"]


def test_a_sandbox_trials_unknown_rows_are_resent_to_a_sandbox_and_no_other_campaign_is_opened(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """A --sandbox trial's sandbox ends with its run, so `campaign reconcile` (the real API, the
    real state) cannot help: summary and status name `send --sandbox --resend-unknown`, and that
    run reconciles against its own new sandbox without opening other campaigns' state files."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "test.toml").write_text(make_campaign(contacts(1)).read_text(), encoding="utf-8")
    (other / "contacts.csv").write_bytes((tmp_path / "contacts.csv").read_bytes())
    assert run("send", "test.toml", "--sandbox", "--yes", cwd=other).returncode == 0
    others = sorted(p.name for p in other.iterdir())
    path = make_campaign(contacts(3))
    assert run("send", str(path), "--sandbox", "--yes", cwd=tmp_path).returncode == 0
    state = state_of(path, sandbox=True)
    try:  # as a run killed with two requests in flight leaves them
        state.db.execute("UPDATE recipients SET status = 'unknown', message_id = '' WHERE row IN (2, 3)")
    finally:
        state.close()
    again = "campaign send " + str(path) + " --sandbox --resend-unknown"
    hint = (
        "the trial's sandbox may have taken them, and it ended with its run, so there is nothing to ask; "
        f"`{again}` sends them again, to a new sandbox"
    )
    send = run("send", str(path), "--sandbox", "--yes", cwd=tmp_path)
    assert send.returncode == 1 and f"2 rows are unknown ({hint}).\n" in send.stdout
    assert "reconcile" not in send.stdout
    status = run("status", str(path), "--sandbox", cwd=tmp_path)
    assert status.returncode == 1 and f"2 unknown rows ({hint}):" in status.stdout
    resend = run("send", str(path), "--sandbox", "--yes", "--resend-unknown", cwd=tmp_path)
    assert resend.returncode == 0, resend.stdout + resend.stderr
    assert [r["status"] for r in read_results(tmp_path / "test.sandbox.results.csv")] == ["sent"] * 3
    assert sorted(p.name for p in other.iterdir()) == others  # its state never opened (no -wal, no -shm)


def test_status_after_a_limit_batch_exits_0_like_send(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    with spawn() as url:
        path = make_campaign(contacts(3), api_url=url)
        send = run("send", str(path), "--yes", "--limit", "2", cwd=tmp_path, key=KEY)
        assert send.returncode == 0, send.stderr
        status = run("status", str(path), cwd=tmp_path)
        assert status.returncode == 0, status.stdout
        assert "1 pending row was left for a later run (--limit, window, daily limit)." in status.stdout


# --- item 8: small things a newcomer hit --------------------------------------------------------


def test_sandbox_on_a_busy_port_is_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run("sandbox", "--port", str(port), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"error: The sandbox cannot listen on 127.0.0.1:{port}: the port is in use (by another sandbox?); "
        "choose another with --port, or --port 0 for any.\n"
    )


def test_sandbox_log_prints_each_request(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "campaign", "sandbox", "--port", "0", "--log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"http://[\d.:]+", proc.stdout.readline())
        assert url
        body = {"provider": "twlo", "channel_key": "twlo_16175550000", "to": "+16175550100", "text": "Hi"}
        request = urllib.request.Request(
            f"{url.group(0)}/message",
            data=json.dumps(body).encode(),
            headers={"apikey": KEY, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        line = proc.stdout.readline()
        assert re.fullmatch(r"\d\d:\d\d:\d\d POST /message to \+16175550100 → 200\n", line), line
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_confirmation_names_the_schedule_and_what_is_not_sent(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    rows = contacts(2)
    rows.append(rows[0])
    rows.append(("12345", "Bad", "B", "A-0", "b@example.com", "Boston"))
    path = make_campaign(rows, message='text = "Hi"\nschedule = "2030-01-02T09:00:00-05:00"')
    proc = run("send", str(path), "--sandbox", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: Send 2 messages via twlo channel twlo_16175550000 scheduled for 2030-01-02 09:00-05:00? "
        "Not sent: 1 invalid; 1 skipped (duplicates or suppressed). "
        "Refusing without a terminal to ask on; add --yes to confirm.\n"
    )


def test_answering_no_is_not_an_error(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """On a terminal, "n" sends nothing, says so, and exits 0: a choice, not an error."""
    path = make_campaign(contacts(2))
    leader, follower = pty.openpty()
    os.write(leader, b"n\n")  # the terminal holds the line until the question reads it
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "campaign", "send", str(path), "--sandbox"],
            stdin=follower,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 0, proc.stderr
    assert "Send 2 messages via twlo channel twlo_16175550000 now? [y/N]: Nothing was sent.\n" in proc.stdout
    assert proc.stderr == ""
    assert not (tmp_path / "test.results.csv").exists()


def test_one_row_already_sent_is_said_in_the_singular(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(2))
    first = run_campaign("send", str(path), "--sandbox", "--yes", "--limit", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr  # --limit: one row left for the next run
    again = run_campaign("send", str(path), "--sandbox", "--yes", cwd=tmp_path, columns=200)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 row was already sent by an earlier run and not sent again." in again.stdout


def test_an_output_path_under_a_file_is_one_sentence_for_every_command_that_writes(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """A folder of the path is a file: ``status --results`` and ``--export-undeliverable``
    say which file and that nothing is lost (exit 2), like ``send`` does; never "internal error"."""
    path = make_campaign(contacts(2))
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    sent = run_campaign("send", str(path), "--sandbox", "--yes", cwd=tmp_path)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    results = run_campaign("status", str(path), "--sandbox", "--results", "afile/r.csv", cwd=tmp_path, columns=400)
    assert (results.returncode, results.stdout) == (2, "")
    assert " ".join(results.stderr.split()) == (
        "error: afile/r.csv: cannot be written (afile is a file, not a folder). Nothing is lost: the state file "
        "has every row; `campaign status CAMPAIGN_FILE --results PATH` writes them elsewhere."
    )
    export = run_campaign(
        "status", str(path), "--sandbox", "--export-undeliverable", "afile/u.csv", cwd=tmp_path, columns=400
    )
    assert (export.returncode, export.stdout) == (2, "")
    assert " ".join(export.stderr.split()) == (
        "error: afile/u.csv: cannot be written (afile is a file, not a folder). Nothing is lost: the state file "
        "has every row; give --export-undeliverable another path."
    )
