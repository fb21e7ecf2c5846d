"""Request bodies decoded strictly with the ``kubernetes`` client's own models, and the API
server's error shapes for what is wrong in them.

Every JSON key must be a field of the client's model at that place (``attribute_map``), every
value must have the model's type (``openapi_types``), and the model's constructor must accept
it (its client-side validation rejects missing required fields).  An unknown field fails like
an API server with ``fieldValidation=Strict``; so does a duplicated one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from kubernetes import client as k8s
from kubernetes.client import models as k8s_models

_CLIENT_CONFIG = k8s.Configuration()
_CLIENT_CONFIG.client_side_validation = True
_API_CLIENT = k8s.ApiClient(configuration=_CLIENT_CONFIG)

_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\[([^,]+), (.+)\]$")
_REQUIRED = re.compile(r"^Invalid value for `(\w+)`, must not be `None`$")

# Fields whose values are resource.Quantity: JSON numbers are accepted there (the client's type is str).
_QUANTITY_FIELDS = {
    ("V1ResourceRequirements", "limits"),
    ("V1ResourceRequirements", "requests"),
    ("V1VolumeResourceRequirements", "limits"),
    ("V1VolumeResourceRequirements", "requests"),
    ("V1PersistentVolumeSpec", "capacity"),
    ("V1EmptyDirVolumeSource", "size_limit"),
}

_GO_TYPES = {"str": "string", "int": "int32", "bool": "bool", "float": "float64", "datetime": "Time"}


class ApiError(Exception):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource})


# ---------------------------------------------------------------------------------- field errors
_FIELD_ERROR_TYPES = {  # kind -> (StatusCause reason, message label)
    "Required": ("FieldValueRequired", "Required value"),
    "Invalid": ("FieldValueInvalid", "Invalid value"),
    "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
    "Forbidden": ("FieldValueForbidden", "Forbidden"),
    "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
    "NotFound": ("FieldValueNotFound", "Not found"),
    "TooLong": ("FieldValueTooLong", "Too long"),
}


@dataclass(frozen=True)
class FieldError:
    """One validation error, formatted like k8s.io/apimachinery's field.Error."""

    kind: str  # Required | Invalid | NotSupported | Forbidden | Duplicate | NotFound | TooLong
    field: str
    value: Any = None
    detail: str = ""

    def body(self) -> str:
        label = _FIELD_ERROR_TYPES[self.kind][1]
        if self.kind in ("Required", "Forbidden", "TooLong"):
            return f"{label}: {self.detail}" if self.detail else label
        text = f"{label}: {json.dumps(self.value) if isinstance(self.value, str) else self.value}"
        return f"{text}: {self.detail}" if self.detail else text

    def cause(self) -> dict[str, str]:
        return {"reason": _FIELD_ERROR_TYPES[self.kind][0], "message": self.body(), "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("Required", path, detail=detail)


def invalid(path: str, value: Any, detail: str = "") -> FieldError:
    return FieldError("Invalid", path, value, detail)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("Forbidden", path, detail=detail)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    return FieldError(
        "NotSupported", path, value, "supported values: " + ", ".join(json.dumps(s) for s in supported)
    )


EMULATOR_DOC = "tests/k8s_emulator/README.md"


def unsupported_by_emulator(path: str, what: str) -> FieldError:
    """A valid Kubernetes feature that the emulator does not model: rejected, never ignored."""
    return forbidden(path, f"not supported by the Kubernetes emulator ({what}; see {EMULATOR_DOC})")


def invalid_object(kind: str, name: str, errors: list[FieldError]) -> ApiError:
    """HTTP 422, as the API server answers a create whose object fails validation."""
    text = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {text}',
        {"name": name, "kind": kind, "causes": [e.cause() for e in errors]},
    )


