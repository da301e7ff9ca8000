#include "pybind.hpp"

namespace heidi::bindings {
void register_core(py::module_& m) { (void)m; }
}  // namespace heidi::bindings
