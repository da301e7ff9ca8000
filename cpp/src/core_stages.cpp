// Helpers of the Core; each mirrors a function of heidi_engine/_py/core.py.
#include "core_stages.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "heidi/errors.hpp"
#include "heidi/fd.hpp"
#include "heidi/fsutil.hpp"
#include "heidi/json.hpp"
#include "heidi/json_limits.hpp"
#include "heidi/run_layout.hpp"
#include "utf8.hpp"

namespace heidi {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kHeidiPrefix = "@heidi ";

std::string data_file(std::string_view kind, std::int64_t round) {
    return "data/" + std::string(kind) + "_round_" + std::to_string(round) + ".jsonl";
}

// bytes.decode("utf-8", "replace"): each maximal invalid subpart becomes one U+FFFD, so
// a line reads the same as the Python runner hands it to the Core.
std::string utf8_replace(std::string_view in) {
    static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
    std::string out;
    out.reserve(in.size());
    std::size_t i = 0;
    const std::size_t n = in.size();
    const auto* bytes = reinterpret_cast<const unsigned char*>(in.data());
    while (i < n) {
        if (bytes[i] < 0x80) {
            out += in[i];
            ++i;
            continue;
        }
        const utf8::Sequence sequence = utf8::sequence_at(bytes + i, bytes + n);
        if (sequence.valid)
            out.append(in.substr(i, sequence.length));
        else
            out += kReplacement;
        i += sequence.length;
    }
    return out;
}

bool read_counters(const json::Value& payload, const char* key, Counters& out) {
    auto it = payload.find(key);
    if (it == payload.end()) return true;
    if (!it->is_object()) return false;
    for (const auto& [name, value] : it->items()) {
        if (value.is_number_unsigned()) {
            if (value.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) return false;
        } else if (!value.is_number_integer()) {
            return false;
        }
        out.emplace_back(name, value.get<std::int64_t>());
    }
    return true;
}

// A folder's entries sorted by name, as the Python twin lists them.
std::vector<fs::directory_entry> sorted_entries(const fs::path& folder) {
    std::vector<fs::directory_entry> entries;
    for (const auto& entry : fs::directory_iterator(folder)) entries.push_back(entry);
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.path().filename() < b.path().filename(); });
    return entries;
}

void remove_temp_below(const fs::path& folder) {
    for (const auto& entry : sorted_entries(folder)) {
        bool is_dir = entry.is_directory() && !entry.is_symlink();
        if (entry.path().filename().string().find(".tmp") != std::string::npos)
            fs::remove_all(entry.path());
        else if (is_dir)
            remove_temp_below(entry.path());
    }
}

}  // namespace

StageCounts zero_counts() {
    StageCounts counts;
    for (const auto& [key, kind] : kCountFiles) counts.emplace_back(std::string(key), 0);
    return counts;
}

std::vector<std::string_view> stage_counters(std::string_view stage, bool run_unit_tests) {
    if (stage == "generate") return {"raw_lines"};
    if (stage == "validate") {
        if (run_unit_tests) return {"clean_lines", "rejected_lines"};
        return {"clean_lines", "rejected_lines", "train_lines", "val_lines"};
    }
    if (stage == "test") return {"tested_lines", "test_failed", "train_lines", "val_lines"};
    return {};
}

std::string data_file_for_count(std::string_view count_key, std::int64_t round) {
    for (const auto& [key, kind] : kCountFiles)
        if (key == count_key) return data_file(kind, round);
    throw std::logic_error("unknown count key");
}

std::vector<std::string> stage_artifacts(std::string_view stage, std::int64_t round,
                                         bool run_unit_tests) {
    if (stage == "generate" || stage == "validate" || stage == "test") {
        auto wanted = stage_counters(stage, run_unit_tests);
        std::vector<std::string> files;
        for (const auto& [key, kind] : kCountFiles)
            if (std::find(wanted.begin(), wanted.end(), key) != wanted.end())
                files.push_back(data_file(kind, round));
        return files;
    }
    if (stage == "train") {
        std::string folder = "out_lora/round_" + std::to_string(round);
        return {folder + "/adapter_model.safetensors", folder + "/adapter_config.json",
                folder + "/metrics.json"};
    }
    return {"eval/report_round_" + std::to_string(round) + ".json"};
}

std::vector<std::string> required_outputs(std::string_view stage, std::int64_t round,
                                          bool run_unit_tests) {
    if (stage == "generate") return {data_file("raw", round)};
    if (stage == "validate") {
        if (run_unit_tests) return {data_file("clean", round)};
        return {data_file("clean", round), data_file("train", round), data_file("val", round)};
    }
    if (stage == "test")
        return {data_file("tested", round), data_file("train", round), data_file("val", round)};
    if (stage == "train") return {"out_lora/round_" + std::to_string(round) + "/metrics.json"};
    return {"eval/report_round_" + std::to_string(round) + ".json"};
}

