// heidi_cpp.MockProvider, OpenAIProvider, AsyncCollector, Completion. A batch runs on
// native threads with the GIL released.
#include "heidi/collector.hpp"
#include "heidi/providers.hpp"
#include "pybind.hpp"

namespace heidi::bindings {
namespace {

std::string format_float(double value) {
    return py::repr(py::float_(value)).cast<std::string>();
}

}  // namespace

void register_collector(py::module_& m) {
    py::class_<Provider, std::shared_ptr<Provider>>(m, "_Provider");

    py::class_<MockProvider, Provider, std::shared_ptr<MockProvider>>(m, "MockProvider")
        .def(py::init([](double latency_ms, double fail_rate, long long seed) {
                 if (seed < 0) throw std::invalid_argument("seed must be >= 0");
                 return std::make_shared<MockProvider>(latency_ms, fail_rate,
                                                       static_cast<std::uint64_t>(seed));
             }),
             py::arg("latency_ms") = 100.0, py::arg("fail_rate") = 0.0, py::arg("seed") = 0)
        .def_property_readonly("latency_ms", &MockProvider::latency_ms)
        .def_property_readonly("fail_rate", &MockProvider::fail_rate)
        .def_property_readonly("seed", &MockProvider::seed)
        .def("__repr__", [](const MockProvider& p) {
            return "MockProvider(latency_ms=" + format_float(p.latency_ms()) +
                   ", fail_rate=" + format_float(p.fail_rate()) +
                   ", seed=" + std::to_string(p.seed()) + ")";
        });

    py::class_<OpenAIProvider, Provider, std::shared_ptr<OpenAIProvider>>(m, "OpenAIProvider")
        .def(py::init([](std::string base_url, std::string model, std::string api_key_env,
                         double timeout_s, int max_tokens, double temperature,
                         const py::object& extra_headers, double top_p, std::string token_field,
                         std::string system_prompt, const py::object& extra_body, bool keep_alive) {
                 OpenAIProvider::Options options;
                 options.api_key_env = std::move(api_key_env);
                 options.timeout_s = timeout_s;
                 options.max_tokens = max_tokens;
                 options.temperature = temperature;
                 options.top_p = top_p;
                 options.token_field = std::move(token_field);
                 options.system_prompt = std::move(system_prompt);
                 options.keep_alive = keep_alive;
                 if (!extra_body.is_none()) {
                     options.extra_body =
                         py::module_::import("json").attr("dumps")(py::dict(extra_body)).cast<std::string>();
                 }
                 if (!extra_headers.is_none()) {
                     for (const auto& [name, value] : py::dict(extra_headers)) {
                         options.extra_headers.emplace_back(name.cast<std::string>(),
                                                            value.cast<std::string>());
                     }
                 }
                 return std::make_shared<OpenAIProvider>(std::move(base_url), std::move(model),
                                                         std::move(options));
             }),
             py::arg("base_url"), py::arg("model"), py::kw_only(),
             py::arg("api_key_env") = "OPENAI_API_KEY", py::arg("timeout_s") = 60.0,
             py::arg("max_tokens") = 512, py::arg("temperature") = 0.0,
             py::arg("extra_headers") = py::none(), py::arg("top_p") = 1.0,
             py::arg("token_field") = "max_tokens", py::arg("system_prompt") = "",
             py::arg("extra_body") = py::none(), py::arg("keep_alive") = true)
        .def_property_readonly("base_url", &OpenAIProvider::base_url)
        .def_property_readonly("model", &OpenAIProvider::model)
        .def_property_readonly("api_key_env",
                               [](const OpenAIProvider& p) { return p.options().api_key_env; })
        .def_property_readonly("timeout_s",
                               [](const OpenAIProvider& p) { return p.options().timeout_s; })
        .def_property_readonly("connections_opened", &OpenAIProvider::connections_opened)
        .def("request_body",
             [](const OpenAIProvider& p, const std::string& prompt) {
                 return py::bytes(p.request_body(prompt));
             },
             py::arg("prompt"))
        .def("close", &OpenAIProvider::close, "Close the idle kept-alive connections.")
        .def("__repr__", [](const OpenAIProvider& p) {
            return "OpenAIProvider(base_url=" + py::repr(py::str(p.base_url())).cast<std::string>() +
                   ", model=" + py::repr(py::str(p.model())).cast<std::string>() + ")";
        });

    py::class_<Completion>(m, "Completion")
        .def_readonly("ok", &Completion::ok)
        .def_readonly("text", &Completion::text)
        .def_readonly("error", &Completion::error)
        .def_readonly("attempts", &Completion::attempts)
        .def_readonly("latency_ms", &Completion::latency_ms)
        .def_readonly("prompt_tokens", &Completion::prompt_tokens)
        .def_readonly("completion_tokens", &Completion::completion_tokens)
        .def("__repr__", [](const Completion& c) {
            return "Completion(ok=" + std::string(c.ok ? "True" : "False") +
                   ", text=" + py::repr(py::str(c.text)).cast<std::string>() +
                   ", error=" + py::repr(py::str(c.error)).cast<std::string>() +
                   ", attempts=" + std::to_string(c.attempts) +
                   ", latency_ms=" + format_float(c.latency_ms) +
                   ", prompt_tokens=" + std::to_string(c.prompt_tokens) +
                   ", completion_tokens=" + std::to_string(c.completion_tokens) + ")";
        });

    py::class_<AsyncCollector, std::shared_ptr<AsyncCollector>>(m, "AsyncCollector")
        .def(py::init([](std::shared_ptr<Provider> provider, int concurrency, int retries,
                         double timeout_s, double backoff_base_s, double backoff_max_s,
                         double retry_after_max_s, long long seed, double rpm, double tpm) {
                 if (seed < 0) throw std::invalid_argument("seed must be >= 0");
                 CollectorOptions options;
                 options.concurrency = concurrency;
                 options.retries = retries;
                 options.timeout_s = timeout_s;
                 options.backoff_base_s = backoff_base_s;
                 options.backoff_max_s = backoff_max_s;
                 options.retry_after_max_s = retry_after_max_s;
                 options.seed = static_cast<std::uint64_t>(seed);
                 options.rpm = rpm;
                 options.tpm = tpm;
                 return std::make_shared<AsyncCollector>(std::move(provider), options);
             }),
             py::arg("provider"), py::kw_only(), py::arg("concurrency") = 16,
             py::arg("retries") = 3, py::arg("timeout_s") = 60.0,
             py::arg("backoff_base_s") = 0.5, py::arg("backoff_max_s") = 30.0,
             py::arg("retry_after_max_s") = 60.0, py::arg("seed") = 0, py::arg("rpm") = 0.0,
             py::arg("tpm") = 0.0)
        .def("generate_batch",
             [](AsyncCollector& collector, const py::iterable& prompts_obj, const py::object& on_result) {
                 std::vector<std::string> prompts;
                 for (const auto& prompt : prompts_obj) {
                     if (!py::isinstance<py::str>(prompt)) {
                         throw py::type_error("prompts must be strings");
                     }
                     prompts.push_back(prompt.cast<std::string>());
                 }
                 AsyncCollector::ResultCallback callback;
                 if (!on_result.is_none()) {
                     callback = [&on_result](std::size_t index, const Completion& completion) {
                         py::gil_scoped_acquire acquire;
                         on_result(index, py::cast(completion, py::return_value_policy::copy));  // a Python exception propagates as error_already_set
                     };
                 }
                 py::gil_scoped_release release;
                 return collector.generate_batch(prompts, callback);
             },
             py::arg("prompts"), py::arg("on_result") = py::none(),
             "One Completion per prompt, in order; on_result(index, completion) as each finishes.")
        .def("stop", &AsyncCollector::stop, "Cancel the running batch promptly, and every later one.")
        .def_property_readonly("stopped", &AsyncCollector::stopped)
        .def("backoff_delay", &AsyncCollector::backoff_delay, py::arg("index"), py::arg("retry"))
        .def_property_readonly("prompt_tokens", &AsyncCollector::prompt_tokens)
        .def_property_readonly("completion_tokens", &AsyncCollector::completion_tokens)
        .def_property_readonly("concurrency", [](const AsyncCollector& c) { return c.options().concurrency; })
        .def_property_readonly("retries", [](const AsyncCollector& c) { return c.options().retries; })
        .def_property_readonly("timeout_s", [](const AsyncCollector& c) { return c.options().timeout_s; })
        .def_property_readonly("provider", &AsyncCollector::provider)
        .def_property_readonly("limiter_rates", [](const AsyncCollector& c) { return c.limiter().rates(); });
}

}  // namespace heidi::bindings
