"""The test stage: sandboxed verdicts, fail-closed no_tests, outputs and split."""

from __future__ import annotations

import json

import pytest
from heidi_engine import sandbox
from heidi_engine.io import read_jsonl, write_jsonl_atomic
from heidi_engine.stages import test as test_stage

PROMPT = 'def double(x: int) -> int:\n    """Twice x."""\n'
TEST = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-3) == -6\n"


def sample(n: int, completion: str, test: str = TEST) -> dict:
    return {"id": f"s{n}", "task_id": f"t/{n}", "task_source": "file", "instruction": "Double it.",
            "prompt": PROMPT, "completion": completion, "test": test, "entry_point": "double",
            "teacher": "reference", "round": 1, "metadata": {"normalized": []}}


def run(out_dir, env, capsys) -> tuple[int, str]:
    env.setenv("OUT_DIR", str(out_dir))
    code = test_stage.main(["--round", "1", "--out-dir", str(out_dir)])
    return code, capsys.readouterr().out


def test_verdicts_outputs_and_split(out_dir, clean_env, capsys):
    clean_env.setenv("HEIDI_SANDBOX_TIMEOUT_S", "2")
    clean_env.setenv("HEIDI_SANDBOX_WORKERS", "2")
    clean_env.setenv("VAL_RATIO", "0.5")
    rows = [sample(0, "    return 2 * x\n"), sample(1, "    return x + x\n"),
            sample(2, "    return x * 3\n"), sample(3, "    while True:\n        pass\n"),
            sample(4, "    return 2 * x\n", test=""), sample(5, "    return 2 * x\n", test="pass\n"),
            sample(6, "    raise SystemExit(0)\n"), sample(7, "    import os\n    os._exit(0)\n")]
    write_jsonl_atomic(out_dir / "data" / "clean_round_1.jsonl", rows)
    code, out = run(out_dir, clean_env, capsys)
    assert code == 0
    tested = read_jsonl(out_dir / "data" / "tested_round_1.jsonl")
    failed = {r["id"]: r for r in read_jsonl(out_dir / "data" / "test_failed_round_1.jsonl")}
    assert [r["id"] for r in tested] == ["s0", "s1"]
    assert all(r["test_result"]["passed"] and r["test_result"]["reason"] == "passed" for r in tested)
    assert failed["s2"]["reject_reason"] == "test_failed"
    assert "AssertionError" in failed["s2"]["test_result"]["reason"]
    assert failed["s3"]["test_result"]["reason"] == "timed out after 2.0 s"
    assert failed["s4"]["reject_reason"] == "no_tests" and failed["s5"]["reject_reason"] == "no_tests"
    # Exiting 0 is no pass: only check() returning in the judge is.
    assert failed["s6"]["test_result"]["reason"] == "failed: SystemExit: 0"
    assert failed["s7"]["reject_reason"] == "test_failed"
    for record in list(failed.values()) + tested:
        assert set(record["test_result"]) == {"passed", "reason", "duration_ms"}
    train = read_jsonl(out_dir / "data" / "train_round_1.jsonl")
    val = read_jsonl(out_dir / "data" / "val_round_1.jsonl")
    assert sorted(r["id"] for r in train + val) == ["s0", "s1"] and len(val) == 1
    events = [json.loads(line[len("@heidi "):]) for line in out.splitlines()
              if line.startswith("@heidi ")]
    assert events[-1]["counters_delta"] == {"tests_passed": 2, "tests_failed": 4, "tests_missing": 2}


def test_missing_clean_file_fails(out_dir, clean_env, capsys):
    code, _ = run(out_dir, clean_env, capsys)
    assert code == 1
    assert not (out_dir / "data" / "tested_round_1.jsonl").exists()


def test_empty_round_writes_empty_outputs(out_dir, clean_env, capsys):
    write_jsonl_atomic(out_dir / "data" / "clean_round_1.jsonl", [])
    code, _ = run(out_dir, clean_env, capsys)
    assert code == 0
    assert read_jsonl(out_dir / "data" / "tested_round_1.jsonl") == []
    assert read_jsonl(out_dir / "data" / "train_round_1.jsonl") == []


@pytest.mark.parametrize("level", ["auto", "bubblewrap"])
def test_refuses_to_run_without_isolation(out_dir, clean_env, capsys, monkeypatch, level):
    monkeypatch.setattr(sandbox, "_probed", {})  # probe again, without bwrap on PATH
    clean_env.setenv("PATH", "/nonexistent")
    clean_env.setenv("HEIDI_SANDBOX", level)
    clean_env.setenv("OUT_DIR", str(out_dir))
    write_jsonl_atomic(out_dir / "data" / "clean_round_1.jsonl", [sample(0, "    return 2 * x\n")])
    code = test_stage.main(["--round", "1", "--out-dir", str(out_dir)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("test: error: refusing to run untrusted code") and len(err.splitlines()) == 1
    assert "apt-get install bubblewrap" in err and "HEIDI_SANDBOX=rlimits-unsafe" in err
    assert not (out_dir / "data" / "tested_round_1.jsonl").exists()
