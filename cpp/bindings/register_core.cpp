// heidi_cpp.Core: the native state machine. Calls release the GIL (a tick runs a stage
// process for minutes); the object is thread-safe, so other Python threads may call
// stop()/pause()/get_status_json() while one thread is inside tick().
#include <memory>
#include <optional>
#include <string>

#include "heidi/config.hpp"
#include "heidi/core.hpp"
#include "pybind.hpp"

namespace heidi::bindings {

namespace {

std::unique_ptr<Core> make_core(py::module_ module, const py::object& config_obj) {
    py::object source = config_obj.is_none() ? module.attr("Config").attr("from_env")() : config_obj;
    Config config = source.cast<Config>();
    // Stages run under the interpreter that runs us unless HEIDI_PYTHON says otherwise.
    if (config.python.empty())
        config.python = py::module_::import("sys").attr("executable").cast<std::string>();
    py::gil_scoped_release release;
    return std::make_unique<Core>(std::move(config));
}

}  // namespace

void register_core(py::module_& m) {
    using release = py::call_guard<py::gil_scoped_release>;
    py::class_<Core>(m, "Core", "The loop's state machine over one OUT_DIR (SPEC §4).")
        .def(py::init([m](const py::object& config) { return make_core(m, config); }),
             py::arg("config") = py::none())
        .def(
            "start",
            [](Core& core, const std::optional<std::string>& mode) {
                py::gil_scoped_release unlocked;
                if (mode)
                    core.start(*mode);
                else
                    core.start();
            },
            py::arg("mode") = py::none())
        .def("tick", &Core::tick, release())
        .def("run_until_idle", &Core::run_until_idle, release())
        .def("train_now", &Core::train_now, release())
        .def("action_train_now", &Core::train_now, release())
        .def("pause", &Core::pause, release())
        .def("resume", &Core::resume, release())
        .def("stop", &Core::stop, release())
        .def("reset", &Core::reset, release())
        .def("get_status_json", &Core::get_status_json, release())
        .def("shutdown", &Core::shutdown, release())
        .def_property_readonly("last_refusal", &Core::last_refusal)
        .def_property_readonly("out_dir", &Core::out_dir)
        .def_property_readonly("run_id", &Core::run_id)
        .def("__repr__", [](const Core& core) {
            return "<Core " + core.run_id() + " " + core.out_dir() + ">";
        });
}

}  // namespace heidi::bindings
