"""Import direction of the analysis and report layers, read from the source (no import needed).

ephys computes and never imports training, reports or orchestration; reports draw and render and
never import training or orchestration; no module of these three packages imports inside a
function, and none touches matplotlib's global state (``matplotlib.use``, pyplot).
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stdann"
FORBIDDEN = {
    "ephys": ("stdann.training", "stdann.reports", "stdann.orchestration", "stdann.cli"),
    "reports": ("stdann.training", "stdann.orchestration", "stdann.cli"),
    "orchestration": ("stdann.cli",),
}


def _imports(path: Path):
    """(module name, line, inside a function?) of every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            inner = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_func) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                out.append((child.module, child.lineno, in_func))
            visit(child, inner)

    visit(tree, False)
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_point_down(package):
    bad = [f"{p.relative_to(SRC)}:{line} imports {mod}"
           for p in sorted((SRC / package).rglob("*.py")) for mod, line, _ in _imports(p)
           if mod.startswith(FORBIDDEN[package])]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_at_module_level(package):
    bad = [f"{p.relative_to(SRC)}:{line} imports {mod} inside a function"
           for p in sorted((SRC / package).rglob("*.py")) for mod, line, in_func in _imports(p) if in_func]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_global_matplotlib_state(package):
    for p in sorted((SRC / package).rglob("*.py")):
        text = p.read_text()
        assert "matplotlib.use(" not in text, p
        assert not any(mod == "matplotlib.pyplot" for mod, _, _ in _imports(p)), p
