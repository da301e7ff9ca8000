#include "options.hpp"

#include <algorithm>
#include <array>
#include <string_view>

namespace heidid {
namespace {

constexpr std::array<std::string_view, 7> kValueOptions = {
    "--out-dir", "--host", "--port", "--pid-file", "--token-file", "--mode", "--config"};
constexpr std::array<std::string_view, 5> kFlags = {"--daemonize", "--no-start", "--log-requests",
                                                    "--help", "--version"};

std::string valid_options() {
    std::string out;
    for (auto name : kValueOptions) {
        if (!out.empty()) out += ", ";
        out += name;
    }
    for (auto name : kFlags) out += ", " + std::string(name);
    return out;
}

int parse_port(const std::string& text) {
    bool digits = !text.empty() && text.size() <= 5 &&
                  std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
    int port = digits ? std::stoi(text) : -1;
    if (port < 0 || port > 65535)
        throw OptionsError{"invalid value for --port: '" + text +
                           "' (expected an integer 0..65535; 0 picks a free port)"};
    return port;
}

}  // namespace

std::string usage() {
    return "usage: heidid [--out-dir DIR] [--host 127.0.0.1] [--port 7779|0] [--daemonize]\n"
           "              [--pid-file FILE] [--token-file FILE] [--mode full|collect]\n"
           "              [--no-start] [--config FILE] [--log-requests] [--help] [--version]\n"
           "\n"
           "Serves the Heidi Engine run in OUT_DIR over HTTP (API, /metrics, dashboard at /).\n"
           "Starts (or resumes) the run at once unless --no-start. Every route but /healthz\n"
           "and the dashboard page needs 'Authorization: Bearer <token>'; the token is written\n"
           "to the token file (mode 0600). Port 0 picks a free port. Prints one line:\n"
           "  heidid listening on http://HOST:PORT/#token=TOKEN\n";
}

Options parse_options(const std::vector<std::string>& args) {
    Options opts;
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string name = args[i];
        std::optional<std::string> value;
        if (auto eq = name.find('='); name.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
        }
        bool takes_value =
            std::find(kValueOptions.begin(), kValueOptions.end(), name) != kValueOptions.end();
        bool is_flag = std::find(kFlags.begin(), kFlags.end(), name) != kFlags.end();
        if (!takes_value && !is_flag)
            throw OptionsError{"unknown option '" + name + "' (valid: " + valid_options() + ")"};
        if (is_flag && value) throw OptionsError{"option " + name + " takes no value"};
        if (takes_value && !value) {
            if (i + 1 >= args.size()) throw OptionsError{"option " + name + " needs a value"};
            value = args[++i];
        }
        if (name == "--out-dir") opts.out_dir = *value;
        else if (name == "--host") opts.host = *value;
        else if (name == "--port") opts.port = parse_port(*value);
        else if (name == "--pid-file") opts.pid_file = *value;
        else if (name == "--token-file") opts.token_file = *value;
        else if (name == "--config") opts.config_file = *value;
        else if (name == "--mode") {
            if (*value != "full" && *value != "collect")
                throw OptionsError{"invalid value for --mode: '" + *value + "' (valid: full, collect)"};
            opts.mode = *value;
        } else if (name == "--daemonize") opts.daemonize = true;
        else if (name == "--no-start") opts.start = false;
        else if (name == "--log-requests") opts.log_requests = true;
        else if (name == "--help") opts.show_help = true;
        else if (name == "--version") opts.show_version = true;
        if (takes_value && value->empty()) throw OptionsError{"option " + name + " needs a value"};
    }
    if (opts.host.empty()) throw OptionsError{"option --host needs a value"};
    return opts;
}

}  // namespace heidid
