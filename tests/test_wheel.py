"""The built wheel, not the checkout, in a plain Airflow: ``scripts/check-wheel.sh`` as a test.

The script builds the sdist and the wheel, runs ``twine check``, and installs the wheel into two
fresh virtualenvs (Airflow 3.3.0 with every dependency at its lower bound; Airflow 3.3.2), where it
runs ``airflow providers list``, the example DAG and imports of the extras. It needs the package
registries (or a warm uv cache) and takes about ten minutes here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 3000

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(TIMEOUT + 120)]


def test_the_wheel_installs_and_runs_the_example_dag_in_a_plain_airflow() -> None:
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "check-wheel.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:  # timed out or interrupted: TERM lets the script remove its folder
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 0, output[-8000:]
    for environment, airflow in (("lowest", "3.3.0"), ("highest", "3.3.2")):
        assert f"apache-airflow {airflow}, airflow-cmdexec-provider " in output, environment
        assert f"== {environment}: airflow dags test cmdexec_example" in output, environment
    assert output.count("{'package_name': 'airflow-cmdexec-provider', ") == 2
    assert output.count("stored values seen by a plain Airflow task: doubled=12") == 2
    assert output.count(": import and sign") == 2
    assert "== OK: the wheel installs and works with apache-airflow 3.3.0 and 3.3.2" in output
