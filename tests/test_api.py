"""The Sociocs client alone (campaign.api): every answer to its exact Reply, and the calls of
section 8, over real HTTP on loopback.

Most answers come from the project's sandbox. The ones the sandbox never gives (a 502, a 200
without ``data``, a 400 with two error texts or with none, a body that is not HTTP) come from
:class:`Scripted`, a real aiohttp server that answers every request the same way and keeps what
it heard, so the request itself (method, headers, body, query) is checked too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import pytest
from aiohttp import web

from campaign import __version__
from campaign.api import Reply, SociocsClient, Verdict
from campaign.errors import CampaignError, RunStopped
from campaign.sandbox import Faults, Sandbox, SandboxConfig
from tests.conftest import KEY
from tests.test_faults import unanswered_port

T = TypeVar("T")
USER, SECRET = KEY.split(":")
TWLO = {"provider": "twlo", "channel_key": "twlo_16175550000", "to": "+16175550100", "text": "Hi"}


@dataclass(frozen=True)
class Heard:
    """One request as the scripted server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Scripted:
    """A real aiohttp server on 127.0.0.1 answering every request with ``status`` and ``body``
    (a dict is sent as JSON), keeping each request in ``heard``. Use as ``async with``."""

    status: int
    body: dict[str, Any] | bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    heard: list[Heard] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _answer(self, request: web.Request) -> web.Response:
        self.heard.append(
            Heard(request.method, request.path, dict(request.query), dict(request.headers), await request.read())
        )
        if isinstance(self.body, dict):
            return web.json_response(self.body, status=self.status, headers=self.headers)
        return web.Response(status=self.status, body=self.body, headers=self.headers, content_type="text/html")

    async def __aenter__(self) -> Scripted:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def scripted(
    status: int, body: dict[str, Any] | bytes, call: Callable[[SociocsClient], Awaitable[T]], **headers: str
) -> tuple[T | CampaignError, Scripted, str]:
    """``call`` on a client of a fresh scripted server: its result (or the CampaignError it
    raised), the server, and its URL."""

    async def main() -> tuple[T | CampaignError, Scripted, str]:
        async with (
            Scripted(status, body, headers) as server,
            SociocsClient(server.url, KEY, timeout=5, connections=1) as client,
        ):
            try:
                return await call(client), server, server.url
            except CampaignError as err:
                return err, server, server.url

    return asyncio.run(main())


def errors(*msgs: Any) -> dict[str, Any]:
    return {"status": "error", "errors": [m if isinstance(m, dict) else {"msg": m} for m in msgs]}


# --- POST /message: every answer, its exact Reply --------------------------------------------

