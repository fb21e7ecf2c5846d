"""The JavaScript of Digdag's ``${...}``, the part workflows write, evaluated without a JavaScript engine.

Digdag pastes ``${expr}`` into a JavaScript function run ``with`` the params as scope (``digdag.js``)
and prints the result: nothing for ``null`` and ``undefined``, a string as it is, anything else as
``JSON.stringify`` writes it. Workflows write names, paths, ``moment(...)`` dates and small
expressions around them (``${1 + 1}``, ``${'out_' + name}``, ``${a.b || 'default'}``,
``${n > 1 ? 'many' : 'one'}``). This module parses that subset when the workflow loads and evaluates
it when the task runs, with ECMAScript 5's rules (Digdag's engine is Nashorn):

- literals: numbers (``1``, ``2.5``, ``1e3``, ``0x1f``), strings (``'...'``, ``"..."``, with
  escapes), ``true``, ``false``, ``null``; the globals ``undefined``, ``NaN``, ``Infinity``;
- names and members: ``a``, ``a.b``, ``a['b']``, ``a[0]``, ``s.length``;
- operators: ``!`` ``-`` ``+`` ``typeof``; ``*`` ``/`` ``%``; ``+`` ``-``; ``<`` ``<=`` ``>`` ``>=``;
  ``==`` ``!=`` ``===`` ``!==``; ``&&`` ``||``; ``c ? a : b``; parentheses;
- ``moment(...)`` chains (``moment.py``), also inside a larger expression;
- array literals (``[a, 'b']``), regular expression literals (``/-/g``, ``js_regexp.py``) and
  calls of ES5's built-in functions and methods (``js_builtins.py``: ``JSON.stringify(x)``,
  ``s.split(',')``, ``list.join('-')``, ``Math.floor(n / 2)``, ``parseInt(s)``,
  ``s.replace(/-/g, '')``, ...), checked by name when the workflow loads.

Each with JavaScript's coercions: ``'1' + 1`` is ``'11'``, ``'3' * 2`` is 6, ``5 / 2`` is 2.5,
``null == undefined``, ``&&``/``||`` give an operand, numbers print as JavaScript prints them.
Everything else (other calls, functions, assignment, object literals, bit operators) is refused
when the workflow loads, with the reason: nothing is guessed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from airflow_cmdexec_provider import js_regexp, moment


class Unsupported(ValueError):
    """An expression outside the subset; the message says what."""


class JsError(ValueError):
    """What JavaScript throws when the expression runs (ReferenceError, TypeError)."""


class _Undefined:
    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = _Undefined()

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
    | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
    | (?P<punct>===|!==|==|!=|<=|>=|&&|\|\||[-+*/%!<>?:()\[\].,])
    )""",
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|\n|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0", "\n": ""}
_BINARY = [  # loosest first
    ("||",),
    ("&&",),
    ("==", "!=", "===", "!=="),
    ("<", "<=", ">", ">="),
    ("+", "-"),
    ("*", "/", "%"),
]
_UNSUPPORTED_TEXT = {
    "=": "assignment is not evaluated",
    "{": "object literals are not evaluated",
    "&": "bit operators are not evaluated",
    "|": "bit operators are not evaluated",
    "^": "bit operators are not evaluated",
    "~": "bit operators are not evaluated",
    ";": "statements are not evaluated, only one expression",
    "`": "template literals are not JavaScript of Digdag's engine (ES5)",
}
_KEYWORDS = {"new", "function", "this", "var", "in", "instanceof", "delete", "void", "return"}
_GLOBALS: dict[str, Any] = {"undefined": UNDEFINED, "NaN": math.nan, "Infinity": math.inf}


# -- parsing -------------------------------------------------------------------------------------
# A tree is a tuple: ("lit", value), ("name", name), ("member", obj, key_tree), ("unary", op, x),
# ("binary", op, a, b), ("cond", c, a, b), ("moment", MomentCall), ("array", items),
# ("call", callee, args) where callee is ("function", name), ("namespace", "JSON"|"Math", name) or
# ("method", receiver_tree, name).


@dataclass(frozen=True)
class Expression:
    text: str
    tree: tuple[Any, ...]

    def evaluate(self, params: Mapping[str, Any], lookup: Callable[[str], Any]) -> Any:
        """The value, as a JavaScript value in Python (``UNDEFINED``, None for null, float numbers).
        ``lookup(path)`` gives a moment(...) argument's param (and raises for an unknown one)."""
        return _Evaluator(params, lookup).value(self.tree)


