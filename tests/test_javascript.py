"""``${...}`` JavaScript (``javascript.py``): what Digdag's engine (ECMAScript 5, Nashorn) prints.

Each expected text is what ``digdag.js`` pastes for the expression: nothing for null and undefined,
a string as it is, anything else as ``JSON.stringify`` writes it. The values follow ECMAScript 5's
rules (coercions, number printing), worked out by hand from the specification.
"""

from __future__ import annotations

import math
import re

import pytest

from airflow_cmdexec_provider import javascript
from airflow_cmdexec_provider.exceptions import CmdExecConfigError
from airflow_cmdexec_provider.expressions import evaluate, unsupported_reason

PARAMS = {
    "timezone": "UTC",
    "session_time": "2026-01-30T08:30:00+00:00",
    "session_date": "2026-01-30",
    "name": "events",
    "n": 3,
    "half": 0.5,
    "text_number": "7",
    "empty": "",
    "nothing": None,
    "yes": True,
    "target": {"table": "t1", "owner": None, "sizes": [1, 2.5, 4.0], "nested": {"depth": 2.0}},
    "tags": ["a", "b", None],
    "word": "h\u00e9llo",
}


@pytest.mark.parametrize(
    ("expression", "printed"),
    [
        # literals and names
        ("1 + 1", "2"),
        ("'out_' + name", "out_events"),
        ('"double" + " quoted"', "double quoted"),
        (r"'it\'s'", "it's"),
        (r"'tab\there'", "tab\there"),
        (r"'\u00e9\x41'", "\u00e9A"),
        ("0x1f", "31"),
        ("1e3", "1000"),
        (".5", "0.5"),
        ("true", "true"),
        ("null", ""),
        ("undefined", ""),
        ("nothing", ""),
        ("yes", "true"),
        # arithmetic, as doubles printed by Number.prototype.toString
        ("n + 1", "4"),
        ("n * half", "1.5"),
        ("5 / 2", "2.5"),
        ("n / 3", "1"),
        ("-7 % 3", "-1"),
        ("7 % -3", "1"),
        ("5.5 % 2", "1.5"),
        ("0.1 + 0.2", "0.30000000000000004"),
        ("2 - 3 * 4", "-10"),
        ("(2 - 3) * 4", "-4"),
        ("1e21", "1e+21"),
        ("123456789012345680000", "123456789012345680000"),
        ("0.000001", "0.000001"),
        ("0.0000001", "1e-7"),
        ("1.5e-10", "1.5e-10"),
        ("-0", "0"),
        ("1 / 0", "null"),  # JSON.stringify(Infinity)
        ("0 / 0", "null"),  # JSON.stringify(NaN)
        ("'' + 1 / 0", "Infinity"),
        ("'' + 0 / 0", "NaN"),
        ("-n", "-3"),
        ("+text_number + 1", "8"),
        # coercions
        ("text_number + 1", "71"),
        ("text_number * 2", "14"),
        ("text_number - '2'", "5"),
        ("'x' * 2", "null"),  # NaN
        ("empty * 1", "0"),
        ("nothing + 1", "1"),
        ("undefined + 1", "null"),
        ("true + 1", "2"),
        ("'a' + nothing", "anull"),
        ("'a' + undefined", "aundefined"),
        ("'tags: ' + tags", "tags: a,b,"),
        ("'t: ' + target", "t: [object Object]"),
        ("'sizes ' + target.sizes", "sizes 1,2.5,4"),
        # comparisons and equality
        ("n > 1", "true"),
        ("n <= 2", "false"),
        ("'10' < '9'", "true"),  # two strings compare as text
        ("'10' < 9", "false"),  # otherwise as numbers
        ("'b' > 'a'", "true"),
        ("undefined < 1", "false"),
        ("nothing < 1", "true"),
        ("'1' == 1", "true"),
        ("'1' === 1", "false"),
        ("nothing == undefined", "true"),
        ("nothing === undefined", "false"),
        ("nothing == 0", "false"),
        ("'' == 0", "true"),
        ("yes == 1", "true"),
        ("yes == '1'", "true"),
        ("0 / 0 == 0 / 0", "false"),
        ("name != 'x'", "true"),
        ("name !== 'events'", "false"),
        ("target == target", "true"),
        ("tags == 'a,b,'", "true"),
        # logic gives operands
        ("n > 1 ? 'many' : 'one'", "many"),
        ("n > 5 ? 'many' : n > 2 ? 'some' : 'few'", "some"),
        ("target.owner || 'nobody'", "nobody"),
        ("target.missing || 'none'", "none"),
        ("empty || 'was empty'", "was empty"),
        ("name && name + '!'", "events!"),
        ("empty && 'never'", ""),
        ("n && 0", "0"),
        ("!empty", "true"),
        ("!!target", "true"),
        ("!tags", "false"),
        ("typeof n", "number"),
        ("typeof name", "string"),
        ("typeof nothing", "object"),
        ("typeof target", "object"),
        ("typeof not_a_param", "undefined"),
        ("typeof yes", "boolean"),
        # members
        ("target.table", "t1"),
        ("target['table']", "t1"),
        ("target['ta' + 'ble']", "t1"),
        ("target.sizes[1]", "2.5"),
        ("target.sizes[n - 1]", "4"),
        ("target.sizes[9]", ""),
        ("target.sizes.length", "3"),
        ("target.sizes", "[1,2.5,4]"),
        ("target.nested", '{"depth":2}'),
        ("target", '{"table":"t1","owner":null,"sizes":[1,2.5,4],"nested":{"depth":2}}'),
        ("tags", '["a","b",null]'),
        ("name.length", "6"),
        ("word.length", "5"),
        ("name[0]", "e"),
        ("n.foo", ""),
        ("target.missing", ""),
        # moment(...) inside a larger expression
        ("moment(session_time).format('YYYY') + '-01'", "2026-01"),
        ("'day ' + moment(session_time).add(1, 'days').format('D') + '!'", "day 31!"),
        ("moment(session_time).format('YYYY-MM-DD') == session_date", "true"),
        ("moment(session_time).unix() + 60", "1769761860"),
        ("moment(session_time).format('YYYYMMDD').length", "8"),
    ],
)
def test_prints_what_digdag_prints(expression: str, printed: str) -> None:
    assert unsupported_reason(expression) is None
    assert evaluate(f"${{{expression}}}", PARAMS, "Task t") == printed


