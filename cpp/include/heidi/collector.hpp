// AsyncCollector: runs one provider request per prompt on a bounded pool of native
// threads, with retries (exponential backoff with seeded jitter, Retry-After honoured
// up to a cap) on retryable failures, a per-request timeout, and a sticky stop().
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "heidi/providers.hpp"

namespace heidi {

struct Completion {
    bool ok = false;
    std::string text;
    std::string error;      // empty when ok
    int attempts = 0;
    double latency_ms = 0;  // first attempt start to final result, backoff included
    std::int64_t prompt_tokens = 0;
    std::int64_t completion_tokens = 0;
};

struct CollectorOptions {
    int concurrency = 16;
    int retries = 3;               // retries after the first attempt
    double timeout_s = 60.0;       // per attempt; overrides the provider's
    double backoff_base_s = 0.5;   // delay before retry k: base * 2^(k-1), capped, jittered
    double backoff_max_s = 30.0;
    double retry_after_max_s = 60.0;
    std::uint64_t seed = 0;        // jitter
    double rpm = 0;                // requests per minute, 0 = no limit
    double tpm = 0;                // tokens per minute, 0 = no limit
};

// Requests-per-minute and tokens-per-minute limits shared by a collector's workers
// (token buckets that may go into debt). A request's tokens are estimated from its
// prompt (4 bytes a token) and corrected by the reported usage. A 429 halves both
// rates (down to a tenth of the limit) and holds every request until its Retry-After;
// each success wins back 5% of the limit. Same rules as the Python backend.
class RateLimiter {
public:
    RateLimiter(double rpm, double tpm);
    bool active() const noexcept { return buckets_[0].limit > 0 || buckets_[1].limit > 0; }
    static std::int64_t estimate_tokens(std::string_view prompt) noexcept;
    // Waits for room; false when `stopped` turned true meanwhile.
    bool acquire(std::int64_t tokens, const std::function<bool(double)>& sleep_until);
    void settle(std::int64_t estimated, const ProviderReply& reply);
    std::map<std::string, double> rates() const;  // current rates per minute

private:
    struct Bucket {
        double limit = 0, rate = 0, capacity = 0, level = 0, updated = 0;
    };
    mutable std::mutex mutex_;
    Bucket buckets_[2];  // rpm, tpm
    double hold_until_ = 0;
};

class AsyncCollector {
public:
    AsyncCollector(std::shared_ptr<Provider> provider, CollectorOptions options);
    ~AsyncCollector();
    AsyncCollector(const AsyncCollector&) = delete;
    AsyncCollector& operator=(const AsyncCollector&) = delete;

    using ResultCallback = std::function<void(std::size_t, const Completion&)>;
    // One Completion per prompt, in prompt order. After stop(), unfinished prompts
    // end with error "cancelled". on_result(index, completion) is called, one call at
    // a time, as each prompt finishes; an exception from it stops the batch and is
    // rethrown once the workers are done.
    std::vector<Completion> generate_batch(const std::vector<std::string>& prompts,
                                           const ResultCallback& on_result = {});
    // Cancels the running batch promptly (sleeps and in-flight requests are cut
    // short) and every later one. Thread-safe.
    void stop();
    bool stopped() const noexcept { return stopped_.load(); }

    // Token usage summed over every completion this collector returned.
    std::int64_t prompt_tokens() const noexcept { return prompt_tokens_.load(); }
    std::int64_t completion_tokens() const noexcept { return completion_tokens_.load(); }
    const CollectorOptions& options() const noexcept { return options_; }
    const RateLimiter& limiter() const noexcept { return limiter_; }
    const std::shared_ptr<Provider>& provider() const noexcept { return provider_; }

    // Delay before retry `retry` (1-based) of prompt `index` when no Retry-After applies.
    double backoff_delay(std::size_t index, int retry) const noexcept;

private:
    friend class CollectorRequestContext;
    std::shared_ptr<Provider> provider_;
    CollectorOptions options_;
    RateLimiter limiter_;
    std::atomic<bool> stopped_{false};
    std::atomic<std::int64_t> prompt_tokens_{0};
    std::atomic<std::int64_t> completion_tokens_{0};
    mutable std::mutex stop_mutex_;
    mutable std::condition_variable stop_cv_;
};

}  // namespace heidi
