"""The two connection types of the provider, as thin hooks, and the checks behind their Test buttons.

The hooks declare the connection contract (conn type, default connection id, form behaviour) and
load the typed configuration; running commands is ``CommandExecutorHook``'s job. The UI form itself
is declared in ``get_provider_info`` (``conn-fields`` / ``ui-field-behaviour``), generated from the
FieldSpec tables in ``config``.

``test_connection`` (the UI's Test button, i.e. ``POST /api/v2/connections/test``) and
``airflow-cmdexec check`` run the same two checks, ``check_ecs_cluster`` and
``check_temporal_storage``: they use the connection as a task would, and every failure is one
sentence that names the field to fix (``ConnectionCheckFailed``).
"""

from __future__ import annotations

import re
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from airflow_cmdexec_provider import config, digdag_keys
from airflow_cmdexec_provider.exceptions import CmdExecConfigError

# The task label in configuration errors of a check; test_connection removes it from its messages.
CHECK_LABEL = "connection-test"
# A check answers within seconds, where a task would wait and retry longer.
CHECK_TIMEOUT = 30
CHECK_URL_TTL = 600  # the presigned URLs of the test object
# Steps of the storage check whose failures point at the credentials.
LOAD_CREDENTIALS = "load the credentials"
PRESIGN = "presign URLs"
# Error codes of AWS for credentials it does not accept at all (as opposed to a missing permission).
REJECTED_CREDENTIALS = {
    "AuthFailure",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
}


