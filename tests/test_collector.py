"""The concurrent request collector and its providers (SPEC §7, Collector), both backends."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path

import pytest


def _load_fake_server_module():
    # Test modules are imported by path (importlib mode), so load the helper the same way.
    path = Path(__file__).with_name("fake_openai_server.py")
    spec = importlib.util.spec_from_file_location("fake_openai_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FakeOpenAIServer = _load_fake_server_module().FakeOpenAIServer


@pytest.fixture
def server():
    fake = FakeOpenAIServer()
    yield fake
    fake.close()


def os_thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def test_results_come_back_in_prompt_order(backend):
    collector = backend.AsyncCollector(backend.MockProvider(latency_ms=5), concurrency=8)
    prompts = [f"task {i} é" for i in range(50)]
    results = collector.generate_batch(prompts)
    assert [r.text for r in results] == [f"mock answer: {p}" for p in prompts]
    assert all(r.ok and r.error == "" and r.attempts == 1 for r in results)
    assert all(r.prompt_tokens == 3 and r.completion_tokens == 5 for r in results)
    assert collector.prompt_tokens == 150 and collector.completion_tokens == 250
    assert collector.generate_batch([]) == []


def test_concurrency_is_bounded_and_used(backend):
    collector = backend.AsyncCollector(backend.MockProvider(latency_ms=50), concurrency=10)
    baseline = os_thread_count()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, os_thread_count())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    results = collector.generate_batch([str(i) for i in range(200)])
    elapsed = time.monotonic() - started
    done.set()
    sampler.join()
    assert len(results) == 200
    assert peak - baseline <= 10 + 2  # the pool (+ sampler, + watchdog), never one per prompt
    assert 0.95 <= elapsed < 1.6  # 20 rounds of 50 ms


def test_mock_outcomes_are_identical_across_backends(native, pure):
    prompts = [f"p{i}" for i in range(40)]

    def outcome(impl):
        collector = impl.AsyncCollector(
            impl.MockProvider(latency_ms=1, fail_rate=0.5, seed=7),
            concurrency=4,
            retries=2,
            backoff_base_s=0.001,
            seed=3,
        )
        results = collector.generate_batch(prompts)
        delays = [collector.backoff_delay(i, k) for i in range(5) for k in (1, 2, 3)]
        return [(r.ok, r.text, r.error, r.attempts) for r in results], delays

    native_results, native_delays = outcome(native)
    pure_results, pure_delays = outcome(pure)
    assert native_results == pure_results
    assert native_delays == pytest.approx(pure_delays, rel=1e-12)
    assert {attempts for *_, attempts in native_results} == {1, 2, 3}


def test_retries_then_gives_up(backend):
    collector = backend.AsyncCollector(
        backend.MockProvider(latency_ms=1, fail_rate=1.0), retries=2, backoff_base_s=0.01
    )
    [result] = collector.generate_batch(["x"])
    assert not result.ok and result.error == "mock failure" and result.attempts == 3
    assert result.text == "" and result.prompt_tokens == 0
    collector = backend.AsyncCollector(backend.MockProvider(latency_ms=1, fail_rate=1.0), retries=0)
    assert collector.generate_batch(["x"])[0].attempts == 1


def test_backoff_is_exponential_jittered_and_capped(backend):
    collector = backend.AsyncCollector(
        backend.MockProvider(), backoff_base_s=0.5, backoff_max_s=3.0, seed=1
    )
    for retry, nominal in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)):
        delays = {collector.backoff_delay(index, retry) for index in range(20)}
        assert all(nominal * 0.5 <= d < nominal for d in delays)
        assert len(delays) > 15  # jittered per prompt
    again = backend.AsyncCollector(backend.MockProvider(), backoff_base_s=0.5, seed=1)
    assert again.backoff_delay(3, 2) == collector.backoff_delay(3, 2)


def test_per_request_timeout(backend):
    collector = backend.AsyncCollector(
        backend.MockProvider(latency_ms=2000), timeout_s=0.1, retries=1, backoff_base_s=0.01
    )
    started = time.monotonic()
    [result] = collector.generate_batch(["slow"])
    assert time.monotonic() - started < 0.6
    assert not result.ok and result.error == "timed out" and result.attempts == 2


def test_stop_cancels_promptly_and_stays_stopped(backend):
    collector = backend.AsyncCollector(backend.MockProvider(latency_ms=5000), concurrency=4)
    threading.Timer(0.2, collector.stop).start()
    started = time.monotonic()
    results = collector.generate_batch([str(i) for i in range(20)])
    assert time.monotonic() - started < 0.6
    assert [r.error for r in results] == ["cancelled"] * 20
    assert collector.stopped
    assert collector.generate_batch(["later"])[0].error == "cancelled"


def test_bad_arguments(backend):
    with pytest.raises(ValueError, match="concurrency must be >= 1"):
        backend.AsyncCollector(backend.MockProvider(), concurrency=0)
    with pytest.raises(ValueError, match="fail_rate"):
        backend.MockProvider(fail_rate=2.0)
    with pytest.raises(ValueError, match="base_url"):
        backend.OpenAIProvider("ftp://x", "m")
    with pytest.raises(TypeError):
        backend.AsyncCollector(backend.MockProvider()).generate_batch([1])


# --- the OpenAI-compatible provider against a local server ----------------------------


def openai_collector(backend, server, **kwargs):
    provider_keys = ("api_key_env", "extra_headers", "max_tokens", "top_p", "token_field",
                     "system_prompt", "extra_body", "keep_alive", "temperature")
    provider_kwargs = {k: kwargs.pop(k) for k in provider_keys if k in kwargs}
    provider = backend.OpenAIProvider(server.base_url, "test-model", **provider_kwargs)
    options = {"concurrency": 4, "retries": 2, "timeout_s": 2.0, "backoff_base_s": 0.02}
    options.update(kwargs)
    return backend.AsyncCollector(provider, **options)


def test_openai_request_shape_and_usage(backend, server, monkeypatch):
    monkeypatch.setenv("HEIDI_TEST_KEY", "sk-test-123")
    collector = openai_collector(
        backend, server, api_key_env="HEIDI_TEST_KEY", extra_headers={"X-Team": "heidi"},
        max_tokens=64,
    )
    results = collector.generate_batch(["write add", "write sub"])
    assert [r.text for r in results] == ["answer: write add", "answer: write sub"]
    assert [(r.prompt_tokens, r.completion_tokens) for r in results] == [(2, 3), (2, 3)]
    assert (collector.prompt_tokens, collector.completion_tokens) == (4, 6)
    [request] = server.requests_for("write add")
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test-123"
    assert request["headers"]["X-Team"] == "heidi"
    assert request["body"]["model"] == "test-model"
    assert request["body"]["messages"] == [{"role": "user", "content": "write add"}]
    assert request["body"]["max_tokens"] == 64


def test_openai_no_key_no_header(backend, server, monkeypatch):
    monkeypatch.delenv("HEIDI_TEST_KEY", raising=False)
    collector = openai_collector(backend, server, api_key_env="HEIDI_TEST_KEY")
    assert collector.generate_batch(["q"])[0].ok
    assert "Authorization" not in server.requests_for("q")[0]["headers"]


def test_openai_429_honours_retry_after(backend, server):
    server.faults["p"] = [("status", 429, {"Retry-After": "0.4"})]
    [result] = openai_collector(backend, server).generate_batch(["p"])
    assert result.ok and result.attempts == 2
    first, second = server.requests_for("p")
    assert second["time"] - first["time"] >= 0.38


def test_openai_retry_after_is_capped(backend, server):
    server.faults["p"] = [("status", 429, {"Retry-After": "120"})]
    started = time.monotonic()
    [result] = openai_collector(backend, server, retry_after_max_s=0.1).generate_batch(["p"])
    assert result.ok and time.monotonic() - started < 1.0


def test_openai_retries_5xx_and_dropped_connections(backend, server):
    server.faults["a"] = [("status", 500, {}), ("status", 503, {})]
    server.faults["b"] = [("drop",)]
    server.faults["c"] = [("status", 502, {})] * 5
    results = openai_collector(backend, server).generate_batch(["a", "b", "c"])
    assert (results[0].ok, results[0].attempts) == (True, 3)
    assert (results[1].ok, results[1].attempts) == (True, 2)
    assert not results[2].ok and results[2].attempts == 3
    assert results[2].error.startswith("http 502: ")


def test_openai_no_retry_on_other_4xx(backend, server):
    server.faults["a"] = [("status", 400, {})]
    server.faults["b"] = [("status", 401, {})]
    results = openai_collector(backend, server).generate_batch(["a", "b"])
    assert [r.error.split(":")[0] for r in results] == ["http 400", "http 401"]
    assert [r.attempts for r in results] == [1, 1]


def test_openai_malformed_json_and_wrong_content_type(backend, server):
    server.faults["a"] = [("malformed",)]
    server.faults["b"] = [("content_type", "text/html")]
    results = openai_collector(backend, server).generate_batch(["a", "b"])
    assert results[0].error == "invalid response: not JSON"
    assert results[1].error == "invalid response: content type 'text/html'"
    assert [r.attempts for r in results] == [1, 1]


def test_openai_chunked_response(backend, server):
    server.faults["a"] = [("chunked",)]
    assert openai_collector(backend, server).generate_batch(["a"])[0].text == "answer: a"


def test_openai_slow_response_times_out_then_retries(backend, server):
    server.faults["a"] = [("slow", 1.5)]
    started = time.monotonic()
    [result] = openai_collector(backend, server, timeout_s=0.3).generate_batch(["a"])
    assert result.ok and result.attempts == 2
    assert time.monotonic() - started < 1.2


def test_openai_connection_refused_is_retried(backend):
    closed = FakeOpenAIServer()
    port = closed.port
    closed.close()
    provider = backend.OpenAIProvider(f"http://127.0.0.1:{port}/v1", "m")
    collector = backend.AsyncCollector(provider, retries=1, backoff_base_s=0.01, timeout_s=1.0)
    [result] = collector.generate_batch(["a"])
    assert not result.ok and result.attempts == 2
    assert result.error.startswith("connection error")


def test_openai_stop_cuts_in_flight_requests(backend, server):
    server.faults.update({str(i): [("slow", 3.0)] for i in range(4)})
    collector = openai_collector(backend, server, timeout_s=10.0)
    threading.Timer(0.3, collector.stop).start()
    started = time.monotonic()
    results = collector.generate_batch([str(i) for i in range(4)])
    assert time.monotonic() - started < 0.9
    assert [r.error for r in results] == ["cancelled"] * 4


@pytest.mark.native
def test_native_batch_leaves_the_gil_free(native):
    def spin(seconds: float) -> int:
        count = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            count += 1
        return count

    solo = spin(0.6)
    collector = native.AsyncCollector(native.MockProvider(latency_ms=10), concurrency=32)
    batch = threading.Thread(target=collector.generate_batch, args=([str(i) for i in range(4000)],))
    batch.start()
    beside = spin(0.6)
    batch.join()
    assert beside >= 0.8 * solo



# --- per-result callback, request shape, connections, proxies, limits ---------------


def test_on_result_reports_each_prompt_once_as_it_finishes(backend):
    collector = backend.AsyncCollector(backend.MockProvider(latency_ms=5), concurrency=4)
    seen = []
    results = collector.generate_batch([f"p{i}" for i in range(12)],
                                       on_result=lambda i, c: seen.append((i, c.text)))
    assert sorted(seen) == [(i, f"mock answer: p{i}") for i in range(12)]
    assert [r.text for r in results] == [text for _, text in sorted(seen)]


def test_on_result_exception_stops_the_batch_and_is_raised(backend):
    collector = backend.AsyncCollector(backend.MockProvider(latency_ms=20), concurrency=2)

    def explode(index, completion):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        collector.generate_batch([str(i) for i in range(50)], on_result=explode)


def test_openai_request_settings(backend, server):
    collector = openai_collector(
        backend, server, token_field="max_completion_tokens", max_tokens=77, top_p=0.9,
        temperature=0.7, system_prompt="be brief",
        extra_body={"seed": 5, "response_format": {"type": "json_object"}},
    )
    assert collector.generate_batch(["q"])[0].ok
    body = server.requests_for("q")[0]["body"]
    assert body == {
        "model": "test-model",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}],
        "max_completion_tokens": 77, "temperature": 0.7, "top_p": 0.9, "seed": 5,
        "response_format": {"type": "json_object"},
    }
    with pytest.raises(ValueError, match="token_field"):
        backend.OpenAIProvider(server.base_url, "m", token_field="max_length")


def test_openai_unsupported_parameter_is_not_retried_and_says_so(backend, server):
    server.reject_fields = {"max_tokens"}
    [result] = openai_collector(backend, server).generate_batch(["q"])
    assert result.attempts == 1 and result.error.startswith("http 400: ")
    assert "Unsupported parameter: 'max_tokens'" in result.error


@pytest.mark.parametrize("keep_alive", [True, False])
def test_openai_connections_are_kept_alive_and_reused(backend, server, keep_alive):
    collector = openai_collector(backend, server, concurrency=2, keep_alive=keep_alive)
    results = collector.generate_batch([f"p{i}" for i in range(20)])
    assert all(r.ok for r in results)
    if keep_alive:
        assert server.connections <= 2
    else:
        assert server.connections == 20
    assert collector.provider.connections_opened == server.connections


def test_openai_kept_alive_connection_closed_by_the_server_is_replaced(backend, server):
    collector = openai_collector(backend, server, concurrency=1)
    assert collector.generate_batch(["a"])[0].ok
    server.faults["b"] = [("status", 200, {"Connection": "close"},
                           {"choices": [{"message": {"content": "closing"}}]})]
    assert collector.generate_batch(["b"])[0].text == "closing"
    assert [r.ok for r in collector.generate_batch(["c", "d"])] == [True, True]
    assert server.connections == 2


def test_openai_goes_through_http_proxy_unless_no_proxy(backend, server, monkeypatch):
    # The fake server doubles as the proxy: it answers absolute-URI requests too.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    provider = backend.OpenAIProvider("http://127.0.0.2:9/v1", "m")
    collector = backend.AsyncCollector(provider, retries=0, timeout_s=2.0)
    assert collector.generate_batch(["via proxy"])[0].ok
    assert server.requests_for("via proxy")[0]["path"] == "http://127.0.0.2:9/v1/chat/completions"
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.2")
    provider = backend.OpenAIProvider("http://127.0.0.2:9/v1", "m")
    collector = backend.AsyncCollector(provider, retries=0, timeout_s=2.0)
    [direct] = collector.generate_batch(["direct"])
    assert not direct.ok and direct.error.startswith("connection error")
    assert server.requests_for("direct") == []


def test_rpm_limit_paces_requests(backend):
    collector = backend.AsyncCollector(backend.MockProvider(latency_ms=0), concurrency=8,
                                       rpm=1200)  # 20 a second, a burst of 20
    started = time.monotonic()
    assert len(collector.generate_batch([str(i) for i in range(40)])) == 40
    assert 0.85 <= time.monotonic() - started < 3.0


def test_tpm_limit_counts_reported_tokens(backend, server):
    # Each answer reports 2 + 3 = 5 tokens; 600 tokens a minute is 10 a second.
    collector = openai_collector(backend, server, concurrency=4, tpm=600)
    started = time.monotonic()
    assert all(r.ok for r in collector.generate_batch([f"w{i} x" for i in range(6)]))
    assert time.monotonic() - started >= 1.5


def test_limits_slow_down_after_429_and_recover(backend, server):
    server.faults["p0"] = [("status", 429, {"Retry-After": "0.2"})]
    collector = openai_collector(backend, server, concurrency=1, rpm=6000)
    assert collector.generate_batch(["p0"])[0].ok
    after_one = collector.limiter_rates["rpm"]
    assert 3000 <= after_one < 6000  # halved by the 429, then one success won some back
    collector.generate_batch([f"q{i}" for i in range(20)])
    assert collector.limiter_rates["rpm"] == pytest.approx(6000)


class ConnectProxy:
    """A minimal HTTPS proxy: answers CONNECT and relays bytes both ways."""

    def __init__(self) -> None:
        import socket

        self.tunnels: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    break
                head += chunk
            target = head.split(b" ")[1].decode()
            self.tunnels.append(target)
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(2)
                except OSError:
                    pass
                s.close()  # both relays close both ends; a second close does nothing

    def close(self) -> None:
        self.listener.close()


def test_https_through_a_connect_proxy_with_kept_alive_connections(backend, tmp_path, monkeypatch):
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    for name in ("https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    secure = FakeOpenAIServer(tls=(cert, key))
    proxy = ConnectProxy()
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        provider = backend.OpenAIProvider(secure.base_url, "m")
        collector = backend.AsyncCollector(provider, concurrency=1, retries=0, timeout_s=5.0)
        results = collector.generate_batch(["one", "two", "three"])
        assert [r.text for r in results] == ["answer: one", "answer: two", "answer: three"]
        assert proxy.tunnels == [f"127.0.0.1:{secure.port}"]  # one tunnel, kept alive
        assert secure.connections == 1
    finally:
        proxy.close()
        secure.close()
