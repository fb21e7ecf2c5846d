"""docs/configuration.md: its Digdag key -> Airflow home table is generated from the FieldSpec tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import airflow.sdk  # noqa: F401  # first: the provider's config imports airflow.sdk

from airflow_cmdexec_provider import cli, config, digdag_keys

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_docs_table_is_up_to_date() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert cli._docs_with_table(text) == text, (
        "docs/configuration.md is out of date: run airflow-cmdexec docs-table --write docs/configuration.md"
    )


def test_docs_table_lists_every_key_with_its_home() -> None:
    table = cli.docs_table()
    rows = {line.split("|")[1].strip().strip("`"): line for line in table.splitlines()[2:]}
    for spec in config.ECS_FIELDS + config.STORAGE_FIELDS:
        row = rows[digdag_keys.digdag_key(spec)]
        home = f"extra `{spec.extra_name}`" if spec.extra_name else spec.airflow_field.capitalize()
        assert home in row, row
        if spec.default is not None:
            assert f"`{cli._digdag_text(spec.default)}`" in row
        if spec.secret:
            assert "(secret)" in row
    assert "Variable `cmdexec_executor_type`" in rows["agent.command_executor.type"]
    assert "`cmdexec_aws_default`" in rows["agent.command_executor.ecs.__default_config__.access_key_id"]
    for spec in config.KUBERNETES_FIELDS:
        row = rows[digdag_keys.digdag_key(spec)]
        assert f"`{config.KUBERNETES_CONN_ID}`" in row
        assert "(conn type `kubernetes`)" in row
        assert f"extra `{spec.extra_name}`" in row, row
        assert ("(secret)" in row) == spec.secret
    for direction in ("in", "out"):
        row = rows[f"agent.command_executor.kubernetes.config_storage.{direction}.<key>"]
        assert f"`cmdexec_storage_kubernetes_{direction}` (conn type `cmdexec_storage`)" in row
    assert "`kubernetes`" in rows["agent.command_executor.type"]


def test_docs_table_check_command() -> None:
    cmd = Path(sys.executable).parent / "airflow-cmdexec"
    proc = subprocess.run(
        [str(cmd), "docs-table", "--check", str(DOCS)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = subprocess.run(
        [str(cmd), "docs-table"], check=False, capture_output=True, text=True, timeout=300
    )
    assert printed.stdout == cli.docs_table()


README = DOCS.parent.parent / "README.md"


def test_readme_differences_table_is_up_to_date() -> None:
    text = README.read_text(encoding="utf-8")
    assert cli._docs_with_table(text) == text, (
        "README.md is out of date: run airflow-cmdexec docs-table --write README.md"
    )
    assert "| 4, 54 |" in text
    assert "*(deliberate)*" in text
