"""Concurrent teacher requests (pure-Python twin of ``heidi::AsyncCollector``).

A bounded pool of worker threads (never one per prompt) takes prompts in order and
calls the provider; retryable failures (429, 5xx, timeouts, dropped connections) are
retried with exponential backoff and seeded jitter, or after ``Retry-After`` (capped).
``stop()`` is sticky: it cuts sleeps and in-flight requests short and every unfinished
prompt ends with the error ``cancelled``. ``generate_batch(prompts, on_result=f)`` calls
``f(index, completion)`` as each prompt finishes, so a caller can store answers durably
as they arrive. Optional requests-per-minute / tokens-per-minute limits (token buckets)
slow down after a 429 and recover as requests succeed.
"""

from __future__ import annotations

import json
import math
import os
import re
import select
import socket
import ssl
import base64
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_MASK64 = (1 << 64) - 1
_WORD = re.compile(rb"[^ \t\n\v\f\r]+")
_ERROR_BODY_CHARS = 200
_RECV_SLICE_S = 0.05  # how often a blocked read looks at the deadline and stop flag
_MAX_RESPONSE_BYTES = 64 << 20


# --- helpers shared bit-for-bit with the C++ backend ---------------------------------


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & _MASK64
    return h


def mix64(x: int) -> int:
    """splitmix64's finaliser."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def unit_interval(a: int, b: int, c: int) -> float:
    """A number in [0, 1) determined by three integers."""
    h = mix64(mix64(mix64(a & _MASK64) ^ (b & _MASK64)) ^ (c & _MASK64))
    return (h >> 11) / float(1 << 53)


def count_words(text: str) -> int:
    return len(_WORD.findall(text.encode("utf-8")))


# --- provider interface -------------------------------------------------------------


@dataclass
class ProviderRequest:
    prompt: str
    index: int
    attempt: int
    timeout_s: float


@dataclass
class ProviderReply:
    ok: bool
    text: str = ""
    error: str = ""
    retryable: bool = False
    retry_after_s: float = -1.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class RequestContext:
    """An attempt's deadline (``time.monotonic()`` seconds) and the collector's stop flag."""

    def __init__(self, deadline: float, stop_event: threading.Event) -> None:
        self.deadline = deadline
        self._stop_event = stop_event

    @property
    def stopped(self) -> bool:
        return self._stop_event.is_set()

    def sleep_until(self, until: float) -> bool:
        """Sleep until ``until``; False when stop() cut it short."""
        return not self._stop_event.wait(max(0.0, until - time.monotonic()))


class MockProvider:
    """Answers ``mock answer: <prompt>`` after ``latency_ms``; fails ("mock failure",
    retryable) with probability ``fail_rate``, decided by (seed, prompt, attempt) alone."""

    def __init__(self, latency_ms: float = 100, fail_rate: float = 0.0, seed: int = 0) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail_rate must be in [0, 1]")
        if seed < 0:
            raise ValueError("seed must be >= 0")
        self.latency_ms = float(latency_ms)
        self.fail_rate = float(fail_rate)
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"MockProvider(latency_ms={self.latency_ms}, fail_rate={self.fail_rate}, seed={self.seed})"

    def complete(self, request: ProviderRequest, context: RequestContext) -> ProviderReply:
        ready_at = time.monotonic() + self.latency_ms / 1000.0
        if ready_at > context.deadline:
            if not context.sleep_until(context.deadline):
                return ProviderReply(False, error="cancelled")
            return ProviderReply(False, error="timed out", retryable=True)
        if not context.sleep_until(ready_at):
            return ProviderReply(False, error="cancelled")
        prompt_bytes = request.prompt.encode("utf-8")
        if unit_interval(self.seed, fnv1a64(prompt_bytes), request.attempt) < self.fail_rate:
            return ProviderReply(False, error="mock failure", retryable=True)
        text = "mock answer: " + request.prompt
        return ProviderReply(
            True,
            text=text,
            prompt_tokens=count_words(request.prompt),
            completion_tokens=count_words(text),
        )


class _HttpFailure(Exception):
    def __init__(self, reply: ProviderReply) -> None:
        super().__init__(reply.error)
        self.reply = reply


def _parse_retry_after(value: str | None) -> float:
    """Seconds from a ``Retry-After`` header; -1 for none or the HTTP-date form."""
    if value is None:
        return -1.0
    try:
        seconds = float(value.strip())
    except ValueError:
        return -1.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else -1.0


def proxy_for(url: str) -> str:
    """The proxy URL the environment names for ``url`` (``HTTPS_PROXY``/``HTTP_PROXY``,
    lower or upper case), or "" when there is none or ``NO_PROXY`` covers the host."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme, "")
    if not proxy or urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return ""
    return proxy if "://" in proxy else "http://" + proxy


