// Helpers of the Core (docs/design.md "Core"): what each stage writes and reports,
// stage command parsing, @heidi progress lines, crash cleanup. Internal to the engine;
// each mirrors a function of heidi_engine/_py/core.py.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "heidi/journal.hpp"

namespace heidi {

// The status "counts" of a round, in run_state.json key order.
using StageCounts = std::vector<std::pair<std::string, std::int64_t>>;
StageCounts zero_counts();

// The counts a stage's stage_end reports, in order.
std::vector<std::string_view> stage_counters(std::string_view stage, bool run_unit_tests);
// The data file (relative to OUT_DIR) whose line count fills a count key.
std::string data_file_for_count(std::string_view count_key, std::int64_t round);
// Every output file of a stage, relative to OUT_DIR, in SPEC §5 order.
std::vector<std::string> stage_artifacts(std::string_view stage, std::int64_t round,
                                         bool run_unit_tests);
// The files whose absence makes a stage's run fail.
std::vector<std::string> required_outputs(std::string_view stage, std::int64_t round,
                                          bool run_unit_tests);

// Lines of a file (a final line without newline counts); nullopt when absent.
std::optional<std::int64_t> count_lines(const std::string& path);
bool is_json_object_file(const std::string& path);

// POSIX-shell split (Python shlex.split); an unbalanced quote or trailing backslash,
// or an empty command, is a ConfigError naming env_name.
std::vector<std::string> split_stage_command(std::string_view env_name, std::string_view command);

struct HeidiLineEvent {
    std::string event_type;
    std::string message;
    std::string level;
    Counters counters_delta;
    Counters usage_delta;
    std::vector<std::string> artifact_paths;
};
// The event of one "@heidi {json}" stdout line, or nullopt when it is not a valid one.
std::optional<HeidiLineEvent> parse_heidi_line(std::string_view line);

// Removes every "*.tmp*" file or directory below OUT_DIR's subfolders (crash leftovers).
void remove_temp_files(const std::string& out_dir);

}  // namespace heidi
