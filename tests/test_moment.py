"""``${moment(...)}`` in Digdag text (``airflow_cmdexec_provider/moment.py``): what moment.js prints in
Digdag's engine, whose local time zone is the workflow's ``timezone``; the expected values are
moment.js's documented output for these dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from airflow_cmdexec_provider.exceptions import CmdExecConfigError
from airflow_cmdexec_provider.expressions import evaluate, is_supported, unsupported_reason

LA = {
    "timezone": "America/Los_Angeles",
    "session_time": "2026-01-30T00:00:00-08:00",
    "session_date": "2026-01-30",
    "last_session_time": "2026-01-29T00:00:00-08:00",
    "epoch_ms": 1769760000000,
    "target": {"day": "2026-02-28"},
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Digdag's examples/basic.dig, in a UTC workflow and in Los Angeles
        ("moment(session_time).utc().format('YYYY-MM-DD HH:mm:ss Z')", "2026-01-30 08:00:00 +00:00"),
        ("moment(session_time).format('YYYY-MM-DD HH:mm:ss Z')", "2026-01-30 00:00:00 -08:00"),
        ("moment(session_time).format('YYYY-MM-DD HH:mm:ss ZZ')", "2026-01-30 00:00:00 -0800"),
        # the everyday idioms: yesterday, last month, the start of the week
        ("moment(session_time).add(-1, 'days').format('YYYYMMDD')", "20260129"),
        ("moment(session_time).subtract(1, 'd').format('YYYY-MM-DD')", "2026-01-29"),
        ("moment(session_time).subtract(1, 'months').format('YYYY-MM')", "2025-12"),
        ("moment(last_session_time).format('YYYY/MM/DD')", "2026/01/29"),
        ("moment(session_date).startOf('week').format('dddd D MMM')", "Sunday 25 Jan"),
        ("moment(session_date).startOf('isoWeek').format('dddd, MMMM Do YYYY')", "Monday, January 26th 2026"),
        ("moment(session_time).endOf('month').format('YYYY-MM-DD HH:mm:ss.SSS')", "2026-01-31 23:59:59.999"),
        ("moment(session_time).startOf('quarter').format('Qo [quarter:] MMM D')", "1st quarter: Jan 1"),
        ("moment(session_time).startOf('year').add(1, 'y').format('YY')", "27"),
        ("moment(target.day).add(1, 'months').format('l')", "3/28/2026"),  # a dotted path
        ("moment('2026-01-31').add(1, 'M').format('YYYY-MM-DD')", "2026-02-28"),  # clamped to the month end
        ("moment('2024-02-29').add(1, 'years').format('YYYY-MM-DD')", "2025-02-28"),
        # days move the wall clock across a DST change, hours the instant
        ("moment('2026-03-07T12:00:00').add(1, 'days').format('HH:mm Z')", "12:00 -07:00"),
        ("moment('2026-03-08T01:30:00').add(1, 'hours').format('h:mm A Z')", "3:30 AM -07:00"),
        ("moment('2026-03-08T02:30:00').format('HH:mm')", "03:30"),  # in the gap: moved forward
        # every token family, and text in [brackets] or after a backslash
        ("moment(session_time).format('w ww wo gggg W WW Wo GGGG')", "5 05 5th 2026 5 05 5th 2026"),
        ("moment('2027-01-01').format('w gggg W GGGG E e d')", "1 2027 53 2026 5 5 5"),
        ("moment(session_time).format('DDD DDDD DDDo d do dd ddd')", "30 030 30th 5 5th Fr Fri"),
        (
            "moment('2026-07-04T15:07:09').format('H HH h hh k kk a A m mm s ss')",
            "15 15 3 03 15 15 pm PM 7 07 9 09",
        ),
        ("moment('2026-07-04T00:05:00').format('k kk h A Hmm hmmss')", "24 24 12 AM 005 120500"),
        ("moment('2026-07-04T15:07:09.123').format('S SS SSS SSSS')", "1 12 123 1230"),
        ("moment(session_time).format('[YYYY] \\\\Y MMMM Do, YYYY T')", "YYYY Y January 30th, 2026 T"),
        ("moment(session_time).format('LT LTS L LL')", "12:00 AM 12:00:00 AM 01/30/2026 January 30, 2026"),
        ("moment(session_time).format('LLLL')", "Friday, January 30, 2026 12:00 AM"),
        ("moment(session_time).format('lll')", "Jan 30, 2026 12:00 AM"),
        ("moment(session_time).format('Mo MMo th')", "1st 01o t12"),  # "h" is a token: moment prints the hour
        ("moment('2026-01-11').format('Do')", "11th"),
        ("moment('2026-01-12').format('Do')", "12th"),
        ("moment('2026-01-22').format('Do')", "22nd"),
        ("moment('2026-01-23').format('Do')", "23rd"),
        # numbers and the ISO text
        ("moment(session_time).unix()", "1769760000"),
        ("moment(session_time).format('X x')", "1769760000 1769760000000"),
        ("moment(session_time).valueOf()", "1769760000000"),
        ("moment(epoch_ms).format('YYYY-MM-DD HH:mm')", "2026-01-30 00:00"),
        ("moment(1769760000000).utc().format('HH:mm')", "08:00"),
        ("moment(session_time).toISOString()", "2026-01-30T08:00:00.000Z"),
        ("moment(session_time).utc().local().format('HH:mm')", "00:00"),
        ("moment(session_time).endOf('day').utc().toISOString()", "2026-01-31T07:59:59.999Z"),
        ("moment('2026-01-30T10:00:00Z').format('HH:mm')", "02:00"),
        ("moment(session_time).add(90, 'minutes').add(30, 's').format('HH:mm:ss')", "01:30:30"),
        # getters: moment's numbers (month() counts from 0, day() is Sunday 0)
        ("moment(session_time).year()", "2026"),
        ("moment(session_time).month()", "0"),
        ("moment(session_time).date()", "30"),
        ("moment(session_time).day()", "5"),
        ("moment(session_time).isoWeekday()", "5"),
        ("moment(session_time).utc().hour()", "8"),
        ("moment(session_time).dayOfYear()", "30"),
        ("moment(session_time).week()", "5"),
        ("moment('2027-01-01').isoWeek()", "53"),
        ("moment(session_time).quarter()", "1"),
        ("moment('2028-02-10').daysInMonth()", "29"),
        ("moment('2026-02-10T10:20:30.456').millisecond()", "456"),
        # a fixed offset, the way to another zone without time zone data
        ("moment(session_time).utcOffset(9).format('YYYY-MM-DD HH:mm Z')", "2026-01-30 17:00 +09:00"),
        ("moment(session_time).utcOffset(-330).format('HH:mm ZZ')", "02:30 -0530"),
        (
            "moment(session_time).utcOffset('+09:00').startOf('day').utc().format('MM-DD HH:mm')",
            "01-29 15:00",
        ),
    ],
)
def test_moment_prints_what_digdags_moment_prints(expression: str, expected: str) -> None:
    assert is_supported(expression), unsupported_reason(expression)
    assert evaluate(f"${{{expression}}}", LA, "Task t") == expected


def test_a_utc_workflow_and_no_timezone_param_are_utc() -> None:
    params = {"session_time": "2026-01-30T00:00:00+00:00"}
    assert evaluate("${moment(session_time).format('HH:mm Z')}", params, "Task t") == "00:00 +00:00"
    assert evaluate("${moment(session_time).format('HH:mm Z')}", {**params, "timezone": "UTC"}, "T") == (
        "00:00 +00:00"
    )


def test_moment_now_is_now_in_the_workflows_zone() -> None:
    before = datetime.now(UTC).replace(microsecond=0).timestamp()
    seconds = int(evaluate("${moment().unix()}", LA, "Task t"))
    assert before <= seconds <= datetime.now(UTC).timestamp()
    assert re.fullmatch(r"[+-]0[78]:00", evaluate("${moment().format('Z')}", LA, "Task t"))


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("moment(session_time)", "end it with .format('...')"),
        ("moment(session_time).tz('Asia/Tokyo').format('HH')", "no time zone data"),
        ("moment(session_time).fromNow()", ".fromNow() is not evaluated"),
        ("moment(session_date, 'YYYY-MM-DD').format('D')", "parsing with a format"),
        ("moment(session_time).add('days', 1).format('D')", "a whole number and a unit"),
        ("moment(session_time).add(1.5, 'days').format('D')", "a whole number and a unit"),
        ("moment(session_time).add(1, 'fortnights').format('D')", "'fortnights' is not a unit"),
        ("moment(session_time).format('D').unix()", ".format() must come last"),
        ("moment(session_time).format('YYYY zz')", "the token 'zz' is not formatted here"),
        ("moment(session_time).format()", ".format() takes a format text"),
        ("moment(session_time).add(n, 'days').format('D')", "literal arguments"),
        ("moment(session_time).utcOffset('JST').format('D')", ".utcOffset() takes hours, minutes"),
        ("moment(session_time).date(1).format('D')", "with an argument it sets the value"),
        ("moment(session_time).year().format('D')", ".year() must come last"),
    ],
)
def test_what_is_not_evaluated_says_why_before_anything_runs(expression: str, reason: str) -> None:
    why = unsupported_reason(expression)
    assert why is not None
    assert why.startswith("moment():")
    assert reason in why, why
    with pytest.raises(CmdExecConfigError, match=re.escape(reason)):
        evaluate(f"${{{expression}}}", LA, "Task t")


def test_run_time_errors_name_the_task_and_the_param() -> None:
    with pytest.raises(CmdExecConfigError, match=r"Task t: .*nope is not defined .*ReferenceError"):
        evaluate("${moment(nope).format('D')}", LA, "Task t")
    with pytest.raises(CmdExecConfigError, match=r"Task t: .*'yesterday' is not an ISO 8601 date"):
        evaluate("${moment(day).format('D')}", {**LA, "day": "yesterday"}, "Task t")
    with pytest.raises(CmdExecConfigError, match=r"Task t: .*timezone param 'Mars/Base' is not a time zone"):
        evaluate("${moment().format('D')}", {**LA, "timezone": "Mars/Base"}, "Task t")
