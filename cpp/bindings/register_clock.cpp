#include "pybind.hpp"

namespace heidi::bindings {
void register_clock(py::module_& m) { (void)m; }
}  // namespace heidi::bindings
