// Engine exceptions. The Python module maps each onto the class of the same name in
// heidi_engine.errors, keeping the message text (see docs/design.md, "Errors").
// Plain bad arguments use std::invalid_argument (Python ValueError).
#pragma once

#include <stdexcept>
#include <string>

namespace heidi {

class HeidiError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A configuration value, TOML file or key is invalid.
class ConfigError : public HeidiError {
public:
    using HeidiError::HeidiError;
};

// A Core call is not allowed in the current state.
class TransitionError : public HeidiError {
public:
    using HeidiError::HeidiError;
};

// The event journal cannot be opened, continued or written.
class JournalError : public HeidiError {
public:
    using HeidiError::HeidiError;
};

// Another runner holds the run directory's lock.
class RunLockedError : public HeidiError {
public:
    using HeidiError::HeidiError;
};

// An operating-system call failed on a file; Python sees OSError(errno, strerror, filename),
// so the text reads "[Errno 2] No such file or directory: 'path'" in both backends.
class OsError : public std::runtime_error {
public:
    OsError(int error_code, std::string filename);
    int error_code() const noexcept { return error_code_; }
    const std::string& filename() const noexcept { return filename_; }

private:
    int error_code_;
    std::string filename_;
};

}  // namespace heidi
