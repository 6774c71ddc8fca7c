"""Preparing rows: phone number, suppression, templates, request body; here or in a child.

:class:`Pipeline` is everything one run needs about its input: the opened and validated file,
its columns, the renderer and the suppression list. ``Pipeline.prepare`` turns one spreadsheet
row into a :class:`Prepared`: an E.164 number and an encoded request body, or the reason the
row cannot be sent. It is a pure function of the row, which is what lets it run elsewhere.

Preparing costs about as much CPU per row as sending does (phonenumbers alone ~25 µs, Jinja2
~13 µs; bench/RESULTS.md), and sending runs on one event loop. So ``send`` and ``check`` run
``Pipeline.batches`` in a forked child process (:func:`prepared_batches`) and the event loop
only plans, sends and journals: the two halves use two cores. The child is forked after the
file has been opened and validated, so every error found before sending is still raised
before anything is sent; an error that appears later (the file changed under the run) comes
back through the pipe as the same exception. The child holds no lock, no state file and no
HTTP session, never prints, and dies with its parent (a write to the closed pipe ends it).

Where ``fork`` is unavailable, or the process already runs other threads (forking those is
unsafe), the same batches are prepared inline between the event loop's turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pickle
import signal
import struct
import sys
import threading
import traceback
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from campaign import phones, timing
from campaign.config import Campaign
from campaign.errors import CampaignError, ConfigError, InputFileError, RunStopped
from campaign.render import Renderer, RowInvalid, encode
from campaign.sender import Job
from campaign.spreadsheet import RecipientFile, SourceRow, open_recipients, visible
from campaign.state import Status
from campaign.suppression import Suppressions, read_suppressions

# Rows prepared and planned per transaction (and per event-loop slice): the first batch is
# small, so the first request leaves early; each next one is twice as large up to BATCH_MAX.
# Phone-number keys land on random index pages, and a transaction writes every page it dirtied
# to the WAL, so 2,048-row transactions write 0.75 GB per 100,000 rows where 256-row ones wrote
# 1.25 GB (+10 % rows/s; bench/RESULTS.md). A 2,048-row plan holds the event loop ~50 ms, which
# the pacer's 50 ms bucket makes up.
BATCH = 256
BATCH_MAX = 2048
_FRAME = struct.Struct("!I")  # the length before each pickled message on the pipe
_CONTENT = ("text", "image_url", "video_url", "file_url", "template")  # what reconcile compares


def cells_json(cells: tuple[str, ...]) -> str:
    """A row's cells as the state file stores them (``rows.cells``): a JSON array of text.

    Made where the row is prepared (in the child process, for ``send`` and ``check``), so the
    process that sends only passes the string on.
    """
    return json.dumps(cells, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Prepared:
    """One row after phone normalisation and rendering."""

    row: int  # the spreadsheet's row number
    cells: str  # the row's cells as JSON text, as the state file keeps them (see cells_json)
    phone: str
    key: str | None
    status: Status | None  # INVALID / SKIPPED, or None when sendable
    error: str = ""
    job: Job | None = None
    text: str | None = None
    blanks: tuple[str, ...] = ()
    region: str = ""  # the destination country (ISO 3166 alpha-2) of a sendable row
    landline: bool = False  # a sendable row's number is a fixed line (phones.Number.landline)


class Pipeline:
    """Everything one run needs about the input: file, columns, renderer, suppression list."""

    def __init__(self, campaign: Campaign, *, now: datetime | None = None) -> None:
        self.campaign = campaign
        rc = campaign.recipients
        self.file: RecipientFile = open_recipients(
            rc.file, sheet=rc.sheet, phone_column=rc.phone_column, header_row=rc.header_row
        )
        self.phone_index = self._phone_column()
        self.name_index = self._name_column()
        self.country_index = (
            self.file.find_column(rc.country_column, key="country_column") if rc.country_column else None
        )
        self.whatsapp = campaign.provider in ("twlowa", "gswa")
        extra: dict[str, int] = {}
        saving = campaign.contact_saving
        if saving is not None and not isinstance(saving.extra_fields, dict):
            for column in saving.extra_fields:
                extra[column] = self.file.find_column(column, key="[contact_saving] extra_fields")
        self.renderer = Renderer(
            campaign, self.file.columns, name_index=self.name_index, extra_field_columns=extra, now=now
        )
        self.warnings: list[str] = []  # sentences for the summary: allowed, but probably not meant
        self.suppressed = load_suppressions(campaign, self.warnings)
        sched = campaign.schedule
        self.zone_index = (
            self.file.find_column(sched.timezone_column, key="[schedule] timezone_column")
            if sched.timezone_column
            else None
        )
        problem = timing.check_send_at(sched, timing.now())
        if problem:
            raise ConfigError(campaign.path, problem)

    def _phone_column(self) -> int:
        """The column ``phone_column`` names, else the one headed ``phone`` (PRODUCT.md)."""
        rc = self.campaign.recipients
        if rc.phone_column_given:
            return self.file.find_column(rc.phone_column, key="phone_column")
        index = self.file.find_optional_column("phone", key="the phone column")
        if index is None:
            columns = ", ".join(f'"{visible(c)}"' for c in self.file.columns)
            raise InputFileError(
                self.file.path,
                f'has no column "phone" and the campaign file sets no phone_column; set [recipients] '
                f"phone_column to the header of the column holding the phone numbers (its columns are {columns})",
            )
        return index

    def _name_column(self) -> int | None:
        """The column ``name_column`` names, else the one headed ``name`` (PRODUCT.md), else None.

        Headers are matched ignoring case, spaces and invisible characters (``header_key``).
        """
        rc = self.campaign.recipients
        if rc.name_column:
            return self.file.find_column(rc.name_column, key="name_column")
        return self.file.find_optional_column("name", key="the name column")

    def prepare(self, row: SourceRow) -> Prepared:
        """Phone, suppression and rendering for one row (duplicates are decided by ``plan``)."""
        c = self.campaign
        n, cells = row.number, cells_json(row.cells)
        country = c.recipients.default_country
        if self.country_index is not None and row.cells[self.country_index].strip():
            try:
                country = phones.region_code(row.cells[self.country_index])
            except phones.PhoneError as err:
                return Prepared(
                    n,
                    cells,
                    "",
                    None,
                    Status.INVALID,
                    f"country: {err}; write one in column {c.recipients.country_column!r}",
                )
        try:
            number = phones.parse(
                row.cells[self.phone_index], country, whatsapp=self.whatsapp, countries=c.recipients.countries
            )
        except phones.PhoneError as err:
            return Prepared(n, cells, "", None, Status.INVALID, f"phone: {err}")
        phone = number.e164
        source = self.suppressed.source(phone, country)
        if source is not None:
            return Prepared(n, cells, phone, phone, Status.SKIPPED, f"suppressed ({source})")
        try:
            rendered = self.renderer.render(row.cells, phone)
        except RowInvalid as err:
            return Prepared(n, cells, phone, None, Status.INVALID, str(err))
        content = json.dumps(
            {k: rendered.body[k] for k in _CONTENT if k in rendered.body}, ensure_ascii=False, separators=(",", ":")
        )
        scheduled = rendered.scheduled
        zones: tuple[str, ...] = ()
        note = rendered.note
        sched = c.schedule
        if sched.needs_zone or sched.send_at is not None:
            column = row.cells[self.zone_index] if self.zone_index is not None else None
            try:
                zones = timing.row_zones(sched, column, phone, c.message.timezone)
                if sched.send_at is not None:
                    when = timing.send_at(sched, zones, timing.now())
                    note = when.note
                    if when.instant is not None:
                        rendered.body["schedule"] = timing.api_time(when.instant, zones)
                        scheduled = True
                if scheduled and sched.has_window:
                    # The API delivers a scheduled message at its time, so that time, not the
                    # moment of the request, must fall inside the recipient's quiet hours.
                    timing.check_in_window(sched, zones, rendered.body["schedule"])
            except timing.ZoneError as err:
                fix = f"; fix it in column {sched.timezone_column!r}" if column and column.strip() else ""
                return Prepared(n, cells, phone, None, Status.INVALID, f"schedule: {err}{fix}")
        body = encode(rendered.body)
        digest = hashlib.blake2b(body, digest_size=12).hexdigest()
        schedule_at = str(rendered.body.get("schedule", ""))
        job = Job(phone, n, body, digest, rendered.message, scheduled, content, zones, note, schedule_at)
        text = rendered.text if c.provider == "twlo" else None
        return Prepared(
            n,
            cells,
            phone,
            phone,
            None,
            job=job,
            text=text,
            blanks=rendered.blanks,
            region=number.region,
            landline=number.landline,
        )

    def batches(self) -> Iterator[list[Prepared]]:
        """Every row, prepared, in batches of BATCH rows growing to BATCH_MAX (see BATCH)."""
        size = BATCH
        for chunk in self.file.chunks(BATCH_MAX):
            start = 0
            while start < len(chunk):
                yield [self.prepare(r) for r in chunk[start : start + size]]
                start += size
                size = min(2 * size, BATCH_MAX)


def load_suppressions(campaign: Campaign, warnings: list[str] | None = None) -> Suppressions:
    """Every phone number in the ``suppress`` files, normalised; ``source`` names the file.

    Entries that are not phone numbers are appended to ``warnings`` as sentences; a file that
    cannot be read raises InputFileError (see campaign.suppression for the shapes read).
    """
    rc = campaign.recipients
    found = read_suppressions(rc.suppress, rc.phone_column, rc.default_country, rc.country_column)
    if warnings is not None:
        warnings.extend(found.warnings)
    return found


# --- in a second process --------------------------------------------------------------------


def _flat(p: Prepared) -> tuple[Any, ...]:
    """A Prepared as plain values: pickles ~20x faster than the dataclasses themselves."""
    job = p.job
    if job is None:
        return (p.row, p.cells, p.phone, p.key, p.status, p.error)
    assert job.key == p.key and job.row == p.row  # what _unflat rebuilds the job from
    return (
        p.row,
        p.cells,
        p.phone,
        p.key,
        p.status,
        p.error,
        job.body,
        job.payload_hash,
        job.message,
        job.scheduled,
        job.content,
        job.zones,
        job.note,
        job.schedule_at,
        p.text,
        p.blanks,
        p.region,
        p.landline,
    )


def _unflat(t: tuple[Any, ...]) -> Prepared:
    if len(t) == 6:
        return Prepared(*t)
    (number, cells, phone, key, status, error, body, digest, message, scheduled, content, zones, note, schedule_at,
     text, blanks, region, landline) = t
    job = Job(key, number, body, digest, message, scheduled, content, zones, note, schedule_at)
    return Prepared(number, cells, phone, key, status, error, job, text, blanks, region, landline)


def _write(fd: int, message: tuple[str, Any]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _child(pipeline: Pipeline, fd: int) -> None:
    """The child's whole life: prepare every batch, write it to the pipe, say how it ended."""
    try:
        for batch in pipeline.batches():
            _write(fd, ("rows", [_flat(p) for p in batch]))
        _write(fd, ("done", None))
    except BrokenPipeError:
        pass  # the parent stopped reading (it stopped early, or died): nothing left to do
    except CampaignError as err:
        try:
            pickle.loads(pickle.dumps(err))  # both ways: a class whose __init__ differs dumps but fails to load
        except Exception:  # an error class that cannot cross: keep its sentence, lose its class
            err = CampaignError(str(err))
        with contextlib.suppress(BrokenPipeError):
            _write(fd, ("error", err))
    except BaseException:  # a bug: hand the traceback to the parent, which reports it
        with contextlib.suppress(BrokenPipeError):
            _write(fd, ("crash", traceback.format_exc()))


