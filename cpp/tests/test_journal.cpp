// Engine foundation without Python: JSON encoding, clock, config, journal write/verify.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "heidi/clock.hpp"
#include "heidi/config.hpp"
#include "heidi/errors.hpp"
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
    test_config();
    test_journal(dir);
    test_golden(dir);
    check(heidi::scrub_secrets("Bearer abcdefghij") == "Bearer [REDACTED:bearer_token]", "bearer");
    std::system((std::string("rm -rf ") + dir).c_str());
    if (failures) return 1;
    std::puts("test_journal: ok");
    return 0;
}