class OpenAIProvider:
    """OpenAI-compatible chat completions: ``POST {base_url}/chat/completions``.

    Works with OpenAI, vLLM, llama.cpp server and Ollama (``base_url`` usually ends in
    ``/v1``). The key is read from ``api_key_env`` at each request; no Authorization
    header is sent when it is unset or empty. Connections are kept alive and reused
    (one pool per provider); ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` are honoured.
    ``token_field`` names the token limit (``max_tokens`` or ``max_completion_tokens``);
    ``top_p`` is sent when below 1; ``system_prompt`` (when not empty) goes first as a
    system message; ``extra_body`` is merged into every request body last.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_tokens: int = 512,
        temperature: float = 0.0,
        extra_headers: Mapping[str, str] | None = None,
        top_p: float = 1.0,
        token_field: str = "max_tokens",
        system_prompt: str = "",
        extra_body: Mapping[str, object] | None = None,
        keep_alive: bool = True,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if not model:
            raise ValueError("model must not be empty")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if token_field not in ("max_tokens", "max_completion_tokens"):
            raise ValueError("token_field must be max_tokens or max_completion_tokens")
        if not 0 < top_p <= 1:
            raise ValueError("top_p must be > 0 and <= 1")
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.token_field = token_field
        self.system_prompt = system_prompt
        self.extra_body = dict(extra_body or {})
        self.extra_headers = dict(extra_headers or {})
        self.keep_alive = bool(keep_alive)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._host_header = parts.netloc.rsplit("@", 1)[-1]
        self._path = parts.path.rstrip("/") + "/chat/completions"
        self._target = self._path
        self._proxy: tuple[str, int] | None = None
        self._proxy_auth = ""
        proxy = proxy_for(base_url)
        if proxy:
            proxy_parts = urlsplit(proxy)
            if proxy_parts.scheme != "http" or not proxy_parts.hostname:
                raise ValueError(f"proxy for {base_url} must be an http:// URL, got {proxy!r}")
            self._proxy = (proxy_parts.hostname, proxy_parts.port or 80)
            if proxy_parts.username is not None:
                user_pass = f"{unquote(proxy_parts.username)}:{unquote(proxy_parts.password or '')}"
                self._proxy_auth = "Basic " + base64.b64encode(user_pass.encode()).decode()
            if not self._https:  # a plain-HTTP proxy takes the absolute URL
                self._target = f"http://{self._host_header}{self._path}"
        self._idle: list[socket.socket] = []
        self._pool_lock = threading.Lock()
        self.connections_opened = 0

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self.base_url!r}, model={self.model!r})"

    def request_body(self, prompt: str) -> bytes:
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        body: dict[str, object] = {
            "model": self.model,
            "messages": messages,
            self.token_field: self.max_tokens,
            "temperature": self.temperature,
        }
        if self.top_p < 1:
            body["top_p"] = self.top_p
        body.update(self.extra_body)
        return json.dumps(body).encode("utf-8")

    def complete(self, request: ProviderRequest, context: RequestContext) -> ProviderReply:
        try:
            status, headers, body = self._post(self.request_body(request.prompt), context)
        except _HttpFailure as failure:
            return failure.reply
        return parse_chat_response(status, headers, body)

    def close(self) -> None:
        """Close the idle kept-alive connections."""
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()

    def __del__(self) -> None:
        if hasattr(self, "_idle"):  # not when __init__ refused its arguments
            self.close()

    # A small HTTP/1.1 client: every blocking step looks at the deadline and the stop
    # flag, which http.client cannot do.
    def _post(self, body: bytes, context: RequestContext) -> tuple[int, dict[str, str], bytes]:
        def remaining() -> float:
            if context.stopped:
                raise _HttpFailure(ProviderReply(False, error="cancelled"))
            left = context.deadline - time.monotonic()
            if left <= 0:
                raise _HttpFailure(ProviderReply(False, error="timed out", retryable=True))
            return left

        headers = {
            "Host": self._host_header,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Content-Length": str(len(body)),
            "Connection": "keep-alive" if self.keep_alive else "close",
        }
        if self._proxy_auth and not self._https:
            headers["Proxy-Authorization"] = self._proxy_auth
        api_key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        headers.update(self.extra_headers)
        head = f"POST {self._target} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        payload = head.encode("latin-1") + b"\r\n" + body
        sock = self._checkout(context, remaining)
        keep = False
        try:
            _send_all(sock, payload, remaining)
            reader = _Reader(sock, remaining)
            status, response_headers, response_body = reader.read_response()
            keep = self.keep_alive and reader.reusable(response_headers)
            return status, response_headers, response_body
        except _HttpFailure:
            raise
        except (OSError, ValueError) as exc:
            raise _HttpFailure(self._transport_failure(exc, context)) from exc
        finally:
            if keep:
                with self._pool_lock:
                    self._idle.append(sock)
            else:
                sock.close()

    def _checkout(self, context: RequestContext, remaining) -> socket.socket:
        """An idle kept-alive connection the server has not closed, else a new one. A
        request is never re-sent on its own: a connection lost after sending is a failed
        attempt (the server may have answered, and billed, it)."""
        while True:
            with self._pool_lock:
                if not self._idle:
                    break
                sock = self._idle.pop()
            if not select.select([sock], [], [], 0)[0]:
                return sock  # nothing to read: still open and idle
            sock.close()  # closed by the server (EOF pending) or out of step
        address = self._proxy or (self._host, self._port)
        try:
            sock = socket.create_connection(address, timeout=min(remaining(), 10))
        except _HttpFailure:
            raise
        except OSError as exc:
            raise _HttpFailure(self._transport_failure(exc, context)) from exc
        self.connections_opened += 1
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(_RECV_SLICE_S)
            if self._proxy and self._https:
                self._tunnel(sock, remaining)
            if self._https:
                sock.settimeout(min(remaining(), 10))
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self._host)
                sock.settimeout(_RECV_SLICE_S)
        except _HttpFailure:
            sock.close()
            raise
        except (OSError, ValueError) as exc:
            sock.close()
            raise _HttpFailure(self._transport_failure(exc, context)) from exc
        return sock

    def _tunnel(self, sock: socket.socket, remaining) -> None:
        """CONNECT through the proxy to the target (for https)."""
        authority = f"{self._host}:{self._port}"
        head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        if self._proxy_auth:
            head += f"Proxy-Authorization: {self._proxy_auth}\r\n"
        _send_all(sock, (head + "\r\n").encode("latin-1"), remaining)
        reader = _Reader(sock, remaining)
        status = reader.read_head()[0]
        if status != 200:
            raise ConnectionError(f"proxy CONNECT answered {status}")

    @staticmethod
    def _transport_failure(exc: Exception, context: RequestContext) -> ProviderReply:
        if context.stopped:
            return ProviderReply(False, error="cancelled")
        if time.monotonic() >= context.deadline:
            return ProviderReply(False, error="timed out", retryable=True)
        return ProviderReply(False, error=f"connection error: {exc}", retryable=True)


def _send_all(sock: socket.socket, payload: bytes, remaining) -> None:
    view = memoryview(payload)
    while view:
        remaining()
        try:
            sent = sock.send(view)
        except socket.timeout:
            continue
        view = view[sent:]


class _Reader:
    """Reads one HTTP/1.1 response (Content-Length, chunked, or until close)."""

    def __init__(self, sock: socket.socket, remaining) -> None:
        self._sock = sock
        self._remaining = remaining
        self._buffer = bytearray()
        self._eof = False
        self._framed = False

    def _fill(self) -> None:
        while True:
            self._remaining()
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                self._eof = True
            self._buffer += chunk
            if len(self._buffer) > _MAX_RESPONSE_BYTES:
                raise ValueError("response too large")
            return

    def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                return line
            if self._eof:
                raise ConnectionError("connection closed before the response was complete")
            self._fill()

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if self._eof:
                raise ConnectionError("connection closed before the response was complete")
            self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def reusable(self, headers: Mapping[str, str]) -> bool:
        """Whether the connection can carry another request after this response."""
        return (
            not self._eof
            and not self._buffer
            and self._framed
            and "close" not in headers.get("connection", "").lower()
        )

    def read_head(self) -> tuple[int, dict[str, str]]:
        status_line = self._line().decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"bad status line {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = self._line()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def read_response(self) -> tuple[int, dict[str, str], bytes]:
        status, headers = self.read_head()
        self._framed = True
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self._line().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._line():
                        pass  # trailers
                    break
                body += self._exactly(size)
                self._exactly(2)
            return status, headers, bytes(body)
        if "content-length" in headers:
            return status, headers, self._exactly(int(headers["content-length"]))
        self._framed = False
        while not self._eof:
            self._fill()
        return status, headers, bytes(self._buffer)


def parse_chat_response(status: int, headers: Mapping[str, str], body: bytes) -> ProviderReply:
    """Turn an HTTP answer into a reply (same rules as the C++ provider)."""
    if status != 200:
        snippet = body[:_ERROR_BODY_CHARS].decode("utf-8", "replace")
        return ProviderReply(
            False,
            error=f"http {status}: {snippet}",
            retryable=status == 429 or status >= 500,
            retry_after_s=_parse_retry_after(headers.get("retry-after")),
        )
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        return ProviderReply(False, error=f"invalid response: content type {content_type!r}")
    try:
        document = json.loads(body)
    except ValueError:
        return ProviderReply(False, error="invalid response: not JSON")
    try:
        text = document["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        text = None
    if not isinstance(text, str):
        return ProviderReply(False, error="invalid response: no choices[0].message.content string")
    usage = document.get("usage") if isinstance(document, dict) else None
    usage = usage if isinstance(usage, dict) else {}

    def token_count(key: str) -> int:
        value = usage.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return ProviderReply(
        True,
        text=text,
        prompt_tokens=token_count("prompt_tokens"),
        completion_tokens=token_count("completion_tokens"),
    )


# --- rate limits --------------------------------------------------------------------


class _Bucket:
    """A token bucket that may go into debt: ``take`` waits until the level is positive."""

    def __init__(self, per_minute: float) -> None:
        self.limit = per_minute / 60.0  # configured rate per second
        self.rate = self.limit  # current rate: halved by a 429, recovering on success
        self.capacity = max(1.0, self.limit)  # one second's worth
        self.level = self.capacity
        self.updated = time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_s(self) -> float:
        return 0.0 if self.level > 0 else -self.level / self.rate + 1e-3


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits shared by a collector's workers.

    A request waits for both buckets; its tokens are estimated from the prompt (4 bytes
    a token) and corrected by the usage the server reports. A 429 halves both rates (down
    to a tenth of the limit) and holds every request until its ``Retry-After``; each
    success wins back 5% of the limit.
    """

    def __init__(self, rpm: float = 0.0, tpm: float = 0.0) -> None:
        self._buckets = {"rpm": _Bucket(rpm) if rpm > 0 else None,
                         "tpm": _Bucket(tpm) if tpm > 0 else None}
        self._lock = threading.Lock()
        self._hold_until = 0.0

    @property
    def active(self) -> bool:
        return any(self._buckets.values())

    @staticmethod
    def estimate_tokens(prompt: str) -> int:
        return max(1, len(prompt.encode("utf-8")) // 4)

    def acquire(self, tokens: int, stop_event: threading.Event) -> bool:
        """Wait for room for one request of ``tokens``; False when stopped meanwhile."""
        while True:
            with self._lock:
                now = time.monotonic()
                wait = max(0.0, self._hold_until - now)
                for bucket in self._buckets.values():
                    if bucket is not None:
                        bucket.refill(now)
                        wait = max(wait, bucket.wait_s())
                if wait <= 0:
                    for name, bucket in self._buckets.items():
                        if bucket is not None:
                            bucket.level -= 1 if name == "rpm" else tokens
                    return True
            if stop_event.wait(min(wait, 1.0)):
                return False

    def settle(self, estimated: int, reply: ProviderReply) -> None:
        """Correct the token estimate and adapt the rates to the reply."""
        with self._lock:
            tpm = self._buckets["tpm"]
            if tpm is not None and reply.ok:
                tpm.level -= reply.prompt_tokens + reply.completion_tokens - estimated
            throttled = reply.error.startswith("http 429")
            if throttled and reply.retry_after_s > 0:
                self._hold_until = max(self._hold_until, time.monotonic() + reply.retry_after_s)
            for bucket in self._buckets.values():
                if bucket is None:
                    continue
                if throttled:
                    bucket.rate = max(bucket.limit / 10, bucket.rate / 2)
                elif reply.ok:
                    bucket.rate = min(bucket.limit, bucket.rate + bucket.limit / 20)

    def rates(self) -> dict[str, float]:
        """Current rates per minute (for tests and reports)."""
        with self._lock:
            return {n: b.rate * 60 for n, b in self._buckets.items() if b is not None}


# --- collector ----------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    ok: bool
    text: str
    error: str
    attempts: int
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int


class AsyncCollector:
    """Runs ``provider`` over prompts on ``concurrency`` worker threads (SPEC §7)."""

    def __init__(
        self,
        provider: MockProvider | OpenAIProvider,
        *,
        concurrency: int = 16,
        retries: int = 3,
        timeout_s: float = 60.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 60.0,
        seed: int = 0,
        rpm: float = 0.0,
        tpm: float = 0.0,
    ) -> None:
        if not isinstance(provider, (MockProvider, OpenAIProvider)):
            raise TypeError("provider must be a MockProvider or an OpenAIProvider")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if backoff_base_s < 0 or backoff_max_s < 0 or retry_after_max_s < 0:
            raise ValueError("backoff delays must be >= 0")
        if seed < 0:
            raise ValueError("seed must be >= 0")
        if not (rpm >= 0 and tpm >= 0):
            raise ValueError("rpm and tpm must be >= 0")
        self.provider = provider
        self.concurrency = int(concurrency)
        self.retries = int(retries)
        self.timeout_s = float(timeout_s)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.retry_after_max_s = float(retry_after_max_s)
        self.seed = int(seed)
        self.limiter = RateLimiter(float(rpm), float(tpm))
        self._stop_event = threading.Event()
        self._usage_lock = threading.Lock()
        self.prompt_tokens = 0
        self.completion_tokens = 0

    @property
    def limiter_rates(self) -> dict[str, float]:
        return self.limiter.rates()

    def stop(self) -> None:
        """Cancel the running batch promptly, and every later one."""
        self._stop_event.set()

    @property
    def stopped(self) -> bool:
        return self._stop_event.is_set()

    def backoff_delay(self, index: int, retry: int) -> float:
        """Delay before retry ``retry`` (1-based) of prompt ``index`` without Retry-After."""
        base = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (retry - 1))
        return base * (0.5 + 0.5 * unit_interval(self.seed, index, retry))

    def generate_batch(
        self,
        prompts: Sequence[str],
        on_result: Callable[[int, Completion], None] | None = None,
    ) -> list[Completion]:
        """One Completion per prompt, in order; ``on_result(index, completion)`` is called
        (one call at a time) as each prompt finishes. An exception it raises stops the
        batch and is raised here once the workers are done."""
        prompts = list(prompts)
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise TypeError("prompts must be strings")
        results: list[Completion | None] = [None] * len(prompts)
        next_index = 0
        index_lock = threading.Lock()
        callback_lock = threading.Lock()
        callback_error: list[BaseException] = []

        def worker() -> None:
            nonlocal next_index
            while True:
                with index_lock:
                    index = next_index
                    next_index += 1
                if index >= len(prompts):
                    return
                completion = self._collect_one(index, prompts[index])
                results[index] = completion
                if on_result is not None:
                    with callback_lock:
                        if callback_error:
                            continue
                        try:
                            on_result(index, completion)
                        except BaseException as exc:  # noqa: BLE001 - re-raised below
                            callback_error.append(exc)
                            self._stop_event.set()

        workers = [
            threading.Thread(target=worker, name=f"heidi-collector-{n}", daemon=True)
            for n in range(min(self.concurrency, len(prompts)))
        ]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        if callback_error:
            raise callback_error[0]
        completions = [c for c in results if c is not None]
        with self._usage_lock:
            self.prompt_tokens += sum(c.prompt_tokens for c in completions)
            self.completion_tokens += sum(c.completion_tokens for c in completions)
        return completions

    def _collect_one(self, index: int, prompt: str) -> Completion:
        started = time.monotonic()
        attempts = 0
        reply = ProviderReply(False, error="cancelled")
        while not self._stop_event.is_set():
            attempts += 1
            request = ProviderRequest(prompt, index, attempts, self.timeout_s)
            estimated = RateLimiter.estimate_tokens(prompt)
            if self.limiter.active and not self.limiter.acquire(estimated, self._stop_event):
                break
            context = RequestContext(time.monotonic() + self.timeout_s, self._stop_event)
            try:
                reply = self.provider.complete(request, context)
            except Exception as exc:  # a provider bug ends this prompt, not the batch
                reply = ProviderReply(False, error=f"provider error: {exc}")
            if self.limiter.active:
                self.limiter.settle(estimated, reply)
            if reply.ok or not reply.retryable or attempts > self.retries:
                break
            if reply.retry_after_s >= 0:
                delay = min(reply.retry_after_s, self.retry_after_max_s)
            else:
                delay = self.backoff_delay(index, attempts)
            if self._stop_event.wait(delay):
                break
        if self._stop_event.is_set() and not reply.ok:
            reply = ProviderReply(False, error="cancelled")
        return Completion(
            ok=reply.ok,
            text=reply.text if reply.ok else "",
            error="" if reply.ok else reply.error,
            attempts=attempts,
            latency_ms=(time.monotonic() - started) * 1000.0,
            prompt_tokens=reply.prompt_tokens if reply.ok else 0,
            completion_tokens=reply.completion_tokens if reply.ok else 0,
        )


__all__ = ["AsyncCollector", "Completion", "MockProvider", "OpenAIProvider", "RateLimiter"]
