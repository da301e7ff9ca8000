#include "pybind.hpp"

namespace heidi::bindings {
void register_collector(py::module_& m) { (void)m; }
}  // namespace heidi::bindings
