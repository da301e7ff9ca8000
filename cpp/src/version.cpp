#include "heidi/version.hpp"

namespace heidi {
const char* version() noexcept { return kVersion; }
}  // namespace heidi
