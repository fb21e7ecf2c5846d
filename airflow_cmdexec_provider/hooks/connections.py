"""The two connection types of the provider, as thin hooks.

They only declare the connection contract (conn type, default connection id, form behaviour) and
load the typed configuration; running commands is ``CommandExecutorHook``'s job. The UI form itself
is declared in ``get_provider_info`` (``conn-fields`` / ``ui-field-behaviour``), generated from the
FieldSpec tables in ``config``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from airflow_cmdexec_provider import config, digdag_keys


class EcsClusterHook(BaseHook):
    """One ECS cluster: Digdag ``agent.command_executor.ecs.<name>.*`` in a ``cmdexec_ecs`` Connection.

    Login/Password are the optional static AWS keys; everything else is an extra (see
    ``config.ECS_FIELDS``). Without keys, extra ``aws_conn_id`` names an Airflow ``aws`` connection
    (keys, role, profile, endpoint), else the default AWS credential chain is used.

    :param ecs_conn_id: the connection id (default ``cmdexec_ecs_default``).
    """

    conn_name_attr = "ecs_conn_id"
    default_conn_name = config.ECS_CONN_ID
    conn_type = digdag_keys.ECS_CONN_TYPE
    hook_name = "Command Executor: ECS cluster"

    def __init__(self, ecs_conn_id: str = config.ECS_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ecs_conn_id = ecs_conn_id

    def get_config(self) -> config.EcsConfig:
        """Load and validate the cluster configuration (``CmdExecConfigError`` names key and field)."""
        return config.load_ecs_config(self.ecs_conn_id)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Legacy (pre-3.2) form behaviour; Airflow 3.3 reads ``ui-field-behaviour`` from provider info."""
        from airflow_cmdexec_provider.get_provider_info import legacy_ui_field_behaviour

        return legacy_ui_field_behaviour(cls.conn_type)


class TemporalStorageHook(BaseHook):
    """Temporal storage of ECS tasks: Digdag ``agent.command_executor.ecs.temporal_storage.*``.

    A ``cmdexec_storage`` Connection: extra ``type`` (s3 or gcs), ``bucket`` and the other
    ``config.STORAGE_FIELDS``; Login/Password hold the S3 keys, or Password the GCS service-account JSON.

    :param storage_conn_id: the connection id (default ``cmdexec_storage_default``).
    """

    conn_name_attr = "storage_conn_id"
    default_conn_name = config.STORAGE_CONN_ID
    conn_type = digdag_keys.STORAGE_CONN_TYPE
    hook_name = "Command Executor: temporal storage (S3/GCS)"

    def __init__(self, storage_conn_id: str = config.STORAGE_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.storage_conn_id = storage_conn_id

    def get_config(self) -> config.StorageConfig:
        """Load and validate the storage configuration (``CmdExecConfigError`` names key and field)."""
        return config.load_storage_config(self.storage_conn_id)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Legacy (pre-3.2) form behaviour; Airflow 3.3 reads ``ui-field-behaviour`` from provider info."""
        from airflow_cmdexec_provider.get_provider_info import legacy_ui_field_behaviour

        return legacy_ui_field_behaviour(cls.conn_type)
