"""The two connection types: loading and validation, the UI declaration, and where lookups go.

- ``ecs_config_from_connection`` / ``storage_config_from_connection``: typed values, errors that
  name the Digdag key and the Airflow field, secrets never in messages or reprs;
- provider info: ``connection-types`` with ``conn-fields`` generated from the FieldSpec tables and
  ``ui-field-behaviour``, as Airflow 3.3's ProvidersManager and the UI's hook_meta API read them;
- ``config.get_connection`` / ``config.executor_type``: the Task SDK inside a task, airflow.models
  (secrets backends + metadata DB) elsewhere; both paths for real.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import airflow.sdk  # noqa: F401  # first: the provider's config imports airflow.sdk
import pytest
from airflow.sdk import Connection

from airflow_cmdexec_provider import config, digdag_keys
from airflow_cmdexec_provider.exceptions import BackendNotConfigured, CmdExecConfigError
from airflow_cmdexec_provider.get_provider_info import conn_fields, get_provider_info
from airflow_cmdexec_provider.hooks.connections import EcsClusterHook, TemporalStorageHook

VENV_BIN = Path(sys.executable).parent
SECRET = "Sup3r-Secret-Value-0123456789"


def ecs_conn(
    extra: dict[str, Any] | None = None, login: str | None = None, password: str | None = None
) -> Any:
    return Connection(
        conn_id="c",
        conn_type="cmdexec_ecs",
        login=login,
        password=password,
        extra=json.dumps({"cluster_name": "digdag-test", "region": "us-east-1", **(extra or {})}),
    )


def storage_conn(extra: dict[str, Any], login: str | None = None, password: str | None = None) -> Any:
    return Connection(
        conn_id="s", conn_type="cmdexec_storage", login=login, password=password, extra=json.dumps(extra)
    )


def load_ecs(conn: Any) -> config.EcsConfig:
    return config.ecs_config_from_connection(conn, "cmdexec_ecs_default", {}, "dag.task", None, "img")


def load_storage(conn: Any) -> config.StorageConfig:
    return config.storage_config_from_connection(conn, "cmdexec_storage_default", "dag.task")


# -- conversion and validation ----------------------------------------------------------------------
def test_ecs_connection_values_are_typed() -> None:
    cfg = load_ecs(
        ecs_conn(
            {
                "launch_type": "fargate",
                "subnets": "subnet-1, subnet-2",
                "assign_public_ip": "false",
                "max_retries": "5",
                "container_cpu": 256,
                "security_groups": ["sg-1"],
                "use_environment_file": True,
            },
            login="AKIAEXAMPLE",
            password=SECRET,
        )
    )
    assert cfg.cluster_name == "digdag-test"
    assert cfg.launch_type == "FARGATE"
    assert cfg.subnets == ("subnet-1", "subnet-2")
    assert cfg.security_groups == ("sg-1",)
    assert cfg.assign_public_ip is False
    assert (cfg.max_retries, cfg.container_cpu, cfg.use_environment_file) == (5, 256, True)
    assert (cfg.access_key_id, cfg.secret_access_key) == ("AKIAEXAMPLE", SECRET)
    assert SECRET not in repr(cfg)
    # defaults from the table
    assert (cfg.retry_task_scripts_downloads, cfg.retry_task_output_uploads) == (8, 7)
    assert cfg.enable_curl_fail_opt_on_uploads is True


def test_storage_connection_values_are_typed() -> None:
    cfg = load_storage(
        storage_conn(
            {
                "type": "S3",
                "bucket": "b",
                "endpoint": "s3.amazonaws.com",
                "path_style_access": "true",
                "direct_upload_expiration": "3600",
            },
            login="AKIAEXAMPLE",
            password=SECRET,
        )
    )
    assert (cfg.type, cfg.bucket, cfg.prefix) == ("s3", "b", "cmdexec")
    assert cfg.endpoint_url == "https://s3.amazonaws.com"
    assert cfg.path_style_access is True
    assert cfg.direct_upload_expiration == 3600
    assert cfg.secret == SECRET
    assert SECRET not in repr(cfg)


@pytest.mark.parametrize(
    ("extra", "digdag", "field"),
    [
        ({"max_retries": "three"}, "max_retries", "extra.max_retries"),
        ({"max_retries": "-1"}, "max_retries", "extra.max_retries"),
        ({"launch_type": "LAMBDA"}, "launch_type", "extra.launch_type"),
        (
            {"placement_strategy_type": "roundrobin"},
            "placement_strategy_type",
            "extra.placement_strategy_type",
        ),
        ({"assign_public_ip": "maybe"}, "assign_public_ip", "extra.assign_public_ip"),
        ({"container_memory": "1 GB"}, "container_memory", "extra.container_memory"),
    ],
)
def test_bad_ecs_value_names_digdag_key_and_field(extra: dict, digdag: str, field: str) -> None:
    with pytest.raises(CmdExecConfigError) as info:
        load_ecs(ecs_conn(extra, password=SECRET, login="AKIA"))
    message = str(info.value)
    assert f"'{field}'" in message, message
    assert f"Digdag {digdag}" in message, message
    assert "cmdexec_ecs_default" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"cluster_name": ""}, "agent.command_executor.ecs.name"),
        ({"placement_strategy_field": "memory"}, "placement_strategy_type"),
        ({"launch_type": "FARGATE", "capacity_provider_name": "cp"}, "capacity_provider_name"),
    ],
)
def test_inconsistent_ecs_connection(extra: dict, expected: str) -> None:
    with pytest.raises(CmdExecConfigError, match=expected):
        load_ecs(ecs_conn(extra))


def test_half_a_key_pair_is_an_error_without_the_secret() -> None:
    with pytest.raises(CmdExecConfigError) as info:
        load_ecs(ecs_conn(password=SECRET))
    assert "Login" in str(info.value)
    assert "Password" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"bucket": "b"}, r"extra 'type' \(Digdag temporal_storage.type\) is required"),
        ({"type": "ftp", "bucket": "b"}, r"'extra.type' \(Digdag type\) must be one of s3, gcs"),
        ({"type": "s3"}, r"extra 'bucket' \(Digdag temporal_storage.s3.bucket\) is required"),
        ({"type": "gcs", "bucket": "b", "direct_download_expiration": 10**7}, "direct_download_expiration"),
        ({"type": "s3", "bucket": "b", "path_style_access": "sometimes"}, "path_style_access"),
    ],
)
def test_bad_storage_connection(extra: dict, expected: str) -> None:
    with pytest.raises(CmdExecConfigError, match=expected) as info:
        load_storage(storage_conn(extra, password=SECRET))
    assert "cmdexec_storage_default" in str(info.value)
    assert SECRET not in str(info.value)


def test_task_override_is_validated_with_the_key() -> None:
    with pytest.raises(CmdExecConfigError, match="max_retries"):
        config.ecs_config_from_connection(ecs_conn(), "c", {"max_retries": "x"}, "dag.task", None, "img")


def test_every_digdag_key_has_one_home() -> None:
    for fields in (config.ECS_FIELDS, config.STORAGE_FIELDS):
        keys = [
            digdag_keys.digdag_key(spec, "n", "s3" if spec.digdag_key.startswith("s3.") else "gcs")
            for spec in fields
        ]
        assert len(keys) == len(set(keys))
        extras = [spec.extra_name for spec in fields if spec.extra_name]
        assert len(extras) == len(set(extras))
        assert all(spec.airflow_field in ("login", "password") or spec.extra_name for spec in fields)
        assert all(spec.secret == (spec.airflow_field == "password") for spec in fields)


# -- provider info: connection-types, conn-fields, ui-field-behaviour ------------------------------
JSON_TYPES = {"str": "string", "int": "integer", "bool": "boolean", "list": "array", "choice": "string"}


def test_conn_fields_are_generated_from_the_tables() -> None:
    info = get_provider_info()
    types = {c["connection-type"]: c for c in info["connection-types"]}
    assert set(types) == {"cmdexec_ecs", "cmdexec_storage"}
    assert types["cmdexec_ecs"]["hook-class-name"].endswith(".EcsClusterHook")
    assert types["cmdexec_storage"]["hook-class-name"].endswith(".TemporalStorageHook")
    for conn_type, table in (("cmdexec_ecs", config.ECS_FIELDS), ("cmdexec_storage", config.STORAGE_FIELDS)):
        fields = types[conn_type]["conn-fields"]
        assert fields == conn_fields(table)
        extras = [spec for spec in table if spec.extra_name]
        assert set(fields) == {spec.extra_name for spec in extras}
        for spec in extras:
            field = fields[spec.extra_name]
            assert field["label"] == spec.label
            assert field["schema"]["type"] == [JSON_TYPES[spec.kind], "null"]
            assert field["schema"].get("default") == spec.default
            assert field["schema"].get("enum") == (list(spec.choices) if spec.kind == "choice" else None)
            assert digdag_keys.digdag_key(spec) in field["description"]
        behaviour = types[conn_type]["ui-field-behaviour"]
        assert set(behaviour["hidden-fields"]) == {"host", "schema", "port"}
        assert set(behaviour["relabeling"]) == {"login", "password"}
        assert {"login", "password"} <= set(behaviour["placeholders"])
    # No secret ever lives in an extra (extras are shown in the form).
    assert not any(spec.secret for spec in config.ECS_FIELDS + config.STORAGE_FIELDS if spec.extra_name)


def test_provider_info_validates_against_airflow_schema() -> None:
    import jsonschema
    from airflow.providers_manager import _create_provider_info_schema_validator

    _create_provider_info_schema_validator().validate(get_provider_info())
    assert jsonschema  # the validator is jsonschema's


def test_ui_hook_meta_serves_our_forms() -> None:
    """What the React "Add Connection" form gets from GET /ui/connections/hook_meta."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    metas = {m.connection_type: m for m in HookMetaService.hook_meta_data()}
    ecs = metas["cmdexec_ecs"]
    assert ecs.hook_name == "Command Executor: ECS cluster"
    assert ecs.standard_fields.login.title == "AWS access key id"
    assert ecs.standard_fields.password.title == "AWS secret access key"
    assert ecs.standard_fields.host.hidden
    assert ecs.standard_fields.port.hidden
    assert ecs.extra_fields["launch_type"]["schema"]["enum"] == list(digdag_keys.LAUNCH_TYPES)
    assert ecs.extra_fields["assign_public_ip"]["schema"]["type"] == ["boolean", "null"]
    assert ecs.extra_fields["assign_public_ip"]["value"] is True
    assert ecs.extra_fields["max_retries"]["schema"]["type"] == ["integer", "null"]
    assert ecs.extra_fields["subnets"]["schema"]["type"] == ["array", "null"]
    storage = metas["cmdexec_storage"]
    assert storage.extra_fields["type"]["schema"]["enum"] == ["s3", "gcs"]
    assert storage.extra_fields["path_style_access"]["schema"]["type"] == ["boolean", "null"]
    assert storage.standard_fields.password.title == "S3 secret key / GCS credentials JSON"


