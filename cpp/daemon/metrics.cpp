#include "metrics.hpp"

#include <cstdio>
#include <string_view>

#include <heidi/run_layout.hpp>

namespace heidid {
namespace {

std::string seconds(std::int64_t ms) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ms) / 1000.0);
    return buf;
}

std::string number(const heidi::json::Value& v) {
    if (v.is_number_float()) return heidi::json::float_repr(v.get<double>());
    return v.dump();
}

std::int64_t int_field(const heidi::json::Value& obj, const char* name) {
    if (!obj.is_object()) return 0;
    auto it = obj.find(name);
    return (it != obj.end() && it->is_number_integer()) ? it->get<std::int64_t>() : 0;
}

class Writer {
public:
    void family(std::string_view name, std::string_view kind, std::string_view help) {
        line("# HELP ", name, " ", help);
        line("# TYPE ", name, " ", kind);
    }
    template <typename... Parts>
    void line(const Parts&... parts) {
        (out.append(parts), ...);
        out.push_back('\n');
    }
    std::string out;
};

}  // namespace

std::string render_metrics(const std::string& status_json, const JournalAggregates& journal,
                           const std::vector<heidi::json::Value>& eval_rounds) {
    auto status = heidi::json::Value::parse(status_json, nullptr, false);
    if (!status.is_object()) status = heidi::json::Value::object();
    std::string state = status.contains("state") && status["state"].is_string()
                            ? status["state"].get<std::string>()
                            : std::string();
    bool paused = status.contains("paused") && status["paused"].is_boolean() &&
                  status["paused"].get<bool>();
    Writer w;
    w.family("heidi_state", "gauge", "Current run state (1 for the state the run is in).");
    for (auto s : heidi::kStatusStates)
        w.line("heidi_state{state=\"", s, "\"} ", s == state ? "1" : "0");
    w.family("heidi_paused", "gauge", "1 while the run is paused.");
    w.line("heidi_paused ", paused ? "1" : "0");
    w.family("heidi_round", "gauge", "Current round (0 before the first round).");
    w.line("heidi_round ", std::to_string(int_field(status, "current_round")));
    w.family("heidi_rounds", "gauge", "Rounds the run is configured for.");
    w.line("heidi_rounds ", std::to_string(int_field(status, "rounds_total")));

    w.family("heidi_stage_runs_total", "counter", "Stage runs by outcome (ok, failed, cancelled).");
    for (std::size_t s = 0; s < heidi::kStages.size(); ++s)
        for (std::size_t o = 0; o < kStageOutcomes.size(); ++o)
            w.line("heidi_stage_runs_total{stage=\"", heidi::kStages[s], "\",outcome=\"",
                   kStageOutcomes[o], "\"} ", std::to_string(journal.stages[s].runs[o]));
    w.family("heidi_stage_duration_seconds", "summary", "Wall time of finished stage runs.");
    for (std::size_t s = 0; s < heidi::kStages.size(); ++s) {
        const StageStats& stats = journal.stages[s];
        std::int64_t runs = 0;
        for (auto r : stats.runs) runs += r;
        w.line("heidi_stage_duration_seconds_sum{stage=\"", heidi::kStages[s], "\"} ",
               seconds(stats.duration_ms_sum));
        w.line("heidi_stage_duration_seconds_count{stage=\"", heidi::kStages[s], "\"} ",
               std::to_string(runs));
    }
    w.family("heidi_stage_last_duration_seconds", "gauge", "Wall time of the latest run of a stage.");
    for (std::size_t s = 0; s < heidi::kStages.size(); ++s)
        w.line("heidi_stage_last_duration_seconds{stage=\"", heidi::kStages[s], "\"} ",
               seconds(journal.stages[s].last_duration_ms));

    w.family("heidi_samples_total", "counter", "Samples written, by outcome, over all rounds.");
    for (std::size_t i = 0; i < heidi::kCountFiles.size(); ++i)
        w.line("heidi_samples_total{outcome=\"", heidi::kCountFiles[i].second, "\"} ",
               std::to_string(journal.samples[i]));
    w.family("heidi_round_samples", "gauge", "Samples of the current round, by outcome.");
    const heidi::json::Value counts =
        status.contains("counts") ? status["counts"] : heidi::json::Value::object();
    for (const auto& [counter, outcome] : heidi::kCountFiles)
        w.line("heidi_round_samples{outcome=\"", outcome, "\"} ",
               std::to_string(int_field(counts, std::string(counter).c_str())));

    for (auto it = eval_rounds.rbegin(); it != eval_rounds.rend(); ++it) {
        const auto& pass = (*it)["pass_at_1"];
        if (pass.is_null()) continue;
        w.family("heidi_pass_at_1", "gauge", "pass@1 of the latest evaluated round (0..1).");
        w.line("heidi_pass_at_1 ", number(pass));
        w.family("heidi_pass_at_1_round", "gauge", "Round of the latest evaluation.");
        w.line("heidi_pass_at_1_round ", number((*it)["round"]));
        break;
    }

    w.family("heidi_teacher_tokens_total", "counter",
             "Teacher tokens paid for, by kind (answers from the response cache cost none).");
    w.line("heidi_teacher_tokens_total{kind=\"prompt\"} ", std::to_string(journal.teacher_usage[0]));
    w.line("heidi_teacher_tokens_total{kind=\"completion\"} ", std::to_string(journal.teacher_usage[1]));
    w.family("heidi_teacher_cost_total", "counter",
             "Teacher cost in the unit of HEIDI_TEACHER_PRICE_* (0 without prices).");
    w.line("heidi_teacher_cost_total ",
           heidi::json::float_repr(static_cast<double>(journal.teacher_usage[2]) / 1e6));
    w.family("heidi_teacher_cache_hits_total", "counter", "Teacher answers taken from the response cache.");
    w.line("heidi_teacher_cache_hits_total ", std::to_string(journal.teacher_cache_hits));

    w.family("heidi_journal_seq", "gauge", "Sequence number of the last journal event.");
    w.line("heidi_journal_seq ", std::to_string(journal.last_seq));
    return w.out;
}

}  // namespace heidid
