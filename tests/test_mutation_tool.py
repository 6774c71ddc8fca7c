"""bench/mutation.py's --recheck: a saved mutant's diff (mutmut 3's ``show``) applied by hand."""

from __future__ import annotations

from pathlib import Path

from bench.mutation import apply_diff

SOURCE = '''class Box:
    def size(self) -> int:
        """How big.

        In units.
        """
        return 1 + 2


def total() -> int:
    return 3
'''

#: What mutmut 3 shows for a method: numbered from the def, dedented, the docstring as it was.
METHOD = '''--- pkg/box.py
+++ pkg/box.py
@@ -3,4 +3,4 @@

         In units.
         """
-    return 1 + 2
+    return 1 - 2
'''

FUNCTION = """--- pkg/box.py
+++ pkg/box.py
@@ -1,2 +1,2 @@
 def total() -> int:
-    return 3
+    return 4
"""


def tree(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "box.py").write_text(SOURCE, encoding="utf-8")
    return tmp_path / "pkg" / "box.py"


def test_a_methods_dedented_hunk_is_applied_at_its_own_indentation(tmp_path: Path) -> None:
    path = tree(tmp_path)
    assert apply_diff(METHOD, tmp_path)
    assert path.read_text(encoding="utf-8") == SOURCE.replace("return 1 + 2", "return 1 - 2")


def test_a_module_level_functions_hunk_is_applied_as_written(tmp_path: Path) -> None:
    path = tree(tmp_path)
    assert apply_diff(FUNCTION, tmp_path)
    assert path.read_text(encoding="utf-8") == SOURCE.replace("return 3", "return 4")


def test_a_hunk_whose_code_changed_is_stale_and_leaves_the_file(tmp_path: Path) -> None:
    path = tree(tmp_path)
    path.write_text(SOURCE.replace("return 1 + 2", "return 2 + 1"), encoding="utf-8")
    assert not apply_diff(METHOD, tmp_path)
    assert path.read_text(encoding="utf-8") == SOURCE.replace("return 1 + 2", "return 2 + 1")
    assert not apply_diff(FUNCTION.replace("pkg/box.py", "pkg/gone.py"), tmp_path)