std::optional<std::int64_t> count_lines(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) return std::nullopt;
        throw OsError(errno, path);
    }
    std::int64_t lines = 0;
    char last = '\n';
    char buffer[1 << 16];
    while (true) {
        ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw OsError(errno, path);
        }
        if (got == 0) break;
        lines += std::count(buffer, buffer + got, '\n');
        last = buffer[got - 1];
    }
    return lines + (last != '\n' ? 1 : 0);
}

bool is_json_object_file(const std::string& path) {
    std::string data;
    try {
        data = fsutil::read_file(path);
    } catch (const OsError&) {
        return false;
    }
    return json::Value::parse(data, nullptr, false).is_object();
}

std::vector<std::string> split_stage_command(std::string_view env_name, std::string_view command) {
    auto invalid = [&](std::string_view why) {
        return ConfigError("invalid value for " + std::string(env_name) + ": " +
                           json::python_repr(command) + " (" + std::string(why) + ")");
    };
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    std::vector<std::string> words;
    std::string word;
    bool in_word = false;  // a word has started (possibly an empty quoted one)
    std::size_t i = 0;
    while (i < command.size()) {
        char c = command[i];
        if (is_space(c)) {
            if (in_word) words.push_back(std::move(word)), word.clear(), in_word = false;
            ++i;
        } else if (c == '\\') {
            if (i + 1 >= command.size())
                throw invalid("unbalanced quote or trailing backslash");
            word += command[i + 1];
            in_word = true;
            i += 2;
        } else if (c == '\'') {
            auto close = command.find('\'', i + 1);
            if (close == std::string_view::npos)
                throw invalid("unbalanced quote or trailing backslash");
            word.append(command.substr(i + 1, close - i - 1));
            in_word = true;
            i = close + 1;
        } else if (c == '"') {
            // Inside double quotes a backslash escapes only '"' and '\' (shlex's rules).
            ++i;
            while (true) {
                if (i >= command.size())
                    throw invalid("unbalanced quote or trailing backslash");
                char q = command[i];
                if (q == '"') break;
                if (q == '\\') {
                    if (i + 1 >= command.size())
                        throw invalid("unbalanced quote or trailing backslash");
                    char next = command[i + 1];
                    if (next != '"' && next != '\\') word += '\\';
                    word += next;
                    i += 2;
                } else {
                    word += q;
                    ++i;
                }
            }
            in_word = true;
            ++i;
        } else {
            word += c;
            in_word = true;
            ++i;
        }
    }
    if (in_word) words.push_back(std::move(word));
    if (words.empty()) throw invalid("empty command");
    return words;
}

std::optional<HeidiLineEvent> parse_heidi_line(std::string_view line) {
    if (!line.starts_with(kHeidiPrefix)) return std::nullopt;
    // Too deeply nested: refused unparsed, like any malformed line (both backends). A lone
    // surrogate escape ("\ud800") fails the parse, so such a line is skipped too.
    if (json::nesting_exceeds(line.substr(kHeidiPrefix.size()))) return std::nullopt;
    json::Value payload =
        json::Value::parse(utf8_replace(line.substr(kHeidiPrefix.size())), nullptr, false);
    if (!payload.is_object()) return std::nullopt;
    HeidiLineEvent event{"progress", "", "info", {}, {}, {}};
    if (auto it = payload.find("event_type"); it != payload.end()) {
        if (!it->is_string() || it->get_ref<const std::string&>().empty()) return std::nullopt;
        event.event_type = it->get<std::string>();
    }
    if (auto it = payload.find("message"); it != payload.end()) {
        if (!it->is_string()) return std::nullopt;
        event.message = it->get<std::string>();
    }
    if (auto it = payload.find("level"); it != payload.end()) {
        if (!it->is_string()) return std::nullopt;
        event.level = it->get<std::string>();
        if (std::find(std::begin(kJournalLevels), std::end(kJournalLevels), event.level) ==
            std::end(kJournalLevels))
            return std::nullopt;
    }
    if (!read_counters(payload, "counters_delta", event.counters_delta)) return std::nullopt;
    if (!read_counters(payload, "usage_delta", event.usage_delta)) return std::nullopt;
    if (auto it = payload.find("artifact_paths"); it != payload.end()) {
        if (!it->is_array()) return std::nullopt;
        for (const auto& path : *it) {
            if (!path.is_string()) return std::nullopt;
            event.artifact_paths.push_back(path.get<std::string>());
        }
    }
    return event;
}

void remove_temp_files(const std::string& out_dir) {
    std::error_code ec;
    if (!fs::is_directory(out_dir, ec)) return;
    for (const auto& entry : sorted_entries(out_dir)) {
        // At the top only temporary files and links (best_adapter.<pid>.tmp): a folder of
        // OUT_DIR is never written under a temporary name.
        bool is_dir = entry.is_directory() && !entry.is_symlink();
        if (is_dir) remove_temp_below(entry.path());
        else if (entry.path().filename().string().find(".tmp") != std::string::npos)
            fs::remove(entry.path());
    }
}

}  // namespace heidi