@lru_cache(maxsize=4096)
def parse(text: str) -> Expression:
    """Parse ``text`` (what stands between ``${`` and ``}``); ``Unsupported`` says what is not evaluated."""
    return Expression(text, _Parser(text).whole())


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._lex(text)
        self.position = 0

    def _lex(self, text: str) -> list[tuple[str, Any]]:
        tokens: list[tuple[str, Any]] = []
        position = 0
        while position < len(text):
            if not text[position:].strip():
                break
            if re.match(r"\s*moment\s*\(", text[position:]):
                end = _moment_end(text, position)
                written = text[position:end].strip()
                try:
                    tokens.append(("moment", moment.parse(written)))
                except moment.UnsupportedMoment as exc:
                    raise Unsupported(f"moment(): {exc}") from exc
                position = end
                continue
            if text[position:].lstrip().startswith("/") and self._operand_expected(tokens):
                start = position + len(text[position:]) - len(text[position:].lstrip())
                try:
                    regex, position = js_regexp.scan(text, start)
                except js_regexp.RegexSyntax as exc:
                    raise Unsupported(str(exc)) from exc
                tokens.append(("regex", regex))
                continue
            match = _TOKEN.match(text, position)
            if match is None:
                rest = text[position:].lstrip()
                raise Unsupported(_UNSUPPORTED_TEXT.get(rest[0], f"{rest[:20]!r} is not evaluated"))
            kind = match.lastgroup or ""
            value: Any = match.group(kind)
            if kind == "number":
                value = float(int(value, 16)) if value[:2] in ("0x", "0X") else float(value)
            elif kind == "string":
                value = _ESCAPE.sub(_unescape, value[1:-1])
            elif kind == "name" and value in _KEYWORDS:
                raise Unsupported(f"'{value}' is not evaluated")
            tokens.append((kind, value))
            position = match.end()
        return tokens

    @staticmethod
    def _operand_expected(tokens: list[tuple[str, Any]]) -> bool:
        """Whether a ``/`` here starts a regular expression rather than divides: after nothing, an
        operator or an opening bracket, as JavaScript decides."""
        if not tokens:
            return True
        kind, value = tokens[-1]
        return (kind == "punct" and value not in (")", "]")) or (kind, value) == ("name", "typeof")

    # -- helpers
    def _peek(self, *values: str) -> str | None:
        if self.position < len(self.tokens):
            kind, value = self.tokens[self.position]
            if kind == "punct" and value in values:
                return str(value)
        return None

    def _take(self, value: str) -> None:
        if self._peek(value) is None:
            raise Unsupported(f"expected {value!r} at {self._here()}")
        self.position += 1

    def _here(self) -> str:
        if self.position >= len(self.tokens):
            return "the end"
        kind, value = self.tokens[self.position]
        return "moment(...)" if kind == "moment" else repr(value)

    # -- grammar
    def whole(self) -> tuple[Any, ...]:
        if not self.tokens:
            raise Unsupported("an empty ${} is a syntax error in Digdag")
        tree = self.conditional()
        if self.position < len(self.tokens):
            raise Unsupported(f"unexpected {self._here()}")
        return tree

    def conditional(self) -> tuple[Any, ...]:
        test = self.binary(0)
        if self._peek("?"):
            self.position += 1
            then = self.conditional()
            self._take(":")
            return ("cond", test, then, self.conditional())
        return test

    def binary(self, level: int) -> tuple[Any, ...]:
        if level == len(_BINARY):
            return self.unary()
        tree = self.binary(level + 1)
        while (op := self._peek(*_BINARY[level])) is not None:
            self.position += 1
            tree = ("binary", op, tree, self.binary(level + 1))
        return tree

    def unary(self) -> tuple[Any, ...]:
        if (op := self._peek("!", "-", "+")) is not None:
            self.position += 1
            return ("unary", op, self.unary())
        if self.position < len(self.tokens) and self.tokens[self.position] == ("name", "typeof"):
            self.position += 1
            return ("unary", "typeof", self.unary())
        return self.member()

    def member(self) -> tuple[Any, ...]:
        tree = self.primary()
        while (op := self._peek(".", "[", "(")) is not None:
            self.position += 1
            if op == "(":
                tree = ("call", _callee(tree), self.arguments())
                continue
            if op == ".":
                if self.position >= len(self.tokens) or self.tokens[self.position][0] != "name":
                    raise Unsupported(f"expected a property name at {self._here()}")
                tree = ("member", tree, ("lit", self.tokens[self.position][1]))
                self.position += 1
            else:
                key = self.conditional()
                self._take("]")
                tree = ("member", tree, key)
        return tree

    def arguments(self) -> tuple[tuple[Any, ...], ...]:
        """The arguments of a call, after its ``(``, through its ``)``."""
        found: list[tuple[Any, ...]] = []
        while self._peek(")") is None:
            found.append(self.conditional())
            if self._peek(")") is None:
                self._take(",")
        self.position += 1
        return tuple(found)

    def primary(self) -> tuple[Any, ...]:
        if self.position >= len(self.tokens):
            raise Unsupported("the expression ends too early")
        kind, value = self.tokens[self.position]
        self.position += 1
        if kind in ("number", "string", "regex"):
            return ("lit", value)
        if kind == "moment":
            return ("moment", value)
        if kind == "name":
            if value in ("true", "false"):
                return ("lit", value == "true")
            if value == "null":
                return ("lit", None)
            return ("name", value)
        if value == "(":
            tree = self.conditional()
            self._take(")")
            return tree
        if value == "[":
            items: list[tuple[Any, ...]] = []
            while self._peek("]") is None:
                if self._peek(","):
                    raise Unsupported("array holes ([1, , 2]) are not evaluated")
                items.append(self.conditional())
                if self._peek("]") is None:
                    self._take(",")
            self.position += 1
            return ("array", tuple(items))
        raise Unsupported(f"unexpected {value!r}")


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code[0] in "xu" and len(code) > 1:
        return chr(int(code[1:], 16))
    return _SIMPLE_ESCAPES.get(code, code)


