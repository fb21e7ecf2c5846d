"""What a .dig workflow compiles to: tasks, ids, Digdag names, edges, params, operator settings.

Structure only (nothing runs here); tests/dig/test_examples.py and test_constructs_run.py run them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow_cmdexec_provider.dig import load_project
from airflow_cmdexec_provider.dig.operators import (
    DigPyOperator,
    DigRbOperator,
    DigShOperator,
    EchoOperator,
    FailOperator,
    IfOperator,
)

PROJECTS = Path(__file__).resolve().parent / "projects"


def dag_of(project: Path, name: str):
    return load_project(project, include=[name])[name]


def upstream(dag, task_id):
    return sorted(dag.get_task(task_id).upstream_task_ids)


def test_basic_nesting_order_and_parallel():
    dag = dag_of(PROJECTS / "examples", "basic")
    assert [t.task_id for t in dag.topological_sort()] == [
        "first_step",
        "second_step",
        "a_group.inner_one",
        "a_group.inner_two",
        "at_once.left",
        "at_once.right",
        "last_step",
    ]
    assert upstream(dag, "a_group.inner_one") == ["second_step"]
    assert upstream(dag, "at_once.left") == upstream(dag, "at_once.right") == ["a_group.inner_two"]
    assert upstream(dag, "last_step") == ["at_once.left", "at_once.right"]
    task = dag.get_task("a_group.inner_two")
    assert isinstance(task, DigShOperator)
    assert task.digdag_task_name == "+basic+a_group+inner_two"
    assert task.templating == "digdag"
    assert task.command == "echo which keep their order"
    assert task.project_dir == str((PROJECTS / "examples").resolve())
    assert dag.timetable.can_be_scheduled is False
    assert dag.timezone.name == "UTC"


def test_parallel_limit_batches_background_after_and_long_form():
    dag = dag_of(PROJECTS / "constructs", "flow")
    # limit 2: b1,b2 | b3,b4 | b5 - each batch waits for the whole previous one (WorkflowCompiler)
    assert upstream(dag, "batched.b1") == upstream(dag, "batched.b2") == []
    assert upstream(dag, "batched.b3") == upstream(dag, "batched.b4") == ["batched.b1", "batched.b2"]
    assert upstream(dag, "batched.b5") == ["batched.b3", "batched.b4"]
    # _background: no edge from s1 (only the group's own start); s2 waits for s1 and the background task
    assert upstream(dag, "sequence.s1") == upstream(dag, "sequence.bg") == ["batched.b5"]
    assert upstream(dag, "sequence.s2") == ["sequence.bg", "sequence.s1"]
    long_form = dag.get_task("sequence.s3")
    assert isinstance(long_form, EchoOperator)
    assert long_form.message == "long form"
    assert type(dag.get_task("sequence.off")).__name__ == "EmptyOperator"  # _disable: true
    # _after inside _parallel, with or without the +
    assert upstream(dag, "fan.x") == upstream(dag, "fan.y") == ["sequence.off"]
    assert upstream(dag, "fan.z") == ["fan.x", "fan.y"]
    # loop>: 3 unrolled, sequential, each exporting i
    loop = [dag.get_task(f"repeat.loop-{i}") for i in range(3)]
    assert [t.dig_export["i"] for t in loop] == [0, 1, 2]
    assert upstream(dag, "repeat.loop-1") == ["repeat.loop-0"]
    assert loop[2].digdag_task_name == "+flow+repeat^sub+loop-2"


def test_exports_local_keys_and_namespaces_land_where_digdag_scopes_them():
    dag = dag_of(PROJECTS / "constructs", "params")
    assert dag.params["greeting"] == "hello"
    assert dag.params["day_label"] == "day ${session_date}"
    assert dag.timezone.name == "Asia/Tokyo"
    show = dag.get_task("scoped.show")
    assert show.task_group.default_args["params"] == {
        "target": {"name": "world", "size": 3},
        "greeting": "hi",
    }
    assert show.dig_local_keys == ()
    assert show.sh == {"shell": ["/bin/bash"]}
    assert show.env == {"TARGET_NAME": "${target.name}"}
    assert list(show.dig_expression_keys) == ["day_label"]
    local = dag.get_task("scoped.locals")
    assert isinstance(local, DigPyOperator)
    assert local.method == "tasks.show.locals_in_order"
    assert local.dig_local_keys == ("first", "second")
    assert local.params["second"] == "${first} and two"
    assert list(local.dig_expression_keys) == ["day_label"]


def test_error_and_check_wiring():
    dag = dag_of(PROJECTS / "constructs", "errors")
    root_handler = dag.get_task("_error")
    stage_handler = dag.get_task("stage._error.note")
    assert str(root_handler.trigger_rule.value) == str(stage_handler.trigger_rule.value) == "one_failed"
    assert set(stage_handler.upstream_task_ids) == {"stage.prepare", "stage.breaks"}
    assert set(stage_handler.error_from) == {"stage.prepare", "stage.breaks"}
    assert set(root_handler.upstream_task_ids) == {
        "stage.prepare",
        "stage.breaks",
        "stage._error.note",
        "never",
    }
    assert upstream(dag, "_end") == ["never"]
    assert isinstance(dag.get_task("stage.breaks"), FailOperator)
    assert stage_handler.digdag_task_name == "+errors+stage^error+note"
    checks = dag_of(PROJECTS / "constructs", "checks")
    assert upstream(checks, "produce_check") == ["produce"]
    assert upstream(checks, "group_with_check.inner") == ["produce_check"]
    assert upstream(checks, "group_with_check._check") == ["group_with_check.inner"]
    assert upstream(checks, "retried") == ["group_with_check._check"]
    assert checks.get_task("produce_check").digdag_task_name == "+checks+produce^check"
    retried = checks.get_task("retried")
    assert retried.retries == 1
    assert retried.retry_delay == timedelta(0)
    assert "_end" not in checks.task_dict


def test_call_inlines_the_file_with_its_folder_as_workdir():
    dag = dag_of(PROJECTS / "constructs", "calls")
    where = dag.get_task("local_call.where")
    assert where.digdag_task_name == "+calls+local_call^sub+where"
    assert where.workdir == "sub"
    assert where.task_group.default_args["params"] == {"who": "the caller", "_workdir": "sub", "place": "sub"}
    deepest = dag.get_task("local_call.nested.deepest")
    assert deepest.workdir == "sub"
    assert deepest.digdag_task_name == "+calls+local_call^sub+nested^sub+deepest"
    assert upstream(dag, "after") == ["local_call.nested.deepest"]


def test_for_each_unrolls_in_digdag_order_with_digdag_names():
    dag = dag_of(PROJECTS / "constructs", "foreach")
    groups = list(dag.task_group.get_child_by_label("each").children)
    assert groups == [
        "each.for-0_fruit_0_apple_1_count_0_1_2_verbose_0_true",
        "each.for-0_fruit_0_apple_1_count_1_2_2_verbose_0_true",
        "each.for-0_fruit_1_banana_1_count_0_1_2_verbose_0_true",
        "each.for-0_fruit_1_banana_1_count_1_2_2_verbose_0_true",
    ]
    say = dag.get_task(groups[2] + ".say")
    assert say.digdag_task_name == "+foreach+each^sub+for-0=fruit=1=banana&1=count=0=1&2=verbose=0=true+say"
    assert say.task_group.default_args["params"] == {"fruit": "banana", "count": 1, "verbose": True}
    assert all(not dag.get_task(g + ".say").upstream_task_ids for g in groups)  # _parallel: true


def test_for_range_unrolls_by_step_or_slices_with_digdag_names():
    dag = dag_of(PROJECTS / "constructs", "ranges")
    steps = [dag.get_task(f"steps.range-from_{a}_to_{b}") for a, b in ((0, 4), (4, 8), (8, 10))]
    assert [t.dig_export["range"] for t in steps] == [
        {"from": 0, "to": 4, "index": 0},
        {"from": 4, "to": 8, "index": 1},
        {"from": 8, "to": 10, "index": 2},
    ]
    assert steps[1].digdag_task_name == "+ranges+steps^sub+range-from=4&to=8"
    assert upstream(dag, steps[1].task_id) == [steps[0].task_id]  # in order, as written
    # slices: 3 of [10, 20) -> step ceil(10 / 3) = 4, as Digdag computes it; _parallel: true
    groups = list(dag.task_group.get_child_by_label("sliced").children)
    assert groups == [
        "sliced.range-from_10_to_14",
        "sliced.range-from_14_to_18",
        "sliced.range-from_18_to_20",
    ]
    work = [dag.get_task(g + ".work") for g in groups]
    assert [t.task_group.default_args["params"]["range"]["to"] for t in work] == [14, 18, 20]
    assert upstream(dag, work[0].task_id) == upstream(dag, work[2].task_id) == [steps[2].task_id]


def test_if_is_a_branch_task_with_a_group_per_branch_and_an_end_that_runs_either_way():
    dag = dag_of(PROJECTS / "constructs", "branches")
    test = dag.get_task("big_or_small.if")
    assert isinstance(test, IfOperator)
    assert test.message == "${rows > 2}"
    assert test.digdag_task_name == "+branches+big_or_small"
    assert (test.then_group, test.else_group, test.end_task) == (
        "big_or_small.do",
        "big_or_small.else_do",
        "big_or_small.end",
    )
    assert dag.get_task("big_or_small.do.judge").digdag_task_name == "+branches+big_or_small^sub+judge"
    assert upstream(dag, "big_or_small.do.report") == upstream(dag, "big_or_small.else_do.big_or_small_sub")
    assert upstream(dag, "big_or_small.end") == [
        "big_or_small.do.judge",
        "big_or_small.else_do.big_or_small_sub",
        "big_or_small.if",
    ]
    assert dag.get_task("big_or_small.end").trigger_rule == "none_failed_min_one_success"
    assert upstream(dag, "only_when_few.if") == ["big_or_small.end"]
    assert dag.get_task("only_when_few.if").else_group is None


def test_init_template_operators_and_settings():
    ruby = dag_of(PROJECTS / "init_ruby", "workflow")
    setup = ruby.get_task("setup")
    assert isinstance(setup, DigRbOperator)
    assert setup.rb == {"require": "scripts/helper"}
    assert {k: setup.params[k] for k in setup.dig_local_keys} == {"label": "start", "time": "${session_time}"}
    assert ruby.params["rb"] == {"require": "scripts/helper"}  # the root _export is the DAG's params
    first = ruby.get_task("repeat.for-0_size_0_small_1_color_0_red")
    assert first.params["size"] == "${size}"
    assert first.dig_export == {"size": "small", "color": "red"}
    assert upstream(ruby, "teardown") == sorted(t for t in ruby.task_dict if t.startswith("repeat."))


def test_dag_id_prefix_and_include_globs():
    dags = load_project(PROJECTS / "examples", include=["schedule_*", "basic"], dag_id_prefix="dd_")
    assert sorted(dags) == ["dd_basic", "dd_schedule_daily", "dd_schedule_hourly", "dd_schedule_weekly"]
    assert dags["dd_basic"].get_task("first_step").digdag_task_name == "+basic+first_step"


def test_operator_settings_are_evaluated_when_the_task_runs():
    task = dag_of(PROJECTS / "remote", "remote").get_task("where")
    assert task.docker == {"image": "${image}"}
    task.expand_digdag({"image": "some:image", "session_date": "2026-01-30"})
    assert task.docker == {"image": "some:image"}
    assert task.command.endswith('session=2026-01-30"')
