#include "engine_runner.hpp"

#include <chrono>
#include <cstdio>

#include <heidi/errors.hpp>
#include <heidi/run_layout.hpp>

#include "process.hpp"

namespace heidid {
namespace {
// A backstop: actions wake the thread at once, this only bounds a missed wake-up.
constexpr auto kIdlePoll = std::chrono::milliseconds(500);
}  // namespace

EngineRunner::EngineRunner(heidi::Core& core) : core_(core) {}

EngineRunner::~EngineRunner() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void EngineRunner::start() { thread_ = std::thread([this] { loop(); }); }

void EngineRunner::wake() {
    {
        std::lock_guard lock(mu_);
        woken_ = true;
    }
    cv_.notify_all();
}

void EngineRunner::loop() {
    try {
        for (;;) {
            {
                std::lock_guard lock(mu_);
                if (stopping_) return;
                in_tick_ = true;
                // Cleared before the tick, so a wake-up during the tick is not lost.
                woken_ = false;
            }
            std::string state;
            try {
                state = core_.tick();
            } catch (...) {
                std::lock_guard lock(mu_);
                in_tick_ = false;
                throw;
            }
            std::unique_lock lock(mu_);
            in_tick_ = false;
            if (state == heidi::kIdle || state == heidi::kError || state == heidi::kPaused)
                cv_.wait_for(lock, kIdlePoll, [this] { return woken_ || stopping_; });
        }
    } catch (const std::exception& e) {
        std::lock_guard lock(mu_);
        failure_ = e.what();
        std::fprintf(stderr, "heidid: engine thread failed: %s\n", e.what());
    }
}

void EngineRunner::shutdown() {
    bool stage_running;
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        stage_running = in_tick_;
    }
    if (stage_running) {
        try {
            core_.stop();
        } catch (const heidi::TransitionError&) {
            // the stage ended meanwhile
        }
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    core_.shutdown();
}

std::string EngineRunner::failure() const {
    std::lock_guard lock(mu_);
    return failure_;
}

}  // namespace heidid
