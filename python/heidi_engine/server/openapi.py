"""The route table shared by ``heidid`` and ``heidi serve``.

``openapi.json`` beside this file is both the published OpenAPI 3 document and the
route table both servers route by (paths, methods, which routes need the token, query
parameter limits, request-body fields), so the two servers cannot drift apart. The
request handling itself lives in :mod:`.api`; the C++ daemon embeds the same document
and implements the same rules in ``cpp/daemon/api.cpp``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .._py.jsonenc import dumps

SERVER_DIR = Path(__file__).resolve().parent
OPENAPI_PATH = SERVER_DIR / "openapi.json"
DASHBOARD_DIR = SERVER_DIR.parent / "dashboard"

# Request bodies above this size get 413 (both servers).
MAX_BODY_BYTES = 64 * 1024
# Request targets (path + query) above this length get 414 (both servers).
MAX_TARGET_BYTES = 8192

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


@dataclass(frozen=True)
class IntParam:
    """An integer query parameter: ``minimum <= value <= maximum`` (maximum None = none)."""

    name: str
    default: int
    minimum: int
    maximum: int | None

    def expectation(self) -> str:
        if self.maximum is None:
            return f"an integer >= {self.minimum}"
        return f"an integer {self.minimum}..{self.maximum}"


@dataclass(frozen=True)
class BodyField:
    name: str
    enum: tuple[str, ...]


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    needs_token: bool
    static_file: str | None = None
    params: tuple[IntParam, ...] = ()
    body_fields: tuple[BodyField, ...] | None = None  # None: the route takes no body
    success_status: int = 200


@dataclass
class Route:
    path: str
    operations: dict[str, Operation] = field(default_factory=dict)

    def allowed(self) -> str:
        """The methods of the path; HEAD wherever GET is (both servers answer it)."""
        methods = set(self.operations) | ({"HEAD"} if "GET" in self.operations else set())
        return ", ".join(sorted(methods))


def load_document() -> dict:
    with open(OPENAPI_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def _resolve(doc: dict, node: dict) -> dict:
    ref = node.get("$ref")
    if ref is None:
        return node
    target: object = doc
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]  # type: ignore[index]
    return target  # type: ignore[return-value]


def _operation(doc: dict, path: str, method: str, spec: dict) -> Operation:
    security = spec.get("security", doc.get("security", []))
    params = tuple(
        IntParam(
            name=p["name"],
            default=int(p["schema"].get("default", 0)),
            minimum=int(p["schema"].get("minimum", 0)),
            maximum=p["schema"].get("maximum"),
        )
        for p in spec.get("parameters", [])
    )
    body_fields = None
    if "requestBody" in spec:
        schema = _resolve(doc, spec["requestBody"]["content"]["application/json"]["schema"])
        body_fields = tuple(
            BodyField(name, tuple(prop.get("enum", ())))
            for name, prop in schema.get("properties", {}).items()
        )
    success = min(int(code) for code in spec["responses"] if code.isdigit())
    return Operation(
        operation_id=spec["operationId"],
        method=method.upper(),
        path=path,
        needs_token=bool(security),
        static_file=spec.get("x-heidi-static"),
        params=params,
        body_fields=body_fields,
        success_status=success,
    )


@lru_cache(maxsize=1)
def route_table() -> dict[str, Route]:
    """Path -> Route, read from the OpenAPI document."""
    doc = load_document()
    table: dict[str, Route] = {}
    for path, methods in doc["paths"].items():
        route = table.setdefault(path, Route(path))
        for method, spec in methods.items():
            route.operations[method.upper()] = _operation(doc, path, method, spec)
    return table


def document_bytes() -> bytes:
    """The document as served: compact, ASCII-only JSON (the same bytes from both servers)."""
    return dumps(load_document()).encode()


__all__ = [
    "DASHBOARD_DIR",
    "MAX_BODY_BYTES",
    "MAX_TARGET_BYTES",
    "OPENAPI_PATH",
    "BodyField",
    "IntParam",
    "Operation",
    "Route",
    "document_bytes",
    "load_document",
    "route_table",
]
