"""A faithful local copy of the Sociocs API, with fault injection.

``campaign sandbox`` and ``campaign send --sandbox`` run this app so that anyone can send a
campaign end to end with no account, and the tests drive every failure path of the sender over
real HTTP on loopback: 401, strict 400s, 429 (with or without ``Retry-After``, in seconds or as
an HTTP date), 500/503 that did not send, a 500 that *did* send, a connection dropped after the
message was accepted, an answer held past the client's read timeout after accepting, a 200 whose
body is not JSON, a 200 with ``status: error``, latency.

It serves what the sender uses (``sociocs-api.md`` sections 2-4, 6-8, 10):

* ``POST /message``: every documented rule plus the "careful" ones of section 10, strictly
  (unknown fields, naive ``schedule``, template with text... all answer 400).
* ``GET /messages``: what was accepted, so ``campaign reconcile`` can be tested.
* ``/webhook-subscriptions`` and signed status reports for every accepted message
  (:mod:`campaign.sandbox_webhooks`).
* ``GET /messages/scheduled``, ``DELETE /messages/scheduled/{message_id}``: messages accepted
  with a future ``schedule``, held until the one clock reaches it (:mod:`campaign.sandbox_scheduled`).
* ``GET /_sandbox/requests``: not Sociocs; the request log, for benchmarks in another process.

Every error uses the section 7 envelope ``{"status": "error", "errors": [{"msg": ...}]}``.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import math
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import formatdate
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from campaign.errors import UsageError
from campaign.sandbox_scheduled import ScheduledBook
from campaign.sandbox_webhooks import WebhookFaults, Webhooks
from campaign.serving import run_until_signal

__all__ = ["AcceptedMessage", "Faults", "LoggedRequest", "Sandbox", "SandboxConfig", "WebhookFaults", "serve"]

_PROVIDERS = ("twlo", "twlowa", "gswa")
_MEDIA = ("image_url", "video_url", "file_url")
_CONTENT = ("text", *_MEDIA, "template")
_FIELDS = frozenset({"provider", "channel_key", "to", "name", *_CONTENT, "contact_saving", "schedule", "user_id"})
_TO = re.compile(r"\+?[1-9][0-9]{7,14}")
_CHANNEL = re.compile(r"[a-z]+_[0-9]{6,15}")
_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_BAD_SPACING = re.compile(r"[\n\r\t]| {5}")
_TWILIO_MAX_CHARS = 1600
_MAX_DAYS = 31
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_LOGGED_TO: ContextVar[str] = ContextVar("sandbox_logged_to", default="")  # handler -> request log


@dataclass
class Faults:
    """What goes wrong, and how often; mutable between requests (a new ``seed`` reseeds)."""

    rate_limit: float | None = None  # accepted POST /message per second (token bucket) -> 429
    retry_after: float | None = None  # 429s carry ``Retry-After: ceil(retry_after)``; None: none
    error_500: float = 0.0  # fraction answered 500 without accepting
    error_503: float = 0.0  # fraction answered 503 without accepting
    accept_then_500: float = 0.0  # fraction accepted and recorded, then answered 500
    accept_then_504: float = 0.0  # fraction accepted, then a gateway in front answers 504 (timed out)
    drop_after_accept: float = 0.0  # fraction accepted, then the connection closes, no reply
    latency: float = 0.0  # seconds to wait before answering each POST /message
    stall_after_accept: float = 0.0  # fraction accepted, then answered only after ``stall`` seconds
    stall: float = 60.0  # seconds a stalled answer is held (longer than the client's read timeout)
    not_json_200: float = 0.0  # fraction accepted, then answered 200 with a body that is not JSON
    error_200: float = 0.0  # fraction answered 200 ``{"status": "error"}`` without accepting
    error_422: float = 0.0  # fraction answered 422 (a 4xx the API does not document) without accepting
    retry_after_date: bool = False  # Retry-After as an HTTP date (RFC 9110 section 10.2.3), not seconds
    blocked: frozenset[str] = frozenset()  # E.164 numbers answered 400 "Contact is blocked."
    seed: int | None = None  # seed of the fault draws, for reproducible tests

    def __post_init__(self) -> None:
        """Reject settings that make no sense now rather than misbehave later."""
        rates = (
            self.error_500,
            self.error_503,
            self.accept_then_500,
            self.accept_then_504,
            self.drop_after_accept,
            self.stall_after_accept,
            self.not_json_200,
            self.error_200,
            self.error_422,
        )
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError("Fault fractions must be between 0 and 1 and add up to at most 1.")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ValueError("rate_limit must be a positive number of requests per second.")
        if self.latency < 0 or self.stall < 0 or (self.retry_after is not None and self.retry_after < 0):
            raise ValueError("latency, stall and retry_after must not be negative.")


@dataclass
class SandboxConfig:
    """Which credentials and channels the sandbox accepts, and its faults."""

    api_key: str | None = None  # None: any "<user>:<secret>" key with both parts non-empty
    channels: frozenset[str] | None = None  # None: any "<provider>_<6-15 digits>"
    faults: Faults = field(default_factory=Faults)
    webhooks: WebhookFaults = field(default_factory=WebhookFaults)  # delivery reports
    log: Callable[[LoggedRequest], None] | None = None  # called with each request once answered


@dataclass(frozen=True)
class AcceptedMessage:
    """A message the sandbox accepted (and would have sent)."""

    message_id: str
    provider: str
    channel_key: str
    to: str  # as sent
    body: dict[str, Any]  # the full JSON request
    created_at: datetime  # aware, UTC


@dataclass(frozen=True)
class LoggedRequest:
    """One request to any path, logged when answered (so in order of completion)."""

    at: float  # the sandbox's clock (time.monotonic() unless given) on arrival
    method: str
    path: str
    status: int  # HTTP status answered; 0 when the connection was dropped
    to: str = ""  # POST /message: the body's ``to`` as sent, when the body was a JSON object


class _Invalid(Exception):
    """A request fails validation; ``str()`` is the 400 message."""


class _Dropped(web.Response):
    """Marks a response that is never written: the handler closed the connection."""


def _envelope_error(status: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"status": "error", "errors": [{"msg": msg}]}, status=status, headers=headers)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity are not JSON


def _text(value: Any, name: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise _Invalid(f"{name} must be a {'string' if empty else 'non-empty string'}.")
    return value


def _url(value: Any, name: str) -> None:
    parts = urlsplit(_text(value, name))
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise _Invalid(f"{name} must be an http or https URL.")


def _obj(value: Any, name: str, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{name} must be an object.")
    for key in value:
        if allowed is not None and key not in allowed:
            raise _Invalid(f"Unknown field: {name}.{key}.")
    return value


def _twlowa_variables(variables: dict[str, Any]) -> None:
    """Twilio ContentVariables rules (error 21656 and the Content API limits)."""
    if len(variables) > 100:
        raise _Invalid("template.variables may have at most 100 entries.")
    for key, value in variables.items():
        name = f"template.variables.{key}"
        if not key or len(key) > 16:
            raise _Invalid(f"{name}: keys must be 1 to 16 characters long.")
        if len(_text(value, name)) > _TWILIO_MAX_CHARS:
            raise _Invalid(f"{name} is longer than {_TWILIO_MAX_CHARS} characters.")
        if _BAD_SPACING.search(value):
            raise _Invalid(f"{name} must not contain newlines, tabs or 5 spaces in a row.")


def _gswa_variables(variables: dict[str, Any]) -> None:
    """Gupshup: a map (never a list) of MEDIA_URL plus numbered Header/Body/Buttons maps."""
    groups = ("Header", "Body", "Buttons")
    _obj(variables, "template.variables", frozenset({"MEDIA_URL", *groups}))
    if "MEDIA_URL" in variables:
        _url(variables["MEDIA_URL"], "template.variables.MEDIA_URL")
    for group in groups:
        name = f"template.variables.{group}"
        for key, value in _obj(variables.get(group, {}), name).items():
            if not key.isascii() or not key.isdigit():
                raise _Invalid(f"{name} keys must be numbers written as strings.")
            _text(value, f"{name}.{key}")


def _template(value: Any, provider: str) -> None:
    template = _obj(value, "template", frozenset({"id", "variables"}))
    if "id" not in template:
        raise _Invalid("template.id is required.")
    template_id = _text(template["id"], "template.id")
    if provider == "twlowa" and not _CONTENT_SID.fullmatch(template_id):
        raise _Invalid("template.id must be a Twilio Content SID (HX and 32 hex digits).")
    if provider == "gswa" and not _UUID.fullmatch(template_id):
        raise _Invalid("template.id must be a Gupshup template ID (a UUID).")
    if "variables" in template:
        variables = _obj(template["variables"], "template.variables")
        (_twlowa_variables if provider == "twlowa" else _gswa_variables)(variables)


def _contact_saving(value: Any) -> None:
    saving = _obj(value, "contact_saving", frozenset({"save", "list_id", "extra_fields"}))
    if "save" in saving and not isinstance(saving["save"], bool):
        raise _Invalid("contact_saving.save must be true or false.")
    list_id = saving.get("list_id", 0)
    if not isinstance(list_id, int) or isinstance(list_id, bool) or list_id < 0:
        raise _Invalid("contact_saving.list_id must be a non-negative integer.")
    for key, item in _obj(saving.get("extra_fields", {}), "contact_saving.extra_fields").items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise _Invalid(f"contact_saving.extra_fields.{key} must be a string or a number.")


def _schedule(value: Any) -> None:
    text = _text(value, "schedule")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _Invalid("schedule must be an ISO 8601 date-time.") from None
    if not re.search(r"[T ][0-9]", text):
        raise _Invalid("schedule must be an ISO 8601 date-time.")
    if when.utcoffset() is None:
        raise _Invalid("schedule must include a UTC offset or Z.")


def _validate(body: dict[str, Any], channels: frozenset[str] | None) -> None:
    """Apply every POST /message rule of sociocs-api.md sections 2-6 and 10; raise _Invalid."""
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise _Invalid(f"Unknown field: {unknown[0]}.")
    for name in ("provider", "channel_key", "to"):
        if body.get(name) in (None, ""):
            raise _Invalid(f"{name} is required.")
        _text(body[name], name)
    provider, channel_key = body["provider"], body["channel_key"]
    if provider not in _PROVIDERS:
        raise _Invalid("provider must be one of twlo, twlowa, gswa.")
    known = _CHANNEL.fullmatch(channel_key) if channels is None else channel_key in channels
    if not known or channel_key.partition("_")[0] != provider:
        raise _Invalid("Invalid channel_key.")
    if not _TO.fullmatch(body["to"]):
        raise _Invalid("to must be a phone number: country code and digits, optional leading +.")
    if "name" in body:
        _text(body["name"], "name", empty=True)
    if not any(name in body for name in _CONTENT):
        raise _Invalid("One of text, image_url, video_url, file_url or template is required.")
    if "text" in body:
        text = _text(body["text"], "text")
        if provider == "twlo" and len(text) > _TWILIO_MAX_CHARS:
            raise _Invalid(f"text is longer than {_TWILIO_MAX_CHARS} characters.")
    media = [name for name in _MEDIA if name in body]
    if media and provider != "twlo":
        raise _Invalid(f"{media[0]} is only supported for provider twlo.")
    if len(media) > 1:
        raise _Invalid("Send at most one of image_url, video_url and file_url.")
    for name in media:
        _url(body[name], name)
    if "template" in body:
        if provider == "twlo":
            raise _Invalid("template is only supported for providers twlowa and gswa.")
        if "text" in body or media:
            raise _Invalid("template cannot be combined with text or media.")
        _template(body["template"], provider)
    if "contact_saving" in body:
        _contact_saving(body["contact_saving"])
    if "schedule" in body:
        _schedule(body["schedule"])
    if "user_id" in body:
        _text(body["user_id"], "user_id")


class _TokenBucket:
    """Capacity one second's worth of tokens (at least one), refilled continuously."""

    def __init__(self) -> None:
        self.rate = 0.0
        self.tokens = 0.0
        self.last = 0.0

    def take(self, rate: float, now: float) -> bool:
        """Take a token at ``rate`` per second; a changed rate starts a full bucket."""
        capacity = max(rate, 1.0)
        if rate != self.rate:
            self.rate, self.tokens = rate, capacity
        else:
            self.tokens = min(capacity, self.tokens + (now - self.last) * rate)
        self.last = now
        if self.tokens >= 1.0 - 1e-9:
            self.tokens -= 1.0
            return True
        return False


