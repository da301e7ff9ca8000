// Journal verification. Lines are checked with a strict JSON scanner that accepts exactly
// what Python's json.loads accepts (NaN/Infinity, any whitespace, lone surrogate escapes;
// no raw control characters, no invalid UTF-8, integers of at most 4300 digits), so both
// backends report the same first bad line and reason.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstring>

#include "heidi/errors.hpp"
#include "heidi/fsutil.hpp"
#include "heidi/journal.hpp"
#include "heidi/json.hpp"
#include "journal_scan.hpp"

namespace heidi {

namespace {

constexpr std::string_view kKeys[] = {"event_version", "seq",        "ts",          "run_id",    "round",
                                      "stage",         "level",      "event_type",  "message",   "counters_delta",
                                      "usage_delta",   "artifact_paths", "prev_hash"};
constexpr std::size_t kKeyCount = std::size(kKeys);
constexpr int kMaxDepth = 900;                 // Python's decoder gives up near its recursion limit
constexpr std::size_t kMaxIntDigits = 4300;  // Python's int_max_str_digits

enum class Kind { String, Int, Float, Literal, Object, Array };

struct Token {
    Kind kind = Kind::Literal;
    std::string_view text;  // string: the body between the quotes; number: the digits
    bool escaped = false;   // string body has backslash escapes
    bool int_values = true; // object: every member value is an integer
    bool all_strings = true;// array: every element is a string
};

struct Member {
    Token key;
    Token value;
};

// Plain string bytes: printable ASCII except '"' and '\\' (and DEL is fine in JSON).
constexpr std::array<bool, 256> make_plain() {
    std::array<bool, 256> table{};
    for (int c = 0x20; c < 0x80; ++c) table[static_cast<std::size_t>(c)] = true;
    table['"'] = false;
    table['\\'] = false;
    return table;
}
constexpr std::array<bool, 256> kPlainString = make_plain();

bool is_hex(unsigned char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

unsigned hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return c - 'A' + 10;
}

// Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF); returns the sequence length or 0.
std::size_t utf8_length(const unsigned char* p, const unsigned char* end) {
    const unsigned lead = p[0];
    std::size_t length;
    unsigned lo = 0x80, hi = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        if (lead == 0xe0) lo = 0xa0;
        if (lead == 0xed) hi = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        if (lead == 0xf0) lo = 0x90;
        if (lead == 0xf4) hi = 0x8f;
    } else return 0;
    if (end - p < static_cast<std::ptrdiff_t>(length) || p[1] < lo || p[1] > hi) return 0;
    for (std::size_t i = 2; i < length; ++i)
        if ((p[i] & 0xc0) != 0x80) return 0;
    return length;
}

class LineParser {
public:
    LineParser(const unsigned char* begin, const unsigned char* end) : p_(begin), end_(end) {}

    // Parses the whole line. Returns false for invalid JSON; members/top_is_object describe it.
    bool parse(std::array<Member, kKeyCount + 1>& members, std::size_t& count, bool& top_is_object) {
        skip_ws();
        top_is_object = p_ < end_ && *p_ == '{';
        Token top;
        if (top_is_object) {
            if (!parse_object(top, 1, &members, &count)) return false;
        } else if (!parse_value(top, 1)) {
            return false;
        }
        skip_ws();
        return p_ == end_;
    }

private:
    void skip_ws() {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
    }

    bool literal(std::string_view word) {
        if (static_cast<std::size_t>(end_ - p_) < word.size() || std::memcmp(p_, word.data(), word.size()) != 0)
            return false;
        p_ += word.size();
        return true;
    }

