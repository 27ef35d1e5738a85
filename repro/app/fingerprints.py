"""Which code a run went through, fingerprinted so that a record whose code has moved on is found.

A run record names the code its numbers depend on (``record["code"]``):

- ``roots``: the modules the run was made of: the paper's file, the run orchestration
  (``repro.app.run``), the dataset's registered spec and the functions it holds (readers, the embedded
  sample's generator), and the datamodule's class and its bases;
- ``files``: every project file those roots import, directly or not (``import`` statements read from
  the source, as ``tests/test_layers.py`` reads them), each with a fingerprint of its *code*.

The scope stops at the application: from ``repro/app/run.py`` the walk does not enter the rest of
``repro/app/`` (records, tables, figures, the command line), which write reports and cannot change a
number; and a package's ``__init__`` counts only where it is imported by name. So a change to a
figure, a table's layout or the command line leaves every row current.

A file's fingerprint is a hash of its syntax tree without docstrings, with comments and layout gone
(``ast`` drops them), and without the module-level ``PUBLISHED`` numbers and ``CLAIMS`` and the constants only
they used: editing a comment, a docstring, a published number or its citation changes no fingerprint; any
change to code does, including an edit to another preset in the same paper file (a file is the
unit: finer would have to guess which functions a run called).

``python -m repro table --check`` recomputes the fingerprints of a record's roots at HEAD and names
the files that differ; it also resolves the record's preset and overrides at HEAD and names the
config values that differ (a preset edited after the run).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
from pathlib import Path

from repro.app.records import source_root

PACKAGES = ("repro", "papers", "datamodules")
RUN_MODULE = "repro.app.run"
NOT_CODE = ("PUBLISHED", "CLAIMS")  # module-level names that hold what papers report or claim, not what runs do
SCOPE = ("the paper's file, repro/app/run.py, the dataset's spec and datamodule, and every project module they "
         "import (not the rest of repro/app/); fingerprints ignore comments, docstrings and PUBLISHED numbers")


def module_path(module: str, root: Path) -> Path | None:
    """The file of a project module, or None when there is none (moved, removed, or not ours)."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(tree: ast.Module) -> list[str]:
    """Project modules a file imports: ``import a.b``, ``from a.b import c`` (``a.b.c`` too, when that is a
    module of its own rather than a name in ``a.b``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in found if name.split(".")[0] in PACKAGES]


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:] or [ast.Pass()]
    return body


def _assigned_names(node: ast.stmt) -> set[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return {target.id for target in targets if isinstance(target, ast.Name)}


def normalized(tree: ast.Module) -> str:
    """The code of a module as text: its syntax tree without docstrings, without the module-level
    assignments of ``NOT_CODE`` names, and without module-level constants nothing else uses any more."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = _strip_docstring(node.body)
    removed = [node for node in tree.body if _assigned_names(node) & set(NOT_CODE)]
    body = [node for node in tree.body if node not in removed]
    # constants only the removed numbers used (a shared citation string); not other constants, which
    # another module may import
    cited = {n.id for node in removed for n in ast.walk(node) if isinstance(n, ast.Name)}
    used = {n.id for node in body for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    body = [node for node in body if not (isinstance(node, (ast.Assign, ast.AnnAssign)) and _assigned_names(node)
                                          and _assigned_names(node) <= cited - used)]
    tree.body = body
    return ast.dump(tree, include_attributes=False)


def code_hash(text: str) -> str:
    return hashlib.sha256(normalized(ast.parse(text)).encode()).hexdigest()[:16]


def fingerprint(roots: list[str], root: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """({file relative to the checkout: code hash} over the roots and what they import, [roots not found])."""
    root = root or source_root()
    files: dict[str, str] = {}
    missing: list[str] = []
    pending = list(roots)
    seen: set[str] = set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_path(module, root)
        if path is None:
            if module in roots:
                missing.append(module)
            continue
        relative = path.relative_to(root).as_posix()
        if relative in files:
            continue
        text = path.read_text(encoding="utf-8")
        files[relative] = code_hash(text)
        for imported in imported_modules(ast.parse(text)):
            if imported.startswith("repro.app") and module == RUN_MODULE:
                continue  # records, tables, figures: reports, not numbers
            pending.append(imported)
    return dict(sorted(files.items())), sorted(missing)


def _modules_of(value) -> list[str]:
    """Project modules behind an object's class (and its bases) or a function."""
    if inspect.isfunction(value) or inspect.ismethod(value):
        return [value.__module__]
    return [cls.__module__ for cls in type(value).__mro__]


def code_roots(paper_module: str, spec, datamodule) -> list[str]:
    """The modules a run is made of (see the module docstring)."""
    roots = [paper_module, RUN_MODULE, *_modules_of(spec), *_modules_of(datamodule)]
    if dataclasses.is_dataclass(spec):
        for field in dataclasses.fields(spec):
            value = getattr(spec, field.name)
            if callable(value) and field.name != "prepare":  # prepare downloads; it reads nothing a run uses
                roots += _modules_of(value)
    return sorted({module for module in roots if module.split(".")[0] in PACKAGES})


def code_record(paper_module: str, spec, datamodule) -> dict:
    roots = code_roots(paper_module, spec, datamodule)
    files, _ = fingerprint(roots)
    return {"scope": SCOPE, "roots": roots, "files": files}


def code_changes(recorded: dict, root: Path | None = None) -> list[str]:
    """The files whose code differs between a record's fingerprints and the checkout at ``root``."""
    now, missing = fingerprint(recorded["roots"], root)
    then = recorded["files"]
    changes = [f"{module} (a root) is gone" for module in missing]
    changes += [f"{path} changed" for path in sorted(set(then) & set(now)) if then[path] != now[path]]
    changes += [f"{path} is new in scope" for path in sorted(set(now) - set(then))]
    changes += [f"{path} left the scope" for path in sorted(set(then) - set(now))]
    return changes
