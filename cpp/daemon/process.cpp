#include "process.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <utility>

#include <heidi/errors.hpp>
#include <heidi/fd.hpp>
#include <heidi/fsutil.hpp>

namespace heidid {
namespace {

int g_signal_write_fd = -1;
std::atomic<int> g_interrupts{0};

void on_signal(int signum) {
    if (signum == SIGINT && g_interrupts.fetch_add(1) >= 1) ::_exit(130);  // second Ctrl-C
    int saved = errno;
    auto byte = static_cast<unsigned char>(signum);
    ssize_t ignored = ::write(g_signal_write_fd, &byte, 1);
    (void)ignored;
    errno = saved;
}

std::runtime_error os_error(const std::string& what) {
    return std::runtime_error(what + ": " + std::strerror(errno));
}

long read_pid(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) return 0;
    long pid = 0;
    if (std::fscanf(f, "%ld", &pid) != 1) pid = 0;
    std::fclose(f);
    return pid;
}

bool process_alive(long pid) {
    return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

}  // namespace

SignalPipe::SignalPipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw os_error("pipe");
    g_signal_write_fd = fds[1];
    read_fd_ = fds[0];
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    // Blocked here, so every thread started later (engine, HTTP workers) inherits the
    // block and the handler runs only where the signals are let through: in wait()
    // (ppoll). That keeps delivery prompt and predictable, also under ThreadSanitizer,
    // which defers handlers to safe points. Stages start with an empty mask (runner).
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &mask, &wait_mask_);
    sigdelset(&wait_mask_, SIGINT);
    sigdelset(&wait_mask_, SIGTERM);
}

SignalPipe::~SignalPipe() {
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
}

int SignalPipe::wait() {
    for (;;) {
        pollfd pfd{read_fd_, POLLIN, 0};
        int rc = ::ppoll(&pfd, 1, nullptr, &wait_mask_);
        if (rc < 0 && errno == EINTR) continue;
        unsigned char byte = 0;
        if (::read(read_fd_, &byte, 1) == 1) {
            // Shutdown begins on this thread: let a second SIGINT reach the handler
            // here, so it can exit at once while the stage is being stopped.
            ::pthread_sigmask(SIG_SETMASK, &wait_mask_, nullptr);
            return byte;
        }
    }
}

PidFile::PidFile(std::string path) : path_(std::move(path)) {
    long existing = read_pid(path_);
    if (existing != 0 && existing != ::getpid() && process_alive(existing))
        throw std::runtime_error("pid file " + path_ + " names a running process (pid " +
                                 std::to_string(existing) + ")");
    heidi::fsutil::make_dirs(heidi::fsutil::parent_dir(path_));
    heidi::fsutil::atomic_write(path_, std::to_string(::getpid()) + "\n");
}

PidFile::~PidFile() {
    if (read_pid(path_) == ::getpid()) ::unlink(path_.c_str());
}

Daemonizer::Daemonizer(const std::string& log_path) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw os_error("pipe");
    heidi::Fd report_read(fds[0]), report_write(fds[1]);
    std::fflush(nullptr);
    pid_t child = ::fork();
    if (child < 0) throw os_error("fork");
    if (child > 0) {
        // The launcher: relay what the daemon reports, then exit with its outcome.
        report_write.reset();
        std::string report;
        char buf[4096];
        for (;;) {
            ssize_t n = ::read(report_read.get(), buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            report.append(buf, static_cast<std::size_t>(n));
        }
        if (report.rfind("ok ", 0) == 0) {
            std::fputs(report.c_str() + 3, stdout);
            std::fflush(stdout);
            ::_exit(0);
        }
        std::fputs(report.empty() ? "heidid: the daemon exited during startup\n" : report.c_str(),
                   stderr);
        ::_exit(1);
    }
    report_read.reset();
    fd_ = std::move(report_write);
    if (::setsid() < 0) throw os_error("setsid");
    pid_t grandchild = ::fork();  // not a session leader: never reacquires a terminal
    if (grandchild < 0) throw os_error("fork");
    if (grandchild > 0) ::_exit(0);
    if (::chdir("/") != 0) throw os_error("chdir /");
    heidi::Fd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
    heidi::fsutil::make_dirs(heidi::fsutil::parent_dir(log_path));
    heidi::Fd log_fd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!null_fd || !log_fd) throw os_error("open " + log_path);
    ::dup2(null_fd.get(), STDIN_FILENO);
    ::dup2(null_fd.get(), STDOUT_FILENO);
    ::dup2(log_fd.get(), STDERR_FILENO);
}

void Daemonizer::report_ready(const std::string& line) { report("ok " + line); }

void Daemonizer::report_failure(const std::string& message) { report(message); }

void Daemonizer::report(const std::string& text) {
    if (!fd_) return;
    try {
        heidi::fsutil::write_all(fd_.get(), text, "the launcher's pipe");
    } catch (const heidi::OsError&) {
        // The launcher is gone: nobody is left to tell.
    }
    fd_.reset();
}

std::string random_token() {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("RAND_bytes failed");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string token;
    for (unsigned char b : bytes) {
        token.push_back(kHex[b >> 4]);
        token.push_back(kHex[b & 15]);
    }
    return token;
}

std::string write_token_file(const std::string& path) {
    std::string token = random_token();
    heidi::fsutil::make_dirs(heidi::fsutil::parent_dir(path));
    heidi::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw os_error("cannot write token file " + path);
    if (::fchmod(fd.get(), 0600) != 0) throw os_error("cannot chmod token file " + path);
    try {
        heidi::fsutil::write_all(fd.get(), token + "\n", path);
    } catch (const heidi::OsError& error) {
        throw std::runtime_error("cannot write token file " + path + ": " +
                                 std::strerror(error.error_code()));
    }
    return token;
}

std::string absolute_path(const std::string& path) {
    return std::filesystem::absolute(std::filesystem::path(path)).lexically_normal().string();
}

}  // namespace heidid
