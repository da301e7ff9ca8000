"""The control API on a threading HTTP server (the twin of ``cpp/daemon/http_server.cpp``).

``port=0`` picks a free port and :meth:`HttpServer.stop` may be called from any thread.
The framing and connection rules are heidid's: a thread per connection, at most
``MAX_CONNECTIONS`` open, deadlines for idle, slow and unread connections, bodies capped
before they are read.
"""

from __future__ import annotations

import io
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import openapi
from .api import Api, Response, encode_json, error

# Headers every answer carries.
COMMON_HEADERS = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"))
# Connection limits, the same as heidid's (cpp/daemon/http_server.hpp).
MAX_CONNECTIONS = 256  # open at once; more get 503 and are closed
IDLE_TIMEOUT_S = 5.0  # between requests on a keep-alive connection
REQUEST_TIMEOUT_S = 10.0  # to send a whole request (line, headers, body)
READ_TIMEOUT_S = 5.0  # of silence within a request
WRITE_TIMEOUT_S = 5.0  # for the client to take the answer
LISTEN_BACKLOG = 1024
MAX_FRAMING_LINE = 1024  # chunk-size and trailer lines
MAX_TRAILER_LINES = 64


# Methods that reach the router (others get 400, as from heidid's HTTP library).
ROUTABLE_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Refused(Exception):
    """A request refused before the Api sees it; the connection closes after the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.response = error(status, message)


def _too_large() -> _Refused:
    return _Refused(413, f"request body too large (limit {openapi.MAX_BODY_BYTES} bytes)")


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
        if length > openapi.MAX_BODY_BYTES:
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
            if size > openapi.MAX_BODY_BYTES - len(body):
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


__all__ = [
    "IDLE_TIMEOUT_S",
    "LISTEN_BACKLOG",
    "MAX_CONNECTIONS",
    "REQUEST_TIMEOUT_S",
    "HttpServer",
]
