#!/usr/bin/env bash
# Set up everything the project needs on a fresh machine (Debian/Ubuntu, Python 3.11.4+), idempotently:
#   - system packages that are missing: ruby (rb> tasks);
#   - a virtualenv in .venv with Airflow 3.3 and this provider (editable), plus test tools with --test;
#   - an Airflow home in .airflow-home with a migrated SQLite database.
# Usage: scripts/setup.sh [--test]
set -euo pipefail
PROG="$(basename "$0")"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { echo "$PROG: $*" >&2; }

WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1

apt_install() {
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  # Another apt run (e.g. a parallel setup) holds the lock: wait for it.
  while pgrep -x apt-get >/dev/null 2>&1 || pgrep -x dpkg >/dev/null 2>&1; do sleep 2; done
  say "installing system packages: $*"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v ruby >/dev/null 2>&1 || apt_install ruby

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
EXTRAS="gcs"
[ "$WITH_TEST" = 1 ] && EXTRAS="gcs,test,lint"
STAMP=".venv/.cmdexec-installed-$EXTRAS-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
  say "installing Python packages into .venv (Airflow takes a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  touch "$STAMP"
fi

export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow-home}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$ROOT/example_dags}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
mkdir -p "$AIRFLOW_HOME"
if [ ! -f "$AIRFLOW_HOME/airflow.db" ]; then
  say "creating the Airflow metadata database (SQLite) in $AIRFLOW_HOME"
  .venv/bin/airflow db migrate >/dev/null
fi
say "ready"
