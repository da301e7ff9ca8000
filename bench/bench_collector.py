"""AsyncCollector throughput with the mock provider: the native and Python backends
against a plain asyncio baseline (a semaphore and ``asyncio.sleep``), same run.

1,000 prompts at 100 ms with concurrency 100 (ideal 1.00 s), and 10,000 prompts at
10 ms with concurrency 64 (ideal 1.5625 s).

Then against a real local server answering after 100 ms (tests/fake_openai_server.py in
its own process), over http and over https (a self-signed certificate made with the
openssl command, trusted through SSL_CERT_FILE): 1,000 requests at concurrency 64 with a
new connection per request against kept-alive connections, per backend; and the resume
cost of the response cache over http:
the teacher is killed (-9) once half the answers are stored, then run again; the figure
is the number of requests sent again for answers already stored (target 0).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

if __name__ == "__main__":  # the --child process of the resume figure
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from heidi_engine import backend

CASES = (
    # prompts, latency_ms, concurrency, target (seconds or fraction over ideal)
    (1000, 100, 100, "<= 1.10 s", lambda elapsed, ideal: elapsed <= 1.10),
    (10000, 10, 64, "within 10% of ideal", lambda elapsed, ideal: elapsed <= 1.10 * ideal),
)


def asyncio_baseline(n: int, latency_ms: float, concurrency: int) -> float:
    async def main() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(prompt: str) -> str:
            async with gate:
                await asyncio.sleep(latency_ms / 1000.0)
                return "mock answer: " + prompt

        await asyncio.gather(*(one(str(i)) for i in range(n)))

    started = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - started


def collector_seconds(impl, n: int, latency_ms: float, concurrency: int) -> float:
    collector = impl.AsyncCollector(impl.MockProvider(latency_ms=latency_ms), concurrency=concurrency)
    prompts = [str(i) for i in range(n)]
    started = time.perf_counter()
    results = collector.generate_batch(prompts)
    elapsed = time.perf_counter() - started
    if len(results) != n or not all(r.ok for r in results):
        raise RuntimeError("mock batch did not complete")
    return elapsed


def run(report) -> None:
    run_mock(report)
    run_http(report)


def run_mock(report) -> None:
    impls = {"python": backend.load("python")}
    if backend.native_import_error() is None:
        impls["native"] = backend.load("native")
    for n, latency_ms, concurrency, target, meets in CASES:
        ideal = math.ceil(n / concurrency) * latency_ms / 1000.0
        label = f"collector {n} mock prompts @{latency_ms} ms, concurrency {concurrency}"
        baseline = asyncio_baseline(n, latency_ms, concurrency)
        report.add(f"{label}, asyncio baseline", baseline, "s", baseline_name="ideal",
                   baseline_value=ideal, higher_is_better=False)
        for name, impl in impls.items():
            elapsed = collector_seconds(impl, n, latency_ms, concurrency)
            report.add(
                f"{label}, {name} backend",
                elapsed,
                "s",
                baseline_name="asyncio baseline",
                baseline_value=baseline,
                higher_is_better=False,
                target=f"{target} (ideal {ideal:.4g} s)",
                met=meets(elapsed, ideal),
            )


# --- a real HTTP server: connection reuse and resume after a kill ---------------------

HTTP_REQUESTS, HTTP_LATENCY_S, HTTP_CONCURRENCY = 1000, 0.1, 64
FAKE_SERVER = Path(__file__).resolve().parents[1] / "tests" / "fake_openai_server.py"


class LatencyServer:
    """tests/fake_openai_server.py in its own process (so it does not share our GIL);
    with ``tls`` (certificate, key) it serves https."""

    def __init__(self, latency_s: float, tls: tuple[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(FAKE_SERVER), str(latency_s), *(tls or ())],
            stdout=subprocess.PIPE, text=True,
        )
        self.port = int(self.process.stdout.readline())
        self.origin = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.base_url = self.origin + "/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.origin + "/stats", timeout=10) as reply:
            return json.loads(reply.read())

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def http_seconds(impl, server: LatencyServer, keep_alive: bool) -> tuple[float, int]:
    provider = impl.OpenAIProvider(server.base_url, "bench", keep_alive=keep_alive, timeout_s=30)
    collector = impl.AsyncCollector(provider, concurrency=HTTP_CONCURRENCY, timeout_s=30)
    before = server.stats()["connections"]
    started = time.perf_counter()
    results = collector.generate_batch([f"prompt {i}" for i in range(HTTP_REQUESTS)])
    elapsed = time.perf_counter() - started
    if not all(r.ok for r in results):
        raise RuntimeError(f"http batch failed: {next(r.error for r in results if not r.ok)}")
    return elapsed, server.stats()["connections"] - before - 1  # less the /stats call's own


def teacher_config(base_url: str, out_dir: str) -> SimpleNamespace:
    return SimpleNamespace(teacher="openai", teacher_base_url=base_url, teacher_model="bench",
                           teacher_concurrency=HTTP_CONCURRENCY, teacher_cache=True,
                           out_dir=out_dir, seed=42)


def child(base_url: str, out_dir: str) -> None:
    """The paying side of the resume figure: ask for every answer through the cache."""
    from heidi_engine.teachers import Request, make_teacher

    teacher = make_teacher(teacher_config(base_url, out_dir))
    teacher.write([Request(f"prompt {i}", f"task{i}") for i in range(HTTP_REQUESTS)])
    teacher.close()


def cache_lines(out_dir: str) -> int:
    path = Path(out_dir) / "cache" / "teacher_responses.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def resume_figures(server: LatencyServer, out_dir: str) -> tuple[int, int, float, float]:
    """Kill -9 the teacher at 50% and resume: (stored at kill, re-sent, full s, resume s)."""
    env = {**os.environ, "HEIDI_BACKEND": os.environ.get("HEIDI_BACKEND", "auto")}
    started = time.perf_counter()
    run = subprocess.Popen([sys.executable, __file__, "--child", server.base_url, out_dir], env=env)
    while cache_lines(out_dir) < HTTP_REQUESTS // 2 and run.poll() is None:
        time.sleep(0.005)
    run.kill()
    run.wait()
    to_kill = time.perf_counter() - started
    stored = cache_lines(out_dir)
    before = server.stats()["requests"]
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", server.base_url, out_dir], env=env,
                   check=True)
    resume_s = time.perf_counter() - started
    resent = server.stats()["requests"] - before - (HTTP_REQUESTS - stored)
    if cache_lines(out_dir) != HTTP_REQUESTS:
        raise RuntimeError("resume did not complete the cache")
    return stored, resent, to_kill, resume_s


def self_signed_certificate(directory: str) -> tuple[str, str]:
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def reuse_figures(report, impls: dict, server: LatencyServer, scheme: str) -> None:
    ideal = math.ceil(HTTP_REQUESTS / HTTP_CONCURRENCY) * HTTP_LATENCY_S
    label = (f"{HTTP_REQUESTS} {scheme} requests @{HTTP_LATENCY_S * 1000:.0f} ms, "
             f"concurrency {HTTP_CONCURRENCY}")
    for name, impl in impls.items():
        fresh, fresh_conns = http_seconds(impl, server, keep_alive=False)
        reused, reused_conns = http_seconds(impl, server, keep_alive=True)
        report.add(f"{label}, {name}, new connection each ({fresh_conns} conns)", fresh, "s",
                   baseline_name="ideal", baseline_value=ideal, higher_is_better=False)
        report.add(f"{label}, {name}, kept alive ({reused_conns} conns)", reused, "s",
                   baseline_name="new connection each", baseline_value=fresh,
                   higher_is_better=False, target=f"<= {HTTP_CONCURRENCY} connections",
                   met=reused_conns <= HTTP_CONCURRENCY)


def run_http(report) -> None:
    impls = {"python": backend.load("python")}
    if backend.native_import_error() is None:
        impls["native"] = backend.load("native")
    server = LatencyServer(HTTP_LATENCY_S)
    try:
        reuse_figures(report, impls, server, "http")
        with tempfile.TemporaryDirectory() as out_dir:
            stored, resent, to_kill, resume_s = resume_figures(server, out_dir)
        report.add(f"resume after kill -9 at 50% ({stored} answers stored): re-sent", resent,
                   "requests", target="0", met=resent == 0)
        report.add("resume after kill -9 at 50%: time to finish", resume_s, "s",
                   baseline_name="time to the kill", baseline_value=to_kill,
                   higher_is_better=False)
    finally:
        server.close()
    with tempfile.TemporaryDirectory() as tls_dir:
        cert, key = self_signed_certificate(tls_dir)
        saved = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = cert  # both clients trust the default verify paths
        server = LatencyServer(HTTP_LATENCY_S, tls=(cert, key))
        try:
            reuse_figures(report, impls, server, "https")
        finally:
            server.close()
            if saved is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = saved


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--child":
    child(sys.argv[2], sys.argv[3])
