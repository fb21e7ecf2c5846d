"""Digdag parameters built from an Airflow task context, and the environment variables made from them.

Digdag gives every task one merged parameter map (``OperatorManager.evalConfig``). From lowest to
highest priority we build the same map from Airflow (``resolve_params``):

1. the DAG's ``params`` and the run's ``dag_run.conf`` (Digdag's session params);
2. exports and stored values, interleaved by their position in the graph: for each scope from the
   DAG down to the task's innermost TaskGroup, that scope's export (the DAG's params, a TaskGroup's
   ``default_args["params"]``), then what upstream tasks of that scope stored with
   ``digdag.env.store``, in graph order, so the nearest writer wins (``stores.py``);
3. Digdag's runtime params (``session_time``, ``task_name``, ...), which levels 1 and 2 cannot
   overwrite (a warning names the key);
4. the task's own ``params=``, Digdag's task-local keys.

Objects are merged deeply, as Digdag's ``Config.merge`` does (Airflow's own param merge is shallow).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow_cmdexec_provider.exceptions import CmdExecConfigError

log = logging.getLogger(__name__)

ENV_KEY = re.compile(r"[a-zA-Z_][a-zA-Z_0-9]*")

# Names that change how a process, a shell or an interpreter starts (or what it loads). They are
# never exported from params, dag_run.conf or stored values: whoever may trigger a DAG (or whatever
# runs in a container and stores a value) must not choose them (review H2). Only a task's explicit
# ``env=`` may set them.
STARTUP_ENV_NAMES = frozenset(
    {
        "BASH_ENV",
        "ENV",
        "PATH",
        "IFS",
        "CDPATH",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "GLOBIGNORE",
        "HOME",
        "SHELL",
        "TMPDIR",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "CLASSPATH",
        "PYTHONPATH",
        "LUA_INIT",
        "TCLLIBPATH",
        "GCONV_PATH",
        "HOSTALIASES",
        "LOCPATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "CURL_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "GODEBUG",
        "MALLOC_CHECK_",
        "OPENSSL_CONF",
        "OPENSSL_ENGINES",
    }
)
STARTUP_ENV_PREFIXES = (
    "LD_",
    "DYLD_",
    "PYTHON",
    "PERL5",
    "PERL_",
    "GIT_",
    "BASH_FUNC_",
    "DOCKER_",
    "BUILDKIT_",
    "BUILDX_",
    "GEM_",
    "BUNDLE_",
    "MALLOC_",
    "GLIBC_",
    "XDG_",
)
# curl and many libraries also read the lower-case proxy names.
_PROXY_NAMES = frozenset({"http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy"})


def is_startup_env_name(name: str) -> bool:
    """Whether setting ``name`` in a process's environment can change how it starts or what it runs.

    Environment names are case-sensitive: ``path`` (a common Digdag param) is not ``PATH``.
    """
    return (
        name in STARTUP_ENV_NAMES
        or name.startswith(STARTUP_ENV_PREFIXES)
        or name.endswith("_PROXY")
        or name in _PROXY_NAMES
    )


# -- runtime params -----------------------------------------------------------------------------
def session_time_of(context: Mapping[str, Any]) -> datetime:
    """Return the run's logical date, or its ``run_after`` for manual runs that have none."""
    logical_date: datetime | None = context.get("logical_date")
    if logical_date is not None:
        return logical_date
    dag_run = context.get("dag_run")
    run_after: datetime | None = getattr(dag_run, "run_after", None)
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


