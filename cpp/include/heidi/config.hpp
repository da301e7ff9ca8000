// Typed configuration: defaults < TOML file < environment < overrides (docs/design.md,
// "Config"). Every invalid input is a ConfigError whose text matches the Python backend.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace heidi {

struct Config {
    std::string out_dir = "./heidi_out";
    std::string pipeline_mode = "full";
    bool run_unit_tests = true;
    std::int64_t rounds = 2;
    std::int64_t samples_per_round = 240;
    std::string run_id;  // empty = generate
    std::int64_t seed = 42;
    double val_ratio = 0.1;
    bool mock_subprocesses = false;
    double stage_timeout_s = 0.0;  // 0 = per-stage default
    bool fsync = true;
    std::string fake_time;  // empty = real time
    std::string python;     // interpreter for stages; empty = see docs/design.md
    std::string stage_cmd_generate;
    std::string stage_cmd_validate;
    std::string stage_cmd_test;
    std::string stage_cmd_train;
    std::string stage_cmd_eval;
    std::string task_source = "procedural";
    std::string task_file;
    std::string eval_task_file;
    std::int64_t dev_tasks = 50;        // procedural dev split: steers revisits and promotion
    std::int64_t test_tasks = 100;      // procedural test split: only measured
    std::int64_t eval_file_limit = 0;   // 0 = the whole HEIDI_EVAL_TASK_FILE
    std::int64_t eval_samples = 0;      // samples per task for pass@k; 0 = off
    double eval_temperature = 0.8;      // sampling temperature for pass@k
    std::string teacher = "reference";
    std::string teacher_model;
    std::string teacher_base_url;
    std::string teacher_api_key_env = "OPENAI_API_KEY";
    std::int64_t teacher_concurrency = 8;
    std::int64_t teacher_samples = 1;        // answers requested per task
    std::int64_t teacher_keep_per_task = 1;  // distinct passing answers kept per task
    double teacher_temperature = 0.0;
    double teacher_top_p = 1.0;
    std::int64_t teacher_max_tokens = 1024;
    std::string teacher_token_field = "max_tokens";
    std::string teacher_extra_body;          // JSON object merged into each request body
    std::string teacher_system_prompt;       // empty = the built-in prompt
    std::string teacher_response_format = "auto";
    bool teacher_cache = true;
    std::string teacher_cache_file;          // empty = OUT_DIR/cache/teacher_responses.jsonl
    double teacher_rpm = 0.0;                // 0 = no limit
    double teacher_tpm = 0.0;
    double teacher_price_prompt = 0.0;       // per million tokens
    double teacher_price_completion = 0.0;
    std::string base_model = "smollm2";
    std::int64_t train_steps = 72;
    double lr = 0.0015;
    std::int64_t lora_r = 8;
    std::int64_t lora_alpha = 16;
    std::int64_t seq_len = 384;
    std::int64_t batch_size = 4;
    std::int64_t grad_accum = 1;
    std::string train_precision = "auto";
    std::string qlora = "auto";
    std::string chat_template = "auto";
    bool train_packing = false;
    bool gradient_checkpointing = false;
    std::int64_t save_steps = 10;  // 0 = no checkpoints
    std::string report_to = "tensorboard";
    std::string train_launcher;
    double sandbox_timeout_s = 10.0;
    std::int64_t sandbox_memory_mb = 1024;
    std::int64_t sandbox_workers = 0;  // 0 = number of cores
    std::string sandbox = "auto";      // auto | bubblewrap | rlimits-unsafe

    // A typed value from a TOML file or an override. A string is parsed like the
    // environment form; other types must suit the field (ints for ints, ints or floats
    // for floats, booleans or 0/1 for booleans).
    using Value = std::variant<bool, std::int64_t, double, std::string>;
    using Overrides = std::vector<std::pair<std::string, Value>>;
    using Environment = std::map<std::string, std::string, std::less<>>;

    // Reads the process environment. config_file empty = $HEIDI_CONFIG, if set.
    static Config from_env(const std::string& config_file = "", const Overrides& overrides = {});
    // Same, from an explicit environment (tests, the daemon).
    static Config from_sources(const Environment& env, const std::string& config_file,
                               const Overrides& overrides);

    // Every field in its environment form, in field order: floats as Python repr,
    // booleans as 0/1. Stage processes read it back with from_env().
    std::vector<std::pair<std::string, std::string>> to_env() const;

    // The stage's wall-clock limit: stage_timeout_s, or the per-stage default when 0.
    // Throws std::invalid_argument for an unknown stage.
    double stage_timeout_for(std::string_view stage) const;

    // Field names in declaration order, and field name -> environment variable name.
    static const std::vector<std::string>& field_names();
    static const std::vector<std::pair<std::string, std::string>>& env_names();

    bool operator==(const Config&) const = default;
};

}  // namespace heidi
