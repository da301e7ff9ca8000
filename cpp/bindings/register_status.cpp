#include <climits>

#include "heidi/json.hpp"
#include "heidi/status.hpp"
#include "pybind.hpp"
#include "pyconvert.hpp"

namespace heidi::bindings {

namespace {

constexpr int kMaxDepth = 1000;

std::string type_name(py::handle value) { return py::cast<std::string>(py::type::of(value).attr("__name__")); }

void append_int_object(std::string& out, py::handle value) {
    int overflow = 0;
    const long long number = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
    if (overflow) {
        out += py::cast<std::string>(py::reinterpret_steal<py::object>(PyLong_Type.tp_repr(value.ptr())));
    } else {
        json::append_int(out, number);
    }
}

// json.dumps's rules for dict keys: str as is; float, bool, None and int converted.
void append_key(std::string& out, py::handle key) {
    if (PyUnicode_Check(key.ptr())) {
        json::append_string(out, utf8_of(key, "key"), true);
        return;
    }
    std::string text;
    if (PyFloat_Check(key.ptr())) {
        json::append_float(text, PyFloat_AsDouble(key.ptr()));
    } else if (key.ptr() == Py_True) {
        text = "true";
    } else if (key.ptr() == Py_False) {
        text = "false";
    } else if (key.is_none()) {
        text = "null";
    } else if (PyLong_Check(key.ptr())) {
        append_int_object(text, key);
    } else {
        throw py::type_error("keys must be str, int, float, bool or None, not " + type_name(key));
    }
    json::append_string(out, text);
}

// The Python object as json.dumps(obj, ensure_ascii=True, separators=(",", ":")) writes it.
void append_object(std::string& out, py::handle value, int depth) {
    if (depth > kMaxDepth) throw py::value_error("Circular reference detected");
    PyObject* object = value.ptr();
    if (object == Py_None) {
        out += "null";
    } else if (object == Py_True) {
        out += "true";
    } else if (object == Py_False) {
        out += "false";
    } else if (PyUnicode_Check(object)) {
        json::append_string(out, utf8_of(value, "value"), true);
    } else if (PyLong_Check(object)) {
        append_int_object(out, value);
    } else if (PyFloat_Check(object)) {
        json::append_float(out, PyFloat_AsDouble(object));
    } else if (PyDict_Check(object)) {
        out.push_back('{');
        bool first = true;
        for (const auto& [key, item] : py::reinterpret_borrow<py::dict>(value)) {
            if (!first) out.push_back(',');
            first = false;
            append_key(out, key);
            out.push_back(':');
            append_object(out, item, depth + 1);
        }
        out.push_back('}');
    } else if (PyList_Check(object) || PyTuple_Check(object)) {
        out.push_back('[');
        bool first = true;
        for (const auto item : value) {
            if (!first) out.push_back(',');
            first = false;
            append_object(out, item, depth + 1);
        }
        out.push_back(']');
    } else {
        throw py::type_error("Object of type " + type_name(value) + " is not JSON serializable");
    }
}

}  // namespace

void register_status(py::module_& m) {
    py::class_<StatusWriter>(m, "StatusWriter", "Writes one JSON object (compact line + newline) atomically.")
        .def(py::init([](const py::object& path) { return StatusWriter(fspath_of(path, "path")); }), py::arg("path"))
        .def(
            "write",
            [](const StatusWriter& self, const py::object& mapping) {
                std::string text;
                append_object(text, mapping, 0);
                py::gil_scoped_release release;
                self.write_encoded(text);
            },
            py::arg("mapping"))
        .def_property_readonly("path", [](const StatusWriter& self) { return to_str(self.path()); })
        .def("__repr__", [](const StatusWriter& self) {
            return "StatusWriter(" + py::cast<std::string>(py::repr(to_str(self.path()))) + ")";
        });
}

}  // namespace heidi::bindings