def _moment_end(text: str, start: int) -> int:
    """Where the ``moment(...)`` call at ``start`` ends, with its ``.method(...)`` chain."""
    position = text.index("(", start)
    while True:
        position = _after_parentheses(text, position)
        chained = re.compile(r"\s*\.\s*[A-Za-z_$][A-Za-z0-9_$]*\s*\(").match(text, position)
        if chained is None:
            return position
        position = chained.end() - 1


def _after_parentheses(text: str, position: int) -> int:
    depth, quote = 0, ""
    while position < len(text):
        char = text[position]
        if quote:
            if char == "\\":
                position += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return position + 1
        position += 1
    raise Unsupported("moment(...) has no closing parenthesis")


def _callee(tree: tuple[Any, ...]) -> tuple[Any, ...]:
    """What a call calls, checked when the workflow loads: a built-in function (``parseInt(x)``),
    a ``JSON``/``Math`` function, or a method by name (``s.split(',')``, ``list.join('-')``); the
    method's receiver is known only when the task runs (``js_builtins.call_method``)."""
    from airflow_cmdexec_provider import js_builtins

    if tree[0] == "name" and tree[1] in js_builtins.FUNCTIONS:
        return ("function", tree[1])
    if tree[0] == "member" and tree[2][0] == "lit":
        name = tree[2][1]
        target = tree[1]
        if target[0] == "name" and target[1] in js_builtins.NAMESPACES:
            if name in js_builtins.NAMESPACES[target[1]]:
                return ("namespace", target[1], name)
            known = ", ".join(js_builtins.NAMESPACES[target[1]])
            raise Unsupported(f"{target[1]}.{name}() is not evaluated (of {target[1]}: {known})")
        if name in js_builtins.METHODS:
            return ("method", target, name)
        raise Unsupported(
            f"the method .{name}() is not evaluated ({_describe(tree)}(...)); the methods that are: "
            f"{', '.join(sorted(js_builtins.METHODS))}"
        )
    raise Unsupported(
        f"calls of {_describe(tree)} are not evaluated; the functions that are: moment(...), "
        f"{', '.join(js_builtins.FUNCTIONS)}, JSON.stringify/parse, Math.*, and string, array and "
        "number methods"
    )


def _describe(tree: tuple[Any, ...]) -> str:
    if tree[0] == "name":
        return str(tree[1])
    if tree[0] == "member" and tree[2][0] == "lit":
        return f"{_describe(tree[1])}.{tree[2][1]}"
    return "an expression"


