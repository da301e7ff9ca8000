#include "api.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include <heidi/errors.hpp>
#include <heidi/json_limits.hpp>
#include <heidid_assets.hpp>

#include "metrics.hpp"

namespace heidid {
namespace {

constexpr const char* kUnauthorized = "missing or invalid bearer token";
constexpr const char* kPageSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'";

struct BadRequest {
    std::string message;
};

std::string single_quoted(const std::string& text) { return "'" + text + "'"; }

std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) out += ", ";
        out += item;
    }
    return out;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// %XX -> byte; anything else kept as it is ('+' stays '+'), like urllib.parse.unquote.
std::string percent_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size()) {
            int hi = hex_value(text[i + 1]);
            int lo = hex_value(text[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out.push_back(static_cast<char>(hi * 16 + lo));
                i += 2;
                continue;
            }
        }
        out.push_back(text[i]);
    }
    return out;
}

std::vector<std::string_view> split(std::string_view text, char sep) {
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    for (;;) {
        std::size_t at = text.find(sep, start);
        parts.push_back(text.substr(start, at == std::string_view::npos ? at : at - start));
        if (at == std::string_view::npos) return parts;
        start = at + 1;
    }
}

std::map<std::string, std::string> parse_query(std::string_view query) {
    std::map<std::string, std::string> params;
    if (query.empty()) return params;
    for (std::string_view part : split(query, '&')) {
        std::size_t eq = part.find('=');
        std::string name = percent_decode(part.substr(0, eq));
        std::string value = eq == std::string_view::npos ? "" : percent_decode(part.substr(eq + 1));
        if (params.count(name)) throw BadRequest{"duplicate query parameter " + single_quoted(name)};
        params.emplace(std::move(name), std::move(value));
    }
    return params;
}

std::string expectation(const IntParam& p) {
    if (!p.maximum) return "an integer >= " + std::to_string(p.minimum);
    return "an integer " + std::to_string(p.minimum) + ".." + std::to_string(*p.maximum);
}

std::map<std::string, std::int64_t> parse_int_params(const Operation& op, std::string_view query) {
    auto raw = parse_query(query);
    std::vector<std::string> known;
    for (const auto& p : op.params) known.push_back(p.name);
    for (const auto& [name, value] : raw) {
        (void)value;
        if (std::find(known.begin(), known.end(), name) == known.end())
            throw BadRequest{"unknown query parameter " + single_quoted(name) + " (valid: " +
                             (known.empty() ? std::string("none") : join(known)) + ")"};
    }
    std::map<std::string, std::int64_t> values;
    for (const auto& p : op.params) {
        auto it = raw.find(p.name);
        if (it == raw.end()) {
            values[p.name] = p.default_value;
            continue;
        }
        const std::string& text = it->second;
        bool digits = !text.empty() &&
                      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
        std::string significant = digits ? text.substr(std::min(text.find_first_not_of('0'), text.size() - 1)) : "";
        // Beyond int64 (19+ digits compared as text): named as out of range, not as "not an integer".
        bool too_large = digits && (significant.size() > 19 ||
                                    (significant.size() == 19 && significant > "9223372036854775807"));
        if (too_large)
            throw BadRequest{"invalid value for " + p.name + ": " + single_quoted(text) +
                             " (expected an integer " + std::to_string(p.minimum) + ".." +
                             std::to_string(p.maximum.value_or(INT64_MAX)) + ")"};
        std::int64_t number = digits ? std::stoll(significant) : -1;
        if (!digits || number < p.minimum || (p.maximum && number > *p.maximum))
            throw BadRequest{"invalid value for " + p.name + ": " + single_quoted(text) + " (expected " +
                             expectation(p) + ")"};
        values[p.name] = number;
    }
    return values;
}

bool is_blank(std::string_view body) {
    return std::all_of(body.begin(), body.end(), [](char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
    });
}

std::string describe_value(const heidi::json::Value& value) {
    if (value.is_string()) return single_quoted(value.get<std::string>());
    return heidi::json::dumps(value);
}

std::map<std::string, std::string> parse_body(const Operation& op, const std::string& body) {
    std::map<std::string, std::string> values;
    if (is_blank(body)) return values;
    if (heidi::json::nesting_exceeds(body))
        throw BadRequest{"body nests too deeply (limit " + std::to_string(heidi::json::kMaxNestingDepth) + ")"};
    heidi::json::Value obj = heidi::json::Value::parse(body, nullptr, false);
    if (obj.is_discarded()) throw BadRequest{"body is not valid JSON"};
    if (!obj.is_object()) throw BadRequest{"body must be a JSON object"};
    const auto& fields = *op.body_fields;
    std::vector<std::string> names;
    for (const auto& f : fields) names.push_back(f.name);
    for (const auto& [name, value] : obj.items()) {
        auto field = std::find_if(fields.begin(), fields.end(),
                                  [&](const BodyField& f) { return f.name == name; });
        if (field == fields.end())
            throw BadRequest{"unknown field " + single_quoted(name) + " (valid: " +
                             (names.empty() ? std::string("none") : join(names)) + ")"};
        bool ok = value.is_string() &&
                  (field->allowed.empty() ||
                   std::find(field->allowed.begin(), field->allowed.end(),
                             value.get<std::string>()) != field->allowed.end());
        if (!ok)
            throw BadRequest{"invalid value for " + name + ": " + describe_value(value) +
                             " (valid: " + join(field->allowed) + ")"};
        values[name] = value.get<std::string>();
    }
    return values;
}

