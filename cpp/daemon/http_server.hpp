// The Api behind cpp-httplib. start() binds (port 0 picks a free port) and serves on a
// background thread; stop() may be called from any thread, including a signal-driven
// main loop, and is idempotent.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "api.hpp"

namespace heidid {

// Connection limits, the same in heidi serve (heidi_engine.server):
inline constexpr int kMaxConnections = 256;  // open at once; more get 503 and are closed
inline constexpr int kIdleTimeoutS = 5;      // between requests on a keep-alive connection
inline constexpr int kRequestTimeoutS = 10;  // to send a whole request (line, headers, body)
inline constexpr int kReadTimeoutS = 5;      // of silence within a request
inline constexpr int kWriteTimeoutS = 5;     // for the client to take the answer
inline constexpr int kListenBacklog = 1024;

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
    class Server;
    Api& api_;
    bool log_requests_;
    std::unique_ptr<Server> server_;
    std::mutex stop_mu_;
    std::thread thread_;
};

}  // namespace heidid