class ConnectionCheckFailed(Exception):
    """A connection check failed; the message is one sentence that names the field to fix."""


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

    def test_connection(self) -> tuple[bool, str]:
        """The Test button: ``check_ecs_cluster`` on this connection."""
        try:
            summary = check_ecs_cluster(config.load_ecs_config(self.ecs_conn_id, CHECK_LABEL))
        except (CmdExecConfigError, ConnectionCheckFailed) as exc:
            return False, _form_message(exc, "ECS", self.ecs_conn_id)
        return True, f"ECS {summary}."

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

    def test_connection(self) -> tuple[bool, str]:
        """The Test button: ``check_temporal_storage`` on this connection."""
        try:
            summary = check_temporal_storage(config.load_storage_config(self.storage_conn_id, CHECK_LABEL))
        except (CmdExecConfigError, ConnectionCheckFailed) as exc:
            return False, _form_message(exc, "temporal storage", self.storage_conn_id)
        return True, f"{summary}."

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Legacy (pre-3.2) form behaviour; Airflow 3.3 reads ``ui-field-behaviour`` from provider info."""
        from airflow_cmdexec_provider.get_provider_info import legacy_ui_field_behaviour

        return legacy_ui_field_behaviour(cls.conn_type)


def _form_message(exc: Exception, kind: str, conn_id: str) -> str:
    """The message without "Task connection-test: ECS connection '<id>'": the API server tests a
    copy of the connection under a random id, which would only confuse the reader of the form."""
    pattern = rf"(Task {re.escape(CHECK_LABEL)}: )?{kind} connection {re.escape(repr(conn_id))}:? ?"
    message = str(exc)
    text = re.sub(pattern, "", message)
    return text[:1].upper() + text[1:] if re.match(pattern, message) else text


# --------------------------------------------------------------------------------------------------
# ECS cluster: exists and is ACTIVE, the credentials reach ECS and CloudWatch Logs, the network exists.
# --------------------------------------------------------------------------------------------------
def check_ecs_cluster(ecs: config.EcsConfig) -> str:
    """Check an ECS cluster connection with the credentials, region and endpoint a task would use.

    Returns a summary ("cluster 'x' is ACTIVE in ..."); raises ``ConnectionCheckFailed``.
    """
    from botocore.config import Config

    from airflow_cmdexec_provider.aws import boto_session

    source = _aws_credentials_source(ecs.access_key_id, ecs.aws_conn_id)
    if ecs.aws_conn_id and not ecs.access_key_id:
        _require_aws_connection(ecs.aws_conn_id)
    session = boto_session(
        access_key_id=ecs.access_key_id,
        secret_access_key=ecs.secret_access_key,
        aws_conn_id=ecs.aws_conn_id,
        region=ecs.region,
        client_type="ecs",
    )
    region = ecs.region or session.region_name
    if not region:
        raise ConnectionCheckFailed(
            "No AWS region is set and none comes from the credentials: set extra 'region'"
        )
    timeouts = Config(
        connect_timeout=CHECK_TIMEOUT,
        read_timeout=CHECK_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": 2},
    )

    def call(service: str, operation: str, action: str, **kwargs: Any) -> Any:
        client = session.client(service, region_name=region, endpoint_url=ecs.endpoint_url, config=timeouts)
        return _aws_call(getattr(client, operation), action, source, region, **kwargs)

    name = ecs.cluster_name
    response = call("ecs", "describe_clusters", "ecs:DescribeClusters", clusters=[name])
    found = [
        cluster
        for cluster in response.get("clusters", [])
        if cluster.get("clusterName") == name or cluster.get("clusterArn", "").endswith("/" + name)
    ]
    if not found:
        raise ConnectionCheckFailed(
            f"ECS cluster {name!r} not found in {region}: fix extra 'cluster_name' or 'region'"
        )
    status = found[0].get("status")
    if status != "ACTIVE":
        raise ConnectionCheckFailed(
            f"ECS cluster {name!r} in {region} is {status}, not ACTIVE: fix extra 'cluster_name' "
            "or re-create the cluster"
        )
    call("logs", "describe_log_groups", "logs:DescribeLogGroups", limit=1)
    summary = (
        f"cluster {name!r} is ACTIVE in {region} ({found[0].get('runningTasksCount', 0)} running tasks); "
        f"ECS and CloudWatch Logs accept the credentials from {source}"
    )
    for what, field, ids, operation, action, filter_name, items, id_key in (
        (
            "Subnets",
            "subnets",
            ecs.subnets,
            "describe_subnets",
            "ec2:DescribeSubnets",
            "subnet-id",
            "Subnets",
            "SubnetId",
        ),
        (
            "Security groups",
            "security_groups",
            ecs.security_groups,
            "describe_security_groups",
            "ec2:DescribeSecurityGroups",
            "group-id",
            "SecurityGroups",
            "GroupId",
        ),
    ):
        if not ids:
            continue
        answer = call("ec2", operation, action, Filters=[{"Name": filter_name, "Values": list(ids)}])
        missing = sorted(set(ids) - {item[id_key] for item in answer[items]})
        if missing:
            raise ConnectionCheckFailed(
                f"{what} {', '.join(missing)} not found in {region}: fix extra {field!r}"
            )
        summary += f"; {what.lower()} {', '.join(ids)} exist"
    return summary


def _aws_credentials_source(access_key_id: str | None, aws_conn_id: str | None) -> str:
    """Which fields the AWS credentials of a connection come from, for messages."""
    if access_key_id:
        return "Login/Password"
    if aws_conn_id:
        return f"the AWS connection {aws_conn_id!r} (extra 'aws_conn_id')"
    return "the default AWS credential chain (or set Login/Password or extra 'aws_conn_id')"


def _require_aws_connection(aws_conn_id: str) -> None:
    """A misspelt ``aws_conn_id`` is an error here; the Amazon provider would silently fall back to
    the default credential chain."""
    if config.get_connection(aws_conn_id) is None:
        raise ConnectionCheckFailed(
            f"Extra 'aws_conn_id' names {aws_conn_id!r}, which is not an Airflow connection: "
            "fix extra 'aws_conn_id'"
        )


def _aws_call(operation: Callable[..., Any], action: str, source: str, region: str, **kwargs: Any) -> Any:
    """Call one AWS API; its failure becomes one sentence that says what to fix."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return operation(**kwargs)
    except NoCredentialsError:
        raise ConnectionCheckFailed(
            "No AWS credentials were found: set Login/Password or extra 'aws_conn_id'"
        ) from None
    except ClientError as exc:
        code, status, message = _client_error(exc)
        if code.startswith("AccessDenied") or code == "UnauthorizedOperation":
            problem = (
                f"The credentials from {source} may not call {action} ({code}): "
                "grant it or use other credentials"
            )
        elif code in REJECTED_CREDENTIALS or status in (401, 403):
            problem = f"AWS rejected the credentials from {source} ({code}): fix them"
        else:
            problem = (
                f"AWS answered {action} in {region} with {code} ({message}): "
                "check extra 'region' and 'endpoint_url'"
            )
        raise ConnectionCheckFailed(problem) from None
    except BotoCoreError as exc:
        raise ConnectionCheckFailed(
            f"Could not reach AWS for {action} in {region} ({_first_line(exc)}): "
            "fix extra 'region' or 'endpoint_url'"
        ) from None


