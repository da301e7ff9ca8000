#include "heidi/clock.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "heidi/json.hpp"

namespace heidi {

namespace {

constexpr std::int64_t kMsPerDay = 86'400'000;

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    std::int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

bool read_digits(std::string_view text, std::size_t at, std::size_t count, int& value) {
    value = 0;
    for (std::size_t i = at; i < at + count; ++i) {
        const char c = text[i];
        if (c < '0' || c > '9') return false;
        value = value * 10 + (c - '0');
    }
    return true;
}

// Parses into unix milliseconds; false when the text is not a valid timestamp.
bool parse(std::string_view iso, std::int64_t& unix_ms) {
    // YYYY-MM-DDTHH:MM:SS.mmmZ
    if (iso.size() != 24 || iso[4] != '-' || iso[7] != '-' || iso[10] != 'T' || iso[13] != ':' ||
        iso[16] != ':' || iso[19] != '.' || iso[23] != 'Z')
        return false;
    int year, month, day, hour, minute, second, milli;
    if (!read_digits(iso, 0, 4, year) || !read_digits(iso, 5, 2, month) || !read_digits(iso, 8, 2, day) ||
        !read_digits(iso, 11, 2, hour) || !read_digits(iso, 14, 2, minute) ||
        !read_digits(iso, 17, 2, second) || !read_digits(iso, 20, 3, milli))
        return false;
    using namespace std::chrono;
    const year_month_day date{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                              std::chrono::day{static_cast<unsigned>(day)}};
    if (year < 1 || !date.ok() || hour > 23 || minute > 59 || second > 59) return false;
    const std::int64_t days = sys_days{date}.time_since_epoch().count();
    unix_ms = days * kMsPerDay + ((hour * 60 + minute) * 60 + second) * std::int64_t{1000} + milli;
    return true;
}

}  // namespace

std::string format_iso_ms(std::int64_t unix_ms) {
    using namespace std::chrono;
    const std::int64_t days = floor_div(unix_ms, kMsPerDay);
    std::int64_t rest = unix_ms - days * kMsPerDay;
    const year_month_day date{sys_days{std::chrono::days{days}}};
    const int hour = static_cast<int>(rest / 3'600'000);
    rest %= 3'600'000;
    const int minute = static_cast<int>(rest / 60'000);
    rest %= 60'000;
    char buffer[48];
    std::snprintf(buffer, sizeof buffer, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(date.year()),
                  static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()), hour, minute,
                  static_cast<int>(rest / 1000), static_cast<int>(rest % 1000));
    return buffer;
}

std::int64_t parse_iso_ms(std::string_view iso) {
    std::int64_t unix_ms = 0;
    if (!parse(iso, unix_ms))
        throw std::invalid_argument("invalid timestamp '" + std::string(iso) +
                                    "' (expected YYYY-MM-DDTHH:MM:SS.mmmZ)");
    return unix_ms;
}

bool is_iso_ms(std::string_view iso) noexcept {
    std::int64_t unix_ms = 0;
    return parse(iso, unix_ms);
}

std::int64_t Clock::now_ms() const { return floor_div(now_us(), 1000); }

std::string Clock::now_iso() const { return format_iso_ms(now_ms()); }

std::int64_t SystemClock::now_us() const {
    using namespace std::chrono;
    return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

double SystemClock::monotonic() const {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

FakeClock::FakeClock(std::string_view iso) : now_us_(parse_iso_ms(iso) * 1000) {}

std::int64_t FakeClock::now_us() const { return now_us_.load(std::memory_order_acquire); }

double FakeClock::monotonic() const { return static_cast<double>(now_us()) / 1e6; }

void FakeClock::advance(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0)
        throw std::invalid_argument("advance needs a finite number of seconds >= 0, got " +
                                    json::float_repr(seconds));
    now_us_.fetch_add(static_cast<std::int64_t>(std::floor(seconds * 1e6 + 0.5)), std::memory_order_acq_rel);
}

std::string RunId::generate(const Clock& clock) {
    const std::string iso = clock.now_iso();
    return "run_" + iso.substr(0, 4) + iso.substr(5, 2) + iso.substr(8, 2) + "_" + iso.substr(11, 2) +
           iso.substr(14, 2) + iso.substr(17, 2);
}

}  // namespace heidi
