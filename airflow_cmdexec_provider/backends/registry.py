"""Backend names -> classes: the built-in ones here, third-party ones through an entry point group.

Adding a backend is one module (a ``CommandBackend`` subclass, see ``backends/base.py``) plus one
line: in ``BUILTIN`` for ours, or, for a separate package, an entry point::

    [project.entry-points."airflow_cmdexec_provider.backends"]
    nomad = "my_package.nomad:NomadBackend"

The name is then an executor type (Variable ``cmdexec_executor_type`` or ``executor="nomad"``),
as Digdag's ``CommandExecutorFactory`` plugins add types to ``agent.command_executor.type``.
Entry points are read only for names that are not built in, so ordinary tasks never pay for the scan.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from airflow_cmdexec_provider.exceptions import CmdExecConfigError

if TYPE_CHECKING:
    from airflow_cmdexec_provider.backends.base import CommandBackend

ENTRY_POINT_GROUP = "airflow_cmdexec_provider.backends"

BUILTIN: dict[str, str] = {
    "local": "airflow_cmdexec_provider.backends.local:LocalBackend",
    "docker": "airflow_cmdexec_provider.backends.docker:DockerBackend",
    "ecs": "airflow_cmdexec_provider.backends.ecs:EcsBackend",
    "kubernetes": "airflow_cmdexec_provider.backends.kubernetes:KubernetesBackend",
}
# Digdag's names for the same executors.
ALIASES = {"simple": "local"}


@cache
def _plugins() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN}


def canonical_name(value: str) -> str:
    name = value.strip().lower()
    return ALIASES.get(name, name)


def is_known(name: str) -> bool:
    return name in BUILTIN or name in _plugins()


def known_names() -> list[str]:
    return [*BUILTIN, *sorted(_plugins())]


def backend_class(name: str) -> type[CommandBackend]:
    """The class registered under ``name`` (imported on first use: its client libraries only then)."""
    from airflow_cmdexec_provider.backends.base import CommandBackend

    target = BUILTIN.get(name) or _plugins().get(name)
    if target is None:
        raise CmdExecConfigError(
            f"unknown executor {name!r}; use one of {', '.join(['auto', *known_names()])}"
        )
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        extra = f" (pip install 'airflow-cmdexec-provider[{name}]')" if name in BUILTIN else ""
        raise CmdExecConfigError(f"the {name} executor cannot be loaded: {exc}{extra}") from exc
    if not (isinstance(cls, type) and issubclass(cls, CommandBackend)) or cls.name != name:
        raise CmdExecConfigError(
            f"executor {name!r} ({target}) is not a CommandBackend subclass whose name is {name!r}"
        )
    return cls
