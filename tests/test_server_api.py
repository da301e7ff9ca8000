"""The HTTP API of SPEC §9, over both servers: heidid (C++, native Core) and
`heidi serve` (Python, Python Core). One suite, parameterised by server kind."""

from __future__ import annotations

import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from heidi_engine.server.http_server import (
    IDLE_TIMEOUT_S,
    LISTEN_BACKLOG,
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT_S,
)
from heidi_engine.server.launcher import SERVER_KINDS, ServerProcess, find_heidid
from heidi_engine.server.openapi import MAX_BODY_BYTES, load_document, route_table

pytestmark = pytest.mark.daemon

FAKE_STAGE = Path(__file__).parent / "stage_scripts" / "fake_stage.py"
STAGES = ("generate", "validate", "test", "train", "eval")
ENGINE_PREFIXES = ("HEIDI_", "OUT_DIR", "PIPELINE_MODE", "RUN_UNIT_TESTS", "ROUNDS",
                   "SAMPLES_PER_ROUND", "RUN_ID", "SEED", "VAL_RATIO", "BASE_MODEL")


def server_env(kind: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENGINE_PREFIXES)}
    # No HEIDI_PYTHON: heidid's default (its installation's interpreter) runs the stages.
    env.update(HEIDI_FSYNC="0", PIPELINE_MODE="collect", ROUNDS="2")
    if kind == "python":
        env["HEIDI_BACKEND"] = "python"
    env.update(overrides)
    return env


def stage_cmd(stage: str, *options: str) -> str:
    """The stand-in stage with six raw samples a round."""
    return shlex.join([sys.executable, str(FAKE_STAGE), stage, "--samples", "6", *options])


def fake_stage_env(**overrides: str) -> dict[str, str]:
    env = {f"HEIDI_STAGE_CMD_{s.upper()}": stage_cmd(s) for s in STAGES}
    env.update(overrides)
    return env


def sleeping_generate_env(seconds: str, *options: str) -> dict[str, str]:
    """fake_stage_env with a generate stage that sleeps before it writes."""
    return fake_stage_env(
        HEIDI_STAGE_CMD_GENERATE=stage_cmd("generate", "--sleep", seconds, *options))


@pytest.fixture(params=SERVER_KINDS)
def kind(request, need_native) -> str:
    if request.param == "heidid" and find_heidid() is None:
        need_native("heidid")
    return request.param


@pytest.fixture
def launch(tmp_path):
    """launch(kind, *args, **env) -> a listening ServerProcess; all are stopped afterwards."""
    started: list[ServerProcess] = []

    def _launch(kind: str, *args: str, out_dir: Path | None = None, **env: str) -> ServerProcess:
        directory = out_dir or tmp_path / f"out_{kind}_{len(started)}"
        server = ServerProcess(kind, directory, args, env=server_env(kind, **env))
        started.append(server)
        return server

    yield _launch
    for server in started:
        server.stop()


