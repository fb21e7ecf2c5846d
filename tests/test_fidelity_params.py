"""Params and stored values resolve as in Digdag (issue: fidelity round 2), in real ``dag.test()`` runs.

Digdag's order, lowest first: session params (DAG params, dag_run.conf) < exports and stores interleaved
by scope (DAG, then each TaskGroup), in graph order < runtime params < the task's own params. Stores:
the nearest writer wins, a branch that stored nothing changes nothing, parallel siblings merge in
definition order (the later sibling wins), mapped tasks in map-index order.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pendulum
import pytest

from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")

TASKS_PY = '''
import json
import os

import digdag


def store(**kwargs):
    """Store what the task's own params ask for: params key "to_store" (a JSON object)."""
    digdag.env.store(json.loads(kwargs["to_store"]))


def store_from_env():
    index = os.environ["INDEX"]
    digdag.env.store({"last": index, "seen_" + index: True, "order": [index]})


def show(**params):
    wanted = json.loads(params["show_keys"])
    print("SHOW " + json.dumps({k: params.get(k) for k in wanted}, sort_keys=True))


class Compression(object):
    """The logic of Digdag's examples/conditions.dig: three algorithms race, the smallest output wins."""

    def lz(self):
        digdag.env.store({"path_lz": "output.lz", "size_lz": 10})

    def deflate(self):
        digdag.env.store({"path_deflate": "output.gz", "size_deflate": 8})

    def bzip2(self):
        # the same keys as deflate: which one wins decides the answer
        digdag.env.store({"path_deflate": "output.bz2", "size_deflate": 6})

    def decide(self, **params):
        sizes = {k[len("size_"):]: v for k, v in params.items() if k.startswith("size_")}
        best = min(sizes, key=lambda name: sizes[name])
        digdag.env.store({"best_path": params["path_" + best]})


def show_best(best_path):
    print("using file: " + best_path)


def fail():
    raise RuntimeError("this task fails on purpose")
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fidelity")
    (root / "tasks.py").write_text(TASKS_PY)
    (root / "wf.rb").write_text("def show_rb\n  puts \"RB ruby=#{Digdag.env.params['ruby_marker']}\"\nend\n")
    return root


def _dag(dag_id: str, **kwargs):
    from airflow.sdk import DAG

    kwargs.setdefault("schedule", None)
    return DAG(dag_id, start_date=START, catchup=False, **kwargs)


def _store(task_id: str, project: Path, values: dict, **kwargs) -> PyOperator:
    params = {**kwargs.pop("params", {}), "to_store": json.dumps(values)}
    return PyOperator(
        task_id=task_id, project_dir=str(project), method="tasks.store", params=params, **kwargs
    )


def _show(task_id: str, project: Path, keys: list[str], **kwargs) -> PyOperator:
    params = {**kwargs.pop("params", {}), "show_keys": json.dumps(keys)}
    return PyOperator(task_id=task_id, project_dir=str(project), method="tasks.show", params=params, **kwargs)


def _shown(result, task_id: str) -> dict:
    lines = [line for line in result.log_lines(task_id) if line.startswith("SHOW ")]
    assert lines, result.log(task_id)
    return json.loads(lines[-1][len("SHOW ") :])


# -- stored values -----------------------------------------------------------------------------------------


def test_fan_in_a_branch_that_stored_nothing_does_not_revert_a_newer_value(run_dag, project):
    """Review M2: A stores x=0; B (after A) stores x=1; C (after A) stores nothing; D sees B's x=1.

    Before the fix D saw x=0: C re-published A's older value, and C sorts after B alphabetically.
    """
    with _dag("fidelity_fan_in") as dag:
        a = _store("a_first", project, {"x": 0, "only_a": "a"})
        b = _store("b_newer", project, {"x": 1})
        c = ShOperator(task_id="c_stores_nothing", project_dir=str(project), command="true")
        d = _show("d_fan_in", project, ["x", "only_a"])
        a >> [b, c] >> d
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert _shown(result, "d_fan_in") == {"x": 1, "only_a": "a"}
    # plain Airflow tasks still read one object with every value stored so far
    assert result.xcom("d_fan_in") == {"x": 1, "only_a": "a"}


