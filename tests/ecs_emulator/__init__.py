"""ECS emulator for tests: moto in server mode whose ECS tasks really run as Docker containers.

    from tests.ecs_emulator import EcsEmulator      # or: from ecs_emulator import EcsEmulator

    with EcsEmulator() as emu:
        ecs = emu.boto3_client("ecs")
        ...

See ``emulator.EcsEmulator`` for the API.
"""

import sys as _sys

from .emulator import LABEL, EcsEmulator, EmulatedTask, parse_env_file

__all__ = ["LABEL", "EcsEmulator", "EmulatedTask", "parse_env_file"]

# Importable both as ``tests.ecs_emulator`` (repository root on sys.path) and as ``ecs_emulator``
# (tests/ on sys.path, pytest's rootdir-style imports).  Both names must be the SAME modules: the
# moto patches and the per-request emulator lookup are process-wide state kept in them.
_other = {"tests.ecs_emulator": "ecs_emulator", "ecs_emulator": "tests.ecs_emulator"}.get(__name__)
if _other:
    _sys.modules.setdefault(_other, _sys.modules[__name__])
    for _sub in ("emulator", "_http", "_moto_patch"):
        _sys.modules.setdefault(f"{_other}.{_sub}", _sys.modules[f"{__name__}.{_sub}"])
