// ctest: the native Core without Python (mock stages, a stop from another thread,
// resume). The full behaviour is covered over both backends by tests/test_core.py.
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "heidi/core.hpp"
#include "heidi/errors.hpp"
#include "heidi/journal.hpp"

namespace fs = std::filesystem;

namespace {

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            std::exit(1);                                                             \
        }                                                                             \
    } while (0)

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

heidi::Config base_config(const std::string& out_dir) {
    heidi::Config config;
    config.out_dir = out_dir;
    config.fsync = false;
    config.rounds = 2;
    config.fake_time = "2026-01-01T00:00:00.000Z";
    return config;
}

void test_mock_run_completes_and_resumes(const std::string& dir) {
    heidi::Config config = base_config(dir);
    config.mock_subprocesses = true;
    std::atomic<std::int64_t> last_seq{0};
    {
        heidi::Core core(config);
        core.set_event_observer([&](std::int64_t seq) { last_seq = seq; });
        core.start("full");
        CHECK(core.tick() == "VALIDATING");
        try {
            core.start("full");
            CHECK(false);
        } catch (const heidi::TransitionError& error) {
            CHECK(std::string(error.what()) ==
                  "cannot start in state VALIDATING (allowed: pause, stop)");
        }
        core.stop();
        CHECK(contains(core.get_status_json(), "\"state\":\"IDLE\""));
    }
    heidi::Core resumed(config);  // continues the chain
    resumed.start("full");
    CHECK(resumed.run_until_idle() == "IDLE");
    CHECK(contains(resumed.get_status_json(), "\"last_completed\":{\"round\":2,\"stage\":\"eval\"}"));
    CHECK(last_seq > 0);
    resumed.shutdown();
    heidi::VerifyResult result = heidi::verify_journal(dir);
    CHECK(result.ok);
}

void test_stop_from_another_thread_cancels_the_stage(const std::string& dir) {
    heidi::Config config = base_config(dir);
    config.stage_cmd_generate = "sh -c 'sleep 30'";
    heidi::Core core(config);
    core.start("full");
    std::string ticked;
    std::thread worker([&] { ticked = core.tick(); });
    // Wait until the stage process runs (its tick holds no lock the status needs).
    for (int i = 0; i < 200 && !fs::exists(dir + "/journal/events.jsonl"); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto began = std::chrono::steady_clock::now();
    core.stop();
    CHECK(std::chrono::steady_clock::now() - began < std::chrono::seconds(1));
    worker.join();
    CHECK(ticked == "IDLE");
    core.shutdown();
    std::string journal;
    {
        std::FILE* file = std::fopen((dir + "/journal/events.jsonl").c_str(), "rb");
        CHECK(file != nullptr);
        char buffer[4096];
        std::size_t n;
        while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) journal.append(buffer, n);
        std::fclose(file);
    }
    CHECK(contains(journal, "\"message\":\"cancelled: stop requested\""));
    CHECK(contains(journal, "\"event_type\":\"pipeline_stop\""));
}

}  // namespace

int main() {
    fs::path root = fs::temp_directory_path() / ("heidi_test_core_" + std::to_string(::getpid()));
    fs::remove_all(root);
    test_mock_run_completes_and_resumes((root / "mock").string());
    test_stop_from_another_thread_cancels_the_stage((root / "stop").string());
    fs::remove_all(root);
    std::puts("test_core: ok");
    return 0;
}
