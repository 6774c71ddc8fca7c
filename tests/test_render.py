"""Rendering as the user sees it (issue 9, kinds 3, 7 and 9): real CSV files in a temp folder,
the CLI end to end (exit code and the printed sentence) where a user would see the outcome.

- kind 3: a column headed ``name`` / ``phone`` / ``row``; errors that list columns never
  contradict themselves (case, spaces, BOM, invisible characters);
- kind 7: a template that does not depend on the row is checked once at load (exit 2, one
  sentence naming the key), never one invalid row per recipient;
- kind 9: ``preview`` shows duplicates and suppressed rows as skipped and invalid rows as invalid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from campaign.config import load_campaign
from campaign.errors import ConfigError, InputFileError
from campaign.prepare import Pipeline
from campaign.sandbox import spawn
from tests.conftest import KEY, run_campaign

ANN, BO = "+16175550101", "+16175550102"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_campaign(*args, cwd=cwd)


def campaign_file(
    folder: Path,
    csv_text: str,
    message: str,
    *,
    provider: str = "twlo",
    recipients: str = "",
    extra: str = "",
) -> Path:
    """A campaign over ``contacts.csv`` holding ``csv_text`` (exact bytes, UTF-8)."""
    (folder / "contacts.csv").write_bytes(csv_text.encode("utf-8"))
    path = folder / "c.toml"
    path.write_text(
        f'provider = "{provider}"\nchannel_key = "{provider}_16175550000"\n'
        f'[recipients]\nfile = "contacts.csv"\ndefault_country = "US"\n{recipients}\n'
        f"[message]\n{message}\n{extra}",
        encoding="utf-8",
    )
    return path


def bodies(path: Path) -> list[dict[str, object]]:
    """The request body of every sendable row, in file order."""
    pipeline = Pipeline(load_campaign(path, environ={}))
    return [json.loads(p.job.body) for batch in pipeline.batches() for p in batch if p.job is not None]


def load_error(path: Path) -> str:
    """The sentence the run stops with before any row is read."""
    with pytest.raises((ConfigError, InputFileError)) as info:
        Pipeline(load_campaign(path, environ={}))
    return str(info.value)


# --- kind 3: columns named like a built-in -------------------------------------------------


def test_a_name_header_is_the_name_column(tmp_path: Path) -> None:
    """The issue's input: `phone, name, note`, `Hello {{ name }}`, no name_column."""
    path = campaign_file(tmp_path, f"phone,name,note\n{ANN},Ann,x\n", 'text = "Hello {{ name }}"')
    proc = cli("preview", "c.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert '"text": "Hello Ann"' in proc.stdout and '"name": "Ann"' in proc.stdout
    assert bodies(path) == [
        {"provider": "twlo", "channel_key": "twlo_16175550000", "to": ANN, "name": "Ann", "text": "Hello Ann"}
    ]


@pytest.mark.parametrize("header", ["Name", " NAME ", "\ufeffname", "name\u200b", "Name\ufeff"])
def test_a_name_header_matches_like_phone_column(tmp_path: Path, header: str) -> None:
    """Case, surrounding spaces and invisible characters (BOM, zero-width space) are ignored,
    as for phone_column: the header looks like `name`, so it is the name column."""
    path = campaign_file(tmp_path, f"Phone,{header},note\n{ANN},Ann,x\n", 'text = "Hello {{ name }}"')
    assert [b["text"] for b in bodies(path)] == ["Hello Ann"]


def test_name_column_claims_name_over_a_name_header(tmp_path: Path) -> None:
    path = campaign_file(
        tmp_path,
        f"phone,Full name,name\n{ANN},Ann Lee,ann_l\n",
        'text = "Hello {{ name }} ({{ row[\'name\'] }})"',
        recipients='name_column = "Full name"',
    )
    assert [(b["name"], b["text"]) for b in bodies(path)] == [("Ann Lee", "Hello Ann Lee (ann_l)")]


def test_a_phone_header_is_the_phone_column_without_phone_column(tmp_path: Path) -> None:
    path = campaign_file(tmp_path, "Name,Phone\nAnn,(617) 555-0101\n", 'text = "{{ name }}: {{ phone }}"')
    assert [(b["to"], b["text"]) for b in bodies(path)] == [(ANN, f"Ann: {ANN}")]


def test_no_phone_column_and_no_phone_header_is_one_sentence(tmp_path: Path) -> None:
    campaign_file(tmp_path, f"Mobile,name\n{ANN},Ann\n", 'text = "Hi"')
    proc = cli("check", "c.toml", cwd=tmp_path)
    assert proc.returncode == 2
    assert 'has no column "phone" and the campaign file sets no phone_column' in proc.stderr
    assert '"Mobile", "name"' in proc.stderr and "Traceback" not in proc.stderr


def test_a_row_header_is_row_row(tmp_path: Path) -> None:
    """`row` is always the mapping of every column (PRODUCT.md); a column headed `row` (a
    results file used as recipients) is row["row"]."""
    path = campaign_file(tmp_path, f"row,phone,name\n7,{ANN},Ann\n", "text = \"Hi {{ name }}, #{{ row['row'] }}\"")
    assert [b["text"] for b in bodies(path)] == ["Hi Ann, #7"]


@pytest.mark.parametrize("text", ["Hi {{ row }}", "Hi {{ row | upper }}"])
def test_printing_the_row_mapping_is_refused(tmp_path: Path, text: str) -> None:
    campaign_file(tmp_path, f"row,phone\n7,{ANN}\n", f'text = "{text}"')
    proc = cli("check", "c.toml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "[message] text prints {{ row }}, which is every column of the row" in proc.stderr
    assert 'a column headed row is row["row"]' in proc.stderr


@pytest.mark.parametrize(
    ("header", "variable", "expected"),
    [
        ("name", "Name", "there is no variable 'Name'; write {{ name }}"),
        ("First_Name", "first_name", "there is no variable 'first_name'; write {{ First_Name }}"),
        ("First Name", "first_name", 'has the column "First Name", not \'first_name\'; write {{ row["First Name"] }}'),
        ("first_name\u200b", "first_name", 'has the column "first_name<U+200B>"'),
        ("order\u00a0id", "order_id", 'has the column "order<U+00A0>id"'),
    ],
)
def test_errors_about_columns_never_contradict_themselves(
    tmp_path: Path, header: str, variable: str, expected: str
) -> None:
    """Whatever the header's case, spaces or invisible characters, the error either names the
    column with the exact way to write it, or says "no column" while listing none that looks
    the same."""
    campaign_file(tmp_path, f"phone,{header}\n{ANN},x\n", f'text = "Hi {{{{ {variable} }}}}"')
    proc = cli("check", "c.toml", cwd=tmp_path)
    assert proc.returncode == 2
    message = " ".join(proc.stderr.split())
    assert expected in message, message
    assert f"no column '{variable}'" not in message


def test_a_name_column_with_an_invisible_character_is_found(tmp_path: Path) -> None:
    """name_column "Name" and a header "Name" + zero-width space: the same on screen, so the
    same column (before: "has no column "Name"; its columns are ..., "Name"")."""
    path = campaign_file(
        tmp_path,
        f"Phone\u200b,Name\u200b\n{ANN},Ann\n",
        'text = "Hi {{ name }}"',
        recipients='phone_column = "Phone"\nname_column = "Name"',
    )
    assert [b["text"] for b in bodies(path)] == ["Hi Ann"]


def test_a_missing_column_is_listed_with_its_invisible_characters(tmp_path: Path) -> None:
    path = campaign_file(
        tmp_path, f"Mob\u200bile,Name\n{ANN},Ann\n", 'text = "Hi"', recipients='phone_column = "Phone"'
    )
    assert 'its columns are "Mob<U+200B>ile", "Name"' in load_error(path)


# --- kind 7: a campaign-wide value is checked once, at load ---------------------------------

TEMPLATE = "HX0123456789abcdef0123456789abcdef"
# Kinds 7 and 9 name their columns, so they do not rely on the header rules of kind 3.
PHONE = 'phone_column = "phone"\nname_column = "name"'
CONSTANT_MISTAKES = [
    pytest.param(
        "twlo",
        'text = "Hi"\nschedule = "2020-01-01T09:00:00-05:00"',
        "[message] schedule is the same for every row, and schedule '2020-01-01T09:00:00-05:00' is in the past",
        id="schedule-in-the-past",
    ),
    pytest.param(
        "twlo",
        'text = "Hi"\nschedule = "2099-01-01T09:00:00"',
        "[message] schedule is the same for every row, and schedule '2099-01-01T09:00:00' has no UTC offset",
        id="schedule-without-offset",
    ),
    pytest.param(
        "twlowa",
        f'template_id = "{TEMPLATE}"\n[message.variables]\n"1" = "Line one\\nline two"',
        "[message.variables] 1 is the same for every row, and template variable 1 contains a newline",
        id="whatsapp-variable-newline",
    ),
    pytest.param(
        "twlowa",
        f'template_id = "{TEMPLATE}"\n[message.variables]\n"1" = "{{{{ name }}}}"\n"2" = ""',
        "[message.variables] 2 is the same for every row, and template variable 2 is empty",
        id="whatsapp-variable-empty",
    ),
    pytest.param(
        "gswa",
        'template_id = "order_ready"\n[message.variables.Body]\n"1" = "a\\tb"',
        "[message.variables.Body] 1 is the same for every row, and template variable Body 1 contains a newline or tab",
        id="gswa-body-tab",
    ),
    pytest.param(
        "gswa",
        'template_id = "order_ready"\n[message.variables]\nMEDIA_URL = "cdn.example.com/a.jpg"',
        "[message.variables] MEDIA_URL is the same for every row, and MEDIA_URL 'cdn.example.com/a.jpg' is not",
        id="gswa-media-url",
    ),
    pytest.param(
        "twlo",
        'image_url = "ftp://example.com/a.jpg"',
        "[message] image_url is the same for every row, and image_url 'ftp://example.com/a.jpg' is not an http(s) URL",
        id="media-url",
    ),
    pytest.param(
        "twlowa",
        'template_id = "HX123"',
        "[message] template_id is the same for every row, and template_id 'HX123' is not a Twilio Content SID",
        id="template-id",
    ),
    pytest.param(
        "twlo",
        'text = "{% for i in range(0) %}{% endfor %}  "',
        "[message] text is the same for every row, and the message text is empty after rendering",
        id="text-empty",
    ),
    pytest.param(
        "twlo",
        'text = "Hi"\n[contact_saving]\nsave = true\nlist_id = "twelve"',
        "[contact_saving] list_id is the same for every row, and [contact_saving] list_id rendered 'twelve'",
        id="list-id",
    ),
]


@pytest.mark.parametrize(("provider", "message", "expected"), CONSTANT_MISTAKES)
def test_a_constant_mistake_stops_the_run_at_load(tmp_path: Path, provider: str, message: str, expected: str) -> None:
    path = campaign_file(tmp_path, f"phone,name\n{ANN},Ann\n{BO},Bo\n", message, provider=provider, recipients=PHONE)
    assert expected in load_error(path)


def test_a_constant_past_schedule_is_one_sentence_and_send_records_nothing(tmp_path: Path) -> None:
    """Before: every row `invalid` with the same reason, recorded in the state and results."""
    rows = "".join(f"+1617555{i:04d},P{i}\n" for i in range(100, 130))
    campaign_file(
        tmp_path,
        f"phone,name\n{rows}",
        'text = "Hi {{ name }}"\nschedule = "2020-01-01T09:00:00-05:00"',
        recipients=PHONE,
    )
    for command in (["check", "c.toml"], ["send", "c.toml", "--sandbox", "--yes"]):
        proc = cli(*command, cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "[message] schedule is the same for every row" in lines[0]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("c.") and p.name != "c.toml"]


def test_a_schedule_that_depends_on_the_row_is_still_checked_per_row(tmp_path: Path) -> None:
    path = campaign_file(
        tmp_path,
        f"phone,name,when\n{ANN},Ann,2020-01-01T09:00:00-05:00\n{BO},Bo,2099-01-01T09:00:00-05:00\n",
        'text = "Hi"\nschedule = "{{ when }}"',
        recipients=PHONE,
    )
    pipeline = Pipeline(load_campaign(path, environ={}), now=datetime(2026, 1, 1, tzinfo=UTC))
    outcomes = [(p.row, p.status, p.error) for batch in pipeline.batches() for p in batch]
    assert outcomes[0][1] is not None and "is in the past" in outcomes[0][2]
    assert outcomes[1][1] is None


def test_a_constant_that_is_valid_renders_as_before(tmp_path: Path) -> None:
    path = campaign_file(
        tmp_path,
        f"phone,name\n{ANN},Ann\n",
        f'template_id = "{TEMPLATE}"\nschedule = "2099-01-01T09:00:00"\ntimezone = "America/New_York"\n'
        '[message.variables]\n"1" = "{{ name }}"\n"2" = "Main Street"',
        provider="twlowa",
        recipients=PHONE,
    )
    assert bodies(path)[0]["template"] == {"id": TEMPLATE, "variables": {"1": "Ann", "2": "Main Street"}}
    assert bodies(path)[0]["schedule"] == "2099-01-01T09:00:00-05:00"


# --- kind 9: preview shows what send will skip ---------------------------------------------


def test_preview_shows_skipped_and_invalid_rows_as_send_records_them(tmp_path: Path) -> None:
    (tmp_path / "optouts.csv").write_bytes(b"phone\n+16175550103\n")
    campaign_file(
        tmp_path,
        f"phone,name\n{ANN},Ann\n{BO},Bo\n(617) 555-0101,Ann again\n+16175550103,Cy\n12,[bold]Dee\n",
        'text = "Hi {{ name }}"',
        recipients=PHONE + '\nsuppress = ["optouts.csv"]',
    )
    proc = cli("preview", "c.toml", "-n", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count('"text"') == 2  # only rows 2 and 3 would be sent
    assert "row 4  +16175550101\n  skipped: duplicate of row 2" in out
    assert "row 5  +16175550103\n  skipped: suppressed (optouts.csv)" in out
    assert "row 6  \n  invalid: phone: '12' is too short for US" in out
    assert "Ann again" not in out


def test_preview_with_allow_duplicates_shows_every_row(tmp_path: Path) -> None:
    campaign_file(
        tmp_path,
        f"phone,name\n{ANN},Ann\n{ANN},Ann again\n",
        'text = "Hi {{ name }}"',
        recipients=PHONE + "\nallow_duplicates = true",
    )
    proc = cli("preview", "c.toml", cwd=tmp_path)
    assert proc.returncode == 0 and "Hi Ann again" in proc.stdout and "skipped" not in proc.stdout


def test_preview_prints_user_text_verbatim(tmp_path: Path) -> None:
    """An error holding a cell such as `[bold]x` is printed as those characters (no markup)."""
    campaign_file(
        tmp_path,
        f"phone,name,when\n{ANN},Ann,[bold]soon[/bold]\n",
        'text = "Hi"\nschedule = "{{ when }}"',
        recipients=PHONE,
    )
    proc = cli("preview", "c.toml", cwd=tmp_path)
    assert proc.returncode == 0
    assert "invalid: schedule '[bold]soon[/bold]' is not an ISO 8601 date-time" in proc.stdout


def test_preview_shows_rows_an_earlier_run_sent_as_send_will_skip_them(tmp_path: Path) -> None:
    """After a send, a rerun sends only the new row; preview says so instead of showing the
    requests again."""
    with spawn() as url:
        path = campaign_file(tmp_path, f"phone,name\n{ANN},Ann\n", 'text = "Hi {{ name }}"', recipients=PHONE)
        path.write_text(f'api_url = "{url}"\n' + path.read_text(encoding="utf-8"), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k != "SOCIOCS_API_URL"} | {"SOCIOCS_API_KEY": KEY}
        sent = subprocess.run(
            [sys.executable, "-m", "campaign", "send", "c.toml", "--yes"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
    (tmp_path / "contacts.csv").write_text(f"phone,name\n{ANN},Ann\n{BO},Bo\n", encoding="utf-8")
    proc = cli("preview", "c.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"row 2  {ANN}\n  sent: already sent by an earlier run; send does not send it again" in proc.stdout
    assert proc.stdout.count('"text"') == 1 and '"text": "Hi Bo"' in proc.stdout


def test_too_many_whatsapp_variables_is_a_campaign_file_error(tmp_path: Path) -> None:
    variables = "\n".join(f'"{i}" = "{{{{ name }}}}"' for i in range(1, 102))
    path = campaign_file(
        tmp_path,
        f"phone,name\n{ANN},Ann\n",
        f'template_id = "{TEMPLATE}"\n[message.variables]\n{variables}',
        provider="twlowa",
        recipients=PHONE,
    )
    assert "[message.variables] has 101 variables; the limit is 100." in load_error(path)


@pytest.mark.parametrize("header", ["none", "True"])
def test_a_column_named_like_a_jinja_constant_is_refused_not_printed_as_the_constant(
    tmp_path: Path, header: str
) -> None:
    """Before: `{{ none }}` printed "None" for every row although the file has a column `none`."""
    only_phone = 'phone_column = "phone"'
    text = f'text = "Hi {{{{ {header} }}}}"'
    path = campaign_file(tmp_path, f"phone,{header}\n{ANN},x\n", text, recipients=only_phone)
    assert f'uses {{{{ {header} }}}}, which Jinja reads as its constant {header}, not the column "{header}"' in (
        load_error(path)
    )
    text = f"text = \"Hi {{{{ row['{header}'] }}}}\""
    path = campaign_file(tmp_path, f"phone,{header}\n{ANN},x\n", text, recipients=only_phone)
    assert [b["text"] for b in bodies(path)] == ["Hi x"]
