"""Config: precedence, environment and TOML parsing, errors identical across backends."""

from __future__ import annotations

import pytest

from heidi_engine.errors import ConfigError

ALL_KEYS = (
    "base_model, batch_size, chat_template, dev_tasks, eval_file_limit, eval_samples, "
    "eval_task_file, eval_temperature, fake_time, fsync, grad_accum, gradient_checkpointing, "
    "lora_alpha, lora_r, lr, mock_subprocesses, out_dir, pipeline_mode, python, qlora, "
    "report_to, rounds, run_id, run_unit_tests, samples_per_round, sandbox, sandbox_memory_mb, "
    "sandbox_timeout_s, sandbox_workers, save_steps, seed, seq_len, stage_cmd_eval, "
    "stage_cmd_generate, stage_cmd_test, stage_cmd_train, stage_cmd_validate, stage_timeout_s, "
    "task_file, task_source, teacher, teacher_api_key_env, teacher_base_url, teacher_cache, "
    "teacher_cache_file, teacher_concurrency, teacher_extra_body, teacher_keep_per_task, "
    "teacher_max_tokens, teacher_model, teacher_price_completion, teacher_price_prompt, "
    "teacher_response_format, teacher_rpm, teacher_samples, teacher_system_prompt, "
    "teacher_temperature, teacher_token_field, teacher_top_p, teacher_tpm, test_tasks, "
    "train_launcher, train_packing, train_precision, train_steps, val_ratio"
)

DEFAULT_ENV = {
    "OUT_DIR": "./heidi_out",
    "PIPELINE_MODE": "full",
    "RUN_UNIT_TESTS": "1",
    "ROUNDS": "2",
    "SAMPLES_PER_ROUND": "240",
    "RUN_ID": "",
    "SEED": "42",
    "VAL_RATIO": "0.1",
    "HEIDI_MOCK_SUBPROCESSES": "0",
    "HEIDI_STAGE_TIMEOUT_S": "0.0",
    "HEIDI_FSYNC": "1",
    "HEIDI_FAKE_TIME": "",
    "HEIDI_PYTHON": "",
    "HEIDI_STAGE_CMD_GENERATE": "",
    "HEIDI_STAGE_CMD_VALIDATE": "",
    "HEIDI_STAGE_CMD_TEST": "",
    "HEIDI_STAGE_CMD_TRAIN": "",
    "HEIDI_STAGE_CMD_EVAL": "",
    "HEIDI_TASK_SOURCE": "procedural",
    "HEIDI_TASK_FILE": "",
    "HEIDI_EVAL_TASK_FILE": "",
    "HEIDI_DEV_TASKS": "50",
    "HEIDI_TEST_TASKS": "100",
    "HEIDI_EVAL_FILE_LIMIT": "0",
    "HEIDI_EVAL_SAMPLES": "0",
    "HEIDI_EVAL_TEMPERATURE": "0.8",
    "HEIDI_TEACHER": "reference",
    "HEIDI_TEACHER_MODEL": "",
    "HEIDI_TEACHER_BASE_URL": "",
    "HEIDI_TEACHER_API_KEY_ENV": "OPENAI_API_KEY",
    "HEIDI_TEACHER_CONCURRENCY": "8",
    "HEIDI_TEACHER_SAMPLES": "1",
    "HEIDI_TEACHER_KEEP_PER_TASK": "1",
    "HEIDI_TEACHER_TEMPERATURE": "0.0",
    "HEIDI_TEACHER_TOP_P": "1.0",
    "HEIDI_TEACHER_MAX_TOKENS": "1024",
    "HEIDI_TEACHER_TOKEN_FIELD": "max_tokens",
    "HEIDI_TEACHER_EXTRA_BODY": "",
    "HEIDI_TEACHER_SYSTEM_PROMPT": "",
    "HEIDI_TEACHER_RESPONSE_FORMAT": "auto",
    "HEIDI_TEACHER_CACHE": "1",
    "HEIDI_TEACHER_CACHE_FILE": "",
    "HEIDI_TEACHER_RPM": "0.0",
    "HEIDI_TEACHER_TPM": "0.0",
    "HEIDI_TEACHER_PRICE_PROMPT": "0.0",
    "HEIDI_TEACHER_PRICE_COMPLETION": "0.0",
    "BASE_MODEL": "smollm2",
    "TRAIN_STEPS": "72",
    "LR": "0.0015",
    "LORA_R": "8",
    "LORA_ALPHA": "16",
    "SEQ_LEN": "384",
    "BATCH_SIZE": "4",
    "GRAD_ACCUM": "1",
    "HEIDI_TRAIN_PRECISION": "auto",
    "HEIDI_QLORA": "auto",
    "HEIDI_CHAT_TEMPLATE": "auto",
    "HEIDI_TRAIN_PACKING": "0",
    "HEIDI_GRADIENT_CHECKPOINTING": "0",
    "HEIDI_SAVE_STEPS": "10",
    "HEIDI_REPORT_TO": "tensorboard",
    "HEIDI_TRAIN_LAUNCHER": "",
    "HEIDI_SANDBOX_TIMEOUT_S": "10.0",
    "HEIDI_SANDBOX_MEMORY_MB": "1024",
    "HEIDI_SANDBOX_WORKERS": "0",
    "HEIDI_SANDBOX": "auto",
}


