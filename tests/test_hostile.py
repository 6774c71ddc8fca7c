"""Hostile and broken recipients files, run through the real `campaign` command.

Every file is made here, in tmp_path, by the test itself (no binary fixtures in the
repository): what Excel, Google Sheets and CRMs export, what a careless rename produces, and
what someone who wants to attack whoever opens the results would put in a cell. The promise
(PRODUCT.md, "Errors" and "The results file"): the user sees every problem before a single
message goes out, as one sentence naming the file, the row, column or sheet and what to do;
nothing crashes, the API key never shows, and the results file cannot run a formula.

docs/hostile-files.md lists each file and the sentence it produces.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import sqlite3
import subprocess
import textwrap
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import xlwt  # type: ignore[import-untyped]

from campaign.config import load_campaign
from campaign.errors import ConfigError, InputFileError
from campaign.results import write_results
from campaign.spreadsheet import open_recipients
from tests.conftest import KEY
from tests.test_cli import read_results, run

NAME = "hostile"
MESSAGE = "Hi {{ first_name }}: {{ note }}"
Value = str | int | float | None  # what a test puts in a spreadsheet cell


def write_campaign(
    folder: Path,
    recipients_file: str,
    *,
    sheet: str | None = None,
    text: str = MESSAGE,
    api_url: str = "https://api.sociocs.com",
) -> Path:
    """A campaign file in ``folder`` reading ``recipients_file``; returns its path."""
    sheet_line = f'sheet = "{sheet}"' if sheet else ""
    path = folder / f"{NAME}.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name = "{NAME}"
            provider = "twlo"
            channel_key = "twlo_16175550000"
            api_url = "{api_url}"

            [recipients]
            file = "{recipients_file}"
            {sheet_line}
            phone_column = "Phone"
            name_column = "Name"
            default_country = "US"

            [message]
            text = "{text}"

            [sending]
            rate = 0
            concurrency = 4
            max_attempts = 2
            timeout = 5
            """
        ),
        encoding="utf-8",
    )
    return path


def xlsx_bytes(sheets: dict[str, list[list[Value]]]) -> bytes:
    """A real .xlsx written by openpyxl, one sheet per entry, in memory."""
    book = openpyxl.Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


GOOD_BOOK: dict[str, list[list[Value]]] = {
    "Sheet": [["Phone", "Name", "first_name", "note"], [16175550100, "Ann Lee", "Ann", "hello"]]
}


def rezip(original: bytes, target: Path, replace: dict[str, Callable[[zipfile.ZipFile, str], None]]) -> None:
    """Copy a zip archive member by member, letting ``replace`` write some members itself."""
    with (
        zipfile.ZipFile(io.BytesIO(original)) as src,
        zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out,
    ):
        for info in src.infolist():
            if info.filename in replace:
                replace[info.filename](out, info.filename)
            else:
                out.writestr(info.filename, src.read(info))


def zeros(out: zipfile.ZipFile, member: str) -> None:
    """300 MB of zeros, compressed on the fly in 1 MiB chunks (~0.6 s, 1.4 MB on disk)."""
    chunk = bytes(1 << 20)
    with out.open(member, "w") as handle:  # a bare name: the archive's ZIP_DEFLATED, level 1
        for _ in range(300):
            handle.write(chunk)


LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1)) * 10) for i in range(1, 10))
    + b"]>"
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    b'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&lol9;</t></is></c></row>'
    b"</sheetData></worksheet>"
)

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)


Make = Callable[[Path], None]


def _bytes(data: bytes) -> Make:
    def make(path: Path) -> None:
        path.write_bytes(data)

    return make


def _zip_bomb(path: Path) -> None:
    rezip(xlsx_bytes(GOOD_BOOK), path, {"xl/worksheets/sheet1.xml": zeros})


def _laughs(path: Path) -> None:
    rezip(xlsx_bytes(GOOD_BOOK), path, {"xl/worksheets/sheet1.xml": lambda out, m: out.writestr(m, LAUGHS)})


