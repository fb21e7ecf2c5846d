"""Constructs at run time: params and ${...} as Digdag resolves them, _error scopes, _check, _retry, call>."""

from __future__ import annotations

import pendulum


def printed(result, task_id):
    return [
        line
        for line in result.log_lines(task_id)
        if not line.startswith(("Task ", "::", "Updating ", "Using ", "Pushing xcom"))
    ]


def test_params_and_expressions_resolve_as_in_digdag(project, run_workflow):
    result = run_workflow(
        project("constructs"), "params", logical_date=pendulum.datetime(2026, 1, 30, tz="Asia/Tokyo")
    )
    assert result.state == "success", result.errors
    # group export beats the root export; ${a.b} pasted into sh> text; _env evaluated; sh: {shell: bash}
    show = printed(result, "scoped.show")
    assert show[0].startswith("hi world (3) on day 2026-01-30; bash=5.")
    assert show[1] == "env=world"
    # a local key sees the local keys written before it
    assert "first=one second=one and two" in printed(result, "scoped.locals")
    # a value stored by an earlier task beats the scope's export (Digdag), inside and after the group
    assert "greeting is now stored hello" in printed(result, "scoped.after_store")
    # ES5 built-ins (js_builtins.py), evaluated when the task runs, after the stored greeting; the
    # JSON is pasted into the script text, inside the echo's double quotes, which the shell removes
    assert printed(result, "scoped.builtins")[0] == (
        "compact=20260130 json={name:world,size:3} upper=WORLD half=1 list=stored hello+3 nodash=20260130"
    )
    assert (
        printed(result, "outside")[0]
        == "outside the group the greeting is stored hello, task +params+outside"
    )


def test_error_scopes_run_their_handlers_and_the_run_fails(project, run_workflow):
    result = run_workflow(
        project("constructs"), "errors", logical_date=pendulum.datetime(2026, 1, 30, tz="UTC")
    )
    assert result.state == "failed"
    assert result.task_states == {
        "stage.prepare": "success",
        "stage.breaks": "failed",
        "stage._error.note": "success",
        "_error": "success",
        "never": "upstream_failed",
        "_end": "upstream_failed",
    }
    assert result.error_text("stage.breaks") == "broke at 2026-01-30"
    assert printed(result, "stage._error.note")[0] == "stage handler saw broke at 2026-01-30"
    assert printed(result, "_error")[0] == "root handler saw broke at 2026-01-30"


def test_check_and_retry(project, run_workflow):
    result = run_workflow(project("constructs"), "checks")
    assert result.state == "success", result.errors
    assert "answer checked" in printed(result, "produce_check")
    assert "group checked" in printed(result, "group_with_check._check")
    assert "second try works" in printed(result, "retried")


def test_call_runs_the_called_files_in_their_folder(project, run_workflow):
    result = run_workflow(project("constructs"), "calls")
    assert result.state == "success", result.errors
    assert "the caller runs child in sub with place=sub" in printed(result, "local_call.where")
    assert "grandchild in sub" in printed(result, "local_call.nested.deepest")


def test_for_range_gives_each_task_its_range(project, run_workflow):
    result = run_workflow(project("constructs"), "ranges")
    assert result.state == "success", result.errors
    assert printed(result, "steps.range-from_4_to_8") == ["rows 4 to 8 (slice 1)"]
    assert printed(result, "steps.range-from_8_to_10") == ["rows 8 to 10 (slice 2)"]
    assert printed(result, "sliced.range-from_18_to_20.work") == ["from 18 to 20, 2 rows"]


def test_if_runs_do_or_else_do_and_the_tasks_after_it_run_either_way(project, run_workflow):
    """The condition is evaluated when the task runs, here over a value stored upstream; a value
    stored inside the branch that ran reaches the tasks after it."""
    result = run_workflow(project("constructs"), "branches")
    assert result.state == "success", result.errors
    states = result.task_states
    assert states["big_or_small.if"] == states["big_or_small.end"] == "success"
    assert states["big_or_small.do.report"] == states["big_or_small.do.judge"] == "success"
    assert states["big_or_small.else_do.big_or_small_sub"] == "skipped"
    assert printed(result, "big_or_small.do.report") == ["big, 3 rows"]
    assert states["only_when_few.do.only_when_few_sub"] == "skipped"  # false, and no _else_do
    assert states["only_when_few.end"] == "success"
    assert printed(result, "literal.else_do.literal_sub") == ["a literal false runs _else_do"]
    assert printed(result, "after") == ["after the branches the verdict is big"]


def test_an_if_condition_that_is_not_a_boolean_fails_the_task_and_runs_no_branch(tmp_path, run_workflow):
    (tmp_path / "maybe.dig").write_text(
        "+check:\n  if>: ${answer}\n  answer: maybe\n  _do:\n    echo>: yes\n+after:\n  echo>: after\n"
    )
    result = run_workflow(tmp_path, "maybe")
    assert result.state == "failed"
    assert result.task_states["check.if"] == "failed"
    assert result.task_states["check.do.check_sub"] == "upstream_failed"
    assert result.task_states["after"] == "upstream_failed"
    assert "if>: the condition must be true or false, got 'maybe'" in result.error_text("check.if")


def test_airflow_dags_test_runs_if_branches(project, dags_test):
    """Through the real task runner and a serialized DAG, as a user runs it: the skipped branch and
    the end task."""
    proc = dags_test(project("constructs"), "branches", prefix="cli_")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "state=success" in output
    assert "big, 3 rows" in output
    assert "after the branches the verdict is big" in output
    assert "never printed" not in output


def test_wait_waits_on_the_worker_or_in_the_triggerer(project, run_workflow):
    result = run_workflow(project("constructs"), "waits")
    assert result.state == "success", result.errors

    def first(task_id, prefix):
        return next(r for r in result.records if r.task_id == task_id and r.message.startswith(prefix))

    # blocking: true sleeps in the task; blocking: false defers and comes back from the trigger
    assert not any(r.message.startswith("Waited") for r in result.records if r.task_id == "on_the_worker")
    assert first("in_the_triggerer", "Waiting 2s (until ")
    assert first("in_the_triggerer", "Waited until 20")
    # the wait is at least what was asked (a lower bound: it is correctness, not speed)
    assert first("in_the_triggerer", "Waiting").time - first("on_the_worker", "Waiting").time >= 1.0
    assert first("after", "waited").time - first("in_the_triggerer", "Waiting").time >= 2.0


def test_a_wait_whose_duration_is_not_one_fails_naming_it(tmp_path, run_workflow):
    (tmp_path / "soon.dig").write_text("+pause:\n  wait>: ${when}\n  when: soon\n")
    result = run_workflow(tmp_path, "soon")
    assert result.state == "failed"
    assert "wait>: 'soon' is not a duration; write e.g. 10s" in result.error_text("pause")
