"""The house rules of fnsft's layout, read from the code's own imports (module level and inside
functions): no file over 400 lines, no import cycle between modules, and every import points down

    cli > tune > pipeline > stages > distributed > actors/judges/teachers > models/rl/data > config > utils > errors

(a module may import its own layer and lower ones). ``fnsft/utils`` is a leaf: only ``fnsft.errors``.
See docs/architecture.md.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fnsft")
MAX_LINES = 400
LAYERS = [
    ("fnsft.cli",), ("fnsft.tune",), ("fnsft.pipeline",), ("fnsft.stages",), ("fnsft.distributed",),
    ("fnsft.actors", "fnsft.judges", "fnsft.teachers"), ("fnsft.models", "fnsft.rl", "fnsft.data"),
    ("fnsft.config",), ("fnsft.utils",), ("fnsft.errors",),
]


def _modules() -> dict[str, str]:
    """Dotted module name -> file, for every .py under fnsft/."""
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                mods[rel.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: str, mods: dict[str, str]) -> set[str]:
    """fnsft modules that ``name`` imports anywhere in its file (``from a import b``: a and a.b)."""
    pkg = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m in mods and m != name}


MODS = _modules()
EDGES = {name: _imports(name, path, MODS) for name, path in MODS.items()}


def _rank(module: str):
    for i, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return i
    return None


def test_the_reader_sees_the_imports():
    # A guard against a checker that passes because it reads nothing.
    assert "fnsft.distributed.rl_worker" in MODS
    assert "fnsft.distributed.strategy" in EDGES["fnsft.distributed.rl_worker"]
    assert "fnsft.actors.modeling" in EDGES["fnsft.distributed.rl_learner"]  # a function-level import


def test_no_file_over_400_lines():
    big = {path: n for path in MODS.values() if (n := sum(1 for _ in open(path))) > MAX_LINES}
    assert not big, f"files over {MAX_LINES} lines: {big}"


def test_imports_point_down_the_layers():
    back = sorted(f"{a} -> {b}" for a, bs in EDGES.items() for b in bs
                  if _rank(a) is not None and _rank(b) is not None and _rank(b) < _rank(a))
    assert not back, "imports up the layers: " + ", ".join(back)


@pytest.mark.parametrize("package", ["distributed", "actors", "judges", "teachers", "models", "data", "rl",
                                     "config", "utils"])
def test_lower_layers_never_import_stages_or_pipeline(package):
    prefix = f"fnsft.{package}"
    bad = sorted(f"{a} -> {b}" for a, bs in EDGES.items() if a == prefix or a.startswith(prefix + ".")
                 for b in bs if b.startswith(("fnsft.stages", "fnsft.pipeline")))
    assert not bad, ", ".join(bad)


def test_utils_is_a_leaf():
    bad = sorted(f"{a} -> {b}" for a, bs in EDGES.items() if a.startswith("fnsft.utils")
                 for b in bs if not b.startswith(("fnsft.utils", "fnsft.errors")))
    assert not bad, ", ".join(bad)


def test_no_import_cycle():
    # Package faces (__init__.py) that only re-export are left out, as Python resolves those lazily.
    def face(m):
        return MODS[m].endswith("__init__.py")

    graph = {a: {b for b in bs if not face(b)} for a, bs in EDGES.items() if not face(a)}
    cycles = set()
    for a in graph:
        for b in graph[a]:
            stack, seen = [b], set()
            while stack:
                x = stack.pop()
                if x == a:
                    cycles.add(" <-> ".join(sorted((a, b))))
                    break
                if x not in seen:
                    seen.add(x)
                    stack += graph.get(x, ())
    assert not cycles, "import cycles: " + ", ".join(sorted(cycles))
