"""The layout's rules, checked: one-way imports between the subpackages (import-linter
contracts in ``pyproject.toml``), no private name used across subpackages, and a clean
``ruff check`` (docs/architecture.md)."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fastrelu"


def _subpackage(module):
    """``fastrelu._bias.mcbe`` -> ``_bias``; the package root -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else ""


def _modules(package_dir):
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def private_imports_across_subpackages(package_dir):
    """``(module, imported name)`` for every ``from fastrelu.X... import _name`` whose
    source lies in another subpackage than the importing module (dunder names such as
    ``__version__`` excepted)."""
    found = []
    for module, path in _modules(package_dir):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        home = _subpackage(module)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not node.module or not node.module.startswith("fastrelu"):
                continue
            source = _subpackage(node.module)
            if source == home or not source:
                continue
            for alias in node.names:
                name = alias.name
                if name.startswith("_") and not name.startswith("__"):
                    found.append((module, f"{node.module}.{name}"))
    return found


def test_no_private_name_is_imported_across_subpackages():
    assert private_imports_across_subpackages(PACKAGE) == []


def test_the_private_name_check_finds_a_violation(tmp_path):
    copy = tmp_path / "fastrelu"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    with open(copy / "_spectral" / "width.py", "a") as fh:
        fh.write("\nfrom fastrelu._bias.mcbe import _McbePlan  # noqa\n")
    assert private_imports_across_subpackages(copy) == [
        ("fastrelu._spectral.width", "fastrelu._bias.mcbe._McbePlan")]


def _lint_imports(root):
    """Run import-linter on the package under ``root`` with ``root``'s pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    # a lower layer importing a higher one
    ("_core/errors.py", "from fastrelu._bias import mcbe  # noqa", "One-way layers"),
    # two capabilities, which are independent
    ("_spectral/width.py", "from fastrelu._injectivity import pointwise  # noqa", "One-way layers"),
    # a cycle inside a subpackage
    ("_runtime/blockmap.py", "from fastrelu._runtime import checkpoint  # noqa", "No import cycle"),
])
def test_import_contracts_break_on_a_violation(tmp_path, module, line, broken):
    shutil.copytree(PACKAGE, tmp_path / "fastrelu",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "fastrelu" / module, "a") as fh:
        fh.write(f"\n{line}\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0 and " 0 broken" not in result.stdout
    assert broken in result.stdout.split("Broken contracts", 1)[1]


def test_ruff_check_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
