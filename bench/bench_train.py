"""Student model speed on this machine: SmolLM2-135M LoRA training steps and greedy
generation, batched against one prompt at a time, and what they imply for the default
two-round run (target: at most 15 minutes on 2 CPU cores)."""

from __future__ import annotations

import time

from heidi_engine import ml
from heidi_engine.ml import lora
from heidi_engine.stages import eval as eval_stage
from heidi_engine.stages.train import resumed_steps, training_pair
from heidi_engine.tasks import procedural

# Defaults of the Config table (docs/design.md) that size the default run.
TRAIN_STEPS, BATCH_SIZE, SEQ_LEN = 30, 4, 384
BUDGET_S = 15 * 60
# The non-ML stages (generate, validate, test) and process start-up of a default round,
# measured by hand at well under 5 s per round; kept as a fixed allowance.
OTHER_STAGES_S = 10.0
MEASURED_STEPS = 2
GEN_TOKENS = 48


def run(report) -> None:
    ml.configure_torch_threads()
    started = time.perf_counter()
    model, tokenizer = ml.load_model("smollm2")
    load_s = time.perf_counter() - started
    report.add("smollm2 GGUF load (dequantise to float32)", load_s, "s", higher_is_better=False)

    samples = [
        {"prompt": t.prompt, "completion": t.canonical_solution}
        for t in procedural.generate(7, BATCH_SIZE * MEASURED_STEPS, "train")
    ]
    examples = [lora.encode_example(tokenizer, *training_pair(s), SEQ_LEN) for s in samples]
    peft_model = lora.new_lora_adapter(model, r=8, alpha=16, seed=0)
    records = lora.train_lora(
        peft_model, examples, steps=MEASURED_STEPS, lr=5e-4, batch_size=BATCH_SIZE,
        grad_accum=1, seed=0, pad_token_id=tokenizer.pad_token_id,
    )
    step_s = sum(r.seconds for r in records) / len(records)
    seq_tokens = sum(len(e.input_ids) for e in examples) / len(examples) * BATCH_SIZE
    report.add("LoRA train step (batch 4, SmolLM2-135M)", step_s, "s/step", higher_is_better=False)
    report.add("LoRA training throughput", seq_tokens / step_s, "tokens/s")

    tasks = procedural.generate(11, 10, "eval")
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

    # Two rounds: 4 model loads (train and eval of each round), round 1 trains the full
    # budget and round 2 half of it, and 3 scorings of the eval tasks (baseline + 2 rounds)
    # at the full generation budget (early stops only make it faster).
    eval_s = eval_stage.EVAL_TASKS * batched_s * eval_stage.MAX_NEW_TOKENS / GEN_TOKENS
    projected = (
        4 * load_s
        + (TRAIN_STEPS + resumed_steps(TRAIN_STEPS)) * step_s
        + 3 * eval_s
        + 2 * OTHER_STAGES_S
    )
    report.add(
        "projected default run, 2 rounds (full generation budget)", projected, "s",
        higher_is_better=False, target=f"<= {BUDGET_S} s", met=projected <= BUDGET_S,
    )
