#include "heidi/subprocess.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <chrono>
#include <csignal>
#include <cstring>
#include <limits>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace heidi {
namespace {

// A stdout line longer than this is cut to it before the line callback sees it.
constexpr std::size_t kMaxLineBytes = std::size_t{1} << 20;
constexpr std::size_t kReadChunk = std::size_t{1} << 16;
// After the child exits, pipes still held by processes that escaped its group are read
// for at most this long.
constexpr double kPostExitDrainS = 0.25;
constexpr std::size_t kChildStackBytes = std::size_t{256} << 10;
constexpr const char* kDefaultPath = "/bin:/usr/bin";  // Python's os.defpath

double now_s() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

// The errno exec would fail with for path (0 when it looks executable).
int exec_error(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errno;
    if (!S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) != 0) return EACCES;
    return 0;
}

// execvp rules, identical to the Python twin's resolve_executable: a name with '/'
// is taken relative to cwd; otherwise the child's PATH is searched (the default
// path when the given env has none); EACCES from any candidate wins over ENOENT.
std::string resolve_executable(const std::string& name, const RunOptions& options) {
    if (name.find('/') != std::string::npos) {
        std::string path = name;
        if (name[0] != '/' && options.cwd) path = *options.cwd + "/" + name;
        if (int error = exec_error(path)) throw SpawnError(error, name);
        return name;
    }
    int error = ENOENT;
    if (!name.empty()) {
        std::string search;
        if (options.env) {
            search = kDefaultPath;
            for (const auto& [key, value] : *options.env) {
                if (key == "PATH") search = value;
            }
        } else {
            const char* path = ::getenv("PATH");
            search = path ? path : kDefaultPath;
        }
        std::size_t begin = 0;
        while (true) {
            std::size_t end = search.find(':', begin);
            std::string directory = search.substr(begin, end == std::string::npos ? end : end - begin);
            std::string candidate = (directory.empty() ? std::string(".") : directory) + "/" + name;
            int found = exec_error(candidate);
            if (found == 0) return candidate;
            if (found == EACCES) error = EACCES;
            if (end == std::string::npos) break;
            begin = end + 1;
        }
    }
    throw SpawnError(error, name);
}

// Everything the child needs, prepared by the parent: the child shares the parent's
// memory (CLONE_VM) and must not allocate.
struct ChildPlan {
    const char* path = nullptr;
    char* const* argv = nullptr;
    char* const* envp = nullptr;
    const char* cwd = nullptr;
    int stdin_fd = -1;
    int stdout_fd = -1;
    int stderr_fd = -1;
    pid_t parent_pid = 0;
    sigset_t parent_mask{};
    int error = 0;        // written by the child when it fails
    bool chdir_failed = false;
};

[[noreturn]] void child_fail(ChildPlan* plan, bool in_chdir) {
    plan->error = errno;
    plan->chdir_failed = in_chdir;
    ::_exit(127);
}

int child_main(void* arg) {
    auto* plan = static_cast<ChildPlan*>(arg);
    // Signal handlers of the parent must never run in the child: reset them before
    // the mask the parent blocked everything with is lifted.
    for (int sig = 1; sig < NSIG; ++sig) {
        struct sigaction action {};
        if (::sigaction(sig, nullptr, &action) != 0) continue;
        if (action.sa_handler != SIG_DFL &&
            (action.sa_handler != SIG_IGN || sig == SIGPIPE || sig == SIGXFSZ)) {
            ::signal(sig, SIG_DFL);
        }
    }
    if (::setsid() < 0) child_fail(plan, false);
    // Die with the runner's thread; if the runner is already gone, do not start.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(plan, false);
    if (::getppid() != plan->parent_pid) ::_exit(127);
    if (::dup2(plan->stdin_fd, 0) < 0 || ::dup2(plan->stdout_fd, 1) < 0 ||
        ::dup2(plan->stderr_fd, 2) < 0) {
        child_fail(plan, false);
    }
    // Descriptors the runner did not mark close-on-exec must not leak into stages.
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    if (plan->cwd && ::chdir(plan->cwd) != 0) child_fail(plan, true);
    // A stage starts with no signal blocked, whatever mask the spawning thread had
    // (the daemon blocks SIGTERM/SIGINT outside its main thread): it must die on SIGTERM.
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(plan->path, plan->argv, plan->envp);
    child_fail(plan, false);
}

