"""The Test button of our two connection types: ``test_connection`` on the real APIs.

Each test runs a connection's Test the way Airflow's API server does (``connection_test``: the
ProvidersManager finds our hook for the conn type, the hook reads the connection from the
``AIRFLOW_CONN_*`` variable the API server exports), against moto in server mode (real ECS,
CloudWatch Logs, EC2, S3 and IAM APIs; moto's IAM authentication for rejected keys) and
gcp-storage-emulator (GCS JSON API and V4 signed URLs). Success and every failure are checked
as the one sentence the user reads, and no secret may appear in it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from connection_test_support import REGION, GcsEmulator, MotoServer, connection_test

CLUSTER = "cmdexec-test-cluster"
BUCKET = "cmdexec-test-bucket"
GCS_BUCKET = "cmdexec-test-gcs"
SECRET = "connection-test-Secret-5rT9"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A fresh moto world, and no AWS settings from the developer's shell (no default region,
    credentials, profile, endpoint or instance metadata)."""
    import os

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    moto.reset()
    moto.client("ecs").create_cluster(clusterName=CLUSTER)
    moto.client("s3").create_bucket(Bucket=BUCKET)
    return moto


@pytest.fixture(scope="module")
def gcs() -> Iterator[GcsEmulator]:
    emulator = GcsEmulator(GCS_BUCKET)
    try:
        yield emulator
    finally:
        emulator.stop()


def ecs_test(
    aws: MotoServer, login: str = "AKIACONNTEST", password: str = SECRET, **extra
) -> tuple[bool, str]:
    fields = {"cluster_name": CLUSTER, "region": REGION, "endpoint_url": aws.url, **extra}
    ok, message = connection_test("cmdexec_ecs", login=login, password=password, extra=fields)
    assert SECRET not in message
    return ok, message


def s3_test(
    aws: MotoServer, login: str = "AKIACONNTEST", password: str = SECRET, **extra
) -> tuple[bool, str]:
    fields = {"type": "s3", "bucket": BUCKET, "region": REGION, "endpoint": aws.url, **extra}
    ok, message = connection_test("cmdexec_storage", login=login, password=password, extra=fields)
    assert SECRET not in message
    return ok, message


def bucket_keys(aws: MotoServer) -> list[str]:
    return [item["Key"] for item in aws.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]


# --------------------------------------------------------------------------------------------------
# ECS cluster
# --------------------------------------------------------------------------------------------------
def test_ecs_cluster_with_its_network_passes(aws: MotoServer) -> None:
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="cmdexec", Description="test", VpcId=vpc)["GroupId"]
    ok, message = ecs_test(aws, subnets=[subnet], security_groups=[group], launch_type="FARGATE")
    assert ok, message
    assert message == (
        f"ECS cluster '{CLUSTER}' is ACTIVE in {REGION} (0 running tasks); ECS and CloudWatch Logs accept "
        f"the credentials from Login/Password; subnets {subnet} exist; security groups {group} exist."
    )


def test_missing_cluster_names_the_cluster_field(aws: MotoServer) -> None:
    assert ecs_test(aws, cluster_name="no-such-cluster") == (
        False,
        f"ECS cluster 'no-such-cluster' not found in {REGION}: fix extra 'cluster_name' or 'region'",
    )


def test_cluster_in_another_region_is_not_found(aws: MotoServer) -> None:
    ok, message = ecs_test(aws, region="eu-west-1")
    assert not ok
    assert message == f"ECS cluster '{CLUSTER}' not found in eu-west-1: fix extra 'cluster_name' or 'region'"


def test_inactive_cluster_fails(aws: MotoServer) -> None:
    aws.client("ecs").delete_cluster(cluster=CLUSTER)
    assert ecs_test(aws) == (
        False,
        (
            f"ECS cluster '{CLUSTER}' in {REGION} is INACTIVE, not ACTIVE: fix extra 'cluster_name' "
            "or re-create the cluster"
        ),
    )


def test_rejected_credentials_name_login_and_password(aws: MotoServer) -> None:
    key_id, secret = aws.iam_user()
    with aws.enforce_credentials():
        ok, message = ecs_test(aws, login="AKIAUNKNOWNKEY000000")
        assert not ok
        assert message.startswith("AWS rejected the credentials from Login/Password ("), message
        assert message.endswith("): fix them")
        # the same check with the keys of a real IAM user passes, so it is the keys that failed
        ok, message = ecs_test(aws, login=key_id, password=secret)
        assert ok, message
        assert secret not in message


