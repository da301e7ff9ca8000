#include <chrono>
#include <climits>
#include <memory>
#include <string>

#include "heidi/clock.hpp"
#include "heidi/journal.hpp"
#include "pybind.hpp"
#include "pyconvert.hpp"

namespace heidi::bindings {

namespace {

// A mapping of exact str -> exact int (int64), as the Python backend requires.
Counters counters_of(const py::object& value, const char* name) {
    Counters counters;
    if (value.is_none()) return counters;
    const std::string error = std::string(name) + " must map str to int";
    auto add = [&](py::handle key, py::handle number) {
        if (!PyUnicode_CheckExact(key.ptr()) || !PyLong_CheckExact(number.ptr())) throw py::value_error(error);
        int overflow = 0;
        const long long count = PyLong_AsLongLongAndOverflow(number.ptr(), &overflow);
        if (overflow) throw py::value_error(error);
        counters.emplace_back(utf8_of(key, name), static_cast<std::int64_t>(count));
    };
    if (PyDict_Check(value.ptr())) {
        PyObject* key = nullptr;
        PyObject* number = nullptr;
        Py_ssize_t position = 0;
        while (PyDict_Next(value.ptr(), &position, &key, &number)) add(key, number);
        return counters;
    }
    if (!py::isinstance(value, py::module_::import("collections.abc").attr("Mapping"))) throw py::value_error(error);
    for (const auto item : value.attr("items")()) {
        const auto pair = py::reinterpret_borrow<py::tuple>(item);
        add(pair[0], pair[1]);
    }
    return counters;
}

std::vector<std::string> paths_of(const py::object& value) {
    std::vector<std::string> paths;
    if (value.is_none()) return paths;
    if (!PyList_Check(value.ptr()) && !PyTuple_Check(value.ptr()))
        throw py::value_error("artifact_paths must be a list of str");
    for (const auto item : value) {
        if (!PyUnicode_CheckExact(item.ptr())) throw py::value_error("artifact_paths must be a list of str");
        paths.push_back(utf8_of(item, "artifact_paths"));
    }
    return paths;
}

std::int64_t round_of(const py::object& value) {
    if (PyLong_CheckExact(value.ptr())) {
        int overflow = 0;
        const long long number = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
        if (!overflow && number >= 0) return number;
    }
    throw py::value_error("round must be an integer >= 0");
}

std::shared_ptr<const Clock> clock_of(const py::object& value) {
    if (value.is_none()) return nullptr;
    if (!py::isinstance<Clock>(value)) throw py::type_error("clock must be a heidi_cpp SystemClock or FakeClock");
    return value.cast<std::shared_ptr<Clock>>();
}

py::tuple head_tuple(const JournalHead& head) { return py::make_tuple(head.seq, head.hash); }

}  // namespace

void register_journal(py::module_& m) {
    py::class_<JournalWriter>(m, "JournalWriter", "Appends events to the hash-chained journal; thread-safe.")
        .def(py::init([](const py::object& path, const py::object& run_id, bool fsync, const py::object& clock) {
                 std::string path_text = fspath_of(path, "path");
                 std::string run_id_text = utf8_of(run_id, "run_id");
                 auto clock_ptr = clock_of(clock);
                 py::gil_scoped_release release;
                 return std::make_unique<JournalWriter>(std::move(path_text), std::move(run_id_text), fsync,
                                                        std::move(clock_ptr));
             }),
             py::arg("path"), py::arg("run_id"), py::kw_only(), py::arg("fsync") = true, py::arg("clock") = py::none())
        .def(
            "append",
            [](JournalWriter& self, const py::object& event_type, const py::object& message, const py::object& stage,
               const py::object& round, const py::object& level, const py::object& counters_delta,
               const py::object& usage_delta, const py::object& artifact_paths) {
                if (!PyUnicode_Check(event_type.ptr()) || !PyUnicode_Check(message.ptr()))
                    throw py::type_error("event_type and message must be str");
                const std::string level_text = utf8_of(level, "level");
                const std::string stage_text = utf8_of(stage, "stage");
                check_level_and_stage(level_text, stage_text);
                const std::int64_t round_number = round_of(round);
                const Counters counters = counters_of(counters_delta, "counters_delta");
                const Counters usage = counters_of(usage_delta, "usage_delta");
                const std::vector<std::string> paths = paths_of(artifact_paths);
                const std::string event_text = utf8_of(event_type, "event_type");
                const std::string message_text = utf8_of(message, "message");
                if (!self.fsync_enabled())  // a buffered append is too short to be worth a GIL switch
                    return self.append(event_text, message_text, stage_text, round_number, level_text, counters,
                                       usage, paths);
                py::gil_scoped_release release;
                return self.append(event_text, message_text, stage_text, round_number, level_text, counters, usage,
                                   paths);
            },
            py::arg("event_type"), py::arg("message"), py::kw_only(), py::arg("stage") = "pipeline",
            py::arg("round") = 0, py::arg("level") = "info", py::arg("counters_delta") = py::none(),
            py::arg("usage_delta") = py::none(), py::arg("artifact_paths") = py::none(),
            "Append one event; return its seq. With fsync on, the line is durable on return.")
        .def_property_readonly("head",
                               [](JournalWriter& self) {
                                   JournalHead head;
                                   {
                                       py::gil_scoped_release release;
                                       head = self.head();
                                   }
                                   return head_tuple(head);
                               },
                               "(seq, sha256 hex) of the last line; buffered lines are written first.")
        .def("flush", &JournalWriter::flush, py::call_guard<py::gil_scoped_release>())
        .def("close", &JournalWriter::close, py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("closed", &JournalWriter::closed)
        .def_property_readonly("path", [](const JournalWriter& self) { return to_str(self.path()); })
        .def_property_readonly("run_id", [](const JournalWriter& self) { return to_str(self.run_id()); })
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](JournalWriter& self, const py::args&) {
            py::gil_scoped_release release;
            self.close();
        })
        .def("__repr__", [](const JournalWriter& self) {
            return "JournalWriter(" + py::cast<std::string>(py::repr(to_str(self.path()))) + ")";
        });