def _client_error(exc: Any) -> tuple[str, int | None, str]:
    """Code, HTTP status and message of a botocore ``ClientError``."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code") or status), status, _first_line(error.get("Message") or "")


def _first_line(value: Any) -> str:
    return next((line.strip() for line in str(value).splitlines() if line.strip()), type(value).__name__)


# --------------------------------------------------------------------------------------------------
# Temporal storage: the round trip of an ECS task's files, with two small test objects.
# --------------------------------------------------------------------------------------------------
def check_temporal_storage(storage_config: config.StorageConfig) -> str:
    """Check a temporal storage connection along the path of an ECS task's files.

    Writes a small object as the worker does, reads it back through a presigned GET URL as the
    container does, writes a second one through a presigned PUT URL as the container does, reads
    that as the worker does, and deletes both. Returns a summary; raises ``ConnectionCheckFailed``
    with the bucket URL, what failed and the field to fix.
    """
    from airflow_cmdexec_provider.storage import open_storage

    url = f"{'s3' if storage_config.type == 's3' else 'gs'}://{storage_config.bucket}"
    source = _storage_credentials_source(storage_config)
    other_credentials = (
        storage_config.access_key_id and storage_config.secret
    ) or storage_config.credentials_file
    if storage_config.type == "s3" and storage_config.aws_conn_id and not other_credentials:
        _require_aws_connection(storage_config.aws_conn_id)
    try:
        storage = open_storage(storage_config)
    except CmdExecConfigError as exc:
        raise ConnectionCheckFailed(f"{url}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. no default credentials, a missing key file
        raise ConnectionCheckFailed(
            _storage_failure(exc, LOAD_CREDENTIALS, source, storage_config, url)
        ) from None
    key = f"{storage_config.prefix}/connection-test-{uuid.uuid4().hex}"
    keys = [f"{key}-get", f"{key}-put"]
    payload = f"airflow-cmdexec connection test {key}\n".encode()
    failure: str | None = None
    step = "write a test object"
    with tempfile.TemporaryDirectory(prefix="cmdexec-connection-test-") as tmp:
        try:
            sent, received = Path(tmp) / "sent", Path(tmp) / "received"
            sent.write_bytes(payload)
            storage.upload_file(keys[0], sent)
            step = PRESIGN
            get_url = storage.presigned_get(keys[0], CHECK_URL_TTL)
            put_url = storage.presigned_put(keys[1], CHECK_URL_TTL)
            step = "read the test object back through its presigned GET URL"
            if _http("GET", get_url) != payload:
                raise ConnectionCheckFailed(
                    f"{url}: the presigned GET URL returned other content than was written: "
                    "fix extra 'endpoint' or 'path_style_access'"
                )
            step = "write through a presigned PUT URL"
            _http("PUT", put_url, payload)
            step = "read the object written through the presigned PUT URL"
            if not storage.download_file(keys[1], received) or received.read_bytes() != payload:
                raise ConnectionCheckFailed(
                    f"{url}: an object written through a presigned PUT URL could not be read back: "
                    "fix extra 'endpoint' or 'path_style_access'"
                )
        except ConnectionCheckFailed as exc:
            failure = str(exc)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the check's one sentence
            failure = _storage_failure(exc, step, source, storage_config, url)
    try:
        storage.delete(keys)
    except Exception as exc:  # noqa: BLE001
        failure = failure or _storage_failure(exc, "delete the test objects", source, storage_config, url)
    if failure:
        raise ConnectionCheckFailed(failure)
    return (
        f"{url} is reachable: a test object under {storage_config.prefix}/ was written, read back "
        "through presigned GET and PUT URLs and deleted"
    )


def _storage_credentials_source(storage_config: config.StorageConfig) -> str:
    """Which fields the storage credentials come from (in the order the storage classes use)."""
    if storage_config.type == "gcs":
        if storage_config.gcs_credentials_json_path:
            return "extra 'gcs_credentials_json_path'"
        if storage_config.secret:
            return "Password (the service-account JSON)"
        return "Application Default Credentials (or set Password to a service-account JSON)"
    if storage_config.access_key_id and storage_config.secret:
        return "Login/Password"
    if storage_config.credentials_file:
        return "extra 'credentials_file'"
    return _aws_credentials_source(None, storage_config.aws_conn_id)


def _http(method: str, url: str, data: bytes | None = None) -> bytes:
    """GET or PUT a presigned URL as the container's curl does (the URL is never in a message)."""
    headers = {"Content-Type": "application/octet-stream"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=CHECK_TIMEOUT) as response:
        body: bytes = response.read()
        return body


