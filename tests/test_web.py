"""``campaign web`` over real HTTP: what it refuses, and that it sends through the runner.

The server runs in a child process (``campaign web DIR --port 0``); the sandbox API too.
The browser flow is in test_web_browser.py.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from campaign import store
from campaign.config import for_sandbox, load_campaign
from campaign.runner import Options
from campaign.sandbox import Faults, Sandbox, SandboxConfig, spawn
from campaign.web.app import start
from campaign.web.jobs import Jobs
from campaign.web.site import Site
from tests.conftest import KEY, CampaignFactory, contacts, has_state, write_csv
from tests.webserver import web_server


def test_every_page_needs_the_token_then_a_cookie(tmp_path: Path, make_campaign: CampaignFactory) -> None:
    make_campaign(contacts(2))
    with web_server(tmp_path, "--sandbox") as server:
        for path in ("/", "/new", "/c/test", "/c/test/results", "/static/style.css", "/sandbox.csv"):
            r = requests.get(server.base + path, timeout=10)
            assert r.status_code == 403, path
            assert "token" in r.text
        assert requests.get(f"{server.base}/?token=wrong{server.token}", timeout=10).status_code == 403
        s = requests.Session()
        r = s.get(server.url, allow_redirects=False, timeout=10)
        assert r.status_code == 303
        assert r.headers["Location"] == "/"  # the token leaves the address bar
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page = s.get(server.base + "/", timeout=10)
        assert page.status_code == 200 and "test" in page.text
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["Referrer-Policy"] == "no-referrer"
        # A second server on the same machine: cookies ignore ports, yet neither evicts the other.
        with web_server(tmp_path, "--sandbox") as other:
            assert s.get(other.url, timeout=10).status_code == 200
            assert s.get(server.base + "/", timeout=10).status_code == 200
            assert s.get(other.base + "/", timeout=10).status_code == 200


def test_forms_without_the_csrf_token_are_refused(tmp_path: Path, make_campaign: CampaignFactory) -> None:
    make_campaign(contacts(2))
    with web_server(tmp_path, "--sandbox") as server:
        s = server.session()
        csrf = server.csrf(s)
        for data in ({}, {"csrf": "forged"}):
            assert s.post(f"{server.base}/c/test/send", data=data, timeout=10).status_code == 403
            assert s.post(f"{server.base}/c/test/stop", data=data, timeout=10).status_code == 403
            assert s.post(f"{server.base}/c/test/reconcile", data=data, timeout=10).status_code == 403
        form = {"name": "fresh", "provider": "twlo", "channel_key": "twlo_1", "text": "Hi"}
        upload = {"file": ("c.csv", b"phone\n+16175550101\n")}
        assert s.post(f"{server.base}/new", data=form, files=upload, timeout=10).status_code == 403
        # The token must come first: a file before it is never stored.
        r = s.post(f"{server.base}/new", files={"file": ("c.csv", b"phone\n"), "csrf": (None, csrf)}, timeout=10)
        assert r.status_code == 403
        assert not has_state(tmp_path / "test.toml", sandbox=True)  # nothing was sent
        assert sorted(p.name for p in tmp_path.iterdir()) == ["contacts.csv", "test.toml"]


def test_downloads_and_campaign_names_cannot_leave_the_folder(tmp_path: Path, make_campaign: CampaignFactory) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_text("phone\n+1 not yours\n", encoding="utf-8")
    (tmp_path / "secret.sandbox.csv").write_text("phone\n+1 not yours\n", encoding="utf-8")  # what --sandbox reads
    write_csv(folder / "contacts.csv", contacts(2))
    # A hand-written campaign whose results file is outside the folder: never served.
    (folder / "out.toml").write_text(
        'name = "out"\nprovider = "twlo"\nchannel_key = "twlo_1"\n[recipients]\nfile = "contacts.csv"\n'
        'phone_column = "Phone"\n[message]\ntext = "Hi"\n[output]\nresults = "../secret.csv"\n',
        encoding="utf-8",
    )
    with web_server(folder, "--sandbox") as server:
        s = server.session()
        for path in (
            "/c/out/download/results.csv",  # the sandbox results path, outside the folder
            "/c/out/download/..%2F..%2Fsecret.csv",
            "/c/..%2Fsecret/download/results.csv",
            "/c/%2e%2e/results",
            "/static/..%2F..%2F..%2Fconfig.py",
            "/static/%2e%2e/app.py",
        ):
            r = s.get(server.base + path, timeout=10)
            assert r.status_code in (403, 404), path
            assert "not yours" not in r.text
        (folder / "two words.toml").write_text((folder / "out.toml").read_text(encoding="utf-8"), encoding="utf-8")
        index = s.get(server.base + "/", timeout=10).text
        assert "two words.toml: this page opens campaign files named with letters" in index
        assert 'href="/c/two words"' not in index and 'href="/c/out"' in index
        # The real (non-sandbox) results path, ../secret.csv, is refused the same way.
        campaign = load_campaign(folder / "out.toml")
        assert campaign.results == secret.resolve()
        csrf = server.csrf(s)
        # A hand-written campaign file is never rewritten: a fixed file must be of its kind.
        r = s.post(f"{server.base}/c/out/upload", data={"csrf": csrf}, files={"file": ("x.xlsx", b"PK")}, timeout=10)
        assert r.status_code == 400
        assert "This campaign reads contacts.csv: upload a .csv file (or change [recipients] file)." in r.text
        assert (folder / "out.toml").read_text(encoding="utf-8").count('file = "contacts.csv"') == 1
        assert not any(folder.glob(".upload-*"))
        # An upload's own name never becomes a path.
        form = {
            "csrf": csrf,
            "name": "evil",
            "provider": "twlo",
            "channel_key": "twlo_1",
            "text": "Hi",
            "default_country": "US",
        }
        r = s.post(
            f"{server.base}/new", data=form, files={"file": ("../../evil.csv", b"phone\n+16175550101\n")}, timeout=10
        )
        assert r.status_code == 200 and r.url.endswith("/c/evil")
        assert (folder / "evil.recipients.csv").read_bytes() == b"phone\n+16175550101\n"
        assert not (tmp_path / "evil.csv").exists() and not any(tmp_path.glob("*.upload*"))
        bad_name = dict(form, name="../evil2")
        r = s.post(f"{server.base}/new", data=bad_name, files={"file": ("c.csv", b"phone\n")}, timeout=10)
        assert r.status_code == 400 and "cannot be used" in r.text
        assert not (tmp_path / "evil2.toml").exists()
        assert not any(folder.glob(".upload-*"))


def test_an_oversized_upload_is_refused_with_a_sentence_and_not_kept(tmp_path: Path) -> None:
    with web_server(tmp_path, "--sandbox", "--max-upload-mb", "0.01") as server:
        s = server.session()
        csrf = server.csrf(s)
        big = b"phone\n" + b"+16175550101\n" * 2000  # 26 KB > 10 KB
        form = {"csrf": csrf, "name": "big", "provider": "twlo", "channel_key": "twlo_1", "text": "Hi"}
        r = s.post(f"{server.base}/new", data=form, files={"file": ("big.csv", big)}, timeout=10)
        assert r.status_code == 400
        assert "big.csv is larger than the 10 KB this page accepts" in r.text
        assert "--max-upload-mb" in r.text
        assert list(tmp_path.iterdir()) == []
        r = s.post(f"{server.base}/new", data=form, files={"file": ("big.exe", b"MZ")}, timeout=10)
        assert r.status_code == 400 and "upload the recipients as .csv" in r.text
        assert list(tmp_path.iterdir()) == []


def test_the_api_key_never_reaches_the_browser(tmp_path: Path, make_campaign: CampaignFactory) -> None:
    """Not sandbox mode: the page sends with SOCIOCS_API_KEY, here to a sandbox that wants it."""
    with spawn("--api-key", KEY) as api:
        make_campaign(contacts(3), api_url=api)
        with web_server(tmp_path, env={"SOCIOCS_API_KEY": KEY}) as server:
            s = server.session()
            pages = [s.get(server.base + p, timeout=10).text for p in ("/", "/c/test", "/c/test/preview")]
            cost = s.get(f"{server.base}/c/test?price=0.0079", timeout=10).text
            assert "About 0.02 for 3 segments at 0.0079 each." in cost
            confirm = s.get(f"{server.base}/c/test/send", timeout=10).text
            assert "Send 3 messages via twlo channel twlo_16175550000?" in confirm
            r = s.post(f"{server.base}/c/test/send", data={"csrf": server.csrf(s)}, timeout=10)
            assert r.url.endswith("/c/test/run")
            pages.append(_wait_finished(s, f"{server.base}/c/test/run"))
            pages += [s.get(f"{server.base}/c/test/{p}", timeout=10).text for p in ("results", "download/results.csv")]
            assert "3 sent" in pages[-2] or ">3<" in pages[-2]
            assert pages[-1].count(",sent,") == 3
            secret = KEY.split(":")[1]
            for page in pages:
                assert KEY not in page and secret not in page
            assert not any(secret in line for line in server.output)


@pytest.mark.backend("sqlite", "postgresql")
def test_the_page_and_the_cli_share_the_campaign_lock(tmp_path: Path, make_campaign: CampaignFactory) -> None:
    path = make_campaign(contacts(2))
    with web_server(tmp_path, "--sandbox") as server:
        s = server.session()
        # as a `campaign send test.toml --sandbox` would hold it
        with store.lock(for_sandbox(load_campaign(path), "http://127.0.0.1:1")):
            s.post(f"{server.base}/c/test/send", data={"csrf": server.csrf(s)}, timeout=10)
            page = _wait_finished(s, f"{server.base}/c/test/run")
        assert "The send did not run: Campaign &#39;test&#39; is already being sent" in page
        assert "sent" not in re.sub(r"being sent|already being sent", "", page.split('id="run-state"')[1][:200])


def test_the_host_option_warns_when_not_loopback(tmp_path: Path, make_campaign: CampaignFactory) -> None:
    make_campaign(contacts(2))
    with web_server(tmp_path, "--host", "0.0.0.0") as server:
        assert any("warning: listening on 0.0.0.0" in line for line in server.output)
    with web_server(tmp_path, env={"SOCIOCS_API_KEY": ""}) as server:
        assert not any("warning" in line for line in server.output)
        # Not sandbox mode and no key: the confirmation says what to do instead of asking.
        page = server.session().get(f"{server.base}/c/test/send", timeout=10).text
        assert "Set SOCIOCS_API_KEY in the environment of `campaign web`" in page
        assert 'id="send-button"' not in page


def test_stop_is_ctrl_c_the_run_ends_cleanly_and_resumes(tmp_path: Path, make_campaign: CampaignFactory) -> None:
    """The page's Stop: requests in flight finish, the rest stay pending, the next send sends
    each remaining row once (the sandbox's record has every row exactly once)."""
    path = make_campaign(contacts(40), sending="rate = 0\nconcurrency = 2\ntimeout = 5")

    async def go() -> tuple[int, int, int]:
        async with Sandbox(SandboxConfig(api_key=KEY, faults=Faults(latency=0.05))) as box:
            campaign = for_sandbox(load_campaign(path), box.url)
            options = Options(api_key=KEY, sandbox=True, prepare_in_child=False)
            jobs = Jobs()
            job = jobs.start("test", campaign, options)
            while job.outcomes.total() < 4:
                await asyncio.sleep(0.01)
            job.stop.set()
            assert job.task is not None
            await job.task
            assert job.summary is not None and job.summary.interrupted
            first = len(box.accepted)
            pending = job.summary.counts["pending"]
            again = jobs.start("test", campaign, options)
            assert again.task is not None
            await again.task
            assert again.summary is not None and again.summary.counts["sent"] == 40
            return first, pending, len({m.to for m in box.accepted})

    first, pending, distinct = asyncio.run(go())
    assert 4 <= first < 40 and pending == 40 - first
    assert distinct == 40


async def _until_sending(s: aiohttp.ClientSession, url: str) -> str:
    """Reload ``url`` (as the page does itself) until it says rows are being sent; its text."""
    page, deadline = "", time.monotonic() + 60  # a guard against hanging, not a timing check
    while not re.search(r"Sending: [1-9]", page):
        assert time.monotonic() < deadline, page
        page = await (await s.get(url)).text()
        await asyncio.sleep(0.02)
    return page


async def _stop(s: aiohttp.ClientSession, base: str, site: Site) -> tuple[aiohttp.ClientResponse, Any]:
    """Press Stop and wait for the send's task to end; the answer and the job."""
    stopped = await s.post(f"{base}/c/test/stop", data={"csrf": site.keys.csrf})
    job = site.jobs.get("test")
    assert job is not None and job.task is not None
    await job.task
    return stopped, job


def _wait_finished(s: requests.Session, url: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = s.get(url, timeout=10).text
        if 'http-equiv="refresh"' not in page:
            return page
        time.sleep(0.2)
    raise AssertionError("the send did not finish")


@pytest.mark.backend("sqlite", "postgresql")
def test_results_page_reconciles_unknown_rows_and_sends_failed_rows_again(
    tmp_path: Path, make_campaign: CampaignFactory
) -> None:
    """In-process server (to set the sandbox's faults between sends): a blocked number fails,
    accepted-then-500 rows are unknown; reconcile finds those sent, and "send the failed rows
    again" sends only the failed one. Each number reaches the sandbox exactly once."""
    make_campaign(contacts(3))

    async def go() -> tuple[list[str], str, str, str]:
        site = Site(tmp_path)
        runner, url = await start(site, "127.0.0.1", 0, sandbox=True)
        base = url.split("/?")[0]
        assert site.sandbox is not None
        site.sandbox.config.faults = Faults(accept_then_500=1.0, blocked=frozenset({"+16175550000"}))
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                await (await s.get(url)).text()
                csrf = {"csrf": site.keys.csrf}
                await s.post(f"{base}/c/test/send", data=csrf)
                job = site.jobs.get("test")
                assert job is not None and job.task is not None
                await job.task
                first = await (await s.get(f"{base}/c/test/results")).text()
                site.sandbox.config.faults = Faults()
                reconciled = await (await s.post(f"{base}/c/test/reconcile", data=csrf)).text()
                confirm = await (await s.get(f"{base}/c/test/send?retry_failed=1")).text()
                await s.post(f"{base}/c/test/send", data={**csrf, "retry_failed": "1"})
                job = site.jobs.get("test")
                assert job is not None and job.task is not None
                await job.task
                final = await (await s.get(f"{base}/c/test/download/results.csv")).text()
                return [m.to for m in site.sandbox.accepted], first, reconciled + confirm, final
        finally:
            await runner.cleanup()
            await site.sandbox.close()

    accepted, first, after, final = asyncio.run(go())
    assert "2 rows with an unknown outcome" in first and "Send the 1 failed row again" in first
    assert "Checked 2 unknown rows: 2 were sent" in after
    assert "Send 1 message via twlo channel" in after
    assert final.count(",sent,") == 3
    assert sorted(accepted) == ["+16175550000", "+16175550001", "+16175550002"]


def test_hostile_uploads_meet_the_cli_defences_and_cells_are_shown_escaped(tmp_path: Path) -> None:
    with web_server(tmp_path, "--sandbox") as server:
        s = server.session()
        form = {
            "csrf": server.csrf(s),
            "provider": "twlo",
            "channel_key": "twlo_1",
            "default_country": "US",
            "text": "Hi {{ name }}",
        }
        # A zip archive named .csv: the recipients reader's own sentence, no traceback.
        zipped = b"PK\x03\x04" + b"\x00" * 200
        r = s.post(f"{server.base}/new", data={**form, "name": "zip"}, files={"file": ("z.csv", zipped)}, timeout=10)
        assert r.status_code == 200 and r.url.endswith("/c/zip")
        assert "is a zip archive (an Excel .xlsx file?), not delimited text: name it .xlsx" in r.text
        assert "Traceback" not in r.text and 'id="upload-fixed"' in r.text
        # Markup in a cell is text on the page, never HTML.
        evil = b"phone,name\n<script>alert(1)</script>,<img src=x onerror=alert(2)>\n+16175550101,=1+1\n"
        r = s.post(f"{server.base}/new", data={**form, "name": "xss"}, files={"file": ("x.csv", evil)}, timeout=10)
        assert r.status_code == 200
        assert "<script>alert(1)" not in r.text and "<img src=x" not in r.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text and "&lt;img src=x onerror=alert(2)&gt;" in r.text
        # A campaign file that would not load is not kept; the form comes back filled in.
        broken = {**form, "name": "broken", "text": "Hi {{ name"}
        r = s.post(f"{server.base}/new", data=broken, files={"file": ("b.csv", b"phone\n+16175550101\n")}, timeout=10)
        assert r.status_code == 400
        assert "broken.toml: [message] text: template error on line 1" in r.text
        assert 'value="broken"' in r.text and "Hi {{ name</textarea>" in r.text
        assert not any(tmp_path.glob("broken*")) and not any(tmp_path.glob(".*"))
        preview = s.get(f"{server.base}/c/xss/preview", timeout=10).text
        assert "Hi =1+1" in preview and "<img src=x" not in preview


def test_a_fixed_file_waits_until_the_send_has_ended_and_stop_stops(
    tmp_path: Path, make_campaign: CampaignFactory
) -> None:
    make_campaign(contacts(40), sending="rate = 0\nconcurrency = 1\ntimeout = 5")
    before = (tmp_path / "contacts.csv").read_bytes()

    async def go() -> tuple[int, str, str]:
        site = Site(tmp_path)
        runner, url = await start(site, "127.0.0.1", 0, sandbox=True)
        base = url.split("/?")[0]
        assert site.sandbox is not None
        site.sandbox.config.faults = Faults(latency=0.05)
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                await (await s.get(url)).text()
                await s.post(f"{base}/c/test/send", data={"csrf": site.keys.csrf})
                form = aiohttp.FormData()
                form.add_field("csrf", site.keys.csrf)
                form.add_field("file", b"Phone\n+16175550101\n", filename="contacts.csv")
                r = await s.post(f"{base}/c/test/upload", data=form)
                refused = (r.status, await r.text())
                run = await _until_sending(s, f"{base}/c/test/run")
                stopped, job = await _stop(s, base, site)
                assert stopped.url.path == "/c/test/run"
                assert job.summary is not None and job.summary.interrupted  # Stop is Ctrl-C
                assert job.summary.counts["pending"] > 0
                return *refused, run
        finally:
            await runner.cleanup()
            await site.sandbox.close()

    status, text, run = asyncio.run(go())
    assert status == 400 and "This campaign is being sent now; upload the fixed file when the send has ended." in text
    assert 'http-equiv="refresh"' in run and 'id="stop-button"' in run
    assert re.search(r"Sending: \d+ of 40 \([\d.]+ per second", run), re.findall(r'id="run-state">([^<]*)', run)
    assert (tmp_path / "contacts.csv").read_bytes() == before
    assert not any(tmp_path.glob(".upload-*"))


def test_new_whatsapp_template_campaigns_write_their_variables(tmp_path: Path) -> None:
    """The form's `1 = ...` / `Body.1 = ...` lines become [message.variables] as the CLI reads them."""
    rows = b"phone,first_name,order_id\n+16175550101,Ann,A-1\n"
    with web_server(tmp_path, "--sandbox") as server:
        s = server.session()
        base = {"csrf": server.csrf(s), "default_country": "US"}
        twilio = {
            **base,
            "name": "wa",
            "provider": "twlowa",
            "channel_key": "twlowa_16175550100",
            "template_id": "HX0123456789abcdef0123456789abcdef",
            "variables": "1 = {{ first_name }}\r\n\r\n2 = {{ order_id }}",
        }
        r = s.post(f"{server.base}/new", data=twilio, files={"file": ("c.csv", rows)}, timeout=10)
        assert r.status_code == 200 and "1 row: 1 can be sent." in r.text and r.url.endswith("/c/wa")
        preview = s.get(f"{server.base}/c/wa/preview", timeout=10).text
        assert "template HX0123456789abcdef0123456789abcdef<br>1: Ann<br>2: A-1<br>" in preview
        gupshup = {
            **twilio,
            "name": "gs",
            "provider": "gswa",
            "channel_key": "gswa_16175550100",
            "template_id": "007b7c0e-fc8d-4698-a9a8-3938151dd5da",
            "variables": "Body.1 = {{ first_name }}",
        }
        r = s.post(f"{server.base}/new", data=gupshup, files={"file": ("c.csv", rows)}, timeout=10)
        assert r.url.endswith("/c/gs"), r.text
        assert load_campaign(tmp_path / "gs.toml").message.variables == {"Body": {"1": "{{ first_name }}"}}
        bad = {**twilio, "name": "bad", "variables": "first_name"}
        r = s.post(f"{server.base}/new", data=bad, files={"file": ("c.csv", rows)}, timeout=10)
        assert r.status_code == 400
        assert "Template variables, line 1: write one per line as `1 = {{ first_name }}`." in r.text
        assert not (tmp_path / "bad.toml").exists()


def test_schedule_quiet_hours_and_cancel_from_the_page(tmp_path: Path) -> None:
    """[schedule] from the form; a scheduled send is listed on the results page and Cancel
    takes it back at the (sandbox) API: the rows become cancelled."""
    rows = b"phone,first_name\n+16175550101,Ann\n+16175550102,Bob\n"
    when = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0).isoformat()
    with web_server(tmp_path, "--sandbox") as server:
        s = server.session()
        csrf = server.csrf(s)
        form = {
            "csrf": csrf,
            "provider": "twlo",
            "channel_key": "twlo_16175550100",
            "default_country": "US",
            "text": "Hi {{ first_name }}",
            "rate": "0",
        }
        quiet = {**form, "name": "quiet", "window": "08:00-21:00", "days": "mon, fri", "daily_limit": "500"}
        r = s.post(f"{server.base}/new", data=quiet, files={"file": ("c.csv", rows)}, timeout=10)
        assert r.url.endswith("/c/quiet") and "Time zones" in r.text and "America/New_York 2" in r.text
        schedule = load_campaign(tmp_path / "quiet.toml").schedule
        assert (schedule.window_text, sorted(schedule.days), schedule.daily_limit) == ("08:00-21:00", [0, 4], 500)

        r = s.post(
            f"{server.base}/new",
            data={**form, "name": "later", "send_at": when},
            files={"file": ("c.csv", rows)},
            timeout=10,
        )
        assert r.url.endswith("/c/later")
        confirm = s.get(f"{server.base}/c/later/send", timeout=10).text
        assert f"At {when}: the API holds each message until then." in confirm
        s.post(f"{server.base}/c/later/send", data={"csrf": csrf}, timeout=10)
        _wait_finished(s, f"{server.base}/c/later/run")
        results = s.get(f"{server.base}/c/later/results", timeout=10).text
        assert "2 scheduled messages still to go out" in results and 'id="cancel-button"' in results
        assert s.post(f"{server.base}/c/later/cancel", data={}, timeout=10).status_code == 403  # CSRF
        r = s.post(f"{server.base}/c/later/cancel", data={"csrf": csrf}, timeout=10)
        assert "Cancelled 2 scheduled messages." in r.text
        assert "still to go out" not in r.text
        csv_text = s.get(f"{server.base}/c/later/download/results.csv", timeout=10).text
        assert csv_text.count(",cancelled,") == 2


def test_progress_total_is_the_confirmed_count_and_stop_says_how_many_are_left(
    tmp_path: Path, make_campaign: CampaignFactory
) -> None:
    """Issue 14: "290 of 768" on a 5,000-row file, the rows read so far as the total (the file
    is read only a little ahead of sending). The total is the confirmation's count; after
    Stop the page says how many rows are left."""
    make_campaign(contacts(600), sending="rate = 0\nconcurrency = 2\ntimeout = 5")

    async def go() -> tuple[str, str, str, int]:
        site = Site(tmp_path)
        runner, url = await start(site, "127.0.0.1", 0, sandbox=True)
        base = url.split("/?")[0]
        assert site.sandbox is not None
        site.sandbox.config.faults = Faults(latency=0.01)
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                await (await s.get(url)).text()
                confirm = await (await s.get(f"{base}/c/test/send")).text()
                found = re.search(r'name="expected" value="(\d+)"', confirm)
                assert found is not None
                await s.post(f"{base}/c/test/send", data={"csrf": site.keys.csrf, "expected": found.group(1)})
                run = await _until_sending(s, f"{base}/c/test/run")
                _, job = await _stop(s, base, site)
                assert job.summary is not None
                stopped = await (await s.get(f"{base}/c/test/run")).text()
                return found.group(1), run, stopped, job.summary.counts["pending"]
        finally:
            await runner.cleanup()
            await site.sandbox.close()

    expected, run, stopped, pending = asyncio.run(go())
    assert expected == "600"
    assert re.search(r"Sending: \d+ of 600 \(", run), re.findall(r'id="run-state">([^<]*)', run)
    assert re.search(r'<progress max="600"', run)
    assert 0 < pending < 600
    assert f"{pending} rows are left to send; send again to continue." in stopped


def test_a_finished_sandbox_send_waits_only_for_its_own_reports(
    tmp_path: Path, make_campaign: CampaignFactory
) -> None:
    """Issue 14: "collecting the sandbox's delivery reports…" for a minute or two. Another
    campaign on the same channel left a subscription whose listener is gone; the sandbox
    retries its reports for 20 s each. The page waits for this run's messages only, and says
    how the wait ended."""
    make_campaign(contacts(3), name="other", file="other.csv")
    make_campaign(contacts(8, start=10))

    async def go() -> tuple[str, str | None, int]:
        site = Site(tmp_path)
        runner, url = await start(site, "127.0.0.1", 0, sandbox=True)
        base = url.split("/?")[0]
        assert site.sandbox is not None
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                await (await s.get(url)).text()
                for name in ("other", "test"):
                    await s.post(f"{base}/c/{name}/send", data={"csrf": site.keys.csrf})
                    job = site.jobs.get(name)
                    assert job is not None and job.task is not None
                    await asyncio.wait_for(job.task, 15)  # without the bound: 20 s per report
                page = await (await s.get(f"{base}/c/test/run")).text()
                results = await (await s.get(f"{base}/c/test/download/results.csv")).text()
                return page, job.reports_note, results.count(",delivered,") + results.count(",undelivered,")
        finally:
            await runner.cleanup()
            await site.sandbox.close()

    page, note, reported = asyncio.run(go())
    assert note == "Every one of the 8 accepted messages has its final delivery report."
    assert f"Delivery reports: {note}" in page
    assert reported > 0


def test_the_wait_for_reports_ends_when_none_come_or_at_the_cap() -> None:
    """A message whose final report never comes ends the wait after the quiet time, and
    reports that keep trickling in without finishing it end it at the cap; each is said."""
    from campaign.delivery import Report
    from campaign.web.reports import ReportWatch, wait_for_reports

    async def go() -> tuple[str, str, str]:
        sms = ReportWatch("twlo")
        sms(Report("m1", "delivered"), "test")
        sms(Report("m2", "sent"), "test")  # not final on its own
        quiet = await wait_for_reports(sms, {"m1", "m2"}, quiet=0.1, cap=60)
        whatsapp = ReportWatch("twlowa")
        whatsapp(Report("m1", "delivered"), "test")  # WhatsApp: may still be read
        stop = asyncio.Event()

        async def trickle() -> None:
            while not stop.is_set():
                whatsapp(Report("m9", "sent"), "")
                await asyncio.sleep(0.01)

        task = asyncio.create_task(trickle())
        capped = await wait_for_reports(whatsapp, {"m1"}, quiet=10, cap=0.2)
        stop.set()
        await task
        whatsapp(Report("m1", "read"), "test")
        done = await wait_for_reports(whatsapp, {"m1"})
        return quiet, capped, done

    quiet, capped, done = asyncio.run(go())
    assert quiet.startswith("1 of 2 accepted messages had no final delivery report and none came for 0.1 s")
    assert capped.startswith("1 of 1 accepted messages had no final delivery report after 0.2 s, the most")
    assert done == "Every one of the 1 accepted messages has its final delivery report."


def test_the_campaigns_list_shows_a_running_send_as_sending(tmp_path: Path, make_campaign: CampaignFactory) -> None:
    """Issue 14: during a send the list counted the rows read so far, said the last run "did
    not finish" and labelled rows in flight unknown. It shows the live run instead."""
    make_campaign(contacts(600), sending="rate = 0\nconcurrency = 2\ntimeout = 5")

    async def go() -> str:
        site = Site(tmp_path)
        runner, url = await start(site, "127.0.0.1", 0, sandbox=True)
        base = url.split("/?")[0]
        assert site.sandbox is not None
        site.sandbox.config.faults = Faults(latency=0.01)
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                await (await s.get(url)).text()
                await s.post(f"{base}/c/test/send", data={"csrf": site.keys.csrf, "expected": "600"})
                listing = await _until_sending(s, f"{base}/")
                await _stop(s, base, site)
                return listing
        finally:
            await runner.cleanup()
            await site.sandbox.close()

    listing = asyncio.run(go())
    card = listing.split('id="campaign-test"')[1]
    assert re.search(r"Sending: [\d,]+ of 600 finished", card)
    assert 'href="/c/test/run"' in card and 'http-equiv="refresh"' in listing
    assert "did not finish" not in card and "unknown" not in card and "Last run" not in card


def test_a_refused_upload_keeps_the_form_and_errors_name_the_users_file(tmp_path: Path) -> None:
    """Issue 14: the New campaign form came back empty after the oversized-upload error (other
    errors keep it); and a message using a missing column named the upload's name on disk
    (".upload-a76f….csv has no column 'coupon'") instead of the file the user chose."""
    with web_server(tmp_path, "--sandbox", "--max-upload-mb", "0.01") as server:
        s = server.session()
        csrf = server.csrf(s)
        form = {
            "csrf": csrf,
            "name": "spring",
            "provider": "twlo",
            "channel_key": "twlo_16175550100",
            "text": "Hi {{ first_name }}, use {{ coupon }} <now>",
            "window": "08:00-21:00",
        }
        big = b"phone\n" + b"+16175550101\n" * 2000  # 26 KB > 10 KB
        r = s.post(f"{server.base}/new", data=form, files={"file": ("big.csv", big)}, timeout=10)
        assert r.status_code == 400 and "big.csv is larger than the 10 KB this page accepts" in r.text
        assert 'name="name" required pattern="[A-Za-z0-9][A-Za-z0-9_\\-]{0,63}" value="spring"' in r.text
        assert 'value="twlo_16175550100"' in r.text and 'value="08:00-21:00"' in r.text
        assert "Hi {{ first_name }}, use {{ coupon }} &lt;now&gt;</textarea>" in r.text
        small = b"Phone,First Name\n+16175550101,Ann\n"
        r = s.post(f"{server.base}/new", data=form, files={"file": ("My Contacts.csv", small)}, timeout=10)
        assert r.status_code == 400
        error = re.search(r'class="banner error"[^>]*>([^<]*)', r.text)
        assert error is not None and "My Contacts.csv has no column &#39;coupon&#39;" in error.group(1), r.text
        assert ".upload-" not in r.text and 'value="spring"' in r.text
        assert sorted(p.name for p in tmp_path.iterdir()) == []
