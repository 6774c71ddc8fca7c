"""Shared pieces of the benchmarks: test data, campaign files, servers, process measurement.

Nothing here is timed itself. Data files are generated once into ``bench/out/cache`` (gitignored)
and reused; every run works in its own folder under ``bench/out/runs``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
CACHE = OUT / "cache"
RUNS = OUT / "runs"
PYTHON = sys.executable
API_KEY = "benchuser01:benchsecret0123456789abcdef"
HEADER = ("Phone", "Name", "first_name", "order_id", "Email", "City")
MESSAGE = "Hi {{ first_name }}, your order {{ order_id }} is ready for pick-up."
_CITIES = ("Boston", "Chicago", "Denver", "Austin", "Seattle", "Miami", "Portland", "Phoenix")

# --- numbers and files -------------------------------------------------------------------

_CAPACITY = 1_000_000  # 100 (area code, exchange) prefixes x 10,000 line numbers
_STRIDE = 7_919 * 13  # coprime with 10**6: a fixed shuffle of the million numbers


def _prefixes() -> list[tuple[int, int]]:
    """100 (area code, exchange) pairs whose whole 0000-9999 range phonenumbers finds valid."""
    import phonenumbers

    def valid(npa: int, nxx: int) -> bool:
        return all(
            phonenumbers.is_valid_number(phonenumbers.parse(f"+1{npa}{nxx}{line}")) for line in ("0000", "5555", "9999")
        )

    area_codes = [npa for npa in range(212, 990) if valid(npa, 200) and valid(npa, 299)]
    picked: list[tuple[int, int]] = []
    for npa in area_codes[:: max(1, len(area_codes) // 12)]:
        for nxx in range(200, 300, 10):
            if valid(npa, nxx):
                picked.append((npa, nxx))
    if len(picked) < 100:
        raise RuntimeError("not enough valid US prefixes in this phonenumbers version")
    return picked[:100]


def phone_numbers(n: int) -> Iterator[str]:
    """n distinct valid US numbers written like ``+1 (617) 2XX-XXXX``, in a shuffled order."""
    if n > _CAPACITY:
        raise ValueError(f"at most {_CAPACITY:,} distinct numbers")
    prefixes = _prefixes()
    for i in range(n):
        j = (i * _STRIDE) % _CAPACITY
        npa, nxx = prefixes[j // 10_000]
        yield f"+1 ({npa}) {nxx}-{j % 10_000:04d}"


def rows(n: int) -> Iterator[tuple[str, ...]]:
    for i, phone in enumerate(phone_numbers(n)):
        yield (phone, f"Person {i}", f"P{i}", f"A-{100000 + i}", f"p{i}@example.com", _CITIES[i % len(_CITIES)])


def csv_file(n: int) -> Path:
    """A cached CSV of n rows (the first n of the same million)."""
    path = CACHE / f"contacts-{n}.csv"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            writer.writerows(rows(n))
        tmp.replace(path)
    return path


def xlsx_file(n: int) -> Path:
    """A cached .xlsx of the same n rows (openpyxl write-only; slow to make: ~20 s per 100k)."""
    path = CACHE / f"contacts-{n}.xlsx"
    if not path.exists():
        import openpyxl

        CACHE.mkdir(parents=True, exist_ok=True)
        book = openpyxl.Workbook(write_only=True)
        sheet = book.create_sheet("Contacts")
        sheet.append(list(HEADER))
        for row in rows(n):
            sheet.append(list(row))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.xlsx")
        book.save(tmp)
        tmp.replace(path)
    return path


def campaign_file(folder: Path, recipients: Path, *, api_url: str, rate: float, concurrency: int,
                  name: str = "bench") -> Path:
    """A twlo campaign (text template, name column) whose state and results live in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\n'
        'provider = "twlo"\n'
        'channel_key = "twlo_16175550100"\n'
        f'api_url = "{api_url}"\n\n'
        "[recipients]\n"
        f"file = {json.dumps(str(recipients))}\n"
        'phone_column = "Phone"\n'
        'name_column = "Name"\n'
        'default_country = "US"\n\n'
        "[message]\n"
        f"text = {json.dumps(MESSAGE)}\n\n"
        "[sending]\n"
        f"rate = {rate}\n"
        f"concurrency = {concurrency}\n"
        "timeout = 30\n",
        encoding="utf-8",
    )
    return path


def fresh(folder: Path, name: str = "bench") -> None:
    """Forget a campaign's state, results and report so the next send starts from scratch."""
    for pattern in (f"{name}.state.sqlite*", f"{name}.results.csv", f"{name}.check.csv", f".{name}.*"):
        for p in folder.glob(pattern):
            p.unlink()


def run_folder(label: str, workdir: Path | None = None) -> Path:
    """Where one benchmark keeps its campaign, state and results (``workdir`` overrides)."""
    folder = (workdir or RUNS) / label
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def count_results(path: Path) -> dict[str, int]:
    """Rows per status in a results CSV."""
    counts: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


# --- servers -----------------------------------------------------------------------------


def http_json(url: str, method: str = "GET", timeout: float = 30.0) -> dict[str, object]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data: dict[str, object] = json.loads(response.read())
    return data