class Sandbox:
    """The sandbox app, its state (``accepted``, ``requests``) and its server lifecycle."""

    def __init__(self, config: SandboxConfig | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock`` (seconds) times the rate limit's refills and the request log; a test may
        pass its own to decide when time passes."""
        self.config = config if config is not None else SandboxConfig()
        self.clock = clock
        self.accepted: list[AcceptedMessage] = []
        self.requests: list[LoggedRequest] = []
        self.url = ""
        self._seed = self.config.faults.seed
        self._random = random.Random(self._seed)
        self._bucket = _TokenBucket()
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._log_and_envelope])
        self.app.router.add_post("/message", self._post_message)
        self.app.router.add_get("/messages", self._get_messages, allow_head=False)
        self.scheduled = ScheduledBook()
        self.app.router.add_get("/messages/scheduled", self._authorized_only(self.scheduled.list), allow_head=False)
        self.app.router.add_delete("/messages/scheduled/{message_id}", self._authorized_only(self.scheduled.delete))
        self.app.router.add_get("/_sandbox/requests", self._sandbox_requests, allow_head=False)
        self.webhooks = Webhooks(self.config.webhooks)  # subscriptions and delivery reports
        self.webhooks.add_routes(self.app, self._authorized)
        self.app.router.add_route("*", "/{tail:.*}", self._not_found)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: a free port); return and remember the base URL."""
        if self._runner is not None:
            raise RuntimeError("This sandbox is already running.")
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runner = runner
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        bound_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{bound_host}:{bound_port}"
        return self.url

    async def close(self) -> None:
        """Stop listening and close every connection (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.webhooks.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @web.middleware
    async def _log_and_envelope(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Log every request with the status it got; turn stray HTTP errors into envelopes."""
        arrived, status = self.clock(), 0
        _LOGGED_TO.set("")  # each request runs in its own task (and context); start clean anyway
        try:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # e.g. 413 from request.read()
                msg = "Request body is too large." if exc.status == 413 else exc.reason
                response = _envelope_error(400 if exc.status == 413 else exc.status, msg)
            status = 0 if isinstance(response, _Dropped) else response.status
            return response
        finally:
            logged = LoggedRequest(arrived, request.method, request.path, status, _LOGGED_TO.get())
            self.requests.append(logged)
            if self.config.log is not None:
                self.config.log(logged)

    def _authorized(self, request: web.Request) -> bool:
        """Accept the key from the ``apikey`` header, HTTP Basic auth or ``?apikey=``."""
        key = request.headers.get("apikey") or request.query.get("apikey")
        scheme, _, credentials = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if key is None and scheme.lower() == "basic":
            try:  # aiohttp.BasicAuth is deprecated since 3.14: decode by hand
                key = base64.b64decode(credentials.strip(), validate=True).decode()
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                return False
        if key is None:
            return False
        if self.config.api_key is not None:
            return key == self.config.api_key
        user, colon, secret = key.partition(":")
        return bool(user and colon and secret)

    async def _post_message(self, request: web.Request) -> web.StreamResponse:
        """Auth, validation, rate limit, latency, random faults, then accept."""
        if not self._authorized(request):
            return _envelope_error(401, "Check apikey header.")
        if request.content_type != "application/json":
            return _envelope_error(400, "Content-Type must be application/json.")
        try:
            body = json.loads(await request.read(), parse_constant=_reject_constant)
        except ValueError:
            return _envelope_error(400, "Request body is not valid JSON.")
        if not isinstance(body, dict):
            return _envelope_error(400, "Request body must be a JSON object.")
        if isinstance(body.get("to"), str):
            _LOGGED_TO.set(body["to"])  # for the request log: requests per number
        faults = self.config.faults
        try:
            _validate(body, self.config.channels)
        except _Invalid as exc:
            return _envelope_error(400, str(exc))
        blocked = {"+" + number.lstrip("+") for number in faults.blocked}
        if "+" + body["to"].lstrip("+") in blocked:
            return _envelope_error(400, "Contact is blocked.")
        if faults.rate_limit is not None and not self._bucket.take(faults.rate_limit, self.clock()):
            headers = None
            if faults.retry_after is not None and faults.retry_after_date:
                # An HTTP date has whole seconds: round up, so the wait is never shorter.
                headers = {"Retry-After": formatdate(math.ceil(time.time() + faults.retry_after), usegmt=True)}
            elif faults.retry_after is not None:
                headers = {"Retry-After": str(math.ceil(faults.retry_after))}
            return _envelope_error(429, "Rate limit reached.", headers)
        if faults.latency > 0:
            await asyncio.sleep(faults.latency)
        if faults.seed != self._seed:
            self._seed = faults.seed
            self._random.seed(self._seed)
        draw = self._random.random()
        if draw < faults.error_500:
            return _envelope_error(500, "Internal server error. Try again later.")
        if draw < (threshold := faults.error_500 + faults.error_503):
            return _envelope_error(503, "Service unavailable. Try again later.")
        if draw < (threshold := threshold + faults.error_200):
            return _envelope_error(200, "Message could not be sent.")
        if draw < (threshold := threshold + faults.error_422):
            return _envelope_error(422, "The request could not be processed.")
        message = self._accept(body)
        early = self.webhooks.accepted(
            message.message_id, message.provider, message.channel_key, template="template" in body
        )
        if early is not None:  # a report that overtakes the answer (sociocs-api.md section 8)
            await early
        if draw < (threshold := threshold + faults.not_json_200):
            return web.Response(status=200, text="<html>upstream hiccup</html>", content_type="text/html")
        if draw < (threshold := threshold + faults.stall_after_accept):
            await asyncio.sleep(faults.stall)  # the client's read timeout fires first
            return web.json_response({"status": "success", "data": {"message_id": message.message_id}})
        if draw < (threshold := threshold + faults.accept_then_500):
            return _envelope_error(500, "Internal server error. Try again later.")
        if draw < (threshold := threshold + faults.accept_then_504):
            # A proxy gave up waiting while the API went on and sent the message (RFC 9110 15.6.5).
            return web.Response(status=504, text="<html>504 Gateway Time-out</html>", content_type="text/html")
        if draw < threshold + faults.drop_after_accept and request.transport is not None:
            # Closing here makes aiohttp's write of the (never sent) response fail with a
            # ConnectionError it ignores quietly; the client sees EOF: ServerDisconnectedError.
            request.transport.close()
            return _Dropped(status=200)
        return web.json_response({"status": "success", "data": {"message_id": message.message_id}})

    def _accept(self, body: dict[str, Any]) -> AcceptedMessage:
        message = AcceptedMessage(
            message_id=f"SM{uuid.uuid4().hex}",
            provider=body["provider"],
            channel_key=body["channel_key"],
            to=body["to"],
            body=body,
            created_at=datetime.now(UTC),
        )
        self.accepted.append(message)
        if "schedule" in body:
            self.scheduled.add(message.message_id, body)
        return message

    def _authorized_only(self, handler: _Handler) -> _Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self._authorized(request):
                return _envelope_error(401, "Check apikey header.")
            return await handler(request)

        return guarded

    async def _get_messages(self, request: web.Request) -> web.StreamResponse:
        """List accepted messages created (UTC) between start_date and end_date, inclusive."""
        if not self._authorized(request):
            return _envelope_error(401, "Check apikey header.")
        today = datetime.now(UTC).date()
        bounds: list[date] = []
        for name in ("start_date", "end_date"):
            raw = request.query.get(name)
            try:
                if raw is not None and not _DATE.fullmatch(raw):
                    raise ValueError(raw)
                bounds.append(today if raw is None else date.fromisoformat(raw))
            except ValueError:
                return _envelope_error(400, f"{name} must be a date written YYYY-MM-DD.")
        if (unreadable := self._get_fault()) is not None:
            return unreadable
        start, end = bounds
        if start > end:
            return _envelope_error(400, "start_date must not be after end_date.")
        if end - start >= timedelta(days=_MAX_DAYS):
            return _envelope_error(400, f"The date range may cover at most {_MAX_DAYS} days.")
        data = [
            {
                "message_id": m.message_id,
                "direction": "outbound",
                "provider": m.provider,
                "channel_key": m.channel_key,
                "to": m.to,
                "text": m.body.get("text"),
                "template_id": m.body["template"]["id"] if "template" in m.body else None,
                # What reconcile compares for template messages (sociocs-api.md GET /messages:
                # fields beyond the working assumption are tolerated, and used where present).
                "template_variables": m.body["template"].get("variables") if "template" in m.body else None,
                "created_at": m.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
            for m in self.accepted
            if start <= m.created_at.date() <= end
        ]
        return web.json_response({"status": "success", "data": data})

    def _get_fault(self) -> web.Response | None:
        """GET /messages answers 200 without success, or 200 not JSON, as often as POSTs do."""
        faults = self.config.faults
        if not faults.error_200 and not faults.not_json_200:
            return None  # no draw: the POST faults' sequence stays as seeded
        draw = self._random.random()
        if draw < faults.error_200:
            return _envelope_error(200, "Messages could not be listed.")
        if draw < faults.error_200 + faults.not_json_200:
            return web.Response(status=200, text="<html>upstream hiccup</html>", content_type="text/html")
        return None

    async def _sandbox_requests(self, request: web.Request) -> web.StreamResponse:
        """Sandbox only, no auth: the request log, for benchmarks in another process."""
        log = [
            {"at": r.at, "method": r.method, "path": r.path, "status": r.status, "to": r.to} for r in self.requests
        ]
        return web.json_response({"requests": log, "accepted": len(self.accepted)})

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return _envelope_error(404, "Not found.")


def _cannot_listen(host: str, port: int, err: OSError) -> str:
    """Why the sandbox cannot listen, and what to do, in one sentence."""
    where = f"The sandbox cannot listen on {host}:{port}"
    if err.errno == errno.EADDRINUSE:
        return f"{where}: the port is in use (by another sandbox?); choose another with --port, or --port 0 for any."
    why = (err.strerror or str(err)).rstrip(".")
    return f"{where}: {why}; check --host and --port."


def serve(host: str, port: int, config: SandboxConfig, *, ready: Callable[[str], None] | None = None) -> None:
    """Run the sandbox until SIGINT or SIGTERM, calling ``ready(url)`` once it listens.

    Blocking, for ``campaign sandbox``. Outside the main thread no signal handler can be
    installed, so it then runs until the process ends. Raises UsageError when it cannot
    listen on ``host:port`` (the port is taken, the address is not this machine's).
    """

    sandbox = Sandbox(config)

    async def start() -> str:
        try:
            return await sandbox.start(host, port)
        except OSError as err:  # EADDRINUSE, EACCES (a port below 1024), EADDRNOTAVAIL (--host)
            raise UsageError(_cannot_listen(host, port, err)) from None

    run_until_signal(start, sandbox.close, ready)


@contextmanager
def spawn(*flags: str, env: Mapping[str, str] | None = None, timeout: float = 20.0) -> Iterator[str]:
    """Run ``campaign sandbox`` in a child process on a free port; yield its base URL.

    For tests and benchmarks that need a server outliving the sender (kill tests, separate
    CPU for benchmarks). ``flags`` are ``campaign sandbox`` options such as
    ``("--latency", "0.05")``. The child is stopped with SIGINT, then killed if it lingers.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "campaign", "sandbox", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env=None if env is None else dict(env),
    )
    try:
        assert proc.stdout is not None
        ready = threading.Event()
        found: list[str] = []

        def read() -> None:  # the first URL the child prints; keep draining so it never blocks
            assert proc.stdout is not None
            for line in proc.stdout:
                match = re.search(r"http://[\w.:\[\]]+", line)
                if match and not found:
                    found.append(match.group(0))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or not found:
            raise RuntimeError(f"campaign sandbox {' '.join(flags)} did not start (exit code {proc.poll()})")
        yield found[0]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
