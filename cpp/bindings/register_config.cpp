#include "pybind.hpp"

namespace heidi::bindings {
void register_config(py::module_& m) { (void)m; }
}  // namespace heidi::bindings
