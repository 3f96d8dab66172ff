"""Library code never imports CLI code: stages, the demo and renderers work without typer's commands.

A CLI module is a package's `cli.py`, a `*_cli.py`, `cli_common.py`, `commands.py` (mounts the CLIs) or
a `__main__.py`; every other module under triton_bundle/ is library code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import triton_bundle

PACKAGE = Path(triton_bundle.__file__).parent


def is_cli(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return last in ("cli", "cli_common", "commands", "__main__") or last.endswith("_cli")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every module the file imports, at the top or inside a function, relative imports resolved."""
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # `from pkg import cli` imports the module pkg.cli
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def cli_imports_in_library(root: Path) -> list[str]:
    """`library.module -> cli.module` for every library module under root that imports CLI code."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        if is_cli(name):
            continue
        problems += [f"{name} -> {m}" for m in sorted(imported_modules(path, root)) if is_cli(m)]
    return problems


def test_library_modules_do_not_import_cli_modules():
    assert cli_imports_in_library(PACKAGE) == []


def test_the_check_finds_each_way_of_importing_a_cli(tmp_path):
    root = tmp_path / "pkg"
    (root / "stage").mkdir(parents=True)
    for name in ("__init__.py", "stage/__init__.py", "stage/cli.py", "stage/serve_cli.py"):
        (root / name).write_text("")
    (root / "stage" / "cli.py").write_text("from .run import go\n")  # a CLI may import the library
    (root / "stage" / "run.py").write_text("def go():\n    from .cli import x\n")
    (root / "stage" / "demo.py").write_text("from pkg.stage import serve_cli\n")
    (root / "top.py").write_text("import pkg.stage.cli\nfrom . import stage\n")
    assert cli_imports_in_library(root) == [
        "pkg.stage.demo -> pkg.stage.serve_cli",
        "pkg.stage.run -> pkg.stage.cli",
        "pkg.top -> pkg.stage.cli",
    ]
