"""ShOperator (sh>), PyOperator (py>) and RbOperator (rb>)."""

from __future__ import annotations

from airflow_cmdexec_provider.operators.py import PyOperator
from airflow_cmdexec_provider.operators.rb import RbOperator
from airflow_cmdexec_provider.operators.sh import ShOperator

__all__ = ["PyOperator", "RbOperator", "ShOperator"]
