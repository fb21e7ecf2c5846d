"""The Digdag configuration keys and their homes in Airflow: pure data, no Airflow import.

Kept apart from ``config.py`` because Airflow imports ``get_provider_info`` (which builds the UI
forms from these tables) while it is itself being imported; this module must not import Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------------------------------
# ECS cluster and temporal storage: Digdag agent.command_executor.ecs.* keys in two Airflow Connections.
#
#   Connection cmdexec_ecs_default      (conn type "cmdexec_ecs")      = one ECS cluster
#   Connection cmdexec_storage_default  (conn type "cmdexec_storage")  = temporal storage (S3 or GCS)
#
# A task picks others with ecs={"conn_id": ..., "storage_conn_id": ...}. Each FieldSpec below is one
# Digdag key and its one home; the README table, the UI form, the importer and show-config are all
# generated from these two tables, so they cannot disagree.
# --------------------------------------------------------------------------------------------------
ECS_CONN_ID = "cmdexec_ecs_default"
STORAGE_CONN_ID = "cmdexec_storage_default"
ECS_CONN_TYPE = "cmdexec_ecs"
STORAGE_CONN_TYPE = "cmdexec_storage"
DIGDAG_ECS_PREFIX = "agent.command_executor.ecs."
DIGDAG_STORAGE_PREFIX = "agent.command_executor.ecs.temporal_storage."

LAUNCH_TYPES = ("FARGATE", "EC2", "EXTERNAL")
PLACEMENT_STRATEGY_TYPES = ("random", "spread", "binpack")
STORAGE_TYPES = ("s3", "gcs")
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # S3 SigV4 and GCS V4 signed URLs live at most 7 days


@dataclass(frozen=True)
class FieldSpec:
    """One Digdag key and its Airflow home: a Connection field ("login", "password") or an extra."""

    digdag_key: str  # relative to the cluster (ecs.<name>.X), to ecs. (X), or to temporal_storage.
    airflow_field: str  # "login", "password" or "extra.<name>"
    kind: str  # str, int, bool, list, choice
    default: Any = None
    secret: bool = False
    choices: tuple[str, ...] = ()
    label: str = ""
    description: str = ""
    scope: str = "cluster"  # cluster: ecs.<name>.KEY; global: ecs.KEY; storage: temporal_storage.KEY

    @property
    def extra_name(self) -> str | None:
        return self.airflow_field[len("extra."):] if self.airflow_field.startswith("extra.") else None


ECS_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("name", "extra.cluster_name", "str", label="Cluster name", scope="global",
              description="ECS cluster name; required."),
    FieldSpec("region", "extra.region", "str", label="Region", description="AWS region of the cluster."),
    FieldSpec("access_key_id", "login", "str", label="AWS access key id", secret=False,
              description="Static key; leave empty to use aws_conn_id or the default AWS credential chain."),
    FieldSpec("secret_access_key", "password", "str", secret=True, label="AWS secret access key"),
    FieldSpec("launch_type", "extra.launch_type", "choice", choices=LAUNCH_TYPES, label="Launch type",
              description="Empty: none is sent (the cluster's default capacity provider, or EC2)."),
    FieldSpec("subnets", "extra.subnets", "list", label="Subnets",
              description="Subnet ids (comma-separated in Digdag, one per line in the form): enables awsvpc."),
    FieldSpec("assign_public_ip", "extra.assign_public_ip", "bool", default=True, label="Assign public IP"),
    FieldSpec("max_retries", "extra.max_retries", "int", default=3, label="AWS client max retries",
              description="Retries of the ECS and CloudWatch Logs clients (not a task retry)."),
    FieldSpec("capacity_provider_name", "extra.capacity_provider_name", "str", label="Capacity provider",
              description="capacityProviderStrategy; not together with a launch type."),
    FieldSpec("container_cpu", "extra.container_cpu", "int", label="Container CPU units"),
    FieldSpec("container_memory", "extra.container_memory", "int", label="Container memory (MiB)"),
    FieldSpec("task_cpu", "extra.task_cpu", "str", label="Task CPU", description='e.g. "1 vcpu" or "1024".'),
    FieldSpec("task_memory", "extra.task_memory", "str", label="Task memory", description='e.g. "1 GB".'),
    FieldSpec("started_by", "extra.started_by", "str", label="startedBy"),
    FieldSpec("placement_strategy_type", "extra.placement_strategy_type", "choice",
              choices=PLACEMENT_STRATEGY_TYPES, label="Placement strategy type"),
    FieldSpec("placement_strategy_field", "extra.placement_strategy_field", "str",
              label="Placement strategy field", description="e.g. memory (for binpack)."),
    FieldSpec("use_environment_file", "extra.use_environment_file", "bool", default=False,
              label="Use environment file", description="Always pass env through an S3 env file."),
    FieldSpec("fargate_platform_version", "extra.platform_version", "str", label="Fargate platform version"),
    FieldSpec("security_groups", "extra.security_groups", "list", label="Security groups",
              description="Security group ids; not in Digdag (which uses the VPC default)."),
    FieldSpec("aws_conn_id", "extra.aws_conn_id", "str", label="AWS connection id",
              description="An Airflow 'aws' connection for credentials/role (Digdag __default_config__)."),
    FieldSpec("endpoint_url", "extra.endpoint_url", "str", label="ECS/Logs endpoint URL",
              description="Only for a non-AWS endpoint; AWS_ENDPOINT_URL(_ECS) also work."),
    FieldSpec("retry_task_scripts_downloads", "extra.retry_task_scripts_downloads", "int", default=8,
              scope="global", label="curl retries: download"),
    FieldSpec("retry_task_output_uploads", "extra.retry_task_output_uploads", "int", default=7,
              scope="global", label="curl retries: upload"),
    FieldSpec("enable_curl_fail_opt_on_uploads", "extra.enable_curl_fail_opt_on_uploads", "bool",
              default=True, scope="global", label="curl --fail on upload",
              description="Digdag default false; ours true: a failed upload must not look like success."),
    FieldSpec("poll_interval", "extra.poll_interval", "int", default=2, scope="global",
              label="Status/log poll interval (s)",
              description="Not in Digdag (it polls every 10 s): how often ECS status and CloudWatch are read."),
    FieldSpec("max_wait_for_fetch_log_events", "extra.max_wait_for_fetch_log_events", "int", default=60,
              scope="global", label="Log drain wait (s)"),
    FieldSpec("max_wait_for_fetch_log_events.non_zero_status",
              "extra.max_wait_for_fetch_log_events_non_zero_status", "int", default=300, scope="global",
              label="Log drain wait on failure (s)"),
)

# "<type>." stands for the storage type: Digdag reads temporal_storage.<type>.* after temporal_storage.type.
STORAGE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("type", "extra.type", "choice", choices=STORAGE_TYPES, label="Storage type", scope="storage",
              description="Required: s3 or gcs."),
    FieldSpec("<type>.bucket", "extra.bucket", "str", label="Bucket", scope="storage",
              description="Required. The bucket of temporal_storage.type (s3 or gcs)."),
    FieldSpec("prefix", "extra.prefix", "str", default="cmdexec", label="Key prefix", scope="storage",
              description="Objects go under PREFIX/<dag>/<task>/<run>/<try>/ and are deleted after the task."),
    FieldSpec("s3.endpoint", "extra.endpoint", "str", label="S3 endpoint", scope="storage",
              description="A host (s3.amazonaws.com) or a URL with scheme and port."),
    FieldSpec("s3.path-style-access", "extra.path_style_access", "bool", default=False,
              label="S3 path-style access", scope="storage"),
    FieldSpec("s3.region", "extra.region", "str", label="S3 region", scope="storage",
              description="Region of the bucket; empty: the AWS default chain."),
    FieldSpec("s3.credentials.access-key-id", "login", "str", label="S3 access key id", scope="storage"),
    FieldSpec("s3.credentials.secret-access-key", "password", "str", secret=True,
              label="S3 secret key / GCS credentials JSON", scope="storage"),
    FieldSpec("s3.credentials.file", "extra.credentials_file", "str", label="S3 credentials file",
              scope="storage", description="A properties file on the worker with accessKey and secretKey."),
    FieldSpec("s3.aws_conn_id", "extra.aws_conn_id", "str", label="AWS connection id", scope="storage",
              description="An Airflow 'aws' connection (keys, role, endpoint) when Login/Password are empty."),
    FieldSpec("gcs.credentials.json.path", "extra.gcs_credentials_json_path", "str",
              label="GCS credentials JSON path", scope="storage",
              description="A service-account JSON file on the worker; wins over the JSON in Password."),
    FieldSpec("gcs.credentials.json.content", "password", "str", secret=True, scope="storage",
              label="GCS credentials JSON"),
    FieldSpec("<type>.direct_download_expiration", "extra.direct_download_expiration", "int", scope="storage",
              label="GET URL expiry (s)", description="Default: the task's life (execution_timeout, max 7 days)."),
    FieldSpec("<type>.direct_upload_expiration", "extra.direct_upload_expiration", "int", scope="storage",
              label="PUT URL expiry (s)", description="Default: the task's life (execution_timeout, max 7 days)."),
)


def digdag_key(spec: FieldSpec, cluster: str = "<name>", storage_type: str = "<type>") -> str:
    """The full Digdag property of ``spec``, e.g. ``agent.command_executor.ecs.<name>.region``."""
    if spec.scope == "global":
        return DIGDAG_ECS_PREFIX + spec.digdag_key
    if spec.scope == "storage":
        return DIGDAG_STORAGE_PREFIX + spec.digdag_key.replace("<type>", storage_type)
    return f"{DIGDAG_ECS_PREFIX}{cluster}.{spec.digdag_key}"
