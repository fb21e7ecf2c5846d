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
    kind: str  # str, int, bool, list, choice, duration (seconds; Digdag also writes 1h, 30m, ...)
    default: Any = None
    secret: bool = False
    choices: tuple[str, ...] = ()
    label: str = ""
    description: str = ""
    # cluster: ecs.<name>.KEY; global: ecs.KEY; storage: temporal_storage.KEY (or config_storage.in/out.KEY);
    # kubernetes: kubernetes.<name>.KEY; kubernetes-global: kubernetes.KEY
    scope: str = "cluster"

    @property
    def extra_name(self) -> str | None:
        return self.airflow_field[len("extra.") :] if self.airflow_field.startswith("extra.") else None


ECS_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "name",
        "extra.cluster_name",
        "str",
        label="Cluster name",
        scope="global",
        description="ECS cluster name; required.",
    ),
    FieldSpec("region", "extra.region", "str", label="Region", description="AWS region of the cluster."),
    FieldSpec(
        "access_key_id",
        "login",
        "str",
        label="AWS access key id",
        secret=False,
        description="Static key; leave empty to use aws_conn_id or the default AWS credential chain.",
    ),
    FieldSpec("secret_access_key", "password", "str", secret=True, label="AWS secret access key"),
    FieldSpec(
        "launch_type",
        "extra.launch_type",
        "choice",
        choices=LAUNCH_TYPES,
        label="Launch type",
        description="Empty: none is sent (the cluster's default capacity provider, or EC2).",
    ),
    FieldSpec(
        "subnets",
        "extra.subnets",
        "list",
        label="Subnets",
        description="Subnet ids (comma-separated in Digdag, one per line in the form): enables awsvpc.",
    ),
    FieldSpec("assign_public_ip", "extra.assign_public_ip", "bool", default=True, label="Assign public IP"),
    FieldSpec(
        "max_retries",
        "extra.max_retries",
        "int",
        default=3,
        label="AWS client max retries",
        description="Retries of the ECS and CloudWatch Logs clients (not a task retry).",
    ),
    FieldSpec(
        "capacity_provider_name",
        "extra.capacity_provider_name",
        "str",
        label="Capacity provider",
        description="capacityProviderStrategy; not together with a launch type.",
    ),
    FieldSpec("container_cpu", "extra.container_cpu", "int", label="Container CPU units"),
    FieldSpec("container_memory", "extra.container_memory", "int", label="Container memory (MiB)"),
    FieldSpec("task_cpu", "extra.task_cpu", "str", label="Task CPU", description='e.g. "1 vcpu" or "1024".'),
    FieldSpec("task_memory", "extra.task_memory", "str", label="Task memory", description='e.g. "1 GB".'),
    FieldSpec("started_by", "extra.started_by", "str", label="startedBy"),
    FieldSpec(
        "placement_strategy_type",
        "extra.placement_strategy_type",
        "choice",
        choices=PLACEMENT_STRATEGY_TYPES,
        label="Placement strategy type",
    ),
    FieldSpec(
        "placement_strategy_field",
        "extra.placement_strategy_field",
        "str",
        label="Placement strategy field",
        description="e.g. memory (for binpack).",
    ),
    FieldSpec(
        "use_environment_file",
        "extra.use_environment_file",
        "bool",
        default=False,
        label="Use environment file",
        description="Always pass env through an S3 env file.",
    ),
    FieldSpec("fargate_platform_version", "extra.platform_version", "str", label="Fargate platform version"),
    FieldSpec(
        "security_groups",
        "extra.security_groups",
        "list",
        label="Security groups",
        description="Security group ids; not in Digdag (which uses the VPC default).",
    ),
    FieldSpec(
        "aws_conn_id",
        "extra.aws_conn_id",
        "str",
        label="AWS connection id",
        description="An Airflow 'aws' connection for credentials/role (Digdag __default_config__).",
    ),
    FieldSpec(
        "endpoint_url",
        "extra.endpoint_url",
        "str",
        label="ECS/Logs endpoint URL",
        description="Only for a non-AWS endpoint; AWS_ENDPOINT_URL(_ECS) also work.",
    ),
    FieldSpec(
        "retry_task_scripts_downloads",
        "extra.retry_task_scripts_downloads",
        "int",
        default=8,
        scope="global",
        label="curl retries: download",
    ),
    FieldSpec(
        "retry_task_output_uploads",
        "extra.retry_task_output_uploads",
        "int",
        default=7,
        scope="global",
        label="curl retries: upload",
    ),
    FieldSpec(
        "enable_curl_fail_opt_on_uploads",
        "extra.enable_curl_fail_opt_on_uploads",
        "bool",
        default=True,
        scope="global",
        label="curl --fail on upload",
        description="Digdag default false; ours true: a failed upload must not look like success.",
    ),
    FieldSpec(
        "poll_interval",
        "extra.poll_interval",
        "int",
        default=2,
        scope="global",
        label="Status/log poll interval (s)",
        description="Not in Digdag (it polls every 10 s): how often ECS status and CloudWatch are read.",
    ),
    FieldSpec(
        "max_wait_for_fetch_log_events",
        "extra.max_wait_for_fetch_log_events",
        "int",
        default=60,
        scope="global",
        label="Log drain wait (s)",
    ),
    FieldSpec(
        "max_wait_for_fetch_log_events.non_zero_status",
        "extra.max_wait_for_fetch_log_events_non_zero_status",
        "int",
        default=300,
        scope="global",
        label="Log drain wait on failure (s)",
    ),
)

