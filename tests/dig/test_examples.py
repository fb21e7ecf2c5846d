"""Our own counterparts of Digdag's examples and ``digdag init`` templates, run on the local executor.

Each workflow under ``projects/examples`` and ``projects/init_*`` does what the Digdag example of
the same name does (written for this project, not copied). They run in-process with
``dag.test()`` (``run_workflow``) and a representative set through ``airflow dags test`` with a
one-line DAG file, as a user runs them. What Digdag prints, they print.
"""

from __future__ import annotations

import pendulum
import pytest

LA = "America/Los_Angeles"


def lines(result, task_id):
    """What the task's command printed (the task log without Airflow's own bookkeeping lines)."""
    return [
        line
        for line in result.log_lines(task_id)
        if not line.startswith(("Task ", "::", "Updating ", "Using ", "Pushing xcom"))
    ]


def test_basic_runs_in_order(project, run_workflow):
    result = run_workflow(
        project("examples"), "basic", logical_date=pendulum.datetime(2026, 1, 30, 8, 30, tz="UTC")
    )
    assert result.state == "success", result.errors
    assert "the first step runs first" in lines(result, "first_step")
    # Digdag's moment() idiom, pasted into the sh> script
    assert "the second step runs next, in the session of 2026-01-30 08:30:00 +00:00" in lines(
        result, "second_step"
    )
    assert "which keep their order" in lines(result, "a_group.inner_two")
    assert "left runs together with right" in lines(result, "at_once.left")


def test_a_workflow_in_the_early_brace_format_runs(project, run_workflow):
    result = run_workflow(project("examples"), "basic_braces")
    assert result.state == "success", result.errors
    assert set(result.task_states) == {"first_step", "a_group.inner", "at_once.left", "at_once.right"}
    assert "braces: the first step runs first" in lines(result, "first_step")
    assert "groups nest in braces too" in lines(result, "a_group.inner")


def test_call_runs_the_called_workflow_inside_a_group(project, run_workflow):
    result = run_workflow(project("examples"), "call")
    assert result.state == "success", result.errors
    assert "calling the basic workflow now" in lines(result, "before")
    assert "basic is finished" in lines(result, "run_basic.last_step")
    assert len(result.task_states) == 8


def test_check_task_checks_after_each_task(project, run_workflow):
    result = run_workflow(project("examples"), "check_task")
    assert result.state == "success", result.errors
    assert "report checked" in lines(result, "write_report_check")
    assert lines(result, "write_with_store_check")[:2] == ["checking report2.txt", "report checked"]


def test_conditions_picks_what_digdag_picks(project, run_workflow):
    """Parallel siblings storing the same keys: the later one wins, as in Digdag (not alphabetical)."""
    result = run_workflow(project("examples"), "conditions")
    assert result.state == "success", result.errors
    assert "chosen file: data.best.zst" in lines(result, "report")
    assert result.xcom("measure.pick")["chosen"] == "data.best.zst"


def test_error_task_runs_error_and_the_run_fails(project, run_workflow):
    result = run_workflow(project("examples"), "error_task")
    assert result.state == "failed"
    assert result.task_states == {"breaks": "failed", "_error": "success", "_end": "upstream_failed"}
    printed = lines(result, "_error")
    assert printed[0] == "the workflow failed as expected:"
    assert "this step breaks on purpose" in result.log("_error")


def test_export_params_store_reaches_the_next_task(project, run_workflow):
    result = run_workflow(project("examples"), "export_params")
    assert result.state == "success", result.errors
    assert "settings = {'mode': 'fast', 'level': 3}" in lines(result, "show")


def test_include_merges_other_files_as_groups(project, run_workflow):
    result = run_workflow(project("examples"), "include")
    assert result.state == "success", result.errors
    assert "basic is finished" in lines(result, "with_basic.last_step")
    assert "chosen file: data.best.zst" in lines(result, "with_conditions.report")


def test_params_child_alone_sees_no_table(project, run_workflow):
    result = run_workflow(project("examples"), "params_child")
    assert result.state == "success", result.errors
    assert "show_table: table = None" in lines(result, "first_reader")


