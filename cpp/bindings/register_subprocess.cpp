#include "pybind.hpp"

namespace heidi::bindings {
void register_subprocess(py::module_& m) { (void)m; }
}  // namespace heidi::bindings
