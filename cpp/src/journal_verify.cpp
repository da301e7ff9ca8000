// Journal verification. Lines are checked with a strict JSON scanner that accepts exactly
// what Python's json.loads accepts (NaN/Infinity, any whitespace, lone surrogate escapes;
// no raw control characters, no invalid UTF-8, integers of at most 4300 digits), so both
// backends report the same first bad line and reason.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <future>
#include <system_error>
#include <thread>
#include <utility>

#include "heidi/errors.hpp"
#include "heidi/fd.hpp"
#include "heidi/fsutil.hpp"
#include "heidi/journal.hpp"
#include "heidi/json.hpp"
#include "journal_scan.hpp"
#include "utf8.hpp"

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

    // Consumes the structural character c when it comes next.
    bool take(char c) {
        if (p_ >= end_ || *p_ != c) return false;
        ++p_;
        return true;
    }

    // The comma-separated items of an object or array up to its closing character (the
    // opening one is consumed); item() parses one, starting after white space.
    template <typename Item>
    bool parse_items(char close, Item&& item) {
        skip_ws();
        if (take(close)) return true;
        for (;;) {
            if (!item()) return false;
            skip_ws();
            if (!take(',')) return take(close);
            skip_ws();
        }
    }

    bool literal(std::string_view word) {
        if (static_cast<std::size_t>(end_ - p_) < word.size() || std::memcmp(p_, word.data(), word.size()) != 0)
            return false;
        p_ += word.size();
        return true;
    }

    // Skips plain string bytes, 16 (SSE2) or 8 at a time, to the first byte that needs a
    // closer look: < 0x20, '"', '\\' or >= 0x80.
    void skip_plain() {
#if defined(__SSE2__)
        const __m128i quote = _mm_set1_epi8('"');
        const __m128i backslash = _mm_set1_epi8('\\');
        const __m128i space = _mm_set1_epi8(0x20);
        while (end_ - p_ >= 16) {
            const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p_));
            // Signed compare: bytes >= 0x80 are negative, so they count as "< 0x20" too.
            const __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(bytes, quote), _mm_cmpeq_epi8(bytes, backslash)),
                                                 _mm_cmplt_epi8(bytes, space));
            const auto mask = static_cast<unsigned>(_mm_movemask_epi8(special));
            if (mask) {
                p_ += __builtin_ctz(mask);
                return;
            }
            p_ += 16;
        }
#else
        constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
        constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
        while (end_ - p_ >= 8) {
            std::uint64_t word;
            std::memcpy(&word, p_, 8);
            const std::uint64_t quote = word ^ (kOnes * '"');
            const std::uint64_t backslash = word ^ (kOnes * '\\');
            const std::uint64_t special = ((word - kOnes * 0x20) | (quote - kOnes) | (backslash - kOnes) | word) & kHigh;
            if (special) break;
            p_ += 8;
        }
