#include "heidi/json.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "utf8.hpp"

namespace heidi::json {

namespace {

constexpr char kHex[] = "0123456789abcdef";

// Bytes copied through unchanged: printable ASCII except '"' and '\\'.
constexpr std::array<bool, 256> make_plain_table() {
    std::array<bool, 256> table{};
    for (int c = 0x20; c < 0x7f; ++c) table[static_cast<std::size_t>(c)] = true;
    table['"'] = false;
    table['\\'] = false;
    return table;
}
constexpr std::array<bool, 256> kPlain = make_plain_table();

void append_u_escape(std::string& out, unsigned code_unit) {
    const char escape[6] = {'\\', 'u', kHex[(code_unit >> 12) & 0xf], kHex[(code_unit >> 8) & 0xf],
                            kHex[(code_unit >> 4) & 0xf], kHex[code_unit & 0xf]};
    out.append(escape, 6);
}

void append_code_point(std::string& out, unsigned code_point) {
    if (code_point < 0x10000) {
        append_u_escape(out, code_point);
        return;
    }
    const unsigned v = code_point - 0x10000;
    append_u_escape(out, 0xd800 | (v >> 10));
    append_u_escape(out, 0xdc00 | (v & 0x3ff));
}

// Decodes one UTF-8 sequence starting at p (*p >= 0x80). Returns the bytes consumed and
// sets code_point (0xfffd for an invalid sequence, consuming its maximal valid prefix,
// which is what Python's "replace" error handler does).
std::size_t decode_utf8(const unsigned char* p, const unsigned char* end, bool allow_surrogates,
                        unsigned& code_point) {
    const utf8::Sequence sequence = utf8::sequence_at(p, end, allow_surrogates);
    if (!sequence.valid) {
        code_point = 0xfffd;
        return sequence.length;
    }
    unsigned value = p[0] & (0x7fu >> sequence.length);
    for (std::size_t i = 1; i < sequence.length; ++i) value = (value << 6) | (p[i] & 0x3f);
    code_point = value;
    return sequence.length;
}

}  // namespace

void append_string(std::string& out, std::string_view utf8, bool allow_surrogates) {
    out.push_back('"');
    const auto* p = reinterpret_cast<const unsigned char*>(utf8.data());
    const auto* end = p + utf8.size();
    while (p < end) {
        const auto* run = p;
        while (p < end && kPlain[*p]) ++p;
        out.append(reinterpret_cast<const char*>(run), static_cast<std::size_t>(p - run));
        if (p == end) break;
        const unsigned char c = *p;
        if (c < 0x80) {
            switch (c) {
                case '"': out.append("\\\""); break;
                case '\\': out.append("\\\\"); break;
                case '\b': out.append("\\b"); break;
                case '\f': out.append("\\f"); break;
                case '\n': out.append("\\n"); break;
                case '\r': out.append("\\r"); break;
                case '\t': out.append("\\t"); break;
                default: append_u_escape(out, c); break;  // other controls and DEL
            }
            ++p;
            continue;
        }
        unsigned code_point = 0;
        p += decode_utf8(p, end, allow_surrogates, code_point);
        append_code_point(out, code_point);
    }
    out.push_back('"');
}

void append_int(std::string& out, std::int64_t value) {
    char buffer[24];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    out.append(buffer, result.ptr);
}

std::string float_repr(double value) {
    if (std::isnan(value)) return "nan";
    if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
    // Shortest round-trip digits, then laid out by Python's repr rules: positional when
    // the decimal point falls within -4 < decpt <= 16, else d.ddde+XX.
    char buffer[64];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
    std::string_view text(buffer, static_cast<std::size_t>(result.ptr - buffer));
    std::string out;
    if (text.front() == '-') {
        out.push_back('-');
        text.remove_prefix(1);
    }
    const auto e = text.find('e');
    std::string digits(1, text[0]);
    if (e > 1) digits.append(text.substr(2, e - 2));
    const int exponent = std::atoi(std::string(text.substr(e + 1)).c_str());
    const int decpt = exponent + 1;
    const int count = static_cast<int>(digits.size());
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            out.append("0.");
            out.append(static_cast<std::size_t>(-decpt), '0');
            out.append(digits);
        } else if (decpt >= count) {
            out.append(digits);
            out.append(static_cast<std::size_t>(decpt - count), '0');
            out.append(".0");
        } else {
            out.append(digits, 0, static_cast<std::size_t>(decpt));
            out.push_back('.');
            out.append(digits, static_cast<std::size_t>(decpt));
        }
        return out;
    }
    out.push_back(digits[0]);
    if (count > 1) {
        out.push_back('.');
        out.append(digits, 1);
    }
    out.push_back('e');
    out.push_back(exponent < 0 ? '-' : '+');
    const int magnitude = std::abs(exponent);
    if (magnitude < 10) out.push_back('0');
    out.append(std::to_string(magnitude));
    return out;
}

std::string python_repr(std::string_view text) {
    bool has_single = text.find('\'') != std::string_view::npos;
    bool has_double = text.find('"') != std::string_view::npos;
    char quote = has_single && !has_double ? '"' : '\'';
    std::string out(1, quote);
    for (char c : text) {
        auto byte = static_cast<unsigned char>(c);
        if (c == quote || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (byte < 0x20 || byte == 0x7f) {
            const char escape[4] = {'\\', 'x', kHex[byte >> 4], kHex[byte & 0xf]};
            out.append(escape, 4);
        } else {
            out += c;
        }
    }
    out += quote;
    return out;
}

void append_float(std::string& out, double value) {
    if (std::isnan(value)) {
        out.append("NaN");
    } else if (std::isinf(value)) {
        out.append(value > 0 ? "Infinity" : "-Infinity");
    } else {
        out.append(float_repr(value));
    }
}

void append_value(std::string& out, const Value& value) {
    switch (value.type()) {
        case Value::value_t::null: out.append("null"); return;
        case Value::value_t::boolean: out.append(value.get<bool>() ? "true" : "false"); return;
        case Value::value_t::number_integer: append_int(out, value.get<std::int64_t>()); return;
        case Value::value_t::number_unsigned: out.append(std::to_string(value.get<std::uint64_t>())); return;
        case Value::value_t::number_float: append_float(out, value.get<double>()); return;
        case Value::value_t::string: append_string(out, value.get_ref<const std::string&>()); return;
        case Value::value_t::array: {
            out.push_back('[');
            bool first = true;
            for (const auto& item : value) {
                if (!first) out.push_back(',');
                first = false;
                append_value(out, item);
            }
            out.push_back(']');
            return;
        }
        case Value::value_t::object: {
            out.push_back('{');
            bool first = true;
            for (const auto& [key, item] : value.items()) {
                if (!first) out.push_back(',');
                first = false;
                append_string(out, key);
                out.push_back(':');
                append_value(out, item);
            }
            out.push_back('}');
            return;
        }
        default: throw std::invalid_argument("value is not JSON serializable (binary or discarded)");
    }
}

std::string dumps(const Value& value) {
    std::string out;
    append_value(out, value);
    return out;
}

}  // namespace heidi::json
