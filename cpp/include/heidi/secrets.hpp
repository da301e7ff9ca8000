// Scrubbing of journal fields and stage logs: the fast rule set of docs/secrets.md, the
// same rules as heidi_engine._py.secrets (which states them as regular expressions). Each
// match is replaced by "[REDACTED:<kind>]" (for key=value, bearer and URL credentials,
// only the secret part).
#pragma once

#include <string>
#include <string_view>

namespace heidi {

inline constexpr std::string_view kRedactedPrefix = "[REDACTED:";

// The text with every secret replaced.
std::string scrub_secrets(std::string_view message);
// Appends the scrubbed message to out; returns false (appending nothing) when the message
// holds no secret, so the hot path can use the original text without a copy.
bool scrub_secrets_into(std::string_view message, std::string& out);

}  // namespace heidi