def _truncated(path: Path) -> None:
    data = xlsx_bytes(GOOD_BOOK)
    path.write_bytes(data[: len(data) // 2])


def _two_sheets(path: Path) -> None:
    path.write_bytes(xlsx_bytes({"Contacts 2024": GOOD_BOOK["Sheet"], "Notes": [["hello"]]}))


def _merged_title(path: Path) -> None:
    """A title merged across the columns above the real header, as reports often have."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet["A1"] = "Spring 2024 contacts"
    sheet.merge_cells("A1:D1")
    for row in GOOD_BOOK["Sheet"]:
        sheet.append(row)
    book.save(path)


# id: (file name, how to make it, campaign sheet, fragments the error sentence must hold)
REFUSED: dict[str, tuple[str, Make, str | None, tuple[str, ...]]] = {
    "empty": ("empty.csv", _bytes(b""), None, ("is empty",)),
    "header-only": ("header.csv", _bytes(b"Phone,Name,first_name,note\r\n"), None, ("header (row 1)", "no rows")),
    "no-phone-column": (
        "nophone.csv",
        _bytes(b"Mobile,Name,first_name,note\n+16175550100,Ann Lee,Ann,hi\n"),
        None,
        ('no column "Phone"', 'its columns are "Mobile", "Name", "first_name", "note"', "phone_column"),
    ),
    "duplicate-headers": (
        "dupes.csv",
        _bytes(b"Phone,Name,first_name,note,name\n+16175550100,Ann Lee,Ann,hi,x\n"),
        None,
        ("duplicate column names", '"Name" (columns 2 and 5)', "rename"),
    ),
    "png-named-csv": ("photo.csv", _bytes(PNG), None, ("NUL byte", "binary file")),
    "xlsx-named-csv": ("book.csv", _bytes(xlsx_bytes(GOOD_BOOK)), None, ("zip archive", "name it .xlsx")),
    "truncated-xlsx": ("half.xlsx", _truncated, None, ("damaged or incomplete", "download it again")),
    "encrypted-xlsx": (
        "locked.xlsx",
        _bytes(codecs.decode("d0cf11e0a1b11ae1", "hex") + bytes(4096)),
        None,
        ("password-protected", "remove the password", "save it as .xlsx or .csv"),
    ),
    "zip-bomb": ("bomb.xlsx", _zip_bomb, None, ("xl/worksheets/sheet1.xml", "314,572,800", "zip bomb")),
    "billion-laughs": ("laughs.xlsx", _laughs, None, ("xl/worksheets/sheet1.xml", "entit")),
    "missing-sheet": (
        "sheets.xlsx",
        _two_sheets,
        "Customers",
        ('no sheet "Customers"', 'its sheets are "Contacts 2024", "Notes"'),
    ),
    "2mb-line": (
        "long.csv",
        _bytes(b"Phone,Name,first_name,note\n+16175550100,Ann Lee,Ann," + b"x" * (2 << 20) + b"\n"),
        None,
        ("line 2", "longer than 1 MiB"),
    ),
    "nul-bytes": (
        "nul.csv",
        _bytes(b"Phone,Name,first_name,note\n+16175550100,Ann Lee,Ann,hi\n+16175550101,Bo\x00b,Bob,hi\n"),
        None,
        ("line 3", "NUL byte"),
    ),
    "undecodable": (
        "cp.csv",
        _bytes(b"Phone,Name,first_name,note\n+16175550100,Jos\xe9,Jos\xe9,hi\n+16175550101,A\x81B,A,hi\n"),
        None,
        ("line 3", "0x81", "UTF-8", "Windows-1252", "save the file as CSV UTF-8"),
    ),
    "pdf": (
        "contacts.pdf",
        _bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
        None,
        ('".pdf" file', ".csv, .tsv, .txt, .xlsx, .xlsm, .xls, .ods"),
    ),
}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """Every REFUSED file through `campaign check`, a few at a time (each run is ~1 s of start-up).

    `send` opens the file through the same function, so one `check` per file is enough here;
    test_send_refuses_before_sending proves it for `send`.
    """
    runs: dict[str, tuple[Path, Future[subprocess.CompletedProcess[str]]]] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for case, (filename, make, sheet, _) in REFUSED.items():
            folder = tmp_path_factory.mktemp(case)
            make(folder / filename)
            path = write_campaign(folder, filename, sheet=sheet)
            runs[case] = (folder, pool.submit(run, "check", str(path), cwd=folder, key=KEY))
    return {case: (folder, future.result()) for case, (folder, future) in runs.items()}


def phone_cell(result: dict[str, str]) -> str:
    """The input Phone cell of a results row (it may become "Phone_input" once the results
    file stops clashing with its own "phone"; see test_results_file_reads_back_as_recipients)."""
    return result["Phone_input"]


def sent_in_state(folder: Path) -> int:
    """Rows the state files (a real one, a --sandbox one) record as sent (0 without any)."""
    sent = 0
    for state in (folder / f"{NAME}.state.sqlite", folder / f"{NAME}.sandbox.state.sqlite"):
        if state.exists():
            with contextlib.closing(sqlite3.connect(state)) as db:  # `with connect()` alone never closes
                sent += int(db.execute("SELECT count(*) FROM recipients WHERE status = 'sent'").fetchone()[0])
    return sent


def assert_refused(
    proc: subprocess.CompletedProcess[str], folder: Path, filename: str, fragments: tuple[str, ...]
) -> None:
    """Exit 2, one sentence on stderr naming the file and holding every fragment, nothing sent."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output and "internal error" not in output, output
    assert KEY not in output
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    sentence = lines[0]
    assert sentence.startswith(f"error: {folder / filename}: "), sentence
    for fragment in fragments:
        assert fragment in sentence, sentence
    assert sent_in_state(folder) == 0


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_by_check(refusals: dict[str, tuple[Path, subprocess.CompletedProcess[str]]], case: str) -> None:
    filename, _, _, fragments = REFUSED[case]
    folder, proc = refusals[case]
    assert_refused(proc, folder, filename, fragments)
    assert not (folder / f"{NAME}.check.csv").exists()


def test_send_refuses_before_sending(tmp_path: Path) -> None:
    """`send` opens the file the same way: a file broken on its last line sends nothing."""
    good = "".join(f"+1617555{i:04d},Person {i},P{i},hi\n" for i in range(3000))
    (tmp_path / "late.csv").write_bytes(b"Phone,Name,first_name,note\n" + good.encode() + b"+16175559999,A\x81B,A,hi\n")
    path = write_campaign(tmp_path, "late.csv")
    proc = run("send", str(path), "--sandbox", "--yes", cwd=tmp_path, key=KEY)
    assert_refused(proc, tmp_path, "late.csv", ("line 3002", "0x81"))
    assert not (tmp_path / f"{NAME}.sandbox.results.csv").exists() or not [
        r for r in read_results(tmp_path / f"{NAME}.sandbox.results.csv") if r["status"] == "sent"
    ]


def test_plain_http_api_url_refused(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("Phone,Name,first_name,note\n+16175550100,Ann Lee,Ann,hi\n", encoding="utf-8")
    path = write_campaign(tmp_path, "c.csv", api_url="http://api.example.com")
    proc = run("send", str(path), "--yes", cwd=tmp_path, key=KEY)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output and KEY not in output
    assert "http://api.example.com" in proc.stderr and "use https" in proc.stderr
    assert sent_in_state(tmp_path) == 0


# --- legacy workbooks: read, not refused ------------------------------------------------


LEGACY_ROWS: list[list[Value]] = [
    ["Phone", "Name", "first_name", "note"],
    [16175550100, "Ann Lee", "Ann", "hi"],
    ["+1 617 555 0101", "Bo Diaz", "Bo", "hello"],
    ["12345", "Cy Bad", "Cy", "oops"],
]


def _ods(path: Path) -> None:
    frame = pd.DataFrame(LEGACY_ROWS[1:], columns=LEGACY_ROWS[0])
    with pd.ExcelWriter(path, engine="odf") as writer:
        frame.to_excel(writer, sheet_name="Contacts", index=False)


def _xls(path: Path) -> None:
    book = xlwt.Workbook()
    sheet = book.add_sheet("Contacts")
    for r, row in enumerate(LEGACY_ROWS):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    book.save(str(path))


def test_merged_title_row_above_the_header_is_skipped(tmp_path: Path) -> None:
    _merged_title(tmp_path / "title.xlsx")  # once refused: its title was taken as the header
    file = open_recipients(tmp_path / "title.xlsx", phone_column="Phone")
    assert (file.header_row, file.columns) == (2, ("Phone", "Name", "first_name", "note"))
    assert [(r.number, r.cells) for c in file.chunks() for r in c] == [(3, ("16175550100", "Ann Lee", "Ann", "hello"))]


@pytest.mark.parametrize(("filename", "make"), [("contacts.ods", _ods), ("contacts.xls", _xls)])
def test_legacy_workbooks_are_sent(tmp_path: Path, filename: str, make: Make) -> None:
    make(tmp_path / filename)
    path = write_campaign(tmp_path, filename)
    proc = run("send", str(path), "--sandbox", "--yes", cwd=tmp_path, key=KEY)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output  # row 4 has a bad phone number
    assert "Traceback" not in output and KEY not in output
    rows = read_results(tmp_path / f"{NAME}.sandbox.results.csv")  # a --sandbox run keeps its own
    assert [(r["row"], r["phone"], r["status"]) for r in rows] == [
        ("2", "+16175550100", "sent"),
        ("3", "+16175550101", "sent"),
        ("4", "", "invalid"),
    ]
    assert phone_cell(rows[0]) == "16175550100"  # a number cell, not "16175550100.0"
    assert rows[0]["message"] == "Hi Ann: hi"
    assert sent_in_state(tmp_path) == 2


# --- the messy spreadsheet a new user really has ----------------------------------------

INJECTIONS = ['=HYPERLINK("http://evil","x")', "@SUM(1+1)", "+cmd|'/C calc'!A0"]
TEMPLATE_IN_CELL = "{{ 7*7 }}"

# (phone cell, Name, first_name, note); None is a blank row. Row numbers as Excel shows them.
MESSY: list[tuple[Value, str, str, str] | None] = [
    (16175550100, "Ann Lee", "Ann", "plain"),  # 2: a number cell (int)
    (16175550101.0, "Bo Diaz", "Bo", "float"),  # 3: a number cell (float)
    ("+1 617 555 0102", "Cy Ng", "Cy", "text with spaces"),  # 4
    ("(617) 555-0103", "Di Fox", "Di", "no country code"),  # 5: default_country US
    None,  # 6
    None,  # 7
    (16175550100, "Ann again", "Ann", "duplicate"),  # 8: duplicate of row 2
    ("+16175550104", '=CONCATENATE("Ed"," Kay")', "Ed", "formula name"),  # 9
    ("+16175550105", "Fi Roe", "Fi", INJECTIONS[0]),  # 10
    ("+16175550106", "Gus Tan", "Gus", INJECTIONS[1]),  # 11
    ("+16175550107", "Hal Ito", "Hal", INJECTIONS[2]),  # 12
    ("+16175550108", "Ivy Wu", "Ivy", TEMPLATE_IN_CELL),  # 13
    ("12345", "Jo Short", "Jo", "too short"),  # 14
    ("call me", "Kim Text", "Kim", "not a number"),  # 15
]
GOOD_ROWS = {"2", "3", "4", "5", "9", "10", "11", "12", "13"}
EXPECTED = {**{r: "sent" for r in GOOD_ROWS}, "8": "skipped", "14": "invalid", "15": "invalid"}
HEADER = ["Phone", "Name", "first_name", "note"]
EVIL_HEADER = '=HYPERLINK("http://evil","header")'  # a whole column, in the CSV variant
MESSY_TEXT = "Hi {{ first_name }}: {{ note }} ({{ name }})"


def _messy_xlsx(path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Contacts"
    sheet.append(HEADER)
    for number, row in enumerate(MESSY, start=2):
        if row is None:
            continue
        for column, value in enumerate(row, start=1):
            cell = sheet.cell(number, column, value)
            if column == 4:
                cell.data_type = "s"  # typed text (what '=... in Excel gives), not a formula
    book.save(path)
    # openpyxl stores the formula alone (a workbook like that is refused: nothing shows what
    # Excel would); store its result as Excel does when it saves, a text result typed "str"
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    sheet_xml = parts["xl/worksheets/sheet1.xml"].decode()
    saved = sheet_xml.replace('<c r="B9"><f>', '<c r="B9" t="str"><f>').replace("</f><v />", "</f><v>Ed Kay</v>")
    assert saved != sheet_xml
    parts["xl/worksheets/sheet1.xml"] = saved.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


def _messy_csv(path: Path) -> None:
    """What Excel on a French or Spanish Windows writes: cp1252, ";" between cells, CRLF."""
    accents = {"Ann": "Anaïs", "Bo": "José", "Cy": "Núñez", "Di": "Zoë €"}
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";")
    writer.writerow([*HEADER, EVIL_HEADER])
    for row in MESSY:
        if row is None:
            writer.writerow([])
            continue
        phone, name, first, note = row
        if isinstance(phone, float):
            phone = f"{phone:.0f}"
        if str(name).startswith("="):
            name = "Ed Kay"  # a CSV holds no formulas, only what they showed
        writer.writerow([phone, name, accents.get(first, first), note, ""])
    path.write_bytes(buffer.getvalue().encode("cp1252"))


@pytest.mark.parametrize(("filename", "make"), [("messy.xlsx", _messy_xlsx), ("messy.csv", _messy_csv)])
def test_messy_spreadsheet(tmp_path: Path, filename: str, make: Make) -> None:
    make(tmp_path / filename)
    path = write_campaign(tmp_path, filename, text=MESSY_TEXT)

    check = run("check", str(path), cwd=tmp_path, key=KEY)
    output = check.stdout + check.stderr
    assert check.returncode == 1, output
    assert "Traceback" not in output and KEY not in output
    assert "Sendable: 9" in check.stdout
    invalid = [line for line in check.stdout.splitlines() if "invalid (" in line]
    assert invalid and "14" in " ".join(invalid) and "15" in " ".join(invalid), check.stdout
    assert "Duplicates skipped: 1" in check.stdout
    report = read_results(tmp_path / f"{NAME}.check.csv")
    check_status = {r["row"]: r["status"] for r in report}
    assert check_status == {**EXPECTED, **{r: "dry-run" for r in GOOD_ROWS}}
    assert [r["note"] for r in report if r["row"] in ("10", "11", "12")] == ["'" + i for i in INJECTIONS]
    assert sent_in_state(tmp_path) == 0

    send = run("send", str(path), "--sandbox", "--yes", cwd=tmp_path, key=KEY)
    output = send.stdout + send.stderr
    assert send.returncode == 1, output
    assert "Traceback" not in output and KEY not in output
    results_path = tmp_path / f"{NAME}.sandbox.results.csv"
    assert KEY not in results_path.read_text(encoding="utf-8-sig")
    rows = read_results(results_path)
    by_row = {r["row"]: r for r in rows}
    assert {r: by_row[r]["status"] for r in by_row} == EXPECTED
    assert sum(r["status"] == "sent" for r in rows) == len(GOOD_ROWS) == sent_in_state(tmp_path)
    assert all(by_row[r]["message_id"] for r in GOOD_ROWS)
    assert by_row["8"]["error"] == "duplicate of row 2"

    # Phones: numbers stay numbers, never floats, and a plain phone number is not "neutralised".
    assert [by_row[r]["phone"] for r in ("2", "3", "4", "5")] == [f"+1617555010{i}" for i in range(4)]
    assert phone_cell(by_row["2"]) == "16175550100" and phone_cell(by_row["3"]) == "16175550101"
    assert phone_cell(by_row["4"]) == "'+1 617 555 0102"  # + and not only digits: Excel would compute it

    # Injection cells come back with a leading ' in their own column; the message is data.
    for row, payload in zip(("10", "11", "12"), INJECTIONS, strict=True):
        assert by_row[row]["note"] == "'" + payload
        assert by_row[row]["message"] == f"Hi {by_row[row]['first_name']}: {payload} ({by_row[row]['Name']})"
    assert by_row["13"]["note"] == TEMPLATE_IN_CELL
    assert by_row["13"]["message"] == "Hi Ivy: {{ 7*7 }} (Ivy Wu)" and "49" not in by_row["13"]["message"]

    assert by_row["9"]["Name"] == "Ed Kay"  # the formula's saved result, as the CSV holds it
    assert by_row["9"]["message"] == "Hi Ed: formula name (Ed Kay)"
    assert "{{ name }} is empty" not in check.stdout
    if filename.endswith(".csv"):
        assert by_row["3"]["first_name"] == "José" and by_row["5"]["first_name"] == "Zoë €"
        assert by_row["3"]["message"] == "Hi José: float (Bo Diaz)"
        assert "'" + EVIL_HEADER in rows[0]  # a header is a cell like any other


# --- gaps this corpus found, now fixed -----------------------------------------------------


def test_results_file_reads_back_as_recipients(tmp_path: Path) -> None:
    """PRODUCT.md: the results file "is itself a valid recipients file" - with a "Phone" column too."""
    path = tmp_path / "back.results.csv"
    row = ("+1 617 555 0100", "Ann", "2", "+16175550100", "sent", "m1", "", "200", "1", "Hi", "2026-01-01T00:00:00")
    write_results(path, ("Phone", "Name"), [(row[:2], *row[2:])])
    back = open_recipients(path)
    assert back.columns[:3] == ("Phone_input", "Name", "row")
    assert back.columns[back.find_column("Phone")] == "phone"  # reads the E.164 number back


def test_plain_http_sentence_ends_once(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, "c.csv", api_url="http://api.example.com")
    with pytest.raises(ConfigError) as caught:
        load_campaign(path, environ={})
    assert not str(caught.value).endswith(".."), str(caught.value)


def test_ods_zip_bomb_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.ods"
    _ods(good)

    def twenty_mib(out: zipfile.ZipFile, member: str) -> None:
        out.writestr(member, bytes(20 << 20))

    rezip(good.read_bytes(), tmp_path / "bomb.ods", {"content.xml": twenty_mib})
    with pytest.raises(InputFileError, match="zip bomb"):
        open_recipients(tmp_path / "bomb.ods")


def test_a_results_file_being_written_by_another_worker_is_left_alone(tmp_path: Path) -> None:
    """Two workers of one campaign in one folder finish together: each writes its own temporary
    copy and renames it; neither deletes the other's (only a copy left minutes ago by a killed
    run is removed)."""
    target = tmp_path / "c.results.csv"
    fresh = tmp_path / ".c.results.csv.other.tmp"
    stale = tmp_path / ".c.results.csv.killed.tmp"
    fresh.write_text("being written")
    stale.write_text("left by a killed run")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert write_results(target, ["Phone"], [(("+16175550100",), 2, "+16175550100", "sent")]) == 1
    assert fresh.exists() and not stale.exists()
    assert target.read_text(encoding="utf-8-sig").splitlines()[1].startswith("+16175550100,2,")