// Constant-time: both sides are hashed first, so neither the content nor the length of
// the expected token shows in the time a comparison takes.
bool token_matches(const std::optional<std::string>& header, const std::string& token) {
    constexpr std::string_view prefix = "Bearer ";
    if (!header || header->compare(0, prefix.size(), prefix) != 0) return false;
    unsigned char given[SHA256_DIGEST_LENGTH];
    unsigned char expected[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(header->data() + prefix.size()),
           header->size() - prefix.size(), given);
    SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), expected);
    return CRYPTO_memcmp(given, expected, sizeof given) == 0;
}

const heidi::json::Value& resolve(const heidi::json::Value& doc, const heidi::json::Value& node) {
    auto ref = node.find("$ref");
    if (ref == node.end()) return node;
    std::string pointer = ref->get<std::string>();
    return doc.at(heidi::json::Value::json_pointer(pointer.substr(1)));
}

std::string content_type_for(const std::string& name) {
    auto ends_with = [&](std::string_view suffix) {
        return name.size() >= suffix.size() &&
               name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends_with(".html")) return "text/html; charset=utf-8";
    if (ends_with(".js")) return "text/javascript; charset=utf-8";
    if (ends_with(".css")) return "text/css; charset=utf-8";
    return "application/octet-stream";
}

std::string upper(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return text;
}

}  // namespace

ApiResponse error_response(int status, const std::string& message) {
    ApiResponse response;
    response.status = status;
    heidi::json::Value body = heidi::json::Value::object();
    body["error"] = message;
    response.body = heidi::json::dumps(body);
    return response;
}

std::string Route::allowed() const {
    std::vector<std::string> methods;
    for (const auto& [method, op] : operations) methods.push_back(method);
    if (operations.count("GET")) methods.push_back("HEAD");
    std::sort(methods.begin(), methods.end());
    return join(methods);
}

std::optional<std::string> embedded_asset(const std::string& name) {
    for (const auto& asset : assets::all)
        if (name == asset.name)
            return std::string(reinterpret_cast<const char*>(asset.data), asset.size);
    return std::nullopt;
}

RouteTable load_route_table(const heidi::json::Value& doc) {
    RouteTable table;
    const auto& global_security = doc.contains("security") ? doc["security"]
                                                           : heidi::json::Value::array();
    for (const auto& [path, methods] : doc.at("paths").items()) {
        Route& route = table[path];
        for (const auto& [method, spec] : methods.items()) {
            Operation op;
            op.operation_id = spec.at("operationId").get<std::string>();
            op.method = upper(method);
            op.path = path;
            const auto& security = spec.contains("security") ? spec["security"] : global_security;
            op.needs_token = !security.empty();
            if (spec.contains("x-heidi-static"))
                op.static_file = spec["x-heidi-static"].get<std::string>();
            if (spec.contains("parameters")) {
                for (const auto& p : spec["parameters"]) {
                    const auto& schema = p.at("schema");
                    IntParam param;
                    param.name = p.at("name").get<std::string>();
                    param.default_value = schema.value("default", std::int64_t{0});
                    param.minimum = schema.value("minimum", std::int64_t{0});
                    if (schema.contains("maximum")) param.maximum = schema["maximum"].get<std::int64_t>();
                    op.params.push_back(param);
                }
            }
            if (spec.contains("requestBody")) {
                const auto& schema = resolve(
                    doc, spec["requestBody"].at("content").at("application/json").at("schema"));
                std::vector<BodyField> fields;
                if (schema.contains("properties")) {
                    for (const auto& [name, prop] : schema["properties"].items()) {
                        BodyField field{name, {}};
                        if (prop.contains("enum"))
                            for (const auto& v : prop["enum"]) field.allowed.push_back(v.get<std::string>());
                        fields.push_back(std::move(field));
                    }
                }
                op.body_fields = std::move(fields);
            }
            route.operations[op.method] = std::move(op);
        }
    }
    return table;
}

