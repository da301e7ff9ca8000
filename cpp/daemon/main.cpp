// heidid: serves the Core over HTTP (SPEC §9, docs/design.md "Daemon").
// args -> config -> engine -> server -> run until SIGINT/SIGTERM -> exit code.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <heidi/config.hpp>
#include <heidi/core.hpp>
#include <heidi/errors.hpp>
#include <heidi/fsutil.hpp>
#include <heidi/json.hpp>
#include <heidi/version.hpp>

#include "api.hpp"
#include "engine_runner.hpp"
#include "http_server.hpp"
#include "options.hpp"
#include "process.hpp"

namespace {

using heidid::Options;

bool is_loopback(const std::string& host) {
    return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string base_url(const std::string& host, int port) {
    std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return "http://" + shown + ":" + std::to_string(port) + "/";
}

// OUT_DIR/state/daemon.json tells `heidi` where the server is and where its token lives.
class DiscoveryFile {
public:
    DiscoveryFile(std::string path, const heidi::json::Value& content) : path_(std::move(path)) {
        heidi::fsutil::atomic_write(path_, heidi::json::dumps(content) + "\n");
    }
    ~DiscoveryFile() {
        // Only if it is still ours: a newer server may have replaced it.
        try {
            auto doc = heidi::json::Value::parse(heidi::fsutil::read_file(path_), nullptr, false);
            if (doc.is_object() && doc.value("pid", std::int64_t{0}) == ::getpid())
                ::unlink(path_.c_str());
        } catch (const std::exception&) {
        }
    }
    DiscoveryFile(const DiscoveryFile&) = delete;
    DiscoveryFile& operator=(const DiscoveryFile&) = delete;

private:
    std::string path_;
};

bool is_executable_file(const std::string& path) {
    struct stat info {};
    return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
           ::access(path.c_str(), X_OK) == 0;
}

// The interpreter stages run with when HEIDI_PYTHON is unset: python3 of the installation
// heidid belongs to (pip puts both in one scripts directory), else the interpreter it was
// built for, else python3 from PATH. A heidid started outside its virtualenv so still runs
// stages with the environment that has heidi_engine.
std::string default_python() {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        for (const char* name : {"python3", "python"}) {
            std::string beside = (self.parent_path() / name).string();
            if (is_executable_file(beside)) return beside;
        }
    }
#ifdef HEIDI_BUILD_PYTHON
    if (is_executable_file(HEIDI_BUILD_PYTHON)) return HEIDI_BUILD_PYTHON;
#endif
    return "python3";
}

heidi::Config load_config(const Options& opts) {
    heidi::Config::Overrides overrides;
    if (opts.out_dir) overrides.emplace_back("out_dir", *opts.out_dir);
    if (opts.mode) overrides.emplace_back("pipeline_mode", *opts.mode);
    heidi::Config config = heidi::Config::from_env(opts.config_file.value_or(""), overrides);
    // Absolute before daemonizing, which changes the working directory.
    config.out_dir = heidid::absolute_path(config.out_dir);
    if (config.python.empty()) config.python = default_python();
    return config;
}

int serve(const Options& opts, heidi::Config config, heidid::Daemonizer* daemon) {
    const std::string state_dir = config.out_dir + "/state";
    const std::string token_path =
        heidid::absolute_path(opts.token_file.value_or(state_dir + "/daemon.token"));
    std::optional<std::string> pid_path;
    if (opts.pid_file) pid_path = heidid::absolute_path(*opts.pid_file);
    else if (opts.daemonize) pid_path = state_dir + "/heidid.pid";

    heidid::SignalPipe signals;
    std::unique_ptr<heidid::PidFile> pid_file;
    if (pid_path) pid_file = std::make_unique<heidid::PidFile>(*pid_path);

    heidi::Core core(config);
    heidid::EngineRunner runner(core);
    const std::string token = heidid::write_token_file(token_path);
    heidid::Api api(core, config.out_dir, token, config.pipeline_mode, [&runner] { runner.wake(); });
    heidid::HttpServer http(api, opts.log_requests);
    const int port = http.start(opts.host, opts.port);
    if (!is_loopback(opts.host))
        std::fprintf(stderr,
                     "heidid: warning: listening on %s, which is not a loopback address; anyone "
                     "who can reach it and has the token can steer the run\n",
                     opts.host.c_str());

    if (opts.start) {
        try {
            core.start(config.pipeline_mode);
        } catch (const heidi::TransitionError& e) {
            std::fprintf(stderr, "heidid: not starting the run: %s\n", e.what());
        }
    }
    runner.start();

    const std::string url = base_url(opts.host, port);
    heidi::json::Value discovery = heidi::json::Value::object();
    discovery["server"] = "heidid";
    discovery["pid"] = static_cast<std::int64_t>(::getpid());
    discovery["host"] = opts.host;
    discovery["port"] = port;
    discovery["url"] = url;
    discovery["token_file"] = token_path;
    discovery["backend"] = "native";
    DiscoveryFile discovery_file(state_dir + "/daemon.json", discovery);

    // The one line that carries the token: for the user to open the dashboard. The log
    // (stderr) never does.
    const std::string ready = "heidid listening on " + url + "#token=" + token + "\n";
    if (daemon) {
        daemon->report_ready(ready);
    } else {
        std::fputs(ready.c_str(), stdout);
        std::fflush(stdout);
    }

    int signum = signals.wait();
    std::fprintf(stderr, "heidid: signal %d, shutting down\n", signum);
    runner.shutdown();
    http.stop();
    std::string failure = runner.failure();
    return failure.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    Options opts;
    try {
        opts = heidid::parse_options(std::vector<std::string>(argv + 1, argv + argc));
    } catch (const heidid::OptionsError& e) {
        std::fprintf(stderr, "heidid: %s\n%s", e.message.c_str(), heidid::usage().c_str());
        return 2;
    }
    if (opts.show_help) {
        std::fputs(heidid::usage().c_str(), stdout);
        return 0;
    }
    if (opts.show_version) {
        std::printf("heidid %s\n", heidi::version());
        return 0;
    }
    std::unique_ptr<heidid::Daemonizer> daemon;
    try {
        heidi::Config config = load_config(opts);
        if (opts.daemonize) daemon = std::make_unique<heidid::Daemonizer>(config.out_dir + "/logs/heidid.log");
        return serve(opts, std::move(config), daemon.get());
    } catch (const std::exception& e) {
        std::string message = std::string("heidid: error: ") + e.what() + "\n";
        if (daemon) daemon->report_failure(message);
        std::fputs(message.c_str(), stderr);
        return 1;
    }
}
