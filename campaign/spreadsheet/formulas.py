"""Formulas an .xlsx holds without their results, found while the file is scanned.

A worksheet cell with a formula stores the formula (``<f>``) and, when a spreadsheet
program saved it, the result it computed (``<v>``; ECMA-376 Part 1, 18.3.1.4 c, 18.3.1.40 f,
18.3.1.96 v). Files written by openpyxl and many exporters store the formula alone, so a
reader sees no value where Excel shows ``3``: a message would go out with a blank, or a row
with a computed phone number would be "no phone number". Such a workbook is refused before
anything is sent, naming the first such cell; :class:`UnsavedFormulas` finds it in the same
streaming pass that checks the archive (see :func:`campaign.spreadsheet.excel.check_zip`),
without loading the sheet.
"""

from __future__ import annotations

import re

_PREFIX = rb"(?:[A-Za-z_][\w.-]*:)?"  # writers such as the Open XML SDK write <x:c>
#: One cell that has content (not ``<c r="A1"/>``): its attributes and its content.
_CELL = re.compile(rb"<" + _PREFIX + rb"c(?=[\s>/])((?:[^>/]|/(?!>))*)>(.*?)</" + _PREFIX + rb"c>", re.DOTALL)
_CELL_END = re.compile(rb"</" + _PREFIX + rb"c>\Z")
_FORMULA = re.compile(rb"<" + _PREFIX + rb"f(?=[\s>/])")
_VALUE = re.compile(rb"<" + _PREFIX + rb"v(?=[\s>/])[^>]*?(?:/>|>(.*?)</" + _PREFIX + rb"v>)", re.DOTALL)
_REF = re.compile(rb"""\br\s*=\s*["']([A-Za-z]{1,3}[0-9]+)["']""")
_TYPE = re.compile(rb"""\bt\s*=\s*["'](\w+)["']""")
#: Cell types whose saved result may be empty: a formula that gives "" (=IF(A1>0,"x","")).
_TEXT_TYPES = frozenset({b"str", b"inlineStr"})
#: Kept between blocks at most: no real cell is this long (a formula is at most 8,192
#: characters, a text result 32,767), and a damaged part must not grow memory.
_MAX_PENDING = 1 << 20


class UnsavedFormulas:
    """Feed a worksheet part's XML block by block; ``first`` is the first formula cell
    without a saved result (``"C2"``, or ``"a cell"`` when the writer gave no reference),
    or None. Blocks without a formula cost one substring search.
    """

    def __init__(self) -> None:
        self.first: str | None = None
        self._pending = b""

    def feed(self, block: bytes) -> None:
        """Scan the cells that end in ``block``; keep the unfinished one for the next block."""
        if self.first is not None:
            return
        data = self._pending + block
        cut = _after_last_cell(data)
        done, self._pending = data[:cut], data[cut:][-_MAX_PENDING:]
        if _FORMULA.search(done) is None:
            return
        for cell in _CELL.finditer(done):
            attributes, content = cell.group(1), cell.group(2)
            if _FORMULA.search(content) is None:
                continue
            value = _VALUE.search(content)
            kind = _TYPE.search(attributes)
            empty_allowed = kind is not None and kind.group(1) in _TEXT_TYPES
            if value is None or (not (value.group(1) or b"").strip() and not empty_allowed):
                ref = _REF.search(attributes)
                self.first = ref.group(1).decode("ascii").upper() if ref else "a cell"
                return


def _after_last_cell(data: bytes) -> int:
    """Where the last ``</c>`` (or ``</x:c>``) in ``data`` ends; 0 if there is none."""
    end = len(data)
    while (found := data.rfind(b"c>", 0, end)) >= 0:
        if _CELL_END.search(data, max(found - 64, 0), found + 2):
            return found + 2
        end = found + 1
    return 0
