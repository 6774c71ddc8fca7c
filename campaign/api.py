"""The Sociocs API client: POST /message and what its answer means for the row; GET /messages
and the webhook subscriptions (section 8) beside it.

The API has no idempotency key (sociocs-api.md section 10), so the client's one job beyond
HTTP is to say, for every possible answer, whether the message may have been accepted:

=================================  ==============  ======================================
answer                             verdict         why
=================================  ==============  ======================================
200 ``status: success``            ACCEPTED        ``data.message_id`` is the id
200 other ``status``               REJECTED        "treat any status != success as failure"
400 ``Invalid channel_key.``       FATAL           every row would fail the same way
400 other                          REJECTED        ``errors[].msg`` says why
401 / 403                          FATAL           the key is wrong; nothing can succeed
404                                FATAL           wrong ``api_url``
429                                RATE_LIMITED    not processed; wait (Retry-After) and retry
503                                RETRY           the server refused to take it (RFC 9110 15.6.4)
502 / 504                          UNKNOWN         a gateway lost the API's answer: it may have sent
connect failed or timed out        UNREACHABLE     the request never left this machine
500, other 5xx                     UNKNOWN         the API may have sent it, then failed
read timeout, dropped connection   UNKNOWN         it was written; the answer was lost
unparseable 200                    UNKNOWN         it may have been accepted
=================================  ==============  ======================================

The API key lives only in the session's default headers. Error texts built here never include
headers, and any text that came back from the server is scrubbed of the key just in case.
"""

from __future__ import annotations

import json
import os
import ssl
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any

import aiohttp
from yarl import URL

from campaign import __version__
from campaign.errors import CampaignError, RunStopped


