"""Every load error names the file, the line and the construct; a workflow never loads with tasks missing."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest

from airflow_cmdexec_provider.dig import DigLoadError, load_project


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load_error(folder: Path, name: str, text: str) -> str:
    write(folder, f"{name}.dig", text)
    with pytest.raises(DigLoadError) as info:
        load_project(folder, include=[name])
    return str(info.value)


# (workflow text, line, what the message must say) - each is one problem Digdag's users meet.
CASES = {
    "outside_operator": (
        """
        timezone: UTC
        +step:
          sh>: echo ok
        +fetch:
          http>: https://example.invalid/
          store_content: true
        """,
        5,
        ["http>", "not part of Digdag's Command Executor"],
    ),
    "long_form_outside": (
        """
        +notify:
          _type: mail
          body: done
        """,
        2,
        ["mail>", "not part of Digdag's Command Executor"],
    ),
    "if_without_branches": ("+maybe:\n  if>: true\n", 2, ["if>", "needs _do or _else_do"]),
    "wait_not_a_duration": ("+pause:\n  wait>: soon\n", 2, ["wait>: soon", "is not a duration"]),
    "for_range_step_and_slices": (
        "+r:\n  for_range>:\n    from: 0\n    to: 3\n    step: 1\n    slices: 2\n  _do:\n    echo>: x\n",
        2,
        ["for_range>", "needs one of step and slices"],
    ),
    "for_range_no_do": ("+r:\n  for_range>: {from: 0, to: 3, step: 1}\n", 2, ["for_range>", "needs _do"]),
    "for_range_text": (
        "+r:\n  for_range>: {from: a, to: 3, step: 1}\n  _do:\n    echo>: x\n",
        2,
        ["for_range>", "from must be a whole number, got 'a'"],
    ),
    "dynamic_parallel": (
        "+r:\n  loop>: 2\n  _parallel: ${p}\n  _do:\n    echo>: x\n",
        3,
        ["_parallel: ${p}", "a later version", "write true, false or {limit: N}"],
    ),
    "secret": (
        "+s:\n  echo>: ${secret:db.password}\n",
        2,
        ["${secret:db.password}", "Digdag resolves secrets only in the sh> command and in _env values"],
    ),
    "javascript": (
        "+task2:\n  val: ${x.map(f)}\n  sh>: echo ${val}\n",
        2,
        ["${x.map(f)}", "the method .map() is not evaluated", "JavaScript engine"],
    ),
    "moment_tz": (
        "+now:\n  echo>: ${moment(session_time).tz('Asia/Tokyo').format('YYYY-MM-DD')}\n",
        2,
        ["${moment(session_time).tz('Asia/Tokyo')", ".tz() is not evaluated", "no time zone data"],
    ),
    "moment_object": ("+now:\n  echo>: ${moment()}\n", 2, ["${moment()}", "end it with .format('...')"]),
    "moment_token": (
        "+now:\n  echo>: ${moment().format('YYYY zz')}\n",
        2,
        ["the token 'zz' is not formatted here", "[brackets]"],
    ),
    "schedule_options": (
        "schedule:\n  minutes_interval>: 1\n  skip_on_overtim: true\n+a:\n  echo>: a\n",
        3,
        ["schedule: skip_on_overtim", "unknown schedule option", "skip_on_overtime"],
    ),
    "skip_on_overtime_value": (
        "schedule:\n  minutes_interval>: 1\n  skip_on_overtime: sometimes\n+a:\n  echo>: a\n",
        3,
        ["schedule: skip_on_overtime: sometimes", "write true or false"],
    ),
    "misspelt_directive": (
        "timezone: UTC\n_schedule:\n  daily>: 10:00:00\n+a:\n  echo>: a\n",
        2,
        ["_schedule", "contains invalid keys", "did you mean schedule?"],
    ),
    "schedule_value": (
        "schedule:\n  daily>: 25:00:00\n+a:\n  echo>: a\n",
        2,
        ["daily> 25:00:00", "out of range"],
    ),
    "schedule_kind": ("schedule:\n  yearly>: 1\n+a:\n  echo>: a\n", 1, ["yearly>", "exactly one of"]),
    "bad_timezone": (
        "timezone: Mars/Olympus\n+a:\n  echo>: a\n",
        1,
        ["timezone: Mars/Olympus", "unknown timezone"],
    ),
    "group_retry": (
        "+g:\n  _retry: 3\n  +a:\n    echo>: a\n",
        2,
        ["_retry: on a group", "put `_retry` on the tasks"],
    ),
    "bad_retry": ("+a:\n  sh>: echo a\n  _retry: forever\n", 3, ["_retry: forever", "number of retries"]),
    "secrets": ("+a:\n  _secrets: [pg.password]\n  sh>: echo a\n", 2, ["_secrets", "a later version"]),
    "group_local_key": (
        "+g:\n  table: users\n  +a:\n    echo>: a\n",
        2,
        ["table", "a group takes no local keys"],
    ),
    "task_with_subtasks": (
        "+t:\n  sh>: echo a\n  +child:\n    echo>: b\n",
        3,
        ["+child", "can't have subtasks"],
    ),
    "two_operators": ("+t:\n  sh>: echo a\n  py>: tasks.x\n", 3, ["sh>, py>", "more than one operator"]),
    "after_without_parallel": (
        "+g:\n  +a:\n    echo>: a\n  +b:\n    _after: +a\n    echo>: b\n",
        5,
        ["_after", "_parallel: true"],
    ),
    "after_unknown": (
        "+g:\n  _parallel: true\n  +a:\n    echo>: a\n  +b:\n    _after: +c\n    echo>: b\n",
        6,
        ["_after: +c", "names no earlier sibling"],
    ),
    "background_in_parallel": (
        "+g:\n  _parallel: true\n  +a:\n    _background: true\n    echo>: a\n",
        4,
        ["_background", "not allowed in a _parallel group"],
    ),
    "id_collision": (
        "+a.b:\n  echo>: 1\n+a_b:\n  echo>: 2\n",
        3,
        ["+id_collision+a_b", "also the id of +id_collision+a.b"],
    ),
    "workdir_outside": (
        "+a:\n  _workdir: ../elsewhere\n  sh>: pwd\n",
        2,
        ["_workdir: ../elsewhere", "inside the project"],
    ),
    "env_key": (
        "+a:\n  _env:\n    bad-name: 1\n  sh>: env\n",
        2,
        ["_env: bad-name", "[a-zA-Z_][a-zA-Z_0-9]*"],
    ),
    "call_expression": ("+c:\n  call>: ${which}\n", 2, ["call>: ${which}", "written literally"]),
    "call_missing": ("+c:\n  call>: not_there\n", 2, ["call>: not_there", "does not exist"]),
    "call_outside": ("+c:\n  call>: ../up\n", 2, ["call>: ../up", "inside the project"]),
    "call_itself": (
        "+c:\n  call>: call_itself\n",
        2,
        ["call>: call_itself", "calls itself (call_itself.dig -> call_itself.dig)"],
    ),
    "no_command": ("+a:\n  sh>:\n", 2, ["sh>", "needs a command text"]),
    "for_each_without_do": ("+e:\n  for_each>:\n    k: [1, 2]\n", 2, ["for_each>", "needs _do"]),
    "task_not_a_mapping": ("+a: echo hi\n", 1, ["+a", "a task must be a mapping"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_unsupported_constructs_are_load_errors_with_file_line_and_construct(tmp_path, name):
    text, line, expected = CASES[name]
    message = load_error(tmp_path, name, text)
    assert f"{tmp_path / name}.dig, line {line}:" in message, message
    for part in expected:
        assert part in message, message


def test_task_code_that_generates_tasks_loads_and_is_never_run_at_load_time(tmp_path):
    """Generated tasks run inside the generating task (the runners), so such code is no load error;
    and loading never imports or runs task code."""
    write(
        tmp_path,
        "tasks/gen.py",
        """
        import digdag
        open("imported.txt", "w").write("the loader must never import task code")

        class Split(object):
            def count(self):
                digdag.env.store({"n": 3})

            def run(self, n):
                for i in range(n):
                    digdag.env.add_subtask(Split.one, index=i)

            def one(self, index):
                print(index)
        """,
    )
    write(
        tmp_path,
        "tasks/gen.rb",
        """
        module Gen
          class Split
            def count
              Digdag.env.store(n: 3)
            end

            def run(n)
              n.times { |i| Digdag.env.add_subtask(:one, index: i) }
            end
          end
        end
        """,
    )
    write(
        tmp_path,
        "generate.dig",
        """
        +count:
          py>: tasks.gen.Split.count
        +run:
          py>: tasks.gen.Split.run
        +rb_count:
          rb>: Gen::Split.count
          require: tasks/gen
        +rb_run:
          rb>: Gen::Split.run
          require: tasks/gen
        """,
    )
    dag = load_project(tmp_path, include=["generate"])["generate"]
    assert dag.task_ids == ["count", "run", "rb_count", "rb_run"]
    assert not (tmp_path / "imported.txt").exists()


def test_every_problem_of_a_workflow_is_listed_and_nothing_loads(tmp_path):
    write(tmp_path, "good.dig", "+a:\n  echo>: fine\n")
    write(tmp_path, "bad.dig", "+a:\n  emr>:\n+b:\n  sh>: echo ${n = 1}\nsla:\n  time: soon\n")
    with pytest.raises(DigLoadError) as info:
        load_project(tmp_path)  # every workflow was asked for: one that cannot load fails the whole call
    message = str(info.value)
    assert message.startswith("Digdag workflow(s) bad cannot be loaded")
    for line, construct in (
        (2, "emr>"),
        (4, "${n = 1}: assignment is not evaluated"),
        (6, "sla: time: soon"),
    ):
        assert f"bad.dig, line {line}: {construct}" in message, message
    assert "The other workflow(s) asked for load: good. To load them while these are fixed" in message
    assert message.endswith("name them: load_project(..., include=['good'])"), message
    assert load_project(tmp_path, include=["good"])["good"].task_ids == ["a"]


def test_a_load_error_names_no_other_workflow_when_none_loaded(tmp_path):
    write(tmp_path, "bad.dig", "+a:\n  emr>:\n")
    write(tmp_path, "worse.dig", "+a:\n  td>: q.sql\n")
    with pytest.raises(DigLoadError) as info:
        load_project(tmp_path, dag_id_prefix="team_")
    assert "asked for load" not in str(info.value)
    assert info.value.loaded == []
    write(tmp_path, "fine.dig", "+a:\n  echo>: fine\n")
    with pytest.raises(DigLoadError) as info:
        load_project(tmp_path, include=["fine", "bad"], dag_id_prefix="team_")
    assert info.value.loaded == ["fine"]  # workflow names, as include takes them, not dag ids
    assert pickle.loads(pickle.dumps(info.value)).loaded == ["fine"]  # Airflow may pickle the error


def test_include_that_matches_nothing_names_the_workflows_there(tmp_path):
    write(tmp_path, "one.dig", "+a:\n  echo>: a\n")
    with pytest.raises(DigLoadError, match=r"include='tw\*'.*no workflow file matches.*one"):
        load_project(tmp_path, include=["tw*"])
    with pytest.raises(DigLoadError, match="project folder does not exist"):
        load_project(tmp_path / "missing")


def test_operators_that_use_do_raise_no_misleading_warning(tmp_path, caplog):
    """``if>`` and ``for_range>`` read ``_do`` (and ``_else_do``) themselves: no warning may say that
    Digdag ignores them."""
    caplog.set_level("WARNING")
    write(
        tmp_path, "branch.dig", "+maybe:\n  if>: true\n  _do:\n    echo>: yes\n  _else_do:\n    echo>: no\n"
    )
    write(tmp_path, "ranges.dig", "+r:\n  for_range>: {from: 0, to: 2, step: 1}\n  _do:\n    echo>: x\n")
    assert sorted(load_project(tmp_path)) == ["branch", "ranges"]
    assert not [r for r in caplog.records if "is not used by" in r.getMessage()]


def test_a_broken_included_file_is_reported_for_the_workflow_that_includes_it(tmp_path):
    """The message names the workflow asked for, not the file where the problem is."""
    write(tmp_path, "shared.dig", "+a: {\n  sh>: echo one\n  echo>: two\n")  # no closing brace
    message = load_error(tmp_path, "main", "+first:\n  echo>: hi\n+step:\n  !include : shared.dig\n")
    assert message.startswith("Digdag workflow(s) main cannot be loaded"), message
    assert "shared.dig, line" in message
