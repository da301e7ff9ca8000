"""``heidi serve``: the control API of SPEC §9 in Python, the twin of ``heidid``.

Layers, each usable on its own:

- :class:`Api` turns one request (method, target, headers, body) into a
  :class:`Response`. Routes, token rules, query limits and body fields come from the
  shared OpenAPI document (:mod:`heidi_engine.api`), which ``heidid`` routes by too.
- :class:`EngineRunner` owns the thread that ticks the Core. HTTP threads call the
  Core's thread-safe methods (which never wait for a running stage) and wake it.
- :class:`HttpServer` puts the Api behind a threading ``http.server``; ``port=0`` picks
  a free port and ``stop()`` may be called from any thread.
- :func:`serve` is the ``heidi serve`` command: token file, discovery file, signals.
"""

from __future__ import annotations

import hmac
import io
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from . import api
from ._py.jsonenc import MAX_NESTING_DEPTH, nesting_exceeds
from .api import metrics
from .api.journal_index import JournalIndex
from .api.reports import EvalReports
from .errors import ConfigError, TransitionError

JSON_TYPE = "application/json"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
# Headers every answer carries; the page may only load its own script and style.
COMMON_HEADERS = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"))
PAGE_HEADERS = (("Content-Security-Policy",
                 "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                 "img-src 'self' data:; base-uri 'none'; form-action 'none'"),
                ("Referrer-Policy", "no-referrer"))
UNAUTHORIZED = "missing or invalid bearer token"
DISCOVERY_NAME = "daemon.json"
TOKEN_NAME = "daemon.token"
INT64_MAX = (1 << 63) - 1
# Connection limits, the same as heidid's (cpp/daemon/http_server.hpp).
MAX_CONNECTIONS = 256  # open at once; more get 503 and are closed
IDLE_TIMEOUT_S = 5.0  # between requests on a keep-alive connection
REQUEST_TIMEOUT_S = 10.0  # to send a whole request (line, headers, body)
READ_TIMEOUT_S = 5.0  # of silence within a request
WRITE_TIMEOUT_S = 5.0  # for the client to take the answer
LISTEN_BACKLOG = 1024
MAX_FRAMING_LINE = 1024  # chunk-size and trailer lines
MAX_TRAILER_LINES = 64


def encode_json(obj: object) -> bytes:
    """Compact, ASCII-only JSON: the encoding both servers answer with."""
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode()


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
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


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


def parse_int_params(operation: api.Operation, query: str) -> dict[str, int]:
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


def parse_body(operation: api.Operation, body: bytes) -> dict[str, str]:
    """An empty body or a JSON object whose fields the route's schema allows."""
    if not body.strip():
        return {}
    if nesting_exceeds(body):
        raise BadRequest(f"body nests too deeply (limit {MAX_NESTING_DEPTH})")
    try:
        obj = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
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


def _reject_constant(name: str) -> float:
    raise ValueError(f"not JSON: {name}")


def token_matches(header: str | None, token: str) -> bool:
    """Constant-time check of ``Authorization: Bearer <token>``."""
    if header is None or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].encode(), token.encode())


class EngineRunner:
    """The thread that ticks the Core whenever it is in a running state."""

    IDLE_POLL_S = 0.5

    def __init__(self, core: Any) -> None:
        self.core = core
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        self._in_tick = False
        self._thread = threading.Thread(target=self._loop, name="heidi-engine", daemon=True)
        self.failure: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        return
                    self._in_tick = True
                # Cleared before the tick, so a wake-up during the tick is not lost.
                self._wake.clear()
                try:
                    state = self.core.tick()
                finally:
                    with self._lock:
                        self._in_tick = False
                if state in ("IDLE", "ERROR", "PAUSED"):
                    self._wake.wait(self.IDLE_POLL_S)
        except BaseException as exc:  # keep serving status; the failure is reported at exit
            self.failure = exc
            print(f"heidi serve: engine thread failed: {exc}", file=sys.stderr, flush=True)

    def shutdown(self) -> None:
        """Cancel a running stage (SPEC stop semantics), join the thread, close the Core."""
        with self._lock:
            self._stopping = True
            stage_running = self._in_tick
        if stage_running:
            try:
                self.core.stop()
            except TransitionError:
                pass  # the stage ended meanwhile
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self.core.shutdown()


class Api:
    """One request in, one :class:`Response` out; never raises for bad input."""

    def __init__(self, core: Any, out_dir: str | os.PathLike, token: str, default_mode: str,
                 runner: EngineRunner | None = None) -> None:
        self.core = core
        self.token = token
        self.default_mode = default_mode
        self.runner = runner
        self.routes = api.route_table()
        self.journal = JournalIndex(Path(out_dir) / "journal" / "events.jsonl")
        self.reports = EvalReports(out_dir)
        self._document = api.document_bytes()
        self._static: dict[str, bytes] = {}

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        if len(target.encode()) > api.MAX_TARGET_BYTES:
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
        if len(body) > api.MAX_BODY_BYTES:
            return error(413, f"request body too large (limit {api.MAX_BODY_BYTES} bytes)")
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

    def _dispatch(self, op: api.Operation, params: dict[str, int], fields: dict[str, str]) -> Response:
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
            data = (api.DASHBOARD_DIR / name).read_bytes()
            self._static[name] = data
        content_type = STATIC_TYPES.get(Path(name).suffix, "application/octet-stream")
        return Response(200, data, content_type, list(PAGE_HEADERS))


