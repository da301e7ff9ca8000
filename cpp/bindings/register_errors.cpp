// C++ exceptions -> the classes of heidi_engine.errors (same types and messages in both
// backends). OsError becomes OSError(errno, strerror, filename).
#include <cstring>

#include "heidi/errors.hpp"
#include "heidi/subprocess.hpp"
#include "pybind.hpp"
#include "pyconvert.hpp"

namespace heidi::bindings {

namespace {

void set_python_error(py::handle type, const py::object& argument) { PyErr_SetObject(type.ptr(), argument.ptr()); }

py::object error_class(const char* name) { return py::module_::import("heidi_engine.errors").attr(name); }

void translate(std::exception_ptr pointer) {
    if (!pointer) return;
    try {
        std::rethrow_exception(pointer);
    } catch (const heidi::ConfigError& error) {
        set_python_error(error_class("ConfigError"), to_str(error.what()));
    } catch (const heidi::TransitionError& error) {
        set_python_error(error_class("TransitionError"), to_str(error.what()));
    } catch (const heidi::JournalError& error) {
        set_python_error(error_class("JournalError"), to_str(error.what()));
    } catch (const heidi::RunLockedError& error) {
        set_python_error(error_class("RunLockedError"), to_str(error.what()));
    } catch (const heidi::HeidiError& error) {
        set_python_error(error_class("HeidiError"), to_str(error.what()));
    } catch (const heidi::SpawnError& error) {
        set_python_error(error_class("SpawnError"),
                         py::make_tuple(error.error_code(), std::strerror(error.error_code()), to_str(error.path())));
    } catch (const heidi::OsError& error) {
        set_python_error(py::handle(PyExc_OSError), py::make_tuple(error.error_code(), std::strerror(error.error_code()),
                                                                   to_str(error.filename())));
    }
}

}  // namespace

void register_errors(py::module_& m) {
    (void)m;
    // Fail at import, not at the first error, if the package is not importable.
    py::module_::import("heidi_engine.errors");
    py::register_exception_translator(&translate);
}

}  // namespace heidi::bindings