GATEWAY = "; the message may have been sent"


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (200, {"status": "success", "data": {"message_id": "SM1"}}, {}, Reply(Verdict.ACCEPTED, 200, "SM1")),
        (200, {"status": "success"}, {}, Reply(Verdict.ACCEPTED, 200, "")),
        (200, {"status": "success", "data": {"message_id": None}}, {}, Reply(Verdict.ACCEPTED, 200, "")),
        (200, {"status": "error"}, {}, Reply(Verdict.REJECTED, 200, error="the API answered without success")),
        (200, b"", {}, Reply(Verdict.UNKNOWN, 200, error="the API answered 200 with an unreadable body")),
        (400, errors("A.", {"code": 7}, "", "B."), {}, Reply(Verdict.REJECTED, 400, error="A.; B.")),
        (400, b"", {}, Reply(Verdict.REJECTED, 400, error="the API refused the request (HTTP 400)")),
        (400, errors("Invalid channel_key."), {}, Reply(Verdict.FATAL, 400, error="Invalid channel_key.")),
        (401, b"", {}, Reply(Verdict.FATAL, 401, error="authentication failed (HTTP 401)")),
        (403, errors("Forbidden."), {}, Reply(Verdict.FATAL, 403, error="Forbidden.")),
        (429, b"", {"Retry-After": "7"}, Reply(Verdict.RATE_LIMITED, 429, error="rate limit reached", retry_after=7.0)),
        (429, errors("Slow down."), {}, Reply(Verdict.RATE_LIMITED, 429, error="Slow down.")),
        (503, b"", {}, Reply(Verdict.RETRY, 503, error="the API is unavailable (HTTP 503)")),
        (503, errors("Down."), {}, Reply(Verdict.RETRY, 503, error="Down.")),
        (502, b"<html>", {}, Reply(Verdict.UNKNOWN, 502, error="a gateway answered HTTP 502 for the API" + GATEWAY)),
        (500, b"", {}, Reply(Verdict.UNKNOWN, 500, error="server error (HTTP 500)" + GATEWAY)),
        (500, errors("Boom."), {}, Reply(Verdict.UNKNOWN, 500, error="Boom.")),
        (599, b"", {}, Reply(Verdict.UNKNOWN, 599, error="server error (HTTP 599)" + GATEWAY)),
        (418, b"", {}, Reply(Verdict.REJECTED, 418, error="the API refused the request (HTTP 418)")),
    ],
)
def test_each_answer_is_its_exact_reply(
    status: int, body: dict[str, Any] | bytes, headers: dict[str, str], expected: Reply
) -> None:
    """The table of campaign.api's docstring, answer by answer: verdict, HTTP status, message id,
    the error text the results file shows, and Retry-After."""
    reply, _, _ = scripted(status, body, lambda c: c.send(b"{}"), **headers)
    assert reply == expected


def test_a_404_names_the_url_that_does_not_exist() -> None:
    """Only the trailing slashes of ``api_url`` go; the rest of it is kept, to the last letter."""

    async def main() -> tuple[Reply, Scripted]:
        async with (
            Scripted(404, errors("Not found.")) as server,
            SociocsClient(server.url + "/v2X//", KEY, timeout=5, connections=1) as client,
        ):
            return await client.send(b"{}"), server

    reply, server = asyncio.run(main())
    assert reply == Reply(Verdict.FATAL, 404, error=f"{server.url}/v2X/message does not exist (HTTP 404)")
    assert [h.path for h in server.heard] == ["/v2X/message"]


def test_the_client_works_only_inside_async_with_and_closes_twice_quietly() -> None:
    async def main() -> None:
        client = SociocsClient("http://127.0.0.1:9", KEY, timeout=1, connections=1)
        with pytest.raises(RuntimeError, match=r"^SociocsClient used outside 'async with'$"):
            await client.send(b"{}")
        await client.close()  # never opened: nothing to close
        async with client:
            pass
        await client.close()  # closed by the block already
        with pytest.raises(RuntimeError, match="outside 'async with'"):
            await client.list_scheduled()

    asyncio.run(main())


def test_the_request_carries_the_key_json_headers_and_the_body_as_given() -> None:
    """Also: an ``api_url`` written with a trailing ``/`` still posts to ``/message``, and a
    cookie the server sets is never sent back (the API uses none)."""
    body = json.dumps(TWLO).encode()

    async def main() -> Scripted:
        ok = {"status": "success", "data": {"message_id": "SM1"}}
        async with Scripted(200, ok, {"Set-Cookie": "session=abc; Path=/"}) as server:
            # By name: aiohttp's default cookie jar keeps no cookie of a bare IP address.
            by_name = server.url.replace("127.0.0.1", "localhost") + "/"
            async with SociocsClient(by_name, KEY, timeout=5, connections=1) as client:
                for _ in range(2):
                    assert (await client.send(body)).message_id == "SM1"
            return server

    heard = asyncio.run(main()).heard
    assert [(h.method, h.path, h.query, h.body) for h in heard] == [("POST", "/message", {}, body)] * 2
    for h in heard:
        assert h.headers["apikey"] == KEY
        assert h.headers["Content-Type"] == "application/json"
        assert h.headers["Accept"] == "application/json"
        assert h.headers["User-Agent"] == f"campaign/{__version__}"
        assert "Cookie" not in h.headers


