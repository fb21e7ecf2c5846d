"""Scenario: Digdag's sla: on a real deployment, where the deadline task checks between its reschedules
while the workflow's tasks run on the Celery workers (load_project, as a user writes it)."""

from airflow_cmdexec_provider.dig import load_project

globals().update(load_project("sla_project", dag_id_prefix="deploy_sla_"))
