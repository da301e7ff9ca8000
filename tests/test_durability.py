"""Durability: crash at any moment, resume, lose nothing (SPEC §5-§7, design "Durability").

Runners are real processes (``stage_scripts/durable_runner.py`` over either backend, and
``heidid``) driving fast stage programs (``stage_scripts/fake_stage.py --chain``) that write
realistic round files. They are killed with SIGKILL at named fault points
(``HEIDI_FAULT_POINT``) and at random moments, then resumed; every finished run must pass
``check_run``. ``HEIDI_FAULT_ITERATIONS=500`` runs the random-kill tests longer by hand.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from heidi_engine.errors import ConfigError, JournalError, RunLockedError
from heidi_engine.server.launcher import find_heidid

SCRIPTS = Path(__file__).parent / "stage_scripts"
STAGE_SCRIPT = SCRIPTS / "fake_stage.py"
RUNNER_SCRIPT = SCRIPTS / "durable_runner.py"
REPO = Path(__file__).resolve().parent.parent
STAGES = ("generate", "validate", "test", "train", "eval")
ROUNDS = 2
SAMPLES = 12
RANDOM_KILLS = int(os.environ.get("HEIDI_FAULT_ITERATIONS", "6"))

sys.path.insert(0, str(SCRIPTS))
from fake_stage import expected_partition  # noqa: E402

# ----- running --------------------------------------------------------------------------


def stage_env(out_dir: Path, *stage_options: str, **extra: str) -> dict[str, str]:
    """The environment of a runner over out_dir: durable stages (the stand-in's --chain,
    with ``stage_options``), small rounds, fsync on."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HEIDI_") or k in ("HEIDI_BACKEND", "HEIDI_REQUIRE_NATIVE")}
    env.update({
        "OUT_DIR": str(out_dir),
        "ROUNDS": str(ROUNDS),
        "SAMPLES_PER_ROUND": str(SAMPLES),
        "PIPELINE_MODE": "full",
        "RUN_UNIT_TESTS": "1",
        "HEIDI_FSYNC": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(REPO / "python")]
            + [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
    })
    for stage in STAGES:
        env[f"HEIDI_STAGE_CMD_{stage.upper()}"] = shlex.join(
            [sys.executable, str(STAGE_SCRIPT), stage, "--chain", *stage_options])
    env.update(extra)
    return env


def start_runner(backend_name: str, out_dir: Path, *stage_options: str,
                 **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RUNNER_SCRIPT), "--backend", backend_name, "--out-dir", str(out_dir)],
        env=stage_env(out_dir, *stage_options, **extra), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def reap(proc: subprocess.Popen, timeout_s: float = 120.0) -> tuple[int, str]:
    """Wait for proc; its exit code and stderr (its pipes closed)."""
    _, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, err.decode()


def kill(proc: subprocess.Popen) -> None:
    proc.kill()
    reap(proc)


def run_runner(backend_name: str, out_dir: Path, **extra: str) -> tuple[int, str]:
    return reap(start_runner(backend_name, out_dir, **extra))


def resume_to_completion(backend_name: str, out_dir: Path) -> None:
    code, err = run_runner(backend_name, out_dir)
    assert code == 0, err


# ----- checking -------------------------------------------------------------------------


def read_events(out_dir: Path) -> list[dict]:
    path = out_dir / "journal" / "events.jsonl"
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def read_ids(out_dir: Path, kind: str, round_: int) -> list[str]:
    path = out_dir / "data" / f"{kind}_round_{round_}.jsonl"
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def expected_ids(round_: int, kind: str) -> list[str]:
    """The ids a complete, correct round file of this kind holds, in file order."""
    def want(index: int) -> bool:
        where = expected_partition(index)
        tested = not where["rejected"] and not where["test_failed"]
        return {
            "raw": True,
            "clean": not where["rejected"],
            "rejected": where["rejected"],
            "tested": tested,
            "test_failed": not where["rejected"] and where["test_failed"],
            "train": tested and not where["val"],
            "val": tested and where["val"],
        }[kind]
    return [f"r{round_}-{i:05d}" for i in range(SAMPLES) if want(i)]


