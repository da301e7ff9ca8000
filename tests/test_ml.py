"""The student model library: loading, tokenizer, generation and LoRA training."""

from __future__ import annotations

import subprocess
import sys

import pytest
from heidi_engine import ml
from heidi_engine.errors import ConfigError
from heidi_engine.ml import lora
from heidi_engine.ml.models import TINY_VOCAB_SIZE, smollm2_gguf_path, train_tiny_tokenizer

CODE = [
    "def add(a, b):\n    return a + b\n",
    "def is_even(n):\n    return n % 2 == 0\n",
    "def first(xs):\n    return xs[0] if xs else None\n",
    "def count_vowels(s):\n    return sum(1 for c in s.lower() if c in 'aeiou')\n",
]


def test_import_is_light():
    code = (
        "import heidi_engine.ml, sys; "
        "print(any(m in sys.modules for m in ('torch', 'transformers', 'peft')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_resolve_base_model_kinds(tmp_path):
    assert ml.resolve_base_model("tiny").kind == "tiny"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert ml.resolve_base_model(str(gguf)).kind == "gguf"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    expected = ml.ModelSource("dir", str(model_dir), str(model_dir))
    assert ml.resolve_base_model(str(model_dir)) == expected
    assert ml.resolve_base_model("HuggingFaceTB/SmolLM2-135M").kind == "hub"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("/nonexistent/model.gguf", "no such .gguf file"),
        ("./no/such/dir", "no such file or directory"),
    ],
)
def test_resolve_base_model_errors_name_the_value(value, why):
    with pytest.raises(ConfigError, match="invalid value for BASE_MODEL") as info:
        ml.resolve_base_model(value)
    assert why in str(info.value)
    assert repr(value) in str(info.value)


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        ml.resolve_base_model(str(tmp_path))


@pytest.mark.ml
def test_uncached_hub_id_fails_clearly_offline():
    with pytest.raises(ConfigError, match="not found in the local Hugging Face cache") as info:
        ml.load_model("heidi-engine-tests/no-such-model")
    assert "HF_HUB_OFFLINE=1" in str(info.value)


@pytest.mark.ml
def test_tiny_needs_a_tokenizer():
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        ml.load_model("tiny")


@pytest.mark.ml
def test_tiny_tokenizer_is_deterministic_and_round_trips(tmp_path):
    from heidi_engine.ml.models import load_tiny_tokenizer, save_tiny_tokenizer

    first = train_tiny_tokenizer(CODE)
    second = train_tiny_tokenizer(CODE)
    assert first.get_vocab() == second.get_vocab()
    assert len(first) <= TINY_VOCAB_SIZE
    text = "def f(x):\n    return 'é' + x  # any text, even 日本\n"
    assert first.decode(first(text)["input_ids"]) == text
    save_tiny_tokenizer(first, tmp_path)
    again = load_tiny_tokenizer(tmp_path)
    assert again(text)["input_ids"] == first(text)["input_ids"]
    assert (again.pad_token, again.eos_token) == ("<pad>", "<eos>")


@pytest.mark.ml
def test_tiny_model_depends_on_seed_only():
    import torch

    m1, tok = ml.load_model("tiny", seed=3, tokenizer_texts=CODE)
    m2, _ = ml.load_model("tiny", seed=3, tokenizer_texts=CODE)
    m3, _ = ml.load_model("tiny", seed=4, tokenizer_texts=CODE)
    w1, w2, w3 = (m.get_input_embeddings().weight for m in (m1, m2, m3))
    assert torch.equal(w1, w2)
    assert not torch.equal(w1, w3)


@pytest.mark.ml
def test_generate_is_greedy_batched_and_honours_stops():
    model, tok = ml.load_model("tiny", seed=1, tokenizer_texts=CODE)
    prompts = ["def add(a, b):\n", "x", "def is_even(n):\n    return"]
    one_by_one = [ml.generate(model, tok, [p], 12)[0] for p in prompts]
    batched = ml.generate(model, tok, prompts, 12, batch_size=3)
    assert batched == one_by_one  # left padding does not change greedy output
    assert ml.generate(model, tok, prompts, 12) == batched  # deterministic
    stop = [text[3:6] for text in batched if len(text) >= 6]
    assert stop, "the random model produced nothing to stop on"
    stopped = ml.generate(model, tok, prompts, 12, stop=stop)
    for text in stopped:
        assert not any(s in text for s in stop)
    calls = []
    ml.generate(model, tok, prompts, 12, batch_size=2, on_batch=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 3), (3, 3)]


