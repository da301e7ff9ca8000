// Wall-clock time for timestamps and run ids, and a fake clock for tests and for
// HEIDI_FAKE_TIME (byte-identical runs). Timestamps are UTC "YYYY-MM-DDTHH:MM:SS.mmmZ".
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace heidi {

// Milliseconds since the Unix epoch -> "YYYY-MM-DDTHH:MM:SS.mmmZ".
std::string format_iso_ms(std::int64_t unix_ms);
// Strict inverse of format_iso_ms; throws std::invalid_argument
// "invalid timestamp 'X' (expected YYYY-MM-DDTHH:MM:SS.mmmZ)".
std::int64_t parse_iso_ms(std::string_view iso);
// True when parse_iso_ms would accept the text.
bool is_iso_ms(std::string_view iso) noexcept;

class Clock {
public:
    virtual ~Clock() = default;
    // Wall time in microseconds since the epoch.
    virtual std::int64_t now_us() const = 0;
    // Seconds on a clock that never goes back (FakeClock: its own time).
    virtual double monotonic() const = 0;
    std::int64_t now_ms() const;  // floor(now_us / 1000)
    std::string now_iso() const;  // format_iso_ms(now_ms()), milliseconds truncated
};

class SystemClock final : public Clock {
public:
    std::int64_t now_us() const override;
    double monotonic() const override;
};

// Stands still until advanced. Thread-safe.
class FakeClock final : public Clock {
public:
    explicit FakeClock(std::string_view iso);  // throws std::invalid_argument
    std::int64_t now_us() const override;
    double monotonic() const override;  // now_us / 1e6
    // Moves time forward by floor(seconds * 1e6 + 0.5) microseconds;
    // seconds must be finite and >= 0 (else std::invalid_argument).
    void advance(double seconds);

private:
    std::atomic<std::int64_t> now_us_;
};

struct RunId {
    // "run_YYYYMMDD_HHMMSS" of the clock's time (UTC).
    static std::string generate(const Clock& clock);
};

}  // namespace heidi
