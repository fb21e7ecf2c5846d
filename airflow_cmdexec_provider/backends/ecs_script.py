"""The bash script an ECS task's container runs (Digdag §6.5, with its sharp edges fixed).

Differences from Digdag's script, on purpose:
- the presigned URLs arrive in environment variables and reach curl through ``--config -`` on its
  standard input, so they are never on any process command line, in the task definition's command
  override, or in a log;
- the command line is shell-quoted (Digdag joined it with spaces: arguments with spaces broke);
- a failed download stops the script (exit 90) instead of running the command on nothing;
- the upload uses ``--fail`` by default, and a failed upload is reported (exit 91 when the command
  itself succeeded), so a lost output never looks like success;
- the end marker is unique per run, so no line a user prints can end log collection early.
"""

from __future__ import annotations

import shlex

from airflow_cmdexec_provider.backends.base import CommandRequest, IoFile

INPUT_URL_VAR = "CMDEXEC_INPUT_URL"
OUTPUT_URL_VAR = "CMDEXEC_OUTPUT_URL"
ENV_SCRIPT = "env.sh"  # in the IO dir: variables that could not travel as ECS overrides or env file
EXIT_DOWNLOAD_FAILED = 90
EXIT_UPLOAD_FAILED = 91


def container_script(
    request: CommandRequest,
    end_marker: str,
    retry_downloads: int,
    retry_uploads: int,
    fail_on_upload: bool,
    source_env_script: bool,
) -> str:
    """Return the script; its only inputs at run time are the two URL environment variables."""
    command = " ".join(
        f'"$CMDEXEC_IO"/{shlex.quote(a.name)}' if isinstance(a, IoFile) else shlex.quote(a)
        for a in request.command
    )
    workdir = "project" + (f"/{request.workdir}" if request.workdir else "")
    upload_fail = " --fail" if fail_on_upload else ""
    lines = [
        "set -u",
        'CMDEXEC_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/cmdexec.XXXXXXXX")" || exit 1',
        'export CMDEXEC_IO="$CMDEXEC_ROOT/io"',
        'cd "$CMDEXEC_ROOT" || exit 1',
        f'printf \'url = "%s"\\n\' "${INPUT_URL_VAR}" | curl --config - --retry {retry_downloads} '
        "--retry-connrefused --fail -sS -o input.tar.gz",
        "rc=$?",
        "if [ $rc -ne 0 ]; then",
        f'  echo "cmdexec: downloading the project archive failed (curl exit $rc)" >&2; echo "{end_marker}"; '
        f"exit {EXIT_DOWNLOAD_FAILED}",
        "fi",
        "tar -xzf input.tar.gz && rm -f input.tar.gz || "
        f'{{ echo "cmdexec: unpacking the project archive failed" >&2; echo "{end_marker}"; '
        f"exit {EXIT_DOWNLOAD_FAILED}; }}",
        "mkdir -p project io",
    ]
    if source_env_script:
        lines.append(f'set -a; . "$CMDEXEC_IO/{ENV_SCRIPT}"; set +a; rm -f "$CMDEXEC_IO/{ENV_SCRIPT}"')
    lines += [
        f"cd {shlex.quote(workdir)} || exit 1",
        f"( {command} )",
        "exit_code=$?",
        'cd "$CMDEXEC_ROOT"',
        'tar -czf output.tar.gz -C io .',
        f'printf \'url = "%s"\\n\' "${OUTPUT_URL_VAR}" | curl --config - --retry {retry_uploads} '
        f"--retry-connrefused{upload_fail} -sS -X PUT -T output.tar.gz",
        "rc=$?",
        "if [ $rc -ne 0 ]; then",
        '  echo "cmdexec: uploading the output archive failed (curl exit $rc)" >&2',
        f"  [ $exit_code -eq 0 ] && exit_code={EXIT_UPLOAD_FAILED}",
        "fi",
        f'echo "{end_marker}"',
        "exit $exit_code",
    ]
    return "\n".join(lines) + "\n"


def env_script(env: dict[str, str]) -> str:
    """A ``sh`` script that sets ``env``: every value single-quoted, so any text survives."""
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())
