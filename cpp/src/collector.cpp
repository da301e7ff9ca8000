#include "heidi/collector.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <thread>

namespace heidi {
namespace {

// How often the watchdog looks for in-flight requests past their deadline.
constexpr auto kWatchdogPeriod = std::chrono::milliseconds(5);

std::chrono::steady_clock::time_point to_time_point(double steady_s) {
    return std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::duration<double>(steady_s)));
}

// One worker's in-flight request, as the watchdog sees it.
struct WorkerSlot {
    std::mutex mutex;
    std::function<void()> abort;
    double deadline = 0;
    bool aborted = false;
};

}  // namespace

class CollectorRequestContext final : public RequestContext {
public:
    CollectorRequestContext(AsyncCollector& collector, WorkerSlot& slot, double deadline)
        : collector_(collector), slot_(slot), deadline_(deadline) {}

    double deadline() const override { return deadline_; }
    bool stopped() const override { return collector_.stopped(); }
    bool sleep_until(double until) const override {
        std::unique_lock lock(collector_.stop_mutex_);
        return !collector_.stop_cv_.wait_until(lock, to_time_point(until),
                                               [this] { return collector_.stopped(); });
    }
    void set_abort(std::function<void()> abort) override {
        std::lock_guard lock(slot_.mutex);
        slot_.abort = std::move(abort);
        slot_.deadline = deadline_;
        slot_.aborted = false;
    }
    void clear_abort() override {
        std::lock_guard lock(slot_.mutex);
        slot_.abort = nullptr;
    }

private:
    AsyncCollector& collector_;
    WorkerSlot& slot_;
    double deadline_;
};

RateLimiter::RateLimiter(double rpm, double tpm) {
    const double now = steady_seconds();
    const double limits[2] = {rpm, tpm};
    for (int i = 0; i < 2; ++i) {
        Bucket& bucket = buckets_[i];
        bucket.limit = limits[i] > 0 ? limits[i] / 60.0 : 0;
        bucket.rate = bucket.limit;
        bucket.capacity = std::max(1.0, bucket.limit);
        bucket.level = bucket.capacity;
        bucket.updated = now;
    }
}

std::int64_t RateLimiter::estimate_tokens(std::string_view prompt) noexcept {
    return std::max<std::int64_t>(1, static_cast<std::int64_t>(prompt.size() / 4));
}

bool RateLimiter::acquire(std::int64_t tokens, const std::function<bool(double)>& sleep_until) {
    while (true) {
        double wait = 0;
        {
            std::lock_guard lock(mutex_);
            const double now = steady_seconds();
            wait = std::max(0.0, hold_until_ - now);
            for (Bucket& bucket : buckets_) {
                if (bucket.limit <= 0) continue;
                bucket.level = std::min(bucket.capacity, bucket.level + (now - bucket.updated) * bucket.rate);
                bucket.updated = now;
                if (bucket.level <= 0) wait = std::max(wait, -bucket.level / bucket.rate + 1e-3);
            }
            if (wait <= 0) {
                if (buckets_[0].limit > 0) buckets_[0].level -= 1;
                if (buckets_[1].limit > 0) buckets_[1].level -= static_cast<double>(tokens);
                return true;
            }
        }
        if (!sleep_until(steady_seconds() + std::min(wait, 1.0))) return false;
    }
}

void RateLimiter::settle(std::int64_t estimated, const ProviderReply& reply) {
    std::lock_guard lock(mutex_);
    Bucket& tpm = buckets_[1];
    if (tpm.limit > 0 && reply.ok) {
        tpm.level -= static_cast<double>(reply.prompt_tokens + reply.completion_tokens - estimated);
    }
    const bool throttled = reply.error.rfind("http 429", 0) == 0;
    if (throttled && reply.retry_after_s > 0) {
        hold_until_ = std::max(hold_until_, steady_seconds() + reply.retry_after_s);
    }
    for (Bucket& bucket : buckets_) {
        if (bucket.limit <= 0) continue;
        if (throttled) bucket.rate = std::max(bucket.limit / 10, bucket.rate / 2);
        else if (reply.ok) bucket.rate = std::min(bucket.limit, bucket.rate + bucket.limit / 20);
    }
}

std::map<std::string, double> RateLimiter::rates() const {
    std::lock_guard lock(mutex_);
    std::map<std::string, double> out;
    if (buckets_[0].limit > 0) out["rpm"] = buckets_[0].rate * 60;
    if (buckets_[1].limit > 0) out["tpm"] = buckets_[1].rate * 60;
    return out;
}

