"""``import-digdag-config``: plan the Connections and Variables of a Digdag file, then write them at once."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_cmdexec_provider import digdag_keys  # the key tables (no Airflow import)
from airflow_cmdexec_provider.cli.common import (
    COMMAND_EXECUTOR_PREFIX,
    CONN_ID_RE,
    EXIT_ERROR,
    EXIT_OK,
    MASK,
    TASK_LABEL,
    CliError,
    Output,
)
from airflow_cmdexec_provider.cli.properties import Prop, parse_properties


# --------------------------------------------------------------------------------------------------
# Digdag keys -> desired Airflow state (pure: no DB)
# --------------------------------------------------------------------------------------------------
@dataclass
class DesiredConnection:
    conn_id: str
    conn_type: str
    values: dict[str, Any] = field(default_factory=dict)  # airflow field -> converted value
    secret_fields: set[str] = field(default_factory=set)
    description: str = ""
    keys: dict[str, str] = field(default_factory=dict)  # airflow field -> the Digdag key it came from


@dataclass
class ImportPlan:
    connections: dict[str, DesiredConnection] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    settings: int = 0


def _strip_task_prefix(message: str) -> str:
    prefix = f"Task {TASK_LABEL}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


class _FakeConnection:
    """Enough of a Connection for ``config.*_config_from_connection`` to validate one before it is written."""

    def __init__(self, new: Mapping[str, Any]) -> None:
        self.conn_type = new["conn_type"]
        self.login = new["login"]
        self.password = new["password"]
        self.extra_dejson = new["extra"]
        self.extra = json.dumps(self.extra_dejson) if self.extra_dejson else None


def plan_import(props: Sequence[Prop]) -> ImportPlan:
    """Map Digdag properties to Connections and Variables, validating every value."""
    from airflow_cmdexec_provider import config
    from airflow_cmdexec_provider.exceptions import CmdExecConfigError

    plan = ImportPlan()
    latest: dict[str, Prop] = {}
    for prop in props:
        if prop.key in latest:
            plan.warnings.append(
                f"line {prop.line}: {prop.key} is set again (first on line {latest[prop.key].line}); "
                "the last value wins, as in Digdag"
            )
        latest[prop.key] = prop
    plan.settings = len(latest)

    global_specs = {spec.digdag_key: spec for spec in config.ECS_FIELDS if spec.scope == "global"}
    cluster_specs = sorted(
        (s for s in config.ECS_FIELDS if s.scope == "cluster"), key=lambda s: len(s.digdag_key), reverse=True
    )
    secret_keys = {"access_key_id": "login", "secret_access_key": "password"}

    default_name: str | None = None
    global_values: list[tuple[Prop, Any]] = []
    clusters: dict[str, list[tuple[Prop, Any]]] = {}
    default_config: dict[str, Prop] = {}
    storage_props: dict[str, Prop] = {}
    kubernetes_props: dict[str, Prop] = {}

    for key, prop in latest.items():
        where = f"line {prop.line}: {key}"
        if key == config.DIGDAG_TYPE_KEY:
            _plan_executor_type(plan, prop)
        elif key.startswith(digdag_keys.DIGDAG_KUBERNETES_PREFIX):
            kubernetes_props[key[len(digdag_keys.DIGDAG_KUBERNETES_PREFIX) :]] = prop
        elif key.startswith(digdag_keys.DIGDAG_STORAGE_PREFIX):
            storage_props[key[len(digdag_keys.DIGDAG_STORAGE_PREFIX) :]] = prop
        elif key.startswith(digdag_keys.DIGDAG_ECS_PREFIX):
            rest = key[len(digdag_keys.DIGDAG_ECS_PREFIX) :]
            if rest in global_specs:
                if rest == "name":
                    default_name = prop.value.strip()
                else:
                    global_values.append((prop, global_specs[rest]))
                continue
            for spec in cluster_specs:
                suffix = "." + spec.digdag_key
                if rest.endswith(suffix) and len(rest) > len(suffix):
                    cluster = rest[: -len(suffix)]
                    if cluster == config.DIGDAG_DEFAULT_CONFIG:
                        if spec.digdag_key in secret_keys:
                            default_config[spec.digdag_key] = prop
                        else:
                            plan.warnings.append(
                                f"{where}: only access_key_id and secret_access_key are read under "
                                f"{config.DIGDAG_DEFAULT_CONFIG}; ignored"
                            )
                    else:
                        clusters.setdefault(cluster, []).append((prop, spec))
                    break
            else:
                plan.warnings.append(f"{where}: unknown command executor key; ignored")
        elif key.startswith(COMMAND_EXECUTOR_PREFIX):
            plan.warnings.append(f"{where}: unknown command executor key; ignored")
        else:
            plan.warnings.append(f"{where}: not a command executor key; ignored")

    # -- ECS clusters -------------------------------------------------------------------------------
    if default_name is not None and not default_name:
        plan.errors.append(f"{digdag_keys.DIGDAG_ECS_PREFIX}name is empty: give the ECS cluster name")
        default_name = None
    cluster_names = set(clusters)
    if default_name:
        cluster_names.add(default_name)
    for name in sorted(cluster_names, key=lambda n: (n != default_name, n)):
        conn_id = config.ECS_CONN_ID if name == default_name else f"{config.ECS_CONN_ID_PREFIX}{name}"
        if not CONN_ID_RE.match(conn_id):
            plan.errors.append(
                f"{digdag_keys.DIGDAG_ECS_PREFIX}{name}.*: the cluster name {name!r} cannot be part of an "
                f"Airflow connection id ({conn_id!r})"
            )
            continue
        desired = DesiredConnection(
            conn_id=conn_id,
            conn_type=digdag_keys.ECS_CONN_TYPE,
            description=f"ECS cluster {name} (Digdag {digdag_keys.DIGDAG_ECS_PREFIX}{name}.*)",
        )
        desired.values["extra.cluster_name"] = name
        desired.keys["extra.cluster_name"] = (
            f"{digdag_keys.DIGDAG_ECS_PREFIX}name"
            if name == default_name
            else f"{digdag_keys.DIGDAG_ECS_PREFIX}{name}.*"
        )
        for prop, spec in [*clusters.get(name, []), *global_values]:
            _set_value(plan, desired, spec, prop, config, CmdExecConfigError)
        plan.connections[conn_id] = desired
    if global_values and not cluster_names:
        plan.warnings.append(
            f"{', '.join(p.key for p, _ in global_values)}: no ECS cluster in the file "
            f"({digdag_keys.DIGDAG_ECS_PREFIX}name); ignored"
        )

    # -- ecs.__default_config__ -> an Airflow "aws" connection -------------------------------------
    if default_config:
        if len(default_config) != 2:
            missing = ({"access_key_id", "secret_access_key"} - set(default_config)).pop()
            plan.errors.append(
                f"{digdag_keys.DIGDAG_ECS_PREFIX}{config.DIGDAG_DEFAULT_CONFIG}.{missing} is missing: "
                "give both the access key id and the secret access key, or neither"
            )
        else:
            aws = DesiredConnection(
                conn_id=config.AWS_CONN_ID,
                conn_type="aws",
                description=f"Shared AWS keys (Digdag {digdag_keys.DIGDAG_ECS_PREFIX}"
                f"{config.DIGDAG_DEFAULT_CONFIG}.*)",
            )
            for digdag_key, airflow_field in secret_keys.items():
                prop = default_config[digdag_key]
                aws.values[airflow_field] = prop.value.strip()
                aws.keys[airflow_field] = prop.key
                if airflow_field == "password":
                    aws.secret_fields.add("password")
                    plan.secrets.append(prop.value)
            plan.connections[aws.conn_id] = aws
            for desired in list(plan.connections.values()):
                if (
                    desired.conn_type == digdag_keys.ECS_CONN_TYPE
                    and not desired.values.get("login")
                    and not desired.values.get("extra.aws_conn_id")
                ):
                    desired.values["extra.aws_conn_id"] = config.AWS_CONN_ID
                    desired.keys["extra.aws_conn_id"] = (
                        f"{digdag_keys.DIGDAG_ECS_PREFIX}{config.DIGDAG_DEFAULT_CONFIG}.*"
                    )

    # -- temporal storage ---------------------------------------------------------------------------
    if storage_props:
        _plan_storage(
            plan,
            storage_props,
            config,
            CmdExecConfigError,
            config.STORAGE_CONN_ID,
            digdag_keys.DIGDAG_STORAGE_PREFIX,
        )

    # -- Kubernetes clusters and their config storage -------------------------------------------------
    if kubernetes_props:
        _plan_kubernetes(plan, kubernetes_props, config, CmdExecConfigError)
    return plan


def _plan_executor_type(plan: ImportPlan, prop: Prop) -> None:
    from airflow_cmdexec_provider import config
    from airflow_cmdexec_provider.exceptions import CmdExecConfigError
    from airflow_cmdexec_provider.hooks.command_executor import normalize_executor

    value = prop.value.strip()
    try:
        name = normalize_executor(value, f"{prop.key} (Variable {config.EXECUTOR_TYPE_VARIABLE})")
    except CmdExecConfigError as exc:
        plan.errors.append(f"{exc} (Digdag names: ecs, docker, simple, kubernetes)")
        return
    if name is None:
        plan.errors.append(f"{prop.key} is empty: use ecs, docker, simple or kubernetes")
        return
    plan.variables[config.EXECUTOR_TYPE_VARIABLE] = name


def _set_value(
    plan: ImportPlan,
    desired: DesiredConnection,
    spec: Any,
    prop: Prop,
    config: Any,
    error_class: type[Exception],
) -> None:
    if spec.secret:
        plan.secrets.append(prop.value)
        desired.secret_fields.add(spec.airflow_field)
    try:
        value = config.convert_field(spec, prop.value, prop.key, desired.conn_id)
    except error_class as exc:
        plan.errors.append(str(exc))
        return
    if isinstance(value, tuple):
        value = list(value)
    desired.values[spec.airflow_field] = value
    desired.keys[spec.airflow_field] = prop.key


def _plan_storage(
    plan: ImportPlan,
    storage_props: dict[str, Prop],
    config: Any,
    error_class: type[Exception],
    conn_id: str,
    prefix: str,
) -> None:
    """One temporal storage connection from the keys under ``prefix`` (ECS temporal_storage., or
    Kubernetes config_storage.in. / .out.)."""
    desired = DesiredConnection(
        conn_id=conn_id,
        conn_type=digdag_keys.STORAGE_CONN_TYPE,
        description=f"Temporal storage (Digdag {prefix}*)",
    )
    type_spec = next(s for s in config.STORAGE_FIELDS if s.digdag_key == "type")
    type_prop = storage_props.pop("type", None)
    storage_type: str | None = None
    if type_prop is None:
        names = ", ".join(prefix + k for k in storage_props)
        plan.errors.append(f"{prefix}type is missing (s3 or gcs) but the file sets {names}")
    else:
        before = len(plan.errors)
        _set_value(plan, desired, type_spec, type_prop, config, error_class)
        if len(plan.errors) == before:
            storage_type = desired.values["extra.type"]
    if storage_type is None:
        return
    by_key = {
        spec.digdag_key.replace("<type>", storage_type): spec
        for spec in config.STORAGE_FIELDS
        if spec.digdag_key != "type" and config.storage_field_applies(spec, storage_type)
    }
    for relative, prop in storage_props.items():
        spec = by_key.get(relative)
        where = f"line {prop.line}: {prop.key}"
        if spec is not None:
            _set_value(plan, desired, spec, prop, config, error_class)
        elif relative.split(".", 1)[0] in set(config.STORAGE_TYPES) - {storage_type}:
            plan.warnings.append(f"{where}: ignored, {prefix}type is {storage_type}")
        else:
            plan.warnings.append(f"{where}: unknown temporal storage key; ignored")
    plan.connections[desired.conn_id] = desired


def _plan_kubernetes(
    plan: ImportPlan, props: dict[str, Prop], config: Any, error_class: type[Exception]
) -> None:
    """``agent.command_executor.kubernetes.*``: one cncf ``kubernetes`` connection per cluster, its
    config_storage.in / .out as two temporal storage connections that it names."""
    prefix = digdag_keys.DIGDAG_KUBERNETES_PREFIX
    global_specs = {s.digdag_key: s for s in config.KUBERNETES_FIELDS if s.scope == "kubernetes-global"}
    cluster_specs = {s.digdag_key: s for s in config.KUBERNETES_FIELDS if s.scope == "kubernetes"}
    default_name: str | None = None
    global_values: list[tuple[Prop, Any]] = []
    clusters: dict[str, dict[str, Prop]] = {}
    storages: dict[str, dict[str, Prop]] = {"in": {}, "out": {}}
    for rest, prop in props.items():
        head, _, tail = rest.partition(".")
        direction = tail.partition(".")[0]
        if head == "config_storage" and direction in storages and tail.partition(".")[2]:
            storages[direction][tail.partition(".")[2]] = prop
        elif rest == "name":
            default_name = prop.value.strip()
        elif rest in global_specs:
            global_values.append((prop, global_specs[rest]))
        elif "." in rest and rest.rsplit(".", 1)[1] in cluster_specs:
            cluster, key = rest.rsplit(".", 1)
            clusters.setdefault(cluster, {})[key] = prop
        else:
            plan.warnings.append(
                f"line {prop.line}: {prop.key}: unknown Kubernetes command executor key; ignored"
            )

    storage_ids: dict[str, str] = {}
    for direction, keys in storages.items():
        if keys:
            storage_ids[direction] = digdag_keys.KUBERNETES_STORAGE_CONN_IDS[direction]
            _plan_storage(
                plan,
                keys,
                config,
                error_class,
                storage_ids[direction],
                f"{digdag_keys.DIGDAG_CONFIG_STORAGE_PREFIX}{direction}.",
            )
    if len(storage_ids) == 1:
        missing = ({"in", "out"} - set(storage_ids)).pop()
        plan.warnings.append(
            f"{digdag_keys.DIGDAG_CONFIG_STORAGE_PREFIX}{missing}.* is not set: that archive goes "
            f"through {config.STORAGE_CONN_ID!r}"
        )

    if default_name is not None and not default_name:
        plan.errors.append(f"{prefix}name is empty: give the Kubernetes cluster name")
        return
    names = set(clusters) | ({default_name} if default_name else set())
    if not names:
        if global_values:
            plan.warnings.append(
                f"{', '.join(p.key for p, _ in global_values)}: no Kubernetes cluster in the file "
                f"({prefix}name); ignored"
            )
        return
    for name in sorted(names, key=lambda n: (n != default_name, n)):
        conn_id = (
            config.KUBERNETES_CONN_ID
            if name == default_name
            else f"{digdag_keys.KUBERNETES_CONN_ID_PREFIX}{name}"
        )
        if not CONN_ID_RE.match(conn_id):
            plan.errors.append(
                f"{prefix}{name}.*: the cluster name {name!r} cannot be part of an Airflow "
                f"connection id ({conn_id!r})"
            )
            continue
        desired = DesiredConnection(
            conn_id=conn_id,
            conn_type=digdag_keys.KUBERNETES_CONN_TYPE,
            description=f"Kubernetes cluster {name} (Digdag {prefix}{name}.*)",
        )
        desired.values["extra.cmdexec_cluster_name"] = name
        desired.keys["extra.cmdexec_cluster_name"] = (
            f"{prefix}name" if name == default_name else f"{prefix}{name}.*"
        )
        _plan_cluster_access(plan, desired, name, clusters.get(name, {}), config, error_class)
        for prop, spec in global_values:
            _set_value(plan, desired, spec, prop, config, error_class)
        for direction, storage_id in storage_ids.items():
            desired.values[f"extra.cmdexec_storage_{direction}_conn_id"] = storage_id
            desired.keys[f"extra.cmdexec_storage_{direction}_conn_id"] = (
                f"{digdag_keys.DIGDAG_CONFIG_STORAGE_PREFIX}{direction}.*"
            )
        plan.connections[conn_id] = desired


def _plan_cluster_access(
    plan: ImportPlan,
    desired: DesiredConnection,
    name: str,
    keys: dict[str, Prop],
    config: Any,
    error_class: type[Exception],
) -> None:
    """Digdag's two ways to reach a cluster (KubernetesClientConfig): master + certs_ca_data +
    oauth_token (a kube config in extra ``kube_config``, a secret), or use_kube_config + kube_config_path."""
    prefix = f"{digdag_keys.DIGDAG_KUBERNETES_PREFIX}{name}."
    specs = {s.digdag_key: s for s in config.KUBERNETES_FIELDS if s.scope == "kubernetes"}
    if "namespace" in keys:
        _set_value(plan, desired, specs["namespace"], keys["namespace"], config, error_class)
    use_kube_config = False
    if "use_kube_config" in keys:
        try:
            use_kube_config = config.convert_field(
                specs["use_kube_config"],
                keys["use_kube_config"].value,
                keys["use_kube_config"].key,
                desired.conn_id,
            )
        except error_class as exc:
            plan.errors.append(str(exc))
            return
    direct = [k for k in ("master", "certs_ca_data", "oauth_token") if k in keys]
    if use_kube_config:
        if "kube_config_path" not in keys:
            plan.errors.append(f"{prefix}use_kube_config is true but {prefix}kube_config_path is not set")
            return
        _set_value(plan, desired, specs["kube_config_path"], keys["kube_config_path"], config, error_class)
        for key in direct:
            plan.warnings.append(f"line {keys[key].line}: {keys[key].key}: ignored, use_kube_config is true")
        return
    if "kube_config_path" in keys:
        plan.warnings.append(
            f"line {keys['kube_config_path'].line}: {keys['kube_config_path'].key}: ignored, "
            f"{prefix}use_kube_config is not true (as in Digdag)"
        )
    if len(direct) < 3:
        missing = ", ".join(prefix + k for k in ("master", "certs_ca_data", "oauth_token") if k not in keys)
        plan.errors.append(
            f"{prefix}*: {missing} missing; Digdag reaches a cluster with master, certs_ca_data and "
            "oauth_token, or with use_kube_config = true and kube_config_path"
        )
        return
    token = keys["oauth_token"].value.strip()
    kube_config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": keys["master"].value.strip(),
                    "certificate-authority-data": keys["certs_ca_data"].value.strip(),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }
    text = json.dumps(kube_config)
    plan.secrets += [token, text]
    desired.secret_fields.add("extra.kube_config")
    desired.values["extra.kube_config"] = text
    desired.keys["extra.kube_config"] = f"{prefix}master, certs_ca_data, oauth_token"


# --------------------------------------------------------------------------------------------------
# Desired state vs the metadata DB
# --------------------------------------------------------------------------------------------------
# Fields of which a connection holds one: the one the file sets replaces the others (AWS rejects a
# launch type with a capacity provider; a cluster is reached one way).
ALTERNATIVES = (
    {"extra.launch_type", "extra.capacity_provider_name"},
    {"extra.kube_config", "extra.kube_config_path", "extra.in_cluster"},
)


@dataclass
class Change:
    kind: str  # "Connection" or "Variable"
    ident: str
    action: str  # create, update, unchanged
    details: list[str]
    kept: list[str] = field(default_factory=list)  # fields of the stored connection the file does not set


def _normalize_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if v is not None}


ALWAYS_SECRET_EXTRAS = frozenset({"kube_config"})


def _show(value: Any, secret: bool) -> str:
    if secret:
        return MASK
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def _connection_change(desired: DesiredConnection, existing: Any) -> tuple[Change, dict[str, Any]]:
    """Compare with the stored connection; return the change and the complete new field values.

    The file changes only the fields it sets (review L18): Login, Password and extras set elsewhere
    (the UI, ``airflow connections``) and keys no longer in the file stay as they are. Of
    ``ALTERNATIVES``, the field the file sets replaces the others.
    """
    current_extra: dict[str, Any] = {}
    if existing is not None and existing.extra:
        try:
            current_extra = json.loads(existing.extra)
        except ValueError:
            current_extra = {}
        if not isinstance(current_extra, dict):
            current_extra = {}
    sets = {name: value for name, value in desired.values.items() if value is not None}
    replaced = set().union(*(group - set(sets) for group in ALTERNATIVES if group & set(sets)))
    new_extra = {k: v for k, v in current_extra.items() if f"extra.{k}" not in replaced}
    new_extra.update({f.removeprefix("extra."): value for f, value in sets.items() if f.startswith("extra.")})
    new_extra_normalized: dict[str, Any] = _normalize_extra(new_extra)
    new: dict[str, Any] = {
        "conn_type": desired.conn_type,
        "login": sets.get("login", getattr(existing, "login", None)),
        "password": sets.get("password", getattr(existing, "password", None)),
        "extra": new_extra_normalized,
    }
    label = f"{desired.conn_id!r} ({desired.conn_type})"
    if existing is None:
        created = [
            f"{name}={_show(value, f in desired.secret_fields)}"
            for f, value in sets.items()
            for name in [f.removeprefix("extra.")]
        ]
        return Change("Connection", label, "create", created), new
    kept = [name for name in ("login", "password") if getattr(existing, name, None) and name not in sets]
    kept += [
        name
        for name, value in current_extra.items()
        if value is not None and f"extra.{name}" not in sets and f"extra.{name}" not in replaced
    ]
    details: list[str] = []
    if existing.conn_type != desired.conn_type:
        details.append(f"conn_type {existing.conn_type!r} -> {desired.conn_type!r}")
    for name in ("login", "password"):
        old, value = getattr(existing, name, None) or None, new[name] or None
        if old != value:
            secret = name in desired.secret_fields or name == "password"
            details.append(f"{name}: {_show(old, secret) if old else '(unset)'} -> {_show(value, secret)}")
    old_extra = _normalize_extra(current_extra)
    for name in sorted(set(old_extra) | set(new_extra_normalized)):
        if old_extra.get(name) != new_extra_normalized.get(name):
            # A kube config holds the cluster's token whether the file sets it or the update removes it.
            secret = f"extra.{name}" in desired.secret_fields or name in ALWAYS_SECRET_EXTRAS
            old_text = _show(old_extra[name], secret) if name in old_extra else "(unset)"
            new_text = (
                _show(new_extra_normalized[name], secret) if name in new_extra_normalized else "(unset)"
            )
            details.append(f"{name}: {old_text} -> {new_text}")
    return Change("Connection", label, "update" if details else "unchanged", details, kept), new


def _invalid(desired: DesiredConnection, new: Mapping[str, Any]) -> str | None:
    """Why the connection as it would be stored is invalid, loaded exactly as a task loads it."""
    from airflow_cmdexec_provider import config
    from airflow_cmdexec_provider.exceptions import CmdExecConfigError

    fake = _FakeConnection(new)
    try:
        if desired.conn_type == digdag_keys.ECS_CONN_TYPE:
            config.ecs_config_from_connection(fake, desired.conn_id, {}, TASK_LABEL, None, None)
        elif desired.conn_type == digdag_keys.STORAGE_CONN_TYPE:
            config.storage_config_from_connection(fake, desired.conn_id, TASK_LABEL)
        elif desired.conn_type == digdag_keys.KUBERNETES_CONN_TYPE:
            config.kubernetes_config_from_connection(fake, desired.conn_id, TASK_LABEL)
    except CmdExecConfigError as exc:
        return _strip_task_prefix(str(exc))
    return None


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return Path(path).read_text(encoding="latin-1")  # java.util.Properties' own encoding
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None


def _db_error(exc: Exception) -> CliError:
    from airflow.configuration import conf

    url = conf.get("database", "sql_alchemy_conn", fallback="?")
    url = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
    return CliError(
        f"cannot use the Airflow metadata DB ({url}): {type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else ''}. Is it migrated (airflow db migrate)?"
    )


def import_digdag_config(path: str, dry_run: bool, output: Output) -> int:
    props = parse_properties(_read_file(path))
    for prop in props:
        lowered = prop.key.lower()
        if any(word in lowered for word in ("secret", "credentials.json.content", "password", "token")):
            output.add_secret(prop.value)
    plan = plan_import(props)
    for secret in plan.secrets:
        output.add_secret(secret)
    output.out(f"Digdag configuration {path}: {plan.settings} settings")
    for warning in plan.warnings:
        output.err(f"warning: {warning}")
    if plan.errors:
        for error in plan.errors:
            output.err(f"error: {error}")
        output.err(f"{len(plan.errors)} error(s): nothing was written to Airflow")
        return EXIT_ERROR
    if not plan.connections and not plan.variables:
        output.out("No command executor settings in the file: nothing to do")
        return EXIT_OK

    from airflow.models import Connection, Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    changes: list[Change] = []
    invalid: list[str] = []
    try:
        with create_session() as session:
            writes: list[Callable[[], None]] = []
            for name, value in plan.variables.items():
                var = session.scalar(select(Variable).where(Variable.key == name))
                if var is None:
                    changes.append(Change("Variable", repr(name), "create", [repr(value)]))
                    variable = Variable(key=name, val=value, description="Digdag agent.command_executor.type")  # type: ignore[no-untyped-call]  # Airflow: Variable.__init__ is unannotated
                    writes.append(functools.partial(session.add, variable))
                elif var.val != value:
                    changes.append(Change("Variable", repr(name), "update", [f"{var.val!r} -> {value!r}"]))
                    writes.append(functools.partial(setattr, var, "val", value))
                else:
                    changes.append(Change("Variable", repr(name), "unchanged", []))
            for desired in plan.connections.values():
                existing = session.scalar(select(Connection).where(Connection.conn_id == desired.conn_id))
                if existing is not None and existing.password:
                    output.add_secret(existing.password)
                change, new = _connection_change(desired, existing)
                changes.append(change)
                problem = _invalid(desired, new)
                if problem:
                    kept = ", ".join(change.kept)
                    invalid.append(problem + (f" (kept from the stored connection: {kept})" if kept else ""))
                if change.action == "unchanged":
                    continue
                writes.append(functools.partial(_write_connection, session, desired, existing, new))
            if invalid:
                session.rollback()
                for error in invalid:
                    output.err(f"error: {error}")
                output.err(f"{len(invalid)} error(s): nothing was written to Airflow")
                return EXIT_ERROR
            for change in changes:
                verb = (
                    change.action if not dry_run or change.action == "unchanged" else f"would {change.action}"
                )
                text = f"{verb} {change.kind} {change.ident}"
                if change.details:
                    text += ": " + ", ".join(change.details)
                output.out(text)
                if change.kept:
                    verb = "would leave" if dry_run else "left"
                    output.out(f"  {verb} alone (the file does not set them): {', '.join(change.kept)}")
            todo = [c for c in changes if c.action != "unchanged"]
            if dry_run:
                session.rollback()
                output.out(
                    f"Dry run: {len(todo)} change(s) not written"
                    if todo
                    else "Dry run: nothing to change, Airflow already matches the file"
                )
                return EXIT_OK
            if not todo:
                output.out("Nothing to change: Airflow already matches the file")
                return EXIT_OK
            for write in writes:  # one transaction: committed when the session closes
                write()
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None
    created = sum(c.action == "create" for c in changes)
    updated = sum(c.action == "update" for c in changes)
    output.out(
        f"Imported: {created} created, {updated} updated, "
        f"{sum(c.action == 'unchanged' for c in changes)} unchanged"
    )
    return EXIT_OK


def _write_connection(
    session: Any, desired: DesiredConnection, existing: Any, new: Mapping[str, Any]
) -> None:
    from airflow.models import Connection

    extra = json.dumps(new["extra"]) if new["extra"] else None
    if existing is None:
        session.add(
            Connection(
                conn_id=desired.conn_id,
                conn_type=desired.conn_type,
                description=desired.description,
                login=new["login"],
                password=new["password"],
                extra=extra,
            )
        )
        return
    existing.conn_type = desired.conn_type
    existing.login = new["login"]
    existing.password = new["password"]  # never None over a password: the file only sets passwords
    existing.extra = extra
