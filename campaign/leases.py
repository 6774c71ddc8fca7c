"""Leases on a shared campaign's rows (issue 15): the ``workers`` table, claims, heartbeats,
reaping, and the prepared requests a planner leaves for any worker. PostgreSQL only (``FOR
UPDATE SKIP LOCKED``); :mod:`campaign.workers` runs them. Timing: a worker writes its heartbeat
every ``lease / 5`` seconds; one silent for ``lease`` seconds (CAMPAIGN_LEASE_SECONDS, default
15, on the database's clock) is lost. Source: PostgreSQL 15 manual, SELECT "The Locking Clause"
(SKIP LOCKED) and 9.9.5 "Current Date/Time" (clock_timestamp).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from campaign import timing
from campaign.config import Campaign
from campaign.database import Database
from campaign.sender import Job
from campaign.state import State

LEASE_ENV = "CAMPAIGN_LEASE_SECONDS"
DEFAULT_LEASE = 15.0  # seconds without a heartbeat after which a worker is presumed dead


def lease_seconds() -> float:
    """How long a worker may be silent before it is presumed dead (seconds)."""
    try:
        return max(1.0, float(os.environ.get(LEASE_ENV, DEFAULT_LEASE)))
    except ValueError:
        return DEFAULT_LEASE


def encode_job(job: Job) -> str:
    """A prepared request as the state keeps it for any worker (no API key: it is a header)."""
    data = asdict(job)
    data["body"] = job.body.decode("utf-8")
    data["zones"] = list(job.zones)
    return json.dumps(data, separators=(",", ":"))


def decode_job(text: str) -> Job:
    data = json.loads(text)
    data["body"] = data["body"].encode("utf-8")
    data["zones"] = tuple(data["zones"])
    return Job(**data)


def fingerprint(campaign: Campaign, asked: tuple[object, ...] = ()) -> str | None:
    """SHA-256 of the campaign file, the spreadsheet, the suppression files, the message as
    loaded (a ``text_file`` is read into it) and what the run ``asked`` (--retry-failed and the
    like, which plan anew instead of joining a plan that left those rows): whether a plan is of
    these very inputs. None when the spreadsheet is not on this host."""
    digest = hashlib.sha256(repr((campaign.message, campaign.schedule, asked)).encode())
    files = [campaign.path, campaign.recipients.file, *campaign.recipients.suppress]
    for path in files:
        try:
            with Path(path).open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            return None
        digest.update(b"\0")
    return digest.hexdigest()


def _machine() -> str:
    """This boot of this machine (Linux's boot_id; else the host name): two hosts that share a
    name are still told apart, so only this machine's own dead processes are reaped early."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:
        return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]


