// heidi_cpp: the compiled backend. Each area registers its names in its own file.
#include "pybind.hpp"

namespace heidi::bindings {
void register_errors(py::module_& m);
void register_clock(py::module_& m);
void register_config(py::module_& m);
void register_journal(py::module_& m);
void register_status(py::module_& m);
void register_subprocess(py::module_& m);
void register_collector(py::module_& m);
void register_core(py::module_& m);
}  // namespace heidi::bindings

PYBIND11_MODULE(heidi_cpp, m) {
    m.doc() = "Heidi Engine native core";
    using namespace heidi::bindings;
    register_errors(m);
    register_clock(m);
    register_config(m);
    register_journal(m);
    register_status(m);
    register_subprocess(m);
    register_collector(m);
    register_core(m);
}
