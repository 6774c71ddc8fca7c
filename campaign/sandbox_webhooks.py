"""The sandbox's webhooks: subscriptions, and signed status reports for every accepted message.

Serves ``POST/GET /webhook-subscriptions`` and ``GET/DELETE /webhook-subscriptions/{id}``
(``sociocs-api.md`` section 8, "Webhook subscriptions"): calling POST again with the same
``subscriber_reference_id`` updates that subscription.

For each message the sandbox accepts, every active subscription with the ``status_updates``
event and a matching provider and channel gets the message's reports as the providers send
them: ``sent``, then ``delivered`` (and ``read`` on WhatsApp, at ``read_rate``), or, at
``fail_rate``, a failure with a realistic Twilio/WhatsApp code. Each is signed with the
subscription's secret (``X-Sociocs-Signature``) and carries ``timestamp`` (epoch ms).

Faults, each a fraction of messages: ``duplicate`` (a report posted twice), ``out_of_order``
(a message's reports posted last first), ``early`` (the first report posted, and answered,
before the sandbox answers the POST /message that created the message); and ``delay``
(seconds before a message's first report). A delivery that fails (connection refused, non-2xx)
is retried with backoff for ``retry_for`` seconds, as a webhook sender does while a receiver
restarts (Sociocs's own policy is not documented). ``final`` holds what the sandbox last said
about each message: the truth a test compares the listener's record with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from campaign.delivery import ERROR_CODES, SIGNATURE_HEADER, sign

_SMS_FAILURES = (
    (30003, "undelivered"),
    (30005, "undelivered"),
    (30006, "undelivered"),
    (30007, "undelivered"),
    (21610, "failed"),
    (30008, "undelivered"),
)
_WHATSAPP_FAILURES = ((63016, "failed"), (63018, "failed"), (63024, "failed"), (30003, "undelivered"))
_SUB_FIELDS = frozenset(
    {"platform", "provider", "channel_key", "subscriber_reference_id", "webhook_url", "events", "subevents", "secret"}
)


@dataclass
class WebhookFaults:
    """How the sandbox's reports go wrong (fractions of messages) and how it retries."""

    fail_rate: float = 0.1  # messages whose delivery fails, with a code
    read_rate: float = 0.6  # WhatsApp messages that are read, of those delivered
    duplicate: float = 0.0  # messages with one report posted twice
    out_of_order: float = 0.0  # messages whose reports are posted last first
    early: float = 0.0  # messages whose first report is posted before the send's answer
    delay: float = 0.0  # seconds before a message's first report
    retry_for: float = 20.0  # seconds a failed delivery is retried for
    seed: int | None = None

    def __post_init__(self) -> None:
        """Reject fractions outside 0..1 and negative times."""
        fractions = (self.fail_rate, self.read_rate, self.duplicate, self.out_of_order, self.early)
        if any(not 0.0 <= f <= 1.0 for f in fractions):
            raise ValueError("Webhook fault fractions must be between 0 and 1.")
        if self.delay < 0 or self.retry_for < 0:
            raise ValueError("delay and retry_for must not be negative.")


@dataclass
class Subscription:
    id: str
    body: dict[str, Any]
    created_at: int = field(default_factory=lambda: int(time.time() * 1000))

    def public(self) -> dict[str, Any]:
        """The subscription object of section 8 (the secret is never shown back)."""
        b = self.body
        return {
            "id": self.id,
            "channel_key": b.get("channel_key"),
            "created_at": self.created_at,
            "platform": b["platform"],
            "provider": b.get("provider"),
            "status": "active",
            "subscriber_reference_id": b["subscriber_reference_id"],
            "trigger_direction": "incoming",
            "webhook_url": b["webhook_url"],
            "events": b.get("events", ["messages"]),
        }

    def wants(self, provider: str, channel_key: str, status: str) -> bool:
        b = self.body
        if "status_updates" not in b.get("events", ["messages"]):
            return False
        if b.get("provider") not in (None, provider) or b.get("channel_key") not in (None, channel_key):
            return False
        wanted = (b.get("subevents") or {}).get("status_updates")
        return wanted is None or status in wanted


