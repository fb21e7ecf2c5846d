"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-cmdexec-provider",
        "name": "Command Executor (Digdag sh>/py>/rb>)",
        "description": "Run shell, Python and Ruby tasks on the worker, in Docker or on AWS ECS, "
        "chosen by configuration, with Digdag's Command Executor semantics.",
        "operators": [
            {
                "integration-name": "Command Executor",
                "python-modules": [
                    "airflow_cmdexec_provider.operators.sh",
                    "airflow_cmdexec_provider.operators.py",
                    "airflow_cmdexec_provider.operators.rb",
                ],
            }
        ],
        "hooks": [
            {
                "integration-name": "Command Executor",
                "python-modules": ["airflow_cmdexec_provider.hooks.command_executor"],
            }
        ],
    }
