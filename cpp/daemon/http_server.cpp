#include "http_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>
#include <stdexcept>
#include <vector>

namespace heidid {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kKeepAliveRequests = 100000;
// Chunk-size lines, trailer lines: longer ones are refused.
constexpr std::size_t kMaxFramingLine = 1024;
constexpr int kMaxTrailerLines = 64;

// Text for errors httplib answers itself, before the Api sees the request.
std::string library_error_text(int status) {
    switch (status) {
        case 413:
            return "request body too large (limit " + std::to_string(kMaxBodyBytes) + " bytes)";
        case 414:
            return "request target too long";
        case 500:
            return "internal error";
        default:
            return "bad request";
    }
}

void send(const ApiResponse& from, httplib::Response& to) {
    to.status = from.status;
    to.set_content(from.body, from.content_type.c_str());
    to.set_header("Cache-Control", "no-store");
    to.set_header("X-Content-Type-Options", "nosniff");
    for (const auto& [name, value] : from.headers) to.set_header(name.c_str(), value);
}

int millis_until(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 60 * 60 * 1000));
}

bool poll_one(int fd, short events, int timeout_ms) {
    pollfd entry{fd, events, 0};
    for (;;) {
        int n = ::poll(&entry, 1, timeout_ms);
        if (n < 0 && errno == EINTR) continue;
        return n > 0;
    }
}

std::string address_text(const sockaddr_storage& addr, int& port) {
    char text[INET6_ADDRSTRLEN] = "";
    if (addr.ss_family == AF_INET) {
        const auto& v4 = reinterpret_cast<const sockaddr_in&>(addr);
        ::inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
        port = ntohs(v4.sin_port);
    } else if (addr.ss_family == AF_INET6) {
        const auto& v6 = reinterpret_cast<const sockaddr_in6&>(addr);
        ::inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
        port = ntohs(v6.sin6_port);
    }
    return text;
}

// One client connection, read through a buffer. Every read waits at most the read
// timeout for the next byte and never past the current request's deadline, so a client
// that trickles its request (slow-loris) loses the connection when the deadline passes.
class ConnectionStream final : public httplib::Stream {
public:
    explicit ConnectionStream(int fd) : fd_(fd) {}

    // Waits up to the idle timeout for the next request to begin; false when none does,
    // the client closed, or the server is stopping.
    bool wait_for_request(const std::atomic<socket_t>& listener) {
        if (pos_ < len_) return true;
        auto deadline = Clock::now() + std::chrono::seconds(kIdleTimeoutS);
        while (listener != INVALID_SOCKET) {
            int left = millis_until(deadline);
            if (left == 0) return false;
            if (poll_one(fd_, POLLIN, std::min(left, 100))) return true;
        }
        return false;
    }

    void start_request() {
        deadline_ = Clock::now() + std::chrono::seconds(kRequestTimeoutS);
        close_after_response = false;
    }

    bool is_readable() const override {
        return pos_ < len_ || poll_one(fd_, POLLIN, read_wait_ms());
    }
    bool is_writable() const override { return poll_one(fd_, POLLOUT, kWriteTimeoutS * 1000); }

    ssize_t read(char* ptr, std::size_t size) override {
        if (pos_ == len_) {
            if (!is_readable()) return -1;
            ssize_t n;
            do n = ::recv(fd_, buffer_.data(), buffer_.size(), 0);
            while (n < 0 && errno == EINTR);
            if (n <= 0) return n;
            pos_ = 0;
            len_ = static_cast<std::size_t>(n);
        }
        std::size_t n = std::min(size, len_ - pos_);
        std::memcpy(ptr, buffer_.data() + pos_, n);
        pos_ += n;
        return static_cast<ssize_t>(n);
    }

    ssize_t write(const char* ptr, std::size_t size) override {
        if (!is_writable()) return -1;
        ssize_t n;
        do n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        return n;
    }

    void get_remote_ip_and_port(std::string& ip, int& port) const override {
        sockaddr_storage addr{};
        socklen_t len = sizeof addr;
        if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) ip = address_text(addr, port);
    }
    void get_local_ip_and_port(std::string& ip, int& port) const override {
        sockaddr_storage addr{};
        socklen_t len = sizeof addr;
        if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) ip = address_text(addr, port);
    }
    socket_t socket() const override { return fd_; }

    // Exactly n bytes, or false (the client closed or was too slow).
    bool read_exact(std::string& out, std::size_t n) {
        std::size_t start = out.size();
        out.resize(start + n);
        for (std::size_t got = 0; got < n;) {
            ssize_t r = read(out.data() + start + got, n - got);
            if (r <= 0) return false;
            got += static_cast<std::size_t>(r);
        }
        return true;
    }

    // One line without its CRLF/LF; nullopt when it is longer than max or the read fails.
    std::optional<std::string> read_line(std::size_t max) {
        std::string line;
        char c;
        while (read(&c, 1) == 1) {
            if (c == '\n') {
                if (!line.empty() && line.back() == '\r') line.pop_back();
                return line;
            }
            if (line.size() >= max) return std::nullopt;
            line.push_back(c);
        }
        return std::nullopt;
    }

    bool close_after_response = false;

