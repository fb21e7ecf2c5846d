"""``${moment(...)...}`` in Digdag text: the date arithmetic and formatting of Digdag's moment.js.

Digdag evaluates ``${...}`` as JavaScript in an engine whose local time zone is the workflow's
``timezone`` and which has plain moment.js (not moment-timezone) loaded. Real workflows use it for
dates (``${moment(session_time).add(-1, 'days').format('YYYYMMDD')}``), and Digdag's own
``basic.dig`` prints ``${moment(session_time).utc().format('YYYY-MM-DD HH:mm:ss Z')}``. We evaluate
that idiom without a JavaScript engine, the same way moment does:

- ``moment()`` (now), ``moment(name.or.path)`` of a param, ``moment('2026-01-30')``, ``moment(ms)``:
  an ISO 8601 text with an offset is that instant; without one it is the workflow's local time;
- then, in any order: ``.utc()``, ``.local()``, ``.utcOffset(9 | 540 | '+09:00')``, ``.add(n, unit)``,
  ``.subtract(n, unit)``,
  ``.startOf(unit)``, ``.endOf(unit)`` (units as moment spells them: ``'days'``, ``'d'``, ``'M'``...;
  days and longer move the wall clock, hours and shorter the instant);
- ending with ``.format('...')`` (moment's tokens, English names), ``.unix()``, ``.valueOf()``,
  ``.toISOString()`` or a getter (``.year()``, ``.month()`` from 0, ``.date()``, ``.day()``...).

Everything else (other methods, ``.tz()`` which Digdag's moment does not have, tokens we do not
format) is refused when the workflow loads, with the reason; nothing is guessed.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

_LEXEME = re.compile(
    r"""\s*(?:(?P<name>[A-Za-z_$][A-Za-z0-9_$]*)|(?P<number>-?\d+(?:\.\d+)?)"""
    r"""|(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<punct>[().,]))"""
)
_UNITS = {
    "y": "year",
    "Q": "quarter",
    "M": "month",
    "w": "week",
    "W": "isoWeek",
    "d": "day",
    "D": "date",
    "h": "hour",
    "m": "minute",
    "s": "second",
    "ms": "millisecond",
}
_LONG_UNITS = {
    "year",
    "quarter",
    "month",
    "week",
    "isoweek",
    "day",
    "date",
    "hour",
    "minute",
    "second",
    "millisecond",
}
_CALENDAR_STEPS = {"year": 12, "quarter": 3, "month": 1}  # months
_WALL_STEPS = {"week": 7, "isoWeek": 7, "day": 1, "date": 1}  # days, on the wall clock
_INSTANT_STEPS = {"hour": 3_600_000, "minute": 60_000, "second": 1000, "millisecond": 1}  # ms
# Getters (numbers, moment's meaning: month() counts from 0, day() is Sunday 0); with an argument
# they are setters, which are not evaluated.
_GETTERS: dict[str, Callable[[datetime], int]] = {
    "year": lambda m: m.year,
    "quarter": lambda m: (m.month - 1) // 3 + 1,
    "month": lambda m: m.month - 1,
    "date": lambda m: m.day,
    "day": lambda m: (m.weekday() + 1) % 7,
    "weekday": lambda m: (m.weekday() + 1) % 7,
    "isoWeekday": lambda m: m.isoweekday(),
    "dayOfYear": lambda m: m.timetuple().tm_yday,
    "week": lambda m: _locale_week(m)[1],
    "isoWeek": lambda m: m.isocalendar()[1],
    "hour": lambda m: m.hour,
    "minute": lambda m: m.minute,
    "second": lambda m: m.second,
    "millisecond": lambda m: m.microsecond // 1000,
    "daysInMonth": lambda m: calendar.monthrange(m.year, m.month)[1],
}
_TERMINAL = {"format", "unix", "valueOf", "toISOString", *_GETTERS}
# moment's format tokens, longest first where they share a start (moment's own order); "." is a
# character that is no token and is copied.
_FORMAT_TOKEN = re.compile(
    r"\[[^\[]*\]|\\.|LTS|LT|LL?L?L?|l{1,4}|[Hh]mm(?:ss)?|Mo|MM?M?M?|Do|DDDo|DD?D?D?|ddd?d?|do?|w[ow]?"
    r"|W[oW]?|Qo?|N{1,5}|YYYYYY|YYYYY|YYYY|YY|y{2,4}|yo?|gg(?:ggg?)?|GG(?:GGG?)?|e|E|a|A|hh?|HH?|kk?"
    r"|mm?|ss?|S{1,9}|x|X|zz?|ZZ?|.",
    re.S,
)
_LOCALE_FORMATS = {
    "LT": "h:mm A",
    "LTS": "h:mm:ss A",
    "L": "MM/DD/YYYY",
    "LL": "MMMM D, YYYY",
    "LLL": "MMMM D, YYYY h:mm A",
    "LLLL": "dddd, MMMM D, YYYY h:mm A",
    "l": "M/D/YYYY",
    "ll": "MMM D, YYYY",
    "lll": "MMM D, YYYY h:mm A",
    "llll": "ddd, MMM D, YYYY h:mm A",
}
_UNSUPPORTED_TOKENS = re.compile(r"N{1,5}|YYYYYY|YYYYY|y{2,4}|yo?|zz?")
# moment's English names (not the process locale's, which calendar.month_name would follow)
_WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


class UnsupportedMoment(ValueError):
    """A ``moment(...)`` expression outside what is evaluated here; the message says what and why."""


@dataclass(frozen=True)
class MomentCall:
    """A parsed ``moment(ARG).method(...)...``: ``arg`` is None (now), ``("path", "a.b")``,
    ``("text", "...")`` or ``("ms", 123)``; ``steps`` are ``(method, args)``, the last one terminal."""

    arg: tuple[str, Any] | None
    steps: tuple[tuple[str, tuple[Any, ...]], ...]

    def evaluate(self, workflow_timezone: Any, lookup: Callable[[str], Any]) -> str | int:
        """The value as Digdag prints it, in the workflow's ``timezone`` (its JavaScript engine's local
        zone); ``lookup(path)`` gives a param's value (and raises for an unknown one)."""
        local = _zone(workflow_timezone)
        if self.arg is None:
            moment = datetime.now(local)
        elif self.arg[0] == "ms":
            moment = datetime.fromtimestamp(self.arg[1] / 1000, local)
        else:
            text = lookup(self.arg[1]) if self.arg[0] == "path" else self.arg[1]
            moment = _parse(text, local, self.arg[1])
        zone: tzinfo = local
        for method, args in self.steps:
            if method == "utc":
                zone, moment = UTC, moment.astimezone(UTC)
            elif method == "local":
                zone, moment = local, moment.astimezone(local)
            elif method == "utcOffset":
                zone = timezone(timedelta(minutes=args[0]))
                moment = moment.astimezone(zone)
            elif method in ("add", "subtract"):
                amount = args[0] if method == "add" else -args[0]
                moment = _add(moment, zone, int(amount), args[1])
            elif method == "startOf":
                moment = _start_of(moment, zone, args[0])
            elif method == "endOf":
                moment = _add(_start_of(moment, zone, args[0]), zone, 1, args[0]) - timedelta(milliseconds=1)
            elif method == "format":
                return format_moment(moment, args[0])
            elif method == "unix":
                return int(moment.timestamp())
            elif method == "valueOf":
                return round(moment.timestamp() * 1000)
            elif method in _GETTERS:
                return _GETTERS[method](moment)
            else:  # toISOString
                utc = moment.astimezone(UTC)
                return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
        raise AssertionError("a parsed moment call ends with a terminal method")  # parse() ensures it


