"""Loops over values known when the task runs (dig/loops.py): for_each>/loop>/for_range> over
``${...}``, as mapped task groups, run with dag.test()."""

from __future__ import annotations

import pendulum
import pytest

from airflow_cmdexec_provider.dig import DigLoadError, load_project

DAY = pendulum.datetime(2026, 1, 30, tz="UTC")
_BOOKKEEPING = ("Task ", "::", "Updating ", "Using ", "Pushing xcom", "Waiting", "Rescheduling")


def printed(result, task_id: str) -> list[str]:
    return [line for line in result.log_lines(task_id) if not line.startswith(_BOOKKEEPING)]


def test_for_each_over_a_stored_list_runs_the_do_group_once_per_value(project, run_workflow):
    result = run_workflow(project("loops"), "each_table", logical_date=DAY)
    assert result.state == "success", result.errors
    # one copy of each task per table, in the mapped group
    assert result.xcom("each._values") == [
        {"name": "+for-0=table=0=users&1=mode=0=full", "export": {"table": "users", "mode": "full"}},
        {"name": "+for-0=table=1=orders&1=mode=0=full", "export": {"table": "orders", "mode": "full"}},
        {"name": "+for-0=table=2=items&1=mode=0=full", "export": {"table": "items", "mode": "full"}},
    ]
    shown = sorted(printed(result, "each.iteration.show"))
    assert shown == [
        "table items (full) of 3, task +each_table+each^sub+for-0=table=2=items&1=mode=0=full+show",
        "table orders (full) of 3, task +each_table+each^sub+for-0=table=1=orders&1=mode=0=full+show",
        "table users (full) of 3, task +each_table+each^sub+for-0=table=0=users&1=mode=0=full+show",
    ]
    # in its copy, a task sees what that copy stored, not the other copies' (stores._same_copy)
    assert sorted(printed(result, "each.iteration.own_copy")) == [
        "copy items sees ['last_items']",
        "copy orders sees ['last_orders']",
        "copy users sees ['last_users']",
    ]
    # every copy stored a value; the task after the loop sees all of them
    assert printed(result, "after") == ["after the loop seen users, seen orders, seen items"]
    assert result.task_states["each._end"] == "success"


def test_a_loop_without_parallel_runs_one_iteration_after_another_and_stops_at_a_failure(
    project, run_workflow
):
    result = run_workflow(project("loops"), "sequential", logical_date=DAY)
    assert result.state == "failed"
    log = result.log("repeat.iteration.start") + result.log("repeat.iteration.work")
    assert "start 0" in log
    assert "start 1" in log
    assert "start 2" not in log  # iteration 2 never started: 1 failed
    assert "iteration 1 breaks" in result.error_text("repeat.iteration.work")
    assert "iteration 1 of the loop failed: Digdag stops a loop without _parallel" in result.log(
        "repeat.iteration.start"
    )
    assert result.task_states["never"] == "upstream_failed"


def test_for_range_over_params_and_an_empty_for_each_let_the_workflow_go_on(project, run_workflow):
    result = run_workflow(project("loops"), "ranges", logical_date=DAY)
    assert result.state == "success", result.errors
    assert sorted(printed(result, "slices.iteration.do")) == [
        "slice 0: 0-4",
        "slice 1: 4-8",
        "slice 2: 8-10",
    ]
    assert result.xcom("empty._values") == []
    assert printed(result, "done") == ["done"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "+outer:\n  loop>: ${n}\n  _do:\n    +inner:\n      loop>: ${n}\n      _do:\n        echo>: x\n",
            "loop> over ${...}: cannot be inside another loop over ${...}",
        ),
        (
            "+outer:\n  loop>: ${n}\n  _do:\n    +maybe:\n      if>: true\n      _do:\n        echo>: x\n",
            "if>: is not supported inside the _do of a loop over ${...}",
        ),
        (
            "+outer:\n  loop>: ${n}\n  _do:\n    +a:\n      echo>: a\n    _error:\n      echo>: e\n",
            "_error: is not supported inside the _do of a loop over ${...}",
        ),
        ("+outer:\n  loop>: ${n}\n", "loop>: needs _do"),
        ("+outer:\n  loop>: ${n}\n  _parallel: maybe\n  _do:\n    echo>: x\n", "_parallel: must be true"),
    ],
)
def test_what_a_run_time_loop_cannot_hold_is_a_load_error(tmp_path, body, expected):
    (tmp_path / "bad.dig").write_text("_export:\n  n: 2\n" + body)
    with pytest.raises(DigLoadError) as info:
        load_project(tmp_path)
    assert expected in str(info.value)


def test_bad_values_fail_the_values_task_naming_it(tmp_path, run_workflow):
    (tmp_path / "bad.dig").write_text("_export:\n  n: lots\n+outer:\n  loop>: ${n}\n  _do:\n    echo>: x\n")
    result = run_workflow(tmp_path, "bad", logical_date=DAY)
    assert result.state == "failed"
    assert "Task bad.outer._values: loop>: needs a number of iterations, got 'lots'" in result.error_text(
        "outer._values"
    )


def test_more_iterations_than_airflow_maps_fail_the_values_task_naming_the_setting(
    project, run_workflow, monkeypatch
):
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    result = run_workflow(project("loops"), "each_table", logical_date=DAY)
    assert result.state == "failed"
    assert result.error_text("each._values") == (
        "Task each_table.each._values: for_each> has 3 iterations; Airflow maps at most 2 copies of a "
        "task group ([core] max_map_length): raise that setting, or loop over fewer values"
    )
