// The Core state machine (docs/design.md "Core"); the Python twin is
// heidi_engine/_py/core.py and both write byte-identical journal and state files.
#include "heidi/core.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "heidi/clock.hpp"
#include "heidi/errors.hpp"
#include "heidi/fsutil.hpp"
#include "heidi/journal.hpp"
#include "heidi/json.hpp"
#include "heidi/json_limits.hpp"
#include "heidi/run_layout.hpp"
#include "heidi/secrets.hpp"
#include "heidi/status.hpp"
#include "heidi/subprocess.hpp"
#include "core_stages.hpp"
#include "faults.hpp"
#include "runlock.hpp"

extern char** environ;

namespace heidi {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSchema = "heidi.run_state/1";
constexpr std::array<std::string_view, 6> kGuardedCalls = {"start",  "train_now", "pause",
                                                            "resume", "stop",      "reset"};
constexpr std::size_t kMaxStageOutputBytes = std::size_t{1} << 20;
constexpr double kKillGraceS = 2.0;

std::string_view state_of_stage(std::string_view stage) {
    for (std::size_t i = 0; i < kStages.size(); ++i)
        if (kStages[i] == stage) return kRunningStates[i];
    throw std::logic_error("unknown stage");
}

std::optional<std::string_view> stage_of_state(std::string_view state) {
    for (std::size_t i = 0; i < kRunningStates.size(); ++i)
        if (kRunningStates[i] == state) return kStages[i];
    return std::nullopt;
}

bool is_int64_any(const json::Value& v) {
    if (v.is_number_unsigned())
        return v.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX);
    return v.is_number_integer();
}

std::string absolute_dir(const std::string& path) {
    // os.path.abspath: absolute, normalised, no trailing slash.
    std::string out = fs::absolute(fs::path(path)).lexically_normal().string();
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    return out;
}

// The run id of an existing journal's first line (the state file may not exist yet).
std::optional<std::string> first_journal_run_id(const std::string& journal_path) {
    if (!fsutil::exists(journal_path)) return std::nullopt;
    std::string text = fsutil::read_file(journal_path);
    auto newline = text.find('\n');
    json::Value first = json::Value::parse(text.substr(0, newline), nullptr, false);
    if (!first.is_object()) return std::nullopt;
    auto it = first.find("run_id");
    if (it == first.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
}

bool is_head(const json::Value& head) {
    return head.is_object() && head.contains("seq") && is_int64_any(head["seq"]) &&
           !(head["seq"].is_number_integer() && !head["seq"].is_number_unsigned() &&
             head["seq"].get<std::int64_t>() < 0) &&
           head.contains("hash") && head["hash"].is_string();
}

// The last_error of an I/O failure (the same text in both backends).
std::string io_error_text(const OsError& error) {
    std::string text = std::strerror(error.error_code());
    return "io error: " + (error.filename().empty() ? text : error.filename() + ": " + text);
}
std::string io_error_text(const JournalError& error) {
    return std::string("io error: ") + error.what();
}

// Runs body; an I/O failure of the run directory goes to on_error(cause text).
template <typename Body, typename OnError>
auto guard_io(Body&& body, OnError&& on_error) {
    try {
        return body();
    } catch (const OsError& error) {
        return on_error(io_error_text(error));
    } catch (const JournalError& error) {
        return on_error(io_error_text(error));
    }
}

template <std::size_t N>
bool one_of(const json::Value& value, const std::array<std::string_view, N>& names) {
    return value.is_string() &&
           std::find(names.begin(), names.end(), value.get<std::string>()) != names.end();
}

// What is wrong with a parsed run_state.json, or nullopt (the same text as the Python Core).
std::optional<std::string> state_file_problem(const json::Value& saved) {
    if (!saved.is_object()) return "not a JSON object";
    for (const char* key : {"schema", "run_id", "mode", "state", "stage", "current_round",
                            "counts", "last_completed", "last_error", "journal_head"})
        if (!saved.contains(key)) return std::string("missing key '") + key + "'";
    auto invalid = [](const char* key) { return std::string("invalid value for '") + key + "'"; };
    if (saved["schema"] != kSchema) return invalid("schema");
    if (!saved["run_id"].is_string()) return invalid("run_id");
    if (saved["mode"] != "full" && saved["mode"] != "collect") return invalid("mode");
    if (!one_of(saved["state"], kStatusStates)) return invalid("state");
    const auto& stage_value = saved["stage"];
    if (!stage_value.is_null() && !one_of(stage_value, kStages)) return invalid("stage");
    if (!is_int64_any(saved["current_round"])) return invalid("current_round");
    if (!saved["counts"].is_object()) return invalid("counts");
    for (const auto& [key, value] : saved["counts"].items())
        if (!is_int64_any(value)) return invalid("counts");
    const auto& last = saved["last_completed"];
    if (!last.is_null() &&
        !(last.is_object() && last.contains("round") && is_int64_any(last["round"]) &&
          last.contains("stage") && one_of(last["stage"], kStages)))
        return invalid("last_completed");
    const auto& error = saved["last_error"];
    if (!error.is_null() && !error.is_string()) return invalid("last_error");
    if (!is_head(saved["journal_head"])) return invalid("journal_head");
    return std::nullopt;
}

}  // namespace

