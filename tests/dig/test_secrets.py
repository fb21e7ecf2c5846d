"""``${secret:key}`` in a loaded workflow: the Airflow Variable ``cmdexec_secret.<key>``, resolved only
in ``_env`` values and the ``sh>`` command text, masked in the logs, never reachable from params."""

from __future__ import annotations

import pytest

from airflow_cmdexec_provider.dig import DigLoadError, load_project

SECRETS = {"db.password": "pw-1-of-db", "team.token": "tok-2-of-team"}


@pytest.fixture
def secrets(airflow_db):
    from airflow.models import Variable

    for key, value in SECRETS.items():
        Variable.set(f"cmdexec_secret.{key}", value)
    yield SECRETS
    for key in SECRETS:
        Variable.delete(f"cmdexec_secret.{key}")


def test_secrets_reach_env_and_the_command_text_and_are_masked(project, run_workflow, secrets):
    from airflow.sdk._shared.secrets_masker import redact

    folder = project("secrets")
    result = run_workflow(folder, "secrets")
    assert result.state == "success", {t: result.error_text(t) for t in result.task_states}
    # the values arrived: in _env (own and exported) and pasted into the sh> script
    assert (folder / "seen").read_text() == "pw-1-of-db|tok-2-of-team|pw-1-of-db"
    # ... and were given to the log masker, which the task's supervisor applies to the task log
    # (tests/deployment/test_dig_workflows.py reads a masked log)
    assert redact("pw-1-of-db and tok-2-of-team") == "*** and ***"
    # py>: in the environment only, not in the params
    assert result.xcom("python") == {"password_length": len("pw-1-of-db"), "in_params": False}


def test_a_param_cannot_reach_a_secret(project, run_workflow, secrets):
    """Whoever triggers a run chooses params: a ${secret:...} inside one is pasted as text, never
    looked up (the command is evaluated in one pass over the text as written)."""
    folder = project("secrets")
    result = run_workflow(folder, "secrets", run_conf={"greeting": "${secret:db.password}"})
    assert result.state == "success", {t: result.error_text(t) for t in result.task_states}
    assert (folder / "greeting").read_text() == "${secret:db.password}"


def test_a_missing_secret_fails_the_task_naming_the_variable(project, run_workflow, airflow_db):
    folder = project("secrets")
    result = run_workflow(folder, "secrets")
    assert result.task_states["use"] == "failed"
    assert (
        "${secret:db.password}: there is no secret 'db.password'; set it as the Airflow Variable "
        "cmdexec_secret.db.password" in result.error_text("use")
    )
    assert not (folder / "seen").exists()  # nothing ran


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "+a:\n  echo>: ${secret:db.password}\n",
            "Digdag resolves secrets only in the sh> command and in _env",
        ),
        ("+a:\n  py>: tasks.x\n  pw: ${secret:db.password}\n", "Digdag resolves secrets only in the sh>"),
        (
            "_export:\n  pw: ${secret:db.password}\n+a:\n  sh>: echo\n",
            "Digdag resolves secrets only in the sh>",
        ),
        ("+a:\n  _env:\n    X: ${secret:1db}\n  sh>: echo\n", "${secret:1db}: not a secret key"),
    ],
)
def test_a_secret_anywhere_else_is_a_load_error(tmp_path, text, expected):
    (tmp_path / "wf.dig").write_text(text)
    with pytest.raises(DigLoadError) as info:
        load_project(tmp_path)
    assert expected in str(info.value)
