#pragma once

namespace heidi {
// The engine version, kept equal to the Python package's.
inline constexpr const char* kVersion = "0.1.0";
const char* version() noexcept;
}  // namespace heidi
