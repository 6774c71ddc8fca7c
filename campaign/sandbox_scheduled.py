"""The sandbox's scheduled messages: ``GET /messages/scheduled`` and
``DELETE /messages/scheduled/{message_id}`` (sociocs-api.md section 8).

A message accepted with a future ``schedule`` waits here until its time comes by the one clock
(:func:`campaign.timing.now`, which tests move), and is then "sent": no longer listed, and a
DELETE of it fails as the API's does ("fails if already sending or sent"). Deleting it before
then removes it; a second DELETE of the same id finds nothing (404). Every successful delete
is kept in ``deleted`` so that tests can prove nothing was deleted twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from campaign import timing

LISTED = 100  # GET /messages/scheduled lists at most 100, newest scheduled date first, no paging


@dataclass
class ScheduledBook:
    """What the sandbox holds for later, by message id."""

    waiting: dict[str, tuple[datetime, dict[str, Any]]] = field(default_factory=dict)  # id -> (when, body)
    deleted: list[str] = field(default_factory=list)  # ids deleted, in order (twice would show twice)

    def add(self, message_id: str, body: dict[str, Any]) -> None:
        """Hold a message accepted with a ``schedule`` (the body was validated: it has an offset)."""
        when = datetime.fromisoformat(body["schedule"])
        if when > timing.now():
            self.waiting[message_id] = (when, body)

    def upcoming(self) -> list[tuple[str, datetime, dict[str, Any]]]:
        """Messages whose time has not come, newest scheduled date first."""
        at = timing.now()
        items = [(i, when, body) for i, (when, body) in self.waiting.items() if when > at]
        return sorted(items, key=lambda item: item[1], reverse=True)

    async def list(self, request: web.Request) -> web.StreamResponse:
        data = [
            {
                "message_id": message_id,
                "provider": body["provider"],
                "channel_key": body["channel_key"],
                "to": body["to"],
                "text": body.get("text"),
                "schedule": body["schedule"],
            }
            for message_id, _, body in self.upcoming()[:LISTED]
        ]
        return web.json_response({"status": "success", "data": data})

    async def delete(self, request: web.Request) -> web.StreamResponse:
        message_id = request.match_info["message_id"]
        held = self.waiting.get(message_id)
        if held is None:
            return _error(404, "Scheduled message not found.")
        if held[0] <= timing.now():
            return _error(400, "The message is already being sent or has been sent; it cannot be deleted.")
        del self.waiting[message_id]
        self.deleted.append(message_id)
        return web.json_response({"status": "success", "data": {"message_id": message_id}})


def _error(status: int, msg: str) -> web.Response:
    return web.json_response({"status": "error", "errors": [{"msg": msg}]}, status=status)