class Client:
    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=10)

    def request(self, method: str, target: str, body: bytes | str | None = None, *,
                token: str | None = "", headers: dict[str, str] | None = None):
        """(status, headers, body). token "" = the server's token; None = no header."""
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token or self.server.token}"
        if isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=10)
        try:
            conn.request(method, target, body=body, headers=all_headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, method: str, target: str, body: bytes | str | None = None, **kw):
        status, _, raw = self.request(method, target, body, **kw)
        return status, json.loads(raw)

    def status(self) -> dict:
        code, body = self.json("GET", "/api/v1/status")
        assert code == 200
        return body

    def wait_for(self, predicate, timeout_s: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status()
            if predicate(status):
                return status
            assert time.monotonic() < deadline, f"timed out; last status {status}"
            time.sleep(0.02)


def waiting(status: dict) -> bool:
    last = status["last_completed"]
    return (status["state"] == "IDLE" and last is not None
            and last["round"] == status["current_round"] and last["stage"] in ("validate", "test"))


# ----- routes and documents -----------------------------------------------------------


def test_healthz_and_dashboard_need_no_token(kind, launch):
    client = Client(launch(kind, "--no-start"))
    assert client.request("GET", "/healthz", token=None)[::2] == (200, b'{"ok":true}')
    for path, ctype in (("/", "text/html"), ("/static/dashboard.js", "text/javascript"),
                        ("/static/dashboard.css", "text/css")):
        code, headers, body = client.request("GET", path, token=None)
        assert code == 200 and headers["Content-Type"].startswith(ctype), path
        assert body == (Path(__file__).parents[1] / "python/heidi_engine/dashboard"
                        / ("index.html" if path == "/" else path.rsplit("/", 1)[1])).read_bytes()
    assert "script-src 'self'" in client.request("GET", "/", token=None)[1]["Content-Security-Policy"]


def test_every_documented_route_answers_and_needs_its_token(kind, launch):
    client = Client(launch(kind, "--no-start"))
    for path, route in route_table().items():
        for method, op in route.operations.items():
            code, _, body = client.request(method, path, token=None)
            if op.needs_token:
                assert code == 401, (method, path)
                assert json.loads(body) == {"error": "missing or invalid bearer token"}
            else:
                assert code == 200, (method, path)
            code, _, body = client.request(method, path)
            assert code in (200, 202, 409), (method, path, code, body)
            if code != 200 or path.startswith("/api/"):
                json.loads(body)


def test_openapi_document_is_served_as_shipped(kind, launch):
    client = Client(launch(kind, "--no-start"))
    code, doc = client.json("GET", "/api/v1/openapi.json")
    assert code == 200 and doc == load_document()
    assert doc["openapi"].startswith("3.")


# ----- auth ---------------------------------------------------------------------------


def test_missing_or_wrong_token_gets_401_and_changes_nothing(kind, launch):
    server = launch(kind, "--no-start", HEIDI_MOCK_SUBPROCESSES="1")
    client = Client(server)
    before = client.status()
    bad_headers = [None, "wrong", server.token[:-1], server.token + "0", server.token.upper()]
    for action in ("start", "train_now", "pause", "resume", "stop"):
        for token in bad_headers:
            code, headers, body = client.request("POST", f"/api/v1/action/{action}", "{}", token=token)
            assert code == 401, (action, token)
            assert headers["WWW-Authenticate"] == "Bearer"
            assert json.loads(body) == {"error": "missing or invalid bearer token"}
        for scheme in (f"Basic {server.token}", f"bearer {server.token}", server.token):
            code, _, _ = client.request("POST", f"/api/v1/action/{action}", "{}", token=None,
                                        headers={"Authorization": scheme})
            assert code == 401
    for path in ("/api/v1/status", "/api/v1/events", "/metrics", "/api/v1/eval"):
        assert client.request("GET", path, token="nope")[0] == 401
    time.sleep(0.3)
    assert client.status() == before
    journal = server.out_dir / "journal" / "events.jsonl"
    assert journal.read_bytes().count(b"\n") == before["journal_head"]["seq"]
    assert client.request("POST", "/api/v1/action/start", '{"mode":"collect"}')[0] == 202


def test_token_file_is_private_and_token_never_logged(kind, launch):
    server = launch(kind, "--no-start", "--log-requests", HEIDI_MOCK_SUBPROCESSES="1")
    token_file = server.out_dir / "state" / "daemon.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == server.token and len(server.token) == 64
    client = Client(server)
    wrong = "f" * 64
    client.request("GET", "/api/v1/status")
    client.request("GET", "/api/v1/status", token=wrong)
    client.request("POST", "/api/v1/action/start", "{}")
    discovery = json.loads((server.out_dir / "state" / "daemon.json").read_text())
    assert discovery["port"] == server.port and server.token not in json.dumps(discovery)
    assert server.stop() == 0
    assert "GET /api/v1/status" in server.stderr  # requests are logged ...
    assert server.token not in server.stderr and wrong not in server.stderr  # ... tokens not
    assert not (server.out_dir / "state" / "daemon.json").exists()


def test_second_server_gets_a_new_token(kind, launch, tmp_path):
    first = launch(kind, "--no-start", out_dir=tmp_path / "shared")
    first_token = first.token
    first.stop()
    second = launch(kind, "--no-start", out_dir=tmp_path / "shared")
    assert second.token != first_token
    assert Client(second).request("GET", "/api/v1/status", token=first_token)[0] == 401


# ----- bad input ----------------------------------------------------------------------

BAD_REQUESTS = [
    ("GET", "/nope", None, 404, "not found: /nope"),
    ("GET", "/api/v1/status/", None, 404, "not found: /api/v1/status/"),
    ("DELETE", "/api/v1/status", None, 405, "method DELETE not allowed on /api/v1/status (allowed: GET, HEAD)"),
    ("GET", "/api/v1/action/stop", None, 405, "method GET not allowed on /api/v1/action/stop (allowed: POST)"),
    ("GET", "/api/v1/events?since=9223372036854775808", None, 400,
     "invalid value for since: '9223372036854775808' (expected an integer 0..9223372036854775807)"),
    ("GET", "/api/v1/events?since=x", None, 400, "invalid value for since: 'x' (expected an integer >= 0)"),
    ("GET", "/api/v1/events?since=-1", None, 400, "invalid value for since: '-1' (expected an integer >= 0)"),
    ("GET", "/api/v1/events?limit=0", None, 400, "invalid value for limit: '0' (expected an integer 1..1000)"),
    ("GET", "/api/v1/events?limit=1001", None, 400, "invalid value for limit: '1001' (expected an integer 1..1000)"),
    ("GET", "/api/v1/events?since=1&since=2", None, 400, "duplicate query parameter 'since'"),
    ("GET", "/api/v1/events?foo=1", None, 400, "unknown query parameter 'foo' (valid: since, limit)"),
    ("GET", "/api/v1/status?x", None, 400, "unknown query parameter 'x' (valid: none)"),
    ("GET", "/api/v1/status", "{}", 400, "this route takes no body"),
    ("POST", "/api/v1/action/start", "{nope", 400, "body is not valid JSON"),
    ("POST", "/api/v1/action/start", b"\xff\xfe", 400, "body is not valid JSON"),
    ("POST", "/api/v1/action/start", "[1]", 400, "body must be a JSON object"),
    ("POST", "/api/v1/action/start", '{"mode":"fast"}', 400, "invalid value for mode: 'fast' (valid: full, collect)"),
    ("POST", "/api/v1/action/start", '{"mode":3}', 400, "invalid value for mode: 3 (valid: full, collect)"),
    ("POST", "/api/v1/action/start", '{"rounds":3}', 400, "unknown field 'rounds' (valid: mode)"),
    ("POST", "/api/v1/action/stop", '{"now":true}', 400, "unknown field 'now' (valid: none)"),
    ("POST", "/api/v1/action/stop", "x" * (MAX_BODY_BYTES + 1), 413,
     f"request body too large (limit {MAX_BODY_BYTES} bytes)"),
    ("FOO", "/api/v1/status", None, 400, "bad request"),
    ("GET", "/" + "a" * 9000, None, 414, "request target too long"),
]


@pytest.mark.parametrize(("method", "target", "body", "code", "message"), BAD_REQUESTS,
                         ids=[f"{r[0]} {r[1][:40]} {str(r[2])[:12]}" for r in BAD_REQUESTS])
def test_bad_requests_get_a_json_4xx(kind, launch, method, target, body, code, message):
    server = launch(kind, "--no-start")
    client = Client(server)
    before = client.status()
    status, headers, raw = client.request(method, target, body)
    assert status == code
    assert headers["Content-Type"] == "application/json"
    error = json.loads(raw)["error"]
    if message is not None:
        assert error == message
    if code == 405:
        assert headers["Allow"] == message.rsplit("(allowed: ", 1)[1].rstrip(")")
    assert client.request("GET", "/healthz")[0] == 200  # still serving
    assert client.status() == before


# ----- actions, events, metrics -------------------------------------------------------


def test_actions_answer_202_or_409_with_the_reason(kind, launch):
    client = Client(launch(kind, "--no-start", HEIDI_MOCK_SUBPROCESSES="1"))
    code, body = client.json("POST", "/api/v1/action/train_now")
    assert code == 409 and body["error"]
    code, body = client.json("POST", "/api/v1/action/pause")
    assert (code, body) == (409, {"error": "cannot pause in state IDLE (allowed: start, reset)"})
    assert client.json("POST", "/api/v1/action/start", '{"mode":"collect"}') == (
        202, {"accepted": True, "action": "start"})
    status = client.wait_for(waiting)
    assert status["current_round"] == 1 and status["mode"] == "collect"
    assert client.json("POST", "/api/v1/action/start")[0] == 409
    assert client.json("POST", "/api/v1/action/pause")[0] == 202
    assert client.status()["paused"] is True
    assert client.json("POST", "/api/v1/action/pause")[0] == 409
    assert client.json("POST", "/api/v1/action/resume")[0] == 202
    assert client.json("POST", "/api/v1/action/resume")[0] == 409
    assert client.json("POST", "/api/v1/action/train_now") == (
        202, {"accepted": True, "action": "train_now"})
    status = client.wait_for(lambda s: waiting(s) and s["current_round"] == 2)
    assert client.json("POST", "/api/v1/action/stop")[0] == 202
    assert client.status()["state"] == "IDLE"
    code, page = client.json("GET", "/api/v1/events?since=0&limit=1000")
    assert page["events"][-1]["event_type"] == "pipeline_stop"


def test_events_pages_through_the_journal(kind, launch):
    server = launch(kind, HEIDI_MOCK_SUBPROCESSES="1")
    client = Client(server)
    client.wait_for(waiting)
    journal = (server.out_dir / "journal" / "events.jsonl").read_bytes().splitlines()
    seen, since = [], 0
    while True:
        code, page = client.json("GET", f"/api/v1/events?since={since}&limit=3")
        assert code == 200 and len(page["events"]) <= 3
        if not page["events"]:
            assert page["next_since"] == since
            break
        assert page["next_since"] == page["events"][-1]["seq"]
        seen.extend(page["events"])
        since = page["next_since"]
    assert [e["seq"] for e in seen] == list(range(1, len(journal) + 1))
    assert [json.dumps(e, separators=(",", ":")).encode() for e in seen] == journal
    code, default_page = client.json("GET", "/api/v1/events")
    assert default_page["events"] == seen[:100]
    assert client.json("GET", "/api/v1/events?since=999999") == (
        200, {"events": [], "next_since": 999999})


def test_metrics_and_eval_reports_follow_the_run(kind, launch):
    server = launch(kind, "--mode", "full", ROUNDS="1", **fake_stage_env())
    client = Client(server)
    client.wait_for(lambda s: s["state"] == "IDLE" and s["last_completed"] == {"round": 1, "stage": "eval"})
    code, headers, raw = client.request("GET", "/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = raw.decode()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert samples['heidi_state{state="IDLE"}'] == "1"
    assert samples['heidi_state{state="COLLECTING"}'] == "0"
    assert samples["heidi_round"] == "1" and samples["heidi_rounds"] == "1"
    assert samples['heidi_samples_total{outcome="raw"}'] == "6"
    assert samples['heidi_samples_total{outcome="rejected"}'] == "1"
    assert samples['heidi_samples_total{outcome="train"}'] == "3"
    assert samples['heidi_stage_runs_total{stage="eval",outcome="ok"}'] == "1"
    assert samples['heidi_stage_duration_seconds_count{stage="generate"}'] == "1"
    assert float(samples['heidi_stage_duration_seconds_sum{stage="generate"}']) > 0
    assert samples["heidi_pass_at_1"] == "0.25"
    journal_lines = (server.out_dir / "journal" / "events.jsonl").read_bytes().count(b"\n")
    assert samples["heidi_journal_seq"] == str(journal_lines)
    for line in text.splitlines():
        if line.startswith("# TYPE") and line.endswith(" counter"):
            assert line.split()[2].endswith("_total")
    assert client.json("GET", "/api/v1/eval") == (200, {"rounds": [
        {"round": 1, "pass_at_1": 0.25, "baseline_pass_at_1": 0.25, "n_tasks": 4, "n_passed": 1,
         "val_loss": 1.5, "pass_at_1_low": 0.05, "pass_at_1_high": 0.7,
         "baseline_pass_at_1_low": None, "baseline_pass_at_1_high": None,
         "dev_pass_at_1": 0.5, "best_round": 1}]})


def test_metrics_report_teacher_usage_and_cost(kind, launch):
    env = fake_stage_env(HEIDI_STAGE_CMD_GENERATE=stage_cmd("generate", "--teacher-usage"))
    server = launch(kind, "--mode", "full", ROUNDS="1", **env)
    client = Client(server)
    client.wait_for(lambda s: s["state"] == "IDLE" and s["last_completed"] == {"round": 1, "stage": "eval"})
    _, _, raw = client.request("GET", "/metrics")
    samples = dict(line.rsplit(" ", 1) for line in raw.decode().splitlines() if not line.startswith("#"))
    assert samples['heidi_teacher_tokens_total{kind="prompt"}'] == "1200"
    assert samples['heidi_teacher_tokens_total{kind="completion"}'] == "345"
    assert samples["heidi_teacher_cost_total"] == "0.00645"
    assert samples["heidi_teacher_cache_hits_total"] == "2"


# ----- both servers, one behaviour ----------------------------------------------------

FIXED_TIME = "2026-01-01T00:00:00.000Z"


def scripted_session(client: Client) -> list[tuple[int, bytes]]:
    """A fixed sequence of requests; each action waits for the run to settle."""
    answers = []

    def record(method, target, body=None, token=""):
        code, _, raw = client.request(method, target, body, token=token)
        answers.append((code, raw))

    record("GET", "/healthz")
    record("GET", "/api/v1/status")
    record("POST", "/api/v1/action/train_now")
    record("POST", "/api/v1/action/pause")
    record("POST", "/api/v1/action/start", '{"mode":"collect"}', token="bad")
    record("POST", "/api/v1/action/start", '{"mode":"collect"}')
    client.wait_for(waiting)
    record("GET", "/api/v1/status")
    record("POST", "/api/v1/action/start")
    record("POST", "/api/v1/action/pause")
    record("POST", "/api/v1/action/pause")
    record("GET", "/api/v1/status")
    record("POST", "/api/v1/action/resume")
    record("POST", "/api/v1/action/train_now")
    client.wait_for(lambda s: waiting(s) and s["current_round"] == 2)
    record("GET", "/api/v1/status")
    record("GET", "/api/v1/events?since=0&limit=1000")
    record("GET", "/api/v1/events?since=5&limit=4")
    record("GET", "/metrics")
    record("GET", "/api/v1/eval")
    record("POST", "/api/v1/action/stop")
    record("GET", "/api/v1/status")
    for method, target, body, *_ in BAD_REQUESTS:
        record(method, target, body)
    record("GET", "/api/v1/openapi.json")
    return answers


@pytest.mark.native
def test_both_servers_give_the_same_answers(launch, tmp_path):
    if find_heidid() is None:
        pytest.skip("heidid not built")
    env = dict(HEIDI_MOCK_SUBPROCESSES="1", HEIDI_FAKE_TIME=FIXED_TIME, RUN_ID="run_same")
    answers = {}
    for kind in SERVER_KINDS:
        server = launch(kind, "--no-start", out_dir=tmp_path / kind, **env)
        answers[kind] = scripted_session(Client(server))
    assert len(answers["heidid"]) == len(answers["python"])
    for number, (native, python) in enumerate(zip(answers["heidid"], answers["python"])):
        assert native == python, f"answer {number} differs"


# ----- latency and shutdown -----------------------------------------------------------


@pytest.mark.slow
def test_status_p99_under_50ms_while_a_stage_runs(kind, launch):
    server = launch(kind, **sleeping_generate_env("4"))
    client = Client(server)
    client.wait_for(lambda s: s["state"] == "COLLECTING")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    headers = {"Authorization": f"Bearer {server.token}"}
    latencies, states = [], set()
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        started = time.perf_counter()
        conn.request("GET", "/api/v1/status", headers=headers)
        response = conn.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - started)
        assert response.status == 200
        states.add(json.loads(body)["state"])
        time.sleep(0.005)
    conn.close()
    assert states == {"COLLECTING"}  # the stage ran the whole time
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert len(latencies) > 100 and p99 < 0.050, f"p99 {p99 * 1000:.1f} ms"


@pytest.mark.slow
def test_sigterm_cancels_the_running_stage_and_exits_0(kind, launch):
    server = launch(kind, **sleeping_generate_env("60"))
    client = Client(server)
    client.wait_for(lambda s: s["state"] == "COLLECTING")
    time.sleep(0.3)
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    events = [json.loads(line) for line in
              (server.out_dir / "journal" / "events.jsonl").read_text().splitlines()]
    assert [e["message"] for e in events if e["event_type"] == "stage_end"] == ["cancelled: stop requested"]
    state = json.loads((server.out_dir / "state" / "run_state.json").read_text())
    assert state["state"] == "IDLE" and state["stage"] is None
    assert not (server.out_dir / "state" / "daemon.json").exists()


@pytest.mark.slow
def test_second_sigint_exits_at_once(kind, launch):
    server = launch(kind, **sleeping_generate_env("60", "--ignore-term"))
    client = Client(server)
    client.wait_for(lambda s: s["state"] == "COLLECTING")
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGINT)  # begins a clean stop: the stage ignores SIGTERM
    time.sleep(0.3)
    started = time.monotonic()
    assert server.stop(signal.SIGINT) == 130
    assert time.monotonic() - started < 1.5


