#include "heidi/journal.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>

#include <openssl/evp.h>

#include "heidi/errors.hpp"
#include "heidi/fd.hpp"
#include "heidi/fsutil.hpp"
#include "heidi/json.hpp"
#include "heidi/secrets.hpp"
#include "faults.hpp"
#include "journal_scan.hpp"

namespace heidi {

namespace {

constexpr std::size_t kBufferBytes = std::size_t{1} << 16;  // fsync off: write in batches

const EVP_MD* sha256_md() {
    // Fetched once: an implicit fetch per digest costs more than hashing a short line.
    static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return md;
}

// Per thread: a context initialised once for SHA-256 and copied for each digest, which is
// cheaper than EVP_DigestInit_ex on every short line.
struct DigestContext {
    EVP_MD_CTX* initialised = EVP_MD_CTX_new();
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    bool ready = initialised && ctx && EVP_DigestInit_ex(initialised, sha256_md(), nullptr) == 1;
    ~DigestContext() {
        EVP_MD_CTX_free(ctx);
        EVP_MD_CTX_free(initialised);
    }
};

template <typename T>
bool contains(const T& list, std::string_view value) {
    return std::find(std::begin(list), std::end(list), value) != std::end(list);
}

template <typename T>
std::string join(const T& list) {
    std::string text;
    for (std::string_view name : list) text += (text.empty() ? "" : ", ") + std::string(name);
    return text;
}

void check_counters(const Counters& counters, const char* name) {
    for (std::size_t i = 0; i < counters.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (counters[i].first == counters[j].first)
                throw std::invalid_argument(std::string(name) + " has the name '" + counters[i].first + "' twice");
}

// A string field, scrubbed of secrets (docs/secrets.md).
void append_scrubbed(std::string& out, std::string_view text, std::string& scratch) {
    scratch.clear();
    json::append_string(out, scrub_secrets_into(text, scratch) ? std::string_view(scratch) : text, true);
}

std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
    std::int64_t sum = 0;
    if (__builtin_add_overflow(a, b, &sum))
        return b > 0 ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
    return sum;
}

// Counter names are scrubbed like every text field. Two names that scrub to the same text
// become one counter (at the first one's place) holding their saturated sum.
void append_counters(std::string& out, const Counters& counters, std::string& scratch) {
    Counters scrubbed;
    for (std::size_t i = 0; i < counters.size(); ++i) {
        scratch.clear();
        if (!scrub_secrets_into(counters[i].first, scratch)) {
            if (!scrubbed.empty()) scrubbed.emplace_back(counters[i]);
            continue;
        }
        if (scrubbed.empty()) scrubbed.assign(counters.begin(), counters.begin() + static_cast<std::ptrdiff_t>(i));
        scrubbed.emplace_back(scratch, counters[i].second);
    }
    const Counters& names = scrubbed.empty() ? counters : scrubbed;
    out.push_back('{');
    bool first = true;
    for (std::size_t i = 0; i < names.size(); ++i) {
        std::int64_t value = names[i].second;
        bool repeated = false;
        for (std::size_t j = 0; j < i && !scrubbed.empty(); ++j) repeated = repeated || names[j].first == names[i].first;
        if (repeated) continue;
        for (std::size_t j = i + 1; j < names.size() && !scrubbed.empty(); ++j)
            if (names[j].first == names[i].first) value = saturating_add(value, names[j].second);
        if (!first) out.push_back(',');
        first = false;
        json::append_string(out, names[i].first, true);
        out.push_back(':');
        json::append_int(out, value);
    }
    out.push_back('}');
}

}  // namespace

void sha256_raw(std::string_view data, unsigned char digest[32]) {
    thread_local DigestContext context;
    unsigned int length = 0;
    if (!context.ready || EVP_MD_CTX_copy_ex(context.ctx, context.initialised) != 1 ||
        EVP_DigestUpdate(context.ctx, data.data(), data.size()) != 1 ||
        EVP_DigestFinal_ex(context.ctx, digest, &length) != 1)
        throw std::runtime_error("SHA-256 failed (OpenSSL)");
}

namespace {
// The two hex digits of every byte value, so each byte costs one table load.
constexpr std::array<char, 512> make_hex_pairs() {
    constexpr char kHex[] = "0123456789abcdef";
    std::array<char, 512> table{};
    for (std::size_t i = 0; i < 256; ++i) {
        table[2 * i] = kHex[i >> 4];
        table[2 * i + 1] = kHex[i & 0xf];
    }
    return table;
}
constexpr std::array<char, 512> kHexPairs = make_hex_pairs();
}  // namespace

void hex_encode(const unsigned char digest[32], char out[64]) {
    for (std::size_t i = 0; i < 32; ++i) std::memcpy(out + 2 * i, &kHexPairs[2 * std::size_t{digest[i]}], 2);
}

std::string sha256_hex(std::string_view data) {
    unsigned char digest[32];
    sha256_raw(data, digest);
    std::string hex(64, '0');
    hex_encode(digest, hex.data());
    return hex;
}

// ---------------------------------------------------------------------------------------

JournalWriter::JournalWriter(std::string path, std::string run_id, bool fsync, std::shared_ptr<const Clock> clock)
    : path_(std::move(path)),
      run_id_(std::move(run_id)),
      fsync_(fsync),
      clock_(clock ? std::move(clock) : std::make_shared<SystemClock>()) {
    run_id_part_ = R"(Z","run_id":)";
    json::append_string(run_id_part_, run_id_, true);
    run_id_part_.append(R"(,"round":)");
    open_and_continue();
}

