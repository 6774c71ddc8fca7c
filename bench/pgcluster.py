"""A throw-away PostgreSQL cluster for the tests and benchmarks: ``initdb`` and ``pg_ctl`` from
Debian's ``postgresql`` package, a free loopback port, trust authentication, no fsync.

Nothing in it is meant to outlive the process that started it: ``Cluster.stop`` removes the
data folder. PostgreSQL refuses to run as root, so as root the server runs as the ``postgres``
system user (created by the Debian package) through ``runuser``; the folder is made theirs.
``fsync = off`` is safe for what the tests prove (a commit survives the *process* that made
it being killed: the server, not the disk, holds it), never for a real campaign's database.

    with Cluster.start() as pg:
        url = pg.create_database("t1")   # postgresql://postgres@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

#: Where Debian puts the server programs (``initdb`` is not on PATH there).
_BIN_GLOBS = ("/usr/lib/postgresql/*/bin",)


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for pattern in _BIN_GLOBS:
        for folder in sorted(Path("/").glob(pattern.lstrip("/")), reverse=True):
            if (folder / name).exists():
                return str(folder / name)
    raise FileNotFoundError(f"{name} not found: install PostgreSQL (apt-get install postgresql)")


def available() -> bool:
    """Whether initdb and pg_ctl can be found."""
    try:
        _bin("initdb")
        _bin("pg_ctl")
    except FileNotFoundError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    folder: Path
    port: int
    user: str

    @classmethod
    def start(cls) -> Cluster:
        """initdb a new cluster in a temporary folder and start it on a free port."""
        folder = Path(tempfile.mkdtemp(prefix="campaign-pg-"))
        as_root = os.geteuid() == 0
        os.chmod(folder, 0o755)
        data = folder / "data"
        if as_root:
            shutil.chown(folder, "postgres", "postgres")
        port = _free_port()
        cluster = cls(folder, port, "postgres")
        cluster._run(_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        conf = (
            f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{folder}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
            "shared_buffers = 64MB\nlog_min_messages = warning\n"
        )
        with (data / "postgresql.conf").open("a") as handle:
            handle.write(conf)
        cluster._run(_bin("pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60", "start")
        return cluster

    def _run(self, *argv: str) -> None:
        cmd = list(argv)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd=self.folder)

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` database."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def halt(self) -> None:
        """Stop the server at once (as if its host went away); :meth:`restart` brings it back."""
        self._run(_bin("pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")

    def restart(self) -> None:
        """Start the halted server again, on the same port, with the same data."""
        self._run(_bin("pg_ctl"), "-D", str(self.folder / "data"), "-l", str(self.folder / "log"), "-w", "start")

    def stop(self) -> None:
        """Stop the server (immediately) and remove its folder."""
        with suppress(subprocess.CalledProcessError):
            self._run(_bin("pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def cluster() -> Iterator[Cluster]:
    """``with cluster() as pg:`` a running throw-away cluster."""
    c = Cluster.start()
    try:
        yield c
    finally:
        c.stop()