struct Core::Impl {
    Config config;
    std::shared_ptr<const Clock> clock;
    std::string out_dir;
    std::string python;
    std::string state_path;
    std::map<std::string, std::vector<std::string>, std::less<>> stage_argv;
    std::string run_id;
    std::unique_ptr<RunLock> run_lock;  // before journal: released after it closes

    mutable std::mutex mu;        // guards the fields below and the journal
    std::mutex tick_mu;           // one tick at a time
    mutable std::mutex status_mu;  // guards status_line only: status never waits on I/O
    std::string status_line;

    std::string state{kIdle};
    std::string mode;
    bool paused = false;
    std::optional<std::string> stage;
    std::int64_t round = 0;
    StageCounts counts = zero_counts();
    bool train_now_pending = false;
    bool stop_requested = false;
    std::optional<std::pair<std::int64_t, std::string>> last_completed;
    std::optional<std::string> last_error;
    std::shared_ptr<CancelToken> cancel;  // set while a stage process runs
    bool closed = false;
    std::string last_refusal;
    EventObserver observer;

    std::unique_ptr<JournalWriter> journal;
    std::unique_ptr<StatusWriter> status_writer;
    JournalHead last_head;  // the journal's head at the last state write

    explicit Impl(Config cfg);

    // ----- construction -----
    std::vector<std::string> stage_base_argv(std::string_view stage) const;
    std::optional<json::Value> load_saved_state() const;
    std::string choose_run_id(const std::optional<json::Value>& saved,
                              const std::string& journal_path) const;
    void restore(const json::Value& saved);
    std::vector<json::Value> verified_events_after_head(const std::string& journal_path,
                                                        const std::optional<json::Value>& saved) const;
    [[noreturn]] void refuse_resume(const std::string& journal_path, std::int64_t line,
                                    const std::string& reason) const;
    void replay(const std::vector<json::Value>& events);
    void enter_io_error(const std::string& cause, std::optional<std::string> failed_stage = {});
    // A call's journal and state writes; an I/O failure puts the Core in ERROR (mu held).
    template <typename Body>
    void guard_calls(Body&& body) {
        guard_io(body, [this](const std::string& cause) { enter_io_error(cause); });
    }

    // ----- status -----
    std::string display_state() const { return paused ? std::string(kPaused) : state; }
    bool running() const { return stage_of_state(state).has_value(); }
    bool waiting() const;
    void write_state();

    // ----- journal -----
    void append(std::string_view event_type, std::string_view message,
                std::string_view stage_name = "pipeline", std::string_view level = "info",
                std::optional<std::int64_t> event_round = std::nullopt,
                const Counters& counters_delta = {}, const Counters& usage_delta = {},
                const std::vector<std::string>& artifact_paths = {});

    // ----- guards -----
    std::vector<std::string_view> allowed_calls() const;
    void check_open(std::string_view call) const;
    void require(std::string_view call) const;

    // ----- transitions -----
    void clear_flags();
    void begin_fresh(const std::string& new_mode);
    void enter_round(std::int64_t new_round);
    void begin_resumed(const std::string& new_mode);
    std::optional<std::string_view> stage_after(std::string_view done) const;
    std::optional<std::string> train_now_refusal() const;
    void stopped();
    void set_paused(bool value);  // pause() and resume()
    void set_running(std::string_view stage_name);
    void set_idle();

    // ----- ticking -----
    std::optional<std::string> run_stage_process(std::string_view stage_name,
                                                 std::int64_t stage_round,
                                                 const std::shared_ptr<CancelToken>& token);
    std::vector<std::pair<std::string, std::string>> stage_env() const;
    void on_stage_line(std::string_view stage_name, std::int64_t stage_round,
                       std::string_view line);
    void finish_stage(std::string_view stage_name, std::int64_t stage_round, double started,
                      const std::optional<std::string>& failure);
    void stage_succeeded(std::string_view stage_name, std::int64_t stage_round, double started);
    void round_evaluated(std::int64_t done_round);
};

