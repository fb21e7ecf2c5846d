"""``airflow-cmdexec``: bring a Digdag command executor configuration to Airflow, show it, check it.

Commands::

    airflow-cmdexec import-digdag-config PATH [--dry-run]
    airflow-cmdexec show-config [--with-defaults]
    airflow-cmdexec check [--image IMAGE] [--task-definition-arn ARN] [--executor NAME]
                          [--ecs-conn-id ID] [--storage-conn-id ID]
    airflow-cmdexec docs-table [--write FILE | --check FILE]

Every Digdag key has one Airflow home, given by the FieldSpec tables (``digdag_keys``): the importer,
``show-config``, the UI forms and the docs table are all generated from them. Secrets (secret keys,
GCS credentials) are only ever written to Connection password fields and printed as ``***``.

Outside a task there is no Task SDK supervisor, so the commands read Connections and Variables
through ``airflow.models`` (secrets backends, then the metadata DB); see ``config._get_connection``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_cmdexec_provider import digdag_keys  # the key tables (no Airflow import)

EXIT_OK = 0
EXIT_ERROR = 1  # invalid configuration (nothing written) or the selected backend is unreachable
EXIT_USAGE = 2

MASK = "***"
TASK_LABEL = "airflow-cmdexec"
KUBERNETES_PREFIX = "agent.command_executor.kubernetes"
COMMAND_EXECUTOR_PREFIX = "agent.command_executor."
# Digdag's names of the executor types; Airflow's Variable holds ecs, docker or local.
DIGDAG_EXECUTOR_NAMES = {"local": "simple"}
CONN_ID_RE = re.compile(r"^[\w#!()\-.:/\\]{1,250}$")  # airflow.models.connection.RE_SANITIZE_CONN_ID


class CliError(Exception):
    """An error the CLI reports as one message (and exit code 1)."""


# --------------------------------------------------------------------------------------------------
# Output that never shows a secret: every secret seen (file values, connection passwords) is masked.
# --------------------------------------------------------------------------------------------------
class Output:
    """Our stdout and stderr; Airflow's own logging is sent to stderr (see ``main``)."""

    def __init__(self, stdout: Any = None) -> None:
        self._secrets: set[str] = set()
        self._stdout = stdout

    def add_secret(self, value: Any) -> None:
        if isinstance(value, str) and value.strip():
            self._secrets.add(value)
            self._secrets.add(value.strip())

    def mask(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def out(self, text: str = "") -> None:
        print(self.mask(text), file=self._stdout or sys.stdout, flush=True)

    def err(self, text: str) -> None:
        print(self.mask(text), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Java properties files (what Digdag's -c reads)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prop:
    key: str
    value: str
    line: int


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str, line: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 >= len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            digits = text[i + 2 : i + 6]
            if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise CliError(f"line {line}: malformed \\uXXXX escape")
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def _split_key_value(logical: str) -> tuple[str, str]:
    """Split at the first unescaped '=', ':' or whitespace, as java.util.Properties does."""
    i = 0
    while i < len(logical):
        char = logical[i]
        if char == "\\":
            i += 2
            continue
        if char in "=: \t\f":
            break
        i += 1
    key = logical[:i]
    # After the key: optional whitespace, at most one '=' or ':', optional whitespace.
    j = i
    while j < len(logical) and logical[j] in " \t\f":
        j += 1
    if j < len(logical) and logical[j] in "=:":
        j += 1
        while j < len(logical) and logical[j] in " \t\f":
            j += 1
    return key, logical[j:]


def _odd_trailing_backslashes(text: str) -> bool:
    count = len(text) - len(text.rstrip("\\"))
    return count % 2 == 1


def parse_properties(text: str) -> list[Prop]:
    """Parse Java properties: ``key = value``, ``key: value``, ``key value``; comments ``#``/``!``;
    a line ending in an odd number of backslashes continues on the next (its indentation dropped);
    escapes ``\\t \\n \\r \\f \\uXXXX`` and ``\\x`` for any other x."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)
    props: list[Prop] = []
    i = 0
    while i < len(lines):
        number = i + 1
        line = lines[i].lstrip(" \t\f")
        i += 1
        if not line or line[0] in "#!":
            continue
        logical = line
        while _odd_trailing_backslashes(logical):
            logical = logical[:-1]
            if i >= len(lines):
                break
            logical += lines[i].lstrip(" \t\f")
            i += 1
        key, value = _split_key_value(logical)
        props.append(Prop(_unescape(key, number), _unescape(value, number), number))
    return props


def _escape(text: str, is_key: bool) -> str:
    out: list[str] = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char in "\t\n\r\f":
            out.append("\\" + {"\t": "t", "\n": "n", "\r": "r", "\f": "f"}[char])
        elif char in "=:#!" and (is_key or index == 0):
            out.append("\\" + char)
        elif char == " " and (is_key or index == 0):
            out.append("\\ ")
        else:
            out.append(char)
    return "".join(out)


def format_property(key: str, value: str) -> str:
    return f"{_escape(key, True)} = {_escape(value, False)}"


# --------------------------------------------------------------------------------------------------
# Digdag keys -> desired Airflow state (pure: no DB)
# --------------------------------------------------------------------------------------------------
@dataclass
class DesiredConnection:
    conn_id: str
    conn_type: str
    managed: tuple[str, ...]  # airflow fields this import owns: "login", "password", "extra.<name>"
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
    """Enough of a Connection for ``config.*_config_from_connection`` to validate a planned one."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.login = values.get("login")
        self.password = values.get("password")
        self.extra_dejson = {k[len("extra.") :]: v for k, v in values.items() if k.startswith("extra.")}
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

    for key, prop in latest.items():
        where = f"line {prop.line}: {key}"
        if key == config.DIGDAG_TYPE_KEY:
            _plan_executor_type(plan, prop)
        elif key == KUBERNETES_PREFIX or key.startswith(KUBERNETES_PREFIX + "."):
            plan.warnings.append(f"{where}: the Kubernetes command executor is not supported; ignored")
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
            managed=tuple(dict.fromkeys(spec.airflow_field for spec in config.ECS_FIELDS)),
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
                managed=("login", "password"),
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
        _plan_storage(plan, storage_props, config, CmdExecConfigError)

    # -- validate each connection as a whole, exactly as a task would load it ------------------------
    if not plan.errors:
        for desired in plan.connections.values():
            fake = _FakeConnection(desired.values)
            try:
                if desired.conn_type == digdag_keys.ECS_CONN_TYPE:
                    config.ecs_config_from_connection(fake, desired.conn_id, {}, TASK_LABEL, None, None)
                elif desired.conn_type == digdag_keys.STORAGE_CONN_TYPE:
                    config.storage_config_from_connection(fake, desired.conn_id, TASK_LABEL)
            except CmdExecConfigError as exc:
                plan.errors.append(_strip_task_prefix(str(exc)))
    return plan


def _plan_executor_type(plan: ImportPlan, prop: Prop) -> None:
    from airflow_cmdexec_provider import config
    from airflow_cmdexec_provider.exceptions import CmdExecConfigError
    from airflow_cmdexec_provider.hooks.command_executor import normalize_executor

    value = prop.value.strip()
    if value.lower() == "kubernetes":
        plan.errors.append(
            f"{prop.key} = kubernetes: the Kubernetes command executor is not supported; "
            f"use ecs, docker or simple (Variable {config.EXECUTOR_TYPE_VARIABLE})"
        )
        return
    try:
        name = normalize_executor(value, f"{prop.key} (Variable {config.EXECUTOR_TYPE_VARIABLE})")
    except CmdExecConfigError as exc:
        plan.errors.append(f"{exc} (Digdag names: ecs, docker, simple)")
        return
    if name is None:
        plan.errors.append(f"{prop.key} is empty: use ecs, docker or simple")
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
    plan: ImportPlan, storage_props: dict[str, Prop], config: Any, error_class: type[Exception]
) -> None:
    desired = DesiredConnection(
        conn_id=config.STORAGE_CONN_ID,
        conn_type=digdag_keys.STORAGE_CONN_TYPE,
        managed=tuple(dict.fromkeys(spec.airflow_field for spec in config.STORAGE_FIELDS)),
        description=f"Temporal storage (Digdag {digdag_keys.DIGDAG_STORAGE_PREFIX}*)",
    )
    type_spec = next(s for s in config.STORAGE_FIELDS if s.digdag_key == "type")
    type_prop = storage_props.pop("type", None)
    storage_type: str | None = None
    if type_prop is None:
        names = ", ".join(digdag_keys.DIGDAG_STORAGE_PREFIX + k for k in storage_props)
        plan.errors.append(
            f"{digdag_keys.DIGDAG_STORAGE_PREFIX}type is missing (s3 or gcs) but the file sets {names}"
        )
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
            plan.warnings.append(
                f"{where}: ignored, {digdag_keys.DIGDAG_STORAGE_PREFIX}type is {storage_type}"
            )
        else:
            plan.warnings.append(f"{where}: unknown temporal storage key; ignored")
    plan.connections[desired.conn_id] = desired


# --------------------------------------------------------------------------------------------------
# Desired state vs the metadata DB
# --------------------------------------------------------------------------------------------------
@dataclass
class Change:
    kind: str  # "Connection" or "Variable"
    ident: str
    action: str  # create, update, unchanged
    details: list[str]


def _normalize_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if v is not None}


def _show(value: Any, secret: bool) -> str:
    if secret:
        return MASK
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def _connection_change(desired: DesiredConnection, existing: Any) -> tuple[Change, dict[str, Any]]:
    """Compare with the stored connection; return the change and the complete new field values."""
    current_extra: dict[str, Any] = {}
    if existing is not None and existing.extra:
        try:
            current_extra = json.loads(existing.extra)
        except ValueError:
            current_extra = {}
        if not isinstance(current_extra, dict):
            current_extra = {}
    managed_extras = {f[len("extra.") :] for f in desired.managed if f.startswith("extra.")}
    new_extra = {k: v for k, v in current_extra.items() if k not in managed_extras}
    for airflow_field, value in desired.values.items():
        if airflow_field.startswith("extra."):
            new_extra[airflow_field[len("extra.") :]] = value
    new = {
        "conn_type": desired.conn_type,
        "login": desired.values.get("login")
        if "login" in desired.managed
        else getattr(existing, "login", None),
        "password": (
            desired.values.get("password")
            if "password" in desired.managed
            else getattr(existing, "password", None)
        ),
        "extra": _normalize_extra(new_extra),
    }
    label = f"{desired.conn_id!r} ({desired.conn_type})"
    if existing is None:
        details = [
            f"{name}={_show(desired.values[f], f in desired.secret_fields)}"
            for f in desired.values
            for name in [f[len("extra.") :] if f.startswith("extra.") else f]
        ]
        return Change("Connection", label, "create", details), new
    details: list[str] = []
    if existing.conn_type != desired.conn_type:
        details.append(f"conn_type {existing.conn_type!r} -> {desired.conn_type!r}")
    for name in ("login", "password"):
        old, value = getattr(existing, name, None) or None, new[name] or None
        if old != value:
            secret = name in desired.secret_fields or name == "password"
            details.append(
                f"{name}: {_show(old, secret) if old else '(unset)'} -> "
                f"{_show(value, secret) if value else '(unset)'}"
            )
    old_extra = _normalize_extra(current_extra)
    for name in sorted(set(old_extra) | set(new["extra"])):
        if old_extra.get(name) != new["extra"].get(name):
            old_text = _show(old_extra[name], False) if name in old_extra else "(unset)"
            new_text = _show(new["extra"][name], False) if name in new["extra"] else "(unset)"
            details.append(f"{name}: {old_text} -> {new_text}")
    return Change("Connection", label, "update" if details else "unchanged", details), new


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
        if "secret" in lowered or "credentials.json.content" in lowered or "password" in lowered:
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
    try:
        with create_session() as session:
            writes: list[Callable[[], None]] = []
            for name, value in plan.variables.items():
                var = session.scalar(select(Variable).where(Variable.key == name))
                if var is None:
                    changes.append(Change("Variable", repr(name), "create", [repr(value)]))
                    writes.append(
                        lambda n=name, v=value: session.add(
                            Variable(key=n, val=v, description="Digdag agent.command_executor.type")
                        )
                    )
                elif var.val != value:
                    changes.append(Change("Variable", repr(name), "update", [f"{var.val!r} -> {value!r}"]))
                    writes.append(lambda var=var, v=value: setattr(var, "val", v))
                else:
                    changes.append(Change("Variable", repr(name), "unchanged", []))
            for desired in plan.connections.values():
                existing = session.scalar(select(Connection).where(Connection.conn_id == desired.conn_id))
                if existing is not None and existing.password:
                    output.add_secret(existing.password)
                change, new = _connection_change(desired, existing)
                changes.append(change)
                if change.action == "unchanged":
                    continue
                writes.append(lambda d=desired, e=existing, n=new: _write_connection(session, d, e, n))
            for change in changes:
                verb = (
                    change.action if not dry_run or change.action == "unchanged" else f"would {change.action}"
                )
                text = f"{verb} {change.kind} {change.ident}"
                if change.details:
                    text += ": " + ", ".join(change.details)
                output.out(text)
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
    if new["password"]:
        existing.password = new["password"]
    else:  # the model's password setter ignores None: clear the column itself
        existing._password = None
        existing.is_encrypted = False
    existing.extra = extra


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
    conn: Any, fields: Iterable[Any], conn_id: str, key_for: Callable[[Any], str]
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
            conn = config._get_connection(conn_id)
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
                    lambda spec, name=name: digdag_keys.digdag_key(spec, cluster=name),
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
            aws = config._get_connection(config.AWS_CONN_ID)
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

        storage = config._get_connection(config.STORAGE_CONN_ID)
        if storage is not None:
            if storage.password:
                output.add_secret(storage.password)
            where = f"temporal storage connection {config.STORAGE_CONN_ID!r}"
            try:
                raw_type = _raw_extra(storage, "type").lower()
                if not raw_type:
                    raise CmdExecConfigError(
                        f"{where}: extra 'type' (Digdag {digdag_keys.DIGDAG_STORAGE_PREFIX}type) is required"
                    )
                values = _stored_values(
                    storage,
                    config.STORAGE_FIELDS,
                    config.STORAGE_CONN_ID,
                    lambda spec: digdag_keys.digdag_key(spec, storage_type=raw_type),
                )
                storage_type = values["extra.type"]
            except CmdExecConfigError as exc:
                errors.append(str(exc))
            else:
                lines.append("")
                lines.append(f"# Connection {config.STORAGE_CONN_ID!r} ({digdag_keys.STORAGE_CONN_TYPE})")
                for spec in config.STORAGE_FIELDS:
                    if not config.storage_field_applies(spec, storage_type):
                        continue
                    key = digdag_keys.digdag_key(spec, storage_type=storage_type)
                    value = values.get(spec.airflow_field)
                    if value is not None:
                        prop(key, value, spec.secret)
                    elif spec.default is not None:
                        default(key, spec.default)
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None

    for line in lines:
        output.out(line)
    for error in errors:
        output.err(f"error: {error}")
    return EXIT_ERROR if errors else EXIT_OK


# --------------------------------------------------------------------------------------------------
# check: which executor, why, and is it reachable
# --------------------------------------------------------------------------------------------------
@dataclass
class Verdict:
    name: str
    state: str  # OK, UNREACHABLE, NOT CONFIGURED, INVALID, SKIPPED
    message: str

    @property
    def ok(self) -> bool:
        return self.state == "OK"


def _selection(
    executor: str | None, docker: Mapping[str, Any] | None, ecs: Mapping[str, Any] | None
) -> tuple[Any, list[tuple[str, str]], str | None, BaseException | None]:
    """Run CommandExecutorHook's own selection; record what each backend said."""
    from airflow_cmdexec_provider.exceptions import BackendNotConfigured
    from airflow_cmdexec_provider.hooks.command_executor import CommandExecutorHook

    attempts: list[tuple[str, str]] = []

    class SelectionProbe(CommandExecutorHook):
        def _factories(self):  # type: ignore[no-untyped-def]
            real = super()._factories()

            def probe(name: str, factory: Callable[[], Any]) -> Callable[[], Any]:
                def build() -> Any:
                    try:
                        backend = factory()
                    except BackendNotConfigured as exc:
                        attempts.append((name, f"not configured: {exc}"))
                        raise
                    attempts.append((name, "selected"))
                    return backend

                return build

            return {name: probe(name, factory) for name, factory in real.items()}

    hook = SelectionProbe(executor=executor, docker=docker, ecs=ecs, task_label=TASK_LABEL)
    try:
        backend = hook.get_backend()
    except Exception as exc:  # noqa: BLE001 - reported as the verdict
        return None, attempts, None, exc
    selected = next((name for name, what in attempts if what == "selected"), None)
    return backend, attempts, selected, None


def _aws_message(exc: Exception) -> str:
    error = (getattr(exc, "response", None) or {}).get("Error", {})
    if error:
        return f"{error.get('Code')}: {error.get('Message')}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {' '.join(lines[:2])}"


def _probe_ecs(backend: Any) -> Verdict:
    cluster = backend.config.cluster_name
    try:
        response = backend.ecs.describe_clusters(clusters=[cluster])
    except Exception as exc:  # noqa: BLE001
        return Verdict(
            "ecs", "UNREACHABLE", f"cluster {cluster!r}: describe_clusters failed: {_aws_message(exc)}"
        )
    found = [
        c
        for c in response.get("clusters", [])
        if c.get("clusterName") == cluster or c.get("clusterArn", "").endswith("/" + cluster)
    ]
    if not found:
        reasons = ", ".join(str(f.get("reason")) for f in response.get("failures", []))
        return Verdict(
            "ecs", "UNREACHABLE", f"cluster {cluster!r} not found" + (f" ({reasons})" if reasons else "")
        )
    status = found[0].get("status", "?")
    if status != "ACTIVE":
        return Verdict("ecs", "UNREACHABLE", f"cluster {cluster!r} is {status}")
    region = backend.ecs.meta.region_name
    return Verdict(
        "ecs",
        "OK",
        f"cluster {cluster!r} is ACTIVE in {region} ({found[0].get('runningTasksCount', 0)} running tasks)",
    )


def _probe_storage(backend: Any) -> Verdict:
    config = backend.storage_config
    try:
        storage = backend.storage
        if config.type == "s3":
            storage.client.head_bucket(Bucket=config.bucket)
            return Verdict("storage", "OK", f"s3://{config.bucket} is reachable")
        storage.client.get_bucket(config.bucket)
        return Verdict("storage", "OK", f"gs://{config.bucket} is reachable")
    except Exception as exc:  # noqa: BLE001
        scheme = "s3" if config.type == "s3" else "gs"
        return Verdict("storage", "UNREACHABLE", f"{scheme}://{config.bucket}: {_aws_message(exc)}")


def _probe_docker(cli: str) -> Verdict:
    try:
        proc = subprocess.run(
            [cli, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError:
        return Verdict("docker", "UNREACHABLE", f"the docker CLI {cli!r} was not found")
    except subprocess.TimeoutExpired:
        return Verdict("docker", "UNREACHABLE", f"'{cli} version' did not answer within 30 s")
    if proc.returncode != 0 or not proc.stdout.strip():
        detail = (proc.stderr.strip().splitlines() or ["no server version"])[-1]
        return Verdict("docker", "UNREACHABLE", f"the Docker daemon does not answer ({cli}): {detail}")
    return Verdict("docker", "OK", f"the Docker daemon answers (server {proc.stdout.strip()}, CLI {cli})")


def check(
    output: Output,
    image: str | None,
    task_definition_arn: str | None,
    executor: str | None,
    ecs_conn_id: str | None,
    storage_conn_id: str | None,
) -> int:
    from airflow_cmdexec_provider import config
    from airflow_cmdexec_provider.exceptions import BackendNotConfigured, CmdExecConfigError
    from airflow_cmdexec_provider.hooks.command_executor import CHAINS, normalize_executor

    docker = {"image": image} if image else None
    ecs: dict[str, Any] = {}
    if task_definition_arn:
        ecs["task_definition_arn"] = task_definition_arn
    if ecs_conn_id:
        ecs["conn_id"] = ecs_conn_id
    if storage_conn_id:
        ecs["storage_conn_id"] = storage_conn_id

    for conn_id in (
        ecs_conn_id or config.ECS_CONN_ID,
        storage_conn_id or config.STORAGE_CONN_ID,
        config.AWS_CONN_ID,
    ):
        conn = config._get_connection(conn_id)
        if conn is not None and conn.password:
            output.add_secret(conn.password)

    params = []
    if image:
        params.append(f"docker.image={image!r}")
    if task_definition_arn:
        params.append(f"ecs.task_definition_arn={task_definition_arn!r}")
    none = "(none: no docker.image, no ecs.task_definition_arn)"
    output.out(f"Task params: {', '.join(params) if params else none}")
    try:
        forced = normalize_executor(executor, "--executor")
        configured_raw = config.executor_type()
        configured = normalize_executor(configured_raw, f"Variable {config.EXECUTOR_TYPE_VARIABLE}") or "ecs"
    except CmdExecConfigError as exc:
        output.err(f"error: {exc}")
        return EXIT_ERROR
    if forced:
        chain: tuple[str, ...] = (forced,)
        output.out(f"Executor: forced to {forced!r} (--executor)")
    else:
        chain = CHAINS[configured]
        source = (
            f"Variable {config.EXECUTOR_TYPE_VARIABLE} = {configured_raw!r}"
            if configured_raw
            else f"Variable {config.EXECUTOR_TYPE_VARIABLE} is not set: Digdag's default"
        )
        output.out(f"Executor type: {configured} ({source}); chain: {' -> '.join(chain)}")

    backend, attempts, selected, failure = _selection(executor, docker, ecs or None)
    for name, what in attempts:
        if what != "selected":
            output.out(f"  {name}: skipped, {what}")
    if selected:
        output.out(f"Selected: {selected}")

    # Reachability of every backend in the chain, whether or not it is the one selected.
    verdicts: dict[str, list[Verdict]] = {}
    for name in chain:
        if name == "local":
            verdicts[name] = [Verdict("local", "OK", "runs on the worker itself")]
        elif name == "docker":
            cli = backend.config.docker if selected == "docker" else "docker"
            verdict = _probe_docker(cli)
            if selected != "docker" and docker is None:
                verdict.message += " (not used by this task: no docker.image)"
            verdicts[name] = [verdict]
        elif name == "ecs":
            ecs_backend = backend if selected == "ecs" else None
            if ecs_backend is None:
                try:
                    from airflow_cmdexec_provider.backends.ecs import EcsBackend

                    ecs_config = config.load_ecs_config(ecs_conn_id or config.ECS_CONN_ID, TASK_LABEL)
                    storage_config = config.load_storage_config(
                        storage_conn_id or config.STORAGE_CONN_ID, TASK_LABEL
                    )
                    ecs_backend = EcsBackend(ecs_config, storage_config)
                except BackendNotConfigured as exc:
                    verdicts[name] = [Verdict("ecs", "NOT CONFIGURED", str(exc))]
                except CmdExecConfigError as exc:
                    verdicts[name] = [Verdict("ecs", "INVALID", _strip_task_prefix(str(exc)))]
            if ecs_backend is not None:
                try:
                    verdicts[name] = [_probe_ecs(ecs_backend), _probe_storage(ecs_backend)]
                except CmdExecConfigError as exc:
                    verdicts[name] = [Verdict("ecs", "INVALID", _strip_task_prefix(str(exc)))]

    output.out("Backends:")
    for name in chain:
        for verdict in verdicts.get(name, []):
            marker = "(selected) " if name == selected and verdict.name in ("ecs", "docker", "local") else ""
            output.out(f"  {verdict.name:<8} {verdict.state:<14} {marker}{verdict.message}")

    if failure is not None:
        output.out(
            f"Verdict: FAIL: a task with these params fails before it runs: "
            f"{_strip_task_prefix(str(failure))}"
        )
        return EXIT_ERROR
    selected_ok = all(v.ok for v in verdicts.get(selected or "", []))
    if selected_ok:
        output.out(f"Verdict: OK: a task with these params runs on {selected}, and {selected} is reachable")
        return EXIT_OK
    output.out(f"Verdict: FAIL: a task with these params runs on {selected}, but {selected} is unreachable")
    return EXIT_ERROR


# --------------------------------------------------------------------------------------------------
# docs-table: the Digdag key -> Airflow home table of docs/configuration.md
# --------------------------------------------------------------------------------------------------
DOCS_BEGIN = "<!-- BEGIN GENERATED: airflow-cmdexec docs-table -->"
DOCS_END = "<!-- END GENERATED: airflow-cmdexec docs-table -->"


def _kind_text(spec: Any) -> str:
    if spec.kind == "choice":
        return "one of " + ", ".join(f"`{c}`" for c in spec.choices)
    return {"str": "string", "int": "integer", "bool": "boolean", "list": "list (comma-separated)"}[spec.kind]


def _default_text(spec: Any) -> str:
    if spec.default is None:
        return ""
    return f"`{_digdag_text(spec.default)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def docs_table() -> str:
    """The table Digdag key -> Airflow home, type, default, generated from the FieldSpec tables."""
    from airflow_cmdexec_provider import config

    rows = [
        "| Digdag key | Airflow home | Type | Default | Notes |",
        "|---|---|---|---|---|",
        f"| `{config.DIGDAG_TYPE_KEY}` | Variable `{config.EXECUTOR_TYPE_VARIABLE}` | one of `ecs`, "
        "`docker`, `local` (Digdag `simple`) | `ecs` | Chain ECS -> Docker -> local; `kubernetes` is "
        "not supported. |",
    ]

    def home(spec: Any, conn: str) -> str:
        if spec.extra_name:
            return f"{conn} extra `{spec.extra_name}`"
        return f"{conn} {spec.airflow_field.capitalize()}" + (" (secret)" if spec.secret else "")

    ecs_conn = f"`{config.ECS_CONN_ID}` / `{config.ECS_CONN_ID_PREFIX}<name>`"
    for spec in config.ECS_FIELDS:
        rows.append(
            f"| `{digdag_keys.digdag_key(spec)}` | {home(spec, ecs_conn)} | {_kind_text(spec)} | "
            f"{_default_text(spec)} | {_cell(spec.description)} |"
        )
    base = f"{digdag_keys.DIGDAG_ECS_PREFIX}{config.DIGDAG_DEFAULT_CONFIG}"
    aws = f"`{config.AWS_CONN_ID}` (conn type `aws`)"
    rows.append(
        f"| `{base}.access_key_id` | {aws} Login | string |  | Shared keys: ECS connections "
        f"without their own keys get extra `aws_conn_id` = `{config.AWS_CONN_ID}`. |"
    )
    rows.append(f"| `{base}.secret_access_key` | {aws} Password (secret) | string |  | |")
    storage_conn = f"`{config.STORAGE_CONN_ID}`"
    for spec in config.STORAGE_FIELDS:
        rows.append(
            f"| `{digdag_keys.digdag_key(spec)}` | {home(spec, storage_conn)} | {_kind_text(spec)} | "
            f"{_default_text(spec)} | {_cell(spec.description)} |"
        )
    rows.append(f"| `{KUBERNETES_PREFIX}.*` | - | | | Not supported: the importer warns and ignores them. |")
    return "\n".join(rows) + "\n"


def _docs_with_table(text: str) -> str:
    begin, end = text.find(DOCS_BEGIN), text.find(DOCS_END)
    if begin < 0 or end < begin:
        raise CliError(f"the file has no {DOCS_BEGIN} ... {DOCS_END} section")
    return text[: begin + len(DOCS_BEGIN)] + "\n" + docs_table() + text[end:]


def docs_table_command(output: Output, write: str | None, check_file: str | None) -> int:
    if write:
        path = Path(write)
        path.write_text(_docs_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
        output.out(f"updated the table in {path}")
        return EXIT_OK
    if check_file:
        text = Path(check_file).read_text(encoding="utf-8")
        if _docs_with_table(text) != text:
            output.err(f"{check_file} is out of date: run airflow-cmdexec docs-table --write {check_file}")
            return EXIT_ERROR
        output.out(f"{check_file} is up to date")
        return EXIT_OK
    output.out(docs_table().rstrip("\n"))
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airflow-cmdexec",
        description="Digdag's command executor configuration in Airflow: import, show, check.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    imp = sub.add_parser(
        "import-digdag-config",
        help="create/update Connections and Variables from a Digdag properties file (idempotent)",
    )
    imp.add_argument("path", metavar="PATH", help="Digdag system config (Java properties, as for digdag -c)")
    imp.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    show = sub.add_parser(
        "show-config", help="print the configuration as Digdag key = value lines (secrets as ***)"
    )
    show.add_argument(
        "--with-defaults", action="store_true", help="also list unset keys with their defaults, as comments"
    )
    chk = sub.add_parser("check", help="which executor a task would use, why, and whether it is reachable")
    chk.add_argument("--image", help="the task's docker.image")
    chk.add_argument("--task-definition-arn", help="the task's ecs.task_definition_arn")
    chk.add_argument("--executor", help="force an executor (ecs, docker, local), as the operators' executor=")
    chk.add_argument("--ecs-conn-id", help="ECS cluster connection (ecs={'conn_id': ...})")
    chk.add_argument("--storage-conn-id", help="temporal storage connection (ecs={'storage_conn_id': ...})")
    docs = sub.add_parser("docs-table", help="print the Digdag key -> Airflow home table (markdown)")
    group = docs.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", help="replace the generated section of FILE")
    group.add_argument("--check", metavar="FILE", help="exit 1 if FILE's generated section is out of date")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # No Task SDK supervisor here: let the SDK's own lookups (e.g. the amazon provider's hooks behind
    # aws_conn_id) use the server chain (env, secrets backends, metadata DB), as the API server does.
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    # Airflow logs to stdout; our stdout is for results (show-config output is parsed). Airflow is
    # imported below, so its log handlers bind to stderr; only warnings that matter are shown.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
    output = Output(stdout=sys.stdout)
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        return _run(args, output)
    finally:
        sys.stdout = real_stdout


def _run(args: argparse.Namespace, output: Output) -> int:
    try:
        if args.command == "import-digdag-config":
            return import_digdag_config(args.path, args.dry_run, output)
        if args.command == "show-config":
            return show_config(output, args.with_defaults)
        if args.command == "check":
            return check(
                output,
                args.image,
                args.task_definition_arn,
                args.executor,
                args.ecs_conn_id,
                args.storage_conn_id,
            )
        return docs_table_command(output, args.write, args.check)
    except CliError as exc:
        output.err(f"error: {exc}")
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - one masked line instead of a traceback with values
        from airflow_cmdexec_provider.exceptions import CmdExecError

        if os.environ.get("AIRFLOW_CMDEXEC_DEBUG"):
            raise
        if isinstance(exc, CmdExecError):
            output.err(f"error: {_strip_task_prefix(str(exc))}")
        else:
            first = str(exc).splitlines()[0] if str(exc) else ""
            output.err(f"error: {type(exc).__name__}: {first} (set AIRFLOW_CMDEXEC_DEBUG=1 for a traceback)")
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