def test_credentials_from_the_aws_connection(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """No keys in the form: extra 'aws_conn_id' names an Amazon provider connection that has them."""
    key_id, secret = aws.iam_user()
    monkeypatch.setenv(
        "AIRFLOW_CONN_CMDEXEC_TEST_AWS",
        json.dumps({"conn_type": "aws", "login": key_id, "password": secret}),
    )
    with aws.enforce_credentials():
        ok, message = ecs_test(aws, login=None, password=None, aws_conn_id="cmdexec_test_aws")
    assert ok, message
    assert (
        "accept the credentials from the AWS connection 'cmdexec_test_aws' (extra 'aws_conn_id')" in message
    )
    assert secret not in message


def test_unknown_aws_connection_is_named(aws: MotoServer, airflow_db: None) -> None:
    assert ecs_test(aws, login=None, password=None, aws_conn_id="no_such_aws_conn") == (
        False,
        (
            "Extra 'aws_conn_id' names 'no_such_aws_conn', which is not an Airflow connection: "
            "fix extra 'aws_conn_id'"
        ),
    )


def test_no_credentials_at_all(aws: MotoServer) -> None:
    assert ecs_test(aws, login=None, password=None) == (
        False,
        "No AWS credentials were found: set Login/Password or extra 'aws_conn_id'",
    )


@pytest.mark.parametrize(("field", "label"), [("subnets", "Subnets"), ("security_groups", "Security groups")])
def test_missing_subnet_or_security_group_is_named(aws: MotoServer, field: str, label: str) -> None:
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    existing = {
        "subnets": ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"],
        "security_groups": ec2.create_security_group(GroupName="g", Description="d", VpcId=vpc)["GroupId"],
    }
    missing = "subnet-0000000000000dead" if field == "subnets" else "sg-0000000000000dead"
    ok, message = ecs_test(aws, **{field: [existing[field], missing]})
    assert (ok, message) == (False, f"{label} {missing} not found in {REGION}: fix extra '{field}'")


def test_unreachable_endpoint_names_region_and_endpoint(aws: MotoServer) -> None:
    ok, message = ecs_test(aws, endpoint_url=UNREACHABLE)
    assert not ok
    assert message.startswith(f"Could not reach AWS for ecs:DescribeClusters in {REGION} (")
    assert message.endswith("): fix extra 'region' or 'endpoint_url'")


def test_no_region_anywhere(aws: MotoServer) -> None:
    assert ecs_test(aws, region=None) == (
        False,
        "No AWS region is set and none comes from the credentials: set extra 'region'",
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"max_retries": "many"},
            "Field 'extra.max_retries' (Digdag max_retries) must be a whole number, got 'many'",
        ),
        (
            {"cluster_name": ""},
            "Extra 'cluster_name' (Digdag agent.command_executor.ecs.name) is required",
        ),
    ],
)
def test_invalid_fields_are_named_without_the_temporary_connection_id(
    aws: MotoServer, extra: dict, message: str
) -> None:
    assert ecs_test(aws, **extra) == (False, message)


def test_half_a_key_pair(aws: MotoServer) -> None:
    ok, message = ecs_test(aws, password=None)
    assert (ok, message) == (
        False,
        "Give both the access key id (Login) and the secret access key (Password), or neither",
    )


# --------------------------------------------------------------------------------------------------
# Temporal storage: S3
# --------------------------------------------------------------------------------------------------
def test_s3_round_trip_passes_and_leaves_nothing(aws: MotoServer) -> None:
    ok, message = s3_test(aws, prefix="checks")
    assert ok, message
    assert message == (
        f"s3://{BUCKET} is reachable: a test object under checks/ was written, read back through presigned "
        "GET and PUT URLs and deleted."
    )
    assert bucket_keys(aws) == []


def test_missing_bucket_names_the_bucket_field(aws: MotoServer) -> None:
    assert s3_test(aws, bucket="no-such-bucket-here") == (
        False,
        "s3://no-such-bucket-here does not exist: fix extra 'bucket'",
    )


