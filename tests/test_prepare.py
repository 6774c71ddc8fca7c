"""Rows prepared in a forked child process: same rows, same errors, and no orphan."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from campaign import prepare
from campaign.config import load_campaign
from campaign.errors import InputFileError, RunStopped
from tests.conftest import CampaignFactory, contacts, write_csv
from tests.test_send import results, send


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_test_process_can_fork() -> None:
    # Otherwise every send in this suite would quietly take the inline path.
    assert prepare.can_fork()


def test_child_and_inline_give_the_same_rows(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    rows = contacts(700)  # two batches (256, then 444)
    rows[5] = ("12345", *rows[5][1:])  # invalid
    rows[300] = (rows[10][0], *rows[300][1:])  # duplicate across batches
    rows[650] = (rows[0][0], *rows[650][1:])  # duplicate across batches
    rows[400] = (rows[400][0], rows[400][1], "", *rows[400][3:])  # a blank first_name
    outputs = {}
    for child in (True, False):
        path = make_campaign(rows, name=f"run-{child}")
        summary, box = send(path, prepare_in_child=child)
        assert summary.counts == {"sent": 697, "invalid": 1, "skipped": 2}
        assert len(box.accepted) == 697
        assert summary.blanks == {"first_name": 1}
        outputs[child] = [
            {k: v for k, v in r.items() if k not in ("message_id", "updated_at")}
            for r in results(tmp_path / f"run-{child}.results.csv")
        ]
    assert outputs[True] == outputs[False]
    assert len(outputs[True]) == 700


def _pipeline(make_campaign: CampaignFactory, n: int) -> prepare.Pipeline:
    return prepare.Pipeline(load_campaign(make_campaign(contacts(n))))


async def _collect(pipeline: prepare.Pipeline, child: bool) -> list[int]:
    numbers: list[int] = []
    async with prepare.prepared_batches(pipeline, child=child) as batches:
        async for batch in batches:
            numbers.extend(p.row for p in batch)
    return numbers


@pytest.mark.parametrize("child", [True, False], ids=["child", "inline"])
def test_a_file_broken_after_it_was_checked_raises_the_same_error(
    make_campaign: CampaignFactory, tmp_path: Path, child: bool
) -> None:
    pipeline = _pipeline(make_campaign, 3000)
    rows = contacts(3000)
    rows[2500] = (*rows[2500], "one cell too many")
    write_csv(tmp_path / "contacts.csv", rows)  # changed after the checks at open
    with pytest.raises(InputFileError) as caught:
        asyncio.run(_collect(pipeline, child))
    assert str(caught.value).startswith(f"{tmp_path / 'contacts.csv'}: row 2502 has 7 cells")


def test_child_rows_arrive_in_order(make_campaign: CampaignFactory) -> None:
    pipeline = _pipeline(make_campaign, 1500)
    assert asyncio.run(_collect(pipeline, True)) == list(range(2, 1502))


def test_a_killed_child_stops_the_run_instead_of_ending_it_quietly(make_campaign: CampaignFactory) -> None:
    pipeline = _pipeline(make_campaign, 60_000)  # far more than the pipe holds
    seen = 0

    async def main() -> None:
        nonlocal seen
        preparer = prepare.ChildPreparer(pipeline)
        try:
            async for batch in preparer.batches():
                if not seen:
                    os.kill(preparer.pid, signal.SIGKILL)
                seen += len(batch)
        finally:
            preparer.close()

    with pytest.raises(RunStopped, match=r"ended without finishing \(killed by SIGKILL\); run the same command"):
        asyncio.run(main())
    assert 0 < seen < 60_000  # what was already in the pipe arrived; the rest never did


def test_stopping_early_kills_and_reaps_the_child(make_campaign: CampaignFactory) -> None:
    pipeline = _pipeline(make_campaign, 60_000)

    async def main() -> prepare.ChildPreparer:
        preparer = prepare.ChildPreparer(pipeline)
        async for _batch in preparer.batches():
            break  # the sender stopped after the first batch
        assert _alive(preparer.pid)  # blocked on the full pipe, not finished
        preparer.close()
        return preparer

    preparer = asyncio.run(main())
    assert preparer.pid == 0 and preparer.ended == "killed by SIGKILL"


def test_batches_start_small_and_grow(make_campaign: CampaignFactory) -> None:
    pipeline = _pipeline(make_campaign, 5000)
    sizes = [len(batch) for batch in pipeline.batches()]
    assert sizes[:3] == [prepare.BATCH, 2 * prepare.BATCH, 4 * prepare.BATCH]  # the first request leaves early
    assert max(sizes) == prepare.BATCH_MAX and sum(sizes) == 5000
