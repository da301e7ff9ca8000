#include "heidi/status.hpp"

#include "heidi/fsutil.hpp"

namespace heidi {

StatusWriter::StatusWriter(std::string path, bool fsync) : path_(std::move(path)), fsync_(fsync) {}

void StatusWriter::write(const json::Value& value) const {
    std::string text = json::dumps(value);
    write_encoded(text);
}

void StatusWriter::write_encoded(std::string_view encoded) const {
    fsutil::make_dirs(fsutil::parent_dir(path_));
    std::string data;
    data.reserve(encoded.size() + 1);
    data.append(encoded);
    data.push_back('\n');
    fsutil::atomic_write(path_, data, fsync_);
}

}  // namespace heidi