def test_values_stored_upstream_reach_through_sh_tasks_which_publish_no_store_log(run_dag, project):
    """sh> cannot store (Digdag: TaskResult.empty): it publishes no store log, and a task downstream of
    it reads the log of the nearest task that can store (issue 11: no XCom read or write for sh tasks
    that cannot change what anyone sees)."""
    with _dag("fidelity_through_sh") as dag:
        a = _store("a_stores", project, {"x": 7})
        b = ShOperator(task_id="b_sh", project_dir=str(project), command='echo "b sees x=$x"')
        c = ShOperator(task_id="c_sh", project_dir=str(project), command='echo "c sees x=$x"')
        d = _show("d_show", project, ["x"])
        a >> b >> c >> d
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert "b sees x=7" in result.log_lines("b_sh")
    assert "c sees x=7" in result.log_lines("c_sh")
    assert _shown(result, "d_show") == {"x": 7}
    assert result.has_xcom("a_stores", "cmdexec_stores")
    assert not result.has_xcom("b_sh", "cmdexec_stores")
    assert not result.has_xcom("c_sh", "cmdexec_stores")
    # plain Airflow tasks still read every value stored so far from a sh task's return_value
    assert result.xcom("c_sh") == {"x": 7}


def test_a_task_with_nothing_stored_up_to_it_publishes_no_store_log(run_dag, project):
    """Issue 11: an empty store log is not pushed (an API write per task saved); the task after it
    reads the missing log as "nothing stored" and values stored further up still reach everyone."""
    with _dag("fidelity_no_empty_log") as dag:
        a = _show("a_nothing", project, [])
        b = _show("b_nothing", project, [])
        c = _store("c_stores", project, {"x": 5})
        d = _show("d_inherits", project, [])
        e = _show("e_show", project, ["x"])
        a >> b >> c >> d >> e
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert not result.has_xcom("a_nothing", "cmdexec_stores")
    assert not result.has_xcom("b_nothing", "cmdexec_stores")
    assert result.has_xcom("c_stores", "cmdexec_stores")
    assert result.has_xcom("d_inherits", "cmdexec_stores")  # it stored nothing but inherited x
    assert _shown(result, "e_show") == {"x": 5}


@pytest.mark.parametrize("rule", ["all_done", "one_failed"])
def test_a_task_after_a_failure_sees_what_was_stored_before_it(run_dag, project, rule):
    """A failed task publishes no store log; a task that runs anyway (error handler, all_done) cannot
    take the missing log for "nothing stored": it looks above it and finds the values stored there."""
    with _dag(f"fidelity_after_failure_{rule}") as dag:
        a = _store("a_stores", project, {"x": 9})
        f = PyOperator(task_id="f_fails", project_dir=str(project), method="tasks.fail")
        h = _show("h_handler", project, ["x"], trigger_rule=rule)
        a >> f >> h
    result = run_dag(dag)
    assert result.task_states["f_fails"] == "failed"
    assert result.task_states["h_handler"] == "success"
    assert _shown(result, "h_handler") == {"x": 9}


def test_a_task_read_by_an_all_done_task_publishes_its_empty_store_log(run_dag, project):
    """The reader of an empty log may run after a failure (all_done, here also through a sh> task):
    the empty log is published, so that the reader stops there instead of reading every task above."""
    with _dag("fidelity_empty_log_for_all_done") as dag:
        e0 = _show("e0_nothing", project, [])
        e1 = _show("e1_nothing", project, [])
        c = _show("c_nothing", project, [])
        sh = ShOperator(task_id="s_sh", project_dir=str(project), command="true", trigger_rule="all_done")
        r = _show("r_reader", project, ["x"], trigger_rule="all_done")
        e0 >> e1 >> sh >> r
        c >> r
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert not result.has_xcom("e0_nothing", "cmdexec_stores")  # read by e1 only, after its success
    assert result.has_xcom("e1_nothing", "cmdexec_stores")  # read through an all_done sh> task
    assert result.has_xcom("c_nothing", "cmdexec_stores")  # read by an all_done task
    assert _shown(result, "r_reader") == {"x": None}


