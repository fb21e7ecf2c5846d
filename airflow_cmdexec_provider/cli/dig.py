"""``dig``: check Digdag workflow files against the loader, and print its construct table.

``airflow-cmdexec dig check PATH [--include NAME ...]`` prints, for each workflow of the project
folder PATH (or the one ``.dig`` file PATH), the DAG it loads as (every task with its operator, its
Digdag name and what it waits for), or every unsupported construct with its file and line; exit 1
if any workflow cannot load. ``airflow-cmdexec dig constructs [--write FILE | --check FILE]``
prints the supported-construct table, or writes/checks it in FILE (the README).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_cmdexec_provider.cli.common import EXIT_ERROR, EXIT_OK, CliError, Output

TABLE_BEGIN = "<!-- BEGIN GENERATED: airflow-cmdexec dig constructs -->"
TABLE_END = "<!-- END GENERATED: airflow-cmdexec dig constructs -->"


def add_parser(sub: Any) -> None:
    dig = sub.add_parser(
        "dig", help="Digdag workflow files (.dig) as Airflow DAGs: check them, list constructs"
    )
    commands = dig.add_subparsers(dest="dig_command", required=True, metavar="DIG_COMMAND")
    check = commands.add_parser("check", help="print each workflow's DAG, or each unsupported construct")
    check.add_argument("path", metavar="PATH", help="a Digdag project folder, or one .dig file")
    check.add_argument(
        "--include",
        action="append",
        metavar="NAME",
        help="only this workflow (name without .dig; globs allowed); repeatable",
    )
    table = commands.add_parser("constructs", help="print the supported-construct table (markdown)")
    group = table.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", help="replace the generated table in FILE")
    group.add_argument("--check", metavar="FILE", help="exit 1 if FILE's generated table is out of date")


def run(args: Any, output: Output) -> int:
    if args.dig_command == "check":
        return check(output, args.path, args.include)
    return constructs_command(output, args.write, args.check)


def check(output: Output, path: str, include: list[str] | None) -> int:
    from airflow_cmdexec_provider.dig.errors import DigLoadError
    from airflow_cmdexec_provider.dig.project import compile_file, workflow_files

    target = Path(path).resolve()
    if target.is_file():
        project, include = target.parent, [target.stem]
    elif target.is_dir():
        project = target
    else:
        raise CliError(f"{path} is neither a Digdag project folder nor a .dig file")
    files = workflow_files(project, include)
    if not files:
        raise CliError(f"{project} holds no .dig workflow file")
    failed = skipped = 0
    for file in files:
        try:
            dag = compile_file(project, file, file.stem)
        except DigLoadError as exc:
            failed += 1
            output.out(f"{file.stem}: cannot be loaded")
            for problem in exc.problems:
                output.out(f"  {problem}")
            continue
        if dag is None:
            skipped += 1
            output.out(f"{file.stem}: Digdag's old project file (a list of the workflows), not a workflow")
            continue
        output.out(describe(dag))
    output.out(f"{len(files) - failed - skipped} of {len(files) - skipped} workflow(s) load")
    return EXIT_ERROR if failed else EXIT_OK


def describe(dag: Any) -> str:
    """A DAG as text: its schedule and timezone, then each task in order with what it waits for."""
    schedule = getattr(dag.timetable, "summary", None) if dag.timetable.can_be_scheduled else None
    header = (
        f"{dag.dag_id}: DAG with {len(dag.tasks)} task(s), timezone {dag.timezone.name}, "
        f"schedule {schedule or 'none (manual runs)'}"
    )
    lines = [header]
    for task in dag.topological_sort():
        after = ", ".join(sorted(task.upstream_task_ids))
        name = getattr(task, "digdag_task_name", None) or "-"
        trigger_rule = getattr(task.trigger_rule, "value", task.trigger_rule)
        rule = f" [{trigger_rule}]" if trigger_rule != "all_success" else ""
        lines.append(
            f"  {task.task_id}  {type(task).__name__}  {name}{rule}" + (f"  after {after}" if after else "")
        )
    return "\n".join(lines)


def _with_table(text: str) -> str:
    from airflow_cmdexec_provider.dig.constructs import markdown_table

    begin, end = text.find(TABLE_BEGIN), text.find(TABLE_END)
    if begin < 0 or end < begin:
        raise CliError(f"the file has no {TABLE_BEGIN} ... {TABLE_END} section")
    return text[: begin + len(TABLE_BEGIN)] + "\n" + markdown_table() + "\n" + text[end:]


def constructs_command(output: Output, write: str | None, check_file: str | None) -> int:
    from airflow_cmdexec_provider.dig.constructs import markdown_table

    if write:
        path = Path(write)
        path.write_text(_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
        output.out(f"updated the construct table in {path}")
        return EXIT_OK
    if check_file:
        text = Path(check_file).read_text(encoding="utf-8")
        if _with_table(text) != text:
            output.err(
                f"{check_file} is out of date: run airflow-cmdexec dig constructs --write {check_file}"
            )
            return EXIT_ERROR
        output.out(f"{check_file} is up to date")
        return EXIT_OK
    output.out(markdown_table())
    return EXIT_OK
