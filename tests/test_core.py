"""The Core state machine over both backends (SPEC §4-§7, docs/design.md "Core")."""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
import time
from pathlib import Path

import pytest

from heidi_engine.errors import ConfigError, JournalError, TransitionError

STAGE_SCRIPT = Path(__file__).parent / "stage_scripts" / "fake_stage.py"
STAGES = ("generate", "validate", "test", "train", "eval")


def stage_cmd(stage: str, *extra: str) -> str:
    return shlex.join([sys.executable, str(STAGE_SCRIPT), stage, *extra])


@pytest.fixture
def cores():
    """Make Cores; every one is shut down at the end of the test."""
    made = []

    def make(backend, out_dir, *, scripts=None, **overrides):
        overrides.setdefault("fsync", False)
        if scripts is not None:
            for stage in STAGES:
                command = stage_cmd(stage, *scripts.get(stage, ()))
                overrides.setdefault(f"stage_cmd_{stage}", command)
        else:
            overrides.setdefault("mock_subprocesses", True)
        config = backend.Config.from_env(out_dir=str(out_dir), **overrides)
        core = backend.Core(config)
        made.append(core)
        return core

    yield make
    for core in made:
        core.shutdown()


def events(out_dir) -> list[dict]:
    path = Path(out_dir) / "journal" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def status(core) -> dict:
    return json.loads(core.get_status_json())