@pytest.mark.parametrize("first_defined", ["zz_sibling", "aa_sibling"])
def test_parallel_siblings_merge_in_definition_order_the_later_one_winning(run_dag, project, first_defined):
    second_defined = "aa_sibling" if first_defined == "zz_sibling" else "zz_sibling"
    with _dag(f"fidelity_siblings_{first_defined}") as dag:
        start = ShOperator(task_id="start", project_dir=str(project), command="true")
        first = _store(first_defined, project, {"v": first_defined})
        second = _store(second_defined, project, {"v": second_defined})
        join = _show("join", project, ["v"])
        start >> [first, second] >> join
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert _shown(result, "join") == {"v": second_defined}


def test_stores_of_a_mapped_task_reach_downstream_in_map_index_order(run_dag, project):
    """Review M3: before the fix the stores of .expand()ed command tasks vanished."""
    with _dag("fidelity_mapped") as dag:
        mapped = PyOperator.partial(
            task_id="mapped", project_dir=str(project), method="tasks.store_from_env"
        ).expand(env=[{"INDEX": "0"}, {"INDEX": "1"}, {"INDEX": "2"}])
        after = _show("after", project, ["last", "seen_0", "seen_1", "seen_2", "order"])
        mapped >> after
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert _shown(result, "after") == {
        "last": "2",
        "seen_0": True,
        "seen_1": True,
        "seen_2": True,
        "order": ["2"],
    }


def test_the_logic_of_digdags_conditions_example_prints_what_digdag_prints(run_dag, project):
    """examples/conditions.dig: parallel tries store the same keys; the later sibling (bzip2) wins."""
    from airflow.sdk import TaskGroup

    with _dag("fidelity_conditions") as dag:
        with TaskGroup("algorithms") as algorithms:
            with TaskGroup("try") as attempts:
                for name in ("lz", "deflate", "bzip2"):
                    PyOperator(task_id=name, project_dir=str(project), method=f"tasks.Compression.{name}")
            decide = PyOperator(task_id="decide", project_dir=str(project), method="tasks.Compression.decide")
            attempts >> decide
        show = PyOperator(task_id="show", project_dir=str(project), method="tasks.show_best")
        algorithms >> show
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert "using file: output.bz2" in result.log_lines("show")


# -- precedence --------------------------------------------------------------------------------------------


def test_precedence_at_every_level(run_dag, project):
    from airflow.sdk import TaskGroup

    dag_params = {"p_conf": "dag", "p_group": "dag", "p_store": "dag", "p_task": "dag", "nested": {"dag": 1}}
    with _dag("fidelity_precedence", params=dag_params) as dag:
        outer_store = _store("outer_store", project, {"p_store": "outer-store", "p_group": "outer-store"})
        with TaskGroup(
            "grp", default_args={"params": {"p_group": "group", "p_store": "group", "nested": {"group": 2}}}
        ) as grp:
            inner_store = _store("inner_store", project, {"p_store": "inner-store"})
            shown = _show(
                "shown",
                project,
                ["p_conf", "p_group", "p_store", "p_task", "nested"],
                params={"p_task": "task"},
            )
            inner_store >> shown
        outer_store >> grp
    result = run_dag(dag, run_conf={"p_conf": "conf", "p_task": "conf"})
    assert result.state == "success", result.errors
    assert _shown(result, "grp.shown") == {
        "p_conf": "conf",  # dag_run.conf over DAG params
        "p_group": "group",  # the group's export over a store of the outer scope
        "p_store": "inner-store",  # a store of the group's own scope over the group's export
        "p_task": "task",  # the task's own params over everything, dag_run.conf included
        "nested": {"dag": 1, "group": 2},  # exports merge deeply, as Digdag's Config.merge
    }


def test_built_in_params_cannot_be_overwritten_and_the_log_names_the_key(run_dag, project):
    with _dag("fidelity_builtins", params={"session_date": "not-a-date", "task_name": "fake"}) as dag:
        writer = _store("writer", project, {"timezone": "Mars/Olympus"})
        shown = _show("shown", project, ["session_date", "task_name", "timezone"])
        writer >> shown
    result = run_dag(dag, logical_date=pendulum.datetime(2026, 4, 5, tz="UTC"))
    assert result.state == "success", result.errors
    assert _shown(result, "shown") == {
        "session_date": "2026-04-05",
        "task_name": "+fidelity_builtins+shown",
        "timezone": "UTC",
    }
    warnings = [
        r.message for r in result.records if r.task_id == "shown" and r.level.lower().startswith("warn")
    ]
    assert any(
        "session_date" in w and "task_name" in w and "timezone" in w and "built-in" in w for w in warnings
    )


