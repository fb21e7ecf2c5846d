"""Digdag workflows (.dig) on a real deployment, loaded as a user does (load_project): sla: with the
deadline task checking between reschedules on the Celery workers, and ${secret:...} masked in the
task logs that the supervisors write."""

from airflow_cmdexec_provider.dig import load_project

globals().update(load_project("dig_project", dag_id_prefix="deploy_dig_"))