def wait_for_event(out_dir, predicate, timeout_s=20.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        path = Path(out_dir) / "journal" / "events.jsonl"
        if path.exists():
            for event in events(out_dir):
                if predicate(event):
                    return event
        time.sleep(0.02)
    raise AssertionError("event did not appear")


def types(out_dir) -> list[str]:
    return [event["event_type"] for event in events(out_dir)]


# ----- transition table -------------------------------------------------------------


@pytest.mark.usefixtures("clean_env")
def test_full_mode_walks_every_state_and_completes(backend, cores, out_dir):
    core = cores(backend, out_dir, rounds=2)
    assert status(core)["state"] == "IDLE"
    core.start("full")
    assert status(core)["state"] == "COLLECTING"
    assert status(core)["stage"] == "generate"
    seen = [core.tick() for _ in range(10)]
    assert seen == [
        "VALIDATING", "TESTING", "FINALIZING", "EVALUATING", "COLLECTING",
        "VALIDATING", "TESTING", "FINALIZING", "EVALUATING", "IDLE",
    ]
    final = status(core)
    assert final["current_round"] == 2
    assert final["last_completed"] == {"round": 2, "stage": "eval"}
    assert final["stage"] is None
    kinds = types(out_dir)
    assert kinds[:4] == ["pipeline_start", "round_start", "stage_start", "stage_end"]
    assert kinds[-1] == "pipeline_complete"
    assert kinds.count("round_start") == 2
    first = events(out_dir)
    assert first[0]["message"] == "mode=full rounds=2" and first[0]["round"] == 0
    assert first[1]["message"] == "round 1/2" and first[1]["round"] == 1
    assert first[-1]["message"] == "complete rounds=2"
    assert core.tick() == "IDLE"  # a no-op once idle
    assert len(events(out_dir)) == len(first)
    assert backend.verify_journal(str(out_dir)).ok


@pytest.mark.usefixtures("clean_env")
def test_state_file_is_the_status_snapshot(backend, cores, out_dir):
    core = cores(backend, out_dir)
    core.start("full")
    core.tick()
    text = (out_dir / "state" / "run_state.json").read_text()
    assert text == core.get_status_json() + "\n"
    state = json.loads(text)
    assert list(state) == [
        "schema", "run_id", "mode", "state", "paused", "stage", "current_round",
        "rounds_total", "last_write_ts", "counts", "train_now_pending", "stop_requested",
        "last_completed", "last_error", "journal_head", "waiting_for_train_now",
    ]
    assert state["journal_head"]["seq"] == len(events(out_dir))


@pytest.mark.usefixtures("clean_env")
def test_tests_off_full_mode_goes_from_validating_to_finalizing(backend, cores, out_dir):
    core = cores(backend, out_dir, rounds=1, run_unit_tests=False)
    core.start("full")
    assert [core.tick() for _ in range(4)] == ["VALIDATING", "FINALIZING", "EVALUATING", "IDLE"]
    assert "test" not in {event["stage"] for event in events(out_dir)}


@pytest.mark.parametrize("tests_on", [True, False], ids=["tests_on", "tests_off"])
@pytest.mark.usefixtures("clean_env")
def test_collect_mode_waits_for_train_now(backend, cores, out_dir, tests_on):
    core = cores(backend, out_dir, rounds=2, run_unit_tests=tests_on)
    core.start("collect")
    collect_ticks = 3 if tests_on else 2
    assert [core.tick() for _ in range(collect_ticks)][-1] == "IDLE"
    waiting = status(core)
    assert waiting["state"] == "IDLE" and waiting["mode"] == "collect"
    assert waiting["last_completed"] == {"round": 1, "stage": "test" if tests_on else "validate"}
    assert core.tick() == "IDLE"  # waiting does not move on by itself
    assert core.train_now() is True
    assert core.last_refusal == ""
    accepted = status(core)
    assert accepted["state"] == "FINALIZING" and accepted["train_now_pending"] is True
    assert core.tick() == "EVALUATING"
    assert status(core)["train_now_pending"] is False
    assert core.tick() == "COLLECTING"
    kinds = types(out_dir)
    assert kinds.index("train_now_trigger") < kinds.index("train_now_complete")
    trigger = events(out_dir)[kinds.index("train_now_trigger")]
    assert trigger["message"] == "train now round 1"
    assert events(out_dir)[kinds.index("train_now_complete")]["message"] == "round 1"
    assert status(core)["current_round"] == 2


@pytest.mark.usefixtures("clean_env")
def test_train_now_refusals_name_the_reason(backend, cores, out_dir):
    core = cores(backend, out_dir, rounds=1)
    assert core.train_now() is False
    assert core.last_refusal == "train-now needs collect mode (mode is full)"
    core.start("collect")
    assert core.action_train_now() is False
    assert core.last_refusal == "not waiting for train-now (state COLLECTING)"
    core.tick()
    core.tick()
    core.tick()
    core.pause()
    assert core.train_now() is False
    assert core.last_refusal == "paused"
    core.resume()
    assert core.train_now() is True
    assert core.train_now() is False
    assert core.last_refusal == "not waiting for train-now (state FINALIZING)"
    assert types(out_dir).count("train_now_trigger") == 1


@pytest.mark.usefixtures("clean_env")
def test_train_now_refused_when_idle_without_collected_data(backend, cores, out_dir):
    core = cores(backend, out_dir, pipeline_mode="collect")
    assert core.train_now() is False
    assert core.last_refusal == "no collected round waiting for training"


@pytest.mark.usefixtures("clean_env")
def test_start_uses_the_configured_mode_by_default(backend, cores, out_dir):
    core = cores(backend, out_dir, pipeline_mode="collect")
    core.start()
    assert status(core)["mode"] == "collect"
    assert events(out_dir)[0]["message"] == "mode=collect rounds=2"


# ----- rejected calls ---------------------------------------------------------------


@pytest.mark.usefixtures("clean_env")
def test_invalid_transitions_name_state_and_allowed_calls(backend, cores, out_dir):
    core = cores(backend, out_dir, rounds=1)
    cases = [
        (core.pause, "cannot pause in state IDLE (allowed: start, reset)"),
        (core.resume, "cannot resume in state IDLE (allowed: start, reset)"),
        (core.stop, "cannot stop in state IDLE (allowed: start, reset)"),
    ]
    for call, message in cases:
        with pytest.raises(TransitionError) as info:
            call()
        assert str(info.value) == message
    core.start("full")
    for call, name in ((core.start, "start"), (core.resume, "resume"), (core.reset, "reset")):
        with pytest.raises(TransitionError) as info:
            call()
        assert str(info.value) == f"cannot {name} in state COLLECTING (allowed: pause, stop)"
    core.pause()
    with pytest.raises(TransitionError) as info:
        core.pause()
    assert str(info.value) == "cannot pause in state PAUSED (allowed: resume, stop)"
    before = len(events(out_dir))
    with pytest.raises(TransitionError):
        core.start("full")
    assert len(events(out_dir)) == before  # a rejected call changes nothing


@pytest.mark.usefixtures("clean_env")
def test_start_while_waiting_for_train_now_is_rejected(backend, cores, out_dir):
    core = cores(backend, out_dir, rounds=1)
    core.start("collect")
    core.run_until_idle()
    with pytest.raises(TransitionError) as info:
        core.start("collect")
    assert str(info.value) == "cannot start in state IDLE (allowed: train_now, pause, stop, reset)"
    core.pause()
    with pytest.raises(TransitionError) as info:
        core.start("collect")
    assert str(info.value) == "cannot start in state PAUSED (allowed: resume, stop, reset)"


@pytest.mark.usefixtures("clean_env")
def test_start_rejects_an_unknown_mode(backend, cores, out_dir):
    core = cores(backend, out_dir)
    with pytest.raises(ConfigError) as info:
        core.start("fast")
    assert str(info.value) == "invalid value for PIPELINE_MODE: 'fast' (valid: full, collect)"
    assert status(core)["state"] == "IDLE"


# ----- pause / resume / stop / reset ------------------------------------------------


@pytest.mark.usefixtures("clean_env")
def test_pause_holds_ticks_until_resume(backend, cores, out_dir):
    core = cores(backend, out_dir, rounds=1)
    core.start("full")
    core.pause()
    paused = status(core)
    assert paused["state"] == "PAUSED" and paused["paused"] is True
    assert paused["stage"] == "generate"
    assert core.tick() == "PAUSED"
    assert core.run_until_idle() == "PAUSED"
    assert "stage_start" not in types(out_dir)
    core.resume()
    assert status(core)["state"] == "COLLECTING"
    assert core.tick() == "VALIDATING"
    kinds = types(out_dir)
    assert kinds[2:4] == ["paused", "resumed"]
    assert [e["message"] for e in events(out_dir)[2:4]] == ["paused", "resumed"]


@pytest.mark.usefixtures("clean_env")
def test_stop_between_stages_then_start_resumes(backend, cores, out_dir):
    core = cores(backend, out_dir, rounds=1)
    core.start("full")
    core.tick()
    core.stop()
    stopped = status(core)
    assert stopped["state"] == "IDLE" and stopped["stage"] is None
    assert stopped["last_completed"] == {"round": 1, "stage": "generate"}
    assert events(out_dir)[-1]["event_type"] == "pipeline_stop"
    assert events(out_dir)[-1]["message"] == "stopped"
    core.start("full")
    resumed = events(out_dir)[-1]
    assert resumed["event_type"] == "pipeline_resume"
    assert resumed["message"] == "resume round=1 stage=validate"
    assert status(core)["state"] == "VALIDATING"
    assert core.run_until_idle() == "IDLE"
    assert types(out_dir)[-1] == "pipeline_complete"


@pytest.mark.usefixtures("clean_env")
def test_stop_while_paused_clears_the_pause(backend, cores, out_dir):
    core = cores(backend, out_dir)
    core.start("full")
    core.pause()
    core.stop()
    assert status(core)["state"] == "IDLE"
    assert status(core)["paused"] is False


@pytest.mark.usefixtures("clean_env")
def test_stop_during_a_stage_kills_its_process_group(backend, cores, out_dir, tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    scripts = {"generate": ("--sleep", "60", "--grandchild-pid-file", str(pid_file))}
    core = cores(backend, out_dir, scripts=scripts, fsync=True)  # progress lines reach the file
    core.start("full")
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("state", core.tick()))
    worker.start()
    wait_for_event(out_dir, lambda e: e["message"] == "sleeping")
    grandchild = int(pid_file.read_text())
    began = time.monotonic()
    assert status(core)["state"] == "COLLECTING"  # status does not wait for the stage
    core.pause()  # nor does pause: it is honoured at the stage boundary
    core.stop()
    assert time.monotonic() - began < 1.0
    assert status(core)["stop_requested"] is True
    worker.join(timeout=20)
    assert not worker.is_alive()
    assert result["state"] == "IDLE"
    tail = events(out_dir)[-2:]
    assert [(e["event_type"], e["level"], e["message"]) for e in tail] == [
        ("stage_end", "warn", "cancelled: stop requested"),
        ("pipeline_stop", "info", "stopped"),
    ]
    assert tail[0]["stage"] == "generate"
    final = status(core)
    assert final["state"] == "IDLE" and final["stop_requested"] is False
    assert final["paused"] is False and final["last_completed"] is None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{grandchild}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{grandchild}")


@pytest.mark.usefixtures("clean_env")
def test_pause_during_a_stage_is_honoured_at_its_end(backend, cores, out_dir):
    core = cores(backend, out_dir, scripts={"generate": ("--sleep", "1")}, fsync=True)
    core.start("full")
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("state", core.tick()))
    worker.start()
    wait_for_event(out_dir, lambda e: e["message"] == "sleeping")
    core.pause()
    assert events(out_dir)[-1]["event_type"] == "paused"
    worker.join(timeout=20)
    assert result["state"] == "PAUSED"
    assert status(core)["last_completed"] == {"round": 1, "stage": "generate"}
    assert core.tick() == "PAUSED"
    core.resume()
    assert status(core)["state"] == "VALIDATING"


