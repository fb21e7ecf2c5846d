"""py>/rb> runners against Digdag's behaviour, in real DAG runs (``dag.test()``) with real interpreters.

- Ruby: the ``DigdagEnv`` constants are the hashes ``Digdag.env`` uses; methods resolve as Digdag's
  ``send`` does (private methods, a top-level method reached through a class, a user's own ``run``).
- py>: any ``SystemExit`` fails the task with Digdag's message and hint; a non-zero code is kept.
- The failure report has Digdag's layout and is reported once.
- ``script=``: Digdag's ``script:`` form, the script run instead of the runner.
- output.json is read without following links, only if it is a regular file, and at most 64 MiB.
- On Docker (the case the output.json rules are for): a container replacing output.json with a
  symlink to /dev/zero is refused; script= and the Ruby constants work in the container too.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from pathlib import Path

import pytest

from airflow_cmdexec_provider.exceptions import CmdExecConfigError
from airflow_cmdexec_provider.operators import PyOperator, RbOperator
from airflow_cmdexec_provider.operators.runner import OUTPUT_LIMIT, RunnerOperator, UnusableOutput

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

FIDELITY_RB = """\
class Consts
  def self.check
    same = DigdagEnv::PARAMS.equal?(Digdag.env.params) &&
           DigdagEnv::SUBTASK_CONFIG.equal?(Digdag.env.subtask_config) &&
           DigdagEnv::EXPORT_PARAMS.equal?(Digdag.env.export_params) &&
           DigdagEnv::STORE_PARAMS.equal?(Digdag.env.store_params) &&
           DigdagEnv::STATE_PARAMS.equal?(Digdag.env.state_params)
    puts "same objects: #{same}"
    puts "PARAMS greeting: #{DigdagEnv::PARAMS['greeting']}"
    DigdagEnv::STORE_PARAMS[:via_constant] = 'stored through the constant'
    Digdag.env.store(via_env: 1)
    puts "STORE_PARAMS keys: #{DigdagEnv::STORE_PARAMS.keys.map(&:inspect).join(', ')}"
    DigdagEnv::EXPORT_PARAMS[:exported] = true
  end
end

# A user's own top-level run: rb>: run must call it, not the runner's (review L4).
def run(greeting)
  puts "the user's run got #{greeting}"
  Digdag.env.store(ran: 'user run')
end

# Digdag's send reaches a top-level method through a class (a private method of Object), as its
# examples/tasks/generate_subtasks.rb relies on.
module Batch
  class Splitter
  end
end

def handle(index)
  puts "top-level handle index=#{index}"
end

class Vault
  def self.open_secret(index)
    puts "private class method index=#{index}"
  end
  private_class_method :open_secret

  def self.boom
    inner
  end

  def self.inner
    raise 'boom from ruby'
  end

  def self.die
    Process.kill(:KILL, Process.pid)
  end
end
"""

FIDELITY_PY = f"""\
import os
import signal
import sys

import digdag
import digdag_env


def exit_plain():
    sys.exit()


def exit_text():
    sys.exit("leaving early")


def store_directly():
    digdag_env.store_params["direct"] = "through digdag_env"
    digdag.env.store(via_store=2)


def store_unserialisable_directly():
    digdag.env.store_params["bad"] = object()


def outer():
    inner()


def inner():
    raise ValueError("boom from python")


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def replace_output_with_symlink(target):
    # What a container sharing the IO dir could do once the runner wrote output.json.
    out = sys.argv[3]
    os.symlink(target, out)
    os._exit(0)


def write_oversized_output():
    with open(sys.argv[3], "w") as f:
        f.truncate({OUTPUT_LIMIT + 1})
    os._exit(0)
"""

# A project module named like a standard library module: py> reaches the standard library's
# tokenize.main, which exits (argparse rejects the runner's arguments): Digdag's hint is for this.
TOKENIZE_PY = "def main():\n    print('the project tokenize, never reached')\n"

PY_SCRIPT = """\
import json
import sys

with open(sys.argv[1]) as f:
    params = json.load(f)["params"]
print("py script sees greeting=%s and {{ not_a_template }}" % params["greeting"])
with open(sys.argv[2], "w") as f:
    json.dump({"store_params": {"from_py_script": params["greeting"] + "!"}}, f)
