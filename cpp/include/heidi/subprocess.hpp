// The hardened process runner: every stage of the loop runs through Subprocess::run.
//
// The child runs in its own session (process group). The deadline holds even if the
// child closes its pipes; on timeout or cancel the whole group gets SIGTERM, then
// SIGKILL after the grace. Every child is reaped; whatever is left of the group when
// the child exits is killed. Output beyond the cap is drained and dropped.
// Children get PR_SET_PDEATHSIG(SIGKILL), so they die with the runner's thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "heidi/fd.hpp"

namespace heidi {

// The child could not be started: exec (or the executable lookup) failed.
class SpawnError : public std::runtime_error {
public:
    SpawnError(int error_code, std::string path);
    int error_code() const noexcept { return error_code_; }  // errno
    const std::string& path() const noexcept { return path_; }

private:
    int error_code_;
    std::string path_;
};

// Lets another thread stop a running child (SIGTERM to the group, grace, SIGKILL).
// One token may serve several runs; once cancelled it stays cancelled, and a run
// started with a cancelled token does not spawn at all.
class CancelToken {
public:
    CancelToken();
    CancelToken(const CancelToken&) = delete;
    CancelToken& operator=(const CancelToken&) = delete;

    void cancel() noexcept;
    bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }
    // Readable once cancel() was called (for poll loops).
    int wait_fd() const noexcept { return event_fd_.get(); }

private:
    std::atomic<bool> cancelled_{false};
    Fd event_fd_;
};

struct RunOptions {
    // Complete environment of the child; nullopt inherits the runner's. Empty = empty.
    std::optional<std::vector<std::pair<std::string, std::string>>> env;
    std::optional<std::string> cwd;
    std::size_t max_output_bytes = std::size_t{1} << 20;  // per stream
    double kill_grace_s = 2.0;
    // Called on the runner's thread for each complete stdout line (without "\n"),
    // in order, while the child runs; a final unterminated line is delivered at EOF.
    // An exception thrown here kills the group, reaps the child and propagates.
    std::function<void(std::string_view line)> on_stdout_line;
    std::shared_ptr<CancelToken> cancel;
};

struct RunResult {
    int exit_code = -1;   // exit status; -signal when killed by a signal (as Python's returncode)
    int signal = 0;       // the signal that ended the child, 0 when it exited
    bool timed_out = false;
    bool cancelled = false;
    std::string stdout_bytes;
    std::string stderr_bytes;
    bool truncated = false;  // either stream passed max_output_bytes
    double duration_s = 0.0;
    bool ok() const noexcept { return exit_code == 0 && !timed_out && !cancelled; }
};

class Subprocess {
public:
    // argv[0] is looked up on PATH (the child's PATH when env is given, else the
    // runner's) unless it contains '/'. Throws SpawnError when it cannot be executed,
    // std::invalid_argument for an empty argv or a bad timeout.
    static RunResult run(const std::vector<std::string>& argv, double timeout_s,
                         const RunOptions& options = {});
};

}  // namespace heidi
