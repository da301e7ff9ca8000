"""Student model speed on this machine: SmolLM2-135M LoRA training through TRL's
SFTTrainer against the hand-written loop it replaced (same data, same steps, same seeds;
per-step time and validation loss), the model load, and greedy generation batched as the
eval stage does it against one prompt at a time.

The baseline is the hand-written loop (``ml/lora.py`` ``train_lora``, removed since) run
from the sources of its last commit, OLD_LOOP_COMMIT, in a subprocess of the same bench
run, on the very token ids the trainer gets (written to a file and read back). Without
the git history (an exported tree) the figure recorded on the 2-core development machine
with nothing else running stands in, and the bench says so. By hand:

    git archive 01a28b5 python | tar -x -C /tmp/old && \\
    PYTHONPATH=/tmp/old/python python bench/bench_train.py --old-loop --data FILE

Both loops train COMPARE_STEPS steps of batch 4 from the same adapter initialisation once
per data-order seed in SEEDS (one pass over the 48 training examples: after so few steps
the order alone moves the validation loss by a few hundredths, so one seed cannot decide
"same or lower"). Per-step time is the median over steps 2..12 of every seed (step 1
includes one-off set-up); the validation loss is the mean over the seeds.

Only names that commit 01a28b5 also has are imported at module level: the file runs
under both trees.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from heidi_engine import ml
from heidi_engine.ml import lora

try:
    from heidi_engine.ml.formatting import training_pair
except ImportError:  # commit 01a28b5, which the --old-loop run imports, kept it here
    from heidi_engine.stages.train import training_pair
from heidi_engine.tasks import procedural

BATCH_SIZE, SEQ_LEN, LR, LORA_R, LORA_ALPHA = 4, 384, 0.0015, 8, 16
COMPARE_STEPS, N_TRAIN, N_VAL, ADAPTER_SEED = 12, 48, 16, 0
SEEDS = (0, 1, 2)
GEN_TOKENS = 48
OLD_LOOP_COMMIT = "01a28b5"
RECORDED_OLD_LOOP = {  # this bench's own figures for it on the 2-core machine, nothing else running
    "step_s": 5.014,
    "val_loss": 0.8468,
    "val_losses": [0.8219, 0.8412, 0.8773],
    "val_loss_before": 1.4793,
    "load_average": 4.0,
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


def save_data(path: Path, train: list, val: list) -> None:
    rows = {name: [[e.input_ids, e.labels] for e in examples]
            for name, examples in (("train", train), ("val", val))}
    path.write_text(json.dumps(rows), encoding="utf-8")


def load_data(path: str) -> tuple[list, list]:
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    return tuple([lora.Example(ids, labels) for ids, labels in rows[name]]
                 for name in ("train", "val"))


def train_new(model, tokenizer, examples, seed: int) -> list[float]:
    """Per-step seconds of COMPARE_STEPS steps of the trainer the stage uses."""
    from heidi_engine.ml import trainer

    settings = trainer.TrainSettings(
        steps=COMPARE_STEPS, lr=LR, batch_size=BATCH_SIZE, grad_accum=1, seed=seed,
        seq_len=SEQ_LEN, precision="fp32",
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = trainer.train(model, tokenizer, examples, settings, Path(tmp) / "ckpt")
    return [r.seconds for r in result.records]


def train_old(model, tokenizer, examples, seed: int) -> list[float]:
    """The hand-written loop of commit 01a28b5 (only importable from that commit)."""
    records = lora.train_lora(
        model, examples, steps=COMPARE_STEPS, lr=LR, batch_size=BATCH_SIZE, grad_accum=1,
        seed=seed, pad_token_id=tokenizer.pad_token_id,
    )
    return [r.seconds for r in records]


def measure(model, tokenizer, examples, val, old_loop: bool = False) -> dict:
    """Train once per seed from the same fresh adapter; returns the figures and the base
    model (the adapter unloaded)."""
    step_times, losses, before = [], [], None
    for seed in SEEDS:
        peft_model = lora.new_lora_adapter(model, r=LORA_R, alpha=LORA_ALPHA, seed=ADAPTER_SEED)
        if before is None:
            before = lora.mean_loss(peft_model, val, tokenizer.pad_token_id, BATCH_SIZE)
        seconds = (train_old if old_loop else train_new)(peft_model, tokenizer, examples, seed)
        step_times.extend(seconds[1:])
        losses.append(lora.mean_loss(peft_model, val, tokenizer.pad_token_id, BATCH_SIZE))
        model = peft_model.unload()
    return {
        "step_s": statistics.median(step_times),
        "val_loss": statistics.mean(losses),
        "val_losses": losses,
        "val_loss_before": before,
        "load_average": os.getloadavg()[0],
        "model": model,
    }


def old_loop_same_run(data_file: Path) -> dict | None:
    """The hand-written loop measured now, from OLD_LOOP_COMMIT's sources on the data in
    ``data_file`` (None: the checkout has no git history to take them from)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", OLD_LOOP_COMMIT, "python"],
                             capture_output=True)
    if archive.returncode != 0:
        return None
    with tempfile.TemporaryDirectory(prefix="heidi-old-loop-") as tmp:
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        result = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--old-loop", "--data",
             str(data_file)],
            env={**os.environ, "PYTHONPATH": str(Path(tmp) / "python")},
            capture_output=True, text=True,
        )
    if result.returncode != 0:
        raise RuntimeError(f"the old loop failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(report) -> None:
    from heidi_engine.ml.formatting import model_prompt

    ml.configure_torch_threads()
    started = time.perf_counter()
    model, tokenizer = ml.load_model("smollm2")
    load_s = time.perf_counter() - started
    report.add("smollm2 load (GGUF, or its dequantised copy once cached)", load_s, "s",
               higher_is_better=False)

    examples, val = comparison_data(tokenizer)
    new = measure(model, tokenizer, examples, val)
    with tempfile.TemporaryDirectory(prefix="heidi-bench-train-") as tmp:
        data_file = Path(tmp) / "data.json"
        save_data(data_file, examples, val)
        old = old_loop_same_run(data_file)
    label = f"hand-written loop ({OLD_LOOP_COMMIT}, same run, same data)"
    if old is None:
        old = RECORDED_OLD_LOOP
        label = f"hand-written loop ({OLD_LOOP_COMMIT}, recorded: no git history here)"
    print(f"   load average: {new['load_average']:.1f} after the trainer, "
          f"{old['load_average']:.1f} after the hand-written loop")
    print(f"   val loss before training {new['val_loss_before']:.4f} "
          f"(hand-written loop's run: {old['val_loss_before']:.4f}); per seed {SEEDS}: "
          f"trainer {[round(x, 4) for x in new['val_losses']]}, "
          f"hand-written {[round(x, 4) for x in old.get('val_losses', [old['val_loss']])]}")
    report.add(
        "LoRA train step, SFTTrainer (batch 4, SmolLM2-135M, CPU)", new["step_s"], "s/step",
        baseline_name=label, baseline_value=old["step_s"], higher_is_better=False,
        target="<= old loop", met=new["step_s"] <= old["step_s"],
    )
    report.add(
        f"val loss after {COMPARE_STEPS} steps, mean of {len(SEEDS)} seeds", new["val_loss"],
        "nats/tok", baseline_name=label, baseline_value=old["val_loss"],
        higher_is_better=False, target="<= old loop", met=new["val_loss"] <= old["val_loss"],
    )

    base = new["model"]
    tasks = procedural.generate(11, 10, "test")
    prompts = [model_prompt(tokenizer, t.prompt, True) for t in tasks]
    started = time.perf_counter()
    ml.generate(base, tokenizer, prompts, GEN_TOKENS, batch_size=len(prompts))
    batched_s = (time.perf_counter() - started) / len(prompts)
    started = time.perf_counter()
    for prompt in prompts[:3]:
        ml.generate(base, tokenizer, [prompt], GEN_TOKENS)
    single_s = (time.perf_counter() - started) / 3
    report.add(
        f"greedy generation, batch of 10 chat prompts ({GEN_TOKENS} tokens)", batched_s,
        "s/prompt", baseline_name="one prompt at a time", baseline_value=single_s,
        higher_is_better=False,
    )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="measure one training loop on its own")
    parser.add_argument("--old-loop", action="store_true",
                        help="the hand-written loop (run from commit 01a28b5's sources)")
    parser.add_argument("--data", help="train/val token ids written by the bench (JSON)")
    args = parser.parse_args()
    ml.configure_torch_threads()
    smollm2, tok = ml.load_model("smollm2")
    train, held = load_data(args.data) if args.data else comparison_data(tok)
    figures = measure(smollm2, tok, train, held, old_loop=args.old_loop)
    figures.pop("model")
    print(json.dumps(figures))
