"""LocalBackend.run / kill on their own: working dir, environment, streaming, exit codes, process groups."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from airflow_cmdexec_provider.backends.base import CommandRequest, IoFile
from airflow_cmdexec_provider.backends.local import LocalBackend
from airflow_cmdexec_provider.exceptions import BackendError, CommandNotFound
from tests.process_helpers import pid_gone, wait_gone


def _request(project: Path, io_dir: Path, *argv, workdir: str = "", env=None) -> CommandRequest:
    return CommandRequest(
        task_label="dag.task",
        project_dir=project,
        workdir=workdir,
        io_dir=io_dir,
        command=tuple(argv),
        env=env or {},
    )


def _sh(project: Path, io_dir: Path, script: str, **kwargs) -> CommandRequest:
    return _request(project, io_dir, "/bin/sh", "-c", script, **kwargs)


@pytest.fixture
def dirs(tmp_path):
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    io_dir = tmp_path / "io"
    io_dir.mkdir()
    return project, io_dir


def _read_pids(path: Path, count: int, timeout: float = 120.0) -> list[int]:
    """Poll until the command wrote ``count`` pids; the timeout only keeps a broken test from hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            pids = [int(x) for x in path.read_text().split()]
            if len(pids) >= count:
                return pids
        time.sleep(0.02)
    raise AssertionError(f"the command did not write {count} pids to {path}")


# -- where and with what it runs ---------------------------------------------------------------------------


def test_runs_in_the_project_or_its_workdir(dirs):
    project, io_dir = dirs
    lines: list[str] = []
    assert LocalBackend().run(_sh(project, io_dir, "pwd"), lines.append).exit_code == 0
    assert LocalBackend().run(_sh(project, io_dir, "pwd", workdir="sub"), lines.append).exit_code == 0
    assert lines == [str(project), str(project / "sub")]


def test_io_files_are_resolved_in_the_io_dir(dirs):
    project, io_dir = dirs
    (io_dir / "runner.sh").write_text('echo from-io-script; echo "$0"\n')
    lines: list[str] = []
    result = LocalBackend().run(_request(project, io_dir, "/bin/sh", IoFile("runner.sh")), lines.append)
    assert result.exit_code == 0
    assert lines == ["from-io-script", str(io_dir / "runner.sh")]


def test_inherits_the_worker_environment_and_request_env_goes_on_top(dirs, monkeypatch):
    project, io_dir = dirs
    monkeypatch.setenv("CMDEXEC_INHERITED", "from-worker")
    monkeypatch.setenv("CMDEXEC_OVERRIDDEN", "from-worker")
    lines: list[str] = []
    request = _sh(
        project,
        io_dir,
        'echo "$CMDEXEC_INHERITED $CMDEXEC_OVERRIDDEN $CMDEXEC_ADDED"; echo "path=${PATH:+set}"',
        env={"CMDEXEC_OVERRIDDEN": "from-request", "CMDEXEC_ADDED": "added"},
    )
    assert LocalBackend().run(request, lines.append).exit_code == 0
    assert lines == ["from-worker from-request added", "path=set"]


def test_explicit_base_env_replaces_the_worker_environment(dirs, monkeypatch):
    project, io_dir = dirs
    monkeypatch.setenv("CMDEXEC_INHERITED", "from-worker")
    lines: list[str] = []
    backend = LocalBackend(base_env={"PATH": os.environ["PATH"], "ONLY": "this"})
    assert (
        backend.run(_sh(project, io_dir, 'echo "${CMDEXEC_INHERITED:-unset} $ONLY"'), lines.append).exit_code
        == 0
    )
    assert lines == ["unset this"]


# -- output ------------------------------------------------------------------------------------------------


def test_output_is_streamed_line_by_line_while_the_command_runs(dirs, tmp_path):
    """The command prints a line, then waits until the sink has seen it: only streaming can satisfy it.
    (It waits up to 120 s, so that a slow machine cannot fail it; without streaming it prints no-flag.)"""
    project, io_dir = dirs
    flag = tmp_path / "first-line-seen"
    seen: list[tuple[float, str]] = []

    def sink(line: str) -> None:
        seen.append((time.monotonic(), line))
        if line == "first":
            flag.touch()

    script = (
        "echo first; i=0; "
        f'while [ ! -e "{flag}" ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done; '
        f'if [ -e "{flag}" ]; then echo saw-flag; else echo no-flag; fi; sleep 0.3; echo last'
    )
    result = LocalBackend().run(_sh(project, io_dir, script), sink)
    ended = time.monotonic()
    assert result.exit_code == 0
    assert [line for _, line in seen] == ["first", "saw-flag", "last"]
    # the first line reached the sink before the process ended (it slept 0.3 s after "saw-flag")
    assert seen[0][0] < seen[-1][0] <= ended
    assert ended - seen[0][0] >= 0.25


