"""What keeps the page to the person who started it: token, CSRF, uploads, downloads.

- The token printed at start is required once (``?token=``); it is then kept in an HttpOnly,
  SameSite=Strict cookie and dropped from the address bar. Without it every request is 403.
- Every form carries the server's CSRF token as its first field; a POST without it is 403
  (OWASP CSRF cheat sheet, synchronizer token pattern).
- Uploads stream to a hidden file in the campaign folder, chunk by chunk, never whole into
  memory, under a size limit; the stored name is made here, never taken from the browser.
- A file is served only if it resolves inside the folder.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import BodyPartReader, web
from aiohttp.typedefs import Middleware

from campaign.errors import CampaignError
from campaign.spreadsheet.common import EXCEL_SUFFIXES, LEGACY_SUFFIXES, TEXT_SUFFIXES

UPLOAD_SUFFIXES = TEXT_SUFFIXES + EXCEL_SUFFIXES + LEGACY_SUFFIXES  # what the recipients reader opens
CHUNK = 64 * 1024
FIELD_LIMIT = 64 * 1024  # bytes of one text field of a form (a message is far shorter)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No inline script or style anywhere: the pages need none, and this forbids injected ones.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the first URL carries the token
    "Cache-Control": "no-store",
}


class UploadError(CampaignError):
    """An upload the page refuses: wrong kind of file, or larger than the limit."""


class Forbidden(web.HTTPForbidden):
    def __init__(self, text: str) -> None:
        super().__init__(text=text, content_type="text/plain")


@dataclass
class Secrets:
    """The server's token (printed at start) and CSRF token (put in every form)."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def cookie(self) -> str:
        """The cookie's name, its own per server: cookies do not tell ports apart, so two
        servers on one machine would otherwise overwrite each other's."""
        return "campaign_web_" + hashlib.sha256(self.token.encode()).hexdigest()[:12]

    def token_ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token.encode())

    def csrf_ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.csrf.encode())


def middleware(keys: Secrets) -> Middleware:
    """Require the token (query once, then cookie) on every request; add security headers."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.query.get("token")
        if given is not None:
            if not keys.token_ok(given):
                raise Forbidden("Wrong token: open the URL that `campaign web` printed, token included.")
            # Keep it in a cookie and take it out of the address bar (and of the history).
            query = {k: v for k, v in request.query.items() if k != "token"}
            redirect = web.HTTPSeeOther(request.rel_url.with_query(query))
            redirect.set_cookie(keys.cookie, keys.token, httponly=True, samesite="Strict", path="/")
            raise redirect
        if not keys.token_ok(request.cookies.get(keys.cookie)):
            raise Forbidden("This page needs its token: open the URL that `campaign web` printed, token included.")
        response = await handler(request)
        response.headers.update(HEADERS)
        return response

    return guard


async def read_field(part: BodyPartReader, limit: int = FIELD_LIMIT) -> str:
    """A text field of a multipart form, at most ``limit`` bytes (UTF-8)."""
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > limit:
            raise UploadError(f"The form field {part.name!r} is longer than {limit // 1024} KB.")
    return data.decode("utf-8", errors="replace")


async def save_upload(part: BodyPartReader, folder: Path, limit: int) -> Path:
    """Stream one uploaded file to a hidden file in ``folder``; return its path.

    The name is made here (a random stem and the upload's suffix, if it is one the recipients
    reader knows), so nothing the browser sends becomes a path. Raises UploadError for another
    suffix or beyond ``limit`` bytes (the rest of the upload is read and discarded, so the
    browser gets the answer instead of a reset connection)."""
    suffix = Path(part.filename or "").suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        shown = f'a "{suffix}" file' if suffix else "a file without a suffix"
        raise UploadError(
            f"{part.filename or 'The upload'} is {shown}; upload the recipients as "
            f"{', '.join(UPLOAD_SUFFIXES)} (save it from Excel or LibreOffice as .xlsx or .csv)."
        )
    path = folder / f".upload-{secrets.token_hex(8)}{suffix}"
    size = 0
    too_big = False
    with path.open("xb") as out:
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if size > limit:
                too_big = True
                continue  # drain, never store
            out.write(chunk)
    if too_big:
        path.unlink(missing_ok=True)
        raise UploadError(
            f"{part.filename} is larger than the {human_size(limit)} this page accepts; split it, or start "
            "`campaign web` with a larger --max-upload-mb."
        )
    if size == 0:
        path.unlink(missing_ok=True)
        raise UploadError(f"{part.filename} is empty; choose the spreadsheet with the recipients.")
    return path


def human_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):g} MB"
    return f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} bytes"


def inside(folder: Path, path: Path) -> Path:
    """``path`` resolved, if it is inside ``folder``; else 404 (a download never escapes it)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()) or not resolved.is_file():
        raise web.HTTPNotFound(text="No such file in the campaign folder.", content_type="text/plain")
    return resolved
