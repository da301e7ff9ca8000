#include "heidi/config.hpp"
#include "pybind.hpp"
#include "pyconvert.hpp"

namespace heidi::bindings {

namespace {

// Keyword overrides -> Config::Overrides. None is skipped; the type check runs before
// anything else, in argument order, as in the Python backend.
Config::Overrides convert_overrides(const py::kwargs& kwargs) {
    Config::Overrides overrides;
    const py::object os_path_like = py::module_::import("os").attr("PathLike");
    for (const auto& [key_handle, value_handle] : kwargs) {
        const std::string key = py::cast<std::string>(key_handle);
        py::object value = py::reinterpret_borrow<py::object>(value_handle);
        if (value.is_none()) continue;
        if (py::isinstance(value, os_path_like)) value = py::module_::import("os").attr("fspath")(value);
        if (PyBool_Check(value.ptr())) {
            overrides.emplace_back(key, value.ptr() == Py_True);
        } else if (PyLong_Check(value.ptr())) {
            int overflow = 0;
            const long long number = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
            if (overflow) {
                // Beyond int64: its digits fail the same checks as the environment form.
                overrides.emplace_back(key, py::cast<std::string>(py::str(value)));
            } else {
                overrides.emplace_back(key, static_cast<std::int64_t>(number));
            }
        } else if (PyFloat_Check(value.ptr())) {
            overrides.emplace_back(key, PyFloat_AsDouble(value.ptr()));
        } else if (PyUnicode_Check(value.ptr())) {
            overrides.emplace_back(key, utf8_of(value, "override"));
        } else {
            throw py::type_error("override " + key + " must be str, int, float, bool or None, not " +
                                 py::cast<std::string>(py::type::of(value).attr("__name__")));
        }
    }
    return overrides;
}

}  // namespace

void register_config(py::module_& m) {
    py::class_<Config> config(m, "Config", "The engine's configuration; build it with Config.from_env().");
    config.def(py::init<>());
#define HEIDI_CONFIG_FIELD(name) config.def_readonly(#name, &Config::name);
    HEIDI_CONFIG_FIELD(out_dir)
    HEIDI_CONFIG_FIELD(pipeline_mode)
    HEIDI_CONFIG_FIELD(run_unit_tests)
    HEIDI_CONFIG_FIELD(rounds)
    HEIDI_CONFIG_FIELD(samples_per_round)
    HEIDI_CONFIG_FIELD(run_id)
    HEIDI_CONFIG_FIELD(seed)
    HEIDI_CONFIG_FIELD(val_ratio)
    HEIDI_CONFIG_FIELD(mock_subprocesses)
    HEIDI_CONFIG_FIELD(stage_timeout_s)
    HEIDI_CONFIG_FIELD(fsync)
    HEIDI_CONFIG_FIELD(fake_time)
    HEIDI_CONFIG_FIELD(python)
    HEIDI_CONFIG_FIELD(stage_cmd_generate)
    HEIDI_CONFIG_FIELD(stage_cmd_validate)
    HEIDI_CONFIG_FIELD(stage_cmd_test)
    HEIDI_CONFIG_FIELD(stage_cmd_train)
    HEIDI_CONFIG_FIELD(stage_cmd_eval)
    HEIDI_CONFIG_FIELD(task_source)
    HEIDI_CONFIG_FIELD(task_file)
    HEIDI_CONFIG_FIELD(eval_task_file)
    HEIDI_CONFIG_FIELD(dev_tasks)
    HEIDI_CONFIG_FIELD(test_tasks)
    HEIDI_CONFIG_FIELD(eval_file_limit)
    HEIDI_CONFIG_FIELD(eval_samples)
    HEIDI_CONFIG_FIELD(eval_temperature)
    HEIDI_CONFIG_FIELD(teacher)
    HEIDI_CONFIG_FIELD(teacher_model)
    HEIDI_CONFIG_FIELD(teacher_base_url)
    HEIDI_CONFIG_FIELD(teacher_api_key_env)
    HEIDI_CONFIG_FIELD(teacher_concurrency)
    HEIDI_CONFIG_FIELD(teacher_samples)
    HEIDI_CONFIG_FIELD(teacher_keep_per_task)
    HEIDI_CONFIG_FIELD(teacher_temperature)
    HEIDI_CONFIG_FIELD(teacher_top_p)
    HEIDI_CONFIG_FIELD(teacher_max_tokens)
    HEIDI_CONFIG_FIELD(teacher_token_field)
    HEIDI_CONFIG_FIELD(teacher_extra_body)
    HEIDI_CONFIG_FIELD(teacher_system_prompt)
    HEIDI_CONFIG_FIELD(teacher_response_format)
    HEIDI_CONFIG_FIELD(teacher_cache)
    HEIDI_CONFIG_FIELD(teacher_cache_file)
    HEIDI_CONFIG_FIELD(teacher_rpm)
    HEIDI_CONFIG_FIELD(teacher_tpm)
    HEIDI_CONFIG_FIELD(teacher_price_prompt)
    HEIDI_CONFIG_FIELD(teacher_price_completion)
    HEIDI_CONFIG_FIELD(base_model)
    HEIDI_CONFIG_FIELD(train_steps)
    HEIDI_CONFIG_FIELD(lr)
    HEIDI_CONFIG_FIELD(lora_r)
    HEIDI_CONFIG_FIELD(lora_alpha)
    HEIDI_CONFIG_FIELD(seq_len)
    HEIDI_CONFIG_FIELD(batch_size)
    HEIDI_CONFIG_FIELD(grad_accum)
    HEIDI_CONFIG_FIELD(train_precision)
    HEIDI_CONFIG_FIELD(qlora)
    HEIDI_CONFIG_FIELD(chat_template)
    HEIDI_CONFIG_FIELD(train_packing)
    HEIDI_CONFIG_FIELD(gradient_checkpointing)
    HEIDI_CONFIG_FIELD(save_steps)
    HEIDI_CONFIG_FIELD(report_to)
    HEIDI_CONFIG_FIELD(train_launcher)
    HEIDI_CONFIG_FIELD(sandbox_timeout_s)
    HEIDI_CONFIG_FIELD(sandbox_memory_mb)
    HEIDI_CONFIG_FIELD(sandbox_workers)
    HEIDI_CONFIG_FIELD(sandbox)
#undef HEIDI_CONFIG_FIELD
    config
        .def_static(
            "from_env",
            [](const py::object& config_file, const py::kwargs& kwargs) {
                const Config::Overrides overrides = convert_overrides(kwargs);
                const std::string path = config_file.is_none() ? std::string() : fspath_of(config_file, "config_file");
                return Config::from_env(path, overrides);
            },
            py::arg("config_file") = py::none(),
            "Defaults < TOML file (config_file or $HEIDI_CONFIG) < environment < keyword overrides.")
        .def("to_env",
             [](const Config& self) {
                 py::dict env;
                 for (const auto& [name, value] : self.to_env()) env[to_str(name)] = to_str(value);
                 return env;
             })
        .def("stage_timeout_for", &Config::stage_timeout_for, py::arg("stage"))
        .def_static("field_names", &Config::field_names)
        .def_static("env_names",
                    [] {
                        py::dict names;
                        for (const auto& [field, env] : Config::env_names()) names[to_str(field)] = to_str(env);
                        return names;
                    })
        .def("__eq__",
             [](const Config& self, const py::object& other) -> py::object {
                 if (!py::isinstance<Config>(other)) return py::reinterpret_borrow<py::object>(Py_NotImplemented);
                 return py::bool_(self == other.cast<const Config&>());
             })
        .def("__hash__",
             [](const py::object& self) {
                 py::list values;
                 for (const auto& name : Config::field_names()) values.append(self.attr(name.c_str()));
                 return py::hash(py::tuple(values));
             })
        .def("__repr__", [](const py::object& self) {
            std::string text = "Config(";
            bool first = true;
            for (const auto& name : Config::field_names()) {
                text += (first ? "" : ", ") + name + "=" + py::cast<std::string>(py::repr(self.attr(name.c_str())));
                first = false;
            }
            return text + ")";
        });
}

}  // namespace heidi::bindings