    // Skips plain string bytes, 8 at a time while no byte needs a closer look.
    void skip_plain() {
        constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
        constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
        while (end_ - p_ >= 8) {
            std::uint64_t word;
            std::memcpy(&word, p_, 8);
            const std::uint64_t quote = word ^ (kOnes * '"');
            const std::uint64_t backslash = word ^ (kOnes * '\\');
            // A byte is "special" when it is < 0x20, '"', '\\' or >= 0x80.
            const std::uint64_t special = ((word - kOnes * 0x20) | (quote - kOnes) | (backslash - kOnes) | word) & kHigh;
            if (special) break;
            p_ += 8;
        }
        while (p_ < end_ && kPlainString[*p_]) ++p_;
    }

    bool parse_string(Token& token) {
        ++p_;  // opening quote
        const unsigned char* body = p_;
        token.kind = Kind::String;
        token.escaped = false;
        for (;;) {
            skip_plain();
            if (p_ >= end_) return false;
            const unsigned char c = *p_;
            if (c == '"') break;
            if (c == '\\') {
                token.escaped = true;
                if (end_ - p_ < 2) return false;
                const unsigned char e = p_[1];
                if (e == 'u') {
                    if (end_ - p_ < 6 || !is_hex(p_[2]) || !is_hex(p_[3]) || !is_hex(p_[4]) || !is_hex(p_[5]))
                        return false;
                    p_ += 6;
                } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
                           e == 't') {
                    p_ += 2;
                } else {
                    return false;
                }
                continue;
            }
            if (c < 0x20) return false;  // raw control character
            const std::size_t length = utf8_length(p_, end_);
            if (!length) return false;
            p_ += length;
        }
        token.text = {reinterpret_cast<const char*>(body), static_cast<std::size_t>(p_ - body)};
        ++p_;  // closing quote
        return true;
    }

    bool parse_number(Token& token) {
        const unsigned char* start = p_;
        if (*p_ == '-') {
            ++p_;
            if (p_ < end_ && *p_ == 'I') {
                if (!literal("Infinity")) return false;
                token.kind = Kind::Float;
                return true;
            }
        }
        if (p_ >= end_ || *p_ < '0' || *p_ > '9') return false;
        const unsigned char* digits = p_;
        if (*p_ == '0') ++p_;
        else
            while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
        const std::size_t digit_count = static_cast<std::size_t>(p_ - digits);
        bool is_float = false;
        if (end_ - p_ >= 2 && *p_ == '.' && p_[1] >= '0' && p_[1] <= '9') {
            p_ += 2;
            while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
            is_float = true;
        }
        if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
            const unsigned char* q = p_ + 1;
            if (q < end_ && (*q == '+' || *q == '-')) ++q;
            if (q < end_ && *q >= '0' && *q <= '9') {
                while (q < end_ && *q >= '0' && *q <= '9') ++q;
                p_ = q;
                is_float = true;
            }
        }
        if (!is_float && digit_count > kMaxIntDigits) return false;
        token.kind = is_float ? Kind::Float : Kind::Int;
        token.text = {reinterpret_cast<const char*>(start), static_cast<std::size_t>(p_ - start)};
        return true;
    }

    bool parse_object(Token& token, int depth, std::array<Member, kKeyCount + 1>* members, std::size_t* count) {
        if (depth > kMaxDepth) return false;
        ++p_;
        token.kind = Kind::Object;
        token.int_values = true;
        skip_ws();
        if (p_ < end_ && *p_ == '}') {
            ++p_;
            return true;
        }
        for (;;) {
            if (p_ >= end_ || *p_ != '"') return false;
            Member member;
            if (!parse_string(member.key)) return false;
            skip_ws();
            if (p_ >= end_ || *p_ != ':') return false;
            ++p_;
            skip_ws();
            if (!parse_value(member.value, depth + 1)) return false;
            if (member.value.kind != Kind::Int) token.int_values = false;
            if (members) {
                if (*count < members->size()) (*members)[*count] = member;
                ++*count;
            }
            skip_ws();
            if (p_ < end_ && *p_ == ',') {
                ++p_;
                skip_ws();
                continue;
            }
            if (p_ < end_ && *p_ == '}') {
                ++p_;
                return true;
            }
            return false;
        }
    }

    bool parse_array(Token& token, int depth) {
        if (depth > kMaxDepth) return false;
        ++p_;
        token.kind = Kind::Array;
        token.all_strings = true;
        skip_ws();
        if (p_ < end_ && *p_ == ']') {
            ++p_;
            return true;
        }
        for (;;) {
            Token item;
            if (!parse_value(item, depth + 1)) return false;
            if (item.kind != Kind::String) token.all_strings = false;
            skip_ws();
            if (p_ < end_ && *p_ == ',') {
                ++p_;
                skip_ws();
                continue;
            }
            if (p_ < end_ && *p_ == ']') {
                ++p_;
                return true;
            }
            return false;
        }
    }

    bool parse_value(Token& token, int depth) {
        if (p_ >= end_) return false;
        switch (*p_) {
            case '"': return parse_string(token);
            case '{': return parse_object(token, depth, nullptr, nullptr);
            case '[': return parse_array(token, depth);
            case 'n': token.kind = Kind::Literal; return literal("null");
            case 't': token.kind = Kind::Literal; return literal("true");
            case 'f': token.kind = Kind::Literal; return literal("false");
            case 'N': token.kind = Kind::Float; return literal("NaN");
            case 'I': token.kind = Kind::Float; return literal("Infinity");
            default: return parse_number(token);
        }
    }

    const unsigned char* p_;
    const unsigned char* end_;
};

