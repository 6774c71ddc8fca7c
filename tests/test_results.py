"""The results file on its own: the cells no spreadsheet program runs, the header, the atomic write.

Each test reads back the real file `write_results` wrote (bytes or the csv module), never a
string the test built itself. The rule (OWASP "CSV Injection"): a text cell starting ``=``,
``+``, ``-``, ``@``, tab, CR or LF gets a leading ``'``, except a plain number or E.164.
"""

from __future__ import annotations

import csv
import os
import stat
import time
from pathlib import Path

import pytest

from campaign.results import (
    DELIVERY_COLUMNS,
    RESULT_COLUMNS,
    STALE_AFTER,
    as_written,
    neutralise,
    output_columns,
    write_results,
)

OURS = ("2", "+16175550100", "sent", "SM1", "", 200, 1, "Hi", "2026-12-01T00:00:00Z")


def read_back(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("\rcmd", "'\rcmd"),
        ("\ncmd", "'\ncmd"),
        ("-", "'-"),
        ("-x", "'-x"),
        ("-12", "-12"),
        ("-12.", "'-12."),
        ("-.5", "'-.5"),
        ("-1E+3", "-1E+3"),
        ("-1e", "'-1e"),
        ("-12.5x", "'-12.5x"),
        ("+16175550100x", "'+16175550100x"),
        ("x=1", "x=1"),
        ("'=1", "'=1"),
        ("", ""),
        (12, "12"),
    ],
)
def test_neutralise_each_start(cell: object, expected: str) -> None:
    assert neutralise(cell) == expected


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("'=1+1", "=1+1"),
        ("'\nx", "\nx"),
        ("'+1-415", "+1-415"),
        ("'+16175550100", "'+16175550100"),  # a ' before E.164 was typed, not added
        ("'-12.5", "'-12.5"),
        ("'", "'"),
        ("'x", "'x"),
        ("=1", "=1"),
        ("", ""),
    ],
)
def test_as_written_undoes_only_what_neutralise_added(cell: str, shown: str) -> None:
    assert as_written(cell) == shown


@pytest.mark.parametrize("cell", ["=1+1", "@A1", "+1-415-555-0180", "\tx", "-1-2", "plain", "+16175550100", "-3"])
def test_as_written_is_the_inverse_of_neutralise(cell: str) -> None:
    assert as_written(neutralise(cell)) == cell


def test_output_columns_order_and_renames() -> None:
    assert output_columns(["Name", " Status ", "MESSAGE_ID"]) == [
        "Name",
        " Status _input",
        "MESSAGE_ID_input",
        *RESULT_COLUMNS,
    ]
    assert output_columns(["Name", "delivery_status"], DELIVERY_COLUMNS) == [
        "Name",
        "delivery_status_input",
        *RESULT_COLUMNS,
        *DELIVERY_COLUMNS,
    ]
    assert output_columns(["delivery_status"]) == ["delivery_status", *RESULT_COLUMNS]


def test_write_results_writes_every_row_neutralised_with_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "out" / "today" / "c.results.csv"  # the folders are made
    rows = [
        (("=HYPERLINK(1)", "Ann"), *OURS),
        (("\nx", None), "3", "+16175550101", "failed", None, "bad", 400, 1, "-1+2", "t"),
    ]
    count = write_results(path, ["Note", "@Name"], rows, extra=("delivery_status",))
    assert count == 2
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\xef\xbb\xbf") == 1
    assert b"\r\n" in raw  # the csv module's line ends, not the platform's
    assert read_back(path) == [
        ["Note", "'@Name", *RESULT_COLUMNS, "delivery_status"],
        ["'=HYPERLINK(1)", "Ann", "2", "+16175550100", "sent", "SM1", "", "200", "1", "Hi", "2026-12-01T00:00:00Z"],
        ["'\nx", "", "3", "+16175550101", "failed", "", "bad", "400", "1", "'-1+2", "t"],
    ]


def test_write_results_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "c.results.csv"
    assert write_results(path, ["A"], [(("1",), *OURS)] * 3) == 3
    assert write_results(path, ["A"], []) == 0
    assert read_back(path) == [["A", *RESULT_COLUMNS]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.results.csv"]


@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o027, 0o640)])
def test_write_results_mode_follows_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    """Readable like any file the user makes (mkstemp alone would make it owner-only)."""
    old = os.umask(umask)
    try:
        path = tmp_path / "c.results.csv"
        write_results(path, ["A"], [])
        assert os.umask(umask) == umask  # the umask is as it was
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_stale_temporaries_go_and_fresh_ones_stay(tmp_path: Path) -> None:
    path = tmp_path / "c.results.csv"
    stale = tmp_path / ".c.results.csv.killed.tmp"
    fresh = tmp_path / ".c.results.csv.other-worker.tmp"
    other = tmp_path / ".d.results.csv.old.tmp"  # another campaign's
    for p in (stale, fresh, other):
        p.write_text("partial")
    old = time.time() - STALE_AFTER - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    almost = time.time() - STALE_AFTER + 60
    os.utime(fresh, (almost, almost))
    gone = tmp_path / ".c.results.csv.vanished.tmp"  # removed by another worker as we look
    gone.symlink_to(tmp_path / "nothing")
    write_results(path, ["A"], [])
    assert not stale.exists()
    assert fresh.exists() and other.exists()
    assert STALE_AFTER == 300.0


def test_the_rows_are_written_to_a_hidden_temporary_beside_the_file(tmp_path: Path) -> None:
    """While rows are written, the file is a ``.<name>.<random>.tmp`` in the same folder (so
    ``os.replace`` is atomic, and a killed run's copy is found and removed by the next)."""
    path = tmp_path / "c.results.csv"
    seen: list[list[str]] = []

    def rows() -> object:
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        yield (("x",), *OURS)

    write_results(path, ["A"], rows())  # type: ignore[arg-type]
    [names] = seen
    [name] = names
    assert name.startswith(".c.results.csv.") and name.endswith(".tmp") and len(name) > len(".c.results.csv..tmp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.results.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "c.results.csv"
    write_results(path, ["A"], [(("old",), *OURS)])
    before = path.read_bytes()

    def rows() -> object:
        yield (("new",), *OURS)
        raise KeyboardInterrupt  # a stop while rows are read from the state

    with pytest.raises(KeyboardInterrupt):
        write_results(path, ["A"], rows())  # type: ignore[arg-type]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.results.csv"]


def test_a_failed_write_whose_temporary_is_already_gone_raises_its_own_error(tmp_path: Path) -> None:
    """Another worker of the campaign may take a slow write's temporary for a stale one and
    remove it: the write's own error is what the caller sees, not the cleanup's."""
    path = tmp_path / "c.results.csv"

    def rows() -> object:
        for leftover in tmp_path.glob(".c.results.csv.*.tmp"):
            leftover.unlink()
        yield (("x",), *OURS)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_results(path, ["A"], rows())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