# ---------------------------------------------------------------------------------- decoding
class _JsonObject(dict):
    """A JSON object that remembers keys given more than once (json.loads keeps the last)."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _go_type(type_name: str) -> str:
    if m := _LIST.match(type_name):
        return "[]" + _go_type(m.group(1))
    if m := _DICT.match(type_name):
        return f"map[string]{_go_type(m.group(2))}"
    return _GO_TYPES.get(type_name, type_name.removeprefix("V1").removeprefix("Core"))


class _Decoder:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.strict_errors: list[str] = []
        self.required: list[FieldError] = []

    def type_error(self, value: Any, type_name: str, path: str) -> ApiError:
        return bad_request(
            f'{self.kind} in version "v1" cannot be handled as a {self.kind}: json: cannot unmarshal '
            f"{_json_type(value)} into Go struct field {path} of type {_go_type(type_name)}"
        )

    def decode(self, value: Any, type_name: str, path: str, quantity: bool = False) -> Any:
        if value is None:
            return None
        if m := _LIST.match(type_name):
            if not isinstance(value, list):
                raise self.type_error(value, type_name, path)
            return [self.decode(v, m.group(1), f"{path}[{i}]", quantity) for i, v in enumerate(value)]
        if m := _DICT.match(type_name):
            if not isinstance(value, dict):
                raise self.type_error(value, type_name, path)
            return {str(k): self.decode(v, m.group(2), f"{path}[{k}]", quantity) for k, v in value.items()}
        if type_name == "object":
            return value
        if type_name == "str":
            if quantity and isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            if not isinstance(value, str):
                raise self.type_error(value, type_name, path)
            return value
        if type_name == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise self.type_error(value, type_name, path)
            return value
        if type_name == "float":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise self.type_error(value, type_name, path)
            return value
        if type_name == "bool":
            if not isinstance(value, bool):
                raise self.type_error(value, type_name, path)
            return value
        if type_name in ("datetime", "date"):
            if not isinstance(value, str):
                raise self.type_error(value, type_name, path)
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise bad_request(
                    f'{self.kind} in version "v1" cannot be handled as a {self.kind}: parsing time '
                    f'"{value}" as RFC3339 failed (field {path})'
                ) from None
            return value
        return self.decode_model(value, type_name, path)

    def decode_model(self, value: Any, type_name: str, path: str) -> Any:
        cls = getattr(k8s_models, type_name)
        if not isinstance(value, dict):
            raise self.type_error(value, type_name, path)
        for key in getattr(value, "duplicates", []):
            self.strict_errors.append(f'duplicate field "{_join(path, key)}"')
        attributes = {json_key: attr for attr, json_key in cls.attribute_map.items()}
        kwargs: dict[str, Any] = {}
        for key, item in value.items():
            attr = attributes.get(key)
            if attr is None:
                self.strict_errors.append(f'unknown field "{_join(path, key)}"')
                continue
            quantity = (type_name, attr) in _QUANTITY_FIELDS
            kwargs[attr] = self.decode(item, cls.openapi_types[attr], _join(path, key), quantity)
        try:
            return cls(local_vars_configuration=_CLIENT_CONFIG, **kwargs)
        except ValueError as exc:
            m = _REQUIRED.match(str(exc))
            if not m:
                self.required.append(invalid(path, None, str(exc)))
                return None
            self.required.append(required(_join(path, cls.attribute_map[m.group(1)])))
            return None


def decode_body(raw: bytes, kind: str, model: str, api_versions: tuple[str, ...] = ("v1",)) -> dict[str, Any]:
    """The request body as JSON (camelCase keys, nulls dropped), after a strict decode into the
    client's ``model``; raises ApiError 400 (not JSON, wrong type, unknown or duplicated field) or
    422 (a required field missing)."""
    try:
        value = json.loads(raw or b"null", object_pairs_hook=_object_pairs)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None
    if not isinstance(value, dict):
        raise bad_request(
            f"couldn't get version/kind; json parse error: json: cannot unmarshal {_json_type(value)} "
            "into Go value of type struct"
        )
    if value.get("apiVersion") not in (None, *api_versions):
        raise bad_request(
            f"the API version in the data ({value['apiVersion']}) does not match the expected API version "
            f"({api_versions[0]})"
        )
    if value.get("kind") not in (None, kind):
        raise bad_request(f"the kind in the data ({value['kind']}) does not match the expected kind ({kind})")
    decoder = _Decoder(kind)
    decoded = decoder.decode_model(value, model, "")
    if decoder.strict_errors:
        raise bad_request(
            f'{kind} in version "v1" cannot be handled as a {kind}: strict decoding error: '
            + ", ".join(decoder.strict_errors)
        )
    if decoder.required:
        name = (value.get("metadata") or {}).get("name") or ""
        raise invalid_object(kind, name, decoder.required)
    return _API_CLIENT.sanitize_for_serialization(decoded)


def decode_base64(value: str, kind: str, path: str) -> bytes:
    """A []byte field's base64 text (Secret.data, ConfigMap.binaryData), as Go decodes it."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request(
            f'{kind} in version "v1" cannot be handled as a {kind}: illegal base64 data in {path}: {exc}'
        ) from None


# ---------------------------------------------------------------------------------- names and labels
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def dns_label_errors(path: str, value: str) -> list[FieldError]:
    if len(value) > 63:
        return [invalid(path, value, "must be no more than 63 characters")]
    if not _DNS1123_LABEL.match(value):
        return [
            invalid(
                path,
                value,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
                "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            )
        ]
    return []


def dns_subdomain_errors(path: str, value: str) -> list[FieldError]:
    if len(value) > 253:
        return [invalid(path, value, "must be no more than 253 characters")]
    if not _DNS1123_SUBDOMAIN.match(value):
        return [
            invalid(
                path,
                value,
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            )
        ]
    return []


def qualified_name_errors(path: str, key: str) -> list[FieldError]:
    """A label or annotation key: an optional DNS subdomain prefix and '/', then a name."""
    prefix, _, name = key.rpartition("/")
    errors = dns_subdomain_errors(path, prefix) if "/" in key else []
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        errors.append(
            invalid(
                path,
                key,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') and be at most 63 characters",
            )
        )
    return errors


def label_value_errors(path: str, value: str) -> list[FieldError]:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return [
            invalid(
                path,
                value,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
                "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value', "
                " or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?') "
                "and be at most 63 characters",
            )
        ]
    return []


def config_key_errors(path: str, key: str) -> list[FieldError]:
    """A key of Secret/ConfigMap data."""
    if len(key) > 253 or not _CONFIG_KEY.match(key) or key in (".", ".."):
        return [
            invalid(
                path,
                key,
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
                "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            )
        ]
    return []


# ---------------------------------------------------------------------------------- quantities
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_SUFFIX = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}


def parse_quantity(text: str) -> Decimal | None:
    """A resource.Quantity ("128Mi", "0.5", "500m", "1e9") as a number, None if it is not one."""
    m = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if not m:
        return None
    suffix = m.group(2) or ""
    try:
        number = Decimal(m.group(1))
        if suffix[:1] in ("e", "E"):
            return number * (Decimal(10) ** int(suffix[1:]))
        return number * _SUFFIX[suffix]
    except (InvalidOperation, ValueError):
        return None


def quantity(text: str) -> Decimal:
    """The number of a Quantity already validated (quantity_errors)."""
    number = parse_quantity(text)
    if number is None:
        raise ValueError(f"not a quantity: {text!r}")
    return number


def quantity_errors(path: str, value: Any) -> list[FieldError]:
    number = parse_quantity(value)
    if number is None:
        return [
            invalid(
                path,
                value,
                "must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            )
        ]
    if number < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []
