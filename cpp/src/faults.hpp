// Fault injection for the durability tests (docs/design.md "Fault points"); the Python
// twin is heidi_engine/_py/faults.py, with the same point names.
//
// HEIDI_FAULT_POINT=<point>:<nth>[:kill|eio] makes the process fail the nth time it
// reaches <point>: "kill" (the default) SIGKILLs it there, "eio" makes the operation
// there fail with EIO (an OsError). The variable is read once per process, when the
// first Core is opened. Unset, a point costs one relaxed atomic load.
#pragma once

#include <atomic>
#include <string>
#include <string_view>

namespace heidi::faults {

inline constexpr const char* kEnv = "HEIDI_FAULT_POINT";

namespace detail {
inline std::atomic<bool> armed{false};
}

inline bool armed() noexcept { return detail::armed.load(std::memory_order_relaxed); }

// Arms the configured point (once per process); a malformed value is a ConfigError.
void load_from_env();
// Fails here if this is the configured point's nth hit (path: the file concerned).
void hit(std::string_view point, const std::string& path);
// At the configured hit, writes the first half of data to fd durably, then fails.
void torn_write(std::string_view point, int fd, std::string_view data, const std::string& path);

}  // namespace heidi::faults
