"""The campaign file (TOML) loaded into one typed, checked object.

Everything a run needs is decided here, before a row is read: a mistake in the campaign file is
one sentence naming the file and the key (``ConfigError``), never a surprise halfway through a
send. Paths inside the file are relative to the file. Precedence, highest first: command-line
flag (applied by the caller with :func:`dataclasses.replace`), environment, campaign file,
default.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from campaign.errors import ConfigError, full_stop

Provider = Literal["twlo", "twlowa", "gswa"]
PROVIDERS: tuple[Provider, ...] = ("twlo", "twlowa", "gswa")
WHATSAPP: frozenset[str] = frozenset({"twlowa", "gswa"})
MEDIA_FIELDS = ("image_url", "video_url", "file_url")
GSWA_SECTIONS = ("Header", "Body", "Buttons")
DEFAULT_API_URL = "https://api.sociocs.com"
API_KEY_ENV = "SOCIOCS_API_KEY"
API_URL_ENV = "SOCIOCS_API_URL"

# The keys each table accepts; anything else is a typo the user wants to hear about.
_KEYS: dict[str, tuple[str, ...]] = {
    "": (
        "name",
        "provider",
        "channel_key",
        "api_url",
        "state",
        "recipients",
        "message",
        "contact_saving",
        "sending",
        "output",
        "schedule",
    ),
    "recipients": (
        "file",
        "sheet",
        "header_row",
        "phone_column",
        "name_column",
        "default_country",
        "country_column",
        "countries",
        "suppress",
        "allow_duplicates",
    ),
    "message": (
        "text",
        "text_file",
        *MEDIA_FIELDS,
        "template_id",
        "schedule",
        "timezone",
        "user_id",
        "variables",
    ),
    "contact_saving": ("save", "list_id", "extra_fields"),
    "schedule": ("send_at", "window", "days", "timezone_column", "daily_limit", "if_past"),
    "sending": ("rate", "concurrency", "max_attempts", "timeout", "max_consecutive_errors"),
    "output": ("results", "state", "report"),
}


@dataclass(frozen=True)
class Recipients:
    """Where the contacts are and how to read them."""

    file: Path
    phone_column: str  # "phone" when the campaign file does not set it (see phone_column_given)
    sheet: str | None = None
    header_row: int | None = None  # 1-based, as the spreadsheet shows it; None: found
    name_column: str | None = None
    default_country: str | None = None
    country_column: str | None = None  # a per-row ISO country, read instead of default_country
    countries: tuple[str, ...] = ()  # the only destination countries allowed; () allows any
    suppress: tuple[Path, ...] = ()
    allow_duplicates: bool = False
    phone_column_given: bool = True  # False: phone_column was not set, so the column headed "phone"


@dataclass(frozen=True)
class Message:
    """The per-row templates (Jinja2 sources, rendered by ``campaign.render``)."""

    text: str | None = None
    text_source: str = "[message] text"  # where ``text`` came from, for error messages
    image_url: str | None = None
    video_url: str | None = None
    file_url: str | None = None
    template_id: str | None = None
    # twlowa: {"1": "{{ x }}"}; gswa: {"Body": {"1": "..."}, "MEDIA_URL": "..."}
    variables: Mapping[str, Any] = field(default_factory=dict)
    schedule: str | None = None
    timezone: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class ContactSaving:
    """The optional ``contact_saving`` object; values may be templates."""

    save: bool | str = True
    list_id: int | str = 0
    extra_fields: tuple[str, ...] | Mapping[str, str] = ()


@dataclass(frozen=True)
class Sending:
    """Pacing and retry settings."""

    rate: float = 1.0  # requests per second; 0 = no pacing (benchmarks, the sandbox)
    concurrency: int = 10
    max_attempts: int = 5
    timeout: float = 30.0
    max_consecutive_errors: int = 20


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
IF_PAST = ("now", "next-day")


@dataclass(frozen=True)
class Schedule:
    """``[schedule]``: when each recipient may get the message (PRODUCT.md, "Sending windows
    and local time"); :mod:`campaign.timing` applies it."""

    send_at: datetime | None = None  # naive: each recipient's wall-clock time; aware: one instant
    send_at_text: str = ""
    window: tuple[int, int] = (0, 1440)  # minutes after local midnight: [start, end); end <= start crosses midnight
    window_text: str = ""
    days: frozenset[int] = frozenset()  # weekday numbers (Monday 0); empty: every day
    timezone_column: str | None = None
    daily_limit: int | None = None  # unique recipients per rolling 24 h on the channel
    if_past: str = "now"  # a send_at already past in a zone: "now" sends at once, "next-day" a day later

    @property
    def has_window(self) -> bool:
        """Whether quiet hours (``window`` or ``days``) apply."""
        return bool(self.window_text or self.days)

    @property
    def needs_zone(self) -> bool:
        """Whether every row needs a time zone (a local send_at, or quiet hours)."""
        return self.has_window or (self.send_at is not None and self.send_at.tzinfo is None)


@dataclass(frozen=True)
class Campaign:
    """One campaign file, checked. Build it with :func:`load_campaign`."""

    path: Path
    name: str
    provider: Provider
    channel_key: str
    recipients: Recipients
    message: Message
    api_url: str = DEFAULT_API_URL
    contact_saving: ContactSaving | None = None
    sending: Sending = field(default_factory=Sending)
    results: Path = Path("results.csv")
    state: Path = Path("state.sqlite")
    report: Path = Path("check.csv")
    #: a PostgreSQL URL (``state`` / CAMPAIGN_STATE_URL) that holds the journal instead of the
    #: SQLite file ``state``, whose name then only names the campaign's schema (campaign.store)
    state_url: str = ""
    schedule: Schedule = field(default_factory=Schedule)

    @property
    def folder(self) -> Path:
        """The folder of the campaign file, against which its paths are resolved."""
        return self.path.parent


def for_sandbox(campaign: Campaign, api_url: str) -> Campaign:
    """The campaign as ``--sandbox`` runs it: sent to ``api_url``, with its own files.

    A trial must never count as a real send (issue 10, item 1), so the state and results files
    get ``.sandbox`` after the campaign's name (``<name>.sandbox.state.sqlite``,
    ``<name>.sandbox.results.csv``; PRODUCT.md, the sandbox), or before the suffix of a path
    that does not start with the name (``[output] results = "out.csv"``: ``out.sandbox.csv``).
    """

    def sandboxed(path: Path) -> Path:
        prefix = f"{campaign.name}."
        if path.name.startswith(prefix):
            return path.with_name(f"{prefix}sandbox.{path.name[len(prefix):]}")
        return path.with_name(f"{path.stem}.sandbox{path.suffix}")

    return replace(campaign, api_url=api_url, state=sandboxed(campaign.state), results=sandboxed(campaign.results))


def load_campaign(path: Path | str, environ: Mapping[str, str] | None = None) -> Campaign:
    """Read and check a campaign file; raise ``ConfigError`` naming the file and key."""
    path = Path(path)
    env = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(path, "no such campaign file; check the path.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(path, f"cannot read the campaign file ({err}).") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, full_stop(f"is not valid TOML: {err}")) from None
    return _Parser(path, env).campaign(raw)


def check_api_url(url: str, where: str) -> str:
    """Refuse a plain-HTTP API URL unless it is loopback: the key would cross the network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where} {url!r} is not an http(s) URL")
    if parts.username or parts.password or parts.query:
        raise ValueError(f"{where} must not carry credentials or a query string")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(
            f"{where} {url!r} uses plain http to a non-loopback host; the API key would travel unencrypted; use https"
        )
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Parser:
    """Turns the raw TOML dict into a :class:`Campaign`, one checked key at a time."""

    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env

    def fail(self, message: str) -> ConfigError:
        return ConfigError(self.path, message)

    def unknown_keys(self, table: str, data: Mapping[str, Any]) -> None:
        allowed = _KEYS[table]
        for key in data:
            if key not in allowed:
                where = f"[{table}] " if table else ""
                home = next((t for t, keys in _KEYS.items() if t and t != table and key in keys), None)
                close = difflib.get_close_matches(key, allowed, n=1)
                if home is not None:  # `rate` at the top: a key of another table, not a typo
                    hint = f" It belongs in [{home}]: move it under that table's header."
                elif close:
                    hint = f" Did you mean {close[0]!r}?"
                else:
                    hint = f" Known keys: {', '.join(allowed)}."
                raise self.fail(f"unknown key {where}{key!r}.{hint}")

    def table(self, raw: Mapping[str, Any], name: str, *, required: bool) -> dict[str, Any]:
        value = raw.get(name)
        if value is None:
            if required:
                raise self.fail(f"missing table [{name}].")
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"{name} must be a table ([{name}]).")
        self.unknown_keys(name, value)
        return value

    def string(self, data: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                raise self.fail(f"missing {where}{key}.")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{where}{key} must be a non-empty string.")
        return value

    def number(self, data: Mapping[str, Any], key: str, default: float, *, integer: bool, minimum: float) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"[sending] {key} must be a number.")
        if integer and not isinstance(value, int):
            raise self.fail(f"[sending] {key} must be a whole number.")
        if value < minimum:
            raise self.fail(f"[sending] {key} must be at least {minimum:g}.")
        return float(value)

    def local_path(self, value: str) -> Path:
        return (self.path.parent / value).resolve() if not Path(value).is_absolute() else Path(value)

    def campaign(self, raw: dict[str, Any]) -> Campaign:
        self.unknown_keys("", raw)
        name = self.string(raw, "name", "") or self.path.stem
        provider = self.string(raw, "provider", "", required=True)
        if provider not in PROVIDERS:
            raise self.fail(f"provider {provider!r} is not one of {', '.join(PROVIDERS)}.")
        channel_key = cast(str, self.string(raw, "channel_key", "", required=True))
        prefix = channel_key.split("_", 1)[0]
        if "_" in channel_key and prefix in PROVIDERS and prefix != provider:
            raise self.fail(
                f"channel_key {channel_key!r} is a {prefix} channel but provider is {provider!r}; set them as a pair."
            )
        api_url = self.env.get("SOCIOCS_API_URL") or self.string(raw, "api_url", "") or DEFAULT_API_URL
        try:
            api_url = check_api_url(api_url, "api_url")
        except ValueError as err:
            raise self.fail(full_stop(str(err))) from None

        recipients = self.recipients(self.table(raw, "recipients", required=True))
        message = self.message(self.table(raw, "message", required=True), provider)
        saving_raw = self.table(raw, "contact_saving", required=False)
        contact_saving = self.contact_saving(saving_raw) if saving_raw else None
        sending = self.sending(self.table(raw, "sending", required=False))
        schedule = self.schedule(self.table(raw, "schedule", required=False))
        if schedule.send_at is not None and message.schedule is not None:
            raise self.fail("has both [message] schedule and [schedule] send_at; keep one.")
        output = self.table(raw, "output", required=False)
        folder = self.path.parent

        def out(key: str, default: str) -> Path:
            value = self.string(output, key, "[output] ")
            return self.local_path(value) if value else (folder / default).resolve()

        state_url = self.env.get("CAMPAIGN_STATE_URL") or self.string(raw, "state", "") or ""
        if state_url and not state_url.startswith(("postgresql://", "postgres://")):
            raise self.fail(
                "state must be a PostgreSQL URL (postgresql://user@host:port/database); leave it out "
                "to keep the state in a SQLite file beside the campaign file ([output] state names that file)."
            )
        return Campaign(
            path=self.path.resolve(),
            name=name,
            provider=provider,
            channel_key=channel_key,
            api_url=api_url,
            recipients=recipients,
            message=message,
            contact_saving=contact_saving,
            sending=sending,
            results=out("results", f"{name}.results.csv"),
            state=out("state", f"{name}.state.sqlite"),
            report=out("report", f"{name}.check.csv"),
            schedule=schedule,
            state_url=state_url,
        )

    def recipients(self, data: dict[str, Any]) -> Recipients:
        where = "[recipients] "
        file = cast(str, self.string(data, "file", where, required=True))
        # Without phone_column, the column headed "phone" is the phone column (PRODUCT.md).
        given = self.string(data, "phone_column", where)
        phone_column = given or "phone"
        country = self.string(data, "default_country", where)
        if country is not None:
            country = country.strip().upper()
            if country not in phonenumbers.SUPPORTED_REGIONS:
                raise self.fail(
                    f"{where}default_country {country!r} is not an ISO 3166 alpha-2 country code "
                    "(for example US, GB, IN)."
                )
        countries = data.get("countries", [])
        if isinstance(countries, str):
            countries = [countries]
        if not isinstance(countries, list) or not all(isinstance(c, str) for c in countries):
            raise self.fail(f'{where}countries must be a list of ISO 3166 alpha-2 country codes, like ["US", "CA"].')
        bad = [c for c in countries if c.strip().upper() not in phonenumbers.SUPPORTED_REGIONS]
        if bad:
            raise self.fail(
                f"{where}countries holds {bad[0]!r}, which is not an ISO 3166 alpha-2 country code "
                "(for example US, GB, IN)."
            )
        suppress = data.get("suppress", [])
        if isinstance(suppress, str):
            suppress = [suppress]
        if not isinstance(suppress, list) or not all(isinstance(s, str) and s for s in suppress):
            raise self.fail(f"{where}suppress must be a list of file names.")
        header_row = data.get("header_row")
        if header_row is not None and (type(header_row) is not int or not 1 <= header_row <= 1_048_576):
            raise self.fail(
                f"{where}header_row must be a whole number from 1: the number of the row that holds "
                "the column names, as the spreadsheet program shows it."
            )
        allow = data.get("allow_duplicates", False)
        if not isinstance(allow, bool):
            raise self.fail(f"{where}allow_duplicates must be true or false.")
        return Recipients(
            file=self.local_path(file),
            sheet=self.string(data, "sheet", where),
            header_row=header_row,
            phone_column=phone_column.strip(),
            name_column=(self.string(data, "name_column", where) or "").strip() or None,
            default_country=country,
            country_column=(self.string(data, "country_column", where) or "").strip() or None,
            countries=tuple(dict.fromkeys(c.strip().upper() for c in countries)),
            suppress=tuple(self.local_path(s) for s in suppress),
            allow_duplicates=allow,
            phone_column_given=given is not None,
        )

    def message(self, data: dict[str, Any], provider: Provider) -> Message:
        where = "[message] "
        text = self.string(data, "text", where)
        text_file = self.string(data, "text_file", where)
        source = "[message] text"
        if text is not None and text_file is not None:
            raise self.fail(f"{where}has both text and text_file; keep one.")
        if text_file is not None:
            file = self.local_path(text_file)
            try:
                text = file.read_text(encoding="utf-8-sig")
            except OSError as err:
                raise self.fail(f"{where}text_file {text_file!r} cannot be read ({err.strerror}).") from None
            except UnicodeDecodeError:
                raise self.fail(f"{where}text_file {text_file!r} is not UTF-8 text.") from None
            # A trailing newline in a template file is an editor's habit, not part of the SMS.
            text = text.rstrip("\r\n")
            source = f"[message] text_file {text_file}"
        media = {k: self.string(data, k, where) for k in MEDIA_FIELDS}
        given_media = [k for k, v in media.items() if v is not None]
        template_id = self.string(data, "template_id", where)
        if provider in WHATSAPP and given_media:
            raise self.fail(
                f"{where}{given_media[0]} is only supported with provider twlo (SMS/MMS), "
                f"not {provider}; for WhatsApp media use a template."
            )
        if len(given_media) > 1:
            raise self.fail(f"{where}has {' and '.join(given_media)}; send at most one media URL per message.")
        if template_id is not None and provider == "twlo":
            raise self.fail(f"{where}template_id is for WhatsApp (twlowa, gswa), not twlo; use text.")
        if template_id is not None and text is not None:
            raise self.fail(f"{where}has both a template_id and text; a WhatsApp template carries its own text.")
        if text is None and template_id is None and not given_media:
            raise self.fail(f"{where}needs text, text_file, a media URL or a template_id.")
        variables = data.get("variables", {})
        if not isinstance(variables, dict):
            raise self.fail(f"{where}variables must be a table ([message.variables]).")
        if variables and template_id is None:
            raise self.fail(f"{where}variables are only used with a template_id.")
        self.check_variables(variables, provider)
        timezone = self.string(data, "timezone", where)
        if timezone is not None:
            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder ("America")
                raise self.fail(
                    f"{where}timezone {timezone!r} is not a known time zone (for example America/New_York)."
                ) from None
        return Message(
            text=text,
            text_source=source,
            template_id=template_id,
            variables=variables,
            schedule=self.string(data, "schedule", where),
            timezone=timezone,
            user_id=self.string(data, "user_id", where),
            **media,
        )

    def check_variables(self, variables: dict[str, Any], provider: Provider) -> None:
        where = "[message.variables]"

        def flat(table: Mapping[str, Any], at: str) -> None:
            for key, value in table.items():
                if not isinstance(value, str):
                    raise self.fail(f'{at} {key!r} must be a string (a template such as "{{{{ name }}}}").')

        if provider == "twlowa":
            flat(variables, where)
        elif provider == "gswa":
            for key, value in variables.items():
                if key == "MEDIA_URL":
                    if not isinstance(value, str):
                        raise self.fail(f"{where} MEDIA_URL must be a string.")
                elif key in GSWA_SECTIONS:
                    if not isinstance(value, dict):
                        raise self.fail(f"{where}.{key} must be a table of numbered variables.")
                    flat(value, f"{where}.{key}")
                else:
                    raise self.fail(
                        f"{where} {key!r} is not used by gswa; use MEDIA_URL or the tables Header, Body and Buttons."
                    )

    def contact_saving(self, data: dict[str, Any]) -> ContactSaving:
        save = data.get("save", True)
        if not isinstance(save, (bool, str)):
            raise self.fail("[contact_saving] save must be true, false or a template.")
        list_id = data.get("list_id", 0)
        if isinstance(list_id, bool) or not isinstance(list_id, (int, str)):
            raise self.fail("[contact_saving] list_id must be a whole number or a template.")
        extra = data.get("extra_fields", [])
        if isinstance(extra, list):
            if not all(isinstance(c, str) and c.strip() for c in extra):
                raise self.fail("[contact_saving] extra_fields must be a list of column names.")
            extra_fields: tuple[str, ...] | dict[str, str] = tuple(c.strip() for c in extra)
        elif isinstance(extra, dict):
            if not all(isinstance(v, str) for v in extra.values()):
                raise self.fail("[contact_saving] extra_fields values must be strings (templates).")
            extra_fields = dict(extra)
        else:
            raise self.fail("[contact_saving] extra_fields must be a list of columns or a table.")
        return ContactSaving(save=save, list_id=list_id, extra_fields=extra_fields)

    def schedule(self, data: dict[str, Any]) -> Schedule:
        where = "[schedule] "
        send_at: datetime | None = None
        text = self.string(data, "send_at", where)
        if text is not None:
            try:
                send_at = datetime.fromisoformat(text.strip())
            except ValueError:
                raise self.fail(
                    f'{where}send_at {text!r} is not a date and time; write it like "2026-12-01 09:00" '
                    '(each recipient\'s local time) or "2026-12-01T09:00:00-05:00" (one moment for everyone).'
                ) from None
        window = (0, 1440)
        window_text = self.string(data, "window", where) or ""
        if window_text:
            window = self._window(window_text.strip())
        days_raw = data.get("days", [])
        if isinstance(days_raw, str):
            days_raw = [days_raw]
        if not isinstance(days_raw, list) or not all(isinstance(d, str) for d in days_raw):
            raise self.fail(f'{where}days must be a list of day names, like ["mon", "tue", "wed", "thu", "fri"].')
        days = set()
        for day in days_raw:
            name = day.strip().lower()
            if name not in DAYS and name not in _DAY_NAMES:
                raise self.fail(
                    f"{where}days holds {day!r}, which is not a day name (mon, tue, wed, thu, fri, sat, sun)."
                )
            days.add(DAYS.index(name[:3]))
        if "days" in data and not days:
            raise self.fail(f"{where}days is empty, so no day would ever send; remove it or name the days.")
        limit = data.get("daily_limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise self.fail(f"{where}daily_limit must be a whole number of recipients, at least 1 (for example 1000).")
        if_past = data.get("if_past", "now")
        if if_past not in IF_PAST:
            raise self.fail(f'{where}if_past must be "now" (send at once) or "next-day" (the same time a day later).')
        column = self.string(data, "timezone_column", where)
        return Schedule(
            send_at=send_at,
            send_at_text=(text or "").strip(),
            window=window,
            window_text=window_text.strip(),
            days=frozenset(days),
            timezone_column=column.strip() if column else None,
            daily_limit=limit,
            if_past=if_past,
        )

    def _window(self, text: str) -> tuple[int, int]:
        """``08:00-21:00`` → minutes after midnight (start, end)."""
        parts = text.replace("–", "-").split("-")
        try:
            if len(parts) != 2:
                raise ValueError
            start, end = (time.fromisoformat(p.strip()) if p.strip() != "24:00" else None for p in parts)
        except ValueError:
            raise self.fail(f'[schedule] window {text!r} is not a time range; write it like "08:00-21:00".') from None
        if start is None:
            raise self.fail(f'[schedule] window {text!r} cannot start at 24:00; write it like "08:00-21:00".')
        lo = start.hour * 60 + start.minute
        hi = 1440 if end is None else end.hour * 60 + end.minute
        if lo == hi:
            raise self.fail(f"[schedule] window {text!r} is empty; remove it to send at any hour.")
        return lo, hi

    def sending(self, data: dict[str, Any]) -> Sending:
        d = Sending()
        return Sending(
            rate=self.number(data, "rate", d.rate, integer=False, minimum=0),
            concurrency=int(self.number(data, "concurrency", d.concurrency, integer=True, minimum=1)),
            max_attempts=int(self.number(data, "max_attempts", d.max_attempts, integer=True, minimum=1)),
            timeout=self.number(data, "timeout", d.timeout, integer=False, minimum=0.1),
            max_consecutive_errors=int(
                self.number(data, "max_consecutive_errors", d.max_consecutive_errors, integer=True, minimum=1)
            ),
        )