def test_python_args_binds_params_and_e_fails_as_in_digdag(project, run_workflow):
    result = run_workflow(project("examples"), "python_args")
    assert result.state == "failed"
    assert {k: result.task_states[k] for k in "abcd"} == dict.fromkeys("abcd", "success")
    assert result.task_states["e"] == "failed"
    assert lines(result, "a")[:2] == ["first = one", "second = 2"]
    assert lines(result, "b")[:2] == ["first = None", "second = fallback"]
    assert lines(result, "c")[:3] == ["first = x", "second = {'nested': 'y'}", "third = None"]
    assert lines(result, "d")[:2] == ["first = x", "extra1 = e1"]
    assert "not_written_yet" in result.error_text("e")


def test_js_vars_evaluates_javascript_as_digdag_does(project, run_workflow):
    """Digdag's js_vars: a param computed with ${1 + 1}, one built from another, and expressions over
    a stored value and an exported object (a missing member is undefined, so || gives the default)."""
    result = run_workflow(project("examples"), "js_vars")
    assert result.state == "success", result.errors
    assert "count is 1" in lines(result, "literal")
    assert "count is 2" in lines(result, "computed")
    assert "total is 5" in lines(result, "nested.inner")
    assert "3 rows in events, owner nobody, ratio 0.75" in lines(result, "report")


def test_python_generate_subtasks_run_inside_the_generating_task(project, run_workflow):
    """Digdag's python_generate_subtasks: a task adds py> subtasks with add_subtask; here they run in
    the generating task, after it, in order, each seeing the export and its own keys, and what they
    store reaches the next task."""
    result = run_workflow(project("examples"), "python_generate_subtasks")
    assert result.state == "success", result.errors
    assert lines(result, "process") == [
        "Running generated subtask +subtask0: py> tasks.fanout.Batches.handle",
        "batch 0 handled (0)",
        "Running generated subtask +subtask1: py> tasks.fanout.Batches.handle",
        "batch 1 handled (1)",
        "Running generated subtask +subtask2: py> tasks.fanout.Batches.handle",
        "batch 2 handled (2)",
    ]
    assert lines(result, "summary") == ["last handled: 2; first and last: True True"]


def test_ruby_generate_subtasks_in_all_three_forms(project, run_workflow):
    """Digdag's ruby_generate_subtasks: Digdag.env.add_subtask with a group of tasks, a method name, or a
    class and a method; the tasks run inside the generating task, in order."""
    result = run_workflow(project("examples"), "ruby_generate_subtasks")
    assert result.state == "success", result.errors
    assert lines(result, "as_hash") == [
        "Running generated subtask +subtask0+part0: rb> AsHash::Fanout.handle",
        "hash form: part 0 (0, 0)",
        "Running generated subtask +subtask0+part1: rb> AsHash::Fanout.handle",
        "hash form: part 1 (1, 1)",
    ]
    assert [line for line in lines(result, "by_name") if not line.startswith("Running")] == [
        "method name form: part 0",
        "method name form: part 1",
    ]
    assert lines(result, "by_class")[:2] == [
        "Running generated subtask +subtask0: rb> ByClass::Fanout.handle",
        "class form: part 0",
    ]
    assert lines(result, "report") == ["last part 1"]


def test_generated_subtasks_other_than_py_fail_the_task_saying_so(tmp_path, run_workflow):
    (tmp_path / "gen.py").write_text(
        "import digdag\n\n\n"
        "def make():\n"
        "    digdag.env.add_subtask({'py>': 'gen.child'}, x=1)\n"
        "    digdag.env.add_subtask({'sh>': 'echo hi'})\n\n\n"
        "def child(x):\n"
        "    print('child got %d' % x)\n"
    )
    (tmp_path / "gen.dig").write_text("+make:\n  py>: gen.make\n")
    result = run_workflow(tmp_path, "gen")
    assert result.state == "failed"
    assert "child got 1" in lines(result, "make")
    error = result.error_text("make")
    assert "generated subtask +subtask1" in error
    assert "only py> tasks can" in error


def test_ruby_args_with_the_rb_namespace(project, run_workflow):
    result = run_workflow(project("examples"), "ruby_args")
    assert result.state == "success", result.errors
    assert "one: hello the first task" in lines(result, "one")
    assert "two: hi the second task" in lines(result, "two")