def test_stdout_and_stderr_are_merged_in_order(dirs):
    project, io_dir = dirs
    lines: list[str] = []
    script = "echo out1; echo err1 >&2; echo out2; echo err2 >&2"
    assert LocalBackend().run(_sh(project, io_dir, script), lines.append).exit_code == 0
    assert lines == ["out1", "err1", "out2", "err2"]


def test_line_endings_last_partial_line_and_bad_utf8(dirs):
    project, io_dir = dirs
    lines: list[str] = []
    script = r"printf 'crlf\r\n'; printf 'caf\303\251 \377\n'; printf '\n'; printf 'no newline at end'"
    assert LocalBackend().run(_sh(project, io_dir, script), lines.append).exit_code == 0
    assert lines == ["crlf", "café \ufffd", "", "no newline at end"]


# -- how it ends -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 3, 255])
def test_exit_code_is_returned(dirs, code):
    project, io_dir = dirs
    result = LocalBackend().run(_sh(project, io_dir, f"exit {code}"), lambda line: None)
    assert (result.exit_code, result.reason) == (code, None)


def test_death_by_signal_is_reported_as_128_plus_signal(dirs):
    project, io_dir = dirs
    result = LocalBackend().run(_sh(project, io_dir, "kill -KILL $$"), lambda line: None)
    assert result.exit_code == 137
    assert result.reason == "killed by signal SIGKILL"


def test_missing_program_raises_command_not_found(dirs):
    project, io_dir = dirs
    with pytest.raises(CommandNotFound) as excinfo:
        LocalBackend().run(_request(project, io_dir, "/no/such/shell-xyz", "-c", "true"), lambda line: None)
    assert excinfo.value.program == "/no/such/shell-xyz"
    assert "not found on the worker" in str(excinfo.value)
    with pytest.raises(CommandNotFound) as excinfo:
        LocalBackend().run(_request(project, io_dir, "no-such-interpreter-xyz"), lambda line: None)
    assert excinfo.value.program == "no-such-interpreter-xyz"


def test_a_finished_command_does_not_wait_for_the_kill_grace(dirs):
    project, io_dir = dirs
    started = time.monotonic()
    assert (
        LocalBackend(kill_grace=60).run(_sh(project, io_dir, "echo done"), lambda line: None).exit_code == 0
    )
    assert time.monotonic() - started < 30  # it would take 60 s if the grace period were waited for


# -- kill and process groups ------------------------------------------------------------------------------


def _run_in_thread(backend: LocalBackend, request: CommandRequest):
    outcome: dict = {}
    lines: list[str] = []

    def target():
        try:
            outcome["result"] = backend.run(request, lines.append)
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome, lines


def test_kill_from_another_thread_terminates_the_whole_group(dirs, tmp_path):
    project, io_dir = dirs
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()

    def write_pid(name: str, pid: str) -> str:  # atomically: the test never reads a half-written file
        return f'echo {pid} > "{pid_dir}/{name}.tmp" && mv "{pid_dir}/{name}.tmp" "{pid_dir}/{name}"'

    # the shell, a background child and a grandchild in a subshell: all in the command's process group
    script = (
        f"sleep 300 & {write_pid('child', '$!')}; "
        f"(sleep 300 & {write_pid('grandchild', '$!')}; wait) & "
        f"{write_pid('shell', '$$')}; wait"
    )
    backend = LocalBackend(kill_grace=5)
    thread, outcome, _ = _run_in_thread(backend, _sh(project, io_dir, script))
    pids = [_read_pids(pid_dir / name, 1)[0] for name in ("child", "grandchild", "shell")]
    backend.kill()
    thread.join(300)  # TERM ends the group at once; the long deadline is for a stalled machine
    assert not thread.is_alive(), "run() did not return after kill()"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].exit_code == 128 + 15
    assert outcome["result"].reason == "killed by signal SIGTERM"
    assert wait_gone(pids) == []


def test_a_kill_that_comes_while_the_command_is_being_started_still_ends_it(dirs, tmp_path, monkeypatch):
    """The command may run before ``run()`` has recorded its process (CI caught a test whose kill()
    came in that window: it was lost, and the command ran on). Here the kill comes exactly there:
    right after the process exists, before ``Popen`` returns to ``run()``."""
    project, io_dir = dirs
    marker = tmp_path / "finished"
    backend = LocalBackend(kill_grace=5)
    real_popen = subprocess.Popen

    def popen_then_kill(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        backend.kill()
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen_then_kill)
    result = backend.run(_sh(project, io_dir, f'sleep 3 && touch "{marker}"'), [].append)
    assert result.exit_code == 128 + 15
    assert result.reason == "killed by signal SIGTERM"
    assert not marker.exists()


def test_a_kill_before_the_command_starts_keeps_it_from_starting(dirs, tmp_path):
    project, io_dir = dirs
    marker = tmp_path / "started"
    backend = LocalBackend(kill_grace=5)
    backend.kill()
    with pytest.raises(BackendError, match="killed before its command started"):
        backend.run(_sh(project, io_dir, f'touch "{marker}"'), [].append)
    assert not marker.exists()


