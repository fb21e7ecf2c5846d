"""Unit tests of params.py: Digdag runtime params from an Airflow context, merging, sh> env encoding."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pendulum
import pytest

from airflow_cmdexec_provider.exceptions import CmdExecConfigError
from airflow_cmdexec_provider.params import (
    deep_merge,
    env_from_params,
    env_value,
    is_startup_env_name,
    resolve_params,
    runtime_params,
    validate_env,
)


def _dag(tz=None, dag_id="my_dag"):
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=tz))


def _context(
    *, logical_date, dag=None, run_after=None, task_id="step", try_number=1, params=None, run_id="run-1"
):
    dag = dag if dag is not None else _dag()
    ti = SimpleNamespace(dag_id=dag.dag_id, task_id=task_id, run_id=run_id, try_number=try_number)
    context = {
        "dag": dag,
        "ti": ti,
        "run_id": run_id,
        "logical_date": logical_date,
        "dag_run": SimpleNamespace(run_after=run_after, logical_date=logical_date),
        "params": params or {},
    }
    if logical_date is not None:
        context["ds"] = logical_date.strftime("%Y-%m-%d")
    return context


# -- runtime params ----------------------------------------------------------------------------------


def test_runtime_params_utc_dag_with_logical_date():
    logical = pendulum.datetime(2026, 3, 4, 5, 6, 7, tz="UTC")
    context = _context(logical_date=logical, task_id="step", try_number=3)
    params = runtime_params(context)

    assert params["session_time"] == "2026-03-04T05:06:07+00:00"
    assert params["session_date"] == "2026-03-04" == context["ds"]
    assert params["session_date_compact"] == "20260304"
    assert params["session_local_time"] == "2026-03-04 05:06:07"
    assert params["session_tz_offset"] == "+0000"
    assert params["session_unixtime"] == int(logical.timestamp()) == 1772600767
    assert params["timezone"] == "UTC"
    assert params["task_name"] == "+my_dag+step"
    # Digdag's ids are integers: stable stand-ins derived from the run (and the run's clear number)
    assert isinstance(params["attempt_id"], int)
    assert isinstance(params["session_id"], int)
    assert params["session_id"] == runtime_params(_context(logical_date=logical, try_number=1))["session_id"]
    assert params["attempt_id"] == runtime_params(_context(logical_date=logical, try_number=1))["attempt_id"]
    assert isinstance(params["project_id"], int)


def test_runtime_params_manual_run_without_logical_date_uses_run_after():
    run_after = pendulum.datetime(2026, 7, 8, 23, 30, 0, tz="UTC")
    context = _context(logical_date=None, run_after=run_after)
    assert "ds" not in context
    params = runtime_params(context)

    assert params["session_time"] == "2026-07-08T23:30:00+00:00"
    assert params["session_date"] == "2026-07-08"
    assert params["session_date_compact"] == "20260708"
    assert params["session_local_time"] == "2026-07-08 23:30:00"
    assert params["session_unixtime"] == int(run_after.timestamp())


def test_runtime_params_logical_date_wins_over_run_after():
    context = _context(
        logical_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        run_after=pendulum.datetime(2026, 5, 5, tz="UTC"),
    )
    assert runtime_params(context)["session_date"] == "2026-01-01"


def test_runtime_params_without_any_date_is_a_clear_error():
    context = _context(logical_date=None, run_after=None)
    with pytest.raises(CmdExecConfigError, match=r"neither logical_date nor dag_run\.run_after"):
        runtime_params(context)


def test_runtime_params_non_utc_dag_are_in_the_dag_timezone():
    # 20:00 UTC on Jan 1st is already Jan 2nd in Tokyo.
    logical = pendulum.datetime(2026, 1, 1, 20, 0, 0, tz="UTC")
    context = _context(logical_date=logical, dag=_dag(pendulum.timezone("Asia/Tokyo"), dag_id="tokyo"))
    params = runtime_params(context)

    assert params["timezone"] == "Asia/Tokyo"
    assert params["session_time"] == "2026-01-02T05:00:00+09:00"
    assert params["session_date"] == "2026-01-02"
    assert params["session_date_compact"] == "20260102"
    assert params["session_local_time"] == "2026-01-02 05:00:00"
    assert params["session_tz_offset"] == "+0900"
    # the same instant: unixtime does not depend on the timezone
    assert params["session_unixtime"] == int(logical.timestamp())
    assert params["task_name"] == "+tokyo+step"


def test_runtime_params_manual_run_in_non_utc_dag_with_dst():
    la = pendulum.timezone("America/Los_Angeles")
    winter = runtime_params(
        _context(logical_date=None, run_after=pendulum.datetime(2026, 1, 15, 12, tz="UTC"), dag=_dag(la))
    )
    summer = runtime_params(
        _context(logical_date=None, run_after=pendulum.datetime(2026, 7, 15, 12, tz="UTC"), dag=_dag(la))
    )
    assert (winter["session_tz_offset"], winter["session_local_time"]) == ("-0800", "2026-01-15 04:00:00")
    assert (summer["session_tz_offset"], summer["session_local_time"]) == ("-0700", "2026-07-15 05:00:00")
    assert winter["timezone"] == summer["timezone"] == "America/Los_Angeles"


def test_runtime_params_fixed_offset_dag_timezone():
    # A start_date with a plain fixed-offset tzinfo: Airflow makes it FixedTimezone("+05:30").
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    params = runtime_params(_context(logical_date=pendulum.datetime(2026, 1, 1, 20, tz="UTC"), dag=_dag(ist)))
    assert params["session_time"] == "2026-01-02T01:30:00+05:30"
    assert params["session_tz_offset"] == "+0530"
    assert params["timezone"] == "+05:30"


def test_runtime_params_task_in_a_group_and_uuid_per_run():
    logical = pendulum.datetime(2026, 1, 1, tz="UTC")
    a = runtime_params(_context(logical_date=logical, task_id="grp.inner", run_id="r1"))
    b = runtime_params(_context(logical_date=logical, task_id="other", run_id="r1"))
    c = runtime_params(_context(logical_date=logical, task_id="grp.inner", run_id="r2"))
    assert a["task_name"] == "+my_dag+grp+inner"
    assert a["session_uuid"] == b["session_uuid"] != c["session_uuid"]


# -- merging -----------------------------------------------------------------------------------------


def test_deep_merge_merges_objects_and_replaces_the_rest_without_mutating():
    base = {"a": {"x": 1, "y": {"k": 1}}, "b": [1, 2], "c": 1}
    override = {"a": {"y": {"j": 2}, "z": 3}, "b": [3], "d": None}
    merged = deep_merge(base, override)
    assert merged == {"a": {"x": 1, "y": {"k": 1, "j": 2}, "z": 3}, "b": [3], "c": 1, "d": None}
    assert base == {"a": {"x": 1, "y": {"k": 1}}, "b": [1, 2], "c": 1}


def test_resolve_params_follows_digdag_precedence():
    runtime = {"session_date": "2026-01-01", "task_name": "+d+t", "retry_attempt_name": None}
    warnings: list[str] = []
    params = resolve_params(
        session={"greeting": "hi", "count": 1, "session_date": "overridden", "nested": {"a": 1}, "mine": "s"},
        scopes=[({}, [{"count": 2, "nested": {"b": 2}}]), ({"nested": {"c": 3}, "count": 3}, [{"count": 4}])],
        runtime=runtime,
        local={"mine": "local", "task_name": "mine"},
        task_label="my_dag.step",
        warn=warnings.append,
    )
    assert params["greeting"] == "hi"
    assert params["count"] == 4  # the nearest scope's store wins over the outer export and store
    assert params["nested"] == {"a": 1, "b": 2, "c": 3}  # deep merge, as Digdag's Config.merge
    assert params["session_date"] == "2026-01-01"  # built-ins cannot be overwritten by session params
    assert params["mine"] == "local"
    assert params["task_name"] == "mine"
    assert "retry_attempt_name" not in params  # null runtime params are dropped, as in Digdag
    assert len(warnings) == 1
    assert "session_date" in warnings[0]
    assert "my_dag.step" in warnings[0]
    json.dumps(params)


def test_resolve_params_rejects_values_that_are_not_json():
    with pytest.raises(CmdExecConfigError) as excinfo:
        resolve_params(
            session={"when": dt.datetime(2026, 1, 1), "ok": 1},
            scopes=[],
            runtime={},
            local={},
            task_label="my_dag.step",
        )
    message = str(excinfo.value)
    assert "my_dag.step" in message
    assert "'when'" in message
    assert "JSON" in message
    assert "'ok'" not in message


def test_resolve_params_rejects_stored_values_that_are_not_json():
    with pytest.raises(CmdExecConfigError, match=r"my_dag\.step: params \['bad'\] are not JSON"):
        resolve_params(
            session={}, scopes=[({}, [{"bad": {1, 2}}])], runtime={}, local={}, task_label="my_dag.step"
        )


@pytest.mark.parametrize(
    "name",
    [
        "BASH_ENV",
        "ENV",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PATH",
        "IFS",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PERL5OPT",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "GIT_SSH_COMMAND",
        "DOCKER_HOST",
        "http_proxy",
        "HTTPS_PROXY",
        "BASH_FUNC_x%%",
        "SSL_CERT_FILE",
        "GCONV_PATH",
    ],
)
def test_startup_env_names_are_recognised(name):
    assert is_startup_env_name(name)


@pytest.mark.parametrize("name", ["path", "greeting", "session_date", "table", "ENVIRONMENT", "my_PATH"])
def test_ordinary_names_are_not_startup_names(name):
    assert not is_startup_env_name(name)


# -- sh> environment -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("plain text", "plain text"),
        ("", ""),
        ('{"looks": "like json"}', '{"looks": "like json"}'),  # strings are never re-encoded
        (42, "42"),
        (1.5, "1.5"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ([1, "two", None], '[1,"two",null]'),
        ({"a": 1, "b": [True]}, '{"a":1,"b":[true]}'),
        ({"jp": "日本"}, '{"jp":"日本"}'),
    ],
)
def test_env_value_strings_raw_everything_else_compact_json(value, encoded):
    assert env_value(value) == encoded


def test_env_from_params_keeps_only_valid_variable_names():
    params = {
        "name": "x",
        "_private": 1,
        "CamelCase9": True,
        "a.b": "dotted",
        "a-b": "dashed",
        "9lives": "digit first",
        "with space": "s",
        "": "empty",
        "nothing": None,
    }
    assert env_from_params(params) == {"name": "x", "_private": "1", "CamelCase9": "true"}


def test_env_from_params_never_exports_startup_names_and_reports_them_by_name():
    reported: list[list[str]] = []
    params = {"BASH_ENV": "/tmp/evil", "LD_PRELOAD": "/tmp/evil.so", "PATH": "/tmp", "path": "result.csv"}
    assert env_from_params(params, reported.append) == {"path": "result.csv"}
    assert reported == [["BASH_ENV", "LD_PRELOAD", "PATH"]]  # names only, never values


def test_validate_env_encodes_values_like_params():
    assert validate_env({"A": "x", "N": 3, "L": [1, 2], "D": {"k": "v"}}, "d.t") == {
        "A": "x",
        "N": "3",
        "L": "[1,2]",
        "D": '{"k":"v"}',
    }
    assert validate_env(None, "d.t") == {}


@pytest.mark.parametrize("key", ["BAD-KEY", "a.b", "1ABC", "", "with space", 7])
def test_validate_env_rejects_invalid_names(key):
    with pytest.raises(CmdExecConfigError) as excinfo:
        validate_env({key: "v"}, "my_dag.step")
    message = str(excinfo.value)
    assert "my_dag.step" in message
    assert "invalid env key name" in message
    assert repr(key) in message


def test_validate_env_rejects_none_values_and_non_mappings():
    with pytest.raises(CmdExecConfigError, match=r"my_dag\.step: env key 'A' has no value"):
        validate_env({"A": None}, "my_dag.step")
    with pytest.raises(CmdExecConfigError, match=r"my_dag\.step: env must be a dict"):
        validate_env(["A=1"], "my_dag.step")
