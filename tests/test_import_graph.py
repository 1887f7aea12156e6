"""The package's imports, read from the source with `ast` (every import counts, at module level or
inside a function): no module imports itself back through others, the layers import only
downwards, and only `cli/` imports click, so the library runs without the command line."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nc_viz"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's own modules that `name` imports (a name imported from a package counts as
    its submodule when there is one, else as the package)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in known else module)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_reads_relative_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    graph = _graph()
    assert "nc_viz.core.errors" in graph["nc_viz.core.files"]          # from .errors import NcVizError
    assert "nc_viz.datasets.formats" in graph["nc_viz.datasets.wsol"]  # from .formats import register


def test_no_module_imports_itself_back():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_only_the_command_line_imports_click():
    offenders = []
    for name, path in _modules().items():
        if name == "nc_viz.cli" or name.startswith("nc_viz.cli."):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and not node.level}
        if "click" in imported:
            offenders.append(str(path.relative_to(PACKAGE.parent)))
    assert not offenders, f"click imported outside nc_viz/cli/: {offenders}"


# The layers, lowest first; a module may import its own package and the layers below it. Packages
# on one level are independent of each other.
LAYERS = (("core",), ("models",), ("cams",), ("pair",), ("datasets", "metrics", "engine"), ("figures",),
          ("tasks",), ("cli",), ("__main__",))
RANK = {name: level for level, names in enumerate(LAYERS) for name in names}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _upward(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for a, targets in sorted(graph.items()):
        for b in sorted(targets):
            la, lb = _layer(a), _layer(b)
            if la is None or lb is None or la == lb:
                continue
            if la not in RANK or lb not in RANK:
                found.append(f"{a} -> {b} (a package outside the layers)")
            elif RANK[lb] >= RANK[la]:
                found.append(f"{a} -> {b}")
    return found


def test_the_layer_check_sees_an_upward_import():
    assert _upward({"nc_viz.core.io": {"nc_viz.tasks.guards"}}) == ["nc_viz.core.io -> nc_viz.tasks.guards"]
    assert _upward({"nc_viz.metrics.wsol": {"nc_viz.datasets.base"}}) == ["nc_viz.metrics.wsol -> nc_viz.datasets.base"]
    assert _upward({"nc_viz.tasks.batch.shard": {"nc_viz.pair", "nc_viz.core.io"}}) == []


def test_every_package_is_a_layer_and_imports_only_downwards():
    packages = {_layer(m) for m in _graph()} - {None}
    assert packages <= set(RANK), f"packages outside the layers: {sorted(packages - set(RANK))}"
    assert not _upward(_graph())


def test_sources_cite_no_design_notes_and_no_issue_numbers():
    """Docstrings and comments cite only what the repository holds (the README, a module, a paper
    by name): the design notes and the issue tracker are not in it."""
    import re

    outside = re.compile(r"\bDESIGN\b|\b[Ii][Ss][Ss][Uu][Ee][Ss]?\s+#?\d+")
    assert outside.search("the block follows DESIGN.md section 2.2")
    assert outside.search("(DESIGN 2.4)") and outside.search("(issue 9: a bomb)")
    assert outside.search("see Issue #12") and outside.search("issues 3 and 4")
    assert not outside.search("a design fact; this issues a warning; 3 issues found")
    root = Path(__file__).resolve().parents[1] / "nc_viz"
    found = [f"{p.relative_to(root.parent)}:{n}: {line.strip()}"
             for p in sorted(root.rglob("*.py"))
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if outside.search(line)]
    assert not found, "sources cite notes the repository does not hold:\n" + "\n".join(found)


def test_the_readme_shows_every_layer_in_the_order_the_imports_keep():
    """README's "Code architecture" names each package of nc_viz/ in its tree, and its import
    chain lists the layers in the order this file enforces."""
    import re

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Code architecture\n", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```", 2)[1]
    packages = {p.name for p in (root / "nc_viz").iterdir() if (p / "__init__.py").is_file()} | {"pair.py"}
    shown = set(re.findall(r"^  ([a-z_]+(?:/|\.py))", tree, re.M))
    assert shown == {p if p.endswith(".py") else p + "/" for p in packages}
    chain = section.split("Imports point down this list:", 1)[1].split(", where", 1)[0]
    levels = [re.findall(r"`([a-z_]+)`", part) for part in chain.split("<-")]
    layers = [list(names) for names in LAYERS if names != ("__main__",)]
    assert levels == layers


def test_no_command_line_flag_outside_the_cli():
    """Library modules name their parameters (`top_k`); only nc_viz/cli/ spells flags (`--top`),
    through its one mapping `cli.options.flag_name`: no `--x` in any string, docstring or comment."""
    import re

    package = Path(__file__).resolve().parents[1] / "nc_viz"
    flag = re.compile(r"--[a-z]")
    found = [f"{path.relative_to(package.parent)}:{number}: {line.strip()}"
             for path in sorted(package.rglob("*.py")) if "cli" not in path.relative_to(package).parts[:1]
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if flag.search(line)]
    assert not found, "command-line flags in library modules:\n" + "\n".join(found)
