"""The REST API: routing, authentication, the verbs of each resource, list/watch, pod logs,
and the controllers the API objects need (claim binding, namespace and claim finalization)."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import docker.errors
import kubernetes

from . import _validation as v
from ._http import Request, Responder
from ._kubelet import DYNAMIC_PROVISIONER, TERMINAL_PHASES, LogOptions, parse_since_time, seconds_ago_ns
from ._schema import (
    EMULATOR_DOC,
    ApiError,
    bad_request,
    decode_body,
    forbidden,
    invalid,
    invalid_object,
    not_found,
    not_supported,
    quantity,
)
from ._selectors import FIELDS, FieldSelector, LabelSelector, match_label_selector_object
from ._store import Expired

if TYPE_CHECKING:  # pragma: no cover
    from .emulator import KubeEmulator

log = logging.getLogger("tests.k8s_emulator")

BUILTIN_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
DEFAULT_WATCH_SECONDS = 1800  # the API server's --min-request-timeout


@dataclass(frozen=True)
class Resource:
    name: str
    kind: str
    model: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()

    @property
    def singular(self) -> str:
        return self.kind.lower()


_RW = ("create", "delete", "get", "list", "watch")
RESOURCES = {
    r.name: r
    for r in (
        Resource("namespaces", "Namespace", "V1Namespace", False, _RW, ("ns",)),
        Resource("pods", "Pod", "V1Pod", True, _RW, ("po",)),
        Resource("secrets", "Secret", "V1Secret", True, _RW),
        Resource("configmaps", "ConfigMap", "V1ConfigMap", True, _RW, ("cm",)),
        Resource("persistentvolumes", "PersistentVolume", "V1PersistentVolume", False, _RW, ("pv",)),
        Resource(
            "persistentvolumeclaims", "PersistentVolumeClaim", "V1PersistentVolumeClaim", True, _RW, ("pvc",)
        ),
        Resource("events", "Event", "CoreV1Event", True, ("get", "list", "watch"), ("ev",)),
    )
}


_PREPARE_NAMESPACED: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "secrets": v.prepare_secret,
    "configmaps": v.prepare_configmap,
    "persistentvolumeclaims": v.prepare_persistent_volume_claim,
}
_PREPARE_CLUSTER: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "namespaces": v.prepare_namespace,
    "persistentvolumes": v.prepare_persistent_volume,
}
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass
class RecordedRequest:
    """One request the emulator received (the body parsed as JSON when it was JSON)."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int | None = None
    authenticated: bool = False
    time: float = field(default_factory=time.time)