# -- namespaced defaults -----------------------------------------------------------------------------------


def test_namespaced_sh_py_rb_defaults_and_top_level_arguments_win(run_dag, project, tmp_path):
    marker_python = tmp_path / "python-wrapper"
    marker_python.write_text('#!/bin/sh\necho "wrapper-used"\nexec python3 "$@"\n')
    marker_python.chmod(0o755)
    default_args = {
        "sh": {"shell": ["/bin/bash", "-e"]},
        "py": {"python": str(marker_python)},
        "rb": {"require": "wf", "ruby": "ruby"},
    }
    with _dag(
        "fidelity_namespaces", default_args=default_args, params={"show_keys": "[]", "ruby_marker": "m"}
    ) as dag:
        bash = ShOperator(
            task_id="bash", project_dir=str(project), command='echo "shell=${BASH_VERSION:+bash}"'
        )
        plain_sh = ShOperator(
            task_id="plain_sh",
            project_dir=str(project),
            shell="/bin/sh",
            command='echo "shell=${BASH_VERSION:-sh}"',
        )
        py = PyOperator(task_id="py", project_dir=str(project), method="tasks.show")
        py_own = PyOperator(task_id="py_own", project_dir=str(project), method="tasks.show", python="python3")
        rb = RbOperator(task_id="rb", project_dir=str(project), method="show_rb")
        bash >> plain_sh >> py >> py_own >> rb
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert "shell=bash" in result.log_lines("bash")
    assert "shell=sh" in result.log_lines("plain_sh")  # a top-level shell= wins over the sh namespace
    assert "wrapper-used" in result.log_lines("py")
    assert "wrapper-used" not in result.log_lines("py_own")
    assert "RB ruby=m" in result.log_lines("rb")  # require came from the rb namespace


def test_unknown_key_in_a_namespace_is_a_clear_error(run_dag, project):
    with _dag("fidelity_namespace_typo") as dag:
        ShOperator(task_id="typo", project_dir=str(project), command="true", sh={"shel": "/bin/bash"})
    result = run_dag(dag)
    assert result.task_states["typo"] == "failed"
    assert "fidelity_namespace_typo.typo" in result.error_text("typo")
    assert "'shel'" in result.error_text("typo")


# -- runtime params of scheduled runs ----------------------------------------------------------------------


def test_last_and_next_session_times_on_a_scheduled_run(run_dag, project):
    keys = [
        "session_time",
        "last_session_time",
        "next_session_time",
        "last_session_date",
        "next_session_date_compact",
        "last_executed_session_time",
        "last_executed_session_date",
    ]
    with _dag("fidelity_schedule", schedule="@daily") as dag:
        _show("shown", project, keys)
    first = run_dag(dag, logical_date=pendulum.datetime(2026, 3, 10, tz="UTC"))
    assert first.state == "success", first.errors
    assert _shown(first, "shown") == {
        "session_time": "2026-03-10T00:00:00+00:00",
        "last_session_time": "2026-03-09T00:00:00+00:00",
        "next_session_time": "2026-03-11T00:00:00+00:00",
        "last_session_date": "2026-03-09",
        "next_session_date_compact": "20260311",
        "last_executed_session_time": "",  # no earlier successful run: empty, as in Digdag
        "last_executed_session_date": "",
    }
    second = run_dag(dag, logical_date=pendulum.datetime(2026, 3, 11, tz="UTC"))
    assert second.state == "success", second.errors
    shown = _shown(second, "shown")
    assert shown["last_executed_session_time"] == "2026-03-10T00:00:00+00:00"
    assert shown["last_session_time"] == "2026-03-10T00:00:00+00:00"


def test_unscheduled_dags_have_no_last_or_next_session_params(run_dag, project):
    with _dag("fidelity_unscheduled") as dag:
        _show(
            "shown",
            project,
            [
                "last_session_time",
                "next_session_time",
                "last_executed_session_time",
                "project_id",
                "session_id",
            ],
        )
    result = run_dag(dag, logical_date=pendulum.datetime(2026, 3, 10, tz="UTC"))
    assert result.state == "success", result.errors
    shown = _shown(result, "shown")
    assert shown["last_session_time"] is None
    assert shown["next_session_time"] is None
    # Digdag sets last_executed_session_* for scheduled sessions only; without a schedule there is
    # nothing to look up (no API call to find an earlier run: issue 11).
    assert shown["last_executed_session_time"] is None
    assert isinstance(shown["project_id"], int)
    assert isinstance(shown["session_id"], int)


