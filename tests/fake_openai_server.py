"""A local HTTP server speaking the OpenAI chat-completions protocol, with faults.

``FakeOpenAIServer()`` listens on 127.0.0.1 port 0 in a background thread. Each
request's user message is looked up in ``faults``: a list of faults applied to that
prompt's successive requests (then it answers normally). A normal answer is
``answer: <prompt>`` with usage counted in words.

Faults: ``("status", code, headers)``, ``("slow", seconds)`` (then a normal answer),
``("drop",)`` (close without answering), ``("malformed",)`` (200, broken JSON),
``("content_type", value)`` (200, right JSON, wrong type), ``("chunked",)`` (a normal
answer sent with chunked transfer encoding).

Server-wide: ``latency_s`` (every answer waits this long), ``reject_fields`` (a request
carrying one of these body fields gets OpenAI's 400 "Unsupported parameter"),
``on_request(n, prompt)`` (called with the request count as each request arrives, before
it is answered; a true result drops the request unanswered), ``answered`` (200 answers fully sent) and ``connections`` (TCP
connections accepted), also served as JSON at ``GET /stats``. ``FakeOpenAIServer(tls=(cert, key))`` serves https. Run as a
program (``python fake_openai_server.py LATENCY_S [CERT KEY]``) it prints its port and
serves until killed.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAIServer:
    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.faults: dict[str, list[tuple]] = {}
        self.requests: list[dict] = []  # {"prompt", "headers", "body", "time"}
        self.latency_s = 0.0
        self.reject_fields: set[str] = set()
        self.on_request = None
        self.answered = 0
        self.connections = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as real servers do: no delayed small writes

            def log_message(self, format, *args):  # noqa: A002 - keep test output clean
                pass

            def setup(self):
                if isinstance(self.request, ssl.SSLSocket):
                    self.request.do_handshake()  # here, not in the accepting thread
                super().setup()
                with owner._lock:
                    owner.connections += 1

            def do_GET(self):
                if self.path != "/stats":
                    self._send(404, b'{"error":"not found"}')
                    return
                with owner._lock:
                    stats = {"requests": len(owner.requests), "answered": owner.answered,
                             "connections": owner.connections}
                self._send(200, json.dumps(stats).encode())

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if self.path.rstrip("/").split("/")[-1] != "completions":
                    self._send(404, b'{"error":"not found"}')
                    return
                document = json.loads(raw)
                prompt = document["messages"][-1]["content"]
                with owner._lock:
                    owner.requests.append(
                        {
                            "prompt": prompt,
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": document,
                            "time": time.monotonic(),
                        }
                    )
                    queue = owner.faults.get(prompt)
                    fault = queue.pop(0) if queue else None
                    count = len(owner.requests)
                if owner.on_request is not None and owner.on_request(count, prompt):
                    fault = ("drop",)
                rejected = sorted(owner.reject_fields & set(document))
                if rejected and fault is None:
                    message = (f"Unsupported parameter: '{rejected[0]}' is not supported with "
                               "this model.")
                    fault = ("status", 400, {}, {"error": {"message": message,
                                                           "type": "invalid_request_error",
                                                           "param": rejected[0],
                                                           "code": "unsupported_parameter"}})
                try:
                    self._handle(prompt, document, fault)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (timeout or stop)

            def _send(self, status, body, content_type="application/json", headers=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _answer(self, prompt, document):
                text = "answer: " + prompt
                return json.dumps(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "model": document.get("model"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": len(prompt.split()),
                            "completion_tokens": len(text.split()),
                            "total_tokens": len(prompt.split()) + len(text.split()),
                        },
                    }
                ).encode()

            def _handle(self, prompt, document, fault):
                kind = fault[0] if fault else None
                if kind == "status":
                    code, headers = fault[1], fault[2]
                    body = fault[3] if len(fault) > 3 else {"error": f"fault {code}"}
                    self._send(code, json.dumps(body).encode(), headers=headers)
                elif kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                elif kind == "malformed":
                    self._send(200, b'{"choices": [{"message": ')
                elif kind == "content_type":
                    self._send(200, self._answer(prompt, document), content_type=fault[1])
                elif kind == "chunked":
                    body = self._answer(prompt, document)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for start in range(0, len(body), 7):
                        piece = body[start : start + 7]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    if kind == "slow":
                        time.sleep(fault[1])
                    elif owner.latency_s:
                        time.sleep(owner.latency_s)
                    self._send(200, self._answer(prompt, document))
                    self.wfile.flush()
                    with owner._lock:
                        owner.answered += 1

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # many clients connecting at once are not turned away

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
                    super().handle_error(request, client_address)  # a client gone is no news

        self._server = Server(("127.0.0.1", 0), Handler)
        if tls is not None:  # (certificate file, key file): serve https
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def requests_for(self, prompt: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["prompt"] == prompt]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


if __name__ == "__main__":
    server = FakeOpenAIServer(tls=(sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else None)
    server.latency_s = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    print(server.port, flush=True)
    threading.Event().wait()