def _invalid(msg: str, status: int = 400) -> web.Response:
    return web.json_response({"status": "error", "errors": [{"msg": msg}]}, status=status)


def _check_subscription(body: Any) -> str | None:
    """Why a POST /webhook-subscriptions body is refused, or None."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object."
    unknown = sorted(set(body) - _SUB_FIELDS)
    if unknown:
        return f"Unknown field: {unknown[0]}."
    for name in ("platform", "subscriber_reference_id", "webhook_url"):
        if not isinstance(body.get(name), str) or not body[name]:
            return f"{name} is required."
    url = urlsplit(body["webhook_url"])
    if url.scheme not in ("http", "https") or not url.netloc:
        return "webhook_url must be an http or https URL."
    events = body.get("events", ["messages"])
    if not isinstance(events, list) or not all(e in ("messages", "status_updates") for e in events):
        return "events must be a list of messages and status_updates."
    for name in ("provider", "channel_key", "secret"):
        if name in body and not isinstance(body[name], str):
            return f"{name} must be a string."
    if "subevents" in body and not isinstance(body["subevents"], dict):
        return "subevents must be an object."
    return None


class Webhooks:
    """Subscriptions and report deliveries of one sandbox."""

    def __init__(self, faults: WebhookFaults) -> None:
        self.faults = faults
        self.subscriptions: dict[str, Subscription] = {}
        self.final: dict[str, tuple[str, str]] = {}  # message_id -> (status, error code) last reported
        self.posted = 0  # deliveries answered 2xx
        self.retried = 0  # deliveries that failed (refused, non-2xx) and were tried again
        self._random = random.Random(faults.seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def add_routes(self, app: web.Application, authorized: Callable[[web.Request], bool]) -> None:
        """Serve the subscription endpoints on ``app`` behind the sandbox's key check."""

        def guarded(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Any:
            async def wrapped(request: web.Request) -> web.Response:
                if not authorized(request):
                    return _invalid("Check apikey header.", 401)
                return await handler(request)

            return wrapped

        app.router.add_post("/webhook-subscriptions", guarded(self._create))
        app.router.add_get("/webhook-subscriptions", guarded(self._list), allow_head=False)
        app.router.add_get("/webhook-subscriptions/{id}", guarded(self._get), allow_head=False)
        app.router.add_delete("/webhook-subscriptions/{id}", guarded(self._delete))

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _invalid("Request body is not valid JSON.")
        problem = _check_subscription(body)
        if problem:
            return _invalid(problem)
        for sub in self.subscriptions.values():
            if sub.body["subscriber_reference_id"] == body["subscriber_reference_id"]:
                sub.body = body  # same reference: an update
                return web.json_response({"status": "success", "data": {"id": sub.id}})
        sub = Subscription(uuid.uuid4().hex, body)
        self.subscriptions[sub.id] = sub
        return web.json_response({"status": "success", "data": {"id": sub.id}})

    async def _list(self, request: web.Request) -> web.Response:
        data = [s.public() for s in self.subscriptions.values()]
        return web.json_response({"status": "success", "data": data})

    async def _get(self, request: web.Request) -> web.Response:
        sub = self.subscriptions.get(request.match_info["id"])
        if sub is None:
            return _invalid("Webhook subscription not found.", 404)
        return web.json_response({"status": "success", "data": sub.public()})

    async def _delete(self, request: web.Request) -> web.Response:
        if self.subscriptions.pop(request.match_info["id"], None) is None:
            return _invalid("Webhook subscription not found.", 404)
        return web.json_response({"status": "success", "data": {}})

    # --- deliveries ---------------------------------------------------------------------------

    def _plan(self, provider: str, template: bool) -> list[tuple[str, int | None]]:
        """The reports one message gets, in the order they happen: (status, error code)."""
        rng, f = self._random, self.faults
        whatsapp = provider != "twlo"
        if rng.random() < f.fail_rate:
            choices: tuple[tuple[int, str], ...] = _SMS_FAILURES
            if whatsapp:  # 63016 (outside the 24-hour window) only hits free-form text
                choices = tuple(c for c in _WHATSAPP_FAILURES if not (template and c[0] == 63016))
            code, word = rng.choice(choices)
            return [("sent", None), (word, code)] if word == "undelivered" else [(word, code)]
        plan: list[tuple[str, int | None]] = [("sent", None), ("delivered", None)]
        if whatsapp and rng.random() < f.read_rate:
            plan.append(("read", None))
        return plan

    def accepted(
        self, message_id: str, provider: str, channel_key: str, *, template: bool = False
    ) -> Awaitable[None] | None:
        """Schedule a newly accepted message's reports; return what to await before answering
        the send (an ``early`` report), or None."""
        if not any(
            s.wants(provider, channel_key, "sent") or s.wants(provider, channel_key, "failed")
            for s in self.subscriptions.values()
        ):
            return None
        f, rng = self.faults, self._random
        plan = self._plan(provider, template)
        self.final[message_id] = (plan[-1][0], str(plan[-1][1] or ""))
        base = int(time.time() * 1000)
        bodies = [self._body(message_id, status, code, base + i) for i, (status, code) in enumerate(plan)]
        sequence = [(status, body) for (status, _), body in zip(plan, bodies, strict=True)]
        if rng.random() < f.duplicate:
            sequence.append(rng.choice(sequence))
        if rng.random() < f.out_of_order:
            sequence.reverse()
        early = rng.random() < f.early
        targets = [s for s in self.subscriptions.values()]
        first = sequence.pop(0) if early else None
        # One sequence per subscription: a receiver that is gone (its retries last retry_for
        # seconds per report) must not hold up the reports of one that listens.
        for target in targets:
            self._spawn(self._deliver_all([target], provider, channel_key, sequence, f.delay if not early else 0.0))
        if first is None:
            return None
        return self._deliver_to(targets, provider, channel_key, first, patient=False)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _body(self, message_id: str, status: str, code: int | None, at_ms: int) -> bytes:
        data: dict[str, Any] = {"status": status}
        if code is not None:
            meaning = ERROR_CODES.get(code, (None, "Unknown error"))[1]
            data["error"] = {"code": code, "message": f"{meaning} (code: {code})"}
            data["provider_err_obj"] = {
                "status": 400,
                "code": code,
                "moreInfo": f"https://www.twilio.com/docs/errors/{code}",
                "error": True,
            }
        report = {"message_id": message_id, "event": "status_update", "event_data": data, "timestamp": at_ms}
        return json.dumps(report).encode()

    async def _deliver_all(
        self,
        targets: list[Subscription],
        provider: str,
        channel_key: str,
        sequence: list[tuple[str, bytes]],
        delay: float,
    ) -> None:
        if delay:
            await asyncio.sleep(delay)
        for item in sequence:
            await self._deliver_to(targets, provider, channel_key, item, patient=True)

    async def _deliver_to(
        self, targets: list[Subscription], provider: str, channel_key: str, item: tuple[str, bytes], *, patient: bool
    ) -> None:
        status, body = item
        for sub in targets:
            if sub.wants(provider, channel_key, status):
                await self._post(sub, body, patient=patient)

    async def _post(self, sub: Subscription, body: bytes, *, patient: bool) -> None:
        """POST one report; retry failures for ``retry_for`` seconds (once, unless ``patient``:
        an early report is then posted again in the background)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        headers = {"Content-Type": "application/json"}
        if sub.body.get("secret"):
            headers[SIGNATURE_HEADER] = sign(sub.body["secret"], body)
        deadline, pause = time.monotonic() + self.faults.retry_for, 0.05
        while True:
            try:
                async with self._session.post(sub.body["webhook_url"], data=body, headers=headers) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        self.posted += 1
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.retried += 1
            if not patient:
                self._spawn(self._post(sub, body, patient=True))
                return
            if time.monotonic() + pause > deadline:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def drain(self) -> None:
        """Wait until every scheduled report has been delivered (or given up on)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel undelivered reports and close the HTTP session."""
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