AsyncCollector::AsyncCollector(std::shared_ptr<Provider> provider, CollectorOptions options)
    : provider_(std::move(provider)), options_(options), limiter_(options.rpm, options.tpm) {
    if (!provider_) throw std::invalid_argument("provider must not be None");
    if (options_.concurrency < 1) throw std::invalid_argument("concurrency must be >= 1");
    if (options_.retries < 0) throw std::invalid_argument("retries must be >= 0");
    if (!(options_.timeout_s > 0)) throw std::invalid_argument("timeout_s must be > 0");
    if (options_.backoff_base_s < 0 || options_.backoff_max_s < 0 ||
        options_.retry_after_max_s < 0) {
        throw std::invalid_argument("backoff delays must be >= 0");
    }
    if (!(options_.rpm >= 0 && options_.tpm >= 0)) throw std::invalid_argument("rpm and tpm must be >= 0");
}

AsyncCollector::~AsyncCollector() = default;

void AsyncCollector::stop() {
    stopped_.store(true);
    std::lock_guard lock(stop_mutex_);
    stop_cv_.notify_all();
}

double AsyncCollector::backoff_delay(std::size_t index, int retry) const noexcept {
    double base = std::min(options_.backoff_max_s,
                           options_.backoff_base_s * std::pow(2.0, static_cast<double>(retry - 1)));
    return base * (0.5 + 0.5 * unit_interval(options_.seed, index, static_cast<std::uint64_t>(retry)));
}

std::vector<Completion> AsyncCollector::generate_batch(const std::vector<std::string>& prompts,
                                                      const ResultCallback& on_result) {
    std::vector<Completion> results(prompts.size());
    const std::size_t worker_count =
        std::min(static_cast<std::size_t>(options_.concurrency), prompts.size());
    std::vector<WorkerSlot> slots(worker_count);
    std::atomic<std::size_t> next_index{0};

    auto collect_one = [&](std::size_t index, WorkerSlot& slot) {
        const double started = steady_seconds();
        Completion& completion = results[index];
        ProviderReply reply;
        reply.error = "cancelled";
        while (!stopped()) {
            ++completion.attempts;
            const std::int64_t estimated = RateLimiter::estimate_tokens(prompts[index]);
            if (limiter_.active()) {
                CollectorRequestContext waiting(*this, slot, 0);
                if (!limiter_.acquire(estimated, [&](double until) { return waiting.sleep_until(until); })) break;
            }
            CollectorRequestContext context(*this, slot, steady_seconds() + options_.timeout_s);
            ProviderRequest request{prompts[index], index, completion.attempts, options_.timeout_s};
            try {
                reply = provider_->complete(request, context);
            } catch (const std::exception& error) {
                reply = ProviderReply{};
                reply.error = std::string("provider error: ") + error.what();
            }
            if (limiter_.active()) limiter_.settle(estimated, reply);
            if (reply.ok || !reply.retryable || completion.attempts > options_.retries) break;
            double delay = reply.retry_after_s >= 0
                               ? std::min(reply.retry_after_s, options_.retry_after_max_s)
                               : backoff_delay(index, completion.attempts);
            if (!context.sleep_until(steady_seconds() + delay)) break;
        }
        if (stopped() && !reply.ok) {
            reply = ProviderReply{};
            reply.error = "cancelled";
        }
        completion.ok = reply.ok;
        if (reply.ok) {
            completion.text = std::move(reply.text);
            completion.prompt_tokens = reply.prompt_tokens;
            completion.completion_tokens = reply.completion_tokens;
        } else {
            completion.error = std::move(reply.error);
        }
        completion.latency_ms = (steady_seconds() - started) * 1000.0;
    };

    std::atomic<bool> batch_done{false};
    // Cuts blocked requests short at their deadline or on stop().
    std::thread watchdog([&] {
        while (!batch_done.load()) {
            {
                std::unique_lock lock(stop_mutex_);
                stop_cv_.wait_for(lock, kWatchdogPeriod);
            }
            const double now = steady_seconds();
            const bool stop_now = stopped();
            for (WorkerSlot& slot : slots) {
                std::lock_guard lock(slot.mutex);
                if (slot.abort && !slot.aborted && (stop_now || now >= slot.deadline)) {
                    slot.aborted = true;
                    slot.abort();
                }
            }
        }
    });

    std::mutex callback_mutex;
    std::exception_ptr callback_error;
    std::vector<std::thread> workers;
    workers.reserve(worker_count);
    for (std::size_t w = 0; w < worker_count; ++w) {
        workers.emplace_back([&, w] {
            while (true) {
                std::size_t index = next_index.fetch_add(1);
                if (index >= prompts.size()) return;
                collect_one(index, slots[w]);
                if (!on_result) continue;
                std::lock_guard lock(callback_mutex);
                if (callback_error) continue;
                try {
                    on_result(index, results[index]);
                } catch (...) {
                    callback_error = std::current_exception();
                    stop();
                }
            }
        });
    }
    for (auto& worker : workers) worker.join();
    batch_done.store(true);
    watchdog.join();
    if (callback_error) std::rethrow_exception(callback_error);

    for (const Completion& completion : results) {
        prompt_tokens_ += completion.prompt_tokens;
        completion_tokens_ += completion.completion_tokens;
    }
    return results;
}

}  // namespace heidi
