"""One request in, one answer out: the control API of SPEC §9 (the twin of
``cpp/daemon/api.cpp``).

Routes, token rules, query limits and body fields come from the shared OpenAPI document
(:mod:`.openapi`), which ``heidid`` routes by too. :class:`Api` never raises for bad input
and never waits for a running stage: it calls the Core's thread-safe methods and wakes the
:class:`~.engine_runner.EngineRunner`.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from .._py.jsonenc import MAX_NESTING_DEPTH, dumps, nesting_exceeds, reject_constant
from ..errors import ConfigError, TransitionError
from ..run_layout import JOURNAL_FILE
from . import metrics, openapi
from .engine_runner import EngineRunner
from .eval_reports import EvalReports
from .journal_index import JournalIndex

JSON_TYPE = "application/json"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
# The dashboard page may only load its own script and style.
PAGE_HEADERS = (("Content-Security-Policy",
                 "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                 "img-src 'self' data:; base-uri 'none'; form-action 'none'"),
                ("Referrer-Policy", "no-referrer"))
UNAUTHORIZED = "missing or invalid bearer token"
INT64_MAX = (1 << 63) - 1


def encode_json(obj: object) -> bytes:
    """Compact, ASCII-only JSON: the encoding both servers answer with."""
    return dumps(obj).encode()


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)


def error(status: int, message: str, *headers: tuple[str, str]) -> Response:
    return Response(status, encode_json({"error": message}), headers=list(headers))


def describe_value(value: object) -> str:
    """How a rejected body value is quoted in an error (the same rule as heidid)."""
    if isinstance(value, str):
        return f"'{value}'"
    return dumps(value)


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_query(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        name, value = unquote(name), unquote(value)
        if name in params:
            raise BadRequest(f"duplicate query parameter '{name}'")
        params[name] = value
    return params


def parse_int_params(operation: openapi.Operation, query: str) -> dict[str, int]:
    raw = parse_query(query)
    known = {p.name: p for p in operation.params}
    for name in raw:
        if name not in known:
            valid = ", ".join(known) if known else "none"
            raise BadRequest(f"unknown query parameter '{name}' (valid: {valid})")
    values = {}
    for param in operation.params:
        text = raw.get(param.name)
        if text is None:
            values[param.name] = param.default
            continue
        ok = text.isascii() and text.isdigit()
        # Beyond int64 is named as out of range, not as "not an integer" (the digits are
        # counted first: int() of thousands of digits is refused by Python itself).
        too_large = ok and (len(text.lstrip("0")) > 19 or int(text) > INT64_MAX)
        number = int(text) if ok and not too_large else -1
        if too_large:
            top = INT64_MAX if param.maximum is None else param.maximum
            raise BadRequest(f"invalid value for {param.name}: '{text}' "
                             f"(expected an integer {param.minimum}..{top})")
        if not ok or number < param.minimum or (param.maximum is not None and number > param.maximum):
            raise BadRequest(f"invalid value for {param.name}: '{text}' "
                             f"(expected {param.expectation()})")
        values[param.name] = number
    return values


def parse_body(operation: openapi.Operation, body: bytes) -> dict[str, str]:
    """An empty body or a JSON object whose fields the route's schema allows."""
    if not body.strip():
        return {}
    if nesting_exceeds(body):
        raise BadRequest(f"body nests too deeply (limit {MAX_NESTING_DEPTH})")
    try:
        obj = json.loads(body.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise BadRequest("body must be a JSON object")
    fields = {f.name: f for f in operation.body_fields or ()}
    values = {}
    for name, value in obj.items():
        spec = fields.get(name)
        if spec is None:
            valid = ", ".join(fields) if fields else "none"
            raise BadRequest(f"unknown field '{name}' (valid: {valid})")
        if not isinstance(value, str) or (spec.enum and value not in spec.enum):
            raise BadRequest(f"invalid value for {name}: {describe_value(value)} "
                             f"(valid: {', '.join(spec.enum)})")
        values[name] = value
    return values


def token_matches(header: str | None, token: str) -> bool:
    """Constant-time check of ``Authorization: Bearer <token>``."""
    if header is None or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].encode(), token.encode())


