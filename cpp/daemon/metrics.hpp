// /metrics in the Prometheus text format 0.0.4: heidi_ prefix, base units, counters end
// in _total. The Python server renders the same text (heidi_engine/api/metrics.py).
#pragma once

#include <string>
#include <vector>

#include <heidi/json.hpp>

#include "journal_index.hpp"

namespace heidid {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string render_metrics(const std::string& status_json, const JournalAggregates& journal,
                           const std::vector<heidi::json::Value>& eval_rounds);

}  // namespace heidid
