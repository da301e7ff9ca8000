// heidi_cpp.Subprocess, RunResult, CancelToken. The run releases the GIL; the stdout
// line callback takes it back for each line.
#include <cstring>

#include "heidi/subprocess.hpp"
#include "pybind.hpp"

namespace heidi::bindings {
namespace {

std::string fspath(const py::handle& value) {
    // Leaked on purpose: a static py::object would be destroyed after the interpreter.
    static const auto* os_fspath = new py::object(py::module_::import("os").attr("fspath"));
    return (*os_fspath)(value).cast<std::string>();
}

RunResult run(const py::object& argv_obj, double timeout_s, const py::object& env,
              const py::object& cwd, long long max_output_bytes, double kill_grace_s,
              const py::object& on_stdout_line, std::shared_ptr<CancelToken> cancel) {
    std::vector<std::string> argv;
    for (const auto& arg : py::iter(argv_obj)) argv.push_back(fspath(arg));
    if (max_output_bytes < 0) throw std::invalid_argument("max_output_bytes must be >= 0");
    RunOptions options;
    if (!env.is_none()) {
        std::vector<std::pair<std::string, std::string>> entries;
        py::dict items(env);
        for (const auto& [key, value] : items) {
            entries.emplace_back(key.cast<std::string>(), value.cast<std::string>());
        }
        options.env = std::move(entries);
    }
    if (!cwd.is_none()) options.cwd = fspath(cwd);
    options.max_output_bytes = static_cast<std::size_t>(max_output_bytes);
    options.kill_grace_s = kill_grace_s;
    options.cancel = std::move(cancel);
    if (!on_stdout_line.is_none()) {
        py::object callback = on_stdout_line;
        options.on_stdout_line = [callback](std::string_view line) {
            py::gil_scoped_acquire gil;
            PyObject* text = PyUnicode_DecodeUTF8(line.data(), static_cast<Py_ssize_t>(line.size()),
                                                  "replace");
            if (text == nullptr) throw py::error_already_set();
            callback(py::reinterpret_steal<py::str>(text));
        };
    }
    // The callback object is released with the GIL held (options outlives the release).
    RunResult result;
    {
        py::gil_scoped_release release;
        result = Subprocess::run(argv, timeout_s, options);
    }
    return result;
}

}  // namespace

void register_subprocess(py::module_& m) {
    py::register_exception_translator([](std::exception_ptr error) {
        try {
            if (error) std::rethrow_exception(error);
        } catch (const SpawnError& spawn) {
            py::object cls = py::module_::import("heidi_engine.errors").attr("SpawnError");
            py::object instance =
                cls(spawn.error_code(), std::strerror(spawn.error_code()), spawn.path());
            PyErr_SetObject(cls.ptr(), instance.ptr());
        }
    });

    py::class_<CancelToken, std::shared_ptr<CancelToken>>(m, "CancelToken")
        .def(py::init<>())
        .def("cancel", &CancelToken::cancel, "Stop the run(s) using this token.")
        .def_property_readonly("cancelled", &CancelToken::cancelled)
        .def("fileno", &CancelToken::wait_fd, "Readable once cancel() was called.");

    py::class_<RunResult>(m, "RunResult")
        .def_readonly("exit_code", &RunResult::exit_code)
        .def_readonly("signal", &RunResult::signal)
        .def_readonly("timed_out", &RunResult::timed_out)
        .def_readonly("cancelled", &RunResult::cancelled)
        .def_property_readonly("stdout", [](const RunResult& r) { return py::bytes(r.stdout_bytes); })
        .def_property_readonly("stderr", [](const RunResult& r) { return py::bytes(r.stderr_bytes); })
        .def_readonly("truncated", &RunResult::truncated)
        .def_readonly("duration_s", &RunResult::duration_s)
        .def_property_readonly("ok", &RunResult::ok)
        .def("__repr__", [](const RunResult& r) {
            return "RunResult(exit_code=" + std::to_string(r.exit_code) +
                   ", signal=" + std::to_string(r.signal) +
                   ", timed_out=" + (r.timed_out ? "True" : "False") +
                   ", cancelled=" + (r.cancelled ? "True" : "False") +
                   ", truncated=" + (r.truncated ? "True" : "False") + ", stdout=" +
                   std::to_string(r.stdout_bytes.size()) + " bytes, stderr=" +
                   std::to_string(r.stderr_bytes.size()) + " bytes)";
        });

    py::class_<Subprocess>(m, "Subprocess")
        .def_static("run", &run, py::arg("argv"), py::arg("timeout_s"), py::kw_only(),
                    py::arg("env") = py::none(), py::arg("cwd") = py::none(),
                    py::arg("max_output_bytes") = 1LL << 20, py::arg("kill_grace_s") = 2.0,
                    py::arg("on_stdout_line") = py::none(), py::arg("cancel") = nullptr,
                    "Run argv to completion under a deadline (see SPEC §7, Runner).");
}

}  // namespace heidi::bindings
