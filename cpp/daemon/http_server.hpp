// The Api behind cpp-httplib. start() binds (port 0 picks a free port) and serves on a
// background thread; stop() may be called from any thread, including a signal-driven
// main loop, and is idempotent.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "api.hpp"

namespace httplib {
class Server;
}

namespace heidid {

class HttpServer {
public:
    HttpServer(Api& api, bool log_requests);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Binds and starts serving; returns the bound port. Throws std::runtime_error naming
    // the address when the bind fails.
    int start(const std::string& host, int port);
    void stop();

private:
    Api& api_;
    bool log_requests_;
    std::unique_ptr<httplib::Server> server_;
    std::mutex stop_mu_;
    std::thread thread_;
};

}  // namespace heidid