class Verdict(Enum):
    """What an answer means for the row that was sent."""

    ACCEPTED = "accepted"  # the API took it: sent (or scheduled)
    REJECTED = "rejected"  # the API refused this row: failed, not retried
    RETRY = "retry"  # certainly not processed and worth trying again
    RATE_LIMITED = "rate-limited"  # 429: not processed; slow down, then try again
    UNKNOWN = "unknown"  # may have been processed: never resent automatically
    UNREACHABLE = "unreachable"  # no connection could be made: certainly not processed
    FATAL = "fatal"  # not processed, and no further request can succeed


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer, classified."""

    verdict: Verdict
    http_status: int | None
    message_id: str = ""
    error: str = ""
    retry_after: float | None = None


def _connect_failure(err: aiohttp.ClientConnectorError) -> str:
    """Why a connection could not be made, in words: the OS's (``connection refused``), or for
    a TLS handshake that failed OpenSSL's reason (``https://`` to a port that speaks plain HTTP:
    ``TLS handshake failed: wrong version number``). An ``ssl.SSLError``'s errno is an OpenSSL
    code, not an OS one: read as one, it said "operation not permitted"."""
    cause = err.os_error
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake failed: {(cause.reason or type(cause).__name__).lower().replace('_', ' ')}"
    return os.strerror(cause.errno).lower() if cause.errno else type(cause).__name__


def _errors_text(payload: Any) -> str:
    """The ``errors[].msg`` texts of an envelope, joined; opaque text, never parsed further."""
    if isinstance(payload, dict):
        errors = payload.get("errors")
        if isinstance(errors, list):
            msgs = [str(e.get("msg")) for e in errors if isinstance(e, dict) and e.get("msg")]
            if msgs:
                return "; ".join(msgs)
    return ""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if usable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class SociocsClient:
    """An aiohttp session bound to one API URL and key. Use as ``async with``."""

    def __init__(self, api_url: str, api_key: str, *, timeout: float, connections: int) -> None:
        self.api_url = api_url.rstrip("/")
        self._message_url = URL(f"{self.api_url}/message")  # parsed once, not per request
        self._key = api_key
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SociocsClient:
        self._session = aiohttp.ClientSession(
            headers={
                "apikey": self._key,
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"campaign/{__version__}",
            },
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections),
            cookie_jar=aiohttp.DummyCookieJar(),  # the API sets none; don't file or match any per request
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def scrub(self, text: str) -> str:
        """Remove the key (and each half of it) from text that came from outside."""
        for secret in (self._key, *self._key.split(":")):
            if len(secret) >= 8:
                text = text.replace(secret, "***")
        return text[:500]

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("SociocsClient used outside 'async with'")
        return self._session

    async def send(self, body: bytes) -> Reply:
        """POST one pre-encoded request body to /message and classify the answer."""
        return await self._exchange("POST", self._message_url, body)

    async def delete_scheduled(self, message_id: str) -> Reply:
        """``DELETE /messages/scheduled/{message_id}`` (sociocs-api.md section 8): ACCEPTED when
        deleted; REJECTED (with the API's words) when the API refuses, as it does for a message
        already sending or sent; UNKNOWN when the answer was lost (it may have been deleted)."""
        url = URL(f"{self.api_url}/messages/scheduled/") / message_id
        reply = await self._exchange("DELETE", url, None)
        if reply.http_status == 404 and reply.verdict is Verdict.FATAL:
            return Reply(Verdict.REJECTED, 404, error="the API has no scheduled message with this id (HTTP 404)")
        return reply

    async def list_scheduled(self) -> list[dict[str, Any]]:
        """``GET /messages/scheduled``: up to 100 scheduled messages, newest scheduled date
        first, no paging (sociocs-api.md section 8). Raises CampaignError when it fails."""
        data = await self._call("GET", "/messages/scheduled", what="list scheduled messages")
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []

    async def _exchange(self, method: str, url: URL, body: bytes | None) -> Reply:
        """One request, its answer classified; the network failures sorted by whether the
        request can have reached the API."""
        try:
            async with self.session.request(method, url, data=body) as resp:
                raw = await resp.read()
                return self._classify(resp.status, raw, resp.headers.get("Retry-After"))
        except aiohttp.ConnectionTimeoutError:
            # sock_connect timed out: the connection was never made, so no byte was written.
            return Reply(Verdict.UNREACHABLE, None, error="timed out connecting")
        except aiohttp.ClientConnectorError as err:
            # Raised only while connecting (refused, no route, DNS): nothing was written. A
            # pooled connection that breaks after the request was written is a
            # ServerDisconnectedError or ClientOSError below instead: unknown, never this.
            return Reply(Verdict.UNREACHABLE, None, error=self.scrub(_connect_failure(err)))
        except (TimeoutError, aiohttp.SocketTimeoutError):
            return Reply(Verdict.UNKNOWN, None, error="no answer within the timeout; the message may have been sent")
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as err:
            return Reply(
                Verdict.UNKNOWN,
                None,
                error=f"the connection dropped before the answer ({type(err).__name__}); "
                "the message may have been sent",
            )
        except aiohttp.ClientError as err:
            return Reply(Verdict.UNKNOWN, None, error=self.scrub(f"HTTP client error: {type(err).__name__}"))

    def _classify(self, status: int, raw: bytes, retry_after: str | None) -> Reply:
        try:
            payload: Any = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        errors = self.scrub(_errors_text(payload))
        if status == 200:
            if not isinstance(payload, dict):
                return Reply(Verdict.UNKNOWN, status, error="the API answered 200 with an unreadable body")
            if payload.get("status") == "success":
                data = payload.get("data")
                message_id = data.get("message_id") if isinstance(data, dict) else None
                return Reply(Verdict.ACCEPTED, status, message_id=str(message_id or ""))
            return Reply(Verdict.REJECTED, status, error=errors or "the API answered without success")
        if status == 400:
            if "Invalid channel_key" in errors:
                return Reply(Verdict.FATAL, status, error=errors)
            return Reply(Verdict.REJECTED, status, error=errors or "the API refused the request (HTTP 400)")
        if status in (401, 403):
            return Reply(Verdict.FATAL, status, error=errors or f"authentication failed (HTTP {status})")
        if status == 404:
            return Reply(Verdict.FATAL, status, error=f"{self.api_url}/message does not exist (HTTP 404)")
        if status == 429:
            return Reply(
                Verdict.RATE_LIMITED,
                status,
                error=errors or "rate limit reached",
                retry_after=_retry_after(retry_after),
            )
        if status == 503:
            return Reply(Verdict.RETRY, status, error=errors or "the API is unavailable (HTTP 503)")
        if status in (502, 504):
            # A gateway answered for the API: the API may have taken the request and sent the
            # message before the gateway gave up on it (RFC 9110 15.6.3, 15.6.5), and the API
            # has no idempotency key (sociocs-api.md section 10): never resent automatically.
            return Reply(
                Verdict.UNKNOWN,
                status,
                error=f"a gateway answered HTTP {status} for the API; the message may have been sent",
            )
        if status >= 500:
            return Reply(
                Verdict.UNKNOWN, status, error=errors or f"server error (HTTP {status}); the message may have been sent"
            )
        return Reply(Verdict.REJECTED, status, error=errors or f"the API refused the request (HTTP {status})")

    async def list_messages(self, start: date, end: date) -> list[dict[str, Any]]:
        """``GET /messages`` for an inclusive date range of at most 31 days (section 8).
        Raises CampaignError when it fails, RunStopped when the key is refused."""
        params = {"start_date": start.isoformat(), "end_date": end.isoformat()}
        data = await self._call("GET", "/messages", params=params, what="list messages")
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        what: str = "",
    ) -> Any:
        """One JSON call to an endpoint other than POST /message (section 8): its ``data``.

        Raises CampaignError naming the call (``what``, e.g. "list messages") when it cannot be
        made or does not succeed, and RunStopped when the key is refused (401/403).
        """
        what = what or f"call {method} {path}"
        data = None if body is None else json.dumps(body).encode()
        try:
            async with self.session.request(method, f"{self.api_url}{path}", data=data, params=params) as resp:
                raw = await resp.read()
                status = resp.status
        except aiohttp.ClientConnectorError as err:
            reason = _connect_failure(err)
            raise CampaignError(self.scrub(f"cannot reach the API at {self.api_url} ({reason})")) from None
        except (TimeoutError, aiohttp.ClientError) as err:
            raise CampaignError(self.scrub(f"cannot {what} from {self.api_url}: {type(err).__name__}")) from None
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if status in (401, 403):
            raise RunStopped(f"The API refused the key (HTTP {status}); check SOCIOCS_API_KEY.")
        if status != 200 or not isinstance(payload, dict) or payload.get("status") != "success":
            unreadable = ", with a body that is not JSON" if payload is None and raw else ""
            detail = self.scrub(_errors_text(payload)) or f"HTTP {status}{unreadable}"
            raise CampaignError(f"{method} {path} failed: {detail}")
        return payload.get("data")

    async def subscribe(self, subscription: dict[str, Any]) -> str:
        """``POST /webhook-subscriptions``; returns the subscription id. The same
        ``subscriber_reference_id`` again updates that subscription (section 8)."""
        data = await self._call("POST", "/webhook-subscriptions", subscription)
        return str(data.get("id", "")) if isinstance(data, dict) else ""

    async def subscriptions(self) -> list[dict[str, Any]]:
        """``GET /webhook-subscriptions``: every subscription of the account."""
        data = await self._call("GET", "/webhook-subscriptions")
        return [s for s in data if isinstance(s, dict)] if isinstance(data, list) else []

    async def unsubscribe(self, subscription_id: str) -> None:
        """``DELETE /webhook-subscriptions/{id}``."""
        await self._call("DELETE", f"/webhook-subscriptions/{subscription_id}")
