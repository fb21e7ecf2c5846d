"""Find, without running it, Ruby task code that generates tasks at run time (``Digdag.env.add_subtask``).

Python's generated ``py>`` subtasks run inside the generating task (``runner/py_runner.py``); the
Ruby runner cannot run them, so such an ``rb>`` task is a load error instead of a run that fails
half-way. The code is read as text (the methods with the called name), never loaded. Code that
cannot be found is not judged here: it fails when it runs.
"""

from __future__ import annotations

import re
from pathlib import Path

ADD_SUBTASK = "add_subtask"


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
