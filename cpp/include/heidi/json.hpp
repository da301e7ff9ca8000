// JSON exactly as Python's json.dumps(obj, ensure_ascii=True, separators=(",", ":")).
//
// Values are nlohmann::ordered_json (keys keep insertion order); dumps() is our own
// encoder because the output must match Python byte for byte: ASCII only, \uXXXX with
// lowercase hex and surrogate pairs above U+FFFF, DEL (0x7f) escaped, '/' not escaped,
// floats as Python's repr, NaN/Infinity as Python writes them.
// Strings are UTF-8; invalid bytes become U+FFFD as with bytes.decode("utf-8", "replace").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace heidi::json {

using Value = nlohmann::ordered_json;

// Encode a value (no trailing newline).
std::string dumps(const Value& value);
void append_value(std::string& out, const Value& value);

// Building blocks for hand-assembled lines (the journal's hot path).
// append_string writes the quoted, escaped string. With allow_surrogates, UTF-8-encoded
// surrogate code points (as Python's "surrogatepass" produces) are written as \udXXX.
void append_string(std::string& out, std::string_view utf8, bool allow_surrogates = false);
void append_int(std::string& out, std::int64_t value);
// Python repr(float): shortest round-trip digits, "1e-05", "1e+16", "0.0001", "2.0".
std::string float_repr(double value);
// Python repr(str) of UTF-8 text, for error messages: single quotes (double when the text
// holds a ' and no "), backslash escapes for the quote, backslash, \n, \r and \t, and
// \xNN for the other control bytes and DEL.
std::string python_repr(std::string_view text);
// As JSON: float_repr, except NaN, Infinity, -Infinity.
void append_float(std::string& out, double value);

}  // namespace heidi::json
