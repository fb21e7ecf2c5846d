"""Which Digdag constructs the ``.dig`` loader turns into Airflow, and what it says about the others.

This one table is enforced by the compiler (an unsupported construct is a load error with the
``reason`` below) and printed as the README's supported-construct table
(``airflow-cmdexec dig constructs --write README.md``), so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

LATER = "a later version of the loader will support it"


@dataclass(frozen=True)
class Construct:
    key: str  # how the compiler looks it up
    written: str  # how it is written in a .dig file
    supported: bool
    airflow: str  # what it becomes, or (unsupported) why not and what to do


_SUPPORTED = [
    Construct(
        "+task",
        "`+name:` nesting and order",
        True,
        "a TaskGroup per group; children run in file order (`A >> B`); task ids are the names without "
        "`+` (other characters outside `[A-Za-z0-9_-]` become `_`); the Digdag name is kept for `task_name`",
    ),
    Construct("sh>", "`sh>:`", True, '`ShOperator(templating="digdag")`; `shell`, `sh: {shell}`'),
    Construct("py>", "`py>:`", True, "`PyOperator`; `python`, `py: {python}`"),
    Construct("rb>", "`rb>:`", True, "`RbOperator`; `require`, `ruby`, `rb: {require, ruby}`"),
    Construct("echo>", "`echo>:`", True, "`EchoOperator` (logs the evaluated text)"),
    Construct(
        "fail>",
        "`fail>:`",
        True,
        "`FailOperator` (fails with the evaluated text, the `error.message` of `_error` tasks)",
    ),
    Construct(
        "call>",
        "`call>: file[.dig]`",
        True,
        "the called file inlined as a TaskGroup at load time; a file in a subfolder runs with that "
        "`_workdir`; `${...}` in the name and recursion are load errors",
    ),
    Construct(
        "for_each>",
        "`for_each>:` with literal lists, `_do`",
        True,
        "unrolled at load time in Digdag's order (`+for-0=key=0=value&...`), each iteration exporting "
        "its values; `_parallel` applies to the iterations",
    ),
    Construct(
        "runtime loop",
        "`for_each>`/`loop>`/`for_range>` over `${...}` (`for_each>: {table: ${tables}}`, `loop>: ${n}`)",
        True,
        "a task `_values` computes the iterations when it runs (stored values included) and `_do` runs "
        "once per iteration as a mapped TaskGroup `iteration`, with Digdag's exports and task names; "
        "without `_parallel` each copy waits for the one before it and a failure stops the rest, as "
        "in Digdag; `_parallel: {limit: N}` caps the copies of each task; not inside it: another such "
        "loop, `if>`, `_error`, `require>`",
    ),
    Construct(
        "if>",
        "`if>: ${...}`, `_do`, `_else_do`",
        True,
        "a TaskGroup: the task `if` evaluates the condition when it runs (`true` or `false`) and runs "
        "the `do` or `else_do` group, skipping the other; its `end` task runs either way",
    ),
    Construct(
        "wait>",
        "`wait>: 10s` (`blocking`, `poll_interval`)",
        True,
        "`WaitOperator`: waits the duration, deferred to the triggerer (a "
        "`DateTimeTrigger`) when `blocking: false`, or when unset and the task is deferrable "
        "(`default_deferrable`); else sleeping on the worker",
    ),
    Construct(
        "add_subtask",
        "`digdag.env.add_subtask(...)` in `py>` code, `Digdag.env.add_subtask(...)` in `rb>` code",
        True,
        "the generated tasks (and groups of them) run inside the generating task, after it, one after "
        "the other (also with `_parallel`), each seeing what it exported and stored and their own keys; "
        "what they store reaches the tasks after it. A generated task of another operator fails the "
        "task, saying so",
    ),
    Construct(
        "for_range>",
        "`for_range>: {from, to, step | slices}` (literal numbers), `_do`",
        True,
        "unrolled at load time as Digdag names them (`+range-from=0&to=3`, ...), each exporting "
        "`range: {from, to, index}`; `_parallel` applies",
    ),
    Construct(
        "loop>",
        "`loop>: N` (a literal number), `_do`",
        True,
        "unrolled at load time (`+loop-0`, ..., exporting `i`); `_parallel` applies",
    ),
    Construct(
        "sla",
        "`sla:` (`time` or `duration`, `alert`, `fail`, `+tasks`)",
        True,
        "a TaskGroup `_sla` beside the workflow: `_deadline` waits (a sensor in reschedule mode) for "
        "Digdag's deadline from the run's `run_after`; if the run is not finished by then, it logs "
        'the alert (ERROR "SLA violation") and the `+tasks` run, and `_fail` fails the run with '
        "`fail: true`; a run finished first skips them (noticed within 60 s)",
    ),
    Construct(
        "secret",
        "`${secret:key}` in the `sh>` command and in `_env` values",
        True,
        "the Airflow Variable `cmdexec_secret.<key>` (the metadata DB or a secrets backend), read when "
        "the task runs and masked in its log; an environment holding one stays out of ECS overrides and "
        "pod specs; anywhere else (as in Digdag) a load error. A param holding `${secret:...}` is text",
    ),
    Construct(
        "require>",
        "`require>: workflow` (`session_time`, `rerun_on`, `ignore_failure`, `params`)",
        True,
        "`RequireOperator` (a sensor in reschedule mode): waits for the run of that workflow's DAG whose "
        "logical date is the session time, triggering it (`params` as its conf) when there is none and "
        "clearing it as `rerun_on` says; fails when it failed unless `ignore_failure`. Under `airflow "
        "dags test` it only checks that run. Another project's workflow and `${...}` in the options "
        "are load errors",
    ),
    Construct("_type", "`_type:` / `_command:`", True, "the long form of `op>: command`"),
    Construct(
        "_parallel",
        "`_parallel: true` / `{limit: N}`",
        True,
        "no edges between the children; with `limit`, Digdag's batches (each batch waits for the whole "
        "previous one)",
    ),
    Construct(
        "_background",
        "`_background: true`",
        True,
        "no edge from the previous sibling; the next foreground sibling waits for it",
    ),
    Construct(
        "_after", "`_after:` (in a `_parallel` group)", True, "an edge from each named earlier sibling"
    ),
    Construct(
        "_export",
        "`_export:` (with the `sh:`/`py:`/`rb:` namespaces)",
        True,
        'root: DAG `params`; group: `TaskGroup(default_args={"params": ...})`; a task\'s own: its '
        "`params` (with its local keys); operator settings in it (`docker`, `ecs`, `sh`/`py`/`rb`, "
        "`shell`, `python`, `require`, `ruby`, `_env`, `_workdir`) reach the operators of the scope",
    ),
    Construct(
        "local", "task-local keys (`param1: ...`)", True, "the operator's own `params` (highest priority)"
    ),
    Construct("_env", "`_env:`", True, "`env=`"),
    Construct("_workdir", "`_workdir:`", True, "`workdir=`"),
    Construct("docker", "`docker:`", True, "`docker=`"),
    Construct("ecs", "`ecs:`", True, "`ecs=`"),
    Construct(
        "_error",
        "`_error:`",
        True,
        'tasks after every task of the scope with `trigger_rule="one_failed"` and the `error` param '
        "(`error_from`); an `_end` task keeps the run failed",
    ),
    Construct("_check", "`_check:`", True, "tasks right after the task (or group), before the next sibling"),
    Construct(
        "_retry",
        "`_retry:` on a task",
        True,
        "`retries`, `retry_delay` (`interval`), `retry_exponential_backoff=2` (`interval_type: "
        "exponential`), `max_retry_delay` (`max_interval`)",
    ),
    Construct(
        "_disable", "`_disable: true`", True, "an EmptyOperator in the task's place, as Digdag skips it"
    ),
    Construct(
        "!include",
        "`!include : file` (as a key)",
        True,
        "merged at load time, relative to the including file, which it may not leave",
    ),
    Construct("timezone", "`timezone:`", True, "the DAG's timezone: `session_*` params and the schedule"),
    Construct(
        "schedule",
        "`schedule:` `hourly>`, `daily>`, `weekly>`, `monthly>`, `minutes_interval>`, `cron>`; "
        "`start`, `end`, `skip_delayed_by`",
        True,
        "`DigdagTimetable`: the logical date is Digdag's `session_time` (the start of the hour/day/"
        "week/month, or the cron time) and the run starts at the scheduled time; the first run is the "
        "next session, and sessions missed while the scheduler was down run afterwards (`catchup=True`) "
        "unless older than `skip_delayed_by`; `start`/`end` dates bound the sessions (`end` included)",
    ),
    Construct(
        "skip_on_overtime",
        "`schedule:` `skip_on_overtime: true`",
        True,
        "a first task `_skip_on_overtime` skips a scheduled run (every task skipped) while an earlier "
        "session is still queued or running; manual runs and backfills always run, as in Digdag",
    ),
    Construct(
        "${name}",
        "`${name}`, `${a.b}`",
        True,
        "evaluated when the task runs with the task's params; in `sh>` the value is pasted into the "
        "script text, as Digdag does",
    ),
    Construct(
        "moment",
        "`${moment(session_time).add(-1, 'days').format('YYYYMMDD')}`",
        True,
        "moment.js dates without a JavaScript engine: `moment()`, `moment(param)`, `moment('2026-01-30')`; "
        "`.utc()`, `.local()`, `.utcOffset(9)`, `.add`/`.subtract(n, unit)`, `.startOf`/`.endOf(unit)`; "
        "ending with `.format('...')` (English names), `.unix()`, `.valueOf()`, `.toISOString()` or a getter "
        "(`.year()`, `.month()`, ...), in the "
        "workflow's `timezone` as in Digdag; anything else in a `moment(...)` is a load error saying what",
    ),
    Construct(
        "builtins",
        "`${JSON.stringify(x)}`, `${s.split(',')}`, `${list.join('-')}`, `${Math.floor(n / 2)}`, "
        "`${parseInt(s)}`, `${[a, b]}`",
        True,
        "ES5's built-ins without a JavaScript engine: `parseInt`, `parseFloat`, `String`, `Number`, "
        "`Boolean`, `isNaN`, `isFinite`, `encode`/`decodeURIComponent`, `JSON.stringify`/`parse`, "
        "`Math.abs`/`ceil`/`floor`/`round`/`max`/`min`/`pow`/`sqrt`; string methods (`split`, `replace` "
        "of a string, `slice`, `substring`, `substr`, `indexOf`, `trim`, `toUpperCase`, ...), array "
        "methods (`join`, `indexOf`, `slice`, `concat`), `toFixed`; array literals; regular expression "
        "literals (`${session_date.replace(/-/g, '')}`, flags `g` `i` `m`) with `replace`, `split`, "
        "`match`, `search`, `test`, `exec`",
    ),
    Construct(
        "operators",
        "`${'out_' + name}`, `${n + 1}`, `${a.b || 'none'}`, `${n > 1 ? 'many' : 'one'}`, `${list[0]}`",
        True,
        "JavaScript expressions without a JavaScript engine: literals, `!` `-` `+` `typeof`, `*` `/` `%` "
        "`+` `-`, comparisons, `==` `===` `!=` `!==`, `&&` `||`, `?:`, `a[b]`, `.length`, with "
        "JavaScript's coercions (`'1' + 1` is `11`); null and undefined print nothing, numbers and objects "
        "as `JSON.stringify` writes them, as in Digdag",
    ),
]

_LATER = [
    Construct(
        "dynamic",
        "`_parallel: ${...}`",
        False,
        f"{LATER}; write true, false or {{limit: N}}",
    ),
    Construct(
        "_retry group",
        "`_retry:` on a group",
        False,
        f"{LATER}; Airflow retries tasks, not groups: put `_retry` on the tasks",
    ),
    Construct(
        "javascript",
        "`${...}` other JavaScript (`${list.map(f)}`, `${ {a: 1} }`, `${a = 1}`, `${new Date()}`)",
        False,
        f"{LATER} (an embedded JavaScript engine); names, paths, operators, built-in functions and "
        "methods, array and regular expression literals and moment(...) dates are evaluated now",
    ),
    Construct(
        "_secrets",
        "`_secrets:`",
        False,
        f"{LATER}; `sh>`/`py>`/`rb>` need no grant: they read `${{secret:...}}` in `_env` and `sh>`",
    ),
]

_OUTSIDE = Construct(
    "operator",
    "other operators (`http>`, `mail>`, `td>`, `emr>`, `pg>`, `bq>`, `s3_wait>`, ...)",
    False,
    "not part of Digdag's Command Executor: write that step as a Python DAG with the matching Airflow "
    "provider operator",
)

CONSTRUCTS: dict[str, Construct] = {c.key: c for c in [*_SUPPORTED, *_LATER, _OUTSIDE]}


def operator_construct(name: str) -> Construct:
    """The construct of the operator ``name>`` (``sh``, ``emr``, ...)."""
    return CONSTRUCTS.get(f"{name}>", _OUTSIDE)


def markdown_table() -> str:
    """The README's table of constructs, generated from the table above."""
    rows = ["| Digdag | loads | in Airflow, or why not |", "|---|---|---|"]
    for construct in CONSTRUCTS.values():
        cells = [construct.written, "yes" if construct.supported else "no", construct.airflow]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)
