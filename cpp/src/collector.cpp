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

AsyncCollector::AsyncCollector(std::shared_ptr<Provider> provider, CollectorOptions options)
    : provider_(std::move(provider)), options_(options) {
    if (!provider_) throw std::invalid_argument("provider must not be None");
    if (options_.concurrency < 1) throw std::invalid_argument("concurrency must be >= 1");
    if (options_.retries < 0) throw std::invalid_argument("retries must be >= 0");
    if (!(options_.timeout_s > 0)) throw std::invalid_argument("timeout_s must be > 0");
    if (options_.backoff_base_s < 0 || options_.backoff_max_s < 0 ||
        options_.retry_after_max_s < 0) {
        throw std::invalid_argument("backoff delays must be >= 0");
    }
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

std::vector<Completion> AsyncCollector::generate_batch(const std::vector<std::string>& prompts) {
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
            CollectorRequestContext context(*this, slot, steady_seconds() + options_.timeout_s);
            ProviderRequest request{prompts[index], index, completion.attempts, options_.timeout_s};
            try {
                reply = provider_->complete(request, context);
            } catch (const std::exception& error) {
                reply = ProviderReply{};
                reply.error = std::string("provider error: ") + error.what();
            }
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

    std::vector<std::thread> workers;
    workers.reserve(worker_count);
    for (std::size_t w = 0; w < worker_count; ++w) {
        workers.emplace_back([&, w] {
            while (true) {
                std::size_t index = next_index.fetch_add(1);
                if (index >= prompts.size()) return;
                collect_one(index, slots[w]);
            }
        });
    }
    for (auto& worker : workers) worker.join();
    batch_done.store(true);
    watchdog.join();

    for (const Completion& completion : results) {
        prompt_tokens_ += completion.prompt_tokens;
        completion_tokens_ += completion.completion_tokens;
    }
    return results;
}

}  // namespace heidi