@pytest.mark.ml
def test_generate_stop_when_ends_rows_early():
    model, tok = ml.load_model("tiny", seed=1, tokenizer_texts=CODE)
    prompts = ["def add(a, b):\n", "x"]
    full = ml.generate(model, tok, prompts, 40)
    short = ml.generate(model, tok, prompts, 40, stop_when=lambda text: len(text) >= 5)
    long_rows = [(whole, cut) for whole, cut in zip(full, short) if len(whole) >= 10]
    assert long_rows, "the random model produced nothing long enough"
    for whole, cut in long_rows:
        assert 5 <= len(cut) < len(whole)
        assert whole.startswith(cut)  # the same greedy path, ended early


def test_truncate_at_stop():
    assert ml.truncate_at_stop("a\ndef b\nclass c", ["\nclass ", "\ndef "]) == "a"
    assert ml.truncate_at_stop("abc", []) == "abc"


@pytest.mark.ml
def test_encode_example_masks_the_prompt():
    tok = train_tiny_tokenizer(CODE)
    example = lora.encode_example(tok, "def add(a, b):\n", "    return a + b\n", 64)
    n_prompt = len(tok("def add(a, b):\n", add_special_tokens=False)["input_ids"])
    assert example.labels[:n_prompt] == [lora.IGNORE_INDEX] * n_prompt
    assert example.labels[n_prompt:] == example.input_ids[n_prompt:]
    assert example.input_ids[-1] == tok.eos_token_id
    assert lora.encode_example(tok, "x" * 200, "y", 16) is None  # nothing of it fits
    cut = lora.encode_example(tok, "def f():\n", "    return 1\n" * 20, 16)
    assert len(cut.input_ids) == 16


@pytest.mark.ml
def test_batched_loss_equals_the_unpadded_per_example_loss():
    import torch
    import torch.nn.functional as F

    model, tok = ml.load_model("tiny", seed=0, tokenizer_texts=CODE)
    # Prompts and completions of different lengths, so the batch needs padding.
    examples = [lora.encode_example(tok, text[:9], text[9:], 64) for text in CODE]
    total, count = 0.0, 0
    with torch.no_grad():
        for example in examples:
            logits = model(input_ids=torch.tensor([example.input_ids])).logits[0, :-1]
            targets = torch.tensor(example.labels[1:])
            total += float(F.cross_entropy(logits, targets, ignore_index=lora.IGNORE_INDEX,
                                           reduction="sum"))
            count += int((targets != lora.IGNORE_INDEX).sum())
    batched = lora.mean_loss(model, examples, tok.pad_token_id, batch_size=4)
    assert batched == pytest.approx(total / count, rel=1e-5)


def tiny_examples(tok, texts=CODE, seq_len=64):
    return [
        lora.encode_example(tok, text.split("\n", 1)[0] + "\n", text.split("\n", 1)[1], seq_len)
        for text in texts
    ]


def settings(**overrides):
    from heidi_engine.ml.trainer import TrainSettings

    values = dict(steps=30, lr=1e-2, batch_size=4, grad_accum=1, seed=0, seq_len=64,
                  precision="fp32")
    return TrainSettings(**{**values, **overrides})


@pytest.mark.ml
def test_sft_training_lowers_the_completion_loss(tmp_path):
    from heidi_engine.ml import trainer

    model, tok = ml.load_model("tiny", seed=0, tokenizer_texts=CODE)
    examples = tiny_examples(tok)
    peft_model = lora.new_lora_adapter(model, r=8, alpha=16)
    before = lora.mean_loss(peft_model, examples, tok.pad_token_id)
    seen = []
    result = trainer.train(peft_model, tok, examples, settings(steps=20, lr=2e-2),
                           tmp_path / "ckpt", on_step=seen.append)
    after = lora.mean_loss(peft_model, examples, tok.pad_token_id)
    assert [r.step for r in result.records] == list(range(1, 21))
    assert [r.step for r in seen] == list(range(1, 21))
    assert all(r.seconds > 0 and r.tokens > 0 for r in result.records)
    assert result.resumed_at_step == 0 and result.world_size == 1
    assert after < before - 0.5  # nats per completion token
    assert result.records[-1].loss < result.records[0].loss
    # Only the adapter trains: the base weights are frozen.
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


