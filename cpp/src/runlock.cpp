#include "runlock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "heidi/errors.hpp"
#include "heidi/fd.hpp"
#include "heidi/fsutil.hpp"

namespace heidi {
namespace {

// The pid the holder wrote into the lock file ("unknown" before it has written it).
std::string holder_pid(int fd) {
    char buffer[64];
    ssize_t got = ::pread(fd, buffer, sizeof buffer, 0);
    std::string text = got > 0 ? std::string(buffer, static_cast<std::size_t>(got)) : "";
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    bool digits = !text.empty();
    for (char c : text) digits = digits && c >= '0' && c <= '9';
    return digits ? text : "unknown";
}

// The holder writes its pid just after taking the lock: give it a moment to appear.
std::string wait_for_holder_pid(int fd) {
    std::string holder = holder_pid(fd);
    for (int attempt = 0; holder == "unknown" && attempt < 40; ++attempt) {
        ::usleep(5000);
        holder = holder_pid(fd);
    }
    return holder;
}

}  // namespace

RunLock::RunLock(const std::string& out_dir) {
    const std::string dir = out_dir + "/state";
    const std::string path = dir + "/run.lock";
    fsutil::make_dirs(dir);
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!fd) throw OsError(errno, path);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        int error = errno;
        std::string holder = error == EWOULDBLOCK ? wait_for_holder_pid(fd.get()) : "";
        if (error == EWOULDBLOCK)
            throw RunLockedError("run directory " + out_dir + " is in use by another runner (pid " +
                                 holder + ")");
        throw OsError(error, path);
    }
    std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd.get(), 0) != 0 ||
        ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
        throw OsError(errno, path);
    fd_ = std::move(fd);
}

RunLock::~RunLock() { release(); }

void RunLock::release() noexcept {
    if (!fd_) return;
    if (::ftruncate(fd_.get(), 0) != 0) {
        // Only cosmetic: a finished runner's pid stays in the file.
    }
    fd_.reset();
}

}  // namespace heidi
