"""The provider's Airflow plugin: registers the Digdag schedule timetable, which the scheduler must
be able to deserialize (entry point ``airflow.plugins`` in ``pyproject.toml``)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_cmdexec_provider.dig.timetable import DigdagTimetable


class CmdExecDigdagPlugin(AirflowPlugin):
    name = "cmdexec_digdag"
    timetables = [DigdagTimetable]  # noqa: RUF012 - Airflow's plugin interface
