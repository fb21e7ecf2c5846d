"""Digdag's ``${...}`` in text: names and dotted paths, evaluated with a task's params when it runs.

Digdag evaluates ``${...}`` as JavaScript (``ConfigEvalEngine`` with ``digdag.js``). We evaluate
the part nearly every workflow uses: a param name (``${session_date}``), a dotted path into an
object param (``${td.last_job_id}``, ``${user.name}``), and date arithmetic and formatting with
``moment(...)`` (``moment.py``). The result is the value as JavaScript's ``String()`` would print it,
with objects and arrays as JSON, as Digdag's template does. An unknown name fails, as the JavaScript
``ReferenceError`` does in Digdag. Anything else (operators, other function calls, ``${secret:...}``)
is refused with a clear message rather than guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from airflow_cmdexec_provider import moment
from airflow_cmdexec_provider.exceptions import CmdExecConfigError

_EXPRESSION = re.compile(r"\$\{([^{}]*)\}")
_PATH = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*")


def evaluate(value: Any, params: Mapping[str, Any], where: str) -> Any:
    """Evaluate every ``${...}`` in ``value`` (a string, or strings inside lists and dicts)."""
    if isinstance(value, str):
        return _EXPRESSION.sub(lambda m: _value_text(m.group(1), params, where), value)
    if isinstance(value, Mapping):
        return {k: evaluate(v, params, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(evaluate(v, params, where) for v in value)
    return value


def is_supported(expression: str) -> bool:
    """Whether ``expression`` (the text between ``${`` and ``}``) is evaluated: a name, a dotted path
    or a ``moment(...)`` call of the subset ``moment.py`` evaluates."""
    return unsupported_reason(expression) is None


def unsupported_reason(expression: str) -> str | None:
    """Why ``expression`` is not evaluated, or None when it is."""
    if _PATH.fullmatch(expression.strip()):
        return None
    if moment.is_moment(expression):
        try:
            moment.parse(expression)
        except moment.UnsupportedMoment as exc:
            return f"moment(): {exc}"
        return None
    return "only param names, dotted paths and moment(...) dates are evaluated"


def expressions_in(text: str) -> list[str]:
    """The expressions of every ``${...}`` in ``text``."""
    return [m.group(1) for m in _EXPRESSION.finditer(text)]


def _value_text(expression: str, params: Mapping[str, Any], where: str) -> str:
    path = expression.strip()
    if _PATH.fullmatch(path):
        return js_string(_param(path, params, expression, where))
    if not moment.is_moment(path):
        raise CmdExecConfigError(
            f"{where}: ${{{expression}}} is not supported: only param names, dotted paths and moment(...) "
            "dates are evaluated (e.g. ${session_date}, ${td.last_job_id}, "
            "${moment(session_time).add(-1, 'days').format('YYYYMMDD')}); other JavaScript and "
            "${secret:...} are not"
        )
    try:
        call = moment.parse(path)
        value = call.evaluate(params.get("timezone"), lambda name: _param(name, params, expression, where))
    except (moment.UnsupportedMoment, ValueError) as exc:
        raise CmdExecConfigError(f"{where}: ${{{expression}}}: {exc}") from exc
    return js_string(value)


def _param(path: str, params: Mapping[str, Any], expression: str, where: str) -> Any:
    value: Any = params
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if not isinstance(value, Mapping) or part not in value:
            raise CmdExecConfigError(
                f"{where}: ${{{expression}}}: {'.'.join(walked)} is not defined (Digdag fails with a "
                "ReferenceError here too); define the param or fix the name"
            )
        value = value[part]
    return value


def js_string(value: Any) -> str:
    """JavaScript's ``String(value)`` for JSON values, objects and arrays as JSON (Digdag's template)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
