"""The bash script a remote container runs (Digdag §6.5, with its sharp edges fixed).

Used by the ECS and Kubernetes backends: download the project archive through a presigned URL,
run the command in the project/workdir, archive the IO dir, upload it through another presigned
URL, print the end marker, exit with the command's code.

Differences from Digdag's script, on purpose:
- the presigned URLs arrive in environment variables and reach curl through ``--config -`` on its
  standard input, so they are never on any process command line, in the command override, or in a log;
- the command line is shell-quoted (Digdag joined it with spaces: arguments with spaces broke);
- a failed download stops the script (exit 90) instead of running the command on nothing;
- the upload uses ``--fail`` by default, and a failed upload is reported (exit 91 when the command
  itself succeeded), so a lost output never looks like success;
- the end marker is unique per run, printed on every exit path (also when the script fails before
  the command), on a line of its own, followed by the phase the script ended in and its exit code,
  so the worker never waits for a marker that cannot come and never confuses the command's own
  exit 90/91 with a transfer failure (reviews M4, M5, L9).
"""

from __future__ import annotations

import shlex

from airflow_cmdexec_provider.backends.base import CommandRequest, IoFile

INPUT_URL_VAR = "CMDEXEC_INPUT_URL"
OUTPUT_URL_VAR = "CMDEXEC_OUTPUT_URL"
ENV_SCRIPT = "env.sh"  # in the IO dir: variables that could not travel as overrides or env file
EXIT_DOWNLOAD_FAILED = 90
EXIT_UPLOAD_FAILED = 91
# Phases reported after the end marker.
PHASE_SETUP, PHASE_DOWNLOAD, PHASE_COMMAND, PHASE_UPLOAD, PHASE_DONE = (
    "setup",
    "download",
    "command",
    "upload",
    "done",
)


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
        f"cmdexec_phase={PHASE_SETUP}",
        # A line of its own even when the command's last output had no newline (review M5).
        f'trap \'rc=$?; printf "\\n%s %s %s\\n" {shlex.quote(end_marker)} "$cmdexec_phase" "$rc"\' EXIT',
        'CMDEXEC_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/cmdexec.XXXXXXXX")" || exit 1',
        'export CMDEXEC_IO="$CMDEXEC_ROOT/io"',
        'cd "$CMDEXEC_ROOT" || exit 1',
        f"cmdexec_phase={PHASE_DOWNLOAD}",
        (
            f'printf \'url = "%s"\\n\' "${INPUT_URL_VAR}" | curl --config - --retry {retry_downloads} '
            "--retry-connrefused --fail -sS -o input.tar.gz"
        ),
        "rc=$?",
        "if [ $rc -ne 0 ]; then",
        (
            '  echo "cmdexec: downloading the project archive failed (curl exit $rc)" >&2; exit '
            f"{EXIT_DOWNLOAD_FAILED}"
        ),
        "fi",
        (
            "tar -xzf input.tar.gz && rm -f input.tar.gz || "
            f'{{ echo "cmdexec: unpacking the project archive failed" >&2; exit {EXIT_DOWNLOAD_FAILED}; }}'
        ),
        # The archive holds files only: an empty workdir must still exist (review L10).
        f"mkdir -p project io {shlex.quote(workdir)}",
    ]
    if source_env_script:
        lines.append(f'set -a; . "$CMDEXEC_IO/{ENV_SCRIPT}"; set +a; rm -f "$CMDEXEC_IO/{ENV_SCRIPT}"')
    lines += [
        f"cmdexec_phase={PHASE_COMMAND}",
        f"cd {shlex.quote(workdir)} || exit 1",
        f"( {command} )",
        "exit_code=$?",
        'cd "$CMDEXEC_ROOT"',
        f"cmdexec_phase={PHASE_UPLOAD}",
        "tar -czf output.tar.gz -C io .",
        (
            f'printf \'url = "%s"\\n\' "${OUTPUT_URL_VAR}" | curl --config - --retry {retry_uploads} '
            f"--retry-connrefused{upload_fail} -sS -X PUT -T output.tar.gz"
        ),
        "rc=$?",
        "if [ $rc -ne 0 ]; then",
        '  echo "cmdexec: uploading the output archive failed (curl exit $rc)" >&2',
        f"  [ $exit_code -eq 0 ] && exit {EXIT_UPLOAD_FAILED}",
        "else",
        f"  cmdexec_phase={PHASE_DONE}",
        "fi",
        "exit $exit_code",
    ]
    return "\n".join(lines) + "\n"


def parse_marker_line(message: str, end_marker: str) -> tuple[str, str | None, int | None] | None:
    """Split a log line holding the end marker: (text before it, phase, exit code); None without marker."""
    index = message.find(end_marker)
    if index < 0:
        return None
    before = message[:index]
    fields = message[index + len(end_marker) :].split()
    phase = fields[0] if fields else None
    code = int(fields[1]) if len(fields) > 1 and fields[1].lstrip("-").isdigit() else None
    return before, phase, code


def env_script(env: dict[str, str]) -> str:
    """A ``sh`` script that sets ``env``: every value single-quoted, so any text survives."""
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())