def config_error(backend, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        backend.Config.from_env(*args, **kwargs)
    return str(info.value)


def test_defaults_and_to_env(backend, clean_env):
    config = backend.Config.from_env()
    assert config.to_env() == DEFAULT_ENV
    assert list(config.to_env()) == list(DEFAULT_ENV)
    assert config.rounds == 2 and config.val_ratio == 0.1 and config.fsync is True
    assert config.base_model == "smollm2" and config.run_id == ""
    assert backend.Config.field_names()[0] == "out_dir"
    assert backend.Config.env_names()["mock_subprocesses"] == "HEIDI_MOCK_SUBPROCESSES"
    assert sorted(backend.Config.field_names()) == ALL_KEYS.split(", ")


def test_environment(backend, clean_env):
    clean_env.setenv("ROUNDS", "7")
    clean_env.setenv("VAL_RATIO", "0.25")
    clean_env.setenv("HEIDI_FSYNC", "FALSE")
    clean_env.setenv("RUN_UNIT_TESTS", "0")
    clean_env.setenv("PIPELINE_MODE", "collect")
    clean_env.setenv("LR", "1e-4")
    clean_env.setenv("HEIDI_FAKE_TIME", "2026-01-01T00:00:00.000Z")
    clean_env.setenv("RUN_ID", "run_a.b-c")
    config = backend.Config.from_env()
    assert (config.rounds, config.val_ratio, config.fsync, config.run_unit_tests) == (7, 0.25, False, False)
    assert (config.pipeline_mode, config.lr, config.run_id) == ("collect", 0.0001, "run_a.b-c")
    assert config.to_env()["LR"] == "0.0001"
    assert config.to_env()["HEIDI_FSYNC"] == "0"


def test_precedence_toml_env_overrides(backend, clean_env, tmp_path):
    toml = tmp_path / "heidi.toml"
    toml.write_text('rounds = 5\nseed = 9\nbase_model = "tiny"\nval_ratio = 0\nfsync = 0\n')
    config = backend.Config.from_env(config_file=str(toml))
    assert (config.rounds, config.seed, config.base_model, config.val_ratio, config.fsync) == (
        5, 9, "tiny", 0.0, False)
    clean_env.setenv("ROUNDS", "6")
    clean_env.setenv("SEED", "10")
    config = backend.Config.from_env(toml, rounds=8)
    assert (config.rounds, config.seed, config.base_model) == (8, 10, "tiny")
    # HEIDI_CONFIG names the file when none is given; None overrides are ignored.
    clean_env.setenv("HEIDI_CONFIG", str(toml))
    config = backend.Config.from_env(rounds=None, seed="11")
    assert (config.rounds, config.seed, config.base_model) == (6, 11, "tiny")


def test_overrides_typed_and_string(backend, clean_env, tmp_path):
    config = backend.Config.from_env(
        rounds=2, val_ratio=0.5, fsync=False, mock_subprocesses="true", out_dir=tmp_path, lr=1
    )
    assert (config.rounds, config.val_ratio, config.fsync, config.mock_subprocesses) == (2, 0.5, False, True)
    assert config.out_dir == str(tmp_path)
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config == backend.Config.from_env(
        rounds="2", val_ratio="0.5", fsync="0", mock_subprocesses=1, out_dir=str(tmp_path), lr="1"
    )


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("ROUNDS", "abc", "invalid value for ROUNDS: 'abc' (expected an integer >= 1)"),
        ("ROUNDS", "0", "invalid value for ROUNDS: '0' (expected an integer >= 1)"),
        ("ROUNDS", " 3", "invalid value for ROUNDS: ' 3' (expected an integer >= 1)"),
        ("ROUNDS", "1_000", "invalid value for ROUNDS: '1_000' (expected an integer >= 1)"),
        ("ROUNDS", "99999999999999999999", "invalid value for ROUNDS: '99999999999999999999' (expected an integer >= 1)"),
        ("SEED", "-1", "invalid value for SEED: '-1' (expected an integer >= 0)"),
        ("SEQ_LEN", "8", "invalid value for SEQ_LEN: '8' (expected an integer >= 16)"),
        ("PIPELINE_MODE", "fast", "invalid value for PIPELINE_MODE: 'fast' (valid: full, collect)"),
        ("HEIDI_TEACHER", "gpt", "invalid value for HEIDI_TEACHER: 'gpt' (valid: reference, openai, local, mock)"),
        ("HEIDI_TASK_SOURCE", "", "invalid value for HEIDI_TASK_SOURCE: '' (valid: procedural, file, llm_gen)"),
        ("RUN_UNIT_TESTS", "yes", "invalid value for RUN_UNIT_TESTS: 'yes' (expected 0, 1, true or false)"),
        ("VAL_RATIO", "1", "invalid value for VAL_RATIO: '1' (expected a number >= 0 and < 1)"),
        ("VAL_RATIO", "nan", "invalid value for VAL_RATIO: 'nan' (expected a number >= 0 and < 1)"),
        ("LR", "0", "invalid value for LR: '0' (expected a number > 0)"),
        ("LR", "inf", "invalid value for LR: 'inf' (expected a number > 0)"),
        ("LR", "1e999", "invalid value for LR: '1e999' (expected a number > 0)"),
        ("HEIDI_STAGE_TIMEOUT_S", "-1", "invalid value for HEIDI_STAGE_TIMEOUT_S: '-1' (expected a number >= 0)"),
        ("OUT_DIR", "", "invalid value for OUT_DIR: '' (expected a non-empty path)"),
        ("RUN_ID", "a b", "invalid value for RUN_ID: 'a b' (expected 1-128 characters from A-Z a-z 0-9 _ . -)"),
        ("RUN_ID", "x" * 129, f"invalid value for RUN_ID: '{'x' * 129}' (expected 1-128 characters from A-Z a-z 0-9 _ . -)"),
        ("HEIDI_FAKE_TIME", "2026-01-01", "invalid value for HEIDI_FAKE_TIME: '2026-01-01' (expected YYYY-MM-DDTHH:MM:SS.mmmZ)"),
        ("HEIDI_SANDBOX_MEMORY_MB", "63", "invalid value for HEIDI_SANDBOX_MEMORY_MB: '63' (expected an integer >= 64)"),
        ("HEIDI_TEACHER_TOP_P", "0", "invalid value for HEIDI_TEACHER_TOP_P: '0' (expected a number > 0 and <= 1)"),
        ("HEIDI_TEACHER_TOP_P", "1.5", "invalid value for HEIDI_TEACHER_TOP_P: '1.5' (expected a number > 0 and <= 1)"),
        ("HEIDI_TEACHER_SAMPLES", "0", "invalid value for HEIDI_TEACHER_SAMPLES: '0' (expected an integer >= 1)"),
        ("HEIDI_TEACHER_TOKEN_FIELD", "max_length", "invalid value for HEIDI_TEACHER_TOKEN_FIELD: 'max_length' (valid: max_tokens, max_completion_tokens)"),
        ("HEIDI_TEACHER_RPM", "-1", "invalid value for HEIDI_TEACHER_RPM: '-1' (expected a number >= 0)"),
    ],
)
def test_bad_environment_values(backend, clean_env, env, value, message):
    clean_env.setenv(env, value)
    assert config_error(backend) == message