Core::Impl::Impl(Config cfg) : config(std::move(cfg)) {
    if (!config.fake_time.empty())
        clock = std::make_shared<FakeClock>(config.fake_time);
    else
        clock = std::make_shared<SystemClock>();
    mode = config.pipeline_mode;
    out_dir = absolute_dir(config.out_dir);
    python = config.python.empty() ? "python3" : config.python;
    for (auto stage_name : kStages) stage_argv.emplace(std::string(stage_name), stage_base_argv(stage_name));

    fsutil::make_dirs(out_dir);
    faults::load_from_env();
    run_lock = std::make_unique<RunLock>(out_dir);
    // Check what OUT_DIR holds (changing nothing), then clean up and continue it.
    state_path = out_dir + "/state/run_state.json";
    std::string journal_path = out_dir + "/journal/events.jsonl";
    auto saved = load_saved_state();
    run_id = choose_run_id(saved, journal_path);
    auto trailing = verified_events_after_head(journal_path, saved);
    remove_temp_files(out_dir);
    if (saved) restore(*saved);
    replay(trailing);
    journal = std::make_unique<JournalWriter>(journal_path, run_id, config.fsync, clock);
    status_writer = std::make_unique<StatusWriter>(state_path, config.fsync);
    std::lock_guard lock(mu);
    write_state();
}

std::vector<std::string> Core::Impl::stage_base_argv(std::string_view stage_name) const {
    const std::string* command = nullptr;
    if (stage_name == "generate") command = &config.stage_cmd_generate;
    else if (stage_name == "validate") command = &config.stage_cmd_validate;
    else if (stage_name == "test") command = &config.stage_cmd_test;
    else if (stage_name == "train") command = &config.stage_cmd_train;
    else command = &config.stage_cmd_eval;
    if (!command->empty()) {
        std::string env_name = "HEIDI_STAGE_CMD_";
        for (char c : stage_name) env_name += static_cast<char>(c - 'a' + 'A');
        return split_stage_command(env_name, *command);
    }
    return {python, "-m", "heidi_engine.stages." + std::string(stage_name)};
}

std::optional<json::Value> Core::Impl::load_saved_state() const {
    if (!fsutil::exists(state_path)) return std::nullopt;
    std::string text = fsutil::read_file(state_path);
    json::Value saved;
    std::optional<std::string> problem;
    if (json::nesting_exceeds(text)) {
        problem = "not valid JSON";
    } else {
        saved = json::Value::parse(text, nullptr, false);
        problem = saved.is_discarded() ? std::optional<std::string>("not valid JSON")
                                       : state_file_problem(saved);
    }
    if (problem) throw JournalError("invalid state file " + state_path + ": " + *problem);
    return saved;
}

std::string Core::Impl::choose_run_id(const std::optional<json::Value>& saved,
                                      const std::string& journal_path) const {
    std::optional<std::string> existing =
        saved ? std::optional<std::string>((*saved)["run_id"].get<std::string>())
              : first_journal_run_id(journal_path);
    if (existing) {
        if (!config.run_id.empty() && config.run_id != *existing)
            throw ConfigError("invalid value for RUN_ID: " + json::python_repr(config.run_id) +
                              " (OUT_DIR holds run " + json::python_repr(*existing) + ")");
        return *existing;
    }
    return config.run_id.empty() ? RunId::generate(*clock) : config.run_id;
}

void Core::Impl::restore(const json::Value& saved) {
    // Continue a run: progress comes back, nothing is running (a crash ended it).
    mode = saved["mode"].get<std::string>();
    round = saved["current_round"].get<std::int64_t>();
    for (auto& [key, value] : counts) {
        auto it = saved["counts"].find(key);
        if (it != saved["counts"].end()) value = it->get<std::int64_t>();
    }
    const auto& last = saved["last_completed"];
    if (!last.is_null())
        last_completed.emplace(last["round"].get<std::int64_t>(), last["stage"].get<std::string>());
    if (saved["state"] == kError) {
        state = kError;
        if (!saved["stage"].is_null()) stage = saved["stage"].get<std::string>();
        if (!saved["last_error"].is_null()) last_error = saved["last_error"].get<std::string>();
    }
}

std::vector<json::Value> Core::Impl::verified_events_after_head(
    const std::string& journal_path, const std::optional<json::Value>& saved) const {
    // Only complete lines count (a torn last line is the journal writer's to recover).
    std::int64_t head_seq = 0;
    std::string head_hash;
    std::string saved_run_id;
    if (saved) {
        const auto& head = (*saved)["journal_head"];
        head_seq = head["seq"].get<std::int64_t>();
        head_hash = head["hash"].get<std::string>();
        saved_run_id = (*saved)["run_id"].get<std::string>();
    }
    if (!fsutil::exists(journal_path)) {
        if (head_seq > 0) refuse_resume(journal_path, 1, "journal missing");
        return {};
    }
    std::string data = fsutil::read_file(journal_path);
    auto last_newline = data.rfind('\n');
    data.resize(last_newline == std::string::npos ? 0 : last_newline + 1);
    const VerifyResult result =
        verify_chain(data, saved ? &saved_run_id : nullptr, JournalHead{head_seq, head_hash});
    if (!result.ok) refuse_resume(journal_path, result.first_bad_line, result.reason);
    std::vector<json::Value> events;
    std::size_t start = 0;
    for (std::int64_t number = 1; start < data.size(); ++number) {
        std::size_t end = data.find('\n', start);
        if (number > head_seq) events.push_back(json::Value::parse(data.substr(start, end - start)));
        start = end + 1;
    }
    return events;
}