def test_airflow_cli_knows_the_provider_and_both_connection_types() -> None:
    env = {k: v for k, v in os.environ.items() if k != "_AIRFLOW_PROCESS_CONTEXT"}
    providers = subprocess.run(
        [str(VENV_BIN / "airflow"), "providers", "list", "--output", "json"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert providers.returncode == 0, providers.stderr
    assert "airflow-cmdexec-provider" in providers.stdout
    hooks = subprocess.run(
        [str(VENV_BIN / "airflow"), "providers", "hooks", "--output", "json"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert hooks.returncode == 0, hooks.stderr
    rows = json.loads(hooks.stdout[hooks.stdout.index("[") :])
    by_type = {row["connection_type"]: row for row in rows}
    assert by_type["cmdexec_ecs"]["class"] == "airflow_cmdexec_provider.hooks.connections.EcsClusterHook"
    assert by_type["cmdexec_ecs"]["conn_id_attribute_name"] == "ecs_conn_id"
    assert (
        by_type["cmdexec_storage"]["class"]
        == "airflow_cmdexec_provider.hooks.connections.TemporalStorageHook"
    )
    assert by_type["cmdexec_storage"]["package_name"] == "airflow-cmdexec-provider"


def test_hooks_declare_the_contract() -> None:
    assert (EcsClusterHook.conn_type, EcsClusterHook.default_conn_name) == (
        "cmdexec_ecs",
        "cmdexec_ecs_default",
    )
    assert (TemporalStorageHook.conn_type, TemporalStorageHook.default_conn_name) == (
        "cmdexec_storage",
        "cmdexec_storage_default",
    )
    legacy = EcsClusterHook.get_ui_field_behaviour()
    assert set(legacy) == {"hidden_fields", "relabeling", "placeholders"}
    assert legacy["relabeling"]["login"] == "AWS access key id"
    assert TemporalStorageHook.get_ui_field_behaviour()["hidden_fields"] == ["host", "schema", "port"]


def test_hooks_load_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CMDEXEC_ECS_HOOKTEST",
        json.dumps(
            {"conn_type": "cmdexec_ecs", "extra": {"cluster_name": "env-cluster", "region": "eu-west-1"}}
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CMDEXEC_STORAGE_HOOKTEST",
        json.dumps(
            {"conn_type": "cmdexec_storage", "password": SECRET, "extra": {"type": "gcs", "bucket": "g"}}
        ),
    )
    ecs = EcsClusterHook(ecs_conn_id="cmdexec_ecs_hooktest").get_config()
    assert (ecs.cluster_name, ecs.region, ecs.conn_id) == ("env-cluster", "eu-west-1", "cmdexec_ecs_hooktest")
    storage = TemporalStorageHook(storage_conn_id="cmdexec_storage_hooktest").get_config()
    assert (storage.type, storage.bucket, storage.secret) == ("gcs", "g", SECRET)
    with pytest.raises(BackendNotConfigured):
        EcsClusterHook(ecs_conn_id="cmdexec_ecs_does_not_exist").get_config()


# -- config.get_connection / executor_type: SDK in a task, airflow.models elsewhere -----------------
class _Recorder:
    def __init__(self, result: Any) -> None:
        self.calls: list[tuple] = []
        self.result = result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def test_lookup_outside_a_task_uses_airflow_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models import Connection as ConnectionModel, Variable as VariableModel
    from airflow.sdk.execution_time import task_runner

    monkeypatch.delattr(task_runner, "SUPERVISOR_COMMS", raising=False)
    models_conn = _Recorder(ConnectionModel(conn_id="x", conn_type="cmdexec_ecs"))
    models_var = _Recorder("docker")
    sdk_conn = _Recorder(AssertionError("the Task SDK must not be asked outside a task"))
    monkeypatch.setattr(ConnectionModel, "get_connection_from_secrets", models_conn)
    monkeypatch.setattr(VariableModel, "get", models_var)
    monkeypatch.setattr(Connection, "get", sdk_conn)
    assert config._in_task_context() is False
    assert config.get_connection("x").conn_id == "x"
    assert config.executor_type() == "docker"
    assert models_conn.calls == [(("x",), {})]
    assert models_var.calls == [(("cmdexec_executor_type",), {"default_var": None})]
    assert sdk_conn.calls == []


def test_lookup_outside_a_task_returns_none_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models import Connection as ConnectionModel
    from airflow.sdk.exceptions import AirflowNotFoundException
    from airflow.sdk.execution_time import task_runner

    monkeypatch.delattr(task_runner, "SUPERVISOR_COMMS", raising=False)
    monkeypatch.setattr(
        ConnectionModel,
        "get_connection_from_secrets",
        _Recorder(AirflowNotFoundException("The conn_id `x` isn't defined")),
    )
    assert config.get_connection("x") is None


def test_lookup_inside_a_task_tells_absent_from_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review H3: only the API server's "not found" means absent; any other answer is an error."""
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time import supervisor, task_runner
    from airflow.sdk.execution_time.comms import ErrorResponse
    from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend

    answers: list[Any] = []

    class Comms:
        def send(self, msg: Any) -> Any:
            return answers.pop(0)

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", Comms(), raising=False)
    monkeypatch.setattr(supervisor, "ensure_secrets_backend_loaded", lambda: [ExecutionAPISecretsBackend()])
    assert config._in_task_context() is True
    answers.append(ErrorResponse(error=ErrorType.CONNECTION_NOT_FOUND, detail={"conn_id": "x"}))
    assert config.get_connection("x") is None
    answers.append(ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"key": "k"}))
    assert config.executor_type() is None
    answers.append(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": 503}))
    with pytest.raises(
        config.ConfigLookupError, match=r"connection 'x' could not be read .*API_SERVER_ERROR"
    ):
        config.get_connection("x")
    answers.append(ErrorResponse(error=ErrorType.PERMISSION_DENIED, detail={}))
    with pytest.raises(config.ConfigLookupError, match="PERMISSION_DENIED"):
        config.executor_type()


def test_lookup_outside_a_task_reads_the_metadata_db(airflow_db: str) -> None:
    """No supervisor here (a plain process): the connection comes from the metadata DB."""
    from airflow.models import Connection as ConnectionModel
    from airflow.utils.session import create_session

    conn_id = f"cmdexec_ecs_dbpath_{uuid.uuid4().hex[:8]}"
    with create_session() as session:
        session.add(
            ConnectionModel(
                conn_id=conn_id,
                conn_type="cmdexec_ecs",
                login="AKIADB",
                password=SECRET,
                extra=json.dumps({"cluster_name": "from-db", "region": "ap-south-1"}),
            )
        )
    try:
        assert config._in_task_context() is False
        cfg = config.load_ecs_config(conn_id)
        assert (cfg.cluster_name, cfg.region, cfg.secret_access_key) == ("from-db", "ap-south-1", SECRET)
    finally:
        with create_session() as session:
            session.query(ConnectionModel).filter(ConnectionModel.conn_id == conn_id).delete()


def test_lookup_inside_a_task_goes_through_the_supervisor(run_dag: Any) -> None:
    """A real task (dag.test's in-process supervisor): the Task SDK path reads the same DB."""
    from airflow.models import Connection as ConnectionModel, Variable as VariableModel
    from airflow.sdk import DAG, task
    from airflow.utils.session import create_session

    conn_id = f"cmdexec_ecs_sdkpath_{uuid.uuid4().hex[:8]}"
    with create_session() as session:
        session.add(
            ConnectionModel(
                conn_id=conn_id,
                conn_type="cmdexec_ecs",
                extra=json.dumps({"cluster_name": "via-supervisor", "region": "us-west-2"}),
            )
        )
        previous = session.query(VariableModel).filter(VariableModel.key == "cmdexec_executor_type").first()
        previous_value = None if previous is None else previous.val

    with DAG(
        dag_id=f"cmdexec_config_paths_{uuid.uuid4().hex[:6]}",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    ) as dag:

        @task
        def probe(conn_id: str) -> dict:
            from airflow_cmdexec_provider import config as cfg

            loaded = cfg.load_ecs_config(conn_id)
            return {
                "in_task": cfg._in_task_context(),
                "cluster": loaded.cluster_name,
                "region": loaded.region,
                "missing": cfg.get_connection(conn_id + "_nope") is None,
                "executor": cfg.executor_type(),
            }

        probe(conn_id)

    try:
        VariableModel.set("cmdexec_executor_type", "docker")
        result = run_dag(dag)
    finally:
        with create_session() as session:
            session.query(ConnectionModel).filter(ConnectionModel.conn_id == conn_id).delete()
            session.query(VariableModel).filter(VariableModel.key == "cmdexec_executor_type").delete()
        if previous_value is not None:  # put back what another test may rely on
            VariableModel.set("cmdexec_executor_type", previous_value)
    assert result.state == "success", result.log("probe")
    assert result.xcom("probe") == {
        "in_task": True,
        "cluster": "via-supervisor",
        "region": "us-west-2",
        "missing": True,
        "executor": "docker",
    }


def test_poll_interval_below_one_second_is_refused():
    """Review L6: 0 made a busy loop against the ECS and Logs APIs."""
    from airflow_cmdexec_provider.config import EcsConfig

    with pytest.raises(CmdExecConfigError, match=r"poll_interval' must be at least 1 second"):
        EcsConfig(conn_id="c", cluster_name="x", region="us-east-1", poll_interval=0, task_label="d.t")
