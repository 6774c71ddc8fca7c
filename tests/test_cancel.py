"""`campaign cancel` (issue 13, item 4): scheduled messages taken back at the sandbox over real
HTTP, journaled like sends, and a cancel killed with SIGKILL resumes with nothing deleted twice."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import kill_soak
from campaign import runner, timing
from campaign.api import SociocsClient, Verdict
from campaign.config import load_campaign
from campaign.sandbox import Sandbox, SandboxConfig, spawn
from campaign.state import Status
from tests.conftest import KEY, CampaignFactory, contacts, state_of


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_cancel_deletes_scheduled_rows_and_reports_the_ones_already_sent(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    rows = contacts(5)
    # Each row's own schedule: 10:00, 11:00, ... 14:00 UTC on 2 Dec (from order ids A-0 .. A-4).
    when = "2026-12-02T{{ order_id[2:] | int + 10 }}:00:00+00:00"
    path = make_campaign(rows, message=f'text = "Hi {{{{ first_name }}}}"\nschedule = "{when}"')
    clock = timing.ManualClock(utc(2026, 12, 1, 12))
    box = Sandbox(SandboxConfig(api_key=KEY))

    async def main() -> None:
        await box.start()
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=box.url)
            opts = runner.Options(api_key=KEY, sandbox=True, prepare_in_child=False)
            summary = await runner.run(campaign, opts)
            assert summary.counts == Counter({"scheduled": 5})
            upcoming = runner.status(campaign).scheduled
            assert [r["row"] for r in upcoming] == [2, 3, 4, 5, 6]  # soonest first

            report = await runner.cancel(campaign, KEY, [3, 4, 9], sandbox=True)
            assert [r["row"] for r in report.cancelled] == [3, 4]
            assert [r["row"] for r in report.not_scheduled] == [9]
            again = await runner.run(campaign, opts)  # a rerun never sends a cancelled row
            assert again.requests == 0 and again.held_cancelled == 2

            clock.moment = utc(2026, 12, 2, 10, 30)  # row 2's time came: the sandbox "sent" it
            report = await runner.cancel(campaign, KEY, sandbox=True)
            assert [r["row"] for r in report.cancelled] == [5, 6]
            assert [r["row"] for r in report.too_late] == [2]
            assert "already being sent or has been sent" in report.too_late[0]["error"]
        finally:
            await box.close()

    with timing.use_clock(clock):
        asyncio.run(main())
    ids = {m.body["to"]: m.message_id for m in box.accepted}
    assert sorted(box.scheduled.deleted) == sorted(ids[rows[i][0]] for i in (1, 2, 3, 4))
    with (tmp_path / "test.results.csv").open(encoding="utf-8-sig", newline="") as handle:
        out = {r["row"]: r["status"] for r in csv.DictReader(handle)}
    assert out == {"2": "sent", "3": "cancelled", "4": "cancelled", "5": "cancelled", "6": "cancelled"}


ROWS = 60


def test_cancel_killed_midway_resumes_and_deletes_nothing_twice(tmp_path: Path) -> None:
    """A real `campaign sandbox` (30 ms latency) and real `campaign cancel` processes: the first
    cancel is killed with SIGKILL once the sandbox has seen some DELETEs; the second finishes.
    Every scheduled message is deleted exactly once, and no id gets a second DELETE."""
    with spawn("--latency", "0.03") as url:
        path = kill_soak.write_campaign(tmp_path, url, ROWS, 4)
        tomorrow = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0).isoformat()
        text = path.read_text().replace("[sending]", f'schedule = "{tomorrow}"\n\n[sending]')
        path.write_text(text.replace("rate = 0", "rate = 20"))
        with (tmp_path / "log.txt").open("w") as log:
            assert kill_soak.run("send", path, log) == 0

            def deletes() -> list[dict[str, object]]:
                return [r for r in kill_soak.sandbox_log(url)["requests"] if r["method"] == "DELETE"]

            proc = kill_soak.start("cancel", path, log)
            deadline = time.monotonic() + 60
            while len(deletes()) < ROWS // 3 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            first = deletes()
            assert 0 < len(first) < ROWS  # killed midway
            state = state_of(path)
            left = state.journal_counts()
            state.close()
            assert left.get("cancelling", 0) <= 1 and left.get("scheduled", 0) > 0

            assert kill_soak.run("cancel", path, log) == 0, (tmp_path / "log.txt").read_text()
            listed = kill_soak.get(f"{url}/messages/scheduled")["data"]
            every = deletes()
    paths = Counter(str(r["path"]) for r in every)
    assert len(paths) == ROWS and set(paths.values()) == {1}  # each message: one DELETE, never two
    assert all(r["status"] == 200 for r in every)
    assert listed == []
    state = state_of(path)
    assert state.journal_counts() == {"cancelled": ROWS}
    state.close()


def test_a_row_left_cancelling_is_settled_from_the_listing_without_a_second_delete(
    make_campaign: CampaignFactory, tmp_path: Path
) -> None:
    """What a kill leaves: row 2 `cancelling` after its DELETE reached the API (the answer was
    never recorded), row 3 `cancelling` before its DELETE was written. The next cancel deletes
    row 3 and settles row 2 without deleting it again."""
    path = make_campaign(contacts(3), message='text = "Hi"\nschedule = "2026-12-05T09:00:00+00:00"')
    box = Sandbox(SandboxConfig(api_key=KEY))

    async def main() -> runner.CancelReport:
        await box.start()
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=box.url)
            await runner.run(campaign, runner.Options(api_key=KEY, sandbox=True, prepare_in_child=False))
            state = state_of(campaign)
            ids = {r["row"]: (r["key"], r["message_id"]) for r in state.scheduled()}
            async with SociocsClient(box.url, KEY, timeout=5, connections=1) as client:
                assert (await client.delete_scheduled(ids[2][1])).verdict is Verdict.ACCEPTED
            state.set_cancel(ids[2][0], Status.CANCELLING)
            state.set_cancel(ids[3][0], Status.CANCELLING)
            state.close()
            return await runner.cancel(campaign, KEY, sandbox=True)
        finally:
            await box.close()

    with timing.use_clock(timing.ManualClock(utc(2026, 12, 1))):
        report = asyncio.run(main())
    assert report.resumed == 2
    assert sorted(r["row"] for r in report.cancelled) == [2, 3, 4]
    assert len(box.scheduled.deleted) == 3 == len(set(box.scheduled.deleted))
    assert sum(r.method == "DELETE" for r in box.requests) == 3  # one per message, none repeated