def is_moment(expression: str) -> bool:
    return re.match(r"\s*moment\s*\(", expression) is not None


def parse(expression: str) -> MomentCall:
    """Parse a ``moment(...)`` expression; ``UnsupportedMoment`` says what is outside the subset."""
    lexemes = _lex(expression)
    position = 0

    def take(kind: str, value: str | None = None) -> Any:
        nonlocal position
        if (
            position >= len(lexemes)
            or lexemes[position][0] != kind
            or (value and lexemes[position][1] != value)
        ):
            found = lexemes[position][1] if position < len(lexemes) else "the end"
            raise UnsupportedMoment(f"expected {value or kind} at {found!r}")
        position += 1
        return lexemes[position - 1][1]

    def peek(value: str) -> bool:
        return position < len(lexemes) and lexemes[position][1] == value and lexemes[position][0] == "punct"

    take("name", "moment")
    take("punct", "(")
    arg: tuple[str, Any] | None = None
    if not peek(")"):
        kind = lexemes[position][0] if position < len(lexemes) else ""
        if kind == "string":
            arg = ("text", take("string"))
        elif kind == "number":
            arg = ("ms", take("number"))
        elif kind == "name":
            path = [take("name")]
            while peek("."):
                take("punct", ".")
                path.append(take("name"))
            arg = ("path", ".".join(path))
        else:
            raise UnsupportedMoment("moment() takes a param, a date text or epoch milliseconds")
        if peek(","):
            raise UnsupportedMoment("moment(text, format) (parsing with a format) is not evaluated")
    take("punct", ")")
    steps: list[tuple[str, tuple[Any, ...]]] = []
    while position < len(lexemes):
        if steps and steps[-1][0] in _TERMINAL:
            raise UnsupportedMoment(f".{steps[-1][0]}() must come last")
        take("punct", ".")
        method = take("name")
        take("punct", "(")
        args: list[Any] = []
        while not peek(")"):
            if args:
                take("punct", ",")
            kind = lexemes[position][0] if position < len(lexemes) else ""
            if kind not in ("string", "number"):
                raise UnsupportedMoment(f".{method}() takes only literal arguments")
            args.append(take(kind))
        take("punct", ")")
        steps.append((method, _checked(method, tuple(args))))
    if not steps or steps[-1][0] not in _TERMINAL:
        raise UnsupportedMoment(
            "end it with .format('...'), .unix(), .valueOf(), .toISOString() or a getter such as .year() "
            "(a moment object itself prints as JSON in Digdag)"
        )
    return MomentCall(arg, tuple(steps))