"""

RB_SCRIPT = """\
require 'json'
params = JSON.parse(File.read(ARGV[0]))['params']
puts "rb script sees greeting=#{params['greeting']} and #{helper_loaded_by_require}"
File.write(ARGV[1], JSON.generate('store_params' => { 'from_rb_script' => params['greeting'].upcase }))
"""

HELPER_RB = "def helper_loaded_by_require\n  'the required helper'\nend\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runners-fidelity")
    (root / "lib").mkdir()
    (root / "lib" / "fidelity.rb").write_text(FIDELITY_RB)
    (root / "lib" / "helper.rb").write_text(HELPER_RB)
    (root / "fidelity.py").write_text(FIDELITY_PY)
    (root / "tokenize.py").write_text(TOKENIZE_PY)
    (root / "worker_secret.json").write_text('{"store_params": {"stolen": "a file of the worker"}}')
    return root


def _dag(dag_id: str, **kwargs):
    from airflow.sdk import DAG

    kwargs.setdefault("params", {"greeting": "hello", "index": 2})
    return DAG(dag_id, schedule=None, start_date=START, catchup=False, **kwargs)


def _command_output(result, task_id: str) -> list[str]:
    """The lines the command printed (logged by the operator), without Airflow's own records."""
    return [
        r.message
        for r in result.records
        if r.task_id == task_id and r.level == "info" and "airflow_cmdexec_provider.operators." in r.logger
    ]


def _line(text: str, content: str) -> int:
    """The 1-based number of the one line of ``text`` that starts with ``content`` (after indentation)."""
    (number,) = [n for n, line in enumerate(text.splitlines(), 1) if line.strip().startswith(content.strip())]
    return number


def _assert_reported_once(result, task_id: str, needle: str) -> None:
    assert needle in result.error_text(task_id)
    assert not any(needle in line for line in _command_output(result, task_id))
    assert result.log(task_id).count(needle) == 1, result.log(task_id)


# -- rb>: DigdagEnv constants and send-style resolution ------------------------------------------------------


@pytest.fixture(scope="module")
def rb_run(run_dag, project):
    with _dag("rb_fidelity") as dag:
        for task_id, method in {
            "constants": "Consts.check",
            "top_level_run": "run",
            "through_a_class": "Batch::Splitter.handle",
            "private_class_method": "Vault.open_secret",
            "unknown_top_level": "no_such_method",
            "error_layout": "Vault.boom",
            "killed": "Vault.die",
        }.items():
            RbOperator(task_id=task_id, project_dir=str(project), require="lib/fidelity", method=method)
    return run_dag(dag)


def test_rb_digdag_env_constants_are_the_hashes_digdag_env_uses(rb_run):
    assert rb_run.task_states["constants"] == "success", rb_run.error_text("constants")
    assert _command_output(rb_run, "constants") == [
        "same objects: true",
        "PARAMS greeting: hello",
        "STORE_PARAMS keys: :via_constant, :via_env",  # symbols, as Digdag's keyword arguments give
    ]
    # Adding to the constant stores, as in Digdag; so does adding to EXPORT_PARAMS (then dropped).
    assert rb_run.xcom("constants") == {"via_constant": "stored through the constant", "via_env": 1}
    assert any(
        "digdag.env.export(['exported']) has no effect" in r.message
        for r in rb_run.records
        if r.task_id == "constants" and r.level == "warning"
    )


def test_rb_a_users_top_level_run_is_called_not_the_runners(rb_run):
    assert rb_run.task_states["top_level_run"] == "success", rb_run.error_text("top_level_run")
    assert _command_output(rb_run, "top_level_run") == ["the user's run got hello"]
    assert rb_run.xcom("top_level_run") == {"ran": "user run"}


def test_rb_methods_resolve_like_digdags_send(rb_run):
    for task_id in ("through_a_class", "private_class_method"):
        assert rb_run.task_states[task_id] == "success", rb_run.error_text(task_id)
    assert _command_output(rb_run, "through_a_class") == ["top-level handle index=2"]
    assert _command_output(rb_run, "private_class_method") == ["private class method index=2"]
    assert rb_run.error_text("unknown_top_level") == (
        "Task rb_fidelity.unknown_top_level: Ruby command failed with code 1: "
        "there is no top-level method 'no_such_method' (NoMethodError)"
    )