void Core::Impl::refuse_resume(const std::string& journal_path, std::int64_t line,
                               const std::string& reason) const {
    throw JournalError("cannot resume " + out_dir + ": journal " + journal_path +
                       " fails verification at line " + std::to_string(line) + " (" + reason +
                       "); nothing was changed");
}

void Core::Impl::replay(const std::vector<json::Value>& events) {
    // Bring the restored progress up to journal lines the state file never saw: a crash
    // can land between a journal append and the state write that follows.
    std::optional<std::string> unfinished;  // the stage of a stage_start without a good end
    auto to_idle = [this] {
        set_idle();
        last_error.reset();
    };
    for (const auto& event : events) {
        const std::string kind = event["event_type"].get<std::string>();
        const std::string event_stage = event["stage"].get<std::string>();
        if (kind == "pipeline_start") {
            std::string message = event["message"].get<std::string>();
            std::string first = message.substr(0, message.find(' '));
            if (first == "mode=full" || first == "mode=collect") mode = first.substr(5);
            round = 0;
            for (auto& entry : counts) entry.second = 0;
            to_idle();
        } else if (kind == "pipeline_resume") {
            to_idle();
        } else if (kind == "round_start") {
            round = event["round"].get<std::int64_t>();
            for (auto& entry : counts) entry.second = 0;
        } else if (kind == "stage_start") {
            unfinished = event_stage;
        } else if (kind == "stage_end" && event["level"] == kStageOkLevel) {
            unfinished.reset();
            round = event["round"].get<std::int64_t>();
            last_completed.emplace(round, event_stage);
            for (const auto& [key, value] : event["counters_delta"].items())
                for (auto& entry : counts)
                    if (entry.first == key) entry.second = value.get<std::int64_t>();
        } else if (kind == "pipeline_error") {
            state = kError;
            stage = unfinished;
            last_error = event["message"].get<std::string>();
        }
    }
}

void Core::Impl::enter_io_error(const std::string& cause, std::optional<std::string> failed_stage) {
    // Journaling and saving the ERROR are best effort: the failing disk may refuse them too,
    // and every file is still valid as it stands (mu held).
    state = kError;
    stage = std::move(failed_stage);
    last_error = cause;
    paused = stop_requested = train_now_pending = false;
    guard_io([&] { append("pipeline_error", cause, "pipeline", "error"); },
             [](const std::string&) {});
    guard_io([&] { write_state(); }, [](const std::string&) {});
}

bool Core::Impl::waiting() const {
    // IDLE in collect mode with the current round's data ready for train-now.
    if (state != kIdle || mode != "collect" || !last_completed) return false;
    const auto& [done_round, done_stage] = *last_completed;
    bool ready = done_stage == "test" || (done_stage == "validate" && !config.run_unit_tests);
    return ready && done_round == round;
}

