"""The validate stage end to end: reasons, masking, normalisation, dedup across rounds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from heidi_engine.io import read_jsonl, write_jsonl_atomic
from heidi_engine.stages import validate

FAKE_GITHUB_TOKEN = "ghp_" + "Zq8Lm2Xv7Rt4Yw1Kp9Hs3Dn6Bc5Fg0Ja2Eu7"
TEST_CODE = "def check(candidate):\n    assert candidate(2) == 4\n"


def sample(n: int, body: str | None = None, **changes) -> dict:
    """A schema-valid sample; each n gives a structurally different function."""
    statements = [
        "    total = 0\n    for i in range(x):\n        total += i * {n}\n    return total\n",
        "    items = sorted(str(x))\n    return ''.join(reversed(items)) * {n}\n",
        "    seen = set()\n    while x not in seen:\n        seen.add(x)\n        x = (x * {n}) % 97\n"
        "    return len(seen)\n",
        "    return [k for k in range({n}) if k % 3 == x % 3]\n",
        "    if x < 0:\n        raise ValueError('negative')\n    return bin(x).count('1') + {n}\n",
        "    words = {{}}\n    for w in str(x).split('0'):\n        words[w] = words.get(w, 0) + {n}\n"
        "    return max(words.values())\n",
    ]
    completion = body if body is not None else statements[n % len(statements)].format(n=n)
    row = {
        "id": f"s{n}", "task_id": f"task/{n}", "task_source": "procedural",
        "instruction": f"Write helper number {n}.",
        "prompt": f'def helper_{n}(x):\n    """Helper {n}."""\n', "completion": completion,
        "test": TEST_CODE, "entry_point": f"helper_{n}", "teacher": "reference", "round": 1,
        "metadata": {"family": "demo"},
    }
    row.update(changes)
    return row


def run_stage(out_dir, round_: int, env, capsys) -> tuple[int, str]:
    env.setenv("OUT_DIR", str(out_dir))
    code = validate.main(["--round", str(round_), "--out-dir", str(out_dir)])
    return code, capsys.readouterr().out


def write_raw(out_dir, round_: int, rows, extra_lines=()) -> None:
    path = out_dir / "data" / f"raw_round_{round_}.jsonl"
    write_jsonl_atomic(path, rows)
    if extra_lines:
        with open(path, "a") as fh:
            fh.writelines(line + "\n" for line in extra_lines)


def by_id(rows):
    return {r.get("id", r.get("raw")): r for r in rows}


def test_each_check_rejects_with_its_reason(out_dir, clean_env, capsys):
    rows = [
        sample(0),
        sample(1, body=f"    token = '{FAKE_GITHUB_TOKEN}'\n    return x * 2\n"),
        sample(2, metadata={"note": f"ci uses {FAKE_GITHUB_TOKEN}"}),
        sample(3, round="one"),
        sample(4, body="   \n"),
        sample(5, test=""),
        sample(6, test="assert True\n"),
        sample(7, body="    return x\n" + "    # pad\n" * 3000),
        sample(8, entry_point="helper_8); import os; (x"),
        sample(9, id="s9-dup", completion=sample(0)["completion"], instruction=sample(0)["instruction"]),
        sample(10, completion=sample(0)["completion"].replace("total", "acc"), id="s10-near",
               prompt=sample(0)["prompt"], instruction="A different instruction."),
        sample(11, body="    return x * 2\r\n\r\n\tpass  \r\n"),
    ]
    write_raw(out_dir, 1, rows, extra_lines=["{not json", f"garbage {FAKE_GITHUB_TOKEN}"])
    code, out = run_stage(out_dir, 1, clean_env, capsys)
    assert code == 0
    clean = by_id(read_jsonl(out_dir / "data" / "clean_round_1.jsonl"))
    rejected_rows = read_jsonl(out_dir / "data" / "rejected_round_1.jsonl")
    rejected = by_id(rejected_rows)
    reasons = {k: v["reject_reason"] for k, v in rejected.items()}
    assert set(clean) == {"s0", "s11"}
    assert reasons["s1"] == "secret" and reasons["s2"] == "secret"
    assert reasons["s3"] == "schema" and reasons["s4"] == "schema" and reasons["s8"] == "schema"
    assert reasons["s5"] == "no_tests" and reasons["s6"] == "no_tests"
    assert reasons["s7"] == "too_long"
    assert reasons["s9-dup"] == "duplicate"
    assert reasons["s10-near"] == "near_duplicate"
    assert sorted(r["reject_reason"] for r in rejected_rows if "raw" in r) == ["schema", "secret"]
    # The secret never reaches an output file or the progress output.
    raw_text = (out_dir / "data" / "rejected_round_1.jsonl").read_text()
    assert FAKE_GITHUB_TOKEN not in raw_text and "[REDACTED:github_token]" in raw_text
    assert FAKE_GITHUB_TOKEN not in out
    assert "github_token" in rejected["s1"]["secret_kinds"]
    # Normalisation is applied and recorded.
    fixed = clean["s11"]
    assert fixed["completion"] == "    return x * 2\n\n    pass\n"
    assert fixed["metadata"]["normalized"] == ["line_endings", "tabs", "trailing_whitespace"]
    assert clean["s0"]["metadata"]["normalized"] == []
    progress_lines = [json.loads(line[len("@heidi "):]) for line in out.splitlines()
                      if line.startswith("@heidi ")]
    assert progress_lines[-1]["counters_delta"]["rejected_secret"] == 3
    # Tests are on by default: no split yet.
    assert not (out_dir / "data" / "train_round_1.jsonl").exists()


def test_dedup_spans_rounds_and_reruns_do_not_see_themselves(out_dir, clean_env, capsys):
    write_raw(out_dir, 1, [sample(0), sample(1)])
    assert run_stage(out_dir, 1, clean_env, capsys)[0] == 0
    round2 = [sample(0, id="again", round=2), sample(2, round=2), sample(3, round=2)]
    write_raw(out_dir, 2, round2)
    assert run_stage(out_dir, 2, clean_env, capsys)[0] == 0
    clean_path = out_dir / "data" / "clean_round_2.jsonl"
    first = clean_path.read_bytes()
    assert [r["id"] for r in read_jsonl(clean_path)] == ["s2", "s3"]
    assert read_jsonl(out_dir / "data" / "rejected_round_2.jsonl")[0]["reject_reason"] == "duplicate"
    # A re-run of round 2 (e.g. after a crash) gives the same result.
    assert run_stage(out_dir, 2, clean_env, capsys)[0] == 0
    assert clean_path.read_bytes() == first
    # Without any snapshot the state is rebuilt from earlier rounds' clean files.
    shutil.rmtree(out_dir / "state")
    assert run_stage(out_dir, 2, clean_env, capsys)[0] == 0
    assert clean_path.read_bytes() == first


def test_split_is_written_when_tests_are_off(out_dir, clean_env, capsys):
    clean_env.setenv("RUN_UNIT_TESTS", "0")
    clean_env.setenv("VAL_RATIO", "0.25")
    write_raw(out_dir, 1, [sample(n) for n in range(6)])
    assert run_stage(out_dir, 1, clean_env, capsys)[0] == 0
    train = read_jsonl(out_dir / "data" / "train_round_1.jsonl")
    val = read_jsonl(out_dir / "data" / "val_round_1.jsonl")
    assert len(train) + len(val) == 6 and len(val) == 2


def test_missing_input_fails(out_dir, clean_env, capsys):
    code, _ = run_stage(out_dir, 1, clean_env, capsys)
    assert code == 1
    assert not (out_dir / "data" / "clean_round_1.jsonl").exists()


@pytest.mark.slow
def test_runs_as_a_module(out_dir, clean_env):
    write_raw(out_dir, 1, [sample(0)])
    proc = subprocess.run([sys.executable, "-m", "heidi_engine.stages.validate", "--round", "1",
                           "--out-dir", str(out_dir)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(read_jsonl(out_dir / "data" / "clean_round_1.jsonl")) == 1
