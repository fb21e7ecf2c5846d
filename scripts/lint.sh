#!/usr/bin/env bash
# Lint: ruff check, ruff format --check and mypy (strict on the package), with the settings of
# pyproject.toml's [tool.ruff] and [tool.mypy], from .venv (scripts/setup.sh --test installs them).
# Usage: scripts/lint.sh [PATH...]   (default: the package, tests/ and benchmarks/)
# All three run every time, so one run shows every finding; any finding fails the script.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
for tool in ruff mypy; do
  if [ ! -x ".venv/bin/$tool" ]; then
    echo "lint.sh: .venv/bin/$tool is missing: run scripts/setup.sh --test (it installs the [lint] extra)" >&2
    exit 2
  fi
done
if [ $# -gt 0 ]; then
  ruff_paths=("$@")
  mypy_paths=("$@")
else
  ruff_paths=(airflow_cmdexec_provider tests benchmarks)
  mypy_paths=()  # [tool.mypy] files: the package
fi
status=0
echo "== ruff check" && .venv/bin/ruff check "${ruff_paths[@]}" || status=1
echo "== ruff format --check" && .venv/bin/ruff format --check "${ruff_paths[@]}" || status=1
echo "== mypy" && .venv/bin/mypy "${mypy_paths[@]}" || status=1
exit $status
