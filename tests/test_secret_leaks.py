"""No secret at rest or in any output: secrets planted in every channel never reach a file.

A collect round runs for real on each backend (task file, reference teacher, validate,
sandboxed tests) with secrets planted in: a teacher answer, what a tested program prints
on stdout and stderr, its exception text and assertion message, and a stage's ``@heidi``
lines (message, event type, counter name, artifact path) and plain output. Afterwards the
whole OUT_DIR, an export of it, an eval report written the way the eval stage writes it,
the API's answers and the CLI's output are searched for every planted secret.
"""

from __future__ import annotations

import json
import random
import shlex
import string
import sys
import time
from pathlib import Path

import pytest
from heidi_engine.io import read_jsonl, write_json_atomic, write_jsonl_atomic

pytestmark = pytest.mark.slow

ALNUM = string.ascii_letters + string.digits
_rng = random.Random(2024)


def _rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


# Assembled at run time: no credential-shaped literal in this file or in the task code.
AWS_KEY = "AK" + "IA" + _rand(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
GITHUB_TOKEN = "gh" + "p_" + _rand(36)
STRIPE_KEY = "rk" + "_live_" + _rand(24)
SLACK_TOKEN = "xo" + "xb-" + str(_rng.randrange(10**11, 10**12)) + "-" + _rand(24)
DB_PASSWORD = _rand(14) + "!9"
PEM_BODY = [_rand(64, ALNUM + "+/") for _ in range(3)]
PEM = "\n".join(["-----BEGIN " + "RSA PRIVATE KEY-----", *PEM_BODY, "-----END " + "RSA PRIVATE KEY-----"])
SECRETS = [AWS_KEY, GITHUB_TOKEN, STRIPE_KEY, SLACK_TOKEN, DB_PASSWORD, *PEM_BODY]

PROMPT = "def {name}(x: int) -> int:\n    \"\"\"Twice x.\"\"\"\n"
TEST = "def check(candidate):\n    assert candidate(2) == 4\n"


def _split(text: str) -> str:
    """A Python expression that builds ``text`` without holding it as one literal."""
    return " + ".join(repr(text[i:i + 3]) for i in range(0, len(text), 3))


def task_rows() -> list[dict]:
    leak_body = (
        "    import sys\n"
        f"    key = {_split(AWS_KEY)}\n"
        f"    print('stdout has', key, {_split('postgres://app:' + DB_PASSWORD + '@db/prod')})\n"
        f"    print('stderr has', {_split(PEM)}, file=sys.stderr)\n"
        "    raise KeyError(key)\n"
    )
    assert_body = "    return x * 3\n"
    assert_test = ("def check(candidate):\n"
                   f"    assert candidate(2) == 4, 'token ' + {_split(GITHUB_TOKEN)}\n")
    return [
        # A teacher answer (the reference solution) holding a secret literally.
        {"task_id": "leak/answer", "prompt": PROMPT.format(name="answer"),
         "canonical_solution": f"    api_key = \"{STRIPE_KEY}\"\n    return 2 * x\n",
         "test": TEST, "entry_point": "answer"},
        # A program under test printing secrets and raising with one.
        {"task_id": "leak/prints", "prompt": PROMPT.format(name="prints"),
         "canonical_solution": leak_body, "test": TEST, "entry_point": "prints"},
        # A failing assertion whose message is a secret.
        {"task_id": "leak/assert", "prompt": PROMPT.format(name="asserts"),
         "canonical_solution": assert_body, "test": assert_test, "entry_point": "asserts"},
        {"task_id": "clean/ok", "prompt": PROMPT.format(name="ok"),
         "canonical_solution": "    return 2 * x\n", "test": TEST, "entry_point": "ok"},
    ]


WRAPPER = """\
import json, runpy, sys
secrets = json.loads(sys.argv[1])
print("@heidi " + json.dumps({
    "event_type": "progress " + secrets["github"],
    "message": "teacher said " + secrets["aws"] + " and " + secrets["pem"],
    "counters_delta": {"seen_" + secrets["slack"]: 1},
    "artifact_paths": ["data/" + secrets["stripe"] + ".jsonl"],
}), flush=True)
print("plain stdout " + secrets["slack"] + " postgres://u:" + secrets["db"] + "@h/db", flush=True)
print("plain stderr " + secrets["pem"], file=sys.stderr, flush=True)
sys.argv = ["generate"] + sys.argv[2:]
runpy.run_module("heidi_engine.stages.generate", run_name="__main__")
"""


def _wrapper_cmd(tmp_path: Path) -> str:
    script = tmp_path / "leaky_generate.py"
    script.write_text(WRAPPER)
    payload = json.dumps({"github": GITHUB_TOKEN, "aws": AWS_KEY, "pem": PEM,
                          "slack": SLACK_TOKEN, "stripe": STRIPE_KEY, "db": DB_PASSWORD})
    return shlex.join([sys.executable, str(script), payload])


def _leaks(text: str) -> list[str]:
    variants = []
    for secret in SECRETS:
        variants += [secret, json.dumps(secret)[1:-1]]
    return sorted({v for v in variants if v in text})


def _scan_tree(root: Path) -> dict[str, list[str]]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            leaks = _leaks(path.read_bytes().decode("utf-8", "replace"))
            if leaks:
                found[str(path.relative_to(root))] = leaks
    return found


def _run_round(backend, out_dir: Path, tmp_path: Path, monkeypatch) -> object:
    task_file = tmp_path / "tasks.jsonl"
    task_file.write_text("".join(json.dumps(row) + "\n" for row in task_rows()))
    monkeypatch.setenv("HEIDI_TASK_SOURCE", "file")
    monkeypatch.setenv("HEIDI_TASK_FILE", str(task_file))
    monkeypatch.setenv("HEIDI_TEACHER", "reference")
    monkeypatch.setenv("HEIDI_SANDBOX_TIMEOUT_S", "5")
    monkeypatch.setenv("HEIDI_SANDBOX_WORKERS", "2")
    config = backend.Config.from_env(
        out_dir=str(out_dir), fsync=False, rounds=1, samples_per_round=4, run_unit_tests=True,
        stage_cmd_generate=_wrapper_cmd(tmp_path))
    core = backend.Core(config)
    core.start("collect")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        core.tick()
        state = json.loads(core.get_status_json())
        if state["state"] in ("IDLE", "ERROR") and state["last_completed"] is not None \
                and state["last_completed"]["stage"] == "test":
            break
        if state["state"] == "ERROR":
            break
        time.sleep(0.05)
    return core


@pytest.mark.usefixtures("clean_env")
def test_planted_secrets_reach_no_file_and_no_answer(backend, out_dir, tmp_path, monkeypatch, capsys):
    from heidi_engine.cli import main as cli_main
    from heidi_engine.server import Api

    core = _run_round(backend, out_dir, tmp_path, monkeypatch)
    try:
        status = json.loads(core.get_status_json())
        assert status["state"] == "IDLE" and status["last_error"] is None, status
        # The eval stage writes its report through the same writer; plant a task reason.
        write_json_atomic(out_dir / "eval" / "report_round_1.json", {
            "round": 1, "pass_at_1": 0.0, "n_tasks": 1,
            "tasks": [{"task_id": "t/0", "passed": False,
                       "reason": f"KeyError: '{AWS_KEY}' (token {GITHUB_TOKEN})"}]})

        data = out_dir / "data"
        # Fail-closed: the answer that carried a secret is rejected as `secret`, masked.
        rejected = {r["task_id"]: r for r in read_jsonl(data / "rejected_round_1.jsonl")}
        assert rejected["leak/answer"]["reject_reason"] == "secret"
        assert "stripe_key" in rejected["leak/answer"]["secret_kinds"]
        assert "[REDACTED:stripe_key]" in rejected["leak/answer"]["completion"]
        assert "[REDACTED:stripe_key]" in (data / "raw_round_1.jsonl").read_text()
        clean_ids = {r["task_id"] for r in read_jsonl(data / "clean_round_1.jsonl")}
        assert "leak/answer" not in clean_ids and "leak/prints" in clean_ids
        failed = {r["task_id"]: r for r in read_jsonl(data / "test_failed_round_1.jsonl")}
        assert {"leak/prints", "leak/assert"} <= set(failed)
        assert "[REDACTED:" in failed["leak/prints"]["test_result"]["reason"] + \
            failed["leak/assert"]["test_result"]["reason"]
        # The stage's @heidi line and output, masked where they landed.
        journal = (out_dir / "journal" / "events.jsonl").read_text()
        assert "[REDACTED:github_token]" in journal and "[REDACTED:private_key]" in journal
        assert "[REDACTED:slack_token]" in journal and "[REDACTED:stripe_key]" in journal
        log = (out_dir / "logs" / "generate_round_1.log").read_text()
        assert "[REDACTED:private_key]" in log and "[REDACTED:url_password]" in log

        # The export of the run (every split, both formats that need no extra library).
        export = tmp_path / "export"
        for source in ("clean", "tested", "train"):
            assert cli_main(["export", "--out-dir", str(out_dir), "--source", source,
                             "--format", "jsonl", "--output", str(export / source)]) == 0

        api = Api(core, out_dir, token="t" * 64, default_mode="collect")
        answers = []
        for target in ("/api/v1/status", "/api/v1/events?since=0&limit=1000", "/api/v1/eval",
                       "/metrics"):
            response = api.handle("GET", target, {"Authorization": "Bearer " + "t" * 64}, b"")
            assert response.status == 200, (target, response.body[:200])
            answers.append(response.body.decode())
        assert "[REDACTED:" in answers[1]
    finally:
        core.shutdown()
    capsys.readouterr()
    for command in (["status"], ["events", "--json"], ["events"]):
        assert cli_main([*command, "--out-dir", str(out_dir)]) == 0
    cli_output = capsys.readouterr()
    answers.append(cli_output.out + cli_output.err)
    assert "[REDACTED:" in answers[-1]

    leaks = _scan_tree(out_dir)
    leaks.update({f"export/{k}": v for k, v in _scan_tree(tmp_path / "export").items()})
    for target, body in zip(("api status", "api events", "api eval", "metrics", "cli"), answers):
        if _leaks(body):
            leaks[target] = _leaks(body)
    assert leaks == {}


def test_jsonl_writer_masks_every_string_and_key(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl_atomic(path, [{"out": f"stdout: {AWS_KEY}", GITHUB_TOKEN: [PEM, 1]}, {"ok": "x"}])
    text = path.read_text()
    assert _leaks(text) == []
    rows = read_jsonl(path)
    assert rows[0]["out"] == "stdout: [REDACTED:aws_access_key]"
    assert rows[0]["[REDACTED:github_token]"][0] == "[REDACTED:private_key]"
    assert rows[1] == {"ok": "x"}
