"""Every kind of answer the API can give, over real HTTP against the sandbox's faults.

Each test checks what the user sees: the row's status and error in the results file, the
requests the sandbox received for each number (so "not retried" is a count, not a hope), and
the run's exit code. The table these pin is the one in :mod:`campaign.api`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from email.utils import formatdate
from pathlib import Path

import pytest

from campaign import runner
from campaign.api import SociocsClient, Verdict, _retry_after
from campaign.config import load_campaign
from campaign.errors import CampaignError, ExitCode, RunStopped
from campaign.sandbox import Faults, Sandbox, SandboxConfig
from tests.conftest import KEY, CampaignFactory, contacts
from tests.test_send import results, send

FAST = "rate = 0\nconcurrency = 2\nmax_attempts = 3\ntimeout = 5"


def per_number(box: Sandbox) -> Counter[str]:
    """POST /message requests the sandbox received, per number."""
    return Counter(r.to for r in box.requests if r.method == "POST" and r.path == "/message")


def numbers(n: int) -> list[str]:
    return [row[0] for row in contacts(n)]


def test_read_timeout_is_unknown_and_never_retried(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """The request was written and accepted, the answer never came: the message may have been
    sent, so the row is `unknown` and sent exactly once (a retry could send it twice)."""
    path = make_campaign(contacts(3), sending="rate = 0\nconcurrency = 3\nmax_attempts = 3\ntimeout = 0.3")
    summary, box = send(path, faults=Faults(stall_after_accept=1.0, stall=3.0))
    assert summary.counts == Counter({"unknown": 3})
    assert per_number(box) == Counter({n: 1 for n in numbers(3)})
    assert len(box.accepted) == 3
    assert summary.exit_code() is ExitCode.ROWS_NOT_SENT
    for row in results(tmp_path / "test.results.csv"):
        assert (row["status"], row["attempts"], row["http_status"]) == ("unknown", "1", "")
        assert row["error"] == "no answer within the timeout; the message may have been sent"


def test_gateway_timeout_is_unknown_and_never_retried(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """A 504 from a proxy in front of the API: the API took the message and sent it, the proxy
    gave up waiting. Retrying (as for a 503) would send it twice."""
    path = make_campaign(contacts(3), sending=FAST)
    summary, box = send(path, faults=Faults(accept_then_504=1.0))
    assert summary.counts == Counter({"unknown": 3})
    assert per_number(box) == Counter({n: 1 for n in numbers(3)})
    assert len(box.accepted) == 3
    for row in results(tmp_path / "test.results.csv"):
        assert (row["status"], row["http_status"], row["attempts"]) == ("unknown", "504", "1")
        assert row["error"] == "a gateway answered HTTP 504 for the API; the message may have been sent"


def test_unreadable_200_is_unknown_and_never_retried(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(3), sending=FAST)
    summary, box = send(path, faults=Faults(not_json_200=1.0))
    assert summary.counts == Counter({"unknown": 3})
    assert per_number(box) == Counter({n: 1 for n in numbers(3)})
    for row in results(tmp_path / "test.results.csv"):
        assert (row["status"], row["http_status"], row["attempts"]) == ("unknown", "200", "1")
        assert row["error"] == "the API answered 200 with an unreadable body"


def test_200_without_success_is_failed_and_not_retried(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(3), sending=FAST)
    summary, box = send(path, faults=Faults(error_200=1.0))
    assert summary.counts == Counter({"failed": 3})
    assert per_number(box) == Counter({n: 1 for n in numbers(3)})
    assert box.accepted == []
    assert summary.exit_code() is ExitCode.ROWS_NOT_SENT and summary.stop_reason is None
    for row in results(tmp_path / "test.results.csv"):
        assert (row["status"], row["http_status"], row["error"]) == ("failed", "200", "Message could not be sent.")


def test_other_4xx_fails_the_row_and_goes_on(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(3), sending=FAST)
    summary, box = send(path, faults=Faults(error_422=1.0))
    assert summary.counts == Counter({"failed": 3})
    assert per_number(box) == Counter({n: 1 for n in numbers(3)})
    assert summary.stop_reason is None and summary.exit_code() is ExitCode.ROWS_NOT_SENT
    for row in results(tmp_path / "test.results.csv"):
        assert (row["status"], row["http_status"]) == ("failed", "422")
        assert row["error"] == "The request could not be processed."


def test_404_stops_the_run_with_every_row_pending(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    """A wrong api_url answers 404 to every request: stop at once, send nothing more."""
    path = make_campaign(contacts(20), sending="rate = 0\nconcurrency = 1\nmax_attempts = 3\ntimeout = 5")

    async def main() -> tuple[runner.Summary, Sandbox]:
        box = Sandbox(SandboxConfig(api_key=KEY))
        url = await box.start()
        try:
            campaign = dataclasses.replace(load_campaign(path), api_url=f"{url}/v9")
            return await runner.run(campaign, runner.Options(api_key=KEY, backoff_base=0.01)), box
        finally:
            await box.close()

    summary, box = asyncio.run(main())
    assert summary.exit_code() is ExitCode.STOPPED
    assert summary.stop_reason is not None and summary.stop_reason.endswith("/v9/message does not exist (HTTP 404)")
    assert [(r.path, r.status) for r in box.requests] == [("/v9/message", 404)]  # one, in a pool of one
    assert summary.counts == Counter({"pending": 20})


def test_retry_after_as_http_date_is_honoured(make_campaign: CampaignFactory) -> None:
    """After a 429 whose Retry-After is a date at least a second away, nothing is sent before it:
    read from the sandbox's own arrival times, relative to each other."""
    path = make_campaign(contacts(3), sending="rate = 0\nconcurrency = 1\nmax_attempts = 1\ntimeout = 5")
    # One token a second, at most one in the bucket: row 1 goes, row 2 is told to come back later.
    summary, box = send(path, faults=Faults(rate_limit=1, retry_after=1, retry_after_date=True))
    assert summary.counts == Counter({"sent": 3})
    posts = [r for r in box.requests if r.path == "/message"]
    limited = [i for i, r in enumerate(posts) if r.status == 429]
    assert limited and len(limited) == summary.rate_limited
    for i in limited:
        # The date is rounded up to a whole second, at least 1 s away: with backoff_base 0.01
        # an ignored date would retry within milliseconds.
        assert posts[i + 1].at - posts[i].at >= 0.9


