// The status file (state/run_state.json): replaced atomically on every write.
#pragma once

#include <string>
#include <string_view>

#include "heidi/json.hpp"

namespace heidi {

class StatusWriter {
public:
    // fsync=false: see fsutil::atomic_write.
    explicit StatusWriter(std::string path, bool fsync = true);
    // json::dumps(value) + "\n", atomically (see fsutil::atomic_write).
    void write(const json::Value& value) const;
    // An already encoded compact JSON text, without the newline.
    void write_encoded(std::string_view encoded) const;
    const std::string& path() const noexcept { return path_; }

private:
    std::string path_;
    bool fsync_;
};

}  // namespace heidi
