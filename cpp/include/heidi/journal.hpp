// The hash-chained event journal (SPEC §6, docs/design.md "Journal").
//
// One event per line, compact JSON with the keys in SPEC order. prev_hash of line 1 is
// sha256_hex(run_id); of line k, sha256_hex(line k-1 including its "\n").
// A writer continues an existing journal after verifying it, moving a torn last line
// aside. All JournalWriter methods are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "heidi/clock.hpp"
#include "heidi/fd.hpp"
#include "heidi/run_layout.hpp"

namespace heidi {

inline constexpr std::string_view kJournalLevels[] = {"debug", "info", "warn", "error",
                                                      "critical"};
// The stage field of an event: "pipeline" for the run as a whole, else the stage's name.
inline constexpr std::array<std::string_view, kStages.size() + 1> kJournalStages = [] {
    std::array<std::string_view, kStages.size() + 1> stages{"pipeline"};
    for (std::size_t i = 0; i < kStages.size(); ++i) stages[i + 1] = kStages[i];
    return stages;
}();

// Throws std::invalid_argument naming the bad level (checked first) or stage and the
// valid ones; append() does this itself, bindings call it to keep the error order.
void check_level_and_stage(std::string_view level, std::string_view stage);

// Lowercase hex SHA-256.
std::string sha256_hex(std::string_view data);

// Name -> integer, in the order given (JSON key order). Names must be distinct.
using Counters = std::vector<std::pair<std::string, std::int64_t>>;

struct JournalHead {
    std::int64_t seq = 0;  // last written seq (0: empty journal)
    std::string hash;      // sha256_hex of the last line, or of run_id when empty
    bool operator==(const JournalHead&) const = default;
};

class JournalWriter {
public:
    // Opens (creating directories) and continues an existing journal. Throws
    // JournalError when the existing chain is bad, OsError on I/O failure.
    // clock null = a SystemClock.
    JournalWriter(std::string path, std::string run_id, bool fsync = true,
                  std::shared_ptr<const Clock> clock = nullptr);
    ~JournalWriter();  // flushes and closes; errors are swallowed (call close() to see them)
    JournalWriter(const JournalWriter&) = delete;
    JournalWriter& operator=(const JournalWriter&) = delete;

    // Appends one event and returns its seq. Scrubs the message; invalid level, stage,
    // round < 0 or duplicate counter names throw std::invalid_argument. With fsync the
    // line is durable (write + fdatasync) when this returns; without, it may be buffered.
    std::int64_t append(std::string_view event_type, std::string_view message,
                        std::string_view stage = "pipeline", std::int64_t round = 0,
                        std::string_view level = "info", const Counters& counters_delta = {},
                        const Counters& usage_delta = {},
                        const std::vector<std::string>& artifact_paths = {});

    // Writes any buffered lines, then returns (seq, hash) of the last line.
    JournalHead head();
    // Writes buffered lines (with fsync on every line is already written and synced).
    void flush();
    // Flushes and closes; idempotent. append() afterwards throws JournalError.
    void close();
    // A write of buffered lines failed (fsync off): the file was cut back to its last
    // whole line, and append(), flush() and head() throw JournalError naming the cause,
    // because lines the writer had counted never reached the file. Reopening the journal
    // continues it from its last line.
    bool closed() const;

    const std::string& path() const noexcept { return path_; }
    const std::string& run_id() const noexcept { return run_id_; }
    bool fsync_enabled() const noexcept { return fsync_; }

private:
    void open_and_continue();
    void check_usable_locked() const;
    void flush_locked();
    void write_durably(std::string_view data);
    void write_buffered(std::string_view data);
    // Cuts the file back to size_ and throws the write error; the writer stops unless
    // keep_usable and the cut succeeded.
    [[noreturn]] void write_failed(int error, bool keep_usable);
    void append_locked(std::string_view event_type, std::string_view message,
                       std::string_view stage, std::int64_t round, std::string_view level,
                       const Counters& counters_delta, const Counters& usage_delta,
                       const std::vector<std::string>& artifact_paths);

    std::string path_;
    std::string run_id_;
    bool fsync_;
    std::shared_ptr<const Clock> clock_;
    mutable std::mutex mutex_;
    Fd fd_;
    std::size_t size_ = 0;     // bytes in the file (written lines)
    int failure_ = 0;          // errno of a write that stopped the writer (0: none)
    std::string run_id_part_;  // Z","run_id":"<run_id>","round":  (the same in every line)
    JournalHead head_;
    std::string pending_;  // encoded lines not yet written (fsync off)
    std::string line_;     // scratch for the line being built
    std::string scrub_;    // scratch for a scrubbed field
    // Cache of the formatted timestamp's "YYYY-MM-DDTHH:MM:SS" for the current second.
    std::int64_t cached_second_ = INT64_MIN;
    std::string cached_prefix_;
};

struct VerifyResult {
    bool ok = true;
    std::int64_t lines = 0;           // complete lines read
    std::int64_t first_bad_line = 0;  // 1-based; 0 when ok
    std::string reason = "ok";
};

// path_or_out_dir: a journal file, or an OUT_DIR (journal/events.jsonl and, when present,
// state/run_state.json, whose journal_head is checked). Reasons: docs/design.md.
VerifyResult verify_journal(const std::string& path_or_out_dir);

// Checks journal bytes as verify_journal does: every line, line 1's run_id when run_id is
// given, and that line head.seq exists and hashes to head.hash (seq 0: not checked).
// Large inputs are checked on two threads; the result is the same.
VerifyResult verify_chain(std::string_view data, const std::string* run_id = nullptr,
                          const JournalHead& head = {});

}  // namespace heidi
