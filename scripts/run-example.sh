#!/usr/bin/env bash
# Quickstart 1: set up, then run the example DAG end to end with `airflow dags test`
# (SQLite metadata DB; the command executor picks "local" since no ECS or Docker is configured).
# Prints the tasks' output lines. Exit code: 0 when the DAG run succeeded.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow-home}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/example_dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
set +e
.venv/bin/airflow dags test "${1:-cmdexec_example}" >"$LOG" 2>&1
rc=$?
set -e
# Show what the tasks printed and which executor ran them, without Airflow's own bookkeeping lines.
grep -E "airflow_cmdexec_provider|stored values seen|DagRun Finished|Task failed|Error|error" "$LOG" \
  | grep -v "execution_api" | sed -E 's/ +\[airflow\.task\.[^]]*\].*$//' || true
if [ $rc -ne 0 ] || ! grep -q "state=success" "$LOG"; then
  echo "example DAG run FAILED; full log follows" >&2
  cat "$LOG" >&2
  exit 1
fi
echo "example DAG run succeeded"
