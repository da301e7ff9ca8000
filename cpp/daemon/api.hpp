// The control API of SPEC §9, independent of the HTTP library: one request in, one
// response out, never an exception for bad input. The twin of heidi_engine.server.Api.
//
// Routes, token rules, query limits and request-body fields come from the OpenAPI
// document shared with the Python server (python/heidi_engine/api/openapi.json, embedded
// at build time), so both servers route by the same table.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <heidi/core.hpp>
#include <heidi/json.hpp>

#include "eval_reports.hpp"
#include "journal_index.hpp"

namespace heidid {

inline constexpr std::size_t kMaxBodyBytes = 64 * 1024;
inline constexpr std::size_t kMaxTargetBytes = 8192;

struct ApiRequest {
    std::string method;
    std::string target;  // path and query, as sent
    std::optional<std::string> authorization;
    std::string body;
};

struct ApiResponse {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;
};

ApiResponse error_response(int status, const std::string& message);

struct IntParam {
    std::string name;
    std::int64_t default_value = 0;
    std::int64_t minimum = 0;
    std::optional<std::int64_t> maximum;
};

struct BodyField {
    std::string name;
    std::vector<std::string> allowed;
};

struct Operation {
    std::string operation_id;
    std::string method;
    std::string path;
    bool needs_token = true;
    std::optional<std::string> static_file;
    std::vector<IntParam> params;
    std::optional<std::vector<BodyField>> body_fields;  // nullopt: the route takes no body
};

struct Route {
    std::map<std::string, Operation> operations;  // by method, sorted
    std::string allowed() const;
};

using RouteTable = std::map<std::string, Route, std::less<>>;

// The embedded files (OpenAPI document, dashboard).
std::optional<std::string> embedded_asset(const std::string& name);
RouteTable load_route_table(const heidi::json::Value& document);

class Api {
public:
    // wake: called after an accepted action, so the engine thread picks it up at once.
    Api(heidi::Core& core, const std::string& out_dir, std::string token,
        std::string default_mode, std::function<void()> wake);

    ApiResponse handle(const ApiRequest& request);

private:
    ApiResponse dispatch(const Operation& op, const std::map<std::string, std::int64_t>& params,
                         const std::map<std::string, std::string>& fields);
    ApiResponse action(const std::string& name, const std::map<std::string, std::string>& fields);

    heidi::Core& core_;
    std::string token_;
    std::string default_mode_;
    std::function<void()> wake_;
    RouteTable routes_;
    std::string document_;
    JournalIndex journal_;
    EvalReports reports_;
};

}  // namespace heidid