def test_bad_toml_values_name_the_key(backend, clean_env, tmp_path):
    cases = [
        ('rounds = "abc"', "invalid value for rounds: 'abc' (expected an integer >= 1)"),
        ("rounds = 2.0", "invalid value for rounds: '2.0' (expected an integer >= 1)"),
        ("rounds = true", "invalid value for rounds: 'true' (expected an integer >= 1)"),
        ("fsync = 2", "invalid value for fsync: '2' (expected 0, 1, true or false)"),
        ("lr = [1]", "invalid value for lr: '<array>' (expected a number > 0)"),
        ("base_model = 3", "invalid value for base_model: '3' (expected a string)"),
        ("fake_time = 2026-01-01T00:00:00Z", "invalid value for fake_time: '<datetime>' (expected YYYY-MM-DDTHH:MM:SS.mmmZ)"),
        ("val_ratio = 1e-300\nseed = -2", "invalid value for seed: '-2' (expected an integer >= 0)"),
        ("[teacher]\nx = 1", "invalid value for teacher: '<table>' (valid: reference, openai, local, mock)"),
    ]
    for text, message in cases:
        toml = tmp_path / "c.toml"
        toml.write_text(text + "\n")
        assert config_error(backend, config_file=str(toml)) == message, text


def test_unknown_keys(backend, clean_env, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("zeta = 1\nroundz = 2\nrounds = 0\n")
    assert config_error(backend, config_file=str(toml)) == (
        f"unknown config key 'roundz' in {toml} (valid keys: {ALL_KEYS})"
    )
    assert config_error(backend, roundz=1) == f"unknown config key 'roundz' (valid keys: {ALL_KEYS})"


def test_unreadable_and_invalid_toml(backend, clean_env, tmp_path):
    missing = tmp_path / "missing.toml"
    assert config_error(backend, config_file=str(missing)) == (
        f"cannot read config file {missing}: No such file or directory"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = = 3\n")
    assert config_error(backend, config_file=str(bad)).startswith(f"invalid TOML in {bad}: ")


def test_precedence_of_errors(backend, clean_env, tmp_path):
    # The environment is read after the file: a bad file value fails first.
    toml = tmp_path / "c.toml"
    toml.write_text("rounds = 0\n")
    clean_env.setenv("SEED", "x")
    assert config_error(backend, config_file=str(toml)).startswith("invalid value for rounds:")
    toml.write_text("rounds = 1\n")
    assert config_error(backend, config_file=str(toml)).startswith("invalid value for SEED:")


def test_override_types(backend, clean_env):
    with pytest.raises(TypeError) as info:
        backend.Config.from_env(rounds=[1])
    assert str(info.value) == "override rounds must be str, int, float, bool or None, not list"
    assert config_error(backend, rounds=True) == "invalid value for rounds: 'true' (expected an integer >= 1)"
    assert config_error(backend, val_ratio=10**400) == (
        f"invalid value for val_ratio: '{10**400}' (expected a number >= 0 and < 1)"
    )
    assert config_error(backend, rounds=2**64) == (
        f"invalid value for rounds: '{2**64}' (expected an integer >= 1)"
    )


def test_round_trip_through_environment(backend, clean_env):
    config = backend.Config.from_env(
        rounds=4, lr=3e-5, val_ratio=0.2, sandbox_timeout_s=2.5, stage_cmd_test="my-test --fast",
        fake_time="2026-01-01T00:00:00.000Z", run_unit_tests=False,
    )
    for key, value in config.to_env().items():
        clean_env.setenv(key, value)
    assert backend.Config.from_env() == config
    assert config.to_env()["LR"] == "3e-05"


def test_stage_timeouts(backend, clean_env):
    config = backend.Config.from_env()
    assert [config.stage_timeout_for(s) for s in ("generate", "validate", "test", "train", "eval")] == [
        3600.0, 1800.0, 3600.0, 14400.0, 3600.0]
    assert backend.Config.from_env(stage_timeout_s=5).stage_timeout_for("train") == 5.0
    with pytest.raises(ValueError) as info:
        config.stage_timeout_for("pipeline")
    assert str(info.value) == "unknown stage 'pipeline' (valid: generate, validate, test, train, eval)"


def test_repr_and_immutability(backend, clean_env):
    config = backend.Config.from_env()
    assert repr(config).startswith("Config(out_dir='./heidi_out', pipeline_mode='full', run_unit_tests=True, rounds=2")
    with pytest.raises(AttributeError):
        config.rounds = 5
    assert hash(config) == hash(backend.Config.from_env())