# "<type>." stands for the storage type: Digdag reads temporal_storage.<type>.* after temporal_storage.type.
STORAGE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "type",
        "extra.type",
        "choice",
        choices=STORAGE_TYPES,
        label="Storage type",
        scope="storage",
        description="Required: s3 or gcs.",
    ),
    FieldSpec(
        "<type>.bucket",
        "extra.bucket",
        "str",
        label="Bucket",
        scope="storage",
        description="Required. The bucket of temporal_storage.type (s3 or gcs).",
    ),
    FieldSpec(
        "prefix",
        "extra.prefix",
        "str",
        default="cmdexec",
        label="Key prefix",
        scope="storage",
        description="Objects go under PREFIX/<dag>/<task>/<run>/<try>/ and are deleted after the task.",
    ),
    FieldSpec(
        "s3.endpoint",
        "extra.endpoint",
        "str",
        label="S3 endpoint",
        scope="storage",
        description="A host (s3.amazonaws.com) or a URL with scheme and port.",
    ),
    FieldSpec(
        "s3.path-style-access",
        "extra.path_style_access",
        "bool",
        default=False,
        label="S3 path-style access",
        scope="storage",
    ),
    FieldSpec(
        "s3.region",
        "extra.region",
        "str",
        label="S3 region",
        scope="storage",
        description="Region of the bucket; empty: the AWS default chain.",
    ),
    FieldSpec("s3.credentials.access-key-id", "login", "str", label="S3 access key id", scope="storage"),
    FieldSpec(
        "s3.credentials.secret-access-key",
        "password",
        "str",
        secret=True,
        label="S3 secret key / GCS credentials JSON",
        scope="storage",
    ),
    FieldSpec(
        "s3.credentials.file",
        "extra.credentials_file",
        "str",
        label="S3 credentials file",
        scope="storage",
        description="A properties file on the worker with accessKey and secretKey.",
    ),
    FieldSpec(
        "s3.aws_conn_id",
        "extra.aws_conn_id",
        "str",
        label="AWS connection id",
        scope="storage",
        description="An Airflow 'aws' connection (keys, role, endpoint) when Login/Password are empty.",
    ),
    FieldSpec(
        "gcs.credentials.json.path",
        "extra.gcs_credentials_json_path",
        "str",
        label="GCS credentials JSON path",
        scope="storage",
        description="A service-account JSON file on the worker; wins over the JSON in Password.",
    ),
    FieldSpec(
        "gcs.credentials.json.content",
        "password",
        "str",
        secret=True,
        scope="storage",
        label="GCS credentials JSON",
    ),
    FieldSpec(
        "<type>.direct_download_expiration",
        "extra.direct_download_expiration",
        "int",
        scope="storage",
        label="GET URL expiry (s)",
        description="Default: the task's life (execution_timeout, max 7 days).",
    ),
    FieldSpec(
        "<type>.direct_upload_expiration",
        "extra.direct_upload_expiration",
        "int",
        scope="storage",
        label="PUT URL expiry (s)",
        description="Default: the task's life (execution_timeout, max 7 days).",
    ),
)


# --------------------------------------------------------------------------------------------------
# Kubernetes: Digdag agent.command_executor.kubernetes.* keys.
#
#   Connection cmdexec_kubernetes_default (conn type "kubernetes" of apache-airflow-providers-cncf-kubernetes)
#
# Cluster access is the cncf provider's own (in_cluster, kube_config_path, kube_config, cluster_context,
# namespace: its form has a field for each); the importer turns Digdag's master / certs_ca_data /
# oauth_token into a kube config in the extra ``kube_config``. The Digdag-only keys are extras of ours
# on the same connection, prefixed ``cmdexec_`` so that they never clash with the provider's; they all
# have defaults. config_storage.in / .out are two temporal storage connections (STORAGE_FIELDS under
# config_storage.in. / .out.) that the cluster connection names. Other Digdag clusters
# (kubernetes.<other>.*) are Connections cmdexec_kubernetes_<other>; a task picks one with
# kubernetes={"conn_id": ...}.
# --------------------------------------------------------------------------------------------------
KUBERNETES_CONN_ID = "cmdexec_kubernetes_default"
KUBERNETES_CONN_ID_PREFIX = "cmdexec_kubernetes_"
KUBERNETES_CONN_TYPE = "kubernetes"
DIGDAG_KUBERNETES_PREFIX = "agent.command_executor.kubernetes."
DIGDAG_CONFIG_STORAGE_PREFIX = DIGDAG_KUBERNETES_PREFIX + "config_storage."  # then "in." or "out."
# Where the importer puts config_storage.in.* and .out.*.
KUBERNETES_STORAGE_CONN_IDS = {"in": "cmdexec_storage_kubernetes_in", "out": "cmdexec_storage_kubernetes_out"}
KUBE_CONFIG_NOTE = (
    "In the kube config of extra kube_config, which the importer writes from master, certs_ca_data "
    "and oauth_token."
)

