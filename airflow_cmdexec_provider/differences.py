"""Where we still differ from Digdag's Command Executor, and why: pure data, no Airflow import.

One row per remaining partial (P) or absent (N) row of the fidelity review against Digdag's source;
the README's "Differences from Digdag" table is generated from it (``airflow-cmdexec docs-table
--write README.md``), so the two cannot disagree. "deliberate" rows fix a Digdag bug or hazard.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Difference:
    rows: str  # the fidelity review's row numbers
    digdag: str  # what Digdag does
    status: str  # "P" (partial, or differs) or "N" (absent)
    here: str  # what we do, and why
    deliberate: bool = False


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "4, 54",
        "Any configuration error (no task definition tagged with the image, an invalid ARN, a "
        "multi-container definition, RunTask InvalidParameter/AccessDenied/ClusterNotFound) makes the "
        "task fall back to Docker, then local",
        "P",
        "Only definitely absent configuration falls back; every other error fails the task with its "
        "message (Digdag issue 1749: a task silently ran on the wrong host)",
        True,
    ),
    Difference(
        "20",
        "`ecs.__default_config__` keys are read only for a per-task cluster config",
        "P",
        "They become Connection `cmdexec_aws_default`, the shared credentials of every cluster without "
        "keys of its own",
    ),
    Difference(
        "22",
        "`enable_curl_fail_opt_on_uploads` defaults to false",
        "P",
        "Default true: a failed upload fails the task instead of looking like success; set false for "
        "Digdag's behaviour",
        True,
    ),
    Difference(
        "25",
        "`ecs.<name>.tags` sends RunTask tags (v0.11 branch)",
        "N",
        "Not sent; `started_by` is. Tag through the task definition's `propagateTags` instead",
    ),
    Difference(
        "34",
        "GCS signs URLs with IAM signBlob when the credentials have no private key",
        "P",
        "GCS temporal storage needs a service-account key (JSON) to sign URLs",
    ),
    Difference(
        "35",
        "Presigned URLs live 600 s by default",
        "P",
        "Download URL 1 h, upload URL execution_timeout + 1 h (else 7 days): with 600 s Digdag lost the "
        "outputs of long tasks; both keys are honoured when set",
        True,
    ),
    Difference(
        "36",
        "Object keys `<taskId>/archive-*.tar.gz`, never deleted",
        "P",
        "Keys `<prefix>/<dag>/<task>/<run>/try<N>-<rand>/...`, deleted after the task: IAM policies "
        "scoped to Digdag's layout must be rewritten",
        True,
    ),
    Difference(
        "42",
        "`docker.build` images are tagged `digdag-project-<id>:<hash of image, build, revision>` and "
        "built from the project",
        "P",
        "Tagged `cmdexec-build:<hash of image, build, options, project>`, built from an empty context; "
        "rebuilt when the lines change, not per project revision",
    ),
    Difference(
        "45",
        "A task's `agent.command_executor.ecs: {...}` overrides the cluster config",
        "P",
        "Same capability spelled `ecs={...}` with `conn_id` naming the cluster connection (the `.dig` "
        "loader translates it)",
    ),
    Difference(
        "47",
        "Task definition by tag: the oldest ACTIVE match, scanned on every task",
        "P",
        "The newest revision of the matching family wins, found once and cached (Variable "
        "`cmdexec_ecs_task_definitions`); no match fails the task",
        True,
    ),
    Difference(
        "48",
        "Multi-container task definitions are rejected (and the task falls back)",
        "P",
        "The command runs in the first container",
        True,
    ),
    Difference(
        "50, 65, 86",
        "The project lands in the container's WORKDIR; the IO dir is `.digdag/tmp/...` "
        "inside it, and the whole `.digdag/tmp` comes back",
        "P",
        "The project lands in a fresh temp folder (ECS, Kubernetes) or at the worker's path (Docker); "
        "the IO dir is apart and only it comes back. Relative paths work the same",
    ),
    Difference(
        "57",
        "Throttling retried up to 60 times (about 50 min)",
        "P",
        "Calls that start work retry throttling 10 times (about 2.5 min); watching retries for as long "
        "as the command may run",
    ),
    Difference(
        "72",
        "Docker bind-mounts the live workspace read-write",
        "P",
        "The project is copied into each container try: a container can never modify the DAG folder or "
        "another try's files, and files written outside the IO dir are not kept",
        True,
    ),
    Difference(
        "80-85",
        "Kubernetes executor (experimental in Digdag): the pod's deadline is polled and the pod "
        "deleted; the log re-read whole and skipped by character offset; URLs on the container's command "
        "line; a task-level `kubernetes:` object throws UnsupportedOperationException on master",
        "P",
        "The same keys and chain; the deadline is the pod's `activeDeadlineSeconds`; the log is read by "
        "kubelet timestamps; ECS's container script (curl retries, `--fail`, URLs only in env); the pod "
        "is deleted on kill and timeout; image-pull failures, OOM and deadlines fail at once; task-level "
        "`kubernetes:` works. Proven against our API emulator only",
        True,
    ),
    Difference(
        "89, 90",
        "`${secret:key}` (in `_env` values and the `sh>` command) and `_secrets`",
        "P",
        "In `.dig` workflows `${secret:key}` is the Airflow Variable `cmdexec_secret.<key>`, masked in "
        "the task log and kept out of ECS overrides and pod specs; a param holding one is text (Digdag "
        "would resolve it). `_secrets` is not supported. Python DAGs use Airflow's secrets: "
        "`{{ conn.x.password }}` / `{{ var.value.x }}` (Jinja) or `env=`",
    ),
    Difference(
        "98",
        "`${name}` in an `sh>` command is pasted into the script text",
        "P",
        "By default the shell expands it from the environment, so a value like `$(rm -rf ~)` stays "
        'text; `templating="digdag"` (the `.dig` loader) pastes it as Digdag does',
        True,
    ),
    Difference(
        "99",
        "`${...}` is JavaScript (`moment()`, operators) everywhere in the config",
        "P",
        "Names, paths (`${a.b}`, `${a[0]}`), literals and operators with JavaScript's coercions "
        "(`${n + 1}`, `${a || 'x'}`, `${n > 1 ? 'many' : 'one'}`) and moment.js dates "
        "(`${moment(session_time).add(-1, 'days').format('YYYYMMDD')}`), ES5's built-in functions and "
        "methods (`${s.split(',')}`, `${JSON.stringify(x)}`, `${Math.floor(n)}`) "
        "and regular expressions (`${s.replace(/-/g, '')}`), evaluated in Python with "
        '`templating="digdag"`; functions and object literals are a clear error',
    ),
    Difference(
        "103",
        "`_retry` on a group re-runs the whole group",
        "P",
        "Task-level `_retry` maps to `retries`/`retry_delay`; Airflow has no group retry",
    ),
    Difference(
        "105",
        "`export_params` applies to child tasks",
        "P",
        "Applied to the `py>`/`rb>` tasks it generates; without any, accepted with a warning: use `store`",
    ),
    Difference(
        "106, 122, 133",
        "`digdag.env.add_subtask` / `Digdag.env.add_subtask` generate child tasks",
        "P",
        "The generated `py>`/`rb>` tasks run inside the generating task, after it and one after the "
        "other (also with `_parallel`); a generated task of another operator fails the task with a "
        "clear error",
    ),
    Difference(
        "115",
        "`py>` runs `python` by default",
        "P",
        '`python3`: `python` is Python 2 or missing on current systems; set `python="python"`',
        True,
    ),
    Difference(
        "123",
        "Any `SystemExit` in `py>` fails with exit code 1",
        "P",
        "Any `SystemExit` fails with Digdag's message and hint, keeping a non-zero code",
    ),
)


def differences_table() -> str:
    """The README table, one row per difference."""
    rows = ["| fidelity rows | Digdag | status | here |", "|---|---|---|---|"]
    for d in DIFFERENCES:
        here = d.here + (" *(deliberate)*" if d.deliberate else "")
        cells = (d.rows, d.digdag, d.status, here)
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")  # a || in a cell
    return "\n".join(rows) + "\n"
