#include "heidi/fsutil.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "heidi/errors.hpp"
#include "heidi/fd.hpp"
#include "faults.hpp"

namespace heidi::fsutil {

namespace {

std::atomic<unsigned long long> temp_counter{0};

// getpid() is a system call; the pid is cached and forgotten in a forked child.
std::atomic<pid_t> cached_pid{0};

pid_t current_pid() {
    pid_t pid = cached_pid.load(std::memory_order_relaxed);
    if (pid != 0) return pid;
    static const bool registered = [] {
        ::pthread_atfork(nullptr, nullptr, [] { cached_pid.store(0, std::memory_order_relaxed); });
        return true;
    }();
    (void)registered;
    pid = ::getpid();
    cached_pid.store(pid, std::memory_order_relaxed);
    return pid;
}

}  // namespace

void make_dirs(const std::string& path) {
    if (path.empty() || is_dir(path)) return;
    const std::string parent = parent_dir(path);
    if (parent != path && parent != "." && parent != "/") make_dirs(parent);
    if (::mkdir(path.c_str(), 0777) != 0 && errno != EEXIST) throw OsError(errno, path);
}

std::string parent_dir(const std::string& path) {
    std::string trimmed = path;
    while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
    const auto slash = trimmed.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return trimmed.substr(0, slash);
}

std::string base_name(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool exists(const std::string& path) noexcept {
    struct stat info {};
    return ::stat(path.c_str(), &info) == 0;
}

bool is_dir(const std::string& path) noexcept {
    struct stat info {};
    return ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

std::string read_file(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw OsError(errno, path);
    std::string data;
    struct stat info {};
    if (::fstat(fd.get(), &info) == 0 && info.st_size > 0) data.reserve(static_cast<std::size_t>(info.st_size));
    char buffer[1 << 16];
    for (;;) {
        const ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw OsError(errno, path);
        }
        if (got == 0) break;
        data.append(buffer, static_cast<std::size_t>(got));
    }
    return data;
}

void write_all(int fd, std::string_view data, const std::string& path_for_errors) {
    while (!data.empty()) {
        const ssize_t wrote = ::write(fd, data.data(), data.size());
        if (wrote < 0) {
            if (errno == EINTR) continue;
            throw OsError(errno, path_for_errors);
        }
        data.remove_prefix(static_cast<std::size_t>(wrote));
    }
}

void fsync_dir(const std::string& dir) {
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) throw OsError(errno, dir);
    if (::fsync(fd.get()) != 0) throw OsError(errno, dir);
}

namespace {

// The atomic replace of `target` through `temp`, both names in directory dir_fd (or
// paths, with AT_FDCWD); `shown` turns a name into the path errors report.
template <typename Shown>
void replace_at(int dir_fd, const std::string& temp, const std::string& target, std::string_view data, bool fsync,
                Shown&& shown) {
    try {
        Fd fd(::openat(dir_fd, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
        if (!fd) throw OsError(errno, shown(temp));
        if (faults::armed()) faults::torn_write("replace_torn", fd.get(), data, shown(temp));
        try {
            write_all(fd.get(), data, temp);
        } catch (const OsError& error) {
            throw OsError(error.error_code(), shown(temp));
        }
        if (fsync && ::fsync(fd.get()) != 0) throw OsError(errno, shown(temp));
        if (::close(fd.release()) != 0) throw OsError(errno, shown(temp));
        if (faults::armed()) faults::hit("replace_written", shown(temp));
        if (::renameat(dir_fd, temp.c_str(), dir_fd, target.c_str()) != 0) throw OsError(errno, shown(target));
        if (faults::armed()) faults::hit("replace_renamed", shown(target));
    } catch (...) {
        ::unlinkat(dir_fd, temp.c_str(), 0);
        throw;
    }
}

std::string temp_name(std::string_view name) {
    std::string temp(name);
    temp.append(".").append(std::to_string(current_pid())).append(".").append(std::to_string(++temp_counter)).append(".tmp");
    return temp;
}

}  // namespace

void atomic_write(const std::string& path, std::string_view data, bool fsync) {
    const std::string dir = parent_dir(path);
    const std::string temp = (dir == "." && path.find('/') == std::string::npos ? std::string() : dir + "/") +
                             temp_name(base_name(path));
    replace_at(AT_FDCWD, temp, path, data, fsync, [](const std::string& name) -> const std::string& { return name; });
    if (fsync) fsync_dir(dir);
}

void atomic_write_at(int dir_fd, const std::string& dir, const std::string& name, std::string_view data, bool fsync) {
    const std::string temp = temp_name(name);
    replace_at(dir_fd, temp, name, data, fsync, [&dir](const std::string& file) { return dir + "/" + file; });
    if (fsync && ::fsync(dir_fd) != 0) throw OsError(errno, dir);
}

}  // namespace heidi::fsutil
