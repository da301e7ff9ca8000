#include "heidi/providers.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace heidi {
namespace {

constexpr std::size_t kErrorBodyChars = 200;

ProviderReply failure(std::string error, bool retryable = false) {
    ProviderReply reply;
    reply.error = std::move(error);
    reply.retryable = retryable;
    return reply;
}

std::string lower(std::string text) {
    for (char& c : text) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return text;
}

std::string trim(const std::string& text) {
    std::size_t begin = text.find_first_not_of(" \t");
    if (begin == std::string::npos) return "";
    std::size_t end = text.find_last_not_of(" \t");
    return text.substr(begin, end - begin + 1);
}

// Seconds from a Retry-After header; -1 for none or the HTTP-date form.
double parse_retry_after(const std::string& value) {
    std::string text = trim(value);
    if (text.empty()) return -1;
    char* end = nullptr;
    double seconds = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || !std::isfinite(seconds) || seconds < 0) return -1;
    return seconds;
}

// Invalid UTF-8 in a body snippet is replaced, as Python's decode("utf-8", "replace") does
// for the common case of a cut multi-byte sequence: the snippet is cut at a boundary.
std::string body_snippet(const std::string& body) {
    std::size_t size = std::min(body.size(), kErrorBodyChars);
    while (size > 0 && size < body.size() &&
           (static_cast<unsigned char>(body[size]) & 0xC0) == 0x80) {
        --size;
    }
    return body.substr(0, size);
}

std::int64_t token_count(const nlohmann::json& usage, const char* key) {
    if (!usage.is_object()) return 0;
    auto it = usage.find(key);
    if (it == usage.end() || !it->is_number_integer()) return 0;
    return it->get<std::int64_t>();
}

void set_timeout(httplib::Client& client, double seconds) {
    seconds = std::max(seconds, 0.001);
    auto whole = static_cast<time_t>(seconds);
    auto micros = static_cast<time_t>((seconds - static_cast<double>(whole)) * 1e6);
    client.set_connection_timeout(whole, micros);
    client.set_read_timeout(whole, micros);
    client.set_write_timeout(whole, micros);
}

std::string env_value(const char* lower_name, const char* upper_name) {
    for (const char* name : {lower_name, upper_name}) {
        const char* value = std::getenv(name);
        if (value != nullptr && *value != '\0') return value;
    }
    return "";
}

// NO_PROXY matching as Python's urllib.request.proxy_bypass_environment does it.
bool proxy_bypassed(const std::string& host, const std::string& no_proxy) {
    if (no_proxy.empty()) return false;
    if (trim(no_proxy) == "*") return true;
    std::string name_host = lower(host);
    std::size_t start = 0;
    while (start <= no_proxy.size()) {
        std::size_t comma = no_proxy.find(',', start);
        std::string name = lower(trim(no_proxy.substr(start, comma == std::string::npos ? std::string::npos
                                                                                       : comma - start)));
        while (!name.empty() && name.front() == '.') name.erase(0, 1);
        if (!name.empty()) {
            if (name_host == name) return true;
            std::string suffix = "." + name;
            if (name_host.size() > suffix.size() &&
                name_host.compare(name_host.size() - suffix.size(), suffix.size(), suffix) == 0) {
                return true;
            }
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return false;
}

std::string percent_decode(const std::string& text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size()) {
            out += static_cast<char>(std::strtol(text.substr(i + 1, 2).c_str(), nullptr, 16));
            i += 2;
        } else {
            out += text[i];
        }
    }
    return out;
}

}  // namespace

std::string proxy_for(const std::string& url) {
    std::size_t scheme_end = url.find("://");
    if (scheme_end == std::string::npos) return "";
    std::string scheme = lower(url.substr(0, scheme_end));
    std::string proxy = scheme == "https" ? env_value("https_proxy", "HTTPS_PROXY")
                                          : env_value("http_proxy", "HTTP_PROXY");
    if (proxy.empty()) return "";
    std::size_t host_begin = scheme_end + 3;
    std::size_t host_end = url.find_first_of("/?#", host_begin);
    std::string authority = url.substr(host_begin, host_end == std::string::npos ? std::string::npos
                                                                                 : host_end - host_begin);
    std::size_t at = authority.rfind('@');
    if (at != std::string::npos) authority = authority.substr(at + 1);
    std::string host = authority.substr(0, authority.rfind(':') == std::string::npos ||
                                                   authority.back() == ']'
                                               ? std::string::npos
                                               : authority.rfind(':'));
    if (proxy_bypassed(host, env_value("no_proxy", "NO_PROXY")) ||
        proxy_bypassed(authority, env_value("no_proxy", "NO_PROXY"))) {
        return "";
    }
    return proxy.find("://") == std::string::npos ? "http://" + proxy : proxy;
}

double steady_seconds() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

std::uint64_t fnv1a64(std::string_view bytes) noexcept {
    std::uint64_t h = 0xCBF29CE484222325ULL;
    for (unsigned char byte : bytes) {
        h ^= byte;
        h *= 0x100000001B3ULL;
    }
    return h;
}