def test_heidid_daemonizes_with_a_pid_file(tmp_path, need_native):
    binary = find_heidid()
    if binary is None:
        need_native("heidid")
    out_dir, pid_file = tmp_path / "out", tmp_path / "run" / "heidid.pid"
    import subprocess

    result = subprocess.run([binary, "--out-dir", str(out_dir), "--port", "0", "--no-start",
                             "--daemonize", "--pid-file", str(pid_file)],
                            capture_output=True, text=True, timeout=30,
                            env=server_env("heidid", HEIDI_MOCK_SUBPROCESSES="1"))
    assert result.returncode == 0, result.stderr
    assert "listening on http://127.0.0.1:" in result.stdout
    pid = int(pid_file.read_text())
    discovery = json.loads((out_dir / "state" / "daemon.json").read_text())
    assert discovery["pid"] == pid and discovery["server"] == "heidid"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_file.exists()
    again = subprocess.run([binary, "--out-dir", str(out_dir), "--port", "nope"],
                           capture_output=True, text=True, timeout=10)
    assert again.returncode == 2
    assert "invalid value for --port: 'nope' (expected an integer 0..65535" in again.stderr


# ----- abuse: framing, limits, slow and idle clients ----------------------------------

def raw_exchange(server: ServerProcess, data: bytes, timeout_s: float = 10.0) -> tuple[int, dict, bytes]:
    """Send raw bytes, read one answer (the server may close after it)."""
    sock = socket.create_connection((server.host, server.port), timeout=timeout_s)
    try:
        sock.sendall(data)
        return read_answer(sock)
    finally:
        sock.close()


