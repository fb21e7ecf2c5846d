"""``load_project``: every (or the named) workflow of a Digdag project folder as an Airflow DAG.

A DAG file is one line::

    globals().update(load_project("/path/to/project"))

Parsing reads only the ``.dig`` files (and the files they include or call, and the task code it
scans with ``ast``): no network, no code of the project is run, and the result is cached per
process by the modification times of every file it read, so re-parsing an unchanged project is
free.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_cmdexec_provider.dig.compiler import compile_workflow
from airflow_cmdexec_provider.dig.errors import DigLoadError, Problem

WORKFLOW_SUFFIX = ".dig"


@dataclass
class _Compiled:
    stamps: dict[Path, int | None]  # every file read -> its mtime (None: it did not exist)
    dag: Any
    error: DigLoadError | None


_cache: dict[tuple[Path, Path, str], _Compiled] = {}
_lock = threading.Lock()


def _stamp(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def workflow_files(project: Path, include: str | Iterable[str] | None = None) -> list[Path]:
    """The ``.dig`` files of the project folder named by ``include`` (names without ``.dig``; globs)."""
    files = sorted(p for p in project.glob(f"*{WORKFLOW_SUFFIX}") if p.is_file())
    if include is None:
        return files
    patterns = [include] if isinstance(include, str) else list(include)
    chosen: list[Path] = []
    for given in patterns:
        pattern = given.removesuffix(WORKFLOW_SUFFIX)
        matched = [p for p in files if fnmatch.fnmatchcase(p.stem, pattern)]
        if not matched:
            raise DigLoadError(
                [
                    Problem(
                        project / f"{pattern}{WORKFLOW_SUFFIX}",
                        1,
                        f"include={pattern!r}",
                        f"no workflow file matches in {project}; the workflows there are: "
                        + (", ".join(p.stem for p in files) or "none"),
                    )
                ]
            )
        chosen.extend(p for p in matched if p not in chosen)
    return chosen


def compile_file(project: Path, file: Path, dag_id: str) -> Any:
    """The DAG of one workflow file, from the cache while none of the files it read has changed."""
    key = (project, file, dag_id)
    with _lock:
        cached = _cache.get(key)
        if cached is None or any(_stamp(p) != m for p, m in cached.stamps.items()):
            stamps = {file: _stamp(file)}  # taken before reading: a change while reading means a new parse
            dag, read, error = compile_workflow(project, file, dag_id)
            stamps.update({p: _stamp(p) for p in read if p not in stamps})
            cached = _cache[key] = _Compiled(stamps, dag, error)
    if cached.error is not None:
        raise cached.error
    return cached.dag


def load_project(
    path: str | os.PathLike[str], include: str | Iterable[str] | None = None, dag_id_prefix: str = ""
) -> dict[str, Any]:
    """Load a Digdag project's workflows as Airflow DAGs: ``{dag_id: DAG}``.

    :param path: the project folder (the one holding the ``.dig`` files); a relative path is taken
        relative to the folder of the calling DAG file. Every task runs with this folder as its project.
    :param include: the workflows to load: ``.dig`` file names without the extension, glob patterns
        allowed (``"schedule_*"``); default: every ``.dig`` file of the folder. Files named by
        ``call>`` or ``!include`` are read whether included or not.
    :param dag_id_prefix: put before each workflow name to make its ``dag_id``.
    :raises DigLoadError: when a workflow that was asked for cannot be loaded: the message names the
        file, the line and the construct of every problem, so Airflow shows it as an import error.
    """
    caller = sys._getframe(1).f_code.co_filename
    project = Path(path)
    if not project.is_absolute():
        project = Path(caller).resolve().parent / project
    project = project.resolve()
    if not project.is_dir():
        raise DigLoadError([Problem(project, 1, "load_project", "the Digdag project folder does not exist")])
    dags: dict[str, Any] = {}
    errors: list[DigLoadError] = []
    for file in workflow_files(project, include):
        try:
            dag = compile_file(project, file, dag_id_prefix + file.stem)
        except DigLoadError as exc:
            # A problem in a file it reads (call>, !include) belongs to this workflow all the same.
            errors.append(DigLoadError(exc.problems, exc.workflows or [file.stem]))
            continue
        if dag is None:  # Digdag's old project file, a list of workflows: they load as files of their own
            continue
        dag.fileloc = caller  # the DAG file, not this module: Airflow ties the DAG to the file that made it
        dags[dag.dag_id] = dag
    if errors:
        raise DigLoadError(
            [p for e in errors for p in e.problems],
            [w for e in errors for w in e.workflows or []],
            loaded=[dag_id.removeprefix(dag_id_prefix) for dag_id in dags],
        )
    return dags
