"""Digdag's ``${...}`` in text, evaluated with a task's params when it runs.

Digdag evaluates ``${...}`` as JavaScript (``ConfigEvalEngine`` with ``digdag.js``). We evaluate
the part workflows write (``javascript.py``): param names (``${session_date}``), paths into object
params (``${td.last_job_id}``), moment.js dates (``moment.py``), the operators around them
(``${'out_' + name}``, ``${n + 1}``, ``${a || 'default'}``, ``${n > 1 ? 'many' : 'one'}``), and
ES5's built-in functions and methods (``js_builtins.py``: ``${s.split(',')}``,
``${JSON.stringify(x)}``). The text pasted is what Digdag pastes: nothing for null and undefined,
a string as it is, anything else as ``JSON.stringify`` writes it. An unknown name fails, as the
JavaScript ``ReferenceError`` does in Digdag. Anything else (functions, object literals) is refused
with a clear message when the workflow loads rather than guessed.
``${secret:key}`` is Digdag's secret reference, valid only where a ``secret`` lookup is given
(``sh>`` command text and ``_env`` values, ``dig/secrets.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from airflow_cmdexec_provider import javascript
from airflow_cmdexec_provider.exceptions import CmdExecConfigError

_EXPRESSION = re.compile(r"\$\{([^{}]*)\}")
_LITERALS = {"true", "false", "null"}  # JavaScript literals, not names a param can shadow
_PATH = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*")
# Digdag's secret keys (SecretValidation): dot-separated words of letters, digits, '_' and '-'.
SECRET_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_-]*)*")


def evaluate(
    value: Any, params: Mapping[str, Any], where: str, secret: Callable[[str], str] | None = None
) -> Any:
    """Evaluate every ``${...}`` in ``value`` (a string, or strings inside lists and dicts).

    :param secret: looks up ``${secret:key}``; without it a secret reference is an error. One pass
        over the text as written: a value pasted in (a param holding ``${secret:x}``) is never
        evaluated again, so params cannot reach a secret.
    """
    if isinstance(value, str):
        return _EXPRESSION.sub(lambda m: _text(m.group(1), params, where, secret), value)
    if isinstance(value, Mapping):
        return {k: evaluate(v, params, where, secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(evaluate(v, params, where, secret) for v in value)
    return value


def has_expression(value: Any) -> bool:
    """Whether ``value`` (a string, or strings inside lists and dicts) holds a ``${...}``."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, Mapping):
        return any(has_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(has_expression(v) for v in value)
    return False


def secret_key(expression: str) -> str | None:
    """The key of a ``${secret:key}`` expression (the text inside ``${}``), or None if it is not one."""
    text = expression.strip()
    return text[len("secret:") :].strip() if text.startswith("secret:") else None


def _text(expression: str, params: Mapping[str, Any], where: str, secret: Callable[[str], str] | None) -> str:
    key = secret_key(expression)
    if key is not None and secret is not None:
        if not SECRET_KEY.fullmatch(key):
            raise CmdExecConfigError(
                f"{where}: ${{{expression}}}: {key!r} is not a secret key (words of letters, digits, _ "
                "and -, separated by dots, e.g. ${secret:db.password})"
            )
        return secret(key)
    return _value_text(expression, params, where)


def is_supported(expression: str) -> bool:
    """Whether ``expression`` (the text between ``${`` and ``}``) is evaluated."""
    return unsupported_reason(expression) is None


def unsupported_reason(expression: str) -> str | None:
    """Why ``expression`` is not evaluated, or None when it is. A reason about a ``moment(...)`` call
    starts with ``moment():``."""
    try:
        javascript.parse(expression)
    except javascript.Unsupported as exc:
        return str(exc)
    return None


def expressions_in(text: str) -> list[str]:
    """The expressions of every ``${...}`` in ``text``."""
    return [m.group(1) for m in _EXPRESSION.finditer(text)]


def _value_text(expression: str, params: Mapping[str, Any], where: str) -> str:
    path = expression.strip()
    if path in params and _PATH.fullmatch(path) and path not in _LITERALS:  # the common case, kept quick
        return javascript.template_text(javascript.from_python(params[path]))
    try:
        parsed = javascript.parse(expression)
    except javascript.Unsupported as exc:
        raise CmdExecConfigError(
            f"{where}: ${{{expression}}} is not supported: {exc}. Names, paths, operators, moment(...) "
            "dates and ES5's built-ins are evaluated (e.g. ${session_date}, ${td.last_job_id}, "
            "${'out_' + name}, ${moment(session_time).add(-1, 'days').format('YYYYMMDD')}, "
            "${s.split(',').join('-')}, ${s.replace(/-/g, '')}); functions are not, and "
            "${secret:...} only in the sh> command and _env values"
        ) from exc
    try:
        value = parsed.evaluate(params, lambda name: _param(name, params, expression, where))
    except (javascript.JsError, ValueError) as exc:
        raise CmdExecConfigError(f"{where}: ${{{expression}}}: {exc}") from exc
    return javascript.template_text(value)


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
    """A config value as text: a string as it is, anything else as JavaScript's ``JSON.stringify``
    (``null``, ``true``, ``2``, ``{"a":1}``); for messages and for keys, which Digdag turns into text."""
    if isinstance(value, str):
        return value
    return javascript.json_stringify(javascript.from_python(value)) or "undefined"
