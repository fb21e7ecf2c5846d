"""labelSelector and fieldSelector query parameters, parsed and matched like the API server."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._schema import bad_request

_SET_REQUIREMENT = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")
_BINARY_REQUIREMENT = re.compile(r"^\s*([^\s!=<>]+)\s*(==|!=|=|>|<)\s*(\S*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([^\s!=<>(),]+)\s*$")


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # = != in notin exists !exists > <
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        try:  # > and < compare integers; a label that is missing or not one does not match
            number = int(labels[self.key])
        except (KeyError, ValueError):
            return False
        return number > int(self.values[0]) if self.op == ">" else number < int(self.values[0])


def _split_top_level(text: str) -> list[str]:
    """Split at commas that are not inside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


class LabelSelector:
    def __init__(self, text: str | None) -> None:
        self.requirements: list[_Requirement] = []
        if not text or not text.strip():
            return
        for part in _split_top_level(text):
            self.requirements.append(self._parse(part, text))

    @staticmethod
    def _parse(part: str, whole: str) -> _Requirement:
        if m := _SET_REQUIREMENT.match(part):
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            if not values:
                raise bad_request(
                    "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty "
                    f"(labelSelector {whole!r})"
                )
            return _Requirement(m.group(1), m.group(2), values)
        if m := _BINARY_REQUIREMENT.match(part):
            key, op, value = m.groups()
            op = "=" if op == "==" else op
            if op in (">", "<") and not re.fullmatch(r"-?[0-9]+", value):
                raise bad_request(
                    "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer "
                    f"(labelSelector {whole!r})"
                )
            return _Requirement(key, op, (value,))
        if m := _EXISTS.match(part):
            return _Requirement(m.group(2), "!exists" if m.group(1) else "exists")
        raise bad_request(
            f"unable to parse requirement: found '{part.strip()}', expected: in, notin, =, ==, !=, gt, lt "
            f"(labelSelector {whole!r})"
        )

    def matches(self, obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in self.requirements)


def match_label_selector_object(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector object (matchLabels, matchExpressions), as in a PVC's spec.selector."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expr in selector.get("matchExpressions") or []:
        requirement = _Requirement(expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ()))
        if not requirement.matches(labels):
            return False
    return True


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


class FieldSelector:
    """``field=value``, ``field==value``, ``field!=value`` terms; ``fields`` maps the field names a
    resource supports to a getter of that field's value from an object."""

    def __init__(self, text: str | None, fields: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
        self.terms: list[tuple[Callable[[dict[str, Any]], Any], str, str]] = []
        if not text or not text.strip():
            return
        for part in re.split(r"(?<!\\),", text):
            m = re.match(r"^\s*([^=!\s]+)\s*(==|!=|=)(.*)$", part)
            if not m:
                raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
            name, op, value = m.group(1), m.group(2), _unescape(m.group(3).strip())
            getter = fields.get(name)
            if getter is None:
                raise bad_request(f"field label not supported: {name}")
            self.terms.append((getter, "!=" if op == "!=" else "=", value))

    def matches(self, obj: dict[str, Any]) -> bool:
        for getter, op, value in self.terms:
            actual = getter(obj)
            actual = (
                "" if actual is None else str(actual).lower() if isinstance(actual, bool) else str(actual)
            )
            if (actual == value) != (op == "="):
                return False
        return True


def _path(*keys: str) -> Callable[[dict[str, Any]], Any]:
    def get(obj: dict[str, Any]) -> Any:
        value: Any = obj
        for key in keys:
            value = (value or {}).get(key)
        return value

    return get


_METADATA_FIELDS = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}

FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], Any]]] = {
    "pods": {
        **_METADATA_FIELDS,
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: bool((o.get("spec") or {}).get("hostNetwork")),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "events": {
        **_METADATA_FIELDS,
        "involvedObject.kind": _path("involvedObject", "kind"),
        "involvedObject.namespace": _path("involvedObject", "namespace"),
        "involvedObject.name": _path("involvedObject", "name"),
        "involvedObject.uid": _path("involvedObject", "uid"),
        "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source", "component"),
        "type": _path("type"),
    },
    "namespaces": {**_METADATA_FIELDS, "status.phase": _path("status", "phase")},
    "secrets": {**_METADATA_FIELDS, "type": _path("type")},
    "persistentvolumeclaims": {**_METADATA_FIELDS},
    "persistentvolumes": {**_METADATA_FIELDS},
    "configmaps": {**_METADATA_FIELDS},
}