#endif
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
            const utf8::Sequence sequence = utf8::sequence_at(p_, end_);  // strict UTF-8
            if (!sequence.valid) return false;
            p_ += sequence.length;
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
        return parse_items('}', [&] {
            if (p_ >= end_ || *p_ != '"') return false;
            Member member;
            if (!parse_string(member.key)) return false;
            skip_ws();
            if (!take(':')) return false;
            skip_ws();
            if (!parse_value(member.value, depth + 1)) return false;
            if (member.value.kind != Kind::Int) token.int_values = false;
            if (members) {
                if (*count < members->size()) (*members)[*count] = member;
                ++*count;
            }
            return true;
        });
    }

    bool parse_array(Token& token, int depth) {
        if (depth > kMaxDepth) return false;
        ++p_;
        token.kind = Kind::Array;
        token.all_strings = true;
        return parse_items(']', [&] {
            Token item;
            if (!parse_value(item, depth + 1)) return false;
            if (item.kind != Kind::String) token.all_strings = false;
            return true;
        });
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

// Checks consecutive lines, carrying what each line needs from the one before it: its
// number, the expected run_id and the hash of the previous line. Starting a checker in
// the middle of a journal only needs the previous line's bytes, so parts of a large file
// are checked independently.
class LineChecker {
public:
    // run_id null: taken from the first line checked.
    LineChecker(std::int64_t lines_before, std::string_view previous_line, const std::string* run_id)
        : number_(lines_before), have_run_id_(run_id != nullptr) {
        if (run_id) expected_run_id_ = *run_id;
        if (!previous_line.empty()) hash_into(previous_line);
        else if (run_id) hash_into(*run_id);
    }

    // Checks the lines of [cursor, end) (end at a line boundary or the data's end); stops
    // at the first bad one. Returns false when a line is bad (its number() and reason()).
    bool check(const char* cursor, const char* end, std::int64_t want_hash_of_line) {
        while (cursor < end) {
            ++number_;
            const auto* newline = static_cast<const char*>(std::memchr(cursor, '\n', static_cast<std::size_t>(end - cursor)));
            if (!newline) return fail("no trailing newline");
            const std::string_view line(cursor, static_cast<std::size_t>(newline + 1 - cursor));
            cursor = newline + 1;
            if (!check_line(line)) return false;
            hash_into(line);
            if (number_ == want_hash_of_line) wanted_hash_.assign(expected_hash_, 64);
        }
        return true;
    }

    std::int64_t number() const { return number_; }
    const std::string& reason() const { return reason_; }
    const std::string& run_id() const { return expected_run_id_; }
    bool has_hash() const { return have_run_id_; }
    std::string last_hash() const { return std::string(expected_hash_, 64); }
    const std::string& wanted_hash() const { return wanted_hash_; }

private:
    void hash_into(std::string_view data) {
        unsigned char digest[32];
        sha256_raw(data, digest);
        hex_encode(digest, expected_hash_);
    }

    bool fail(const std::string& what) {
        reason_ = line_reason(number_, what);
        return false;
    }

    bool check_line(std::string_view line) {
        std::size_t count = 0;
        bool top_is_object = false;
        LineParser parser(reinterpret_cast<const unsigned char*>(line.data()),
                          reinterpret_cast<const unsigned char*>(line.data() + line.size() - 1));
        if (!parser.parse(members_, count, top_is_object)) return fail("not valid JSON");
        if (!top_is_object || !schema_ok(members_, count)) return fail("bad keys");
        // seq must be the line number (JSON has one way to write a positive integer).
        char digits[24];
        const auto end = std::to_chars(digits, digits + sizeof digits, number_).ptr;
        const std::string_view seq = members_[1].value.text;
        if (seq != std::string_view(digits, static_cast<std::size_t>(end - digits)))
            return fail("seq " + int_text(seq) + ", expected " + std::to_string(number_));
        const Token& line_run_id = members_[3].value;
        if (!have_run_id_) {
            expected_run_id_ = decode(line_run_id);
            have_run_id_ = true;
            hash_into(expected_run_id_);
        } else if (line_run_id.escaped ? decode(line_run_id) != expected_run_id_
                                       : line_run_id.text != expected_run_id_) {
            return fail("run_id changed");
        }
        const Token& prev_hash = members_[12].value;
        const std::string_view want_hash(expected_hash_, 64);
        if (prev_hash.escaped ? decode(prev_hash) != want_hash : prev_hash.text != want_hash)
            return fail("prev_hash mismatch");
        return true;
    }

    std::array<Member, kKeyCount + 1> members_;
    std::int64_t number_;
    bool have_run_id_;
    std::string expected_run_id_;
    char expected_hash_[64] = {};
    std::string wanted_hash_;
    std::string reason_;
};

// Below this size a second thread costs more than it saves.
constexpr std::size_t kParallelBytes = std::size_t{1} << 20;

std::int64_t count_newlines(const char* begin, const char* end) {
    // memchr is vectorised; a byte-by-byte count is several times slower on long data.
    std::int64_t count = 0;
    for (const char* at = begin; at < end; ++count) {
        const auto* newline = static_cast<const char*>(std::memchr(at, '\n', static_cast<std::size_t>(end - at)));
        if (!newline) break;
        at = newline + 1;
    }
    return count;
}

ChainScan failed_scan(std::string_view data, const LineChecker& checker) {
    ChainScan scan;
    scan.bad_line = checker.number();
    scan.reason = checker.reason();
    // `lines` counts every complete line, also those after the bad one.
    scan.lines = count_newlines(data.data(), data.data() + data.size());
    return scan;
}

}  // namespace

