"""The `heidi` command line (SPEC §10), run as a subprocess like a user would."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from heidi_engine.server.launcher import ServerProcess

FAKE_STAGE = Path(__file__).parent / "stage_scripts" / "fake_stage.py"
STAGES = ("generate", "validate", "test", "train", "eval")
ENGINE_PREFIXES = ("HEIDI_", "OUT_DIR", "PIPELINE_MODE", "RUN_UNIT_TESTS", "ROUNDS",
                   "SAMPLES_PER_ROUND", "RUN_ID", "SEED", "VAL_RATIO", "BASE_MODEL")


def stage_cmd(stage: str, *options: str) -> str:
    """The stand-in stage with six raw samples a round."""
    return shlex.join([sys.executable, str(FAKE_STAGE), stage, "--samples", "6", *options])


def cli_env(backend_name: str = "python", **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENGINE_PREFIXES)}
    env.update(HEIDI_FSYNC="0", HEIDI_PYTHON=sys.executable, HEIDI_BACKEND=backend_name, ROUNDS="2")
    for stage in STAGES:
        env[f"HEIDI_STAGE_CMD_{stage.upper()}"] = stage_cmd(stage)
    env.update(overrides)
    return env


def heidi(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "heidi_engine.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "heidi_engine.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def state_of(out_dir: Path) -> dict:
    return json.loads((out_dir / "state" / "run_state.json").read_text())


def wait_until(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def waiting(out_dir: Path, round_no: int) -> bool:
    try:
        s = state_of(out_dir)
    except (FileNotFoundError, ValueError):
        return False
    return s["state"] == "IDLE" and s["last_completed"] == {"round": round_no, "stage": "test"}


def test_run_completes_and_a_finished_run_is_not_rerun(backend, out_dir):
    env = cli_env(backend.name)
    result = heidi("run", "--out-dir", str(out_dir), "--mode", "full", env=env)
    assert result.returncode == 0, result.stderr
    assert state_of(out_dir)["last_completed"] == {"round": 2, "stage": "eval"}
    shown = heidi("status", "--out-dir", str(out_dir), env=env).stdout.splitlines()
    assert "test       round 2: pass@1 0.50 (95% CI 0.05-0.70), base 0.25; dev 0.50" in shown
    assert "best       out_lora/round_2" in shown
    journal = (out_dir / "journal" / "events.jsonl").read_bytes()
    again = heidi("run", "--out-dir", str(out_dir), "--mode", "full", env=env)
    assert again.returncode == 0
    assert "run complete: all 2 rounds done" in again.stdout
    assert (out_dir / "journal" / "events.jsonl").read_bytes() == journal
    assert heidi("verify", "--out-dir", str(out_dir), env=env).returncode == 0


def test_run_fails_with_the_stage_error(out_dir):
    env = cli_env(HEIDI_STAGE_CMD_GENERATE=f"{sys.executable} -c 'raise SystemExit(3)'")
    result = heidi("run", "--out-dir", str(out_dir), env=env)
    assert result.returncode == 1
    assert "failed: exit code 3" in result.stderr


def test_bad_commands_and_options_list_the_valid_ones(out_dir):
    env = cli_env()
    result = heidi("launch", env=env)
    assert result.returncode == 2 and "choose from 'run', 'status'" in result.stderr
    result = heidi("run", "--mode", "fast", env=env)
    assert result.returncode == 2 and "choose from 'full', 'collect'" in result.stderr
    result = heidi("events", "--follow", "--limit", "3", env=env)
    assert result.returncode == 2 and "--follow: not allowed with --limit" in result.stderr
    result = heidi("export", "--format", "csv", "-o", "x", env=env)
    assert result.returncode == 2 and "choose from 'jsonl', 'parquet', 'hf'" in result.stderr
    result = heidi("status", "--out-dir", str(out_dir / "missing"), env=env)
    assert result.returncode == 1 and "no run in" in result.stderr


def test_control_files_steer_a_cli_run(out_dir):
    env = cli_env(PIPELINE_MODE="collect")
    run = spawn("run", "--out-dir", str(out_dir), env=env)
    try:
        wait_until(lambda: waiting(out_dir, 1))
        result = heidi("train-now", "--out-dir", str(out_dir), env=env)
        assert result.returncode == 0 and "control" in result.stdout
        wait_until(lambda: waiting(out_dir, 2))
        assert not (out_dir / "control" / "train_now").exists()  # consumed
        assert heidi("pause", "--out-dir", str(out_dir), env=env).returncode == 0
        wait_until(lambda: state_of(out_dir)["paused"])
        assert heidi("resume", "--out-dir", str(out_dir), env=env).returncode == 0
        wait_until(lambda: not state_of(out_dir)["paused"])
        assert heidi("stop", "--out-dir", str(out_dir), env=env).returncode == 0
        assert run.wait(30) == 0
    finally:
        if run.poll() is None:
            run.kill()
        run.communicate()
    status = json.loads(heidi("status", "--json", "--out-dir", str(out_dir), env=env).stdout)
    assert status == state_of(out_dir)
    events = heidi("events", "--json", "--out-dir", str(out_dir), env=env).stdout.splitlines()
    kinds = [json.loads(line)["event_type"] for line in events]
    assert "train_now_trigger" in kinds and "paused" in kinds and kinds[-1] == "pipeline_stop"


@pytest.mark.slow
def test_sigint_cancels_the_stage_and_exits_0(out_dir):
    run = spawn("run", "--out-dir", str(out_dir), env=cli_env(
        HEIDI_STAGE_CMD_GENERATE=stage_cmd("generate", "--sleep", "60")))
    try:
        wait_until(lambda: (out_dir / "state" / "run_state.json").exists()
                   and state_of(out_dir)["state"] == "COLLECTING")
        time.sleep(0.5)
        run.send_signal(signal.SIGINT)
        assert run.wait(15) == 0
    finally:
        if run.poll() is None:
            run.kill()
        run.communicate()
    events = [json.loads(line) for line in (out_dir / "journal" / "events.jsonl").read_text().splitlines()]
    assert [e["message"] for e in events if e["event_type"] == "stage_end"] == ["cancelled: stop requested"]
    assert state_of(out_dir)["state"] == "IDLE"


@pytest.mark.daemon
def test_commands_talk_to_a_running_server(out_dir):
    env = cli_env(PIPELINE_MODE="collect", HEIDI_MOCK_SUBPROCESSES="1")
    server = ServerProcess("python", out_dir, env=env)
    try:
        wait_until(lambda: waiting(out_dir, 1))
        status = heidi("status", "--out-dir", str(out_dir), env=env)
        assert status.returncode == 0 and "heidi serve pid" in status.stdout
        assert heidi("pause", "--out-dir", str(out_dir), env=env).returncode == 0
        again = heidi("pause", "--out-dir", str(out_dir), env=env)
        assert again.returncode == 1 and "cannot pause" in again.stderr
        url = heidi("dashboard", "--print", "--out-dir", str(out_dir), env=env).stdout.strip()
        assert url == f"{server.base_url}/#token={server.token}"
        refused = heidi("run", "--out-dir", str(out_dir), env=env)
        assert refused.returncode == 1 and "is running" in refused.stderr
        events = heidi("events", "--out-dir", str(out_dir), "--limit", "2", env=env)
        assert len(events.stdout.splitlines()) == 2
    finally:
        assert server.stop() == 0
    assert "(no server running)" in heidi("status", "--out-dir", str(out_dir), env=env).stdout


def test_verify_reports_the_first_bad_line(out_dir):
    env = cli_env(HEIDI_MOCK_SUBPROCESSES="1")
    assert heidi("run", "--out-dir", str(out_dir), env=env).returncode == 0
    journal = out_dir / "journal" / "events.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"info"', '"warn"', 1)
    journal.write_text("".join(lines))
    result = heidi("verify", "--out-dir", str(out_dir), env=env)
    assert result.returncode == 1 and "line 4" in result.stdout


def test_export_jsonl_parquet_and_hf(out_dir, tmp_path):
    import pyarrow.parquet as pq

    env = cli_env()
    assert heidi("run", "--out-dir", str(out_dir), env=env).returncode == 0
    for fmt in ("jsonl", "parquet", "hf"):
        target = tmp_path / fmt
        result = heidi("export", "--out-dir", str(out_dir), "--format", fmt, "-o", str(target), env=env)
        assert result.returncode == 0, result.stderr
    train = [json.loads(line) for line in (tmp_path / "jsonl" / "train.jsonl").read_text().splitlines()]
    assert len(train) == 6 and {row["round"] for row in train} == {1, 2}  # 3 per round
    assert pq.read_table(tmp_path / "parquet" / "validation.parquet").num_rows == 2
    assert pq.read_table(tmp_path / "hf" / "data" / "train-00000-of-00001.parquet").num_rows == 6
    assert "split: validation" in (tmp_path / "hf" / "README.md").read_text()
    tested = heidi("export", "--out-dir", str(out_dir), "--source", "tested", "--rounds", "2",
                   "-o", str(tmp_path / "tested"), env=env)
    assert tested.returncode == 0
    assert len((tmp_path / "tested" / "train.jsonl").read_text().splitlines()) == 4
    empty = heidi("export", "--out-dir", str(tmp_path / "none"), "-o", str(tmp_path / "e"), env=env)
    assert empty.returncode == 1 and "nothing to export" in empty.stderr


def test_doctor_reports_backends_and_libraries():
    result = heidi("doctor", "--json", env=cli_env())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "python"
    assert set(report["packages"]) >= {"torch", "transformers", "peft", "bitsandbytes"}
    assert "isolation" in report["sandbox"] or "error" in report["sandbox"]
    assert set(report["training"]) == {"cpu_lora", "gpu_lora", "qlora", "multi_gpu"}
    text = heidi("doctor", env=cli_env())
    assert text.returncode == 0 and "train cpu_lora" in text.stdout


# ----- a corrupt, foreign or unreadable run directory -----------------------------------


def _finished_run(backend_name: str, out_dir: Path) -> None:
    env = cli_env(backend_name, HEIDI_MOCK_SUBPROCESSES="1", ROUNDS="1")
    assert heidi("run", "--out-dir", str(out_dir), env=env).returncode == 0
    (out_dir / "data").mkdir(exist_ok=True)
    (out_dir / "data" / "train_round_1.jsonl").write_text('{"id": "a"}\n')


def _files(out_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out_dir)): p.read_bytes() for p in sorted(out_dir.rglob("*"))
            if p.is_file() and p.name != "run.lock"}


STATE = "state/run_state.json"
JOURNAL = "journal/events.jsonl"
DATA = "data/train_round_1.jsonl"


def _set_state(key: str, value: object):
    def change(path: Path) -> None:
        state = json.loads(path.read_text())
        state[key] = value
        path.write_text(json.dumps(state))
    return change


# (case, file, how it is spoiled, the problem named, commands that must refuse it)
BAD_FILES = [
    ("state-not-json", STATE, lambda p: p.write_text('{"schema": '), "not valid JSON",
     ("status", "run", "serve", "heidid")),
    ("state-deeply-nested", STATE, lambda p: p.write_text("[" * 100_000), "not valid JSON",
     ("status", "run", "serve", "heidid")),
    ("state-foreign", STATE, lambda p: p.write_text('{"name": "not a run"}'),
     "missing key 'schema'", ("status", "run", "serve", "heidid")),
    ("state-bogus-state", STATE, _set_state("state", "BOGUS"), "invalid value for 'state'",
     ("status", "run", "serve", "heidid")),
    ("state-unreadable", STATE, lambda p: p.chmod(0), "Permission denied",
     ("status", "run", "verify", "serve", "heidid")),
    ("journal-unreadable", JOURNAL, lambda p: p.chmod(0), "Permission denied",
     ("run", "verify", "events", "serve", "heidid")),
    ("journal-not-json", JOURNAL, lambda p: p.write_bytes(p.read_bytes() + b"garbage\n"),
     "fails verification at line", ("run", "serve", "heidid")),
    ("data-not-utf8", DATA, lambda p: p.write_bytes(b'{"id": "\xff"}\n'), "not valid UTF-8",
     ("export",)),
    ("data-unreadable", DATA, lambda p: p.chmod(0), "Permission denied", ("export",)),
]
# Commands whose outcome depends on the engine backend run over both.
BACKEND_COMMANDS = ("run", "verify", "serve")


def _command(name: str, out_dir: Path, tmp_path: Path) -> list[str]:
    if name == "heidid":
        from heidi_engine.server.launcher import find_heidid

        return [find_heidid() or "heidid", "--out-dir", str(out_dir), "--port", "0", "--no-start"]
    extra = {"serve": ["--port", "0", "--no-start"], "export": ["-o", str(tmp_path / "export")],
             "run": ["--quiet"]}.get(name, [])
    return [sys.executable, "-m", "heidi_engine.cli", name, "--out-dir", str(out_dir), *extra]


@pytest.mark.parametrize(("case", "rel", "spoil", "problem", "commands"), BAD_FILES,
                         ids=[case[0] for case in BAD_FILES])
def test_a_bad_run_directory_gets_one_line_naming_the_file(backend, tmp_path, unprivileged,
                                                           case, rel, spoil, problem, commands):
    out_dir = tmp_path / "out"
    _finished_run(backend.name, out_dir)
    path = out_dir / rel
    spoil(path)
    before = _files(out_dir)
    env = cli_env(backend.name, ROUNDS="2", HEIDI_MOCK_SUBPROCESSES="1")
    for name in commands:
        if backend.name == "python" and name == "heidid":
            continue  # heidid is the native server
        if backend.name == "native" and name not in (*BACKEND_COMMANDS, "heidid"):
            continue  # the same Python code on both backends
        result = subprocess.run([*unprivileged, *_command(name, out_dir, tmp_path)], env=env,
                                capture_output=True, text=True, timeout=60)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert len(lines) == 1 and str(path) in lines[0] and problem in lines[0], (name, lines)
        assert "Traceback" not in result.stderr
        assert _files(out_dir) == before, f"{name} changed the run directory"


def test_doctor_finds_heidid_as_the_launcher_does(tmp_path):
    fake = tmp_path / "bin" / "heidid"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    report = json.loads(heidi("doctor", "--json", env=cli_env(HEIDID=str(fake))).stdout)
    assert report["heidid"] == str(fake)
    # Off PATH (beside heidi_cpp or in the scripts directory): found all the same.
    env = cli_env(PATH="/usr/bin:/bin")
    env.pop("HEIDID", None)
    lookup = subprocess.run(
        [sys.executable, "-c", "from heidi_engine.server.launcher import find_heidid; print(find_heidid())"],
        env=env, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    reported = json.loads(heidi("doctor", "--json", env=env).stdout)["heidid"]
    assert str(reported) == lookup
    if os.environ.get("HEIDI_REQUIRE_NATIVE") == "1":
        assert reported is not None


def test_run_after_a_crash_during_testing_of_a_collect_run(backend, out_dir):
    """The run resumes with the test stage (it is not yet waiting for train-now)."""
    env = cli_env(backend.name, PIPELINE_MODE="collect", RUN_UNIT_TESTS="1",
                  HEIDI_STAGE_CMD_TEST=stage_cmd("test", "--sleep", "60"))
    run = spawn("run", "--out-dir", str(out_dir), "--quiet", env=env)
    try:
        wait_until(lambda: (out_dir / "state" / "run_state.json").exists()
                   and state_of(out_dir)["state"] == "TESTING")
    finally:
        run.kill()  # a crash: no cleanup
        run.communicate()
    env["HEIDI_STAGE_CMD_TEST"] = stage_cmd("test")
    again = spawn("run", "--out-dir", str(out_dir), "--quiet", env=env)
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(again.stderr), daemon=True)
    reader.start()
    try:
        # the run itself says it waits (the Core's rule), before anyone stops it
        wait_until(lambda: any("waiting for train-now" in line for line in said))
        assert waiting(out_dir, 1)
        assert heidi("stop", "--out-dir", str(out_dir), env=env).returncode == 0
        assert again.wait(30) == 0
    finally:
        if again.poll() is None:
            again.kill()
        again.wait()
        reader.join(10)
        again.stdout.close()
        again.stderr.close()
    kinds = [json.loads(line)["event_type"] for line in
             (out_dir / "journal" / "events.jsonl").read_text().splitlines()]
    assert kinds.count("pipeline_start") == 1 and "pipeline_resume" in kinds


def test_export_preference_pairs_and_chat_messages(out_dir, tmp_path):
    from heidi_engine.io import write_jsonl_atomic
    from heidi_engine.prompts import SYSTEM_PROMPT

    def sample(task, completion, **extra):
        return {"id": f"{task}-{completion}", "task_id": task, "instruction": f"solve {task}",
                "prompt": "def f():\n", "completion": f"    return {completion}\n", **extra}

    failed = {"passed": False, "reason": "assertion failed", "duration_ms": 3}
    write_jsonl_atomic(out_dir / "data" / "tested_round_1.jsonl",
                       [sample("a", 1), sample("a", 2), sample("b", 1)])
    write_jsonl_atomic(out_dir / "data" / "test_failed_round_1.jsonl", [
        sample("a", 9, reject_reason="test_failed", test_result=failed),
        sample("a", 8, reject_reason="test_failed", test_result=failed),
        sample("a", 7, reject_reason="test_failed", test_result=failed),
        sample("c", 9, reject_reason="test_failed", test_result=failed),  # no passing answer
        sample("b", 9, reject_reason="no_tests", test_result=failed),  # not a verdict
    ])
    write_jsonl_atomic(out_dir / "data" / "train_round_1.jsonl", [sample("a", 1)])
    env = cli_env()
    result = heidi("export", "--out-dir", str(out_dir), "--format", "preference",
                   "-o", str(tmp_path / "pref"), env=env)
    assert result.returncode == 0, result.stderr
    pairs = [json.loads(line) for line in (tmp_path / "pref" / "preference.jsonl").read_text().splitlines()]
    assert [(p["chosen"][-2], p["rejected"][-2]) for p in pairs] == [("1", "9"), ("2", "8"), ("1", "7")]
    assert pairs[0]["prompt"] == "solve a" and pairs[0]["chosen"] == "def f():\n    return 1\n"
    assert pairs[0]["rejected_test_result"] == failed
    result = heidi("export", "--out-dir", str(out_dir), "--format", "messages",
                   "-o", str(tmp_path / "chat"), env=env)
    assert result.returncode == 0, result.stderr
    [row] = [json.loads(line) for line in (tmp_path / "chat" / "train.jsonl").read_text().splitlines()]
    assert row["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "solve a"},
        {"role": "assistant", "content": "```python\ndef f():\n    return 1\n```"},
    ]
    none = heidi("export", "--out-dir", str(out_dir), "--format", "preference", "--rounds", "2",
                 "-o", str(tmp_path / "none"), env=env)
    assert none.returncode == 1 and "nothing to export" in none.stderr


def test_status_reports_teacher_tokens_cost_and_cache_hits(out_dir):
    env = cli_env(ROUNDS="1", HEIDI_STAGE_CMD_GENERATE=stage_cmd("generate", "--teacher-usage"))
    assert heidi("run", "--out-dir", str(out_dir), env=env).returncode == 0
    status = heidi("status", "--out-dir", str(out_dir), env=env)
    assert status.returncode == 0
    assert ("teacher    tokens prompt=1200 completion=345  cost=0.006450  cache_hits=2"
            in status.stdout)