@pytest.mark.ml
def test_the_trainer_puts_the_loss_on_completion_tokens_only(tmp_path):
    """The batches TRL builds from the examples have labels on the completion only."""
    from heidi_engine.ml import trainer

    model, tok = ml.load_model("tiny", seed=0, tokenizer_texts=CODE)
    examples = tiny_examples(tok)
    peft_model = lora.new_lora_adapter(model, r=8, alpha=16)
    sft = trainer.make_trainer(peft_model, tok, examples,
                               trainer.training_arguments(settings(), tmp_path / "ckpt"))
    batch = next(iter(sft.get_train_dataloader()))
    rows = {tuple(ids[mask.bool()].tolist()): labels[mask.bool()].tolist()
            for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"],
                                         batch["labels"], strict=True)}
    assert rows == {tuple(e.input_ids): e.labels for e in examples}
    assert all(lora.IGNORE_INDEX in labels for labels in rows.values())


@pytest.mark.ml
def test_the_completion_span_loss_is_trls_loss(tmp_path):
    """The left-padded, completion-span loss is the loss TRL computes over every position
    of the same examples (right-padded by its own collator), gradients included."""
    import torch
    from heidi_engine.ml import trainer
    from trl import SFTTrainer

    model, tok = ml.load_model("tiny", seed=0, tokenizer_texts=CODE)
    examples = tiny_examples(tok)[:4]
    peft_model = lora.new_lora_adapter(model, r=8, alpha=16)
    args = trainer.training_arguments(settings(batch_size=4), tmp_path / "ckpt")
    ours = trainer.make_trainer(peft_model, tok, examples, args)
    batch = next(iter(ours.get_train_dataloader()))
    assert (batch["attention_mask"][:, -1] == 1).all()  # left-padded
    stock = SFTTrainer(model=peft_model, args=args, train_dataset=trainer._dataset(examples),
                       processing_class=tok)
    stock_batch = next(iter(stock.get_train_dataloader()))
    assert (stock_batch["attention_mask"][:, 0] == 1).all()  # TRL pads on the right

    def loss_and_grads(sft, inputs):
        peft_model.zero_grad()
        loss = sft.compute_loss(peft_model, dict(inputs))
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in peft_model.parameters()
                                      if p.requires_grad]

    peft_model.eval()  # no LoRA dropout: both see the same network
    mine, mine_grads = loss_and_grads(ours, batch)
    theirs, their_grads = loss_and_grads(stock, stock_batch)
    assert mine == pytest.approx(theirs, rel=1e-4)
    for a, b in zip(mine_grads, their_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)


def test_the_first_step_already_learns():
    """Warm-up over the first tenth of the steps starts above zero, then linear decay."""
    from heidi_engine.ml.trainer import lr_factor

    assert [lr_factor(s, 5) for s in range(5)] == [1.0, 1.0, 0.75, 0.5, 0.25]
    assert [lr_factor(s, 30) for s in range(4)] == [pytest.approx(1 / 3),
                                                    pytest.approx(2 / 3), 1.0, 27 / 27]
    assert lr_factor(29, 30) == pytest.approx(1 / 27)


@pytest.mark.ml
def test_training_is_deterministic_by_seed(tmp_path):
    from heidi_engine.ml import trainer

    def run(seed, name):
        model, tok = ml.load_model("tiny", seed=0, tokenizer_texts=CODE)
        examples = [lora.encode_example(tok, "", text, 64) for text in CODE]
        peft_model = lora.new_lora_adapter(model, r=4, alpha=8, seed=1)
        result = trainer.train(peft_model, tok, examples,
                               settings(steps=5, batch_size=2, grad_accum=2, seed=seed),
                               tmp_path / name)
        return [r.loss for r in result.records]

    assert run(7, "a") == run(7, "b")
    assert run(7, "c") != run(8, "d")