JournalWriter::~JournalWriter() {
    try {
        close();
    } catch (...) {
        // A destructor must not throw; close() explicitly to see write errors.
    }
}

void JournalWriter::open_and_continue() {
    std::string data;
    try {
        const std::string dir = fsutil::parent_dir(path_);
        fsutil::make_dirs(dir);
        if (fsutil::exists(path_)) data = fsutil::read_file(path_);
    } catch (const OsError& error) {
        throw JournalError("cannot open journal " + path_ + ": " + std::strerror(error.error_code()));
    }
    const std::size_t keep = data.rfind('\n') == std::string::npos ? 0 : data.rfind('\n') + 1;
    const std::string_view complete(data.data(), keep);
    const std::string_view torn(data.data() + keep, data.size() - keep);
    const ChainScan scan = scan_chain(complete, &run_id_, 0);
    if (scan.bad_line) throw JournalError("cannot continue journal " + path_ + ": " + scan.reason);
    head_ = {scan.lines, scan.last_hash};
    fd_.reset(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
    if (!fd_) throw JournalError("cannot open journal " + path_ + ": " + std::strerror(errno));
    size_ = keep;
    if (torn.empty()) return;
    // Save the crash's partial line beside the journal, then cut it off.
    const std::string aside = path_ + ".torn-" + std::to_string(head_.seq + 1);
    try {
        {
            const Fd aside_fd(
                ::open(aside.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
            if (!aside_fd) throw OsError(errno, aside);
            fsutil::write_all(aside_fd.get(), torn, aside);
            if (::fsync(aside_fd.get()) != 0) throw OsError(errno, aside);
        }
        if (::ftruncate(fd_.get(), static_cast<off_t>(keep)) != 0 || ::fsync(fd_.get()) != 0)
            throw OsError(errno, path_);
        fsutil::fsync_dir(fsutil::parent_dir(path_));
    } catch (const OsError& error) {
        fd_.reset();
        throw JournalError("cannot open journal " + path_ + ": " + std::strerror(error.error_code()));
    }
    const auto torn_bytes = static_cast<std::int64_t>(torn.size());
    append("journal_recovered", "recovered torn line of " + std::to_string(torn_bytes) + " bytes", "pipeline", 0,
           "warn", {{"torn_bytes", torn_bytes}});
}

void check_level_and_stage(std::string_view level, std::string_view stage) {
    if (!contains(kJournalLevels, level))
        throw std::invalid_argument("invalid level '" + std::string(level) +
                                    "' (valid: " + join(kJournalLevels) + ")");
    if (!contains(kJournalStages, stage))
        throw std::invalid_argument("invalid stage '" + std::string(stage) +
                                    "' (valid: " + join(kJournalStages) + ")");
}

std::int64_t JournalWriter::append(std::string_view event_type, std::string_view message, std::string_view stage,
                                   std::int64_t round, std::string_view level, const Counters& counters_delta,
                                   const Counters& usage_delta, const std::vector<std::string>& artifact_paths) {
    check_level_and_stage(level, stage);
    if (round < 0) throw std::invalid_argument("round must be an integer >= 0");
    check_counters(counters_delta, "counters_delta");
    check_counters(usage_delta, "usage_delta");
    std::lock_guard lock(mutex_);
    check_usable_locked();
    const std::int64_t seq = head_.seq + 1;
    std::string& line = line_;
    line.clear();
    line.append(R"({"event_version":"1.0","seq":)");
    json::append_int(line, seq);
    line.append(R"(,"ts":")");
    const std::int64_t now_ms = clock_->now_ms();
    const std::int64_t second = now_ms >= 0 ? now_ms / 1000 : -((-now_ms + 999) / 1000);
    if (second != cached_second_) {
        cached_prefix_ = format_iso_ms(second * 1000).substr(0, 19);
        cached_second_ = second;
    }
    line.append(cached_prefix_);
    const auto millis = static_cast<int>(now_ms - second * 1000);
    const char fraction[4] = {'.', static_cast<char>('0' + millis / 100), static_cast<char>('0' + millis / 10 % 10),
                              static_cast<char>('0' + millis % 10)};
    line.append(fraction, 4);
    line.append(run_id_part_);
    json::append_int(line, round);
    line.append(R"(,"stage":")");
    line.append(stage);
    line.append(R"(","level":")");
    line.append(level);
    line.append(R"(","event_type":)");
    append_scrubbed(line, event_type, scrub_);
    line.append(R"(,"message":)");
    append_scrubbed(line, message, scrub_);
    line.append(R"(,"counters_delta":)");
    append_counters(line, counters_delta, scrub_);
    line.append(R"(,"usage_delta":)");
    append_counters(line, usage_delta, scrub_);
    line.append(R"(,"artifact_paths":[)");
    for (std::size_t i = 0; i < artifact_paths.size(); ++i) {
        if (i) line.push_back(',');
        append_scrubbed(line, artifact_paths[i], scrub_);
    }
    line.append(R"(],"prev_hash":")");
    line.append(head_.hash);
    line.append("\"}\n");

    if (fsync_) {
        write_durably(line);
    } else {
        pending_.append(line);
        if (pending_.size() >= kBufferBytes) flush_locked();
    }
    unsigned char digest[32];
    sha256_raw(line, digest);
    head_.seq = seq;
    head_.hash.resize(64);
    hex_encode(digest, head_.hash.data());
    return seq;
}

void JournalWriter::check_usable_locked() const {
    if (!fd_) throw JournalError("journal " + path_ + " is closed");
    if (failure_)
        throw JournalError("journal " + path_ + " stopped after a write error: " + std::strerror(failure_));
}

void JournalWriter::write_durably(std::string_view data) {
    try {
        if (faults::armed()) faults::torn_write("journal_torn", fd_.get(), data, path_);
        fsutil::write_all(fd_.get(), data, path_);
        if (::fdatasync(fd_.get()) != 0) throw OsError(errno, path_);
        if (faults::armed()) faults::hit("journal_written", path_);
    } catch (const OsError& error) {
        // The line was not written: cut off any part of it and stay usable, unless the
        // cut fails (the file would not end at a whole line).
        write_failed(error.error_code(), true);
    }
    size_ += data.size();
}

void JournalWriter::write_buffered(std::string_view data) {
    try {
        if (faults::armed()) faults::torn_write("journal_flush_torn", fd_.get(), data, path_);
        fsutil::write_all(fd_.get(), data, path_);
    } catch (const OsError& error) {
        // Lines the writer has already counted are lost: it stops (see failure_).
        write_failed(error.error_code(), false);
    }
    size_ += data.size();
}

void JournalWriter::write_failed(int error, bool keep_usable) {
    if (::ftruncate(fd_.get(), static_cast<off_t>(size_)) != 0) keep_usable = false;
    if (!keep_usable) failure_ = error;
    throw JournalError("cannot write journal " + path_ + ": " + std::strerror(error));
}

void JournalWriter::flush_locked() {
    // Only the fsync-off mode buffers; with fsync on every append is already written.
    if (pending_.empty()) return;
    std::string data;
    data.swap(pending_);
    write_buffered(data);  // on failure the lines are dropped: the writer has stopped
    data.clear();
    pending_.swap(data);  // keep the buffer's capacity
}

void JournalWriter::flush() {
    std::lock_guard lock(mutex_);
    if (!fd_) return;
    check_usable_locked();
    flush_locked();
}

JournalHead JournalWriter::head() {
    std::lock_guard lock(mutex_);
    if (fd_) {
        check_usable_locked();
        flush_locked();
    }
    return head_;
}

void JournalWriter::close() {
    std::lock_guard lock(mutex_);
    if (!fd_) return;
    try {
        if (!failure_) flush_locked();
    } catch (...) {
        fd_.reset();
        throw;
    }
    if (::close(fd_.release()) != 0)
        throw JournalError("cannot close journal " + path_ + ": " + std::strerror(errno));
}

bool JournalWriter::closed() const {
    std::lock_guard lock(mutex_);
    return !fd_;
}

}  // namespace heidi