def test_retry_after_values() -> None:
    """Retry-After is delta-seconds or an HTTP date (RFC 9110 section 10.2.3); junk is ignored."""
    assert _retry_after("7") == 7.0
    assert _retry_after("-3") == 0.0
    assert _retry_after(None) is None and _retry_after("") is None
    assert _retry_after("soon") is None
    later = _retry_after(formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 28 <= later <= 30
    naive = _retry_after(formatdate(time.time() + 30).replace("+0000", "-0000"))  # "-0000": no zone given
    assert naive is not None and 28 <= naive <= 30
    assert _retry_after(formatdate(time.time() - 30, usegmt=True)) == 0.0


# --- the client alone: connect timeout, and GET /messages ------------------------------------


@contextmanager
def unanswered_port() -> Iterator[str]:
    """A listening socket whose accept queue is full, so a new connect is never completed."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    host, port = server.getsockname()
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue; further SYNs are dropped (Linux)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex((host, port))
            fillers.append(filler)
        yield f"http://{host}:{port}"
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_connect_timeout_is_unreachable_not_unknown() -> None:
    """A connect that never completes: nothing was written, so the row is certainly not sent."""

    async def main() -> tuple[Verdict, int | None, str]:
        with unanswered_port() as url:
            async with SociocsClient(url, KEY, timeout=0.3, connections=1) as client:
                reply = await client.send(b"{}")
        return reply.verdict, reply.http_status, reply.error

    assert asyncio.run(main()) == (Verdict.UNREACHABLE, None, "timed out connecting")


def test_connect_timeout_leaves_every_row_pending_and_stops(make_campaign: CampaignFactory, tmp_path: Path) -> None:
    path = make_campaign(contacts(3), sending="rate = 0\nconcurrency = 1\nmax_attempts = 2\ntimeout = 0.3")

    async def main() -> tuple[runner.Summary, str]:
        with unanswered_port() as url:
            campaign = dataclasses.replace(load_campaign(path), api_url=url)
            return await runner.run(campaign, runner.Options(api_key=KEY, backoff_base=0.01)), url

    summary, url = asyncio.run(main())
    assert summary.stop_reason == f"cannot reach the API at {url} (timed out connecting); nothing was sent"
    assert summary.exit_code() is ExitCode.STOPPED
    assert summary.counts == Counter({"pending": 3})
    assert [r["status"] for r in results(tmp_path / "test.results.csv")] == ["pending"] * 3


def _list(config: SandboxConfig, start: date, end: date, *, key: str = KEY, path: str = "") -> object:
    async def main() -> object:
        async with Sandbox(config) as box, SociocsClient(box.url + path, key, timeout=5, connections=1) as client:
            try:
                return await client.list_messages(start, end)
            except CampaignError as err:
                return err

    return asyncio.run(main())


def test_list_messages_answers_and_errors() -> None:
    today = date.today()
    config = SandboxConfig(api_key=KEY)
    assert _list(config, today, today) == []

    refused = _list(config, today, today, key="wrong:key")
    assert isinstance(refused, RunStopped) and refused.exit_code is ExitCode.STOPPED
    assert str(refused) == "The API refused the key (HTTP 401); check SOCIOCS_API_KEY."

    too_long = _list(config, today - timedelta(days=40), today)
    assert type(too_long) is CampaignError
    assert str(too_long) == "GET /messages failed: The date range may cover at most 31 days."

    wrong_url = _list(config, today, today, path="/v9")
    assert type(wrong_url) is CampaignError and str(wrong_url) == "GET /messages failed: Not found."


def test_list_messages_unreachable_and_unreadable() -> None:
    async def unreachable() -> CampaignError:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}"
        async with SociocsClient(url, KEY, timeout=5, connections=1) as client:
            with pytest.raises(CampaignError) as caught:
                await client.list_messages(date.today(), date.today())
        return caught.value

    err = asyncio.run(unreachable())
    assert re.fullmatch(r"cannot reach the API at http://127\.0\.0\.1:\d+ \(connection refused\)", str(err)), err

    async def no_connect() -> tuple[str, CampaignError]:
        with unanswered_port() as url:
            async with SociocsClient(url, KEY, timeout=0.3, connections=1) as client:
                with pytest.raises(CampaignError) as caught:
                    await client.list_messages(date.today(), date.today())
        return url, caught.value

    url, err = asyncio.run(no_connect())
    assert str(err) == f"cannot list messages from {url}: ConnectionTimeoutError"

    today = date.today()
    not_json = _list(SandboxConfig(api_key=KEY, faults=Faults(not_json_200=1.0)), today, today)
    assert type(not_json) is CampaignError
    assert str(not_json) == "GET /messages failed: HTTP 200, with a body that is not JSON"
    no_success = _list(SandboxConfig(api_key=KEY, faults=Faults(error_200=1.0)), today, today)
    assert type(no_success) is CampaignError
    assert str(no_success) == "GET /messages failed: Messages could not be listed."
