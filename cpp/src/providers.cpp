#include "heidi/providers.hpp"

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

}  // namespace

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
    origin_ = scheme + "://" + host;
    path_prefix_ = path_begin == std::string::npos ? "" : base_url_.substr(path_begin);
    while (!path_prefix_.empty() && path_prefix_.back() == '/') path_prefix_.pop_back();
}

ProviderReply OpenAIProvider::complete(const ProviderRequest& request, RequestContext& context) {
    nlohmann::json body = {
        {"model", model_},
        {"messages", nlohmann::json::array({{{"role", "user"}, {"content", request.prompt}}})},
        {"max_tokens", options_.max_tokens},
        {"temperature", options_.temperature},
    };
    httplib::Headers headers{{"Accept", "application/json"}};
    if (!options_.api_key_env.empty()) {
        const char* key = std::getenv(options_.api_key_env.c_str());
        if (key != nullptr && *key != '\0') headers.emplace("Authorization", std::string("Bearer ") + key);
    }
    for (const auto& [name, value] : options_.extra_headers) headers.emplace(name, value);

    const double remaining = context.deadline() - steady_seconds();
    if (context.stopped()) return failure("cancelled");
    if (remaining <= 0) return failure("timed out", true);
    httplib::Client client(origin_);
    client.set_keep_alive(false);
    set_timeout(client, remaining);
    // The collector calls this from its watchdog at the deadline or on stop().
    context.set_abort([&client] { client.stop(); });
    httplib::Result result = client.Post(path_prefix_ + "/chat/completions", headers,
                                         body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                                         "application/json");
    context.clear_abort();

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
