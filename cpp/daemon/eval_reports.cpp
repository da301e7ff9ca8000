#include "eval_reports.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <array>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string_view>

namespace heidid {
namespace {

// The same fields, in the same order, as python/heidi_engine/api/reports.py.
constexpr std::array<const char*, 11> kReportFields = {
    "pass_at_1",          "baseline_pass_at_1",      "n_tasks",
    "n_passed",           "val_loss",                "pass_at_1_low",
    "pass_at_1_high",     "baseline_pass_at_1_low",  "baseline_pass_at_1_high",
    "dev_pass_at_1",      "best_round"};

// "report_round_<N>.json" with N in 1..999999999 and no leading zero.
bool report_round(std::string_view name, std::int64_t& round) {
    constexpr std::string_view prefix = "report_round_";
    constexpr std::string_view suffix = ".json";
    if (name.size() <= prefix.size() + suffix.size() || name.substr(0, prefix.size()) != prefix ||
        name.substr(name.size() - suffix.size()) != suffix)
        return false;
    std::string_view digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    if (digits.empty() || digits.size() > 9 || digits[0] == '0') return false;
    round = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') return false;
        round = round * 10 + (c - '0');
    }
    return true;
}

bool is_finite_number(const heidi::json::Value& v) {
    if (v.is_number_float()) return std::isfinite(v.get<double>());
    return v.is_number_integer();
}

}  // namespace

EvalReports::EvalReports(const std::string& out_dir) : eval_dir_(out_dir + "/eval") {}

std::vector<heidi::json::Value> EvalReports::rounds() {
    std::map<std::int64_t, std::string> found;
    if (DIR* dir = ::opendir(eval_dir_.c_str())) {
        while (dirent* entry = ::readdir(dir)) {
            std::int64_t round = 0;
            if (report_round(entry->d_name, round))
                found[round] = eval_dir_ + "/" + entry->d_name;
        }
        ::closedir(dir);
    }
    std::vector<heidi::json::Value> result;
    std::lock_guard lock(mu_);
    for (auto it = cache_.begin(); it != cache_.end();)
        it = found.count(it->first) ? std::next(it) : cache_.erase(it);
    for (const auto& [round, path] : found) {
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) continue;
        std::int64_t mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 +
                                st.st_mtim.tv_nsec;
        auto cached = cache_.find(round);
        if (cached == cache_.end() || cached->second.mtime_ns != mtime_ns ||
            cached->second.size != st.st_size) {
            Cached fresh;
            fresh.mtime_ns = mtime_ns;
            fresh.size = st.st_size;
            std::ifstream in(path, std::ios::binary);
            std::stringstream text;
            text << in.rdbuf();
            heidi::json::Value report = heidi::json::Value::parse(text.str(), nullptr, false);
            if (in.is_open() && report.is_object()) {
                fresh.readable = true;
                fresh.entry = heidi::json::Value::object();
                fresh.entry["round"] = round;
                for (const char* field : kReportFields) {
                    auto value = report.find(field);
                    fresh.entry[field] = (value != report.end() && is_finite_number(*value))
                                             ? *value
                                             : heidi::json::Value(nullptr);
                }
            }
            cached = cache_.insert_or_assign(round, std::move(fresh)).first;
        }
        if (cached->second.readable) result.push_back(cached->second.entry);
    }
    return result;
}

}  // namespace heidid
