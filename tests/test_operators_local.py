"""sh>, py> and rb> on the local executor, run for real by Airflow (``dag.test()`` on SQLite).

Every DAG here uses a small Digdag-style project written to a temp folder (``project`` fixture).
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pendulum
import pytest

from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator
from airflow_cmdexec_provider.params import stable_id

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

STEPS_PY = """
import json
import sys

import digdag


def store_a():
    print("py> storing a")
    digdag.env.store(a=1, shared={"from_py": True})


def read_a_and_b(a, b, shared):
    print("py> read a=%s b=%s shared=%s" % (json.dumps(a), json.dumps(b), json.dumps(shared, sort_keys=True)))
    digdag.env.store(c=a + b["n"])


def bind(greeting, count=1, unused_default="dflt"):
    print("bind greeting=%s count=%s unused_default=%s" % (greeting, count, unused_default))


def all_kwargs(**kwargs):
    print("kwargs keys: " + ",".join(sorted(k for k in kwargs if not k.startswith("session_uuid"))))
    print("kwargs greeting=%s count=%s date=%s"
          % (kwargs["greeting"], kwargs["count"], kwargs["session_date"]))


def mixed(greeting, **rest):
    print("mixed greeting=%s rest_has_greeting=%s rest_count=%s"
          % (greeting, "greeting" in rest, rest["count"]))


def show_params():
    params = digdag.env.params
    print("params greeting=%s task_name=%s" % (params["greeting"], params["task_name"]))


def store_and_export():
    digdag.env.store({"kept": "yes"})
    digdag.env.export(exported="no-effect")


def needs(required_arg, optional_arg=None):
    print("never printed")


def boom():
    helper_that_raises()


def helper_that_raises():
    raise ValueError("boom from user code")


def store_datetime():
    import datetime

    digdag.env.store(when=datetime.datetime(2026, 1, 1))


def exit_with(code):
    sys.exit(code)


def interpreter():
    print("interpreter write_through=%s argv0=%s"
          % (sys.stdout.write_through, sys.argv[0].rsplit("/", 1)[-1]))


class Greeter(object):
    def __init__(self, greeting):
        self.greeting = greeting

    def hello(self, name="world"):
        print("Greeter.hello %s %s" % (self.greeting, name))
        digdag.env.store(greeted=name)


class Job(object):
    def run(self, count):
        print("Job.run count=%s" % count)
"""

PKG_MOD_PY = """
def func(greeting):
    print("pkg.mod.func %s" % greeting)
"""

WF_RB = """
module Mod
  class Klass
    def self.meth(req, opt = "opt-default", keyreq:, key: "key-default", **rest)
      puts "Mod::Klass.meth req=#{req} opt=#{opt} keyreq=#{keyreq} key=#{key} rest_count=#{rest[:count]} " \\
           "rest_has_req=#{rest.key?(:req)}"
    end
  end
end

class Inst
  def initialize(greeting)
    @greeting = greeting
  end

  def hello(name = "world")
    puts "Inst#hello #{@greeting} #{name}"
  end
end

class Cls
  def self.go(x)
    puts "Cls.go x=#{x}"
  end
end

class Store
  def self.b(a)
    puts "rb> read a=#{a}"
    Digdag.env.store(b: {n: 10}, from_rb: Digdag.env.params["task_name"])
  end

  def self.bad_value
    Digdag.env.store(when: Time.now)
  end

  def self.boom
    helper
  end

  def self.helper
    raise ArgumentError, "boom from ruby code"
  end
end

def top_level(greeting)
  puts "top_level #{greeting} params_count=#{Digdag.env.params['count']}"
