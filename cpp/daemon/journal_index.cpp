#include "journal_index.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <heidi/clock.hpp>
#include <heidi/fd.hpp>
#include <heidi/json.hpp>

namespace heidid {
namespace {

bool read_range(int fd, std::int64_t offset, std::int64_t length, std::string& out) {
    out.resize(static_cast<std::size_t>(length));
    std::int64_t done = 0;
    while (done < length) {
        ssize_t n = ::pread(fd, out.data() + done, static_cast<std::size_t>(length - done),
                            static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += n;
    }
    return true;
}

std::size_t stage_index(std::string_view stage) {
    return static_cast<std::size_t>(std::find(heidi::kStages.begin(), heidi::kStages.end(), stage) -
                                    heidi::kStages.begin());
}

}  // namespace

JournalIndex::JournalIndex(std::string path) : path_(std::move(path)) {}

void JournalIndex::reset_locked() {
    offsets_.clear();
    end_ = 0;
    have_identity_ = false;
    stage_started_ms_.clear();
    aggregates_ = JournalAggregates{};
}

void JournalIndex::refresh_locked() {
    heidi::Fd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        reset_locked();
        return;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return;
    auto dev = static_cast<std::uint64_t>(st.st_dev);
    auto ino = static_cast<std::uint64_t>(st.st_ino);
    if (!have_identity_ || dev != dev_ || ino != ino_ || st.st_size < end_) {
        // A new or rewritten journal: index it from the start.
        reset_locked();
        have_identity_ = true;
        dev_ = dev;
        ino_ = ino;
    }
    if (st.st_size == end_) return;
    std::string chunk;
    if (!read_range(fd.get(), end_, st.st_size - end_, chunk)) return;
    std::size_t start = 0;
    for (;;) {
        std::size_t newline = chunk.find('\n', start);
        if (newline == std::string::npos) break;
        offsets_.push_back(end_ + static_cast<std::int64_t>(start));
        fold(std::string_view(chunk).substr(start, newline - start));
        start = newline + 1;
    }
    end_ += static_cast<std::int64_t>(start);
}

void JournalIndex::fold(std::string_view line) {
    aggregates_.last_seq = static_cast<std::int64_t>(offsets_.size());
    heidi::json::Value event = heidi::json::Value::parse(line, nullptr, false);
    if (!event.is_object()) return;
    auto stage_it = event.find("stage");
    if (stage_it == event.end() || !stage_it->is_string()) return;
    std::string stage = stage_it->get<std::string>();
    std::size_t index = stage_index(stage);
    if (index >= heidi::kStages.size()) return;
    std::int64_t ts_ms = 0;
    auto ts_it = event.find("ts");
    bool have_ts = ts_it != event.end() && ts_it->is_string() &&
                   heidi::is_iso_ms(ts_it->get<std::string>());
    if (have_ts) ts_ms = heidi::parse_iso_ms(ts_it->get<std::string>());
    auto type_it = event.find("event_type");
    std::string kind = (type_it != event.end() && type_it->is_string())
                           ? type_it->get<std::string>()
                           : std::string();
    auto usage = event.find("usage_delta");
    if (usage != event.end() && usage->is_object()) {
        for (std::size_t i = 0; i < kTeacherUsage.size(); ++i) {
            auto value = usage->find(std::string(kTeacherUsage[i]));
            if (value != usage->end() && value->is_number_integer())
                aggregates_.teacher_usage[i] += value->get<std::int64_t>();
        }
    }
    auto event_counters = event.find("counters_delta");
    if (event_counters != event.end() && event_counters->is_object()) {
        auto hits = event_counters->find("teacher_cache_hits");
        if (hits != event_counters->end() && hits->is_number_integer())
            aggregates_.teacher_cache_hits += hits->get<std::int64_t>();
    }
    if (kind == "stage_start") {
        if (have_ts) stage_started_ms_[stage] = ts_ms;
    } else if (kind == "stage_end") {
        StageStats& stats = aggregates_.stages[index];
        auto level_it = event.find("level");
        std::string level = (level_it != event.end() && level_it->is_string())
                                ? level_it->get<std::string>()
                                : std::string();
        std::size_t outcome = level == heidi::kStageOkLevel          ? 0
                              : level == heidi::kStageCancelledLevel ? 2
                                                                     : 1;
        stats.runs[outcome] += 1;
        auto started = stage_started_ms_.find(stage);
        if (started != stage_started_ms_.end()) {
            if (have_ts) {
                stats.last_duration_ms = std::max<std::int64_t>(0, ts_ms - started->second);
                stats.duration_ms_sum += stats.last_duration_ms;
            }
            stage_started_ms_.erase(started);
        }
        auto counters = event.find("counters_delta");
        if (outcome == 0 && counters != event.end() && counters->is_object()) {
            for (std::size_t i = 0; i < heidi::kCountFiles.size(); ++i) {
                auto value = counters->find(std::string(heidi::kCountFiles[i].first));
                if (value != counters->end() && value->is_number_integer())
                    aggregates_.samples[i] += value->get<std::int64_t>();
            }
        }
    }
}

JournalAggregates JournalIndex::refresh() {
    std::lock_guard lock(mu_);
    refresh_locked();
    return aggregates_;
}

EventPage JournalIndex::page(std::int64_t since, std::int64_t limit) {
    std::lock_guard lock(mu_);
    refresh_locked();
    auto count = static_cast<std::int64_t>(offsets_.size());
    std::int64_t first = std::min(since, count);
    std::int64_t last = std::min(first + limit, count);
    EventPage page;
    page.next_since = since;
    if (first == last) return page;
    std::int64_t begin = offsets_[static_cast<std::size_t>(first)];
    std::int64_t end = last < count ? offsets_[static_cast<std::size_t>(last)] : end_;
    heidi::Fd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    std::string data;
    if (!fd || !read_range(fd.get(), begin, end - begin, data)) return page;
    std::size_t start = 0;
    for (std::int64_t i = first; i < last; ++i) {
        std::size_t newline = data.find('\n', start);
        if (newline == std::string::npos) break;
        page.lines.emplace_back(data, start, newline - start);
        start = newline + 1;
    }
    page.next_since = first + static_cast<std::int64_t>(page.lines.size());
    return page;
}

}  // namespace heidid