std::uint64_t mix64(std::uint64_t x) noexcept {
    std::uint64_t z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

double unit_interval(std::uint64_t a, std::uint64_t b, std::uint64_t c) noexcept {
    std::uint64_t h = mix64(mix64(mix64(a) ^ b) ^ c);
    return static_cast<double>(h >> 11) / static_cast<double>(std::uint64_t{1} << 53);
}

std::int64_t count_words(std::string_view text) noexcept {
    std::int64_t words = 0;
    bool in_word = false;
    for (char c : text) {
        bool space = c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
        if (!space && !in_word) ++words;
        in_word = !space;
    }
    return words;
}

MockProvider::MockProvider(double latency_ms, double fail_rate, std::uint64_t seed)
    : latency_ms_(latency_ms), fail_rate_(fail_rate), seed_(seed) {
    if (!(latency_ms >= 0)) throw std::invalid_argument("latency_ms must be >= 0");
    if (!(fail_rate >= 0.0 && fail_rate <= 1.0)) {
        throw std::invalid_argument("fail_rate must be in [0, 1]");
    }
}

ProviderReply MockProvider::complete(const ProviderRequest& request, RequestContext& context) {
    double ready_at = steady_seconds() + latency_ms_ / 1000.0;
    if (ready_at > context.deadline()) {
        if (!context.sleep_until(context.deadline())) return failure("cancelled");
        return failure("timed out", true);
    }
    if (!context.sleep_until(ready_at)) return failure("cancelled");
    if (unit_interval(seed_, fnv1a64(request.prompt), static_cast<std::uint64_t>(request.attempt)) <
        fail_rate_) {
        return failure("mock failure", true);
    }
    ProviderReply reply;
    reply.ok = true;
    reply.text = "mock answer: " + std::string(request.prompt);
    reply.prompt_tokens = count_words(request.prompt);
    reply.completion_tokens = count_words(reply.text);
    return reply;
}

OpenAIProvider::OpenAIProvider(std::string base_url, std::string model, Options options)
    : base_url_(std::move(base_url)), model_(std::move(model)), options_(std::move(options)) {
    std::size_t scheme_end = base_url_.find("://");
    std::string scheme = scheme_end == std::string::npos ? "" : base_url_.substr(0, scheme_end);
    std::size_t host_begin = scheme_end == std::string::npos ? 0 : scheme_end + 3;
    std::size_t path_begin = base_url_.find('/', host_begin);
    std::string host = base_url_.substr(host_begin, path_begin == std::string::npos
                                                        ? std::string::npos
                                                        : path_begin - host_begin);
    if ((scheme != "http" && scheme != "https") || host.empty()) {
        throw std::invalid_argument("base_url must be an http:// or https:// URL, got '" +
                                    base_url_ + "'");
    }
    if (model_.empty()) throw std::invalid_argument("model must not be empty");
    if (!(options_.timeout_s > 0)) throw std::invalid_argument("timeout_s must be > 0");
    if (options_.token_field != "max_tokens" && options_.token_field != "max_completion_tokens") {
        throw std::invalid_argument("token_field must be max_tokens or max_completion_tokens");
    }
    if (!(options_.top_p > 0 && options_.top_p <= 1)) {
        throw std::invalid_argument("top_p must be > 0 and <= 1");
    }
    if (!options_.extra_body.empty()) {
        nlohmann::json extra = nlohmann::json::parse(options_.extra_body, nullptr, false);
        if (extra.is_discarded() || !extra.is_object()) {
            throw std::invalid_argument("extra_body must be a JSON object");
        }
    }
    std::size_t at = host.rfind('@');
    host_ = at == std::string::npos ? host : host.substr(at + 1);
    std::string proxy = proxy_for(base_url_);
    if (!proxy.empty()) {
        std::size_t proxy_scheme_end = proxy.find("://");
        std::string rest = proxy.substr(proxy_scheme_end + 3);
        rest = rest.substr(0, rest.find('/'));
        if (proxy.compare(0, proxy_scheme_end, "http") != 0 || proxy_scheme_end != 4 || rest.empty()) {
            throw std::invalid_argument("proxy for " + base_url_ + " must be an http:// URL, got '" +
                                        proxy + "'");
        }
        std::size_t proxy_at = rest.rfind('@');
        if (proxy_at != std::string::npos) {
            std::string credentials = rest.substr(0, proxy_at);
            std::size_t colon = credentials.find(':');
            proxy_user_ = percent_decode(credentials.substr(0, colon));
            proxy_password_ = colon == std::string::npos ? "" : percent_decode(credentials.substr(colon + 1));
            rest = rest.substr(proxy_at + 1);
        }
        std::size_t colon = rest.rfind(':');
        proxy_host_ = colon == std::string::npos ? rest : rest.substr(0, colon);
        proxy_port_ = colon == std::string::npos ? 80 : std::atoi(rest.c_str() + colon + 1);
    }
    origin_ = scheme + "://" + host_;
    path_prefix_ = path_begin == std::string::npos ? "" : base_url_.substr(path_begin);
    while (!path_prefix_.empty() && path_prefix_.back() == '/') path_prefix_.pop_back();
}

OpenAIProvider::~OpenAIProvider() = default;

std::string OpenAIProvider::request_body(std::string_view prompt) const {
    nlohmann::json messages = nlohmann::json::array();
    if (!options_.system_prompt.empty()) {
        messages.push_back({{"role", "system"}, {"content", options_.system_prompt}});
    }
    messages.push_back({{"role", "user"}, {"content", prompt}});
    nlohmann::json body = nlohmann::json::object();
    body["model"] = model_;
    body["messages"] = std::move(messages);
    body[options_.token_field] = options_.max_tokens;
    body["temperature"] = options_.temperature;
    if (options_.top_p < 1) body["top_p"] = options_.top_p;
    if (!options_.extra_body.empty()) {
        const nlohmann::json extra = nlohmann::json::parse(options_.extra_body);
        for (auto it = extra.begin(); it != extra.end(); ++it) body[it.key()] = it.value();
    }
    return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::unique_ptr<httplib::Client> OpenAIProvider::checkout() {
    {
        std::lock_guard lock(pool_mutex_);
        if (!idle_.empty()) {
            auto client = std::move(idle_.back());
            idle_.pop_back();
            return client;
        }
    }
    auto client = std::make_unique<httplib::Client>(origin_);
    client->set_keep_alive(options_.keep_alive);
    client->set_socket_options([this](int sock) {
        connections_opened_.fetch_add(1);
        int one = 1;
        ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    });
    if (!proxy_host_.empty()) {
        client->set_proxy(proxy_host_, proxy_port_);
        if (!proxy_user_.empty()) client->set_proxy_basic_auth(proxy_user_, proxy_password_);
    }
    return client;
}

void OpenAIProvider::checkin(std::unique_ptr<httplib::Client> client) {
    if (!options_.keep_alive) return;
    std::lock_guard lock(pool_mutex_);
    idle_.push_back(std::move(client));
}

void OpenAIProvider::close() {
    std::vector<std::unique_ptr<httplib::Client>> idle;
    {
        std::lock_guard lock(pool_mutex_);
        idle.swap(idle_);
    }
}

ProviderReply OpenAIProvider::complete(const ProviderRequest& request, RequestContext& context) {
    const std::string body = request_body(request.prompt);
    httplib::Headers headers{{"Accept", "application/json"}};
    if (!options_.api_key_env.empty()) {
        const char* key = std::getenv(options_.api_key_env.c_str());
        if (key != nullptr && *key != '\0') headers.emplace("Authorization", std::string("Bearer ") + key);
    }
    for (const auto& [name, value] : options_.extra_headers) headers.emplace(name, value);

    const double remaining = context.deadline() - steady_seconds();
    if (context.stopped()) return failure("cancelled");
    if (remaining <= 0) return failure("timed out", true);
    std::unique_ptr<httplib::Client> client = checkout();
    set_timeout(*client, remaining);
    // The collector calls this from its watchdog at the deadline or on stop().
    httplib::Client* raw = client.get();
    context.set_abort([raw] { raw->stop(); });
    httplib::Result result = client->Post(path_prefix_ + "/chat/completions", headers, body,
                                          "application/json");
    context.clear_abort();
    if (result && !context.stopped()) {
        bool closing = lower(result.value().get_header_value("Connection")) == "close";
        if (!closing) checkin(std::move(client));
    }

    if (context.stopped()) return failure("cancelled");
    if (!result) {
        if (steady_seconds() >= context.deadline()) return failure("timed out", true);
        return failure("connection error: " + httplib::to_string(result.error()), true);
    }
    const httplib::Response& response = result.value();
    if (response.status != 200) {
        ProviderReply reply = failure("http " + std::to_string(response.status) + ": " +
                                          body_snippet(response.body),
                                      response.status == 429 || response.status >= 500);
        if (response.has_header("Retry-After")) {
            reply.retry_after_s = parse_retry_after(response.get_header_value("Retry-After"));
        }
        return reply;
    }
    std::string content_type = lower(trim(response.get_header_value("Content-Type")));
    content_type = trim(content_type.substr(0, content_type.find(';')));
    bool json_type = content_type == "application/json" ||
                     (content_type.size() >= 5 &&
                      content_type.compare(content_type.size() - 5, 5, "+json") == 0);
    if (!json_type) return failure("invalid response: content type '" + content_type + "'");
    nlohmann::json document = nlohmann::json::parse(response.body, nullptr, false);
    if (document.is_discarded()) return failure("invalid response: not JSON");
    const std::string no_content = "invalid response: no choices[0].message.content string";
    try {
        const nlohmann::json& content = document.at("choices").at(0).at("message").at("content");
        if (!content.is_string()) return failure(no_content);
        ProviderReply reply;
        reply.ok = true;
        reply.text = content.get<std::string>();
        auto usage = document.find("usage");
        if (usage != document.end()) {
            reply.prompt_tokens = token_count(*usage, "prompt_tokens");
            reply.completion_tokens = token_count(*usage, "completion_tokens");
        }
        return reply;
    } catch (const nlohmann::json::exception&) {
        return failure(no_content);
    }
}

}  // namespace heidi
