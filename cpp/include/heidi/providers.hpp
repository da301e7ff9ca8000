// Teacher providers for the AsyncCollector: a deterministic mock and an
// OpenAI-compatible chat-completions client.
#pragma once

#include <cstddef>
#include <cstdint>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace httplib {
class Client;
}

namespace heidi {

// What one attempt may look at: its deadline and whether the collector was stopped.
// Blocking work registers an abort hook, which the collector calls (from another
// thread) when the deadline passes or stop() is called.
class RequestContext {
public:
    virtual ~RequestContext() = default;
    virtual double deadline() const = 0;  // steady-clock seconds (steady_seconds())
    virtual bool stopped() const = 0;
    // Sleeps until `until` (steady seconds); false when stop() cut it short.
    virtual bool sleep_until(double until) const = 0;
    virtual void set_abort(std::function<void()> abort) = 0;
    virtual void clear_abort() = 0;
};

double steady_seconds();

struct ProviderRequest {
    std::string_view prompt;
    std::size_t index = 0;  // position in the batch
    int attempt = 1;        // 1-based
    double timeout_s = 0;   // bound on this attempt (the collector's timeout)
};

struct ProviderReply {
    bool ok = false;
    bool retryable = false;      // 429, 5xx, timeout, connection failure
    double retry_after_s = -1;   // from a Retry-After header (seconds form), -1 when none
    std::string text;
    std::string error;           // "timed out", "cancelled", "http 429: ...", ...
    std::int64_t prompt_tokens = 0;
    std::int64_t completion_tokens = 0;
};

class Provider {
public:
    virtual ~Provider() = default;
    virtual ProviderReply complete(const ProviderRequest& request, RequestContext& context) = 0;
};

// Deterministic stand-in for engine tests and benchmarks: answers after latency_ms
// with "mock answer: <prompt>", failing (retryably, "mock failure") with probability
// fail_rate. Whether an attempt fails depends only on (seed, prompt, attempt), the
// same in both backends.
class MockProvider : public Provider {
public:
    MockProvider(double latency_ms, double fail_rate, std::uint64_t seed);
    ProviderReply complete(const ProviderRequest& request, RequestContext& context) override;
    double latency_ms() const noexcept { return latency_ms_; }
    double fail_rate() const noexcept { return fail_rate_; }
    std::uint64_t seed() const noexcept { return seed_; }

private:
    double latency_ms_;
    double fail_rate_;
    std::uint64_t seed_;
};

// POST {base_url}/chat/completions with one user message; works with OpenAI, vLLM,
// llama.cpp server and Ollama. The API key is read from the environment variable
// api_key_env at each request (no header when it is unset or empty). Connections are
// kept alive and reused (a pool of clients, one per concurrent request);
// HTTPS_PROXY/HTTP_PROXY/NO_PROXY are honoured.
class OpenAIProvider : public Provider {
public:
    struct Options {
        std::string api_key_env = "OPENAI_API_KEY";
        double timeout_s = 60.0;
        int max_tokens = 512;
        double temperature = 0.0;
        std::vector<std::pair<std::string, std::string>> extra_headers;
        double top_p = 1.0;                       // sent when below 1
        std::string token_field = "max_tokens";   // or "max_completion_tokens"
        std::string system_prompt;                // a system message first, when not empty
        std::string extra_body;                   // a JSON object merged into the body last
        bool keep_alive = true;
    };
    OpenAIProvider(std::string base_url, std::string model, Options options);
    ~OpenAIProvider() override;
    ProviderReply complete(const ProviderRequest& request, RequestContext& context) override;
    const std::string& base_url() const noexcept { return base_url_; }
    const std::string& model() const noexcept { return model_; }
    const Options& options() const noexcept { return options_; }
    // The request body sent for a prompt (compact JSON).
    std::string request_body(std::string_view prompt) const;
    // TCP connections opened so far (kept-alive ones are reused, not counted again).
    std::int64_t connections_opened() const noexcept { return connections_opened_.load(); }
    void close();  // drops the idle kept-alive connections

private:
    std::unique_ptr<httplib::Client> checkout();
    void checkin(std::unique_ptr<httplib::Client> client);

    std::string base_url_;
    std::string origin_;       // scheme://host[:port]
    std::string host_;
    std::string path_prefix_;  // e.g. "/v1"
    std::string model_;
    Options options_;
    std::string proxy_host_;   // empty = direct
    int proxy_port_ = 0;
    std::string proxy_user_, proxy_password_;
    std::mutex pool_mutex_;
    std::vector<std::unique_ptr<httplib::Client>> idle_;
    std::atomic<std::int64_t> connections_opened_{0};
};

// The proxy URL the environment names for url (https_proxy/HTTPS_PROXY or
// http_proxy/HTTP_PROXY, lower case first), or "" when none or NO_PROXY covers the host.
std::string proxy_for(const std::string& url);

// Shared by both backends so mock outcomes and retry jitter match exactly.
std::uint64_t fnv1a64(std::string_view bytes) noexcept;
std::uint64_t mix64(std::uint64_t x) noexcept;                        // splitmix64 finaliser
double unit_interval(std::uint64_t a, std::uint64_t b, std::uint64_t c) noexcept;  // [0, 1)
std::int64_t count_words(std::string_view text) noexcept;  // runs of non-ASCII-space bytes

}  // namespace heidi
