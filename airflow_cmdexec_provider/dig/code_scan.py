"""Find, without running it, task code that generates tasks at run time (``digdag.env.add_subtask``).

Such tasks (Digdag's python_generate_subtasks, ruby_generate_subtasks, params) would become new
DAG structure while the run goes on, which a loaded DAG cannot do; they are a load error instead of
a run that fails half-way. Python is read with ``ast`` (never imported); Ruby by the text of the
methods with the called name. Code that cannot be found is not judged here: it fails when it runs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ADD_SUBTASK = "add_subtask"


def python_file(base: Path, method: str) -> tuple[Path | None, list[str]]:
    """The module file of ``py>: method`` under ``base`` and the attribute path inside it."""
    parts = method.strip().split(".")
    for split in range(len(parts) - 1, 0, -1):
        folder = base.joinpath(*parts[:split])
        for candidate in (folder.with_suffix(".py"), folder / "__init__.py"):
            if candidate.is_file():
                return candidate, parts[split:]
    return None, []


def python_generates_tasks(path: Path, names: list[str]) -> bool:
    """Whether the function (or ``Class.method``, or ``Class`` -> ``run``) calls ``add_subtask``."""
    try:
        body: list[ast.stmt] = ast.parse(path.read_text(encoding="utf-8")).body
    except (OSError, SyntaxError, ValueError):
        return False  # the task itself will report it
    target: ast.AST | None = None
    for name in names or []:
        target = next(
            (
                n
                for n in body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == name
            ),
            None,
        )
        if target is None:
            return False
        body = getattr(target, "body", [])
    if isinstance(target, ast.ClassDef):
        target = next((n for n in target.body if isinstance(n, ast.FunctionDef) and n.name == "run"), None)
    if target is None:
        return False
    return any(isinstance(n, ast.Attribute) and n.attr == ADD_SUBTASK for n in ast.walk(target))


def ruby_file(base: Path, require: str | None) -> Path | None:
    if not require:
        return None
    path = base / (require if require.endswith(".rb") else require + ".rb")
    return path if path.is_file() else None


def ruby_generates_tasks(path: Path, method: str) -> bool:
    """Whether a method named like the one ``rb>`` calls (``Mod::Klass.meth`` -> ``meth``) calls
    ``add_subtask``: the text from its ``def`` to the next ``def``."""
    name = re.escape(method.strip().rpartition(".")[2] or method.strip())
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return False
    sections = re.split(r"(?m)^\s*def\s+", text)[1:]
    return any(re.match(rf"(self\.)?{name}\b", section) and ADD_SUBTASK in section for section in sections)
