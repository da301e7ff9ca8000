#include <chrono>
#include <climits>
#include <memory>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "heidi/clock.hpp"
#include "heidi/journal.hpp"
#include "pybind.hpp"
#include "pyconvert.hpp"

namespace heidi::bindings {

namespace {

// The UTF-8 bytes of a str without copying them: CPython's cached UTF-8 form, or (for a
// str with lone surrogates) a "surrogatepass" encoding kept alive here.
class Utf8View {
public:
    Utf8View() = default;
    Utf8View(PyObject* value, const char* what) {
        if (!PyUnicode_Check(value)) throw py::type_error(std::string(what) + " must be str");
        Py_ssize_t size = 0;
        if (const char* data = PyUnicode_AsUTF8AndSize(value, &size)) {
            view_ = {data, static_cast<std::size_t>(size)};
            return;
        }
        PyErr_Clear();
        encoded_ = py::reinterpret_steal<py::object>(PyUnicode_AsEncodedString(value, "utf-8", "surrogatepass"));
        if (!encoded_) throw py::error_already_set();
        view_ = {PyBytes_AS_STRING(encoded_.ptr()), static_cast<std::size_t>(PyBytes_GET_SIZE(encoded_.ptr()))};
    }
    std::string_view view() const { return view_; }

private:
    py::object encoded_;
    std::string_view view_;
};

// A mapping of exact str -> exact int (int64), as the Python backend requires, into
// `counters` (reused between calls, so steady appends allocate nothing).
void read_counters(PyObject* value, const char* name, Counters& counters) {
    counters.clear();
    if (value == nullptr || value == Py_None) return;
    const std::string error = std::string(name) + " must map str to int";
    std::size_t used = 0;
    auto add = [&](PyObject* key, PyObject* number) {
        if (!PyUnicode_CheckExact(key) || !PyLong_CheckExact(number)) throw py::value_error(error);
        int overflow = 0;
        const long long count = PyLong_AsLongLongAndOverflow(number, &overflow);
        if (overflow) throw py::value_error(error);
        const Utf8View key_text(key, name);
        if (used == counters.size()) counters.emplace_back();
        counters[used].first.assign(key_text.view());
        counters[used].second = static_cast<std::int64_t>(count);
        ++used;
    };
    if (PyDict_Check(value)) {
        PyObject* key = nullptr;
        PyObject* number = nullptr;
        Py_ssize_t position = 0;
        while (PyDict_Next(value, &position, &key, &number)) add(key, number);
        return;
    }
    const py::handle mapping(value);
    if (!py::isinstance(mapping, py::module_::import("collections.abc").attr("Mapping"))) throw py::value_error(error);
    for (const auto item : mapping.attr("items")()) {
        const auto pair = py::reinterpret_borrow<py::tuple>(item);
        add(pair[0].ptr(), pair[1].ptr());
    }
}

void read_paths(PyObject* value, std::vector<std::string>& paths) {
    paths.clear();
    if (value == nullptr || value == Py_None) return;
    if (!PyList_Check(value) && !PyTuple_Check(value)) throw py::value_error("artifact_paths must be a list of str");
    for (const auto item : py::handle(value)) {
        if (!PyUnicode_CheckExact(item.ptr())) throw py::value_error("artifact_paths must be a list of str");
        paths.emplace_back(Utf8View(item.ptr(), "artifact_paths").view());
    }
}

std::int64_t round_of(PyObject* value) {
    if (value == nullptr) return 0;
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        const long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
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

// JournalWriter.append as a METH_FASTCALL method: the journal's hot path from Python, so
// arguments are read straight from the call's vector (keyword names matched by identity
// first, as Python interns them) instead of through pybind11's general dispatcher.
constexpr const char* kAppendArgNames[] = {"event_type",     "message",     "stage",         "round",
                                           "level",          "counters_delta", "usage_delta", "artifact_paths"};
constexpr Py_ssize_t kAppendArgCount = static_cast<Py_ssize_t>(std::size(kAppendArgNames));
constexpr Py_ssize_t kAppendPositional = 2;
PyObject* append_arg_names[kAppendArgCount];  // interned at registration

Py_ssize_t append_arg_slot(PyObject* name) {
    for (Py_ssize_t i = 0; i < kAppendArgCount; ++i)
        if (name == append_arg_names[i]) return i;
    for (Py_ssize_t i = 0; i < kAppendArgCount; ++i)
        if (PyUnicode_Compare(name, append_arg_names[i]) == 0) return i;
    return -1;
}

PyObject* append_method(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    try {
        PyObject* values[kAppendArgCount] = {};
        if (nargs > kAppendPositional)
            throw py::type_error("append() takes 2 positional arguments but " + std::to_string(nargs) + " were given");
        for (Py_ssize_t i = 0; i < nargs; ++i) values[i] = args[i];
        const Py_ssize_t keywords = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
        for (Py_ssize_t k = 0; k < keywords; ++k) {
            PyObject* name = PyTuple_GET_ITEM(kwnames, k);
            const Py_ssize_t slot = append_arg_slot(name);
            if (slot < 0)
                throw py::type_error("append() got an unexpected keyword argument '" + py::cast<std::string>(name) + "'");
            if (values[slot]) throw py::type_error("append() got multiple values for argument '" + std::string(kAppendArgNames[slot]) + "'");
            values[slot] = args[nargs + k];
        }
        for (Py_ssize_t i = 0; i < kAppendPositional; ++i)
            if (!values[i]) throw py::type_error("append() missing required argument '" + std::string(kAppendArgNames[i]) + "'");
        auto& writer = py::cast<JournalWriter&>(py::handle(self));
        // Checked in the order of the Python backend (docs/design.md "Journal append arguments").
        if (!PyUnicode_Check(values[0]) || !PyUnicode_Check(values[1]))
            throw py::type_error("event_type and message must be str");
        const std::string_view level = values[4] ? Utf8View(values[4], "level").view() : std::string_view("info");
        const Utf8View stage_text = values[2] ? Utf8View(values[2], "stage") : Utf8View();
        const std::string_view stage = values[2] ? stage_text.view() : std::string_view("pipeline");
        check_level_and_stage(level, stage);
        const std::int64_t round = round_of(values[3]);
        thread_local Counters counters;
        thread_local Counters usage;
        thread_local std::vector<std::string> paths;
        read_counters(values[5], "counters_delta", counters);
        read_counters(values[6], "usage_delta", usage);
        read_paths(values[7], paths);
        const Utf8View event_type(values[0], "event_type");
        const Utf8View message(values[1], "message");
        std::int64_t seq = 0;
        if (writer.fsync_enabled()) {
            py::gil_scoped_release release;
            seq = writer.append(event_type.view(), message.view(), stage, round, level, counters, usage, paths);
        } else {  // a buffered append is too short to be worth a GIL switch
            seq = writer.append(event_type.view(), message.view(), stage, round, level, counters, usage, paths);
        }
        return PyLong_FromLongLong(seq);
    } catch (...) {
        py::detail::try_translate_exceptions();
        return nullptr;
    }
}

PyMethodDef append_method_def = {
    "append", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&append_method)), METH_FASTCALL | METH_KEYWORDS,
    "append($self, event_type, message, *, stage='pipeline', round=0, level='info', counters_delta=None, "
    "usage_delta=None, artifact_paths=None)\n--\n\n"
    "Append one event; return its seq. With fsync on, the line is durable on return."};

}  // namespace

void register_journal(py::module_& m) {
    py::class_<JournalWriter> writer_class(m, "JournalWriter", "Appends events to the hash-chained journal; thread-safe.");
    writer_class
        .def(py::init([](const py::object& path, const py::object& run_id, bool fsync, const py::object& clock) {
                 std::string path_text = fspath_of(path, "path");
                 std::string run_id_text = utf8_of(run_id, "run_id");
                 auto clock_ptr = clock_of(clock);
                 py::gil_scoped_release release;
                 return std::make_unique<JournalWriter>(std::move(path_text), std::move(run_id_text), fsync,
                                                        std::move(clock_ptr));
             }),
             py::arg("path"), py::arg("run_id"), py::kw_only(), py::arg("fsync") = true, py::arg("clock") = py::none())
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
    for (Py_ssize_t i = 0; i < kAppendArgCount; ++i) {
        append_arg_names[i] = PyUnicode_InternFromString(kAppendArgNames[i]);  // kept for the module's life
        if (!append_arg_names[i]) throw py::error_already_set();
    }
    PyObject* append = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(writer_class.ptr()), &append_method_def);
    if (!append) throw py::error_already_set();
    writer_class.attr("append") = py::reinterpret_steal<py::object>(append);

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