def test_connections_bound_the_requests_in_flight() -> None:
    """``connections`` (the campaign's ``concurrency``) is the most requests the API sees at
    once: with one, a second request waits for the first answer. The server holds the first
    answer until a second request arrives, or a second has passed."""

    async def main() -> list[int]:
        running, seen = 0, []  # requests being answered; that number as each one arrived
        second = asyncio.Event()

        async def hold(request: web.Request) -> web.Response:
            nonlocal running
            running += 1
            seen.append(running)
            if len(seen) == 1:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(second.wait(), 1.0)
            else:
                second.set()
            running -= 1
            return web.json_response({"status": "success", "data": {"message_id": "SM1"}})

        app = web.Application()
        app.router.add_post("/message", hold)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        try:
            async with SociocsClient(f"http://{host}:{port}", KEY, timeout=5, connections=1) as client:
                replies = await asyncio.gather(client.send(b"{}"), client.send(b"{}"))
        finally:
            await runner.cleanup()
        assert [r.verdict for r in replies] == [Verdict.ACCEPTED] * 2
        return seen

    assert asyncio.run(main()) == [1, 1]


def test_server_text_is_scrubbed_of_the_key_and_cut_to_500_characters() -> None:
    said = f"key {KEY} user {USER} secret {SECRET} " + "x" * 600
    reply, _, _ = scripted(400, errors(said), lambda c: c.send(b"{}"))
    assert isinstance(reply, Reply)
    assert reply.error == ("key *** user *** secret *** " + "x" * 600)[:500]


def test_key_halves_of_eight_characters_are_scrubbed_and_shorter_ones_not() -> None:
    """Each half of ``user:secret`` is scrubbed when it is 8 characters or more; a shorter half
    (too common a string to hide) is left alone."""
    client = SociocsClient("http://127.0.0.1:9", "abcdefgh:ijklmno", timeout=1, connections=1)
    assert client.scrub("abcdefgh:ijklmno abcdefgh ijklmno") == "*** *** ijklmno"