class Api:
    """One request in, one :class:`Response` out; never raises for bad input."""

    def __init__(self, core: Any, out_dir: str | os.PathLike, token: str, default_mode: str,
                 runner: EngineRunner | None = None) -> None:
        self.core = core
        self.token = token
        self.default_mode = default_mode
        self.runner = runner
        self.routes = openapi.route_table()
        self.journal = JournalIndex(Path(out_dir) / JOURNAL_FILE)
        self.reports = EvalReports(out_dir)
        self._document = openapi.document_bytes()
        self._static: dict[str, bytes] = {}

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        if len(target.encode()) > openapi.MAX_TARGET_BYTES:
            return error(414, "request target too long")
        path, _, query = target.partition("?")
        route = self.routes.get(path)
        if route is None:
            return error(404, f"not found: {path}")
        # HEAD is GET without the body (the HTTP layer drops it).
        operation = route.operations.get("GET" if method == "HEAD" else method)
        if operation is None:
            return error(405, f"method {method} not allowed on {path} (allowed: {route.allowed()})",
                         ("Allow", route.allowed()))
        if len(body) > openapi.MAX_BODY_BYTES:
            return error(413, f"request body too large (limit {openapi.MAX_BODY_BYTES} bytes)")
        if operation.needs_token and not token_matches(headers.get("Authorization"), self.token):
            return error(401, UNAUTHORIZED, ("WWW-Authenticate", "Bearer"))
        try:
            params = parse_int_params(operation, query)
            if operation.body_fields is None and body.strip():
                raise BadRequest("this route takes no body")
            fields = parse_body(operation, body) if operation.body_fields is not None else {}
        except BadRequest as exc:
            return error(400, exc.message)
        return self._dispatch(operation, params, fields)

    def _dispatch(self, op: openapi.Operation, params: dict[str, int],
                  fields: dict[str, str]) -> Response:
        name = op.operation_id
        if op.static_file is not None:
            return self._static_file(op.static_file)
        if name == "healthz":
            return Response(200, b'{"ok":true}')
        if name == "openapi":
            return Response(200, self._document)
        if name == "status":
            return Response(200, self.core.get_status_json().encode())
        if name == "events":
            lines, next_since = self.journal.page(params["since"], params["limit"])
            body = b'{"events":[' + b",".join(lines) + b'],"next_since":%d}' % next_since
            return Response(200, body)
        if name == "eval_reports":
            return Response(200, encode_json({"rounds": self.reports.rounds()}))
        if name == "metrics":
            text = metrics.render(self.core.get_status_json(), self.journal.refresh(),
                                  self.reports.rounds())
            return Response(200, text.encode(), metrics.CONTENT_TYPE)
        return self._action(name, fields)

    def _action(self, name: str, fields: dict[str, str]) -> Response:
        try:
            if name == "start":
                self.core.start(fields.get("mode", self.default_mode))
            elif name == "train_now":
                if not self.core.train_now():
                    return error(409, str(self.core.last_refusal))
            elif name == "pause":
                self.core.pause()
            elif name == "resume":
                self.core.resume()
            elif name == "stop":
                self.core.stop()
            else:
                return error(500, f"no handler for operation {name}")
        except TransitionError as exc:
            return error(409, str(exc))
        except ConfigError as exc:
            return error(400, str(exc))
        if self.runner is not None:
            self.runner.wake()
        return Response(202, encode_json({"accepted": True, "action": name}))

    def _static_file(self, name: str) -> Response:
        data = self._static.get(name)
        if data is None:
            data = (openapi.DASHBOARD_DIR / name).read_bytes()
            self._static[name] = data
        content_type = STATIC_TYPES.get(Path(name).suffix, "application/octet-stream")
        return Response(200, data, content_type, list(PAGE_HEADERS))


__all__ = ["Api", "BadRequest", "Response", "encode_json", "error", "token_matches"]