def test_rb_failure_report_has_digdags_layout_and_is_reported_once(rb_run, project):
    error = rb_run.error_text("error_layout")
    frame = rf"\tfrom {re.escape(str(project))}/lib/fidelity\.rb:(\d+):in [^\n]*"
    match = re.fullmatch(
        r"Task rb_fidelity\.error_layout: Ruby command failed with code 1: boom from ruby \(RuntimeError\)\n"
        rf"{frame}inner'\n{frame}boom'",
        error,
    )
    assert match, error
    assert [int(n) for n in match.groups()] == [
        _line(FIDELITY_RB, "raise 'boom from ruby'"),
        _line(FIDELITY_RB, "    inner"),
    ]
    _assert_reported_once(rb_run, "error_layout", "boom from ruby (RuntimeError)")
    assert rb_run.error_text("killed") == (
        "Task rb_fidelity.killed: Ruby command failed with code 137\n"
        "Error messages from CommandExecutor: killed by signal SIGKILL\n"
        "(no output.json: the command failed before the runner could report; see the log above)"
    )


# -- py>: SystemExit, direct stores, report layout, output.json safety ---------------------------------------


@pytest.fixture(scope="module")
def py_run(run_dag, project):
    with _dag(
        "py_fidelity", params={"greeting": "hello", "target": str(project / "worker_secret.json")}
    ) as dag:
        for task_id, method in {
            "exit_plain": "fidelity.exit_plain",
            "exit_text": "fidelity.exit_text",
            "stdlib_shadow": "tokenize.main",
            "store_directly": "fidelity.store_directly",
            "store_unserialisable": "fidelity.store_unserialisable_directly",
            "error_layout": "fidelity.outer",
            "killed": "fidelity.die",
            "symlinked_output": "fidelity.replace_output_with_symlink",
            "oversized_output": "fidelity.write_oversized_output",
        }.items():
            PyOperator(task_id=task_id, project_dir=str(project), method=method)
    return run_dag(dag)


HINT = "Possible cause: Invalid python module call, duplicate module name with standard library"


def test_py_any_system_exit_fails_with_digdags_message_and_hint(py_run):
    assert py_run.error_text("exit_plain").startswith(
        "Task py_fidelity.exit_plain: Python command failed with code 1\n"
        f"Error messages from python: Failed to call python command with code:0 {HINT} (SystemExit)\n"
        '\tfrom File "'
    ), py_run.error_text("exit_plain")
    assert py_run.error_text("exit_text").startswith(
        "Task py_fidelity.exit_text: Python command failed with code 1\n"
        "Error messages from python: Failed to call python command with code:1 "
        f"{HINT} (sys.exit message: leaving early) (SystemExit)\n"
    ), py_run.error_text("exit_text")
    # The case the hint is for: the standard library's tokenize.main exits with argparse's code 2.
    assert py_run.error_text("stdlib_shadow").startswith(
        "Task py_fidelity.stdlib_shadow: Python command failed with code 2\n"
        f"Error messages from python: Failed to call python command with code:2 {HINT} (SystemExit)\n"
    ), py_run.error_text("stdlib_shadow")
    assert "the project tokenize" not in py_run.log("stdlib_shadow")
    for task_id in ("exit_plain", "exit_text", "stdlib_shadow"):
        assert py_run.task_states[task_id] == "failed"
        _assert_reported_once(py_run, task_id, f"{HINT}")


def test_py_digdag_env_dicts_store_when_changed_directly(py_run):
    assert py_run.task_states["store_directly"] == "success", py_run.error_text("store_directly")
    assert py_run.xcom("store_directly") == {"direct": "through digdag_env", "via_store": 2}
    assert py_run.error_text("store_unserialisable") == (
        "Task py_fidelity.store_unserialisable: Python command failed with code 1\n"
        "Error messages from python: a value stored by the task is not JSON-serialisable: "
        "Object of type object is not JSON serializable (TypeError)"
    )


