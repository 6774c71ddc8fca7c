"""Every error `campaign` raises on purpose, and the exit codes the CLI turns them into.

The tree (catch ``CampaignError`` once, at the CLI boundary)::

    CampaignError                 a user-facing problem: one clear sentence, no traceback
    ├── UsageError                bad command line (exit 2)
    ├── ConfigError               the campaign file is wrong; names the file and the key (exit 2)
    ├── InputFileError            a recipients or suppression file cannot be read (exit 2)
    ├── LockedError               another run of the same campaign holds the lock (exit 2)
    ├── StateError                the state file is unreadable or from a newer version (exit 2)
    └── RunStopped                the API told us to stop: bad key, bad channel, too many
                                  consecutive errors (exit 3)

Row-level problems (an unusable phone, a template error, a provider rule) are *not*
exceptions that escape: they become the row's ``invalid`` status and the run goes on.

Messages never contain the API key: the key lives only in the HTTP client's headers.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Process exit codes, as PRODUCT.md defines them."""

    OK = 0  # every row sent, scheduled, skipped or dry-run (limit-pending rows excepted)
    ROWS_NOT_SENT = 1  # finished, but some rows failed, invalid, unknown or pending
    INPUT = 2  # usage, campaign-file or input-file error; nothing was sent
    STOPPED = 3  # stopped early: authentication, invalid channel, too many errors
    INTERRUPTED = 130  # Ctrl-C / SIGTERM


def full_stop(text: str) -> str:
    """``text`` ending in exactly one full stop (or its own ``?``, ``!``, ``…``).

    For wrapping someone else's sentence (Jinja2's "... that needs to be closed is 'for'.",
    tomllib's, the API's "Authentication failed.") in ours: appending "." by hand gives
    "'for'..". The CLI joins whole sentences the same way (``campaign.printing.sentence``).
    """
    text = text.strip()
    return text if not text or text[-1] in ".?!…" else text + "."


def agree(n: int, singular: str, plural: str | None = None) -> str:
    """The words that agree with ``n`` without the number: ``agree(1, "it", "them")`` is "it";
    ``plural`` defaults to ``singular`` + "s"."""
    return singular if n == 1 else (plural or singular + "s")


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` with thousands separators and the words that agree with it: ``count(1, "row")`` is
    "1 row", ``count(1204, "row")`` "1,204 rows", ``count(n, "row is", "rows are")`` either form."""
    return f"{n:,} {agree(n, singular, plural)}"


class CampaignError(Exception):
    """Base of every error meant for the user; ``str(err)`` is the sentence to print."""

    exit_code: ExitCode = ExitCode.INPUT


class UsageError(CampaignError):
    """The command line asks for something impossible."""


class _FileError(CampaignError):
    """An error about one file: its text starts with the file's path."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = Path(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        # Rebuilt from (path, message), not from the formatted text: the error crosses from
        # the process preparing rows to the one sending them.
        return (type(self), (self.path, self.message))


class ConfigError(_FileError):
    """The campaign file is missing, unparseable or has a wrong or unknown key."""


class InputFileError(_FileError):
    """A recipients or suppression file cannot be read; nothing has been sent."""


RESULTS_ELSEWHERE = "`campaign status CAMPAIGN_FILE --results PATH` writes them elsewhere."


class OutputError(_FileError):
    """A file campaign writes (a results file, a report, an export) cannot be written: a folder
    in its path is a file, no space, no permission. The state has every row, so nothing is lost.
    ``reason`` is the system's own words (``strerror``)."""

    def __init__(self, path: Path | str, reason: str, fix: str = RESULTS_ELSEWHERE) -> None:
        self.reason, self.fix = reason, fix
        super().__init__(path, f"cannot be written ({reason}). Nothing is lost: the state file has every row; {fix}")

    @classmethod
    def of(cls, path: Path, err: OSError, fix: str = RESULTS_ELSEWHERE) -> OutputError:
        """The error for ``err`` raised while writing ``path``, in the user's terms: a folder of
        the path that is a file is named (the system says only "File exists" or "Not a directory")."""
        reason = err.strerror or str(err)
        existing = next((p for p in path.parents if p.exists()), None)
        if existing is not None and not existing.is_dir():
            reason = f"{existing} is a file, not a folder"
        return cls(path, reason, fix)

    def __reduce__(self) -> tuple[type, tuple[Path, str, str]]:  # type: ignore[override]
        return (type(self), (self.path, self.reason, self.fix))


class LockedError(CampaignError):
    """Another ``campaign send`` of the same campaign is running."""


class StateError(CampaignError):
    """The state file cannot be used (corrupt, or written by a newer version)."""


class RunStopped(CampaignError):
    """The API answered in a way that makes every further request pointless."""

    exit_code = ExitCode.STOPPED