void append_utf8(std::string& out, unsigned code_point) {
    // Generalised UTF-8: lone surrogates get their 3-byte form (Python's "surrogatepass").
    if (code_point < 0x80) {
        out.push_back(static_cast<char>(code_point));
    } else if (code_point < 0x800) {
        out.push_back(static_cast<char>(0xc0 | (code_point >> 6)));
        out.push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
    } else if (code_point < 0x10000) {
        out.push_back(static_cast<char>(0xe0 | (code_point >> 12)));
        out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
    } else {
        out.push_back(static_cast<char>(0xf0 | (code_point >> 18)));
        out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (code_point & 0x3f)));
    }
}

// The decoded value of a validated string token (as Python's json would decode it).
std::string decode(const Token& token) {
    if (!token.escaped) return std::string(token.text);
    std::string out;
    const std::string_view s = token.text;
    auto unit_at = [&](std::size_t i) {
        return (hex_value(static_cast<unsigned char>(s[i + 2])) << 12) |
               (hex_value(static_cast<unsigned char>(s[i + 3])) << 8) |
               (hex_value(static_cast<unsigned char>(s[i + 4])) << 4) | hex_value(static_cast<unsigned char>(s[i + 5]));
    };
    for (std::size_t i = 0; i < s.size();) {
        if (s[i] != '\\') {
            out.push_back(s[i++]);
            continue;
        }
        const char e = s[i + 1];
        if (e != 'u') {
            switch (e) {
                case 'b': out.push_back('\b'); break;
                case 'f': out.push_back('\f'); break;
                case 'n': out.push_back('\n'); break;
                case 'r': out.push_back('\r'); break;
                case 't': out.push_back('\t'); break;
                default: out.push_back(e); break;  // " \ /
            }
            i += 2;
            continue;
        }
        unsigned code = unit_at(i);
        i += 6;
        if (code >= 0xd800 && code <= 0xdbff && i + 6 <= s.size() && s[i] == '\\' && s[i + 1] == 'u') {
            const unsigned low = unit_at(i);
            if (low >= 0xdc00 && low <= 0xdfff) {
                code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                i += 6;
            }
        }
        append_utf8(out, code);
    }
    return out;
}

bool key_is(const Token& key, std::string_view want) {
    return key.escaped ? decode(key) == want : key.text == want;
}

