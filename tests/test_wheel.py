"""The built wheel, not the checkout, in a plain Airflow: ``scripts/check-wheel.sh`` as a test.

The script builds the sdist and the wheel, runs ``twine check``, and installs the wheel into two
fresh virtualenvs (Airflow 3.3.0 with every dependency at its lower bound; Airflow 3.3.2), where it
runs ``airflow providers list``, the example DAG and imports of the extras. It needs the package
registries (or a warm uv cache) and takes minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(3600)]


def test_the_wheel_installs_and_runs_the_example_dag_in_a_plain_airflow() -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check-wheel.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        check=False,
        capture_output=True,
        text=True,
        timeout=3300,
        cwd=ROOT,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    for environment, airflow in (("lowest", "3.3.0"), ("highest", "3.3.2")):
        assert f"apache-airflow {airflow}, airflow-cmdexec-provider " in proc.stdout, environment
        assert f"== {environment}: airflow dags test cmdexec_example" in proc.stdout, environment
    assert proc.stdout.count("{'package_name': 'airflow-cmdexec-provider', ") == 2
    assert proc.stdout.count("stored values seen by a plain Airflow task: doubled=12") == 2
    assert proc.stdout.count(": import and sign") == 2
    assert "== OK: the wheel installs and works with apache-airflow 3.3.0 and 3.3.2" in proc.stdout
