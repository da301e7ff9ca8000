// UTF-8 sequences by Python's rules (no overlong forms, no surrogates unless allowed,
// nothing above U+10FFFF): one definition for the JSON encoder, the journal check and the
// decoding of stage output.
#pragma once

#include <cstddef>

namespace heidi::utf8 {

struct Sequence {
    std::size_t length;  // a valid sequence's bytes, else its maximal invalid prefix (>= 1)
    bool valid;
};

// The sequence starting at p (p < end, *p >= 0x80). An invalid one spans the longest
// prefix that could begin a valid sequence: what bytes.decode("utf-8", "replace") turns
// into one U+FFFD.
inline Sequence sequence_at(const unsigned char* p, const unsigned char* end,
                            bool allow_surrogates = false) {
    const unsigned lead = p[0];
    std::size_t length = 0;
    unsigned lo = 0x80, hi = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        if (lead == 0xe0) lo = 0xa0;
        if (lead == 0xed && !allow_surrogates) hi = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        if (lead == 0xf0) lo = 0x90;
        if (lead == 0xf4) hi = 0x8f;
    } else {
        return {1, false};
    }
    std::size_t used = 1;
    if (p + 1 < end && p[1] >= lo && p[1] <= hi) {
        used = 2;
        while (used < length && p + used < end && (p[used] & 0xc0) == 0x80) ++used;
    }
    return {used, used == length};
}

}  // namespace heidi::utf8
