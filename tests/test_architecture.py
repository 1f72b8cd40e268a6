"""The package's import structure: no import circle between project modules, no upward import (a lower
layer importing a higher one), module-level and function-level imports alike, and no import that the
walk cannot see (``importlib.import_module``, ``__import__``). The layers, top to bottom, are below;
a module may import its own layer and the layers under it. ``reproduce tables`` only reads records:
importing it loads no torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reproduce", "lightning_modules")

# top to bottom; a module belongs to the layer of its longest matching prefix
LAYERS = [
    ("command line", ["reproduce.cli"]),
    ("quickstart", ["reproduce.quickstart"]),
    ("ablation runner", ["reproduce.ablation"]),
    ("launchers, dry runs, tables, speed, config schema, predictions",
     ["reproduce.launchers", "reproduce.dry_run", "reproduce.tables", "reproduce.speed_side_by_side",
      "reproduce.schema", "reproduce.predict"]),
    ("one detection run", ["reproduce.train"]),
    ("preparation steps", ["reproduce.steps"]),
    ("LightningModules", ["lightning_modules"]),
    ("run runtime, config", ["reproduce.runtime", "reproduce.distributed", "reproduce.loggers",
                             "reproduce.train_speed", "reproduce.config"]),
    ("builder keyword arguments", ["reproduce.accepted_kwargs"]),
    ("models, data, metrics", ["reproduce.models", "reproduce.data", "reproduce.gpu_path", "reproduce.metrics"]),
    ("records, measurement", ["reproduce.records", "reproduce.measure", "reproduce.testing", "reproduce"]),
]


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _project_module(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> list[tuple[str, int, bool]]:
    """``(imported project module, line, inside a function)`` for every import statement of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(n) for n in tree.body} | {id(n) for stmt in tree.body if isinstance(stmt, (ast.If, ast.Try))
                                             for n in ast.walk(stmt)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            mod = _project_module(t) if t.split(".")[0] in PACKAGES else None
            if mod and mod != module:
                out.append((mod, node.lineno, id(node) not in top_level))
    return out


def layer_of(module: str) -> int:
    best = max(((len(p), i) for i, (_, prefixes) in enumerate(LAYERS) for p in prefixes
                if module == p or module.startswith(p + ".")), default=None)
    assert best is not None, f"{module} is in no layer of tests/test_architecture.py: place it"
    return best[1]


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_upward_import():
    upward = []
    for module in MODULES:
        for target, line, local in imports_of(module):
            if layer_of(target) < layer_of(module):
                upward.append(f"{MODULES[module].relative_to(ROOT)}:{line} ({'function' if local else 'module'} "
                              f"level) imports {target}: {LAYERS[layer_of(module)][0]} -> {LAYERS[layer_of(target)][0]}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_circle():
    graph = {m: sorted({t for t, _, _ in imports_of(m)}) for m in MODULES}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_no_import_the_walk_cannot_see():
    hidden = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in MODULES.values()
              for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__")]
    assert not hidden, f"dynamic imports (name the module in an import statement): {hidden}"


def test_the_walk_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The checks above can fail: an upward import inside a function, and a circle, are found."""
    pkg = tmp_path / "reproduce"
    fake = {"reproduce.records": pkg / "records.py", "reproduce.train": pkg / "train.py",
            "reproduce.steps": pkg / "steps" / "__init__.py"}
    fake["reproduce.steps"].parent.mkdir(parents=True)
    fake["reproduce.records"].write_text("def f():\n    from .train import run_one\n")
    fake["reproduce.train"].write_text("from .records import read_record\n")
    fake["reproduce.steps"].write_text("from ..records import write_record\n")
    monkeypatch.setattr(sys.modules[__name__], "MODULES", fake)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert imports_of("reproduce.records") == [("reproduce.train", 2, True)]
    assert imports_of("reproduce.steps") == [("reproduce.records", 1, False)]
    with pytest.raises(AssertionError, match=r"records.py:2 \(function level\) imports reproduce.train"):
        test_no_upward_import()
    with pytest.raises(AssertionError, match="import circles"):
        test_no_import_circle()


def test_tables_import_no_torch():
    code = ("import sys, reproduce.tables; "
            "print(sorted(m for m in ('torch', 'lightning', 'pytorch_lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
