#include "heidi/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include <toml++/toml.h>

#include "heidi/clock.hpp"
#include "heidi/errors.hpp"
#include "heidi/fsutil.hpp"
#include "heidi/json.hpp"

namespace heidi {

namespace {

enum class Kind { String, Path, Choice, Bool, Int, Float, RunId, Iso };
enum class FloatRange { AtLeastZero, AboveZero, UnitInterval, UnitAboveZero };

using Member = std::variant<std::string Config::*, bool Config::*, std::int64_t Config::*, double Config::*>;

struct Field {
    const char* name;
    const char* env;
    Kind kind;
    Member member;
    std::vector<std::string> choices = {};
    std::int64_t minimum = 0;
    FloatRange range = FloatRange::AtLeastZero;
};

const std::vector<Field>& fields() {
    static const std::vector<Field> table = {
        {"out_dir", "OUT_DIR", Kind::Path, &Config::out_dir},
        {"pipeline_mode", "PIPELINE_MODE", Kind::Choice, &Config::pipeline_mode, {"full", "collect"}},
        {"run_unit_tests", "RUN_UNIT_TESTS", Kind::Bool, &Config::run_unit_tests},
        {"rounds", "ROUNDS", Kind::Int, &Config::rounds, {}, 1},
        {"samples_per_round", "SAMPLES_PER_ROUND", Kind::Int, &Config::samples_per_round, {}, 1},
        {"run_id", "RUN_ID", Kind::RunId, &Config::run_id},
        {"seed", "SEED", Kind::Int, &Config::seed, {}, 0},
        {"val_ratio", "VAL_RATIO", Kind::Float, &Config::val_ratio, {}, 0, FloatRange::UnitInterval},
        {"mock_subprocesses", "HEIDI_MOCK_SUBPROCESSES", Kind::Bool, &Config::mock_subprocesses},
        {"stage_timeout_s", "HEIDI_STAGE_TIMEOUT_S", Kind::Float, &Config::stage_timeout_s, {}, 0,
         FloatRange::AtLeastZero},
        {"fsync", "HEIDI_FSYNC", Kind::Bool, &Config::fsync},
        {"fake_time", "HEIDI_FAKE_TIME", Kind::Iso, &Config::fake_time},
        {"python", "HEIDI_PYTHON", Kind::String, &Config::python},
        {"stage_cmd_generate", "HEIDI_STAGE_CMD_GENERATE", Kind::String, &Config::stage_cmd_generate},
        {"stage_cmd_validate", "HEIDI_STAGE_CMD_VALIDATE", Kind::String, &Config::stage_cmd_validate},
        {"stage_cmd_test", "HEIDI_STAGE_CMD_TEST", Kind::String, &Config::stage_cmd_test},
        {"stage_cmd_train", "HEIDI_STAGE_CMD_TRAIN", Kind::String, &Config::stage_cmd_train},
        {"stage_cmd_eval", "HEIDI_STAGE_CMD_EVAL", Kind::String, &Config::stage_cmd_eval},
        {"task_source", "HEIDI_TASK_SOURCE", Kind::Choice, &Config::task_source, {"procedural", "file", "llm_gen"}},
        {"task_file", "HEIDI_TASK_FILE", Kind::String, &Config::task_file},
        {"eval_task_file", "HEIDI_EVAL_TASK_FILE", Kind::String, &Config::eval_task_file},
        {"dev_tasks", "HEIDI_DEV_TASKS", Kind::Int, &Config::dev_tasks, {}, 1},
        {"test_tasks", "HEIDI_TEST_TASKS", Kind::Int, &Config::test_tasks, {}, 1},
        {"eval_file_limit", "HEIDI_EVAL_FILE_LIMIT", Kind::Int, &Config::eval_file_limit, {}, 0},
        {"eval_samples", "HEIDI_EVAL_SAMPLES", Kind::Int, &Config::eval_samples, {}, 0},
        {"eval_temperature", "HEIDI_EVAL_TEMPERATURE", Kind::Float, &Config::eval_temperature, {}, 0,
         FloatRange::AboveZero},
        {"teacher", "HEIDI_TEACHER", Kind::Choice, &Config::teacher, {"reference", "openai", "local", "mock"}},
        {"teacher_model", "HEIDI_TEACHER_MODEL", Kind::String, &Config::teacher_model},
        {"teacher_base_url", "HEIDI_TEACHER_BASE_URL", Kind::String, &Config::teacher_base_url},
        {"teacher_api_key_env", "HEIDI_TEACHER_API_KEY_ENV", Kind::String, &Config::teacher_api_key_env},
        {"teacher_concurrency", "HEIDI_TEACHER_CONCURRENCY", Kind::Int, &Config::teacher_concurrency, {}, 1},
        {"teacher_samples", "HEIDI_TEACHER_SAMPLES", Kind::Int, &Config::teacher_samples, {}, 1},
        {"teacher_keep_per_task", "HEIDI_TEACHER_KEEP_PER_TASK", Kind::Int, &Config::teacher_keep_per_task, {}, 1},
        {"teacher_temperature", "HEIDI_TEACHER_TEMPERATURE", Kind::Float, &Config::teacher_temperature, {}, 0,
         FloatRange::AtLeastZero},
        {"teacher_top_p", "HEIDI_TEACHER_TOP_P", Kind::Float, &Config::teacher_top_p, {}, 0,
         FloatRange::UnitAboveZero},
        {"teacher_max_tokens", "HEIDI_TEACHER_MAX_TOKENS", Kind::Int, &Config::teacher_max_tokens, {}, 1},
        {"teacher_token_field", "HEIDI_TEACHER_TOKEN_FIELD", Kind::Choice, &Config::teacher_token_field,
         {"max_tokens", "max_completion_tokens"}},
        {"teacher_extra_body", "HEIDI_TEACHER_EXTRA_BODY", Kind::String, &Config::teacher_extra_body},
        {"teacher_system_prompt", "HEIDI_TEACHER_SYSTEM_PROMPT", Kind::String, &Config::teacher_system_prompt},
        {"teacher_response_format", "HEIDI_TEACHER_RESPONSE_FORMAT", Kind::Choice,
         &Config::teacher_response_format, {"auto", "json_object", "off"}},
        {"teacher_cache", "HEIDI_TEACHER_CACHE", Kind::Bool, &Config::teacher_cache},
        {"teacher_cache_file", "HEIDI_TEACHER_CACHE_FILE", Kind::String, &Config::teacher_cache_file},
        {"teacher_rpm", "HEIDI_TEACHER_RPM", Kind::Float, &Config::teacher_rpm, {}, 0, FloatRange::AtLeastZero},
        {"teacher_tpm", "HEIDI_TEACHER_TPM", Kind::Float, &Config::teacher_tpm, {}, 0, FloatRange::AtLeastZero},
        {"teacher_price_prompt", "HEIDI_TEACHER_PRICE_PROMPT", Kind::Float, &Config::teacher_price_prompt, {}, 0,
         FloatRange::AtLeastZero},
        {"teacher_price_completion", "HEIDI_TEACHER_PRICE_COMPLETION", Kind::Float,
         &Config::teacher_price_completion, {}, 0, FloatRange::AtLeastZero},
        {"base_model", "BASE_MODEL", Kind::String, &Config::base_model},
        {"train_steps", "TRAIN_STEPS", Kind::Int, &Config::train_steps, {}, 1},
        {"lr", "LR", Kind::Float, &Config::lr, {}, 0, FloatRange::AboveZero},
        {"lora_r", "LORA_R", Kind::Int, &Config::lora_r, {}, 1},
        {"lora_alpha", "LORA_ALPHA", Kind::Int, &Config::lora_alpha, {}, 1},
        {"seq_len", "SEQ_LEN", Kind::Int, &Config::seq_len, {}, 16},
        {"batch_size", "BATCH_SIZE", Kind::Int, &Config::batch_size, {}, 1},
        {"grad_accum", "GRAD_ACCUM", Kind::Int, &Config::grad_accum, {}, 1},
        {"train_precision", "HEIDI_TRAIN_PRECISION", Kind::Choice, &Config::train_precision,
         {"auto", "fp32", "bf16", "fp16"}},
        {"qlora", "HEIDI_QLORA", Kind::Choice, &Config::qlora, {"auto", "on", "off"}},
        {"chat_template", "HEIDI_CHAT_TEMPLATE", Kind::Choice, &Config::chat_template, {"auto", "on", "off"}},
        {"train_packing", "HEIDI_TRAIN_PACKING", Kind::Bool, &Config::train_packing},
        {"gradient_checkpointing", "HEIDI_GRADIENT_CHECKPOINTING", Kind::Bool, &Config::gradient_checkpointing},
        {"save_steps", "HEIDI_SAVE_STEPS", Kind::Int, &Config::save_steps, {}, 0},
        {"report_to", "HEIDI_REPORT_TO", Kind::String, &Config::report_to},
        {"train_launcher", "HEIDI_TRAIN_LAUNCHER", Kind::String, &Config::train_launcher},
        {"sandbox_timeout_s", "HEIDI_SANDBOX_TIMEOUT_S", Kind::Float, &Config::sandbox_timeout_s, {}, 0,
         FloatRange::AboveZero},
        {"sandbox_memory_mb", "HEIDI_SANDBOX_MEMORY_MB", Kind::Int, &Config::sandbox_memory_mb, {}, 64},
        {"sandbox_workers", "HEIDI_SANDBOX_WORKERS", Kind::Int, &Config::sandbox_workers, {}, 0},
        {"sandbox", "HEIDI_SANDBOX", Kind::Choice, &Config::sandbox, {"auto", "bubblewrap", "rlimits-unsafe"}},
    };
    return table;
}

const Field* find_field(std::string_view name) {
    for (const auto& field : fields())
        if (name == field.name) return &field;
    return nullptr;
}

const std::string& valid_keys() {
    static const std::string text = [] {
        std::vector<std::string> names;
        for (const auto& field : fields()) names.emplace_back(field.name);
        std::sort(names.begin(), names.end());
        std::string joined;
        for (const auto& name : names) joined += (joined.empty() ? "" : ", ") + name;
        return joined;
    }();
    return text;
}

std::string expectation(const Field& field) {
    switch (field.kind) {
        case Kind::Choice: {
            std::string text = "valid: ";
            for (std::size_t i = 0; i < field.choices.size(); ++i) text += (i ? ", " : "") + field.choices[i];
            return text;
        }
        case Kind::Bool: return "expected 0, 1, true or false";
        case Kind::Int: return "expected an integer >= " + std::to_string(field.minimum);
        case Kind::Float:
            switch (field.range) {
                case FloatRange::AtLeastZero: return "expected a number >= 0";
                case FloatRange::AboveZero: return "expected a number > 0";
                case FloatRange::UnitInterval: return "expected a number >= 0 and < 1";
                case FloatRange::UnitAboveZero: return "expected a number > 0 and <= 1";
            }
            break;
        case Kind::Path: return "expected a non-empty path";
        case Kind::RunId: return "expected 1-128 characters from A-Z a-z 0-9 _ . -";
        case Kind::Iso: return "expected YYYY-MM-DDTHH:MM:SS.mmmZ";
        case Kind::String: break;
    }
    return "expected a string";
}

// A value from one source. `shape` names TOML values that no field accepts ("<array>").
struct Input {
    Config::Value value;
    std::string shape;
};

// A value as text: integers in decimal, floats as Python's repr, strings as they are, and
// booleans as the caller spells them (true/false in messages, 1/0 in the environment).
template <typename T>
std::string value_text(const T& value, const char* true_text, const char* false_text) {
    if constexpr (std::is_same_v<T, bool>) return value ? true_text : false_text;
    else if constexpr (std::is_same_v<T, std::int64_t>) return std::to_string(value);
    else if constexpr (std::is_same_v<T, double>) return json::float_repr(value);
    else return value;
}

std::string render(const Input& input) {
    if (!input.shape.empty()) return input.shape;
    return std::visit([](const auto& v) { return value_text(v, "true", "false"); }, input.value);
}

bool parse_int(const std::string& text, std::int64_t& out) {
    static const std::regex pattern("[+-]?[0-9]+");
    if (!std::regex_match(text, pattern)) return false;
    errno = 0;
    char* end = nullptr;
    const long long value = std::strtoll(text.c_str(), &end, 10);
    if (errno == ERANGE) return false;
    out = value;
    return true;
}

bool parse_float(const std::string& text, double& out) {
    static const std::regex pattern(R"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)");
    if (!std::regex_match(text, pattern)) return false;
    // strtod gives the correctly rounded double, as Python's float() does; overflow is
    // inf, which the range check rejects.
    out = std::strtod(text.c_str(), nullptr);
    return true;
}

bool in_range(const Field& field, double number) {
    if (!std::isfinite(number)) return false;
    switch (field.range) {
        case FloatRange::AtLeastZero: return number >= 0;
        case FloatRange::AboveZero: return number > 0;
        case FloatRange::UnitInterval: return number >= 0 && number < 1;
        case FloatRange::UnitAboveZero: return number > 0 && number <= 1;
    }
    return false;
}

bool valid_run_id(const std::string& text) {
    if (text.size() > 128) return false;
    return std::all_of(text.begin(), text.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '.' || c == '-';
    });
}

std::string ascii_lower(std::string text) {
    for (auto& c : text)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return text;
}

// Checks one value and stores it; `label` names it in the error.
void assign(Config& config, const Field& field, const Input& input, const std::string& label) {
    auto bad = [&]() {
        return ConfigError("invalid value for " + label + ": '" + render(input) + "' (" + expectation(field) + ")");
    };
    if (!input.shape.empty()) throw bad();
    const auto* text = std::get_if<std::string>(&input.value);
    switch (field.kind) {
        case Kind::Bool: {
            bool result = false;
            if (text) {
                const std::string lowered = ascii_lower(*text);
                if (lowered == "1" || lowered == "true") result = true;
                else if (lowered == "0" || lowered == "false") result = false;
                else throw bad();
            } else if (const auto* flag = std::get_if<bool>(&input.value)) {
                result = *flag;
            } else if (const auto* number = std::get_if<std::int64_t>(&input.value); number && (*number == 0 || *number == 1)) {
                result = *number == 1;
            } else {
                throw bad();
            }
            config.*std::get<bool Config::*>(field.member) = result;
            return;
        }
        case Kind::Int: {
            std::int64_t result = 0;
            if (text) {
                if (!parse_int(*text, result)) throw bad();
            } else if (const auto* number = std::get_if<std::int64_t>(&input.value)) {
                result = *number;
            } else {
                throw bad();
            }
            if (result < field.minimum) throw bad();
            config.*std::get<std::int64_t Config::*>(field.member) = result;
            return;
        }
        case Kind::Float: {
            double result = 0;
            if (text) {
                if (!parse_float(*text, result)) throw bad();
            } else if (const auto* number = std::get_if<std::int64_t>(&input.value)) {
                result = static_cast<double>(*number);
            } else if (const auto* real = std::get_if<double>(&input.value)) {
                result = *real;
            } else {
                throw bad();
            }
            if (!in_range(field, result)) throw bad();
            config.*std::get<double Config::*>(field.member) = result;
            return;
        }
        default: break;
    }
    if (!text) throw bad();
    switch (field.kind) {
        case Kind::Choice:
            if (std::find(field.choices.begin(), field.choices.end(), *text) == field.choices.end()) throw bad();
            break;
        case Kind::Path:
            if (text->empty()) throw bad();
            break;
        case Kind::RunId:
            if (!text->empty() && !valid_run_id(*text)) throw bad();
            break;
        case Kind::Iso:
            if (!text->empty() && !is_iso_ms(*text)) throw bad();
            break;
        default: break;
    }
    config.*std::get<std::string Config::*>(field.member) = *text;
}

Input toml_input(const toml::node& node) {
    if (const auto* v = node.as_string()) return {v->get(), ""};
    if (const auto* v = node.as_boolean()) return {v->get(), ""};
    if (const auto* v = node.as_integer()) return {v->get(), ""};
    if (const auto* v = node.as_floating_point()) return {v->get(), ""};
    if (node.is_array()) return {std::string(), "<array>"};
    if (node.is_table()) return {std::string(), "<table>"};
    return {std::string(), "<datetime>"};
}

void apply_toml(Config& config, const std::string& path) {
    std::string text;
    try {
        text = fsutil::read_file(path);
    } catch (const OsError& error) {
        throw ConfigError("cannot read config file " + path + ": " + std::strerror(error.error_code()));
    }
    toml::table table;
    try {
        table = toml::parse(text, path);
    } catch (const toml::parse_error& error) {
        std::ostringstream detail;
        detail << error.description() << " (at line " << error.source().begin.line << ", column "
               << error.source().begin.column << ")";
        throw ConfigError("invalid TOML in " + path + ": " + detail.str());
    }
    std::vector<std::string> unknown;
    for (const auto& [key, node] : table)
        if (!find_field(key.str())) unknown.emplace_back(key.str());
    if (!unknown.empty()) {
        std::sort(unknown.begin(), unknown.end());
        throw ConfigError("unknown config key '" + unknown.front() + "' in " + path + " (valid keys: " +
                          valid_keys() + ")");
    }
    for (const auto& field : fields())
        if (const auto* node = table.get(field.name)) assign(config, field, toml_input(*node), field.name);
}

}  // namespace

