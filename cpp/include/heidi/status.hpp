// The status file (state/run_state.json): replaced atomically on every write.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "heidi/json.hpp"

namespace heidi {

class StatusWriter {
public:
    // fsync=false: see fsutil::atomic_write.
    explicit StatusWriter(std::string path, bool fsync = true);
    ~StatusWriter();
    StatusWriter(StatusWriter&&) noexcept;
    StatusWriter& operator=(StatusWriter&&) = delete;
    // json::dumps(value) + "\n", atomically (see fsutil::atomic_write). Thread-safe.
    void write(const json::Value& value) const;
    // An already encoded compact JSON text, without the newline.
    void write_encoded(std::string_view encoded) const;
    const std::string& path() const noexcept { return path_; }

private:
    // The file's directory, kept open so a write looks no path up. A directory that was
    // removed (or replaced) is found again by its path, creating it when it is missing.
    struct Directory;
    std::string path_;
    std::string dir_;
    std::string name_;
    bool fsync_;
    std::unique_ptr<Directory> directory_;
};

}  // namespace heidi