def _lex(expression: str) -> list[tuple[str, Any]]:
    lexemes: list[tuple[str, Any]] = []
    position = 0
    text = expression.rstrip()
    while position < len(text):
        match = _LEXEME.match(text, position)
        if match is None or match.end() == position:
            raise UnsupportedMoment(f"{text[position:][:20]!r} is not part of a moment() call")
        kind = match.lastgroup or ""
        value: Any = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif kind == "number":
            value = float(value) if "." in value else int(value)
        lexemes.append((kind, value))
        position = match.end()
    return lexemes


def _checked(method: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The method's arguments, checked when the workflow loads."""
    if method in ("utc", "local", "unix", "valueOf", "toISOString", *_GETTERS):
        if args:
            setter = (
                " (with an argument it sets the value, which is not evaluated)" if method in _GETTERS else ""
            )
            raise UnsupportedMoment(f".{method}() takes no arguments here{setter}")
        return args
    if method == "utcOffset":  # a fixed offset: hours below 16, else minutes, or "+09:00" (moment's rules)
        offset = args[0] if len(args) == 1 else None
        if isinstance(offset, str) and (match := re.fullmatch(r"([+-])(\d\d):?(\d\d)", offset.strip())):
            minutes = int(match[2]) * 60 + int(match[3])
            return (-minutes if match[1] == "-" else minutes,)
        if isinstance(offset, int):
            return (offset * 60 if -16 < offset < 16 else offset,)
        raise UnsupportedMoment(".utcOffset() takes hours, minutes or a '+09:00' text, e.g. .utcOffset(9)")
    if method in ("add", "subtract"):
        if len(args) != 2 or not isinstance(args[0], int) or not isinstance(args[1], str):
            raise UnsupportedMoment(f".{method}() takes a whole number and a unit, e.g. .{method}(1, 'days')")
        unit = _unit(args[1])
        if unit == "isoWeek":
            raise UnsupportedMoment(f".{method}(n, {args[1]!r}): use 'weeks'")
        return (args[0], unit)
    if method in ("startOf", "endOf"):
        if len(args) != 1 or not isinstance(args[0], str):
            raise UnsupportedMoment(f".{method}() takes a unit, e.g. .{method}('month')")
        return (_unit(args[0]),)
    if method == "format":
        if len(args) != 1 or not isinstance(args[0], str):
            raise UnsupportedMoment(".format() takes a format text here, e.g. .format('YYYY-MM-DD')")
        for token in _FORMAT_TOKEN.findall(args[0]):
            if _UNSUPPORTED_TOKENS.fullmatch(token):
                raise UnsupportedMoment(
                    f".format(): the token {token!r} is not formatted here; write it in [brackets] "
                    "to print it as text"
                )
        return args
    hint = (
        " (Digdag's moment.js has no time zone data: use .utc() or the workflow's timezone)"
        if method == "tz"
        else ""
    )
    raise UnsupportedMoment(f".{method}() is not evaluated{hint}")


def _unit(written: str) -> str:
    if written in _UNITS:
        return _UNITS[written]
    unit = written.lower().removesuffix("s")
    if unit not in _LONG_UNITS:
        raise UnsupportedMoment(
            f"{written!r} is not a unit of moment (years, months, weeks, days, hours, ...)"
        )
    return "isoWeek" if unit == "isoweek" else unit


def _zone(name: Any) -> tzinfo:
    if not name or name == "UTC":
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"the timezone param {name!r} is not a time zone name (e.g. Asia/Tokyo)") from None