def read_answer(sock: socket.socket) -> tuple[int, dict, bytes]:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer: {buffer!r}"
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def request_head(method: str, target: str, token: str, *headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: x", f"Authorization: Bearer {token}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


FRAMING = [
    # chunk size -1 was once read as "read to the end", before the token was checked
    ("negative chunk size", ["Transfer-Encoding: chunked"], b"-1\r\n", 400, "invalid chunk size"),
    ("chunk size not hex", ["Transfer-Encoding: chunked"], b"zz\r\n", 400, "invalid chunk size"),
    ("chunks over the limit", ["Transfer-Encoding: chunked"], b"ffffffff\r\n", 413,
     f"request body too large (limit {MAX_BODY_BYTES} bytes)"),
    ("chunk without its CRLF", ["Transfer-Encoding: chunked"], b"2\r\n{}XX0\r\n\r\n", 400,
     "invalid chunked body"),
    ("other transfer encoding", ["Transfer-Encoding: gzip"], b"", 400,
     "unsupported Transfer-Encoding (valid: chunked)"),
    ("length and encoding", ["Transfer-Encoding: chunked", "Content-Length: 5"], b"0\r\n\r\n", 400,
     "both Content-Length and Transfer-Encoding given"),
    ("length not a number", ["Content-Length: -5"], b"", 400, "invalid Content-Length"),
    ("length over the limit, body never sent", ["Content-Length: 99999999999"], b"", 413,
     f"request body too large (limit {MAX_BODY_BYTES} bytes)"),
]


@pytest.mark.parametrize(("case", "headers", "body", "code", "message"), FRAMING,
                         ids=[f[0] for f in FRAMING])
def test_bodies_are_bounded_before_they_are_read(kind, launch, case, headers, body, code, message):
    server = launch(kind, "--no-start")
    started = time.monotonic()
    status, answer_headers, raw = raw_exchange(
        server, request_head("POST", "/api/v1/action/stop", server.token, *headers) + body)
    assert (status, json.loads(raw)) == (code, {"error": message})
    assert answer_headers["content-type"] == "application/json"
    assert time.monotonic() - started < 2  # answered at once, not after a read timeout
    assert Client(server).request("GET", "/healthz", token=None)[0] == 200


def test_chunked_bodies_within_the_limit_are_accepted(kind, launch):
    server = launch(kind, "--no-start", HEIDI_MOCK_SUBPROCESSES="1")
    payload = b'{"mode":"collect"}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:5], payload[5:]))
    status, _, raw = raw_exchange(server, request_head(
        "POST", "/api/v1/action/start", server.token, "Transfer-Encoding: chunked") + chunked + b"0\r\n\r\n")
    assert (status, json.loads(raw)) == (202, {"accepted": True, "action": "start"})


def test_deeply_nested_json_gets_400(kind, launch):
    client = Client(launch(kind, "--no-start"))
    for body in ('{"mode":' + "[" * 5000 + "]" * 5000 + "}", "[" * 60_000):
        assert client.json("POST", "/api/v1/action/start", body) == (
            400, {"error": "body nests too deeply (limit 64)"})


def test_since_up_to_int64_max_is_accepted_and_beyond_named(kind, launch):
    client = Client(launch(kind, "--no-start"))
    top = 2**63 - 1
    assert client.json("GET", f"/api/v1/events?since={top}") == (200, {"events": [], "next_since": top})
    for text in (str(top + 1), "9" * 30, "1" * 5000):
        assert client.json("GET", f"/api/v1/events?since={text}") == (400, {
            "error": f"invalid value for since: '{text}' (expected an integer 0..{top})"})
    assert client.json("GET", "/api/v1/events?limit=99999999999999999999") == (400, {
        "error": "invalid value for limit: '99999999999999999999' (expected an integer 1..1000)"})


def test_head_answers_like_get_without_a_body(kind, launch):
    server = launch(kind, "--no-start")
    code, headers, body = Client(server).request("HEAD", "/healthz", token=None)
    assert (code, body) == (200, b"")
    assert headers["Content-Type"] == "application/json" and headers["Content-Length"] == "11"
    assert Client(server).request("HEAD", "/api/v1/status", token=None)[0] == 401
    code, headers, _ = Client(server).request("HEAD", "/api/v1/action/stop")
    assert code == 405 and headers["Allow"] == "POST"


def test_listen_backlog_is_not_httplibs_5(kind, launch):
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("needs ss (iproute2) to read the listen backlog")
    server = launch(kind, "--no-start")
    out = subprocess.run([ss, "-ltnH", f"sport = :{server.port}"], capture_output=True,
                         text=True, check=True).stdout.split()
    assert int(out[2]) == min(LISTEN_BACKLOG, int(Path("/proc/sys/net/core/somaxconn").read_text()))


def test_binding_beyond_loopback_warns(kind, launch):
    server = launch(kind, "--no-start", "--host", "0.0.0.0")
    deadline = time.monotonic() + 5
    while "not a loopback address" not in server.stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "warning: listening on 0.0.0.0, which is not a loopback address" in server.stderr


@pytest.mark.slow
def test_slow_and_idle_clients_cannot_starve_others(kind, launch):
    """100 clients sending one header byte every 2 s, and idle ones: /healthz still
    answers at once; the trickling ones lose their connection at the request deadline,
    the idle ones at the idle timeout."""
    server = launch(kind, "--no-start")
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    slow = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(100)]
    idle = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(20)]
    started = time.monotonic()
    try:
        for tick in range(3):
            for sock in slow:
                sock.sendall(request[tick:tick + 1])
            before = time.monotonic()
            code, _, body = raw_exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 2)
            assert (code, body) == (200, b'{"ok":true}')
            assert time.monotonic() - before < 1.0
            time.sleep(2)
        assert all(closed_by_server(sock, IDLE_TIMEOUT_S + 2) for sock in idle)
        left = REQUEST_TIMEOUT_S + 2 - (time.monotonic() - started)
        assert all(closed_by_server(sock, max(left, 0.1)) for sock in slow)
    finally:
        for sock in slow + idle:
            sock.close()