void Core::Impl::write_state() {
    // Encoded by hand in run_state.json key order: json::dumps of the same object, without
    // building it (this runs at every transition).
    // A journal that cannot write its buffered lines refuses to give its head: the status
    // snapshot still shows this call's state (with the last head written), the file is not
    // written (it would count lines that never reached the journal).
    std::exception_ptr journal_failure;
    try {
        last_head = journal->head();
    } catch (const JournalError&) {
        journal_failure = std::current_exception();
    }
    const JournalHead& head = last_head;
    const auto text = [](std::string& out, std::string_view value) { json::append_string(out, value); };
    const auto optional_text = [&](std::string& out, const std::optional<std::string>& value) {
        if (value) text(out, *value);
        else out.append("null");
    };
    const auto boolean = [](std::string& out, bool value) { out.append(value ? "true" : "false"); };
    std::string encoded;
    encoded.reserve(512);
    encoded.append(R"({"schema":)");
    text(encoded, kSchema);
    encoded.append(R"(,"run_id":)");
    text(encoded, run_id);
    encoded.append(R"(,"mode":)");
    text(encoded, mode);
    encoded.append(R"(,"state":)");
    text(encoded, display_state());
    encoded.append(R"(,"paused":)");
    boolean(encoded, paused);
    encoded.append(R"(,"stage":)");
    optional_text(encoded, stage);
    encoded.append(R"(,"current_round":)");
    json::append_int(encoded, round);
    encoded.append(R"(,"rounds_total":)");
    json::append_int(encoded, config.rounds);
    encoded.append(R"(,"last_write_ts":)");
    text(encoded, clock->now_iso());
    encoded.append(R"(,"counts":{)");
    for (std::size_t i = 0; i < counts.size(); ++i) {
        if (i) encoded.push_back(',');
        text(encoded, counts[i].first);
        encoded.push_back(':');
        json::append_int(encoded, counts[i].second);
    }
    encoded.append(R"(},"train_now_pending":)");
    boolean(encoded, train_now_pending);
    encoded.append(R"(,"stop_requested":)");
    boolean(encoded, stop_requested);
    encoded.append(R"(,"last_completed":)");
    if (last_completed) {
        encoded.append(R"({"round":)");
        json::append_int(encoded, last_completed->first);
        encoded.append(R"(,"stage":)");
        text(encoded, last_completed->second);
        encoded.push_back('}');
    } else {
        encoded.append("null");
    }
    encoded.append(R"(,"last_error":)");
    optional_text(encoded, last_error ? std::optional(scrub_secrets(*last_error)) : std::nullopt);
    encoded.append(R"(,"journal_head":{"seq":)");
    json::append_int(encoded, head.seq);
    encoded.append(R"(,"hash":)");
    text(encoded, head.hash);
    // Not in SPEC's key list: appended after it, so readers ask the Core instead of
    // re-deriving the rule (it depends on RUN_UNIT_TESTS, which the file does not hold).
    encoded.append(R"(},"waiting_for_train_now":)");
    boolean(encoded, waiting());
    encoded.push_back('}');
    {
        // The snapshot first: if the file write fails, status still tells the truth.
        std::lock_guard lock(status_mu);
        status_line = encoded;
    }
    if (journal_failure) std::rethrow_exception(journal_failure);
    status_writer->write_encoded(encoded);
}

void Core::Impl::append(std::string_view event_type, std::string_view message,
                        std::string_view stage_name, std::string_view level,
                        std::optional<std::int64_t> event_round, const Counters& counters_delta,
                        const Counters& usage_delta,
                        const std::vector<std::string>& artifact_paths) {
    std::int64_t seq = journal->append(event_type, message, stage_name, event_round.value_or(round),
                                       level, counters_delta, usage_delta, artifact_paths);
    if (observer) observer(seq);
}

std::vector<std::string_view> Core::Impl::allowed_calls() const {
    bool is_running = running();
    bool is_waiting = waiting();
    std::vector<std::string_view> allowed;
    for (auto call : kGuardedCalls) {
        bool ok = false;
        if (call == "start") ok = (state == kIdle && !is_waiting) || state == kError;
        else if (call == "train_now") ok = is_waiting && !paused;
        else if (call == "pause") ok = (is_running || is_waiting) && !paused;
        else if (call == "resume") ok = paused;
        else if (call == "stop") ok = is_running || is_waiting;
        else ok = state == kIdle || state == kError;  // reset
        if (ok) allowed.push_back(call);
    }
    return allowed;
}

void Core::Impl::check_open(std::string_view call) const {
    if (closed) throw TransitionError("cannot " + std::string(call) + ": the core is shut down");
}

void Core::Impl::require(std::string_view call) const {
    check_open(call);
    auto allowed = allowed_calls();
    if (std::find(allowed.begin(), allowed.end(), call) != allowed.end()) return;
    std::string list;
    for (auto name : allowed) {
        if (!list.empty()) list += ", ";
        list += name;
    }
    throw TransitionError("cannot " + std::string(call) + " in state " + display_state() +
                          " (allowed: " + list + ")");
}

void Core::Impl::clear_flags() {
    paused = false;
    stop_requested = false;
    train_now_pending = false;
    last_error.reset();
}

void Core::Impl::set_paused(bool value) {
    // The call's own check, the flag, its event and the state write (mu held).
    require(value ? "pause" : "resume");
    paused = value;
    const std::string_view event = value ? "paused" : "resumed";  // also the message
    guard_calls([&] {
        append(event, event);
        write_state();
    });
}

void Core::Impl::set_running(std::string_view stage_name) {
    state = state_of_stage(stage_name);
    stage = std::string(stage_name);
}

void Core::Impl::set_idle() {
    state = kIdle;
    stage.reset();
}

void Core::Impl::begin_fresh(const std::string& new_mode) {
    clear_flags();
    mode = new_mode;
    round = 0;
    if (journal->head().seq > 0)  // a restart before any stage completed: still one run
        append("pipeline_resume", "resume round=1 stage=generate");
    else
        append("pipeline_start", "mode=" + mode + " rounds=" + std::to_string(config.rounds));
    enter_round(1);
}

void Core::Impl::enter_round(std::int64_t new_round) {
    round = new_round;
    for (auto& entry : counts) entry.second = 0;
    append("round_start", "round " + std::to_string(round) + "/" + std::to_string(config.rounds));
    set_running("generate");
}