def _parse(value: Any, local: tzinfo, written: str) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, local)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"moment({written}): {value!r} is not an ISO 8601 date or time") from None
    return moment.astimezone(local) if moment.tzinfo else _wall(moment, local)


def _wall(naive: datetime, zone: tzinfo) -> datetime:
    """A wall-clock time in ``zone``; one in a DST gap moves forward by the gap, as in moment."""
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)


def _add(moment: datetime, zone: tzinfo, amount: int, unit: str) -> datetime:
    wall = moment.astimezone(zone).replace(tzinfo=None)
    if unit in _CALENDAR_STEPS:
        months = wall.year * 12 + wall.month - 1 + amount * _CALENDAR_STEPS[unit]
        year, month = divmod(months, 12)
        day = min(wall.day, calendar.monthrange(year, month + 1)[1])  # Jan 31 + 1 month = Feb 28/29
        return _wall(wall.replace(year=year, month=month + 1, day=day), zone)
    if unit in _WALL_STEPS:
        return _wall(wall + timedelta(days=amount * _WALL_STEPS[unit]), zone)
    # On the instant (in UTC: aware arithmetic in one zone would move the wall clock, across DST too)
    return (moment.astimezone(UTC) + timedelta(milliseconds=amount * _INSTANT_STEPS[unit])).astimezone(zone)