    py::class_<VerifyResult>(m, "VerifyResult", "What verify_journal found.")
        .def(py::init([](bool ok, std::int64_t lines, std::int64_t first_bad_line, std::string reason) {
                 return VerifyResult{ok, lines, first_bad_line, std::move(reason)};
             }),
             py::arg("ok"), py::arg("lines"), py::arg("first_bad_line"), py::arg("reason"))
        .def_readonly("ok", &VerifyResult::ok)
        .def_readonly("lines", &VerifyResult::lines)
        .def_readonly("first_bad_line", &VerifyResult::first_bad_line)
        .def_readonly("reason", &VerifyResult::reason)
        .def("__eq__",
             [](const VerifyResult& self, const py::object& other) -> py::object {
                 if (!py::isinstance<VerifyResult>(other)) return py::reinterpret_borrow<py::object>(Py_NotImplemented);
                 const auto& that = other.cast<const VerifyResult&>();
                 return py::bool_(self.ok == that.ok && self.lines == that.lines &&
                                  self.first_bad_line == that.first_bad_line && self.reason == that.reason);
             })
        .def("__hash__",
             [](const VerifyResult& self) {
                 return py::hash(py::make_tuple(self.ok, self.lines, self.first_bad_line, self.reason));
             })
        .def("__repr__", [](const VerifyResult& self) {
            return "VerifyResult(ok=" + std::string(self.ok ? "True" : "False") + ", lines=" +
                   std::to_string(self.lines) + ", first_bad_line=" + std::to_string(self.first_bad_line) +
                   ", reason=" + py::cast<std::string>(py::repr(to_str(self.reason))) + ")";
        });

    m.def(
        "verify_journal",
        [](const py::object& path_or_out_dir) {
            const std::string path = fspath_of(path_or_out_dir, "path_or_out_dir");
            py::gil_scoped_release release;
            return verify_journal(path);
        },
        py::arg("path_or_out_dir"),
        "Recompute the journal's chain and check the state file's head (docs/design.md).");

    // Benchmark hook: n appends from a C++ loop (fsync off, real clock); returns seconds.
    m.def(
        "_bench_journal_append",
        [](const std::string& path, std::int64_t n) {
            py::gil_scoped_release release;
            JournalWriter writer(path, "run_bench", false);
            const Counters counters = {{"raw_lines", 1}};
            const std::string messages[] = {"progress 1/50 samples collected", "validate round 2: 37 clean",
                                            "ok in 1234 ms"};
            const auto start = std::chrono::steady_clock::now();
            for (std::int64_t i = 0; i < n; ++i)
                writer.append("progress", messages[i % 3], "generate", 1, "info", counters);
            writer.close();
            return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        },
        py::arg("path"), py::arg("n"));
}

}  // namespace heidi::bindings
