"""Scenario e: a run's conf names BASH_ENV, LD_PRELOAD and PATH; nothing of it reaches the commands.

Airflow merges a run's conf into the params, and ``sh>`` exports params as environment variables:
whoever may trigger the DAG would choose the variable *names* too. Here ``BASH_ENV`` points at a
script that writes a marker file (bash runs it before the command), ``LD_PRELOAD`` at a library
that does not exist (the dynamic loader complains on every program start) and ``PATH`` at an
empty folder (``date`` would not be found). Both bash tasks, local and Docker, must succeed.
"""

from __future__ import annotations

import time

import pytest

from tests.deployment.harness import Figures

pytestmark = pytest.mark.deployment

DAG_ID = "deploy_env_injection"


def test_conf_cannot_inject_process_environment(deployment):
    inject = deployment.project / "inject"
    inject.mkdir(mode=0o777, exist_ok=True)
    bash_env = inject / "bash_env.sh"
    # Builtins only: with the injected PATH no program would be found.
    bash_env.write_text(f'echo injected > "{inject}/marker-$HOSTNAME-$$"\n')
    bash_env.chmod(0o755)
    conf = {
        "BASH_ENV": str(bash_env),
        "LD_PRELOAD": "/nonexistent/cmdexec-injected.so",
        "PATH": "/nonexistent-cmdexec-bin",
    }
    figures = Figures("e. conf with BASH_ENV/LD_PRELOAD/PATH")

    started = time.monotonic()
    run_id = deployment.trigger(DAG_ID, conf=conf)
    state = deployment.wait_run(DAG_ID, run_id, timeout=300)
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    tis = deployment.task_instances(DAG_ID, run_id)
    figures["task_states"] = {t: ti["state"] for t, ti in tis.items()}
    figures["hosts"] = {t: ti["hostname"] for t, ti in tis.items()}
    markers = sorted(p.name for p in inject.glob("marker-*"))
    figures["markers"] = markers
    logs = {t: deployment.task_log(DAG_ID, run_id, t) for t in tis}
    figures["leftovers"] = leftovers = deployment.leftovers(DAG_ID)
    figures.print()

    assert markers == [], f"BASH_ENV from the run's conf was run by bash: {markers}"
    for task_id, log in logs.items():
        assert "cannot be preloaded" not in log, (
            f"{task_id}: LD_PRELOAD from the run's conf reached it:\n{log}"
        )
    assert state == "success", {t: (ti["state"], logs[t][-3000:]) for t, ti in tis.items()}
    for task_id, log in logs.items():
        assert "env-check-ok" in log, f"{task_id}:\n{log}"
    assert deployment.nothing_left(leftovers), leftovers
