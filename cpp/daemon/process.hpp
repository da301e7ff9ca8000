// Process plumbing for heidid: signals, the pid file, daemonizing and the token file.
#pragma once

#include <signal.h>

#include <optional>
#include <string>

#include <heidi/fd.hpp>

namespace heidid {

// SIGINT/SIGTERM handlers that only write to a self-pipe; the main thread waits on it
// and shuts down in order. A second SIGINT ends the process at once (exit 130).
// SIGPIPE is ignored (a client hanging up must not kill the daemon).
class SignalPipe {
public:
    SignalPipe();
    ~SignalPipe();
    SignalPipe(const SignalPipe&) = delete;
    SignalPipe& operator=(const SignalPipe&) = delete;
    // Blocks until SIGINT or SIGTERM arrives; returns the signal number. From then on
    // the calling thread takes further signals (a second SIGINT exits at once).
    int wait();

private:
    int read_fd_ = -1;
    sigset_t wait_mask_{};
};

// Holds OUT_DIR's pid file for the daemon's life: refuses to start when the file names a
// live process, removes the file on destruction (only if it still names this process).
class PidFile {
public:
    explicit PidFile(std::string path);
    ~PidFile();
    PidFile(const PidFile&) = delete;
    PidFile& operator=(const PidFile&) = delete;

private:
    std::string path_;
};

// --daemonize: forks twice and detaches. Returns in the daemon only; the launching
// process stays until the daemon calls report() and then exits with its status, so the
// caller sees the "listening" line (or the startup error) and a meaningful exit code.
class Daemonizer {
public:
    // stderr of the daemon is appended to log_path.
    explicit Daemonizer(const std::string& log_path);
    void report_ready(const std::string& line);
    void report_failure(const std::string& message);

private:
    void report(const std::string& text);  // once: the pipe is closed after it
    heidi::Fd fd_;  // the pipe to the launcher, until the report
};

// 32 random bytes (OpenSSL RAND_bytes) as 64 hex characters.
std::string random_token();
// Writes a fresh token to path with mode 0600 (creating parent directories); returns it.
std::string write_token_file(const std::string& path);

std::string absolute_path(const std::string& path);

}  // namespace heidid
