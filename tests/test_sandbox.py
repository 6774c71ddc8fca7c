"""The sandbox over real HTTP on loopback: envelope, auth, every validation rule, the faults.

Each test runs its own ``Sandbox`` on a free port and talks to it with a real
``aiohttp.ClientSession``; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from campaign import sandbox as sandbox_module
from campaign.sandbox import AcceptedMessage, Faults, Sandbox, SandboxConfig

KEY = "e047nbp2UnWuHD9m:Xqc37DHPGMyF0Z4hWX3Afn1Iyj6j7dPc"
MESSAGE_ID = re.compile(r"SM[0-9a-f]{32}")

# sociocs-api.md 4a and 4b, verbatim, and a twlo text + image body.
TWLOWA: dict[str, Any] = {
    "provider": "twlowa",
    "channel_key": "twlowa_16311113333",
    "to": "+16175551212",
    "name": "John Smith",
    "template": {
        "id": "HX0123456789abcdef0123456789abcdef",
        "variables": {"1": "John", "2": "john@example.com", "3": "11-Jul-2024"},
    },
}
GSWA: dict[str, Any] = {
    "provider": "gswa",
    "channel_key": "gswa_919876543210",
    "to": "919812345678",
    "name": "Priya",
    "template": {
        "id": "007b7c0e-fc8d-4698-a9a8-3938151dd5da",
        "variables": {
            "MEDIA_URL": "https://placehold.co/600x400",
            "Header": {"1": "John"},
            "Body": {"1": "john@example.com", "2": "11-Jul-2024"},
            "Buttons": {"1": "Quick Reply Text"},
        },
    },
}
TWLO: dict[str, Any] = {
    "provider": "twlo",
    "channel_key": "twlo_16311113333",
    "to": "+16175551212",
    "name": "John Smith",
    "text": "Hi John, your order is ready.",
    "image_url": "https://cdn.example.com/order.jpg",
}
DROP = object()  # in ``vary``: remove the key

Scenario = Callable[[Sandbox, aiohttp.ClientSession], Awaitable[None]]


def vary(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with top-level keys set (or removed with ``DROP``)."""
    body = copy.deepcopy(base)
    for key, value in changes.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def template(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``base`` with its ``template`` object varied."""
    return vary(base, template=vary(base["template"], **changes))


def run(
    scenario: Scenario, config: SandboxConfig | None = None, key: str = KEY, clock: Callable[[], float] = time.monotonic
) -> None:
    """Run ``scenario`` against a fresh sandbox with a session sending ``apikey: key``."""

    async def main() -> None:
        async with (
            Sandbox(config, clock=clock) as sandbox,
            aiohttp.ClientSession(sandbox.url, headers={"apikey": key} if key else {}) as session,
        ):
            await scenario(sandbox, session)

    asyncio.run(main())


async def post(session: aiohttp.ClientSession, body: Any, **kwargs: Any) -> tuple[int, Any, Mapping[str, str]]:
    """POST /message; return status, decoded JSON body and headers."""
    async with session.post("/message", json=body, **kwargs) as response:
        return response.status, await response.json(), response.headers


def basic(user_password: str) -> str:
    return "Basic " + base64.b64encode(user_password.encode()).decode()


def error(msg: str) -> dict[str, Any]:
    return {"status": "error", "errors": [{"msg": msg}]}


# --- success -------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [TWLOWA, GSWA, TWLO], ids=["twlowa", "gswa", "twlo"])
def test_doc_examples_are_accepted_and_recorded(body: dict[str, Any]) -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        status, answer, _ = await post(session, body)
        assert status == 200
        assert answer.keys() == {"status", "data"} and answer["status"] == "success"
        assert answer["data"].keys() == {"message_id"}
        assert MESSAGE_ID.fullmatch(answer["data"]["message_id"])
        [message] = sandbox.accepted
        assert message.message_id == answer["data"]["message_id"]
        assert (message.provider, message.channel_key) == (body["provider"], body["channel_key"])
        assert message.to == body["to"] and message.body == body
        assert message.created_at.tzinfo is not None and message.created_at.utcoffset() == timedelta()
        assert abs(datetime.now(UTC) - message.created_at) < timedelta(seconds=5)

    run(scenario)


@pytest.mark.parametrize(
    "body",
    [
        vary(TWLO, to="16175551212"),
        vary(TWLO, image_url=DROP),
        vary(TWLO, text=DROP),
        vary(TWLO, image_url=DROP, video_url="https://cdn.example.com/v.mp4"),
        vary(TWLO, text=DROP, image_url=DROP, file_url="http://cdn.example.com/a.pdf"),
        vary(TWLO, text="x" * 1600, name=""),
        vary(TWLO, schedule="2020-01-02T15:04:05Z"),
        vary(TWLO, schedule="2099-01-02T15:04:05-04:00"),
        vary(TWLO, schedule="2099-01-02T15:04:05.250+05:30"),
        vary(TWLO, user_id="u_123"),
        vary(TWLO, contact_saving={"save": True, "list_id": 0, "extra_fields": {"email": "a@b.c"}}),
        vary(TWLO, contact_saving={"extra_fields": {"id": 987123, "score": 1.5}}),
        vary(TWLO, contact_saving={}),
        vary(TWLOWA, template={"id": "HXABCDEF0123456789abcdef0123456789"}),
        template(TWLOWA, variables={str(i): "v" * 1600 for i in range(100)}),
        template(TWLOWA, variables={"abcdefghijklmnop": "four    spaces ok"}),
        vary(TWLOWA, template=DROP, text="A session message, any length. " * 60),
        template(GSWA, variables={"Body": {"1": "Customer.io style"}}),
        template(GSWA, variables={}),
        vary(GSWA, template=DROP, text="Hello"),
    ],
)
def test_valid_variants_are_accepted(body: dict[str, Any]) -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        status, answer, _ = await post(session, body)
        assert (status, answer["status"]) == (200, "success"), answer
        assert len(sandbox.accepted) == 1

    run(scenario)


# --- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "headers", "params", "expected"),
    [
        (None, {}, {}, 401),
        (None, {"apikey": "no-colon"}, {}, 401),
        (None, {"apikey": ":secret"}, {}, 401),
        (None, {"apikey": "user:"}, {}, 401),
        (None, {"apikey": KEY}, {}, 200),
        (KEY, {"apikey": KEY}, {}, 200),
        (KEY, {"apikey": "e047nbp2UnWuHD9m:wrong"}, {}, 401),
        (KEY, {"Authorization": basic(KEY)}, {}, 200),
        (KEY, {"Authorization": basic("e047nbp2UnWuHD9m:x")}, {}, 401),
        (KEY, {"Authorization": "Basic !!!"}, {}, 401),
        (KEY, {}, {"apikey": KEY}, 200),
    ],
)
def test_auth(configured: str | None, headers: dict[str, str], params: dict[str, str], expected: int) -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        status, answer, _ = await post(session, TWLO, headers=headers, params=params)
        assert status == expected
        if expected == 401:
            assert answer == error("Check apikey header.") and not sandbox.accepted
        async with session.get("/messages", headers=headers, params=params) as response:
            assert response.status == expected

    run(scenario, SandboxConfig(api_key=configured), key="")


def test_auth_is_checked_before_validation() -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        assert (await post(session, {}, headers={"apikey": "bad"}))[0] == 401

    run(scenario, SandboxConfig(api_key=KEY))


# --- malformed requests and validation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "msg"),
    [
        (
            b"provider=twlo&to=1",
            "application/x-www-form-urlencoded",
            "Content-Type must be application/json.",
        ),
        (b'{"provider": "twlo"}', "text/plain", "Content-Type must be application/json."),
        (b'{"provider": ', "application/json", "Request body is not valid JSON."),
        (b'{"text": NaN}', "application/json", "Request body is not valid JSON."),
        (b"\xff\xfe\x00", "application/json", "Request body is not valid JSON."),
        (b'[{"provider": "twlo"}]', "application/json", "Request body must be a JSON object."),
        (b'"hello"', "application/json", "Request body must be a JSON object."),
    ],
)
def test_malformed_bodies(data: bytes, content_type: str, msg: str) -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        async with session.post("/message", data=data, headers={"Content-Type": content_type}) as r:
            assert (r.status, await r.json()) == (400, error(msg))

    run(scenario)


def test_json_content_type_with_charset_is_accepted() -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        data = json.dumps(vary(TWLO, image_url=DROP)).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        async with session.post("/message", data=data, headers=headers) as response:
            assert response.status == 200

    run(scenario)


SPACING = "template.variables.1 must not contain newlines, tabs or 5 spaces in a row."
TO_MSG = "to must be a phone number: country code and digits, optional leading +."
LIST_ID = "contact_saving.list_id must be a non-negative integer."
GSWA_BODY = "template.variables.Body"


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        # required fields and their types
        (vary(TWLO, provider=DROP), "provider is required."),
        (vary(TWLO, channel_key=DROP), "channel_key is required."),
        (vary(TWLO, to=DROP), "to is required."),
        (vary(TWLO, provider=None), "provider is required."),
        (vary(TWLO, to=""), "to is required."),
        (vary(TWLO, provider=5), "provider must be a non-empty string."),
        (vary(TWLO, to=16175551212), "to must be a non-empty string."),
        (vary(TWLO, image_urls=["https://a.example/x.png"]), "Unknown field: image_urls."),
        (vary(TWLO, apikey=KEY), "Unknown field: apikey."),
        # provider and channel
        (vary(TWLO, provider="tlnx"), "provider must be one of twlo, twlowa, gswa."),
        (vary(TWLO, provider="TWLO"), "provider must be one of twlo, twlowa, gswa."),
        (vary(TWLO, channel_key="twlowa_16311113333"), "Invalid channel_key."),
        (vary(TWLO, channel_key="twlo_12345"), "Invalid channel_key."),
        (vary(TWLO, channel_key="twlo_1234567890123456"), "Invalid channel_key."),
        (vary(TWLO, channel_key="twlo-16311113333"), "Invalid channel_key."),
        (vary(TWLO, channel_key="16311113333"), "Invalid channel_key."),
        # to
        (vary(TWLO, to="+1 617 555 1212"), TO_MSG),
        (vary(TWLO, to="617-555-1212"), TO_MSG),
        (vary(TWLO, to="(617)5551212"), TO_MSG),
        (vary(TWLO, to="6175551"), TO_MSG),
        (vary(TWLO, to="+06175551212"), TO_MSG),
        (vary(TWLO, to="+1234567890123456"), TO_MSG),
        (vary(TWLO, to="+16175551212\n"), TO_MSG),
        (vary(TWLO, to="++16175551212"), TO_MSG),
        (vary(TWLO, to="+١٦١٧٥٥٥١٢١٢"), TO_MSG),
        (vary(TWLO, name=5), "name must be a string."),
        # content
        (
            vary(TWLO, text=DROP, image_url=DROP),
            "One of text, image_url, video_url, file_url or template is required.",
        ),
        (vary(TWLO, text=""), "text must be a non-empty string."),
        (vary(TWLO, text=None), "text must be a non-empty string."),
        (vary(TWLO, text="x" * 1601), "text is longer than 1600 characters."),
        (
            vary(TWLO, video_url="https://a.example/v.mp4"),
            "Send at most one of image_url, video_url and file_url.",
        ),
        (vary(TWLO, image_url="ftp://a.example/x.png"), "image_url must be an http or https URL."),
        (vary(TWLO, image_url="cdn.example.com/x.png"), "image_url must be an http or https URL."),
        (
            vary(TWLO, image_url="https://a.example/x y.png"),
            "image_url must be an http or https URL.",
        ),
        (
            vary(GSWA, template=DROP, image_url="https://a.example/x.png"),
            "image_url is only supported for provider twlo.",
        ),
        (
            vary(TWLOWA, file_url="https://a.example/x.pdf"),
            "file_url is only supported for provider twlo.",
        ),
        # template: where it may appear
        (
            vary(TWLO, template=TWLOWA["template"]),
            "template is only supported for providers twlowa and gswa.",
        ),
        (vary(TWLOWA, text="Hi"), "template cannot be combined with text or media."),
        (
            vary(TWLOWA, template="HX0123456789abcdef0123456789abcdef"),
            "template must be an object.",
        ),
        (template(TWLOWA, id=DROP), "template.id is required."),
        (template(TWLOWA, name="order_ready"), "Unknown field: template.name."),
        (template(TWLOWA, id=""), "template.id must be a non-empty string."),
        # twlowa template
        (
            template(TWLOWA, id="HX0123"),
            "template.id must be a Twilio Content SID (HX and 32 hex digits).",
        ),
        (
            template(TWLOWA, id="007b7c0e-fc8d-4698-a9a8-3938151dd5da"),
            "template.id must be a Twilio Content SID (HX and 32 hex digits).",
        ),
        (template(TWLOWA, variables=["John"]), "template.variables must be an object."),
        (template(TWLOWA, variables={"1": ""}), "template.variables.1 must be a non-empty string."),
        (
            template(TWLOWA, variables={"1": None}),
            "template.variables.1 must be a non-empty string.",
        ),
        (template(TWLOWA, variables={"1": 7}), "template.variables.1 must be a non-empty string."),
        (
            template(TWLOWA, variables={"1": {"a": "b"}}),
            "template.variables.1 must be a non-empty string.",
        ),
        (template(TWLOWA, variables={"1": "a\nb"}), SPACING),
        (template(TWLOWA, variables={"1": "a\tb"}), SPACING),
        (template(TWLOWA, variables={"1": "a     b"}), SPACING),
        (
            template(TWLOWA, variables={str(i): "v" for i in range(101)}),
            "template.variables may have at most 100 entries.",
        ),
        (
            template(TWLOWA, variables={"a" * 17: "v"}),
            f"template.variables.{'a' * 17}: keys must be 1 to 16 characters long.",
        ),
        (
            template(TWLOWA, variables={"1": "v" * 1601}),
            "template.variables.1 is longer than 1600 characters.",
        ),
        # gswa template
        (
            template(GSWA, id="HX0123456789abcdef0123456789abcdef"),
            "template.id must be a Gupshup template ID (a UUID).",
        ),
        (template(GSWA, variables=[{"1": "John"}]), "template.variables must be an object."),
        (template(GSWA, variables={"body": {"1": "x"}}), "Unknown field: template.variables.body."),
        (template(GSWA, variables={"1": "x"}), "Unknown field: template.variables.1."),
        (template(GSWA, variables={"Body": ["x"]}), f"{GSWA_BODY} must be an object."),
        (
            template(GSWA, variables={"Body": {"one": "x"}}),
            f"{GSWA_BODY} keys must be numbers written as strings.",
        ),
        (
            template(GSWA, variables={"Body": {"1": 5}}),
            f"{GSWA_BODY}.1 must be a non-empty string.",
        ),
        (
            template(GSWA, variables={"Buttons": {"1": ""}}),
            "template.variables.Buttons.1 must be a non-empty string.",
        ),
        (
            template(GSWA, variables={"MEDIA_URL": 5}),
            "template.variables.MEDIA_URL must be a non-empty string.",
        ),
        (
            template(GSWA, variables={"MEDIA_URL": "placehold.co/600x400"}),
            "template.variables.MEDIA_URL must be an http or https URL.",
        ),
        # contact_saving
        (vary(TWLO, contact_saving=[True]), "contact_saving must be an object."),
        (vary(TWLO, contact_saving={"save": "yes"}), "contact_saving.save must be true or false."),
        (vary(TWLO, contact_saving={"list_id": "0"}), LIST_ID),
        (vary(TWLO, contact_saving={"list_id": 1.5}), LIST_ID),
        (vary(TWLO, contact_saving={"list_id": True}), LIST_ID),
        (vary(TWLO, contact_saving={"list_id": -1}), LIST_ID),
        (vary(TWLO, contact_saving={"listid": 0}), "Unknown field: contact_saving.listid."),
        (
            vary(TWLO, contact_saving={"extra_fields": ["a"]}),
            "contact_saving.extra_fields must be an object.",
        ),
        (
            vary(TWLO, contact_saving={"extra_fields": {"a": {"b": 1}}}),
            "contact_saving.extra_fields.a must be a string or a number.",
        ),
        (
            vary(TWLO, contact_saving={"extra_fields": {"a": None}}),
            "contact_saving.extra_fields.a must be a string or a number.",
        ),
        (
            vary(TWLO, contact_saving={"extra_fields": {"a": True}}),
            "contact_saving.extra_fields.a must be a string or a number.",
        ),
        # schedule, user_id
        (vary(TWLO, schedule="2026-12-01T09:00:00"), "schedule must include a UTC offset or Z."),
        (vary(TWLO, schedule="next tuesday"), "schedule must be an ISO 8601 date-time."),
        (vary(TWLO, schedule="2026-12-01"), "schedule must be an ISO 8601 date-time."),
        (vary(TWLO, schedule="2026-13-01T09:00:00Z"), "schedule must be an ISO 8601 date-time."),
        (vary(TWLO, schedule=1764579600), "schedule must be a non-empty string."),
        (vary(TWLO, user_id=42), "user_id must be a non-empty string."),
    ],
)
def test_validation_rules(body: dict[str, Any], msg: str) -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        status, answer, _ = await post(session, body)
        assert (status, answer) == (400, error(msg))
        assert not sandbox.accepted

    run(scenario)


def test_configured_channels() -> None:
    config = SandboxConfig(channels=frozenset({"twlo_16311113333", "twlowa_sender"}))

    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        assert (await post(session, TWLO))[0] == 200
        assert (await post(session, vary(TWLOWA, channel_key="twlowa_sender")))[0] == 200
        for channel_key in ("twlo_16317471111", "twlowa_sender"):
            status, answer, _ = await post(session, vary(TWLO, channel_key=channel_key))
            assert (status, answer) == (400, error("Invalid channel_key."))

    run(scenario, config)


def test_blocked_contacts() -> None:
    config = SandboxConfig(faults=Faults(blocked=frozenset({"+16175551212", "919812345678"})))

    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        for body in (TWLO, vary(TWLO, to="16175551212"), vary(GSWA, to="+919812345678")):
            assert (await post(session, body))[:2] == (400, error("Contact is blocked."))
        assert (await post(session, vary(TWLO, to="+16175551213")))[0] == 200
        assert [m.to for m in sandbox.accepted] == ["+16175551213"]

    run(scenario, config)


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("retry_after", "header"), [(None, None), (1.2, "2"), (3, "3")])
def test_rate_limit_answers_429(retry_after: float | None, header: str | None) -> None:
    config = SandboxConfig(faults=Faults(rate_limit=2, retry_after=retry_after))

    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        results = await asyncio.gather(*(post(session, TWLO) for _ in range(5)))
        assert sorted(status for status, _, _ in results) == [200, 200, 429, 429, 429]
        for status, answer, headers in results:
            if status == 429:
                assert answer == error("Rate limit reached.")
                assert headers.get("Retry-After") == header
        assert len(sandbox.accepted) == 2

    run(scenario, config)


def test_rate_limit_refills_and_comes_after_auth_and_validation() -> None:
    """On the sandbox's clock, which moves only when the test says: no refill while the eleven
    requests go, however slow the machine."""
    config = SandboxConfig(api_key=KEY, faults=Faults(rate_limit=10))
    now = [100.0]

    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        statuses = [(await post(session, TWLO))[0] for _ in range(11)]
        assert statuses == [200] * 10 + [429]
        assert (await post(session, TWLO, headers={"apikey": "x:y"}))[0] == 401
        assert (await post(session, vary(TWLO, to="1")))[0] == 400
        now[0] += 0.0625  # 0.625 of a token back: still limited
        assert (await post(session, TWLO))[0] == 429
        now[0] += 0.125  # 1.875 tokens: one request, not two
        assert [(await post(session, TWLO))[0] for _ in range(2)] == [200, 429]
        assert len(sandbox.accepted) == 11
        assert {r.at for r in sandbox.requests} == {100.0, 100.0625, 100.1875}

    run(scenario, config, clock=lambda: now[0])


@pytest.mark.parametrize(
    ("fault", "status", "msg"),
    [
        ("error_500", 500, "Internal server error. Try again later."),
        ("error_503", 503, "Service unavailable. Try again later."),
    ],
)
def test_5xx_faults_do_not_accept(fault: str, status: int, msg: str) -> None:
    kwargs: dict[str, Any] = {fault: 1.0}
    config = SandboxConfig(faults=Faults(**kwargs))

    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        assert (await post(session, TWLO))[:2] == (status, error(msg))
        assert not sandbox.accepted
        async with session.get("/messages") as response:
            assert (await response.json())["data"] == []

    run(scenario, config)


def test_accept_then_500_records_the_message() -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        status, answer, _ = await post(session, TWLO)
        assert (status, answer) == (500, error("Internal server error. Try again later."))
        [message] = sandbox.accepted
        async with session.get("/messages") as response:
            [listed] = (await response.json())["data"]
        assert (listed["message_id"], listed["to"], listed["text"]) == (
            message.message_id,
            TWLO["to"],
            TWLO["text"],
        )

    run(scenario, SandboxConfig(faults=Faults(accept_then_500=1.0)))


def test_drop_after_accept_disconnects_quietly(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.WARNING)

    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        for _ in range(3):
            with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
                await post(session, TWLO)
        assert len(sandbox.accepted) == 3
        assert [r.status for r in sandbox.requests] == [0, 0, 0]
        sandbox.config.faults = Faults()  # the same session goes on working
        assert (await post(session, TWLO))[0] == 200

    run(scenario, SandboxConfig(faults=Faults(drop_after_accept=1.0)))
    assert not caplog.records
    assert capfd.readouterr().err == ""


def test_answer_faults_200_error_422_not_json() -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        assert (await post(session, TWLO))[:2] == (200, error("Message could not be sent."))
        sandbox.config.faults = Faults(error_422=1.0)
        assert (await post(session, TWLO))[:2] == (422, error("The request could not be processed."))
        assert sandbox.accepted == []
        sandbox.config.faults = Faults(not_json_200=1.0)
        async with session.post("/message", json=TWLO) as response:
            assert (response.status, response.content_type) == (200, "text/html")
            assert not (await response.text()).startswith("{")
        assert len(sandbox.accepted) == 1  # accepted, then answered unreadably
        assert [(r.status, r.to) for r in sandbox.requests] == [(s, TWLO["to"]) for s in (200, 422, 200)]

    run(scenario, SandboxConfig(faults=Faults(error_200=1.0)))


def test_stall_after_accept_holds_the_answer() -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        with pytest.raises(asyncio.TimeoutError):
            await post(session, TWLO, timeout=aiohttp.ClientTimeout(sock_read=0.2))
        assert len(sandbox.accepted) == 1  # accepted before the answer was held
        sandbox.config.faults.stall = 0.0
        assert (await post(session, TWLO))[0] == 200  # a stall of 0 answers at once

    run(scenario, SandboxConfig(faults=Faults(stall_after_accept=1.0, stall=5.0)))


def test_retry_after_as_an_http_date() -> None:
    from email.utils import parsedate_to_datetime

    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        assert (await post(session, TWLO))[0] == 200
        before = datetime.now(UTC)
        status, _, headers = await post(session, TWLO)
        assert status == 429
        when = parsedate_to_datetime(headers["Retry-After"])
        assert headers["Retry-After"].endswith(" GMT") and when.microsecond == 0
        assert 2 <= (when - before).total_seconds() <= 4  # retry_after 2.5, rounded up to a whole second

    run(scenario, SandboxConfig(faults=Faults(rate_limit=0.01, retry_after=2.5, retry_after_date=True)))


def test_get_messages_faults() -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        async with session.get("/messages") as response:
            assert (response.status, await response.json()) == (200, error("Messages could not be listed."))
        sandbox.config.faults = Faults(not_json_200=1.0)
        async with session.get("/messages") as response:
            assert response.status == 200 and response.content_type == "text/html"

    run(scenario, SandboxConfig(faults=Faults(error_200=1.0)))


def test_new_fault_flags_reach_the_sandbox_process() -> None:
    """`campaign sandbox` passes each fault flag on (one request per flag shows it)."""
    import urllib.error
    import urllib.request

    from campaign.sandbox import spawn

    def post_once(url: str) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(
            f"{url}/message",
            data=json.dumps(TWLO).encode(),
            headers={"apikey": KEY, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as answer:
            return answer.code, dict(answer.headers), answer.read()

    # Three answer faults in one process, drawn by a seed: each shows up in a few requests.
    with spawn("--error-422", "0.34", "--error-200", "0.33", "--not-json-200", "0.33", "--seed", "1") as url:
        answers = [post_once(url) for _ in range(30)]
    assert {status for status, _, _ in answers} == {200, 422}
    refused = error("Message could not be sent.")
    assert any(body.startswith(b"{") and json.loads(body) == refused for _, _, body in answers)
    assert any(body.startswith(b"<html>") for _, _, body in answers)
    # One token: the first request is accepted and held (--stall), the second told to come back.
    with spawn("--rate-limit", "0.01", "--retry-after", "1", "--retry-after-date", "--stall-after-accept", "1",
               "--stall", "0.01") as url:
        assert post_once(url)[0] == 200
        status, headers, _ = post_once(url)
        assert status == 429 and headers["Retry-After"].endswith(" GMT")


def test_seeded_faults_are_reproducible() -> None:
    faults: dict[str, Any] = {
        "error_500": 0.2,
        "error_503": 0.2,
        "accept_then_500": 0.2,
        "drop_after_accept": 0.2,
    }
    runs: list[list[int]] = []

    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        statuses = []
        for _ in range(40):
            try:
                statuses.append((await post(session, TWLO))[0])
            except aiohttp.ClientConnectionError:
                statuses.append(0)
        runs.append(statuses)
        accepted_500 = len(sandbox.accepted) - statuses.count(200) - statuses.count(0)
        assert 0 <= accepted_500 <= statuses.count(500)

    for _ in range(2):
        run(scenario, SandboxConfig(faults=Faults(seed=7, **faults)))
    assert runs[0] == runs[1]
    assert set(runs[0]) == {0, 200, 500, 503}


def test_faults_can_change_between_requests() -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        assert (await post(session, TWLO))[0] == 200
        sandbox.config.faults = Faults(error_503=1.0)
        assert (await post(session, TWLO))[0] == 503
        sandbox.config.faults.error_503 = 0.0
        sandbox.config.faults.rate_limit = 1
        assert [(await post(session, TWLO))[0] for _ in range(2)] == [200, 429]

    run(scenario)


def test_latency_delays_each_answer_concurrently() -> None:
    """Each answer waits the latency, and the waits overlap: every request arrived before the
    first answer came back. Orderings and lower bounds only, which load cannot break."""

    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        async def timed_post() -> tuple[int, float]:
            status = (await post(session, TWLO))[0]
            return status, time.monotonic()

        answers = await asyncio.gather(*(timed_post() for _ in range(5)))
        assert [status for status, _ in answers] == [200] * 5
        arrived = [r.at for r in sandbox.requests]
        done = [t for _, t in answers]
        assert max(arrived) < min(done)  # concurrent, not one after another
        assert min(done) >= min(arrived) + 0.19 and max(done) >= max(arrived) + 0.19
        sandbox.config.faults.latency = 60.0
        invalid = post(session, vary(TWLO, to="1"), timeout=aiohttp.ClientTimeout(total=20))
        assert (await invalid)[0] == 400  # validation answers at once, never after the latency

    run(scenario, SandboxConfig(faults=Faults(latency=0.2)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_500": 1.5},
        {"error_503": -0.1},
        {"error_500": 0.6, "drop_after_accept": 0.6},
        {"rate_limit": 0},
        {"latency": -1},
        {"retry_after": -1},
        {"stall": -1},
        {"error_200": 0.5, "not_json_200": 0.3, "stall_after_accept": 0.3},
        {"error_422": 1.1},
    ],
)
def test_nonsense_faults_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Faults(**kwargs)


# --- GET /messages, /_sandbox/requests, 404 ---------------------------------------------------


def stored(when: str, to: str) -> AcceptedMessage:
    """A message as if accepted at ``when`` (UTC)."""
    body = vary(TWLO, to=to)
    created = datetime.fromisoformat(when).replace(tzinfo=UTC)
    return AcceptedMessage(f"SM{to[-4:]:0>32}", "twlo", TWLO["channel_key"], to, body, created)


def test_get_messages_filters_by_utc_date() -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        sandbox.accepted += [
            stored("2025-12-31T23:59:59", "+10000000001"),
            stored("2026-01-01T00:00:00", "+10000000002"),
            stored("2026-01-31T23:59:59", "+10000000003"),
            stored("2026-02-01T00:00:00", "+10000000004"),
        ]
        status, answer, _ = await post(session, TWLOWA)
        assert status == 200

        async def listed(**params: str) -> list[dict[str, Any]]:
            async with session.get("/messages", params=params) as response:
                assert response.status == 200
                answer = await response.json()
            assert answer["status"] == "success"
            return list(answer["data"])

        january = await listed(start_date="2026-01-01", end_date="2026-01-31")
        assert [m["to"] for m in january] == ["+10000000002", "+10000000003"]
        assert january[0] == {
            "message_id": "SM" + "0" * 28 + "0002",
            "direction": "outbound",
            "provider": "twlo",
            "channel_key": "twlo_16311113333",
            "to": "+10000000002",
            "text": TWLO["text"],
            "template_id": None,
            "template_variables": None,
            "created_at": "2026-01-01T00:00:00.000Z",
        }
        [today] = await listed()
        assert today["message_id"] == answer["data"]["message_id"]
        assert (today["text"], today["template_id"]) == (None, TWLOWA["template"]["id"])
        assert today["template_variables"] == TWLOWA["template"]["variables"]
        created = datetime.fromisoformat(today["created_at"])
        assert created.utcoffset() == timedelta() and created.date() == datetime.now(UTC).date()
        week_ago = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
        assert len(await listed(start_date=week_ago)) == 1
        assert await listed(start_date="2026-02-01", end_date="2026-02-01") != []

    run(scenario)


@pytest.mark.parametrize(
    ("params", "msg"),
    [
        (
            {"start_date": "2026-01-01", "end_date": "2026-02-01"},
            "The date range may cover at most 31 days.",
        ),
        (
            {"start_date": "2026-01-02", "end_date": "2026-01-01"},
            "start_date must not be after end_date.",
        ),
        (
            {"start_date": "2026-1-5", "end_date": "2026-01-31"},
            "start_date must be a date written YYYY-MM-DD.",
        ),
        (
            {"start_date": "20260105", "end_date": "2026-01-31"},
            "start_date must be a date written YYYY-MM-DD.",
        ),
        (
            {"start_date": "2026-01-01", "end_date": "2026-02-30"},
            "end_date must be a date written YYYY-MM-DD.",
        ),
        ({"start_date": "2020-01-01"}, "The date range may cover at most 31 days."),
    ],
)
def test_get_messages_rejects_bad_ranges(params: dict[str, str], msg: str) -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        async with session.get("/messages", params=params) as response:
            assert (response.status, await response.json()) == (400, error(msg))

    run(scenario)


def test_sandbox_requests_log_needs_no_auth() -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        await post(session, TWLO, headers={"apikey": KEY})
        await post(session, TWLO)
        async with session.get("/messages") as response:
            assert response.status == 401
        async with session.get("/_sandbox/requests") as response:
            assert response.status == 200
            log = await response.json()
        assert log["accepted"] == 1
        assert [(r["method"], r["path"], r["status"]) for r in log["requests"]] == [
            ("POST", "/message", 200),
            ("POST", "/message", 401),
            ("GET", "/messages", 401),
        ]
        ats = [r["at"] for r in log["requests"]]
        assert started <= ats[0] and ats == sorted(ats) and ats[-1] <= time.monotonic()  # time.monotonic's clock
        assert sandbox.requests[-1].path == "/_sandbox/requests"

    run(scenario, key="")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/message"),
        ("POST", "/messages"),
        ("DELETE", "/messages"),
        ("POST", "/messages/scheduled"),
        ("POST", "/_sandbox/requests"),
    ],
)
def test_everything_else_is_404(method: str, path: str) -> None:
    async def scenario(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        async with session.request(method, path, json=TWLO) as response:
            assert (response.status, await response.json()) == (404, error("Not found."))
        assert sandbox.requests[-1].status == 404 and not sandbox.accepted

    run(scenario)


# --- lifecycle -------------------------------------------------------------------------------


def test_start_and_close() -> None:
    async def main() -> None:
        sandbox = Sandbox()
        url = await sandbox.start()
        assert url == sandbox.url and re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        async with aiohttp.ClientSession() as session, session.get(url + "/x") as response:
            assert response.status == 404
        await sandbox.close()
        await sandbox.close()
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(url + "/x")

    asyncio.run(main())


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_until_signalled(stop: signal.Signals) -> None:
    root = Path(sandbox_module.__file__).resolve().parents[1]
    code = (
        "from campaign.sandbox import SandboxConfig, serve\n"
        f"serve('127.0.0.1', 0, SandboxConfig(api_key={KEY!r}),"
        " ready=lambda url: print(url, flush=True))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            url = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
            async with aiohttp.ClientSession(url, headers={"apikey": KEY}) as session:
                assert (await post(session, TWLO))[0] == 200
                async with session.get("/_sandbox/requests") as response:
                    assert (await response.json())["accepted"] == 1
            proc.send_signal(stop)
            out, err = await asyncio.wait_for(proc.communicate(), 10)
            assert (proc.returncode, out, err) == (0, b"", b"")
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    asyncio.run(main())