@pytest.mark.ml
def test_packing_gradient_checkpointing_and_accumulation_train(tmp_path):
    from heidi_engine.ml import trainer

    model, tok = ml.load_model("tiny", seed=0, tokenizer_texts=CODE)
    examples = tiny_examples(tok)
    peft_model = lora.new_lora_adapter(model, r=8, alpha=16)
    before = lora.mean_loss(peft_model, examples, tok.pad_token_id)
    result = trainer.train(
        peft_model, tok, examples,
        settings(steps=12, lr=2e-2, batch_size=2, grad_accum=2, packing=True,
                 gradient_checkpointing=True),
        tmp_path / "ckpt",
    )
    assert len(result.records) == 12
    assert lora.mean_loss(peft_model, examples, tok.pad_token_id) < before - 0.3


@pytest.mark.ml
def test_checkpoints_of_another_run_or_incomplete_are_not_resumed(tmp_path):
    from heidi_engine.io import write_json_atomic
    from heidi_engine.ml import trainer

    ckpt = tmp_path / "ckpt"
    (ckpt / "checkpoint-5").mkdir(parents=True)
    (ckpt / "checkpoint-10").mkdir()
    write_json_atomic(ckpt / trainer.RUN_KEY_FILE, {"a": 1})
    write_json_atomic(ckpt / "checkpoint-5" / trainer.COMPLETE_MARKER, {"step": 5})
    assert trainer.latest_checkpoint(ckpt, {"a": 1}, clean=False) == ckpt / "checkpoint-5"
    assert (ckpt / "checkpoint-10").is_dir()  # without clean nothing is removed
    assert trainer.latest_checkpoint(ckpt, {"a": 1}) == ckpt / "checkpoint-5"
    assert not (ckpt / "checkpoint-10").exists()  # incomplete: removed
    assert trainer.latest_checkpoint(ckpt, {"a": 2}) is None  # another run
    assert not ckpt.exists()


@pytest.mark.ml
def test_precision_follows_the_device():
    import torch
    from heidi_engine.ml.trainer import resolve_precision

    if torch.cuda.is_available():
        expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        assert resolve_precision("auto") == expected
    else:
        assert resolve_precision("auto") == "fp32"
        with pytest.raises(ConfigError, match="HEIDI_TRAIN_PRECISION: 'fp16'.*needs a CUDA GPU"):
            resolve_precision("fp16")
    assert resolve_precision("fp32") == "fp32"


def test_report_targets():
    from heidi_engine.ml.trainer import report_targets

    assert report_targets("tensorboard") == ("tensorboard",)
    assert report_targets(" wandb, mlflow ") == ("wandb", "mlflow")
    assert report_targets("none") == report_targets("") == ()


@pytest.mark.ml
def test_chat_template_is_one_helper_for_train_and_eval():
    from heidi_engine.ml.formatting import chat_enabled, model_prompt
    from heidi_engine.prompts import SYSTEM_PROMPT

    tok = train_tiny_tokenizer(CODE)
    assert not chat_enabled(tok, "auto")
    assert model_prompt(tok, "def f():\n", chat=False) == "def f():\n"
    with pytest.raises(ConfigError, match="HEIDI_CHAT_TEMPLATE: 'on'.*no chat template"):
        chat_enabled(tok, "on")
    tok.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    assert chat_enabled(tok, "auto") and chat_enabled(tok, "on")
    assert not chat_enabled(tok, "off")
    text = model_prompt(tok, "def f():\n", chat=True)
    assert text == f"<system>{SYSTEM_PROMPT}</s><user>def f():\n</s><assistant>"


@pytest.mark.ml
def test_qlora_says_why_it_is_impossible(tmp_path):
    import torch
    from heidi_engine.ml.models import qlora_unavailable_reason

    assert "not a transformers checkpoint" in qlora_unavailable_reason("tiny")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    why = qlora_unavailable_reason(str(model_dir))
    if not torch.cuda.is_available():
        assert why == "no CUDA GPU is available"
    with pytest.raises(ConfigError, match="4-bit loading of 'tiny' is impossible"):
        ml.load_model("tiny", tokenizer_texts=CODE, quantize_4bit=True)