def test_expressions_are_pasted_into_the_text_around_them() -> None:
    text = "echo ${name}_${n + 1} ${n > 1 ? 'rows' : 'row'} ${nothing}."
    assert evaluate(text, PARAMS, "Task t") == "echo events_4 rows ."


def test_a_null_param_prints_nothing_as_in_digdag() -> None:
    """digdag.js pastes '' for null (``__t == null ? ''``); this printed "null" before."""
    assert evaluate("[${nothing}] [${target.owner}]", PARAMS, "Task t") == "[] []"


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("Math.random()", "Math.random() is not evaluated (of Math: abs, ceil"),
        ("JSON.foo(target)", "JSON.foo() is not evaluated (of JSON: stringify, parse)"),
        ("tags.map(name)", "the method .map() is not evaluated (tags.map(...)); the methods that are:"),
        ("tags.push(1)", "the method .push() is not evaluated"),
        ("alert(name)", "calls of alert are not evaluated; the functions that are: moment(...), parseInt"),
        ("/(?<=e)v/.test(name)", "lookbehind and named groups are not ES5"),
        ("/e/y.test(name)", "flags are g, i and m, each once (ES5)"),
        ("name.replace(/e, '')", "a regular expression literal has no closing /"),
        ("[1, , 2]", "array holes ([1, , 2]) are not evaluated"),
        ("parseInt(name", "expected ','"),
        ("n = 1", "assignment is not evaluated"),
        ("n & 1", "bit operators are not evaluated"),
        ("n; n", "statements are not evaluated"),
        ("new Date()", "'new' is not evaluated"),
        ("function () 1", "'function' is not evaluated"),
        ("2 ** 3", "unexpected '*'"),
        ("n +", "the expression ends too early"),
        ("(n + 1", "expected ')'"),
        ("n ? 1", "expected ':'"),
        ("", "an empty ${} is a syntax error"),
        ("moment(session_time).tz('Asia/Tokyo').format('D')", "moment(): "),
    ],
)
def test_what_is_not_evaluated_is_refused_with_the_reason(expression: str, reason: str) -> None:
    why = unsupported_reason(expression)
    assert why is not None
    assert reason in why, why
    with pytest.raises(CmdExecConfigError, match=re.escape(reason)):
        evaluate(f"${{{expression}}}", PARAMS, "Task t")


