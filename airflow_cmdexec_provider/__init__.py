"""airflow-cmdexec-provider: Digdag's Command Executor (sh>, py>, rb> on local, Docker, ECS) for Airflow 3."""

from __future__ import annotations

# The one place of the version: setuptools reads it for the package metadata (pyproject.toml,
# [tool.setuptools.dynamic]) and get_provider_info() hands it to Airflow.
__version__ = "0.1.0"
