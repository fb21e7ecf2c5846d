"""What the API server checks and fills in when an object is created (the part the emulator
models), and the valid Kubernetes features it refuses because it would otherwise ignore them.

Each ``prepare_*`` function takes a strictly decoded body (see ``_schema.decode_body``), raises
ApiError 422 with every problem found, and returns the object as it is stored: metadata
(``uid``, ``creationTimestamp``, namespace), server-side defaults and the initial status.
"""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ._schema import (
    EMULATOR_DOC,
    ApiError,
    FieldError,
    bad_request,
    config_key_errors,
    decode_base64,
    dns_label_errors,
    dns_subdomain_errors,
    forbidden,
    invalid,
    invalid_object,
    label_value_errors,
    not_supported,
    qualified_name_errors,
    quantity,
    quantity_errors,
    required,
    unsupported_by_emulator,
)

DEFAULT_STORAGE_CLASS = "standard"
DEFAULT_GRACE_SECONDS = 30
_MAX_SECRET_BYTES = 1024 * 1024
_MAX_ANNOTATION_BYTES = 256 * 1024
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's generateName
_ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
_POD_FIELD_PATHS = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
]


def now_rfc3339() -> str:
    """metav1.Time as JSON: UTC, whole seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _absent(value: Any) -> bool:
    """Unset, or set to the zero value Go would also send for unset (false, "", [], {})."""
    return value is None or value is False or (isinstance(value, (str, list, dict)) and not value)


# ---------------------------------------------------------------------------------- metadata
def _prepare_metadata(
    obj: dict[str, Any],
    namespace: str | None,
    name_rules: Callable[[str, str], list[FieldError]],
    errors: list[FieldError],
) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    if namespace is not None:
        if meta.get("namespace") not in (None, namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace
    elif meta.get("namespace"):
        meta.pop("namespace")  # cluster-scoped: the API server clears it
    if meta.get("resourceVersion"):
        raise bad_request("resourceVersion should not be set on objects to be created")
    if not meta.get("name"):
        if meta.get("generateName"):
            suffix = "".join(random.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))
            meta["name"] = meta["generateName"] + suffix
        else:
            errors.append(required("metadata.name", "name or generateName is required"))
            return meta
    errors.extend(name_rules("metadata.name", meta["name"]))
    for key, value in (meta.get("labels") or {}).items():
        errors.extend(qualified_name_errors("metadata.labels", key))
        errors.extend(label_value_errors("metadata.labels", value))
    annotations = meta.get("annotations") or {}
    for key in annotations:
        errors.extend(qualified_name_errors("metadata.annotations", key))
    if sum(len(k) + len(v) for k, v in annotations.items()) > _MAX_ANNOTATION_BYTES:
        errors.append(
            FieldError(
                "TooLong", "metadata.annotations", detail=f"must have at most {_MAX_ANNOTATION_BYTES} bytes"
            )
        )
    if meta.get("finalizers"):
        errors.append(unsupported_by_emulator("metadata.finalizers", "no controller would ever remove them"))
    if meta.get("ownerReferences"):
        errors.append(unsupported_by_emulator("metadata.ownerReferences", "there is no garbage collector"))
    # Fields the server owns are replaced, as on a real create.
    for key in (
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
        "managedFields",
    ):
        meta.pop(key, None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now_rfc3339()
    return meta


def _finish(kind: str, obj: dict[str, Any], errors: list[FieldError]) -> None:
    if errors:
        raise invalid_object(kind, (obj.get("metadata") or {}).get("name") or "", errors)
    obj["kind"] = kind
    obj["apiVersion"] = "v1"


# ---------------------------------------------------------------------------------- namespaces
def prepare_namespace(obj: dict[str, Any]) -> dict[str, Any]:
    errors: list[FieldError] = []
    meta = _prepare_metadata(obj, None, dns_label_errors, errors)
    if meta.get("name"):
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    spec = obj.setdefault("spec", {})
    if spec.get("finalizers") not in (None, ["kubernetes"]):
        errors.append(unsupported_by_emulator("spec.finalizers", 'only the "kubernetes" finalizer exists'))
    spec["finalizers"] = ["kubernetes"]
    obj["status"] = {"phase": "Active"}
    _finish("Namespace", obj, errors)
    return obj


# ---------------------------------------------------------------------------------- secrets, configmaps
def _check_data_keys(
    kind: str, data: dict[str, str], field: str, errors: list[FieldError], base64_values: bool
) -> int:
    """Check the keys of ``data``; returns the size of its values in bytes."""
    size = 0
    for key, value in data.items():
        errors.extend(config_key_errors(f"{field}[{key}]", key))
        size += len(decode_base64(value, kind, f"{field}[{key}]") if base64_values else value.encode())
    return size


def prepare_secret(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    errors: list[FieldError] = []
    _prepare_metadata(obj, namespace, dns_subdomain_errors, errors)
    data = obj.get("data") or {}
    size = _check_data_keys("Secret", data, "data", errors, base64_values=True)
    string_data = obj.pop("stringData", None) or {}
    size += _check_data_keys("Secret", string_data, "stringData", errors, base64_values=False)
    for key, value in string_data.items():  # write-only: merged into data, stringData wins
        data[key] = base64.b64encode(value.encode()).decode()
    if size > _MAX_SECRET_BYTES:
        errors.append(FieldError("TooLong", "data", detail=f"must have at most {_MAX_SECRET_BYTES} bytes"))
    if data:
        obj["data"] = data
    obj.setdefault("type", "Opaque")
    _finish("Secret", obj, errors)
    return obj


def prepare_configmap(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    errors: list[FieldError] = []
    _prepare_metadata(obj, namespace, dns_subdomain_errors, errors)
    data = obj.get("data") or {}
    binary = obj.get("binaryData") or {}
    size = _check_data_keys("ConfigMap", data, "data", errors, base64_values=False)
    size += _check_data_keys("ConfigMap", binary, "binaryData", errors, base64_values=True)
    for key in set(data) & set(binary):
        errors.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    if size > _MAX_SECRET_BYTES:
        errors.append(FieldError("TooLong", "", detail=f"must have at most {_MAX_SECRET_BYTES} bytes"))
    _finish("ConfigMap", obj, errors)
    return obj


# ---------------------------------------------------------------------------------- persistent volumes
def _check_access_modes(modes: list[str] | None, field: str, errors: list[FieldError]) -> None:
    if not modes:
        errors.append(required(field))
    for mode in modes or []:
        if mode not in _ACCESS_MODES:
            errors.append(not_supported(field, mode, _ACCESS_MODES))


def _only_fields(
    obj: dict[str, Any], allowed: set[str], path: str, what: dict[str, str], errors: list[FieldError]
) -> None:
    """Every set field outside ``allowed`` is rejected, with ``what[field]`` (or a generic reason)."""
    for key, value in obj.items():
        if key not in allowed and not _absent(value):
            errors.append(
                unsupported_by_emulator(f"{path}.{key}", what.get(key, "this field is not modelled"))
            )


_PV_SPEC_FIELDS = {
    "capacity",
    "accessModes",
    "claimRef",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "volumeMode",
}
_PV_SPEC_WHY = {
    "nodeAffinity": "there is one node",
    "mountOptions": "bind mounts take no options",
    "volumeAttributesClassName": "there are no volume attributes classes",
}


def prepare_persistent_volume(obj: dict[str, Any]) -> dict[str, Any]:
    errors: list[FieldError] = []
    _prepare_metadata(obj, None, dns_subdomain_errors, errors)
    spec = obj.setdefault("spec", {})
    storage = (spec.get("capacity") or {}).get("storage")
    if storage is None:
        errors.append(required("spec.capacity", "must specify storage"))
    else:
        errors.extend(quantity_errors("spec.capacity[storage]", storage))
    for key in spec.get("capacity") or {}:
        if key != "storage":
            errors.append(not_supported("spec.capacity", key, ["storage"]))
    _check_access_modes(spec.get("accessModes"), "spec.accessModes", errors)
    for key, why in _PV_SPEC_WHY.items():
        if not _absent(spec.get(key)):
            errors.append(unsupported_by_emulator(f"spec.{key}", why))
    sources = [
        k for k, v in spec.items() if k not in _PV_SPEC_FIELDS and k not in _PV_SPEC_WHY and v is not None
    ]
    if not sources:
        errors.append(required("spec", "must specify a volume type"))
    elif len(sources) > 1:
        errors.append(forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type"))
    elif sources[0] != "hostPath":
        errors.append(
            unsupported_by_emulator(f"spec.{sources[0]}", "the only persistent volume source is hostPath")
        )
    else:
        if not spec["hostPath"].get("path"):
            errors.append(required("spec.hostPath.path"))
        _check_host_path_type(spec["hostPath"].get("type"), "spec.hostPath.type", errors)
    policy = spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    if policy not in ("Retain", "Delete"):
        errors.append(not_supported("spec.persistentVolumeReclaimPolicy", policy, ["Delete", "Retain"]))
    if spec.setdefault("volumeMode", "Filesystem") != "Filesystem":
        errors.append(unsupported_by_emulator("spec.volumeMode", "only Filesystem volumes"))
    claim = spec.get("claimRef")
    if claim is not None and not (claim.get("name") and claim.get("namespace")):
        errors.append(required("spec.claimRef", "name and namespace are required"))
    obj["metadata"]["finalizers"] = ["kubernetes.io/pv-protection"]
    obj["status"] = {"phase": "Pending"}
    _finish("PersistentVolume", obj, errors)
    return obj


def provisioned_volume(claim: dict[str, Any], driver: str, handle: str) -> dict[str, Any]:
    """The volume a dynamic provisioner creates for ``claim`` (storage class "standard")."""
    spec = claim["spec"]
    return {
        "kind": "PersistentVolume",
        "apiVersion": "v1",
        "metadata": {
            "name": f"pvc-{claim['metadata']['uid']}",
            "uid": str(uuid.uuid4()),
            "creationTimestamp": now_rfc3339(),
            "annotations": {"pv.kubernetes.io/provisioned-by": driver},
            "finalizers": ["kubernetes.io/pv-protection"],
        },
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": list(spec["accessModes"]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec["storageClassName"],
            "volumeMode": "Filesystem",
            "csi": {"driver": driver, "volumeHandle": handle},
        },
        "status": {"phase": "Pending"},
    }


def prepare_persistent_volume_claim(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    errors: list[FieldError] = []
    _prepare_metadata(obj, namespace, dns_subdomain_errors, errors)
    spec = obj.setdefault("spec", {})
    _check_access_modes(spec.get("accessModes"), "spec.accessModes", errors)
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        errors.append(required("spec.resources[storage]"))
    else:
        errors.extend(quantity_errors("spec.resources[storage]", storage))
    _only_fields(
        spec,
        {"accessModes", "resources", "selector", "storageClassName", "volumeMode", "volumeName"},
        "spec",
        {"dataSource": "no snapshots or clones", "dataSourceRef": "no snapshots or clones"},
        errors,
    )
    if "storageClassName" not in spec:  # the DefaultStorageClass admission plugin
        spec["storageClassName"] = DEFAULT_STORAGE_CLASS
    if spec.setdefault("volumeMode", "Filesystem") != "Filesystem":
        errors.append(unsupported_by_emulator("spec.volumeMode", "only Filesystem volumes"))
    obj["metadata"]["finalizers"] = ["kubernetes.io/pvc-protection"]
    obj["status"] = {"phase": "Pending"}
    _finish("PersistentVolumeClaim", obj, errors)
    return obj


# ---------------------------------------------------------------------------------- pods
_HOST_PATH_TYPES = [
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
]

# Pod spec fields the API server fills in: accepted (they change nothing here) with these values.
_POD_SPEC_DEFAULTS: dict[str, Any] = {
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
    "preemptionPolicy": "PreemptLowerPriority",
    "priority": 0,
    "serviceAccountName": "default",
    "serviceAccount": "default",
}
_DEFAULT_TOLERATIONS = [  # the DefaultTolerationSeconds admission plugin
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]
_POD_SPEC_MODELLED = {
    "containers",
    "restartPolicy",
    "volumes",
    "activeDeadlineSeconds",
    "terminationGracePeriodSeconds",
    "nodeSelector",
    "nodeName",
    "tolerations",
    "securityContext",
    "imagePullSecrets",
    "hostNetwork",
    "automountServiceAccountToken",
    "enableServiceLinks",
    *_POD_SPEC_DEFAULTS,
}
_POD_SPEC_WHY = {
    "initContainers": "init containers are not run",
    "ephemeralContainers": "no ephemeral containers",
    "affinity": "there is one node and no scheduler; use nodeSelector",
    "topologySpreadConstraints": "there is one node",
    "hostPID": "containers share nothing but the host network",
    "hostIPC": "containers share nothing but the host network",
    "shareProcessNamespace": "containers share nothing but the host network",
    "hostname": "containers use the host network and its hostname",
    "subdomain": "there is no cluster DNS",
    "hostAliases": "containers use the host network and its /etc/hosts",
    "dnsConfig": "there is no cluster DNS",
    "priorityClassName": "there are no priority classes",
    "runtimeClassName": "there is one runtime (Docker)",
    "readinessGates": "there are no readiness gates",
    "resourceClaims": "there is no dynamic resource allocation",
    "schedulingGates": "there is no scheduler to hold the pod",
    "resources": "pod-level resources are not enforced; set them per container",
    "overhead": "there is no pod overhead",
    "os": "containers run on the Docker host's OS",
    "hostUsers": "there are no user namespaces",
}
_CONTAINER_MODELLED = {
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "workingDir",
    "env",
    "envFrom",
    "volumeMounts",
    "resources",
    "securityContext",
    "ports",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "stdin",
    "stdinOnce",
    "tty",
}
_CONTAINER_WHY = {
    "livenessProbe": "no probes are run",
    "readinessProbe": "no probes are run",
    "startupProbe": "no probes are run",
    "lifecycle": "no lifecycle hooks are run",
    "restartPolicy": "containers are never restarted",
    "restartPolicyRules": "containers are never restarted",
    "resizePolicy": "resources are never resized",
    "volumeDevices": "only Filesystem volumes",
}
_POD_SECURITY_MODELLED = {"runAsUser", "runAsGroup", "runAsNonRoot", "supplementalGroups", "seccompProfile"}
_CONTAINER_SECURITY_MODELLED = {
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "capabilities",
    "seccompProfile",
}
_VOLUME_SOURCES_MODELLED = {"emptyDir", "hostPath", "secret", "configMap", "persistentVolumeClaim"}


def default_image_pull_policy(image: str) -> str:
    """Always for ``:latest`` or no tag (and no digest), else IfNotPresent."""
    last = image.rsplit("/", 1)[-1]
    if "@" in image:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _check_seccomp(profile: dict[str, Any] | None, path: str, errors: list[FieldError]) -> None:
    if profile and profile.get("type") != "RuntimeDefault":
        errors.append(
            unsupported_by_emulator(f"{path}.type", "only RuntimeDefault, Docker's default profile")
        )


def _check_security_context(
    ctx: dict[str, Any], allowed: set[str], path: str, errors: list[FieldError]
) -> None:
    _only_fields(ctx, allowed, path, {}, errors)
    for key in ("runAsUser", "runAsGroup"):
        if ctx.get(key) is not None and ctx[key] < 0:
            errors.append(invalid(f"{path}.{key}", ctx[key], "must be between 0 and 2147483647, inclusive"))
    _check_seccomp(ctx.get("seccompProfile"), f"{path}.seccompProfile", errors)


def _check_host_path_type(type_: str | None, path: str, errors: list[FieldError]) -> None:
    if type_ is not None and type_ not in _HOST_PATH_TYPES:
        errors.append(not_supported(path, type_, _HOST_PATH_TYPES))


def _check_relative_path(value: str | None, path: str, errors: list[FieldError]) -> None:
    if value is None:
        return
    if value.startswith("/"):
        errors.append(invalid(path, value, "must be a relative path"))
    if ".." in value.split("/"):
        errors.append(invalid(path, value, "must not contain '..'"))


def _check_key_items(items: list[dict[str, Any]] | None, path: str, errors: list[FieldError]) -> None:
    for i, item in enumerate(items or []):
        if not item.get("path"):
            errors.append(required(f"{path}[{i}].path"))
        _check_relative_path(item.get("path"), f"{path}[{i}].path", errors)
        if item.get("mode") is not None and not 0 <= item["mode"] <= 0o777:
            errors.append(
                invalid(
                    f"{path}[{i}].mode",
                    item["mode"],
                    "must be a number between 0 and 0777 (octal), both inclusive",
                )
            )


def _check_volumes(volumes: list[dict[str, Any]], errors: list[FieldError]) -> None:
    names: set[str] = set()
    for i, volume in enumerate(volumes):
        path = f"spec.volumes[{i}]"
        name = volume.get("name", "")
        errors.extend(dns_label_errors(f"{path}.name", name))
        if name in names:
            errors.append(FieldError("Duplicate", f"{path}.name", name))
        names.add(name)
        sources = [k for k in volume if k != "name" and volume[k] is not None]
        if not sources:
            errors.append(required(path, "must specify a volume type"))
            continue
        if len(sources) > 1:
            errors.append(forbidden(f"{path}.{sources[1]}", "may not specify more than 1 volume type"))
            continue
        source = sources[0]
        spec = volume[source]
        if source not in _VOLUME_SOURCES_MODELLED:
            errors.append(
                unsupported_by_emulator(
                    f"{path}.{source}",
                    "volume sources: emptyDir, hostPath, secret, configMap, persistentVolumeClaim",
                )
            )
        elif source == "emptyDir":
            medium = spec.get("medium", "")
            if medium not in ("", "Memory"):
                errors.append(unsupported_by_emulator(f"{path}.emptyDir.medium", 'only "" and "Memory"'))
            if spec.get("sizeLimit") is not None:
                errors.extend(quantity_errors(f"{path}.emptyDir.sizeLimit", spec["sizeLimit"]))
                if medium != "Memory":
                    errors.append(
                        unsupported_by_emulator(
                            f"{path}.emptyDir.sizeLimit", "enforced only for medium Memory (a tmpfs size)"
                        )
                    )
        elif source == "hostPath":
            if not spec.get("path"):
                errors.append(required(f"{path}.hostPath.path"))
            _check_host_path_type(spec.get("type"), f"{path}.hostPath.type", errors)
        elif source == "secret":
            if not spec.get("secretName"):
                errors.append(required(f"{path}.secret.secretName"))
            _check_key_items(spec.get("items"), f"{path}.secret.items", errors)
        elif source == "configMap":
            if not spec.get("name"):
                errors.append(required(f"{path}.configMap.name"))
            _check_key_items(spec.get("items"), f"{path}.configMap.items", errors)
        elif source == "persistentVolumeClaim" and not spec.get("claimName"):
            errors.append(required(f"{path}.persistentVolumeClaim.claimName"))


def _check_env(container: dict[str, Any], path: str, errors: list[FieldError]) -> None:
    for i, var in enumerate(container.get("env") or []):
        vpath = f"{path}.env[{i}]"
        name = var.get("name", "")
        if not name or "=" in name or not all(32 <= ord(c) <= 126 for c in name):
            errors.append(
                invalid(
                    f"{vpath}.name",
                    name,
                    "a valid environment variable name must consist only of printable ASCII characters other "
                    "than '='",
                )
            )
        source = var.get("valueFrom")
        if source is None:
            continue
        if var.get("value"):
            errors.append(invalid(f"{vpath}.valueFrom", "", "may not be specified when `value` is not empty"))
        kinds = [k for k, v in source.items() if v is not None]
        if len(kinds) != 1:
            errors.append(
                invalid(f"{vpath}.valueFrom", "", "may not have more than one field specified at a time")
            )
            continue
        kind = kinds[0]
        ref = source[kind]
        if kind in ("secretKeyRef", "configMapKeyRef"):
            if not ref.get("name"):
                errors.append(required(f"{vpath}.valueFrom.{kind}.name"))
            errors.extend(config_key_errors(f"{vpath}.valueFrom.{kind}.key", ref.get("key", "")))
        elif kind == "fieldRef":
            field_path = ref.get("fieldPath", "")
            label = field_path.startswith(
                ("metadata.labels['", "metadata.annotations['")
            ) and field_path.endswith("']")
            if field_path not in _POD_FIELD_PATHS and not label:
                errors.append(
                    not_supported(f"{vpath}.valueFrom.fieldRef.fieldPath", field_path, _POD_FIELD_PATHS)
                )
            if ref.get("apiVersion") not in (None, "v1"):
                errors.append(
                    not_supported(f"{vpath}.valueFrom.fieldRef.apiVersion", ref["apiVersion"], ["v1"])
                )
        else:
            errors.append(
                unsupported_by_emulator(
                    f"{vpath}.valueFrom.{kind}", "env sources: value, secretKeyRef, configMapKeyRef, fieldRef"
                )
            )
    for i, source in enumerate(container.get("envFrom") or []):
        spath = f"{path}.envFrom[{i}]"
        refs = [k for k in ("configMapRef", "secretRef") if source.get(k) is not None]
        if len(refs) != 1:
            errors.append(invalid(spath, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif not source[refs[0]].get("name"):
            errors.append(required(f"{spath}.{refs[0]}.name"))


def _check_resources(resources: dict[str, Any], path: str, errors: list[FieldError]) -> None:
    if resources.get("claims"):
        errors.append(unsupported_by_emulator(f"{path}.claims", "there is no dynamic resource allocation"))
    parsed: dict[str, dict[str, Decimal]] = {}
    for kind in ("limits", "requests"):
        for name, value in (resources.get(kind) or {}).items():
            if name not in ("cpu", "memory"):
                errors.append(
                    unsupported_by_emulator(f"{path}.{kind}[{name}]", "only cpu and memory are enforced")
                )
                continue
            problems = quantity_errors(f"{path}.{kind}[{name}]", value)
            errors.extend(problems)
            if not problems:
                parsed.setdefault(kind, {})[name] = quantity(value)
    for name, request in parsed.get("requests", {}).items():
        limit = parsed.get("limits", {}).get(name)
        if limit is not None and request > limit:
            errors.append(
                invalid(
                    f"{path}.requests",
                    resources["requests"][name],
                    f"must be less than or equal to {name} limit of {resources['limits'][name]}",
                )
            )


def _check_container(
    container: dict[str, Any], path: str, volumes: dict[str, dict[str, Any]], errors: list[FieldError]
) -> None:
    errors.extend(dns_label_errors(f"{path}.name", container.get("name", "")))
    _only_fields(container, _CONTAINER_MODELLED, path, _CONTAINER_WHY, errors)
    if not container.get("image"):
        errors.append(required(f"{path}.image"))
    policy = container.get("imagePullPolicy")
    if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
        errors.append(not_supported(f"{path}.imagePullPolicy", policy, ["Always", "IfNotPresent", "Never"]))
    for flag in ("stdin", "stdinOnce", "tty"):
        if container.get(flag):
            errors.append(
                unsupported_by_emulator(f"{path}.{flag}", "containers get no terminal and no stdin")
            )
    if container.get("terminationMessagePath") not in (None, "/dev/termination-log"):
        errors.append(
            unsupported_by_emulator(f"{path}.terminationMessagePath", "termination messages are not read")
        )
    if container.get("terminationMessagePolicy") not in (None, "File"):
        errors.append(
            unsupported_by_emulator(f"{path}.terminationMessagePolicy", "termination messages are not read")
        )
    for i, port in enumerate(container.get("ports") or []):
        if port.get("hostPort") not in (None, port.get("containerPort")):
            errors.append(
                unsupported_by_emulator(f"{path}.ports[{i}].hostPort", "containers use the host network")
            )
    _check_env(container, path, errors)
    _check_resources(container.get("resources") or {}, f"{path}.resources", errors)
    if container.get("securityContext"):
        _check_security_context(
            container["securityContext"], _CONTAINER_SECURITY_MODELLED, f"{path}.securityContext", errors
        )
    mount_paths: set[str] = set()
    for i, mount in enumerate(container.get("volumeMounts") or []):
        mpath = f"{path}.volumeMounts[{i}]"
        volume = volumes.get(mount.get("name"))
        if volume is None:
            errors.append(FieldError("NotFound", f"{mpath}.name", mount.get("name")))
        if not mount.get("mountPath"):
            errors.append(required(f"{mpath}.mountPath"))
        elif mount["mountPath"] in mount_paths:
            errors.append(invalid(f"{mpath}.mountPath", mount["mountPath"], "must be unique"))
        mount_paths.add(mount.get("mountPath"))
        _check_relative_path(mount.get("subPath"), f"{mpath}.subPath", errors)
        if mount.get("subPath") and ((volume or {}).get("emptyDir") or {}).get("medium") == "Memory":
            errors.append(
                unsupported_by_emulator(f"{mpath}.subPath", "no subPath into a medium Memory emptyDir")
            )
        for key, why in (
            ("subPathExpr", "use subPath"),
            ("mountPropagation", "bind mounts are private"),
            ("recursiveReadOnly", "use readOnly"),
        ):
            if mount.get(key) not in (None, "None", "Disabled"):
                errors.append(unsupported_by_emulator(f"{mpath}.{key}", why))


def _check_pod_spec(spec: dict[str, Any], node_name: str, errors: list[FieldError]) -> None:
    _only_fields(spec, _POD_SPEC_MODELLED, "spec", _POD_SPEC_WHY, errors)
    for key, default in _POD_SPEC_DEFAULTS.items():
        if spec.get(key) not in (None, default):
            errors.append(unsupported_by_emulator(f"spec.{key}", f"only the default {default!r} is accepted"))
    restart = spec.get("restartPolicy", "Always")
    if restart not in ("Always", "OnFailure", "Never"):
        errors.append(not_supported("spec.restartPolicy", restart, ["Always", "OnFailure", "Never"]))
    elif restart != "Never":
        errors.append(
            unsupported_by_emulator(
                "spec.restartPolicy",
                f'containers are never restarted, so only restartPolicy "Never" is run (got "{restart}"'
                + (", the default when unset)" if "restartPolicy" not in spec else ")"),
            )
        )
    if spec.get("nodeName") not in (None, node_name):
        errors.append(unsupported_by_emulator("spec.nodeName", f'the only node is "{node_name}"'))
    if spec.get("automountServiceAccountToken"):
        errors.append(
            unsupported_by_emulator(
                "spec.automountServiceAccountToken", "no service account token is mounted"
            )
        )
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and deadline < 1:
        errors.append(
            invalid("spec.activeDeadlineSeconds", deadline, "must be between 1 and 2147483647, inclusive")
        )
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and grace < 0:
        errors.append(
            invalid("spec.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0")
        )
    if spec.get("securityContext"):
        _check_security_context(
            spec["securityContext"], _POD_SECURITY_MODELLED, "spec.securityContext", errors
        )
    volumes = spec.get("volumes") or []
    _check_volumes(volumes, errors)
    containers = spec.get("containers") or []
    if not containers:
        errors.append(required("spec.containers"))
    names: set[str] = set()
    for i, container in enumerate(containers):
        if container.get("name") in names:
            errors.append(FieldError("Duplicate", f"spec.containers[{i}].name", container.get("name")))
        names.add(container.get("name"))
        _check_container(container, f"spec.containers[{i}]", {v.get("name"): v for v in volumes}, errors)


def _default_pod_spec(spec: dict[str, Any]) -> None:
    for key, default in _POD_SPEC_DEFAULTS.items():
        spec.setdefault(key, default)
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    tolerations = spec.setdefault("tolerations", [])
    for toleration in _DEFAULT_TOLERATIONS:
        if not any(t.get("key") == toleration["key"] for t in tolerations):
            tolerations.append(dict(toleration))
    for container in spec["containers"]:
        container.setdefault("imagePullPolicy", default_image_pull_policy(container["image"]))
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        resources = container.setdefault("resources", {})
        for name, value in (resources.get("limits") or {}).items():  # requests default to limits
            resources.setdefault("requests", {}).setdefault(name, value)


def qos_class(spec: dict[str, Any]) -> str:
    requests_or_limits = False
    guaranteed = True
    for container in spec["containers"]:
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        if limits or requests:
            requests_or_limits = True
        for name in ("cpu", "memory"):
            if name not in limits or quantity(requests.get(name, limits[name])) != quantity(limits[name]):
                guaranteed = False
    if not requests_or_limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def prepare_pod(obj: dict[str, Any], namespace: str, node_name: str) -> dict[str, Any]:
    errors: list[FieldError] = []
    _prepare_metadata(obj, namespace, dns_subdomain_errors, errors)
    spec = obj.setdefault("spec", {})
    _check_pod_spec(spec, node_name, errors)
    _finish("Pod", obj, errors)
    _default_pod_spec(spec)
    obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
    return obj


# ---------------------------------------------------------------------------------- delete options
def delete_options(
    body: dict[str, Any], query_grace: str | None, query_dry_run: list[str] | None
) -> dict[str, Any]:
    """DeleteOptions from the body and the query (the query's gracePeriodSeconds wins)."""
    if body.get("dryRun") or query_dry_run:
        raise ApiError(
            400, "BadRequest", f"dryRun is not supported by the Kubernetes emulator (see {EMULATOR_DOC})"
        )
    if query_grace is not None:
        try:
            body["gracePeriodSeconds"] = int(query_grace)
        except ValueError:
            raise bad_request(f'invalid gracePeriodSeconds "{query_grace}"') from None
    grace = body.get("gracePeriodSeconds")
    if grace is not None and grace < 0:
        raise invalid_object(
            "DeleteOptions", "", [invalid("gracePeriodSeconds", grace, "must be greater than or equal to 0")]
        )
    policy = body.get("propagationPolicy")
    if policy not in (None, "Orphan", "Background", "Foreground"):
        raise invalid_object(
            "DeleteOptions",
            "",
            [not_supported("propagationPolicy", policy, ["Background", "Foreground", "Orphan"])],
        )
    return body


def check_preconditions(options: dict[str, Any], obj: dict[str, Any]) -> None:
    pre = options.get("preconditions") or {}
    meta = obj["metadata"]
    if pre.get("uid") is not None and pre["uid"] != meta["uid"]:
        raise ApiError(
            409,
            "Conflict",
            f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}",
        )
    if pre.get("resourceVersion") is not None and pre["resourceVersion"] != meta["resourceVersion"]:
        raise ApiError(
            409,
            "Conflict",
            f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
            f"ResourceVersion in object meta: {meta['resourceVersion']}",
        )