bool schema_ok(const std::array<Member, kKeyCount + 1>& members, std::size_t count) {
    if (count != kKeyCount) return false;
    for (std::size_t i = 0; i < kKeyCount; ++i) {
        if (!key_is(members[i].key, kKeys[i])) return false;
        const Token& value = members[i].value;
        switch (i) {
            case 1:
            case 4:
                if (value.kind != Kind::Int) return false;
                break;
            case 9:
            case 10:
                if (value.kind != Kind::Object || !value.int_values) return false;
                break;
            case 11:
                if (value.kind != Kind::Array || !value.all_strings) return false;
                break;
            default:
                if (value.kind != Kind::String) return false;
        }
    }
    return true;
}

// Python's str(int(text)) for a JSON integer ("-0" is 0).
std::string int_text(std::string_view text) {
    if (text == "-0") return "0";
    return std::string(text);
}

std::string line_reason(std::int64_t line, const std::string& what) { return "line " + std::to_string(line) + ": " + what; }

}  // namespace

ChainScan scan_chain(std::string_view data, const std::string* run_id, std::int64_t want_hash_of_line) {
    ChainScan scan;
    std::string expected_run_id;
    bool have_run_id = run_id != nullptr;
    char expected_hash[64];
    unsigned char digest[32];
    if (have_run_id) {
        expected_run_id = *run_id;
        sha256_raw(expected_run_id, digest);
        hex_encode(digest, expected_hash);
    }
    std::array<Member, kKeyCount + 1> members;
    std::int64_t number = 0;
    const char* cursor = data.data();
    const char* const end = data.data() + data.size();
    const char* line_start = cursor;
    auto fail = [&](std::string reason) {
        scan.bad_line = number;
        scan.reason = line_reason(number, reason);
        // `lines` counts every complete line, also those after the bad one.
        scan.lines = number - 1;
        for (const char* at = line_start; at < end;) {
            const auto* newline = static_cast<const char*>(std::memchr(at, '\n', static_cast<std::size_t>(end - at)));
            if (!newline) break;
            ++scan.lines;
            at = newline + 1;
        }
        return scan;
    };
    while (cursor < end) {
        ++number;
        line_start = cursor;
        const auto* newline = static_cast<const char*>(std::memchr(cursor, '\n', static_cast<std::size_t>(end - cursor)));
        if (!newline) return fail("no trailing newline");
        const std::string_view line(cursor, static_cast<std::size_t>(newline + 1 - cursor));
        cursor = newline + 1;
        std::size_t count = 0;
        bool top_is_object = false;
        LineParser parser(reinterpret_cast<const unsigned char*>(line.data()),
                          reinterpret_cast<const unsigned char*>(line.data() + line.size() - 1));
        if (!parser.parse(members, count, top_is_object)) return fail("not valid JSON");
        if (!top_is_object || !schema_ok(members, count)) return fail("bad keys");
        const std::string seq = int_text(members[1].value.text);
        const std::string want_seq = std::to_string(number);
        if (seq != want_seq) return fail("seq " + seq + ", expected " + want_seq);
        const Token& line_run_id = members[3].value;
        if (!have_run_id) {
            expected_run_id = decode(line_run_id);
            have_run_id = true;
            sha256_raw(expected_run_id, digest);
            hex_encode(digest, expected_hash);
        } else if (line_run_id.escaped ? decode(line_run_id) != expected_run_id : line_run_id.text != expected_run_id) {
            return fail("run_id changed");
        }
        const Token& prev_hash = members[12].value;
        const std::string_view want_hash(expected_hash, 64);
        if (prev_hash.escaped ? decode(prev_hash) != want_hash : prev_hash.text != want_hash)
            return fail("prev_hash mismatch");
        sha256_raw(line, digest);
        hex_encode(digest, expected_hash);
        if (number == want_hash_of_line) scan.wanted_hash.assign(expected_hash, 64);
    }
    scan.lines = number;
    if (have_run_id) scan.last_hash.assign(expected_hash, 64);
    return scan;
}