@pytest.mark.usefixtures("clean_env")
def test_reset_clears_error_and_keeps_progress(backend, cores, out_dir):
    core = cores(backend, out_dir, scripts={"validate": ("--exit-code", "3")})
    core.start("full")
    core.tick()
    assert core.tick() == "ERROR"
    core.reset()
    after = status(core)
    assert after["state"] == "IDLE" and after["last_error"] is None and after["stage"] is None
    assert after["last_completed"] == {"round": 1, "stage": "generate"}
    assert after["current_round"] == 1
    core.reset()  # allowed in IDLE too
    assert status(core)["state"] == "IDLE"


@pytest.mark.usefixtures("clean_env")
def test_shutdown_makes_the_core_unusable(backend, cores, out_dir):
    core = cores(backend, out_dir)
    core.start("full")
    core.shutdown()
    core.shutdown()
    with pytest.raises(TransitionError) as info:
        core.tick()
    assert str(info.value) == "cannot tick: the core is shut down"
    with pytest.raises(TransitionError):
        core.train_now()
    assert json.loads(core.get_status_json())["state"] == "COLLECTING"


# ----- stage processes --------------------------------------------------------------


@pytest.mark.usefixtures("clean_env")
def test_stage_progress_lines_are_journaled_in_order(backend, cores, out_dir):
    raw_lines = (
        "--raw", "@heidi not json",
        "--raw", '@heidi {"message": "bad level", "level": "loud"}',
        "--raw", '@heidi {"message": "float counter", "counters_delta": {"a": 1.5}}',
        "--raw", '@heidi {"message": "bool counter", "counters_delta": {"a": true}}',
        "--raw", "@heidi [1, 2]",
        "--raw", "plain output line",
        "--raw", '@heidi {"event_type": "step", "message": "two", "level": "warn"}',
        "--raw", '@heidi {"message": "three"}',
    )
    core = cores(backend, out_dir, scripts={"generate": raw_lines})
    core.start("full")
    assert core.tick() == "VALIDATING"
    generate = [e for e in events(out_dir) if e["stage"] == "generate"]
    assert [(e["event_type"], e["level"], e["message"]) for e in generate] == [
        ("stage_start", "info", "generate round 1"),
        ("progress", "info", "generate working"),
        ("step", "warn", "two"),
        ("progress", "info", "three"),
        ("stage_end", "info", generate[-1]["message"]),
    ]
    assert all(e["round"] == 1 for e in generate)
    assert generate[1]["counters_delta"] == {"items": 1}
    end = generate[-1]
    assert end["message"].startswith("ok in ") and end["message"].endswith(" ms")
    assert end["counters_delta"] == {"raw_lines": 5}
    assert end["artifact_paths"] == ["data/raw_round_1.jsonl"]
    assert status(core)["counts"]["raw_lines"] == 5
    log = (out_dir / "logs" / "generate_round_1.log").read_text()
    assert "plain output line" in log and "generate stderr note" in log


