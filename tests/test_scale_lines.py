"""Correctness at scale: 16 ShOperator tasks in parallel on a real LocalExecutor, every line logged.

The real services (``airflow api-server``, ``dag-processor``, ``scheduler`` with ``LocalExecutor``
and ``parallelism`` 16) on a throw-away home, the DAG of ``benchmarks/bench_worker_lines.py``:
16 tasks each printing 5,000 numbered lines (~500 KB, many times a pipe buffer) at once. Every
line of every task must be in the task's log file, complete (not split, not merged) and in order.
No timings are asserted; the benchmark reports the CPU cost per million lines.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

# benchmarks/ is no package: its modules are importable once it is on sys.path
from _airflow_stack import AirflowHome, AirflowStack  # noqa: E402
from bench_worker_lines import check_task_logs, dag_id, expected_line, task_ids, write_dags  # noqa: E402

TASKS = 16
LINES = 5_000


def test_sixteen_parallel_tasks_log_every_line_complete_and_in_order():
    home = AirflowHome("cmdexec-test-scale-lines-")
    try:
        write_dags(home.dags, TASKS)
        home.migrate()
        dag = dag_id("sh")
        with AirflowStack(home, parallelism=TASKS) as stack:
            # The stack is up once the first LocalExecutor worker shows its title; the executor forks
            # all of them at once, but each sets its title when it gets to run: wait for the rest.
            deadline = time.monotonic() + 120
            while len(stack.worker_pids()) < TASKS and time.monotonic() < deadline:
                time.sleep(0.5)
            assert len(stack.worker_pids()) == TASKS
            stack.wait_parsed([dag])
            stack.trigger(dag, "scale_lines", {"lines": LINES})
            state = stack.wait_run(dag, "scale_lines", timeout=400)  # within pytest's 600 s
            states = stack.task_states(dag, "scale_lines")
            assert (state, set(states.values())) == ("success", {"success"}), stack.failure_report(
                dag, "scale_lines"
            )
            assert len(states) == TASKS
            assert check_task_logs(home, dag, "scale_lines", task_ids(TASKS), LINES) == []
            last = home.task_log(dag, "scale_lines", "t15").read_text()
            assert expected_line("t15", LINES) in last  # the checker really read the lines
    finally:
        home.remove()


def test_the_line_check_finds_a_lost_a_split_and_a_swapped_line():
    """check_task_logs itself: each kind of damage is reported (so the test above can fail)."""
    import json

    home = AirflowHome("cmdexec-test-scale-check-")
    try:
        want = [expected_line("t00", n) for n in range(1, 6)]
        damaged = {
            "lost": want[:2] + want[3:],
            "split": [*want[:2], want[2][:30], want[2][30:], *want[3:]],
            "swapped": [want[0], want[2], want[1], *want[3:]],
        }
        for run_id, lines in [("intact", want), *damaged.items()]:
            log = home.task_log("d", run_id, "t00")
            log.parent.mkdir(parents=True)
            log.write_text("".join(json.dumps({"event": line}) + "\n" for line in ["start", *lines, "done"]))
        assert check_task_logs(home, "d", "intact", ["t00"], 5) == []
        for run_id in damaged:
            problems = check_task_logs(home, "d", run_id, ["t00"], 5)
            assert len(problems) == 1, (run_id, problems)
            assert problems[0].startswith("t00: "), (run_id, problems)
        assert "no log file" in check_task_logs(home, "d", "missing", ["t00"], 5)[0]
    finally:
        home.remove()
