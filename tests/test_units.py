"""Unit tests of the pieces: campaign file, phones, segments, rules, results cells, pacing, journal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from campaign import phones
from campaign.config import load_campaign
from campaign.errors import ConfigError
from campaign.results import _neutralised, neutralise, output_columns
from campaign.rules import RuleError, check_variable, sms_segments
from campaign.sender import Job, Journal, Pacer
from campaign.state import Outcome, State, Status

BASE = """
provider = "{provider}"
channel_key = "{provider}_16175550100"
[recipients]
file = "c.csv"
phone_column = "Phone"
[message]
{message}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("provider", "message", "extra", "expected"),
    [
        ("sms", 'text = "x"', "", "provider 'sms' is not one of twlo, twlowa, gswa"),
        ("twlowa", 'text = "x"\nimage_url = "https://a/b.jpg"', "", "image_url is only supported with provider twlo"),
        ("twlo", 'template_id = "HX1"', "", "template_id is for WhatsApp"),
        ("twlo", 'text = "x"\nimage_url = "https://a"\nvideo_url = "https://b"', "", "at most one media URL"),
        ("twlo", 'txt = "x"', "", "unknown key [message] 'txt'. Did you mean 'text'?"),
        ("twlo", 'text = "x"', "[sending]\nrte = 3\n", "Did you mean 'rate'?"),
        ("twlo", 'text = "x"', "[sending]\nrate = -1\n", "[sending] rate must be at least 0"),
        ("twlo", "", "", "needs text, text_file, a media URL or a template_id"),
        ("gswa", 'template_id = "x"\n[message.variables]\nFooter = {"1" = "a"}', "", "'Footer' is not used by gswa"),
        ("twlo", 'text = "x"', 'api_url = "http://api.example.com"\n', "plain http to a non-loopback host"),
        # A folder of the tz database, or a name too long for a file name: OSErrors, not zones.
        ("twlo", 'text = "x"\ntimezone = "America"', "", "timezone 'America' is not a known time zone"),
        ("twlo", f'text = "x"\ntimezone = "{"x" * 300}"', "", "is not a known time zone"),
    ],
)
def test_campaign_file_mistakes_name_the_key(
    tmp_path: Path, provider: str, message: str, extra: str, expected: str
) -> None:
    text = BASE.format(provider=provider, message=message)
    if extra.startswith("api_url"):
        text = extra + text
    else:
        text += extra
    with pytest.raises(ConfigError) as info:
        load_campaign(write(tmp_path, text))
    assert expected in str(info.value)
    assert str(tmp_path / "c.toml") in str(info.value)


def test_a_key_of_another_table_says_which_table_it_belongs_in(tmp_path: Path) -> None:
    """`rate` at the top of the file is not a typo of `state`: it belongs under [sending]."""
    for text, said in (
        (
            "rate = 3\n" + BASE.format(provider="twlo", message='text = "x"'),
            "unknown key 'rate'. It belongs in [sending]",
        ),
        (
            BASE.format(provider="twlo", message='text = "x"\ndaily_limit = 5'),
            "unknown key [message] 'daily_limit'. It belongs in [schedule]",
        ),
    ):
        with pytest.raises(ConfigError) as info:
            load_campaign(write(tmp_path, text))
        assert f"{said}: move it under that table's header." in str(info.value)


def test_missing_recipients_file_key(tmp_path: Path) -> None:
    text = 'provider = "twlo"\nchannel_key = "twlo_1"\n[recipients]\nphone_column = "P"\n[message]\ntext = "x"\n'
    with pytest.raises(ConfigError, match=r"missing \[recipients\] file"):
        load_campaign(write(tmp_path, text))


def test_defaults_and_env_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.format(provider="twlo", message='text = "x"'))
    campaign = load_campaign(path, environ={"SOCIOCS_API_URL": "http://127.0.0.1:9999/"})
    assert campaign.api_url == "http://127.0.0.1:9999"
    assert campaign.name == "c"
    assert campaign.results == tmp_path / "c.results.csv"
    assert campaign.recipients.file == tmp_path / "c.csv"
    assert load_campaign(path, environ={}).api_url == "https://api.sociocs.com"


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+1 (617) 555-0100", None, "+16175550100"),
        ("617.555.0100", "US", "+16175550100"),
        ("16175550100", "US", "+16175550100"),
        ("0044 7911 123456", "US", "+447911123456"),
        ("07911 123456", "GB", "+447911123456"),
    ],
)
def test_phone_normalisation(raw: str, country: str | None, expected: str) -> None:
    assert phones.normalise(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "no phone number"),
        ("n/a", "is not a phone number"),
        ("12345", "too short"),
        ("6175550100", "no country code"),
    ],
)
def test_phone_reasons(raw: str, reason: str) -> None:
    with pytest.raises(phones.PhoneError, match=reason):
        phones.normalise(raw, None if reason == "no country code" else "US")


@pytest.mark.parametrize(
    ("text", "encoding", "parts"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("{" * 80, "GSM-7", 1),  # extension characters count double
        ("{" * 81, "GSM-7", 2),
        ("€" * 80, "GSM-7", 1),
        ("a" * 69 + "é", "GSM-7", 1),  # é is in GSM-7
        ("a" * 69 + "ł", "UCS-2", 1),
        ("a" * 70 + "ł", "UCS-2", 2),
        ("😀" * 35, "UCS-2", 1),  # two UTF-16 units each
        ("😀" * 36, "UCS-2", 2),
    ],
)
def test_sms_segments(text: str, encoding: str, parts: int) -> None:
    seg = sms_segments(text)
    assert (seg.encoding, seg.parts) == (encoding, parts)


