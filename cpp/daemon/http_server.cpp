#include "http_server.hpp"

#include <httplib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>

namespace heidid {
namespace {

// Enough workers that 64 keep-alive clients are served at once (httplib holds a worker
// per connection).
constexpr std::size_t kWorkerThreads = 96;
constexpr std::size_t kKeepAliveRequests = 100000;

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

}  // namespace

HttpServer::HttpServer(Api& api, bool log_requests)
    : api_(api), log_requests_(log_requests), server_(std::make_unique<httplib::Server>()) {
    auto& svr = *server_;
    svr.new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
    svr.set_keep_alive_max_count(kKeepAliveRequests);
    // Headers and body go out in separate writes; without this, Nagle and the client's
    // delayed ACK add ~40 ms to every keep-alive answer.
    svr.set_tcp_nodelay(true);
    svr.set_payload_max_length(kMaxBodyBytes);
    svr.set_read_timeout(5, 0);
    svr.set_write_timeout(5, 0);

    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
        ApiRequest request;
        request.method = req.method;
        request.target = req.target;
        if (req.has_header("Authorization")) request.authorization = req.get_header_value("Authorization");
        request.body = req.body;
        send(api_.handle(request), res);
    };
    svr.set_pre_routing_handler([this, handler](const httplib::Request& req, httplib::Response& res) {
        bool has_length = req.has_header("Content-Length");
        bool chunked = req.has_header("Transfer-Encoding");
        bool may_have_body = req.method == "POST" || req.method == "PUT" ||
                             req.method == "PATCH" || req.method == "DELETE";
        if (may_have_body && !has_length && !chunked) {
            // httplib answers 400 to a POST without Content-Length; HTTP says such a
            // request has no body, so it is answered here before httplib tries to read one.
            handler(req, res);
            return httplib::Server::HandlerResponse::Handled;
        }
        bool announces_body =
            chunked || (has_length && req.get_header_value("Content-Length") != "0");
        if (!may_have_body && announces_body) {
            // httplib does not read bodies of GET/HEAD/OPTIONS. No such route takes one, so
            // the Api sees a stand-in body (it answers 404/405/401 or "takes no body") and
            // the connection closes, since the real body is still unread.
            std::uint64_t length = std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10);
            ApiResponse response = length > kMaxBodyBytes
                ? error_response(413, library_error_text(413))
                : api_.handle(ApiRequest{req.method, req.target,
                                         req.has_header("Authorization")
                                             ? std::optional<std::string>(req.get_header_value("Authorization"))
                                             : std::nullopt,
                                         "unread body"});
            send(response, res);
            res.set_header("Connection", "close");
            return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });
    // Every path and method reaches the Api, which routes by the shared route table.
    const std::string any = ".*";
    svr.Get(any, handler);
    svr.Post(any, handler);
    svr.Put(any, handler);
    svr.Patch(any, handler);
    svr.Delete(any, handler);
    svr.Options(any, handler);
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
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    return bound;
}

void HttpServer::stop() {
    std::lock_guard lock(stop_mu_);
    server_->stop();
    if (thread_.joinable()) thread_.join();
}

}  // namespace heidid