@pytest.mark.slow
def test_connections_beyond_the_cap_get_503(kind, launch):
    server = launch(kind, "--no-start")
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):
            sock = socket.create_connection((server.host, server.port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # a request begun, not finished
            held.append(sock)
        time.sleep(0.5)
        code, headers, body = raw_exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 5)
        assert (code, json.loads(body)) == (503, {
            "error": f"too many connections (limit {MAX_CONNECTIONS})"})
        assert headers["connection"] == "close"
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while True:  # the held connections' threads are free again
        code, _, _ = raw_exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 5)
        if code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert code == 200


@pytest.mark.slow
def test_wrk_64_connections_during_a_stage_see_no_socket_errors(kind, launch, need_native):
    wrk = shutil.which("wrk")
    if wrk is None:
        need_native("wrk")
    server = launch(kind, **sleeping_generate_env("30"))
    client = Client(server)
    client.wait_for(lambda s: s["state"] == "COLLECTING")
    result = subprocess.run(
        [wrk, "-t", "2", "-c", "64", "-d", "3s", "-H", f"Authorization: Bearer {server.token}",
         f"{server.base_url}/api/v1/status"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Socket errors" not in result.stdout, result.stdout
    assert "Non-2xx" not in result.stdout, result.stdout
    assert client.status()["state"] == "COLLECTING"


def test_heidid_runs_stages_with_its_own_installation_python(tmp_path, need_native):
    """No HEIDI_PYTHON and no python3 on PATH: the real generate stage still runs, with the
    interpreter of heidid's installation (beside it, else the one it was built for)."""
    if find_heidid() is None:
        need_native("heidid")
    env = server_env("heidid", PATH="/nonexistent", SAMPLES_PER_ROUND="4", ROUNDS="1",
                     **{k: v for k, v in fake_stage_env().items() if "GENERATE" not in k})
    env.pop("HEIDI_PYTHON", None)
    server = ServerProcess("heidid", tmp_path / "out", env=env)
    try:
        status = Client(server).wait_for(lambda s: s["state"] in ("IDLE", "ERROR"), 120)
        assert status["last_error"] is None, status
        assert status["waiting_for_train_now"] is True
        assert status["counts"]["raw_lines"] == 4
    finally:
        server.stop()