@pytest.mark.parametrize("value", ["", "  ", "a\nb", "a\tb", "a     b", "x" * 1601])
def test_twilio_variable_rules(value: str) -> None:
    with pytest.raises(RuleError):
        check_variable("1", value)
    check_variable("1", "a    b")  # four spaces are fine


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("\tx", "'\tx"),
        ("+16175550100", "+16175550100"),  # E.164: + and digits only, stays a phone number
        ("+1-415-555-0180", "'+1-415-555-0180"),  # Excel computes 1-415-555-180 = -1149
        ("+1 (617) 555-0100", "'+1 (617) 555-0100"),  # Excel: a formula (#NULL!), not text
        ("+", "'+"),
        ("+1e3", "'+1e3"),
        ("-12.5", "-12.5"),
        ("-1e3", "-1e3"),
        ("-1-2", "'-1-2"),
        ("16175550100", "16175550100"),
        ("Plain", "Plain"),
        (None, ""),
    ],
)
def test_formula_neutralisation(cell: str | None, expected: str) -> None:
    assert neutralise(cell) == expected
    # The results file's inlined version agrees, cell for cell, as the csv module writes it.
    assert [("" if v is None else v) for v in _neutralised([cell, -3, 7])] == [expected, -3, 7]


def test_output_columns_never_duplicate() -> None:
    cols = output_columns(["Phone", "phone", "status"])
    assert cols[:3] == ["Phone_input", "phone_input", "status_input"]
    assert len(cols) == len(set(cols))


def test_pacer_never_exceeds_rate_in_any_window() -> None:
    async def main() -> list[float]:
        pacer = Pacer(20)
        loop = asyncio.get_running_loop()
        stamps: list[float] = []

        async def worker() -> None:
            for _ in range(8):
                await pacer.acquire()
                stamps.append(loop.time())

        await asyncio.gather(*(worker() for _ in range(4)))
        return sorted(stamps)

    stamps = asyncio.run(main())
    assert len(stamps) == 32
    worst = max(sum(1 for t in stamps if s <= t < s + 1.0 - 1e-6) for s in stamps)
    assert worst <= 20


def test_pacer_slows_on_429_and_recovers() -> None:
    async def main() -> tuple[float, float, float]:
        pacer = Pacer(100, backoff_base=0.01)
        pacer.rate_limited(retry_after=0.05)
        slowed = pacer.current
        loop = asyncio.get_running_loop()
        start = loop.time()
        await pacer.acquire()
        waited = loop.time() - start
        pacer.last_change -= 1.0  # as if a second had passed without a 429
        pacer.succeeded()
        return slowed, waited, pacer.current

    slowed, waited, recovered = asyncio.run(main())
    assert slowed == 50
    assert waited >= 0.04
    assert recovered == 62.5


def test_journal_group_commits_marks_with_outcomes() -> None:
    async def main() -> tuple[int, dict[str, int]]:
        state = State(":memory:")
        with state.transaction():
            state.add_recipients([(f"+1617555000{i}", f"+1617555000{i}", i + 2, "h", "m") for i in range(5)])
        journal = Journal(state)
        jobs = [Job(f"+1617555000{i}", i + 2, b"{}", "h", "m", False) for i in range(5)]
        await asyncio.gather(*(journal.mark(j) for j in jobs[:4]))
        commits_after_marks = journal.commits
        journal.record(Outcome(jobs[0].key, Status.SENT, "SM1", "", 200, 1))
        await journal.mark(jobs[4])  # carries the outcome above in the same commit
        counts = state.journal_counts()
        state.close()
        return commits_after_marks * 10 + journal.commits, counts

    commits, counts = asyncio.run(main())
    assert commits == 12  # four marks in one commit; mark + outcome in the second
    assert counts == {"sending": 4, "sent": 1}


def test_unfinished_read_keeps_the_last_complete_snapshot() -> None:
    from campaign.state import RowRecord

    state = State(":memory:")
    state.begin_run("send", ["Phone"])
    with state.transaction():
        state.add_rows(RowRecord(r, f'["+1617555000{r}"]', f"+1617555000{r}", f"+1617555000{r}") for r in (2, 3, 4))
        state.add_recipients([(f"+1617555000{r}", f"+1617555000{r}", r, "h", "m") for r in (2, 3, 4)])
    state.finish_read()
    state.write([Outcome("+16175550002", Status.SENT, "SM1", "", 200, 1)], [("+16175550003", "h", "m", "", "")])
    # A second run is killed after reading one row: the snapshot is still the full first read.
    state.begin_run("send", ["Phone"])
    with state.transaction():
        state.add_rows([RowRecord(2, '["+16175550002"]', "+16175550002", "+16175550002")])
    assert state.counts() == {"sent": 1, "unknown": 1, "pending": 1}  # 'sending' shows as unknown
    assert [r[1] for r in state.results()] == [2, 3, 4]
    state.finish_read()
    assert state.counts() == {"sent": 1}
    state.close()


def test_whatsapp_plain_text_is_a_warning_and_media_must_be_http(tmp_path: Path) -> None:
    from campaign.rules import check_url
    from campaign.runner import campaign_warnings

    campaign = load_campaign(write(tmp_path, BASE.format(provider="twlowa", message='text = "Hi"')))
    (warning,) = campaign_warnings(campaign)
    assert "last 24 hours" in warning and "template_id" in warning
    assert campaign_warnings(load_campaign(write(tmp_path, BASE.format(provider="twlo", message='text = "Hi"')))) == []
    check_url("https://cdn.example.com/a.jpg", "image_url")
    for bad in ("ftp://x/a.jpg", "javascript:alert(1)", "cdn.example.com/a.jpg"):
        with pytest.raises(RuleError, match="is not an http"):
            check_url(bad, "image_url")