Config Config::from_sources(const Environment& env, const std::string& config_file, const Overrides& overrides) {
    Config config;
    std::string path = config_file;
    if (path.empty())
        if (const auto it = env.find("HEIDI_CONFIG"); it != env.end()) path = it->second;
    if (!path.empty()) apply_toml(config, path);
    for (const auto& field : fields())
        if (const auto it = env.find(field.env); it != env.end()) assign(config, field, {it->second, ""}, field.env);
    std::vector<std::string> unknown;
    for (const auto& [key, value] : overrides)
        if (!find_field(key)) unknown.push_back(key);
    if (!unknown.empty()) {
        std::sort(unknown.begin(), unknown.end());
        throw ConfigError("unknown config key '" + unknown.front() + "' (valid keys: " + valid_keys() + ")");
    }
    for (const auto& field : fields()) {
        // The last override of a name wins.
        const auto it = std::find_if(overrides.rbegin(), overrides.rend(),
                                     [&](const auto& item) { return item.first == field.name; });
        if (it != overrides.rend()) assign(config, field, {it->second, ""}, field.name);
    }
    return config;
}

Config Config::from_env(const std::string& config_file, const Overrides& overrides) {
    Environment env;
    if (const char* value = std::getenv("HEIDI_CONFIG")) env.emplace("HEIDI_CONFIG", value);
    for (const auto& field : fields())
        if (const char* value = std::getenv(field.env)) env.emplace(field.env, value);
    return from_sources(env, config_file, overrides);
}

