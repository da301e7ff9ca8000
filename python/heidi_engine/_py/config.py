"""Typed configuration (SPEC §3, docs/design.md "Config").

Precedence, lowest first: defaults, a TOML file (``config_file=`` or ``HEIDI_CONFIG``), the
environment, keyword overrides. Each field maps to one environment variable. Every bad input
is a :class:`~heidi_engine.errors.ConfigError` whose text the native backend reproduces.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..run_layout import MODES
from .clock import is_iso_ms

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_RUN_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")

STAGE_DEFAULT_TIMEOUTS_S = {
    "generate": 3600.0,
    "validate": 1800.0,
    "test": 3600.0,
    "train": 14400.0,
    "eval": 3600.0,
}


@dataclass(frozen=True)
class _Field:
    name: str
    env: str
    kind: str  # str | path | choice | bool | int | float | run_id | iso
    default: Any
    choices: tuple[str, ...] = ()
    minimum: float = 0  # int: value >= minimum; float: see float_ok
    float_ok: str = ""  # ">=0" | ">0" | "[0,1)" | "(0,1]"


def _setting(env: str, kind: str, default: Any, **rules: Any) -> Any:
    """A Config field: its default, and how its environment variable is read and checked
    (``rules``: the other :class:`_Field` attributes)."""
    return dataclasses.field(default=default, metadata={"env": env, "kind": kind, **rules})

_FLOAT_EXPECT = {
    ">=0": "expected a number >= 0",
    ">0": "expected a number > 0",
    "[0,1)": "expected a number >= 0 and < 1",
    "(0,1]": "expected a number > 0 and <= 1",
}


def _expectation(field: _Field) -> str:
    if field.kind == "choice":
        return "valid: " + ", ".join(field.choices)
    if field.kind == "bool":
        return "expected 0, 1, true or false"
    if field.kind == "int":
        return f"expected an integer >= {int(field.minimum)}"
    if field.kind == "float":
        return _FLOAT_EXPECT[field.float_ok]
    if field.kind == "path":
        return "expected a non-empty path"
    if field.kind == "run_id":
        return "expected 1-128 characters from A-Z a-z 0-9 _ . -"
    if field.kind == "iso":
        return "expected YYYY-MM-DDTHH:MM:SS.mmmZ"
    return "expected a string"


def _render(value: Any) -> str:
    """How a bad value appears in an error (the same text in both backends)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "<array>"
    if isinstance(value, dict):
        return "<table>"
    if isinstance(value, (_dt.date, _dt.time)):
        return "<datetime>"
    return f"<{type(value).__name__}>"


def _float_in_range(field: _Field, number: float) -> bool:
    if not math.isfinite(number):
        return False
    if field.float_ok == ">=0":
        return number >= 0
    if field.float_ok == ">0":
        return number > 0
    if field.float_ok == "(0,1]":
        return 0 < number <= 1
    return 0 <= number < 1


def _convert(field: _Field, value: Any, label: str) -> Any:
    """Check one value from any source; ``label`` names it in the error."""

    def bad() -> ConfigError:
        return ConfigError(f"invalid value for {label}: '{_render(value)}' ({_expectation(field)})")

    kind = field.kind
    if isinstance(value, str):
        if kind == "bool":
            lowered = value.lower() if value.isascii() else ""
            if lowered in ("1", "true"):
                return True
            if lowered in ("0", "false"):
                return False
            raise bad()
        if kind == "int":
            if not _INT_RE.fullmatch(value):
                raise bad()
            number = int(value)
            if not (_INT64_MIN <= number <= _INT64_MAX) or number < field.minimum:
                raise bad()
            return number
        if kind == "float":
            if not _FLOAT_RE.fullmatch(value):
                raise bad()
            number = float(value)
            if not _float_in_range(field, number):
                raise bad()
            return number
        if kind == "choice" and value not in field.choices:
            raise bad()
        if kind == "path" and not value:
            raise bad()
        if kind == "run_id" and value and not _RUN_ID_RE.fullmatch(value):
            raise bad()
        if kind == "iso" and value and not is_iso_ms(value):
            raise bad()
        return value
    # Typed values (TOML, keyword overrides).
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if is_int and value in (0, 1):
            return bool(value)
        raise bad()
    if kind == "int":
        if is_int and _INT64_MIN <= value <= _INT64_MAX and value >= field.minimum:
            return value
        raise bad()
    if kind == "float":
        if is_int:
            try:
                number = float(value)
            except OverflowError:
                raise bad() from None
        elif isinstance(value, float):
            number = value
        else:
            raise bad()
        if not _float_in_range(field, number):
            raise bad()
        return number
    raise bad()