private:
    int read_wait_ms() const {
        return std::min(kReadTimeoutS * 1000, millis_until(deadline_));
    }

    int fd_;
    Clock::time_point deadline_ = Clock::now();
    std::array<char, 16 * 1024> buffer_{};
    std::size_t pos_ = 0;
    std::size_t len_ = 0;
};

// The connection the current thread serves (each connection has its thread for its life).
thread_local ConnectionStream* current_stream = nullptr;

std::string lower_trimmed(std::string text) {
    auto not_space = [](unsigned char c) { return c != ' ' && c != '\t'; };
    text.erase(text.begin(), std::find_if(text.begin(), text.end(), not_space));
    text.erase(std::find_if(text.rbegin(), text.rend(), not_space).base(), text.end());
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
}

bool all_of_class(const std::string& text, std::size_t max_len, int (*accepts)(int)) {
    return !text.empty() && text.size() <= max_len &&
           std::all_of(text.begin(), text.end(), [&](unsigned char c) { return accepts(c) != 0; });
}

struct BodyOutcome {
    std::optional<ApiResponse> refusal;  // set: answer this and close the connection
    std::string body;
};

BodyOutcome refuse(int status, const std::string& message) {
    return {error_response(status, message), {}};
}

// Reads the request body (Content-Length or chunked), never more than kMaxBodyBytes:
// a larger one is refused before it is read. The same framing rules as heidi serve.
BodyOutcome read_body(const httplib::Request& req, ConnectionStream& strm) {
    bool has_length = req.has_header("Content-Length");
    bool has_encoding = req.has_header("Transfer-Encoding");
    if (has_length && has_encoding)
        return refuse(400, "both Content-Length and Transfer-Encoding given");
    BodyOutcome out;
    if (has_encoding) {
        if (lower_trimmed(req.get_header_value("Transfer-Encoding")) != "chunked")
            return refuse(400, "unsupported Transfer-Encoding (valid: chunked)");
        for (;;) {
            auto line = strm.read_line(kMaxFramingLine);
            if (!line) return refuse(400, "invalid chunked body");
            std::string size_text = lower_trimmed(line->substr(0, line->find(';')));
            if (!all_of_class(size_text, 16, isxdigit)) return refuse(400, "invalid chunk size");
            std::uint64_t size = std::stoull(size_text, nullptr, 16);
            if (size == 0) break;
            if (size > kMaxBodyBytes - out.body.size()) return refuse(413, library_error_text(413));
            if (!strm.read_exact(out.body, size)) return refuse(400, "invalid chunked body");
            auto end = strm.read_line(1);  // room for the CR of CRLF
            if (!end || !end->empty()) return refuse(400, "invalid chunked body");
        }
        for (int i = 0;; ++i) {  // trailers, up to the empty line
            auto line = strm.read_line(kMaxFramingLine);
            if (!line || i >= kMaxTrailerLines) return refuse(400, "invalid chunked body");
            if (line->empty()) break;
        }
        return out;
    }
    if (!has_length) return out;
    std::string length_text = lower_trimmed(req.get_header_value("Content-Length"));
    if (!all_of_class(length_text, 19, isdigit)) return refuse(400, "invalid Content-Length");
    std::uint64_t length = std::stoull(length_text);
    if (length > kMaxBodyBytes) return refuse(413, library_error_text(413));
    if (!strm.read_exact(out.body, length)) return refuse(408, "request timed out");
    return out;
}

// Connections get a thread each, started when none is free, up to max_threads: a slow
// client holds only its own thread. Threads stay for later connections.
class ConnectionThreads final : public httplib::TaskQueue {
public:
    explicit ConnectionThreads(std::size_t max_threads) : max_threads_(max_threads) {}

    void enqueue(std::function<void()> fn) override {
        std::lock_guard lock(mu_);
        jobs_.push_back(std::move(fn));
        if (jobs_.size() > idle_ && threads_.size() < max_threads_)
            threads_.emplace_back([this] { work(); });
        else
            cv_.notify_one();
    }

    void shutdown() override {
        {
            std::lock_guard lock(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& thread : threads_) thread.join();
    }

private:
    void work() {
        std::unique_lock lock(mu_);
        for (;;) {
            ++idle_;
            cv_.wait(lock, [this] { return !jobs_.empty() || stopping_; });
            --idle_;
            if (jobs_.empty()) return;
            auto fn = std::move(jobs_.front());
            jobs_.pop_front();
            lock.unlock();
            fn();
            lock.lock();
        }
    }

    const std::size_t max_threads_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    std::vector<std::thread> threads_;
    std::size_t idle_ = 0;
    bool stopping_ = false;
};

}  // namespace

