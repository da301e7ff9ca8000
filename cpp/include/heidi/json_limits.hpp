// Limits on untrusted JSON text, checked before it is parsed (both backends and both
// servers use the same rule; the Python twin is heidi_engine._py.jsonenc.nesting_exceeds).
#pragma once

#include <cstddef>
#include <string_view>

namespace heidi::json {

// Deepest nesting of arrays and objects accepted in a stage's @heidi line or a request
// body. Deeper text is refused before parsing: a recursive parser would run out of stack.
inline constexpr std::size_t kMaxNestingDepth = 64;

// True when text opens more than max_depth arrays/objects at once (brackets inside
// strings do not count). A scan of the bytes, not a parse: the text need not be valid JSON.
bool nesting_exceeds(std::string_view text, std::size_t max_depth = kMaxNestingDepth);

}  // namespace heidi::json
