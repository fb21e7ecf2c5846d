"""``show-config``: the effective configuration as Digdag ``key = value`` lines, secrets as ``***``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from airflow_cmdexec_provider import digdag_keys  # the key tables (no Airflow import)
from airflow_cmdexec_provider.cli.common import (
    DIGDAG_EXECUTOR_NAMES,
    EXIT_ERROR,
    EXIT_OK,
    MASK,
    TASK_LABEL,
    Output,
)
from airflow_cmdexec_provider.cli.importer import _db_error, _strip_task_prefix
from airflow_cmdexec_provider.cli.properties import format_property
from airflow_cmdexec_provider.digdag_keys import FieldSpec


# --------------------------------------------------------------------------------------------------
# show-config: Airflow -> Digdag key = value lines
# --------------------------------------------------------------------------------------------------
def _digdag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _stored_values(
    conn: Any, fields: Iterable[FieldSpec], conn_id: str, key_for: Callable[[FieldSpec], str]
) -> dict[str, Any]:
    """The fields a connection really sets (None/empty left out), converted and validated; errors
    name the Digdag key and the field."""
    from airflow_cmdexec_provider import config

    extra = conn.extra_dejson if conn.extra else {}
    values: dict[str, Any] = {}
    for spec in fields:
        raw = extra.get(spec.extra_name) if spec.extra_name else getattr(conn, spec.airflow_field, None)
        if raw is None or (isinstance(raw, str) and not raw.strip()) or raw == []:
            continue
        values[spec.airflow_field] = config.convert_field(spec, raw, key_for(spec), conn_id)
    return values


def _raw_extra(conn: Any, name: str) -> str:
    extra = conn.extra_dejson if conn.extra else {}
    value = extra.get(name)
    return value.strip() if isinstance(value, str) else ""


def _other_ecs_connections() -> list[str]:
    from airflow.models import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_cmdexec_provider import config

    with create_session() as session:
        ids = session.scalars(
            select(Connection.conn_id).where(Connection.conn_type == digdag_keys.ECS_CONN_TYPE)
        )
        return sorted(i for i in ids if i != config.ECS_CONN_ID)


def _other_kubernetes_connections() -> list[str]:
    from airflow.models import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ids = session.scalars(
            select(Connection.conn_id).where(
                Connection.conn_type == digdag_keys.KUBERNETES_CONN_TYPE,
                Connection.conn_id.startswith(digdag_keys.KUBERNETES_CONN_ID_PREFIX),
            )
        )
        return sorted(i for i in ids if i != digdag_keys.KUBERNETES_CONN_ID)


def _kubernetes_values(conn: Any, conn_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A cncf ``kubernetes`` connection: our extras (validated), and its cluster access as Digdag keys
    (master / certs_ca_data / oauth_token from its kube config, or kube_config_path), or a note when
    Digdag's keys cannot say it."""
    from airflow_cmdexec_provider import config

    checked = config.kubernetes_config_from_connection(conn, conn_id, TASK_LABEL)
    ours = [
        spec
        for spec in config.KUBERNETES_FIELDS
        if spec.extra_name and spec.extra_name.startswith("cmdexec_")
    ]
    values = _stored_values(conn, ours, conn_id, digdag_keys.digdag_key)
    if checked.namespace:
        values["extra.namespace"] = checked.namespace
    access: dict[str, Any] = {}
    if checked.in_cluster:
        access["note"] = "in_cluster: the worker's service account (no Digdag key)"
    elif checked.kube_config_path:
        access["kube_config_path"] = checked.kube_config_path
    elif checked.kube_config:
        kube_config = checked.kube_config
        name = checked.cluster_context or kube_config.get("current-context")
        context = _named(kube_config.get("contexts"), name, "context")
        cluster = _named(kube_config.get("clusters"), context.get("cluster"), "cluster")
        user = _named(kube_config.get("users"), context.get("user"), "user")
        if not checked.namespace and context.get("namespace"):
            # The backend runs pods in the context's namespace when the connection names none.
            values["extra.namespace"] = context["namespace"]
        if cluster.get("server") and cluster.get("certificate-authority-data") and set(user) == {"token"}:
            access.update(
                master=cluster["server"],
                certs_ca_data=cluster["certificate-authority-data"],
                oauth_token=user["token"],
            )
        else:
            access["note"] = (
                f"extra kube_config: context {name!r} is more than Digdag's master, certs_ca_data "
                "and oauth_token can say"
            )
    else:
        access["note"] = (
            "no cluster access given: the cncf provider's default (in-cluster, else ~/.kube/config)"
        )
    return values, access


