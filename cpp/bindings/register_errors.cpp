#include "pybind.hpp"

namespace heidi::bindings {
void register_errors(py::module_& m) { (void)m; }
}  // namespace heidi::bindings