namespace {

// A read-only view of a whole file (mmap; empty files need no mapping).
class MappedFile {
public:
    explicit MappedFile(const std::string& path) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) {
            error_ = errno;
            return;
        }
        struct stat info {};
        if (::fstat(fd_, &info) != 0) throw OsError(errno, path);
        size_ = static_cast<std::size_t>(info.st_size);
        if (size_ == 0) return;
        void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
        if (address == MAP_FAILED) throw OsError(errno, path);
        data_ = static_cast<const char*>(address);
        ::madvise(address, size_, MADV_SEQUENTIAL);
    }
    ~MappedFile() {
        if (data_) ::munmap(const_cast<char*>(data_), size_);
        if (fd_ >= 0) ::close(fd_);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    int error() const { return error_; }
    std::string_view view() const { return {data_ ? data_ : "", size_}; }

private:
    int fd_ = -1;
    int error_ = 0;
    const char* data_ = nullptr;
    std::size_t size_ = 0;
};

struct StateHead {
    bool valid = false;
    std::int64_t seq = 0;
    std::string hash;
};

StateHead read_state_head(const std::string& path) {
    StateHead head;
    std::string text;
    try {
        text = fsutil::read_file(path);
    } catch (const OsError&) {
        return head;
    }
    const auto state = json::Value::parse(text, nullptr, false);
    if (!state.is_object() || !state.contains("journal_head")) return head;
    const auto& journal_head = state["journal_head"];
    if (!journal_head.is_object() || !journal_head.contains("seq") || !journal_head.contains("hash")) return head;
    const auto& seq = journal_head["seq"];
    const auto& hash = journal_head["hash"];
    if (!hash.is_string()) return head;
    if (seq.is_number_unsigned()) {
        if (seq.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) return head;
        head.seq = static_cast<std::int64_t>(seq.get<std::uint64_t>());
    } else if (seq.is_number_integer()) {
        head.seq = seq.get<std::int64_t>();
        if (head.seq < 0) return head;
    } else {
        return head;
    }
    head.hash = hash.get<std::string>();
    head.valid = true;
    return head;
}

std::string absolute(const std::string& path) {
    if (!path.empty() && path.front() == '/') return path;
    char cwd[PATH_MAX];
    if (!::getcwd(cwd, sizeof cwd)) throw OsError(errno, ".");
    return std::string(cwd) + "/" + path;
}

}  // namespace

VerifyResult verify_journal(const std::string& path_or_out_dir) {
    std::string journal_path = path_or_out_dir;
    std::string state_path;
    if (fsutil::is_dir(path_or_out_dir)) {
        journal_path = path_or_out_dir + "/journal/events.jsonl";
        state_path = path_or_out_dir + "/state/run_state.json";
    } else {
        const std::string parent = fsutil::parent_dir(absolute(path_or_out_dir));
        if (fsutil::base_name(parent) == "journal") state_path = fsutil::parent_dir(parent) + "/state/run_state.json";
    }
    const MappedFile journal(journal_path);
    if (journal.error() == ENOENT) return {false, 0, 0, "journal missing"};
    if (journal.error()) throw OsError(journal.error(), journal_path);
    const bool state_exists = !state_path.empty() && fsutil::exists(state_path);
    const StateHead head = state_exists ? read_state_head(state_path) : StateHead{};
    const ChainScan scan = scan_chain(journal.view(), nullptr, head.valid ? head.seq : 0);
    if (scan.bad_line) return {false, scan.lines, scan.bad_line, scan.reason};
    if (state_exists) {
        if (!head.valid) return {false, scan.lines, 0, "state file has no valid journal_head"};
        if (head.seq > scan.lines)
            return {false, scan.lines, scan.lines + 1,
                    "journal ends at seq " + std::to_string(scan.lines) + " before state head seq " +
                        std::to_string(head.seq)};
        if (head.seq > 0 && scan.wanted_hash != head.hash)
            return {false, scan.lines, head.seq, line_reason(head.seq, "hash differs from state head")};
    }
    return {true, scan.lines, 0, "ok"};
}

}  // namespace heidi