def test_training_paths_are_reported():
    from heidi_engine.ml.trainer import training_paths

    paths = training_paths()
    assert set(paths) == {"cpu_lora", "gpu_lora", "qlora", "multi_gpu"}
    assert all(isinstance(p["ok"], bool) and p["detail"] for p in paths.values())


@pytest.mark.ml
def test_smollm2_path_comes_from_the_installed_package():
    path = smollm2_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


@pytest.mark.ml
@pytest.mark.slow
def test_smollm2_gguf_loads_and_writes_code():
    model, tok = ml.load_model("smollm2")
    assert model.config.model_type == "llama"
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    request = "Write a Python function is_even(n) that returns True if n is even."
    text = tok.apply_chat_template(
        [{"role": "user", "content": request}], tokenize=False, add_generation_prompt=True
    )
    out = ml.generate(model, tok, [text], 40)[0]
    assert "def is_even" in out and "%" in out


@pytest.mark.ml
@pytest.mark.slow
def test_the_dequantised_gguf_is_cached_and_loads_the_same(tmp_path, monkeypatch):
    """The first load dequantises the GGUF and keeps it (safetensors and JSON, private);
    the next loads read that copy: same weights, same tokenizer and chat template."""
    import torch
    from heidi_engine.ml import models
    from heidi_engine.ml.formatting import model_prompt

    root = tmp_path / "models"
    monkeypatch.setenv(models.MODEL_CACHE_ENV, str(root))
    fresh, fresh_tok = ml.load_model("smollm2")
    (entry,) = root.iterdir()
    assert (entry / models.MODEL_CACHE_MARKER).is_file()
    assert entry.stat().st_mode & 0o777 == 0o700
    assert {p.suffix for p in entry.iterdir()} <= {".json", ".safetensors", ".jinja", ".txt"}
    cached, tok = ml.load_model("smollm2")
    want, got = fresh.state_dict(), cached.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    text = model_prompt(fresh_tok, "def f(x):\n    \"\"\"Return x + 1.\"\"\"\n", True)
    assert tok(text)["input_ids"] == fresh_tok(text)["input_ids"]
    assert (tok.chat_template, tok.eos_token_id, tok.pad_token_id) == (
        fresh_tok.chat_template, fresh_tok.eos_token_id, fresh_tok.pad_token_id)
    # A copy another user could have written is never read, nor a damaged one.
    entry.chmod(0o775)
    assert models._load_cached_gguf(models.smollm2_gguf_path()) is None
    entry.chmod(0o700)
    (entry / "model.safetensors").write_bytes(b"not safetensors")
    assert models._load_cached_gguf(models.smollm2_gguf_path()) is None
    monkeypatch.setenv(models.MODEL_CACHE_ENV, "off")
    assert models.model_cache_root() is None


@pytest.mark.ml
@pytest.mark.slow
def test_sft_training_on_smollm2_in_its_chat_format(tmp_path):
    from heidi_engine.ml import trainer
    from heidi_engine.ml.formatting import chat_enabled, model_prompt, training_pair
    from heidi_engine.tasks import procedural

    model, tok = ml.load_model("smollm2")
    assert chat_enabled(tok, "auto")  # the instruct model's template comes with the GGUF
    pairs = [training_pair({"prompt": t.prompt, "completion": t.canonical_solution})
             for t in procedural.generate(5, 4, "train")]
    # 384 (the default SEQ_LEN) holds these examples whole, the end-of-turn token included
    examples = [lora.encode_example(tok, model_prompt(tok, p, True), c, 384) for p, c in pairs]
    assert all(e.input_ids[-1] == tok.eos_token_id for e in examples)
    peft_model = lora.new_lora_adapter(model, r=8, alpha=16)
    before = lora.mean_loss(peft_model, examples, tok.pad_token_id)
    result = trainer.train(peft_model, tok, examples,
                           settings(steps=3, lr=2e-3, batch_size=2, seq_len=384),
                           tmp_path / "ckpt")
    assert len(result.records) == 3
    assert lora.mean_loss(peft_model, examples, tok.pad_token_id) < before
