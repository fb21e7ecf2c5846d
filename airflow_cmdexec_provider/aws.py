"""What the ECS backend, the S3 storage and the CLI share about AWS: sessions and error texts."""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

log = logging.getLogger(__name__)

THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)


def boto_session(
    *,
    access_key_id: str | None,
    secret_access_key: str | None,
    aws_conn_id: str | None,
    region: str | None,
    client_type: str,
) -> Any:
    """Credentials in Digdag's order: static keys, else an Airflow ``aws`` connection, else the
    default chain."""
    import boto3

    if access_key_id and secret_access_key:
        return boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
    if aws_conn_id:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=aws_conn_id, client_type=client_type).get_session(region)
    return boto3.session.Session(region_name=region)


def error_code(exc: BaseException) -> str | None:
    code: str | None = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
    return code


def aws_message(exc: BaseException) -> str:
    """``Code: Message`` of an AWS error, else the exception's text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code')}: {error.get('Message')}"
    return str(exc)


def credentials_expiry(session: Any) -> float | None:
    """Seconds until the session's temporary credentials expire; None for long-term keys.

    A presigned URL signed with temporary credentials (STS, an instance profile, IRSA) stops working
    when they expire, whatever its own lifetime says (review M8).
    """
    try:
        credentials = session.get_credentials()
    except Exception:  # noqa: BLE001 - no credentials at all: boto3 reports that when it signs
        return None
    if credentials is None or not getattr(credentials, "token", None):
        return None
    expiry = getattr(credentials, "_expiry_time", None)
    if expiry is None:
        return 3600.0  # a session token without a known expiry: assume STS's default hour
    from datetime import datetime

    remaining: float = (expiry - datetime.now(UTC)).total_seconds()
    return max(remaining, 0.0)
