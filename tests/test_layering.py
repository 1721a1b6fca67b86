"""The package's layers import only downwards (docs/ARCHITECTURE.md).

``s3`` (requests) < ``upload`` (multipart, write-back, journal) < ``meta`` (format, inodes,
lookups) < ``data`` (open files, reads) < ``fuse`` (the Operations class) < ``run`` (cli,
mount, container).  Top-level modules (errors, units, procfs, tasks, ranges) serve every layer and import
none.  ``fuse`` reaches the bucket only through meta, data and upload: it never imports s3.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ocifs"
ORDER = ["s3", "upload", "meta", "data", "fuse", "run"]
# Layers a layer may import besides those below it.
FORBIDDEN_EXTRA = {"fuse": {"s3"}}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "ocifs" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ORDER else "base"


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("ocifs.")}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer_or_shared():
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top == {"__init__.py", "__main__.py", "errors.py", "units.py", "procfs.py",
                   "tasks.py", "ranges.py"}, top
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ORDER)


def test_no_relative_imports():
    """Absolute imports only, so that a module's layer is read from its import lines."""
    for path in modules():
        relative = [n for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.ImportFrom) and n.level]
        assert not relative, f"{path.relative_to(PACKAGE)} uses a relative import"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_downwards(path):
    own = layer_of("ocifs." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    if path.name == "__main__.py" and path.parent == PACKAGE:
        own = "run"  # ``python -m ocifs``: the command line
    for name in imports_of(path):
        target = layer_of(name)
        if target is None or target == own or own == "base" and name == "ocifs":
            continue
        if own == "base":
            assert target == "base", f"{path.name} (shared) imports {name}"
            continue
        if target == "base":
            continue
        assert target not in FORBIDDEN_EXTRA.get(own, set()), f"{own} imports {name}"
        assert ORDER.index(target) < ORDER.index(own), f"{own} imports {name} ({target} is above)"
