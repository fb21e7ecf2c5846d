"""What Digdag's generator operators generate: ``for_each>``, ``loop>`` and ``for_range>``.

The iterations (Digdag's generated task names and their exports) are those Digdag's
``ForEachOperatorFactory``, ``LoopOperatorFactory`` and ``ForRangeOperatorFactory`` make at run
time. Literal values are unrolled here at load time into the subtask config (one copy of ``_do``
per iteration), which the compiler turns into a TaskGroup like any group. Values from ``${...}``
are known only when the task runs: ``loops.py`` computes the same iterations then, with the same
functions, and maps one compiled ``_do`` over them."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from airflow_cmdexec_provider.dig.errors import Reporter
from airflow_cmdexec_provider.dig.yaml_dialect import DigMap
from airflow_cmdexec_provider.expressions import has_expression, js_string


class BadLoop(ValueError):
    """A generator's values that make no iterations; the message says what is wrong."""


Iterations = list[tuple[str, dict[str, Any]]]  # (Digdag's generated task name, its exports)


def for_each_iterations(values: Any) -> Iterations:
    """ForEachOperatorFactory: every combination of the lists, in Digdag's order and names."""
    mapping = _parsed(values, Mapping)
    entries = [(name, _parsed(written, list)) for name, written in mapping.items()]
    iterations: Iterations = []
    for combination in itertools.product(*[list(enumerate(items)) for _, items in entries]):
        tags = [
            f"{i}={_name_tag(name)}={j}={_name_tag(value)}"
            for i, ((name, _), (j, value)) in enumerate(zip(entries, combination, strict=True))
        ]
        iteration = {name: value for (name, _), (_, value) in zip(entries, combination, strict=True)}
        iterations.append(("+for-" + "&".join(tags), iteration))
    return iterations


def loop_iterations(count: Any) -> Iterations:
    """LoopOperatorFactory: ``+loop-0`` .. ``+loop-N-1``, each exporting ``i``."""
    if isinstance(count, str) and count.strip().isdigit():
        count = int(count)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise BadLoop(f"needs a number of iterations, got {js_string(count)!r}")
    return [(f"+loop-{i}", {"i": i}) for i in range(count)]


def range_iterations(command: Any) -> Iterations:
    """ForRangeOperatorFactory: ``+range-from=F&to=T`` over [from, to) by ``step``, or cut into
    ``slices`` (step = ceil((to - from) / slices)), each exporting ``range: {from, to, index}``."""
    if isinstance(command, str):
        with contextlib.suppress(ValueError):
            command = json.loads(command)
    if not isinstance(command, Mapping):
        raise BadLoop("needs {from: N, to: N, step: N or slices: N}")
    numbers: dict[str, int] = {}
    for name in ("from", "to", "step", "slices"):
        value = command.get(name)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise BadLoop(f"{name} must be a whole number, got {js_string(value)!r}")
        if value is not None:
            numbers[name] = value
    if "from" not in numbers or "to" not in numbers:
        raise BadLoop("needs from and to")
    if ("step" in numbers) == ("slices" in numbers):
        raise BadLoop("needs one of step and slices (Digdag: 'step or slices option is required', not both)")
    if numbers.get("step", numbers.get("slices", 1)) <= 0:
        raise BadLoop("step and slices must be 1 or more")
    start, end = numbers["from"], numbers["to"]
    slices = numbers.get("slices", 1)
    step = numbers.get("step") or int((end - start + slices - 1) / slices)  # Java's long division
    return [
        (
            f"+range-from={position}&to={min(position + step, end)}",
            {"range": {"from": position, "to": min(position + step, end), "index": index}},
        )
        for index, position in enumerate(range(start, end, step) if step > 0 else ())
    ]


ITERATIONS: dict[str, Callable[[Any], Iterations]] = {
    "for_each": for_each_iterations,
    "loop": loop_iterations,
    "for_range": range_iterations,
}


def generator_value(kind: str, command: Any, config: Mapping[str, Any]) -> Any:
    """What a generator iterates over, as written: for_each>'s mapping, loop>'s count, for_range>'s
    bounds."""
    if kind == "loop":
        return config.get("count", command)
    return command


def is_dynamic(kind: str, command: Any, config: Mapping[str, Any]) -> bool:
    """Whether the values come from ``${...}``, known only when the task runs."""
    return has_expression(generator_value(kind, command, config))


def unrolled(report: Reporter, kind: str, command: Any, config: DigMap) -> DigMap | None:
    """The generated subtasks of literal values, one ``_do`` copy per iteration, as a group."""
    key = next((k for k in (f"{kind}>", "count", "_command") if k in config), "_command")
    if kind == "loop" and "count" in config:
        key = "count"
    body = config.get("_do")
    try:
        iterations = ITERATIONS[kind](generator_value(kind, command, config))
    except BadLoop as exc:
        report.problem(config, key, f"{kind}>", str(exc))
        return None
    if not isinstance(body, DigMap):
        report.problem(config, key, f"{kind}>", "needs _do: the task to run for each iteration")
        return None
    generated = DigMap(config.file, config.where(key)[1])
    for name, export in iterations:
        generated[name] = _with_export(body, export)
        generated.key_lines[name] = config.where(key)
    return _with_parallel(generated, config)


def _parsed(value: Any, kind: type) -> Any:
    """A for_each> value written literally or as a JSON string (what ``${...}`` pastes)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if not isinstance(value, kind):
        what = "a mapping of names to lists" if kind is Mapping else "a list of values"
        raise BadLoop(f"needs {what}, got {js_string(value)!r}")
    return value


def _with_parallel(generated: DigMap, config: DigMap) -> DigMap:
    if "_parallel" in config:
        generated["_parallel"] = config["_parallel"]
        generated.key_lines["_parallel"] = config.where("_parallel")
    return generated


def _with_export(body: DigMap, values: Mapping[str, Any]) -> DigMap:
    """A copy of ``_do`` whose ``_export`` also holds ``values`` (Digdag's generated subtask)."""
    copy = DigMap(body.file, body.line)
    copy.update(body)
    copy.key_lines.update(body.key_lines)
    export = DigMap(body.file, body.line)
    previous = body.get("_export")
    if isinstance(previous, DigMap):
        export.update(previous)
        export.key_lines.update(previous.key_lines)
    export.update(values)
    copy["_export"] = export
    return copy


def _name_tag(value: Any) -> str:
    """ForEachOperatorFactory.nameTag: the first 8 characters of the value, URL-encoded."""
    return quote(js_string(value)[:8], safe="*").replace("~", "%7E")


GENERATORS = tuple(ITERATIONS)