# Methods that reach the router (others get 400, as from heidid's HTTP library).
ROUTABLE_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Refused(Exception):
    """A request refused before the Api sees it; the connection closes after the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.response = error(status, message)


def _too_large() -> _Refused:
    return _Refused(413, f"request body too large (limit {api.MAX_BODY_BYTES} bytes)")


class _ConnectionReader(io.RawIOBase):
    """The socket's bytes; each read waits at most READ_TIMEOUT_S and never past ``deadline``.

    A client that trickles its request (slow-loris) loses the connection when the
    deadline of its request passes, however often it sends a byte.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.deadline = time.monotonic()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self.sock.settimeout(min(READ_TIMEOUT_S, left))
        return self.sock.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes; Nagle plus delayed ACKs would add ~40 ms.
    disable_nagle_algorithm = True
    server_version = "heidi"
    sys_version = ""
    # Set on the subclass made per server.
    api_obj: Api
    log_requests: bool = False

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the buffered socket file; reads go through the deadline reader
        self._reader = _ConnectionReader(self.connection)
        self.rfile = io.BufferedReader(self._reader, 16 * 1024)

    def _serve(self) -> None:
        if self.command not in ROUTABLE_METHODS:
            self.send_error(400)
            return
        try:
            body = self._read_body()
        except _Refused as exc:
            self.close_connection = True
            self._send(exc.response)
            return
        except TimeoutError:
            self.close_connection = True
            self._send(error(408, "request timed out"))
            return
        headers = {"Authorization": self.headers.get("Authorization")}
        try:
            response = self.api_obj.handle(self.command, self.path, headers, body)
        except Exception as exc:  # a bug must not take the server down
            print(f"heidi serve: internal error on {self.command} {self.path}: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            response = error(500, "internal error")
        self._send(response)

    def _read_body(self) -> bytes:
        """The body (Content-Length or chunked), never more than MAX_BODY_BYTES: a larger
        one is refused before it is read. The same framing rules as heidid."""
        length_text = self.headers.get("Content-Length")
        encoding = self.headers.get("Transfer-Encoding")
        if length_text is not None and encoding is not None:
            raise _Refused(400, "both Content-Length and Transfer-Encoding given")
        if encoding is not None:
            if encoding.strip(" \t").lower() != "chunked":
                raise _Refused(400, "unsupported Transfer-Encoding (valid: chunked)")
            return self._read_chunked()
        if length_text is None:
            return b""
        length_text = length_text.strip(" \t")
        if not (length_text.isascii() and length_text.isdigit() and len(length_text) <= 19):
            raise _Refused(400, "invalid Content-Length")
        length = int(length_text)
        if length > api.MAX_BODY_BYTES:
            raise _too_large()
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise TimeoutError("the client closed before sending its body")
        return body

    def _framing_line(self, max_length: int = MAX_FRAMING_LINE) -> bytes:
        line = self.rfile.readline(max_length + 2)
        if not line.endswith(b"\n") or len(line.rstrip(b"\r\n")) > max_length:
            raise _Refused(400, "invalid chunked body")
        return line.removesuffix(b"\n").removesuffix(b"\r")

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_text = self._framing_line().split(b";", 1)[0].strip(b" \t")
            if not (0 < len(size_text) <= 16 and all(c in b"0123456789abcdefABCDEF" for c in size_text)):
                raise _Refused(400, "invalid chunk size")
            size = int(size_text, 16)
            if size == 0:
                break
            if size > api.MAX_BODY_BYTES - len(body):
                raise _too_large()
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise _Refused(400, "invalid chunked body")
            body += chunk
            if self._framing_line(0):
                raise _Refused(400, "invalid chunked body")
        for _ in range(MAX_TRAILER_LINES):
            if not self._framing_line():
                return bytes(body)
        raise _Refused(400, "invalid chunked body")

    def _send(self, response: Response) -> None:
        self.connection.settimeout(WRITE_TIMEOUT_S)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in (*COMMON_HEADERS, *response.headers):
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (bad request line, too long, unknown method) as JSON too.
        text = {414: "request target too long", 431: "request headers too large",
                501: "method not implemented"}.get(code, "bad request")
        self.close_connection = True
        self._send(error(code if code in (414, 431, 501) else 400, text))

    def handle_one_request(self) -> None:
        # Any method name reaches the router (unknown ones get 405), like heidid.
        try:
            self._reader.deadline = time.monotonic() + IDLE_TIMEOUT_S
            if not self.rfile.peek(1):  # the client closed
                self.close_connection = True
                return
            self._reader.deadline = time.monotonic() + REQUEST_TIMEOUT_S
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._serve()
            self.wfile.flush()
        except OSError:  # timed out, reset by the client, or the server is closing
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines only (never headers, so never the token), and only when asked.
        if self.log_requests:
            sys.stderr.write(f"heidi serve: {self.address_string()} {format % args}\n")


class _ThreadingServer(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS open; more get 503 and are closed."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open = 0
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            refuse = self._open >= MAX_CONNECTIONS
            if not refuse:
                self._open += 1
        if refuse:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._open_lock:
            self._open -= 1

    def _refuse(self, request: socket.socket) -> None:
        body = encode_json({"error": f"too many connections (limit {MAX_CONNECTIONS})"})
        head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n")
        try:
            request.setblocking(False)  # never stall the accept loop on this client
            request.send(head.encode() + body)
            # Drop what already arrived: closing with unread data would reset the
            # connection and could discard the answer before the client reads it.
            while request.recv(65536):
                pass
        except OSError:
            pass
        self.shutdown_request(request)


class HttpServer:
    """The Api on a threading HTTP server; ``port=0`` picks a free port."""

    def __init__(self, api_obj: Api, host: str = "127.0.0.1", port: int = 0,
                 log_requests: bool = False) -> None:
        handler = type("Handler", (_Handler,), {"api_obj": api_obj, "log_requests": log_requests})
        server_cls: type[_ThreadingServer] = _ThreadingServer
        if ":" in host:
            server_cls = type("Server6", (_ThreadingServer,), {"address_family": socket.AF_INET6})
        self._httpd = server_cls((host, port), handler)
        self.host = host
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="heidi-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and close the socket; safe from any thread, idempotent."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def is_loopback(host: str) -> bool:
    """The rule heidid warns by: localhost, ::1 and 127.0.0.0/8."""
    return host in ("localhost", "::1") or host.startswith("127.")


def write_token_file(path: Path) -> str:
    """A fresh random token in a file only the owner can read (0600)."""
    token = secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return token


def read_token_file(path: str | os.PathLike) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def discovery_path(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / "state" / DISCOVERY_NAME


def write_discovery(out_dir: Path, *, server: str, url: str, host: str, port: int,
                    token_file: Path, backend: str) -> None:
    from .io import write_json_atomic

    write_json_atomic(discovery_path(out_dir), {
        "server": server, "pid": os.getpid(), "host": host, "port": port, "url": url,
        "token_file": str(token_file), "backend": backend,
    })


def remove_discovery(out_dir: Path) -> None:
    """Remove the discovery file if it is still this process's."""
    path = discovery_path(out_dir)
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


@dataclass
class ServeOptions:
    out_dir: Path
    host: str = "127.0.0.1"
    port: int = 7779
    token_file: Path | None = None
    mode: str | None = None
    start: bool = True
    config_file: str | None = None
    log_requests: bool = False


def serve(options: ServeOptions) -> int:
    """Run the Python server in the foreground until SIGINT/SIGTERM; returns the exit code."""
    from . import backend as backend_mod

    engine = backend_mod.load()
    overrides: dict[str, Any] = {"out_dir": str(options.out_dir)}
    if options.mode is not None:
        overrides["pipeline_mode"] = options.mode
    if options.config_file is not None:
        overrides["config_file"] = options.config_file
    config = engine.Config.from_env(**overrides)
    out_dir = Path(config.out_dir)
    core = engine.Core(config)
    runner = EngineRunner(core)
    token_file = options.token_file or out_dir / "state" / TOKEN_NAME
    token = write_token_file(token_file)
    api_obj = Api(core, out_dir, token, config.pipeline_mode, runner)
    httpd = HttpServer(api_obj, options.host, options.port, options.log_requests)

    stop_requested = threading.Event()
    interrupts = 0

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal interrupts
        if signum == signal.SIGINT:
            interrupts += 1
            if interrupts > 1:
                os._exit(130)  # a second Ctrl-C: leave at once
        stop_requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if options.start:
            _auto_start(core, config.pipeline_mode)
        runner.start()
        httpd.start()
        write_discovery(out_dir, server="heidi serve", url=httpd.base_url, host=options.host,
                        port=httpd.port, token_file=token_file, backend=engine.name)
        if not is_loopback(options.host):
            print(f"heidi serve: warning: listening on {options.host}, which is not a loopback "
                  "address; anyone who can reach it and has the token can steer the run",
                  file=sys.stderr, flush=True)
        print(f"heidi serve listening on {httpd.base_url}#token={token}", flush=True)
        while not stop_requested.wait(0.5):
            pass
        print("heidi serve: shutting down", file=sys.stderr, flush=True)
    finally:
        remove_discovery(out_dir)
        runner.shutdown()
        httpd.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if runner.failure is not None else 0


def _auto_start(core: Any, mode: str) -> None:
    """Start or resume the run; a finished or waiting run is left as it is."""
    try:
        core.start(mode)
    except TransitionError as exc:
        print(f"heidi serve: not starting the run: {exc}", file=sys.stderr, flush=True)


__all__ = [
    "Api",
    "EngineRunner",
    "HttpServer",
    "Response",
    "ServeOptions",
    "discovery_path",
    "read_token_file",
    "serve",
    "write_token_file",
]
