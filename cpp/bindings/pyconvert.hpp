// Conversions between Python objects and engine types shared by the bindings.
#pragma once

#include <string>

#include "pybind.hpp"

namespace heidi::bindings {

// A str's UTF-8 bytes; lone surrogates pass through in their 3-byte form, as Python's
// "surrogatepass" writes them (the engine's JSON encoder turns them back into \udXXX).
// Throws TypeError naming `what` for anything but a str.
inline std::string utf8_of(py::handle value, const char* what) {
    if (!PyUnicode_Check(value.ptr())) throw py::type_error(std::string(what) + " must be str");
    Py_ssize_t size = 0;
    if (const char* data = PyUnicode_AsUTF8AndSize(value.ptr(), &size)) return std::string(data, static_cast<std::size_t>(size));
    PyErr_Clear();
    const py::object bytes = py::reinterpret_steal<py::object>(PyUnicode_AsEncodedString(value.ptr(), "utf-8", "surrogatepass"));
    if (!bytes) throw py::error_already_set();
    return std::string(PyBytes_AS_STRING(bytes.ptr()), static_cast<std::size_t>(PyBytes_GET_SIZE(bytes.ptr())));
}

// os.fspath(value) as a UTF-8 string (str or os.PathLike).
inline std::string fspath_of(py::handle value, const char* what) {
    if (PyUnicode_Check(value.ptr())) return utf8_of(value, what);
    const py::object path = py::module_::import("os").attr("fspath")(value);
    if (!PyUnicode_Check(path.ptr())) throw py::type_error(std::string(what) + " must be a str path");
    return utf8_of(path, what);
}

// A Python str from engine text (UTF-8; invalid bytes replaced).
inline py::str to_str(const std::string& text) {
    PyObject* object = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
    if (!object) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(object);
}

}  // namespace heidi::bindings