def test_an_answer_that_is_not_http_is_unknown() -> None:
    """Something on the API's port that does not speak HTTP: the request was written, so the
    message may have been sent."""

    async def main() -> Reply:
        async def speak(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(speak, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with SociocsClient(f"http://127.0.0.1:{port}", KEY, timeout=5, connections=1) as client:
                return await client.send(b"{}")
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()) == Reply(Verdict.UNKNOWN, None, error="HTTP client error: ClientResponseError")


def on_sandbox(
    call: Callable[[SociocsClient], Awaitable[T]], config: SandboxConfig, *, key: str = KEY, path: str = ""
) -> tuple[T, Sandbox]:
    async def main() -> tuple[T, Sandbox]:
        async with Sandbox(config) as box, SociocsClient(box.url + path, key, timeout=5, connections=1) as client:
            return await call(client), box

    return asyncio.run(main())


def test_the_sandboxs_refusals_are_their_exact_replies() -> None:
    body = json.dumps(TWLO).encode()
    config = SandboxConfig(api_key=KEY)
    assert on_sandbox(lambda c: c.send(body), config, key="wrong:key")[0] == Reply(
        Verdict.FATAL, 401, error="Check apikey header."
    )
    reply, box = on_sandbox(lambda c: c.send(body), config, path="/v9")
    assert reply == Reply(Verdict.FATAL, 404, error=f"{box.url}/v9/message does not exist (HTTP 404)")
    channels = SandboxConfig(api_key=KEY, channels=frozenset({"twlo_19999999999"}))
    assert on_sandbox(lambda c: c.send(body), channels)[0] == Reply(Verdict.FATAL, 400, error="Invalid channel_key.")


def test_a_connection_dropped_after_accepting_is_unknown_with_its_cause() -> None:
    body = json.dumps(TWLO).encode()
    reply, box = on_sandbox(lambda c: c.send(body), SandboxConfig(api_key=KEY, faults=Faults(drop_after_accept=1.0)))
    assert len(box.accepted) == 1
    assert (reply.verdict, reply.http_status, reply.message_id) == (Verdict.UNKNOWN, None, "")
    assert re.fullmatch(
        r"the connection dropped before the answer \((ServerDisconnectedError|ClientOSError)\); "
        r"the message may have been sent",
        reply.error,
    ), reply.error


def test_https_to_a_plain_http_port_says_the_tls_handshake_failed() -> None:
    """A TLS failure's errno is OpenSSL's code (1), not an OS errno: it once read "operation not
    permitted". Nothing was sent (no HTTP byte before the handshake): unreachable, like refused."""

    async def main() -> tuple[Reply, CampaignError, Scripted]:
        async with Scripted(200, {"status": "success"}) as server:
            url = server.url.replace("http://", "https://")
            async with SociocsClient(url, KEY, timeout=5, connections=1) as client:
                reply = await client.send(json.dumps(TWLO).encode())
                with pytest.raises(CampaignError) as caught:
                    await client.list_scheduled()
        return reply, caught.value, server

    reply, err, server = asyncio.run(main())
    assert reply == Reply(Verdict.UNREACHABLE, None, error="TLS handshake failed: wrong version number")
    url = server.url.replace("http://", "https://")
    assert str(err) == f"cannot reach the API at {url} (TLS handshake failed: wrong version number)"
    assert server.heard == []


# --- scheduled messages: DELETE and GET /messages/scheduled (section 8) ----------------------


def test_delete_scheduled_deletes_once_then_says_there_is_no_such_message() -> None:
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat(timespec="seconds")
    body = json.dumps({**TWLO, "schedule": later}).encode()

    async def main(client: SociocsClient) -> tuple[list[dict[str, Any]], list[Reply], list[dict[str, Any]]]:
        message_id = (await client.send(body)).message_id
        listed = await client.list_scheduled()
        replies = [await client.delete_scheduled(message_id), await client.delete_scheduled(message_id)]
        return listed, replies, await client.list_scheduled()

    (listed, (deleted, again), after), box = on_sandbox(main, SandboxConfig(api_key=KEY))
    [message] = box.accepted
    assert [(m["message_id"], m["to"], m["schedule"]) for m in listed] == [(message.message_id, TWLO["to"], later)]
    assert deleted == Reply(Verdict.ACCEPTED, 200, message.message_id)
    assert again == Reply(Verdict.REJECTED, 404, error="the API has no scheduled message with this id (HTTP 404)")
    assert after == []
    deletes = [(r.method, r.path, r.status) for r in box.requests if r.method == "DELETE"]
    assert deletes == [("DELETE", f"/messages/scheduled/{message.message_id}", s) for s in (200, 404)]


def test_delete_scheduled_with_a_refused_key_is_fatal_not_a_missing_message() -> None:
    reply, _ = on_sandbox(lambda c: c.delete_scheduled("SM1"), SandboxConfig(api_key=KEY), key="wrong:key")
    assert reply == Reply(Verdict.FATAL, 401, error="Check apikey header.")


def test_list_scheduled_that_cannot_connect_names_what_it_tried() -> None:
    async def main() -> tuple[str, CampaignError]:
        with unanswered_port() as url:
            async with SociocsClient(url, KEY, timeout=0.3, connections=1) as client:
                with pytest.raises(CampaignError) as caught:
                    await client.list_scheduled()
        return url, caught.value

    url, err = asyncio.run(main())
    assert str(err) == f"cannot list scheduled messages from {url}: ConnectionTimeoutError"


# --- the other calls of section 8: their requests, their data, their errors ----------------


def test_list_messages_asks_for_both_dates_and_sends_no_body() -> None:
    ok = {"status": "success", "data": [{"message_id": "SM1"}, "junk", 7]}
    listed, server, _ = scripted(200, ok, lambda c: c.list_messages(date(2026, 11, 2), date(2026, 11, 30)))
    assert listed == [{"message_id": "SM1"}]
    [heard] = server.heard
    assert (heard.method, heard.path, heard.body) == ("GET", "/messages", b"")
    assert heard.query == {"start_date": "2026-11-02", "end_date": "2026-11-30"}


def test_list_messages_of_a_day_to_come_is_empty_on_the_sandbox() -> None:
    """Both bounds reach the sandbox: without ``end_date`` it would mean today, before the start."""
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    listed, _ = on_sandbox(lambda c: c.list_messages(tomorrow, tomorrow), SandboxConfig(api_key=KEY))
    assert listed == []


@pytest.mark.parametrize("data", [None, {}, "text"])
def test_listings_whose_data_is_not_a_list_are_empty(data: Any) -> None:
    ok = {"status": "success", "data": data}
    assert scripted(200, ok, lambda c: c.list_messages(date(2026, 11, 2), date(2026, 11, 3)))[0] == []
    assert scripted(200, ok, lambda c: c.list_scheduled())[0] == []
    assert scripted(200, ok, lambda c: c.subscriptions())[0] == []


def test_subscribe_returns_the_id_the_listing_shows() -> None:
    hook = {
        "platform": "twilio",
        "subscriber_reference_id": "campaign-test",
        "webhook_url": "https://hooks.example.com/webhooks/sociocs",
    }

    async def main(client: SociocsClient) -> tuple[str, list[dict[str, Any]]]:
        return await client.subscribe(hook), await client.subscriptions()

    (made, listed), _ = on_sandbox(main, SandboxConfig(api_key=KEY))
    assert made and [s["id"] for s in listed] == [made]


@pytest.mark.parametrize(
    ("data", "expected"), [({"id": 42}, "42"), ({}, ""), ({"id": None}, "None"), (None, ""), (["x"], "")]
)
def test_subscribe_reads_only_an_id_it_was_given(data: Any, expected: str) -> None:
    made, server, _ = scripted(200, {"status": "success", "data": data}, lambda c: c.subscribe({"a": 1}))
    assert made == expected
    [heard] = server.heard
    assert (heard.method, heard.path, json.loads(heard.body)) == ("POST", "/webhook-subscriptions", {"a": 1})


@pytest.mark.parametrize(
    ("status", "body", "detail"),
    [
        (500, {"status": "error"}, "HTTP 500"),
        (502, b"", "HTTP 502"),
        (502, b"<html>", "HTTP 502, with a body that is not JSON"),
        (200, {"status": "error", "errors": [{"msg": f"no {KEY}"}]}, "no ***"),
    ],
)
def test_each_call_names_itself_when_it_fails(status: int, body: dict[str, Any] | bytes, detail: str) -> None:
    calls: list[tuple[str, Callable[[SociocsClient], Awaitable[object]]]] = [
        ("GET /messages", lambda c: c.list_messages(date(2026, 11, 2), date(2026, 11, 3))),
        ("GET /messages/scheduled", lambda c: c.list_scheduled()),
        ("POST /webhook-subscriptions", lambda c: c.subscribe({})),
        ("GET /webhook-subscriptions", lambda c: c.subscriptions()),
        ("DELETE /webhook-subscriptions/7", lambda c: c.unsubscribe("7")),
    ]
    for name, call in calls:
        err, server, _ = scripted(status, body, call)
        assert type(err) is CampaignError and str(err) == f"{name} failed: {detail}"
        assert [f"{h.method} {h.path}" for h in server.heard] == [name]


def test_a_refused_key_stops_every_call() -> None:
    err, _, _ = scripted(403, b"", lambda c: c.unsubscribe("7"))
    assert isinstance(err, RunStopped) and str(err) == "The API refused the key (HTTP 403); check SOCIOCS_API_KEY."


def test_a_call_without_a_name_is_named_by_its_method_and_path() -> None:
    async def main() -> tuple[str, CampaignError]:
        with unanswered_port() as url:
            async with SociocsClient(url, KEY, timeout=0.3, connections=1) as client:
                with pytest.raises(CampaignError) as caught:
                    await client.subscriptions()
        return url, caught.value

    url, err = asyncio.run(main())
    assert str(err) == f"cannot call GET /webhook-subscriptions from {url}: ConnectionTimeoutError"
