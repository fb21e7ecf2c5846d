"""``airflow-cmdexec``: bring a Digdag command executor configuration to Airflow, show it, check it.

Commands::

    airflow-cmdexec import-digdag-config PATH [--dry-run]
    airflow-cmdexec show-config [--with-defaults]
    airflow-cmdexec check [--image IMAGE] [--task-definition-arn ARN] [--executor NAME]
                          [--ecs-conn-id ID] [--storage-conn-id ID]
                          [--kubernetes-conn-id ID] [--namespace NAMESPACE]
    airflow-cmdexec docs-table [--write FILE | --check FILE]
    airflow-cmdexec dig check PATH [--include NAME ...]
    airflow-cmdexec dig constructs [--write FILE | --check FILE]

Every Digdag key has one Airflow home, given by the FieldSpec tables (``digdag_keys``): the importer,
``show-config``, the UI forms and the docs table are all generated from them. Secrets (secret keys,
GCS credentials) are only ever written to Connection password fields and printed as ``***``.

Outside a task there is no Task SDK supervisor, so the commands read Connections and Variables
through ``airflow.models`` (secrets backends, then the metadata DB); see ``config.get_connection``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from airflow_cmdexec_provider.cli import dig
from airflow_cmdexec_provider.cli.check import check
from airflow_cmdexec_provider.cli.common import EXIT_ERROR, CliError, Output
from airflow_cmdexec_provider.cli.docs import _docs_with_table, docs_table, docs_table_command
from airflow_cmdexec_provider.cli.importer import _strip_task_prefix, import_digdag_config
from airflow_cmdexec_provider.cli.properties import format_property, parse_properties
from airflow_cmdexec_provider.cli.show import _digdag_text, show_config

__all__ = [
    "CliError",
    "_digdag_text",
    "_docs_with_table",
    "check",
    "docs_table",
    "docs_table_command",
    "format_property",
    "import_digdag_config",
    "main",
    "parse_properties",
    "show_config",
]


# --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airflow-cmdexec",
        description="Digdag's command executor configuration in Airflow: import, show, check.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    imp = sub.add_parser(
        "import-digdag-config",
        help="create/update Connections and Variables from a Digdag properties file (idempotent)",
    )
    imp.add_argument("path", metavar="PATH", help="Digdag system config (Java properties, as for digdag -c)")
    imp.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    show = sub.add_parser(
        "show-config", help="print the configuration as Digdag key = value lines (secrets as ***)"
    )
    show.add_argument(
        "--with-defaults", action="store_true", help="also list unset keys with their defaults, as comments"
    )
    chk = sub.add_parser("check", help="which executor a task would use, why, and whether it is reachable")
    chk.add_argument("--image", help="the task's docker.image")
    chk.add_argument("--task-definition-arn", help="the task's ecs.task_definition_arn")
    chk.add_argument(
        "--executor", help="force an executor (ecs, kubernetes, docker, local), as the operators' executor="
    )
    chk.add_argument("--ecs-conn-id", help="ECS cluster connection (ecs={'conn_id': ...})")
    chk.add_argument("--storage-conn-id", help="temporal storage connection (ecs={'storage_conn_id': ...})")
    chk.add_argument(
        "--kubernetes-conn-id", help="Kubernetes cluster connection (kubernetes={'conn_id': ...})"
    )
    chk.add_argument("--namespace", help="the pods' namespace (kubernetes={'namespace': ...})")
    docs = sub.add_parser("docs-table", help="print the Digdag key -> Airflow home table (markdown)")
    group = docs.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", help="replace the generated section of FILE")
    group.add_argument("--check", metavar="FILE", help="exit 1 if FILE's generated section is out of date")
    dig.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # No Task SDK supervisor here: let the SDK's own lookups (e.g. the amazon provider's hooks behind
    # aws_conn_id) use the server chain (env, secrets backends, metadata DB), as the API server does.
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    # Airflow logs to stdout; our stdout is for results (show-config output is parsed). Airflow is
    # imported below, so its log handlers bind to stderr; only warnings that matter are shown.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
    output = Output(stdout=sys.stdout)
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        return _run(args, output)
    finally:
        sys.stdout = real_stdout


def _run(args: argparse.Namespace, output: Output) -> int:
    try:
        if args.command == "import-digdag-config":
            return import_digdag_config(args.path, args.dry_run, output)
        if args.command == "show-config":
            return show_config(output, args.with_defaults)
        if args.command == "check":
            return check(
                output,
                image=args.image,
                task_definition_arn=args.task_definition_arn,
                executor=args.executor,
                ecs_conn_id=args.ecs_conn_id,
                storage_conn_id=args.storage_conn_id,
                kubernetes_conn_id=args.kubernetes_conn_id,
                namespace=args.namespace,
            )
        if args.command == "dig":
            return dig.run(args, output)
        return docs_table_command(output, args.write, args.check)
    except CliError as exc:
        output.err(f"error: {exc}")
        return EXIT_ERROR
    except Exception as exc:  # one masked line instead of a traceback with values
        from airflow_cmdexec_provider.exceptions import CmdExecError

        if os.environ.get("AIRFLOW_CMDEXEC_DEBUG"):
            raise
        if isinstance(exc, CmdExecError):
            output.err(f"error: {_strip_task_prefix(str(exc))}")
        else:
            first = str(exc).splitlines()[0] if str(exc) else ""
            output.err(f"error: {type(exc).__name__}: {first} (set AIRFLOW_CMDEXEC_DEBUG=1 for a traceback)")
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