def test_py_failure_report_has_digdags_layout_and_is_reported_once(py_run, project):
    fidelity_py = project / "fidelity.py"
    assert py_run.error_text("error_layout") == (
        "Task py_fidelity.error_layout: Python command failed with code 1\n"
        "Error messages from python: boom from python (ValueError)\n"
        f'\tfrom File "{fidelity_py}", line {_line(FIDELITY_PY, "    inner()")}, in outer\n'
        "\t    inner()\n"
        f'\tfrom File "{fidelity_py}", line {_line(FIDELITY_PY, "raise ValueError")}, in inner\n'
        '\t    raise ValueError("boom from python")'
    )
    _assert_reported_once(py_run, "error_layout", "boom from python (ValueError)")
    assert py_run.error_text("killed") == (
        "Task py_fidelity.killed: Python command failed with code 137\n"
        "Error messages from CommandExecutor: killed by signal SIGKILL\n"
        "(no output.json: the command failed before the runner could report; see the log above)"
    )


def test_py_output_json_is_not_followed_through_a_symlink_nor_read_beyond_the_cap(py_run):
    assert py_run.task_states["symlinked_output"] == "failed"
    assert not py_run.has_xcom("symlinked_output")  # the worker's file was not taken as the output
    assert py_run.error_text("symlinked_output") == (
        "Task py_fidelity.symlinked_output: output.json is a symbolic link "
        "(Too many levels of symbolic links): refused"
    )
    assert py_run.error_text("oversized_output") == (
        "Task py_fidelity.oversized_output: output.json is larger than 64 MiB: refused; store smaller values "
        "(large data belongs in files or external storage)"
    )


def test_read_output_refuses_what_is_not_a_small_regular_file(tmp_path):
    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it for reading must not wait for a writer
    big = tmp_path / "big.json"
    with big.open("w") as f:
        f.write('{"store_params": {"x": "')
        f.truncate(OUTPUT_LIMIT + 1)
    at_limit = tmp_path / "at_limit.json"
    at_limit.write_text('{"store_params": {"x": "' + "y" * (OUTPUT_LIMIT - 27) + '"}}')
    assert at_limit.stat().st_size == OUTPUT_LIMIT
    not_object = tmp_path / "list.json"
    not_object.write_text("[1, 2]")

    for path, problem in (
        (zero, "output.json is a symbolic link"),
        (fifo, "output.json is not a regular file: refused"),
        (big, "output.json is larger than 64 MiB: refused"),
        (not_object, "output.json is not a JSON object"),
    ):
        with pytest.raises(UnusableOutput, match=re.escape(problem)):
            RunnerOperator._read_output(path)
    assert RunnerOperator._read_output(tmp_path / "missing.json") is None
    assert len(RunnerOperator._read_output(at_limit)["store_params"]["x"]) == OUTPUT_LIMIT - 27


# -- script=: Digdag's script: form --------------------------------------------------------------------------

BAD_SCRIPT_TASKS = {
    "both": (
        PyOperator,
        {"method": "fidelity.outer", "script": "print(1)"},
        "give either method= (what to call) or script= (the Python script text), not both",
    ),
    "neither_py": (
        PyOperator,
        {},
        (
            "give method= with what to call, e.g. 'tasks.my_workflow.step1', or script= with the text of a "
            "Python script"
        ),
    ),
    "neither_rb": (
        RbOperator,
        {"require": "lib/helper"},
        "give method= with what to call, e.g. 'MyWorkflow.step1', or script= with the text of a Ruby script",
    ),
    "empty_script": (RbOperator, {"script": "  \n"}, "script is empty; give the text of the Ruby script"),
    "script_not_text": (PyOperator, {"script": 5}, "script is empty; give the text of the Python script"),
}


@pytest.fixture(scope="module")
def script_run(run_dag, project):
    with _dag("script_form") as dag:
        PyOperator(task_id="py_script", project_dir=str(project), script=PY_SCRIPT)
        RbOperator(task_id="rb_script", project_dir=str(project), script=RB_SCRIPT, require="lib/helper")
        PyOperator(task_id="no_output", project_dir=str(project), script="print('forgot output.json')")
        RbOperator(task_id="exits_4", project_dir=str(project), script="puts 'failing'; exit 4")
        for task_id, (operator, kwargs, _) in BAD_SCRIPT_TASKS.items():
            operator(task_id=task_id, project_dir=str(project), **kwargs)
    return run_dag(dag)