def can_fork() -> bool:
    """Whether a child process may be forked here: a POSIX system where forking is safe (not
    macOS, whose system libraries are not fork-safe), and no other Python thread running."""
    return hasattr(os, "fork") and sys.platform != "darwin" and threading.active_count() == 1


class ChildPreparer:
    """``Pipeline.batches`` running in a forked child, read back over a pipe by the event loop.

    The pipe is the backpressure: the child gets at most a few MB of prepared rows ahead of
    the sender (the pipe and the reader's buffer), then blocks in ``write``.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, pipeline: Pipeline) -> None:
        read_fd, write_fd = os.pipe()
        # Signals that arrive while the child is half set up must not run the parent's handlers
        # in the child (they would write to the parent's event-loop wake-up socket).
        old = signal.pthread_sigmask(signal.SIG_BLOCK, self._SIGNALS)
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns about forking a multi-threaded process. can_fork() made sure
                # no Python thread runs; what remains are native pools (OpenBLAS, loaded with
                # numpy) that the child never calls.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # the child
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
                os.close(read_fd)
                _child(pipeline, write_fd)
            finally:
                os._exit(0)  # never run the parent's cleanup (state file, scratch files) here
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        os.close(write_fd)
        self.pid = pid
        self.finished = False
        self.ended = ""  # how the child ended, once reaped
        self._pipe = os.fdopen(read_fd, "rb", buffering=0)
        self._transport: asyncio.ReadTransport | None = None

    async def batches(self) -> AsyncIterator[list[Prepared]]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), self._pipe
        )
        while True:
            try:
                size = _FRAME.unpack(await reader.readexactly(_FRAME.size))[0]
                kind, data = pickle.loads(await reader.readexactly(size))
            except asyncio.IncompleteReadError:
                # Killed from outside (the OOM killer, a stray kill): the rows it had not
                # handed over were never planned, so they stay pending for the next run.
                self.close()
                raise RunStopped(
                    f"the process preparing rows ended without finishing ({self.ended}); "
                    "run the same command again to send the rest"
                ) from None
            if kind == "rows":
                yield [_unflat(t) for t in data]
            elif kind == "done":
                self.finished = True
                return
            elif kind == "error":
                raise data
            else:
                raise RuntimeError(f"preparing rows failed in the child process:\n{data}")

    def close(self) -> None:
        """Stop the child (if it still runs), reap it and close the pipe. Safe to call twice."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        else:
            self._pipe.close()
        if self.pid == 0:
            return
        if not self.finished:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        self.ended = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        self.pid = 0


async def _inline(pipeline: Pipeline) -> AsyncIterator[list[Prepared]]:
    for batch in pipeline.batches():
        yield batch


@contextlib.asynccontextmanager
async def prepared_batches(
    pipeline: Pipeline, *, child: bool | None = None
) -> AsyncIterator[AsyncIterator[list[Prepared]]]:
    """``async with prepared_batches(p) as batches: async for batch in batches: ...``

    ``child`` None means: in a child process when :func:`can_fork`, else inline.
    """
    if child is None:
        child = can_fork()
    if not child:
        yield _inline(pipeline)
        return
    preparer = ChildPreparer(pipeline)
    try:
        yield preparer.batches()
    finally:
        preparer.close()
