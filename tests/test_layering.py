"""The architecture as the tree shows it: library below, chapters above, runner / benchmark / cli
on top. Imports point down only (every import statement, also those inside functions)."""

import ast
from pathlib import Path

import fplab

PACKAGE = Path(fplab.__file__).parent
TOP = {"fplab.runner", "fplab.benchmark", "fplab.cli", "fplab.__main__", "fplab.install",
       "fplab.timings", "fplab.scoreboard"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of the fplab modules a file (or ``source`` placed at ``path``) imports."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("fplab")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("fplab"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}
    return found


def layer(name: str) -> int:
    if name in TOP:
        return 2
    if name == "fplab.chapters" or name.startswith("fplab.chapters."):
        return 1
    return 0


def modules():
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_imports_point_down_only():
    known = modules()
    upward = [line for name, path in known.items()
              for line in upward_imports(name, imported(path), set(known))]
    assert not upward, upward


def upward_imports(name: str, targets: set[str], known: set[str]) -> list[str]:
    return [f"{name} imports {t}" for t in sorted(targets) if t in known and layer(t) > layer(name)]


def test_the_checker_sees_an_upward_import():
    """The test above can fail: a library module importing a chapter module (at module level
    or inside a function) is caught, and the chapters importing the library is not."""
    known = set(modules())
    path = PACKAGE / "defenses" / "pruning.py"
    for source in ("from ..chapters import casestudies\n",
                   "def f():\n    from ..benchmark import benchmark_anp\n",
                   "import fplab.chapters.ch05_anp\n"):
        assert upward_imports("fplab.defenses.pruning", imported(path, source), known)
    chapter = PACKAGE / "chapters" / "casestudies.py"
    assert not upward_imports("fplab.chapters.casestudies",
                              imported(chapter, "from ..defenses import pruning\n"), known)


def test_no_import_cycle_between_library_modules():
    known = modules()
    graph = {n: {t for t in imported(p) if t in known and t != n} for n, p in known.items()}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [node, nxt]))
            if not state.get(nxt):
                visit(nxt, stack + [node])
        state[node] = 2

    for node in graph:
        if not state.get(node):
            visit(node, [])


def test_every_fplab_import_names_a_module_or_a_name_in_one():
    """A relative import that points at no module (e.g. ``from .defenses`` inside
    fplab.chapters) fails only when that code runs; catch it here."""
    import importlib
    known = modules()
    missing = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("fplab")):
                target = sorted(t for t in imported(path, f"from {'.' * node.level}{node.module or ''} import x")
                                if not t.endswith(".x"))[0]
                if target not in known:
                    missing.append(f"{name}: from {'.' * node.level}{node.module or ''} -> {target}")
    assert not missing, missing