class Server:
    """A server subprocess (``bench.fastserver`` or ``campaign sandbox``) and its URL."""

    def __init__(self, argv: Sequence[str], kind: str) -> None:
        self.argv = list(argv)
        self.kind = kind
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=ROOT
        )
        self.url = ""
        self._drainer: threading.Thread | None = None
        deadline = time.monotonic() + 30
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "http://" in line:
                self.url = "http://" + line.split("http://", 1)[1].split()[0]
                break
        if not self.url:
            self.close()
            raise RuntimeError(f"server did not start: {shlex.join(self.argv)}")
        # Keep draining its output so a chatty server never blocks on a full pipe.
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far (from /proc)."""
        with open(f"/proc/{self.proc.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def arrivals(self) -> list[float]:
        """Arrival times (time.monotonic of the server) of the POST /message requests."""
        if self.kind == "sandbox":
            log = http_json(f"{self.url}/_sandbox/requests")["requests"]
            assert isinstance(log, list)
            return sorted(r["at"] for r in log if r["path"] == "/message" and r["method"] == "POST")
        data = http_json(f"{self.url}/_stats")
        arrivals = data["arrivals"]
        assert isinstance(arrivals, list)
        return [float(a) for a in arrivals]

    def statuses(self) -> dict[int, int]:
        """Sandbox only: POST /message requests per HTTP status answered."""
        log = http_json(f"{self.url}/_sandbox/requests")["requests"]
        assert isinstance(log, list)
        out: dict[int, int] = {}
        for r in log:
            if r["path"] == "/message":
                out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def stats(self) -> dict[str, object]:
        return http_json(f"{self.url}/_stats?arrivals=0")

    def reset(self) -> None:
        if self.kind != "sandbox":
            http_json(f"{self.url}/_reset", method="POST")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._drainer is not None:
            self._drainer.join(10)  # the pipe is at EOF once the server is gone
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fast_server(latency: float = 0.0, flavour: str = "raw") -> Server:
    argv = [PYTHON, "-m", "bench.fastserver", "--port", "0", "--flavour", flavour]
    if latency:
        argv += ["--latency", str(latency)]
    return Server(argv, "fast")


def sandbox_server(*extra: str) -> Server:
    return Server([PYTHON, "-m", "campaign", "sandbox", "--port", "0", *extra], "sandbox")


# --- measuring a process -----------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["SOCIOCS_API_KEY"] = API_KEY
    env.setdefault("PYTHONHASHSEED", "0")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["COLUMNS"] = "120"
    return env


def campaign_argv(*args: str, patch: str | None = None) -> list[str]:
    """``campaign ...`` run with this interpreter (``python -m campaign``), or with a proposed
    change patched in (``python -m bench.patched PATCH ...``, see bench/patched.py)."""
    if patch:
        return [PYTHON, "-m", "bench.patched", patch, *args]
    return [PYTHON, "-m", "campaign", *args]


@dataclass
class Measured:
    """One finished child process."""

    argv: list[str]
    returncode: int
    wall: float  # seconds from launch to exit
    started: float  # time.monotonic() just before launch
    maxrss_mb: float  # kernel high-water mark of the child's RSS (wait4 ru_maxrss)
    polled_peak_mb: float | None  # highest RSS seen by psutil polling (None without psutil)
    cpu: float  # user + system seconds of the child
    output: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def measure(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = 900.0, poll: float = 0.05,
            env: dict[str, str] | None = None) -> Measured:
    """Run argv to the end; wall time, peak RSS (wait4 and psutil polling) and CPU time."""
    log = (cwd or OUT) / f".measure-{os.getpid()}-{time.monotonic_ns()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    peak = 0
    try:
        import psutil
    except ImportError:
        psutil = None
    with log.open("w+") as handle:
        started = time.monotonic()
        proc = subprocess.Popen(list(argv), stdout=handle, stderr=subprocess.STDOUT, cwd=cwd or ROOT,
                                env=env or _env())
        watched = psutil.Process(proc.pid) if psutil is not None else None
        deadline = started + timeout
        status = None
        usage = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if watched is not None:
                with contextlib.suppress(psutil.Error):
                    peak = max(peak, watched.memory_info().rss)
            if time.monotonic() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(poll)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        handle.seek(0)
        output = handle.read()
    log.unlink()
    return Measured(
        argv=list(argv),
        returncode=proc.returncode,
        wall=wall,
        started=started,
        maxrss_mb=usage.ru_maxrss / 1024,
        polled_peak_mb=peak / 2**20 if watched is not None else None,
        cpu=usage.ru_utime + usage.ru_stime,
        output=output,
    )


# --- reporting ---------------------------------------------------------------------------


def machine() -> str:
    """nproc, memory and CPU model, Python and the date: the context of every figure."""
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    model = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: nproc {os.cpu_count()}, MemTotal {mem}, {model}; Python {platform.python_version()}; "
        f"load average {load}; {datetime.now(UTC).isoformat(timespec='seconds')}"
    )


def code_version() -> str:
    """The commit measured, and whether campaign/ had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "campaign"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "code: unknown (no git)"
    return f"code: commit {head or '?'}" + (" + uncommitted changes in campaign/" if dirty else "")


def command(module: str, argv: Sequence[str]) -> str:
    return "python -m " + module + (" " + shlex.join(argv) if argv else "")


def header(module: str, argv: Sequence[str]) -> None:
    print(f"# {module}")
    print(f"reproduce: cd {ROOT} && {command(module, argv)}")
    print(machine())
    print(code_version())
    sys.stdout.flush()


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def write_json(path: Path | None, data: dict[str, object]) -> None:
    """Save a benchmark's figures (``--json``), for the smoke test and for RESULTS.md."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