# What node printed for each (JSON.stringify of what digdag.js pastes) when this table was written:
# these functions behave the same in every ES5 engine, Digdag's Nashorn included. Params: PARAMS.
BUILTINS = [
    # strings (positions in UTF-16 code units)
    ("session_date.split('-')", '["2026","01","30"]'),
    ("session_date.split('-', 2).join('/')", "2026/01"),
    ("name.split('')", '["e","v","e","n","t","s"]'),
    ("session_date.replace('-', '')", "202601-30"),
    ("session_date.split('-').join('')", "20260130"),
    ("name.replace('ev', '[$&]')", "[ev]ents"),
    ("name.toUpperCase() + word.toUpperCase()", "EVENTSH\u00c9LLO"),
    ("'  padded \\n'.trim()", "padded"),
    ("name.indexOf('n') + name.lastIndexOf('e')", "5"),
    ("name.slice(-3) + name.substring(3, 1) + name.substr(1, 2)", "ntsveve"),
    ("name.charAt(1) + name.charCodeAt(0)", "v101"),
    ("name.concat('_', n, '_', tags)", "events_3_a,b,"),
    # arrays
    ("[name, n + 1]", '["events",4]'),
    ("tags.join('-')", "a-b-"),
    ("target.sizes.join()", "1,2.5,4"),
    ("target.sizes.indexOf(2.5)", "1"),
    ("target.sizes.slice(1).concat([8], 9)", "[2.5,4,8,9]"),
    ("[1, 2].length + [].length", "2"),
    # JSON, Math
    ("JSON.stringify(target.nested)", '{"depth":2}'),
    ("JSON.stringify(target.sizes, null, 2)", "[\n  1,\n  2.5,\n  4\n]"),
    ("JSON.parse('[1, 2.5]')[1] + JSON.parse('\"q\"')", "2.5q"),
    ("Math.floor(n / 2) + Math.ceil(half) + Math.round(-2.5)", "0"),
    ("String(Math.max(1, n, text_number) + Math.min())", "Infinity"),
    ("Math.pow(2, 10) + Math.sqrt(16) + Math.abs(-1)", "1029"),
    # functions
    ("parseInt('42px') + parseInt('0x1f') + parseInt('08') + parseInt('z', 36)", "116"),
    ("parseFloat('3.14abc') + parseFloat('.5')", "3.64"),
    ("isNaN(parseInt(name))", "true"),
    ("String(n) + Number(text_number) + Boolean(empty)", "37false"),
    ("isFinite('12') && !isNaN('12')", "true"),
    ("encodeURIComponent('a b&c/' + word)", "a%20b%26c%2Fh%C3%A9llo"),
    ("decodeURIComponent('a%20b%C3%A9')", "a b\u00e9"),
    # numbers
    (
        "half.toFixed(2) + ' ' + (1.005).toFixed(2) + ' ' + (0.125).toFixed(2) + ' ' + (-0.0001).toFixed(2)",
        "0.50 1.00 0.13 -0.00",
    ),
    ("(255).toString(16) + (-255).toString(2) + n.toString()", "ff-111111113"),
    ("yes.toString()", "true"),
    # extra arguments are ignored, as JavaScript ignores them; a number too large for a double is Infinity
    ("parseInt('12', 10, 99) + name.slice(1, 3, 5) + tags.join('-', 'x')", "12vea-b-"),
    ("String(parseInt('" + "9" * 400 + "'))", "Infinity"),
    ("String(-parseInt('" + "9" * 5000 + "'))", "-Infinity"),  # more digits than Python converts
    # ES5's ToUint32/ToInt32/ToInteger of infinities: a limit or radix of Infinity is 0
    (
        "JSON.stringify([name.split('e', Infinity), parseInt('ff', Infinity), name.charAt(Infinity)])",
        '[[],null,""]',
    ),
]


@pytest.mark.parametrize(("expression", "printed"), BUILTINS)
def test_built_in_functions_and_methods_print_what_an_es5_engine_prints(
    expression: str, printed: str
) -> None:
    assert unsupported_reason(expression) is None
    expected = printed.encode().decode("unicode_escape") if "\\" in printed else printed
    assert evaluate(f"${{{expression}}}", PARAMS, "Task t") == expected