// httplib's server with heidid's connection handling: a cap on open connections, an idle
// timeout between requests, a deadline for each request, bodies read by the pre-routing
// handler, and a full listen backlog.
class HttpServer::Server final : public httplib::Server {
public:
    void raise_backlog() {
        // httplib listens with a backlog of 5; listen() again on the bound socket sets ours.
        if (::listen(svr_sock_, kListenBacklog) != 0)
            throw std::runtime_error(std::string("cannot listen: ") + std::strerror(errno));
    }

private:
    bool process_and_close_socket(socket_t sock) override {
        struct Slot {
            std::atomic<int>& count;
            int number;
            explicit Slot(std::atomic<int>& c) : count(c), number(++c) {}
            ~Slot() { --count; }
        } slot(open_connections_);
        bool ret = false;
        if (slot.number > kMaxConnections) {
            refuse_connection(sock);
        } else {
            ConnectionStream strm(sock);
            current_stream = &strm;
            for (std::size_t left = kKeepAliveRequests; left > 0; --left) {
                if (!strm.wait_for_request(svr_sock_)) break;
                strm.start_request();
                bool closed = false;
                ret = process_request(strm, left == 1, closed, nullptr);
                if (!ret || closed || strm.close_after_response) break;
            }
            current_stream = nullptr;
        }
        ::shutdown(sock, SHUT_RDWR);
        ::close(sock);
        return ret;
    }

    static void refuse_connection(socket_t sock) {
        ApiResponse busy = error_response(
            503, "too many connections (limit " + std::to_string(kMaxConnections) + ")");
        std::string text = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                           "Content-Length: " + std::to_string(busy.body.size()) +
                           "\r\nConnection: close\r\nRetry-After: 1\r\n\r\n" + busy.body;
        if (!poll_one(sock, POLLOUT, 1000)) return;
        (void)::send(sock, text.data(), text.size(), MSG_NOSIGNAL);
        // Read (and drop) what the client already sent, briefly: closing with unread data
        // would reset the connection and could discard the answer before it is read.
        ::shutdown(sock, SHUT_WR);
        char sink[4096];
        auto until = Clock::now() + std::chrono::milliseconds(200);
        while (poll_one(sock, POLLIN, millis_until(until)) && ::recv(sock, sink, sizeof sink, 0) > 0) {
        }
    }

    std::atomic<int> open_connections_{0};
};

HttpServer::HttpServer(Api& api, bool log_requests)
    : api_(api), log_requests_(log_requests), server_(std::make_unique<Server>()) {
    auto& svr = *server_;
    // Threads beyond the connection cap only answer 503 and close.
    svr.new_task_queue = [] { return new ConnectionThreads(kMaxConnections + 16); };
    // Headers and body go out in separate writes; without this, Nagle and the client's
    // delayed ACK add ~40 ms to every keep-alive answer.
    svr.set_tcp_nodelay(true);
    svr.set_payload_max_length(kMaxBodyBytes);
    svr.set_read_timeout(kReadTimeoutS, 0);
    svr.set_write_timeout(kWriteTimeoutS, 0);

    // Every request is answered here, before httplib would read a body: the body is read
    // (bounded) from the connection, and every path and method reaches the Api, which
    // routes by the shared route table.
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        ConnectionStream* strm = current_stream;
        if (strm == nullptr) {
            send(error_response(500, "internal error"), res);
            return httplib::Server::HandlerResponse::Handled;
        }
        BodyOutcome body = read_body(req, *strm);
        if (body.refusal) {
            send(*body.refusal, res);
            res.set_header("Connection", "close");
            strm->close_after_response = true;
            return httplib::Server::HandlerResponse::Handled;
        }
        ApiRequest request;
        request.method = req.method;
        request.target = req.target;
        if (req.has_header("Authorization")) request.authorization = req.get_header_value("Authorization");
        request.body = std::move(body.body);
        send(api_.handle(request), res);
        return httplib::Server::HandlerResponse::Handled;
    });
    svr.set_error_handler(httplib::Server::HandlerWithResponse(
        [](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        ApiResponse response = error_response(res.status, library_error_text(res.status));
        res.set_content(response.body, response.content_type.c_str());
        return httplib::Server::HandlerResponse::Handled;
    }));
    svr.set_exception_handler([](const httplib::Request& req, httplib::Response& res,
                                 std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            what = e.what();
        } catch (...) {
        }
        std::fprintf(stderr, "heidid: internal error on %s %s: %s\n", req.method.c_str(),
                     req.path.c_str(), what.c_str());
        ApiResponse response = error_response(500, "internal error");
        res.status = 500;
        res.set_content(response.body, response.content_type.c_str());
    });
    if (log_requests_) {
        // Method, path and status only: headers (and so the token) are never logged.
        svr.set_logger([](const httplib::Request& req, const httplib::Response& res) {
            std::fprintf(stderr, "heidid: %s %s %s %d\n", req.remote_addr.c_str(),
                         req.method.c_str(), req.path.c_str(), res.status);
        });
    }
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::start(const std::string& host, int port) {
    int bound = port == 0 ? server_->bind_to_any_port(host) : (server_->bind_to_port(host, port) ? port : -1);
    if (bound < 0)
        throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port));
    server_->raise_backlog();
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    return bound;
}

void HttpServer::stop() {
    std::lock_guard lock(stop_mu_);
    server_->stop();
    if (thread_.joinable()) thread_.join();
}

}  // namespace heidid