def _alive(pid: int) -> bool:
    """Whether a process of this host has this pid (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _now_ms(db: Database) -> float:
    return float(db.execute("SELECT extract(epoch FROM clock_timestamp()) * 1000").fetchone()[0])


class Coordinator:
    """This worker's row in ``workers``, and the leases it takes and gives back."""

    def __init__(self, state: State, *, planner: bool) -> None:
        self.state = state
        self.db = state.db
        self.id = f"{_machine()}-{uuid.uuid4().hex[:12]}"
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.planner = planner
        self.lease = lease_seconds()

    def register(self) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO workers (id, host, pid, started_at, heartbeat_ms, state, planner)"
                " VALUES (?, ?, ?, ?, ?, 'running', ?)",
                (
                    self.id,
                    self.host,
                    self.pid,
                    timing.now().isoformat(timespec="seconds"),
                    _now_ms(self.db),
                    int(self.planner),
                ),
            )

    def heartbeat(self) -> bool:
        """Renew this worker's lease; False when another worker has already declared it lost."""
        cur = self.db.execute(
            "UPDATE workers SET heartbeat_ms = ? WHERE id = ? AND state = 'running'", (_now_ms(self.db), self.id)
        )
        return cur.rowcount == 1

    def planned(self) -> None:
        """The planner has read the whole file: joiners may finish once the queue is empty."""
        self.planner = False
        self.db.execute("UPDATE workers SET planner = 0 WHERE id = ?", (self.id,))

    def reap(self) -> int:
        """Declare workers silent for longer than the lease lost: their ``sending`` rows become
        ``unknown`` (keeping the lease, so a late answer from a worker that was only paused
        still lands), their other claims go back to the pool. A worker of this host whose
        process is gone (a rerun after a crash) is lost at once. Returns the workers reaped."""
        with self.db.transaction():
            cutoff = _now_ms(self.db) - self.lease * 1000
            running = self.db.execute(
                "SELECT id, host, pid, heartbeat_ms < ? FROM workers WHERE state = 'running' AND id != ?"
                " FOR UPDATE SKIP LOCKED",
                (cutoff, self.id),
            ).fetchall()
            here = _machine() + "-"
            dead = [(w, h, p) for w, h, p, silent in running if silent or (w.startswith(here) and not _alive(int(p)))]
            for worker_id, host, pid in dead:
                self.db.execute(
                    "UPDATE recipients SET status = 'unknown', reconciled = '', error = ? WHERE status = 'sending'"
                    " AND lease_owner = ?",
                    (
                        f"the worker on {host} (pid {pid}) stopped answering while this request was in flight; "
                        "it may have been delivered",
                        worker_id,
                    ),
                )
                self.db.execute(
                    "UPDATE recipients SET lease_owner = '' WHERE status != 'sending' AND status != 'unknown'"
                    " AND lease_owner = ?",
                    (worker_id,),
                )
                self.db.execute("UPDATE workers SET state = 'lost' WHERE id = ?", (worker_id,))
        return len(dead)

    def queue(self, jobs: Sequence[Job]) -> None:
        """Leave the planned rows in the pool for any worker (pending, with their request)."""
        if not jobs:
            return
        with self.db.transaction():
            self.db.executemany(
                "UPDATE recipients SET job = ?, status = 'pending', not_before = '', lease_owner = ''"
                " WHERE key = ? AND status != 'sending' AND (lease_owner = '' OR status != 'pending')",
                [(encode_job(j), j.key) for j in jobs],
            )

    def clear_queue(self) -> None:
        """A new plan replaces the last one's queued rows (a row it still wants is queued again)."""
        self.db.execute("UPDATE recipients SET job = '' WHERE status = 'pending' AND lease_owner = ''")

    def claim(self, n: int) -> list[Job]:
        """Lease up to ``n`` queued rows whose time has come, in spreadsheet order."""
        if n <= 0:
            return []
        at = timing.now().isoformat()
        with self.db.transaction():
            rows = self.db.execute(
                "UPDATE recipients SET lease_owner = ? WHERE key IN (SELECT key FROM recipients"
                " WHERE status = 'pending' AND job != '' AND lease_owner = '' AND (not_before = '' OR not_before <= ?)"
                " ORDER BY row LIMIT ? FOR UPDATE SKIP LOCKED) RETURNING row, job",
                (self.id, at, n),
            ).fetchall()
        return [decode_job(job) for _, job in sorted(rows)]

    def outstanding(self) -> tuple[int, str]:
        """Queued rows not yet done by anyone (free now, or leased by a worker), and the
        earliest ``not_before`` of the rows waiting for their window ('' when none)."""
        at = timing.now().isoformat()
        (busy,) = self.db.execute(
            "SELECT count(*) FROM recipients WHERE job != '' AND ((status = 'pending'"
            " AND (not_before = '' OR not_before <= ? OR lease_owner != '')) OR status = 'sending')",
            (at,),
        ).fetchone()
        (later,) = self.db.execute(
            "SELECT min(not_before) FROM recipients WHERE job != '' AND status = 'pending' AND not_before > ?",
            (at,),
        ).fetchone()
        return int(busy), later or ""

    def planner_alive(self, lock_key: str) -> bool:
        """Whether another run holds the campaign's lock (``lock_key``, campaign.store): a
        planner that may still queue rows, even one that has not registered yet. Probed with
        ``pg_try_advisory_lock`` and released at once; never call it while holding the lock."""
        got = self.db.execute("SELECT pg_try_advisory_lock(hashtextextended(?, 0))", (lock_key,)).fetchone()[0]
        if got:
            self.db.execute("SELECT pg_advisory_unlock(hashtextextended(?, 0))", (lock_key,))
        return not got

    def leave(self) -> None:
        """Give back every row this worker holds but did not send, and sign off."""
        with self.db.transaction():
            self.db.execute(
                "UPDATE recipients SET lease_owner = '' WHERE lease_owner = ? AND status = 'pending'", (self.id,)
            )
            self.db.execute("UPDATE workers SET state = 'finished', planner = 0 WHERE id = ?", (self.id,))


def workers(state: State) -> list[dict[str, Any]]:
    """Every worker this campaign has had, newest first: host, pid, started, seconds since its
    last heartbeat, state (running / finished / lost, or ``silent`` for one still marked running
    whose heartbeat is older than the lease or whose process on this machine is gone: presumed
    dead, reaped by the next worker) and rows in flight (``sending``)."""
    if "workers" not in state.db.tables() or state.db.dialect != "postgresql":
        return []
    now = _now_ms(state.db)
    cur = state.db.execute(
        "SELECT w.id, w.host, w.pid, w.started_at, w.heartbeat_ms, w.state, w.planner,"
        " (SELECT count(*) FROM recipients r WHERE r.lease_owner = w.id AND r.status = 'sending')"
        " FROM workers w ORDER BY w.started_at DESC, w.id"
    )
    out = []
    lease = lease_seconds()
    here = _machine() + "-"
    for wid, host, pid, started, beat, wstate, planner, flying in cur.fetchall():
        gone = wid.startswith(here) and not _alive(int(pid))  # this machine's, and its process is gone
        if wstate == "running" and (gone or now - float(beat) > lease * 1000):
            wstate = "silent"
        out.append(
            {
                "id": wid,
                "host": host,
                "pid": int(pid),
                "started_at": started,
                "heartbeat_age": max(0.0, (now - float(beat)) / 1000),
                "state": wstate,
                "planner": bool(planner),
                "in_flight": int(flying),
            }
        )
    return out
