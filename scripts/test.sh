#!/usr/bin/env bash
# Quickstart 2: set up (Python packages, Ruby, Docker Engine, the test image, Chromium) and run the
# whole test suite: unit tests, Airflow runs, Docker, ECS-emulator and browser tests. Extra
# arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --test
"$ROOT/scripts/ensure-docker.sh"
"$ROOT/scripts/build-test-image.sh"
[ -x "$ROOT/scripts/ensure-browser.sh" ] && "$ROOT/scripts/ensure-browser.sh"
cd "$ROOT"
set +e
CMDEXEC_REQUIRE_ALL=1 .venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit $rc