std::vector<std::pair<std::string, std::string>> Config::to_env() const {
    std::vector<std::pair<std::string, std::string>> result;
    for (const auto& field : fields()) {
        std::string text = std::visit(
            [&](auto member) { return value_text(this->*member, "1", "0"); }, field.member);
        result.emplace_back(field.env, std::move(text));
    }
    return result;
}

double Config::stage_timeout_for(std::string_view stage) const {
    static const std::pair<std::string_view, double> kDefaults[] = {
        {"generate", 3600.0}, {"validate", 1800.0}, {"test", 3600.0}, {"train", 14400.0}, {"eval", 3600.0}};
    for (const auto& [name, seconds] : kDefaults)
        if (name == stage) return stage_timeout_s > 0 ? stage_timeout_s : seconds;
    throw std::invalid_argument("unknown stage '" + std::string(stage) +
                                "' (valid: generate, validate, test, train, eval)");
}

const std::vector<std::string>& Config::field_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> result;
        for (const auto& field : fields()) result.emplace_back(field.name);
        return result;
    }();
    return names;
}

const std::vector<std::pair<std::string, std::string>>& Config::env_names() {
    static const std::vector<std::pair<std::string, std::string>> names = [] {
        std::vector<std::pair<std::string, std::string>> result;
        for (const auto& field : fields()) result.emplace_back(field.name, field.env);
        return result;
    }();
    return names;
}

}  // namespace heidi
