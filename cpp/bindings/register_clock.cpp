#include <memory>

#include "heidi/clock.hpp"
#include "pybind.hpp"

namespace heidi::bindings {

void register_clock(py::module_& m) {
    py::class_<Clock, std::shared_ptr<Clock>>(m, "Clock", "Base of SystemClock and FakeClock.")
        .def("now_iso", &Clock::now_iso, "UTC time as YYYY-MM-DDTHH:MM:SS.mmmZ (milliseconds truncated).")
        .def("now_us", &Clock::now_us, "Microseconds since the Unix epoch.")
        .def("monotonic", &Clock::monotonic, "Seconds on a clock that never goes back.");

    py::class_<SystemClock, Clock, std::shared_ptr<SystemClock>>(m, "SystemClock", "The real time.")
        .def(py::init<>())
        .def("__repr__", [](const SystemClock&) { return "SystemClock()"; });

    py::class_<FakeClock, Clock, std::shared_ptr<FakeClock>>(m, "FakeClock",
                                                            "A clock that stands still until advanced.")
        .def(py::init<std::string_view>(), py::arg("iso_ts"))
        .def("advance", &FakeClock::advance, py::arg("seconds"),
             "Move forward by seconds (finite, >= 0), rounded to the microsecond.")
        .def("__repr__", [](const FakeClock& clock) { return "FakeClock('" + clock.now_iso() + "')"; });

    struct RunIdNamespace {};
    py::class_<RunIdNamespace>(m, "RunId")
        .def_static("generate", [](const Clock& clock) { return RunId::generate(clock); }, py::arg("clock"),
                    "run_YYYYMMDD_HHMMSS of the clock's time (UTC).");
}

}  // namespace heidi::bindings
