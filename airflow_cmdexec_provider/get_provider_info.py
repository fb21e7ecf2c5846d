"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

The two connection types (an ECS cluster, the temporal storage) are declared the Airflow 3.3 way:
``connection-types[].conn-fields`` (one JSON-schema field per extra) and ``ui-field-behaviour``
(hidden / relabelled standard fields, placeholders). ``ProvidersManager._load_ui_metadata`` reads
them without importing the hooks, and the API server's ``/ui/connections/hook_meta`` hands them to
the React "Add Connection" form. The fields are generated from ``config.ECS_FIELDS`` and
``config.STORAGE_FIELDS``, so the form, the importer, ``show-config`` and the docs cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_JSON_TYPES = {"str": "string", "int": "integer", "bool": "boolean", "list": "array", "choice": "string"}

# Standard Connection fields the two forms do not use.
_HIDDEN_FIELDS = ["host", "schema", "port"]


def conn_fields(fields: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """``conn-fields`` for the extras of a FieldSpec table: booleans as boolean, ints as integer,
    lists as arrays of strings, choices as enums; the label, the Digdag key and the default."""
    from airflow_cmdexec_provider.digdag_keys import digdag_key

    result: dict[str, dict[str, Any]] = {}
    for spec in fields:
        name = spec.extra_name
        if name is None or name in result:
            continue
        schema: dict[str, Any] = {"type": [_JSON_TYPES[spec.kind], "null"]}
        if spec.kind == "list":
            schema["items"] = {"type": "string"}
        if spec.kind == "choice":
            schema["enum"] = list(spec.choices)
        if spec.default is not None:
            schema["default"] = spec.default
        key = digdag_key(spec)
        description = spec.description if key in spec.description else f"{spec.description} Digdag: {key}"
        description = description.strip()
        result[name] = {"label": spec.label or name, "schema": schema, "description": description}
    return result


def _standard_field_labels(fields: Sequence[Any]) -> dict[str, str]:
    """Labels of the standard fields (Login, Password) the table maps Digdag keys to."""
    labels: dict[str, str] = {}
    for spec in fields:
        if spec.extra_name is None and spec.airflow_field not in labels and spec.label:
            labels[spec.airflow_field] = spec.label
    return labels


def ui_field_behaviour(conn_type: str) -> dict[str, Any]:
    """``ui-field-behaviour`` of one of our connection types (kebab-case, as in provider.yaml)."""
    from airflow_cmdexec_provider import digdag_keys as config

    if conn_type == config.ECS_CONN_TYPE:
        return {
            "hidden-fields": list(_HIDDEN_FIELDS),
            "relabeling": _standard_field_labels(config.ECS_FIELDS),
            "placeholders": {
                "login": "empty: the 'AWS connection id' below, or the default AWS credential chain",
                "password": "the secret access key, only together with the access key id",
                "description": "ECS cluster for sh>/py>/rb> tasks (Digdag agent.command_executor.ecs.*)",
                "extra": '{"cluster_name": "digdag-test", "region": "us-east-1", "launch_type": "FARGATE",'
                ' "subnets": ["subnet-0123"]}',
            },
        }
    if conn_type == config.STORAGE_CONN_TYPE:
        return {
            "hidden-fields": list(_HIDDEN_FIELDS),
            "relabeling": {"login": "S3 access key id", "password": "S3 secret key / GCS credentials JSON"},
            "placeholders": {
                "login": "s3: empty for the 'AWS connection id' below or the default AWS credential chain",
                "password": "s3: the secret access key; gcs: the service-account JSON (empty: ADC)",
                "description": "Temporal storage of ECS tasks (Digdag "
                "agent.command_executor.ecs.temporal_storage.*)",
                "extra": '{"type": "s3", "bucket": "my-bucket", "endpoint": "s3.amazonaws.com"}',
            },
        }
    raise KeyError(conn_type)


def legacy_ui_field_behaviour(conn_type: str) -> dict[str, Any]:
    """The same, in the pre-3.2 ``get_ui_field_behaviour()`` format (snake_case keys)."""
    behaviour = ui_field_behaviour(conn_type)
    return {
        "hidden_fields": behaviour["hidden-fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }


def get_provider_info() -> dict[str, Any]:
    from airflow_cmdexec_provider import __version__, digdag_keys as config

    return {
        "package-name": "airflow-cmdexec-provider",
        "name": "Command Executor (Digdag sh>/py>/rb>)",
        "description": (
            "Run shell, Python and Ruby tasks on the worker, in Docker, on AWS ECS or in Kubernetes "
            "pods, chosen by configuration, with Digdag's Command Executor semantics. The Kubernetes "
            "executor uses the 'kubernetes' connection type of apache-airflow-providers-cncf-kubernetes "
            "(extra [kubernetes])."
        ),
        "versions": [__version__],
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
                "python-modules": [
                    "airflow_cmdexec_provider.hooks.command_executor",
                    "airflow_cmdexec_provider.hooks.connections",
                ],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_cmdexec_provider.hooks.connections.EcsClusterHook",
                "hook-name": "Command Executor: ECS cluster",
                "connection-type": config.ECS_CONN_TYPE,
                "conn-fields": conn_fields(config.ECS_FIELDS),
                "ui-field-behaviour": ui_field_behaviour(config.ECS_CONN_TYPE),
            },
            {
                "hook-class-name": "airflow_cmdexec_provider.hooks.connections.TemporalStorageHook",
                "hook-name": "Command Executor: temporal storage (S3/GCS)",
                "connection-type": config.STORAGE_CONN_TYPE,
                "conn-fields": conn_fields(config.STORAGE_FIELDS),
                "ui-field-behaviour": ui_field_behaviour(config.STORAGE_CONN_TYPE),
            },
        ],
    }