void Core::Impl::begin_resumed(const std::string& new_mode) {
    auto [done_round, done_stage] = *last_completed;
    if (done_stage == "eval" && done_round >= config.rounds)
        throw TransitionError("run complete: all " + std::to_string(config.rounds) +
                              " rounds done");
    clear_flags();
    mode = new_mode;
    if (done_stage == "eval") {
        round = done_round + 1;
        append("pipeline_resume", "resume round=" + std::to_string(round) + " stage=generate");
        enter_round(round);
        return;
    }
    round = done_round;
    auto next = stage_after(done_stage);
    if (!next) {  // collect mode: the round waits for train-now
        set_idle();
        append("pipeline_resume", "resume round=" + std::to_string(round) + " stage=waiting");
        return;
    }
    set_running(*next);
    append("pipeline_resume",
           "resume round=" + std::to_string(round) + " stage=" + std::string(*next));
}

std::optional<std::string_view> Core::Impl::stage_after(std::string_view done) const {
    // The stage that follows a successful one in this round (nullopt: wait for train-now).
    if (done == "generate") return "validate";
    if (done == "validate" && config.run_unit_tests) return "test";
    if (done == "validate" || done == "test") {
        if (mode == "full") return "train";
        return std::nullopt;
    }
    if (done == "train") return "eval";
    throw std::logic_error("no stage after eval within a round");
}

std::optional<std::string> Core::Impl::train_now_refusal() const {
    if (paused) return "paused";
    if (mode != "collect") return "train-now needs collect mode (mode is " + mode + ")";
    if (state != kIdle) return "not waiting for train-now (state " + state + ")";
    if (!waiting()) return "no collected round waiting for training";
    return std::nullopt;
}

void Core::Impl::stopped() {
    append("pipeline_stop", "stopped");
    set_idle();
    paused = false;
    stop_requested = false;
    train_now_pending = false;
}

std::vector<std::pair<std::string, std::string>> Core::Impl::stage_env() const {
    // The Core's environment, overlaid with the config and the run's identity.
    std::map<std::string, std::string> merged;
    for (char** entry = environ; entry && *entry; ++entry) {
        std::string_view item(*entry);
        auto eq = item.find('=');
        if (eq == std::string_view::npos) continue;
        merged[std::string(item.substr(0, eq))] = std::string(item.substr(eq + 1));
    }
    for (auto& [key, value] : config.to_env()) merged[key] = value;
    merged["OUT_DIR"] = out_dir;
    merged["HEIDI_PYTHON"] = python;
    merged["HEIDI_RUN_ID"] = run_id;
    merged.erase(faults::kEnv);  // fault points target the runner, not its stages
    return {merged.begin(), merged.end()};
}

void Core::Impl::on_stage_line(std::string_view stage_name, std::int64_t stage_round,
                               std::string_view line) {
    auto event = parse_heidi_line(line);
    if (!event) return;
    std::lock_guard lock(mu);
    append(event->event_type, event->message, stage_name, event->level, stage_round,
           event->counters_delta, event->usage_delta, event->artifact_paths);
    if (faults::armed()) faults::hit("stage_line." + std::string(stage_name), out_dir);
}

std::optional<std::string> Core::Impl::run_stage_process(
    std::string_view stage_name, std::int64_t stage_round,
    const std::shared_ptr<CancelToken>& token) {
    // Outputs of an earlier (failed or interrupted) attempt are discarded: a stale file
    // must not pass for this run's (fail-closed).
    auto required = required_outputs(stage_name, stage_round, config.run_unit_tests);
    for (const auto& rel : stage_artifacts(stage_name, stage_round, config.run_unit_tests)) {
        std::string path = out_dir + "/" + rel;
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw OsError(errno, path);
    }
    std::vector<std::string> argv = stage_argv.find(stage_name)->second;
    argv.insert(argv.end(), {"--round", std::to_string(stage_round), "--out-dir", out_dir});
    double timeout_s = config.stage_timeout_for(stage_name);
    RunOptions options;
    options.env = stage_env();
    options.cwd = out_dir;
    options.max_output_bytes = kMaxStageOutputBytes;
    options.kill_grace_s = kKillGraceS;
    options.cancel = token;
    options.on_stdout_line = [this, stage_name, stage_round](std::string_view line) {
        on_stage_line(stage_name, stage_round, line);
    };
    RunResult result;
    try {
        result = Subprocess::run(argv, timeout_s, options);
    } catch (const SpawnError& error) {
        return "failed: spawn error: cannot execute '" + error.path() +
               "': " + std::strerror(error.error_code());
    }
    std::string log = result.stdout_bytes;
    if (!result.stderr_bytes.empty()) log += "\n--- stderr ---\n" + result.stderr_bytes;
    log = scrub_secrets(log);  // what a stage or its programs print may hold a secret
    fsutil::make_dirs(out_dir + "/logs");
    fsutil::atomic_write(out_dir + "/logs/" + std::string(stage_name) + "_round_" +
                             std::to_string(stage_round) + ".log",
                         log, config.fsync);
    if (result.cancelled) return std::nullopt;  // the tick sees stop_requested
    if (result.timed_out) return "failed: timed out after " + json::float_repr(timeout_s) + " s";
    if (result.signal != 0) return "failed: killed by signal " + std::to_string(result.signal);
    if (result.exit_code != 0) return "failed: exit code " + std::to_string(result.exit_code);
    for (const auto& rel : required) {
        std::string path = out_dir + "/" + rel;
        std::error_code ec;
        if (!fs::is_regular_file(path, ec)) return "failed: invalid output: missing " + rel;
        if (rel.ends_with(".json") && !is_json_object_file(path))
            return "failed: invalid output: " + rel + " is not a JSON object";
    }
    return std::nullopt;
}

