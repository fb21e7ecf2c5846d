"""Java properties files (Digdag's ``-c`` config): parse and format, with its escapes and continuations."""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_cmdexec_provider.cli.common import CliError


# --------------------------------------------------------------------------------------------------
# Java properties files (what Digdag's -c reads)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prop:
    key: str
    value: str
    line: int


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str, line: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 >= len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            digits = text[i + 2 : i + 6]
            if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise CliError(f"line {line}: malformed \\uXXXX escape")
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def _split_key_value(logical: str) -> tuple[str, str]:
    """Split at the first unescaped '=', ':' or whitespace, as java.util.Properties does."""
    i = 0
    while i < len(logical):
        char = logical[i]
        if char == "\\":
            i += 2
            continue
        if char in "=: \t\f":
            break
        i += 1
    key = logical[:i]
    # After the key: optional whitespace, at most one '=' or ':', optional whitespace.
    j = i
    while j < len(logical) and logical[j] in " \t\f":
        j += 1
    if j < len(logical) and logical[j] in "=:":
        j += 1
        while j < len(logical) and logical[j] in " \t\f":
            j += 1
    return key, logical[j:]


def _odd_trailing_backslashes(text: str) -> bool:
    count = len(text) - len(text.rstrip("\\"))
    return count % 2 == 1


def parse_properties(text: str) -> list[Prop]:
    """Parse Java properties: ``key = value``, ``key: value``, ``key value``; comments ``#``/``!``;
    a line ending in an odd number of backslashes continues on the next (its indentation dropped);
    escapes ``\\t \\n \\r \\f \\uXXXX`` and ``\\x`` for any other x."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)
    props: list[Prop] = []
    i = 0
    while i < len(lines):
        number = i + 1
        line = lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        logical = line
        while _odd_trailing_backslashes(logical):
            logical = logical[:-1]
            if i >= len(lines):
                break
            logical += lines[i].lstrip(" \t\f")
            i += 1
        key, value = _split_key_value(logical)
        props.append(Prop(_unescape(key, number), _unescape(value, number), number))
    return props


def _escape(text: str, is_key: bool) -> str:
    out: list[str] = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char in "\t\n\r\f":
            out.append("\\" + {"\t": "t", "\n": "n", "\r": "r", "\f": "f"}[char])
        elif char in "=:#!" and (is_key or index == 0):
            out.append("\\" + char)
        elif char == " " and (is_key or index == 0):
            out.append("\\ ")
        else:
            out.append(char)
    return "".join(out)


def format_property(key: str, value: str) -> str:
    return f"{_escape(key, True)} = {_escape(value, False)}"
