"""Durable campaigns: SIGKILL `campaign send` over and over; nothing is lost, nothing is sent twice.

A real `campaign sandbox` subprocess (30 ms latency) outlives a series of real `campaign send`
subprocesses, each killed with SIGKILL after a random delay between 0.3 s and 2 s (seeded, so
the delays are the same on every run). The delays land during start-up (nothing sent yet),
mid-stream (requests in flight) and near or after the end; the loop goes on until at least
`MIN_KILLS` runs have been killed and one run has finished by itself. Then `send` runs normally.

What this proves, with nothing mocked (real processes, HTTP over loopback, the real SQLite
state file and results CSV):

* the write-ahead journal bounds what a kill can do: after each kill at most `concurrency`
  rows are left `sending` (in flight), so at most `concurrency x kills` rows end `unknown`;
* no row is lost: every row of the spreadsheet ends `sent` or `unknown`, in the state file
  and in the results file alike;
* nothing is sent twice: the sandbox accepted every `sent` row exactly once, under the
  `message_id` the journal holds, and every `unknown` row at most once (unknown rows are never
  resent on their own);
* `campaign reconcile` resolves every `unknown` row the way the API saw it (accepted: `sent`
  with the accepted id; not accepted: `pending`), and the next `send` sends exactly the pending
  ones, so that in the end every phone number was accepted exactly once.

Most `unknown` rows turn out accepted: the sandbox finishes a request whose client died, as a
real server would. A row is `unknown` but not accepted only when the kill fell between the
commit of its `sending` mark and the request reaching the socket (rare; `bench/kill_soak.py`
shows a few per hundred kills). Figures of record: `bench/RESULTS-kill.md`.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import kill_soak
from campaign.sandbox import spawn
from tests.conftest import has_state, state_of

KEY = kill_soak.KEY
ROWS = 800
CONCURRENCY = 4
LATENCY = 0.03
SEED = 20240917
MIN_KILLS = 10
MAX_KILLS = 24
KILL_BUDGET = 40.0  # seconds the kill loop may take once MIN_KILLS are done
NAME = kill_soak.NAME


@pytest.fixture
def sandbox() -> Iterator[str]:
    """A `campaign sandbox` subprocess that outlives every `send` of the test; yields its URL."""
    with spawn("--latency", str(LATENCY)) as url:
        yield url


# The soak benchmark's helpers (bench/kill_soak.py) serve this short version too.
_start, _run, _get, _accepted, _results = kill_soak.start, kill_soak.run, kill_soak.get, \
    kill_soak.accepted, kill_soak.results


def _journal(campaign_file: Path) -> dict[str, tuple[str, str]]:
    """The campaign's ``recipients`` on this test's engine: phone -> (status, message_id); {}
    before a run has created the state."""
    if not has_state(campaign_file):
        return {}
    state = state_of(campaign_file)
    try:
        rows = state.db.execute("SELECT phone, status, message_id FROM recipients").fetchall()
    finally:
        state.close()
    return {str(p): (str(s), str(m)) for p, s, m in rows}


def _write_campaign(folder: Path, url: str) -> Path:
    return kill_soak.write_campaign(folder, url, ROWS, CONCURRENCY)


def _accepted_count(url: str) -> int:
    return int(kill_soak.sandbox_log(url)["accepted"])


@dataclass(frozen=True)
class Kill:
    delay: float
    accepted: int  # messages the sandbox accepted while this run lived
    in_flight: int  # rows this kill left `sending` in the state file
    left: int  # rows not yet sent or unknown after the kill

    @property
    def phase(self) -> str:
        if self.accepted == 0:
            return "start-up" if self.left else "idle"
        return "near the end" if self.left < ROWS // 10 else "mid-stream"


def test_sigkill_loses_nothing_and_sends_nothing_twice(tmp_path: Path, sandbox: str) -> None:
    started = time.monotonic()
    path = _write_campaign(tmp_path, sandbox)
    state = path  # the journal is read through the campaign file, on the test's engine
    phones = {f"+1617555{i:04d}" for i in range(ROWS)}
    rng = random.Random(SEED)
    kills: list[Kill] = []
    finished_alone = 0
    ever_in_flight: set[str] = set()  # rows found `sending` after some kill

    with (tmp_path / "runs.log").open("w", encoding="utf-8") as log:
        # 1. Kill `send` again and again.
        loop_started = time.monotonic()
        while len(kills) < MIN_KILLS or (
            not finished_alone and len(kills) < MAX_KILLS and time.monotonic() - loop_started < KILL_BUDGET
        ):
            # On a loaded machine `send` may need over 2 s to reach its first request: after
            # kills that all hit start-up, give the next one half a second more per such kill.
            early = 0
            for k in reversed(kills):
                if k.phase != "start-up":
                    break
                early += 1
            delay = rng.uniform(0.3, 2.0) + 0.5 * early
            before = _accepted_count(sandbox)
            proc = _start("send", path, log)
            try:
                code = proc.wait(delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                time.sleep(LATENCY + 0.05)  # let the sandbox finish the requests the kill cut off
                journal = _journal(state)
                statuses = Counter(status for status, _ in journal.values())
                sending = {phone for phone, (status, _) in journal.items() if status == "sending"}
                # The write-ahead bound, kill by kill: one row in flight per worker at most.
                assert len(sending) <= CONCURRENCY, (len(kills), statuses)
                left = ROWS - statuses["sent"] - statuses["unknown"] - len(sending)
                kills.append(Kill(delay, _accepted_count(sandbox) - before, len(sending - ever_in_flight), left))
                ever_in_flight |= sending
                log.write(f"[killed after {delay:.2f} s: {kills[-1]}]\n")
            else:
                assert code in (0, 1), f"send exited {code}; see {tmp_path / 'runs.log'}"
                finished_alone += 1

        phases = Counter(k.phase for k in kills)
        assert phases["mid-stream"] + phases["near the end"] >= 1, phases  # the kills did hit sends
        assert sum(k.in_flight for k in kills) >= 1, phases  # and left requests in flight

        # 2. Run `send` normally until it finishes (1: unknown rows remain, as expected).
        for _ in range(3):
            code = _run("send", path, log)
            if code in (0, 1):
                break
        assert code in (0, 1), f"send exited {code}; see {tmp_path / 'runs.log'}"

        results = _results(tmp_path / f"{NAME}.results.csv")
        journal = _journal(state)
        accepted = _accepted(sandbox)
        by_phone = {r["phone"]: r for r in results}
        status = {phone: r["status"] for phone, r in by_phone.items()}

        # No row lost: every row is in the results file once, and ends sent or unknown.
        assert len(results) == ROWS and set(by_phone) == phones
        assert set(status.values()) <= {"sent", "unknown"}, Counter(status.values())
        assert {p: (r["status"], r["message_id"]) for p, r in by_phone.items()} == journal
        unknown = {p for p, s in status.items() if s == "unknown"}
        assert len(unknown) <= CONCURRENCY * len(kills), (len(unknown), len(kills))
        assert unknown == ever_in_flight  # exactly the rows a kill caught in flight
        # Nothing sent twice; every sent row under the id the API gave it.
        assert set(accepted) <= phones
        for phone, row in by_phone.items():
            ids = accepted.get(phone, [])
            if row["status"] == "sent":
                assert ids == [row["message_id"]], (phone, ids, row["message_id"])
            else:
                assert len(ids) <= 1, (phone, ids)

        # 3. Reconcile: every unknown row becomes what the API saw.
        assert _run("reconcile", path, log) == 0
        after = _journal(state)
        for phone in phones:
            ids = accepted.get(phone, [])
            if phone not in unknown:
                assert after[phone] == journal[phone]
            elif ids:
                assert after[phone] == ("sent", ids[0]), (phone, after[phone], ids)
            else:
                assert after[phone][0] == "pending", (phone, after[phone])

        # 4. The last send sends the pending rows, and each number was accepted exactly once.
        assert _run("send", path, log) == 0
        final = _accepted(sandbox)
        results = _results(tmp_path / f"{NAME}.results.csv")
        assert {r["status"] for r in results} == {"sent"} and len(results) == ROWS
        assert {p: len(ids) for p, ids in final.items()} == dict.fromkeys(phones, 1)
        assert {r["phone"]: r["message_id"] for r in results} == {p: ids[0] for p, ids in final.items()}
        log.write(
            f"\n[{len(kills)} kills {dict(phases)}, {finished_alone} finished alone, "
            f"{len(unknown)} unknown, {time.monotonic() - started:.1f} s]\n"
        )