def _storage_failure(
    exc: Exception, step: str, source: str, storage_config: config.StorageConfig, url: str
) -> str:
    """One sentence for a failed step of the storage round trip: what failed, which field to fix."""
    for cause in _causes(exc):
        if isinstance(cause, urllib.error.HTTPError):
            return (
                f"{url}: could not {step} (HTTP {cause.code} {cause.reason}): check the bucket policy "
                "and extras 'endpoint' and 'region', which the URL is signed for"
            )
        if isinstance(cause, urllib.error.URLError):
            return f"{url}: could not {step} ({cause.reason}): fix extra 'endpoint'"
        code, status = _storage_error_code(cause)
        if code is None:
            continue
        if code in ("NoSuchBucket", "NotFound") or status == 404:
            return f"{url} does not exist: fix extra 'bucket'"
        if code in REJECTED_CREDENTIALS or code in ("Unauthorized", "RefreshError") or status == 401:
            return f"{url}: the storage rejected the credentials from {source} ({code}): fix them"
        if code.startswith("AccessDenied") or code == "Forbidden" or status == 403:
            return (
                f"{url}: the credentials from {source} may not {step} under {storage_config.prefix}/ "
                f"({code}): allow writing, reading and deleting objects there"
            )
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed") or status == 301:
            return f"{url} is in another region ({code}): fix extra 'region'"
        if code in ("NoCredentialsError", "DefaultCredentialsError"):
            return f"{url}: no credentials were found in {source}"
        if code in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionError"):
            return f"{url}: could not {step} ({_first_line(cause)}): fix extra 'endpoint'"
    hint = {
        LOAD_CREDENTIALS: f": check {source}",
        PRESIGN: f": the credentials from {source} must be able to sign (GCS: a service-account key)",
    }.get(step, "")
    return f"{url}: could not {step} ({type(exc).__name__}: {_first_line(exc)}){hint}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and the ones it was raised from (the storage classes wrap the client's error)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _storage_error_code(exc: BaseException) -> tuple[str | None, int | None]:
    """The error code and HTTP status of a boto3 or google-cloud-storage error, else (None, None)."""
    if isinstance(getattr(exc, "response", None), dict):
        code, status, _ = _client_error(exc)
        return code, status
    # By class name: google-cloud-storage is an optional extra, and the s3 path must not import it.
    names = [cls.__name__ for cls in type(exc).__mro__]
    if "GoogleAPICallError" in names:
        return type(exc).__name__, getattr(exc, "code", None)
    known = (
        "RefreshError",
        "DefaultCredentialsError",
        "NoCredentialsError",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ConnectionError",
    )
    return next((name for name in names if name in known), None), None