def _start_of(moment: datetime, zone: tzinfo, unit: str) -> datetime:
    wall = moment.astimezone(zone).replace(tzinfo=None)
    if unit == "year":
        wall = wall.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "quarter":
        wall = wall.replace(
            month=(wall.month - 1) // 3 * 3 + 1, day=1, hour=0, minute=0, second=0, microsecond=0
        )
    elif unit == "month":
        wall = wall.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit in ("week", "isoWeek"):  # the English locale's week starts on Sunday, the ISO week on Monday
        back = (wall.weekday() + 1) % 7 if unit == "week" else wall.weekday()
        wall = (wall - timedelta(days=back)).replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit in ("day", "date"):
        wall = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit == "hour":
        wall = wall.replace(minute=0, second=0, microsecond=0)
    elif unit == "minute":
        wall = wall.replace(second=0, microsecond=0)
    elif unit == "second":
        wall = wall.replace(microsecond=0)
    else:  # millisecond
        wall = wall.replace(microsecond=wall.microsecond // 1000 * 1000)
    return _wall(wall, zone)


def format_moment(moment: datetime, pattern: str) -> str:
    """moment's ``format(pattern)`` in its English locale."""
    return "".join(_token(moment, token) for token in _FORMAT_TOKEN.findall(pattern))


def _token(m: datetime, token: str) -> str:
    if token.startswith("[") and token.endswith("]") and len(token) > 1:
        return token[1:-1]
    if token.startswith("\\"):
        return token[1:]
    if token in _LOCALE_FORMATS:
        return format_moment(m, _LOCALE_FORMATS[token])
    weekday = (m.weekday() + 1) % 7  # Sunday 0, as JavaScript counts
    iso_year, iso_week, iso_day = m.isocalendar()
    day_of_year = m.timetuple().tm_yday
    simple: dict[str, Any] = {
        "YYYY": f"{m.year:04d}",
        "YY": f"{m.year % 100:02d}",
        "Q": (m.month - 1) // 3 + 1,
        "M": m.month,
        "MM": f"{m.month:02d}",
        "MMM": _MONTHS[m.month - 1][:3],
        "MMMM": _MONTHS[m.month - 1],
        "D": m.day,
        "DD": f"{m.day:02d}",
        "DDD": day_of_year,
        "DDDD": f"{day_of_year:03d}",
        "d": weekday,
        "e": weekday,
        "E": iso_day,
        "dd": _WEEKDAYS[weekday][:2],
        "ddd": _WEEKDAYS[weekday][:3],
        "dddd": _WEEKDAYS[weekday],
        "W": iso_week,
        "WW": f"{iso_week:02d}",
        "GGGG": f"{iso_year:04d}",
        "GG": f"{iso_year % 100:02d}",
        "H": m.hour,
        "HH": f"{m.hour:02d}",
        "h": m.hour % 12 or 12,
        "hh": f"{m.hour % 12 or 12:02d}",
        "k": m.hour or 24,
        "kk": f"{m.hour or 24:02d}",
        "a": "am" if m.hour < 12 else "pm",
        "A": "AM" if m.hour < 12 else "PM",
        "m": m.minute,
        "mm": f"{m.minute:02d}",
        "s": m.second,
        "ss": f"{m.second:02d}",
        "X": int(m.timestamp()),
        "x": round(m.timestamp() * 1000),
    }
    if token in simple:
        return str(simple[token])
    if token.endswith("o") and token[:-1] in ("M", "D", "DDD", "d", "Q", "W", "w"):
        base = token[:-1]
        number = _locale_week(m)[1] if base == "w" else int(simple[base])
        return _ordinal(number)
    if token in ("w", "ww"):
        week = _locale_week(m)[1]
        return str(week) if token == "w" else f"{week:02d}"
    if token in ("gg", "gggg"):
        year = _locale_week(m)[0]
        return f"{year % 100:02d}" if token == "gg" else f"{year:04d}"
    if token in ("Hmm", "Hmmss", "hmm", "hmmss"):
        return "".join(_token(m, part) for part in (token[0], "mm", "ss")[: 2 if len(token) == 3 else 3])
    if token.startswith("S"):
        return f"{m.microsecond:06d}000"[: len(token)]
    if token in ("Z", "ZZ"):
        offset = m.utcoffset() or timedelta(0)
        minutes = int(offset.total_seconds() // 60)
        sign, minutes = ("-", -minutes) if minutes < 0 else ("+", minutes)
        return f"{sign}{minutes // 60:02d}{':' if token == 'Z' else ''}{minutes % 60:02d}"
    return token  # a character that is no token (moment copies it)


def _locale_week(m: datetime) -> tuple[int, int]:
    """The English locale's week-year and week: weeks start on Sunday, week 1 holds January 1."""
    day = m.date()
    start = day - timedelta(days=(day.weekday() + 1) % 7)
    year = (start + timedelta(days=6)).year
    first = datetime(year, 1, 1).date()
    first_start = first - timedelta(days=(first.weekday() + 1) % 7)
    return year, (start - first_start).days // 7 + 1


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"