// Starts the child with clone(CLONE_VM | CLONE_VFORK), as glibc's posix_spawn does, so
// a large parent is not copied; unlike posix_spawn it can set PR_SET_PDEATHSIG.
pid_t spawn_child(ChildPlan& plan) {
    void* stack = ::mmap(nullptr, kChildStackBytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) throw SpawnError(errno, plan.argv[0]);
    sigset_t all;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &plan.parent_mask);
    pid_t pid = ::clone(child_main, static_cast<char*>(stack) + kChildStackBytes,
                        CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
    int clone_errno = errno;
    ::pthread_sigmask(SIG_SETMASK, &plan.parent_mask, nullptr);
    ::munmap(stack, kChildStackBytes);
    if (pid < 0) throw SpawnError(clone_errno, plan.argv[0]);
    if (plan.error != 0) {
        // The child has exited (CLONE_VFORK returned); reap it and report exec's errno.
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        throw SpawnError(plan.error, plan.chdir_failed ? std::string(plan.cwd) : plan.argv[0]);
    }
    return pid;
}

void signal_group(pid_t pgid, int sig) noexcept { ::killpg(pgid, sig); }

class CappedBuffer {
public:
    CappedBuffer(std::string& data, std::size_t limit) : data_(data), limit_(limit) {}
    void add(const char* bytes, std::size_t size) {
        std::size_t room = limit_ > data_.size() ? limit_ - data_.size() : 0;
        if (size > room) {
            truncated = true;
            size = room;
        }
        data_.append(bytes, size);
    }
    bool truncated = false;

private:
    std::string& data_;
    std::size_t limit_;
};

class LineSplitter {
public:
    explicit LineSplitter(const std::function<void(std::string_view)>& callback)
        : callback_(callback) {}
    void feed(const char* bytes, std::size_t size) {
        std::string_view chunk(bytes, size);
        while (true) {
            std::size_t newline = chunk.find('\n');
            if (newline == std::string_view::npos) {
                append(chunk);
                return;
            }
            append(chunk.substr(0, newline));
            emit();
            chunk.remove_prefix(newline + 1);
        }
    }
    void finish() {
        if (!buffer_.empty()) emit();
    }

private:
    void append(std::string_view piece) {
        if (buffer_.size() < kMaxLineBytes) {
            buffer_.append(piece.substr(0, kMaxLineBytes - buffer_.size()));
        }
    }
    void emit() {
        std::string line;
        line.swap(buffer_);
        callback_(line);
    }
    const std::function<void(std::string_view)>& callback_;
    std::string buffer_;
};

int pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
    (void)pid;
    return -1;
#endif
}

// True once the child has exited; it is left unreaped (a zombie) so its pid, which is
// also its group id, cannot be reused while what is left of the group is killed.
bool child_exited(pid_t pid) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        return false;
    }
    return info.si_pid == pid;
}

int reap(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return status;
}

int poll_timeout_ms(double seconds) {
    if (seconds == std::numeric_limits<double>::infinity()) return -1;
    double ms = seconds * 1000.0;
    if (ms <= 0) return 0;
    if (ms > 1e9) return 1000000000;
    return static_cast<int>(ms) + 1;
}

}  // namespace

SpawnError::SpawnError(int error_code, std::string path)
    : std::runtime_error("cannot execute '" + path + "': " + std::strerror(error_code)),
      error_code_(error_code),
      path_(std::move(path)) {}

CancelToken::CancelToken() : event_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!event_fd_) throw std::system_error(errno, std::generic_category(), "eventfd");
}

void CancelToken::cancel() noexcept {
    if (cancelled_.exchange(true, std::memory_order_acq_rel)) return;
    std::uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(event_fd_.get(), &one, sizeof one);
}

RunResult Subprocess::run(const std::vector<std::string>& argv, double timeout_s,
                          const RunOptions& options) {
    if (argv.empty()) throw std::invalid_argument("argv must not be empty");
    if (!(timeout_s > 0)) throw std::invalid_argument("timeout_s must be > 0");
    if (options.kill_grace_s < 0) throw std::invalid_argument("kill_grace_s must be >= 0");
    const double started = now_s();
    RunResult result;
    if (options.cancel && options.cancel->cancelled()) {
        result.cancelled = true;
        return result;
    }

    const std::string path = resolve_executable(argv[0], options);
    std::vector<char*> child_argv;
    for (const auto& arg : argv) child_argv.push_back(const_cast<char*>(arg.c_str()));
    child_argv.push_back(nullptr);
    std::vector<std::string> env_storage;
    std::vector<char*> child_env;
    if (options.env) {
        for (const auto& [key, value] : *options.env) env_storage.push_back(key + "=" + value);
        for (auto& entry : env_storage) child_env.push_back(entry.data());
        child_env.push_back(nullptr);
    }

    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw SpawnError(errno, argv[0]);
    Fd out_read(out_pipe[0]), out_write(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw SpawnError(errno, argv[0]);
    Fd err_read(err_pipe[0]), err_write(err_pipe[1]);
    Fd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!dev_null) throw SpawnError(errno, "/dev/null");

    ChildPlan plan;
    plan.path = path.c_str();
    plan.argv = child_argv.data();
    plan.envp = options.env ? child_env.data() : environ;
    plan.cwd = options.cwd ? options.cwd->c_str() : nullptr;
    plan.stdin_fd = dev_null.get();
    plan.stdout_fd = out_write.get();
    plan.stderr_fd = err_write.get();
    plan.parent_pid = ::getpid();
    const pid_t pid = spawn_child(plan);
    out_write.reset();
    err_write.reset();
    dev_null.reset();

    ::fcntl(out_read.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(err_read.get(), F_SETFL, O_NONBLOCK);
    Fd pidfd(pidfd_open(pid));
    CappedBuffer out(result.stdout_bytes, options.max_output_bytes);
    CappedBuffer err(result.stderr_bytes, options.max_output_bytes);
    std::optional<LineSplitter> lines;
    if (options.on_stdout_line) lines.emplace(options.on_stdout_line);

    const double deadline = started + timeout_s;
    const double never = std::numeric_limits<double>::infinity();
    double kill_at = never;  // SIGKILL time once SIGTERM was sent
    bool terminating = false;
    bool exited = false;
    double exited_at = 0;
    int status = 0;
    bool out_open = true, err_open = true;
    bool watch_cancel = static_cast<bool>(options.cancel);
    std::vector<char> chunk(kReadChunk);

    auto begin_termination = [&] {
        signal_group(pid, SIGTERM);
        terminating = true;
        kill_at = now_s() + options.kill_grace_s;
        watch_cancel = false;  // stays readable once cancelled; it has done its job
    };

    try {
        while (true) {
            double now = now_s();
            if (!exited) {
                if (!terminating && now >= deadline) {
                    result.timed_out = true;
                    begin_termination();
                } else if (!terminating && options.cancel && options.cancel->cancelled()) {
                    result.cancelled = true;
                    begin_termination();
                }
                if (terminating && now >= kill_at) {
                    signal_group(pid, SIGKILL);
                    kill_at = never;
                }
                if (child_exited(pid)) {
                    signal_group(pid, SIGKILL);  // whatever is left of the group
                    status = reap(pid);
                    exited = true;
                    exited_at = now_s();
                }
            }
            if (exited && ((!out_open && !err_open) || now >= exited_at + kPostExitDrainS)) break;

            double wake = exited ? exited_at + kPostExitDrainS : (terminating ? kill_at : deadline);
            double wait_s = wake == never ? never : std::max(0.0, wake - now);
            if (!exited && pidfd.get() < 0) wait_s = std::min(wait_s, 0.01);

            pollfd fds[4];
            nfds_t count = 0;
            int out_index = -1, err_index = -1;
            if (out_open) {
                out_index = static_cast<int>(count);
                fds[count++] = pollfd{out_read.get(), POLLIN, 0};
            }
            if (err_open) {
                err_index = static_cast<int>(count);
                fds[count++] = pollfd{err_read.get(), POLLIN, 0};
            }
            if (!exited && pidfd.get() >= 0) fds[count++] = pollfd{pidfd.get(), POLLIN, 0};
            if (!exited && watch_cancel) {
                fds[count++] = pollfd{options.cancel->wait_fd(), POLLIN, 0};
            }
            int ready = ::poll(fds, count, poll_timeout_ms(wait_s));
            if (ready < 0) {
                if (errno == EINTR) continue;
                throw std::system_error(errno, std::generic_category(), "poll");
            }
            auto drain = [&](int index, Fd& fd, bool& open, CappedBuffer& sink, bool is_stdout) {
                if (index < 0 || fds[index].revents == 0) return;
                ssize_t got = ::read(fd.get(), chunk.data(), chunk.size());
                if (got < 0) {
                    if (errno == EAGAIN || errno == EINTR) return;
                    open = false;
                    return;
                }
                if (got == 0) {
                    open = false;
                    return;
                }
                sink.add(chunk.data(), static_cast<std::size_t>(got));
                if (is_stdout && lines) lines->feed(chunk.data(), static_cast<std::size_t>(got));
            };
            drain(out_index, out_read, out_open, out, true);
            drain(err_index, err_read, err_open, err, false);
        }
        if (lines) lines->finish();
    } catch (...) {
        // A failing callback: nothing may outlive the run.
        if (!exited) {
            signal_group(pid, SIGKILL);
            reap(pid);
        }
        throw;
    }

    if (WIFSIGNALED(status)) {
        result.signal = WTERMSIG(status);
        result.exit_code = -result.signal;
    } else {
        result.exit_code = WEXITSTATUS(status);
    }
    result.truncated = out.truncated || err.truncated;
    result.duration_s = now_s() - started;
    return result;
}

}  // namespace heidi