@pytest.mark.usefixtures("clean_env")
def test_stage_counters_fill_the_status_counts(backend, cores, out_dir):
    core = cores(backend, out_dir, scripts={}, rounds=1)
    core.start("full")
    for _ in range(3):
        core.tick()
    counts = status(core)["counts"]
    assert counts == {
        "raw_lines": 5, "clean_lines": 4, "rejected_lines": 1, "tested_lines": 3,
        "test_failed": 1, "train_lines": 2, "val_lines": 1,
    }
    ends = [e for e in events(out_dir) if e["event_type"] == "stage_end"]
    assert ends[1]["counters_delta"] == {"clean_lines": 4, "rejected_lines": 1}
    assert ends[1]["artifact_paths"] == ["data/clean_round_1.jsonl", "data/rejected_round_1.jsonl"]
    assert ends[2]["artifact_paths"] == [
        "data/tested_round_1.jsonl", "data/test_failed_round_1.jsonl",
        "data/train_round_1.jsonl", "data/val_round_1.jsonl",
    ]
    assert core.run_until_idle() == "IDLE"
    ends = [e for e in events(out_dir) if e["event_type"] == "stage_end"]
    assert ends[3]["counters_delta"] == {}
    assert ends[3]["artifact_paths"] == ["out_lora/round_1/metrics.json"]
    assert ends[4]["artifact_paths"] == ["eval/report_round_1.json"]