KUBERNETES_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "name",
        "extra.cmdexec_cluster_name",
        "str",
        scope="kubernetes-global",
        label="Digdag cluster name",
        description="Only remembered for show-config, which prints the cluster's keys under it.",
    ),
    FieldSpec(
        "master",
        "extra.kube_config",
        "str",
        scope="kubernetes",
        label="API server URL",
        description=KUBE_CONFIG_NOTE,
    ),
    FieldSpec(
        "certs_ca_data",
        "extra.kube_config",
        "str",
        scope="kubernetes",
        label="CA certificate (base64)",
        description=KUBE_CONFIG_NOTE,
    ),
    FieldSpec(
        "oauth_token",
        "extra.kube_config",
        "str",
        secret=True,
        scope="kubernetes",
        label="Bearer token",
        description=KUBE_CONFIG_NOTE,
    ),
    FieldSpec(
        "namespace",
        "extra.namespace",
        "str",
        scope="kubernetes",
        label="Namespace",
        description="Empty: the kube config context's namespace, else default.",
    ),
    FieldSpec(
        "use_kube_config",
        "extra.kube_config_path",
        "bool",
        scope="kubernetes",
        label="Use kube config",
        description="Implied by kube_config_path: not stored.",
    ),
    FieldSpec(
        "kube_config_path",
        "extra.kube_config_path",
        "str",
        scope="kubernetes",
        label="Kube config path",
        description="A kube config file on the worker (and the triggerer).",
    ),
    FieldSpec(
        "default_pod_ttl",
        "extra.cmdexec_default_pod_ttl",
        "duration",
        scope="kubernetes-global",
        label="Pod TTL (s)",
        description="A pod running longer is stopped (activeDeadlineSeconds) and the "
        "task fails. Digdag durations (1h, 30m) or seconds.",
    ),
    FieldSpec(
        "config_storage.in.*",
        "extra.cmdexec_storage_in_conn_id",
        "str",
        default="cmdexec_storage_default",
        scope="kubernetes-global",
        label="Input storage connection",
        description="The temporal storage connection of the project archive; the importer creates "
        "cmdexec_storage_kubernetes_in from config_storage.in.*.",
    ),
    FieldSpec(
        "config_storage.out.*",
        "extra.cmdexec_storage_out_conn_id",
        "str",
        default="cmdexec_storage_default",
        scope="kubernetes-global",
        label="Output storage connection",
        description="The temporal storage connection of the output archive; the importer creates "
        "cmdexec_storage_kubernetes_out from config_storage.out.*.",
    ),
    FieldSpec(
        "poll_interval",
        "extra.cmdexec_poll_interval",
        "int",
        default=2,
        scope="kubernetes-global",
        label="Status/log poll interval (s)",
        description="Not in Digdag: how often the pod and its log are read.",
    ),
)


def digdag_key(
    spec: FieldSpec,
    cluster: str = "<name>",
    storage_type: str = "<type>",
    storage_prefix: str = DIGDAG_STORAGE_PREFIX,
) -> str:
    """The full Digdag property of ``spec``, e.g. ``agent.command_executor.ecs.<name>.region``.

    ``storage_prefix`` places STORAGE_FIELDS under Kubernetes' ``config_storage.in.`` / ``.out.``.
    """
    if spec.scope == "global":
        return DIGDAG_ECS_PREFIX + spec.digdag_key
    if spec.scope == "storage":
        return storage_prefix + spec.digdag_key.replace("<type>", storage_type)
    if spec.scope == "kubernetes-global":
        return DIGDAG_KUBERNETES_PREFIX + spec.digdag_key
    if spec.scope == "kubernetes":
        return f"{DIGDAG_KUBERNETES_PREFIX}{cluster}.{spec.digdag_key}"
    return f"{DIGDAG_ECS_PREFIX}{cluster}.{spec.digdag_key}"
