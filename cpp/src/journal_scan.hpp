// Internal to the engine library: the chain scanner shared by verify_journal and by
// JournalWriter (which verifies a journal before continuing it), and SHA-256 helpers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace heidi {

void sha256_raw(std::string_view data, unsigned char digest[32]);
void hex_encode(const unsigned char digest[32], char out[64]);

struct ChainScan {
    std::int64_t lines = 0;     // "\n"-terminated lines in the data
    std::int64_t bad_line = 0;  // first bad line (1-based), 0 when the chain holds
    std::string reason = "ok";
    std::string last_hash;    // prev_hash the next line must carry
    std::string wanted_hash;  // hash of line `want_hash_of_line`, when reached
};

// Checks every line of data (docs/design.md "Journal"): complete, valid JSON, SPEC keys in
// order with their types, seq contiguous, run_id constant (and equal to *run_id when
// given), the chain. Stops at the first bad line.
ChainScan scan_chain(std::string_view data, const std::string* run_id, std::int64_t want_hash_of_line);

}  // namespace heidi