void Core::Impl::finish_stage(std::string_view stage_name, std::int64_t stage_round, double started,
                              const std::optional<std::string>& failure) {
    // Journal the stage's end and take the transition it leads to (mu held).
    if (stop_requested) {
        append("stage_end", "cancelled: stop requested", stage_name, kStageCancelledLevel);
        stopped();
    } else if (failure) {
        append("stage_end", *failure, stage_name, kStageFailedLevel);
        append("pipeline_error", *failure, "pipeline", "error");
        state = kError;
        last_error = *failure;
        paused = false;
    } else {
        stage_succeeded(stage_name, stage_round, started);
    }
    write_state();
    if (faults::armed()) faults::hit("stage_committed." + std::string(stage_name), out_dir);
}

void Core::Impl::stage_succeeded(std::string_view stage_name, std::int64_t stage_round,
                                 double started) {
    auto elapsed_ms = static_cast<std::int64_t>((clock->monotonic() - started) * 1000.0);
    Counters counters;
    std::vector<std::string> artifacts;
    auto count_keys = stage_counters(stage_name, config.run_unit_tests);
    for (auto key : count_keys) {
        // A mock stage did not run: it has no outputs to count (docs/design.md).
        std::optional<std::int64_t> lines;
        std::string rel = data_file_for_count(key, stage_round);
        if (!config.mock_subprocesses) lines = count_lines(out_dir + "/" + rel);
        counters.emplace_back(std::string(key), lines.value_or(0));
        for (auto& entry : counts)
            if (entry.first == key) entry.second = lines.value_or(0);
        // A data stage's artifacts are its counted files.
        if (lines) artifacts.push_back(std::move(rel));
    }
    if (count_keys.empty() && !config.mock_subprocesses) {
        for (auto& rel : stage_artifacts(stage_name, stage_round, config.run_unit_tests)) {
            std::error_code ec;
            if (fs::exists(out_dir + "/" + rel, ec)) artifacts.push_back(std::move(rel));
        }
    }
    append("stage_end", "ok in " + std::to_string(elapsed_ms) + " ms", stage_name, kStageOkLevel,
           std::nullopt, counters, {}, artifacts);
    last_completed.emplace(stage_round, std::string(stage_name));
    if (faults::armed()) faults::hit("stage_ended." + std::string(stage_name), out_dir);
    if (stage_name == "eval") {
        round_evaluated(stage_round);
        return;
    }
    auto next = stage_after(stage_name);
    if (next)
        set_running(*next);
    else
        set_idle();  // waiting for train-now
}

void Core::Impl::round_evaluated(std::int64_t done_round) {
    if (mode == "collect") append("train_now_complete", "round " + std::to_string(done_round));
    if (done_round < config.rounds) {
        enter_round(done_round + 1);
        return;
    }
    append("pipeline_complete", "complete rounds=" + std::to_string(config.rounds));
    set_idle();
    paused = false;
}

// ----- public API ---------------------------------------------------------------------

Core::Core(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}

Core::~Core() {
    try {
        shutdown();
    } catch (...) {  // a destructor must not throw; shutdown() reports errors when called
    }
}

void Core::start(std::string_view mode) {
    auto& d = *impl_;
    std::lock_guard lock(d.mu);
    d.require("start");
    if (mode != "full" && mode != "collect")
        throw ConfigError("invalid value for PIPELINE_MODE: " + json::python_repr(mode) +
                          " (valid: full, collect)");
    d.guard_calls([&] {
        if (!d.last_completed)
            d.begin_fresh(std::string(mode));
        else
            d.begin_resumed(std::string(mode));
        d.write_state();
    });
}

void Core::start() { start(impl_->config.pipeline_mode); }

