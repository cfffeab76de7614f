"""The package's import layers, read from the source with ``ast`` (nothing is imported).

Every intra-package import is an edge: ``import benthicnet_hf.x``, ``from .x import y`` (``y`` a
submodule → edge to it), imports inside functions, under ``if TYPE_CHECKING:``, and
``import_module("...")`` calls whose module name starts with a constant (``f".rare_nodes.{name}"``
→ ``rare_nodes``). Checked:

(a) no import cycle, through module-level imports nor through imports inside functions. A cycle
    through a function-level import could not see a half-initialised module (it runs after loading)
    and would work, but the graph is acyclic today and stays so, so that it reads one way; only
    ``TYPE_CHECKING`` imports (never run) are left out.
(b) the core never imports :mod:`benthicnet_hf.experiments` (only the deprecated alias
    ``benthicnet_hf.hmc`` points there);
(c) a module never imports a module of a higher layer (:data:`LAYERS`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "benthicnet_hf"

#: Lowest first. A key is the first name under ``benthicnet_hf`` (module or subpackage);
#: ``""`` is the top-level ``__init__``. Imports within one layer are free (cycles still fail).
LAYERS: list[tuple[str, set[str]]] = [
    ("taxonomy", {"taxonomy", "hierarchy", "catami", "aphia"}),  # aphia: shipped node → WoRMS id table
    ("labels", {"labels"}),
    ("objectives", {"constraint", "losses", "rare_nodes", "embeddings"}),
    ("metrics", {"metrics", "evaluate_modules"}),
    # output_types read the output-type names from the config; the model loads them by name
    ("model", {"configuration_benthicnet", "output_types", "classifier_heads", "encoder", "image_processing",
               "pipeline_benthicnet", "modeling_benthicnet", "checkpoint_io", "checkpoint_match", "conversion",
               "prediction", "widget_export", "calibration"}),
    ("data", {"data"}),
    ("publishing", {"hub", "plots"}),  # model cards, their figures and pushes; the training loops publish through them
    ("training", {"training", "ssl", "contrastive"}),
    ("apps", {"cli", "app", ""}),
    ("experiments", {"experiments"}),
]
#: Deprecated paths kept for one release: thin aliases of the new modules, outside the layers.
DEPRECATED_ALIASES = {"benthicnet_hf.hmc": "experiments", "benthicnet_hf.arff_hierarchy": "data"}

Edge = tuple[str, str, str]  # (importer, imported, "module" | "function" | "typing")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _constant_prefix(arg: ast.expr) -> str | None:
    """The module name of an ``import_module`` argument up to its first formatted part."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rstrip(".")  # f".rare_nodes.{name}" → ".rare_nodes"
    return None


def _resolve(name: str, level: int, package: str) -> str:
    if not level:
        return name
    base = package.split(".")[: len(package.split(".")) - level + 1]
    return ".".join(base + ([name] if name else []))


