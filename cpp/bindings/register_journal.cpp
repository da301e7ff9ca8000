#include "pybind.hpp"

namespace heidi::bindings {
void register_journal(py::module_& m) { (void)m; }
}  // namespace heidi::bindings
