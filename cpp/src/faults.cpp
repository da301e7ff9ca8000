#include "faults.hpp"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <mutex>

#include "heidi/errors.hpp"
#include "heidi/json.hpp"

namespace heidi::faults {
namespace {

struct Spec {
    std::mutex mu;
    bool loaded = false;
    std::string point;
    long long nth = 0;
    bool kill = true;
    long long hits = 0;
};

Spec& spec() {
    static Spec value;
    return value;
}

bool all_digits(std::string_view text) {
    if (text.empty() || text.size() > 18) return false;
    for (char c : text)
        if (c < '0' || c > '9') return false;
    return true;
}

bool fires(std::string_view point) {
    Spec& s = spec();
    if (point != s.point) return false;
    std::lock_guard lock(s.mu);
    return ++s.hits == s.nth;
}

[[noreturn]] void fail(const std::string& path) {
    if (spec().kill) {
        ::kill(::getpid(), SIGKILL);
        std::abort();  // not reached: SIGKILL cannot be caught
    }
    throw OsError(EIO, path);
}

}  // namespace

void load_from_env() {
    Spec& s = spec();
    std::lock_guard lock(s.mu);
    if (s.loaded) return;
    const char* value = std::getenv(kEnv);
    std::string text = value ? value : "";
    if (!text.empty()) {
        std::string_view rest(text);
        auto first = rest.find(':');
        std::string_view point = rest.substr(0, first);
        std::string_view nth = first == std::string_view::npos ? "" : rest.substr(first + 1);
        std::string_view action = "kill";
        if (auto second = nth.find(':'); second != std::string_view::npos) {
            action = nth.substr(second + 1);
            nth = nth.substr(0, second);
        }
        bool valid = !point.empty() && all_digits(nth) && std::stoll(std::string(nth)) >= 1 &&
                     (action == "kill" || action == "eio");
        if (!valid)
            throw ConfigError(std::string("invalid value for ") + kEnv + ": " +
                              json::python_repr(text) +
                              " (expected <point>:<nth>[:kill|eio], nth >= 1)");
        s.point = std::string(point);
        s.nth = std::stoll(std::string(nth));
        s.kill = action == "kill";
        detail::armed.store(true, std::memory_order_relaxed);
    }
    s.loaded = true;
}

void hit(std::string_view point, const std::string& path) {
    if (fires(point)) fail(path);
}

void torn_write(std::string_view point, int fd, std::string_view data, const std::string& path) {
    if (!fires(point)) return;
    std::string_view half = data.substr(0, data.size() / 2);
    while (!half.empty()) {
        ssize_t wrote = ::write(fd, half.data(), half.size());
        if (wrote <= 0) break;
        half.remove_prefix(static_cast<std::size_t>(wrote));
    }
    ::fsync(fd);
    fail(path);
}

}  // namespace heidi::faults
