// The owner of a file descriptor: closes it when it goes out of scope (or on reset), so
// no path out of a function leaks one. Move-only. A close error is not seen here; where
// it matters, close the released descriptor yourself: ::close(fd.release()).
//
// A child that shares the parent's memory (the runner's clone(CLONE_VM), subprocess.cpp)
// is handed plain descriptors: it must not run the destructors of the parent's objects.
#pragma once

#include <unistd.h>

#include <utility>

namespace heidi {

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) reset(std::exchange(other.fd_, -1));
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }

    int get() const noexcept { return fd_; }
    // True when it holds a descriptor (the open call it came from succeeded).
    explicit operator bool() const noexcept { return fd_ >= 0; }
    // Gives the descriptor up without closing it.
    int release() noexcept { return std::exchange(fd_, -1); }
    // Closes the descriptor held (if any) and holds fd instead.
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

}  // namespace heidi