def import_edges(path: Path, module: str, is_package: bool, modules: set[str]) -> set[Edge]:
    """Intra-package imports of one source file."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[Edge] = set()

    def add(target: str, kind: str) -> None:
        if (target == "benthicnet_hf" or target.startswith("benthicnet_hf.")) and target != module:
            found.add((module, target, kind))

    def visit(node: ast.AST, kind: str) -> None:
        if isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, package)
            for alias in node.names:  # `from . import x`: x may be a submodule
                add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base, kind)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, kind)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            prefix = _constant_prefix(node.args[0]) if fname == "import_module" else None
            if prefix is not None:
                level = len(prefix) - len(prefix.lstrip("."))
                add(_resolve(prefix.lstrip("."), level, package), kind)
        for child in ast.iter_child_nodes(node):
            inner = kind
            if kind == "module" and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = "function"
            if isinstance(node, ast.If) and _is_type_checking(node) and child in node.body:
                inner = "typing"
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), "module")
    return found


def package_graph(root: Path = PACKAGE) -> tuple[set[str], set[Edge]]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    edges: set[Edge] = set()
    for module, path in files.items():
        edges |= import_edges(path, module, path.name == "__init__.py", modules)
    # `import benthicnet_hf.a.b` of a name that is an attribute, not a file: keep its module
    return modules, {(a, b if b in modules else b.rpartition(".")[0], kind) for a, b, kind in edges}


def find_cycle(edges: set[Edge], kinds: tuple[str, ...] = ("module", "function")) -> list[str] | None:
    """One cycle among the edges of ``kinds``, as a path ``[m0, m1, ..., m0]``; None if acyclic."""
    graph: dict[str, set[str]] = {}
    for a, b, kind in edges:
        if kind in kinds:
            graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := dfs(start)):
            return cycle
    return None


def layer_of(module: str, layers: list[tuple[str, set[str]]] = LAYERS) -> int:
    key = module.split(".")[1] if "." in module else ""
    for rank, (_, members) in enumerate(layers):
        if key in members:
            return rank
    raise KeyError(f"{module}: not in any layer of tests/test_layers.py LAYERS; add its key {key!r} to one")


def layer_violations(edges: set[Edge], layers: list[tuple[str, set[str]]] = LAYERS,
                     aliases: dict[str, str] = DEPRECATED_ALIASES) -> list[str]:
    """``"a (layer) imports b (higher layer)"`` for every upward edge, and every core → experiments edge."""
    names = [name for name, _ in layers]
    out = []
    for a, b, _ in sorted(edges):
        if a in aliases:
            continue  # checked by test_deprecated_aliases_only_point_at_their_new_home
        la, lb = layer_of(a, layers), layer_of(b, layers)
        if lb > la:
            out.append(f"{a} ({names[la]}) imports {b} ({names[lb]})")
    return out


def core_imports_of_experiments(edges: set[Edge]) -> list[str]:
    return sorted(f"{a} imports {b}" for a, b, _ in edges if b.startswith("benthicnet_hf.experiments")
                  and not a.startswith("benthicnet_hf.experiments") and a not in DEPRECATED_ALIASES)


@pytest.fixture(scope="module")
def graph() -> tuple[set[str], set[Edge]]:
    return package_graph()


def test_graph_sees_relative_function_level_and_dynamic_imports(graph) -> None:
    _, edges = graph
    assert ("benthicnet_hf.hierarchy", "benthicnet_hf.taxonomy", "module") in edges
    assert ("benthicnet_hf.training.loop", "benthicnet_hf.rare_nodes", "module") in edges
    # importlib.import_module(f".rare_nodes.{name}", __package__) inside a function
    assert ("benthicnet_hf.classifier_heads", "benthicnet_hf.rare_nodes", "function") in edges
    assert ("benthicnet_hf.experiments.hmc.arff", "benthicnet_hf.data.arff", "module") in edges
    assert ("benthicnet_hf", "benthicnet_hf.modeling_benthicnet", "typing") in edges


def test_no_import_cycle(graph) -> None:
    _, edges = graph
    assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges) or [])}"


def test_every_module_has_a_layer(graph) -> None:
    modules, _ = graph
    for m in sorted(modules - set(DEPRECATED_ALIASES)):
        layer_of(m)


def test_no_import_from_a_lower_layer_to_a_higher_one(graph) -> None:
    _, edges = graph
    assert layer_violations(edges) == []


def test_core_never_imports_experiments(graph) -> None:
    _, edges = graph
    assert core_imports_of_experiments(edges) == []


def test_deprecated_aliases_only_point_at_their_new_home(graph) -> None:
    _, edges = graph
    for alias, home in DEPRECATED_ALIASES.items():
        targets = {b for a, b, _ in edges if a == alias}
        assert targets and all(b.startswith(f"benthicnet_hf.{home}") for b in targets), (alias, targets)


# --- the checks can fail: synthetic graphs -----------------------------------------------------

def test_checker_reports_a_synthetic_cycle_upward_edge_and_experiments_import(tmp_path) -> None:
    root = tmp_path / "benthicnet_hf"
    (root / "experiments").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "experiments" / "__init__.py").write_text("")
    (root / "experiments" / "demo.py").write_text("")
    (root / "data").mkdir()
    (root / "data" / "__init__.py").write_text("")
    (root / "hierarchy.py").write_text("from .labels import x\n")  # upward, and half of a cycle
    (root / "labels.py").write_text("from . import hierarchy\n")
    (root / "losses.py").write_text("def f():\n    from .experiments import demo\n")  # lazy, still counted
    (root / "metrics.py").write_text(
        "import importlib\ndef g(n):\n    return importlib.import_module(f'.data.{n}', __package__)\n")
    modules, edges = package_graph(root)
    assert find_cycle(edges) in (["benthicnet_hf.hierarchy", "benthicnet_hf.labels", "benthicnet_hf.hierarchy"],
                                 ["benthicnet_hf.labels", "benthicnet_hf.hierarchy", "benthicnet_hf.labels"])
    assert ("benthicnet_hf.metrics", "benthicnet_hf.data", "function") in edges
    violations = layer_violations(edges)
    assert "benthicnet_hf.hierarchy (taxonomy) imports benthicnet_hf.labels (labels)" in violations
    assert "benthicnet_hf.losses (objectives) imports benthicnet_hf.experiments.demo (experiments)" in violations
    assert "benthicnet_hf.metrics (metrics) imports benthicnet_hf.data (data)" in violations
    assert len(violations) == 3
    assert core_imports_of_experiments(edges) == ["benthicnet_hf.losses imports benthicnet_hf.experiments.demo"]
    # a cycle closed inside a function counts; one closed under TYPE_CHECKING does not
    (root / "labels.py").write_text("def h():\n    from . import hierarchy\n")
    _, edges = package_graph(root)
    assert find_cycle(edges) is not None and find_cycle(edges, kinds=("module",)) is None
    (root / "labels.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                    "    from . import hierarchy\n")
    _, edges = package_graph(root)
    assert find_cycle(edges) is None
    assert ("benthicnet_hf.labels", "benthicnet_hf.hierarchy", "typing") in edges


def test_a_module_outside_every_layer_is_reported() -> None:
    with pytest.raises(KeyError, match="not in any layer"):
        layer_of("benthicnet_hf.brand_new_module")
