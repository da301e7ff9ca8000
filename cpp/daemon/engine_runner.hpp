// The thread that drives the Core: it ticks whenever the run is in a running state and
// sleeps otherwise until an action wakes it. HTTP threads never tick; they call the
// Core's thread-safe methods (which never wait for a running stage) and then wake().
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include <heidi/core.hpp>

namespace heidid {

class EngineRunner {
public:
    explicit EngineRunner(heidi::Core& core);
    ~EngineRunner();
    EngineRunner(const EngineRunner&) = delete;
    EngineRunner& operator=(const EngineRunner&) = delete;

    void start();
    void wake();
    // Cancels a running stage (SPEC stop semantics), joins the thread, shuts the Core down.
    void shutdown();
    // Empty unless the engine thread died of an exception.
    std::string failure() const;

private:
    void loop();

    heidi::Core& core_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool woken_ = false;
    bool stopping_ = false;
    bool in_tick_ = false;
    std::string failure_;
    std::thread thread_;
};

}  // namespace heidid