@pytest.mark.parametrize(
    ("name", "logical_date", "expected"),
    [
        ("schedule_daily", pendulum.datetime(2026, 1, 30, tz=LA), "session 2026-01-30T00:00:00-08:00"),
        ("schedule_hourly", pendulum.datetime(2026, 7, 4, 13, tz=LA), "session 2026-07-04T13:00:00-07:00"),
        ("schedule_weekly", pendulum.datetime(2026, 2, 1, tz=LA), "session 2026-02-01T00:00:00-08:00"),
    ],
)
def test_schedules_give_digdag_session_times(project, run_workflow, name, logical_date, expected):
    result = run_workflow(project("examples"), name, logical_date=logical_date)
    assert result.state == "success", result.errors
    assert expected in lines(result, "show")


def test_shell_envvar_params_are_environment_variables(project, run_workflow):
    result = run_workflow(project("examples"), "shell_envvar")
    assert result.state == "success", result.errors
    assert lines(result, "own_param")[:3] == [
        "first_param=value of first_param",
        "second_param=",
        "shared_param=",
    ]
    assert "shared_param=exported by +with_export" in lines(result, "with_export.child_two")
    assert "second_param=value of second_param" in lines(result, "other_param")


def test_init_sh_template(project, run_workflow):
    result = run_workflow(
        project("init_sh"), "workflow", logical_date=pendulum.datetime(2026, 1, 30, tz="UTC")
    )
    assert result.state == "success", result.errors
    assert "start 2026-01-30T00:00:00+00:00" in lines(result, "setup")
    said = [line for t in sorted(result.task_states) if t.startswith("repeat.") for line in lines(result, t)]
    assert [s.split(" (")[0] for s in said] == [
        "a small red thing",
        "a small blue thing",
        "a small green thing",
        "a large red thing",
        "a large blue thing",
        "a large green thing",
    ]


def test_init_echo_template_with_moment_dates(project, run_workflow):
    result = run_workflow(
        project("init_echo"), "workflow", logical_date=pendulum.datetime(2026, 1, 30, tz="Asia/Tokyo")
    )
    assert result.state == "success", result.errors
    assert "begin 2026-01-30T00:00:00+09:00" in lines(result, "begin")
    assert "2026-01-30 00:00 +09:00 is 2026-01-29 15:00 +00:00" in lines(result, "local_and_utc")
    said = sorted(line for t in result.task_states if t.startswith("pairs.") for line in lines(result, t))
    assert said == ["a big apple", "a big pear", "a small apple", "a small pear"]


def test_init_python_template(project, run_workflow):
    result = run_workflow(
        project("init_python"), "workflow", logical_date=pendulum.datetime(2026, 1, 30, tz="UTC")
    )
    assert result.state == "success", result.errors
    assert "['start', '2026-01-30T00:00:00+00:00']" in lines(result, "setup")
    assert "a large green thing" in lines(result, "repeat.for-0_size_1_large_1_color_2_green")


def test_init_ruby_template(project, run_workflow):
    result = run_workflow(
        project("init_ruby"), "workflow", logical_date=pendulum.datetime(2026, 1, 30, tz="UTC")
    )
    assert result.state == "success", result.errors
    assert '["finish", "2026-01-30T00:00:00+00:00"]' in lines(result, "teardown")
    assert "a small blue thing" in lines(result, "repeat.for-0_size_0_small_1_color_1_blue")


# -- airflow dags test, as a user runs them ----------------------------------------------------------------
def test_airflow_dags_test_basic(project, dags_test):
    proc = dags_test(project("examples"), "basic", prefix="cli_")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "state=success" in output
    for line in ("the first step runs first", "groups hold nested steps", "basic is finished"):
        assert line in output


def test_airflow_dags_test_schedule_daily_session_time(project, dags_test):
    proc = dags_test(
        project("examples"), "schedule_daily", logical_date="2026-01-30T08:00:00+00:00", prefix="cli_"
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "session 2026-01-30T00:00:00-08:00" in output


def test_airflow_dags_test_sla_duration_done_in_time(project, dags_test):
    """Digdag's sla_duration example (its task shortened): the run is done before the deadline, so
    the SLA's +notice is skipped and the run succeeds."""
    proc = dags_test(project("examples"), "sla_duration", prefix="cli_")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "state=success" in output
    assert "finished before its SLA deadline" in output
    assert "missed its SLA" not in output
