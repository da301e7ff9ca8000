"""Student model speed on this machine: SmolLM2-135M LoRA training through TRL's
SFTTrainer against the hand-written loop it replaced (same data, same steps, same seed;
per-step time and validation loss), greedy generation batched against one prompt at a
time, and what they imply for the default run (target: at most 30 minutes on 2 CPU
cores)."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from heidi_engine import ml
from heidi_engine._py.config import Config
from heidi_engine.ml import lora
from heidi_engine.ml.formatting import training_pair
from heidi_engine.stages import eval as eval_stage
from heidi_engine.stages.train import resumed_steps
from heidi_engine.tasks import procedural

# The Config table's defaults size the default run.
DEFAULTS = Config()
TRAIN_STEPS, BATCH_SIZE, SEQ_LEN = DEFAULTS.train_steps, DEFAULTS.batch_size, DEFAULTS.seq_len
LR, LORA_R, LORA_ALPHA = DEFAULTS.lr, DEFAULTS.lora_r, DEFAULTS.lora_alpha
BUDGET_S = 30 * 60
# The non-ML stages (generate, validate, test) and process start-up of a default round,
# measured by hand at well under 5 s per round; kept as a fixed allowance.
OTHER_STAGES_S = 10.0
GEN_TOKENS = 48

# The comparison run: 48 procedural train tasks (seed 7), 16 validation tasks (seed 8),
# 12 steps of batch 4, adapter and data seed 0, on the CPU. The figure of the hand-written
# loop (ml/lora.py train_lora, removed since) was measured on its last commit, 01a28b5,
# with the same data, steps and seed:
#   git archive 01a28b5 python | tar -x -C /tmp/old && \
#   PYTHONPATH=/tmp/old/python python bench/bench_train.py --old-loop
# Per-step time is the median of steps 2..12 (step 1 includes one-off set-up).
# Recorded on the 2-core development machine with a 1-minute load average of 1.6 (nothing
# else running); compare with the load average the bench prints for its own run.
COMPARE_STEPS, N_TRAIN, N_VAL, SEED = 12, 48, 16, 0
RECORDED_OLD_LOOP = {
    "commit": "01a28b5",
    "step_s": 5.736,
    "val_loss": 0.8008,  # from 1.4925 before training
    "val_loss_before": 1.4925,
    "load_average": 1.6,
}


def comparison_data(tokenizer) -> tuple[list, list]:
    def encode(tasks):
        return [
            lora.encode_example(tokenizer, *training_pair(
                {"prompt": t.prompt, "completion": t.canonical_solution}), SEQ_LEN)
            for t in tasks
        ]

    return (encode(procedural.generate(7, N_TRAIN, "train")),
            encode(procedural.generate(8, N_VAL, "train")))


def train_new(model, tokenizer, examples) -> list[float]:
    """Per-step seconds of COMPARE_STEPS steps of the trainer the stage uses."""
    from heidi_engine.ml import trainer

    settings = trainer.TrainSettings(
        steps=COMPARE_STEPS, lr=LR, batch_size=BATCH_SIZE, grad_accum=1, seed=SEED,
        seq_len=SEQ_LEN, precision="fp32",
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = trainer.train(model, tokenizer, examples, settings, Path(tmp) / "ckpt")
    return [r.seconds for r in result.records]


def train_old(model, tokenizer, examples) -> list[float]:
    """The hand-written loop of commit 01a28b5 (only importable from that commit)."""
    records = lora.train_lora(
        model, examples, steps=COMPARE_STEPS, lr=LR, batch_size=BATCH_SIZE, grad_accum=1,
        seed=SEED, pad_token_id=tokenizer.pad_token_id,
    )
    return [r.seconds for r in records]


def measure(model, tokenizer, old_loop: bool = False) -> dict:
    examples, val = comparison_data(tokenizer)
    peft_model = lora.new_lora_adapter(model, r=LORA_R, alpha=LORA_ALPHA, seed=SEED)
    before = lora.mean_loss(peft_model, val, tokenizer.pad_token_id, BATCH_SIZE)
    seconds = (train_old if old_loop else train_new)(peft_model, tokenizer, examples)
    return {
        "step_s": statistics.median(seconds[1:]),
        "val_loss": lora.mean_loss(peft_model, val, tokenizer.pad_token_id, BATCH_SIZE),
        "val_loss_before": before,
        "load_average": os.getloadavg()[0],
        "model": peft_model,
    }


def run(report) -> None:
    ml.configure_torch_threads()
    started = time.perf_counter()
    model, tokenizer = ml.load_model("smollm2")
    load_s = time.perf_counter() - started
    report.add("smollm2 GGUF load (dequantise to float32)", load_s, "s", higher_is_better=False)

    new = measure(model, tokenizer)
    old = RECORDED_OLD_LOOP
    print(f"   load average during the run: {new['load_average']:.1f} "
          f"(during the recorded baseline: {old['load_average']:.1f})")
    report.add(
        "LoRA train step, SFTTrainer (batch 4, SmolLM2-135M, CPU)", new["step_s"], "s/step",
        baseline_name=f"hand-written loop (recorded, {old['commit']})",
        baseline_value=old["step_s"], higher_is_better=False,
        target="<= old loop", met=new["step_s"] <= old["step_s"],
    )
    report.add(
        f"val loss after {COMPARE_STEPS} steps (from {new['val_loss_before']:.4f})",
        new["val_loss"], "nats/tok",
        baseline_name=f"hand-written loop (recorded, {old['commit']})",
        baseline_value=old["val_loss"], higher_is_better=False,
        target="<= old loop", met=new["val_loss"] <= old["val_loss"],
    )
    step_s = new["step_s"]
    peft_model = new["model"]

    tasks = procedural.generate(11, 10, "test")
    prompts = [t.prompt for t in tasks]
    started = time.perf_counter()
    ml.generate(peft_model, tokenizer, prompts, GEN_TOKENS, batch_size=len(prompts))
    batched_s = (time.perf_counter() - started) / len(prompts)
    started = time.perf_counter()
    for prompt in prompts[:3]:
        ml.generate(peft_model, tokenizer, [prompt], GEN_TOKENS)
    single_s = (time.perf_counter() - started) / 3
    report.add(
        f"greedy generation, batch of 10 ({GEN_TOKENS} tokens)", batched_s, "s/prompt",
        baseline_name="one prompt at a time", baseline_value=single_s, higher_is_better=False,
    )

    # The default run: a model load for train and for eval of each round, round 1 trains
    # the full budget and later rounds half of it, and the held-out tasks (dev + test) are
    # scored once for the base model and once per round, at the full generation budget
    # (early stops only make it faster).
    rounds, held_out = DEFAULTS.rounds, DEFAULTS.dev_tasks + DEFAULTS.test_tasks
    eval_s = held_out * batched_s * eval_stage.MAX_NEW_TOKENS / GEN_TOKENS
    projected = (
        2 * rounds * load_s
        + (TRAIN_STEPS + (rounds - 1) * resumed_steps(TRAIN_STEPS)) * step_s
        + (rounds + 1) * eval_s
        + rounds * OTHER_STAGES_S
    )
    report.add(
        f"projected default run, {rounds} rounds (full generation budget)", projected, "s",
        higher_is_better=False, target=f"<= {BUDGET_S} s", met=projected <= BUDGET_S,
    )


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="measure one training loop on its own")
    parser.add_argument("--old-loop", action="store_true",
                        help="the hand-written loop (run from commit 01a28b5's sources)")
    args = parser.parse_args()
    ml.configure_torch_threads()
    smollm2, tok = ml.load_model("smollm2")
    figures = measure(smollm2, tok, old_loop=args.old_loop)
    figures.pop("model")
    print(json.dumps(figures))