def time_params(prefix: str, moment: datetime | None, tz: Any) -> dict[str, Any]:
    """``<prefix>_time``, ``_date``, ``_date_compact``, ``_local_time``, ``_tz_offset``, ``_unixtime``.

    Digdag's format: whole seconds, ISO 8601 with the offset; an absent moment gives empty strings
    (with the zone's offset), as Digdag's ``last_executed_session_*`` are before the first run.
    """
    import pendulum

    if moment is None:
        offset = pendulum.now(tz).strftime("%z") or "+0000"
        empty = dict.fromkeys(("time", "date", "date_compact", "local_time", "unixtime"), "")
        return {f"{prefix}_{k}": v for k, v in {**empty, "tz_offset": offset}.items()}
    local = pendulum.instance(moment).in_timezone(tz).replace(microsecond=0)
    return {
        f"{prefix}_time": local.isoformat(),
        f"{prefix}_date": local.strftime("%Y-%m-%d"),
        f"{prefix}_date_compact": local.strftime("%Y%m%d"),
        f"{prefix}_local_time": local.strftime("%Y-%m-%d %H:%M:%S"),
        f"{prefix}_tz_offset": local.strftime("%z") or "+0000",
        f"{prefix}_unixtime": int(local.timestamp()),
    }


def stable_id(*parts: str) -> int:
    """A positive integer that stays the same for the same parts (Digdag's ids are integers)."""
    return int(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(parts)).hex[:13], 16)


def runtime_params(context: Mapping[str, Any], project: str = "") -> dict[str, Any]:
    """Map Digdag's runtime params (``session_time`` & co.) from an Airflow context.

    ``session_*`` values are in the DAG's timezone, as Digdag's are in the workflow's timezone; for a
    DAG in UTC (Airflow's default) ``session_date`` equals ``ds``. ``last_session_*``,
    ``next_session_*`` and ``last_executed_session_*`` exist for scheduled DAGs only, as in Digdag.
    """
    tz_name, tz = _timezone(context)
    session = session_time_of(context)
    ti = context.get("ti")
    dag = context.get("dag")
    dag_id: str = getattr(ti, "dag_id", "") or getattr(dag, "dag_id", "")
    task_id: str = getattr(ti, "task_id", "")
    run_id: str = context.get("run_id", "") or getattr(ti, "run_id", "")
    dag_run = context.get("dag_run")
    clear_number = getattr(dag_run, "clear_number", 0) or 0
    params: dict[str, Any] = {
        **time_params("session", session, tz),
        "session_id": stable_id("session", dag_id, run_id),
        "session_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"airflow:{dag_id}:{run_id}")),
        "timezone": tz_name,
        "task_name": context.get("digdag_task_name") or "+" + "+".join([dag_id, *task_id.split(".")]),
        "attempt_id": stable_id("attempt", dag_id, run_id, str(clear_number)),
        "project_id": zlib.crc32((project or dag_id).encode()),
        "retry_attempt_name": None,
    }
    neighbours = _schedule_neighbours(dag, session)
    if neighbours is not None:
        params.update(time_params("last_session", neighbours[0], tz))
        params.update(time_params("next_session", neighbours[1], tz))
        # Scheduled sessions only, as in Digdag (0.9.0: "scheduled workflow sessions now have a
        # last_executed_session_time"); finding the earlier run costs an API round trip, which an
        # unscheduled DAG's tasks do not pay (issue 11).
        params.update(time_params("last_executed_session", _last_executed(ti, context), tz))
    return params


def _schedule_neighbours(dag: Any, session: datetime) -> tuple[datetime | None, datetime | None] | None:
    """The schedule's session times before and after ``session``, or None for an unscheduled DAG.

    The Task SDK's timetables are definitions without the scheduling logic (which lives in Airflow
    core, too heavy to import in every task), so cron and delta schedules are stepped here; a
    timetable with its own ``_get_prev``/``_get_next`` (Airflow core's, the ``.dig`` loader's) is asked.
    """
    timetable = getattr(dag, "timetable", None)
    if timetable is None or not getattr(timetable, "can_be_scheduled", False):
        return None
    try:
        if hasattr(timetable, "_get_next") and hasattr(timetable, "_get_prev"):
            return timetable._get_prev(session), timetable._get_next(session)
        expression = getattr(timetable, "expression", None) or getattr(timetable, "_expression", None)
        if isinstance(expression, str):
            return _cron_neighbours(expression, getattr(timetable, "timezone", None) or "UTC", session)
        delta = getattr(timetable, "delta", None) or getattr(timetable, "_delta", None)
        if delta is not None:
            return session - delta, session + delta
    except Exception:  # a timetable we cannot step through: leave the params out, as for no schedule
        log.debug("cannot step through the timetable of %s", getattr(dag, "dag_id", "?"), exc_info=True)
    return None