def _unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def _method_not_allowed(method: str, what: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({method} {what} is not supported "
        f"by the Kubernetes emulator, see {EMULATOR_DOC})",
    )


def _path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def _int_param(request: Request, name: str) -> int | None:
    value = request.param(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f'invalid value for {name}: "{value}" is not an integer') from None


def _bool_param(request: Request, name: str) -> bool:
    return (request.param(name) or "").lower() in ("true", "1")


def _strip_type_meta(obj: dict[str, Any]) -> dict[str, Any]:
    """List items carry no kind/apiVersion (the list does)."""
    return {k: val for k, val in obj.items() if k not in ("kind", "apiVersion")}


class KubeApi:
    """The application behind ``_http.Server``: called once per request, in its connection's thread."""

    def __init__(self, emulator: KubeEmulator) -> None:
        self.emu = emulator
        self.store = emulator.store

    # ------------------------------------------------------------------ entry point
    def __call__(self, request: Request, responder: Responder) -> None:
        try:
            body: Any = json.loads(request.body) if request.body else None
        except ValueError:
            body = request.body.decode("utf-8", "replace")
        record = RecordedRequest(request.method, request.path, request.query, body)
        self.emu._record_request(record)
        responder.on_status = lambda code: setattr(record, "status", code)
        try:
            self._authenticate(request)
            record.authenticated = True
            self._route(request, responder)
        except ApiError as exc:
            responder.send_json(exc.code, exc.status())

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.emu.token.encode()
        ):
            raise _unauthorized()

    def _route(self, request: Request, responder: Responder) -> None:
        parts = [p for p in request.path.split("/") if p]
        if (
            parts in (["healthz"], ["livez"], ["readyz"], ["version"], ["api"], ["apis"])
            and request.method != "GET"
        ):
            raise _method_not_allowed(request.method, request.path)
        if parts in (["healthz"], ["livez"], ["readyz"]):
            return responder.send(200, b"ok", "text/plain; charset=utf-8")
        if parts == ["version"]:
            return responder.send_json(200, self._version())
        if parts == ["api"]:
            return responder.send_json(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.emu.host}:{self.emu.port}"}
                    ],
                },
            )
        if parts == ["apis"]:
            return responder.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if parts[:2] != ["api", "v1"]:
            raise _path_not_found()
        rest = parts[2:]
        if not rest:
            if request.method != "GET":
                raise _method_not_allowed(request.method, "/api/v1")
            return responder.send_json(200, self._resource_list())
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        resource = RESOURCES.get(rest[0])
        if resource is None or len(rest) > 3 or (namespace is not None and not resource.namespaced):
            raise _path_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if resource.namespaced and namespace is None and name is not None:
            raise _path_not_found()  # /api/v1/pods/x: namespaced objects need their namespace
        self._dispatch(request, responder, resource, namespace, name, sub)

    def _dispatch(
        self,
        request: Request,
        responder: Responder,
        resource: Resource,
        namespace: str | None,
        name: str | None,
        sub: str | None,
    ) -> None:
        method = request.method
        if sub is not None:
            if resource.name != "pods" or sub not in ("status", "log"):
                raise _path_not_found()
            if method != "GET":
                raise _method_not_allowed(method, f"pods/{sub}")
            assert namespace is not None
            assert name is not None
            if sub == "status":
                return responder.send_json(200, self._get(resource, namespace, name))
            return self._pod_log(request, responder, namespace, name)
        if name is None:
            if method == "GET":
                return self._list(request, responder, resource, namespace)
            if (
                method == "POST"
                and "create" in resource.verbs
                and (namespace is not None or not resource.namespaced)
            ):
                return responder.send_json(201, self._create(request, resource, namespace))
            raise _method_not_allowed(method, resource.name)
        if method == "GET":
            return responder.send_json(200, self._get(resource, namespace, name))
        if method == "DELETE" and "delete" in resource.verbs:
            return responder.send_json(200, self._delete(request, resource, namespace, name))
        raise _method_not_allowed(method, resource.name)

    # ------------------------------------------------------------------ discovery
    @staticmethod
    def _version() -> dict[str, Any]:
        minor = kubernetes.__version__.split(".")[0]  # client 36.x is generated from Kubernetes 1.36
        return {
            "major": "1",
            "minor": minor,
            "gitVersion": f"v1.{minor}.0+cmdexec-k8s-emulator",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "1970-01-01T00:00:00Z",
            "goVersion": "none (Python emulator)",
            "compiler": "none",
            "platform": f"linux/{_GO_ARCH.get(platform.machine(), platform.machine())}",
        }

    @staticmethod
    def _resource_list() -> dict[str, Any]:
        resources = []
        for r in RESOURCES.values():
            entry = {
                "name": r.name,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": list(r.verbs),
            }
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            resources.append(entry)
        for sub in ("log", "status"):
            resources.append(
                {
                    "name": f"pods/{sub}",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "Pod",
                    "verbs": ["get"],
                }
            )
        return {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources}

    # ------------------------------------------------------------------ get / list / watch
    def _get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get(resource.name, namespace or "", name)
        if obj is None:
            raise not_found(resource.name, name)
        return obj

    def _selectors(self, request: Request, resource: Resource) -> Callable[[dict[str, Any]], bool]:
        labels = LabelSelector(request.param("labelSelector"))
        fields = FieldSelector(request.param("fieldSelector"), FIELDS[resource.name])
        return lambda obj: labels.matches(obj) and fields.matches(obj)

    def _list(
        self, request: Request, responder: Responder, resource: Resource, namespace: str | None
    ) -> None:
        for unsupported in ("sendInitialEvents", "resourceVersionMatch"):
            if request.param(unsupported):
                raise bad_request(
                    f"{unsupported} is not supported by the Kubernetes emulator (see {EMULATOR_DOC})"
                )
        matches = self._selectors(request, resource)
        if _bool_param(request, "watch"):
            return self._watch(request, responder, resource, namespace, matches)
        revision, items = self.store.list(resource.name, namespace)
        items = [_strip_type_meta(obj) for obj in items if matches(obj)]
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        token = request.param("continue")
        if token:
            try:
                start = json.loads(base64.urlsafe_b64decode(token.encode()))
                items = [
                    o for o in items if [o["metadata"].get("namespace", ""), o["metadata"]["name"]] > start
                ]
            except (ValueError, TypeError):
                raise ApiError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent "
                    "list result. You can start a new list without the continue parameter.",
                ) from None
        limit = _int_param(request, "limit")
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps([last.get("namespace", ""), last["name"]]).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        responder.send_json(
            200, {"kind": f"{resource.kind}List", "apiVersion": "v1", "metadata": meta, "items": items}
        )

    def _watch(
        self,
        request: Request,
        responder: Responder,
        resource: Resource,
        namespace: str | None,
        matches: Callable[[dict[str, Any]], bool],
    ) -> None:
        self.emu._count("watch_requests")
        timeout = _int_param(request, "timeoutSeconds")
        deadline = time.monotonic() + (timeout if timeout is not None else DEFAULT_WATCH_SECONDS)
        asked = request.param("resourceVersion") or ""
        if asked and not asked.isdigit():
            raise bad_request(f'invalid resource version "{asked}"')

        def visible(obj: dict[str, Any] | None) -> bool:
            return (
                obj is not None
                and (namespace is None or obj["metadata"].get("namespace") == namespace)
                and matches(obj)
            )

        stream = responder.stream(200, "application/json")

        def send(type_: str, obj: dict[str, Any]) -> None:
            stream.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")

        if asked in ("", "0"):  # "start at most recent": the current objects as ADDED first
            revision, items = self.store.list(resource.name, namespace)
            for obj in items:
                if visible(obj):
                    send("ADDED", obj)
        else:
            revision = int(asked)
        try:
            while time.monotonic() < deadline and not self.emu.closing:
                try:
                    changes = self.store.changes_after(
                        revision, min(1.0, max(0.0, deadline - time.monotonic()))
                    )
                except Expired as exc:
                    send("ERROR", ApiError(410, "Expired", str(exc)).status())
                    break
                for change in changes:
                    revision = change.resource_version
                    if change.resource != resource.name:
                        continue
                    now, before = visible(change.obj), visible(change.previous)
                    if change.type == "DELETED":
                        type_ = "DELETED" if before else None
                    elif now and before:
                        type_ = "MODIFIED"
                    elif now:
                        type_ = "ADDED"
                    else:  # it stopped matching the selector: gone for this watch
                        type_ = "DELETED" if before else None
                    if type_:
                        send(type_, change.obj)
                if stream.client_gone():
                    return
        finally:
            stream.end()

    # ------------------------------------------------------------------ create
    def _create(self, request: Request, resource: Resource, namespace: str | None) -> dict[str, Any]:
        if request.query.get("dryRun"):
            raise bad_request(f"dryRun is not supported by the Kubernetes emulator (see {EMULATOR_DOC})")
        ns = self.store.get("namespaces", "", namespace) if namespace is not None else None
        if namespace is not None and ns is None:
            raise not_found("namespaces", namespace)
        obj = decode_body(request.body, resource.kind, resource.model)
        if ns is not None and ns["status"].get("phase") == "Terminating":
            name = (obj.get("metadata") or {}).get("name", "")
            raise ApiError(
                403,
                "Forbidden",
                f'{resource.name} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                {"name": name, "kind": resource.name},
            )
        if resource.name == "pods":
            obj = v.prepare_pod(obj, namespace, self.emu.node_name)  # type: ignore[arg-type]
        elif namespace is not None:
            obj = _PREPARE_NAMESPACED[resource.name](obj, namespace)
        else:
            obj = _PREPARE_CLUSTER[resource.name](obj)
        created = self.store.create(resource.name, obj)
        if created is None:
            name = obj["metadata"]["name"]
            raise ApiError(
                409,
                "AlreadyExists",
                f'{resource.name} "{name}" already exists',
                {"name": name, "kind": resource.name},
            )
        if resource.name == "pods":
            self.emu._count("pods_created")
            self.emu.node.admit(created)
        elif resource.name in ("persistentvolumes", "persistentvolumeclaims"):
            self.bind_claims()
        return created

    # ------------------------------------------------------------------ delete
    def _delete(
        self, request: Request, resource: Resource, namespace: str | None, name: str
    ) -> dict[str, Any]:
        raw = {}
        if request.body.strip():  # DeleteOptions is also sent in the meta.k8s.io group version
            raw = decode_body(request.body, "DeleteOptions", "V1DeleteOptions", ("v1", "meta.k8s.io/v1"))
        options = v.delete_options(raw, request.param("gracePeriodSeconds"), request.query.get("dryRun"))
        obj = self._get(resource, namespace, name)
        v.check_preconditions(options, obj)
        if resource.name == "pods":
            return self._delete_pod(obj, options)
        if resource.name == "namespaces":
            return self._delete_namespace(obj)
        if resource.name in ("persistentvolumes", "persistentvolumeclaims"):
            return self._delete_protected(resource, obj)
        self.store.delete(resource.name, namespace or "", name)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "kind": resource.name, "uid": obj["metadata"]["uid"]},
        }

    def _delete_pod(self, pod: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        meta = pod["metadata"]
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", v.DEFAULT_GRACE_SECONDS)
        if pod["status"].get("phase") in TERMINAL_PHASES or not pod["spec"].get("nodeName"):
            grace = 0  # nothing runs: the API server deletes at once
        current = meta.get("deletionGracePeriodSeconds")
        if current is not None and grace >= current:
            return pod  # already being deleted, at least as fast
        if current is None:
            self.emu._count("pods_deleted")
        if grace == 0:
            final = self.store.delete("pods", meta["namespace"], meta["name"]) or pod
            self.emu.node.request_deletion(meta["namespace"], meta["name"], 0, removed_from_api=True)
            self.finalize()
            return final

        def mark(obj: dict[str, Any]) -> None:
            at = datetime.now(UTC) + timedelta(seconds=grace)
            obj["metadata"]["deletionTimestamp"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
            obj["metadata"]["deletionGracePeriodSeconds"] = grace

        updated = self.store.update("pods", meta["namespace"], meta["name"], mark) or pod
        self.emu.node.request_deletion(meta["namespace"], meta["name"], grace, removed_from_api=False)
        return updated

    def _delete_namespace(self, ns: dict[str, Any]) -> dict[str, Any]:
        name = ns["metadata"]["name"]
        if name in BUILTIN_NAMESPACES:
            raise ApiError(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                {"name": name, "kind": "namespaces"},
            )

        def terminating(obj: dict[str, Any]) -> None:
            obj["metadata"].setdefault("deletionTimestamp", v.now_rfc3339())
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
            obj["status"]["phase"] = "Terminating"

        updated = self.store.update("namespaces", "", name, terminating) or ns
        _, pods = self.store.list("pods", name)
        for pod in pods:
            if not pod["metadata"].get("deletionTimestamp"):
                self._delete_pod(pod, {})
        for resource in ("secrets", "configmaps", "events"):
            for obj in self.store.list(resource, name)[1]:
                self.store.delete(resource, name, obj["metadata"]["name"])
        for claim in self.store.list("persistentvolumeclaims", name)[1]:
            self._delete_protected(RESOURCES["persistentvolumeclaims"], claim)
        self.finalize()
        return updated

    def _claim_in_use(self, claim: dict[str, Any]) -> bool:
        """Used by a pod that has not ended (the pvc-protection controller's rule)."""
        meta = claim["metadata"]
        _, pods = self.store.list("pods", meta["namespace"])
        return any(
            pod["status"].get("phase") not in TERMINAL_PHASES
            and any(
                (vol.get("persistentVolumeClaim") or {}).get("claimName") == meta["name"]
                for vol in pod["spec"].get("volumes") or []
            )
            for pod in pods
        )

    def _volume_in_use(self, pv: dict[str, Any]) -> bool:
        ref = pv["spec"].get("claimRef")
        if not ref or pv["status"].get("phase") != "Bound":
            return False
        claim = self.store.get("persistentvolumeclaims", ref["namespace"], ref["name"])
        return claim is not None and claim["metadata"]["uid"] == ref.get("uid")

    def _delete_protected(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """PVCs and PVs carry a protection finalizer: deleted at once unless in use, else marked
        and removed when the last user is gone (see finalize)."""
        meta = obj["metadata"]

        def mark(o: dict[str, Any]) -> None:
            o["metadata"].setdefault("deletionTimestamp", v.now_rfc3339())
            o["metadata"]["deletionGracePeriodSeconds"] = 0

        marked = self.store.update(resource.name, meta.get("namespace", ""), meta["name"], mark) or obj
        self.finalize()
        return marked

    # ------------------------------------------------------------------ controllers
    def finalize(self) -> None:
        """Finish deletions that waited for something: claims and volumes no longer in use,
        namespaces whose pods are gone."""
        with self.store.lock:
            for claim in self.store.list("persistentvolumeclaims")[1]:
                if claim["metadata"].get("deletionTimestamp") and not self._claim_in_use(claim):
                    self._remove_claim(claim)
            for pv in self.store.list("persistentvolumes")[1]:
                if pv["metadata"].get("deletionTimestamp") and not self._volume_in_use(pv):
                    self._remove_volume(pv)
            for ns in self.store.list("namespaces")[1]:
                name = ns["metadata"]["name"]
                if ns["status"].get("phase") == "Terminating" and not any(
                    self.store.list(r, name)[1] for r in ("pods", "persistentvolumeclaims")
                ):
                    for resource in ("secrets", "configmaps", "events"):
                        for obj in self.store.list(resource, name)[1]:
                            self.store.delete(resource, name, obj["metadata"]["name"])
                    self.store.delete("namespaces", "", name)

    def _remove_claim(self, claim: dict[str, Any]) -> None:
        meta = claim["metadata"]
        self.store.delete("persistentvolumeclaims", meta["namespace"], meta["name"])
        pv_name = claim["spec"].get("volumeName")
        pv = self.store.get("persistentvolumes", "", pv_name) if pv_name else None
        if pv is None or (pv["spec"].get("claimRef") or {}).get("uid") != meta["uid"]:
            return
        if pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete":
            self._remove_volume(pv)
        else:
            self.store.update(
                "persistentvolumes", "", pv_name, lambda o: o["status"].__setitem__("phase", "Released")
            )

    def _remove_volume(self, pv: dict[str, Any]) -> None:
        self.store.delete("persistentvolumes", "", pv["metadata"]["name"])
        csi = pv["spec"].get("csi") or {}
        if csi.get("driver") == DYNAMIC_PROVISIONER:
            self.emu.node.delete_volume(csi["volumeHandle"])

    def bind_claims(self) -> None:
        """The persistent volume controller: bind each pending claim to a matching available
        volume, or provision one (a Docker volume) for the default storage class."""
        with self.store.lock:
            for claim in self.store.list("persistentvolumeclaims")[1]:
                if claim["status"].get("phase") == "Pending" and not claim["metadata"].get(
                    "deletionTimestamp"
                ):
                    pv = self._matching_volume(claim)
                    if (
                        pv is None
                        and claim["spec"].get("storageClassName") == v.DEFAULT_STORAGE_CLASS
                        and not claim["spec"].get("volumeName")
                    ):
                        pv = self._provision(claim)
                    if pv is not None:
                        self._bind(claim, pv)
            for pv in self.store.list("persistentvolumes")[1]:
                if pv["status"].get("phase") == "Pending":
                    self.store.update(
                        "persistentvolumes",
                        "",
                        pv["metadata"]["name"],
                        lambda o: o["status"].__setitem__("phase", "Available"),
                    )

    def _matching_volume(self, claim: dict[str, Any]) -> dict[str, Any] | None:
        spec, meta = claim["spec"], claim["metadata"]
        wanted = quantity(spec["resources"]["requests"]["storage"])
        candidates = []
        for pv in self.store.list("persistentvolumes")[1]:
            ref = pv["spec"].get("claimRef")
            if pv["metadata"].get("deletionTimestamp") or pv["status"].get("phase") not in (
                "Pending",
                "Available",
            ):
                continue
            if ref and (ref.get("namespace"), ref.get("name")) != (meta["namespace"], meta["name"]):
                continue
            if spec.get("volumeName") and spec["volumeName"] != pv["metadata"]["name"]:
                continue
            if (pv["spec"].get("storageClassName") or "") != (spec.get("storageClassName") or ""):
                continue
            if not set(spec["accessModes"]) <= set(pv["spec"]["accessModes"]):
                continue
            capacity = quantity(pv["spec"]["capacity"]["storage"])
            if capacity < wanted or not match_label_selector_object(
                spec.get("selector"), pv["metadata"].get("labels") or {}
            ):
                continue
            candidates.append((capacity, pv["metadata"]["name"], pv))
        return min(candidates, key=lambda c: (c[0], c[1]))[2] if candidates else None

    def _provision(self, claim: dict[str, Any]) -> dict[str, Any]:
        handle = self.emu.node.provision_volume(claim)
        pv = v.provisioned_volume(claim, DYNAMIC_PROVISIONER, handle)
        return self.store.create("persistentvolumes", pv) or self.store.get(
            "persistentvolumes", "", pv["metadata"]["name"]
        )  # type: ignore[return-value]

    def _bind(self, claim: dict[str, Any], pv: dict[str, Any]) -> None:
        meta = claim["metadata"]
        pv_name = pv["metadata"]["name"]

        def bind_volume(o: dict[str, Any]) -> None:
            o["spec"]["claimRef"] = {
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": "v1",
                "resourceVersion": meta["resourceVersion"],
            }
            o["status"]["phase"] = "Bound"
            o["metadata"].setdefault("annotations", {})["pv.kubernetes.io/bound-by-controller"] = "yes"

        def bind_claim(o: dict[str, Any]) -> None:
            o["spec"]["volumeName"] = pv_name
            o["status"] = {
                "phase": "Bound",
                "accessModes": pv["spec"]["accessModes"],
                "capacity": dict(pv["spec"]["capacity"]),
            }
            annotations = o["metadata"].setdefault("annotations", {})
            annotations["pv.kubernetes.io/bind-completed"] = "yes"
            annotations["pv.kubernetes.io/bound-by-controller"] = "yes"

        self.store.update("persistentvolumes", "", pv_name, bind_volume)
        self.store.update("persistentvolumeclaims", meta["namespace"], meta["name"], bind_claim)

    # ------------------------------------------------------------------ pod logs
    def _log_options(self, request: Request) -> LogOptions:
        errors = []
        options = LogOptions(
            follow=_bool_param(request, "follow"),
            timestamps=_bool_param(request, "timestamps"),
            tail_lines=_int_param(request, "tailLines"),
            limit_bytes=_int_param(request, "limitBytes"),
            stream=request.param("stream") or "All",
        )
        since_seconds = _int_param(request, "sinceSeconds")
        since_time = request.param("sinceTime")
        if since_seconds is not None and since_time:
            errors.append(
                invalid(
                    "sinceSeconds",
                    since_seconds,
                    "at most one of `sinceTime` or `sinceSeconds` may be specified",
                )
            )
        if since_seconds is not None:
            if since_seconds < 1:
                errors.append(invalid("sinceSeconds", since_seconds, "must be greater than 0"))
            options.since_ns = seconds_ago_ns(since_seconds)
        if since_time:
            try:
                options.since_ns = parse_since_time(since_time)
            except ValueError:
                raise bad_request(f'parsing time "{since_time}" as RFC3339 failed') from None
        if options.tail_lines is not None and options.tail_lines < 0:
            errors.append(invalid("tailLines", options.tail_lines, "must be greater than or equal to 0"))
        if options.limit_bytes is not None and options.limit_bytes < 1:
            errors.append(invalid("limitBytes", options.limit_bytes, "must be greater than 0"))
        if options.stream not in ("All", "Stdout", "Stderr"):
            errors.append(not_supported("stream", options.stream, ["All", "Stderr", "Stdout"]))
        elif options.stream != "All" and options.tail_lines is not None:
            errors.append(forbidden("stream", "may not be specified with tailLines"))
        if errors:
            raise invalid_object("PodLogOptions", "", errors)
        return options

    def _pod_log(self, request: Request, responder: Responder, namespace: str, name: str) -> None:
        self.emu._count("log_requests")
        pod = self._get(RESOURCES["pods"], namespace, name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = request.param("container")
        if not container:
            if len(names) != 1:
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
                )
            container = names[0]
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {name}")
        options = self._log_options(request)
        if _bool_param(request, "previous"):
            raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        statuses = {s["name"]: s for s in pod["status"].get("containerStatuses") or []}
        state = (statuses.get(container) or {}).get("state") or {"waiting": {"reason": "ContainerCreating"}}
        run = self.emu.node.run(namespace, name)
        c = next((c for c in run.containers if c.name == container), None) if run else None
        if "waiting" in state or c is None or c.docker_id is None:
            reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
            detail = {
                "ErrImagePull": "image can't be pulled",
                "ImagePullBackOff": "trying and failing to pull image",
            }.get(reason, reason)
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {detail}')
        if not options.follow:
            chunks: list[bytes] = []
            try:
                self.emu.node.write_log(c, options, chunks.append, lambda: False)
            except docker.errors.NotFound:
                raise not_found("pods", name) from None
            return responder.send(200, b"".join(chunks), "text/plain")
        stream = responder.stream(200, "text/plain")
        try:
            self.emu.node.write_log(c, options, stream.write, stream.client_gone)
        except docker.errors.NotFound:
            pass
        finally:
            stream.end()