@pytest.mark.usefixtures("clean_env")
def test_tests_off_validate_reports_the_split(backend, cores, out_dir):
    core = cores(backend, out_dir, scripts={}, rounds=1, run_unit_tests=False)
    core.start("full")
    core.tick()
    assert core.tick() == "FINALIZING"
    end = events(out_dir)[-1]
    assert end["counters_delta"] == {
        "clean_lines": 4, "rejected_lines": 1, "train_lines": 2, "val_lines": 1,
    }


def _fails(backend, cores, out_dir, expected, *, scripts=None, state_stage="generate", **kw):
    core = cores(backend, out_dir, scripts=scripts if scripts is not None else {}, **kw)
    core.start("full")
    state = core.run_until_idle()
    assert state == "ERROR"
    tail = events(out_dir)[-2:]
    assert [(e["event_type"], e["level"], e["message"]) for e in tail] == [
        ("stage_end", "error", expected),
        ("pipeline_error", "error", expected),
    ]
    assert tail[0]["stage"] == state_stage and tail[1]["stage"] == "pipeline"
    failed = status(core)
    assert failed["state"] == "ERROR" and failed["last_error"] == expected
    assert failed["stage"] == state_stage
    return core


@pytest.mark.usefixtures("clean_env")
def test_failing_stage_is_a_sticky_error(backend, cores, out_dir):
    core = _fails(backend, cores, out_dir, "failed: exit code 3",
                  scripts={"validate": ("--exit-code", "3")}, state_stage="validate")
    before = len(events(out_dir))
    assert core.tick() == "ERROR"
    assert core.run_until_idle() == "ERROR"
    assert len(events(out_dir)) == before
    with pytest.raises(TransitionError) as info:
        core.pause()
    assert str(info.value) == "cannot pause in state ERROR (allowed: start, reset)"
    assert core.train_now() is False


@pytest.mark.usefixtures("clean_env")
def test_start_after_error_reruns_the_failed_stage(backend, cores, out_dir, tmp_path):
    marker = tmp_path / "failed-once"
    core = cores(backend, out_dir, rounds=1, scripts={"test": ("--fail-once", str(marker))})
    core.start("full")
    assert core.run_until_idle() == "ERROR"
    core.start("full")
    assert events(out_dir)[-1]["message"] == "resume round=1 stage=test"
    assert status(core)["last_error"] is None
    assert core.run_until_idle() == "IDLE"
    assert types(out_dir)[-1] == "pipeline_complete"


@pytest.mark.usefixtures("clean_env")
def test_timed_out_stage_is_an_error(backend, cores, out_dir):
    began = time.monotonic()
    _fails(backend, cores, out_dir, "failed: timed out after 0.5 s",
           scripts={"generate": ("--sleep", "30")}, stage_timeout_s=0.5)
    assert time.monotonic() - began < 10