def _cron_neighbours(expression: str, tz: Any, session: datetime) -> tuple[datetime, datetime]:
    import pendulum
    from croniter import croniter

    zone = pendulum.timezone(tz) if isinstance(tz, str) else tz
    local = pendulum.instance(session).in_timezone(zone)
    naive = local.naive()
    previous = croniter(expression, naive).get_prev(datetime)
    following = croniter(expression, naive).get_next(datetime)
    return pendulum.instance(previous, tz=zone), pendulum.instance(following, tz=zone)


def _last_executed(ti: Any, context: Mapping[str, Any]) -> datetime | None:
    """The session time of the last successful run before this one (Digdag ``last_executed_session_time``)."""
    if context.get("logical_date") is None or not hasattr(ti, "get_previous_dagrun"):
        return None
    previous = ti.get_previous_dagrun(state="success")
    return getattr(previous, "logical_date", None) if previous is not None else None


# -- resolution ---------------------------------------------------------------------------------
def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into ``base``: nested objects are merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_params(
    *,
    session: Mapping[str, Any],
    scopes: Sequence[tuple[Mapping[str, Any], Iterable[Mapping[str, Any]]]],
    runtime: Mapping[str, Any],
    local: Mapping[str, Any],
    task_label: str,
    warn: Callable[[str], None] = log.warning,
) -> dict[str, Any]:
    """Merge a task's params in Digdag's order (see the module docstring).

    :param session: the DAG's params and the run's conf.
    :param scopes: per scope, from the DAG down to the innermost TaskGroup: its export and the stores
        of the upstream tasks of that scope, in graph order.
    :param runtime: Digdag's runtime params; levels below cannot overwrite them.
    :param local: the task's own params.
    """
    params = dict(session)
    for export, stores in scopes:
        params = deep_merge(params, export)
        for stored in stores:
            params = deep_merge(params, stored)
    builtins = {k: v for k, v in runtime.items() if v is not None}
    overwritten = sorted(k for k in builtins if k in params and params[k] != builtins[k])
    if overwritten:
        warn(
            f"Task {task_label}: {', '.join(overwritten)} {'is a' if len(overwritten) == 1 else 'are'} "
            "built-in Digdag param(s) and cannot be overwritten by DAG params, dag_run.conf, exports or "
            "stored values; the built-in value is used"
        )
    params = deep_merge(params, builtins)
    params = deep_merge(params, local)
    _check_json(params, task_label)
    return params


def _check_json(params: Mapping[str, Any], task_label: str) -> None:
    try:
        json.dumps(params)
    except (TypeError, ValueError) as exc:
        bad = [k for k, v in params.items() if not _json_ok(v)]
        raise CmdExecConfigError(
            f"Task {task_label}: params {bad} are not JSON-serialisable ({exc}); Digdag params must be "
            "JSON values (str, int, float, bool, None, list, dict)"
        ) from exc


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# -- environment --------------------------------------------------------------------------------
def env_value(value: Any) -> str:
    """Encode a param as an environment variable value: strings raw, anything else compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def env_from_params(
    params: Mapping[str, Any], skipped: Callable[[list[str]], None] | None = None
) -> dict[str, str]:
    """Return the sh> environment: every param whose key is a valid variable name (Digdag §8.2),
    except names that change how a process starts (``is_startup_env_name``), which are reported."""
    env: dict[str, str] = {}
    refused: list[str] = []
    for key, value in params.items():
        if value is None or not ENV_KEY.fullmatch(key):
            continue
        if is_startup_env_name(key):
            refused.append(key)
            continue
        env[key] = env_value(value)
    if refused and skipped is not None:
        skipped(sorted(refused))
    return env


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
