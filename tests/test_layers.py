"""The engine is built in layers: a module imports, at module level, only modules below it.

Read from the bottom: `autograd.primitive` records graphs and knows nothing of tensors' methods,
`autograd.ops` writes every primitive with it, `autograd.tensor` gives tensors their methods by
calling those primitives, `autograd.backward` walks the graph. A cycle (ops importing tensor,
tensor importing ops) makes the order in which a learner can read the files, and in which Python
can load them, ambiguous; this test fails the build on one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("autograd", "tinygrad_lm", "viz")

# Bottom first. A module may import (at module level) only modules of an earlier line.
AUTOGRAD_LAYERS = [
    {"autograd.kernels", "autograd.primitive", "autograd.arguments", "autograd.memory"},  # nothing of the engine
    {"autograd.ops"},  # every primitive: forward beside vjps
    {"autograd.tensor"},  # the Tensor's methods call the primitives
    {"autograd.backward", "autograd.functions", "autograd.functional", "autograd.creation"},  # the walk; functions
    {"autograd.gradcheck", "autograd.graph", "autograd.capture", "autograd.testing"},  # tools built on them
    {"autograd"},  # the package's front door
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).glob("*.py"))}


def module_level_imports(path: Path, known: set[str]) -> set[str]:
    """The project's modules that ``path`` imports when it loads (not inside functions, not only
    for type checkers)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return  # runs when called, not when the module loads
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module in known:
            for alias in node.names:  # `from autograd import ops` imports the module autograd.ops
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: module_level_imports(path, known) - {name} for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports as a list of modules (the first repeated at the end), or None."""
    state: dict[str, str] = {}
    for start in graph:
        if start in state:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = "open"
        while stack:
            node, children = stack[-1]
            for child in children:
                if state.get(child) == "open":
                    return path[path.index(child) :] + [child]
                if child not in state:
                    state[child] = "open"
                    stack.append((child, iter(sorted(graph[child]))))
                    path.append(child)
                    break
            else:
                state[node] = "done"
                stack.pop()
                path.pop()
    return None


def test_no_module_imports_itself_back():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_is_found_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_engine_imports_only_downwards():
    graph = import_graph()
    layer_of = {name: depth for depth, layer in enumerate(AUTOGRAD_LAYERS) for name in layer}
    engine = {name for name in graph if name.split(".")[0] == "autograd"}
    assert engine == set(layer_of), f"modules missing from AUTOGRAD_LAYERS: {sorted(engine ^ set(layer_of))}"
    wrong = [
        f"{name} (layer {layer_of[name]}) imports {other} (layer {layer_of.get(other, 'outside the engine')})"
        for name in sorted(engine)
        for other in sorted(graph[name])
        if other not in layer_of or layer_of[other] >= layer_of[name]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_model_does_not_import_the_drawing_package():
    graph = import_graph()
    wrong = [f"{name} imports {other}" for name in graph if name.startswith("tinygrad_lm")
             for other in graph[name] if other.startswith("viz")]  # fmt: skip
    assert not wrong, wrong


def test_importing_the_packages_changes_nothing_outside_them():
    """`import autograd` must not tune the process's allocator (or load a C library at all):
    `autograd.memory.keep_freed_memory()` is something a training script asks for."""
    code = (
        "import ctypes\n"
        "loaded = []\n"
        "real = ctypes.CDLL\n"
        "ctypes.CDLL = lambda *a, **k: loaded.append(a) or real(*a, **k)\n"
        "import autograd, tinygrad_lm, viz\n"
        "assert not loaded, loaded\n"
        "from tinygrad_lm import GPT, GPTConfig\n"
        "GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4))\n"
        "assert not loaded, loaded\n"
        "applied = autograd.memory.keep_freed_memory()  # only now: glibc is asked\n"
        "assert loaded or not applied\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
