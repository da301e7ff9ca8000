// Engine foundation without Python: JSON encoding, fd ownership, clock, config, journal
// write/verify.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>

#include "heidi/clock.hpp"
#include "heidi/config.hpp"
#include "heidi/errors.hpp"
#include "heidi/fd.hpp"
#include "heidi/journal.hpp"
#include "heidi/json.hpp"
#include "heidi/secrets.hpp"
#include "heidi/status.hpp"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        std::fprintf(stderr, "FAIL: %s\n", what.c_str());
        ++failures;
    }
}

std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

void write(const std::string& path, const std::string& data) { std::ofstream(path, std::ios::binary) << data; }

void test_json() {
    using heidi::json::float_repr;
    check(float_repr(0.1) == "0.1", "0.1");
    check(float_repr(1e16) == "1e+16", "1e16");
    check(float_repr(1e15) == "1000000000000000.0", "1e15");
    check(float_repr(1e-5) == "1e-05", "1e-5");
    check(float_repr(0.0001) == "0.0001", "1e-4");
    check(float_repr(-0.0) == "-0.0", "-0.0");
    std::string out;
    heidi::json::append_string(out, "\xc3\xa9 \xf0\x9f\x98\x80 \"\\/\x01\x7f\n \xff");
    check(out == R"("\u00e9 \ud83d\ude00 \"\\/\u0001\u007f\n \ufffd")", "string escapes: " + out);
    heidi::json::Value value = heidi::json::Value::object();
    value["b"] = 1;
    value["a"] = {true, nullptr, 2.5};
    check(heidi::json::dumps(value) == R"({"b":1,"a":[true,null,2.5]})", "ordered dumps");
    // Invalid UTF-8: each maximal invalid prefix is one U+FFFD (a truncated 3-byte sequence,
    // an encoded surrogate, a lone continuation byte).
    out.clear();
    heidi::json::append_string(out, "\xe2\x82 \xed\xa0\x80 \x80");
    check(out == R"("\ufffd \ufffd\ufffd\ufffd \ufffd")", "invalid UTF-8: " + out);
    using heidi::json::python_repr;
    check(python_repr("run_1") == "'run_1'", "repr plain");
    check(python_repr("it's") == R"("it's")", "repr with a single quote");
    check(python_repr("a'b\"c") == R"('a\'b"c')", "repr with both quotes");
    check(python_repr("x\n\t\x01\x7f\\") == R"('x\n\t\x01\x7f\\')", "repr escapes");
}

void test_fd() {
    // heidi::Fd closes what it holds when it goes, on reset and on move-assignment.
    const auto is_open = [](int fd) { return ::fcntl(fd, F_GETFD) != -1; };
    int fds[2];
    check(::pipe(fds) == 0, "pipe");
    int read_end = fds[0], write_end = fds[1];
    {
        heidi::Fd first(read_end);
        heidi::Fd second(std::move(first));
        check(!first && second && second.get() == read_end, "move hands the fd on");
        first = heidi::Fd(write_end);
        first = std::move(second);
        check(!is_open(write_end) && is_open(read_end), "move-assignment closes the old fd");
    }
    check(!is_open(read_end), "closed at scope exit");
    check(::pipe(fds) == 0, "pipe");
    {
        heidi::Fd held(fds[0]);
        check(held.release() == fds[0] && !held, "release gives the fd up");
        held.reset(fds[1]);
    }
    check(is_open(fds[0]) && !is_open(fds[1]), "release does not close, reset holds the new fd");
    ::close(fds[0]);
}

void test_config() {
    const auto config = heidi::Config::from_sources({{"ROUNDS", "5"}}, "", {{"seed", std::int64_t{7}}});
    check(config.rounds == 5 && config.seed == 7, "config precedence");
    try {
        heidi::Config::from_sources({{"PIPELINE_MODE", "fast"}}, "", {});
        check(false, "bad PIPELINE_MODE accepted");
    } catch (const heidi::ConfigError& error) {
        check(std::string(error.what()) == "invalid value for PIPELINE_MODE: 'fast' (valid: full, collect)",
              error.what());
    }
}

void test_journal(const std::string& dir) {
    const std::string path = dir + "/journal/events.jsonl";
    auto clock = std::make_shared<heidi::FakeClock>("2026-01-01T00:00:00.000Z");
    {
        heidi::JournalWriter journal(path, "run_20260101_000000", false, clock);
        for (int i = 0; i < 5; ++i)
            journal.append("progress", "step " + std::to_string(i) + " token=abc", "generate", 1, "info",
                           {{"raw_lines", i}});
        const auto head = journal.head();
        check(head.seq == 5 && head.hash.size() == 64, "head");
        heidi::StatusWriter(dir + "/state/run_state.json")
            .write({{"journal_head", {{"seq", head.seq}, {"hash", head.hash}}}});
    }
    check(read(path).find("token=[REDACTED:secret_assignment]") != std::string::npos, "message scrubbed");
    auto result = heidi::verify_journal(dir);
    check(result.ok && result.lines == 5 && result.reason == "ok", "verify ok: " + result.reason);

    {  // reopening continues the chain
        heidi::JournalWriter journal(path, "run_20260101_000000", true, clock);
        check(journal.append("progress", "more") == 6, "continued seq");
    }
    check(heidi::verify_journal(dir).ok, "verify after reopen");

    std::string data = read(path);
    const auto at = data.find("step 2");
    data.replace(at, 6, "step X");
    write(path, data);
    result = heidi::verify_journal(dir);
    check(!result.ok && result.first_bad_line == 4 && result.reason == "line 4: prev_hash mismatch",
          "edit detected: " + result.reason);
    try {
        heidi::JournalWriter journal(path, "run_20260101_000000");
        check(false, "continued a bad chain");
    } catch (const heidi::JournalError& error) {
        check(std::string(error.what()).find("line 4: prev_hash mismatch") != std::string::npos, error.what());
    }
}

void test_golden(const std::string& dir) {
    // tests/data/journal_golden.jsonl must verify (its encoding is checked from Python).
    std::string source = __FILE__;
    const std::string golden = source.substr(0, source.rfind("/cpp/tests/")) + "/tests/data/journal_golden.jsonl";
    const auto result = heidi::verify_journal(golden);
    check(result.ok && result.lines == 10, "golden verifies: " + result.reason);
    (void)dir;
}

}  // namespace

int main() {
    char templ[] = "/tmp/heidi_test_journal_XXXXXX";
    const char* dir = ::mkdtemp(templ);
    if (!dir) return 2;
    test_json();
    test_fd();
    test_config();
    test_journal(dir);
    test_golden(dir);
    check(heidi::scrub_secrets("Bearer abcdefghij") == "Bearer [REDACTED:bearer_token]", "bearer");
    std::system((std::string("rm -rf ") + dir).c_str());
    if (failures) return 1;
    std::puts("test_journal: ok");
    return 0;
}
