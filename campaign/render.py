"""Per-row rendering: one spreadsheet row in, one ``POST /message`` body out.

Every field under ``[message]`` and ``[contact_saving]`` is a Jinja2 template, compiled once per
run in a :class:`~jinja2.sandbox.SandboxedEnvironment` with :class:`~jinja2.StrictUndefined`:
a campaign template cannot reach Python internals, and a variable that is not there is an error
for that row, never a silent blank. Cell contents are data passed *into* templates, never
templates themselves, so a cell holding ``{{ 7*7 }}`` is sent as those characters.

Variables (PRODUCT.md, "The campaign file"): each column whose header is an identifier, under
that header; ``row``, always the mapping of every column (a column headed ``row`` is
``row["row"]``); ``phone``, the normalised number; ``name``, the ``name_column`` cell or, without
one, the column headed ``name`` (the caller finds it). A template that reads no variable is the
same for every row: its value is checked against the provider's rules once, when the campaign
loads, so a mistake in it is a ConfigError naming the key, not one invalid row per recipient.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from campaign import rules, timing
from campaign.config import GSWA_SECTIONS, MEDIA_FIELDS, Campaign
from campaign.errors import ConfigError, full_stop
from campaign.rules import RuleError
from campaign.spreadsheet import header_key, visible

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class _Blank(str):
    """An empty cell, tagged with its variable, so printing it as-is can be noticed.

    ``{{ first_name or 'there' }}`` never prints it (an empty string is false); a bare
    ``{{ first_name }}`` does, and that is the silent blank worth a warning.
    """

    variable: str


def _blank(variable: str) -> _Blank:
    value = _Blank("")
    value.variable = variable
    return value

_BUILTIN_NAMES = frozenset({"row", "phone", "name"})
_JINJA_CONSTANTS = frozenset({"true", "false", "none", "True", "False", "None"})  # names Jinja reads as constants
_TRUE = {"true", "yes", "1", "y", "on"}
_FALSE = {"false", "no", "0", "n", "off", ""}


class RowInvalid(ValueError):
    """The row cannot become a valid request; ``str()`` is the reason for the results file."""


class _RowTemplate(jinja2.Template):
    """A template whose evaluation errors are all Jinja's, so each is the row's (or, for a
    template the same for every row, the campaign file's) and never stops a run.

    Jinja raises its own errors (an undefined attribute) as :class:`jinja2.TemplateError`, but
    lets Python's through as they are: ``{{ 100 / (n|int) }}`` on a cell ``0``
    (ZeroDivisionError), ``{{ Name + 1 }}`` (TypeError: every cell is text), a range over the
    sandbox's ``MAX_RANGE`` (OverflowError). Those become
    :class:`jinja2.TemplateRuntimeError` with the exception's name and words.
    """

    def render(self, *args: Any, **kwargs: Any) -> str:
        try:
            return super().render(*args, **kwargs)
        except jinja2.TemplateError:
            raise
        except Exception as err:
            hint = " (every cell is text: |int or |float makes it a number)" if isinstance(err, TypeError) else ""
            raise jinja2.TemplateRuntimeError(f"{type(err).__name__}: {err}{hint}") from err


@dataclass(frozen=True, slots=True)
class Rendered:
    """A ready request body plus what the results file and the check report show of it."""

    body: dict[str, Any]
    message: str  # the text, or the template variables as JSON
    scheduled: bool
    text: str | None  # the SMS text, for segment counting
    blanks: tuple[str, ...] = ()  # variables that were empty in this row and left a blank in the message
    note: str = ""  # what reading the schedule decided (a DST gap or fold in [message] timezone)




class Renderer:
    """Compiles a campaign's templates once and renders rows against them.

    ``columns`` are the recipients file's headers; ``extra_field_columns`` maps each
    ``[contact_saving] extra_fields`` column name to its index (found by the caller with the
    recipients file's header rules).
    """

    def __init__(
        self,
        campaign: Campaign,
        columns: tuple[str, ...],
        *,
        name_index: int | None = None,
        extra_field_columns: Mapping[str, int] | None = None,
        now: datetime | None = None,
    ) -> None:
        self.campaign = campaign
        self.columns = columns
        self.name_index = name_index
        self.extra_columns = dict(extra_field_columns or {})
        self.now = now
        self._leaked: list[str] = []
        self.env = SandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=self._finalize
        )
        self.env.template_class = _RowTemplate
        # Columns whose header is an identifier are variables under that name; `phone`, `name`
        # and `row` are always ours (a column headed `name` is ours through name_index).
        self.ident = [(c, i) for i, c in enumerate(columns) if c.isidentifier() and c not in _BUILTIN_NAMES]
        known = {c for c, _ in self.ident} | {"row", "phone"} | ({"name"} if name_index is not None else set())
        self.known = known
        self.used: set[str] = set()  # variables the templates read: checked for blanks per row
        self.uses_row = False  # does any template read row["Header"]?
        msg = campaign.message
        self.tz = ZoneInfo(msg.timezone) if msg.timezone else None
        # Each template comes with the rule its rendered value must meet. A template that does
        # not depend on the row is checked here, once: a mistake in it is the campaign file's,
        # not one invalid row per recipient (PRODUCT.md).
        self.text = self._compile(msg.text, msg.text_source, rules.check_text)
        self.media = [
            (f, self._req(getattr(msg, f), f"[message] {f}", functools.partial(_check_url, field=f)))
            for f in MEDIA_FIELDS
            if getattr(msg, f)
        ]
        self.template_id = self._compile(
            msg.template_id,
            "[message] template_id",
            lambda v: rules.check_template_id(v.strip(), campaign.provider),
        )
        self.schedule = self._compile(msg.schedule, "[message] schedule", self._check_schedule)
        self.user_id = self._compile(msg.user_id, "[message] user_id")
        self.flat_vars: list[tuple[str, jinja2.Template]] = []
        self.sections: list[tuple[str, list[tuple[str, jinja2.Template]]]] = []
        self.media_url: jinja2.Template | None = None
        if campaign.provider == "twlowa":
            self.flat_vars = [
                (k, self._req(v, f"[message.variables] {k}", functools.partial(_check_variable, key=k)))
                for k, v in msg.variables.items()
            ]
            if len(self.flat_vars) > rules.MAX_VARIABLES:  # the same for every row: a campaign-file error
                raise ConfigError(
                    campaign.path,
                    f"[message.variables] has {len(self.flat_vars)} variables; the limit is {rules.MAX_VARIABLES}.",
                )
        elif campaign.provider == "gswa":
            for section in GSWA_SECTIONS:
                table = msg.variables.get(section)
                if table:
                    self.sections.append((section, [(k, self._gswa_variable(section, k, v)) for k, v in table.items()]))
            if "MEDIA_URL" in msg.variables:
                self.media_url = self._req(
                    msg.variables["MEDIA_URL"],
                    "[message.variables] MEDIA_URL",
                    functools.partial(_check_url, field="MEDIA_URL"),
                )
        saving = campaign.contact_saving
        self.saving_save: jinja2.Template | bool | None = None
        self.saving_list: jinja2.Template | int | None = None
        self.saving_extra: list[tuple[str, jinja2.Template | int]] = []
        if saving is not None:
            self.saving_save = (
                saving.save
                if isinstance(saving.save, bool)
                else self._req(saving.save, "[contact_saving] save", _save_word)
            )
            self.saving_list = (
                saving.list_id
                if isinstance(saving.list_id, int)
                else self._req(saving.list_id, "[contact_saving] list_id", _list_id)
            )
            if isinstance(saving.extra_fields, Mapping):
                self.saving_extra = [
                    (k, self._req(v, f"[contact_saving] extra_fields {k}")) for k, v in saving.extra_fields.items()
                ]
            else:
                self.saving_extra = [(c, self.extra_columns[c]) for c in saving.extra_fields]
        # Per row, build only what the templates read: the columns they name, and the `row`
        # mapping only if some template uses it.
        self.ident = [(c, i) for c, i in self.ident if c in self.used]

    def _check_schedule(self, rendered: str) -> None:
        if rendered.strip():  # empty means "send now"
            self._schedule(rendered.strip())

    def _gswa_variable(self, section: str, key: str, source: str) -> jinja2.Template:
        def check(value: str) -> None:
            rules.check_variable(f"{section} {key}", value, body=section == "Body")

        return self._req(source, f"[message.variables.{section}] {key}", check)

    def _req(self, source: str, where: str, check: Callable[[str], object] | None = None) -> jinja2.Template:
        template = self._compile(source, where, check)
        assert template is not None
        return template

    def _compile(
        self, source: str | None, where: str, check: Callable[[str], object] | None = None
    ) -> jinja2.Template | None:
        """Compile one template; a syntax error, an unknown variable or, for a template that
        does not depend on the row, a broken rule (``check`` on its one value) stops the run
        here with a ConfigError naming ``where``."""
        if source is None:
            return None
        try:
            ast = self.env.parse(source)
            self._refuse_unknown_names(ast, where)
            undeclared = meta.find_undeclared_variables(ast)  # compiles it: Jinja's other checks
        except TemplateSyntaxError as err:  # TemplateAssertionError too
            raise ConfigError(
                self.campaign.path, full_stop(f"{where}: template error on line {err.lineno}: {err.message}")
            ) from None
        self._refuse_constant_names(source, where)
        self.used |= undeclared & (self.known - {"row", "phone"})
        self.uses_row = self.uses_row or "row" in undeclared
        for variable in sorted(undeclared - self.known):
            raise ConfigError(self.campaign.path, f"{where} uses {{{{ {variable} }}}}, but {self._missing(variable)}")
        if "row" in undeclared and _prints_row(ast):
            raise ConfigError(
                self.campaign.path,
                f"{where} prints {{{{ row }}}}, which is every column of the row; write "
                f'row["Header Name"] for one column (a column headed row is row["row"]).',
            )
        template = self.env.from_string(source)
        if check is not None and not undeclared:
            self._check_constant(template, where, check)
        return template

    def _refuse_unknown_names(self, ast: nodes.Template, where: str) -> None:
        """A ``row["Header"]`` the file does not have, or a filter or test Jinja does not have
        (``{{ name|nosuch }}``, ``is nosuchtest``), is the campaign file's typo, whichever
        branch it is in: Jinja would find it only when a row reaches it, and fail that row alone."""
        for item in ast.find_all(nodes.Getitem):  # row["Header"]: a header the file does not have
            key = item.arg.value if isinstance(item.arg, nodes.Const) else None
            row = isinstance(item.node, nodes.Name) and item.node.name == "row"
            if row and isinstance(key, str) and key not in self.columns:
                close = difflib.get_close_matches(key, list(self.columns), n=1)
                hint = f" Did you mean {json.dumps(close[0], ensure_ascii=False)}?" if close else ""
                raise ConfigError(
                    self.campaign.path,
                    f"{where} uses row[{json.dumps(key, ensure_ascii=False)}], but "
                    f"{self.campaign.recipients.file.name} has no column {json.dumps(key, ensure_ascii=False)}."
                    f"{hint} Columns: {', '.join(visible(c) for c in self.columns)}.",
                )
        for node in ast.find_all((nodes.Filter, nodes.Test)):
            kind, known = ("filter", self.env.filters) if isinstance(node, nodes.Filter) else ("test", self.env.tests)
            if node.name not in known:
                close = difflib.get_close_matches(node.name, list(known), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    self.campaign.path,
                    f"{where}: template error on line {node.lineno}: Jinja has no {kind} named {node.name!r}.{hint}",
                )

    def _refuse_constant_names(self, source: str, where: str) -> None:
        """A column headed ``none``, ``true`` or ``false`` (any of Jinja's spellings) is not
        ``{{ none }}``: Jinja reads that name as its constant and would print "None" for every
        row. Refused with the way to write the column."""
        shadowed = _JINJA_CONSTANTS.intersection(self.columns)
        if not shadowed:
            return
        previous = ""
        for _, kind, value in self.env.lex(source):
            if kind == "name" and value in shadowed and previous != "dot":
                raise ConfigError(
                    self.campaign.path,
                    f"{where} uses {{{{ {value} }}}}, which Jinja reads as its constant {value}, "
                    f'not the column "{value}"; write {{{{ row["{value}"] }}}}.',
                )
            if kind != "whitespace":
                previous = kind

    def _check_constant(self, template: jinja2.Template, where: str, check: Callable[[str], object]) -> None:
        """Render a template that reads no variable once and apply its rule: a ConfigError."""
        try:
            check(template.render())
        except (RuleError, RowInvalid) as err:
            raise ConfigError(self.campaign.path, f"{where} is the same for every row, and {err}.") from None
        except jinja2.TemplateError as err:
            raise ConfigError(self.campaign.path, f"{where}: template error: {err}.") from None
        finally:
            self._leaked.clear()

    def _missing(self, variable: str) -> str:
        """Why ``{{ variable }}`` is not a column, said so that it cannot contradict itself.

        Columns are listed as the file has them, with invisible characters shown (``<U+200B>``);
        a header that matches but for case, spaces or invisible characters is named with the
        exact way to write it.
        """
        file = self.campaign.recipients.file.name
        columns = ", ".join(visible(c) for c in self.columns)
        key = header_key(variable)
        variables = sorted(k for k in self.known - {"row"} if header_key(k) == key)
        if variables:  # {{ Name }} for {{ name }}: variable names are case-sensitive
            return (
                f"there is no variable {variable!r}; write {{{{ {variables[0]} }}}} "
                "(variable names are case-sensitive)."
            )
        spaced = header_key(variable.replace("_", " "))  # {{ first_name }} for "First Name"
        same = [c for c in self.columns if header_key(c) in (key, spaced)]
        if same:
            column = same[0]
            how = f"{{{{ row[{json.dumps(column, ensure_ascii=False)}] }}}}"
            if not column.isprintable():
                how = f"{{{{ row[{json.dumps(column)}] }}}}, or retype the header without the invisible character"
            return f'{file} has the column "{visible(column)}", not {variable!r}; write {how}.'
        close = difflib.get_close_matches(variable, sorted(self.known), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return (
            f"{file} has no column {variable!r}.{hint} Columns: {columns}. A header that is not a "
            f'plain name is written row["Header Name"].'
        )

    def context(self, cells: tuple[str, ...], phone: str) -> dict[str, Any]:
        """The variables one row's templates see."""
        ctx: dict[str, Any] = {c: cells[i] for c, i in self.ident}
        if self.uses_row:
            ctx["row"] = dict(zip(self.columns, cells, strict=True))
        ctx["phone"] = phone
        if self.name_index is not None:
            ctx["name"] = cells[self.name_index].strip()
        for variable in self.used:
            if ctx.get(variable) == "":
                ctx[variable] = _blank(variable)
        return ctx

    def render(self, cells: tuple[str, ...], phone: str) -> Rendered:
        """Build the request body for one row, or raise :class:`RowInvalid` with the reason."""
        ctx = self.context(cells, phone)
        self._leaked.clear()
        try:
            rendered = self._render(ctx, cells, phone)
        except RuleError as err:
            raise RowInvalid(str(err)) from None
        except jinja2.TemplateError as err:
            raise RowInvalid(f"template error: {err}") from None
        if self._leaked:
            blanks = tuple(sorted(set(self._leaked)))
            self._leaked.clear()
            return Rendered(rendered.body, rendered.message, rendered.scheduled, rendered.text, blanks, rendered.note)
        return rendered

    def _finalize(self, value: Any) -> Any:
        """Jinja calls this on every ``{{ ... }}`` output: note empty cells printed as-is."""
        if type(value) is _Blank:
            self._leaked.append(value.variable)
        return value

    def _render(self, ctx: dict[str, Any], cells: tuple[str, ...], phone: str) -> Rendered:
        c = self.campaign
        body: dict[str, Any] = {"provider": c.provider, "channel_key": c.channel_key, "to": phone}
        name = ctx.get("name")
        if name:
            body["name"] = name
        text: str | None = None
        message = ""
        if self.text is not None:
            text = self.text.render(ctx)
            rules.check_text(text)
            body["text"] = message = text
        for field, template in self.media:
            url = template.render(ctx).strip()
            rules.check_url(url, field)
            body[field] = url
            message = message or url
        if self.template_id is not None:
            template_id = self.template_id.render(ctx).strip()
            rules.check_template_id(template_id, c.provider)
            variables = self._variables(ctx)
            body["template"] = {"id": template_id, "variables": variables} if variables else {"id": template_id}
            message = _JSON.encode(variables)
        saving = self._contact_saving(ctx, cells)
        if saving is not None:
            body["contact_saving"] = saving
        scheduled = False
        note = ""
        if self.schedule is not None:
            when = self.schedule.render(ctx).strip()
            if when:  # an empty per-row schedule means "send now"
                body["schedule"], note = self._schedule(when)
                scheduled = True
        if self.user_id is not None:
            body["user_id"] = self.user_id.render(ctx).strip()
        return Rendered(body=body, message=message, scheduled=scheduled, text=text, note=note)

    def _variables(self, ctx: dict[str, Any]) -> dict[str, Any]:
        if self.flat_vars:
            out: dict[str, Any] = {}
            for key, template in self.flat_vars:
                value = template.render(ctx)
                rules.check_variable(key, value)
                out[key] = value
            if len(out) > rules.MAX_VARIABLES:
                raise RuleError(f"the template has {len(out)} variables; the limit is {rules.MAX_VARIABLES}")
            return out
        nested: dict[str, Any] = {}
        if self.media_url is not None:
            url = self.media_url.render(ctx).strip()
            rules.check_url(url, "MEDIA_URL")
            nested["MEDIA_URL"] = url
        for section, items in self.sections:
            values = {}
            for key, template in items:
                value = template.render(ctx)
                rules.check_variable(f"{section} {key}", value, body=section == "Body")
                values[key] = value
            nested[section] = values
        return nested

    def _contact_saving(self, ctx: dict[str, Any], cells: tuple[str, ...]) -> dict[str, Any] | None:
        if self.saving_save is None:
            return None
        save = self.saving_save
        if not isinstance(save, bool):
            save = _save_word(save.render(ctx))
        list_id = self.saving_list
        if not isinstance(list_id, int):
            assert list_id is not None
            list_id = _list_id(list_id.render(ctx))
        out: dict[str, Any] = {"save": save, "list_id": list_id}
        if self.saving_extra:
            out["extra_fields"] = {
                key: (cells[src] if isinstance(src, int) else src.render(ctx))
                for key, src in self.saving_extra
            }
        return out

    def _schedule(self, when: str) -> tuple[str, str]:
        """Parse a schedule, give it an offset, refuse the past: sent as ISO 8601 with offset.

        A time without an offset is read in ``[message] timezone`` by RFC 5545's rules for a
        time the clocks skip or repeat (:func:`campaign.timing.resolve_local`); the second value
        says what was decided then, for the row's results, else ''."""
        try:
            moment = datetime.fromisoformat(when)
        except ValueError:
            raise RowInvalid(
                f"schedule {when!r} is not an ISO 8601 date-time (e.g. 2026-12-01T09:00:00-05:00)"
            ) from None
        if moment.tzinfo is None:
            if self.tz is None:
                raise RowInvalid(
                    f"schedule {when!r} has no UTC offset; add one (e.g. -05:00) or set [message] timezone"
                )
            moment, note = timing.resolve_local(moment, self.tz.key)
        else:
            note = ""
        now = self.now or timing.now()  # the one clock (campaign.timing)
        if moment <= now:
            raise RowInvalid(f"schedule {when!r} is in the past; set a future time or remove schedule to send now")
        return moment.isoformat(), note


def _check_url(rendered: str, field: str) -> None:
    rules.check_url(rendered.strip(), field)


def _check_variable(rendered: str, key: str) -> None:
    rules.check_variable(key, rendered)


def _save_word(rendered: str) -> bool:
    """``[contact_saving] save`` as rendered: a yes/no word, else RowInvalid."""
    word = rendered.strip().lower()
    if word not in _TRUE | _FALSE:
        raise RowInvalid(f"[contact_saving] save rendered {word!r}; expected true or false")
    return word in _TRUE


def _list_id(rendered: str) -> int:
    """``[contact_saving] list_id`` as rendered: a whole number (empty is 0), else RowInvalid."""
    text = rendered.strip()
    try:
        return int(text or "0")
    except ValueError:
        raise RowInvalid(f"[contact_saving] list_id rendered {text!r}; expected a whole number") from None


def _prints_row(ast: nodes.Template) -> bool:
    """Whether the template prints the ``row`` mapping itself (``{{ row }}``, ``{{ row | upper }}``)."""
    for output in ast.find_all(nodes.Output):
        for node in output.nodes:
            while isinstance(node, nodes.Filter) and node.node is not None:
                node = node.node
            if isinstance(node, nodes.Name) and node.name == "row":
                return True
    return False


def encode(body: dict[str, Any]) -> bytes:
    """The one JSON encoding of a request body, used for sending and for its hash."""
    return _JSON.encode(body).encode("utf-8")
