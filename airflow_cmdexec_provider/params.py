"""Digdag parameters built from an Airflow task context, and the environment variables made from them.

Digdag gives every task a merged parameter map. We build the same map from Airflow:

1. Digdag runtime params mapped from the context (``runtime_params``);
2. the DAG's and the task's Airflow ``params`` (Digdag ``_export``);
3. the values stored by upstream tasks with ``digdag.env.store`` (they win, as in Digdag).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from airflow_cmdexec_provider.exceptions import CmdExecConfigError

ENV_KEY = re.compile(r"[a-zA-Z_][a-zA-Z_0-9]*")


def _session_time(context: Mapping[str, Any]) -> datetime:
    """Return the run's logical date, or its ``run_after`` for manual runs that have none."""
    logical_date = context.get("logical_date")
    if logical_date is not None:
        return logical_date
    dag_run = context.get("dag_run")
    run_after = getattr(dag_run, "run_after", None)
    if run_after is None:
        raise CmdExecConfigError("the Airflow context has neither logical_date nor dag_run.run_after")
    return run_after


def _timezone(context: Mapping[str, Any]) -> tuple[str, Any]:
    """Return the DAG's timezone: its name (Digdag ``timezone``) and the tzinfo to convert with.

    Converting with the tzinfo rather than the name matters for a fixed offset (a ``start_date``
    with ``timezone(timedelta(hours=5, minutes=30))``): its name ``+05:30`` is not a zone name.
    """
    dag = context.get("dag")
    tz = getattr(dag, "timezone", None)
    name = getattr(tz, "name", None) or (str(tz) if tz is not None else "UTC")
    if tz is None or name in ("+00:00", "UTC", "Etc/UTC"):
        return "UTC", "UTC"
    return name, tz


def runtime_params(context: Mapping[str, Any]) -> dict[str, Any]:
    """Map Digdag's runtime params (``session_time`` & co.) from an Airflow context.

    ``session_*`` values are in the DAG's timezone, as Digdag's are in the workflow's timezone; for a
    DAG in UTC (Airflow's default) ``session_date`` equals ``ds``.
    """
    import pendulum

    tz_name, tz = _timezone(context)
    local = pendulum.instance(_session_time(context)).in_timezone(tz)
    ti = context.get("ti")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "")
    task_id = getattr(ti, "task_id", "")
    run_id = context.get("run_id") or getattr(ti, "run_id", "")
    offset = local.strftime("%z") or "+0000"
    return {
        "session_time": local.isoformat(),
        "session_date": local.strftime("%Y-%m-%d"),
        "session_date_compact": local.strftime("%Y%m%d"),
        "session_local_time": local.strftime("%Y-%m-%d %H:%M:%S"),
        "session_tz_offset": offset,
        "session_unixtime": int(local.timestamp()),
        "session_id": run_id,
        "session_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"airflow:{dag_id}:{run_id}")),
        "timezone": tz_name,
        "task_name": "+" + "+".join([dag_id, *task_id.split(".")]),
        "attempt_id": getattr(ti, "try_number", 1),
        "retry_attempt_name": None,
    }


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into ``base``: nested objects are merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def digdag_params(
    context: Mapping[str, Any], stored: Mapping[str, Any], task_label: str
) -> dict[str, Any]:
    """Return the Digdag params of a task: runtime params < Airflow params < upstream stores."""
    airflow_params = context.get("params") or {}
    plain = airflow_params.dump() if hasattr(airflow_params, "dump") else dict(airflow_params)
    params = {k: v for k, v in runtime_params(context).items() if v is not None}
    params = deep_merge(params, plain)
    params = deep_merge(params, stored)
    try:
        json.dumps(params)
    except (TypeError, ValueError) as exc:
        bad = [k for k, v in params.items() if not _json_ok(v)]
        raise CmdExecConfigError(
            f"Task {task_label}: params {bad} are not JSON-serialisable ({exc}); Digdag params must be "
            "JSON values (str, int, float, bool, None, list, dict)"
        ) from exc
    return params


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def env_value(value: Any) -> str:
    """Encode a param as an environment variable value: strings raw, anything else compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def env_from_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Return the sh> environment: every param whose key is a valid variable name (Digdag §8.2)."""
    return {k: env_value(v) for k, v in params.items() if v is not None and ENV_KEY.fullmatch(k)}


def validate_env(env: Mapping[str, Any] | None, task_label: str) -> dict[str, str]:
    """Check the ``env`` argument (Digdag ``_env``) and encode its values like params."""
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise CmdExecConfigError(
            f"Task {task_label}: env must be a dict of variable name -> value, got {type(env).__name__}"
        )
    result = {}
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_KEY.fullmatch(key):
            raise CmdExecConfigError(
                f"Task {task_label}: invalid env key name {key!r}: names must match "
                "[a-zA-Z_][a-zA-Z_0-9]* (letters, digits, underscore; not starting with a digit)"
            )
        if value is None:
            raise CmdExecConfigError(f"Task {task_label}: env key {key!r} has no value (None)")
        result[key] = env_value(value)
    return result
