// The Core: the tick-driven state machine that runs the loop (SPEC §4-§7,
// docs/design.md "Core"). One Core owns one OUT_DIR: it journals every step, keeps
// state/run_state.json current and runs each stage as a child process.
//
// Thread safety: every method may be called from any thread. A stage runs with the
// Core's lock released, so stop(), pause(), resume(), train_now() and
// get_status_json() never wait for it. Ticks are serialised.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "heidi/config.hpp"

namespace heidi {

class Core {
public:
    // Called after each journal line is appended, with its seq, on the thread that
    // appended it and while the Core's lock is held: keep it cheap (e.g. notify a
    // condition variable) and do not call back into the Core.
    using EventObserver = std::function<void(std::int64_t seq)>;

    // Opens (or resumes) the run in config.out_dir. An empty config.python runs stages
    // with "python3" from PATH. Throws ConfigError (bad stage command, RUN_ID that does
    // not match the run in OUT_DIR), JournalError (bad journal or state file), OsError.
    explicit Core(Config config);
    ~Core();  // shutdown(); errors are swallowed
    Core(const Core&) = delete;
    Core& operator=(const Core&) = delete;

    // IDLE (not waiting) or ERROR -> the next stage's state; throws TransitionError,
    // or ConfigError for a mode other than "full"/"collect".
    void start(std::string_view mode);
    void start();  // in config.pipeline_mode
    // Runs the current state's stage; returns the new state name ("PAUSED" while paused).
    std::string tick();
    // Ticks until IDLE, ERROR or PAUSED; returns that name.
    std::string run_until_idle();
    // True when accepted (collect mode, waiting for train-now); else last_refusal() says why.
    bool train_now();
    std::string last_refusal() const;
    void pause();
    void resume();
    // Between stages: stops at once. During a stage: kills its process group; the tick
    // running it records the cancel.
    void stop();
    void reset();
    // The run_state.json line (no newline); a snapshot that never waits for a stage.
    std::string get_status_json() const;
    // Cancels a running stage, waits for its tick, closes the journal. Idempotent;
    // other calls throw TransitionError afterwards (get_status_json keeps working).
    void shutdown();

    void set_event_observer(EventObserver observer);

    const std::string& out_dir() const noexcept;
    const std::string& run_id() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace heidi