std::string Core::tick() {
    auto& d = *impl_;
    std::lock_guard tick_lock(d.tick_mu);
    std::string stage_name;
    std::int64_t stage_round = 0;
    double started = 0.0;
    std::shared_ptr<CancelToken> token;
    {
        std::lock_guard lock(d.mu);
        d.check_open("tick");
        auto current = stage_of_state(d.state);
        if (d.paused || !current) return d.display_state();
        stage_name = std::string(*current);
        stage_round = d.round;
        if (stage_name == "train") d.train_now_pending = false;
        bool finished = guard_io(
            [&] {
                d.append("stage_start", stage_name + " round " + std::to_string(stage_round),
                         stage_name);
                if (faults::armed()) faults::hit("stage_started." + stage_name, d.out_dir);
                started = d.clock->monotonic();
                if (!d.config.mock_subprocesses) return false;
                d.finish_stage(stage_name, stage_round, started, std::nullopt);
                return true;
            },
            [&](const std::string& cause) {
                d.enter_io_error(cause, stage_name);
                return true;
            });
        if (finished) return d.display_state();
        token = std::make_shared<CancelToken>();
        d.cancel = token;
    }
    std::optional<std::string> failure;
    try {
        // Writing its progress, log or outputs failed: the stage failed (fail-closed).
        failure = guard_io([&] { return d.run_stage_process(stage_name, stage_round, token); },
                           [](const std::string& cause) {
                               return std::optional<std::string>("failed: " + cause);
                           });
    } catch (...) {
        std::lock_guard lock(d.mu);
        d.cancel.reset();
        throw;
    }
    std::lock_guard lock(d.mu);
    // Same lock section as the finish, so a stop() sees the stage either running (and
    // cancels it) or finished (and stops between stages).
    d.cancel.reset();
    guard_io(
        [&] {
            if (faults::armed()) faults::hit("stage_exited." + stage_name, d.out_dir);
            d.finish_stage(stage_name, stage_round, started, failure);
        },
        [&](const std::string& cause) { d.enter_io_error(cause, stage_name); });
    return d.display_state();
}

std::string Core::run_until_idle() {
    while (true) {
        std::string state = tick();
        if (state == kIdle || state == kError || state == kPaused) return state;
    }
}

bool Core::train_now() {
    auto& d = *impl_;
    std::lock_guard lock(d.mu);
    d.check_open("train_now");
    if (auto refusal = d.train_now_refusal()) {
        d.last_refusal = *refusal;
        return false;
    }
    d.last_refusal.clear();
    d.set_running("train");
    d.train_now_pending = true;
    return guard_io(
        [&] {
            d.append("train_now_trigger", "train now round " + std::to_string(d.round));
            d.write_state();
            return true;
        },
        [&](const std::string& cause) {
            d.enter_io_error(cause);
            d.last_refusal = cause;
            return false;
        });
}

std::string Core::last_refusal() const {
    std::lock_guard lock(impl_->mu);
    return impl_->last_refusal;
}

void Core::pause() {
    std::lock_guard lock(impl_->mu);
    impl_->set_paused(true);
}

void Core::resume() {
    std::lock_guard lock(impl_->mu);
    impl_->set_paused(false);
}

void Core::stop() {
    auto& d = *impl_;
    std::lock_guard lock(d.mu);
    d.require("stop");
    d.guard_calls([&] {
        if (d.cancel) {
            if (!d.stop_requested) {
                d.stop_requested = true;
                d.cancel->cancel();
                d.write_state();
            }
            return;
        }
        d.stopped();
        d.write_state();
    });
}

void Core::reset() {
    auto& d = *impl_;
    std::lock_guard lock(d.mu);
    d.require("reset");
    d.set_idle();
    d.clear_flags();
    d.guard_calls([&] { d.write_state(); });
}

std::string Core::get_status_json() const {
    std::lock_guard lock(impl_->status_mu);
    return impl_->status_line;
}

void Core::shutdown() {
    auto& d = *impl_;
    {
        std::lock_guard lock(d.mu);
        if (d.closed) return;
        if (d.cancel && !d.stop_requested) {
            d.stop_requested = true;
            d.cancel->cancel();
        }
    }
    std::lock_guard tick_lock(d.tick_mu);
    std::lock_guard lock(d.mu);
    if (d.closed) return;
    d.closed = true;
    try {
        d.journal->close();
    } catch (...) {
        d.run_lock->release();
        throw;
    }
    d.run_lock->release();
}

void Core::set_event_observer(EventObserver observer) {
    std::lock_guard lock(impl_->mu);
    impl_->observer = std::move(observer);
}

const std::string& Core::out_dir() const noexcept { return impl_->out_dir; }
const std::string& Core::run_id() const noexcept { return impl_->run_id; }

}  // namespace heidi
