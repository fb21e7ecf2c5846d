#!/usr/bin/env bash
# Quickstart 2: set up (Python packages, Ruby, Docker Engine and the test image, Chromium, PostgreSQL
# and Redis) and run the whole test suite: unit tests, Airflow runs, Docker, ECS and Kubernetes
# emulators, the deployment of separate Airflow components, the browser, the wheel and the linters.
# Extra arguments go to pytest. A skipped, xfailed or deselected test fails the run.
#
# The set-up steps overlap: one apt-get run for every system package first, then the Python packages
# (pip) while dockerd starts and the test image is built. Tests run in parallel processes
# (pytest-xdist; CMDEXEC_TEST_WORKERS, default 3): most of their time is spent waiting for
# containers and Airflow processes, and tests that share a heavy fixture run in one process
# (``xdist_group``).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "test.sh: $*" >&2; }
started=$SECONDS

"$ROOT/scripts/ensure-system.sh"
say "system packages ready after $((SECONDS - started)) s"
"$ROOT/scripts/setup.sh" --test > "$ROOT/.setup.log" 2>&1 &
setup_pid=$!
"$ROOT/scripts/ensure-docker.sh"
"$ROOT/scripts/build-test-image.sh"
"$ROOT/scripts/ensure-browser.sh"
"$ROOT/scripts/ensure-services.sh"
if ! wait "$setup_pid"; then
  cat "$ROOT/.setup.log" >&2
  say "setup.sh failed"
  exit 1
fi
say "set-up done after $((SECONDS - started)) s"

cd "$ROOT"
set +e
# --durations: the slowest tests in every CI log, to keep the run under 30 minutes
CMDEXEC_REQUIRE_ALL=1 .venv/bin/python -m pytest -n "${CMDEXEC_TEST_WORKERS:-3}" --dist loadgroup --durations=40 "$@"
rc=$?
set -e
say "tests done after $((SECONDS - started)) s (exit code $rc)"
if [ $rc -eq 5 ]; then
  say "pytest collected no tests: failing"
  exit 1
fi
exit $rc