@pytest.mark.usefixtures("clean_env")
def test_stage_killed_by_a_signal_is_an_error(backend, cores, out_dir):
    _fails(backend, cores, out_dir, "failed: killed by signal 9",
           stage_cmd_generate="sh -c 'kill -9 $$'")


@pytest.mark.usefixtures("clean_env")
def test_missing_output_is_an_error(backend, cores, out_dir):
    _fails(backend, cores, out_dir, "failed: invalid output: missing data/raw_round_1.jsonl",
           scripts={"generate": ("--skip-output",)})


@pytest.mark.usefixtures("clean_env")
def test_stale_output_of_an_earlier_attempt_does_not_count(backend, cores, out_dir):
    (out_dir / "data").mkdir()
    (out_dir / "data" / "raw_round_1.jsonl").write_text('{"id": "old"}\n')
    _fails(backend, cores, out_dir, "failed: invalid output: missing data/raw_round_1.jsonl",
           scripts={"generate": ("--skip-output",)})


@pytest.mark.usefixtures("clean_env")
def test_tests_off_validate_without_the_split_is_an_error(backend, cores, out_dir):
    # This validate believes tests are on and writes no train/val split: fail-closed.
    _fails(backend, cores, out_dir, "failed: invalid output: missing data/train_round_1.jsonl",
           run_unit_tests=False, state_stage="validate",
           stage_cmd_validate="env RUN_UNIT_TESTS=1 " + stage_cmd("validate"))


@pytest.mark.usefixtures("clean_env")
def test_report_that_is_not_a_json_object_is_an_error(backend, cores, out_dir):
    _fails(backend, cores, out_dir,
           "failed: invalid output: out_lora/round_1/metrics.json is not a JSON object",
           scripts={"train": ("--bad-json",)}, state_stage="train")


@pytest.mark.usefixtures("clean_env")
def test_unspawnable_stage_is_an_error(backend, cores, out_dir):
    _fails(backend, cores, out_dir,
           "failed: spawn error: cannot execute '/nonexistent/stage': No such file or directory",
           stage_cmd_generate="/nonexistent/stage")


@pytest.mark.usefixtures("clean_env")
def test_stage_gets_config_round_and_out_dir(backend, cores, out_dir):
    probe = (
        "import json, os, sys; "
        "d = dict(argv=sys.argv[1:], cwd=os.getcwd(), run=os.environ['HEIDI_RUN_ID'], "
        "rounds=os.environ['ROUNDS'], out=os.environ['OUT_DIR']); "
        "os.makedirs('data', exist_ok=True); "
        "open('data/raw_round_1.jsonl', 'w').write(json.dumps(d) + '\\n')"
    )
    core = cores(backend, out_dir, rounds=2, mock_subprocesses=False,
                 stage_cmd_generate=shlex.join([sys.executable, "-c", probe]), run_id="probe_run")
    core.start("full")
    assert core.tick() == "VALIDATING"
    seen = json.loads((out_dir / "data" / "raw_round_1.jsonl").read_text())
    assert seen == {
        "argv": ["--round", "1", "--out-dir", str(out_dir)],
        "cwd": str(out_dir),
        "run": "probe_run",
        "rounds": "2",
        "out": str(out_dir),
    }


@pytest.mark.usefixtures("clean_env")
def test_unbalanced_stage_command_is_a_config_error(backend, cores, out_dir):
    with pytest.raises(ConfigError) as info:
        cores(backend, out_dir, stage_cmd_train="python 'oops")
    assert str(info.value) == (
        "invalid value for HEIDI_STAGE_CMD_TRAIN: \"python 'oops\" "
        "(unbalanced quote or trailing backslash)"
    )


# ----- resume -----------------------------------------------------------------------