# Regular expression literals (js_regexp.py), the same way: what node printed when this was written.
REGEXES = [
    ("session_date.replace(/-/g, '')", "20260130"),
    ("session_date.replace(/-/, '')", "202601-30"),
    ("session_date.replace(/(\\d+)-(\\d+)-(\\d+)/, '$3.$2.$1')", "30.01.2026"),
    ("name.replace(/E/i, '[$&]')", "[e]vents"),
    ("'CamelCase'.replace(/([A-Z])/g, '_$1').toLowerCase()", "_camel_case"),
    ("'a b\\tc'.replace(/\\s/g, '_')", "a_b_c"),
    ("session_date.split(/-/)", '["2026","01","30"]'),
    ("session_date.split(/(-)/, 3)", '["2026","-","01"]'),
    ("'a1b22c'.split(/\\d+/)", '["a","b","c"]'),
    ("'ab'.split(/x*/)", '["a","b"]'),
    ("name.match(/[aeiou]/g)", '["e","e"]'),
    ("JSON.stringify(name.match(/(v)(x)?/))", '["v","v",null]'),
    ("name.match(/z/)", ""),
    ("name.search(/n/) + name.search('q')", "2"),
    ("/^ev/.test(name) && !/S$/.test(name) && /S$/i.test(name)", "true"),
    ("/c$/.test('c\\n') + ',' + /^d/m.test('c\\nd')", "false,true"),
    ("/\\d/.test('\\u0663') + ',' + /\\w/.test('\\u00e9')", "false,false"),
    ("/(x)?y/.exec('y').length", "2"),
    ("String(/a\\/b/g) + typeof /x/", "/a\\/b/gobject"),
    ("n / 2 / 1", "1.5"),
]


@pytest.mark.parametrize(("expression", "printed"), REGEXES)
def test_regular_expressions_match_as_in_javascript(expression: str, printed: str) -> None:
    assert unsupported_reason(expression) is None
    assert evaluate(f"${{{expression}}}", PARAMS, "Task t") == printed


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("target.owner.toString()", r"cannot call .toString\(\) of null \(target.owner; .*TypeError"),
        (
            "target.join(',')",
            r"target.join is not a function \(a TypeError in Digdag too\): target is an object",
        ),
        ("JSON.parse(name)", r"JSON.parse: .* \(a SyntaxError in Digdag too\)"),
        ("decodeURIComponent('%')", r"malformed URI sequence in '%' \(a URIError in Digdag too\)"),
        ("n.toFixed(21)", r"toFixed\(21\): digits must be 0 to 20 \(a RangeError in Digdag too\)"),
    ],
)
def test_built_ins_fail_where_javascript_throws(expression: str, error: str) -> None:
    assert unsupported_reason(expression) is None
    with pytest.raises(CmdExecConfigError, match=error):
        evaluate(f"${{{expression}}}", PARAMS, "Task t")


def test_run_time_errors_are_javascripts_and_name_the_task() -> None:
    with pytest.raises(
        CmdExecConfigError, match=r"^Task t: \$\{rows \+ 1\}: rows is not defined .*ReferenceError"
    ):
        evaluate("${rows + 1}", PARAMS, "Task t")
    with pytest.raises(CmdExecConfigError, match=r"cannot read 'x' of null \(target.owner; .*TypeError"):
        evaluate("${target.owner.x}", PARAMS, "Task t")
    with pytest.raises(CmdExecConfigError, match=r"cannot read 'x' of undefined \(target.missing; "):
        evaluate("${target.missing.x}", PARAMS, "Task t")


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (100.0, "100"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.2345e22, "1.2345e+22"),
        (1e-6, "0.000001"),
        (1.5e-7, "1.5e-7"),
        (2**53 + 2.0, "9007199254740994"),
        (1 / 3, "0.3333333333333333"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (math.nan, "NaN"),
    ],
)
def test_numbers_print_as_javascript_prints_them(number: float, text: str) -> None:
    assert javascript.number_text(number) == text


def test_a_parsed_expression_is_kept_for_the_next_task() -> None:
    assert javascript.parse("n + 1") is javascript.parse("n + 1")