def test_script_runs_instead_of_the_runner_with_input_and_output_paths(script_run):
    for task_id in ("py_script", "rb_script"):
        assert script_run.task_states[task_id] == "success", script_run.error_text(task_id)
    # Not templated: Jinja's {{ }} reaches the script as written.
    assert _command_output(script_run, "py_script") == [
        "py script sees greeting=hello and {{ not_a_template }}"
    ]
    assert script_run.xcom("py_script") == {"from_py_script": "hello!"}
    # require= is loaded first (-r), with the working directory on the load path (-I), as in Digdag.
    assert _command_output(script_run, "rb_script") == [
        "rb script sees greeting=hello and the required helper"
    ]
    assert script_run.xcom("rb_script") == {"from_rb_script": "HELLO"}


def test_script_must_write_output_json_and_its_exit_code_counts(script_run):
    assert _command_output(script_run, "no_output") == ["forgot output.json"]
    assert script_run.error_text("no_output") == (
        "Task script_form.no_output: output.json does not exist although the Python command exited 0; the "
        "script did not write it (a script= must write output.json, the path in its second argument, as in "
        "Digdag)"
    )
    assert script_run.error_text("exits_4") == (
        "Task script_form.exits_4: Ruby command failed with code 4\n"
        "(no output.json: the command failed before the runner could report; see the log above)"
    )


@pytest.mark.parametrize("task_id", sorted(BAD_SCRIPT_TASKS))
def test_method_and_script_are_mutually_exclusive_with_clear_errors(script_run, task_id):
    assert script_run.task_states[task_id] == "failed"
    error = script_run.error(task_id)
    assert isinstance(error, CmdExecConfigError), type(error)
    assert str(error).startswith(f"Task script_form.{task_id}: {BAD_SCRIPT_TASKS[task_id][2]}"), str(error)
    assert _command_output(script_run, task_id) == []  # nothing ran


# -- on Docker -----------------------------------------------------------------------------------------------

SYMLINK_TO_DEV_ZERO_PY = """\
import os
import sys


def replace_output():
    import digdag
    digdag.env.store(never="seen")
    os.symlink("/dev/zero", sys.argv[3])
    os._exit(0)
"""

CONSTANTS_RB = """\
def store_through_constant
  DigdagEnv::STORE_PARAMS[:in_container] = DigdagEnv::PARAMS['greeting']
end
"""


@pytest.mark.docker
def test_on_docker_output_json_symlink_is_refused_and_script_and_constants_work(run_dag, tmp_path):
    from docker_helpers import IMAGE, docker, managed_containers, require_docker

    require_docker()
    # Unique, and not the other Docker tests' "dockertest" prefix: their leftover checks (which may run at
    # the same time on the shared Docker Engine) must not take these containers for theirs.
    dag_prefix = f"runners_fidelity_{uuid.uuid4().hex[:8]}"
    project = tmp_path / "project"
    project.mkdir()
    (project / "hostile.py").write_text(SYMLINK_TO_DEV_ZERO_PY)
    (project / "lib").mkdir()
    (project / "lib" / "helper.rb").write_text(HELPER_RB)
    (project / "constants.rb").write_text(CONSTANTS_RB)
    docker_params = {"image": IMAGE}
    with _dag(dag_prefix, default_args={"docker": docker_params, "command_executor": "docker"}) as dag:
        PyOperator(task_id="hostile", project_dir=str(project), method="hostile.replace_output")
        PyOperator(task_id="py_script", project_dir=str(project), script=PY_SCRIPT)
        RbOperator(task_id="rb_script", project_dir=str(project), script=RB_SCRIPT, require="lib/helper")
        RbOperator(
            task_id="constants",
            project_dir=str(project),
            method="store_through_constant",
            require="constants",
        )
    try:
        result = run_dag(dag)
    finally:
        left = managed_containers(dag_prefix)
        for name in left:
            docker("rm", "--force", name, check=False)
    assert left == []
    assert result.error_text("hostile") == (
        # The Docker backend copies the IO folder back through a safe tar extraction, which already
        # refuses the link, before the runner's own O_NOFOLLOW check could.
        f"Task {dag_prefix}.hostile: the container sent back an unsafe entry in its IO folder "
        "('output.json' is a link to an absolute path): refused"
    )
    for task_id in ("py_script", "rb_script", "constants"):
        assert result.task_states[task_id] == "success", result.error_text(task_id)
        assert "runs on the docker executor" in result.log(task_id)
    assert result.xcom("py_script") == {"from_py_script": "hello!"}
    assert result.xcom("rb_script") == {"from_rb_script": "HELLO"}
    assert result.xcom("constants") == {"in_container": "hello"}
