"""The built-in functions and methods that Digdag's ``${...}`` may call (``javascript.py``), with
ECMAScript 5.1's rules, as Digdag's engine (Nashorn) has them:

- functions: ``parseInt``, ``parseFloat``, ``String``, ``Number``, ``Boolean``, ``isNaN``,
  ``isFinite``, ``encodeURIComponent``, ``decodeURIComponent``;
- ``JSON.stringify`` (with an indent), ``JSON.parse``; ``Math.abs``, ``ceil``, ``floor``, ``round``,
  ``max``, ``min``, ``pow``, ``sqrt``;
- string methods: ``charAt``, ``charCodeAt``, ``indexOf``, ``lastIndexOf``, ``slice``,
  ``substring``, ``substr``, ``toLowerCase``, ``toUpperCase``, ``trim``, ``split``, ``replace``,
  ``concat``, ``toString`` (positions count UTF-16 code units, as JavaScript's do);
- array methods: ``join``, ``indexOf``, ``lastIndexOf``, ``slice``, ``concat``, ``toString``;
- number methods: ``toFixed``, ``toString`` (a radix for integers);
- with a regular expression (``js_regexp.py``): ``replace``, ``split``, ``match``, ``search``, and
  the regex's ``test`` and ``exec``.

What takes a function (``map``, ``filter``, ``replace`` with a function) is refused when the workflow
loads: the parser reads no function. Methods that change an array (``push``, ``sort``, ``reverse``)
are refused too: a ``${...}`` computes a value.
Arguments and results are JavaScript values as ``javascript.py`` holds them (float numbers, str,
bool, None for null, ``UNDEFINED``, lists, mappings).
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from airflow_cmdexec_provider import js_regexp
from airflow_cmdexec_provider.javascript import (
    UNDEFINED,
    JsError,
    from_python,
    json_stringify,
    number_text,
    to_number,
    to_primitive,
    to_string,
    truthy,
)

FUNCTIONS = (
    "parseInt",
    "parseFloat",
    "String",
    "Number",
    "Boolean",
    "isNaN",
    "isFinite",
    "encodeURIComponent",
    "decodeURIComponent",
)
NAMESPACES = {
    "JSON": ("stringify", "parse"),
    "Math": ("abs", "ceil", "floor", "round", "max", "min", "pow", "sqrt"),
}
STRING_METHODS = (
    "charAt",
    "charCodeAt",
    "indexOf",
    "lastIndexOf",
    "slice",
    "substring",
    "substr",
    "toLowerCase",
    "toUpperCase",
    "trim",
    "split",
    "replace",
    "concat",
    "toString",
    "match",
    "search",
)
REGEX_METHODS = ("test", "exec")
ARRAY_METHODS = ("join", "indexOf", "lastIndexOf", "slice", "concat", "toString")
NUMBER_METHODS = ("toFixed", "toString")
METHODS = frozenset(STRING_METHODS + REGEX_METHODS + ARRAY_METHODS + NUMBER_METHODS)

# ES5 WhiteSpace and LineTerminator: what trim() and parseInt/parseFloat skip.
_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u180e\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_FLOAT_PREFIX = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def call_function(name: str, args: Sequence[Any]) -> Any:
    return _FUNCTION_TABLE[name](*_padded(args, 2)[:2])  # JavaScript ignores extra arguments


def call_namespace(namespace: str, name: str, args: Sequence[Any]) -> Any:
    if namespace == "JSON":
        return _json_stringify(*_padded(args, 3)[:3]) if name == "stringify" else _json_parse(_arg(args, 0))
    numbers = [to_number(a) for a in args]
    return _MATH[name](numbers)


def call_method(target: Any, name: str, args: Sequence[Any], described: str) -> Any:
    """``target.name(args)``; a TypeError (JsError) where JavaScript has no such method."""
    if isinstance(target, str) and name == "concat":
        return target + "".join(to_string(a) for a in args)
    regex_first = name in ("match", "search") or (name in ("replace", "split") and _is_regex(_arg(args, 0)))
    if isinstance(target, str) and regex_first:
        return _with_regex(target, name, args)
    if isinstance(target, js_regexp.JsRegExp) and name in REGEX_METHODS:
        text = to_string(_arg(args, 0))
        if name == "test":
            return js_regexp.test(target, text)
        return _or_null(js_regexp.execute(target, text, UNDEFINED))
    if isinstance(target, js_regexp.JsRegExp) and name == "toString":
        return str(target)
    if isinstance(target, str) and name in STRING_METHODS:
        return _STRING[name](target, *_padded(args, 2)[:2])
    if isinstance(target, list) and name in ARRAY_METHODS:
        if name == "concat":
            return _array_concat(target, args)
        return _ARRAY[name](target, *_padded(args, 2)[:2])
    if isinstance(target, bool) and name == "toString":
        return to_string(target)
    if isinstance(target, float) and name in NUMBER_METHODS:
        return _NUMBER[name](target, _arg(args, 0))
    raise JsError(
        f"{described}.{name} is not a function (a TypeError in Digdag too): {described} is {_kind(target)}"
    )


# -- helpers -------------------------------------------------------------------------------------


def _is_regex(value: Any) -> bool:
    return isinstance(value, js_regexp.JsRegExp)


def _or_null(value: Any) -> Any:
    return None if value is None else value


def _with_regex(text: str, name: str, args: Sequence[Any]) -> Any:
    """``replace``/``split`` with a regex, ``match``/``search`` with anything (made a regex)."""
    first = _arg(args, 0)
    if name == "replace":
        return js_regexp.replace(text, first, to_string(_arg(args, 1)))
    if name == "split":
        limit = _arg(args, 1)
        most = math.inf if limit is UNDEFINED else float(_uint32(limit))
        return js_regexp.split(text, first, most, UNDEFINED)
    try:
        regex = js_regexp.from_value(first, None if first is UNDEFINED else to_string(first))
    except js_regexp.RegexSyntax as exc:
        raise JsError(f"{name}: {exc} (a SyntaxError in Digdag too)") from exc
    if name == "search":
        return js_regexp.search(text, regex)
    return _or_null(js_regexp.match(text, regex, UNDEFINED))


def _padded(args: Sequence[Any], count: int) -> list[Any]:
    return [*args, *[UNDEFINED] * max(0, count - len(args))]


def _arg(args: Sequence[Any], index: int) -> Any:
    return args[index] if index < len(args) else UNDEFINED


def _kind(value: Any) -> str:
    if value is UNDEFINED or value is None:
        return to_string(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__.replace('float', 'number').replace('str', 'string')}"


def _integer(value: Any) -> float:
    """ES5 ToInteger: NaN is 0, infinities stay, otherwise truncated towards zero."""
    number = to_number(value)
    if math.isnan(number):
        return 0.0
    if math.isinf(number):
        return number
    return float(math.trunc(number))


def _uint32(value: Any) -> int:
    """ES5 ToUint32: NaN and the infinities are 0, otherwise truncated and taken modulo 2^32."""
    number = _integer(value)
    return 0 if math.isinf(number) else int(number) % 2**32


def _int32(value: Any) -> int:
    """ES5 ToInt32."""
    unsigned = _uint32(value)
    return unsigned - 2**32 if unsigned >= 2**31 else unsigned


def _relative(value: Any, length: int, default: float) -> int:
    """A start/end argument of slice(): negative counts from the end; clamped to [0, length]."""
    position = default if value is UNDEFINED else _integer(value)
    if position < 0:
        return int(max(length + position, 0))
    return int(min(position, length))


def _clamped(value: Any, length: int, default: float) -> int:
    position = default if value is UNDEFINED else _integer(value)
    return int(min(max(position, 0), length))


def _units(text: str) -> list[str]:
    """A string as JavaScript sees it: UTF-16 code units (an astral character is two)."""
    raw = text.encode("utf-16-le", "surrogatepass")
    return [raw[i : i + 2].decode("utf-16-le", "surrogatepass") for i in range(0, len(raw), 2)]


def _find(units: list[str], search: list[str], start: int, last: bool) -> int:
    positions = range(len(units) - len(search), -1, -1) if last else range(len(units) - len(search) + 1)
    for i in positions:
        if (i <= start if last else i >= start) and units[i : i + len(search)] == search:
            return i
    return -1


# -- functions -----------------------------------------------------------------------------------


def _parse_int(value: Any, radix: Any) -> float:
    text = to_string(value).lstrip(_SPACE)
    sign = -1.0 if text.startswith("-") else 1.0
    text = text[1:] if text[:1] in "+-" else text
    base = 0 if radix is UNDEFINED else _int32(radix)
    strip_prefix = base in (0, 16)
    if base == 0:
        base = 10
    elif not 2 <= base <= 36:
        return math.nan
    if strip_prefix and text[:2] in ("0x", "0X"):
        text, base = text[2:], 16
    digits = ""
    for char in text.lower():
        if char not in _DIGITS[:base]:
            break
        digits += char
    if not digits:
        return math.nan
    try:
        return sign * float(int(digits, base))
    except (
        OverflowError,
        ValueError,
    ):  # more than a double holds (or Python converts): JavaScript's Infinity
        return sign * math.inf


def _parse_float(value: Any, _: Any) -> float:
    match = _FLOAT_PREFIX.match(to_string(value).lstrip(_SPACE))
    if match is None:
        return math.nan
    return float(match.group().replace("Infinity", "inf"))


def _encode_uri_component(value: Any, _: Any) -> str:
    return urllib.parse.quote(to_string(value), safe="-_.!~*'()")


def _decode_uri_component(value: Any, _: Any) -> str:
    text = to_string(value)
    malformed = f"decodeURIComponent: malformed URI sequence in {text!r} (a URIError in Digdag too)"
    if re.search(r"%(?![0-9a-fA-F]{2})", text):
        raise JsError(malformed)
    try:
        return urllib.parse.unquote(text, errors="strict")
    except UnicodeDecodeError as exc:
        raise JsError(malformed) from exc


_FUNCTION_TABLE: dict[str, Callable[..., Any]] = {
    "parseInt": _parse_int,
    "parseFloat": _parse_float,
    "String": lambda value, _: "" if value is UNDEFINED else to_string(value),
    "Number": lambda value, _: 0.0 if value is UNDEFINED else to_number(value),
    "Boolean": lambda value, _: truthy(value),
    "isNaN": lambda value, _: math.isnan(to_number(value)),
    "isFinite": lambda value, _: math.isfinite(to_number(value)),
    "encodeURIComponent": _encode_uri_component,
    "decodeURIComponent": _decode_uri_component,
}


def _json_stringify(value: Any, replacer: Any, space: Any) -> Any:
    if replacer is not UNDEFINED and replacer is not None:
        raise JsError("JSON.stringify: a replacer is not evaluated here; give null or leave it out")
    if isinstance(space, float):
        indent = " " * int(min(10, max(0, _integer(space))))
    elif isinstance(space, str):
        indent = space[:10]
    else:
        indent = ""
    if not indent:
        text = json_stringify(value)
        return UNDEFINED if text is None else text
    return _pretty(value, indent, "") or UNDEFINED


def _pretty(value: Any, indent: str, current: str) -> str | None:
    """JSON.stringify(value, null, indent): one member per line, ``"key": value``."""
    value = from_python(value)
    inner = current + indent
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [_pretty(v, indent, inner) or "null" for v in value]
        return "[\n" + ",\n".join(inner + item for item in items) + "\n" + current + "]"
    if isinstance(value, Mapping):
        members = [
            f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {text}"
            for k, v in value.items()
            if (text := _pretty(v, indent, inner)) is not None
        ]
        return "{\n" + ",\n".join(members) + "\n" + current + "}" if members else "{}"
    return json_stringify(value)


def _json_parse(text: Any) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return from_python(json.loads(to_string(text), parse_constant=refuse))
    except ValueError as exc:
        raise JsError(f"JSON.parse: {exc} (a SyntaxError in Digdag too)") from exc


def _round(numbers: list[float]) -> float:
    x = numbers[0] if numbers else math.nan
    if not math.isfinite(x):
        return x
    floor = math.floor(x)
    return float(floor + 1 if x - floor >= 0.5 else floor)


def _extreme(numbers: list[float], pick: Callable[[list[float]], float], empty: float) -> float:
    if not numbers:
        return empty
    if any(math.isnan(n) for n in numbers):
        return math.nan
    return pick(numbers)


def _pow(numbers: list[float]) -> float:
    base, exponent = [*numbers, math.nan, math.nan][:2]
    if math.isnan(exponent) or (abs(base) == 1 and math.isinf(exponent)):
        return math.nan
    try:
        return float(math.pow(base, exponent))
    except (OverflowError, ValueError):
        if base < 0 and exponent != math.floor(exponent):
            return math.nan
        return math.inf if abs(base) > 1 or exponent < 0 else 0.0


def _first(function: Callable[[float], Any]) -> Callable[[list[float]], float]:
    def apply(numbers: list[float]) -> float:
        x = numbers[0] if numbers else math.nan
        return x if not math.isfinite(x) else float(function(x))

    return apply


_MATH: dict[str, Callable[[list[float]], float]] = {
    "abs": lambda n: abs(n[0]) if n else math.nan,
    "ceil": _first(math.ceil),
    "floor": _first(math.floor),
    "round": _round,
    "max": lambda n: _extreme(n, max, -math.inf),
    "min": lambda n: _extreme(n, min, math.inf),
    "pow": _pow,
    "sqrt": lambda n: (
        (math.sqrt(n[0]) if n[0] >= 0 else math.nan) if n and not math.isnan(n[0]) else math.nan
    ),
}


# -- string methods ------------------------------------------------------------------------------


def _char_at(text: str, index: Any, _: Any) -> str:
    units = _units(text)
    i = _integer(index)
    return units[int(i)] if 0 <= i < len(units) else ""


def _char_code_at(text: str, index: Any, _: Any) -> float:
    units = _units(text)
    i = _integer(index)
    return float(ord(units[int(i)])) if 0 <= i < len(units) else math.nan


def _index_of(text: str, search: Any, start: Any) -> float:
    units = _units(text)
    return float(_find(units, _units(to_string(search)), _clamped(start, len(units), 0), last=False))


def _last_index_of(text: str, search: Any, start: Any) -> float:
    units = _units(text)
    number = to_number(start)
    position = len(units) if math.isnan(number) else _clamped(start, len(units), len(units))
    return float(_find(units, _units(to_string(search)), position, last=True))


def _slice(text: str, start: Any, end: Any) -> str:
    units = _units(text)
    begin, stop = _relative(start, len(units), 0), _relative(end, len(units), len(units))
    return _joined(units[begin:stop])


def _substring(text: str, start: Any, end: Any) -> str:
    units = _units(text)
    a, b = _clamped(start, len(units), 0), _clamped(end, len(units), len(units))
    return _joined(units[min(a, b) : max(a, b)])


def _substr(text: str, start: Any, length: Any) -> str:
    units = _units(text)
    begin = _relative(start, len(units), 0)
    count = math.inf if length is UNDEFINED else _integer(length)
    count = min(max(count, 0), len(units) - begin)
    return _joined(units[begin : begin + int(count)])


def _joined(units: list[str]) -> str:
    return "".join(units).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _split(text: str, separator: Any, limit: Any) -> list[Any]:
    most = math.inf if limit is UNDEFINED else _uint32(limit)
    if most == 0:
        return []
    if separator is UNDEFINED:
        return [text]
    sep = to_string(separator)
    parts = [_joined([u]) for u in _units(text)] if sep == "" else text.split(sep)
    if sep == "" and not text:
        parts = []
    return parts if math.isinf(most) else parts[: int(most)]


def _replace(text: str, pattern: Any, replacement: Any) -> str:
    search = to_string(pattern)
    at = text.find(search)
    if at < 0:
        return text
    before, matched, after = text[:at], search, text[at + len(search) :]

    def substitute(match: re.Match[str]) -> str:
        code = match.group(1)
        return {"$": "$", "&": matched, "`": before, "'": after}.get(code, match.group(0))

    value = re.sub(r"\$([$&`'])", substitute, to_string(replacement))
    return before + value + after


_STRING: dict[str, Callable[..., Any]] = {
    "charAt": _char_at,
    "charCodeAt": _char_code_at,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "slice": _slice,
    "substring": _substring,
    "substr": _substr,
    "toLowerCase": lambda text, *_: text.lower(),
    "toUpperCase": lambda text, *_: text.upper(),
    "trim": lambda text, *_: text.strip(_SPACE),
    "split": _split,
    "replace": _replace,
    "toString": lambda text, *_: text,
}


# -- array methods -------------------------------------------------------------------------------


def _join(items: list[Any], separator: Any, _: Any) -> str:
    sep = "," if separator is UNDEFINED else to_string(separator)
    return sep.join("" if v is None or v is UNDEFINED else to_string(from_python(v)) for v in items)


def _strict_index(items: list[Any], search: Any, start: Any, last: bool) -> float:
    positions = range(len(items))
    if start is not UNDEFINED:
        first = _integer(start)
        if last:
            bound = len(items) + first if first < 0 else min(first, len(items) - 1)
            positions = range(int(bound) + 1) if bound >= 0 else range(0)
        else:
            positions = range(_relative(start, len(items), 0), len(items))
    ordered = reversed(positions) if last else positions
    for i in ordered:
        value = from_python(items[i])
        if type(value) is type(search) and not isinstance(value, (list, Mapping)) and value == search:
            return float(i)
    return -1.0


def _array_slice(items: list[Any], start: Any, end: Any) -> list[Any]:
    return items[_relative(start, len(items), 0) : _relative(end, len(items), len(items))]


def _array_concat(items: list[Any], args: Sequence[Any]) -> list[Any]:
    result = list(items)
    for arg in args:
        result.extend(arg if isinstance(arg, list) else [arg])
    return result


_ARRAY: dict[str, Callable[..., Any]] = {
    "join": _join,
    "indexOf": lambda items, search, start: _strict_index(items, search, start, last=False),
    "lastIndexOf": lambda items, search, start: _strict_index(items, search, start, last=True),
    "slice": _array_slice,
    "toString": lambda items, *_: to_primitive(items),
}


# -- number methods ------------------------------------------------------------------------------


def _to_fixed(number: float, digits: Any) -> str:
    places = _integer(digits)
    if not 0 <= places <= 20:
        raise JsError(f"toFixed({number_text(places)}): digits must be 0 to 20 (a RangeError in Digdag too)")
    if math.isnan(number) or abs(number) >= 1e21:
        return number_text(number)
    # the nearest n / 10^f to the exact value, the larger n on a tie, as ES5 says
    exact = Decimal(abs(number)).quantize(Decimal(1).scaleb(-int(places)), rounding=ROUND_HALF_UP)
    text = f"{exact:f}"
    return "-" + text if number < 0 else text  # ES5: "-" for any x < 0, even one that rounds to 0


def _number_to_string(number: float, radix: Any) -> str:
    base = 10 if radix is UNDEFINED else _int32(radix)
    if not 2 <= base <= 36:
        raise JsError(f"toString({base}): the radix must be 2 to 36 (a RangeError in Digdag too)")
    if base == 10 or not math.isfinite(number):
        return number_text(number)
    if number != math.floor(number):
        raise JsError(f"toString({base}) of a fraction is not evaluated here; round it first (Math.floor)")
    value, digits = abs(int(number)), ""
    while True:
        value, digit = divmod(value, base)
        digits = _DIGITS[digit] + digits
        if not value:
            break
    return "-" + digits if number < 0 else digits


_NUMBER: dict[str, Callable[[float, Any], str]] = {"toFixed": _to_fixed, "toString": _number_to_string}
