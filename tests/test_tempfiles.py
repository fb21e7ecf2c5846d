"""Secrets left on disk by a SIGKILLed worker are removed by the next task on that host (review: no secret
may survive a killed worker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from airflow_cmdexec_provider import tempfiles

CREATE_AND_WAIT = """
import sys, time
from airflow_cmdexec_provider import tempfiles
path = tempfiles.private_dir("io")
(path / "input.json").write_text('{"params": {"password": "s3cret"}}')
print(path, flush=True)
time.sleep(300)
"""


def _start_owner() -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CREATE_AND_WAIT],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_owners_folder_is_swept_and_a_live_owners_is_kept():
    killed, killed_dir = _start_owner()
    alive, alive_dir = _start_owner()
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
        assert (killed_dir / "input.json").exists()  # what a SIGKILL leaves behind
        removed = tempfiles.sweep()
        assert killed_dir.name in removed
        assert not killed_dir.exists()
        assert alive_dir.exists()
        assert alive_dir.name not in removed
        assert oct(alive_dir.stat().st_mode & 0o777) == "0o700"
    finally:
        alive.kill()
        alive.wait(timeout=30)
    assert alive_dir.name in tempfiles.sweep()


def test_folders_that_are_not_ours_are_never_touched():
    foreign = Path(tempfile.mkdtemp(prefix="cmdexec-foreign-"))  # no owner file: another program's, or older
    try:
        assert foreign.name not in tempfiles.sweep()
        assert foreign.exists()
    finally:
        foreign.rmdir()
