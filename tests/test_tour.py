"""The README's tour is docs/examples/tour.py: the same code, and it runs as written."""

import ast
import builtins
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SCRIPT = ROOT / "docs" / "examples" / "tour.py"


def _tour_blocks():
    """The Python code blocks of the README's "A tour" section, in order."""
    text = README.read_text()
    section = re.search(r"^## A tour\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert section, "README.md has no '## A tour' section"
    return [block.strip() for block in re.findall(r"^```python\n(.*?)^```$", section.group(1),
                                                   flags=re.M | re.S)]


def _script_code():
    """The script without its module docstring."""
    source = SCRIPT.read_text()
    docstring = ast.parse(source).body[0]
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)
    return "\n".join(source.splitlines()[docstring.end_lineno:]).strip()


def test_the_readme_shows_exactly_the_script():
    blocks = _tour_blocks()
    assert len(blocks) == 2  # the layer tour and the whole networks
    code = _script_code()
    for block in blocks:
        assert block in code
    assert code == "\n\n".join(blocks)  # nothing in the script that the README does not show


def test_every_name_the_tour_uses_is_defined_in_it():
    # Names read in the tour are assigned in it, imported, or builtins: pasting the blocks
    # into a fresh interpreter, in order, works
    tree = ast.parse("\n\n".join(_tour_blocks()))
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    assert used <= defined, f"undefined in the tour: {sorted(used - defined)}"


def test_the_tour_runs_as_written(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    env = dict(os.environ, MPLBACKEND="Agg")
    run = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "accuracy" in run.stdout and "Traceback" not in run.stderr
    written = sorted(os.listdir(tmp_path / "tour-report"))
    assert written == ["bias_vs_estimate.png", "injectivity.png", "metrics.png", "report.json",
                       "samples.npz"]