end
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "steps.py").write_text(STEPS_PY)
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mod.py").write_text(PKG_MOD_PY)
    (root / "lib").mkdir()
    (root / "lib" / "wf.rb").write_text(WF_RB)
    (root / "sub").mkdir()
    script = root / "scripts" / "hello.sh"
    script.parent.mkdir()
    script.write_text('#!/bin/sh\necho "script in $(pwd) greeting=$greeting"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return root


def _dag(dag_id: str, **kwargs):
    from airflow.sdk import DAG

    kwargs.setdefault("params", {"greeting": "hello", "count": 3})
    return DAG(dag_id, schedule=None, start_date=START, catchup=False, **kwargs)


def _command_output(result, task_id: str) -> list[str]:
    """The lines the command printed (logged by the operator), without Airflow's own records."""
    return [
        r.message
        for r in result.records
        if r.task_id == task_id and ".operators." in r.logger and "airflow_cmdexec_provider" in r.logger
    ]


# -- sh> ----------------------------------------------------------------------------------------------------


def test_sh_params_become_env_vars(run_dag, project):
    params = {
        "text": "two words",
        "an_int": 42,
        "a_bool": True,
        "a_list": [1, "x", None],
        "a_dict": {"k": "v", "n": 1},
        "a.b": "dotted",
        "a-b": "dashed",
    }
    with _dag("sh_params_env", params=params) as dag:
        ShOperator(
            task_id="show",
            project_dir=str(project),
            command='echo "text=$text|int=$an_int|bool=$a_bool|list=$a_list|dict=$a_dict"\n'
            'echo "date=$session_date|task=$task_name|attempt=$attempt_id|tz=$timezone"\n'
            "env | grep -c -E '^a[.-]b=' || true",
        )
    result = run_dag(dag, logical_date=pendulum.datetime(2026, 2, 3, 4, 5, 6, tz="UTC"))
    assert result.state == "success", result.error_text("show")
    attempt = stable_id("attempt", "sh_params_env", result.run_id, "0")  # Digdag's attempt_id: an integer
    assert _command_output(result, "show") == [
        'text=two words|int=42|bool=true|list=[1,"x",null]|dict={"k":"v","n":1}',
        f"date=2026-02-03|task=+sh_params_env+show|attempt={attempt}|tz=UTC",
        "0",  # "a.b" and "a-b" are not valid variable names: skipped
    ]


def test_sh_param_values_are_never_interpolated_into_the_script(run_dag, project, tmp_path):
    pwned = tmp_path / "pwned-XYZ"
    evil = f"$(touch {pwned}); `touch {pwned}`"
    with _dag("sh_injection", params={"evil": evil}) as dag:
        ShOperator(
            task_id="echo", project_dir=str(project), command='echo "quoted=$evil"; echo unquoted=$evil'
        )
    result = run_dag(dag)
    assert result.state == "success", result.error_text("echo")
    assert not pwned.exists()
    assert _command_output(result, "echo") == [f"quoted={evil}", f"unquoted={evil}"]


def test_sh_env_goes_on_top_of_params_and_the_worker_env_is_inherited(run_dag, project, monkeypatch):
    monkeypatch.setenv("CMDEXEC_FROM_WORKER", "worker-value")
    with _dag("sh_env_on_top", params={"X": "from-param", "Y": "param-only"}) as dag:
        ShOperator(
            task_id="show",
            project_dir=str(project),
            env={"X": "from-env", "N": 5, "TEMPLATED": "{{ params.Y }}-rendered"},
            command='echo "X=$X Y=$Y N=$N T=$TEMPLATED W=$CMDEXEC_FROM_WORKER"',
        )
    result = run_dag(dag)
    assert result.state == "success", result.error_text("show")
    assert _command_output(result, "show") == [
        "X=from-env Y=param-only N=5 T=param-only-rendered W=worker-value"
    ]


def test_sh_default_shell_and_custom_shell_list(run_dag, project):
    show = 'echo "exe=$(readlink /proc/$$/exe) script=$(basename "$0") opts=$-"'
    with _dag("sh_shells") as dag:
        ShOperator(task_id="default_sh", project_dir=str(project), command=show)
        ShOperator(
            task_id="bash_e",
            project_dir=str(project),
            shell=["/bin/bash", "-e"],
            command=show + '\n[[ -n "$greeting" ]] && echo double-brackets-ok\nfalse\necho not-reached',
        )
        ShOperator(task_id="bash_str", project_dir=str(project), shell="/bin/bash", command=show)
    result = run_dag(dag)
    sh_exe, bash_exe = os.path.realpath("/bin/sh"), os.path.realpath("/bin/bash")

    default_lines = _command_output(result, "default_sh")
    assert len(default_lines) == 1
    assert default_lines[0].startswith(f"exe={sh_exe} script=runner.sh opts=")

    assert result.task_states["bash_e"] == "failed"
    bash_lines = _command_output(result, "bash_e")
    assert bash_lines[0].startswith(f"exe={bash_exe} script=runner.sh opts=")
    assert "e" in bash_lines[0].split("opts=")[1]  # the list's "-e" reached bash
    assert bash_lines[1:] == ["double-brackets-ok"]  # and stopped the script at `false`
    assert result.error_text("bash_e") == "Task sh_shells.bash_e: command failed with code 1"

    str_lines = _command_output(result, "bash_str")
    assert len(str_lines) == 1
    assert str_lines[0].startswith(f"exe={bash_exe} script=runner.sh opts=")
    assert "e" not in str_lines[0].split("opts=")[1]


def test_sh_runs_in_the_project_or_workdir_and_runs_project_scripts(run_dag, project):
    with _dag("sh_where") as dag:
        ShOperator(task_id="root", project_dir=str(project), command="pwd")
        ShOperator(task_id="sub", project_dir=str(project), workdir="sub", command="pwd")
        ShOperator(task_id="script", project_dir=str(project), command="scripts/hello.sh")
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert _command_output(result, "root") == [str(project.resolve())]
    assert _command_output(result, "sub") == [str((project / "sub").resolve())]
    assert _command_output(result, "script") == [f"script in {project.resolve()} greeting=hello"]


def test_sh_non_zero_exit_fails_with_the_code(run_dag, project):
    with _dag("sh_exit") as dag:
        ShOperator(task_id="fails", project_dir=str(project), command="echo before; exit 3")
    result = run_dag(dag)
    assert result.state == "failed"
    assert result.task_states["fails"] == "failed"
    assert result.error_text("fails") == "Task sh_exit.fails: command failed with code 3"
    assert _command_output(result, "fails") == ["before"]
    assert not result.has_xcom("fails")


# -- py> ----------------------------------------------------------------------------------------------------


def test_py_method_forms_and_argument_binding(run_dag, project):
    with _dag("py_forms") as dag:
        PyOperator(task_id="func", project_dir=str(project), method="steps.bind")
        PyOperator(task_id="kwargs", project_dir=str(project), method="steps.all_kwargs")
        PyOperator(task_id="mixed", project_dir=str(project), method="steps.mixed")
        PyOperator(task_id="class_method", project_dir=str(project), method="steps.Greeter.hello")
        PyOperator(task_id="class_run", project_dir=str(project), method="steps.Job")
        PyOperator(task_id="package", project_dir=str(project), method="pkg.mod.func")
        PyOperator(task_id="env_params", project_dir=str(project), method="steps.show_params")
    result = run_dag(dag, logical_date=pendulum.datetime(2026, 5, 6, tz="UTC"))
    assert result.state == "success", result.errors
    assert _command_output(result, "func") == ["bind greeting=hello count=3 unused_default=dflt"]
    kwargs_lines = _command_output(result, "kwargs")
    keys = kwargs_lines[0].removeprefix("kwargs keys: ").split(",")
    assert {
        "greeting",
        "count",
        "session_time",
        "session_date",
        "task_name",
        "attempt_id",
        "timezone",
    } <= set(keys)
    assert kwargs_lines[1] == "kwargs greeting=hello count=3 date=2026-05-06"
    assert _command_output(result, "mixed") == ["mixed greeting=hello rest_has_greeting=False rest_count=3"]
    assert _command_output(result, "class_method") == ["Greeter.hello hello world"]
    assert result.xcom("class_method") == {"greeted": "world"}
    assert _command_output(result, "class_run") == ["Job.run count=3"]
    assert _command_output(result, "package") == ["pkg.mod.func hello"]
    assert _command_output(result, "env_params") == ["params greeting=hello task_name=+py_forms+env_params"]


def test_py_python_as_string_or_list(run_dag, project, monkeypatch):
    with _dag("py_interpreter") as dag:
        PyOperator(task_id="default", project_dir=str(project), method="steps.interpreter")
        PyOperator(task_id="as_str", project_dir=str(project), method="steps.interpreter", python="python3")
        PyOperator(
            task_id="as_list", project_dir=str(project), method="steps.interpreter", python=["python3", "-u"]
        )
    # -u is what tells the list form apart: stdout becomes write-through
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert _command_output(result, "default") == ["interpreter write_through=False argv0=runner.py"]
    assert _command_output(result, "as_str") == ["interpreter write_through=False argv0=runner.py"]
    assert _command_output(result, "as_list") == ["interpreter write_through=True argv0=runner.py"]


def test_py_export_logs_a_warning_and_has_no_effect(run_dag, project):
    with _dag("py_export") as dag:
        first = PyOperator(task_id="first", project_dir=str(project), method="steps.store_and_export")
        second = ShOperator(
            task_id="second",
            project_dir=str(project),
            command='echo "kept=$kept exported=${exported:-unset}"',
        )
        first >> second
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert result.xcom("first") == {"kept": "yes"}
    warnings = [r for r in result.records if r.task_id == "first" and r.level == "warning"]
    assert any("digdag.env.export(['exported']) has no effect" in r.message for r in warnings), warnings
    assert _command_output(result, "second") == ["kept=yes exported=unset"]


def test_py_sys_exit(run_dag, project):
    """As in Digdag any SystemExit fails, even sys.exit(0) (then with code 1); a non-zero code is kept."""
    with _dag("py_exit", params={"code": 0}) as dag:
        PyOperator(task_id="zero", project_dir=str(project), method="steps.exit_with")
        PyOperator(task_id="three", project_dir=str(project), method="steps.exit_with", params={"code": 3})
    result = run_dag(dag)
    assert result.task_states == {"zero": "failed", "three": "failed"}
    hint = (
        "Possible cause: Invalid python module call, duplicate module name with standard library (SystemExit)"
    )
    for task_id, code, exit_code in (("zero", 0, 1), ("three", 3, 3)):
        error = result.error_text(task_id)
        assert error.startswith(
            f"Task py_exit.{task_id}: Python command failed with code {exit_code}\n"
            f"Error messages from python: Failed to call python command with code:{code} {hint}\n"
        ), error
        assert "sys.exit(code)" in error


# -- rb> ----------------------------------------------------------------------------------------------------


def test_rb_method_forms_and_argument_binding(run_dag, project):
    params = {"greeting": "hello", "count": 3, "req": "R", "keyreq": "KR", "x": 7, "name": "N"}
    with _dag("rb_forms", params=params) as dag:
        RbOperator(task_id="mod_klass", project_dir=str(project), require="lib/wf", method="Mod::Klass.meth")
        RbOperator(task_id="instance", project_dir=str(project), require="lib/wf", method="Inst.hello")
        RbOperator(task_id="class_method", project_dir=str(project), require="lib/wf", method="Cls.go")
        RbOperator(task_id="top_level", project_dir=str(project), require="lib/wf", method="top_level")
        RbOperator(
            task_id="ruby_list",
            project_dir=str(project),
            require="lib/wf",
            method="Cls.go",
            ruby=["ruby", "-W0"],
        )
    result = run_dag(dag)
    assert result.state == "success", result.errors
    # req / opt (absent: default) / keyreq / key (absent: default) / keyrest (all params, symbols)
    assert _command_output(result, "mod_klass") == [
        "Mod::Klass.meth req=R opt=opt-default keyreq=KR key=key-default rest_count=3 rest_has_req=true"
    ]
    assert _command_output(result, "instance") == ["Inst#hello hello N"]  # initialize and method both bound
    assert _command_output(result, "class_method") == ["Cls.go x=7"]
    assert _command_output(result, "top_level") == ["top_level hello params_count=3"]
    assert _command_output(result, "ruby_list") == ["Cls.go x=7"]


def test_rb_optional_positional_is_given_when_present(run_dag, project):
    with _dag("rb_opt", params={"req": "R", "opt": "O", "keyreq": "KR", "key": "K"}) as dag:
        RbOperator(task_id="meth", project_dir=str(project), require="lib/wf", method="Mod::Klass.meth")
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert _command_output(result, "meth") == [
        "Mod::Klass.meth req=R opt=O keyreq=KR key=K rest_count= rest_has_req=true"
    ]


# -- stored params -------------------------------------------------------------------------------------------


def test_stored_values_flow_down_the_chain(run_dag, project):
    from airflow.sdk import task

    with _dag("store_chain") as dag:
        py_a = PyOperator(task_id="py_store_a", project_dir=str(project), method="steps.store_a")
        sh_none = ShOperator(
            task_id="sh_no_store", project_dir=str(project), command='echo "sh sees a=$a shared=$shared"'
        )
        rb_b = RbOperator(task_id="rb_store_b", project_dir=str(project), require="lib/wf", method="Store.b")

        @task
        def plain_middle(ti=None):
            pulled = ti.xcom_pull(task_ids="rb_store_b")
            print(f"plain task pulled {sorted(pulled.items())}")
            return {"a": "a plain task's return value is not a store"}

        py_read = PyOperator(task_id="py_read", project_dir=str(project), method="steps.read_a_and_b")
        sh_env = ShOperator(
            task_id="sh_env", project_dir=str(project), command='echo "a=$a b=$b c=$c from_rb=$from_rb"'
        )

        @task
        def plain_end(ti=None):
            return ti.xcom_pull(task_ids="sh_env")

        py_a >> sh_none >> rb_b >> plain_middle() >> py_read >> sh_env >> plain_end()

    result = run_dag(dag)
    assert result.state == "success", result.errors
    stored_a = {"a": 1, "shared": {"from_py": True}}
    stored_ab = {**stored_a, "b": {"n": 10}, "from_rb": "+store_chain+rb_store_b"}
    assert result.xcom("py_store_a") == stored_a
    assert result.xcom("sh_no_store") == stored_a  # stores nothing, passes everything on
    assert result.xcom("rb_store_b") == stored_ab
    assert _command_output(result, "sh_no_store") == ['sh sees a=1 shared={"from_py":true}']
    assert _command_output(result, "rb_store_b") == ["rb> read a=1"]
    assert _command_output(result, "py_read") == ['py> read a=1 b={"n": 10} shared={"from_py": true}']
    assert result.xcom("py_read") == {**stored_ab, "c": 11}
    assert _command_output(result, "sh_env") == ['a=1 b={"n":10} c=11 from_rb=+store_chain+rb_store_b']
    assert result.xcom("plain_end") == {**stored_ab, "c": 11}


def test_stored_values_win_over_params_and_nearer_stores_win(run_dag, project):
    with _dag(
        "store_precedence", params={"greeting": "hi", "greeted": "from-params", "name": "first"}
    ) as dag:
        first = PyOperator(task_id="first", project_dir=str(project), method="steps.Greeter.hello")
        second = PyOperator(
            task_id="second",
            project_dir=str(project),
            method="steps.Greeter.hello",
            params={"name": "second"},
        )
        show = ShOperator(task_id="show", project_dir=str(project), command='echo "greeted=$greeted"')
        first >> second >> show
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert result.xcom("first") == {"greeted": "first"}
    assert result.xcom("second") == {"greeted": "second"}
    assert _command_output(result, "show") == ["greeted=second"]


# -- errors --------------------------------------------------------------------------------------------------


def _assert_reported_once(result, task_id: str, needle: str) -> None:
    """``needle`` is in the task's failure (exception) once, and never in the command's own output."""
    assert needle in result.error_text(task_id)
    assert not any(needle in line for line in _command_output(result, task_id))
    assert not any("Traceback (most recent call last)" in line for line in _command_output(result, task_id))
    assert result.log(task_id).count(needle) == 1, result.log(task_id)


def test_python_exception_fails_with_class_message_and_user_backtrace(run_dag, project):
    with _dag("py_error") as dag:
        PyOperator(task_id="boom", project_dir=str(project), method="steps.boom")
    result = run_dag(dag)
    assert result.task_states["boom"] == "failed"
    error = result.error_text("boom")
    assert error.startswith(
        "Task py_error.boom: Python command failed with code 1\n"
        'Error messages from python: boom from user code (ValueError)\n\tfrom File "'
    ), error
    assert "steps.py" in error
    assert "in boom" in error
    assert "in helper_that_raises" in error
    assert 'raise ValueError("boom from user code")' in error
    assert "runner.py" not in error
    assert "_call" not in error
    _assert_reported_once(result, "boom", "boom from user code (ValueError)")


def test_ruby_exception_fails_with_class_message_and_user_backtrace(run_dag, project):
    with _dag("rb_error") as dag:
        RbOperator(task_id="boom", project_dir=str(project), require="lib/wf", method="Store.boom")
    result = run_dag(dag)
    assert result.task_states["boom"] == "failed"
    error = result.error_text("boom")
    assert error.startswith(
        "Task rb_error.boom: Ruby command failed with code 1: boom from ruby code (ArgumentError)\n\tfrom "
    ), error
    assert "lib/wf.rb" in error
    assert "helper" in error
    assert "runner.rb" not in error
    _assert_reported_once(result, "boom", "boom from ruby code (ArgumentError)")


@pytest.mark.parametrize(
    ("operator", "kwargs", "expected"),
    [
        (
            PyOperator,
            {"method": "no_such_module.func"},
            "No module named 'no_such_module' (ModuleNotFoundError)",
        ),
        (
            PyOperator,
            {"method": "steps.no_such_func"},
            "Module 'steps' has no attribute 'no_such_func' (AttributeError)",
        ),
        (
            PyOperator,
            {"method": "steps.Greeter.no_such"},
            "Class 'steps.Greeter' has no method 'no_such' (AttributeError)",
        ),
        (
            PyOperator,
            {"method": "steps.needs"},
            "Method 'steps.needs' requires parameter 'required_arg' but not set (TypeError)",
        ),
        (
            PyOperator,
            {"method": "steps.store_datetime"},
            "digdag.env.store: the value of 'when' is not JSON-serialisable (datetime",
        ),
        (
            RbOperator,
            {"method": "Cls.nope", "require": "lib/wf"},
            (
                "Cls has no method 'nope' (neither a public instance method nor a method of the class "
                "itself) (NoMethodError)"
            ),
        ),
        (
            RbOperator,
            {"method": "NoSuchClass.meth", "require": "lib/wf"},
            "uninitialized constant NoSuchClass (NameError)",
        ),
        (
            RbOperator,
            {"method": "Cls.go", "require": "lib/no_such_file"},
            "cannot load such file -- lib/no_such_file (LoadError)",
        ),
        (
            RbOperator,
            {"method": "Store.b", "require": "lib/wf"},
            "Method 'Store.b' requires parameter 'a' but not set (ArgumentError)",
        ),
        (
            RbOperator,
            {"method": "Store.bad_value", "require": "lib/wf"},
            "Digdag.env.store: the value of 'when' is not JSON-serialisable (Time)",
        ),
    ],
    ids=[
        "py-unknown-module",
        "py-unknown-func",
        "py-unknown-method",
        "py-missing-arg",
        "py-store-datetime",
        "rb-unknown-method",
        "rb-unknown-class",
        "rb-unknown-require",
        "rb-missing-arg",
        "rb-store-time",
    ],
)
def test_user_code_errors_name_the_task_and_the_problem(run_dag, project, operator, kwargs, expected):
    dag_id = f"user_error_{operator.__name__}_{abs(hash(str(kwargs))) % 10**8}"
    with _dag(dag_id, params={"greeting": "hello"}) as dag:
        operator(task_id="bad", project_dir=str(project), **kwargs)
    result = run_dag(dag)
    assert result.task_states["bad"] == "failed"
    error = result.error_text("bad")
    first_line = (
        "Python command failed with code 1\nError messages from python: "
        if operator is PyOperator
        else "Ruby command failed with code 1: "
    )
    assert error.startswith(f"Task {dag_id}.bad: {first_line}"), error
    assert expected in error
    _assert_reported_once(result, "bad", expected)