def _env_form(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}") from None


@dataclass(frozen=True)
class Config:
    """The engine's configuration; build it with :meth:`from_env`.

    Each field is a row of the configuration table: its environment variable, kind,
    default and the rule its values must meet.
    """

    out_dir: str = _setting("OUT_DIR", "path", "./heidi_out")
    pipeline_mode: str = _setting("PIPELINE_MODE", "choice", "full", choices=MODES)
    run_unit_tests: bool = _setting("RUN_UNIT_TESTS", "bool", True)
    rounds: int = _setting("ROUNDS", "int", 2, minimum=1)
    samples_per_round: int = _setting("SAMPLES_PER_ROUND", "int", 240, minimum=1)
    run_id: str = _setting("RUN_ID", "run_id", "")
    seed: int = _setting("SEED", "int", 42, minimum=0)
    val_ratio: float = _setting("VAL_RATIO", "float", 0.1, float_ok="[0,1)")
    mock_subprocesses: bool = _setting("HEIDI_MOCK_SUBPROCESSES", "bool", False)
    stage_timeout_s: float = _setting("HEIDI_STAGE_TIMEOUT_S", "float", 0.0, float_ok=">=0")
    fsync: bool = _setting("HEIDI_FSYNC", "bool", True)
    fake_time: str = _setting("HEIDI_FAKE_TIME", "iso", "")
    python: str = _setting("HEIDI_PYTHON", "str", "")
    stage_cmd_generate: str = _setting("HEIDI_STAGE_CMD_GENERATE", "str", "")
    stage_cmd_validate: str = _setting("HEIDI_STAGE_CMD_VALIDATE", "str", "")
    stage_cmd_test: str = _setting("HEIDI_STAGE_CMD_TEST", "str", "")
    stage_cmd_train: str = _setting("HEIDI_STAGE_CMD_TRAIN", "str", "")
    stage_cmd_eval: str = _setting("HEIDI_STAGE_CMD_EVAL", "str", "")
    task_source: str = _setting(
        "HEIDI_TASK_SOURCE", "choice", "procedural", choices=("procedural", "file", "llm_gen")
    )
    task_file: str = _setting("HEIDI_TASK_FILE", "str", "")
    eval_task_file: str = _setting("HEIDI_EVAL_TASK_FILE", "str", "")
    dev_tasks: int = _setting("HEIDI_DEV_TASKS", "int", 50, minimum=1)
    test_tasks: int = _setting("HEIDI_TEST_TASKS", "int", 100, minimum=1)
    eval_file_limit: int = _setting("HEIDI_EVAL_FILE_LIMIT", "int", 0, minimum=0)
    eval_samples: int = _setting("HEIDI_EVAL_SAMPLES", "int", 0, minimum=0)
    eval_temperature: float = _setting("HEIDI_EVAL_TEMPERATURE", "float", 0.8, float_ok=">0")
    teacher: str = _setting(
        "HEIDI_TEACHER", "choice", "reference", choices=("reference", "openai", "local", "mock")
    )
    teacher_model: str = _setting("HEIDI_TEACHER_MODEL", "str", "")
    teacher_base_url: str = _setting("HEIDI_TEACHER_BASE_URL", "str", "")
    teacher_api_key_env: str = _setting("HEIDI_TEACHER_API_KEY_ENV", "str", "OPENAI_API_KEY")
    teacher_concurrency: int = _setting("HEIDI_TEACHER_CONCURRENCY", "int", 8, minimum=1)
    teacher_samples: int = _setting("HEIDI_TEACHER_SAMPLES", "int", 1, minimum=1)
    teacher_keep_per_task: int = _setting("HEIDI_TEACHER_KEEP_PER_TASK", "int", 1, minimum=1)
    teacher_temperature: float = _setting("HEIDI_TEACHER_TEMPERATURE", "float", 0.0, float_ok=">=0")
    teacher_top_p: float = _setting("HEIDI_TEACHER_TOP_P", "float", 1.0, float_ok="(0,1]")
    teacher_max_tokens: int = _setting("HEIDI_TEACHER_MAX_TOKENS", "int", 1024, minimum=1)
    teacher_token_field: str = _setting(
        "HEIDI_TEACHER_TOKEN_FIELD", "choice", "max_tokens",
        choices=("max_tokens", "max_completion_tokens"),
    )
    teacher_extra_body: str = _setting("HEIDI_TEACHER_EXTRA_BODY", "str", "")
    teacher_system_prompt: str = _setting("HEIDI_TEACHER_SYSTEM_PROMPT", "str", "")
    teacher_response_format: str = _setting(
        "HEIDI_TEACHER_RESPONSE_FORMAT", "choice", "auto", choices=("auto", "json_object", "off")
    )
    teacher_cache: bool = _setting("HEIDI_TEACHER_CACHE", "bool", True)
    teacher_cache_file: str = _setting("HEIDI_TEACHER_CACHE_FILE", "str", "")
    teacher_rpm: float = _setting("HEIDI_TEACHER_RPM", "float", 0.0, float_ok=">=0")
    teacher_tpm: float = _setting("HEIDI_TEACHER_TPM", "float", 0.0, float_ok=">=0")
    teacher_price_prompt: float = _setting(
        "HEIDI_TEACHER_PRICE_PROMPT", "float", 0.0, float_ok=">=0"
    )
    teacher_price_completion: float = _setting(
        "HEIDI_TEACHER_PRICE_COMPLETION", "float", 0.0, float_ok=">=0"
    )
    base_model: str = _setting("BASE_MODEL", "str", "smollm2")
    train_steps: int = _setting("TRAIN_STEPS", "int", 72, minimum=1)
    lr: float = _setting("LR", "float", 0.0015, float_ok=">0")
    lora_r: int = _setting("LORA_R", "int", 8, minimum=1)
    lora_alpha: int = _setting("LORA_ALPHA", "int", 16, minimum=1)
    seq_len: int = _setting("SEQ_LEN", "int", 384, minimum=16)
    batch_size: int = _setting("BATCH_SIZE", "int", 4, minimum=1)
    grad_accum: int = _setting("GRAD_ACCUM", "int", 1, minimum=1)
    train_precision: str = _setting(
        "HEIDI_TRAIN_PRECISION", "choice", "auto", choices=("auto", "fp32", "bf16", "fp16")
    )
    qlora: str = _setting("HEIDI_QLORA", "choice", "auto", choices=("auto", "on", "off"))
    chat_template: str = _setting(
        "HEIDI_CHAT_TEMPLATE", "choice", "auto", choices=("auto", "on", "off")
    )
    train_packing: bool = _setting("HEIDI_TRAIN_PACKING", "bool", False)
    gradient_checkpointing: bool = _setting("HEIDI_GRADIENT_CHECKPOINTING", "bool", False)
    save_steps: int = _setting("HEIDI_SAVE_STEPS", "int", 10, minimum=0)
    report_to: str = _setting("HEIDI_REPORT_TO", "str", "tensorboard")
    train_launcher: str = _setting("HEIDI_TRAIN_LAUNCHER", "str", "")
    sandbox_timeout_s: float = _setting("HEIDI_SANDBOX_TIMEOUT_S", "float", 10.0, float_ok=">0")
    sandbox_memory_mb: int = _setting("HEIDI_SANDBOX_MEMORY_MB", "int", 1024, minimum=64)
    sandbox_workers: int = _setting("HEIDI_SANDBOX_WORKERS", "int", 0, minimum=0)
    sandbox: str = _setting(
        "HEIDI_SANDBOX", "choice", "auto", choices=("auto", "bubblewrap", "rlimits-unsafe")
    )

    @classmethod
    def from_env(cls, config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Config:
        """Defaults < TOML file (``config_file`` or ``$HEIDI_CONFIG``) < environment < overrides.

        An override of None is ignored; a string override is parsed like the environment.
        """
        typed_overrides: dict[str, Any] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if not isinstance(value, (str, int, float)):
                raise TypeError(
                    f"override {key} must be str, int, float, bool or None, "
                    f"not {type(value).__name__}"
                )
            typed_overrides[key] = value
        values: dict[str, Any] = {}
        path = os.fspath(config_file) if config_file is not None else ""
        if not path:
            path = os.environ.get("HEIDI_CONFIG", "")
        if path:
            table = _read_toml(path)
            unknown = sorted(key for key in table if key not in _BY_NAME)
            if unknown:
                raise ConfigError(
                    f"unknown config key '{unknown[0]}' in {path} (valid keys: {_VALID_KEYS})"
                )
            for field in _FIELDS:
                if field.name in table:
                    values[field.name] = _convert(field, table[field.name], field.name)
        for field in _FIELDS:
            raw = os.environ.get(field.env)
            if raw is not None:
                values[field.name] = _convert(field, raw, field.env)
        unknown = sorted(key for key in typed_overrides if key not in _BY_NAME)
        if unknown:
            raise ConfigError(f"unknown config key '{unknown[0]}' (valid keys: {_VALID_KEYS})")
        for field in _FIELDS:
            if field.name in typed_overrides:
                values[field.name] = _convert(field, typed_overrides[field.name], field.name)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """Every field in its environment form (floats as repr, booleans as 0/1)."""
        return {field.env: _env_form(getattr(self, field.name)) for field in _FIELDS}

    def stage_timeout_for(self, stage: str) -> float:
        """The stage's wall-clock limit: ``stage_timeout_s``, or the stage's default when 0."""
        if stage not in STAGE_DEFAULT_TIMEOUTS_S:
            raise ValueError(
                f"unknown stage '{stage}' (valid: {', '.join(STAGE_DEFAULT_TIMEOUTS_S)})"
            )
        return self.stage_timeout_s if self.stage_timeout_s > 0 else STAGE_DEFAULT_TIMEOUTS_S[stage]

    @staticmethod
    def field_names() -> list[str]:
        return [field.name for field in _FIELDS]

    @staticmethod
    def env_names() -> dict[str, str]:
        """Field name -> environment variable."""
        return {field.name: field.env for field in _FIELDS}

    @staticmethod
    def choices(name: str) -> tuple[str, ...]:
        """The values a choice field (e.g. ``teacher``) takes."""
        return _BY_NAME[name].choices

    @staticmethod
    def check_choice(name: str, value: str) -> str:
        """``value`` if field ``name`` takes it, else the ConfigError its environment
        variable gets for it."""
        return _convert(_BY_NAME[name], value, _BY_NAME[name].env)


# The field table: one row per Config field, in declaration order.
_FIELDS: tuple[_Field, ...] = tuple(
    _Field(f.name, default=f.default, **f.metadata) for f in dataclasses.fields(Config)
)
_BY_NAME = {field.name: field for field in _FIELDS}
_VALID_KEYS = ", ".join(sorted(_BY_NAME))


def setting_from_env(name: str) -> Any:
    """One field as the environment alone sets it (its default when unset), checked as
    :meth:`Config.from_env` checks it: for code that needs a single setting, not a run's
    whole configuration (the file writers of :mod:`heidi_engine.io` take ``fsync`` so)."""
    field = _BY_NAME[name]
    raw = os.environ.get(field.env)
    return field.default if raw is None else _convert(field, raw, field.env)


__all__ = ["Config", "STAGE_DEFAULT_TIMEOUTS_S", "setting_from_env"]