ChainScan scan_chain(std::string_view data, const std::string* run_id, std::int64_t want_hash_of_line) {
    const char* const begin = data.data();
    const char* const end = begin + data.size();
    LineChecker first(0, {}, run_id);
    const auto finish = [&](const LineChecker& last) {
        ChainScan scan;
        scan.lines = last.number();
        if (last.has_hash()) scan.last_hash = last.last_hash();
        return scan;
    };
    // Large data is checked in two parts on two threads: line 1 (which names the run id
    // when none is given) and the lines up to a line boundary past the middle here, the
    // rest on a second thread. The first bad line of the first part wins.
    const char* split = end;
    const auto* line_one_end = static_cast<const char*>(std::memchr(begin, '\n', data.size()));
    if (data.size() >= kParallelBytes && line_one_end && std::thread::hardware_concurrency() >= 2) {
        const char* middle = std::max(begin + data.size() / 2, line_one_end + 1);
        const auto* newline = static_cast<const char*>(std::memchr(middle, '\n', static_cast<std::size_t>(end - middle)));
        if (newline && newline + 1 < end) split = newline + 1;
    }
    if (split == end) {
        if (!first.check(begin, end, want_hash_of_line)) return failed_scan(data, first);
        ChainScan scan = finish(first);
        scan.wanted_hash = first.wanted_hash();
        return scan;
    }
    if (!first.check(begin, line_one_end + 1, want_hash_of_line)) return failed_scan(data, first);
    const std::string line_one_run_id = first.run_id();
    const auto check_second_part = [&]() {
        // Its lines' numbers and first prev_hash follow from the bytes before it.
        const auto* previous = static_cast<const char*>(::memrchr(begin, '\n', static_cast<std::size_t>(split - 1 - begin)));
        const char* previous_start = previous ? previous + 1 : begin;
        LineChecker checker(count_newlines(begin, split),
                            std::string_view(previous_start, static_cast<std::size_t>(split - previous_start)),
                            &line_one_run_id);
        const bool ok = checker.check(split, end, want_hash_of_line);
        return std::make_pair(ok, std::move(checker));
    };
    std::future<std::pair<bool, LineChecker>> second_part;
    try {
        second_part = std::async(std::launch::async, check_second_part);
    } catch (const std::system_error&) {
        second_part = std::async(std::launch::deferred, check_second_part);  // no thread to be had
    }
    const bool first_ok = first.check(line_one_end + 1, split, want_hash_of_line);
    if (!first_ok) return failed_scan(data, first);  // the future's destructor waits for the thread
    auto [second_ok, second] = second_part.get();
    if (!second_ok) return failed_scan(data, second);
    ChainScan scan = finish(second);
    scan.wanted_hash = first.wanted_hash().empty() ? second.wanted_hash() : first.wanted_hash();
    return scan;
}

VerifyResult verify_chain(std::string_view data, const std::string* run_id, const JournalHead& head) {
    const ChainScan scan = scan_chain(data, run_id, head.seq);
    if (scan.bad_line) return {false, scan.lines, scan.bad_line, scan.reason};
    if (head.seq > scan.lines)
        return {false, scan.lines, scan.lines + 1,
                "journal ends at seq " + std::to_string(scan.lines) + " before state head seq " +
                    std::to_string(head.seq)};
    if (head.seq > 0 && scan.wanted_hash != head.hash)
        return {false, scan.lines, head.seq, line_reason(head.seq, "hash differs from state head")};
    return {true, scan.lines, 0, "ok"};
}

namespace {

// A read-only view of a whole file (mmap; empty files need no mapping).
class MappedFile {
public:
    explicit MappedFile(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
        if (!fd_) {
            error_ = errno;
            return;
        }
        struct stat info {};
        if (::fstat(fd_.get(), &info) != 0) throw OsError(errno, path);
        size_ = static_cast<std::size_t>(info.st_size);
        if (size_ == 0) return;
        // Populated at once: one pass of page-table setup instead of a fault per few pages.
        void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd_.get(), 0);
        if (address == MAP_FAILED) throw OsError(errno, path);
        data_ = static_cast<const char*>(address);
        ::madvise(address, size_, MADV_SEQUENTIAL);
    }
    ~MappedFile() {
        if (data_) ::munmap(const_cast<char*>(data_), size_);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    int error() const { return error_; }
    std::string_view view() const { return {data_ ? data_ : "", size_}; }

private:
    Fd fd_;
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
    } catch (const OsError& error) {
        if (error.error_code() != ENOENT) throw;  // unreadable: an error of its own, naming it
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
    VerifyResult result = verify_chain(journal.view(), nullptr, head.valid ? JournalHead{head.seq, head.hash} : JournalHead{});
    if (result.ok && state_exists && !head.valid)
        return {false, result.lines, 0, "state file has no valid journal_head"};
    return result;
}

}  // namespace heidi