@pytest.mark.usefixtures("clean_env")
def test_resume_continues_the_chain_and_cleans_temp_files(backend, cores, out_dir):
    first = cores(backend, out_dir, rounds=2)
    first.start("full")
    first.tick()
    first.tick()
    run_id = first.run_id
    first.shutdown()  # as after a crash: the state says TESTING
    assert json.loads((out_dir / "state" / "run_state.json").read_text())["state"] == "TESTING"
    leftovers = [out_dir / "data" / "raw_round_1.jsonl.77.1.tmp",
                 out_dir / "out_lora" / "round_1.tmp" / "adapter.bin"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    keep = out_dir / "data" / "clean_round_1.jsonl"
    keep.write_text("{}\n")
    lines_before = len(events(out_dir))

    second = cores(backend, out_dir, rounds=2)
    assert second.run_id == run_id
    restored = status(second)
    assert restored["state"] == "IDLE"
    assert restored["last_completed"] == {"round": 1, "stage": "validate"}
    assert restored["current_round"] == 1
    assert not leftovers[0].exists() and not (out_dir / "out_lora" / "round_1.tmp").exists()
    assert keep.exists()
    second.start("full")
    resumed = events(out_dir)[lines_before]
    assert resumed["event_type"] == "pipeline_resume"
    assert resumed["message"] == "resume round=1 stage=test"
    assert resumed["seq"] == lines_before + 1
    assert second.run_until_idle() == "IDLE"
    result = backend.verify_journal(str(out_dir))
    assert result.ok, result.reason
    assert [e["seq"] for e in events(out_dir)] == list(range(1, len(events(out_dir)) + 1))


@pytest.mark.usefixtures("clean_env")
def test_finished_run_refuses_start_until_rounds_grow(backend, cores, out_dir):
    first = cores(backend, out_dir, rounds=1)
    first.start("full")
    first.run_until_idle()
    with pytest.raises(TransitionError) as info:
        first.start("full")
    assert str(info.value) == "run complete: all 1 rounds done"
    first.shutdown()
    second = cores(backend, out_dir, rounds=2)
    second.start("full")
    tail = events(out_dir)[-2:]
    assert [(e["event_type"], e["message"], e["round"]) for e in tail] == [
        ("pipeline_resume", "resume round=2 stage=generate", 2),
        ("round_start", "round 2/2", 2),
    ]
    assert second.run_until_idle() == "IDLE"


@pytest.mark.usefixtures("clean_env")
def test_resume_keeps_a_sticky_error(backend, cores, out_dir):
    first = cores(backend, out_dir, scripts={"generate": ("--exit-code", "2")})
    first.start("full")
    first.run_until_idle()
    first.shutdown()
    second = cores(backend, out_dir)
    restored = status(second)
    assert restored["state"] == "ERROR"
    assert restored["last_error"] == "failed: exit code 2"
    assert restored["stage"] == "generate"


@pytest.mark.usefixtures("clean_env")
def test_resume_in_collect_mode_still_waits_for_train_now(backend, cores, out_dir):
    first = cores(backend, out_dir, rounds=1)
    first.start("collect")
    first.run_until_idle()
    first.shutdown()
    second = cores(backend, out_dir, rounds=1)
    assert second.train_now() is True
    assert second.run_until_idle() == "IDLE"
    assert types(out_dir)[-2:] == ["train_now_complete", "pipeline_complete"]


@pytest.mark.usefixtures("clean_env")
def test_run_id_that_does_not_match_the_run_is_rejected(backend, cores, out_dir):
    first = cores(backend, out_dir, run_id="run_a")
    first.shutdown()
    with pytest.raises(ConfigError) as info:
        cores(backend, out_dir, run_id="run_b")
    assert str(info.value) == "invalid value for RUN_ID: 'run_b' (OUT_DIR holds run 'run_a')"


@pytest.mark.usefixtures("clean_env")
def test_other_backend_resumes_the_run(backend, native, pure, cores, out_dir):
    other = pure if backend.name == "native" else native
    first = cores(backend, out_dir, rounds=1)
    first.start("full")
    first.tick()
    first.shutdown()
    second = cores(other, out_dir, rounds=1)
    second.start("full")
    assert second.run_until_idle() == "IDLE"
    assert backend.verify_journal(str(out_dir)).ok


# ----- the waiting rule, restarts and crash leftovers ----------------------------------


@pytest.mark.parametrize("tests_on", [True, False], ids=["tests_on", "tests_off"])
@pytest.mark.usefixtures("clean_env")
def test_status_says_whether_train_now_is_awaited(backend, cores, out_dir, tests_on):
    core = cores(backend, out_dir, rounds=1, run_unit_tests=tests_on)
    assert status(core)["waiting_for_train_now"] is False
    core.start("collect")
    core.tick()  # generate
    core.tick()  # validate: with tests on, the round is not collected yet
    assert status(core)["waiting_for_train_now"] is (not tests_on)
    assert core.train_now() is (not tests_on)
    assert status(core)["waiting_for_train_now"] is False
    assert list(status(core))[-1] == "waiting_for_train_now"  # after SPEC's keys


@pytest.mark.usefixtures("clean_env")
def test_crash_during_testing_of_a_collect_run_resumes_with_the_test(backend, cores, out_dir):
    first = cores(backend, out_dir, rounds=1, run_unit_tests=True)
    first.start("collect")
    first.tick()
    first.tick()
    first.shutdown()  # as after a crash: the state says TESTING
    second = cores(backend, out_dir, rounds=1, run_unit_tests=True)
    restored = status(second)
    assert restored["last_completed"] == {"round": 1, "stage": "validate"}
    assert restored["waiting_for_train_now"] is False
    assert second.train_now() is False
    second.start("collect")
    assert events(out_dir)[-1]["message"] == "resume round=1 stage=test"
    assert second.tick() == "IDLE"
    assert status(second)["waiting_for_train_now"] is True


@pytest.mark.usefixtures("clean_env")
def test_a_restart_before_any_stage_completed_journals_a_resume(backend, cores, out_dir):
    first = cores(backend, out_dir, rounds=1)
    first.start("full")
    first.shutdown()  # as after a crash before the first stage ended
    second = cores(backend, out_dir, rounds=1)
    second.start("collect")
    kinds = types(out_dir)
    assert kinds.count("pipeline_start") == 1
    resume = events(out_dir)[kinds.index("pipeline_resume")]
    assert resume["message"] == "resume round=1 stage=generate"
    assert status(second)["mode"] == "collect"
    assert second.run_until_idle() == "IDLE"
    assert backend.verify_journal(str(out_dir)).ok


@pytest.mark.usefixtures("clean_env")
def test_resume_removes_a_temporary_best_adapter_link(backend, cores, out_dir):
    first = cores(backend, out_dir, rounds=1)
    first.start("full")
    first.shutdown()
    (out_dir / "out_lora" / "round_1").mkdir(parents=True)
    tmp_link = out_dir / "best_adapter.4242.tmp"
    tmp_link.symlink_to("out_lora/round_1")
    tmp_file = out_dir / "notes.tmp"
    tmp_file.write_text("half")
    keep = out_dir / "README.txt"
    keep.write_text("mine")
    cores(backend, out_dir, rounds=1)
    assert not os.path.lexists(tmp_link) and not tmp_file.exists()
    assert keep.exists() and (out_dir / "out_lora" / "round_1").is_dir()


@pytest.mark.parametrize(("change", "problem"), [
    ({"state": "BOGUS"}, "invalid value for 'state'"),
    ({"state": 3}, "invalid value for 'state'"),
    ({"schema": "other/1"}, "invalid value for 'schema'"),
    ({"journal_head": None}, "invalid value for 'journal_head'"),
], ids=["unknown-state", "state-not-text", "foreign-schema", "no-head"])
@pytest.mark.usefixtures("clean_env")
def test_a_bad_state_file_is_refused_with_its_reason(backend, cores, out_dir, change, problem):
    cores(backend, out_dir, rounds=1).shutdown()
    path = out_dir / "state" / "run_state.json"
    saved = json.loads(path.read_text())
    saved.update(change)
    path.write_text(json.dumps(saved))
    before = path.read_bytes()
    with pytest.raises(JournalError) as info:
        cores(backend, out_dir, rounds=1)
    assert str(info.value) == f"invalid state file {path}: {problem}"
    assert path.read_bytes() == before
    del saved["run_id"]
    path.write_text(json.dumps(saved))
    with pytest.raises(JournalError) as info:
        cores(backend, out_dir, rounds=1)
    assert str(info.value) == f"invalid state file {path}: missing key 'run_id'"
    path.write_text("{" * 70_000)
    with pytest.raises(JournalError) as info:
        cores(backend, out_dir, rounds=1)
    assert str(info.value) == f"invalid state file {path}: not valid JSON"
