"""The layers of stdann, read from the source with ``ast`` (nothing is imported).

Every import of every module — at module level and inside functions — is checked against the
table ``LAYERS`` below, which is the table of ``docs/architecture.md`` ("Layers"):

* an import points down the table, or stays inside its own unit (a sub-package or a top-level
  module); units of one row never import each other;
* the units import one another without a cycle;
* no private name (leading underscore; dunders such as ``__version__`` are public) is imported
  from another stdann module;
* function-level imports are kept to the documented few (an optional or heavy dependency
  imported only where it is used);
* functions stay under 80 lines and modules under 450, but for the listed ones still waiting for
  their split (the list may only shrink).
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "stdann"

# Top to bottom; a unit may import the units of every row below its own. "stdann" is the package
# root (``__version__``, ``DIRECTION_CONVENTION``). Keep in step with docs/architecture.md.
LAYERS = [
    ("__main__",),
    ("cli",),
    ("orchestration",),
    ("training", "reports"),
    ("runs",),
    ("resources",),
    ("config",),
    ("config_checks",),
    ("ephys", "topography", "data"),
    ("models",),
    ("distributed", "fileio", "cpu"),
    ("devices",),
    ("errors", "presets", "stdann"),
]
RANK = {unit: i for i, row in enumerate(LAYERS) for unit in row}

# The only imports inside functions: (module path relative to src/stdann, imported module).
LAZY_IMPORTS = {
    ("data/folder.py", "av"),  # PyAV: only where video files are read (tests/data/test_without_pyav.py)
    ("data/preview.py", "av"),  # writing an MP4 preview
    ("training/logger.py", "torch.utils.tensorboard"),  # TensorBoard: optional, slow to import
}


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, ".".join(parts), ".".join(package)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "stdann"


def _imports(path: Path, package: str):
    """(imported module, imported names, line, inside a function?) of every import in ``path``,
    relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            inner = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, [], child.lineno, in_func) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                module = child.module or ""
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    module = ".".join(base + ([module] if module else []))
                out.append((module, [a.name for a in child.names], child.lineno, in_func))
            visit(child, inner)

    visit(tree, False)
    return out


def _stdann_edges():
    """(importing unit, imported unit, where) of every stdann import; ``from stdann import x``
    counts as an import of the unit ``x`` when ``x`` is a sub-module or sub-package."""
    edges = []
    for path, module, package in _modules():
        where = str(path.relative_to(SRC))
        for target, names, line, _ in _imports(path, package):
            if target != "stdann" and not target.startswith("stdann."):
                continue
            if target == "stdann":
                targets = [f"stdann.{n}" if n in RANK else "stdann" for n in names]
            else:
                targets = [target]
            for t in targets:
                edges.append((_unit(module), _unit(t), f"{where}:{line} imports {t}"))
    return edges


def test_every_unit_is_in_the_table():
    units = {_unit(m) for _, m, _ in _modules()}
    missing = sorted(units - set(RANK))
    assert not missing, f"add these to LAYERS and to docs/architecture.md: {missing}"


def test_imports_point_down_the_layers():
    bad = [f"{where} ({a} → {b}: {'same row' if RANK[a] == RANK[b] else 'upward'})"
           for a, b, where in _stdann_edges() if a != b and RANK[b] <= RANK[a]]
    assert not bad, "imports against docs/architecture.md's layer table:\n" + "\n".join(bad)


def test_no_cycle_between_units():
    graph: dict[str, set[str]] = {}
    for a, b, _ in _stdann_edges():
        if a != b:
            graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(u):
        state[u] = 1
        path.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                pytest.fail("import cycle: " + " → ".join(path[path.index(v):] + [v]))
            if v not in state:
                visit(v)
        path.pop()
        state[u] = 2

    for u in sorted(graph):
        if u not in state:
            visit(u)


def test_no_private_names_across_modules():
    bad = []
    for path, module, package in _modules():
        for target, names, line, _ in _imports(path, package):
            if (target == "stdann" or target.startswith("stdann.")) and target != module:
                bad += [f"{path.relative_to(SRC)}:{line} imports {target}.{n}" for n in names
                        if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]
    assert not bad, "private names imported from another module (make them public, with a docstring):\n" + "\n".join(bad)


def test_function_level_imports_are_the_documented_few():
    found = {(str(path.relative_to(SRC)), target)
             for path, _, package in _modules() for target, _, _, in_func in _imports(path, package) if in_func}
    assert found == LAZY_IMPORTS, (f"new function-level imports (hoist them, or document why not): {sorted(found - LAZY_IMPORTS)}; "
                                   f"gone (drop them from LAZY_IMPORTS): {sorted(LAZY_IMPORTS - found)}")


def test_the_table_is_the_documented_one():
    """docs/architecture.md shows the same rows, top to bottom."""
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    section = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[2].strip() for line in section.splitlines()
            if line.startswith("|") and line.split("|")[1].strip().isdigit()]
    assert rows == [", ".join(row) for row in LAYERS]


def test_matplotlib_only_in_reports_figures_and_no_global_state():
    """Figures are drawn with the object API on the Agg canvas (reports/figures/common.py): no module
    changes matplotlib's global backend or uses pyplot, and only reports/figures imports matplotlib."""
    bad = []
    for path, _, package in _modules():
        rel = path.relative_to(SRC)
        if "matplotlib.use(" in path.read_text():
            bad.append(f"{rel} calls matplotlib.use")
        for target, _, line, _ in _imports(path, package):
            if target == "matplotlib.pyplot":
                bad.append(f"{rel}:{line} imports pyplot")
            elif target.split(".")[0] == "matplotlib" and rel.parts[:2] != ("reports", "figures"):
                bad.append(f"{rel}:{line} imports matplotlib outside reports/figures")
    assert not bad, "\n".join(bad)


# The shape's size limits: no function longer than 80 lines, no module longer than 450. The lists
# name any still over (none today); they may only shrink — a new long function or module fails, and
# so does an entry that is no longer needed.
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 80, 450
LONG_FUNCTIONS: set[str] = set()
LONG_MODULES: set[str] = set()


def test_functions_and_modules_stay_short():
    functions, modules = set(), set()
    for path, _, _ in _modules():
        rel = str(path.relative_to(SRC))
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            modules.add(rel)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                functions.add(f"{rel}:{node.name}")
    assert functions == LONG_FUNCTIONS, (f"over {MAX_FUNCTION_LINES} lines: new {sorted(functions - LONG_FUNCTIONS)}; "
                                         f"no longer (drop from LONG_FUNCTIONS) {sorted(LONG_FUNCTIONS - functions)}")
    assert modules == LONG_MODULES, (f"over {MAX_MODULE_LINES} lines: new {sorted(modules - LONG_MODULES)}; "
                                     f"no longer (drop from LONG_MODULES) {sorted(LONG_MODULES - modules)}")
