"""GET /api/v1/status throughput on loopback with 64 connections (wrk), while a stage runs.

Target: heidid >= 10,000 requests/s with no errors. The Python server (`heidi serve`)
is measured the same way and reported beside it as the baseline.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))

from heidi_engine.run_layout import STAGES, STATE_OF_STAGE  # noqa: E402
from heidi_engine.server.launcher import ServerProcess, find_heidid  # noqa: E402

FAKE_STAGE = HERE.parent / "tests" / "stage_scripts" / "fake_stage.py"
CONNECTIONS = 64
THREADS = 2
DURATION_S = 8
TARGET_RPS = 10_000.0
COLLECTING = STATE_OF_STAGE["generate"]  # the state the measurement runs in


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEIDI_", "OUT_DIR"))}
    env.update(HEIDI_FSYNC="0", HEIDI_PYTHON=sys.executable, PIPELINE_MODE="full", ROUNDS="1",
               FAKE_STAGE_SLEEP_GENERATE=str(DURATION_S + 30), HEIDI_BACKEND="python")
    for stage in STAGES:
        env[f"HEIDI_STAGE_CMD_{stage.upper()}"] = f"{sys.executable} {FAKE_STAGE} {stage}"
    return env


def _state(server: ServerProcess) -> str:
    request = urllib.request.Request(server.base_url + "/api/v1/status",
                                     headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["state"]


def _wrk(server: ServerProcess) -> tuple[float, int, int]:
    """(requests/s, requests, errors) while the generate stage sleeps."""
    deadline = time.monotonic() + 10
    while _state(server) != COLLECTING:
        if time.monotonic() > deadline:
            raise RuntimeError("the stage did not start")
        time.sleep(0.05)
    result = subprocess.run(
        ["wrk", "-t", str(THREADS), "-c", str(CONNECTIONS), "-d", f"{DURATION_S}s", "--latency",
         "-H", f"Authorization: Bearer {server.token}", server.base_url + "/api/v1/status"],
        capture_output=True, text=True, timeout=DURATION_S + 30, check=True)
    out = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = 0
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in match.groups())
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if _state(server) != COLLECTING:
        raise RuntimeError("the stage ended during the measurement")
    return rps, total, errors


def _measure(kind: str) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(kind, Path(tmp) / "out", env=_env())
        try:
            return _wrk(server)
        finally:
            server.stop()


def run(report) -> None:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    heidid = find_heidid()
    if heidid is None:
        raise RuntimeError("heidid not found: build it (scripts/dev-build.sh) or set HEIDID")
    py_rps, py_total, py_errors = _measure("python")
    rps, total, errors = _measure("heidid")
    report.add("http_status_rps_heidid_64conn", rps, "req/s",
               baseline_name="heidi serve (python)", baseline_value=py_rps,
               target=f">= {TARGET_RPS:,.0f} req/s, 0 errors",
               met=rps >= TARGET_RPS and errors == 0)
    report.add("http_status_errors_heidid", errors, "errors", higher_is_better=False,
               target="0", met=errors == 0)
    report.add("http_status_rps_python_64conn", py_rps, "req/s")
    report.add("http_status_errors_python", py_errors, "errors", higher_is_better=False,
               target="0", met=py_errors == 0)
    print(f"  heidid: {total} requests, {errors} errors; python: {py_total} requests, "
          f"{py_errors} errors ({CONNECTIONS} connections, {DURATION_S} s, a stage running)")
