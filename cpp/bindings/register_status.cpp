#include "pybind.hpp"

namespace heidi::bindings {
void register_status(py::module_& m) { (void)m; }
}  // namespace heidi::bindings
