"""The walls between layers: what importing a layer loads, and no import cycles in the package.

The parsers know no store and no Dask; the engine and the filesystems know no ``distributed``
(the cluster layer is optional: the core looks up what it installs, it never imports it to run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dask_prefetch"


@pytest.mark.parametrize(
    "module, forbidden",
    [
        ("dask_prefetch", ("s3fs", "botocore", "dask", "distributed", "numba")),
        ("dask_prefetch.formats", ("s3fs", "botocore", "aiobotocore", "fsspec", "dask", "distributed")),
        ("dask_prefetch.formats.trk", ("s3fs", "botocore", "dask", "distributed")),
        ("dask_prefetch.formats.tck", ("s3fs", "botocore", "dask", "distributed")),
        ("dask_prefetch.engine.rolling", ("distributed",)),
        ("dask_prefetch.sources", ("distributed",)),
        ("dask_prefetch.fs.s3", ("distributed",)),
        ("dask_prefetch.fs.prefetch", ("distributed",)),
        ("dask_prefetch.sizing", ("s3fs", "botocore", "fsspec", "dask", "distributed", "numba", "numpy")),
    ],
)
def test_importing_a_layer_loads_nothing_beyond_its_wall(module, forbidden):
    code = f"import sys, {module}; print(' '.join(m for m in {forbidden!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.split() == [], f"importing {module} loads {loaded.stdout.strip()}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """The package's modules that ``path`` imports at module level (not inside functions or TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            if node.level == 0 and not target.startswith("dask_prefetch"):
                continue
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import config`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dask_prefetch"))
    return found


def test_the_package_has_no_import_cycles():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    def ancestor(m: str, name: str) -> bool:  # a module's own packages are always imported before it
        return name.startswith(f"{m}.")

    graph = {
        name: {m for m in _imports(path, name) if m in modules and m != name and not ancestor(m, name)}
        for name, path in modules.items()
    }
    assert len(graph) > 30 and graph["dask_prefetch.engine.rolling"]  # the walk sees the package
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt) :] + [node, nxt]) if nxt in trail else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, trail + [node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert cycles == []


#: Each layer of the package, and the layers it may import (anywhere in its modules, not only at
#: module level; ``TYPE_CHECKING`` imports excepted). The data path reads down this table.
ALLOWED = {
    "checks": set(),
    "formats": set(),  # the parsers: no store, no engine, no Dask
    "config": {"checks", "formats"},  # hands the compiled-parsers switch to the kernels
    "sources": set(),
    "cache": {"checks", "config"},
    "engine": {"sources", "cache"},  # no file format, no filesystem, no configuration (handed down)
    "fs": {"engine", "sources", "cache", "checks", "config"},
    "tractography": {"formats", "fs", "engine", "sources", "cache", "checks", "config"},
    "cluster": {"tractography", "formats", "fs", "engine", "sources", "cache", "checks", "config"},
    "preload": {"cluster"},
    "streamlines": {"formats"},  # the parsers' deprecated old name
    "sizing": set(),  # the sizing model (dask-prefetch plan): pure arithmetic, it imports nothing of the package
}


def _all_imports(path: Path, name: str) -> set[str]:
    """Every ``dask_prefetch`` module ``path`` imports, in functions too, outside ``TYPE_CHECKING`` blocks."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            if target.startswith("dask_prefetch"):
                found.update([target] if node.module else [f"{target}.{a.name}" for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dask_prefetch"))
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_each_layer_imports_only_the_layers_below_it():
    crossings = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        layer = _layer(name)
        if layer not in ALLOWED:  # the public face (__init__), cli and testing wire everything together
            continue
        for target in sorted(_all_imports(path, name)):
            if _layer(target) not in ALLOWED[layer] | {layer, "__version__"}:
                crossings.append(f"{name} imports {target}")
    assert crossings == []
    assert set(ALLOWED) <= {_layer(_module_name(p)) for p in PACKAGE.rglob("*.py")}  # the table names real layers


def test_the_parsers_old_name_still_imports_the_same_objects_with_a_warning():
    code = (
        "import sys, warnings\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    import dask_prefetch.streamlines as old\n"
        "import dask_prefetch.formats as new\n"
        "assert old.StreamlineChunk is new.StreamlineChunk and old.open_reader is new.open_reader\n"
        "assert any(issubclass(w.category, DeprecationWarning) and 'dask_prefetch.formats' in str(w.message) for w in seen)\n"
        "print(' '.join(m for m in ('s3fs', 'botocore', 'dask', 'distributed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
