// The run's vocabulary (SPEC §4-§6, docs/design.md "Core"), stated once for the engine
// and for the daemon, which reads the same journal and status: the stages, the states,
// how a stage_end's level tells its outcome, and the data file each count measures.
#pragma once

#include <array>
#include <string_view>
#include <utility>

namespace heidi {

// The stages, in the order a round runs them.
inline constexpr std::array<std::string_view, 5> kStages = {"generate", "validate", "test", "train",
                                                            "eval"};
// kRunningStates[i] is the state in which tick() runs kStages[i].
inline constexpr std::array<std::string_view, 5> kRunningStates = {
    "COLLECTING", "VALIDATING", "TESTING", "FINALIZING", "EVALUATING"};
inline constexpr std::string_view kIdle = "IDLE";
inline constexpr std::string_view kError = "ERROR";
// Not a state of the machine: the status shows it while the paused flag is set.
inline constexpr std::string_view kPaused = "PAUSED";
// Every state the status can show, in the order /metrics lists them.
inline constexpr std::array<std::string_view, 8> kStatusStates = {kIdle,
                                                                  kRunningStates[0],
                                                                  kRunningStates[1],
                                                                  kRunningStates[2],
                                                                  kRunningStates[3],
                                                                  kRunningStates[4],
                                                                  kError,
                                                                  kPaused};

// The level of a stage_end says how the stage ended (anything else counts as failed).
inline constexpr std::string_view kStageOkLevel = "info";
inline constexpr std::string_view kStageCancelledLevel = "warn";
inline constexpr std::string_view kStageFailedLevel = "error";

// Count key -> the kind of the data file it counts (data/<kind>_round_<r>.jsonl), in
// SPEC §5 order; the daemon's sample metrics are labelled with the kind.
inline constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kCountFiles = {{
    {"raw_lines", "raw"},
    {"clean_lines", "clean"},
    {"rejected_lines", "rejected"},
    {"tested_lines", "tested"},
    {"test_failed", "test_failed"},
    {"train_lines", "train"},
    {"val_lines", "val"},
}};

}  // namespace heidi
