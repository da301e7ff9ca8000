// heidid's command line.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace heidid {

struct Options {
    std::optional<std::string> out_dir;  // else OUT_DIR / the config default
    std::string host = "127.0.0.1";
    int port = 7779;
    bool daemonize = false;
    std::optional<std::string> pid_file;    // default with --daemonize: OUT_DIR/state/heidid.pid
    std::optional<std::string> token_file;  // default: OUT_DIR/state/daemon.token
    std::optional<std::string> mode;        // else PIPELINE_MODE
    bool start = true;
    std::optional<std::string> config_file;
    bool log_requests = false;
    bool show_help = false;
    bool show_version = false;
};

struct OptionsError {
    std::string message;
};

// Throws OptionsError with a message that lists the valid choices.
Options parse_options(const std::vector<std::string>& args);
std::string usage();

}  // namespace heidid