# -- evaluating ----------------------------------------------------------------------------------


class _Evaluator:
    def __init__(self, params: Mapping[str, Any], lookup: Callable[[str], Any]) -> None:
        self.params = params
        self.lookup = lookup

    def value(self, tree: tuple[Any, ...]) -> Any:
        kind = tree[0]
        if kind == "lit":
            return tree[1]
        if kind == "name":
            if tree[1] in self.params:
                return from_python(self.params[tree[1]])
            if tree[1] in _GLOBALS:
                return _GLOBALS[tree[1]]
            raise JsError(
                f"{tree[1]} is not defined (Digdag fails with a ReferenceError here too); define the "
                "param or fix the name"
            )
        if kind == "member":
            return self.member(tree)
        if kind == "array":
            return [self.value(item) for item in tree[1]]
        if kind == "call":
            return self.call(tree[1], [self.value(arg) for arg in tree[2]])
        if kind == "moment":
            return from_python(tree[1].evaluate(self.params.get("timezone"), self.lookup))
        if kind == "cond":
            return self.value(tree[2] if truthy(self.value(tree[1])) else tree[3])
        if kind == "unary":
            operand = tree[2]
            if tree[1] == "typeof" and operand[0] == "name" and not self._defined(operand[1]):
                return "undefined"  # typeof of an undeclared name throws no ReferenceError
            return _unary(tree[1], self.value(operand))
        op = tree[1]
        left = self.value(tree[2])
        if op == "&&":
            return self.value(tree[3]) if truthy(left) else left
        if op == "||":
            return left if truthy(left) else self.value(tree[3])
        return _binary(op, left, self.value(tree[3]))

    def call(self, callee: tuple[Any, ...], args: list[Any]) -> Any:
        from airflow_cmdexec_provider import js_builtins

        if callee[0] == "function":
            return js_builtins.call_function(callee[1], args)
        if callee[0] == "namespace":
            return js_builtins.call_namespace(callee[1], callee[2], args)
        target = self.value(callee[1])
        if target is None or target is UNDEFINED:
            raise JsError(
                f"cannot call .{callee[2]}() of {to_string(target)} ({_describe(callee[1])}; Digdag "
                "fails with a TypeError here too)"
            )
        return js_builtins.call_method(target, callee[2], args, _describe(callee[1]))

    def _defined(self, name: str) -> bool:
        return name in self.params or name in _GLOBALS

    def member(self, tree: tuple[Any, ...]) -> Any:
        target = self.value(tree[1])
        key = self.value(tree[2])
        if target is None or target is UNDEFINED:
            raise JsError(
                f"cannot read {to_string(key)!r} of {to_string(target)} ({_describe(tree[1])}; Digdag "
                "fails with a TypeError here too)"
            )
        name = to_string(key)
        if isinstance(target, (str, list)):
            if name == "length":
                return float(len(target.encode("utf-16-le")) // 2 if isinstance(target, str) else len(target))
            if re.fullmatch(r"0|[1-9]\d*", name) and int(name) < len(target):
                return from_python(target[int(name)])
            return UNDEFINED
        if isinstance(target, Mapping):
            return from_python(target[name]) if name in target else UNDEFINED
        return UNDEFINED  # a number's or a boolean's property


def from_python(value: Any) -> Any:
    """A param's value as a JavaScript value: numbers are doubles (bool stays bool)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def truthy(value: Any) -> bool:
    if value is None or value is UNDEFINED:
        return False
    if isinstance(value, float):
        return not (value == 0 or math.isnan(value))
    if isinstance(value, (bool, str)):
        return bool(value)
    return True  # objects and arrays, even empty ones


def type_of(value: Any) -> str:
    if value is UNDEFINED:
        return "undefined"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"  # null too, as in JavaScript


def to_number(value: Any) -> float:
    if value is UNDEFINED:
        return math.nan
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
            return float(int(text, 16))
        if re.fullmatch(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)", text):
            return float(text.replace("Infinity", "inf"))
        return math.nan
    return to_number(to_primitive(value))


def to_primitive(value: Any) -> Any:
    """An object's or an array's value where a primitive is needed (its ``toString()``)."""
    if isinstance(value, list):
        return ",".join("" if v is None or v is UNDEFINED else to_string(from_python(v)) for v in value)
    if isinstance(value, Mapping):
        return "[object Object]"
    return value


def to_string(value: Any) -> str:
    """JavaScript's ``String(value)``."""
    if isinstance(value, str):
        return value
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return number_text(float(value))
    return str(to_primitive(value))


def number_text(number: float) -> str:
    """JavaScript's ``Number.prototype.toString()``: the shortest digits that round-trip, without an
    exponent from 1e-7 to 1e21."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    if number < 0:
        return "-" + number_text(-number)
    _, digit_tuple, exponent = Decimal(repr(number)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = int(exponent) + k  # the value is 0.digits x 10^n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"


def json_stringify(value: Any) -> str | None:
    """``JSON.stringify(value)``, compact; None where JavaScript gives ``undefined``."""
    if value is UNDEFINED:
        return None
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        number = float(value)
        return number_text(number) if math.isfinite(number) else "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(json_stringify(from_python(v)) or "null" for v in value) + "]"
    if isinstance(value, js_regexp.JsRegExp):
        return "{}"  # a RegExp has no enumerable own properties
    if isinstance(value, Mapping):
        members = [
            f"{json.dumps(str(k), ensure_ascii=False)}:{text}"
            for k, v in value.items()
            if (text := json_stringify(from_python(v))) is not None
        ]
        return "{" + ",".join(members) + "}"
    return json.dumps(str(value), ensure_ascii=False)


def template_text(value: Any) -> str:
    """What Digdag's template pastes for a value: nothing for null and undefined, a string as it is,
    anything else as ``JSON.stringify`` writes it (``digdag.js``)."""
    if value is None or value is UNDEFINED:
        return ""
    if isinstance(value, str):
        return value
    return json_stringify(value) or ""


def _unary(op: str, value: Any) -> Any:
    if op == "!":
        return not truthy(value)
    if op == "typeof":
        return type_of(value)
    number = to_number(value)
    return -number if op == "-" else number


def _binary(op: str, left: Any, right: Any) -> Any:
    if op == "+":
        left, right = to_primitive(left), to_primitive(right)
        if isinstance(left, str) or isinstance(right, str):
            return to_string(left) + to_string(right)
        return to_number(left) + to_number(right)
    if op in ("-", "*", "/", "%"):
        return _arithmetic(op, to_number(left), to_number(right))
    if op in ("<", "<=", ">", ">="):
        return _compare(op, to_primitive(left), to_primitive(right))
    if op in ("===", "!=="):
        return _strict_equal(left, right) == (op == "===")
    return _loose_equal(left, right) == (op == "==")


def _arithmetic(op: str, a: float, b: float) -> float:
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            if a == 0 or math.isnan(a):
                return math.nan
            return math.copysign(math.inf, a) * math.copysign(1, b)
        return a / b
    if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
        return math.nan
    return a if math.isinf(b) else math.fmod(a, b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        x: Any = a.encode("utf-16-be")  # JavaScript compares UTF-16 code units
        y: Any = b.encode("utf-16-be")
    else:
        x, y = to_number(a), to_number(b)
        if math.isnan(x) or math.isnan(y):
            return False
    return bool({"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op])


def _strict_equal(a: Any, b: Any) -> bool:
    if type_of(a) != type_of(b):
        return False
    if isinstance(a, (list, Mapping)) or isinstance(b, (list, Mapping)):
        return a is b
    return bool(a == b)  # NaN != NaN, as in JavaScript


def _loose_equal(a: Any, b: Any) -> bool:
    kinds = {type_of(a), type_of(b)}
    if type_of(a) == type_of(b) and (a is None) == (b is None):
        return _strict_equal(a, b)
    if all(v is None or v is UNDEFINED for v in (a, b)):
        return True
    if a is None or a is UNDEFINED or b is None or b is UNDEFINED:
        return False
    if isinstance(a, bool):
        return _loose_equal(to_number(a), b)
    if isinstance(b, bool):
        return _loose_equal(a, to_number(b))
    if kinds == {"number", "string"}:
        return to_number(a) == to_number(b)
    if isinstance(a, (list, Mapping)):
        return _loose_equal(to_primitive(a), b)
    if isinstance(b, (list, Mapping)):
        return _loose_equal(a, to_primitive(b))
    return False
