"""docs/architecture.md's module table names every module of src/stax, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def _table() -> dict[str, str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Modules and what each owns", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `(stax/[^`]+)` \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_every_module_has_a_row() -> None:
    rows = _table()
    missing = []
    for path in sorted((SRC / "stax").rglob("*")):
        if path.suffix not in (".py", ".js") or "egg-info" in str(path):
            continue
        rel = path.relative_to(SRC).as_posix()
        if rel in rows:
            continue
        if path.name == "__init__.py" and any(r.startswith(rel[: -len("__init__.py")])
                                              for r in rows):
            continue  # a package's __init__ is covered by the rows of its modules
        # a package row (``stax/web/``) names its files
        pkg = next((d for d in rows if d.endswith("/") and rel.startswith(d)), None)
        if pkg is not None and (path.name in rows[pkg] or path.name == "__init__.py"):
            continue
        missing.append(rel)
    assert not missing, f"modules without a row in docs/architecture.md: {missing}"


def test_every_row_names_a_module() -> None:
    gone = [m for m in _table() if not (SRC / m).exists()]
    assert not gone, f"rows of docs/architecture.md for modules that do not exist: {gone}"
