// Evaluation reports (OUT_DIR/eval/report_round_N.json) as the API shows them; the twin
// of heidi_engine/api/reports.py. A file is re-parsed only when its size or mtime changed.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <heidi/json.hpp>

namespace heidid {

class EvalReports {
public:
    explicit EvalReports(const std::string& out_dir);

    // One object per readable report, by round: {"round", "pass_at_1", "baseline_pass_at_1",
    // "n_tasks", "n_passed", "val_loss"} (null for a missing or non-numeric field).
    std::vector<heidi::json::Value> rounds();

private:
    struct Cached {
        std::int64_t mtime_ns = 0;
        std::int64_t size = 0;
        bool readable = false;
        heidi::json::Value entry;
    };

    std::string eval_dir_;
    std::mutex mu_;
    std::map<std::int64_t, Cached> cache_;
};

}  // namespace heidid
