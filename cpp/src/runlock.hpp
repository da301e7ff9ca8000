// The run lock: one runner per OUT_DIR (docs/design.md "Run lock"); the Python twin is
// heidi_engine/_py/runlock.py.
//
// An exclusive flock on OUT_DIR/state/run.lock, holding the holder's pid, taken when a
// Core opens and dropped at shutdown. The kernel drops it when the holder dies, so a
// crash never leaves a stale lock. The descriptor is close-on-exec.
#pragma once

#include <string>

#include "heidi/fd.hpp"

namespace heidi {

class RunLock {
public:
    // Throws RunLockedError ("run directory DIR is in use by another runner (pid N)")
    // when another open lock holds it, OsError on I/O failure.
    explicit RunLock(const std::string& out_dir);
    ~RunLock();  // release()
    RunLock(const RunLock&) = delete;
    RunLock& operator=(const RunLock&) = delete;

    // Drops the lock; idempotent. The file stays (removing it would race a new holder).
    void release() noexcept;

private:
    Fd fd_;
};

}  // namespace heidi
