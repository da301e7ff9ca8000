"""The train and eval stages on the ``tiny`` model: adapters, metrics, pass@1, best_adapter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from heidi_engine import ml
from heidi_engine.io import write_jsonl_atomic
from heidi_engine.ml import adapters
from heidi_engine.sandbox import SandboxResult
from heidi_engine.stages import eval as eval_stage
from heidi_engine.stages import train as train_stage
from heidi_engine.stages.common import parse_args
from heidi_engine.tasks import Task, held_out_tasks, procedural

pytestmark = pytest.mark.ml


def samples_for(round: int, n: int) -> list[dict]:
    """Clean samples in the SPEC schema, answered with the reference solutions."""
    rows = []
    for task in procedural.generate(100 + round, n, "train"):
        rows.append({
            "id": f"r{round}-{task.task_id}", "task_id": task.task_id, "task_source": "procedural",
            "instruction": "", "prompt": task.prompt, "completion": task.canonical_solution,
            "test": task.test, "entry_point": task.entry_point, "teacher": "reference",
            "round": round, "metadata": {},
        })
    return rows


@pytest.fixture
def run_dir(out_dir, clean_env):
    clean_env.setenv("BASE_MODEL", "tiny")
    clean_env.setenv("TRAIN_STEPS", "6")
    clean_env.setenv("LR", "0.01")
    clean_env.setenv("SEQ_LEN", "256")
    clean_env.setenv("BATCH_SIZE", "2")
    clean_env.setenv("SEED", "3")
    clean_env.setenv("HEIDI_FSYNC", "0")
    clean_env.setenv("HEIDI_SANDBOX_WORKERS", "2")
    clean_env.setenv("HEIDI_DEV_TASKS", "4")
    clean_env.setenv("HEIDI_TEST_TASKS", "4")
    clean_env.setattr(eval_stage, "MAX_NEW_TOKENS", 8)
    return out_dir


def write_round_data(out_dir, round: int, n_train: int = 6, n_val: int = 2) -> None:
    rows = samples_for(round, n_train + n_val)
    write_jsonl_atomic(out_dir / "data" / f"train_round_{round}.jsonl", rows[:n_train])
    write_jsonl_atomic(out_dir / "data" / f"val_round_{round}.jsonl", rows[n_train:])


def ctx_for(stage: str, out_dir, round: int):
    return parse_args(stage, ["--round", str(round), "--out-dir", str(out_dir)])


def heidi_lines(text: str) -> list[dict]:
    prefix = "@heidi "
    return [json.loads(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)]


def test_train_writes_adapter_and_metrics(run_dir, capsys):
    write_round_data(run_dir, 1)
    assert train_stage.main(["--round", "1", "--out-dir", str(run_dir)]) == 0
    lora_dir = run_dir / "out_lora" / "round_1"
    for name in ("adapter_model.safetensors", "adapter_config.json", "metrics.json",
                 "tokenizer.json"):
        assert (lora_dir / name).is_file(), name
    # no temporary directories are left behind
    assert sorted(p.name for p in (run_dir / "out_lora").iterdir()) == ["round_1"]
    metrics = json.loads((lora_dir / "metrics.json").read_text())
    assert metrics["base_model"] == "tiny" and metrics["resumed_from"] is None
    assert metrics["steps"] == 6
    assert len(metrics["losses"]) == len(metrics["step_seconds"]) == 6
    assert metrics["method"] == "lora" and metrics["n_train_samples"] == 6
    assert isinstance(metrics["val_loss"], float)
    assert metrics["val_loss"] < metrics["val_loss_before"]
    assert metrics["train_loss"] < metrics["train_loss_first"]
    assert metrics["duration_s"] > 0
    assert set(metrics["timings"]) >= {"load_s", "train_s", "save_s"}
    assert metrics["trainer"] == "trl.SFTTrainer" and metrics["precision"] == "fp32"
    assert metrics["resumed_at_step"] == 0 and metrics["world_size"] == 1
    # TensorBoard event files travel with the adapter; the checkpoints are gone.
    assert list((lora_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (run_dir / "out_lora" / "round_1.checkpoints").exists()
    events = heidi_lines(capsys.readouterr().out)
    steps = [e for e in events if e["message"].startswith("step ")]
    assert len(steps) == 6 and all(e["usage_delta"]["train_tokens"] > 0 for e in steps)
    assert events[-1]["artifact_paths"] == ["out_lora/round_1/metrics.json"]


def test_train_is_deterministic_by_seed(run_dir):
    write_round_data(run_dir, 1)
    first = train_stage.run(ctx_for("train", run_dir, 1))
    second = train_stage.run(ctx_for("train", run_dir, 1))  # a re-run replaces the adapter
    assert first["losses"] == second["losses"] and first["val_loss"] == second["val_loss"]
    assert sorted(p.name for p in (run_dir / "out_lora").iterdir()) == ["round_1"]


def test_train_fails_clearly_on_empty_or_missing_data(run_dir, capsys):
    assert train_stage.main(["--round", "1", "--out-dir", str(run_dir)]) == 1
    assert "input file missing" in capsys.readouterr().err
    write_jsonl_atomic(run_dir / "data" / "train_round_1.jsonl", [])
    write_jsonl_atomic(run_dir / "data" / "val_round_1.jsonl", [])
    assert train_stage.main(["--round", "1", "--out-dir", str(run_dir)]) == 1
    captured = capsys.readouterr()
    assert "no training samples" in captured.err
    assert heidi_lines(captured.out)[-1]["level"] == "error"
    assert not (run_dir / "out_lora" / "round_1").exists()


def test_train_rejects_a_bad_base_model(run_dir, clean_env, capsys):
    write_round_data(run_dir, 1)
    clean_env.setenv("BASE_MODEL", "/no/such/model.gguf")
    assert train_stage.main(["--round", "1", "--out-dir", str(run_dir)]) == 2
    assert "invalid value for BASE_MODEL" in capsys.readouterr().err


def test_round_two_continues_from_best_adapter_with_half_the_steps(run_dir):
    write_round_data(run_dir, 1)
    write_round_data(run_dir, 2)
    train_stage.run(ctx_for("train", run_dir, 1))
    # Without a best adapter a later round starts afresh with the full budget.
    fresh = train_stage.run(ctx_for("train", run_dir, 2))
    assert fresh["resumed_from"] is None and fresh["steps"] == 6
    adapters.point_best_adapter(run_dir, run_dir / "out_lora" / "round_1")
    resumed = train_stage.run(ctx_for("train", run_dir, 2))
    assert resumed["resumed_from"] == "out_lora/round_1" and resumed["steps"] == 3
    # It starts from round 1's weights (lower loss than a fresh adapter) and its tokenizer.
    assert resumed["val_loss_before"] < fresh["val_loss_before"]
    assert (run_dir / "out_lora/round_2/tokenizer.json").read_bytes() == (
        run_dir / "out_lora/round_1/tokenizer.json").read_bytes()


def stage_env(run_dir, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEIDI_", "TRAIN_"))}
    env.update({"BASE_MODEL": "tiny", "LR": "0.01", "SEQ_LEN": "256", "BATCH_SIZE": "2",
                "SEED": "3", "HEIDI_FSYNC": "0", "PYTHONPATH": os.pathsep.join(sys.path)})
    env.update(extra)
    return env


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_train_stage_resumes_from_its_last_checkpoint(run_dir, clean_env):
    """SIGKILL mid-training, then a re-run: it continues from the newest complete
    checkpoint, not from step 0, and ends where an uninterrupted run ends."""
    write_round_data(run_dir, 1)
    env = stage_env(run_dir, TRAIN_STEPS="10", HEIDI_SAVE_STEPS="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "heidi_engine.stages.train", "--round", "1", "--out-dir",
         str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    killed_after = None
    for line in proc.stdout:
        steps = [e for e in heidi_lines(line) if e["message"].startswith("step ")]
        if steps and steps[0]["message"].startswith("step 5/"):
            proc.send_signal(signal.SIGKILL)
            killed_after = 5
            break
    proc.wait()
    proc.stdout.close()
    assert killed_after == 5, "the stage ended before it could be killed"
    checkpoints = run_dir / "out_lora" / "round_1.checkpoints"
    assert (checkpoints / "checkpoint-3" / "heidi_complete.json").is_file()
    assert not (checkpoints / "checkpoint-3" / "training_args.bin").exists()  # no pickle
    assert not (run_dir / "out_lora" / "round_1").exists()

    for key, value in env.items():
        clean_env.setenv(key, value)
    resumed = train_stage.run(ctx_for("train", run_dir, 1))
    assert resumed["resumed_at_step"] >= 3 and resumed["steps"] == 10
    assert len(resumed["losses"]) == 10
    assert not checkpoints.exists()
    uninterrupted = train_stage.run(ctx_for("train", run_dir, 1))
    assert uninterrupted["resumed_at_step"] == 0
    assert resumed["losses"] == pytest.approx(uninterrupted["losses"], rel=1e-4)
    assert resumed["val_loss"] == pytest.approx(uninterrupted["val_loss"], rel=1e-4)


def test_qlora_asked_for_where_impossible_fails_clearly(run_dir, clean_env, capsys):
    write_round_data(run_dir, 1)
    clean_env.setenv("HEIDI_QLORA", "on")  # tiny is no transformers checkpoint
    assert train_stage.main(["--round", "1", "--out-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "invalid value for HEIDI_QLORA: 'on' (QLoRA is impossible here" in err
    assert "not a transformers checkpoint" in err and "Traceback" not in err


def test_a_missing_launcher_fails_clearly(run_dir, clean_env, capsys):
    write_round_data(run_dir, 1)
    clean_env.setenv("HEIDI_TRAIN_LAUNCHER", "no-such-launcher --nproc_per_node 2")
    assert train_stage.main(["--round", "1", "--out-dir", str(run_dir)]) == 2
    assert "HEIDI_TRAIN_LAUNCHER" in capsys.readouterr().err
    assert train_stage.launcher_argv("torchrun --nproc_per_node 2", ["--round", "1"])[1:] == [
        "--nproc_per_node", "2", "-m", "heidi_engine.stages.train", "--round", "1"]


def cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def launched_run(run_dir, launcher: str, **extra) -> dict:
    env = stage_env(run_dir, TRAIN_STEPS="4", HEIDI_TRAIN_LAUNCHER=launcher, **extra)
    done = subprocess.run(
        [sys.executable, "-m", "heidi_engine.stages.train", "--round", "1", "--out-dir",
         str(run_dir)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    events = heidi_lines(done.stdout)
    assert events[0]["message"].startswith("launching ")
    # Rank 0 alone reports: one event per step.
    assert [e["message"].split()[1] for e in events if e["message"].startswith("step ")] == [
        "1/4", "2/4", "3/4", "4/4"]
    return json.loads((run_dir / "out_lora/round_1/metrics.json").read_text())


@pytest.mark.slow
def test_two_process_launch_on_cpu(run_dir):
    """torchrun with two CPU processes (gloo): the launcher path without a GPU."""
    write_round_data(run_dir, 1)
    metrics = launched_run(run_dir, "torchrun --nproc_per_node 2", CUDA_VISIBLE_DEVICES="")
    assert metrics["world_size"] == 2 and metrics["device"] == "cpu"


@pytest.mark.skipif("cuda_devices() < 2", reason="needs two CUDA GPUs")
def test_two_gpu_launch(run_dir):
    write_round_data(run_dir, 1)
    metrics = launched_run(run_dir, "torchrun --nproc_per_node 2")
    assert metrics["world_size"] == 2 and metrics["device"].startswith("cuda")
    assert metrics["precision"] in ("bf16", "fp16")


@pytest.mark.skipif("cuda_devices() < 1", reason="needs a CUDA GPU")
def test_gpu_training_uses_mixed_precision(run_dir):
    import torch

    write_round_data(run_dir, 1)
    metrics = train_stage.run(ctx_for("train", run_dir, 1))
    assert metrics["device"].startswith("cuda")
    assert metrics["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert metrics["val_loss"] < metrics["val_loss_before"]


@pytest.mark.skipif(
    "cuda_devices() < 1 or __import__('importlib').util.find_spec('bitsandbytes') is None",
    reason="needs a CUDA GPU and bitsandbytes (pip install 'heidi-engine[gpu]')")
def test_qlora_trains_a_transformers_checkpoint(run_dir, clean_env, tmp_path):
    # The tiny model saved as a transformers checkpoint directory is a 4-bit-loadable base.
    tok = ml.models.train_tiny_tokenizer([s["prompt"] + s["completion"] for s in samples_for(1, 8)])
    model = ml.models.build_tiny_model(tok, seed=3)
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    clean_env.setenv("BASE_MODEL", str(tmp_path / "base"))
    clean_env.setenv("HEIDI_QLORA", "on")
    write_round_data(run_dir, 1)
    metrics = train_stage.run(ctx_for("train", run_dir, 1))
    assert metrics["method"] == "qlora" and metrics["gradient_checkpointing"] is True
    assert metrics["val_loss"] < metrics["val_loss_before"]


def test_resuming_with_another_base_model_is_refused(run_dir, clean_env, tmp_path):
    write_round_data(run_dir, 1)
    write_round_data(run_dir, 2)
    train_stage.run(ctx_for("train", run_dir, 1))
    adapters.point_best_adapter(run_dir, run_dir / "out_lora" / "round_1")
    gguf = tmp_path / "other.gguf"
    gguf.write_bytes(b"GGUF")
    clean_env.setenv("BASE_MODEL", str(gguf))
    with pytest.raises(Exception, match="was trained on 'tiny'"):
        train_stage.run(ctx_for("train", run_dir, 2))


# --- scoring ---------------------------------------------------------------------------


def test_completion_of_cuts_at_the_end_of_the_function():
    task = procedural.generate(1, 1, "test")[0]
    generated = task.canonical_solution + "\nprint(" + task.entry_point + "(1))\ndef extra():\n"
    completion = eval_stage.completion_of(task, generated)
    assert "print(" not in completion and "extra" not in completion
    assert eval_stage.function_ended("    return 1\nprint(2)")
    assert not eval_stage.function_ended("    x = 1\n    return x\n")


def test_every_way_a_chat_model_writes_the_function_is_read_fairly():
    """The base model answers in many shapes; each is read as the function it writes, and
    generation stops exactly where reading stops (nothing after could change the result)."""
    task = procedural.generate(11, 1, "test")[0]
    signature = task.prompt.split("\n")[0] + "\n"
    body = task.canonical_solution.rstrip("\n") + "\n"
    replies = {  # reply: the part of it that decides the completion
        "continuation": (body, "\nprint(1)\n"),
        "fenced": ("Sure!\n```python\n" + signature + body + "```", "\nDone"),
        # a chat template that leaves a code block open: the answer only closes it
        "closes an unopened fence": (signature + body + "```", "\n\nThis function works."),
        "no fence, then prose": (signature + body + "\n", "This function works.\n"),
        "imports, no fence, then a call": ("import re\n\n" + signature + body, "print(1)\n"),
        "prose, then the function": ("Here it is:\n\n" + signature + body, "It works.\n"),
    }
    for name, (decisive, rest) in replies.items():
        reply = decisive + rest
        assert body.strip() in eval_stage.completion_of(task, reply), name
        assert eval_stage.completion_of(task, decisive + rest.split("\n")[0]) == (
            eval_stage.completion_of(task, reply)), name
        stopped_at = next(i for i in range(1, len(reply) + 1)
                          if eval_stage.reply_ended(reply[:i], chat=True))
        assert stopped_at >= len(decisive), (name, reply[:stopped_at])
        assert eval_stage.completion_of(task, reply[:stopped_at]) == (
            eval_stage.completion_of(task, reply)), name
    # prose that never writes code is read as nothing and runs to end of turn
    assert eval_stage.completion_of(task, "I cannot help.\n").strip() == ""
    assert not eval_stage.reply_ended("I cannot help.\nSorry.\n", chat=True)


def test_pass_at_1_comes_from_the_sandbox_verdicts():
    tasks = procedural.generate(5, 4, "test")
    seen_programs = []

    def fake_generate(prompts):
        assert prompts == [t.prompt for t in tasks]
        wrong = "    return None\n"
        return [t.canonical_solution if i % 2 == 0 else wrong for i, t in enumerate(tasks)]

    def fake_sandbox(programs):
        seen_programs.extend(programs)
        return [SandboxResult(i != 2, "timeout" if i == 2 else "ok", 5)
                for i in range(len(programs))]

    results = eval_stage.evaluate_student(tasks, fake_generate, fake_sandbox)
    assert [r["passed"] for r in results] == [True, True, False, True]
    assert [r["reason"] for r in results][2] == "timeout"
    summary = eval_stage.summarize(results)
    assert (summary["n_tasks"], summary["n_passed"], summary["pass_at_1"]) == (4, 3, 0.75)
    assert summary["ci95_low"] < 0.75 < summary["ci95_high"]
    assert eval_stage.summarize([])["pass_at_1"] == 0.0
    assert seen_programs[0] == (tasks[0].prompt + results[0]["completion"] + "\n" + tasks[0].test
                                + "\ncheck(" + tasks[0].entry_point + ")")


@pytest.mark.parametrize(
    ("candidate", "best", "expected", "why"),
    [
        ({"dev_pass_at_1": 0.1, "fixed_val_loss": 9.0}, None, True, "first evaluated round"),
        ({"dev_pass_at_1": 0.5, "fixed_val_loss": 2.0},
         {"dev_pass_at_1": 0.4, "fixed_val_loss": 1.0}, True, "dev pass@1 improved"),
        ({"dev_pass_at_1": 0.3, "fixed_val_loss": 0.5},
         {"dev_pass_at_1": 0.4, "fixed_val_loss": 1.0}, False, "dev pass@1 did not improve"),
        ({"dev_pass_at_1": 0.4, "fixed_val_loss": 0.9},
         {"dev_pass_at_1": 0.4, "fixed_val_loss": 1.0}, True, "0.9000 below 1.0000"),
        ({"dev_pass_at_1": 0.4, "fixed_val_loss": 1.0},
         {"dev_pass_at_1": 0.4, "fixed_val_loss": 1.0}, False, "not below"),
        ({"dev_pass_at_1": 0.4, "fixed_val_loss": None},
         {"dev_pass_at_1": 0.4, "fixed_val_loss": 1.0}, False, "no fixed validation loss"),
        # the test split never decides: a better test score with a worse dev score loses
        ({"dev_pass_at_1": 0.3, "pass_at_1": 0.9, "fixed_val_loss": 0.1},
         {"dev_pass_at_1": 0.4, "pass_at_1": 0.1, "fixed_val_loss": 1.0}, False, "did not"),
    ],
)
def test_promotion_follows_dev_pass_at_1_then_the_fixed_validation_loss(
        candidate, best, expected, why):
    promoted, reason = eval_stage.promotion(candidate, best, None if best is None else 1)
    assert promoted is expected and why in reason


class ScriptedStudent:
    """Stands in for ``ml.generate``: each call answers one section's listed tasks correctly.

    ``script`` holds, per model scored (baseline, then each round's student), the indices
    of the dev tasks and of the test tasks it gets right.
    """

    def __init__(self, sections: dict[str, list[Task]], script: list[tuple[set, set]]):
        self.by_prompt = {}
        for name, tasks in sections.items():
            for i, task in enumerate(tasks):
                self.by_prompt[task.prompt] = (name, i, task)
        self.script = list(script)
        self.calls = 0

    def __call__(self, model, tokenizer, prompts, max_new_tokens, **kwargs):
        dev_ok, test_ok = self.script[self.calls // 2]
        self.calls += 1
        out = []
        for prompt in prompts:
            name, index, task = self.by_prompt[prompt]
            passing = index in (dev_ok if name == "dev" else test_ok)
            body = task.canonical_solution if passing else "    return None\n"
            out.append(body + "\ndef unrelated():\n    pass\n")  # cut off by the stop rule
        return out


def test_eval_scores_rounds_and_promotes_on_dev_only(run_dir, clean_env):
    config = ctx_for("eval", run_dir, 1).config
    sections = held_out_tasks(config)
    # baseline, then the students of rounds 1, 2 and 3: (dev right, test right)
    student = ScriptedStudent(sections, [({0}, {0}), ({0, 1}, {0, 1}),
                                         ({3}, {0, 1, 2, 3}), ({0, 1, 2}, {1})])
    clean_env.setattr(ml, "generate", student)

    reports = {}
    for round in (1, 2, 3):
        write_round_data(run_dir, round)
        train_stage.run(ctx_for("train", run_dir, round))
        assert eval_stage.main(["--round", str(round), "--out-dir", str(run_dir)]) == 0
        reports[round] = json.loads((run_dir / "eval" / f"report_round_{round}.json").read_text())

    assert student.calls == 8  # two sections each; the baseline was computed once and cached
    baseline = json.loads((run_dir / "eval" / "baseline.json").read_text())
    assert baseline["sections"]["test"]["n_passed"] == 1
    assert baseline["key"]["task_ids"] == {k: [t.task_id for t in v] for k, v in sections.items()}
    r1, r2, r3 = reports[1], reports[2], reports[3]
    test_ids = [t.task_id for t in sections["test"]]
    for report in reports.values():
        assert {"round", "n_tasks", "n_passed", "pass_at_1", "val_loss", "baseline_pass_at_1",
                "adapter", "tasks", "pass_at_1_low", "pass_at_1_high", "fixed_val_loss",
                "dev_pass_at_1", "promotion_reason", "learning", "sections"} <= set(report)
        assert report["n_tasks"] == 4 and report["baseline_pass_at_1"] == 0.25
        assert [t["task_id"] for t in report["tasks"]] == test_ids
        assert isinstance(report["val_loss"], float) and isinstance(report["fixed_val_loss"], float)
        assert report["fixed_val_round"] == 1
        for name in ("dev", "test"):
            for model in ("base", "adapter"):
                part = report["sections"][name][model]
                assert part["n_tasks"] == 4
                assert part["ci95_low"] <= part["pass_at_1"] <= part["ci95_high"]
    assert (r1["n_passed"], r1["dev_pass_at_1"], r1["promoted"]) == (2, 0.5, True)
    assert r1["promotion_reason"] == "first evaluated round"
    assert [t["passed"] for t in r1["tasks"]] == [True, True, False, False]
    # round 2 is perfect on test but worse on dev: the test split never promotes
    assert (r2["n_passed"], r2["promoted"], r2["best_adapter"]) == (4, False, "out_lora/round_1")
    assert "dev pass@1 did not improve" in r2["promotion_reason"]
    assert (r3["n_passed"], r3["promoted"], r3["previous_best"]) == (1, True, "out_lora/round_1")
    # learning events: earlier dev failures that pass now
    assert r1["learning"]["previous_dev_failures"] == 3 and r1["learning"]["now_passing"] == 1
    assert r2["learning"]["previous_dev_failures"] == 2 and r2["learning"]["now_passing"] == 1
    assert r3["learning"]["previous_dev_failures"] == 3 and r3["learning"]["now_passing"] == 3
    link = run_dir / "best_adapter"
    assert link.is_symlink() and os.readlink(link) == "out_lora/round_3"
    # Round 3 trained on top of round 1, the best adapter at the time, not round 2.
    metrics3 = json.loads((run_dir / "out_lora/round_3/metrics.json").read_text())
    assert metrics3["resumed_from"] == "out_lora/round_1"
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name]


def test_eval_runs_the_real_student(run_dir, capsys):
    write_round_data(run_dir, 1)
    train_stage.run(ctx_for("train", run_dir, 1))
    report = eval_stage.run(ctx_for("eval", run_dir, 1))
    assert report["n_tasks"] == 4
    assert report["pass_at_1"] == report["n_passed"] / 4
    assert all(set(t) >= {"task_id", "passed", "reason"} for t in report["tasks"])
    assert report["adapter"] == "out_lora/round_1" and report["promoted"]
    assert os.readlink(run_dir / "best_adapter") == "out_lora/round_1"
    assert report["timings"]["student_generate_s"] > 0
    messages = [e["message"] for e in heidi_lines(capsys.readouterr().out)]
    assert any(m.startswith("student test: generated 4/4") for m in messages)
    assert any(m.startswith("student dev: generated 4/4") for m in messages)


def test_eval_without_adapter_fails_clearly(run_dir, capsys):
    assert eval_stage.main(["--round", "1", "--out-dir", str(run_dir)]) == 1
    assert "run the train stage first" in capsys.readouterr().err
    assert not (run_dir / "eval" / "report_round_1.json").exists()
