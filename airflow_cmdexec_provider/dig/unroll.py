"""What Digdag's generator operators generate: ``for_each>``, ``loop>`` and ``for_range>`` unrolled
into the subtask config Digdag's ``ForEachOperatorFactory``, ``LoopOperatorFactory`` and
``ForRangeOperatorFactory`` return at run time (same task names, same exports), here at load time
from literal values. The compiler turns the result into a TaskGroup like any group."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from airflow_cmdexec_provider.dig.errors import Reporter
from airflow_cmdexec_provider.dig.yaml_dialect import DigMap
from airflow_cmdexec_provider.expressions import js_string


def for_each(report: Reporter, command: Any, config: DigMap) -> DigMap | None:
    key = "for_each>" if "for_each>" in config else "_command"
    values = _literal(report, command, config, key, Mapping)
    body = config.get("_do")
    if values is None:
        return None
    if not isinstance(body, DigMap):
        report.problem(config, key, "for_each>", "needs _do: the task to run for each combination")
        return None
    entries: list[tuple[str, list[Any]]] = []
    for name, written in values.items():
        items = _literal(report, written, config, key, list)
        if items is None:
            return None
        entries.append((name, items))
    generated = DigMap(config.file, config.where(key)[1])
    for combination in itertools.product(*[list(enumerate(items)) for _, items in entries]):
        tags = [
            f"{i}={_name_tag(name)}={j}={_name_tag(value)}"
            for i, ((name, _), (j, value)) in enumerate(zip(entries, combination, strict=True))
        ]
        iteration = {name: value for (name, _), (_, value) in zip(entries, combination, strict=True)}
        generated_key = "+for-" + "&".join(tags)
        generated[generated_key] = _with_export(body, iteration)
        generated.key_lines[generated_key] = config.where(key)
    return _with_parallel(generated, config)


def loop(report: Reporter, command: Any, config: DigMap) -> DigMap | None:
    key = "count" if "count" in config else ("loop>" if "loop>" in config else "_command")
    count = config.get("count", command)
    if isinstance(count, str) and count.strip().isdigit():
        count = int(count)
    if isinstance(count, str) and "${" in count:
        report.unsupported(config, key, "dynamic", f"loop>: {count}")
        return None
    body = config.get("_do")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0 or not isinstance(body, DigMap):
        report.problem(config, key, "loop>", "needs a number of iterations and _do: the task to repeat")
        return None
    generated = DigMap(config.file, config.where(key)[1])
    for i in range(count):
        generated[f"+loop-{i}"] = _with_export(body, {"i": i})
        generated.key_lines[f"+loop-{i}"] = config.where(key)
    return _with_parallel(generated, config)


def for_range(report: Reporter, command: Any, config: DigMap) -> DigMap | None:
    """Digdag's ``ForRangeOperator``: ``+range-from=F&to=T`` tasks over [from, to) by ``step``, or
    cut into ``slices`` (step = ceil((to - from) / slices)), each exporting ``range: {from, to,
    index}``."""
    key = "for_range>" if "for_range>" in config else "_command"
    if isinstance(command, str) and "${" in command:
        report.unsupported(config, key, "dynamic", f"for_range>: {command}")
        return None
    if isinstance(command, str):
        with contextlib.suppress(ValueError):
            command = json.loads(command)
    body = config.get("_do")
    if not isinstance(command, Mapping) or not isinstance(body, DigMap):
        report.problem(config, key, "for_range>", "needs {from: N, to: N, step: N or slices: N} and _do")
        return None
    numbers: dict[str, int] = {}
    for name in ("from", "to", "step", "slices"):
        value = command.get(name)
        if isinstance(value, str) and "${" in value:
            report.unsupported(config, key, "dynamic", f"for_range> {name}: {value}")
            return None
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            report.problem(
                config, key, "for_range>", f"{name} must be a whole number, got {js_string(value)!r}"
            )
            return None
        if value is not None:
            numbers[name] = value
    problem = None
    if "from" not in numbers or "to" not in numbers:
        problem = "needs from and to"
    elif ("step" in numbers) == ("slices" in numbers):
        problem = "needs one of step and slices (Digdag: 'step or slices option is required', not both)"
    elif numbers.get("step", numbers.get("slices", 1)) <= 0:
        problem = "step and slices must be 1 or more"
    if problem:
        report.problem(config, key, "for_range>", problem)
        return None
    start, end = numbers["from"], numbers["to"]
    slices = numbers.get("slices", 1)
    step = numbers.get("step") or int((end - start + slices - 1) / slices)  # Java's long division
    generated = DigMap(config.file, config.where(key)[1])
    for index, position in enumerate(range(start, end, step) if step > 0 else ()):
        upper = min(position + step, end)
        generated_key = f"+range-from={position}&to={upper}"
        generated[generated_key] = _with_export(
            body, {"range": {"from": position, "to": upper, "index": index}}
        )
        generated.key_lines[generated_key] = config.where(key)
    return _with_parallel(generated, config)


def _literal(report: Reporter, value: Any, config: DigMap, key: str, kind: type) -> Any:
    """A for_each> value written literally (or as a JSON string); ``${...}`` is a later version's."""
    if isinstance(value, str):
        if "${" in value:
            report.unsupported(config, key, "dynamic", f"for_each> over {value}")
            return None
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if not isinstance(value, kind):
        what = "a mapping of names to lists" if kind is Mapping else "a list of values"
        report.problem(config, key, "for_each>", f"needs {what}, got {js_string(value)!r}")
        return None
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


GENERATORS: dict[str, Callable[[Reporter, Any, DigMap], DigMap | None]] = {
    "for_each": for_each,
    "loop": loop,
    "for_range": for_range,
}