def test_kill_escalates_to_sigkill_when_term_is_ignored(dirs, tmp_path):
    project, io_dir = dirs
    pidfile = tmp_path / "pids"
    script = (
        f'trap \'\' TERM; sleep 300 & echo $! > "{pidfile}.tmp"; echo $$ >> "{pidfile}.tmp"; '
        f'mv "{pidfile}.tmp" "{pidfile}"; echo ready; while :; do wait; done'
    )
    # 5 s: the check below, 0.3 s after the kill, must come inside the grace period even when the
    # machine stalls this thread for a few seconds.
    backend = LocalBackend(kill_grace=5)
    thread, outcome, lines = _run_in_thread(backend, _sh(project, io_dir, script))
    pids = _read_pids(pidfile, 2)
    deadline = time.monotonic() + 120
    while lines != ["ready"]:  # the command's only line, printed before the kill
        assert time.monotonic() < deadline, f"the command did not print ready: {lines}"
        time.sleep(0.02)
    backend.kill()
    time.sleep(0.3)
    # TERM is ignored: still running inside the grace period
    assert [p for p in pids if not pid_gone(p)] == pids
    assert thread.is_alive()
    thread.join(300)  # KILL comes 5 s after TERM; the long deadline is for a stalled machine
    assert not thread.is_alive(), "run() did not return after the KILL"
    assert outcome["result"].exit_code == 128 + 9
    assert outcome["result"].reason == "killed by signal SIGKILL"
    assert lines == ["ready"]
    assert wait_gone(pids) == []


def test_kill_without_a_running_command_is_a_no_op():
    LocalBackend().kill()


def test_an_exception_in_the_caller_stops_the_group(dirs, tmp_path):
    """What happens on an Airflow timeout: the exception interrupts run(), which must not leave orphans."""
    project, io_dir = dirs
    pidfile = tmp_path / "pids"
    script = f'trap \'\' TERM; sleep 300 & echo $! > "{pidfile}"; echo $$ >> "{pidfile}"; echo go; wait'

    class Interrupted(Exception):
        pass

    def sink(line: str) -> None:
        _read_pids(pidfile, 2)
        raise Interrupted(line)

    with pytest.raises(Interrupted):
        LocalBackend(kill_grace=0.5).run(_sh(project, io_dir, script), sink)
    assert wait_gone(_read_pids(pidfile, 2)) == []


# -- the language runners stream too ----------------------------------------------------------------------


@pytest.mark.parametrize("language", ["python", "ruby"])
def test_runner_output_is_not_held_in_a_buffer(tmp_path, language):
    """py> / rb> output reaches the log while the code runs, without PYTHONUNBUFFERED or $stdout.sync.
    The code waits up to 120 s for the flag the sink sets on the first line (no-flag: it was buffered)."""
    from airflow_cmdexec_provider.operators import PyOperator, RbOperator

    project = tmp_path / "project"
    project.mkdir()
    io_dir = tmp_path / "io"
    io_dir.mkdir()
    flag = tmp_path / "flag"
    (project / "slow.py").write_text(
        "import os, time\n"
        "def run():\n"
        "    print('first')\n"
        "    for _ in range(2400):\n"
        f"        if os.path.exists({str(flag)!r}):\n"
        "            print('saw-flag'); return\n"
        "        time.sleep(0.05)\n"
        "    print('no-flag')\n"
    )
    (project / "slow.rb").write_text(
        "def slow\n"
        "  puts 'first'\n"
        f"  2400.times {{ if File.exist?({str(flag)!r}) then puts 'saw-flag'; return end; sleep 0.05 }}\n"
        "  puts 'no-flag'\n"
        "end\n"
    )
    if language == "python":
        op = PyOperator(task_id="slow", method="slow.run")
    else:
        op = RbOperator(task_id="slow", method="slow", require="slow")
    command, env = op.prepare(io_dir, {}, {})
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "RUBYOPT")}
    lines: list[str] = []

    def sink(line: str) -> None:
        lines.append(line)
        flag.touch()

    request = CommandRequest(
        task_label="dag.slow", project_dir=project, workdir="", io_dir=io_dir, command=command, env=env
    )
    assert LocalBackend(base_env=base_env).run(request, sink).exit_code == 0
    assert lines == ["first", "saw-flag"]


def test_background_children_left_in_the_group_end_with_the_command(tmp_path: Path) -> None:
    """Review L1: the group of a leader that was already reaped was missed, so `job &` outlived the task."""
    pidfile = tmp_path / "child.pid"
    request = _request(tmp_path, tmp_path, "/bin/sh", "-c", f"sleep 300 & echo $! > {pidfile}")
    result = LocalBackend(kill_grace=1.0).run(request, lambda line: None)
    assert result.exit_code == 0
    child = int(pidfile.read_text())
    assert wait_gone([child]) == []
