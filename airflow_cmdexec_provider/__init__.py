"""airflow-cmdexec-provider: Digdag's Command Executor (sh>, py>, rb> on local, Docker, ECS) for Airflow 3."""

from __future__ import annotations

__version__ = "0.1.0"
