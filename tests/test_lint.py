"""Clean code, kept clean: ``scripts/lint.sh`` (ruff check, ruff format --check, mypy strict on the
package) finds nothing, and fails on what each tool finds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = ROOT / "scripts" / "lint.sh"


def _lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(LINT), *map(str, paths)], cwd=ROOT, capture_output=True, text=True, check=False
    )


# mypy's first run on a fresh clone has no cache: minutes on a loaded 2-core machine.
@pytest.mark.timeout(1800)
def test_the_project_has_no_lint_findings() -> None:
    result = _lint()
    assert result.returncode == 0, (
        f"scripts/lint.sh found problems (exit {result.returncode}); fix them, or run "
        f"`.venv/bin/ruff check --fix` and `.venv/bin/ruff format` for the mechanical ones:\n"
        f"{result.stdout}\n{result.stderr}"
    )


def test_each_tool_fails_the_script(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    # an unused import (ruff check), a line to reformat (ruff format), a missing annotation (mypy)
    bad.write_text("import os\n\n\ndef twice(x):\n    return x+x\n")
    result = _lint(bad)
    assert result.returncode == 1, f"{result.stdout}\n{result.stderr}"
    assert "F401" in result.stdout
    assert "would be reformatted" in result.stdout
    assert "[no-untyped-def]" in result.stdout
