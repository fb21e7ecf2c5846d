"""Process-wide patches of moto's ECS backend, in place while at least one EcsEmulator runs.

moto keeps its state in module-level backends, so these patches are global; each patched method
asks which emulator received the HTTP request being handled (a thread-local set by the WSGI
middleware) and lets that emulator do the work.  Patched:

- ``run_task``: no container instances needed for any launch type, awsvpc networking without
  moto's EC2 ENI plumbing (which wants ``securityGroups`` and existing subnets), realistic initial
  state (PROVISIONING, no exit code), and the task is handed to the emulator to really run;
- ``stop_task``: the container is really stopped; the task only becomes STOPPED once it exited;
- ``list_tasks``: ``desiredStatus`` defaults to RUNNING, as in ECS.

The ``ecs::task`` state transition is set to "manual" with an unreachable count, so moto never
advances a task's status by itself (by default each DescribeTasks call would).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from . import _http

if TYPE_CHECKING:  # pragma: no cover
    from .emulator import EcsEmulator

_lock = threading.RLock()
_active: list[EcsEmulator] = []
_orig: dict[str, Any] = {}
_MISSING = object()

TASK_MODEL = "ecs::task"
NEVER = {"progression": "manual", "times": 2**62}


def emulator_for_call() -> EcsEmulator | None:
    emu = getattr(_http.current, "emulator", None)
    with _lock:
        if emu is not None and emu in _active:
            return emu
        return _active[-1] if _active else None


def _run_task(
    self: Any,
    cluster_str: str,
    task_definition_str: str,
    count: int,
    overrides: dict[str, Any] | None,
    started_by: str,
    tags: list[dict[str, str]] | None,
    launch_type: str | None,
    networking_configuration: dict[str, Any] | None = None,
    group: str | None = None,
    platform_version: str | None = None,
    capacity_provider_strategy: list[dict[str, Any]] | None = None,
) -> Any:
    emu = emulator_for_call()
    if emu is None:
        return _orig["run_task"](
            self,
            cluster_str,
            task_definition_str,
            count,
            overrides,
            started_by,
            tags,
            launch_type,
            networking_configuration,
            group,
            platform_version,
            capacity_provider_strategy,
        )
    return emu._moto_run_task(
        self,
        cluster_str=cluster_str,
        task_definition_str=task_definition_str,
        count=count,
        overrides=overrides,
        started_by=started_by,
        tags=tags,
        launch_type=launch_type,
        networking_configuration=networking_configuration,
        group=group,
        platform_version=platform_version,
        capacity_provider_strategy=capacity_provider_strategy,
    )


def _stop_task(self: Any, cluster_str: str, task_str: str, reason: str) -> Any:
    emu = emulator_for_call()
    if emu is None:
        return _orig["stop_task"](self, cluster_str, task_str, reason)
    return emu._moto_stop_task(self, cluster_str, task_str, reason, _orig["stop_task"])


def _list_tasks(
    self: Any,
    cluster_str: str | None = None,
    container_instance: str | None = None,
    family: str | None = None,
    started_by: str | None = None,
    service_name: str | None = None,
    desiredStatus: str | None = None,  # moto's name
) -> Any:
    if desiredStatus is None and emulator_for_call() is not None:
        desiredStatus = "RUNNING"
    return _orig["list_tasks"](
        self, cluster_str, container_instance, family, started_by, service_name, desiredStatus
    )


def install(emu: EcsEmulator) -> None:
    from moto.ecs.models import EC2ContainerServiceBackend as Backend
    from moto.moto_api import state_manager

    with _lock:
        if not _active:
            _orig["run_task"] = Backend.run_task
            _orig["stop_task"] = Backend.stop_task
            _orig["list_tasks"] = Backend.list_tasks
            Backend.run_task = _run_task  # type: ignore[method-assign]
            Backend.stop_task = _stop_task  # type: ignore[method-assign]
            Backend.list_tasks = _list_tasks  # type: ignore[method-assign]
            _orig["transition"] = state_manager._transitions.get(TASK_MODEL, _MISSING)
        # (re)assert on every install: a test may have changed it in between
        state_manager.set_transition(model_name=TASK_MODEL, transition=dict(NEVER))
        _active.append(emu)


def uninstall(emu: EcsEmulator) -> None:
    from moto.ecs.models import EC2ContainerServiceBackend as Backend
    from moto.moto_api import state_manager

    with _lock:
        if emu not in _active:
            return
        _active.remove(emu)
        if _active:
            return
        Backend.run_task = _orig.pop("run_task")  # type: ignore[method-assign]
        Backend.stop_task = _orig.pop("stop_task")  # type: ignore[method-assign]
        Backend.list_tasks = _orig.pop("list_tasks")  # type: ignore[method-assign]
        saved_transition = _orig.pop("transition")
        if saved_transition is _MISSING:
            state_manager.unset_transition(TASK_MODEL)
        else:
            state_manager.set_transition(model_name=TASK_MODEL, transition=saved_transition)


def reassert_transition() -> None:
    """Set the "never advance" transition again (after a moto reset, or if a test changed it)."""
    from moto.moto_api import state_manager

    with _lock:
        if _active:
            state_manager.set_transition(model_name=TASK_MODEL, transition=dict(NEVER))
