"""The package's layers (DESIGN.md, "Layout"): a module imports only from its own layer or lower,
subpackages import each other without cycles, and only the edges load Hydra/OmegaConf."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hfrnn"

# Low to high. The package's __init__ is a lazy facade (it names the public API, imports nothing).
LAYERS = {
    0: ("hfrnn.errors", "hfrnn.provenance", "hfrnn.linalg"),               # maths and plain helpers
    1: ("hfrnn.losses", "hfrnn.models", "hfrnn.tasks", "hfrnn.datasets"),  # the problem
    2: ("hfrnn.curvature", "hfrnn.optim", "hfrnn.parallel", "hfrnn.api"),  # curvature, optimisers, the API
    3: ("hfrnn.train",),                                                   # running
    4: ("hfrnn.config", "hfrnn.cli", "hfrnn.data_cli", "hfrnn.report"),    # edges
}
EDGES_WITH_HYDRA = ("hfrnn.config", "hfrnn.cli", "hfrnn.data_cli")
REPORT_MAY_IMPORT = ("hfrnn.report", "hfrnn.errors")  # it reads only output files


def _name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int | None:
    for n, prefixes in LAYERS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return n
    return None


def imports(module: str) -> set[str]:
    """Every module ``module`` imports anywhere (functions included), absolute and relative."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return out


def test_every_module_has_a_layer():
    assert [m for m in MODULES if m != "hfrnn" and layer(m) is None] == []


@pytest.mark.parametrize("module", [m for m in MODULES if m != "hfrnn"])
def test_imports_go_down_the_layers(module):
    own = layer(module)
    bad = [m for m in imports(module) if m.startswith("hfrnn.") and (layer(m) or 0) > own]
    assert bad == [], f"{module} (layer {own}) imports higher layers: {bad}"
    third = {m.split(".")[0] for m in imports(module)}
    if not module.startswith(EDGES_WITH_HYDRA):
        assert not third & {"hydra", "omegaconf"}, f"{module} imports Hydra/OmegaConf: only the edges may"
    if module.startswith("hfrnn.report"):
        assert all(not m.startswith("hfrnn") or m == "hfrnn" or m.startswith(REPORT_MAY_IMPORT) for m in imports(module))


def test_subpackages_import_each_other_without_cycles():
    def unit(m):  # a subpackage, or a top-level module
        return ".".join(m.split(".")[:2])

    graph: dict[str, set[str]] = {}
    for m in MODULES:
        if m == "hfrnn":
            continue
        graph.setdefault(unit(m), set()).update(
            unit(i) for i in imports(m) if i.startswith("hfrnn.") and unit(i) != unit(m))
    state: dict[str, int] = {}

    def visit(u, path):
        if state.get(u) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path + [u]))
        if state.get(u) == 2:
            return
        state[u] = 1
        for v in sorted(graph.get(u, ())):
            visit(v, path + [u])
        state[u] = 2

    for u in sorted(graph):
        visit(u, [])


def test_the_core_runs_without_hydra():
    """Importing the training loop, the launcher and the API loads neither Hydra nor OmegaConf."""
    code = ("import sys, json; import hfrnn.train.loop, hfrnn.train.launch, hfrnn.train.schema, hfrnn.api; "
            "from hfrnn import HessianFree; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
