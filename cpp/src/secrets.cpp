// The rules of docs/secrets.md, matched by hand. Each rule's regular expression (see
// heidi_engine/_py/secrets.py) is deterministic: every repeat is maximal and stops where
// the next part cannot start, so a left-to-right scan that tries each position in turn
// finds exactly the matches re.sub finds.
#include "heidi/secrets.hpp"

#include <array>
#include <cstddef>
#include <optional>

namespace heidi {

namespace {

// A match of [start, end): the output keeps `keep_head` bytes from the start and
// `keep_tail` bytes before the end around "[REDACTED:<kind>]".
struct Match {
    std::size_t end;
    std::string_view kind;
    std::size_t keep_head = 0;
    std::size_t keep_tail = 0;
};

using CharClass = std::array<bool, 256>;

template <typename Pred>
constexpr CharClass make_class(Pred pred) {
    CharClass table{};
    for (int c = 0; c < 256; ++c) table[static_cast<std::size_t>(c)] = pred(c);
    return table;
}

constexpr bool is_alnum(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
constexpr bool is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

constexpr CharClass kWord = make_class([](int c) { return is_alnum(c) || c == '_' || c == '-'; });  // [A-Za-z0-9_-]
constexpr CharClass kAlnum = make_class([](int c) { return is_alnum(c); });
constexpr CharClass kAlnumUnderscore = make_class([](int c) { return is_alnum(c) || c == '_'; });
constexpr CharClass kAlnumDash = make_class([](int c) { return is_alnum(c) || c == '-'; });
constexpr CharClass kUpperDigit = make_class([](int c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); });
constexpr CharClass kHex = make_class([](int c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
});
constexpr CharClass kLowerHex = make_class([](int c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
constexpr CharClass kWebhookPath = make_class([](int c) { return is_alnum(c) || c == '/' || c == '_' || c == '-'; });
constexpr CharClass kBase64 = make_class([](int c) { return is_alnum(c) || c == '+' || c == '/'; });
constexpr CharClass kUpperSpace = make_class([](int c) { return (c >= 'A' && c <= 'Z') || c == ' '; });
constexpr CharClass kBlank = make_class([](int c) { return c == ' ' || c == '\t'; });
constexpr CharClass kUrlUser = make_class([](int c) { return !is_space(c) && c != ':' && c != '/' && c != '@'; });
constexpr CharClass kUrlPassword = make_class([](int c) { return !is_space(c) && c != '/' && c != '@'; });
constexpr CharClass kBearerToken = make_class([](int c) {
    return is_alnum(c) || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=' || c == '-';
});
constexpr CharClass kAssignedValue = make_class([](int c) {
    return !is_space(c) && c != '"' && c != '\'' && c != ',' && c != ';' && c != '&';
});

std::size_t span(std::string_view s, std::size_t at, const CharClass& cls) {
    while (at < s.size() && cls[static_cast<unsigned char>(s[at])]) ++at;
    return at;
}

bool has_at(std::string_view s, std::size_t at, std::string_view literal) {
    return at <= s.size() && s.substr(at, literal.size()) == literal;
}

bool has_at_ignore_case(std::string_view s, std::size_t at, std::string_view lower_literal) {
    if (at + lower_literal.size() > s.size()) return false;
    for (std::size_t i = 0; i < lower_literal.size(); ++i) {
        char c = s[at + i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != lower_literal[i]) return false;
    }
    return true;
}

bool char_at_in(std::string_view s, std::size_t at, std::string_view set) {
    return at < s.size() && set.find(s[at]) != std::string_view::npos;
}

// (?<![A-Za-z0-9_-])
bool after_word(std::string_view s, std::size_t at) {
    return at > 0 && kWord[static_cast<unsigned char>(s[at - 1])];
}

// (?<![A-Za-z0-9])
bool after_alnum(std::string_view s, std::size_t at) {
    return at > 0 && kAlnum[static_cast<unsigned char>(s[at - 1])];
}

// [A-Z ]*PRIVATE KEY(?: BLOCK)?----- starting at `at`; returns the end of the dashes.
// The class run is maximal and '-' ends it, so the label is the whole run.
std::optional<std::size_t> pem_label(std::string_view s, std::size_t at) {
    const std::size_t end = span(s, at, kUpperSpace);
    const std::string_view run = s.substr(at, end - at);
    const bool label = (run.size() >= 11 && run.substr(run.size() - 11) == "PRIVATE KEY") ||
                       (run.size() >= 17 && run.substr(run.size() - 17) == "PRIVATE KEY BLOCK");
    if (!label || !has_at(s, end, "-----")) return std::nullopt;
    return end + 5;
}

// -----BEGIN<label>(?:.*?-----END<label>|.*)
std::optional<Match> private_key_at(std::string_view s, std::size_t at) {
    if (!has_at(s, at, "-----BEGIN")) return std::nullopt;
    const auto body = pem_label(s, at + 10);
    if (!body) return std::nullopt;
    for (auto end_line = s.find("-----END", *body); end_line != std::string_view::npos;
         end_line = s.find("-----END", end_line + 1)) {
        if (const auto end = pem_label(s, end_line + 8)) return Match{*end, "private_key"};
    }
    return Match{s.size(), "private_key"};
}

// ://([^\s:/@]*):[^\s/@]+@  ->  ://\1:[REDACTED:url_password]@
std::optional<Match> url_password_at(std::string_view s, std::size_t at) {
    if (!has_at(s, at, "://")) return std::nullopt;
    const std::size_t colon = span(s, at + 3, kUrlUser);
    if (!char_at_in(s, colon, ":")) return std::nullopt;
    const std::size_t end = span(s, colon + 1, kUrlPassword);
    if (end == colon + 1 || !char_at_in(s, end, "@")) return std::nullopt;
    return Match{end + 1, "url_password", colon + 1 - at, 1};
}

// eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*
std::optional<Match> jwt_at(std::string_view s, std::size_t at) {
    if (after_word(s, at) || !has_at(s, at, "eyJ")) return std::nullopt;
    const std::size_t header = span(s, at + 3, kWord);
    if (header == at + 3 || !has_at(s, header, ".eyJ")) return std::nullopt;
    const std::size_t payload = span(s, header + 4, kWord);
    if (payload == header + 4 || !char_at_in(s, payload, ".")) return std::nullopt;
    return Match{span(s, payload + 1, kWord), "jwt"};
}

// A key body: at least `minimum` characters of `cls` (as many as there are).
std::optional<Match> key_body(std::string_view s, std::size_t body, const CharClass& cls, std::size_t minimum,
                              std::string_view kind) {
    const std::size_t end = span(s, body, cls);
    if (end - body < minimum) return std::nullopt;
    return Match{end, kind};
}

// The alternatives of heidi_engine._py.secrets.PROVIDER_KEYS, in its order.
std::optional<Match> provider_key_at(std::string_view s, std::size_t at) {
    if (at >= s.size() || after_alnum(s, at)) return std::nullopt;
    std::optional<Match> found;
    switch (s[at]) {
        case 's':
            if (has_at(s, at, "sk-ant-") && (found = key_body(s, at + 7, kWord, 16, "anthropic_key"))) return found;
            if (has_at(s, at, "sk-")) return key_body(s, at + 3, kWord, 16, "openai_key");
            if (has_at(s, at, "sk_live_")) return key_body(s, at + 8, kAlnum, 16, "stripe_key");
            if (has_at(s, at, "sk_test_")) return key_body(s, at + 8, kAlnum, 16, "stripe_key");
            if (has_at(s, at, "shp") && (has_at(s, at + 3, "at_") || has_at(s, at + 3, "ca_") ||
                                         has_at(s, at + 3, "pa_") || has_at(s, at + 3, "ss_")))
                return key_body(s, at + 6, kHex, 32, "shopify_token");
            return std::nullopt;
        case 'r':
            if (has_at(s, at, "rk_live_")) return key_body(s, at + 8, kAlnum, 16, "stripe_key");
            if (has_at(s, at, "rk_test_")) return key_body(s, at + 8, kAlnum, 16, "stripe_key");
            return std::nullopt;
        case 'g':
            if (has_at(s, at, "github_pat_")) return key_body(s, at + 11, kAlnumUnderscore, 20, "github_token");
            if (has_at(s, at, "gh") && char_at_in(s, at + 2, "pousr") && char_at_in(s, at + 3, "_"))
                return key_body(s, at + 4, kAlnum, 20, "github_token");
            if (has_at(s, at, "glpat-")) return key_body(s, at + 6, kWord, 20, "gitlab_token");
            return std::nullopt;
        case 'A':
            if (has_at(s, at, "AKIA") || has_at(s, at, "ASIA")) return key_body(s, at + 4, kUpperDigit, 16, "aws_access_key");
            if (has_at(s, at, "AIza")) return key_body(s, at + 4, kWord, 30, "google_api_key");
            return std::nullopt;
        case 'G':
            if (has_at(s, at, "GOCSPX-")) return key_body(s, at + 7, kWord, 20, "google_oauth_secret");
            return std::nullopt;
        case 'x':
            if (has_at(s, at, "xox") && char_at_in(s, at + 3, "abprs") && char_at_in(s, at + 4, "-"))
                return key_body(s, at + 5, kAlnumDash, 10, "slack_token");
            if (has_at(s, at, "xapp-")) return key_body(s, at + 5, kAlnumDash, 20, "slack_token");
            return std::nullopt;
        case 'h':
            if (has_at(s, at, "hf_")) return key_body(s, at + 3, kAlnum, 30, "huggingface_token");
            if (has_at(s, at, "hooks.slack.com/")) {
                for (const std::string_view kind : {"services/", "workflows/", "triggers/"})
                    if (has_at(s, at + 16, kind)) return key_body(s, at + 16 + kind.size(), kWebhookPath, 20, "slack_webhook");
            }
            return std::nullopt;
        case 'd':
            if (has_at(s, at, "discord")) {
                std::size_t i = at + 7;
                if (has_at(s, i, "app")) i += 3;
                if (has_at(s, i, ".com/api/webhooks/")) return key_body(s, i + 18, kWebhookPath, 20, "discord_webhook");
                return std::nullopt;
            }
            if (has_at(s, at, "do") && char_at_in(s, at + 2, "opr") && has_at(s, at + 3, "_v1_"))
                return key_body(s, at + 7, kLowerHex, 32, "digitalocean_token");
            return std::nullopt;
        case 'w':
            if (has_at(s, at, "whsec_")) return key_body(s, at + 6, kBase64, 24, "stripe_webhook_secret");
            return std::nullopt;
        case 'n':
            if (has_at(s, at, "npm_")) return key_body(s, at + 4, kAlnum, 36, "npm_token");
            return std::nullopt;
        case 'p':
            if (has_at(s, at, "pypi-AgE")) return key_body(s, at + 8, kWord, 50, "pypi_token");
            return std::nullopt;
        case 'S':
            if (has_at(s, at, "SG.")) {
                const std::size_t first = span(s, at + 3, kWord);
                if (first - (at + 3) < 16 || !char_at_in(s, first, ".")) return std::nullopt;
                return key_body(s, first + 1, kWord, 16, "sendgrid_key");
            }
            return std::nullopt;
        case 'k':
            if (has_at(s, at, "key-")) return key_body(s, at + 4, kLowerHex, 32, "mailgun_key");
            return std::nullopt;
        default: return std::nullopt;
    }
}

// ((?i:bearer)[ \t]+)[A-Za-z0-9._~+/=-]{8,}  ->  \1[REDACTED:bearer_token]
std::optional<Match> bearer_at(std::string_view s, std::size_t at) {
    if (after_word(s, at) || !has_at_ignore_case(s, at, "bearer")) return std::nullopt;
    const std::size_t token = span(s, at + 6, kBlank);
    if (token == at + 6) return std::nullopt;
    const std::size_t end = span(s, token, kBearerToken);
    if (end - token < 8) return std::nullopt;
    return Match{end, "bearer_token", token - at};
}

// ((?i:<keyword>)["']?[ \t]*[=:][ \t]*["']?)[^\s"',;&]+  ->  \1[REDACTED:secret_assignment]
// The keywords of heidi_engine._py.secrets.ASSIGNMENT_KEYWORDS, in its order.
std::optional<Match> assignment_at(std::string_view s, std::size_t at) {
    static constexpr std::string_view kKeywords[] = {
        "password",   "passwd",     "pwd",         "secret_access_key", "secret-access-key", "secretaccesskey",
        "secret_key", "secret-key", "secretkey",   "secret",            "token",             "api_key",
        "api-key",    "apikey",     "access_key",  "access-key",        "accesskey",         "private_key",
        "private-key", "privatekey"};
    const char first = static_cast<char>(s[at] | 0x20);
    if (first != 'p' && first != 's' && first != 't' && first != 'a') return std::nullopt;
    for (const auto keyword : kKeywords) {
        if (keyword[0] != first || !has_at_ignore_case(s, at, keyword)) continue;
        std::size_t i = at + keyword.size();
        if (char_at_in(s, i, "\"'")) ++i;
        i = span(s, i, kBlank);
        if (!char_at_in(s, i, "=:")) continue;
        i = span(s, i + 1, kBlank);
        if (char_at_in(s, i, "\"'")) ++i;
        const std::size_t end = span(s, i, kAssignedValue);
        if (end == i) continue;
        return Match{end, "secret_assignment", i - at};
    }
    return std::nullopt;
}

using Finder = std::optional<Match> (*)(std::string_view, std::size_t);

// re.sub: replace every leftmost non-overlapping match. False (out untouched) when none.
bool substitute(std::string_view s, Finder find_at, std::string& out) {
    std::size_t copied = 0;
    bool any = false;
    for (std::size_t at = 0; at < s.size();) {
        const auto match = find_at(s, at);
        if (!match) {
            ++at;
            continue;
        }
        if (!any) {
            out.clear();
            any = true;
        }
        out.append(s.substr(copied, at + match->keep_head - copied));
        out.append(kRedactedPrefix);
        out.append(match->kind);
        out.push_back(']');
        out.append(s.substr(match->end - match->keep_tail, match->keep_tail));
        copied = at = match->end;
    }
    if (any) out.append(s.substr(copied));
    return any;
}

// Which rules can match a text, from one pass over its bytes: a rule needs at least one
// of its trigger bytes to be present (every provider key holds '-', '_' or '.', or
// starts with 'A').
enum : unsigned { kPrivateKey = 1, kUrl = 2, kJwt = 4, kProviderKey = 8, kBearer = 16, kAssignment = 32 };

constexpr std::array<unsigned char, 256> make_triggers() {
    std::array<unsigned char, 256> table{};
    table['-'] = kPrivateKey | kProviderKey;
    table[':'] = kUrl | kAssignment;
    table['J'] = kJwt;
    table['_'] = kProviderKey;
    table['.'] = kProviderKey;
    table['A'] = kProviderKey;
    table['b'] = kBearer;
    table['B'] = kBearer;
    table['='] = kAssignment;
    return table;
}
constexpr std::array<unsigned char, 256> kTriggers = make_triggers();

unsigned possible_rules(std::string_view text) {
    unsigned rules = 0;
    for (const char c : text) rules |= kTriggers[static_cast<unsigned char>(c)];
    return rules;
}

// A rule also needs a text at least as long as its shortest match: "-----BEGIN" "PRIVATE
// KEY" "-----"; "://:x@"; "eyJx.eyJx."; "xoxb-" and 10 more; "bearer x" and 7 more; "pwd=x".
struct Rule {
    unsigned bit;
    std::size_t min_length;
    Finder find_at;
};

constexpr Rule kRules[] = {
    {kPrivateKey, 26, private_key_at}, {kUrl, 6, url_password_at}, {kJwt, 10, jwt_at},
    {kProviderKey, 15, provider_key_at}, {kBearer, 15, bearer_at}, {kAssignment, 5, assignment_at},
};

}  // namespace

bool scrub_secrets_into(std::string_view message, std::string& out) {
    unsigned rules = possible_rules(message);
    if (!rules) return false;
    std::string current;
    std::string next;
    bool changed = false;
    for (const auto& rule : kRules) {
        const std::string_view text = changed ? std::string_view(current) : message;
        if (!(rules & rule.bit) || text.size() < rule.min_length) continue;
        if (substitute(text, rule.find_at, next)) {
            current.swap(next);
            changed = true;
            rules = possible_rules(current);  // a marker adds ':' and '_'
        }
    }
    if (changed) out.append(current);
    return changed;
}

std::string scrub_secrets(std::string_view message) {
    std::string out;
    if (!scrub_secrets_into(message, out)) out.assign(message);
    return out;
}

}  // namespace heidi