def test_presigned_read_back_failure_is_reported_and_cleaned_up(aws: MotoServer) -> None:
    """The bucket policy lets the worker write but denies GetObject, so an ECS container could not
    download its project: the read through the presigned URL fails, the objects are still deleted."""
    deny_get = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/*",
            }
        ],
    }
    aws.client("s3").put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(deny_get))
    ok, message = s3_test(aws)
    assert (ok, message) == (
        False,
        (
            f"s3://{BUCKET}: could not read the test object back through its presigned GET URL "
            "(HTTP 403 FORBIDDEN): check the bucket policy and extras 'endpoint' and 'region', "
            "which the URL is signed for"
        ),
    )
    assert bucket_keys(aws) == []


def test_rejected_s3_credentials(aws: MotoServer) -> None:
    # (moto cannot authenticate presigned URLs, so no round trip can pass while it checks keys.)
    with aws.enforce_credentials():
        rejected = s3_test(aws, login="AKIAUNKNOWNKEY000000")
    assert rejected == (
        False,
        (
            f"s3://{BUCKET}: the storage rejected the credentials from Login/Password (InvalidAccessKeyId): "
            "fix them"
        ),
    )
    assert bucket_keys(aws) == []


def test_unreachable_s3_endpoint(aws: MotoServer) -> None:
    ok, message = s3_test(aws, endpoint=UNREACHABLE)
    assert not ok
    assert message.startswith(f"s3://{BUCKET}: could not write a test object (")
    assert message.endswith("): fix extra 'endpoint'")


def test_storage_without_bucket_names_the_field(aws: MotoServer) -> None:
    assert s3_test(aws, bucket="") == (
        False,
        "Extra 'bucket' (Digdag temporal_storage.s3.bucket) is required",
    )


# --------------------------------------------------------------------------------------------------
# Temporal storage: GCS
# --------------------------------------------------------------------------------------------------
def gcs_test(gcs: GcsEmulator, password: str | None = None, **extra) -> tuple[bool, str]:
    fields = {"type": "gcs", "bucket": GCS_BUCKET, "endpoint": gcs.url, **extra}
    ok, message = connection_test("cmdexec_storage", password=password or gcs.service_account, extra=fields)
    assert "PRIVATE KEY" not in message
    return ok, message


def test_gcs_round_trip_passes_and_leaves_nothing(gcs: GcsEmulator) -> None:
    ok, message = gcs_test(gcs)
    assert ok, message
    assert message == (
        f"gs://{GCS_BUCKET} is reachable: a test object under cmdexec/ was written, read back through "
        "presigned GET and PUT URLs and deleted."
    )
    assert gcs.blobs(GCS_BUCKET) == []


def test_missing_gcs_bucket(gcs: GcsEmulator) -> None:
    assert gcs_test(gcs, bucket="no-such-gcs-bucket") == (
        False,
        "gs://no-such-gcs-bucket does not exist: fix extra 'bucket'",
    )


def test_gcs_credentials_that_are_not_json(gcs: GcsEmulator) -> None:
    assert gcs_test(gcs, password="not-json-" + SECRET) == (
        False,
        (
            f"gs://{GCS_BUCKET}: the password must hold the service account JSON (Digdag "
            "gcs.credentials.json.content); it is not valid JSON"
        ),
    )


def test_gcs_without_any_credentials(gcs: GcsEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No Password: Application Default Credentials, and this machine has none."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # not on Google Compute Engine: no metadata server
    fields = {"type": "gcs", "bucket": GCS_BUCKET, "endpoint": gcs.url}
    assert connection_test("cmdexec_storage", extra=fields) == (
        False,
        (
            f"gs://{GCS_BUCKET}: no credentials were found in Application Default Credentials "
            "(or set Password to a service-account JSON)"
        ),
    )


def test_gcs_key_file_that_does_not_exist(gcs: GcsEmulator) -> None:
    ok, message = gcs_test(gcs, gcs_credentials_json_path="/nonexistent/cmdexec-key.json")
    assert not ok
    assert message.startswith(f"gs://{GCS_BUCKET}: could not load the credentials (FileNotFoundError: ")
    assert message.endswith("): check extra 'gcs_credentials_json_path'")
