"""Where a task's time goes: a call timer that ``bench_task_duration.py --profile`` installs in the tasks.

The DAG file that the benchmark writes calls ``install(path)`` when profiling. It wraps every plain
function and method DEFINED in the modules of ``MODULES`` (all of ``airflow_cmdexec_provider``, and
the peers' operator and hook modules), and replaces every reference the package holds to a
wrapped function (``from ..params import digdag_params``), so that a renamed or new function of
the package is timed without editing this file. Each call is recorded (task, function, nesting
depth, wall start, duration); an operator's ``execute`` is depth 0 and marks the task the calls
belong to. The records go to ``path`` (JSON lines) when each ``execute`` returns.

Not timed: dunder methods (operator ``__init__`` belongs to DAG parsing), properties. Cost: about a
microsecond per timed call, tens to hundreds of calls per task (more for a command printing many
lines, one ``_log_line`` each).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import pkgutil
import threading
import time
from collections.abc import Callable
from typing import Any

MODULES = [
    "airflow_cmdexec_provider",  # and all its submodules
    "airflow.providers.standard.operators.bash",
    "airflow.providers.standard.hooks.subprocess",
    "airflow.providers.docker.operators.docker",
    "airflow.providers.docker.hooks.docker",
]
SKIP_SUBPACKAGES = ("airflow_cmdexec_provider.cli",)  # the command-line tool: never in a task


class _Recorder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.task: str | None = None
        self.records: list[dict[str, Any]] = []
        self.local = threading.local()

    def wrap(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        recorder = self

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(recorder.local, "depth", 0)
            top = name.endswith(".execute") and depth == 0
            if top:
                instance = args[0] if args else None
                recorder.task = getattr(instance, "task_id", None)
            recorder.local.depth = depth + 1
            wall, started = time.time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                recorder.local.depth = depth
                if recorder.task is not None:
                    recorder.records.append(
                        {"task": recorder.task, "fn": name, "depth": depth, "start": wall, "s": elapsed}
                    )
                if top:
                    recorder.flush()
                    recorder.task = None

        timed.__cmdexec_timed__ = fn  # type: ignore[attr-defined]
        return timed

    def flush(self) -> None:
        with open(self.path, "a") as out:
            out.writelines(json.dumps(record) + "\n" for record in self.records)
        self.records.clear()


def _modules() -> list[Any]:
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        found.append(module)
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=f"{name}."):
            if info.name.startswith(SKIP_SUBPACKAGES):
                continue
            try:
                found.append(importlib.import_module(info.name))
            except ImportError:  # an optional backend whose client library is not installed (e.g. GCS)
                continue
    return found


def install(path: str) -> None:
    """Time every function of ``MODULES`` from now on; records go to ``path``."""
    recorder = _Recorder(path)
    modules = _modules()
    wrapped: dict[int, Callable[..., Any]] = {}  # id(original function) -> its timed wrapper

    def timed(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        if hasattr(fn, "__cmdexec_timed__"):  # the DAG file may be imported more than once
            return fn
        if id(fn) not in wrapped:
            wrapped[id(fn)] = recorder.wrap(fn, name)
        return wrapped[id(fn)]

    for module in modules:
        for attr, value in list(vars(module).items()):
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                setattr(module, attr, timed(value, f"{module.__name__}.{attr}"))
            elif inspect.isclass(value) and value.__module__ == module.__name__:
                for key, member in list(vars(value).items()):
                    if key.startswith("__"):
                        continue
                    name = f"{value.__module__}.{value.__qualname__}.{key}"
                    if inspect.isfunction(member):
                        setattr(value, key, timed(member, name))
                    elif isinstance(member, (staticmethod, classmethod)):
                        setattr(value, key, type(member)(timed(member.__func__, name)))
    # Functions imported by name into another module of ours: point those names at the wrapper too.
    for module in modules:
        for attr, value in list(vars(module).items()):
            if inspect.isfunction(value) and id(value) in wrapped and wrapped[id(value)] is not value:
                setattr(module, attr, wrapped[id(value)])
