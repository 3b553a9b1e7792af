"""The house rules of fnsft's layout, read from the code's own imports (module level and inside
functions): no file over 400 lines, no import cycle between modules, and every import points down

    cli/testing > tune > pipeline > stages/report > runtime/workers > judges/teachers/envs > actors
        > models/rl/data > compat/config > utils/errors

(a module may import its own layer and lower ones). ``fnsft/utils`` is a leaf: only ``fnsft.errors``.
No module imports another's ``_private`` name, and upstream private modules (``._internal``,
``._private``) are imported only in ``fnsft/compat``.
See docs/architecture.md.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fnsft")
MAX_LINES = 400
LAYERS = [
    ("fnsft.cli", "fnsft.testing"), ("fnsft.tune",), ("fnsft.pipeline",), ("fnsft.stages", "fnsft.report"),
    ("fnsft.runtime", "fnsft.workers"), ("fnsft.judges", "fnsft.teachers", "fnsft.envs"), ("fnsft.actors",),
    ("fnsft.models", "fnsft.rl", "fnsft.data"), ("fnsft.compat", "fnsft.config"), ("fnsft.utils", "fnsft.errors"),
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
    assert "fnsft.workers.rl.worker" in MODS
    assert "fnsft.workers.rl.strategy" in EDGES["fnsft.workers.rl.worker"]
    assert "fnsft.models.forward" in EDGES["fnsft.workers.rl.learner"]  # a function-level import


def test_no_file_over_400_lines():
    big = {path: n for path in MODS.values() if (n := sum(1 for _ in open(path))) > MAX_LINES}
    assert not big, f"files over {MAX_LINES} lines: {big}"


def test_imports_point_down_the_layers():
    back = sorted(f"{a} -> {b}" for a, bs in EDGES.items() for b in bs
                  if _rank(a) is not None and _rank(b) is not None and _rank(b) < _rank(a))
    assert not back, "imports up the layers: " + ", ".join(back)


def test_every_package_has_a_layer():
    unranked = sorted({m.split(".")[1] for m in MODS if m.count(".") >= 1 and _rank(m) is None})
    assert not unranked, "packages without a layer (add them to LAYERS): " + ", ".join(unranked)


def _imported_names(path: str):
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.ImportFrom):
            yield node.module or "", [a.name for a in node.names], node.level
        elif isinstance(node, ast.Import):
            yield from ((a.name, [], 0) for a in node.names)


def test_no_private_names_across_modules():
    bad = sorted(f"{name} imports {base}.{n}" for name, path in MODS.items()
                 for base, names, level in _imported_names(path) if base.startswith("fnsft") and base != name
                 for n in names if n.startswith("_") and not n.startswith("__"))
    assert not bad, ", ".join(bad)


def test_upstream_private_modules_only_in_compat():
    bad = sorted(f"{name} imports {base}" for name, path in MODS.items() if not name.startswith("fnsft.compat")
                 for base, _, level in _imported_names(path)
                 if not level and not base.startswith("fnsft") and ("._internal" in base or "._private" in base))
    assert not bad, ", ".join(bad)


@pytest.mark.parametrize("package", ["runtime", "workers", "actors", "judges", "teachers", "models", "data", "rl",
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
