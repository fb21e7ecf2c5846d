"""Regular expression literals of Digdag's ``${...}`` (``/-/g``) and the string methods that take
them: ``replace``, ``split``, ``match``, ``search``, and the regex's own ``test`` and ``exec``, with
ECMAScript 5.1's rules (Digdag's Nashorn).

A literal is translated to Python's ``re`` when the workflow loads, so that a pattern Python would
read differently is refused there, with the reason, instead of matching something else:

- ``\\d``, ``\\w`` (and ``\\D``, ``\\W``, ``\\b``) are ASCII in JavaScript: they become ``[0-9]``,
  ``[A-Za-z0-9_]``, ...; ``$`` without the ``m`` flag is the very end (``\\Z``), ``[^]`` anything,
  ``[]`` nothing;
- flags ``g``, ``i``, ``m``; lookbehind, named groups and ``\\k`` (later JavaScript) are refused.

Positions count code points, not UTF-16 code units: they differ only around characters outside the
Basic Multilingual Plane (emoji), where a pattern's ``.`` matches one character here and half of one
in JavaScript.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_CLASS_ESCAPES = {"d": "0-9", "w": "A-Za-z0-9_"}
_ESCAPES = {
    "d": "[0-9]",
    "D": "[^0-9]",
    "w": "[A-Za-z0-9_]",
    "W": "[^A-Za-z0-9_]",
    "b": r"(?:(?<=[A-Za-z0-9_])(?![A-Za-z0-9_])|(?<![A-Za-z0-9_])(?=[A-Za-z0-9_]))",
    "B": r"(?:(?<=[A-Za-z0-9_])(?=[A-Za-z0-9_])|(?<![A-Za-z0-9_])(?![A-Za-z0-9_]))",
}


class RegexSyntax(ValueError):
    """A regular expression literal that is not read here; the message says why."""


@dataclass(frozen=True, eq=False)  # two literals are two objects: /a/ === /a/ is false
class JsRegExp:
    source: str
    flags: str
    compiled: re.Pattern[str]

    @property
    def is_global(self) -> bool:
        return "g" in self.flags

    def __str__(self) -> str:  # String(/a/g) is "/a/g"
        return f"/{self.source}/{self.flags}"


def scan(text: str, start: int) -> tuple[JsRegExp, int]:
    """Read the literal that starts with the ``/`` at ``start``; the regex and where it ends."""
    position, in_class = start + 1, False
    while True:
        if position >= len(text) or text[position] == "\n":
            raise RegexSyntax("a regular expression literal has no closing /")
        char = text[position]
        if char == "\\":
            position += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "/" and not in_class:
            break
        position += 1
    source = text[start + 1 : position]
    match = re.compile(r"[A-Za-z$_]*").match(text, position + 1)
    flags = match.group() if match else ""
    return compile_literal(source, flags), position + 1 + len(flags)


def compile_literal(source: str, flags: str) -> JsRegExp:
    if not source:
        raise RegexSyntax("// is a comment, not a regular expression")
    unknown = set(flags) - set("gim")
    if unknown or len(set(flags)) != len(flags):
        raise RegexSyntax(f"/{source}/{flags}: flags are g, i and m, each once (ES5)")
    python = _translate(source, multiline="m" in flags)
    options = (re.IGNORECASE if "i" in flags else 0) | (re.MULTILINE if "m" in flags else 0)
    try:
        compiled = re.compile(python, options)
    except re.error as exc:
        raise RegexSyntax(f"/{source}/{flags} is not a valid regular expression: {exc}") from exc
    return JsRegExp(source, flags, compiled)


def _translate(source: str, multiline: bool) -> str:
    out: list[str] = []
    position, in_class = 0, False
    while position < len(source):
        char = source[position]
        if char == "\\":
            if position + 1 >= len(source):
                raise RegexSyntax(f"/{source}/ ends with a lone backslash")
            escaped = source[position + 1]
            if escaped == "k":
                raise RegexSyntax(f"/{source}/: named back-references (\\k) are not ES5")
            if in_class and escaped in _CLASS_ESCAPES:
                out.append(_CLASS_ESCAPES[escaped])
            elif not in_class and escaped in _ESCAPES:
                out.append(_ESCAPES[escaped])
            else:
                out.append(source[position : position + 2])
            position += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
            elif char == "[":
                out.append("\\[")
                position += 1
                continue
            out.append(char)
        elif source.startswith("[^]", position):
            out.append(r"[\s\S]")
            position += 3
            continue
        elif source.startswith("[]", position):
            out.append("(?!)")
            position += 2
            continue
        elif char == "[":
            in_class = True
            out.append(char)
        elif source.startswith("(?<", position):
            raise RegexSyntax(f"/{source}/: lookbehind and named groups are not ES5")
        elif char == "$" and not multiline:
            out.append(r"\Z")
        else:
            out.append(char)
        position += 1
    return "".join(out)


def from_value(value: Any, text: str | None) -> JsRegExp:
    """``new RegExp(value)``, as ``match``/``search`` make it of an argument that is not a regex;
    ``text`` is the argument as a string, None for undefined (which matches the empty string)."""
    if isinstance(value, JsRegExp):
        return value
    return compile_literal(text or "(?:)", "")


# -- the methods ---------------------------------------------------------------------------------


def replace(text: str, regex: JsRegExp, replacement: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        def part(token: re.Match[str]) -> str:
            code = token.group(1)
            if code == "$":
                return "$"
            if code == "&":
                return match.group(0)
            if code == "`":
                return text[: match.start()]
            if code == "'":
                return text[match.end() :]
            number = int(code)
            if 1 <= number <= len(match.groups()):
                return match.group(number) or ""
            if len(code) == 2 and 1 <= int(code[0]) <= len(match.groups()):  # $12 with one group: $1 then "2"
                return (match.group(int(code[0])) or "") + code[1]
            return token.group(0)

        return re.sub(r"\$(\$|&|`|'|\d\d?)", part, replacement)

    return regex.compiled.sub(substitute, text, count=0 if regex.is_global else 1)


def split(text: str, regex: JsRegExp, limit: float, undefined: Any) -> list[Any]:
    """ES5's String.prototype.split with a regex (15.5.4.14): a match at the very position only, an
    empty match at the split point skipped, capturing groups included."""
    if limit == 0:
        return []
    if not text:
        return [] if regex.compiled.match(text) else [text]
    parts: list[Any] = []
    start = probe = 0
    while probe < len(text):
        match = regex.compiled.match(text, probe)
        if match is None or match.end() == start:
            probe += 1
            continue
        parts.append(text[start:probe])
        if len(parts) == limit:
            return parts
        for group in match.groups():
            parts.append(undefined if group is None else group)
            if len(parts) == limit:
                return parts
        start = probe = match.end()
    parts.append(text[start:])
    return parts


def match(text: str, regex: JsRegExp, undefined: Any) -> list[Any] | None:
    if regex.is_global:
        found = [m.group(0) for m in regex.compiled.finditer(text)]
        return found or None
    return execute(regex, text, undefined)


def execute(regex: JsRegExp, text: str, undefined: Any) -> list[Any] | None:
    """``regex.exec(text)`` (from the start: ``lastIndex`` is not kept between expressions)."""
    found = regex.compiled.search(text)
    if found is None:
        return None
    return [found.group(0), *(undefined if g is None else g for g in found.groups())]


def search(text: str, regex: JsRegExp) -> float:
    found = regex.compiled.search(text)
    return -1.0 if found is None else float(found.start())


def test(regex: JsRegExp, text: str) -> bool:
    return regex.compiled.search(text) is not None
