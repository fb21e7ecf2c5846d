"""Digdag workflow files (``.dig``) as Airflow DAGs: ``globals().update(load_project(path))``.

Modules: ``yaml_dialect`` (Digdag's YAML), ``compiler`` (workflow -> DAG), ``constructs`` (what is
supported: enforced by the compiler, printed in the README), ``timetable`` (``schedule:``),
``unroll`` (for_each>/loop>/for_range> generated at load time), ``operators`` (sh>/py>/rb> with
Digdag's evaluation, echo>, fail>, if>, wait>), ``project`` (``load_project`` and its cache),
``plugin`` (registers the timetable).
"""

from __future__ import annotations

from airflow_cmdexec_provider.dig.errors import DigLoadError, Problem
from airflow_cmdexec_provider.dig.project import load_project

__all__ = ["DigLoadError", "Problem", "load_project"]