def _named(items: Any, name: Any, field: str) -> dict[str, Any]:
    """The ``field`` mapping of the kube config entry called ``name`` ({} when there is none)."""
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return dict(item.get(field) or {})
    return {}


def show_config(output: Output, with_defaults: bool) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_cmdexec_provider import config
    from airflow_cmdexec_provider.exceptions import CmdExecConfigError

    lines: list[str] = []
    errors: list[str] = []

    def prop(key: str, value: Any, secret: bool = False) -> None:
        if secret:
            output.add_secret(value)
        lines.append(format_property(key, MASK if secret else _digdag_text(value)))

    def default(key: str, value: Any, note: str = "default") -> None:
        if with_defaults:
            lines.append(f"# {format_property(key, _digdag_text(value))}  ({note})")

    try:
        executor = config.executor_type()
        if executor:
            lines.append(f"# Variable {config.EXECUTOR_TYPE_VARIABLE}")
            prop(
                config.DIGDAG_TYPE_KEY, DIGDAG_EXECUTOR_NAMES.get(executor.strip().lower(), executor.strip())
            )
        else:
            lines.append(
                f"# {format_property(config.DIGDAG_TYPE_KEY, 'ecs')}  "
                f"(default: Variable {config.EXECUTOR_TYPE_VARIABLE} is not set)"
            )

        ecs_ids = [config.ECS_CONN_ID, *_other_ecs_connections()]
        aws_referenced = False
        printed_globals = False
        for conn_id in ecs_ids:
            conn = config.get_connection(conn_id)
            if conn is None:
                continue
            if conn.password:
                output.add_secret(conn.password)
            where = f"ECS connection {conn_id!r}"
            try:
                name = _raw_extra(conn, "cluster_name")
                if not name:
                    raise CmdExecConfigError(
                        f"{where}: extra 'cluster_name' (Digdag {digdag_keys.DIGDAG_ECS_PREFIX}name) "
                        "is required"
                    )
                values = _stored_values(
                    conn,
                    config.ECS_FIELDS,
                    conn_id,
                    functools.partial(digdag_keys.digdag_key, cluster=name),
                )
            except CmdExecConfigError as exc:
                errors.append(str(exc))
                continue
            lines.append("")
            lines.append(f"# Connection {conn_id!r} ({digdag_keys.ECS_CONN_TYPE})")
            if conn_id == config.ECS_CONN_ID:
                prop(f"{digdag_keys.DIGDAG_ECS_PREFIX}name", name)
            for spec in config.ECS_FIELDS:
                if spec.scope != "cluster":
                    continue
                key = digdag_keys.digdag_key(spec, cluster=name)
                value = values.get(spec.airflow_field)
                if spec.airflow_field == "extra.aws_conn_id" and value == config.AWS_CONN_ID:
                    aws_referenced = True
                    continue  # printed as ecs.__default_config__.* below
                if value is not None:
                    prop(key, value, spec.secret)
                elif spec.default is not None:
                    default(key, spec.default)
            if conn_id == config.ECS_CONN_ID or not printed_globals:
                for spec in config.ECS_FIELDS:
                    if spec.scope != "global" or spec.digdag_key == "name":
                        continue
                    value = values.get(spec.airflow_field)
                    if value is not None:
                        prop(digdag_keys.digdag_key(spec), value)
                    elif spec.default is not None:
                        default(digdag_keys.digdag_key(spec), spec.default)
                printed_globals = True

        if aws_referenced:
            aws = config.get_connection(config.AWS_CONN_ID)
            if aws is not None and (aws.login or aws.password):
                lines.append("")
                lines.append(f"# Connection {config.AWS_CONN_ID!r} (aws)")
                base = f"{digdag_keys.DIGDAG_ECS_PREFIX}{config.DIGDAG_DEFAULT_CONFIG}"
                if aws.login:
                    prop(f"{base}.access_key_id", aws.login)
                if aws.password:
                    prop(f"{base}.secret_access_key", aws.password, secret=True)
            else:
                errors.append(f"ECS connections use aws_conn_id {config.AWS_CONN_ID!r}, which has no keys")

        def show_storage(conn_id: str, prefix: str) -> None:
            """A temporal storage connection as the keys under ``prefix``."""
            storage = config.get_connection(conn_id)
            if storage is None:
                return
            if storage.password:
                output.add_secret(storage.password)
            where = f"temporal storage connection {conn_id!r}"
            try:
                raw_type = _raw_extra(storage, "type").lower()
                if not raw_type:
                    raise CmdExecConfigError(f"{where}: extra 'type' (Digdag {prefix}type) is required")
                values = _stored_values(
                    storage,
                    config.STORAGE_FIELDS,
                    conn_id,
                    lambda spec: digdag_keys.digdag_key(spec, storage_type=raw_type, storage_prefix=prefix),
                )
                storage_type = values["extra.type"]
            except CmdExecConfigError as exc:
                errors.append(str(exc))
                return
            lines.append("")
            lines.append(f"# Connection {conn_id!r} ({digdag_keys.STORAGE_CONN_TYPE})")
            for spec in config.STORAGE_FIELDS:
                if not config.storage_field_applies(spec, storage_type):
                    continue
                key = digdag_keys.digdag_key(spec, storage_type=storage_type, storage_prefix=prefix)
                value = values.get(spec.airflow_field)
                if value is not None:
                    prop(key, value, spec.secret)
                elif spec.default is not None:
                    default(key, spec.default)

        show_storage(config.STORAGE_CONN_ID, digdag_keys.DIGDAG_STORAGE_PREFIX)

        # -- Kubernetes: cncf "kubernetes" connections cmdexec_kubernetes_default / cmdexec_kubernetes_<name>
        storages_shown: set[str] = set()
        printed_globals = False
        for conn_id in [config.KUBERNETES_CONN_ID, *_other_kubernetes_connections()]:
            conn = config.get_connection(conn_id)
            if conn is None:
                continue
            try:
                values, access = _kubernetes_values(conn, conn_id)
            except CmdExecConfigError as exc:
                errors.append(_strip_task_prefix(str(exc)))
                continue
            name = values.get("extra.cmdexec_cluster_name") or conn_id.removeprefix(
                digdag_keys.KUBERNETES_CONN_ID_PREFIX
            )
            lines.append("")
            lines.append(f"# Connection {conn_id!r} ({digdag_keys.KUBERNETES_CONN_TYPE})")
            if conn_id == config.KUBERNETES_CONN_ID:
                prop(f"{digdag_keys.DIGDAG_KUBERNETES_PREFIX}name", name)
            cluster = f"{digdag_keys.DIGDAG_KUBERNETES_PREFIX}{name}."
            if "kube_config_path" in access:
                prop(cluster + "use_kube_config", True)
                prop(cluster + "kube_config_path", access["kube_config_path"])
            for key in ("master", "certs_ca_data", "oauth_token"):
                if key in access:
                    prop(cluster + key, access[key], secret=key == "oauth_token")
            if "note" in access:
                lines.append(f"# {access['note']}")
            if values.get("extra.namespace"):
                prop(cluster + "namespace", values["extra.namespace"])
            for spec in config.KUBERNETES_FIELDS:
                if spec.scope != "kubernetes-global" or spec.digdag_key == "name" or printed_globals:
                    continue
                value = values.get(spec.airflow_field)
                key = digdag_keys.digdag_key(spec)
                if spec.digdag_key.startswith("config_storage."):
                    direction = spec.digdag_key.split(".")[1]
                    storage_id = value or spec.default
                    if storage_id not in storages_shown:
                        storages_shown.add(storage_id)
                        if value is None:
                            default(key, storage_id, "default: the temporal storage connection")
                        show_storage(storage_id, f"{digdag_keys.DIGDAG_CONFIG_STORAGE_PREFIX}{direction}.")
                elif value is not None:
                    prop(key, f"{value}s" if spec.kind == "duration" else value)
                elif spec.default is not None:
                    default(key, spec.default)
            printed_globals = True
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None

    for line in lines:
        output.out(line)
    for error in errors:
        output.err(f"error: {error}")
    return EXIT_ERROR if errors else EXIT_OK