def check_run(verify_journal, out_dir: Path, rounds: int = ROUNDS) -> None:
    """Everything a finished run after any number of crashes must satisfy."""
    result = verify_journal(str(out_dir))
    assert result.ok, result.reason
    events = read_events(out_dir)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

    # No stage is recorded complete twice, and every stage of every round completed.
    completed = Counter((e["round"], e["stage"]) for e in events
                        if e["event_type"] == "stage_end" and e["level"] == "info")
    assert completed == Counter({(r, s): 1 for r in range(1, rounds + 1) for s in STAGES})
    assert [e["event_type"] for e in events].count("pipeline_complete") == 1
    assert events[-1]["event_type"] == "pipeline_complete"

    # No sample lost or duplicated across the round files.
    seen: set[str] = set()
    for round_ in range(1, rounds + 1):
        for kind in ("raw", "clean", "rejected", "tested", "test_failed", "train", "val"):
            assert read_ids(out_dir, kind, round_) == expected_ids(round_, kind), (kind, round_)
        raw = read_ids(out_dir, "raw", round_)
        assert not seen.intersection(raw)
        seen.update(raw)
        metrics = json.loads((out_dir / f"out_lora/round_{round_}/metrics.json").read_text())
        assert metrics["train_ids"] == expected_ids(round_, "train")

    # The state agrees with the journal.
    state = json.loads((out_dir / "state" / "run_state.json").read_text())
    last_line = (out_dir / "journal" / "events.jsonl").read_bytes().splitlines(keepends=True)[-1]
    assert state["journal_head"] == {"seq": len(events),
                                     "hash": hashlib.sha256(last_line).hexdigest()}
    assert state["state"] == "IDLE" and state["stage"] is None
    assert state["last_error"] is None
    assert state["current_round"] == rounds
    assert state["last_completed"] == {"round": rounds, "stage": "eval"}
    counts: dict[str, int] = {}
    for event in events:
        if event["event_type"] == "round_start":
            counts = {}
        if event["event_type"] == "stage_end" and event["level"] == "info":
            counts.update(event["counters_delta"])
    assert {k: v for k, v in state["counts"].items() if k in counts} == counts

    # A crash's temp files are gone once a runner has resumed.
    leftovers = [p for p in out_dir.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


# ----- kill -9 at named points ----------------------------------------------------------

# Lines each durable stage prints per round (begin, progress..., done), for nth choices.
STAGE_POINTS = [f"stage_started.{s}:1" for s in STAGES]
STAGE_POINTS += [f"stage_line.{s}:2" for s in STAGES]
STAGE_POINTS += [f"stage_exited.{s}:1" for s in STAGES]
STAGE_POINTS += [f"stage_ended.{s}:1" for s in STAGES]
STAGE_POINTS += [f"stage_committed.{s}:2" for s in STAGES]  # in round 2
IO_POINTS = [
    "journal_torn:1", "journal_torn:9", "journal_torn:40",
    "journal_written:2", "journal_written:23",
    "replace_torn:1", "replace_torn:14",
    "replace_written:3", "replace_written:19",
    "replace_renamed:8", "replace_renamed:21",
]
KILL_POINTS = STAGE_POINTS + IO_POINTS


def test_at_least_thirty_distinct_kill_points():
    assert len(set(KILL_POINTS)) >= 30


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_at_point_then_resume(backend, out_dir, point):
    code, err = run_runner(backend.name, out_dir, HEIDI_FAULT_POINT=point)
    assert code == -signal.SIGKILL, f"the fault point {point} was not reached: {code} {err}"
    after_crash = backend.verify_journal(str(out_dir))
    # A crash leaves a verifiable journal, at worst with a torn last line.
    assert after_crash.ok or (after_crash.reason.endswith("no trailing newline")
                              and after_crash.first_bad_line == after_crash.lines + 1)
    resume_to_completion(backend.name, out_dir)
    check_run(backend.verify_journal, out_dir)


# ----- heidid as a black box ------------------------------------------------------------


def start_heidid(out_dir: Path, *stage_options: str, **extra: str) -> subprocess.Popen:
    binary = find_heidid()
    if binary is None:
        from conftest import missing_native

        missing_native("heidid (HEIDID, beside heidi_cpp, scripts dir or PATH)")
    # stdout (the "listening" line) goes to a file, so readiness can be polled.
    with open(out_dir.parent / "heidid.out", "wb") as ready_file:
        return subprocess.Popen(
            [str(binary), "--out-dir", str(out_dir), "--port", "0",
             "--token-file", str(out_dir.parent / "heidid.token")],
            env=stage_env(out_dir, *stage_options, **extra), stdout=ready_file,
            stderr=subprocess.PIPE,
        )


def heidid_ready(out_dir: Path) -> bool:
    """heidid printed its listening line (its SIGTERM handling is set up by then)."""
    return b"listening on" in (out_dir.parent / "heidid.out").read_bytes()


def run_is_complete(out_dir: Path) -> bool:
    try:
        state = json.loads((out_dir / "state" / "run_state.json").read_text())
    except (OSError, ValueError):
        return False
    return state["state"] == "IDLE" and state["last_completed"] == {"round": ROUNDS,
                                                                    "stage": "eval"}


def wait_heidid(proc: subprocess.Popen, out_dir: Path, timeout_s: float = 60.0) -> str:
    """Until heidid dies ("died") or it is ready and its run complete ("complete")."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "died"
        if run_is_complete(out_dir) and heidid_ready(out_dir):
            return "complete"
        time.sleep(0.03)
    kill(proc)
    raise AssertionError("heidid neither finished the run nor died")


def finish_with_heidid(out_dir: Path) -> None:
    proc = start_heidid(out_dir)
    outcome = wait_heidid(proc, out_dir)
    if outcome == "complete":
        proc.send_signal(signal.SIGTERM)
    code, err = reap(proc, 20)
    assert (outcome, code) == ("complete", 0), err


@pytest.mark.slow
@pytest.mark.native
@pytest.mark.daemon
@pytest.mark.parametrize("point", KILL_POINTS)
def test_heidid_kill_at_point_then_resume(native, out_dir, point):
    proc = start_heidid(out_dir, HEIDI_FAULT_POINT=point)
    outcome = wait_heidid(proc, out_dir)
    if outcome == "complete":
        # A point after the last state write: the run is complete just before the kill.
        try:
            proc.wait(timeout=1.0)
            outcome = "died"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
    code, err = reap(proc)
    assert (outcome, code) == ("died", -signal.SIGKILL), f"{point} not reached: {err}"
    finish_with_heidid(out_dir)
    check_run(native.verify_journal, out_dir)


# ----- kill -9 at random moments --------------------------------------------------------


def random_kill_runs(start, finish, verify_journal, base: Path, kills_wanted: int) -> int:
    """Kill runners at random moments until kills_wanted kills; every run must end well."""
    rng = random.Random(int(os.environ.get("HEIDI_FAULT_SEED", "20260101")))
    kills = 0
    run_number = 0
    while kills < kills_wanted:
        run_number += 1
        out_dir = base / f"run{run_number}"
        out_dir.mkdir()
        while kills < kills_wanted:
            proc = start(out_dir)
            try:
                proc.wait(timeout=rng.uniform(0.05, 2.0))
            except subprocess.TimeoutExpired:
                kill(proc)
                kills += 1
                continue
            code, err = reap(proc)
            assert code == 0, err
            break
        finish(out_dir)
        check_run(verify_journal, out_dir)
    return kills


@pytest.mark.slow
def test_random_kills_then_resume(backend, tmp_path):
    def start(out_dir: Path) -> subprocess.Popen:
        return start_runner(backend.name, out_dir, "--delay", "0.005")

    assert random_kill_runs(start, lambda d: resume_to_completion(backend.name, d),
                            backend.verify_journal, tmp_path, RANDOM_KILLS) == RANDOM_KILLS


@pytest.mark.slow
@pytest.mark.native
@pytest.mark.daemon
def test_heidid_random_kills_then_resume(native, tmp_path):
    def start(out_dir: Path) -> subprocess.Popen:
        proc = start_heidid(out_dir, "--delay", "0.005")
        # heidid keeps serving a finished run: end it once the run is complete.
        threading.Thread(target=_terminate_when_complete, args=(proc, out_dir),
                         daemon=True).start()
        return proc

    assert random_kill_runs(start, finish_with_heidid, native.verify_journal, tmp_path,
                            RANDOM_KILLS) == RANDOM_KILLS


def _terminate_when_complete(proc: subprocess.Popen, out_dir: Path) -> None:
    if wait_heidid(proc, out_dir) == "complete":
        proc.send_signal(signal.SIGTERM)


# ----- the run lock ---------------------------------------------------------------------


def make_config(backend, out_dir: Path, **overrides):
    env = stage_env(out_dir)
    commands = {f"stage_cmd_{s}": env[f"HEIDI_STAGE_CMD_{s.upper()}"] for s in STAGES}
    overrides = {"rounds": ROUNDS, "samples_per_round": SAMPLES, **commands, **overrides}
    return backend.Config.from_env(out_dir=str(out_dir), **overrides)


@pytest.mark.usefixtures("clean_env")
def test_second_core_on_a_directory_is_refused_naming_the_holder(backend, native, pure,
                                                                 out_dir):
    holder = backend.Core(make_config(backend, out_dir))
    try:
        for other in (native, pure):
            with pytest.raises(RunLockedError) as info:
                other.Core(make_config(other, out_dir))
            assert str(info.value) == (f"run directory {out_dir.resolve()} is in use by "
                                       f"another runner (pid {os.getpid()})")
        # Read-only tools need no lock.
        assert backend.verify_journal(str(out_dir)).ok
        assert json.loads((out_dir / "state" / "run_state.json").read_text())["state"] == "IDLE"
    finally:
        holder.shutdown()
    backend.Core(make_config(backend, out_dir)).shutdown()  # released by shutdown


@pytest.mark.usefixtures("clean_env")
def test_dropped_core_releases_the_lock(backend, out_dir):
    backend.Core(make_config(backend, out_dir))  # no shutdown: destroyed at once
    backend.Core(make_config(backend, out_dir)).shutdown()


def test_a_killed_holder_leaves_no_stale_lock(backend, out_dir):
    proc = start_runner(backend.name, out_dir, "--delay", "0.05")
    assert proc.stdout.readline() == b"opened\n"
    assert (out_dir / "state" / "run.lock").read_text() == f"{proc.pid}\n"
    kill(proc)
    resume_to_completion(backend.name, out_dir)
    check_run(backend.verify_journal, out_dir)


@pytest.mark.parametrize("kinds", [("native", "native"), ("python", "python"),
                                   ("native", "python")])
def test_two_runners_started_at_once_exactly_one_runs(kinds, out_dir):
    if "native" in kinds:
        need_native()
    procs = [start_runner(kind, out_dir, "--delay", "0.02") for kind in kinds]
    results = [reap(proc) for proc in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 3], results
    winner = next(p for p, (code, _) in zip(procs, results) if code == 0)
    loser_err = next(err for code, err in results if code == 3)
    assert f"is in use by another runner (pid {winner.pid})" in loser_err
    check_run(python_verify_journal, out_dir)


@pytest.mark.native
@pytest.mark.daemon
def test_heidid_and_a_runner_on_one_directory_exactly_one_runs(native, out_dir):
    daemon = start_heidid(out_dir, "--delay", "0.02")
    try:
        deadline = time.monotonic() + 20
        while not (out_dir / "state" / "run.lock").exists() or not (
                out_dir / "state" / "run.lock").read_text().strip():
            assert time.monotonic() < deadline and daemon.poll() is None
            time.sleep(0.02)
        code, err = run_runner("native", out_dir)
        assert code == 3 and f"(pid {daemon.pid})" in err
        assert wait_heidid(daemon, out_dir) == "complete"
    finally:
        daemon.send_signal(signal.SIGTERM)
        reap(daemon, 20)
    check_run(native.verify_journal, out_dir)


def need_native() -> None:
    """Skip without heidi_cpp, unless CI requires it (then the import fails the test)."""
    if os.environ.get("HEIDI_REQUIRE_NATIVE") == "1":
        import heidi_cpp  # noqa: F401
    else:
        pytest.importorskip("heidi_cpp")


def python_verify_journal(path: str):
    from heidi_engine import backend as backend_mod
    return backend_mod.load("python").verify_journal(path)


# ----- no stage outlives its runner -----------------------------------------------------


def _stage_alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"  # a zombie waiting for its reaper runs nothing


@pytest.mark.parametrize("kind", ["native", "python", "heidid"])
def test_kill_of_the_runner_leaves_no_stage_running(kind, out_dir, tmp_path):
    if kind != "python":
        need_native()
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    options = ("--delay", "0.2", "--pid-dir", str(pid_dir))
    proc = start_heidid(out_dir, *options) if kind == "heidid" else start_runner(
        kind, out_dir, *options)
    deadline = time.monotonic() + 30
    while not list(pid_dir.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    stage_pid = int(next(pid_dir.iterdir()).name.split("-")[1])
    time.sleep(0.1)
    # The run lock's descriptor is close-on-exec: the stage does not hold it.
    lock = str((out_dir / "state" / "run.lock").resolve())
    held = [os.readlink(fd) for fd in Path(f"/proc/{stage_pid}/fd").iterdir()]
    assert lock not in held
    kill(proc)
    deadline = time.monotonic() + 5
    while _stage_alive(stage_pid):
        assert time.monotonic() < deadline, "a stage outlived its runner"
        time.sleep(0.02)


# ----- resume checks the journal first --------------------------------------------------


def _snapshot(out_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out_dir)): p.read_bytes() for p in sorted(out_dir.rglob("*"))
            if p.is_file() and p.name != "run.lock"}


def _half_run(backend, out_dir: Path) -> None:
    core = backend.Core(make_config(backend, out_dir, mock_subprocesses=True, fsync=False))
    core.start("full")
    for _ in range(3):
        core.tick()
    core.shutdown()


def _edit(lines: list[bytes]) -> list[bytes]:
    lines[2] = lines[2].replace(b"generate round 1", b"generate round 9")
    return lines


def _reorder(lines: list[bytes]) -> list[bytes]:
    lines[3], lines[4] = lines[4], lines[3]
    return lines


def _truncate(lines: list[bytes]) -> list[bytes]:
    return lines[:-3]


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("tamper, line, reason", [
    (_edit, 4, "line 4: prev_hash mismatch"),
    (_reorder, 4, "line 4: seq 5, expected 4"),
    (_truncate, 6, "journal ends at seq 5 before state head seq 8"),
])
def test_a_journal_failing_verification_stops_the_resume(backend, out_dir, tamper, line,
                                                          reason):
    _half_run(backend, out_dir)
    journal = out_dir / "journal" / "events.jsonl"
    journal.write_bytes(b"".join(tamper(journal.read_bytes().splitlines(keepends=True))))
    (out_dir / "data").mkdir(exist_ok=True)
    (out_dir / "data" / "raw_round_1.jsonl.9.1.tmp").write_text("half")
    before = _snapshot(out_dir)
    with pytest.raises(JournalError) as info:
        backend.Core(make_config(backend, out_dir, mock_subprocesses=True))
    assert str(info.value) == (
        f"cannot resume {out_dir.resolve()}: journal {out_dir.resolve()}/journal/events.jsonl "
        f"fails verification at line {line} ({reason}); nothing was changed")
    assert _snapshot(out_dir) == before
    # The lock was released: a later runner is refused for the journal, not the lock.
    with pytest.raises(JournalError):
        backend.Core(make_config(backend, out_dir, mock_subprocesses=True))


# ----- journal lines after the state's head -----------------------------------------------


@pytest.mark.usefixtures("clean_env")
def test_lines_after_the_state_head_count_as_done(backend, out_dir):
    config = make_config(backend, out_dir)
    core = backend.Core(config)
    core.start("full")
    core.tick()  # generate
    stale_state = (out_dir / "state" / "run_state.json").read_bytes()
    core.tick()  # validate: its stage_end reaches the journal...
    core.shutdown()
    (out_dir / "state" / "run_state.json").write_bytes(stale_state)  # ...its state is lost

    resumed = backend.Core(config)
    status = json.loads(resumed.get_status_json())
    assert status["last_completed"] == {"round": 1, "stage": "validate"}
    assert status["counts"]["clean_lines"] == len(expected_ids(1, "clean"))
    assert status["counts"]["rejected_lines"] == len(expected_ids(1, "rejected"))
    resumed.start("full")
    assert read_events(out_dir)[-1]["message"] == "resume round=1 stage=test"
    assert resumed.run_until_idle() == "IDLE"
    resumed.shutdown()
    check_run(backend.verify_journal, out_dir)


@pytest.mark.usefixtures("clean_env")
def test_an_error_after_the_state_head_is_restored(backend, out_dir, tmp_path):
    failing = shlex.join([sys.executable, "-c", "raise SystemExit(4)"])
    config = make_config(backend, out_dir, stage_cmd_validate=failing)
    core = backend.Core(config)
    core.start("full")
    core.tick()
    stale_state = (out_dir / "state" / "run_state.json").read_bytes()
    assert core.tick() == "ERROR"
    core.shutdown()
    (out_dir / "state" / "run_state.json").write_bytes(stale_state)
    status = json.loads(backend.Core(config).get_status_json())
    assert (status["state"], status["stage"], status["last_error"]) == (
        "ERROR", "validate", "failed: exit code 4")


@pytest.mark.usefixtures("clean_env")
def test_a_journal_without_a_state_file_is_replayed(backend, out_dir):
    config = make_config(backend, out_dir)
    core = backend.Core(config)
    core.start("full")
    core.tick()
    core.tick()
    core.shutdown()
    (out_dir / "state" / "run_state.json").unlink()
    resumed = backend.Core(config)
    assert json.loads(resumed.get_status_json())["last_completed"] == {"round": 1,
                                                                        "stage": "validate"}
    resumed.start("full")
    assert resumed.run_until_idle() == "IDLE"
    resumed.shutdown()
    check_run(backend.verify_journal, out_dir)


# ----- write errors ---------------------------------------------------------------------


def assert_files_valid(verify_journal, out_dir: Path) -> dict:
    """After a write error: the journal verifies, the state file is whole; returns the state."""
    result = verify_journal(str(out_dir))
    assert result.ok, result.reason
    state = json.loads((out_dir / "state" / "run_state.json").read_text())
    assert state["schema"] == "heidi.run_state/1"
    for path in (out_dir / "data").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            json.loads(line)
    return state


EIO_POINTS = [
    "journal_torn:9:eio", "journal_written:5:eio", "replace_torn:4:eio",
    "replace_written:7:eio", "replace_renamed:2:eio", "stage_line.test:2:eio",
    "stage_started.eval:1:eio", "stage_ended.train:1:eio",
]


@pytest.mark.parametrize("point", EIO_POINTS)
def test_eio_puts_the_core_in_error_and_resume_completes(backend, out_dir, point):
    code, err = run_runner(backend.name, out_dir, HEIDI_FAULT_POINT=point)
    assert code == 1 and "Input/output error" in err, err
    assert_files_valid(backend.verify_journal, out_dir)
    errors = [e for e in read_events(out_dir) if e["event_type"] == "pipeline_error"]
    assert errors and "Input/output error" in errors[-1]["message"]
    resume_to_completion(backend.name, out_dir)
    check_run(backend.verify_journal, out_dir)


def test_a_malformed_fault_point_is_a_config_error(backend, out_dir):
    code, err = run_runner(backend.name, out_dir, HEIDI_FAULT_POINT="journal_torn")
    assert code != 0
    assert ("invalid value for HEIDI_FAULT_POINT: 'journal_torn' "
            "(expected <point>:<nth>[:kill|eio], nth >= 1)") in err
    assert ConfigError.__name__ in err


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (skips when mounting is not permitted here)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test: {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill_disk(path: Path) -> None:
    """Write until the filesystem is full (ENOSPC), in ever smaller pieces."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (65536, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.mark.usefixtures("clean_env")
def test_full_disk_mid_run_then_space_freed_resume_completes(backend, small_disk):
    out_dir = small_disk / "out"
    core = backend.Core(make_config(backend, out_dir))
    core.start("full")
    assert core.tick() == "VALIDATING"
    ballast = small_disk / "ballast"
    fill_disk(ballast)
    assert core.run_until_idle() == "ERROR"
    status = json.loads(core.get_status_json())
    assert status["state"] == "ERROR"
    assert "No space left on device" in status["last_error"]
    core.shutdown()
    assert_files_valid(backend.verify_journal, out_dir)
    ballast.unlink()
    resume_to_completion(backend.name, out_dir)
    check_run(backend.verify_journal, out_dir)


@pytest.mark.usefixtures("clean_env")
def test_full_disk_error_clears_with_start_on_the_same_core(backend, small_disk):
    out_dir = small_disk / "out"
    core = backend.Core(make_config(backend, out_dir))
    core.start("full")
    core.tick()
    fill_disk(small_disk / "ballast")
    assert core.run_until_idle() == "ERROR"
    (small_disk / "ballast").unlink()
    core.start("full")
    assert core.run_until_idle() == "IDLE"
    core.shutdown()
    result = backend.verify_journal(str(out_dir))
    assert result.ok, result.reason
    events = read_events(out_dir)
    completed = Counter((e["round"], e["stage"]) for e in events
                        if e["event_type"] == "stage_end" and e["level"] == "info")
    assert set(completed.values()) == {1} and len(completed) == ROUNDS * len(STAGES)


EACCES_SCENARIO = """
import json, os, sys
from heidi_engine import backend
engine = backend.load(sys.argv[1])
core = engine.Core(engine.Config.from_env())
core.start("full")
core.tick()
os.chmod(os.path.join(os.environ["OUT_DIR"], "state"), 0o555)
final = core.tick()
os.chmod(os.path.join(os.environ["OUT_DIR"], "state"), 0o755)
print(json.dumps({"final": final, "status": json.loads(core.get_status_json())}))
core.shutdown()
"""


def test_permission_denied_puts_the_core_in_error_and_resume_completes(backend, out_dir,
                                                                       unprivileged):
    # Root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH obeys permission bits like any uid.
    done = subprocess.run(
        [*unprivileged, sys.executable, "-c", EACCES_SCENARIO, backend.name],
        env=stage_env(out_dir), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["final"] == "ERROR"
    assert "Permission denied" in outcome["status"]["last_error"]
    assert_files_valid(backend.verify_journal, out_dir)
    resume_to_completion(backend.name, out_dir)
    check_run(backend.verify_journal, out_dir)


# ----- buffered journal (HEIDI_FSYNC=0) write errors -----------------------------------


def test_a_failed_buffered_write_cuts_the_journal_back_and_stops_the_writer(backend, small_disk):
    path = small_disk / "journal" / "events.jsonl"
    journal = backend.JournalWriter(path, "run_full_disk", fsync=False)
    for i in range(20):
        journal.append("progress", f"written {i}")
    good_head = journal.head  # writes the buffered lines
    good_bytes = path.read_bytes()
    fill_disk(small_disk / "ballast")
    with pytest.raises(JournalError) as info:
        for i in range(10_000):  # until the buffer is written to the full disk
            journal.append("progress", f"lost {i} " + "x" * 200)
    assert str(info.value) == f"cannot write journal {path}: No space left on device"
    # Whatever part of the buffer reached the disk is cut off again.
    assert path.read_bytes() == good_bytes
    # The writer counted lines that never reached the file: it refuses to go on.
    stopped = f"journal {path} stopped after a write error: No space left on device"
    for use in (lambda: journal.append("progress", "more"), lambda: journal.head, journal.flush):
        with pytest.raises(JournalError) as info:
            use()
        assert str(info.value) == stopped
    journal.close()
    assert journal.closed
    (small_disk / "ballast").unlink()
    with backend.JournalWriter(path, "run_full_disk", fsync=False) as reopened:
        assert reopened.head == good_head
        assert reopened.append("progress", "after") == good_head[0] + 1
    assert backend.verify_journal(path) == backend.VerifyResult(True, good_head[0] + 1, 0, "ok")


@pytest.mark.parametrize("point", ["journal_flush_torn:2:eio", "journal_flush_torn:9:eio",
                                   "journal_flush_torn:5"])
def test_a_failed_buffered_journal_write_then_resume_completes(backend, out_dir, point):
    code, err = run_runner(backend.name, out_dir, HEIDI_FSYNC="0", HEIDI_FAULT_POINT=point)
    if point.endswith(":eio"):
        journal = out_dir / "journal" / "events.jsonl"
        assert code == 1, err
        assert f"io error: cannot write journal {journal}: Input/output error" in err
        # The state file was not written past the journal: both verify together.
        assert_files_valid(backend.verify_journal, out_dir)
    else:
        assert code == -signal.SIGKILL, f"the fault point {point} was not reached: {code} {err}"
    resume_to_completion(backend.name, out_dir)
    check_run(backend.verify_journal, out_dir)