Api::Api(heidi::Core& core, const std::string& out_dir, std::string token,
         std::string default_mode, std::function<void()> wake)
    : core_(core),
      token_(std::move(token)),
      default_mode_(std::move(default_mode)),
      wake_(std::move(wake)),
      journal_(out_dir + "/journal/events.jsonl"),
      reports_(out_dir) {
    auto text = embedded_asset("openapi.json");
    if (!text) throw std::logic_error("openapi.json is not embedded");
    auto doc = heidi::json::Value::parse(*text);
    routes_ = load_route_table(doc);
    document_ = heidi::json::dumps(doc);
}

ApiResponse Api::handle(const ApiRequest& request) {
    if (request.target.size() > kMaxTargetBytes) return error_response(414, "request target too long");
    std::string_view target = request.target;
    std::size_t qmark = target.find('?');
    std::string path(target.substr(0, qmark));
    std::string_view query = qmark == std::string_view::npos ? "" : target.substr(qmark + 1);
    auto route = routes_.find(path);
    if (route == routes_.end()) return error_response(404, "not found: " + path);
    // HEAD is GET without the body (the HTTP layer drops it).
    auto op = route->second.operations.find(request.method == "HEAD" ? "GET" : request.method);
    if (op == route->second.operations.end()) {
        auto response = error_response(405, "method " + request.method + " not allowed on " + path +
                                                " (allowed: " + route->second.allowed() + ")");
        response.headers.emplace_back("Allow", route->second.allowed());
        return response;
    }
    if (request.body.size() > kMaxBodyBytes)
        return error_response(413, "request body too large (limit " +
                                       std::to_string(kMaxBodyBytes) + " bytes)");
    if (op->second.needs_token && !token_matches(request.authorization, token_)) {
        auto response = error_response(401, kUnauthorized);
        response.headers.emplace_back("WWW-Authenticate", "Bearer");
        return response;
    }
    std::map<std::string, std::int64_t> params;
    std::map<std::string, std::string> fields;
    try {
        params = parse_int_params(op->second, query);
        if (!op->second.body_fields && !is_blank(request.body))
            throw BadRequest{"this route takes no body"};
        if (op->second.body_fields) fields = parse_body(op->second, request.body);
    } catch (const BadRequest& bad) {
        return error_response(400, bad.message);
    }
    return dispatch(op->second, params, fields);
}

ApiResponse Api::dispatch(const Operation& op, const std::map<std::string, std::int64_t>& params,
                          const std::map<std::string, std::string>& fields) {
    const std::string& name = op.operation_id;
    ApiResponse response;
    if (op.static_file) {
        auto data = embedded_asset(*op.static_file);
        if (!data) return error_response(404, "not found: " + op.path);
        response.body = std::move(*data);
        response.content_type = content_type_for(*op.static_file);
        response.headers = {{"Content-Security-Policy", kPageSecurityPolicy},
                            {"Referrer-Policy", "no-referrer"}};
    } else if (name == "healthz") {
        response.body = R"({"ok":true})";
    } else if (name == "openapi") {
        response.body = document_;
    } else if (name == "status") {
        response.body = core_.get_status_json();
    } else if (name == "events") {
        EventPage page = journal_.page(params.at("since"), params.at("limit"));
        response.body = R"({"events":[)";
        for (std::size_t i = 0; i < page.lines.size(); ++i) {
            if (i) response.body.push_back(',');
            response.body += page.lines[i];
        }
        response.body += R"(],"next_since":)" + std::to_string(page.next_since) + "}";
    } else if (name == "eval_reports") {
        heidi::json::Value body = heidi::json::Value::object();
        body["rounds"] = heidi::json::Value::array();
        for (auto& entry : reports_.rounds()) body["rounds"].push_back(std::move(entry));
        response.body = heidi::json::dumps(body);
    } else if (name == "metrics") {
        response.body =
            render_metrics(core_.get_status_json(), journal_.refresh(), reports_.rounds());
        response.content_type = kMetricsContentType;
    } else {
        return action(name, fields);
    }
    return response;
}

ApiResponse Api::action(const std::string& name, const std::map<std::string, std::string>& fields) {
    try {
        if (name == "start") {
            auto mode = fields.find("mode");
            core_.start(mode != fields.end() ? mode->second : default_mode_);
        } else if (name == "train_now") {
            if (!core_.train_now()) return error_response(409, core_.last_refusal());
        } else if (name == "pause") {
            core_.pause();
        } else if (name == "resume") {
            core_.resume();
        } else if (name == "stop") {
            core_.stop();
        } else {
            return error_response(500, "no handler for operation " + name);
        }
    } catch (const heidi::TransitionError& e) {
        return error_response(409, e.what());
    } catch (const heidi::ConfigError& e) {
        return error_response(400, e.what());
    }
    if (wake_) wake_();
    ApiResponse response;
    response.status = 202;
    heidi::json::Value body = heidi::json::Value::object();
    body["accepted"] = true;
    body["action"] = name;
    response.body = heidi::json::dumps(body);
    return response;
}

}  // namespace heidid
