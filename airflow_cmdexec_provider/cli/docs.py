"""``docs-table``: the tables generated into the docs from one source each: the Digdag key -> Airflow home
table (from the key tables) and the "Differences from Digdag" table (from ``differences.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_cmdexec_provider import digdag_keys  # the key tables (no Airflow import)
from airflow_cmdexec_provider.cli.common import EXIT_ERROR, EXIT_OK, CliError, Output
from airflow_cmdexec_provider.cli.show import _digdag_text

# --------------------------------------------------------------------------------------------------
# docs-table: the Digdag key -> Airflow home table of docs/configuration.md
# --------------------------------------------------------------------------------------------------
DOCS_BEGIN = "<!-- BEGIN GENERATED: airflow-cmdexec docs-table -->"
DOCS_END = "<!-- END GENERATED: airflow-cmdexec docs-table -->"


def _kind_text(spec: Any) -> str:
    if spec.kind == "choice":
        return "one of " + ", ".join(f"`{c}`" for c in spec.choices)
    return {
        "str": "string",
        "int": "integer",
        "bool": "boolean",
        "list": "list (comma-separated)",
        "duration": "duration (seconds, or 30m, 1h, ...)",
    }[spec.kind]


def _default_text(spec: Any) -> str:
    if spec.default is None:
        return ""
    return f"`{_digdag_text(spec.default)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def docs_table() -> str:
    """The table Digdag key -> Airflow home, type, default, generated from the FieldSpec tables."""
    from airflow_cmdexec_provider import config

    rows = [
        "| Digdag key | Airflow home | Type | Default | Notes |",
        "|---|---|---|---|---|",
        (
            f"| `{config.DIGDAG_TYPE_KEY}` | Variable `{config.EXECUTOR_TYPE_VARIABLE}` | one of `ecs`, "
            "`docker`, `local` (Digdag `simple`), `kubernetes` | `ecs` | Chains: ECS -> Docker -> local, "
            "Kubernetes -> Docker -> local. |"
        ),
    ]

    def home(spec: Any, conn: str) -> str:
        secret = " (secret)" if spec.secret else ""
        if spec.extra_name:
            return f"{conn} extra `{spec.extra_name}`{secret}"
        return f"{conn} {spec.airflow_field.capitalize()}{secret}"

    ecs_conn = f"`{config.ECS_CONN_ID}` / `{config.ECS_CONN_ID_PREFIX}<name>`"
    for spec in config.ECS_FIELDS:
        rows.append(
            f"| `{digdag_keys.digdag_key(spec)}` | {home(spec, ecs_conn)} | {_kind_text(spec)} | "
            f"{_default_text(spec)} | {_cell(spec.description)} |"
        )
    base = f"{digdag_keys.DIGDAG_ECS_PREFIX}{config.DIGDAG_DEFAULT_CONFIG}"
    aws = f"`{config.AWS_CONN_ID}` (conn type `aws`)"
    rows.append(
        f"| `{base}.access_key_id` | {aws} Login | string |  | Shared keys: ECS connections "
        f"without their own keys get extra `aws_conn_id` = `{config.AWS_CONN_ID}`. |"
    )
    rows.append(f"| `{base}.secret_access_key` | {aws} Password (secret) | string |  | |")
    storage_conn = f"`{config.STORAGE_CONN_ID}`"
    for spec in config.STORAGE_FIELDS:
        rows.append(
            f"| `{digdag_keys.digdag_key(spec)}` | {home(spec, storage_conn)} | {_kind_text(spec)} | "
            f"{_default_text(spec)} | {_cell(spec.description)} |"
        )
    k8s_conn = (
        f"`{config.KUBERNETES_CONN_ID}` / `{digdag_keys.KUBERNETES_CONN_ID_PREFIX}<name>` "
        f"(conn type `{digdag_keys.KUBERNETES_CONN_TYPE}`)"
    )
    for spec in config.KUBERNETES_FIELDS:
        rows.append(
            f"| `{digdag_keys.digdag_key(spec)}` | {home(spec, k8s_conn)} | {_kind_text(spec)} | "
            f"{_default_text(spec)} | {_cell(spec.description)} |"
        )
    for direction, conn_id in digdag_keys.KUBERNETES_STORAGE_CONN_IDS.items():
        rows.append(
            f"| `{digdag_keys.DIGDAG_CONFIG_STORAGE_PREFIX}{direction}.<key>` | `{conn_id}` (conn type "
            f"`{digdag_keys.STORAGE_CONN_TYPE}`), as `temporal_storage.<key>` above | | | The importer's "
            f"connection; the cluster connection names it in extra `cmdexec_storage_{direction}_conn_id`. |"
        )
    return "\n".join(rows) + "\n"


DIFFERENCES_BEGIN = "<!-- BEGIN GENERATED: airflow-cmdexec differences -->"
DIFFERENCES_END = "<!-- END GENERATED: airflow-cmdexec differences -->"


def _sections() -> list[tuple[str, str, Callable[[], str]]]:
    from airflow_cmdexec_provider.differences import differences_table

    return [(DOCS_BEGIN, DOCS_END, docs_table), (DIFFERENCES_BEGIN, DIFFERENCES_END, differences_table)]


def _docs_with_table(text: str) -> str:
    """``text`` with every generated section it holds brought up to date."""
    found = False
    for begin_mark, end_mark, generate in _sections():
        begin, end = text.find(begin_mark), text.find(end_mark)
        if begin < 0 or end < begin:
            continue
        found = True
        text = text[: begin + len(begin_mark)] + "\n" + generate() + text[end:]
    if not found:
        raise CliError(f"the file has no {DOCS_BEGIN} ... {DOCS_END} section")
    return text


def docs_table_command(output: Output, write: str | None, check_file: str | None) -> int:
    if write:
        path = Path(write)
        path.write_text(_docs_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
        output.out(f"updated the table in {path}")
        return EXIT_OK
    if check_file:
        text = Path(check_file).read_text(encoding="utf-8")
        if _docs_with_table(text) != text:
            output.err(f"{check_file} is out of date: run airflow-cmdexec docs-table --write {check_file}")
            return EXIT_ERROR
        output.out(f"{check_file} is up to date")
        return EXIT_OK
    output.out(docs_table().rstrip("\n"))
    return EXIT_OK
