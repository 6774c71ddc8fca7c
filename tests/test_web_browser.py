"""The web page end to end in a real browser: Debian's chromium, driven by Playwright.

Never Playwright's own browser download (it cannot work here): ``executable_path`` is the
system chromium, which ``.ci/run`` installs when missing. The flow is issue 14's: open the URL
with its token, create a campaign, upload a spreadsheet with bad rows and see them
highlighted, upload a fixed file (as .xlsx), preview, send to the sandbox, follow the progress to the end
(closing the tab and opening it again), download the results and compare them row for row
with what the sandbox received. Every page is checked at 375 px wide (a phone): nothing
wider than the screen, no JavaScript error. Set CAMPAIGN_WEB_SCREENSHOTS=docs/screenshots to
refresh the README's screenshots.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import openpyxl
import pytest

from tests.webserver import web_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTH = 375

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):  # .ci/run installs it: missing there is a failure, not a skip
        raise RuntimeError("chromium is not installed; .ci/run installs it with apt-get")
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")

BAD = (
    "Phone,first_name,order_id\n"
    "+1 617 555 0101,Ann,A-1\n"
    "617-555-01,Bob,A-2\n"  # too short: invalid
    "+1 617 555 0103,Cy,A-3\n"
    "+1 617 555 0101,Ann again,A-4\n"  # duplicate of row 2
    "12,Dee,A-5\n"  # invalid
)
FIXED = BAD.replace("617-555-01,", "617-555-0102,").replace("12,Dee", "(617) 555-0105,Dee")


def test_upload_check_fix_preview_send_follow_download(tmp_path: Path) -> None:
    shots = Path(os.environ.get("CAMPAIGN_WEB_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    folder = tmp_path / "campaigns"
    folder.mkdir()
    (tmp_path / "orders.csv").write_text(BAD, encoding="utf-8")
    fixed = openpyxl.Workbook()  # fixed in a spreadsheet program, saved as .xlsx
    sheet = fixed.active
    assert sheet is not None
    for line in FIXED.splitlines():
        sheet.append(line.split(","))
    fixed.save(tmp_path / "orders-fixed.xlsx")
    errors: list[str] = []

    with web_server(folder, "--sandbox") as server, sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": WIDTH, "height": 800},
            accept_downloads=True,
        )
        page = context.new_page()

        def watch(p: sync_api.Page) -> None:
            p.on("pageerror", lambda e: errors.append(str(e)))
            p.on("console", lambda m: errors.append(f"{m.text} {m.location}") if m.type == "error" else None)

        def shot(p: sync_api.Page, name: str) -> None:
            width = p.evaluate("document.documentElement.scrollWidth")
            assert width <= WIDTH, f"{name}: the page is {width} px wide at {WIDTH} px"
            p.screenshot(path=str(shots / f"web-{name}.png"), full_page=True)

        watch(page)
        page.goto(server.url)
        assert page.url == server.base + "/"  # the token went into a cookie
        assert "No campaign files" in page.inner_text("main")
        page.click("text=New campaign >> nth=1")
        page.fill("input[name=name]", "orders")
        page.fill("input[name=channel_key]", "twlo_16175550100")
        page.fill("textarea[name=text]", "Hi {{ first_name }}, order {{ order_id }} is ready.")
        page.fill("input[name=phone_column]", "phone")  # matched as the reader does: any case
        page.set_input_files("input[name=file]", str(tmp_path / "orders.csv"))
        shot(page, "new")
        page.click("button[type=submit]")

        # Check: the problem rows, the bad cell highlighted, the reason beside it.
        assert page.url.endswith("/c/orders")
        assert "5 rows: 2 can be sent, 2 have problems, 1 skipped." in page.inner_text("#check-banner")
        cells = page.locator(".problem-cell")
        assert cells.all_inner_texts() == ["617-555-01", "12", "+1 617 555 0101"]
        reasons = page.locator("tr.reason").all_inner_texts()
        assert any("duplicate of row 2" in r for r in reasons)
        assert [r.get_attribute("data-row") for r in page.locator(".problem-row").all()] == ["3", "6", "5"]
        shot(page, "check")

        page.set_input_files("#upload-fixed input[name=file]", str(tmp_path / "orders-fixed.xlsx"))
        page.click("#upload-fixed button")
        assert "5 rows: 4 can be sent, 1 skipped." in page.inner_text("#check-banner")
        assert page.locator("tr.problem-row").count() == 1  # the duplicate, still shown
        # The campaign file now names the workbook, so `campaign send orders.toml` reads it too.
        assert 'file = "orders.recipients.xlsx"' in (folder / "orders.toml").read_text(encoding="utf-8")
        assert not (folder / "orders.recipients.csv").exists()

        page.click("text=Preview the messages")
        bubbles = page.locator(".bubble").all_inner_texts()
        assert bubbles[:2] == ["Hi Ann, order A-1 is ready.", "Hi Bob, order A-2 is ready."]
        assert "1 (GSM-7" in page.locator(".segments").first.inner_text()
        shot(page, "preview")

        page.click("text=Send…")
        question = page.inner_text("#send-question")
        assert question == "Send 4 messages via twlo channel twlo_16175550100 (to the sandbox)?"
        shot(page, "send")
        page.click("#send-button")
        assert page.url.endswith("/c/orders/run")
        page.close()  # close the tab; the send goes on in the server

        page = context.new_page()
        watch(page)
        page.goto(f"{server.base}/c/orders/run")
        page.wait_for_selector("text=Finished: 4 of 4 sent", timeout=20_000)
        shot(page, "run")

        page.click("#results-link")
        # The sandbox posted delivery reports to the server's listener: the funnel shows them.
        funnel = page.inner_text("#funnel")
        assert "accepted\t4\t100.0%" in funnel
        shot(page, "results")
        with page.expect_download() as got:
            page.click("#download-csv")
        results = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text(encoding="utf-8-sig"))))
        with page.expect_download() as got:
            page.click("#download-xlsx")
        assert got.value.suggested_filename == "orders.sandbox.results.xlsx"
        got.value.save_as(tmp_path / "results.xlsx")
        book = openpyxl.load_workbook(tmp_path / "results.xlsx", read_only=True)
        sheet = book.active
        assert sheet is not None
        workbook_rows = [[c or "" for c in row] for row in sheet.iter_rows(values_only=True)]
        book.close()

        page.goto(f"{server.base}/sandbox")
        shot(page, "sandbox")
        with page.expect_download() as got:
            page.click("#download-sandbox")
        record = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text(encoding="utf-8"))))

        page.goto(server.base + "/")
        assert "4 sent" in page.inner_text("#campaign-orders")
        shot(page, "campaigns")
        context.close()

    # The results file and the sandbox's record agree row for row.
    sent = [r for r in results if r["status"] == "sent"]
    assert [r["row"] for r in results] == ["2", "3", "4", "5", "6"]
    assert [r["status"] for r in results] == ["sent", "sent", "sent", "skipped", "sent"]
    by_id = {m["message_id"]: m for m in record}
    assert len(record) == len(sent) == 4
    for r in sent:
        m = by_id[r["message_id"]]
        assert (m["to"], m["text"]) == (r["phone"], r["message"])
    assert workbook_rows[0] == list(results[0]) and workbook_rows[1:] == [list(r.values()) for r in results]
    assert errors == []
