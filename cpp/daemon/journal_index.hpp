// Incremental reader of the event journal (the twin of heidi_engine/api/journal_index.py).
//
// The Core is the journal's only writer; the server only reads it. The index keeps the
// byte offset of every complete line, so a page of events is one read of the bytes asked
// for and a refresh reads only what was appended since the previous one. Each new line
// is folded into the aggregates /metrics reports. A line still lacking its newline is
// left for the next refresh.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <heidi/run_layout.hpp>

namespace heidid {

// A stage run's outcome, told by its stage_end's level (heidi/run_layout.hpp).
inline constexpr std::array<std::string_view, 3> kStageOutcomes = {"ok", "failed", "cancelled"};

// Teacher usage_delta names summed over every event (tokens and cost paid for).
inline constexpr std::array<std::string_view, 3> kTeacherUsage = {"prompt_tokens", "completion_tokens",
                                                                  "cost_micros"};

struct StageStats {
    std::array<std::int64_t, kStageOutcomes.size()> runs{};
    std::int64_t duration_ms_sum = 0;
    std::int64_t last_duration_ms = 0;
};

struct JournalAggregates {
    std::int64_t last_seq = 0;
    std::array<StageStats, heidi::kStages.size()> stages{};
    std::array<std::int64_t, heidi::kCountFiles.size()> samples{};
    std::array<std::int64_t, kTeacherUsage.size()> teacher_usage{};
    std::int64_t teacher_cache_hits = 0;
};

struct EventPage {
    std::vector<std::string> lines;  // raw journal lines, without their newline
    std::int64_t next_since = 0;
};

class JournalIndex {
public:
    explicit JournalIndex(std::string path);

    JournalAggregates refresh();
    // Lines with seq > since, at most limit.
    EventPage page(std::int64_t since, std::int64_t limit);

private:
    void reset_locked();
    void refresh_locked();
    void fold(std::string_view line);

    std::string path_;
    std::mutex mu_;
    std::vector<std::int64_t> offsets_;
    std::int64_t end_ = 0;
    bool have_identity_ = false;
    std::uint64_t dev_ = 0;
    std::uint64_t ino_ = 0;
    std::map<std::string, std::int64_t, std::less<>> stage_started_ms_;
    JournalAggregates aggregates_;
};

}  // namespace heidid