# -- Jinja and Digdag text ---------------------------------------------------------------------------------


def test_templating_none_runs_a_digdag_command_with_braces_unchanged(run_dag, project):
    with _dag("fidelity_braces") as dag:
        ShOperator(
            task_id="braces",
            project_dir=str(project),
            templating="none",
            command="echo '{{.Id}} {% raw %} {#x#}'",
        )
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert "{{.Id}} {% raw %} {#x#}" in result.log_lines("braces")


def test_templating_digdag_substitutes_names_and_dotted_paths_into_the_text(run_dag, project):
    with _dag("fidelity_dollar", params={"table": "users", "td": {"database": "prod"}}) as dag:
        ShOperator(
            task_id="dollar",
            project_dir=str(project),
            templating="digdag",
            command="echo 'in ${td.database}.${table} on ${session_date} {{ untouched }}'",
        )
        ShOperator(task_id="undefined", project_dir=str(project), templating="digdag", command="echo ${nope}")
    result = run_dag(dag, logical_date=pendulum.datetime(2026, 5, 6, tz="UTC"))
    assert result.task_states["dollar"] == "success", result.error_text("dollar")
    assert "in prod.users on 2026-05-06 {{ untouched }}" in result.log_lines("dollar")
    assert result.task_states["undefined"] == "failed"
    assert "fidelity_dollar.undefined" in result.error_text("undefined")
    assert "nope" in result.error_text("undefined")


def test_a_jinja_syntax_error_names_the_task_and_the_way_out(run_dag, project):
    with _dag("fidelity_jinja_error") as dag:
        ShOperator(task_id="bad", project_dir=str(project), command="docker inspect --format '{{.Id}}' x")
    result = run_dag(dag)
    assert result.task_states["bad"] == "failed"
    error = result.error_text("bad")
    assert "fidelity_jinja_error.bad" in error
    assert "templating='none'" in error


# -- conf cannot choose start-up environment names (review H2) -----------------------------------------------


def test_dag_run_conf_cannot_set_bash_env_ld_preload_or_path(run_dag, project, tmp_path):
    evil = tmp_path / "evil.sh"
    hit = tmp_path / "injected"
    evil.write_text(f"touch {hit}\n")
    with _dag("fidelity_conf_env") as dag:
        ShOperator(
            task_id="bash",
            project_dir=str(project),
            shell="/bin/bash",
            command='echo "path-ok=$(command -v true)"; bash -c "echo child-ran"',
        )
    result = run_dag(
        dag,
        run_conf={
            "BASH_ENV": str(evil),
            "ENV": str(evil),
            "LD_PRELOAD": str(tmp_path / "x.so"),
            "PATH": str(tmp_path),
            "harmless": "yes",
        },
    )
    assert result.state == "success", result.errors
    assert not hit.exists()  # BASH_ENV/ENV were not exported: nothing was sourced
    assert "child-ran" in result.log_lines("bash")
    warnings = [
        r.message for r in result.records if r.task_id == "bash" and r.level.lower().startswith("warn")
    ]
    assert any("BASH_ENV" in w and "LD_PRELOAD" in w and "PATH" in w for w in warnings)
    assert not any(str(evil) in w for w in warnings)  # names only, never values


def test_explicit_env_may_still_set_a_startup_name(run_dag, project, tmp_path):
    with _dag("fidelity_explicit_env") as dag:
        ShOperator(
            task_id="t",
            project_dir=str(project),
            env={"PYTHONDONTWRITEBYTECODE": "1"},
            command='echo "value=$PYTHONDONTWRITEBYTECODE"',
        )
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert "value=1" in result.log_lines("t")


def test_parse_time_only_assigns(project, monkeypatch):
    """Operator __init__ does no I/O and no validation that could reach the network or user code."""
    import os

    calls: list[str] = []
    monkeypatch.setattr(os, "stat", lambda *a, **k: calls.append("stat"))
    ShOperator(
        task_id="x",
        command="echo ${a}",
        templating="digdag",
        docker={"image": "i"},
        execution_timeout=dt.timedelta(seconds=1),
    )
    assert calls == []
